"""Reading feeds: detect the type from content, decode, and cut into raw records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FeedType
from orderfeeds.readers.flat import iter_flat
from orderfeeds.readers.model import UNCHUNKED, RawFeed, joined
from orderfeeds.readers.text import UTF8_BOM, decode
from orderfeeds.readers.xml import SNIFF_BYTES, iter_xml, read_head

DEFAULT_MAX_BYTES = 2 * 1024**3

# Records validated and applied at a time by `process`: memory is bounded by a piece, not the feed
# (DESIGN §8). On the 1M benchmark, pieces of 250k peak 0.6 GB lower than pieces of 1M for about 10%
# more CPU time: the passes are still long enough for polars.
CHUNK_RECORDS = 250_000
# ... and of an XML feed: its records are wider (30 string columns, most of them empty) and the reader holds two
# chunks of the parsed tree besides, so its pieces are smaller. On the 1M-message benchmark, reading and validating
# peaks at 364 MB in pieces of 100,000 against 551 MB, in about the same time; `process` takes the same time too.
XML_CHUNK_RECORDS = 100_000

__all__ = ["RawFeed", "read_feed", "iter_feed", "looks_like_xml", "feed_head", "feed_sha256"]


def feed_head(source: bytes | Path) -> bytes:
    """The first bytes of a feed, all that type detection and sniffing need."""
    return read_head(source, SNIFF_BYTES)


def feed_sha256(source: bytes | Path) -> str:
    """SHA-256 of a feed's bytes; a file is hashed in chunks, never held in memory whole."""
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    return hashlib.sha256(source).hexdigest()


def looks_like_xml(data: bytes) -> bool:
    """Detection reads only the first bytes: XML starts with '<' after a BOM and blanks."""
    head = data[:4096]
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM):]
    return head.lstrip(b" \t\r\n").startswith(b"<")


def read_feed(source: bytes | Path, *, feed_type: FeedType | None = None, encoding: str = "cp1252",
              max_bytes: int = DEFAULT_MAX_BYTES) -> RawFeed:
    """Raw records of one feed (its bytes or its file), or a FeedError naming why it is rejected whole."""
    return joined(list(iter_feed(source, feed_type=feed_type, encoding=encoding, max_bytes=max_bytes)))


def iter_feed(source: bytes | Path, *, feed_type: FeedType | None = None, encoding: str = "cp1252",
              max_bytes: int = DEFAULT_MAX_BYTES, chunk_records: int | None = 0) -> Iterator[RawFeed]:
    """Raw records of one feed in pieces of about `chunk_records` records (0: one piece; None: CHUNK_RECORDS, or
    XML_CHUNK_RECORDS for an XML feed), in file order.

    A FeedError may come after some pieces (an XML document found broken near its end): the caller
    must then discard what it did with them. An XML file is streamed from disk; a flat file's text is
    held whole (its encoding is decided by all of it), but its records are cut piece by piece.
    """
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > max_bytes:
        raise FeedError("feed-too-large", f"the file has {size:,} bytes; the limit is {max_bytes:,}")
    if looks_like_xml(feed_head(source)):
        yield from iter_xml(source, feed_type, max_bytes, XML_CHUNK_RECORDS if chunk_records is None
                            else chunk_records or UNCHUNKED)
        return
    data = source.read_bytes() if isinstance(source, Path) else source
    text = decode(data, encoding)
    del data  # the text is all the pieces need
    yield from iter_flat(text, feed_type, CHUNK_RECORDS if chunk_records is None else chunk_records)

"""Reading feeds: detect the type from content, decode, and cut into raw records."""

from __future__ import annotations

import hashlib
from pathlib import Path

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FeedType
from orderfeeds.readers.flat import read_flat
from orderfeeds.readers.model import RawFeed
from orderfeeds.readers.text import UTF8_BOM, decode
from orderfeeds.readers.xml import SNIFF_BYTES, read_head, read_xml

DEFAULT_MAX_BYTES = 2 * 1024**3

__all__ = ["RawFeed", "read_feed", "looks_like_xml", "feed_head", "feed_sha256"]


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
    """Raw records of one feed (its bytes or its file), or a FeedError naming why it is rejected whole.

    An XML file is streamed from disk; a flat file is read whole (decoding needs all of it).
    """
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > max_bytes:
        raise FeedError("feed-too-large", f"the file has {size:,} bytes; the limit is {max_bytes:,}")
    if looks_like_xml(feed_head(source)):
        return read_xml(source, feed_type, max_bytes)
    data = source.read_bytes() if isinstance(source, Path) else source
    return read_flat(decode(data, encoding), feed_type)

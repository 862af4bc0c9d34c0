"""Reading feeds: detect the type from content, decode, and cut into raw records."""

from __future__ import annotations

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FeedType
from orderfeeds.readers.flat import read_flat
from orderfeeds.readers.model import RawFeed
from orderfeeds.readers.text import UTF8_BOM, decode
from orderfeeds.readers.xml import read_xml

DEFAULT_MAX_BYTES = 2 * 1024**3

__all__ = ["RawFeed", "read_feed", "looks_like_xml"]


def looks_like_xml(data: bytes) -> bool:
    """Detection reads only the first bytes: XML starts with '<' after a BOM and blanks."""
    head = data[:4096]
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM):]
    return head.lstrip(b" \t\r\n").startswith(b"<")


def read_feed(data: bytes, *, feed_type: FeedType | None = None, encoding: str = "cp1252",
              max_bytes: int = DEFAULT_MAX_BYTES) -> RawFeed:
    """Raw records of one feed file, or a FeedError naming why the file is rejected whole."""
    if len(data) > max_bytes:
        raise FeedError("feed-too-large", f"the file has {len(data):,} bytes; the limit is {max_bytes:,}")
    if looks_like_xml(data):
        return read_xml(data, feed_type, max_bytes)
    return read_flat(decode(data, encoding), feed_type)

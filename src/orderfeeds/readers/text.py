"""Decoding feed bytes and cutting text into numbered, tab-split lines."""

from __future__ import annotations

import codecs

import polars as pl

from orderfeeds.errors import FeedError

UTF8_BOM = codecs.BOM_UTF8


def decode(data: bytes, fallback: str = "cp1252") -> str:
    """Strict UTF-8 first, then the fallback; never replace a byte silently."""
    if data.startswith(UTF8_BOM):
        # A BOM is a promise of UTF-8: a fallback reading would turn it into mojibake.
        try:
            return data[len(UTF8_BOM):].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FeedError("encoding-error", _undecodable(data, exc.start + len(UTF8_BOM), "UTF-8 (the file starts with a UTF-8 byte-order mark)")) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_exc:
        try:
            return data.decode(fallback)
        except UnicodeDecodeError as exc:
            raise FeedError("encoding-error", _undecodable(data, exc.start, f"UTF-8 or {fallback}")) from None
        except LookupError:
            raise FeedError("encoding-error", _undecodable(data, utf8_exc.start, "UTF-8 (and the fallback encoding " f"'{fallback}' is unknown)")) from None


def _undecodable(data: bytes, offset: int, tried: str) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return (f"byte 0x{data[offset]:02X} on line {line} cannot be read as {tried}; "
            "save the file as UTF-8, or name its encoding with --encoding")


def split_lines(text: str) -> pl.DataFrame:
    """One row per physical line: `line` (1-based) and `text` without its line ending.

    CRLF, LF and a missing final newline all give the same lines.
    """
    lines = pl.DataFrame({"text": [text]}).select(pl.col("text").str.split("\n")).explode("text")
    lines = lines.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
        pl.col("text").str.strip_suffix("\r"),
    )
    if text.endswith("\n"):
        lines = lines.head(lines.height - 1)
    return lines.select("line", "text")


def is_blank(text: pl.Expr) -> pl.Expr:
    """A line of only spaces and tabs (Excel leaves such rows) counts as blank."""
    return text.str.strip_chars(" \t").str.len_bytes() == 0

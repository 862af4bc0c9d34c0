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


def line_count(data: bytes) -> int:
    """Lines in `data`, a last line without its line end included; the number of rows the
    CSV reader gives when it skips none, which is how the callers know it skipped none."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def regular_fields(data: bytes, width: int, separator: str = "\t", ragged: bool = False) -> pl.DataFrame | None:
    """Whole lines of `width` fields read by polars' CSV reader as String columns `_0`,
    `_1`, ... (a blank field is null), several times faster than splitting text; None
    when the lines are not plainly regular, and the caller splits them itself.

    Regular: UTF-8 (which the reader checks), LF or CRLF endings, no blank line, and
    every line with exactly `width` fields. The reader skips blank lines and pads short
    ones, so both are ruled out by counting line ends and separators in the bytes: with
    no line too long (the reader raises) and the total right, none is short either.
    With `ragged`, lines may have other field counts (the caller has `line_widths`):
    long ones are cut to `width` and short ones padded with nulls, as a split would.
    """
    schema = {f"_{i}": pl.String for i in range(width)}
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    lines = line_count(data)
    if not ragged and data.count(separator.encode()) != lines * (width - 1):
        return None
    if not lines:
        return pl.DataFrame(schema=schema)
    try:
        frame = pl.read_csv(data, separator=separator, has_header=False, quote_char=None, schema=schema,
                            truncate_ragged_lines=ragged)
    except pl.exceptions.PolarsError:  # invalid UTF-8 (the reader checks it) or a line too long
        return None
    return frame if frame.height == lines else None


def line_widths(data: bytes, separator: str = "\t") -> pl.Series | None:
    """Fields per line, or None if some line is blank (the reader would skip it, and the
    rows would no longer say their line numbers) or the text holds a NUL byte."""
    if b"\0" in data:
        return None
    lines = line_count(data)
    if not lines:
        return pl.Series("width", [], pl.UInt32)
    try:
        # NUL never occurs (checked above), so every line is one field: the line itself.
        text = pl.read_csv(data, separator="\0", has_header=False, quote_char=None, schema={"text": pl.String})
    except pl.exceptions.PolarsError:
        return None
    if text.height != lines or text.select(is_blank(pl.col("text").fill_null("")).any()).item():
        return None
    # One chunk: polars 2.1 panics formatting a filtered column with empty chunks ("i < self.len()").
    return text.select((pl.col("text").str.count_matches(separator, literal=True) + 1).cast(pl.UInt32)
                       .alias("width")).to_series().rechunk()


def trimmed(frame: pl.DataFrame, wanted: list[tuple[int, str]]) -> list[pl.Expr] | None:
    """Columns `_i` of a `regular_fields` frame as `name`, stripped of spaces, blank as null;
    None if some line is blank in all of them (a line of only spaces and separators is
    a blank line to the line-by-line path, so that path must decide)."""
    if not frame.height:
        return [pl.col(f"_{i}").alias(name) for i, name in wanted]
    # Stripping copies every string; most columns have no padded value, so look first.
    padded = frame.select(pl.any_horizontal(pl.col(f"_{i}").str.starts_with(" ").any(),
                                            pl.col(f"_{i}").str.ends_with(" ").any()).alias(str(i))
                          for i, _ in wanted).row(0)
    exprs = [(blank_to_null(pl.col(f"_{i}")) if pad else pl.col(f"_{i}")).alias(name)
             for (i, name), pad in zip(wanted, padded, strict=True)]
    blank_line = frame.select(pl.all_horizontal(e.is_null() for e in exprs).any()).item()
    return None if blank_line else exprs


def blank_to_null(value: pl.Expr) -> pl.Expr:
    """The value without surrounding spaces, or null if nothing is left."""
    value = value.str.strip_chars(" ")
    return pl.when(value.str.len_bytes() > 0).then(value)

"""Flat (tab-delimited) feeds to a raw frame of String columns (SPEC §2.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import polars as pl

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FLAT_FIELDS, FeedType, Field
from orderfeeds.readers.model import ID_COLUMNS, ISSUE_SCHEMA, Note, RawFeed, record_columns
from orderfeeds.readers.text import is_blank, line_widths, regular_fields, split_lines, trimmed

TEMPLATE_PREFIX = "TemplateType="
_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n)*")


def detect_flat(header: list[str], template: str | None) -> FeedType | None:
    """The flat type a header names; SPEC §2 says what each must contain."""
    names = set(header)
    if {"order-id", "order-item-id", "adjustment-reason-code"} <= names:
        return FeedType.FLAT_ADJUSTMENT
    if {"order-id", "cancellation-reason-code"} <= names:
        return FeedType.FLAT_CANCELLATION
    if template is not None:
        # The header is broken, but the template line says what it should have been,
        # so the seller is told which column is missing rather than "unknown type".
        kind = template[len(TEMPLATE_PREFIX):].split("\t", 1)[0].strip().lower()
        if "cancel" in kind:
            return FeedType.FLAT_CANCELLATION
        if "adjust" in kind:
            return FeedType.FLAT_ADJUSTMENT
    return None


def iter_flat(text: str, feed_type: FeedType | None, chunk_records: int = 0) -> Iterator[RawFeed]:
    """Cut the text into records, in pieces of about `chunk_records` (0: one piece), in file order,
    `seq` and record numbers counting on across pieces; header problems raise before the first.
    Ragged rows become issues, never shifted rows."""
    head = _first_lines(text, 2)
    if not head:
        raise FeedError("unknown-feed-type", "the file has no header and no records")
    template = None
    if head[0][1].lstrip(" ").startswith(TEMPLATE_PREFIX):
        template = head.pop(0)[1]
    if not head:
        raise FeedError("missing-column", "the file has a template line but no header line")
    header_line, header_text = head[0]
    header = [name.strip(" ").lstrip("\ufeff") for name in header_text.split("\t")]
    detected = detect_flat(header, template)
    feed_type = feed_type or detected
    if feed_type is None:
        raise FeedError("unknown-feed-type",
                        f"line {header_line} is not a header of a known feed: expected the columns "
                        "order-id and cancellation-reason-code (order cancellation) or order-id, "
                        "order-item-id and adjustment-reason-code (order adjustment)", line=header_line)
    if feed_type.is_xml:
        raise FeedError("unknown-feed-type", f"the file is a flat file, not an XML {feed_type.value} feed")
    fields = FLAT_FIELDS[feed_type]
    notes, positions = _map_header(header, fields, header_line)
    start = 0
    for _ in range(header_line):  # the header is line `header_line`: the records start after it
        start = text.find("\n", start) + 1
        if start == 0:
            start = len(text)
            break
    line, seq = header_line + 1, 0
    for number, block in enumerate(_blocks(text, start, chunk_records)):
        frame, issues = _block_records(block, line, seq, len(header), fields, positions)
        yield RawFeed(feed_type=feed_type, fields=fields, frame=frame, issues=issues,
                      notes=tuple(notes) if number == 0 else (), column_order=tuple(positions))
        line += block.count("\n")
        seq += frame.height


def _blocks(text: str, start: int, chunk_records: int) -> Iterator[str]:
    """The text from `start` in blocks of whole lines, about `chunk_records` lines each (judged by the
    length of the first lines); always at least one block, so an empty feed still has a piece."""
    if chunk_records <= 0 or start >= len(text):
        yield text[start:]
        return
    sample_end = start
    for _ in range(min(chunk_records, 1000)):
        sample_end = text.find("\n", sample_end) + 1
        if sample_end == 0:
            sample_end = len(text)
            break
    sampled = text.count("\n", start, sample_end) or 1
    size = max(1, (sample_end - start) * chunk_records // sampled)
    while start < len(text):
        end = text.find("\n", min(start + size, len(text)) - 1) + 1
        end = len(text) if end == 0 else end
        yield text[start:end]
        start = end


def _block_records(block: str, first_line: int, first_seq: int, width: int, fields: tuple[Field, ...],
                   positions: dict[str, int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records of whole lines starting at line `first_line` and their issues."""
    regular = _regular_records(block, first_line, first_seq, width, fields, positions)
    if regular is not None:
        return regular
    lines = split_lines(block).with_columns(pl.col("line") + (first_line - 1))
    body = lines.filter(~is_blank(pl.col("text"))).with_columns(pl.col("text").str.split("\t").alias("_fields"))
    frame = body.select(
        *record_columns(body.height, pl.col("line"), first=first_seq),
        *[_field_value(positions.get(f.name), f) for f in fields],
        pl.col("_fields").list.len().alias("_width"),
    )
    return frame.drop("_width"), _ragged(frame, width)


def _first_lines(text: str, count: int) -> list[tuple[int, str]]:
    """Up to `count` leading non-blank lines with their numbers, without splitting the whole text."""
    found: list[tuple[int, str]] = []
    start, number = 0, 1
    while len(found) < count:
        skipped = _BLANK_LINES.match(text, start).end()  # type: ignore[union-attr]
        number += text.count("\n", start, skipped)
        end = text.find("\n", skipped)
        end = len(text) if end < 0 else end
        line = text[skipped:end].removesuffix("\r")
        if not line.strip(" \t"):  # the end, or a last blank line with no line end
            break
        found.append((number, line))
        start, number = end + 1, number + 1
    return found


def _regular_records(block: str, first_line: int, first_seq: int, width: int, fields: tuple[Field, ...],
                     positions: dict[str, int]) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The records of a block of lines, and their ragged-row issues, through polars' CSV reader
    when no line is blank (see `line_widths`); None: split the lines instead."""
    data = block.encode("utf-8")
    widths = line_widths(data)
    frame = regular_fields(data, width, ragged=True) if widths is not None else None
    wanted = [(position, name) for name, position in positions.items()]
    columns = trimmed(frame, wanted) if frame is not None else None
    if widths is None or frame is None or columns is None:
        return None
    n = frame.height
    present = {name for _, name in wanted}
    records = frame.select(*record_columns(n, pl.int_range(first_line, first_line + n), first=first_seq),
                           *columns).select(
        *ID_COLUMNS, *[pl.col(f.name) if f.name in present else pl.lit(None, pl.String).alias(f.name) for f in fields])
    return records, _ragged(records.select("seq", widths.alias("_width")), width)


def _ragged(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """A `ragged-row` issue for every record whose line has more or fewer fields than the header."""
    return frame.filter(pl.col("_width") != width).select(
        pl.col("seq"),
        pl.lit(0, pl.Int32).alias("rank"),
        pl.lit("ragged-row").alias("error"),
        pl.format("the line has {} fields but the header has {}; check for a missing or extra tab",
                  pl.col("_width"), pl.lit(width)).alias("message"),
    ).cast(ISSUE_SCHEMA)


def _map_header(header: list[str], fields: tuple[Field, ...], header_line: int) -> tuple[list[Note], dict[str, int]]:
    known = {f.name for f in fields}
    positions: dict[str, int] = {}
    notes: list[Note] = []
    for index, name in enumerate(header):
        if name in positions:
            notes.append(Note("unknown-column", f"column {index + 1} '{name}' repeats an earlier column; only the first is read", header_line))
        elif name in known:
            positions[name] = index
        else:
            shown = name if name else "(blank)"
            notes.append(Note("unknown-column", f"column {index + 1} '{shown}' is not a column of this feed type and is ignored", header_line))
    missing = [f.name for f in fields if f.column_required and f.name not in positions]
    if missing:
        raise FeedError("missing-column", f"the header on line {header_line} lacks the required column"
                        f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}", line=header_line)
    return notes, positions


def _field_value(position: int | None, field: Field) -> pl.Expr:
    if position is None:
        return pl.lit(None, pl.String).alias(field.name)
    value = pl.col("_fields").list.get(position, null_on_oob=True).str.strip_chars(" ")
    return pl.when(value.str.len_bytes() > 0).then(value).alias(field.name)

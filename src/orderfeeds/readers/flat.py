"""Flat (tab-delimited) feeds to a raw frame of String columns (SPEC §2.1)."""

from __future__ import annotations

import polars as pl

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FLAT_FIELDS, FeedType, Field
from orderfeeds.readers.model import ISSUE_SCHEMA, Note, RawFeed, record_columns
from orderfeeds.readers.text import is_blank, split_lines

TEMPLATE_PREFIX = "TemplateType="


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


def read_flat(text: str, feed_type: FeedType | None) -> RawFeed:
    """Cut the text into records; ragged rows become issues, never shifted rows."""
    lines = split_lines(text)
    content = lines.filter(~is_blank(pl.col("text")))
    if content.height == 0:
        raise FeedError("unknown-feed-type", "the file has no header and no records")
    template = None
    first = content.row(0, named=True)
    if first["text"].lstrip(" ").startswith(TEMPLATE_PREFIX):
        template = first["text"]
        content = content.slice(1)
    if content.height == 0:
        raise FeedError("missing-column", "the file has a template line but no header line")
    header_row = content.row(0, named=True)
    header_line = header_row["line"]
    header = [name.strip(" ").lstrip("\ufeff") for name in header_row["text"].split("\t")]
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
    body = content.slice(1).with_columns(pl.col("text").str.split("\t").alias("_fields"))
    frame = body.select(
        *record_columns(body.height, pl.col("line")),
        *[_field_value(positions.get(f.name), f) for f in fields],
        pl.col("_fields").list.len().alias("_width"),
    )
    issues = frame.filter(pl.col("_width") != len(header)).select(
        pl.col("seq"),
        pl.lit(0, pl.Int32).alias("rank"),
        pl.lit("ragged-row").alias("error"),
        pl.format("the line has {} fields but the header has {}; check for a missing or extra tab",
                  pl.col("_width"), pl.lit(len(header))).alias("message"),
    ).cast(ISSUE_SCHEMA)
    return RawFeed(feed_type=feed_type, fields=fields, frame=frame.drop("_width"), issues=issues,
                   notes=tuple(notes), column_order=tuple(positions))


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

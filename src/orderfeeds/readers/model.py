"""The raw feed: what every reader hands to validation."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from orderfeeds.feedtypes import FeedType, Field

# Row issues: one row per problem found with a record. `rank` orders problems
# so the first failed check names the record's error (SPEC §5).
ISSUE_SCHEMA = {"seq": pl.UInt32, "rank": pl.Int32, "error": pl.String, "message": pl.String}

ID_COLUMNS = ("seq", "record", "line", "item-index")

# The engine of the lazy queries that read and validate: polars' default runs them on its streaming engine, which
# for these short queries costs about 6% more time and 70 MB more peak on the 1M-message XML benchmark.
ENGINE = "in-memory"


def record_columns(n: int, line: pl.Expr, record: pl.Expr | None = None, item_index: pl.Expr | None = None,
                   first: int = 0) -> list[pl.Expr]:
    """The identity every record carries through the pipeline.

    `seq` is the 0-based input position (the join key inside the library), counted from
    `first` when a feed is read in pieces; `record`, `line` and `item-index` are what the
    report shows a person.
    """
    return [
        pl.int_range(first, first + n, dtype=pl.UInt32).alias("seq"),
        (record if record is not None else pl.int_range(first + 1, first + n + 1, dtype=pl.Int64)).alias("record"),
        line.cast(pl.Int64).alias("line"),
        (item_index if item_index is not None else pl.lit(1, pl.Int32)).cast(pl.Int32).alias("item-index"),
    ]


@dataclass(frozen=True)
class Note:
    """A file-level note that belongs to no record (a record-0 report line)."""

    error: str
    message: str
    line: int | None = None


@dataclass(frozen=True)
class RawFeed:
    """Records as text: ID_COLUMNS, then one String column per field (null when blank)."""

    feed_type: FeedType
    fields: tuple[Field, ...]
    frame: pl.DataFrame
    issues: pl.DataFrame
    notes: tuple[Note, ...] = ()
    # Field names in the order the file has them; validation ranks problems by it.
    column_order: tuple[str, ...] = ()


# A piece size that never cuts a feed: readers asked for it give the feed in one piece.
UNCHUNKED = 2**62


def joined(pieces: list[RawFeed]) -> RawFeed:
    """The pieces of one feed (see `iter_feed`) as one RawFeed: what reading it whole gives."""
    first = pieces[0]
    if len(pieces) == 1:
        return first
    # Not rechunked: copying every string column into one buffer would cost far more memory than the frame.
    return RawFeed(feed_type=first.feed_type, fields=first.fields,
                   frame=pl.concat([p.frame for p in pieces], rechunk=False),
                   issues=pl.concat([p.issues for p in pieces]),
                   notes=first.notes, column_order=first.column_order)

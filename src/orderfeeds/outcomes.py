"""Outcomes: one report row per input record, from issues and rule results (SPEC §5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from orderfeeds import catalogue
from orderfeeds.feedtypes import FeedType
from orderfeeds.readers.model import Note, RawFeed

REPORT_COLUMNS = ("original-record-number", "line", "item-index", "order-id", "order-item-id",
                  "status", "error-code", "error-name", "error-message")
REPORT_SCHEMA = {
    "original-record-number": pl.Int64, "line": pl.Int64, "item-index": pl.Int32, "order-id": pl.String,
    "order-item-id": pl.String, "status": pl.String, "error-code": pl.Int64, "error-name": pl.String,
    "error-message": pl.String,
}


@dataclass
class FeedResult:
    """Everything the reports of one feed say; renderers only format it."""

    name: str
    sha256: str
    as_of: str
    feed_type: FeedType | None
    rows: pl.DataFrame  # REPORT_SCHEMA; record-0 notes first, then one row per record
    fatal: Note | None = None
    cancellations_counting: int = 0
    refunded: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    xml: bool = False  # XML feeds get the XML processing report
    merchant_identifier: str | None = None

    @property
    def records(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("original-record-number") > 0)

    def count(self, status: str) -> int:
        return self.records.filter(pl.col("status") == status).height

    @property
    def exit_code(self) -> int:
        """SPEC §7 for one feed: 3 rejected whole, 1 some records rejected, else 0."""
        if self.fatal is not None:
            return 3
        return 1 if self.count("Error") else 0


def note_rows(notes: tuple[Note, ...] | list[Note]) -> pl.DataFrame:
    """Record-0 report lines for file-level notes."""
    frame = pl.DataFrame(
        {"line": [n.line for n in notes], "error": [n.error for n in notes], "message": [n.message for n in notes]},
        schema={"line": pl.Int64, "error": pl.String, "message": pl.String},
    )
    return _coded(frame.with_columns(
        pl.lit(0, pl.Int64).alias("original-record-number"),
        pl.lit(None, pl.Int32).alias("item-index"),
        pl.lit(None, pl.String).alias("order-id"),
        pl.lit(None, pl.String).alias("order-item-id"),
    ))


def _coded(frame: pl.DataFrame) -> pl.DataFrame:
    """Add code and status from the catalogue; a row without error is a Success."""
    joined = frame.join(catalogue.as_frame(), on="error", how="left", maintain_order="left")
    return joined.select(
        "original-record-number", "line", "item-index", "order-id", "order-item-id",
        pl.when(pl.col("error").is_null()).then(pl.lit("Success")).otherwise(pl.col("severity")).alias("status"),
        "error-code", pl.col("error").alias("error-name"), pl.col("message").alias("error-message"),
    ).cast(REPORT_SCHEMA)


def assemble_rows(raw: RawFeed, issues: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """One row per record, in input order: validation issues first, then the rule outcome."""
    shown = {f.canonical: f.name for f in raw.fields}

    def as_given(canonical: str, merchant: str) -> pl.Expr:
        # A record that names the order by the seller's own id shows that id.
        named = [pl.col(shown[c]) for c in (canonical, merchant) if c in shown]
        return (pl.coalesce(named) if named else pl.lit(None, pl.String)).alias(canonical)

    identity = raw.frame.select(
        "seq", pl.col("record").alias("original-record-number"), "line", "item-index",
        as_given("order-id", "merchant-order-id"), as_given("order-item-id", "merchant-order-item-id"),
    )
    # Several problems with one record: the first by rank names the error, all are listed.
    found = issues.sort("seq", "rank", maintain_order=True).group_by("seq", maintain_order=True).agg(
        pl.col("error").first(), pl.col("message").unique(maintain_order=True).str.join("; "))
    decided = pl.concat([found, outcomes.select("seq", "error", "message")], how="vertical_relaxed")
    rows = identity.join(decided, on="seq", how="left", maintain_order="left")
    return _coded(rows)


def fatal_result(name: str, sha256: str, as_of: str, feed_type: FeedType | None, note: Note) -> FeedResult:
    """A feed rejected whole: one record-0 line carrying the failure; nothing applied."""
    return FeedResult(name=name, sha256=sha256, as_of=as_of, feed_type=feed_type, rows=note_rows([note]), fatal=note)


def combined(parts: list[FeedResult]) -> FeedResult:
    """One feed's result from the results of its pieces, in file order (see `pipeline.advance`)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    refunded: dict[str, dict[str, Decimal]] = {}
    timings: dict[str, float] = {}
    for part in parts:
        for currency, sums in part.refunded.items():
            total = refunded.setdefault(currency, {})
            for component, amount in sums.items():
                total[component] = total.get(component, Decimal(0)) + Decimal(amount)
        for stage, seconds in part.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return FeedResult(
        name=first.name, sha256=first.sha256, as_of=first.as_of, feed_type=first.feed_type,
        rows=pl.concat([part.rows for part in parts]),
        cancellations_counting=sum(part.cancellations_counting for part in parts),
        refunded={currency: {k: str(v) for k, v in sums.items()} for currency, sums in sorted(refunded.items())},
        timings=timings, xml=first.xml, merchant_identifier=first.merchant_identifier,
    )


def refund_totals(records: pl.DataFrame, outcomes: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Money moved by the applied adjustments, per currency and component, as exact strings.

    Positive is paid to the buyer; "net" is the sum of all components.
    """
    from orderfeeds.apply.adjustment import COMPONENTS

    warnings = [e.name for e in catalogue.CATALOGUE if e.severity is catalogue.Severity.WARNING]
    # The currency the money moved in, as apply found it: a record that names none moves its line's.
    applied = outcomes.filter(pl.col("error").is_null() | pl.col("error").is_in(warnings)).select("seq", "currency")
    present = [c for c in COMPONENTS if c in records.columns]
    moved = records.drop("currency", strict=False).join(applied, on="seq", how="inner")
    if moved.height == 0:
        return {}
    sums = (moved.group_by("currency").agg(*[pl.col(c).fill_null(0).sum() for c in present])
            .with_columns(pl.sum_horizontal(present).alias("net")).sort("currency"))
    return {row["currency"]: {k: str(v) for k, v in row.items() if k != "currency"} for row in sums.iter_rows(named=True)}

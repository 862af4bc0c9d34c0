"""The only place that sequences the stages: read → validate → apply → report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from orderfeeds.apply import Applied, apply_records, empty_history
from orderfeeds.errors import FeedError, OrderfeedsError
from orderfeeds.feedtypes import FeedType
from orderfeeds.outcomes import FeedResult, assemble_rows, combined, fatal_result, note_rows, refund_totals
from orderfeeds.readers import (
    DEFAULT_MAX_BYTES,
    RawFeed,
    feed_head,
    feed_sha256,
    iter_feed,
    looks_like_xml,
)
from orderfeeds.readers.model import Note
from orderfeeds.readers.xml import detect_xml, sniff_xml
from orderfeeds.report import write_reports
from orderfeeds.snapshot import read_snapshot, write_snapshot
from orderfeeds.validate import ValidRecords, validate_records


@dataclass(frozen=True)
class ProcessOptions:
    """Settings shared by every feed of one call."""

    feed_type: FeedType | None = None
    encoding: str = "cp1252"
    max_bytes: int = DEFAULT_MAX_BYTES
    as_of: str = ""
    # A feed is read, validated and applied this many records at a time (0: whole; None: by its format,
    # CHUNK_RECORDS or XML_CHUNK_RECORDS), by `process` and `run`.
    chunk_records: int | None = None

    def stamped(self) -> ProcessOptions:
        if self.as_of:
            return self
        return replace(self, as_of=datetime.now(UTC).replace(microsecond=0).isoformat())


@dataclass
class ProcessRun:
    """What one `process` call did: a result per feed and the state after all of them."""

    results: list[FeedResult]
    state: pl.DataFrame
    report_files: list[dict[str, Path]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.results), default=0)


@dataclass
class RunState:
    """What carries from one feed to the next within a call: order lines, applied
    adjustments (for duplicate checks) and the hashes of files already applied."""

    lines: pl.DataFrame
    history: pl.DataFrame = field(default_factory=empty_history)
    seen: dict[str, str] = field(default_factory=dict)


def process_feed(data: bytes, name: str, lines: pl.DataFrame,
                 options: ProcessOptions = ProcessOptions()) -> tuple[FeedResult, pl.DataFrame]:
    """One feed against order lines: its result and the lines after it (unchanged if rejected whole)."""
    state = RunState(lines=lines)
    result = advance(data, name, state, options)
    return result, state.lines


@dataclass
class Prepared:
    """A feed read and validated, not yet applied: what `conclude` needs, and which orders it names."""

    name: str
    sha256: str
    as_of: str
    raw: RawFeed
    valid: ValidRecords
    timings: dict[str, float]
    xml: bool = False
    merchant_identifier: str | None = None

    def order_keys(self) -> tuple[pl.Series, pl.Series]:
        """Order ids and merchant order ids the records name: the state they need."""
        records = self.valid.records
        merchant = (records.get_column("merchant-order-id") if "merchant-order-id" in records.columns
                    else pl.Series(dtype=pl.String))
        return records.get_column("order-id").drop_nulls().unique(), merchant.drop_nulls().unique()


class _Clock:
    """Seconds per stage, for the summary's timings."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.last = now


def mark_source(result: FeedResult, source: bytes | Path) -> FeedResult:
    """Note whether the feed is XML (and whose), which decides the processing report's format."""
    head = feed_head(source)
    result.xml = looks_like_xml(head)
    if result.xml:
        result.merchant_identifier = sniff_xml(head).merchant_identifier
    return result


def rejected(name: str, data: bytes | Path, sha256: str, as_of: str, note: Note,
             feed_type: FeedType | None = None) -> FeedResult:
    """The result of a feed rejected whole, in the format its own kind of report takes."""
    return mark_source(fatal_result(name, sha256, as_of, feed_type, note), data)


def rejected_by(exc: FeedError, data: bytes | Path, sha256: str, name: str, options: ProcessOptions) -> FeedResult:
    """The result of a feed whose reading raised `exc`: rejected whole, in its own kind of report."""
    head = feed_head(data)
    detected = options.feed_type or (detect_xml(head) if looks_like_xml(head) else None)
    return rejected(name, data, sha256, options.as_of, Note(exc.name, exc.message, exc.line), detected)


def prepared_pieces(data: bytes | Path, sha256: str, name: str, options: ProcessOptions) -> Iterator[Prepared]:
    """The feed read and validated `options.chunk_records` records at a time, in file order.

    Raises FeedError, possibly after some pieces: the caller discards what it did with them.
    """
    pieces = iter_feed(data, feed_type=options.feed_type, encoding=options.encoding,
                       max_bytes=options.max_bytes, chunk_records=options.chunk_records)
    merchant_identifier: str | None = None
    while True:
        timings: dict[str, float] = {}
        clock = _Clock(timings)
        raw = next(pieces, None)
        if raw is None:
            return
        clock.lap("read")
        valid = validate_records(raw)
        clock.lap("validate")
        xml = raw.feed_type.is_xml
        if xml and merchant_identifier is None:  # the file's head, read once for all its pieces
            merchant_identifier = sniff_xml(feed_head(data)).merchant_identifier
        piece = Prepared(name, sha256, options.as_of, raw, valid, timings, xml, merchant_identifier)
        # Dropped before the next piece is read: one piece's records are alive at a time.
        del raw, valid
        yield piece
        del piece


def conclude(prepared: Prepared, lines: pl.DataFrame, history: pl.DataFrame) -> tuple[FeedResult, Applied]:
    """Apply a prepared feed to `lines` (at least the lines of the orders it names)."""
    clock = _Clock(prepared.timings)
    raw, valid = prepared.raw, prepared.valid
    labels = {f.canonical: f.name for f in raw.fields}
    applied = apply_records(raw.feed_type, valid.records, lines, history, feed=prepared.name, labels=labels)
    clock.lap("apply")
    rows = pl.concat([note_rows(raw.notes), assemble_rows(raw, valid.issues, applied.outcomes)])
    result = FeedResult(
        name=prepared.name, sha256=prepared.sha256, as_of=prepared.as_of, feed_type=raw.feed_type, rows=rows,
        cancellations_counting=int(applied.outcomes.get_column("counts-toward-rate").sum() or 0),
        refunded={} if raw.feed_type.is_cancellation else refund_totals(valid.records, applied.outcomes),
        timings=prepared.timings, xml=prepared.xml, merchant_identifier=prepared.merchant_identifier,
    )
    clock.lap("outcomes")
    return result, applied


def advance(data: bytes | Path, name: str, state: RunState, options: ProcessOptions) -> FeedResult:
    """Process one feed (bytes or a file) against `state` and advance the state; a rejected file changes nothing.

    The same bytes are never applied twice in one call (SPEC §4.4).
    """
    options = options.stamped()
    sha256 = feed_sha256(data)
    if sha256 in state.seen:
        note = Note("duplicate-feed", f"the same file was already processed as {state.seen[sha256]} in this run; "
                    "nothing was applied again")
        return rejected(name, data, sha256, options.as_of, note)
    lines, history, parts = state.lines, state.history, []
    try:
        # Each piece is applied to the state the pieces before it left, as the records would be one by
        # one; the state only changes once every piece is read, so a broken file applies nothing.
        for prepared in prepared_pieces(data, sha256, name, options):
            part, applied = conclude(prepared, lines, history)
            lines, history = applied.state, pl.concat([history, applied.history])
            parts.append(part)
            del prepared, applied
    except FeedError as exc:
        return rejected_by(exc, data, sha256, name, options)
    state.lines, state.history = lines, history
    state.seen[sha256] = name
    return combined(parts)


def process_feeds(feeds: list[Path], snapshot: Path, out_dir: Path, options: ProcessOptions = ProcessOptions(),
                  snapshot_out: Path | None = None) -> ProcessRun:
    """`orderfeeds process`: apply feeds in the order given to a snapshot file; write reports.

    Raises SnapshotError (nothing processed) if the snapshot is bad; a bad feed is a
    fatal report instead, and the next feed still runs.
    """
    options = options.stamped()
    state = RunState(lines=read_snapshot(snapshot))
    run = ProcessRun(results=[], state=state.lines)
    for path in feeds:
        try:
            # The state only changes once the whole feed has been read, so a failed read applies nothing.
            result = advance(path, path.name, state, options)
        except OSError as exc:
            raise OrderfeedsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        started = time.perf_counter()
        run.report_files.append(write_reports(result, out_dir))
        result.timings["report"] = time.perf_counter() - started
        run.results.append(result)
    run.state = state.lines
    if snapshot_out is not None:
        write_snapshot(run.state, snapshot_out)
    return run

"""`orderfeeds run`: the cron job over the spool folder, exactly once and crash-safe (DESIGN §7)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from orderfeeds.apply import empty_history
from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.errors import FeedError
from orderfeeds.outcomes import FeedResult, combined
from orderfeeds.pipeline import ProcessOptions, conclude, prepared_pieces, rejected, rejected_by
from orderfeeds.readers import feed_sha256
from orderfeeds.readers.model import Note
from orderfeeds.report import atomic_write, render_reports
from orderfeeds.state.store import DEFAULT_URL, FeedEntry, StateStore, open_store

FOLDERS = ("inbox", "processing", "done", "failed", "reports")
MARKER = ".done"
SETTLE_SECONDS = 1.0
CRASH_ENV = "ORDERFEEDS_CRASH_AT"


class Locked(Exception):
    """Another run holds the spool's lock."""


@dataclass(frozen=True)
class RunOptions:
    root: Path = Path("feeds")
    state_url: str = DEFAULT_URL
    process: ProcessOptions = ProcessOptions()
    settle_seconds: float = SETTLE_SECONDS


@dataclass
class FeedRun:
    """What happened to one spool file."""

    name: str
    outcome: str  # applied | rejected | duplicate | vanished
    entry: FeedEntry | None
    result: FeedResult | None = None
    resumed: bool = False  # committed by a run that was stopped; this run finished it

    @property
    def exit_code(self) -> int:
        if self.outcome in ("rejected", "duplicate"):
            return 3
        if self.entry is not None and self.entry.errors:
            return 1
        return 0


@dataclass
class RunReport:
    feeds: list[FeedRun] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return max((f.exit_code for f in self.feeds), default=0)


def _checkpoint(point: str) -> None:
    """Fault injection for the crash tests: die here, as a power cut would."""
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), 9)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(source: Path, folder: Path, name: str | None = None) -> Path:
    """Rename into `folder` without overwriting an earlier file of the same name."""
    target = folder / (name or source.name)
    counter = 1
    while target.exists():
        counter += 1
        target = folder / f"{Path(name or source.name).stem}.{counter}{Path(name or source.name).suffix}"
    os.rename(source, target)
    _fsync_dir(folder)
    _fsync_dir(source.parent)
    return target


class _SpoolLock:
    def __init__(self, root: Path):
        self.path = root / ".lock"
        self.handle = None

    def __enter__(self) -> _SpoolLock:
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise Locked(f"another orderfeeds run holds {self.path}") from None
        return self

    def __exit__(self, *exc) -> None:
        assert self.handle is not None
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


def _claim_name(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{os.getpid()}~{name}"


def _original_name(claim: str) -> str:
    return claim.split("~", 1)[1] if "~" in claim else claim


def ready_files(inbox: Path, settle_seconds: float) -> list[Path]:
    """Inbox files that are complete, oldest first: a `.done` marker, or unchanged for a moment."""
    def listing() -> dict[Path, tuple[int, int]]:
        found = {}
        for path in inbox.iterdir():
            if path.name.startswith(".") or path.name.endswith(MARKER) or not path.is_file():
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    first = listing()
    marked = {p for p in first if p.with_name(p.name + MARKER).exists()}
    recent = [p for p, (_, mtime) in first.items() if p not in marked and time.time() - mtime / 1e9 < settle_seconds]
    if recent:
        # A writer may still be copying: look again after the settle time, keep what did not change.
        time.sleep(settle_seconds)
        second = listing()
        first = {p: v for p, v in first.items() if p in marked or second.get(p) == v}
    return sorted(first, key=lambda p: (first[p][1], p.name))


def _sweep(root: Path) -> None:
    """Remove what a killed run or a writer left behind: half-written report temporaries
    (never renamed, so never seen as reports) and `.done` markers whose feed is gone."""
    for temporary in (root / "reports").glob(".*.tmp"):
        temporary.unlink(missing_ok=True)
    for marker in (root / "inbox").glob("*" + MARKER):
        if not marker.with_name(marker.name[: -len(MARKER)]).exists():
            marker.unlink(missing_ok=True)


def run_spool(options: RunOptions, log: Callable[[str], None] = lambda line: None,
              progress: Callable[[str], None] | None = None) -> RunReport:
    """Process every ready feed in the inbox against the persistent state."""
    root = options.root
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    with _SpoolLock(root):
        _sweep(root)
        store = open_store(options.state_url, root)
        try:
            report = RunReport()
            for claimed in sorted((root / "processing").iterdir()):
                if claimed.is_file():
                    report.feeds.append(_handle(claimed, store, options, log, progress))
            for path in ready_files(root / "inbox", options.settle_seconds):
                try:
                    claimed = _move(path, root / "processing", _claim_name(path.name))
                except FileNotFoundError:
                    continue  # taken away while we looked: nothing was claimed
                marker = path.with_name(path.name + MARKER)
                marker.unlink(missing_ok=True)
                _checkpoint("claimed")
                report.feeds.append(_handle(claimed, store, options, log, progress))
            return report
        finally:
            store.close()


def _handle(claimed: Path, store: StateStore, options: RunOptions, log: Callable[[str], None],
            progress: Callable[[str], None] | None) -> FeedRun:
    """Process one claimed file, or finish it if a crashed run had committed it already."""
    root = options.root
    name = _original_name(claimed.name)
    entry = store.claimed(claimed.name)
    if entry is None:
        started = time.perf_counter()
        result, entry = _apply(claimed, name, store, options, progress)
        if entry is None:  # the file vanished before it could be read: nothing was claimed
            return FeedRun(name, "vanished", None)
        elapsed = time.perf_counter() - started
    else:
        result, elapsed = None, entry.seconds
    _checkpoint("after-commit")
    reports = store.reports_of(entry.id)
    for file_name, content in reports.items():
        target = root / "reports" / file_name
        if not target.exists() or target.read_bytes() != content:
            _checkpoint("before-report-rename")
            atomic_write(target, content)
            _checkpoint("after-report-rename")
    _checkpoint("before-done")
    _move(claimed, root / ("done" if entry.outcome == "applied" else "failed"), name)
    log(f"orderfeeds: feed={name} type={entry.feed_type or '-'} outcome={entry.outcome} records={entry.records} "
        f"success={entry.successful - entry.warnings} warning={entry.warnings} error={entry.errors} "
        f"seconds={elapsed:.3f}")
    return FeedRun(name, entry.outcome, entry, result, resumed=result is None)


def _apply(claimed: Path, name: str, store: StateStore, options: RunOptions,
           progress: Callable[[str], None] | None) -> tuple[FeedResult | None, FeedEntry | None]:
    started = time.perf_counter()
    try:
        # Hashed in chunks and, for XML, streamed again by the reader: the file is never held whole.
        sha256 = feed_sha256(claimed)
    except FileNotFoundError:
        return None, None
    data = claimed
    process = options.process.stamped()
    earlier = store.applied_feed(sha256)
    lines = pl.DataFrame()
    ledger = None
    acknowledged = pl.DataFrame()
    if earlier is not None:
        note = Note("duplicate-feed", f"the same file was already applied as {earlier.name} at "
                    f"{earlier.committed_at}; nothing was applied again")
        result, outcome = rejected(name, data, sha256, process.as_of, note), "duplicate"
    else:
        if progress:
            progress(f"{name}: reading, validating and applying")
        try:
            result, lines, ledger, acknowledged = _apply_pieces(data, sha256, name, store, process)
            outcome = "applied"
        except FeedError as exc:
            result, outcome = rejected_by(exc, data, sha256, name, process), "rejected"
    stem = Path(name).stem
    if store.report_stem_taken(stem):
        stem = f"{stem}.{claimed.name.split('~', 1)[0]}"
    reports = render_reports(result, stem)
    records = result.records
    entry = FeedEntry(
        id=0, name=name, claim=claimed.name, sha256=sha256,
        feed_type=result.feed_type.value if result.feed_type else None, outcome=outcome,
        records=records.height, successful=records.height - result.count("Error"), warnings=result.count("Warning"),
        errors=result.count("Error"), report_stem=stem, as_of=result.as_of, committed_at="",
        seconds=time.perf_counter() - started,
    )
    if progress:
        progress(f"{name}: committing")
    _checkpoint("before-commit")
    empty_ledger = pl.DataFrame(schema={"record": pl.Int64, "item-index": pl.Int32, "line": pl.Int64,
                                        "order-id": pl.String, "order-item-id": pl.String,
                                        "units-cancelled": pl.Int64, **{c: pl.Decimal(38, 2) for c in DELTA_COLUMNS},
                                        "merchant-adjustment-item-id": pl.String, "fingerprint": pl.String})
    committed = store.commit_feed(entry, lines if lines.height else _no_lines(),
                                  ledger if ledger is not None else empty_ledger,
                                  acknowledged, reports)
    return result, committed


def _apply_pieces(data: Path, sha256: str, name: str, store: StateStore, options: ProcessOptions,
                  ) -> tuple[FeedResult, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read, validate and apply a feed a piece at a time against the stored state: its result, the
    order lines it changed, its ledger rows and its acknowledged merchant ids, for one commit.

    Each piece loads only the orders no earlier piece loaded, so a line changed by one piece is
    seen changed by the next. Raises FeedError (nothing to commit) if the file is found broken.
    """
    state: pl.DataFrame | None = None
    history = empty_history()
    parts, touched, ledgers, acknowledged = [], [], [], []
    for prepared in prepared_pieces(data, sha256, name, options):
        order_ids, merchant_ids = prepared.order_keys()
        fresh = store.load_lines(order_ids, merchant_ids)
        if state is not None:
            # Orders are loaded whole, so an order an earlier piece loaded is in `state` with all its lines.
            fresh = fresh.filter(~pl.col("order-id").is_in(state.get_column("order-id").unique().implode()))
        history = pl.concat([history, store.load_history(fresh.get_column("order-id").unique())])
        # One chunk: apply's first lazy operation would otherwise copy the whole frame to make it one.
        state = fresh if state is None else pl.concat([state, fresh], rechunk=True)
        part, applied = conclude(prepared, state, history)
        state, history = applied.state, pl.concat([history, applied.history])
        parts.append(part)
        touched.append(pl.concat([applied.effects.select("order-id"), applied.merchant_ids.select("order-id")]))
        ids = prepared.valid.records.select("seq", "record", "item-index", "line")
        ledgers.append(applied.effects.join(ids, on="seq", how="left")
                       .join(applied.history.select("seq", "merchant-adjustment-item-id", "fingerprint"),
                             on="seq", how="left"))
        acknowledged.append(applied.merchant_ids.join(ids, on="seq", how="left"))
        del prepared, applied
    assert state is not None  # every feed read has at least one piece
    lines = state.join(pl.concat(touched).unique(), on="order-id", how="semi")
    return combined(parts), lines, pl.concat(ledgers), pl.concat(acknowledged)


def _no_lines() -> pl.DataFrame:
    from orderfeeds.snapshot import SNAPSHOT_COLUMNS

    return pl.DataFrame(schema={c: pl.String for c in SNAPSHOT_COLUMNS})

"""`orderfeeds run`, the cron job (SPEC §1, §4.4, §7; DESIGN §7), end to end.

Most tests drive the real `orderfeeds` console script in a subprocess (cwd = tmp_path), as cron
would; a few call `run_spool` in-process where the situation needs a hand inside the run (a
file that vanishes or changes while the run looks at it). Inbox files get old modification
times so the runner's 1 s settle wait never applies unless a test wants it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import orderfeeds.runner as runner
from orderfeeds.pipeline import ProcessOptions
from orderfeeds.runner import RunOptions, run_spool
from orderfeeds.snapshot import read_snapshot, write_snapshot
from orderfeeds.state import open_store
from orderfeeds.state.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "orders-snapshot.tsv"
CANCEL = (REPO / "samples" / "feeds" / "order-cancellation.txt").read_bytes()
ADJUST = (REPO / "samples" / "feeds" / "order-adjustment.txt").read_bytes()
AS_OF = "2026-11-28T06:00:00+00:00"
OLD = 1_600_000_000  # modification times far in the past: no settle wait

ADJUST_HEADER = ("order-id\torder-item-id\tadjustment-reason-code\tcurrency\titem-price-adj\titem-tax-adj\t"
                 "shipping-price-adj\tshipping-tax-adj\tgift-wrap-price-adj\tgift-wrap-tax-adj\tquantity-cancelled\n")
EUR_REFUND = "305-1112223-3334441\t30000000000002\tPriceError\tEUR\t10.00\t0.00\t0.00\t0.00\t0.00\t0.00\t0\n"
EUR_REFUND_5 = "305-1112223-3334441\t30000000000002\tPriceError\tEUR\t5.00\t0.00\t0.00\t0.00\t0.00\t0.00\t0\n"


def _console_script() -> str | None:
    local = Path(sys.executable).parent / "orderfeeds"
    return str(local) if local.exists() else shutil.which("orderfeeds")


BIN = _console_script()
pytestmark = pytest.mark.skipif(BIN is None, reason="the orderfeeds console script is not installed")


# ---------------------------------------------------------------- helpers


@pytest.fixture
def cli(tmp_path: Path):
    """Run the `orderfeeds` console script with cwd = tmp_path; returns the CompletedProcess."""

    def call(*args: str, crash: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != runner.CRASH_ENV}
        if crash:
            env[runner.CRASH_ENV] = crash
        return subprocess.run([BIN, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)

    return call


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The default spool folder `feeds/` (under tmp_path), with its inbox."""
    spool = tmp_path / "feeds"
    (spool / "inbox").mkdir(parents=True)
    return spool


@pytest.fixture
def imported(root: Path) -> Path:
    """The spool with the sample snapshot imported into its default state database (in-process)."""
    return import_sample(root)


def import_sample(root: Path) -> Path:
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        store.import_snapshot(read_snapshot(SAMPLE), SAMPLE.name, "0" * 64)
    finally:
        store.close()
    return root


def drop(root: Path, name: str, data: bytes, order: int = 0) -> Path:
    """Put a feed into the inbox with an old mtime (OLD + order): ready at once, oldest first by `order`."""
    path = root / "inbox" / name
    path.write_bytes(data)
    os.utime(path, (OLD + order, OLD + order))
    return path


def run_args(*extra: str) -> tuple[str, ...]:
    return ("run", "--as-of", AS_OF, *extra)


def listing(folder: Path) -> dict[str, bytes]:
    """Visible files of a folder by name, with their bytes."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def exported(root: Path, folder: Path, name: str = "export.tsv") -> bytes:
    """What `snapshot export` writes for the spool's state (the store read in-process)."""
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        lines = store.export_lines()
    finally:
        store.close()
    write_snapshot(lines, folder / name)
    return (folder / name).read_bytes()


def history(root: Path) -> list:
    """The feed registry, newest first."""
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        return store.feeds()
    finally:
        store.close()


def ledger_rows(root: Path) -> list[tuple]:
    """Every row of the effects ledger, in insertion order."""
    db = sqlite3.connect(root / "state.db")
    try:
        return db.execute("SELECT * FROM effects ORDER BY rowid").fetchall()
    finally:
        db.close()


def report_rows(path: Path) -> list[dict[str, str]]:
    """A NAME.report.tsv as dicts (all text)."""
    lines = path.read_text("utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def in_process_options(root: Path, settle: float = runner.SETTLE_SECONDS) -> RunOptions:
    return RunOptions(root=root, state_url=f"sqlite:///{root / 'state.db'}", process=ProcessOptions(as_of=AS_OF),
                      settle_seconds=settle)


# ---------------------------------------------------------------- the user walkthrough


def test_walkthrough_import_run_history_explain(cli, root: Path) -> None:
    """The operator's walkthrough: import the sample snapshot, drop the two sample flat feeds into
    feeds/inbox, run; every feed gets its three reports in feeds/reports and moves to feeds/done;
    `history` lists both newest first with their counts; `explain` shows an order's lines, state
    and the effects applied to it, naming the feed."""
    result = cli("snapshot", "import", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert "imported 13 order lines" in result.stdout
    drop(root, "order-cancellation.txt", CANCEL, 1)
    drop(root, "order-adjustment.txt", ADJUST, 2)

    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 1, result.stderr  # finished, some records rejected
    assert listing(root / "inbox") == {} and listing(root / "processing") == {}
    assert listing(root / "done") == {"order-adjustment.txt": ADJUST, "order-cancellation.txt": CANCEL}
    assert listing(root / "failed") == {}
    reports = root / "reports"
    assert sorted(listing(reports)) == sorted(
        f"{stem}.{kind}" for stem in ("order-cancellation", "order-adjustment")
        for kind in ("report.tsv", "processing-report.txt", "summary.json"))
    assert len(report_rows(reports / "order-cancellation.report.tsv")) == 13
    assert len(report_rows(reports / "order-adjustment.report.tsv")) == 12
    summary = json.loads((reports / "order-adjustment.summary.json").read_text())
    assert summary["feed"] == "order-adjustment.txt" and summary["as-of"] == AS_OF
    assert "order-cancellation.txt" in result.stdout and "order-adjustment.txt" in result.stdout

    shown = cli("history")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split("\t") for line in shown.stdout.strip().splitlines()]
    header, body = rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert "feed" in header and "outcome" in header
    assert [r["feed"] for r in body] == ["order-adjustment.txt", "order-cancellation.txt"]  # newest first
    assert all(r["outcome"] == "applied" for r in body)
    by_feed = {r["feed"]: r for r in body}
    for name in ("order-cancellation", "order-adjustment"):
        s = json.loads((reports / f"{name}.summary.json").read_text())
        assert int(by_feed[f"{name}.txt"]["records"]) == s["records"]
        assert int(by_feed[f"{name}.txt"]["rejected"]) == s["by-status"]["Error"]
        assert int(by_feed[f"{name}.txt"]["warnings"]) == s["by-status"]["Warning"]

    told = cli("explain", "111-2223334-4445551")
    assert told.returncode == 0, told.stderr
    assert "111-2223334-4445551" in told.stdout and "Shipped" in told.stdout and "20000000000002" in told.stdout
    effects = told.stdout.split("applied effects (")[1]
    assert effects.startswith("2)")  # records 1 and 2 of the adjustment feed were applied
    assert effects.count("order-adjustment.txt") == 2 and "29.99" in effects


def test_explain_of_an_unknown_order_says_so(cli, imported: Path) -> None:
    """`explain` of an order the state does not hold says so (exit 1), without a traceback."""
    result = cli("explain", "999-9999999-9999999")
    no_traceback(result)
    assert result.returncode == 1
    assert "999-9999999-9999999" in result.stderr and "not in the state" in result.stderr


def test_explain_by_the_sellers_order_id_shows_the_effects(cli, imported: Path, root: Path) -> None:
    """`explain DE-1002` (a merchant order id) shows the line and the refund applied to it,
    which the ledger keeps under Amazon's order id."""
    xml = (Path(__file__).resolve().parent.parent / "samples" / "feeds" / "payment-adjustment.xml").read_bytes()
    drop(root, "payment-adjustment.xml", xml, 1)
    no_traceback(cli(*run_args()))
    result = cli("explain", "DE-1002")
    assert result.returncode == 0, result.stderr
    assert "305-1112223-3334441" in result.stdout
    assert "applied effects (1):" in result.stdout
    assert "RMA-77002" in result.stdout and "25.00" in result.stdout


def test_empty_inbox_is_nothing_to_do(cli, imported: Path) -> None:
    """A run with an empty inbox says there is nothing to do and exits 0, registering nothing."""
    result = cli(*run_args())
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert history(imported) == []


def test_feeds_are_processed_oldest_first_not_by_name(cli, imported: Path) -> None:
    """Oldest file first: a cancellation dropped before an adjustment is applied first even
    though its name sorts last, so the adjustment sees the order it cancelled."""
    drop(imported, "z-cancellation.txt", CANCEL, 1)
    drop(imported, "a-adjustment.txt", ADJUST, 2)
    result = cli(*run_args())
    assert result.returncode == 1, result.stderr
    assert [e.name for e in reversed(history(imported))] == ["z-cancellation.txt", "a-adjustment.txt"]
    rows = report_rows(imported / "reports" / "a-adjustment.report.tsv")
    # record 10 refunds order 4445550, which the cancellation feed cancelled
    assert rows[9]["order-id"] == "111-2223334-4445550" and rows[9]["error-name"] == "already-cancelled"


def test_run_equals_the_stateless_process_command(cli, imported: Path, tmp_path: Path) -> None:
    """Exporting the state after `run` gives exactly the snapshot `process --write-snapshot` gives
    for the same feeds in the same order, and the per-record reports are byte-identical: one
    engine, persistent or not."""
    feeds = tmp_path / "given"
    feeds.mkdir()
    (feeds / "order-cancellation.txt").write_bytes(CANCEL)
    (feeds / "order-adjustment.txt").write_bytes(ADJUST)
    stateless = cli("process", str(feeds / "order-cancellation.txt"), str(feeds / "order-adjustment.txt"),
                    "--snapshot", str(SAMPLE), "--out", "process-out", "--as-of", AS_OF,
                    "--write-snapshot", "expected.tsv")
    assert stateless.returncode == 1, stateless.stderr

    drop(imported, "order-cancellation.txt", CANCEL, 1)
    drop(imported, "order-adjustment.txt", ADJUST, 2)
    assert cli(*run_args()).returncode == 1
    exported_file = cli("snapshot", "export", "actual.tsv")
    assert exported_file.returncode == 0, exported_file.stderr
    assert (tmp_path / "actual.tsv").read_bytes() == (tmp_path / "expected.tsv").read_bytes()

    for stem in ("order-cancellation", "order-adjustment"):
        for kind in ("report.tsv", "processing-report.txt"):
            ran = (imported / "reports" / f"{stem}.{kind}").read_bytes()
            assert ran == (tmp_path / "process-out" / f"{stem}.{kind}").read_bytes(), f"{stem}.{kind}"
        ran_summary = json.loads((imported / "reports" / f"{stem}.summary.json").read_text())
        processed = json.loads((tmp_path / "process-out" / f"{stem}.summary.json").read_text())
        ran_summary.pop("timings-seconds"), processed.pop("timings-seconds")
        assert ran_summary == processed


def test_export_is_deterministic_and_reimport_changes_nothing(cli, imported: Path, tmp_path: Path) -> None:
    """After a run: two exports are byte-identical; importing the export and exporting again gives
    the same bytes; and the export is a valid --snapshot for `process`."""
    drop(imported, "order-cancellation.txt", CANCEL, 1)
    drop(imported, "order-adjustment.txt", ADJUST, 2)
    assert cli(*run_args()).returncode == 1
    assert cli("snapshot", "export", "one.tsv").returncode == 0
    assert cli("snapshot", "export", "two.tsv").returncode == 0
    one = (tmp_path / "one.tsv").read_bytes()
    assert one == (tmp_path / "two.tsv").read_bytes()
    assert one != SAMPLE.read_bytes()  # the run did change the state
    assert cli("snapshot", "import", "one.tsv").returncode == 0
    assert cli("snapshot", "export", "three.tsv").returncode == 0
    assert (tmp_path / "three.tsv").read_bytes() == one
    (tmp_path / "feed.txt").write_bytes((ADJUST_HEADER + EUR_REFUND).encode())
    checked = cli("process", "feed.txt", "--snapshot", "one.tsv", "--out", "check", "--as-of", AS_OF)
    assert checked.returncode == 0, checked.stderr + checked.stdout


# ---------------------------------------------------------------- exactly once


def test_same_bytes_under_another_name_are_applied_once(cli, imported: Path, tmp_path: Path) -> None:
    """A file whose bytes were already applied, dropped again under another name, gets a
    duplicate-feed report naming the earlier feed, changes nothing (state and ledger), moves to
    failed/, is registered as a duplicate, and the run exits 3."""
    drop(imported, "a.txt", ADJUST, 1)
    assert cli(*run_args()).returncode == 1
    state, effects = exported(imported, tmp_path, "after-a.tsv"), ledger_rows(imported)

    drop(imported, "b.txt", ADJUST, 2)
    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 3
    assert exported(imported, tmp_path, "after-b.tsv") == state
    assert ledger_rows(imported) == effects
    assert listing(imported / "failed") == {"b.txt": ADJUST}
    assert listing(imported / "done") == {"a.txt": ADJUST}
    rows = report_rows(imported / "reports" / "b.report.tsv")
    assert len(rows) == 1
    assert rows[0]["original-record-number"] == "0" and rows[0]["error-name"] == "duplicate-feed"
    assert rows[0]["error-code"] == "90014" and "a.txt" in rows[0]["error-message"]
    summary = json.loads((imported / "reports" / "b.summary.json").read_text())
    assert summary["fatal"]["error-name"] == "duplicate-feed" and summary["records"] == 0
    assert [(e.name, e.outcome) for e in history(imported)] == [("b.txt", "duplicate"), ("a.txt", "applied")]


def test_same_file_again_under_the_same_name_keeps_the_first_reports(cli, imported: Path, tmp_path: Path) -> None:
    """The same file handed again under its own name is a duplicate too; its duplicate-feed
    report does not overwrite the first run's reports, and done/ keeps the first copy."""
    drop(imported, "a.txt", ADJUST, 1)
    assert cli(*run_args()).returncode == 1
    first_reports = listing(imported / "reports")
    state = exported(imported, tmp_path, "before.tsv")

    drop(imported, "a.txt", ADJUST, 2)
    result = cli(*run_args())
    assert result.returncode == 3, result.stderr
    assert exported(imported, tmp_path, "after.tsv") == state
    reports = listing(imported / "reports")
    assert {k: reports[k] for k in first_reports} == first_reports
    added = sorted(set(reports) - set(first_reports))
    assert len(added) == 3
    tsv = [name for name in added if name.endswith(".report.tsv")][0]
    assert report_rows(imported / "reports" / tsv)[0]["error-name"] == "duplicate-feed"
    assert listing(imported / "done") == {"a.txt": ADJUST}
    assert listing(imported / "failed") == {"a.txt": ADJUST}


def test_possible_duplicate_is_found_across_runs_through_the_ledger(cli, imported: Path, tmp_path: Path) -> None:
    """An adjustment identical to one applied by an earlier run (another feed file) is applied
    with a possible-duplicate warning naming that feed and record: the check uses the ledger."""
    drop(imported, "refund-1.txt", (ADJUST_HEADER + EUR_REFUND).encode(), 1)
    assert cli(*run_args()).returncode == 0
    drop(imported, "refund-2.txt", (ADJUST_HEADER + EUR_REFUND_5 + EUR_REFUND).encode(), 2)
    result = cli(*run_args())
    assert result.returncode == 0, result.stderr  # warnings only
    rows = report_rows(imported / "reports" / "refund-2.report.tsv")
    assert [r["status"] for r in rows] == ["Success", "Warning"]
    assert rows[1]["error-name"] == "possible-duplicate" and rows[1]["error-code"] == "90202"
    assert "refund-1.txt" in rows[1]["error-message"] and "record 1" in rows[1]["error-message"]
    exported(imported, tmp_path, "state.tsv")
    state = read_snapshot(tmp_path / "state.tsv").filter(pl.col("order-id") == "305-1112223-3334441")
    assert state.item(0, "item-price-refunded") == Decimal("25.00")  # 10 + 5 + 10: the warned one is applied


# ---------------------------------------------------------------- overlapping runs


def test_overlapping_run_exits_75_and_touches_nothing(cli, imported: Path) -> None:
    """While another process holds the spool lock (fcntl.flock on <root>/.lock), `run` exits 75 at
    once with a message, and leaves the inbox, the spool folders and the state untouched; once
    the lock is free the same feed is processed."""
    for folder in ("processing", "done", "failed", "reports"):
        (imported / folder).mkdir()
    feed = drop(imported, "a.txt", ADJUST, 1)
    db_before = (imported / "state.db").read_bytes()
    with open(imported / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        result = cli(*run_args())
        elapsed = time.monotonic() - started
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    no_traceback(result)
    assert result.returncode == 75
    assert "lock" in result.stderr
    assert elapsed < 30
    assert listing(imported / "inbox") == {"a.txt": ADJUST}
    assert feed.stat().st_mtime == OLD + 1
    for folder in ("processing", "done", "failed", "reports"):
        assert list((imported / folder).iterdir()) == []
    assert (imported / "state.db").read_bytes() == db_before
    assert cli(*run_args()).returncode == 1
    assert listing(imported / "done") == {"a.txt": ADJUST}


def test_second_run_while_the_first_is_working_exits_75(cli, imported: Path, tmp_path: Path) -> None:
    """Two runs at once: while run A is busy with the first feed (held at its commit by a write
    transaction, then frozen with SIGSTOP), run B exits 75 without claiming the second feed;
    A then finishes both feeds, each applied exactly once."""
    drop(imported, "a.txt", CANCEL, 1)
    drop(imported, "b.txt", ADJUST, 2)
    env = {k: v for k, v in os.environ.items() if k != runner.CRASH_ENV}
    other = sqlite3.connect(imported / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # A will wait at its commit (busy timeout 5 s)
    first = subprocess.Popen([BIN, *run_args()], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any((imported / "processing").glob("*")) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "run A ended before it could be paused"
        other.execute("ROLLBACK")
        claimed = sorted(p.name for p in (imported / "processing").iterdir())
        assert len(claimed) == 1 and claimed[0].endswith("a.txt")
        second = cli(*run_args())
        no_traceback(second)
        assert second.returncode == 75, second.stderr
        assert "lock" in second.stderr
        assert sorted(p.name for p in (imported / "processing").iterdir()) == claimed
        assert listing(imported / "inbox") == {"b.txt": ADJUST}
    finally:
        os.kill(first.pid, signal.SIGCONT)
        other.close()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 1, err
    assert listing(imported / "done") == {"a.txt": CANCEL, "b.txt": ADJUST}
    assert sorted((e.name, e.outcome) for e in history(imported)) == [("a.txt", "applied"), ("b.txt", "applied")]


# ---------------------------------------------------------------- bad state databases


def test_locked_state_database_exits_75_and_loses_nothing(cli, imported: Path, tmp_path: Path) -> None:
    """A state database locked by another program: `run` waits its busy timeout, then exits 75
    with a clear message, nothing committed and the feed kept (in processing/ or the inbox);
    the next run applies it exactly once."""
    drop(imported, "a.txt", ADJUST, 1)
    other = sqlite3.connect(imported / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        result = cli(*run_args())
    finally:
        other.execute("ROLLBACK")
        other.close()
    no_traceback(result)
    assert result.returncode == 75
    assert "locked" in result.stderr and "state.db" in result.stderr
    assert history(imported) == []
    kept = listing(imported / "processing") | listing(imported / "inbox")
    assert list(kept.values()) == [ADJUST]
    assert cli(*run_args()).returncode == 1
    assert listing(imported / "done") == {"a.txt": ADJUST}
    assert listing(imported / "processing") == {}
    assert [e.name for e in history(imported)] == ["a.txt"]


def test_newer_schema_database_is_refused_and_nothing_moves(cli, imported: Path) -> None:
    """A state database from a newer orderfeeds: `run` says so (naming the fix) and exits 2,
    without a traceback; the feed stays in the inbox and the database is not changed."""
    db = sqlite3.connect(imported / "state.db")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    drop(imported, "a.txt", ADJUST, 1)
    before = (imported / "state.db").read_bytes()
    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 2
    assert "newer" in result.stderr and "upgrade" in result.stderr
    assert listing(imported / "inbox") == {"a.txt": ADJUST}
    assert listing(imported / "processing") == {}
    assert (imported / "state.db").read_bytes() == before


def test_file_that_is_not_a_database_is_refused_and_nothing_moves(cli, root: Path) -> None:
    """A state file that is not a database: `run` and `snapshot export` say it is damaged and exit
    2, without a traceback; the feed stays in the inbox."""
    (root / "state.db").write_bytes(b"not a database\n" * 500)
    drop(root, "a.txt", ADJUST, 1)
    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 2
    assert "state.db" in result.stderr and ("damaged" in result.stderr or "not a database" in result.stderr)
    assert listing(root / "inbox") == {"a.txt": ADJUST}
    exported_file = cli("snapshot", "export", "out.tsv")
    no_traceback(exported_file)
    assert exported_file.returncode == 2


def test_damaged_database_gives_a_message_not_a_traceback(cli, imported: Path, damage_table) -> None:
    """A state database with a damaged table: every command says the database is damaged and
    exits non-zero without a traceback, and the feed is not lost."""
    damage_table(imported / "state.db", "order_lines")
    damage_table(imported / "state.db", "feeds")
    drop(imported, "a.txt", ADJUST, 1)
    for args in (run_args(), ("snapshot", "export", "out.tsv"), ("history",)):
        result = cli(*args)
        no_traceback(result)
        assert result.returncode not in (0, 1), args
        assert "state.db" in result.stderr, args
    kept = listing(imported / "processing") | listing(imported / "inbox")
    assert list(kept.values()) == [ADJUST]


# ---------------------------------------------------------------- reports that cannot be written


def test_reports_folder_without_write_permission(cli, imported: Path, tmp_path: Path) -> None:
    """A reports folder the job may not write (mode 0500): a clear message, no traceback, the
    committed feed stays in processing/; after the permission is fixed the next run writes its
    reports and moves it to done/ without applying it again. Skipped when running as root,
    where the mode does not stop writing (the next tests cover the same path another way)."""
    reports = imported / "reports"
    reports.mkdir()
    reports.chmod(0o500)
    try:
        probe = reports / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: mode 0500 does not stop writing (covered by the occupied-path tests)")
        drop(imported, "a.txt", ADJUST, 1)
        result = cli(*run_args())
        no_traceback(result)
        assert result.returncode not in (0, 1)
        assert "processing" in result.stderr
    finally:
        reports.chmod(0o755)
    assert list(listing(imported / "processing").values()) == [ADJUST]
    assert [e.name for e in history(imported)] == ["a.txt"]
    effects = ledger_rows(imported)
    assert cli(*run_args()).returncode in (0, 1)
    assert listing(imported / "done") == {"a.txt": ADJUST} and listing(imported / "processing") == {}
    assert len(listing(reports)) == 3
    assert ledger_rows(imported) == effects and len(history(imported)) == 1


def test_report_path_that_cannot_be_written_keeps_the_feed_in_processing(cli, imported: Path, tmp_path: Path) -> None:
    """A report file that cannot be written (its path is taken by a folder, which stops root too):
    `run` gives a clear message naming the path, exits 2 without a traceback, and leaves the
    committed feed in processing/; once the path is free the next run finishes it: reports
    written, file in done/, applied exactly once, same state as an uninterrupted run."""
    reports = imported / "reports"
    (reports / "a.report.tsv").mkdir(parents=True)
    drop(imported, "a.txt", ADJUST, 1)
    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 2
    assert "a.report.tsv" in result.stderr and "processing" in result.stderr
    assert list(listing(imported / "processing").values()) == [ADJUST]
    assert listing(imported / "done") == {}
    assert [e.name for e in history(imported)] == ["a.txt"]
    effects = ledger_rows(imported)

    (reports / "a.report.tsv").rmdir()
    assert cli(*run_args()).returncode in (0, 1)
    assert listing(imported / "done") == {"a.txt": ADJUST} and listing(imported / "processing") == {}
    assert sorted(listing(reports)) == ["a.processing-report.txt", "a.report.tsv", "a.summary.json"]
    assert ledger_rows(imported) == effects and len(history(imported)) == 1
    assert len(report_rows(reports / "a.report.tsv")) == 12


def test_reports_folder_replaced_by_a_file_after_a_crash(cli, imported: Path, tmp_path: Path) -> None:
    """A run killed right after its commit leaves the feed in processing/; if reports/ is then not
    a folder, the next run says so (exit 2, no traceback) and keeps the feed there; once the
    folder is back, a run re-renders the reports from the state and finishes the move."""
    drop(imported, "a.txt", ADJUST, 1)
    killed = cli(*run_args(), crash="after-commit")
    assert killed.returncode == -signal.SIGKILL
    reports = imported / "reports"
    shutil.rmtree(reports)
    reports.write_bytes(b"not a folder")
    result = cli(*run_args())
    no_traceback(result)
    assert result.returncode == 2
    assert "reports" in result.stderr
    assert list(listing(imported / "processing").values()) == [ADJUST]
    reports.unlink()
    reports.mkdir()
    assert cli(*run_args()).returncode in (0, 1)
    assert listing(imported / "done") == {"a.txt": ADJUST}
    assert sorted(listing(reports)) == ["a.processing-report.txt", "a.report.tsv", "a.summary.json"]
    assert len(history(imported)) == 1


# ---------------------------------------------------------------- files that vanish or change (in-process)


class _Clock:
    """Stands in for the runner's `time` module: real clocks, a sleep that runs a hook instead of waiting."""

    def __init__(self, during_sleep=lambda: None):
        self.sleeps: list[float] = []
        self.during_sleep = during_sleep
        self.time = time.time
        self.perf_counter = time.perf_counter

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.during_sleep()


def test_marker_file_is_taken_at_once(imported: Path, monkeypatch) -> None:
    """A just-written file with its NAME.done marker is taken without the settle wait, and the
    marker is removed once the file is claimed."""
    feed = imported / "inbox" / "a.txt"
    feed.write_bytes(ADJUST)  # fresh mtime
    (imported / "inbox" / "a.txt.done").write_bytes(b"")
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    report = run_spool(in_process_options(imported))
    assert clock.sleeps == []
    assert [f.name for f in report.feeds] == ["a.txt"]
    assert listing(imported / "inbox") == {} and listing(imported / "done") == {"a.txt": ADJUST}


def test_fresh_file_that_stays_the_same_is_taken_after_the_settle_time(imported: Path, monkeypatch) -> None:
    """A file modified within the settle time and without a marker is looked at twice, the settle
    time apart; unchanged, it is processed in the same run."""
    (imported / "inbox" / "a.txt").write_bytes(ADJUST)
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    report = run_spool(in_process_options(imported))
    assert clock.sleeps == [runner.SETTLE_SECONDS]
    assert [f.outcome for f in report.feeds] == ["applied"]


def test_file_still_changing_is_left_for_the_next_run(imported: Path, monkeypatch, tmp_path: Path) -> None:
    """A file that changes while the run checks it (a writer still copying) is not taken: it stays
    in the inbox, nothing is registered; the next run takes the complete file and applies it
    whole (all 12 records), not the half seen first."""
    feed = imported / "inbox" / "a.txt"
    half = ADJUST[: len(ADJUST) // 2]
    feed.write_bytes(half)

    def writer_finishes() -> None:
        feed.write_bytes(ADJUST)
        os.utime(feed, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))

    monkeypatch.setattr(runner, "time", _Clock(writer_finishes))
    report = run_spool(in_process_options(imported))
    assert report.feeds == []
    assert listing(imported / "inbox") == {"a.txt": ADJUST}
    assert history(imported) == [] and listing(imported / "processing") == {}

    monkeypatch.setattr(runner, "time", time)
    os.utime(feed, (OLD, OLD))
    report = run_spool(in_process_options(imported))
    assert [(f.name, f.outcome) for f in report.feeds] == [("a.txt", "applied")]
    assert history(imported)[0].records == 12


def test_file_vanishing_before_it_is_claimed_is_skipped(imported: Path, monkeypatch) -> None:
    """A file listed as ready but taken away before the run could claim it is skipped without an
    error; the other feeds of the run are processed normally."""
    drop(imported, "gone.txt", CANCEL, 1)
    drop(imported, "b.txt", ADJUST, 2)
    real = runner.ready_files

    def ready_then_vanish(inbox: Path, settle: float) -> list[Path]:
        found = real(inbox, settle)
        (inbox / "gone.txt").unlink()
        return found

    monkeypatch.setattr(runner, "ready_files", ready_then_vanish)
    report = run_spool(in_process_options(imported))
    assert [(f.name, f.outcome) for f in report.feeds] == [("b.txt", "applied")]
    assert report.exit_code == 1
    assert listing(imported / "processing") == {} and listing(imported / "done") == {"b.txt": ADJUST}
    assert [e.name for e in history(imported)] == ["b.txt"]


def test_file_vanishing_after_it_was_claimed_is_skipped(imported: Path, monkeypatch) -> None:
    """A claimed file removed from processing/ before it is read: nothing is registered for it, no
    reports are written, and the run carries on with the next feed."""
    drop(imported, "gone.txt", CANCEL, 1)
    drop(imported, "b.txt", ADJUST, 2)

    def remove_claimed(point: str) -> None:
        if point == "claimed":
            for path in (imported / "processing").iterdir():
                if path.name.endswith("gone.txt"):
                    path.unlink()

    monkeypatch.setattr(runner, "_checkpoint", remove_claimed)
    report = run_spool(in_process_options(imported))
    assert [f.name for f in report.feeds if f.entry is not None] == ["b.txt"]
    assert listing(imported / "processing") == {} and listing(imported / "done") == {"b.txt": ADJUST}
    assert [e.name for e in history(imported)] == ["b.txt"]
    assert not any(name.startswith("gone") for name in listing(imported / "reports"))


# ---------------------------------------------------------------- feeds in pieces


def test_run_in_pieces_commits_what_whole_feeds_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` reading, validating and applying every feed one record at a time (each piece loading only the
    orders no earlier piece loaded) writes the same reports, the same registry and the same state as whole."""
    from dataclasses import replace

    from orderfeeds.readers import xml as xml_reader

    monkeypatch.setattr(xml_reader, "CHUNK_MESSAGES", 1)  # XML pieces only come between the reader's chunks
    feeds = {name: (REPO / "samples" / "feeds" / name).read_bytes()
             for name in ("order-cancellation.txt", "order-adjustment.txt", "order-acknowledgement.xml",
                          "payment-adjustment.xml")}
    results = []
    for chunk_records in (0, 1):
        spool = tmp_path / str(chunk_records)
        (spool / "inbox").mkdir(parents=True)
        import_sample(spool)
        for order, (name, data) in enumerate(feeds.items()):
            drop(spool, name, data, order)
        options = in_process_options(spool)
        report = run_spool(replace(options, process=replace(options.process, chunk_records=chunk_records)))
        assert [feed.outcome for feed in report.feeds] == ["applied"] * len(feeds)
        registry = [(e.name, e.records, e.successful, e.warnings, e.errors) for e in history(spool)]
        results.append((listing(spool / "reports"), registry, exported(spool, tmp_path, f"{chunk_records}.tsv")))
    whole, pieces = results
    assert any(errors for *_, errors in whole[1]) and any(successful for _, _, successful, _, _ in whole[1])
    assert pieces[0].keys() == whole[0].keys()
    for name in whole[0]:
        shown = re.sub(rb'"timings-seconds": \{[^{}]*\}', b"", whole[0][name])
        assert re.sub(rb'"timings-seconds": \{[^{}]*\}', b"", pieces[0][name]) == shown, name
    assert pieces[1:] == whole[1:]

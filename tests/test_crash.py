"""Crash safety of `orderfeeds run` (DESIGN §7): killed at any step, run again, the result is
exactly that of an uninterrupted run — same exported snapshot, same feed registry, same ledger,
same report files, every feed in done/ or failed/ once, nothing left in the inbox or processing/.

The runner's fault-injection hook (env ORDERFEEDS_CRASH_AT=<point>) makes the process SIGKILL
itself at a named step; a SIGKILL cannot be caught, so nothing gets to clean up, as in a power
cut. Reports embed two wall-clock values that legitimately differ between any two runs (the
stage timings in NAME.summary.json and, in a duplicate-feed message, the time the earlier feed
was committed); they are masked before comparing, everything else must match byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import orderfeeds.runner as runner
from orderfeeds.pipeline import ProcessOptions
from orderfeeds.runner import RunOptions, run_spool
from orderfeeds.snapshot import read_snapshot, write_snapshot
from orderfeeds.state import open_store

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "orders-snapshot.tsv"
CANCEL = (REPO / "samples" / "feeds" / "order-cancellation.txt").read_bytes()
ADJUST = (REPO / "samples" / "feeds" / "order-adjustment.txt").read_bytes()
AS_OF = "2026-11-28T06:00:00+00:00"
OLD = 1_600_000_000  # old modification times: no settle wait

POINTS = ("claimed", "before-commit", "after-commit", "before-report-rename", "after-report-rename", "before-done")

ADJUST_HEADER = ("order-id\torder-item-id\tadjustment-reason-code\tcurrency\titem-price-adj\titem-tax-adj\t"
                 "shipping-price-adj\tshipping-tax-adj\tgift-wrap-price-adj\tgift-wrap-tax-adj\tquantity-cancelled\n")
EUR_REFUND = "305-1112223-3334441\t30000000000002\tPriceError\tEUR\t10.00\t0.00\t0.00\t0.00\t0.00\t0.00\t0\n"
EUR_REFUND_5 = "305-1112223-3334441\t30000000000002\tPriceError\tEUR\t5.00\t0.00\t0.00\t0.00\t0.00\t0.00\t0\n"

# The feeds of the per-step tests, oldest first: a cancellation, an adjustment, and the
# adjustment's bytes again under another name (a duplicate-feed).
STEP_FEEDS = (("cancel.txt", CANCEL), ("adjust.txt", ADJUST), ("adjust-copy.txt", ADJUST))
# The randomized test's feeds: a cancellation, a refund, that refund's bytes under another
# name (duplicate-feed), a feed repeating the refund (possible-duplicate through the ledger),
# that feed's bytes again, and a file of no known type (rejected whole). Duplicates and junk
# cost little to process, so they add crash points to every round cheaply.
REFUND_1 = (ADJUST_HEADER + EUR_REFUND).encode()
REFUND_2 = (ADJUST_HEADER + EUR_REFUND_5 + EUR_REFUND).encode()
RANDOM_FEEDS = (
    ("cancel.txt", CANCEL), ("refund-1.txt", REFUND_1), ("refund-1-copy.txt", REFUND_1),
    ("refund-2.txt", REFUND_2), ("junk.txt", b"hello\tworld\nthis is not a feed\n"),
    ("refund-2-copy.txt", REFUND_2),
)


def _console_script() -> str | None:
    local = Path(sys.executable).parent / "orderfeeds"
    return str(local) if local.exists() else shutil.which("orderfeeds")


BIN = _console_script()
pytestmark = pytest.mark.skipif(BIN is None, reason="the orderfeeds console script is not installed")


# ---------------------------------------------------------------- spool helpers


def new_spool(root: Path, feeds=STEP_FEEDS) -> Path:
    """A spool with the sample snapshot imported (in-process) and `feeds` in the inbox, oldest first."""
    (root / "inbox").mkdir(parents=True)
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        store.import_snapshot(read_snapshot(SAMPLE), SAMPLE.name, "0" * 64)
    finally:
        store.close()
    drop(root, feeds)
    return root


def drop(root: Path, feeds, first_order: int = 1) -> None:
    for order, (name, data) in enumerate(feeds, start=first_order):
        path = root / "inbox" / name
        path.write_bytes(data)
        os.utime(path, (OLD + order, OLD + order))


def run_cli(root: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    """`orderfeeds run --root ROOT` via the console script (cwd = the spool's parent)."""
    env = {k: v for k, v in os.environ.items() if k != runner.CRASH_ENV}
    if crash:
        env[runner.CRASH_ENV] = crash
    return subprocess.run([BIN, "run", "--root", root.name, "--as-of", AS_OF], cwd=root.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def files(folder: Path, hidden: bool = False) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and (hidden or not p.name.startswith("."))}


_COMMITTED_AT = re.compile(r"(already applied as .+? at )\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[+-]\d\d:\d\d|Z)?")


def normalised_report(name: str, content: bytes) -> object:
    """A report with its two wall-clock values masked (see the module docstring)."""
    text = _COMMITTED_AT.sub(r"\1<committed-at>", content.decode("utf-8"))
    if name.endswith(".summary.json"):
        summary = json.loads(text)
        summary.pop("timings-seconds", None)
        return summary
    return text


def outcome(root: Path) -> dict:
    """Everything a run leaves behind that must not depend on crashes and restarts."""
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        lines = store.export_lines()
        registry = [(e.id, e.name, e.feed_type, e.outcome, e.records, e.successful, e.warnings, e.errors,
                     e.report_stem, e.as_of) for e in store.feeds()]
    finally:
        store.close()
    write_snapshot(lines, root.parent / f"{root.name}-export.tsv")
    db = sqlite3.connect(root / "state.db")
    try:
        ledger = db.execute("SELECT * FROM effects ORDER BY rowid").fetchall()
        stored_reports = db.execute("SELECT feed_id, file_name FROM feed_reports ORDER BY feed_id, file_name").fetchall()
    finally:
        db.close()
    return {
        "snapshot": (root.parent / f"{root.name}-export.tsv").read_bytes(),
        "history": registry,
        "ledger": ledger,
        "stored-reports": stored_reports,
        "reports": {n: normalised_report(n, c) for n, c in files(root / "reports").items()},
        "done": files(root / "done"),
        "failed": files(root / "failed"),
        "inbox": files(root / "inbox", hidden=True),
        "processing": files(root / "processing", hidden=True),
    }


def assert_same(actual: dict, expected: dict, context: str) -> None:
    for key in expected:
        assert actual[key] == expected[key], f"{context}: {key} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def step_reference(tmp_path_factory) -> tuple[dict, int]:
    """The uninterrupted run of STEP_FEEDS (console script): its outcome and exit code."""
    root = new_spool(tmp_path_factory.mktemp("reference") / "feeds")
    result = run_cli(root)
    assert result.returncode == 3, result.stderr  # a duplicate-feed is among them
    done = outcome(root)
    assert done["inbox"] == {} and done["processing"] == {}
    assert sorted(done["done"]) == ["adjust.txt", "cancel.txt"] and sorted(done["failed"]) == ["adjust-copy.txt"]
    return done, result.returncode


# ---------------------------------------------------------------- one kill at each named step


def _target_feed_progress(root: Path, point: str, name: str, registered_before: int) -> None:
    """What a kill at `point` while handling feed `name` must have left on disk."""
    processing = list((root / "processing").iterdir())
    assert len(processing) == 1 and processing[0].name.endswith("~" + name), processing
    store = open_store(f"sqlite:///{root / 'state.db'}")
    try:
        registered = len(store.feeds())
    finally:
        store.close()
    stem = Path(name).stem
    reports = [n for n in files(root / "reports") if n.startswith(stem + ".")]
    if point in ("claimed", "before-commit"):
        assert registered == registered_before and reports == []
    else:
        assert registered == registered_before + 1
        expected_reports = {"after-commit": 0, "before-report-rename": 0, "after-report-rename": 1, "before-done": 3}
        assert len(reports) == expected_reports[point], reports


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_a_step_of_the_first_feed_then_run_again(point: str, tmp_path: Path, step_reference) -> None:
    """SIGKILL at `point` while the first feed (a cancellation) is handled; the files are where
    that step puts them; running again ends in exactly the uninterrupted run's snapshot,
    registry, ledger, reports and folders."""
    expected, _ = step_reference
    root = new_spool(tmp_path / "feeds")
    killed = run_cli(root, crash=point)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    _target_feed_progress(root, point, "cancel.txt", 0)
    assert sorted(files(root / "inbox")) == ["adjust-copy.txt", "adjust.txt"]

    again = run_cli(root)
    assert "Traceback" not in again.stderr, again.stderr
    assert again.returncode == 3, again.stderr
    assert_same(outcome(root), expected, f"killed at {point}")


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_a_step_of_a_duplicate_feed_then_run_again(point: str, tmp_path: Path, step_reference) -> None:
    """SIGKILL at `point` while a duplicate-feed (the adjustment's bytes under another name) is
    handled, after the first two feeds were applied by an earlier run; running again still ends
    in exactly the uninterrupted run's state: the duplicate is registered once, applies nothing,
    and lands in failed/ with its duplicate-feed reports."""
    expected, _ = step_reference
    root = new_spool(tmp_path / "feeds", STEP_FEEDS[:2])
    run_spool(RunOptions(root=root, state_url=f"sqlite:///{root / 'state.db'}", process=ProcessOptions(as_of=AS_OF)))
    drop(root, STEP_FEEDS[2:], first_order=3)
    killed = run_cli(root, crash=point)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    _target_feed_progress(root, point, "adjust-copy.txt", 2)

    again = run_cli(root)
    assert "Traceback" not in again.stderr, again.stderr
    assert again.returncode in (0, 1, 3), again.stderr
    assert_same(outcome(root), expected, f"killed at {point} on the duplicate")


def test_finishing_a_rejected_feed_after_a_crash_still_exits_3(tmp_path: Path) -> None:
    """The run that completes a duplicate-feed left committed by a killed run exits 3 (a feed was
    rejected whole, SPEC §7), like the uninterrupted run, so cron still sees the rejection."""
    root = new_spool(tmp_path / "feeds", (("adjust.txt", ADJUST),))
    run_spool(RunOptions(root=root, state_url=f"sqlite:///{root / 'state.db'}", process=ProcessOptions(as_of=AS_OF)))
    drop(root, (("adjust-copy.txt", ADJUST),), first_order=2)
    assert run_cli(root, crash="after-commit").returncode == -signal.SIGKILL
    again = run_cli(root)
    assert files(root / "failed") == {"adjust-copy.txt": ADJUST}
    assert again.returncode == 3, again.stdout + again.stderr


def test_run_killed_again_while_finishing_still_converges(tmp_path: Path, step_reference) -> None:
    """Kills pile up: killed after its commit, then killed again while re-rendering the reports,
    then after one more report, a run still ends in exactly the uninterrupted state."""
    expected, _ = step_reference
    root = new_spool(tmp_path / "feeds")
    for point in ("after-commit", "before-report-rename", "after-report-rename", "after-report-rename"):
        assert run_cli(root, crash=point).returncode == -signal.SIGKILL, point
    assert run_cli(root).returncode == 3
    assert_same(outcome(root), expected, "after several kills")


# ---------------------------------------------------------------- 200 random kill-and-restart cycles

# A subprocess that imports orderfeeds once, then for each request forks fresh child processes
# that run the real `orderfeeds` command (cli.main) and die by a real SIGKILL. Starting the
# console script costs ~0.5-1 s of imports per run, too much for 200 cycles; a fork costs ~10 ms.
# Importing polars does not start its thread pool, so forking before any polars work is safe
# (each request's children are forked from a process that has done none).
LAUNCHER = textwrap.dedent('''
    import json, os, signal, sys, time
    from orderfeeds import cli

    CRASH_ENV = "ORDERFEEDS_CRASH_AT"

    def child(job, cwd, log):
        code = 98
        try:
            os.chdir(cwd)
            os.environ.pop(CRASH_ENV, None)
            if job.get("crash"):
                os.environ[CRASH_ENV] = job["crash"]
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                cli.main(args=job["args"], prog_name="orderfeeds")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 99
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        children = []
        for job in request["jobs"]:
            pid = os.fork()
            if pid == 0:
                child(job, request["cwd"], request["log"])
            children.append((pid, job))
        codes = {}
        while len(codes) < len(children):
            for pid, job in children:
                if pid in codes:
                    continue
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
                    continue
                waited = time.monotonic() - started
                limit = job.get("kill_after")
                if (limit is not None and waited >= limit) or waited >= request["hang_after"]:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    codes[pid] = "hung" if limit is None or waited < limit else -signal.SIGKILL
            time.sleep(0.002)
        sys.stdout.write(json.dumps([codes[pid] for pid, _ in children]) + "\\n")
        sys.stdout.flush()
''')


class Launcher:
    """Client side of LAUNCHER: `run(cwd, jobs)` forks one child per job at once, returns exit codes."""

    def __init__(self, folder: Path):
        script = folder / "launcher.py"
        script.write_text(LAUNCHER)
        self.log = folder / "runs.log"
        env = {k: v for k, v in os.environ.items() if k != runner.CRASH_ENV}
        self.process = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def run(self, cwd: Path, jobs: list[dict]) -> list:
        request = {"cwd": str(cwd), "log": str(self.log), "jobs": jobs, "hang_after": 60}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the launcher died; see {self.log}"
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _idle(root: Path) -> bool:
    return not any((root / "inbox").iterdir()) and not any((root / "processing").iterdir())


def test_random_kills_and_restarts_end_in_the_uninterrupted_state(tmp_path: Path) -> None:
    """200 kill-and-restart cycles end in exactly the uninterrupted state.

    Rounds over one set of feeds (RANDOM_FEEDS: a cancellation, a refund, a feed repeating it,
    duplicates of both under other names, a junk file). Each round starts a fresh spool and
    draws a random subset of the named crash points; each cycle is one `run` that dies at a
    point drawn from that subset (most cycles), or is SIGKILLed after a random delay at
    whatever it was doing (some), or is left alone (a few); one cycle in ten starts a second
    run at the same moment. A round ends when a run finishes with nothing left to do (or when
    the cycle budget is spent: then one clean run finishes the spool), and must then equal
    the uninterrupted run of the same feeds in every respect. Cycles are counted across rounds
    until 200 (env ORDERFEEDS_CRASH_CYCLES changes the count, ORDERFEEDS_CRASH_SEED the seed).
    Runs are forked from a pre-imported launcher (see LAUNCHER): 200 console-script starts
    alone would cost minutes; this way the test needs about 30 s of CPU.
    """
    cycles_wanted = int(os.environ.get("ORDERFEEDS_CRASH_CYCLES", "200"))
    seed = int(os.environ.get("ORDERFEEDS_CRASH_SEED", "20261128"))
    rng = random.Random(seed)
    args = ["run", "--root", "feeds", "--as-of", AS_OF]
    launcher = Launcher(tmp_path)
    try:
        reference_root = new_spool(tmp_path / "reference" / "feeds", RANDOM_FEEDS)
        assert launcher.run(reference_root.parent, [{"args": args}]) == [3]
        expected = outcome(reference_root)
        assert expected["inbox"] == {} and expected["processing"] == {}
        assert sorted(expected["failed"]) == ["junk.txt", "refund-1-copy.txt", "refund-2-copy.txt"]
        warned = [n for n, r in expected["reports"].items() if n == "refund-2.report.tsv"]
        assert warned and "possible-duplicate" in expected["reports"]["refund-2.report.tsv"]

        cycles = kills = rounds = overlaps = 0
        seen_codes: set = set()
        started = time.monotonic()
        while cycles < cycles_wanted:
            rounds += 1
            root = new_spool(tmp_path / f"round-{rounds}" / "feeds", RANDOM_FEEDS)
            subset = rng.sample(POINTS, rng.randint(1, len(POINTS)))
            while True:
                jobs = []
                for _ in range(2 if rng.random() < 0.1 else 1):
                    draw = rng.random()
                    if draw < 0.04:
                        jobs.append({"args": args})
                    elif draw < 0.16:
                        jobs.append({"args": args, "kill_after": round(rng.uniform(0.0, 0.4), 3)})
                    else:
                        jobs.append({"args": args, "crash": rng.choice(subset)})
                codes = launcher.run(root.parent, jobs)
                cycles += 1
                overlaps += len(jobs) > 1
                seen_codes.update(codes)
                context = f"seed {seed}, round {rounds}, cycle {cycles}, jobs {jobs}"
                assert set(codes) <= {0, 1, 3, 75, -signal.SIGKILL}, f"{context}: exit codes {codes}; see {launcher.log}"
                kills += codes.count(-signal.SIGKILL)
                if -signal.SIGKILL not in codes and _idle(root):
                    break
                if cycles >= cycles_wanted:  # the budget is spent (or the subset never lets a run through)
                    assert launcher.run(root.parent, [{"args": args}])[0] in (0, 1, 3)
                    break
            if not _idle(root):  # the last kill happened after the last move: one clean run settles it
                assert launcher.run(root.parent, [{"args": args}])[0] in (0, 1, 3)
            assert_same(outcome(root), expected, f"seed {seed}, round {rounds} (points {subset})")
    finally:
        launcher.close()
    assert "Traceback" not in launcher.log.read_text()
    assert kills >= cycles_wanted // 2, f"only {kills} of {cycles} cycles were killed: the test lost its teeth"
    assert rounds >= 2 and overlaps >= 1
    print(f"{cycles} cycles, {kills} kills, {overlaps} overlapping pairs, {rounds} rounds, "
          f"{time.monotonic() - started:.1f} s, codes {sorted(seen_codes, key=str)}")

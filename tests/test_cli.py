"""The `orderfeeds` command (SPEC §7): report files, exit codes, --write-snapshot, help.

Runs `orderfeeds.cli.main` in click's CliRunner; the library call it wraps is
`orderfeeds.pipeline.process_feeds`, and one test checks both write the same reports.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from orderfeeds.cli import main
from orderfeeds.pipeline import ProcessOptions, process_feeds

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
AS_OF = "2026-11-28T06:00:00+00:00"
HEADER = "order-id\tcancellation-reason-code\tamazon-order-item-code"
REPORT_SUFFIXES = (".report.tsv", ".processing-report.txt", ".summary.json")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A temporary folder holding copies of the bundled sample cancellation feed
    (`order-cancellation.txt`, 13 records: 3 applied, 10 rejected) and its `orders-snapshot.tsv`."""
    shutil.copy(SAMPLES / "feeds" / "order-cancellation.txt", tmp_path / "order-cancellation.txt")
    shutil.copy(SAMPLES / "orders-snapshot.tsv", tmp_path / "orders-snapshot.tsv")
    return tmp_path


@pytest.fixture
def write_feed(workdir: Path) -> Callable[[str, str], Path]:
    """Factory: (file name, body text) → a feed file in `workdir`; body rows are joined under the
    flat cancellation header, so `write_feed("a.txt", "111-...\\tNoInventory\\t2000...")` is a feed."""

    def write(name: str, body: str, header: str = HEADER) -> Path:
        path = workdir / name
        path.write_text("\n".join([header, body]) + "\n", encoding="utf-8")
        return path

    return write


def run(*args: str | Path) -> Result:
    """Invoke the CLI; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args])


def process(workdir: Path, *feeds: str | Path, extra: tuple[str | Path, ...] = ()) -> Result:
    """`orderfeeds process FEED... --snapshot orders-snapshot.tsv --out out --as-of AS_OF`."""
    return run("process", *[workdir / f for f in feeds], "--snapshot", workdir / "orders-snapshot.tsv",
               "--out", workdir / "out", "--as-of", AS_OF, *extra)


def report_lines(path: Path) -> list[dict[str, str]]:
    """A report.tsv as dicts, read independently of the library."""
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t", quoting=csv.QUOTE_NONE))


def snapshot_lines(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """A TSV snapshot keyed by (order-id, order-item-id)."""
    return {(r["order-id"], r["order-item-id"]): r for r in report_lines(path)}


def assert_clean_usage_error(result: Result) -> None:
    """Exit 2, a message on stderr, and no Python traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.strip()
    assert "Traceback" not in result.output


# --- report files and exit codes 0 / 1 ------------------------------------------------------

def test_process_writes_the_three_report_files_of_a_flat_feed(workdir: Path):
    """A flat feed gets NAME.report.tsv, NAME.processing-report.txt and NAME.summary.json, and
    nothing else is left in the report folder (no temporary files)."""
    result = process(workdir, "order-cancellation.txt")
    assert result.exit_code == 1, result.output
    out = workdir / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"order-cancellation{s}" for s in REPORT_SUFFIXES)
    lines = report_lines(out / "order-cancellation.report.tsv")
    assert [line["original-record-number"] for line in lines] == [str(n) for n in range(1, 14)]
    assert json.loads((out / "order-cancellation.summary.json").read_text())["records"] == 13
    assert (out / "order-cancellation.processing-report.txt").read_text().startswith("Feed Processing Summary:")
    assert str(out / "order-cancellation.report.tsv") in result.stdout


def test_report_files_are_readable_as_a_plain_open_would_make_them(workdir: Path):
    """Reports get 0666 less the umask, like any file the user writes (not mkstemp's private 0600),
    so the people who review them can read them."""
    from orderfeeds.report import UMASK

    process(workdir, "order-cancellation.txt")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (workdir / "out").iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~UMASK}, modes


def test_exit_code_1_when_some_records_are_rejected(workdir: Path, write_feed):
    """One rejected record among applied ones: exit 1 (finished, some records rejected)."""
    write_feed("mixed.txt", "111-2223334-4445550\tNoInventory\t20000000000001\n"
                            "111-2223334-4445599\tNoInventory\t20000000000099")
    result = process(workdir, "mixed.txt")
    assert result.exit_code == 1, result.output
    statuses = [line["status"] for line in report_lines(workdir / "out" / "mixed.report.tsv")]
    assert statuses == ["Success", "Error"]


def test_exit_code_0_when_every_record_is_applied_warnings_included(workdir: Path, write_feed):
    """Every record applied, one of them with a counts-toward-cancellation-rate warning: exit 0."""
    write_feed("good.txt", "111-2223334-4445550\tBuyerCanceled\t20000000000001\n"
                           "111-2223334-4445554\tCustomerExchange\t20000000000006\n"
                           "111-2223334-4445558\t\t")
    result = process(workdir, "good.txt")
    assert result.exit_code == 0, result.output
    lines = report_lines(workdir / "out" / "good.report.tsv")
    assert [(line["status"], line["error-name"]) for line in lines] == [
        ("Warning", "counts-toward-cancellation-rate"), ("Success", ""), ("Success", "")]


# --- exit code 2: usage errors ------------------------------------------------------------

def test_missing_snapshot_option_is_a_usage_error(workdir: Path):
    """--snapshot is required: exit 2 naming the option, nothing written."""
    result = run("process", workdir / "order-cancellation.txt", "--out", workdir / "out")
    assert_clean_usage_error(result)
    assert "--snapshot" in result.stderr
    assert not (workdir / "out").exists()


def test_unknown_encoding_is_a_usage_error(workdir: Path):
    """--encoding with a name Python does not know: exit 2 naming it, nothing written."""
    result = process(workdir, "order-cancellation.txt", extra=("--encoding", "klingon-8"))
    assert_clean_usage_error(result)
    assert "klingon-8" in result.stderr
    assert not (workdir / "out").exists()


@pytest.mark.parametrize("as_of", ["yesterday", "2026-13-01T00:00:00+00:00", "28/11/2026"])
def test_bad_as_of_is_a_usage_error(workdir: Path, as_of: str):
    """--as-of that is not an ISO 8601 time: exit 2 naming the value, nothing written."""
    result = run("process", workdir / "order-cancellation.txt", "--snapshot", workdir / "orders-snapshot.tsv",
                 "--out", workdir / "out", "--as-of", as_of)
    assert_clean_usage_error(result)
    assert as_of in result.stderr
    assert not (workdir / "out").exists()


def test_nonexistent_feed_is_a_usage_error(workdir: Path):
    """A feed path that does not exist: exit 2 naming it, nothing written."""
    result = process(workdir, "no-such-feed.txt")
    assert_clean_usage_error(result)
    assert "no-such-feed.txt" in result.stderr
    assert not (workdir / "out").exists()


def test_invalid_snapshot_is_a_usage_error_naming_file_line_and_column(workdir: Path):
    """A snapshot that breaks SPEC §3 stops the run: exit 2, a message naming the file, line and
    column on stderr, no traceback, and no reports."""
    text = (workdir / "orders-snapshot.tsv").read_text(encoding="utf-8").replace("\tUnshipped\t", "\tOpen\t", 1)
    (workdir / "orders-snapshot.tsv").write_text(text, encoding="utf-8")
    result = process(workdir, "order-cancellation.txt")
    assert_clean_usage_error(result)
    assert "orders-snapshot.tsv" in result.stderr
    assert "line 2" in result.stderr and "order-status" in result.stderr and "Open" in result.stderr
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())


def test_the_same_path_twice_is_a_usage_error(workdir: Path):
    """One path given twice would write the same report files twice; it is refused (exit 2)
    rather than one report silently overwriting the other."""
    result = process(workdir, "order-cancellation.txt", "order-cancellation.txt")
    assert_clean_usage_error(result)
    assert not (workdir / "out").exists()


# --- exit code 3: a feed rejected whole -----------------------------------------------------

@pytest.mark.parametrize(("name", "text", "error"), [
    pytest.param("unknown.txt", "order,reason,item\n111-2223334-4445550,NoInventory,20000000000001\n",
                 "unknown-feed-type", id="unknown-feed-type"),
    pytest.param("missing.txt", "TemplateType=OrderCancellation\tVersion=1.0\norder-number\tcancellation-reason-code\t"
                 "amazon-order-item-code\n111-2223334-4445550\tNoInventory\t20000000000001\n",
                 "missing-column", id="missing-column"),
])
def test_a_feed_rejected_whole_exits_3_with_a_single_record_0_line(workdir: Path, name: str, text: str, error: str):
    """A feed rejected whole: exit 3; its report has one record-0 line naming the failure, the
    processing report counts no records, and the summary says it was fatal."""
    (workdir / name).write_text(text, encoding="utf-8")
    result = process(workdir, name, extra=("--write-snapshot", workdir / "after.tsv"))
    assert result.exit_code == 3, result.output
    out = workdir / "out"
    stem = Path(name).stem
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}{s}" for s in REPORT_SUFFIXES)
    lines = report_lines(out / f"{stem}.report.tsv")
    assert len(lines) == 1
    assert (lines[0]["original-record-number"], lines[0]["status"], lines[0]["error-name"]) == ("0", "Error", error)
    assert "Number of records processed\t\t0" in (out / f"{stem}.processing-report.txt").read_text()
    summary = json.loads((out / f"{stem}.summary.json").read_text())
    assert summary["fatal"]["error-name"] == error and summary["records"] == 0
    assert "rejected whole" in result.stdout
    before, after = snapshot_lines(workdir / "orders-snapshot.tsv"), snapshot_lines(workdir / "after.tsv")
    assert {k: (v["order-status"], v["quantity-cancelled"]) for k, v in after.items()} == {
        k: (v["order-status"], v["quantity-cancelled"]) for k, v in before.items()}, "nothing was applied"


def test_a_fatal_feed_does_not_stop_the_next_and_the_exit_code_is_the_worst(workdir: Path):
    """Feeds run in order: an unknown-type feed first, then the sample; the sample is still
    processed, and the call exits 3 (worse than the sample's 1)."""
    (workdir / "junk.txt").write_text("hello\n", encoding="utf-8")
    result = process(workdir, "junk.txt", "order-cancellation.txt")
    assert result.exit_code == 3, result.output
    assert len(report_lines(workdir / "out" / "order-cancellation.report.tsv")) == 13


# --- --write-snapshot and duplicate feeds -----------------------------------------------------

def test_write_snapshot_reflects_the_applied_cancellations_and_is_accepted_again(workdir: Path):
    """--write-snapshot writes the resulting state: the sample's three applied records show in
    quantity-cancelled and order-status (SPEC §4.3), other lines are unchanged; `process`
    accepts the file as a snapshot, and the same feed against it finds those lines cancelled."""
    result = process(workdir, "order-cancellation.txt", extra=("--write-snapshot", workdir / "after.tsv"))
    assert result.exit_code == 1, result.output
    before, after = snapshot_lines(workdir / "orders-snapshot.tsv"), snapshot_lines(workdir / "after.tsv")
    assert set(after) == set(before)
    changed = {
        ("111-2223334-4445550", "20000000000001"): ("1", "Canceled"),
        ("111-2223334-4445554", "20000000000005"): ("0", "Shipped"),
        ("111-2223334-4445554", "20000000000006"): ("3", "Shipped"),
        ("111-2223334-4445558", "20000000000010"): ("2", "Canceled"),
    }
    for key, line in after.items():
        expected = changed.get(key, (before[key]["quantity-cancelled"], before[key]["order-status"]))
        assert (line["quantity-cancelled"], line["order-status"]) == expected, key

    again = run("process", workdir / "order-cancellation.txt", "--snapshot", workdir / "after.tsv",
                "--out", workdir / "again", "--as-of", AS_OF)
    assert again.exit_code == 1, again.output
    lines = report_lines(workdir / "again" / "order-cancellation.report.tsv")
    assert [lines[n]["error-name"] for n in (0, 5, 9)] == ["already-cancelled"] * 3


def test_the_same_bytes_twice_in_one_call_is_a_duplicate_feed(workdir: Path):
    """The same file under a second name in one call: the second report is a single record-0
    duplicate-feed line (Warning 90014) naming the first, nothing is applied twice, exit 3."""
    shutil.copy(workdir / "order-cancellation.txt", workdir / "copy.txt")
    result = process(workdir, "order-cancellation.txt", "copy.txt", extra=("--write-snapshot", workdir / "after.tsv"))
    assert result.exit_code == 3, result.output
    lines = report_lines(workdir / "out" / "copy.report.tsv")
    assert len(lines) == 1
    assert (lines[0]["original-record-number"], lines[0]["status"], lines[0]["error-code"],
            lines[0]["error-name"]) == ("0", "Warning", "90014", "duplicate-feed")
    assert "order-cancellation.txt" in lines[0]["error-message"]
    assert len(report_lines(workdir / "out" / "order-cancellation.report.tsv")) == 13
    after = snapshot_lines(workdir / "after.tsv")
    assert after[("111-2223334-4445554", "20000000000006")]["quantity-cancelled"] == "3"
    assert after[("111-2223334-4445558", "20000000000010")]["quantity-cancelled"] == "2"


# --- the CLI is a thin wrapper ------------------------------------------------------------------

def test_cli_reports_equal_the_library_reports(workdir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`orderfeeds process` writes exactly what `process_feeds` writes for the same inputs (the
    summary's wall-clock timings aside), and the same resulting snapshot."""
    result = process(workdir, "order-cancellation.txt", extra=("--write-snapshot", workdir / "cli-snapshot.tsv"))
    assert result.exit_code == 1, result.output
    library_out = tmp_path_factory.mktemp("library")
    run_ = process_feeds([workdir / "order-cancellation.txt"], workdir / "orders-snapshot.tsv", library_out,
                         ProcessOptions(as_of=AS_OF), library_out / "snapshot.tsv")
    assert run_.exit_code == result.exit_code
    for suffix in (".report.tsv", ".processing-report.txt"):
        name = f"order-cancellation{suffix}"
        assert (workdir / "out" / name).read_bytes() == (library_out / name).read_bytes(), name
    cli_summary = json.loads((workdir / "out" / "order-cancellation.summary.json").read_text())
    library_summary = json.loads((library_out / "order-cancellation.summary.json").read_text())
    cli_summary.pop("timings-seconds")
    library_summary.pop("timings-seconds")
    assert cli_summary == library_summary
    assert (workdir / "cli-snapshot.tsv").read_bytes() == (library_out / "snapshot.tsv").read_bytes()


# --- help -------------------------------------------------------------------------------------------

def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("command", _commands(main), ids=lambda c: " ".join(c) or "orderfeeds")
def test_every_command_has_help(command: tuple[str, ...]):
    """`--help` on every command and group exits 0 and prints its usage and a description."""
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    described = main if not command else main.commands[command[0]]
    for name in command[1:]:
        described = described.commands[name]
    assert described.help and described.help.strip(), f"{command} has no help text"


def test_process_is_a_command():
    """The stateless `process` command of SPEC §7 exists (the help test covers whatever exists)."""
    assert "process" in main.commands

"""Golden cases: every folder under samples/cases/ is run and its output diffed whole.

A case folder holds `feed-1.<ext>`, `feed-2.<ext>`, … (processed in that order in one
`process_feeds` call), `snapshot.tsv`, an optional `options.json` ({"encoding": ...,
"feed-type": ...}) and `expected/`: the report files plus `snapshot.tsv`, the resulting
state. Adding a case is adding a folder. `pytest --update-golden` rewrites `expected/`
from the actual output; read every rewritten file against SPEC.md before committing it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from orderfeeds.feedtypes import FeedType
from orderfeeds.pipeline import ProcessOptions, process_feeds
from orderfeeds.readers import xml as xml_reader

CASES = Path(__file__).resolve().parent.parent / "samples" / "cases"
AS_OF = "2026-11-28T06:00:00+00:00"
SNAPSHOT_OUT = "snapshot.tsv"
# The summary's stage timings are wall-clock: the value is replaced by this before comparing.
TIMINGS = re.compile(r'"timings-seconds": \{[^{}]*\}')
TIMINGS_PLACEHOLDER = '"timings-seconds": "(wall-clock; not compared)"'

# Cases whose expected/ holds what SPEC.md says, which the code does not produce yet.
# `--update-golden` leaves these folders alone so the SPEC-correct files survive.
KNOWN_BUGS: dict[str, str] = {}

REQUIRED_CASES = (
    "public-order-cancellation", "cancellation-excel-cp1252", "cancellation-repeated-keys",
    "cancellation-whole-orders", "fatal-missing-column", "fatal-unknown-type", "ragged-and-extra-columns",
    "two-feeds-same-call", "public-order-adjustment", "public-order-acknowledgement", "public-order-adjustment-xml",
    "adjustments-across-feeds", "ack-then-adjust-by-merchant-ids",
)


def case_folders() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir()) if CASES.is_dir() else []


def _case_param(folder: Path):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[folder.name])] if folder.name in KNOWN_BUGS else []
    return pytest.param(folder, id=folder.name, marks=marks)


def feeds_of(folder: Path) -> list[Path]:
    """feed-1.*, feed-2.*, … in numeric order; there must be at least one, with no gaps."""
    numbered = {}
    for path in folder.glob("feed-*"):
        match = re.fullmatch(r"feed-(\d+)\.[^.]+", path.name)
        assert match, f"{path}: feed files are named feed-<n>.<ext>"
        numbered[int(match.group(1))] = path
    assert sorted(numbered) == list(range(1, len(numbered) + 1)), f"{folder}: feeds must be feed-1, feed-2, …"
    assert numbered, f"{folder}: no feed-1.<ext>"
    return [numbered[n] for n in sorted(numbered)]


def options_of(folder: Path, chunk_records: int | None = None) -> ProcessOptions:
    """ProcessOptions from options.json (keys "encoding", "feed-type"), with the fixed as-of time
    (and `chunk_records`, if given, for reading and applying feeds in pieces)."""
    path = folder / "options.json"
    given = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    unknown = set(given) - {"encoding", "feed-type"}
    assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
    feed_type = FeedType(given["feed-type"]) if given.get("feed-type") else None
    options = ProcessOptions(feed_type=feed_type, encoding=given.get("encoding", "cp1252"), as_of=AS_OF)
    return options if chunk_records is None else replace(options, chunk_records=chunk_records)


def comparable(path: Path) -> bytes:
    """A file's bytes as compared: summaries get their wall-clock timings replaced."""
    data = path.read_bytes()
    if path.name.endswith(".summary.json"):
        text, found = TIMINGS.subn(TIMINGS_PLACEHOLDER, data.decode("utf-8"))
        assert found == 1, f"{path.name}: expected one timings-seconds object"
        data = text.encode("utf-8")
    return data


def run_case(folder: Path, out: Path, chunk_records: int | None = None) -> None:
    process_feeds(feeds_of(folder), folder / "snapshot.tsv", out, options_of(folder, chunk_records),
                  out / SNAPSHOT_OUT)


@pytest.mark.parametrize("folder", [_case_param(f) for f in case_folders()])
def test_golden_case(folder: Path, tmp_path: Path, update_golden: bool):
    """The case's feeds, processed in order in one call against its snapshot, give exactly the
    files in expected/ (reports of every feed and the resulting snapshot), byte for byte, with
    no file missing and none extra."""
    out = tmp_path / "out"
    run_case(folder, out)
    actual = {p.name: comparable(p) for p in sorted(out.iterdir())}
    expected_dir = folder / "expected"
    if update_golden:
        if folder.name in KNOWN_BUGS:
            pytest.skip(f"{folder.name} is a known bug; its expected/ holds what SPEC.md says and is kept")
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir()
        for name, data in actual.items():
            (expected_dir / name).write_bytes(data)
        pytest.skip(f"rewrote {expected_dir}; read every file against SPEC.md before committing")
    assert expected_dir.is_dir(), f"{folder.name} has no expected/ (run pytest --update-golden, then check it)"
    expected = {p.name: p.read_bytes() for p in sorted(expected_dir.iterdir())}
    assert sorted(actual) == sorted(expected), "output files differ from expected/"
    for name in expected:
        shown = f"{folder.name}/{name}"
        assert actual[name].decode("utf-8", "replace") == expected[name].decode("utf-8", "replace"), f"{shown} differs"
        assert actual[name] == expected[name], f"{shown} differs in bytes"


@pytest.mark.parametrize("chunk_records", [1, 3])
@pytest.mark.parametrize("folder", [_case_param(f) for f in case_folders()])
def test_golden_case_in_pieces(folder: Path, chunk_records: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Read, validated and applied a few records at a time (as `process` does a million at a
    time), every case gives exactly the same files as read whole."""
    # The XML reader hands out pieces only between its chunks (thousands of messages): one message each here.
    monkeypatch.setattr(xml_reader, "CHUNK_MESSAGES", 1)
    expected_dir = folder / "expected"
    out = tmp_path / "out"
    run_case(folder, out, chunk_records)
    actual = {p.name: comparable(p) for p in sorted(out.iterdir())}
    expected = {p.name: p.read_bytes() for p in sorted(expected_dir.iterdir())}
    assert sorted(actual) == sorted(expected), "output files differ from expected/"
    for name in expected:
        assert actual[name].decode("utf-8", "replace") == expected[name].decode("utf-8", "replace"), name


def test_every_required_case_exists():
    """The golden cases this project promises are all present, each with a snapshot and expected/."""
    present = {f.name for f in case_folders()}
    assert set(REQUIRED_CASES) <= present, sorted(set(REQUIRED_CASES) - present)
    for folder in case_folders():
        assert (folder / "snapshot.tsv").is_file(), folder.name
        assert (folder / "expected").is_dir(), folder.name
        assert feeds_of(folder)


def test_known_bugs_name_existing_cases():
    """Every case marked as a known bug exists, so a fixed or renamed case is not silently forgotten."""
    assert set(KNOWN_BUGS) <= {f.name for f in case_folders()}

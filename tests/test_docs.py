"""The README's tables are the code's: error catalogue, report columns, commands."""

from __future__ import annotations

import re
from pathlib import Path

from orderfeeds.catalogue import CATALOGUE, markdown_table
from orderfeeds.cli import main
from orderfeeds.outcomes import REPORT_COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _between(start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), README, re.S)
    assert match, f"README lacks the markers {start} … {end}"
    return match.group(1)


def test_error_table_is_generated_from_the_catalogue():
    """The README's error table is exactly catalogue.markdown_table() (regenerate it, never edit it)."""
    assert _between("<!-- errors:start -->", "<!-- errors:end -->") == markdown_table()


def test_catalogue_codes_and_names_are_unique():
    """Codes and names are API: no two entries may share either."""
    assert len({e.code for e in CATALOGUE}) == len(CATALOGUE)
    assert len({e.name for e in CATALOGUE}) == len(CATALOGUE)


def test_report_columns_table_lists_every_column_in_order():
    """The report-columns table names the columns of NAME.report.tsv, in file order."""
    table = _between("<!-- columns:start -->", "<!-- columns:end -->")
    named = re.findall(r"^\| `([a-z-]+)` \|", table, re.M)
    assert tuple(named) == REPORT_COLUMNS


def test_every_command_is_documented():
    """Each CLI command appears in the README as `orderfeeds <command>`."""
    names = []
    for name, command in main.commands.items():
        sub = getattr(command, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    missing = [n for n in names if f"orderfeeds {n}" not in README]
    assert not missing, missing

"""Shared fixtures: the fixed processing time, small order-state builders, and --update-golden."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from orderfeeds.snapshot import parse_snapshot

AS_OF = "2026-11-28T06:00:00+00:00"

# The snapshot columns of SPEC §3 that a seller's own export carries (the refunded
# columns are optional and default to 0, so the builders leave them out).
SNAPSHOT_HEADER = (
    "order-id", "order-item-id", "merchant-order-id", "merchant-order-item-id", "order-status",
    "fulfillment-channel", "sales-channel", "purchase-date", "latest-ship-date", "currency",
    "quantity-ordered", "quantity-shipped", "quantity-cancelled", "item-price", "item-tax",
    "shipping-price", "shipping-tax", "gift-wrap-price", "gift-wrap-tax", "item-promotion-discount",
    "ship-promotion-discount", "shipping-label-purchased", "buyer-requested-cancel",
)

# One open, unshipped, seller-fulfilled unit; every builder line starts from this.
LINE_DEFAULTS = {
    "order-id": "111-0000001-0000001", "order-item-id": "10000000000001", "merchant-order-id": "",
    "merchant-order-item-id": "", "order-status": "Unshipped", "fulfillment-channel": "MFN",
    "sales-channel": "Amazon.com", "purchase-date": "2026-11-25T10:00:00+00:00",
    "latest-ship-date": "2026-11-29T23:59:59+00:00", "currency": "USD", "quantity-ordered": "1",
    "quantity-shipped": "0", "quantity-cancelled": "0", "item-price": "10.00", "item-tax": "0.80",
    "shipping-price": "0.00", "shipping-tax": "0.00", "gift-wrap-price": "0.00", "gift-wrap-tax": "0.00",
    "item-promotion-discount": "0.00", "ship-promotion-discount": "0.00",
    "shipping-label-purchased": "false", "buyer-requested-cancel": "false",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite samples/cases/*/expected/ from the actual output instead of comparing "
             "(only when messages change deliberately; read every rewritten file before committing)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest was run with --update-golden: golden tests rewrite expected/ instead of comparing."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def as_of() -> str:
    """The processing time every test stamps on its reports, so outputs are reproducible."""
    return AS_OF


@pytest.fixture
def snapshot_text() -> Callable[..., str]:
    """Factory: order lines as dicts (each overriding LINE_DEFAULTS, an open Unshipped MFN unit)
    → the text of a tab-delimited snapshot file with the SPEC §3 header."""

    def build(*lines: dict[str, str | int | bool]) -> str:
        rows = ["\t".join(SNAPSHOT_HEADER)]
        for overrides in lines:
            unknown = set(overrides) - set(SNAPSHOT_HEADER)
            assert not unknown, f"not snapshot columns: {unknown}"
            values = {**LINE_DEFAULTS, **{k: _text(v) for k, v in overrides.items()}}
            rows.append("\t".join(values[c] for c in SNAPSHOT_HEADER))
        return "\n".join(rows) + "\n"

    return build


@pytest.fixture
def order_state(snapshot_text: Callable[..., str]) -> Callable[..., pl.DataFrame]:
    """Factory: order lines as dicts (see snapshot_text) → the typed order state `parse_snapshot` gives."""

    def build(*lines: dict[str, str | int | bool]) -> pl.DataFrame:
        return parse_snapshot(snapshot_text(*lines).encode("utf-8"), "test-snapshot.tsv")

    return build


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _damage_table(db_path: Path, table: str) -> None:
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    db.close()
    data = bytearray(db_path.read_bytes())
    data[(root - 1) * page_size: root * page_size] = b"\xab" * page_size
    db_path.write_bytes(bytes(data))


@pytest.fixture
def damage_table() -> Callable[[Path, str], None]:
    """damage_table(db_path, table): overwrite the table's root page with junk, keeping the
    SQLite header valid, so the damage shows only when the table is read."""
    return _damage_table


@pytest.fixture(params=[1, None], ids=["bulk-even-for-one", "bulk-from-default"])
def bulk_from_one_message_too(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """XML messages of a shape new in their chunk are checked in bulk only from FEW_MESSAGES on (fewer go to the
    XSD one by one): with 1, small test files take the bulk path too. Tests using it run both ways."""
    from orderfeeds.readers import xml as xmlreader

    if request.param is not None:
        monkeypatch.setattr(xmlreader, "FEW_MESSAGES", request.param)

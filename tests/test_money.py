"""Money is exact decimal from the feed to the reports (SPEC §4 "never binary floats", DESIGN §4).

After validation every amount is a polars Decimal, the order state keeps Decimal money
columns whichever way it was made, and the summary's refunded totals are exact strings:
0.10 + 0.20 is "0.30", and 20-digit amounts survive to the cent.
"""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderfeeds.apply import apply_records
from orderfeeds.feedtypes import FLAT_ADJUSTMENT_FIELDS, FeedType, Kind
from orderfeeds.pipeline import ProcessOptions, process_feed, process_feeds
from orderfeeds.readers import read_feed
from orderfeeds.snapshot import parse_snapshot, read_snapshot, write_snapshot
from orderfeeds.validate import validate_records

AS_OF = "2026-11-28T06:00:00+00:00"
OPTIONS = ProcessOptions(as_of=AS_OF)
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ORDER, ITEM = "111-0000001-0000001", "10000000000001"

# Snapshot money columns of SPEC §3 (charged, discounts, refunded, reversed).
SNAPSHOT_MONEY = (
    "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price", "gift-wrap-tax",
    "item-promotion-discount", "ship-promotion-discount", "item-price-refunded", "item-tax-refunded",
    "shipping-price-refunded", "shipping-tax-refunded", "gift-wrap-price-refunded", "gift-wrap-tax-refunded",
    "item-promotion-reversed", "ship-promotion-reversed",
)
FEED_HEADER = (
    "order-id", "order-item-id", "adjustment-reason-code", "currency", "item-price-adj", "item-tax-adj",
    "shipping-price-adj", "shipping-tax-adj", "gift-wrap-price-adj", "gift-wrap-tax-adj",
    "item-promotion-adj", "item-promotion-id", "ship-promotion-adj", "ship-promotion-id", "quantity-cancelled",
)
BIG = "99999999999999999999.99"  # 20 integer digits: the largest amount SPEC §2.3 allows
SNAPSHOT = (
    "order-id\torder-item-id\torder-status\tfulfillment-channel\tcurrency\tquantity-ordered\tquantity-shipped\t"
    "item-price\titem-tax\tshipping-price\tshipping-tax\tgift-wrap-price\tgift-wrap-tax\titem-promotion-discount\n"
    f"{ORDER}\t{ITEM}\tShipped\tMFN\tUSD\t2\t2\t{BIG}\t{BIG}\t0.00\t0.00\t0.00\t0.00\t{BIG}\n"
)


def feed(*rows: tuple[str, str, str]) -> bytes:
    """A flat adjustment feed on the one line of SNAPSHOT: (item-price-adj, item-tax-adj, item-promotion-adj) per row.

    Identical rows are possible-duplicate Warnings, which are applied too."""
    lines = ["\t".join(FEED_HEADER)]
    for price, tax, promotion in rows:
        values = {"order-id": ORDER, "order-item-id": ITEM, "adjustment-reason-code": "CustomerReturn",
                  "currency": "USD", "item-price-adj": price, "item-tax-adj": tax, "shipping-price-adj": "0.00",
                  "shipping-tax-adj": "0.00", "gift-wrap-price-adj": "0.00", "gift-wrap-tax-adj": "0.00",
                  "item-promotion-adj": promotion, "item-promotion-id": "", "ship-promotion-adj": "",
                  "ship-promotion-id": "", "quantity-cancelled": "0"}
        lines.append("\t".join(values[c] for c in FEED_HEADER))
    return ("\n".join(lines) + "\n").encode()


def no_float(schema: pl.Schema) -> list[str]:
    """Columns of a frame whose type is a binary float."""
    return [name for name, dtype in schema.items() if dtype.is_float()]


def summary_of(tmp: Path, data: bytes) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """Process one feed with `process_feeds`: (its summary.json as parsed, its report rows, the final state)."""
    (tmp / "orders.tsv").write_text(SNAPSHOT)
    (tmp / "money.txt").write_bytes(data)
    run = process_feeds([tmp / "money.txt"], tmp / "orders.tsv", tmp / "out", OPTIONS)
    (summary_file,) = (tmp / "out").glob("money*.summary.json")
    return json.loads(summary_file.read_text()), run.results[0].records, run.state


def test_validated_amounts_are_decimal():
    """After validation every amount column of the sample flat feed is pl.Decimal and no column is a float."""
    raw = read_feed((SAMPLES / "feeds" / "order-adjustment.txt").read_bytes())
    records = validate_records(raw).records
    amounts = [f.canonical for f in FLAT_ADJUSTMENT_FIELDS if f.kind is Kind.AMOUNT]
    assert len(amounts) == 8
    for column in amounts:
        assert isinstance(records.schema[column], pl.Decimal), (column, records.schema[column])
    assert no_float(records.schema) == []
    # The values are the exact decimals written in the file.
    assert records.get_column("Principal").to_list()[0] == Decimal("29.99")


def test_validated_amounts_keep_every_cent():
    """A 20-integer-digit amount and 0.01 keep every digit after validation (a float would round the first)."""
    raw = read_feed(feed(("12345678901234567890.12", "0.01", "-0.03")))
    records = validate_records(raw).records
    assert records.row(0, named=True)["Principal"] == Decimal("12345678901234567890.12")
    assert records.row(0, named=True)["Tax"] == Decimal("0.01")
    assert records.row(0, named=True)["PromotionPrincipal"] == Decimal("-0.03")


def test_snapshot_money_columns_are_decimal():
    """The state read from the sample snapshot has Decimal money columns (blank refunded columns become 0)."""
    state = read_snapshot(SAMPLES / "orders-snapshot.tsv")
    for column in SNAPSHOT_MONEY:
        assert isinstance(state.schema[column], pl.Decimal), (column, state.schema[column])
    assert no_float(state.schema) == []
    assert state.get_column("item-price-refunded").sum() == Decimal("0")
    assert Decimal("3980.00") in state.get_column("item-price").to_list()


def test_parquet_snapshot_round_trip_keeps_decimals(tmp_path: Path):
    """A state written as Parquet and read back has Decimal money columns with the same values."""
    state = parse_snapshot(SNAPSHOT.encode())
    write_snapshot(state, tmp_path / "state.parquet")
    again = read_snapshot(tmp_path / "state.parquet")
    assert no_float(again.schema) == []
    assert again.row(0, named=True)["item-price"] == Decimal(BIG)
    assert again.row(0, named=True)["item-promotion-discount"] == Decimal(BIG)


def test_applied_state_and_effects_are_decimal():
    """`apply_records` returns a state and effects with Decimal money columns and exact sums."""
    state = parse_snapshot(SNAPSHOT.encode())
    records = validate_records(read_feed(feed(("0.10", "0.00", ""), ("0.20", "0.00", "")))).records
    applied = apply_records(FeedType.FLAT_ADJUSTMENT, records, state)
    assert applied.outcomes.get_column("error").to_list() == [None, None]
    assert no_float(applied.state.schema) == []
    assert no_float(applied.effects.schema) == []
    for column in SNAPSHOT_MONEY:
        assert isinstance(applied.state.schema[column], pl.Decimal), column
    assert applied.state.row(0, named=True)["item-price-refunded"] == Decimal("0.30")


def test_summary_refunded_totals_are_exact_strings(tmp_path: Path):
    """The summary's refunded totals are exact decimal strings: 0.10 + 0.20 = "0.30", never 0.30000000000000004."""
    summary, records, state = summary_of(tmp_path, feed(("0.10", "0.00", ""), ("0.20", "0.01", "-0.02")))
    assert records.get_column("status").to_list() == ["Success", "Success"]
    usd = summary["refunded"]["USD"]
    assert usd["Principal"] == "0.30"
    assert usd["Tax"] == "0.01"
    assert usd["PromotionPrincipal"] == "-0.02"
    assert usd["net"] == "0.29"
    assert all(isinstance(value, str) for value in usd.values())
    assert state.row(0, named=True)["item-price-refunded"] == Decimal("0.30")
    assert state.row(0, named=True)["item-promotion-reversed"] == Decimal("0.02")


def test_summary_keeps_twenty_digit_amounts(tmp_path: Path):
    """A refund of 12345678901234567890.12 is reported to the cent (a float keeps about 16 digits)."""
    summary, records, state = summary_of(tmp_path, feed(("12345678901234567890.12", "0.00", "")))
    assert records.get_column("status").to_list() == ["Success"]
    assert summary["refunded"]["USD"]["Principal"] == "12345678901234567890.12"
    assert state.row(0, named=True)["item-price-refunded"] == Decimal("12345678901234567890.12")


CENTS = st.one_of(st.integers(1, 999), st.integers(1, 10**6), st.integers(1, 10**20))


def text(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CENTS, st.integers(0, 10**4), st.integers(0, 99)), min_size=1, max_size=8))
def test_feed_sums_equal_decimal_sums(rows):
    """Random 2-decimal amounts (up to 18 integer digits) refunded, net positive per row, through a feed: the summary totals and the
    refunded amounts in the state equal the decimal.Decimal sums exactly, per component and net."""
    lines = [(text(price), text(tax), "-" + text(min(promotion, price - 1))) for price, tax, promotion in rows]
    expected = {
        "Principal": sum((Decimal(p) for p, _, _ in lines), Decimal("0")),
        "Tax": sum((Decimal(t) for _, t, _ in lines), Decimal("0")),
        "PromotionPrincipal": sum((Decimal(r) for _, _, r in lines), Decimal("0")),
    }
    with tempfile.TemporaryDirectory() as folder:
        summary, records, state = summary_of(Path(folder), feed(*lines))
    assert "Error" not in records.get_column("status").to_list()
    usd = summary["refunded"]["USD"]
    for component, total in expected.items():
        assert usd[component] == f"{total:.2f}", component
    assert usd["net"] == f"{sum(expected.values()):.2f}"
    line = state.row(0, named=True)
    assert line["item-price-refunded"] == expected["Principal"]
    assert line["item-tax-refunded"] == expected["Tax"]
    assert line["item-promotion-reversed"] == -expected["PromotionPrincipal"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CENTS, min_size=1, max_size=6))
def test_process_feed_state_sums_are_exact(amounts):
    """`process_feed` alone: the refunded amount in the returned state is the exact Decimal sum of the refunds."""
    state = parse_snapshot(SNAPSHOT.encode())
    result, after = process_feed(feed(*[(text(a), "0.00", "") for a in amounts]), "sums.txt", state, OPTIONS)
    assert "Error" not in result.records.get_column("status").to_list()
    assert after.row(0, named=True)["item-price-refunded"] == sum((Decimal(text(a)) for a in amounts), Decimal("0"))
    assert result.refunded["USD"]["Principal"] == f"{sum((Decimal(text(a)) for a in amounts), Decimal('0')):.2f}"


def test_summary_counts_applied_records_only(tmp_path: Path):
    """Refunded totals count applied records, Warnings included (a possible-duplicate is applied), and never the
    amounts of rejected records (here a negative item-tax-adj, invalid-sign)."""
    summary, records, _ = summary_of(tmp_path, feed(("0.10", "0.00", ""), ("0.10", "0.00", ""), ("5.00", "-0.01", "")))
    assert records.get_column("status").to_list() == ["Success", "Warning", "Error"]
    usd = summary["refunded"]["USD"]
    assert (usd["Principal"], usd["Tax"], usd["net"]) == ("0.20", "0.00", "0.20")

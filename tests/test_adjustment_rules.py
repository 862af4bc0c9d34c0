"""Order adjustment rules (SPEC §4.2, §4.3) and amount formats (SPEC §2.3), one rule at a time.

Every rule is shown rejecting a record and accepting a near-identical record (or the
same record against a near-identical state), so a test fails whether a rule is missing,
misplaced or too eager. Flat feeds go through the whole pipeline (`process_feed`);
what a flat file cannot say (Goodwill, RestockingFee, MerchantAdjustmentItemID, merchant
ids) goes to `apply_records` directly with an XML-adjustment records frame.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from orderfeeds.apply import apply_records
from orderfeeds.feedtypes import FeedType
from orderfeeds.pipeline import ProcessOptions, RunState, advance, process_feed, process_feeds
from orderfeeds.snapshot import parse_snapshot

AS_OF = "2026-11-28T06:00:00+00:00"
OPTIONS = ProcessOptions(as_of=AS_OF)

ORDER = "111-0000001-0000001"
ITEM = "10000000000001"
OTHER_ORDER = "111-0000002-0000002"
OTHER_ITEM = "10000000000002"

# ---------------------------------------------------------------- snapshot helpers

SNAPSHOT_HEADER = (
    "order-id", "order-item-id", "merchant-order-id", "merchant-order-item-id", "order-status",
    "fulfillment-channel", "sales-channel", "currency", "quantity-ordered", "quantity-shipped",
    "quantity-cancelled", "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price",
    "gift-wrap-tax", "item-promotion-discount", "ship-promotion-discount", "item-price-refunded",
    "item-tax-refunded", "shipping-price-refunded", "shipping-tax-refunded", "gift-wrap-price-refunded",
    "gift-wrap-tax-refunded", "item-promotion-reversed", "ship-promotion-reversed",
    "shipping-label-purchased", "buyer-requested-cancel",
)

# A shipped, seller-fulfilled line of 2 units with every component charged.
# Charged 20.00 + 1.60 + 5.00 + 0.40 + 2.00 + 0.16 = 29.16, minus discounts 3.00 + 1.00: 25.16 net.
LINE = {
    "order-id": ORDER, "order-item-id": ITEM, "merchant-order-id": "", "merchant-order-item-id": "",
    "order-status": "Shipped", "fulfillment-channel": "MFN", "sales-channel": "Amazon.com", "currency": "USD",
    "quantity-ordered": "2", "quantity-shipped": "2", "quantity-cancelled": "0",
    "item-price": "20.00", "item-tax": "1.60", "shipping-price": "5.00", "shipping-tax": "0.40",
    "gift-wrap-price": "2.00", "gift-wrap-tax": "0.16", "item-promotion-discount": "3.00",
    "ship-promotion-discount": "1.00", "item-price-refunded": "0.00", "item-tax-refunded": "0.00",
    "shipping-price-refunded": "0.00", "shipping-tax-refunded": "0.00", "gift-wrap-price-refunded": "0.00",
    "gift-wrap-tax-refunded": "0.00", "item-promotion-reversed": "0.00", "ship-promotion-reversed": "0.00",
    "shipping-label-purchased": "true", "buyer-requested-cancel": "false",
}
LINE_TOTAL = Decimal("25.16")


def snapshot_text(*lines: dict) -> str:
    """Snapshot TSV text: each line overrides LINE (one line with no overrides if none given)."""
    rows = ["\t".join(SNAPSHOT_HEADER)]
    for overrides in lines or ({},):
        unknown = set(overrides) - set(SNAPSHOT_HEADER)
        assert not unknown, unknown
        values = {**LINE, **{k: str(v) for k, v in overrides.items()}}
        rows.append("\t".join(values[c] for c in SNAPSHOT_HEADER))
    return "\n".join(rows) + "\n"


def state(*lines: dict) -> pl.DataFrame:
    """The typed order state of the given lines, as `parse_snapshot` reads it."""
    return parse_snapshot(snapshot_text(*lines).encode(), "test-snapshot.tsv")


def line_of(frame: pl.DataFrame, order: str = ORDER, item: str = ITEM) -> dict:
    """One order line of a state frame as a dict (row order of a state carries no meaning)."""
    rows = frame.filter((pl.col("order-id") == order) & (pl.col("order-item-id") == item))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


# ---------------------------------------------------------------- flat feed helpers

FEED_HEADER = (
    "order-id", "order-item-id", "adjustment-reason-code", "currency", "item-price-adj", "item-tax-adj",
    "shipping-price-adj", "shipping-tax-adj", "gift-wrap-price-adj", "gift-wrap-tax-adj",
    "item-promotion-adj", "item-promotion-id", "ship-promotion-adj", "ship-promotion-id", "quantity-cancelled",
)
SHORT = {
    "order": "order-id", "item": "order-item-id", "reason": "adjustment-reason-code", "currency": "currency",
    "price": "item-price-adj", "tax": "item-tax-adj", "ship": "shipping-price-adj", "ship_tax": "shipping-tax-adj",
    "wrap": "gift-wrap-price-adj", "wrap_tax": "gift-wrap-tax-adj", "promo": "item-promotion-adj",
    "ship_promo": "ship-promotion-adj", "qc": "quantity-cancelled",
}
CREDIT_COLUMNS = ("item-price-adj", "item-tax-adj", "shipping-price-adj", "shipping-tax-adj",
                  "gift-wrap-price-adj", "gift-wrap-tax-adj")
PROMOTION_COLUMNS = ("item-promotion-adj", "ship-promotion-adj")


def adj(columns: dict | None = None, **short) -> dict:
    """A flat adjustment row: a 1.00 item-price refund on the default line unless overridden.

    Short names (price, tax, ship, ship_tax, wrap, wrap_tax, promo, ship_promo, qc, order,
    item, currency, reason) or full column names in `columns` override the defaults.
    """
    row = {"order-id": ORDER, "order-item-id": ITEM, "adjustment-reason-code": "CustomerReturn", "currency": "USD",
           **{c: "0.00" for c in CREDIT_COLUMNS}, "item-price-adj": "1.00",
           "item-promotion-adj": "", "item-promotion-id": "", "ship-promotion-adj": "", "ship-promotion-id": "",
           "quantity-cancelled": "0"}
    row.update({SHORT[k]: str(v) for k, v in short.items()})
    row.update({k: str(v) for k, v in (columns or {}).items()})
    return row


def feed(*rows: dict) -> bytes:
    """Flat adjustment feed bytes with the full SPEC §2.3 header."""
    lines = ["\t".join(FEED_HEADER)] + ["\t".join(r[c] for c in FEED_HEADER) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def run(lines: pl.DataFrame, *rows: dict, name: str = "adjust.txt") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Process one flat feed: (per-record report rows, state after it)."""
    result, after = process_feed(feed(*rows), name, lines, OPTIONS)
    assert result.fatal is None, result.fatal
    return result.records, after


def outcomes(records: pl.DataFrame) -> list[tuple[str, str | None]]:
    """(status, error-name) per record, in input order."""
    return list(records.select("status", "error-name").iter_rows())


def only(records: pl.DataFrame) -> tuple[str, str | None]:
    assert records.height == 1, records
    return outcomes(records)[0]


def message(records: pl.DataFrame, index: int = 0) -> str:
    return records.get_column("error-message")[index]


# ---------------------------------------------------------------- XML-style records for apply_records

COMPONENTS = ("Principal", "Tax", "Shipping", "ShippingTax", "GiftWrap", "GiftWrapTax", "RestockingFee",
              "RestockingFeeTax", "ReturnShipping", "Goodwill", "Surcharge", "ExportCharge", "COD", "CODTax",
              "Other", "FreeReplacementReturnShipping", "PromotionPrincipal", "PromotionShipping")
MONEY = pl.Decimal(38, 2)


def xml_records(*items: dict) -> pl.DataFrame:
    """A records frame as an XML OrderAdjustment feed would give: one row per AdjustedItem.

    Each item gives any of order-id, order-item-id, merchant-order-id, merchant-order-item-id,
    merchant-adjustment-item-id, reason, currency, quantity-cancelled and component amounts
    (strings); defaults: the default line, CustomerReturn, USD, nothing cancelled, no money.
    """
    columns: dict[str, list] = {name: [] for name in (
        "seq", "record", "line", "item-index", "order-id", "order-item-id", "merchant-order-id",
        "merchant-order-item-id", "merchant-adjustment-item-id", "reason", "currency", "quantity-cancelled",
        *COMPONENTS)}
    for index, item in enumerate(items):
        unknown = set(item) - set(columns)
        assert not unknown, unknown
        defaults = {"order-id": ORDER, "order-item-id": ITEM, "merchant-order-id": None,
                    "merchant-order-item-id": None, "merchant-adjustment-item-id": None, "reason": "CustomerReturn",
                    "currency": "USD", "quantity-cancelled": 0, **{c: "0" for c in COMPONENTS}}
        values = {**defaults, **item}
        columns["seq"].append(index)
        columns["record"].append(index + 1)
        columns["line"].append(index + 1)
        columns["item-index"].append(1)
        for name in columns:
            if name not in ("seq", "record", "line", "item-index"):
                value = values[name]
                columns[name].append(Decimal(value) if name in COMPONENTS else value)
    schema = {"seq": pl.UInt32, "record": pl.Int64, "line": pl.Int64, "item-index": pl.Int32,
              **{n: pl.String for n in ("order-id", "order-item-id", "merchant-order-id", "merchant-order-item-id",
                                        "merchant-adjustment-item-id", "reason", "currency")},
              "quantity-cancelled": pl.Int64, **{c: MONEY for c in COMPONENTS}}
    return pl.DataFrame(columns, schema=schema)


def applied_errors(applied) -> list[str | None]:
    """The error name per record of an `Applied` (None when applied cleanly), in record order."""
    return applied.outcomes.sort("seq").get_column("error").to_list()


# ================================================================ 1. order / item unknown


def test_order_not_found_rejects_and_known_order_is_applied():
    """Step 1: an order the state does not hold is order-not-found; the same row on a known order applies."""
    records, after = run(state(), adj(order="111-9999999-9999999"), adj())
    assert outcomes(records) == [("Error", "order-not-found"), ("Success", None)]
    assert "111-9999999-9999999" in message(records, 0)
    assert line_of(after)["item-price-refunded"] == Decimal("1.00")


def test_item_not_found_rejects_and_known_item_is_applied():
    """Step 1: an item code that is not in the named order (even if it is in another order) is item-not-found."""
    lines = state({}, {"order-id": OTHER_ORDER, "order-item-id": OTHER_ITEM})
    records, after = run(lines, adj(item="19999999999999"), adj(item=OTHER_ITEM), adj())
    assert outcomes(records) == [("Error", "item-not-found"), ("Error", "item-not-found"), ("Success", None)]
    assert "19999999999999" in message(records, 0)
    assert line_of(after, OTHER_ORDER, OTHER_ITEM)["item-price-refunded"] == Decimal("0.00")


# ================================================================ 2-5. order-level states


@pytest.mark.parametrize("status", ["Pending", "PendingAvailability"])
def test_order_pending_rejects_and_verified_order_is_applied(status):
    """Step 2: Pending / PendingAvailability orders are order-pending; the same line Shipped is applied."""
    rejected, _ = run(state({"order-status": status}), adj())
    accepted, _ = run(state({"order-status": "Shipped"}), adj())
    assert only(rejected) == ("Error", "order-pending")
    assert only(accepted) == ("Success", None)


def test_order_pending_comes_before_later_rules():
    """Step 2 precedes steps 3-10: a pending AFN order with a bad sign still reports order-pending."""
    records, _ = run(state({"order-status": "Pending", "fulfillment-channel": "AFN"}), adj(price="-1.00"))
    assert only(records) == ("Error", "order-pending")


def test_fulfilled_by_amazon_rejects_and_mfn_is_applied():
    """Step 3: an AFN order is fulfilled-by-amazon; the same order as MFN is applied."""
    rejected, after = run(state({"fulfillment-channel": "AFN"}), adj())
    accepted, _ = run(state({"fulfillment-channel": "MFN"}), adj())
    assert only(rejected) == ("Error", "fulfilled-by-amazon")
    assert line_of(after)["item-price-refunded"] == Decimal("0.00")
    assert only(accepted) == ("Success", None)


def test_already_cancelled_rejects_and_live_order_is_applied():
    """Step 4: a Canceled order is already-cancelled (before currency and sign checks); not cancelled, applied."""
    cancelled = state({"order-status": "Canceled", "quantity-shipped": "0", "quantity-cancelled": "2"})
    rejected, _ = run(cancelled, adj(currency="EUR"), adj(qc=0, price="0.00"))
    accepted, _ = run(state({"order-status": "Shipped"}), adj())
    assert outcomes(rejected) == [("Error", "already-cancelled")] * 2
    assert only(accepted) == ("Success", None)


def test_currency_mismatch_rejects_and_matching_currency_is_applied():
    """Step 5: a record in EUR for a USD order is currency-mismatch naming both; in USD it is applied."""
    records, after = run(state(), adj(currency="EUR"), adj(currency="USD"))
    assert outcomes(records) == [("Error", "currency-mismatch"), ("Success", None)]
    assert "EUR" in message(records, 0) and "USD" in message(records, 0)
    assert line_of(after)["item-price-refunded"] == Decimal("1.00")


def test_currency_mismatch_comes_before_sign_and_caps():
    """Step 5 precedes step 6 and 9: a wrong currency with a negative and over-cap amount is currency-mismatch."""
    records, _ = run(state(), adj(currency="GBP", price="-100.00"), adj(currency="GBP", price="100.00"))
    assert outcomes(records) == [("Error", "currency-mismatch")] * 2


# ================================================================ 6. signs


@pytest.mark.parametrize("column", CREDIT_COLUMNS)
@pytest.mark.parametrize("amount", ["-0.01", "-0.00"])
def test_invalid_sign_on_credit_component(column, amount):
    """Step 6: credit components must be >= 0; a negative value, or "-0.00" written with a minus, is invalid-sign."""
    records, after = run(state(), adj({column: amount}))
    assert only(records) == ("Error", "invalid-sign")
    assert f"{column} {amount}" in message(records)
    assert line_of(after) == line_of(state())


@pytest.mark.parametrize("column", CREDIT_COLUMNS)
def test_credit_component_positive_or_zero_is_accepted(column):
    """Step 6 twin: the same credit column with 0.01 (and "0.00" elsewhere) passes the sign rule."""
    records, _ = run(state(), adj({column: "0.01", "item-price-adj": "0.01" if column == "item-price-adj" else "0.00"}))
    assert only(records) == ("Success", None)


@pytest.mark.parametrize("column", PROMOTION_COLUMNS)
def test_invalid_sign_on_positive_promotion(column):
    """Step 6: promotion components must be <= 0; a positive promotion is invalid-sign naming the column."""
    records, _ = run(state(), adj({column: "0.01"}, price="5.00"))
    assert only(records) == ("Error", "invalid-sign")
    assert f"{column} 0.01" in message(records)


@pytest.mark.parametrize("column", PROMOTION_COLUMNS)
@pytest.mark.parametrize("amount", ["-0.01", "-0.00", "0.00", ""])
def test_promotion_zero_or_negative_is_accepted(column, amount):
    """Step 6 twin: a promotion reversal of -0.01, -0.00, 0.00 or blank passes the sign rule."""
    records, after = run(state(), adj({column: amount}, price="5.00"))
    assert only(records) == ("Success", None)
    reversed_column = {"item-promotion-adj": "item-promotion-reversed",
                       "ship-promotion-adj": "ship-promotion-reversed"}[column]
    expected = Decimal("0.01") if amount == "-0.01" else Decimal("0.00")
    assert line_of(after)[reversed_column] == expected


@pytest.mark.parametrize("component", ["RestockingFee", "RestockingFeeTax", "ReturnShipping"])
def test_invalid_sign_on_positive_charge_component(component):
    """Step 6: RestockingFee, RestockingFeeTax, ReturnShipping must be <= 0; positive is invalid-sign, negative applies."""
    lines = state()
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "10.00", component: "0.01"},
        {"Principal": "10.00", component: "-1.00", "reason": "GeneralAdjustment"},
        {"Principal": "10.00", component: "0.00", "reason": "Other"},
    ), lines)
    assert applied_errors(applied) == ["invalid-sign", None, None]
    assert line_of(applied.state)["item-price-refunded"] == Decimal("20.00")


@pytest.mark.parametrize("component", ["PromotionPrincipal", "PromotionShipping", "Goodwill"])
def test_invalid_sign_on_xml_components(component):
    """Step 6 for XML-only signs: positive promotions and negative Goodwill are invalid-sign; the other sign applies."""
    bad, good = ("0.01", "-0.01") if component.startswith("Promotion") else ("-0.01", "0.01")
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", component: bad}, {"Principal": "1.00", component: good, "reason": "Other"}), state())
    assert applied_errors(applied) == ["invalid-sign", None]


@pytest.mark.parametrize("component", ["Surcharge", "ExportCharge", "COD", "CODTax", "Other",
                                       "FreeReplacementReturnShipping"])
def test_components_without_sign_rule_accept_both_signs(component):
    """Step 6 names no sign for these components: a charge and a credit are both applied."""
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "2.00", component: "-1.00"}, {component: "1.00", "reason": "Other"}), state())
    assert applied_errors(applied) == [None, None]


# ================================================================ 7. quantity-cancelled


def test_quantity_exceeds_open_rejects_and_open_quantity_is_applied():
    """Step 7: open units = ordered - shipped - cancelled (here 4 - 1 - 1 = 2); 3 is rejected, 2 is applied."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "4", "quantity-shipped": "1",
                   "quantity-cancelled": "1"})
    records, after = run(lines, adj(price="0.00", qc=3), adj(price="0.00", qc=2))
    assert outcomes(records) == [("Error", "quantity-exceeds-open"), ("Success", None)]
    assert line_of(after)["quantity-cancelled"] == 3


def test_quantity_exceeds_open_counts_earlier_records_of_the_feed():
    """Step 7 sees earlier records: with 2 open units, cancelling 1 then 1 works and a third 1 is rejected."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "3", "quantity-shipped": "1"})
    records, after = run(lines, *[adj(price="0.00", qc=1, reason=r) for r in ("NoInventory", "Other", "Exchange")])
    assert outcomes(records) == [("Success", None), ("Success", None), ("Error", "quantity-exceeds-open")]
    assert line_of(after)["quantity-cancelled"] == 2


# ================================================================ 8. not yet charged


def test_not_yet_charged_rejects_money_on_unshipped_line():
    """Step 8: money on a line with no shipped units is not-yet-charged; the same refund once shipped applies."""
    unshipped = state({"order-status": "Unshipped", "quantity-shipped": "0"})
    rejected, _ = run(unshipped, adj(price="1.00"))
    accepted, _ = run(state({"order-status": "Shipped", "quantity-shipped": "2"}), adj(price="1.00"))
    assert only(rejected) == ("Error", "not-yet-charged")
    assert only(accepted) == ("Success", None)


def test_cancelling_units_without_money_on_unshipped_line_is_accepted():
    """Step 8 twin: quantity-cancelled with zero money on an unshipped line is a cancellation, applied."""
    unshipped = state({"order-status": "Unshipped", "quantity-shipped": "0"})
    records, after = run(unshipped, adj(price="0.00", qc=1))
    assert only(records) == ("Success", None)
    assert line_of(after)["quantity-cancelled"] == 1


# ================================================================ 9. caps

CAPS = [  # flat column, its charged amount in LINE, the snapshot refunded column
    ("item-price-adj", "20.00", "item-price-refunded"),
    ("item-tax-adj", "1.60", "item-tax-refunded"),
    ("shipping-price-adj", "5.00", "shipping-price-refunded"),
    ("shipping-tax-adj", "0.40", "shipping-tax-refunded"),
    ("gift-wrap-price-adj", "2.00", "gift-wrap-price-refunded"),
    ("gift-wrap-tax-adj", "0.16", "gift-wrap-tax-refunded"),
]


def _only(column: str, amount: str) -> dict:
    return adj({**{c: "0.00" for c in CREDIT_COLUMNS}, column: amount})


@pytest.mark.parametrize(("column", "charged", "refunded"), CAPS)
def test_refund_exceeds_charged_per_component(column, charged, refunded):
    """Step 9: refunding a component 0.01 above what was charged is refund-exceeds-charged; exactly the charge applies."""
    over = str(Decimal(charged) + Decimal("0.01"))
    rejected, _ = run(state(), _only(column, over))
    accepted, after = run(state(), _only(column, charged))
    assert only(rejected) == ("Error", "refund-exceeds-charged")
    assert column in message(rejected) and over in message(rejected)
    assert only(accepted) == ("Success", None)
    assert line_of(after)[refunded] == Decimal(charged)


@pytest.mark.parametrize(("column", "discount", "reversed_column"), [
    ("item-promotion-adj", "3.00", "item-promotion-reversed"),
    ("ship-promotion-adj", "1.00", "ship-promotion-reversed"),
])
def test_promotion_reversal_capped_by_discount(column, discount, reversed_column):
    """Step 9: reversing more promotion than the discount given is refund-exceeds-charged; the whole discount applies."""
    rejected, _ = run(state(), adj({column: f"-{Decimal(discount) + Decimal('0.01')}"}, price="20.00"))
    accepted, after = run(state(), adj({column: f"-{discount}"}, price="20.00"))
    assert only(rejected) == ("Error", "refund-exceeds-charged")
    assert only(accepted) == ("Success", None)
    assert line_of(after)[reversed_column] == Decimal(discount)


def test_promotion_reversal_counts_reversed_in_snapshot():
    """Step 9: the reversal cap includes what the snapshot says was reversed already (2.50 of 3.00)."""
    lines = state({"item-promotion-reversed": "2.50"})
    records, after = run(lines, adj(price="5.00", promo="-0.51"), adj(price="5.00", promo="-0.50"))
    assert outcomes(records) == [("Error", "refund-exceeds-charged"), ("Success", None)]
    assert line_of(after)["item-promotion-reversed"] == Decimal("3.00")


def test_line_net_with_goodwill_capped_by_total_charged():
    """Step 9, line rule: credits minus charges, Goodwill included, may not exceed charged minus discounts (25.16)."""
    full = {"Principal": "20.00", "Tax": "1.60", "Shipping": "5.00", "ShippingTax": "0.40", "GiftWrap": "2.00",
            "GiftWrapTax": "0.16", "PromotionPrincipal": "-3.00", "PromotionShipping": "-1.00"}
    # Every component within its own cap; the line net is exactly 25.16: applied.
    exact = apply_records(FeedType.XML_ADJUSTMENT, xml_records(full), state())
    assert applied_errors(exact) == [None]
    # The same plus Goodwill 0.01: every component still within its cap, but the net is 25.17.
    over = apply_records(FeedType.XML_ADJUSTMENT, xml_records({**full, "Goodwill": "0.01"}), state())
    assert applied_errors(over) == ["refund-exceeds-charged"]
    # Goodwill alone is capped by the line net: 25.16 applies, then 0.01 more does not.
    goodwill = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Goodwill": str(LINE_TOTAL)}, {"Goodwill": "0.01", "reason": "Other"}), state())
    assert applied_errors(goodwill) == [None, "refund-exceeds-charged"]


def test_line_net_cap_counts_charges_against_credits():
    """Step 9, line rule: a RestockingFee charge lowers the net, so a full refund minus a fee stays within 25.16."""
    full = {"Principal": "20.00", "Tax": "1.60", "Shipping": "5.00", "ShippingTax": "0.40", "GiftWrap": "2.00",
            "GiftWrapTax": "0.16"}  # 29.16 > 25.16 without the promotions reversed
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        full, {**full, "RestockingFee": "-4.00", "reason": "Other"}), state())
    assert applied_errors(applied) == ["refund-exceeds-charged", None]


def test_line_net_flat_file_with_unreversed_promotion():
    """Step 9, line rule from a flat file: refunding every component in full without reversing the discounts is too much."""
    full = dict(price="20.00", tax="1.60", ship="5.00", ship_tax="0.40", wrap="2.00", wrap_tax="0.16")
    records, _ = run(state(), adj(**full), adj(**full, promo="-3.00", ship_promo="-1.00"))
    assert outcomes(records) == [("Error", "refund-exceeds-charged"), ("Success", None)]


def test_refund_cap_cumulative_within_one_feed():
    """Step 9: earlier records of the same feed count: 15.00 then 5.01 is too much; 15.00 then 5.00 is not."""
    rejected, _ = run(state(), adj(price="15.00"), adj(price="5.01"))
    accepted, after = run(state(), adj(price="15.00"), adj(price="5.00"))
    assert outcomes(rejected) == [("Success", None), ("Error", "refund-exceeds-charged")]
    assert outcomes(accepted) == [("Success", None), ("Success", None)]
    assert line_of(after)["item-price-refunded"] == Decimal("20.00")


def test_refund_cap_counts_refunded_in_snapshot():
    """Step 9: *-refunded already in the snapshot count: 15.00 refunded before leaves room for 5.00, not 5.01."""
    lines = state({"item-price-refunded": "15.00"})
    rejected, _ = run(lines, adj(price="5.01"))
    accepted, after = run(lines, adj(price="5.00"))
    assert only(rejected) == ("Error", "refund-exceeds-charged")
    assert "15.00" in message(rejected)
    assert only(accepted) == ("Success", None)
    assert line_of(after)["item-price-refunded"] == Decimal("20.00")


@pytest.mark.parametrize(("second", "expected"), [("5.01", ("Error", "refund-exceeds-charged")),
                                                  ("5.00", ("Success", None))])
def test_refund_cap_across_feeds_of_one_call(tmp_path: Path, second, expected):
    """Step 9 across feeds: one `process_feeds` call applies feed A (15.00) before feed B sees the cap."""
    snapshot = tmp_path / "orders.tsv"
    snapshot.write_text(snapshot_text())
    first, later = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(feed(adj(price="15.00")))
    later.write_bytes(feed(adj(price=second)))
    run_ = process_feeds([first, later], snapshot, tmp_path / "out", OPTIONS)
    assert only(run_.results[0].records) == ("Success", None)
    assert only(run_.results[1].records) == expected


# ================================================================ 10. net-not-positive


def test_net_not_positive_rejects_zero_and_negative_nets():
    """Step 10: all zero, or a refund cancelled out by a promotion reversal (net 0), without units is net-not-positive."""
    records, after = run(state(), adj(price="0.00"), adj(price="1.00", promo="-1.00"), adj(price="1.00", promo="-0.99"))
    assert outcomes(records) == [("Error", "net-not-positive"), ("Error", "net-not-positive"), ("Success", None)]
    assert line_of(after)["item-price-refunded"] == Decimal("1.00")


def test_net_not_positive_with_charge_only_xml():
    """Step 10: a RestockingFee alone (net < 0) is net-not-positive; with a unit cancelled it is applied."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "3", "quantity-shipped": "2"})
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"RestockingFee": "-1.00"}, {"RestockingFee": "-1.00", "quantity-cancelled": 1, "reason": "Other"}), lines)
    assert applied_errors(applied) == ["net-not-positive", None]


def test_zero_money_with_units_cancelled_is_accepted():
    """Step 10 twin: zero money is fine when quantity-cancelled > 0 (2 ordered, 1 shipped, cancel 1)."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "2", "quantity-shipped": "1"})
    records, after = run(lines, adj(price="0.00", qc=1))
    assert only(records) == ("Success", None)
    assert line_of(after)["quantity-cancelled"] == 1
    assert line_of(after)["order-status"] == "Shipped"


# ================================================================ 11. duplicates


def test_duplicate_adjustment_id_on_same_line_rejected():
    """Step 11: the same MerchantAdjustmentItemID already applied on the line is duplicate-adjustment."""
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-1"},
        {"Principal": "2.00", "merchant-adjustment-item-id": "RMA-1", "reason": "Other"},
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-2"},
    ), state(), feed="first.xml")
    assert applied_errors(applied) == [None, "duplicate-adjustment", None]
    duplicate = applied.outcomes.sort("seq").get_column("message")[1]
    assert "RMA-1" in duplicate and "first.xml" in duplicate
    assert line_of(applied.state)["item-price-refunded"] == Decimal("2.00")


def test_duplicate_adjustment_id_on_other_line_accepted():
    """Step 11 is per line: the same MerchantAdjustmentItemID on another line of the order is applied."""
    lines = state({}, {"order-item-id": OTHER_ITEM})
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-1"},
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-1", "order-item-id": OTHER_ITEM},
    ), lines)
    assert applied_errors(applied) == [None, None]


def test_duplicate_adjustment_id_from_earlier_feed():
    """Step 11 across feeds: an id applied by an earlier feed (passed as history) is duplicate-adjustment."""
    first = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-9"}), state(), feed="first.xml")
    second = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-9"},
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-10"}),
        first.state, history=first.history, feed="second.xml")
    assert applied_errors(second) == ["duplicate-adjustment", None]
    assert "first.xml" in second.outcomes.sort("seq").get_column("message")[0]


def test_duplicate_adjustment_id_of_rejected_record_is_not_a_duplicate():
    """Step 11 says "already applied": an id whose first record was rejected may be used again."""
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "-1.00", "merchant-adjustment-item-id": "RMA-1"},
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-1"},
    ), state())
    assert applied_errors(applied) == ["invalid-sign", None]


def test_possible_duplicate_within_feed():
    """Step 11: a record identical to one applied earlier on the line is applied with a possible-duplicate Warning
    naming the feed and the earlier record; a record differing in one value (reason) is a plain Success."""
    records, after = run(state(), adj(price="2.00"), adj(price="2.00"), adj(price="2.00", reason="Other"),
                         name="weekly.txt")
    assert outcomes(records) == [("Success", None), ("Warning", "possible-duplicate"), ("Success", None)]
    assert "record 1" in message(records, 1) and "weekly.txt" in message(records, 1)
    assert line_of(after)["item-price-refunded"] == Decimal("6.00")  # a Warning is applied


@pytest.mark.parametrize("change", [dict(reason="Other"), dict(qc=1), dict(price="2.01"), dict(tax="0.01"),
                                    dict(promo="-0.01")])
def test_record_differing_in_one_value_is_not_a_duplicate(change):
    """Step 11 "identical in every value": a repeat that differs in one value (reason, quantity-cancelled, or any
    amount) is a plain Success, while the exact repeat after it is a possible-duplicate Warning."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "3", "quantity-shipped": "2"})
    records, _ = run(lines, adj(price="2.00"), adj(**{"price": "2.00", **change}), adj(price="2.00"))
    assert outcomes(records) == [("Success", None), ("Success", None), ("Warning", "possible-duplicate")]
    assert "record 1" in message(records, 2)


def test_possible_duplicate_is_per_line():
    """Step 11: the identical values on another line of the order are not a duplicate."""
    lines = state({}, {"order-item-id": OTHER_ITEM})
    records, _ = run(lines, adj(price="2.00"), adj(price="2.00", item=OTHER_ITEM))
    assert outcomes(records) == [("Success", None), ("Success", None)]


def test_possible_duplicate_across_feeds_of_one_call():
    """Step 11 across feeds: a record identical to one applied by an earlier feed of the same call is a Warning
    whose message names the earlier feed and record."""
    run_state = RunState(lines=state())
    first = advance(feed(adj(price="0.50"), adj(price="3.00")), "monday.txt", run_state, OPTIONS)
    second = advance(feed(adj(price="3.00"), adj(price="3.01")), "tuesday.txt", run_state, OPTIONS)
    assert outcomes(first.records) == [("Success", None), ("Success", None)]
    assert outcomes(second.records) == [("Warning", "possible-duplicate"), ("Success", None)]
    text = message(second.records, 0)
    assert "monday.txt" in text and "record 2" in text
    assert line_of(run_state.lines)["item-price-refunded"] == Decimal("9.51")


def test_possible_duplicate_not_raised_when_id_given():
    """Step 11: with a MerchantAdjustmentItemID, distinct ids mark distinct adjustments: no Warning."""
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-1"},
        {"Principal": "1.00", "merchant-adjustment-item-id": "RMA-2"},
        {"Principal": "1.00"},
    ), state())
    assert applied_errors(applied) == [None, None, "possible-duplicate"]


def test_duplicate_checks_come_after_caps():
    """Step 11 comes after step 9: a repeated id whose amount is over the cap reports refund-exceeds-charged."""
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"Principal": "15.00", "merchant-adjustment-item-id": "RMA-1"},
        {"Principal": "15.00", "merchant-adjustment-item-id": "RMA-1"},
    ), state())
    assert applied_errors(applied) == [None, "refund-exceeds-charged"]


# ================================================================ amount formats (SPEC §2.3)


@pytest.mark.parametrize(("value", "error"), [
    ("1,000.00", "invalid-amount"),
    ("10.005", "invalid-amount"),
    ("1e3", "invalid-amount"),
    ("10", "invalid-amount"),
    ("10.5", "invalid-amount"),
    (".50", "invalid-amount"),
    ("+1.00", "invalid-amount"),
    ("123456789012345678901.00", "invalid-amount"),
    ("", "missing-field"),
])
def test_bad_amount_formats(value, error):
    """SPEC §2.3: thousands separators, 3 decimals, exponents, missing decimals in USD, 21 integer digits are
    invalid-amount and a blank required amount is missing-field; the message names the column and value."""
    records, after = run(state(), adj(price=value))
    assert only(records) == ("Error", error)
    assert "item-price-adj" in message(records)
    if value:
        assert f"'{value}'" in message(records)
    assert line_of(after)["item-price-refunded"] == Decimal("0.00")


def test_bad_amount_in_promotion_column_named():
    """SPEC §2.3: the optional promotion columns follow the same format and the message names that column."""
    records, _ = run(state(), adj(price="5.00", promo="-1.5"))
    assert only(records) == ("Error", "invalid-amount")
    assert "item-promotion-adj '-1.5'" in message(records)


def test_negative_zero_credit_is_invalid_sign_not_invalid_amount():
    """SPEC §2.3 / §4.2 step 6: "-0.00" is a well-formed amount, so it passes validation and fails the sign rule."""
    records, _ = run(state(), adj(price="-0.00", tax="0.50"))
    assert only(records) == ("Error", "invalid-sign")
    assert "item-price-adj -0.00" in message(records)


def test_twenty_integer_digits_accepted():
    """SPEC §2.3: up to 20 integer digits is a valid amount (here far above the cap, so the cap rejects it)."""
    records, _ = run(state(), adj(price="12345678901234567890.00"))
    assert only(records) == ("Error", "refund-exceeds-charged")


def test_jpy_amounts_without_decimals_accepted():
    """SPEC §2.3: JPY has no minor units: 3980 (and 3980.00) are amounts; 10 for a USD order is not."""
    jpy = {"order-id": "503-0000001-0000001", "currency": "JPY", "item-price": "3980", "item-tax": "398",
           "shipping-price": "500", "shipping-tax": "50", "gift-wrap-price": "0", "gift-wrap-tax": "0",
           "item-promotion-discount": "0", "ship-promotion-discount": "0"}
    lines = state(jpy)
    zero = dict(tax="0", ship="0", ship_tax="0", wrap="0", wrap_tax="0")
    records, after = run(lines, adj(order="503-0000001-0000001", currency="JPY", price="3980", **zero),
                         adj(order="503-0000001-0000001", currency="JPY", price="1", **zero))
    assert outcomes(records) == [("Success", None), ("Error", "refund-exceeds-charged")]
    assert line_of(after, "503-0000001-0000001")["item-price-refunded"] == Decimal("3980")


# ================================================================ status after changes (SPEC §4.3)


def test_status_recomputed_after_quantity_cancelled():
    """SPEC §4.3: cancelling the open units of a partly shipped order makes it Shipped; cancelling only some of
    them keeps it PartiallyShipped."""
    lines = state({"order-status": "PartiallyShipped", "quantity-ordered": "1", "quantity-shipped": "1"},
                  {"order-item-id": OTHER_ITEM, "order-status": "PartiallyShipped", "quantity-ordered": "3",
                   "quantity-shipped": "0"})
    _, partly = run(lines, adj(item=OTHER_ITEM, price="0.00", qc=2))
    assert line_of(partly, item=OTHER_ITEM)["order-status"] == "PartiallyShipped"
    assert line_of(partly)["order-status"] == "PartiallyShipped"
    _, done = run(partly, adj(item=OTHER_ITEM, price="0.00", qc=1))
    assert {line_of(done)["order-status"], line_of(done, item=OTHER_ITEM)["order-status"]} == {"Shipped"}


def test_status_canceled_when_every_unit_cancelled():
    """SPEC §4.3: an unshipped order stays Unshipped while any unit is open and becomes Canceled when all are."""
    lines = state({"order-status": "Unshipped", "quantity-shipped": "0"},
                  {"order-item-id": OTHER_ITEM, "order-status": "Unshipped", "quantity-shipped": "0",
                   "quantity-ordered": "1"})
    records, after = run(lines, adj(price="0.00", qc=2), adj(item=OTHER_ITEM, price="0.00", qc=1),
                         adj(item=OTHER_ITEM, price="0.00", qc=1))
    assert outcomes(records) == [("Success", None), ("Success", None), ("Error", "already-cancelled")]
    assert line_of(after)["order-status"] == "Canceled"
    _, first_only = run(lines, adj(price="0.00", qc=2))
    assert line_of(first_only)["order-status"] == "Unshipped"


def test_status_not_changed_by_rejected_record():
    """SPEC §4: a rejected record changes nothing, not even the status of a (miscoded) order."""
    lines = state({"order-status": "PartiallyShipped"})  # every unit shipped: §4.3 would say Shipped
    records, after = run(lines, adj(price="-1.00"))
    assert only(records) == ("Error", "invalid-sign")
    assert line_of(after)["order-status"] == "PartiallyShipped"


# ================================================================ merchant ids (SPEC §4.2 step 1)

MERCHANT_LINES = (
    {"order-id": "305-0000001-0000001", "order-item-id": "30000000000001", "merchant-order-id": "DE-1001",
     "merchant-order-item-id": "DE-1001-1", "currency": "EUR"},
    {"order-id": "305-0000001-0000001", "order-item-id": "30000000000002", "merchant-order-id": "DE-1001",
     "merchant-order-item-id": "DE-1001-2", "currency": "EUR"},
)


def test_merchant_ids_resolve_from_snapshot():
    """Step 1: MerchantOrderID / MerchantOrderItemID that the snapshot maps name the order line they map to."""
    lines = state(*MERCHANT_LINES)
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
         "merchant-order-item-id": "DE-1001-2", "currency": "EUR", "Principal": "4.00"},
        {"order-id": "305-0000001-0000001", "order-item-id": None, "merchant-order-item-id": "DE-1001-1",
         "currency": "EUR", "Principal": "3.00"},
    ), lines)
    assert applied_errors(applied) == [None, None]
    assert line_of(applied.state, "305-0000001-0000001", "30000000000002")["item-price-refunded"] == Decimal("4.00")
    assert line_of(applied.state, "305-0000001-0000001", "30000000000001")["item-price-refunded"] == Decimal("3.00")


def test_unknown_merchant_ids_not_found():
    """Step 1: a MerchantOrderID nothing maps is order-not-found; a MerchantOrderItemID not mapped in a known
    order is item-not-found; the messages name the ids as given."""
    lines = state(*MERCHANT_LINES)
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-9999",
         "merchant-order-item-id": "DE-9999-1", "currency": "EUR", "Principal": "1.00"},
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
         "merchant-order-item-id": "DE-1001-9", "currency": "EUR", "Principal": "1.00"},
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
         "merchant-order-item-id": "DE-1001-1", "currency": "EUR", "Principal": "1.00"},
    ), lines)
    assert applied_errors(applied) == ["order-not-found", "item-not-found", None]
    messages = applied.outcomes.sort("seq").get_column("message").to_list()
    assert "DE-9999" in messages[0]
    assert "DE-1001-9" in messages[1]


def test_merchant_item_id_of_another_order_not_found():
    """Step 1: a MerchantOrderItemID maps within its own order only; another order's item id is item-not-found."""
    lines = state(*MERCHANT_LINES, {"order-id": "305-0000002-0000002", "order-item-id": "30000000000003",
                                    "merchant-order-id": "DE-1002", "merchant-order-item-id": "DE-1002-1",
                                    "currency": "EUR"})
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
         "merchant-order-item-id": "DE-1002-1", "currency": "EUR", "Principal": "1.00"},
    ), lines)
    assert applied_errors(applied) == ["item-not-found"]


def test_merchant_order_id_naming_two_orders_is_not_found():
    """Step 1: a MerchantOrderID that the snapshot gives to two orders maps to neither (the code will not guess
    which buyer to refund): order-not-found."""
    lines = state(*MERCHANT_LINES, {"order-id": "305-0000002-0000002", "order-item-id": "30000000000003",
                                    "merchant-order-id": "DE-1001", "merchant-order-item-id": "DE-1001-3",
                                    "currency": "EUR"})
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(
        {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
         "merchant-order-item-id": "DE-1001-3", "currency": "EUR", "Principal": "1.00"},
    ), lines)
    assert applied_errors(applied) == ["order-not-found"]


def test_records_naming_no_order_share_the_first_round(monkeypatch):
    """Records whose merchant order id maps to no order touch no line, so they are judged together: one round,
    however many there are, where grouped under their missing order id they took a round each. A resolved
    order's second record still waits for its first, and sees what it refunded."""
    import orderfeeds.apply as apply_module

    rounds = []
    evaluate = apply_module.evaluate_adjustments

    def counted(batch, *args, **kwargs):
        rounds.append(batch.get_column("seq").to_list())
        return evaluate(batch, *args, **kwargs)

    monkeypatch.setattr(apply_module, "evaluate_adjustments", counted)
    lines = state(*MERCHANT_LINES)
    unknown = [{"order-id": None, "order-item-id": None, "merchant-order-id": f"DE-9{n:03}",
                "merchant-order-item-id": f"DE-9{n:03}-1", "currency": "EUR", "Principal": "1.00"} for n in range(30)]
    resolved = {"order-id": None, "order-item-id": None, "merchant-order-id": "DE-1001",
                "merchant-order-item-id": "DE-1001-1", "currency": "EUR", "Principal": "10.00"}
    more = {**resolved, "Principal": "15.00"}  # 10.00 + 15.00 is more than the 20.00 charged
    applied = apply_records(FeedType.XML_ADJUSTMENT, xml_records(resolved, *unknown, more), lines)
    assert applied_errors(applied) == [None, *["order-not-found"] * 30, "refund-exceeds-charged"]
    assert rounds == [list(range(31)), [31]]
    assert line_of(applied.state, "305-0000001-0000001", "30000000000001")["item-price-refunded"] == Decimal("10.00")


# ================================================================ quantity-cancelled format (SPEC §2.3)


@pytest.mark.parametrize(("value", "expected"), [
    ("", ("Success", None)),
    ("0", ("Success", None)),
    ("-1", ("Error", "invalid-field")),
    ("1.5", ("Error", "invalid-field")),
])
def test_quantity_cancelled_format(value, expected):
    """SPEC §2.3: quantity-cancelled is an integer >= 0 and blank means 0; anything else is invalid-field."""
    records, after = run(state(), adj(price="1.00", qc=value))
    assert only(records) == expected
    assert line_of(after)["quantity-cancelled"] == 0


def test_invoice_unconfirmed_order_keeps_status_after_refund():
    """SPEC §4.3 recomputes the status after every applied record. An InvoiceUnconfirmed order whose units are
    all shipped would literally become Shipped; the code keeps the finer InvoiceUnconfirmed (a shipped order
    waiting for its invoice), which this test pins as the decision."""
    records, after = run(state({"order-status": "InvoiceUnconfirmed"}), adj(price="1.00"))
    assert only(records) == ("Success", None)
    assert line_of(after)["order-status"] == "InvoiceUnconfirmed"


def test_refund_only_record_recomputes_inconsistent_status():
    """SPEC §4.2 step 12 recomputes the status for every applied record: a snapshot that calls a fully shipped
    order PartiallyShipped is Shipped after a refund on it."""
    records, after = run(state({"order-status": "PartiallyShipped"}), adj(price="1.00"))
    assert only(records) == ("Success", None)
    assert line_of(after)["order-status"] == "Shipped"

"""Cancellation rules of SPEC §4.1, status recomputation (§4.3) and in-feed ordering (§4, §4.4).

Every rule is shown rejecting a record and accepting a near-identical one. Feeds are
flat cancellation feeds run through `process_feed`; `Quantity` exists only in XML, so
the quantity rule calls `apply_records` with a records frame directly.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.apply import Applied, apply_records
from orderfeeds.feedtypes import FeedType
from orderfeeds.outcomes import FeedResult
from orderfeeds.pipeline import ProcessOptions, process_feed
from orderfeeds.report import summary

AS_OF = "2026-11-28T06:00:00+00:00"
ORDER = "111-0000001-0000001"
OTHER = "111-0000001-0000002"
THIRD = "111-0000001-0000003"
A, B, C = "10000000000001", "10000000000002", "10000000000003"
HEADER = "order-id\tcancellation-reason-code\tamazon-order-item-code"

States = Callable[..., pl.DataFrame]


# --- helpers -----------------------------------------------------------------------------

def feed(*rows: tuple[str, str, str]) -> bytes:
    """A flat cancellation feed; each row is (order-id, reason, item code); ("x", "", "") cancels order x."""
    return ("\n".join([HEADER, *("\t".join(row) for row in rows)]) + "\n").encode("utf-8")


def whole(order: str = ORDER) -> tuple[str, str, str]:
    return (order, "", "")


def item(code: str = A, order: str = ORDER, reason: str = "NoInventory") -> tuple[str, str, str]:
    return (order, reason, code)


def cancel(state: pl.DataFrame, *rows: tuple[str, str, str]) -> tuple[FeedResult, pl.DataFrame]:
    """Process the rows as one flat feed against `state`: (result, state after)."""
    return process_feed(feed(*rows), "cancel.txt", state, ProcessOptions(as_of=AS_OF))


def verdicts(result: FeedResult) -> list[tuple[str, str | None]]:
    """(status, error-name) per record, in record order."""
    return list(result.records.select("status", "error-name").iter_rows())


def only(result: FeedResult) -> dict:
    """The single record of a one-record feed, as a dict of report columns."""
    assert result.records.height == 1, result.records
    return result.records.row(0, named=True)


def line(state: pl.DataFrame, code: str = A, order: str = ORDER) -> dict:
    """One order line of a state frame, as a dict."""
    found = state.filter((pl.col("order-id") == order) & (pl.col("order-item-id") == code))
    assert found.height == 1, f"{order}/{code} not in state"
    return found.row(0, named=True)


def assert_same_state(after: pl.DataFrame, before: pl.DataFrame) -> None:
    """Equal order states; row order carries no meaning, so lines are compared by key."""
    key = ["order-id", "order-item-id"]
    assert_frame_equal(after.sort(key), before.sort(key))


def quantity_records(*rows: tuple[str, str, int | None]) -> pl.DataFrame:
    """A validated cancellation records frame with a Quantity column; rows are (order-id, item, quantity)."""
    n = len(rows)
    return pl.DataFrame(
        {
            "seq": list(range(n)), "record": list(range(1, n + 1)), "line": list(range(1, n + 1)),
            "item-index": [1] * n, "order-id": [r[0] for r in rows], "reason": ["NoInventory"] * n,
            "order-item-id": [r[1] for r in rows], "quantity": [r[2] for r in rows],
        },
        schema={"seq": pl.UInt32, "record": pl.Int64, "line": pl.Int64, "item-index": pl.Int32,
                "order-id": pl.String, "reason": pl.String, "order-item-id": pl.String, "quantity": pl.Int64},
    )


def apply_quantities(state: pl.DataFrame, *rows: tuple[str, str, int | None]) -> Applied:
    return apply_records(FeedType.XML_ACKNOWLEDGEMENT, quantity_records(*rows), state)


def errors(applied: Applied) -> list[str | None]:
    """The error (or None when applied) of each record, in record order."""
    return applied.outcomes.sort("seq").get_column("error").to_list()


# --- every rule, rejecting and accepting ------------------------------------------------

PARTLY_SHIPPED = (
    {"order-item-id": A, "order-status": "PartiallyShipped", "quantity-shipped": 1},
    {"order-item-id": B, "order-status": "PartiallyShipped", "quantity-ordered": 2},
)
NOTHING_SHIPPED = (
    {"order-item-id": A},
    {"order-item-id": B, "quantity-ordered": 2},
)

# (id, state lines, feed row, error code, error name) for the rejecting side, and the
# accepting twin: the same shape with the one fact that trips the rule changed.
RULE_PAIRS = [
    pytest.param(({},), item(order=OTHER), 90009, "order-not-found", ({},), item(), id="order-not-found/item"),
    pytest.param(({},), whole(OTHER), 90009, "order-not-found", ({},), whole(), id="order-not-found/whole"),
    pytest.param(({},), item(B), 90008, "item-not-found", ({"order-item-id": B},), item(B), id="item-not-found"),
    pytest.param(({}, {"order-id": OTHER, "order-item-id": B}), item(B), 90008, "item-not-found",
                 ({}, {"order-item-id": B}), item(B), id="item-not-found/item-of-another-order"),
    pytest.param(({"order-status": "Pending"},), item(), 90004, "order-pending", ({},), item(),
                 id="order-pending/Pending/item"),
    pytest.param(({"order-status": "Pending"},), whole(), 90004, "order-pending", ({},), whole(),
                 id="order-pending/Pending/whole"),
    pytest.param(({"order-status": "PendingAvailability"},), item(), 90004, "order-pending", ({},), item(),
                 id="order-pending/PendingAvailability/item"),
    pytest.param(({"order-status": "PendingAvailability"},), whole(), 90004, "order-pending", ({},), whole(),
                 id="order-pending/PendingAvailability/whole"),
    pytest.param(({"fulfillment-channel": "AFN"},), item(), 90005, "fulfilled-by-amazon",
                 ({"fulfillment-channel": "MFN"},), item(), id="fulfilled-by-amazon/item"),
    pytest.param(({"fulfillment-channel": "AFN"},), whole(), 90005, "fulfilled-by-amazon",
                 ({"fulfillment-channel": "MFN"},), whole(), id="fulfilled-by-amazon/whole"),
    pytest.param(({"order-status": "Canceled", "quantity-cancelled": 1},), whole(), 90002, "already-cancelled",
                 ({},), whole(), id="already-cancelled/whole-order"),
    pytest.param(({"order-item-id": A, "quantity-cancelled": 1}, {"order-item-id": B}), item(A), 90002,
                 "already-cancelled",
                 ({"order-item-id": A, "quantity-ordered": 2, "quantity-cancelled": 1}, {"order-item-id": B}), item(A),
                 id="already-cancelled/item-all-units-cancelled"),
    pytest.param(PARTLY_SHIPPED, item(A), 90001, "already-shipped", PARTLY_SHIPPED, item(B),
                 id="already-shipped/item-shipped"),
    pytest.param(({"quantity-ordered": 3, "quantity-shipped": 1, "order-status": "PartiallyShipped"},), item(A), 90001,
                 "already-shipped", ({"quantity-ordered": 3},), item(A), id="already-shipped/item-partly-shipped"),
    pytest.param(PARTLY_SHIPPED, whole(), 90001, "already-shipped", NOTHING_SHIPPED, whole(),
                 id="already-shipped/whole-order-with-a-shipped-line"),
    pytest.param(({"order-status": "Shipped", "quantity-shipped": 1},), item(), 90001, "already-shipped", ({},), item(),
                 id="already-shipped/order-Shipped"),
    pytest.param(({"order-status": "InvoiceUnconfirmed", "quantity-shipped": 1},), whole(), 90001, "already-shipped",
                 ({},), whole(), id="already-shipped/order-InvoiceUnconfirmed"),
    # The status alone decides, even if the snapshot's shipped count lags behind.
    pytest.param(({"order-status": "Shipped"},), whole(), 90001, "already-shipped", ({},), whole(),
                 id="already-shipped/status-Shipped-alone"),
    pytest.param(({"order-status": "InvoiceUnconfirmed"},), item(), 90001, "already-shipped", ({},), item(),
                 id="already-shipped/status-InvoiceUnconfirmed-alone"),
    pytest.param(({"shipping-label-purchased": True},), item(), 90006, "label-purchased",
                 ({"shipping-label-purchased": False},), item(), id="label-purchased/item"),
    pytest.param(({"order-item-id": A}, {"order-item-id": B, "shipping-label-purchased": True}), whole(), 90006,
                 "label-purchased", ({"order-item-id": A}, {"order-item-id": B}), whole(), id="label-purchased/whole"),
    pytest.param(({"order-status": "Unfulfillable"},), item(), 90017, "order-unfulfillable", ({},), item(),
                 id="order-unfulfillable/item"),
    pytest.param(({"order-status": "Unfulfillable"},), whole(), 90017, "order-unfulfillable", ({},), whole(),
                 id="order-unfulfillable/whole"),
]


@pytest.mark.parametrize(("lines", "row", "code", "name", "ok_lines", "ok_row"), RULE_PAIRS)
def test_rule_rejects_and_its_twin_is_applied(order_state: States, lines, row, code, name, ok_lines, ok_row):
    """Each rule of SPEC §4.1 rejects its record with its catalogue code, changing nothing,
    and a near-identical record on a near-identical state passes and is applied."""
    state = order_state(*lines)
    result, after = cancel(state, row)
    record = only(result)
    assert (record["status"], record["error-code"], record["error-name"]) == ("Error", code, name)
    assert row[0] in record["error-message"], "the message names the order"
    assert_same_state(after, state)

    ok_state = order_state(*ok_lines)
    ok_result, ok_after = cancel(ok_state, ok_row)
    assert verdicts(ok_result) == [("Success", None)]
    key = ["order-id", "order-item-id"]
    assert not ok_after.sort(key).equals(ok_state.sort(key)), "the accepted twin changed the state"


def test_item_cancel_applied_cancels_the_open_units_of_that_line_only(order_state: States):
    """An applied item cancellation (rule 9) cancels every open unit of its line, and nothing else;
    the report line is a Success with blank code, name and message."""
    state = order_state({"order-item-id": A, "quantity-ordered": 3, "quantity-cancelled": 1},
                        {"order-item-id": B, "quantity-ordered": 2})
    result, after = cancel(state, item(A))
    record = only(result)
    assert record["status"] == "Success"
    assert record["error-code"] is None and record["error-name"] is None and record["error-message"] is None
    assert line(after, A)["quantity-cancelled"] == 3
    assert line(after, B)["quantity-cancelled"] == 0
    assert line(after, A)["order-status"] == "Unshipped"


def test_messages_name_the_values_involved(order_state: States):
    """Rule messages name the order, the item and the status that decided, so a person can act."""
    state = order_state({"order-id": ORDER, "order-status": "PendingAvailability"},
                        {"order-id": OTHER, "order-item-id": A})
    result, _ = cancel(state, item(A, ORDER), item(B, OTHER))
    pending, missing = result.records.get_column("error-message").to_list()
    assert ORDER in pending and "PendingAvailability" in pending
    assert OTHER in missing and B in missing


# --- the advice in already-shipped and label-purchased messages ---------------------------

def test_partly_shipped_order_message_names_the_order_adjustment_route(order_state: States):
    """already-shipped on a partly shipped order tells the seller to cancel the rest with an
    Order Adjustment giving quantity-cancelled (SPEC §4.1 rule 5)."""
    result, _ = cancel(order_state(*PARTLY_SHIPPED), whole())
    message = only(result)["error-message"]
    assert "Order Adjustment" in message and "quantity-cancelled" in message
    assert "return" in message


def test_fully_shipped_order_message_asks_for_a_return_only(order_state: States):
    """already-shipped on a fully shipped order asks for a return; there is nothing left to
    cancel, so no Order Adjustment route is offered."""
    result, _ = cancel(order_state({"order-status": "Shipped", "quantity-shipped": 1}), item())
    message = only(result)["error-message"]
    assert "return it for a refund" in message
    assert "Order Adjustment" not in message


def test_label_purchased_message_gives_the_same_advice_as_already_shipped(order_state: States):
    """label-purchased gives rule 5's advice (return for a refund) and names the line."""
    result, _ = cancel(order_state({"shipping-label-purchased": True}), item())
    message = only(result)["error-message"]
    assert "return it for a refund" in message
    assert A in message and ORDER in message


def test_label_on_an_already_cancelled_line_does_not_block_a_whole_order_cancel(order_state: States):
    """A label bought for a line that is already fully cancelled ships nothing, so a whole-order
    cancel of the order's other open line is applied."""
    state = order_state({"order-item-id": A, "quantity-cancelled": 1, "shipping-label-purchased": True},
                        {"order-item-id": B})
    result, after = cancel(state, whole())
    assert verdicts(result) == [("Success", None)]
    assert line(after, B)["quantity-cancelled"] == 1


# --- precedence -----------------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "row", "expected"), [
    pytest.param(({"order-status": "Pending", "fulfillment-channel": "AFN", "shipping-label-purchased": True},),
                 item(B), "item-not-found", id="item-not-found-before-pending-and-AFN"),
    pytest.param(({"order-status": "Pending", "fulfillment-channel": "AFN", "shipping-label-purchased": True},),
                 item(A), "order-pending", id="pending-before-AFN-and-label"),
    pytest.param(({"order-status": "Canceled", "quantity-cancelled": 1, "fulfillment-channel": "AFN",
                   "shipping-label-purchased": True},), whole(), "fulfilled-by-amazon", id="AFN-before-cancelled"),
    pytest.param(({"order-status": "Shipped", "quantity-shipped": 1, "fulfillment-channel": "AFN"},), item(),
                 "fulfilled-by-amazon", id="AFN-before-shipped"),
    pytest.param(({"order-status": "Canceled", "quantity-cancelled": 1, "shipping-label-purchased": True},), whole(),
                 "already-cancelled", id="cancelled-before-label"),
    pytest.param(({"order-item-id": A, "quantity-cancelled": 1, "shipping-label-purchased": True},
                  {"order-item-id": B}), item(A), "already-cancelled", id="cancelled-line-before-label"),
    pytest.param(({"order-status": "Shipped", "quantity-shipped": 1, "shipping-label-purchased": True},), item(),
                 "already-shipped", id="shipped-before-label"),
    pytest.param(({"order-status": "Unfulfillable", "shipping-label-purchased": True},), whole(),
                 "label-purchased", id="label-before-unfulfillable"),
])
def test_first_failing_rule_decides(order_state: States, lines, row, expected):
    """A record that breaks several rules gets the error of the earliest in SPEC §4.1's order."""
    result, _ = cancel(order_state(*lines), row)
    assert only(result)["error-name"] == expected


def test_unfulfillable_decides_before_quantity_exceeds_open(order_state: States):
    """Rule 7 (order-unfulfillable) comes before rule 8 (quantity-exceeds-open)."""
    applied = apply_quantities(order_state({"order-status": "Unfulfillable"}), (ORDER, A, 5))
    assert errors(applied) == ["order-unfulfillable"]


# --- quantity-exceeds-open (XML Quantity) ---------------------------------------------------

def test_quantity_above_open_units_is_rejected(order_state: States):
    """Quantity 3 on a line with 2 open units (3 ordered, 1 cancelled) is quantity-exceeds-open,
    names both numbers, and changes nothing."""
    state = order_state({"quantity-ordered": 3, "quantity-cancelled": 1})
    applied = apply_quantities(state, (ORDER, A, 3))
    assert errors(applied) == ["quantity-exceeds-open"]
    message = applied.outcomes.get_column("message")[0]
    assert "3" in message and "2 open units" in message
    assert_same_state(applied.state, state)
    assert applied.effects.height == 0


def test_quantity_equal_to_open_units_cancels_them_all(order_state: States):
    """Quantity equal to the open units is applied: the line is fully cancelled and the
    one-line order becomes Canceled."""
    state = order_state({"quantity-ordered": 3, "quantity-cancelled": 1})
    applied = apply_quantities(state, (ORDER, A, 2))
    assert errors(applied) == [None]
    assert line(applied.state)["quantity-cancelled"] == 3
    assert line(applied.state)["order-status"] == "Canceled"


def test_quantity_below_open_units_cancels_only_that_many(order_state: States):
    """Quantity 1 of 3 open units cancels one unit; the order stays Unshipped (SPEC §4.3)."""
    applied = apply_quantities(order_state({"quantity-ordered": 3}), (ORDER, A, 1))
    assert errors(applied) == [None]
    assert line(applied.state)["quantity-cancelled"] == 1
    assert line(applied.state)["order-status"] == "Unshipped"


def test_no_quantity_cancels_every_open_unit(order_state: States):
    """Without Quantity an item cancellation cancels all the line's open units."""
    applied = apply_quantities(order_state({"quantity-ordered": 4, "quantity-cancelled": 1}), (ORDER, A, None))
    assert errors(applied) == [None]
    assert line(applied.state)["quantity-cancelled"] == 4


def test_quantities_see_earlier_records_of_the_same_line(order_state: States):
    """Repeated quantity cancellations of one line see each other: 1 then 2 of 2 open units →
    the second exceeds the 1 unit left; a third of 1 is applied; a fourth finds nothing open."""
    state = order_state({"quantity-ordered": 2})
    applied = apply_quantities(state, (ORDER, A, 1), (ORDER, A, 2), (ORDER, A, 1), (ORDER, A, 1))
    assert errors(applied) == [None, "quantity-exceeds-open", None, "already-cancelled"]
    assert "the 1 open unit of" in applied.outcomes.sort("seq").get_column("message")[1]
    assert line(applied.state)["quantity-cancelled"] == 2
    assert line(applied.state)["order-status"] == "Canceled"


# --- counts toward the cancellation rate -----------------------------------------------------

def test_buyer_canceled_without_buyer_request_is_applied_with_a_warning(order_state: States):
    """BuyerCanceled while buyer-requested-cancel is false is applied, as a Warning
    counts-toward-cancellation-rate (90201)."""
    result, after = cancel(order_state({"buyer-requested-cancel": False}), item(reason="BuyerCanceled"))
    record = only(result)
    assert (record["status"], record["error-code"], record["error-name"]) == (
        "Warning", 90201, "counts-toward-cancellation-rate")
    assert "cancellation rate" in record["error-message"]
    assert line(after)["quantity-cancelled"] == 1
    assert result.cancellations_counting == 1


def test_buyer_canceled_with_buyer_request_is_a_plain_success(order_state: States):
    """BuyerCanceled when the buyer did ask (buyer-requested-cancel true) is a Success and does
    not count toward the rate."""
    result, after = cancel(order_state({"buyer-requested-cancel": True}), item(reason="BuyerCanceled"))
    assert verdicts(result) == [("Success", None)]
    assert line(after)["quantity-cancelled"] == 1
    assert result.cancellations_counting == 0


def test_buyer_request_on_another_line_does_not_cover_this_line(order_state: States):
    """buyer-requested-cancel is a per-line snapshot column: BuyerCanceled on line B, when only
    line A was asked for, is applied with the counts-toward-cancellation-rate warning and counts."""
    state = order_state({"order-item-id": A, "buyer-requested-cancel": True},
                        {"order-item-id": B, "buyer-requested-cancel": False})
    result, after = cancel(state, item(B, reason="BuyerCanceled"))
    assert verdicts(result) == [("Warning", "counts-toward-cancellation-rate")]
    assert line(after, B)["quantity-cancelled"] == 1
    assert result.cancellations_counting == 1


def test_summary_counts_cancellations_toward_the_rate(order_state: States):
    """The summary counts applied seller-side cancellations (any reason but a buyer-requested
    BuyerCanceled), including warned ones; rejected records do not count."""
    state = order_state(
        {"order-id": ORDER},
        {"order-id": OTHER, "buyer-requested-cancel": True},
        {"order-id": THIRD},
        {"order-id": "111-0000001-0000004", "order-status": "Pending"},
    )
    result, _ = cancel(state, item(order=ORDER, reason="NoInventory"), item(order=OTHER, reason="BuyerCanceled"),
                       item(order=THIRD, reason="BuyerCanceled"),
                       item(order="111-0000001-0000004", reason="NoInventory"))
    assert verdicts(result) == [("Success", None), ("Success", None),
                                ("Warning", "counts-toward-cancellation-rate"), ("Error", "order-pending")]
    assert result.cancellations_counting == 2
    written = summary(result)
    assert written["cancellations-counting-toward-rate"] == 2
    assert written["by-status"] == {"Success": 2, "Warning": 1, "Error": 1}


# --- whole-order cancellation ------------------------------------------------------------------

def test_whole_order_cancel_cancels_the_lines_still_open(order_state: States):
    """A whole-order cancel of an order whose other lines are already cancelled is applied and
    cancels the open units of the lines still open; the order becomes Canceled (SPEC §4.1 rule 4)."""
    state = order_state({"order-item-id": A, "quantity-cancelled": 1},
                        {"order-item-id": B, "quantity-ordered": 3, "quantity-cancelled": 1},
                        {"order-item-id": C, "quantity-ordered": 2})
    result, after = cancel(state, whole())
    assert verdicts(result) == [("Success", None)]
    assert [line(after, code)["quantity-cancelled"] for code in (A, B, C)] == [1, 3, 2]
    assert {line(after, code)["order-status"] for code in (A, B, C)} == {"Canceled"}


def test_whole_order_cancel_leaves_other_orders_alone(order_state: States):
    """Cancelling one order changes no line of another order."""
    state = order_state({"order-id": ORDER}, {"order-id": OTHER, "quantity-ordered": 2})
    _, after = cancel(state, whole(ORDER))
    assert line(after, A, ORDER)["order-status"] == "Canceled"
    assert line(after, A, OTHER) == line(state, A, OTHER)


# --- order status after changes (SPEC §4.3) -----------------------------------------------------

def test_cancelling_the_only_line_makes_the_order_canceled(order_state: States):
    """All units of all lines cancelled → Canceled."""
    _, after = cancel(order_state({"quantity-ordered": 2}), item())
    assert (line(after)["quantity-cancelled"], line(after)["order-status"]) == (2, "Canceled")


def test_cancelling_one_of_two_unshipped_lines_keeps_the_order_unshipped(order_state: States):
    """Nothing shipped and some units still open → status unchanged (Unshipped) on every line."""
    _, after = cancel(order_state(*NOTHING_SHIPPED), item(A))
    assert (line(after, A)["quantity-cancelled"], line(after, B)["quantity-cancelled"]) == (1, 0)
    assert (line(after, A)["order-status"], line(after, B)["order-status"]) == ("Unshipped", "Unshipped")


def test_cancelling_the_last_open_line_of_a_partly_shipped_order_makes_it_shipped(order_state: States):
    """Every unit shipped or cancelled, some shipped → Shipped, on every line of the order."""
    _, after = cancel(order_state(*PARTLY_SHIPPED), item(B))
    assert line(after, B)["quantity-cancelled"] == 2
    assert (line(after, A)["order-status"], line(after, B)["order-status"]) == ("Shipped", "Shipped")


def test_cancelling_some_open_units_of_a_partly_shipped_order_keeps_it_partly_shipped(order_state: States):
    """Some shipped, some still open → PartiallyShipped."""
    applied = apply_quantities(order_state(*PARTLY_SHIPPED), (ORDER, B, 1))
    assert errors(applied) == [None]
    assert line(applied.state, B)["quantity-cancelled"] == 1
    assert {line(applied.state, code)["order-status"] for code in (A, B)} == {"PartiallyShipped"}


def test_a_lagging_status_is_recomputed_from_quantities(order_state: States):
    """A status that lags behind (Unshipped although line A has shipped) is recomputed from the
    quantities once the order is touched: cancelling the last open line B makes it Shipped."""
    state = order_state({"order-item-id": A, "quantity-shipped": 1}, {"order-item-id": B})
    result, after = cancel(state, item(B))
    assert verdicts(result) == [("Success", None)]
    assert (line(after, A)["order-status"], line(after, B)["order-status"]) == ("Shipped", "Shipped")


# --- records that repeat a key see the earlier ones --------------------------------------------

def test_same_line_cancelled_twice_second_is_already_cancelled(order_state: States):
    """The second cancellation of one line in a feed sees the first: already-cancelled, and the
    line is cancelled once, not twice."""
    result, after = cancel(order_state({"quantity-ordered": 2}, {"order-item-id": B}), item(A), item(A))
    assert verdicts(result) == [("Success", None), ("Error", "already-cancelled")]
    assert line(after, A)["quantity-cancelled"] == 2


def test_whole_order_then_item_item_is_already_cancelled(order_state: States):
    """After a whole-order cancel, an item cancel of the same order is already-cancelled."""
    result, after = cancel(order_state(*NOTHING_SHIPPED), whole(), item(B))
    assert verdicts(result) == [("Success", None), ("Error", "already-cancelled")]
    assert line(after, B)["quantity-cancelled"] == 2


def test_whole_order_twice_second_is_already_cancelled(order_state: States):
    """A whole order cancelled twice in one feed: the second sees a Canceled order."""
    result, _ = cancel(order_state(*NOTHING_SHIPPED), whole(), whole())
    assert verdicts(result) == [("Success", None), ("Error", "already-cancelled")]


def test_item_then_whole_order_cancels_the_rest(order_state: States):
    """Item A then the whole order: both applied; the whole-order cancel finds A cancelled and
    cancels B; the order ends Canceled."""
    result, after = cancel(order_state(*NOTHING_SHIPPED), item(A), whole())
    assert verdicts(result) == [("Success", None), ("Success", None)]
    assert (line(after, A)["quantity-cancelled"], line(after, B)["quantity-cancelled"]) == (1, 2)
    assert line(after, B)["order-status"] == "Canceled"


def test_item_then_whole_order_of_a_one_line_order_is_already_cancelled(order_state: States):
    """Item A of a one-line order then the whole order: nothing is left, already-cancelled."""
    result, _ = cancel(order_state({}), item(A), whole())
    assert verdicts(result) == [("Success", None), ("Error", "already-cancelled")]


def test_repeated_keys_interleaved_with_other_orders_keep_record_order(order_state: States):
    """Repeats of several orders interleaved: each sees its own earlier records, and the report
    keeps input order and record numbers."""
    state = order_state({"order-id": ORDER}, {"order-id": OTHER}, {"order-id": THIRD})
    result, _ = cancel(state, item(order=ORDER), item(order=OTHER), whole(ORDER), item(order=THIRD),
                       item(order=OTHER), whole(OTHER))
    assert result.records.get_column("original-record-number").to_list() == [1, 2, 3, 4, 5, 6]
    assert result.records.get_column("order-id").to_list() == [ORDER, OTHER, ORDER, THIRD, OTHER, OTHER]
    assert [name for _, name in verdicts(result)] == [
        None, None, "already-cancelled", None, "already-cancelled", "already-cancelled"]


def test_a_rejected_repeat_does_not_stop_a_later_one(order_state: States):
    """A record rejected by validation changes nothing, so a later record for the same line is
    judged against the untouched line and applied."""
    result, after = cancel(order_state({}), item(reason="OutOfStock"), item())
    assert verdicts(result) == [("Error", "invalid-field"), ("Success", None)]
    assert line(after)["quantity-cancelled"] == 1


def test_a_quantity_rejected_record_does_not_consume_units(order_state: States):
    """A record rejected by a rule changes nothing: after quantity 5 of 2 is rejected, quantity 2
    is still applied."""
    applied = apply_quantities(order_state({"quantity-ordered": 2}), (ORDER, A, 5), (ORDER, A, 2))
    assert errors(applied) == ["quantity-exceeds-open", None]
    assert line(applied.state)["quantity-cancelled"] == 2


# --- a rejected record changes nothing ----------------------------------------------------------

def test_a_feed_of_rejected_records_leaves_the_state_unchanged(order_state: States):
    """Records rejected by validation or by any rule leave every line exactly as it was."""
    state = order_state(
        {"order-id": ORDER, "order-status": "Pending"},
        {"order-id": OTHER, "fulfillment-channel": "AFN"},
        {"order-id": THIRD, "shipping-label-purchased": True},
        {"order-id": "111-0000001-0000004", "order-status": "Shipped", "quantity-shipped": 1},
    )
    result, after = cancel(state, whole(ORDER), item(order=OTHER), item(order=THIRD),
                           whole("111-0000001-0000004"), item(order=ORDER, reason="Nope"),
                           ("111-0000001-0000009", "NoInventory", ""))
    assert [status for status, _ in verdicts(result)] == ["Error"] * 6
    assert_same_state(after, state)


def test_rejected_records_of_one_order_do_not_touch_it_while_another_is_applied(order_state: States):
    """In a mixed feed only the applied order changes."""
    state = order_state({"order-id": ORDER, "shipping-label-purchased": True}, {"order-id": OTHER})
    result, after = cancel(state, item(order=ORDER), item(order=OTHER))
    assert verdicts(result) == [("Error", "label-purchased"), ("Success", None)]
    assert line(after, A, ORDER) == line(state, A, ORDER)
    assert line(after, A, OTHER)["order-status"] == "Canceled"

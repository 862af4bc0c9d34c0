"""The same logical records as a flat file and as XML give the same outcomes (issue: XML feeds)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from orderfeeds.pipeline import ProcessOptions, process_feed
from orderfeeds.snapshot import read_snapshot

SNAPSHOT = Path(__file__).resolve().parent.parent / "samples" / "orders-snapshot.tsv"
OPTIONS = ProcessOptions(as_of="2026-11-28T06:00:00+00:00")

# (order-id, item code or None, reason or None) — whole-order cancellations have neither.
CANCELLATIONS = [
    ("111-2223334-4445550", "20000000000001", "NoInventory"),
    ("111-2223334-4445551", "20000000000002", "BuyerCanceled"),
    ("111-2223334-4445552", None, None),
    ("111-2223334-4445553", "20000000000004", "NoInventory"),
    ("111-2223334-4445554", None, None),
    ("111-2223334-4445554", "20000000000006", "CustomerExchange"),
    ("111-2223334-4445555", "20000000000007", "BuyerCanceled"),
    ("111-2223334-4445556", "20000000000008", "GeneralAdjustment"),
    ("111-2223334-4445558", "20000000000010", "BuyerCanceled"),
    ("111-2223334-4445599", "20000000000099", "NoInventory"),
    ("111-2223334-4445550", "20000000000001", "NoInventory"),
]

# (order-id, item, reason, currency, principal, tax, shipping, quantity-cancelled)
ADJUSTMENTS = [
    ("111-2223334-4445551", "20000000000002", "CustomerReturn", "USD", "29.99", "2.40", "0.00", 0),
    ("111-2223334-4445551", "20000000000002", "CustomerReturn", "USD", "29.99", "2.40", "0.00", 0),
    ("111-2223334-4445551", "20000000000002", "GeneralAdjustment", "USD", "5.00", "0.00", "0.00", 0),
    ("111-2223334-4445554", "20000000000006", "NoInventory", "USD", "0.00", "0.00", "0.00", 2),
    ("111-2223334-4445554", "20000000000005", "CustomerReturn", "USD", "12.00", "0.96", "2.00", 0),
    ("305-1112223-3334440", "30000000000001", "CustomerReturn", "USD", "79.90", "15.18", "0.00", 0),
    ("111-2223334-4445550", "20000000000001", "CustomerReturn", "USD", "24.99", "2.00", "0.00", 0),
    ("503-7778889-9990001", "40000000000001", "CustomerReturn", "JPY", "3980", "398", "0", 0),
    ("111-2223334-4445553", "20000000000004", "CustomerReturn", "USD", "35.00", "0.00", "0.00", 0),
    ("305-1112223-3334441", "30000000000002", "PriceError", "EUR", "100.00", "0.00", "5.00", 0),
]


def _envelope(message_type: str, messages: list[str]) -> bytes:
    body = "".join(f"<Message><MessageID>{n}</MessageID>{m}</Message>" for n, m in enumerate(messages, 1))
    return (f'<?xml version="1.0" encoding="UTF-8"?><AmazonEnvelope><Header><DocumentVersion>1.01</DocumentVersion>'
            f"<MerchantIdentifier>M1</MerchantIdentifier></Header><MessageType>{message_type}</MessageType>"
            f"{body}</AmazonEnvelope>").encode()


def _outcomes(data: bytes, name: str) -> tuple[list[tuple], pl.DataFrame]:
    result, state = process_feed(data, name, read_snapshot(SNAPSHOT), OPTIONS)
    rows = result.records.select("order-id", "status", "error-name").rows()
    return rows, state.sort("order-id", "order-item-id")


@pytest.fixture
def cancellation_twins() -> tuple[bytes, bytes]:
    """The CANCELLATIONS as a flat file and as OrderAcknowledgement Failure messages."""
    flat = "order-id\tcancellation-reason-code\tamazon-order-item-code\n" + "".join(
        f"{o}\t{r or ''}\t{i or ''}\n" for o, i, r in CANCELLATIONS)
    messages = []
    for order, item, reason in CANCELLATIONS:
        items = (f"<Item><AmazonOrderItemCode>{item}</AmazonOrderItemCode><CancelReason>{reason}</CancelReason></Item>"
                 if item else "")
        messages.append(f"<OrderAcknowledgement><AmazonOrderID>{order}</AmazonOrderID>"
                        f"<StatusCode>Failure</StatusCode>{items}</OrderAcknowledgement>")
    return flat.encode(), _envelope("OrderAcknowledgement", messages)


@pytest.fixture
def adjustment_twins() -> tuple[bytes, bytes]:
    """The ADJUSTMENTS as a flat file and as OrderAdjustment messages."""
    header = ("order-id\torder-item-id\tadjustment-reason-code\tcurrency\titem-price-adj\titem-tax-adj\t"
              "shipping-price-adj\tshipping-tax-adj\tgift-wrap-price-adj\tgift-wrap-tax-adj\tquantity-cancelled\n")
    zero = lambda cur: "0" if cur == "JPY" else "0.00"  # noqa: E731
    flat = header + "".join(
        f"{o}\t{i}\t{r}\t{c}\t{p}\t{t}\t{s}\t{zero(c)}\t{zero(c)}\t{zero(c)}\t{q}\n"
        for o, i, r, c, p, t, s, q in ADJUSTMENTS)
    messages = []
    for order, item, reason, currency, principal, tax, shipping, quantity in ADJUSTMENTS:
        components = "".join(
            f'<Component><Type>{kind}</Type><Amount currency="{currency}">{amount}</Amount></Component>'
            for kind, amount in (("Principal", principal), ("Tax", tax), ("Shipping", shipping)))
        cancelled = f"<QuantityCancelled>{quantity}</QuantityCancelled>" if quantity else ""
        messages.append(f"<OrderAdjustment><AmazonOrderID>{order}</AmazonOrderID><AdjustedItem>"
                        f"<AmazonOrderItemCode>{item}</AmazonOrderItemCode><AdjustmentReason>{reason}</AdjustmentReason>"
                        f"<ItemPriceAdjustments>{components}</ItemPriceAdjustments>{cancelled}"
                        f"</AdjustedItem></OrderAdjustment>")
    return flat.encode(), _envelope("OrderAdjustment", messages)


def test_cancellations_flat_and_xml_agree(cancellation_twins):
    """Every cancellation record gets the same status and error, and the states end equal."""
    flat, xml = cancellation_twins
    flat_rows, flat_state = _outcomes(flat, "c.txt")
    xml_rows, xml_state = _outcomes(xml, "c.xml")
    assert flat_rows == xml_rows
    assert {r[2] for r in flat_rows} >= {"already-shipped", "order-pending", "already-cancelled", None}
    assert flat_state.equals(xml_state)


def test_adjustments_flat_and_xml_agree(adjustment_twins):
    """Every adjustment record gets the same status and error, and refunds land identically."""
    flat, xml = adjustment_twins
    flat_rows, flat_state = _outcomes(flat, "a.txt")
    xml_rows, xml_state = _outcomes(xml, "a.xml")
    assert flat_rows == xml_rows
    assert {r[2] for r in flat_rows} >= {"possible-duplicate", "refund-exceeds-charged", "currency-mismatch", None}
    assert flat_state.equals(xml_state)

"""The XML fast path (shapes the XSD accepted once, values checked in bulk) gives exactly what validating every message gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from orderfeeds.readers import feed_sha256, read_feed
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.xml import _Reader

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "feeds"
HEADER = "<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_1</MerchantIdentifier></Header>"

pytestmark = pytest.mark.usefixtures("bulk_from_one_message_too")


def envelope(message_type: str, *messages: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n{HEADER}\n'
            f"<MessageType>{message_type}</MessageType>\n" + "\n".join(messages) + "\n</AmazonEnvelope>\n").encode()


def adj(message_id: str, item: str, order: str = "<AmazonOrderID>111-2223334-4445551</AmazonOrderID>",
        attrs: str = "") -> str:
    return (f"<Message{attrs}><MessageID>{message_id}</MessageID><OrderAdjustment>{order}"
            f"<AdjustedItem>{item}</AdjustedItem></OrderAdjustment></Message>")


def item(amount: str = "5.00", currency: str = ' currency="USD"', reason: str = "CustomerReturn",
         code: str = "20000000000002", extra: str = "") -> str:
    return (f"<AmazonOrderItemCode>{code}</AmazonOrderItemCode><AdjustmentReason>{reason}</AdjustmentReason>"
            f"<ItemPriceAdjustments><Component><Type>Principal</Type><Amount{currency}>{amount}</Amount></Component>"
            f"</ItemPriceAdjustments>{extra}")


# Each message has the shape of the first (valid) one, so it is judged by the bulk checks, not by a fresh XSD run.
TRICKY = [
    adj("1", item()),
    adj("2", item(amount="5")),
    adj("3", item(amount="-0.5")),
    adj("4", item(amount="5.001")),
    adj("5", item(amount="1e3")),
    adj("6", item(amount=" 7.25 ")),
    adj("7", item(currency=' currency="usd"')),
    adj("8", item(currency=' currency=""')),
    adj("9", item(currency="")),
    adj("10", item(reason="Customer Return")),
    adj("11", item(reason=" CustomerReturn\n")),
    adj("12", item(code="2000000000000")),
    adj("13", item(), order="<AmazonOrderID>111-2223334-444555\u00e9</AmazonOrderID>"),
    adj("14", item(), order="<AmazonOrderID>111_222333-4445551</AmazonOrderID>"),
    adj("15", item(), attrs=' foo="bar"'),
    adj("16", item(currency=' currency="USD" other="x"')),
    adj("017", item()),
    adj("0", item()),
    adj("x1", item()),
    adj("18", item(amount="5.00<!-- a comment -->")),
    adj("19", item(amount="5.00 &amp;")),
    adj("20", item()).replace("<OrderAdjustment>", "<OrderAdjustment>stray text"),
    adj("21", item()).replace("</AmazonOrderItemCode>", "</AmazonOrderItemCode>tail"),
    adj("22", item(amount="")),
    adj("23", item(amount="   ")),
    adj("24", item(), order="<MerchantOrderID>" + "m" * 50 + "</MerchantOrderID>"),
    adj("25", item(), order="<MerchantOrderID>" + "m" * 51 + "</MerchantOrderID>"),
    adj("26", item(), order="<MerchantOrderID>" + "m" * 51 + "</MerchantOrderID>"),
    adj("27", item(), order="<MerchantOrderID> a  b\t</MerchantOrderID>"),
    adj("28", item(), order="<MerchantOrderID> a  b\t</MerchantOrderID>"),
    adj("1", item()),
    adj("29", item(extra="<Quantity>0</Quantity>")),
    adj("30", item(extra="<Quantity>3</Quantity>")),
    adj("31", item(extra="<QuantityCancelled>0</QuantityCancelled>")),
    adj("32", item(extra="<QuantityCancelled>-1</QuantityCancelled>")),
]


def both(source: bytes | Path):
    fast = _Reader(None).read(source)
    slow = _Reader(None, fast=False).read(source)
    return fast, slow


def assert_same(source: bytes | Path) -> None:
    fast, slow = both(source)
    assert_frame_equal(fast.frame, slow.frame)
    assert_frame_equal(fast.issues, slow.issues)


def test_tricky_values_give_what_the_xsd_gives():
    assert_same(envelope("OrderAdjustment", *TRICKY))
    reader = _Reader(None)
    reader.read(envelope("OrderAdjustment", *TRICKY))
    # Four shapes (by the order id element, Quantity, QuantityCancelled): the rest were judged in bulk.
    assert reader.batch is not None and reader.batch.plans == 4


def test_mixed_currencies_within_a_shape_give_the_same_issue():
    two = ("<AmazonOrderItemCode>20000000000002</AmazonOrderItemCode><AdjustmentReason>CustomerReturn</AdjustmentReason>"
           "<ItemPriceAdjustments><Component><Type>Principal</Type><Amount currency=\"{a}\">5.00</Amount></Component>"
           "<Component><Type>Tax</Type><Amount currency=\"{b}\">1.00</Amount></Component></ItemPriceAdjustments>")
    assert_same(envelope("OrderAdjustment", adj("1", two.format(a="USD", b="USD")), adj("2", two.format(a="USD", b="EUR")),
                         adj("3", two.format(a="EUR", b="EUR"))))


def test_chunks_are_joined_in_file_order(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 3)
    assert_same(envelope("OrderAdjustment", *TRICKY))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.xml")))
def test_sample_feeds(name: str):
    assert_same((SAMPLES / name).read_bytes())


def test_a_file_reads_like_its_bytes(tmp_path: Path):
    path = tmp_path / "feed.xml"
    path.write_bytes(envelope("OrderAdjustment", *TRICKY))
    from_path, from_bytes = read_feed(path), read_feed(path.read_bytes())
    assert_frame_equal(from_path.frame, from_bytes.frame)
    assert_frame_equal(from_path.issues, from_bytes.issues)
    assert feed_sha256(path) == feed_sha256(path.read_bytes())


def test_a_file_over_the_cap_is_rejected_before_reading(tmp_path: Path):
    from orderfeeds.errors import FeedError

    path = tmp_path / "feed.xml"
    path.write_bytes(envelope("OrderAdjustment", *TRICKY))
    with pytest.raises(FeedError) as caught:
        read_feed(path, max_bytes=100)
    assert caught.value.name == "feed-too-large"

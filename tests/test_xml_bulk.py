"""The chunk-at-once fast path reads odd layouts, small chunks and files exactly as validating every message does."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.xml import _Reader

HEADER = "<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_1</MerchantIdentifier></Header>"

pytestmark = pytest.mark.usefixtures("bulk_from_one_message_too")


def envelope(*messages: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n{HEADER}\n'
            "<MessageType>OrderAdjustment</MessageType>\n" + "\n".join(messages) + "\n</AmazonEnvelope>\n").encode()


def message(number: int, amount: str = "5.00", currency: str = ' currency="USD"', quantity: str = "1",
            gap: str = "\n  ", attrs: str = "") -> str:
    return (f"<Message{attrs}>{gap}<MessageID>{number}</MessageID>{gap}<OrderAdjustment>{gap}"
            f"<AmazonOrderID>111-2223334-4445551</AmazonOrderID>{gap}<AdjustedItem>{gap}"
            f"<AmazonOrderItemCode>2000000000000{number % 10}</AmazonOrderItemCode>{gap}"
            f"<AdjustmentReason>CustomerReturn</AdjustmentReason>{gap}<ItemPriceAdjustments>{gap}"
            f"<Component><Type>Principal</Type><Amount{currency}>{amount}</Amount></Component>{gap}"
            f"</ItemPriceAdjustments>{gap}<Quantity>{quantity}</Quantity>{gap}</AdjustedItem>{gap}"
            f"<AdjustedItem>{gap}<AmazonOrderItemCode>30000000000003</AmazonOrderItemCode>{gap}"
            f"<AdjustmentReason>CustomerReturn</AdjustmentReason>{gap}<ItemPriceAdjustments>{gap}"
            f"<Component><Type>Tax</Type><Amount{currency}>1.00</Amount></Component>{gap}"
            f"</ItemPriceAdjustments>{gap}</AdjustedItem>{gap}</OrderAdjustment>{gap}</Message>")


ODD = [
    message(1),
    message(2, gap=""),
    message(3, gap="\n" + " " * 200),
    message(4, currency=""),
    message(5, quantity=" "),
    message(6, quantity="\t2\n"),
    message(7, attrs=' a="b"'),
    message(8, amount="1.5<!-- x -->0"),
    message(9, amount="&#x35;.00"),
    message(10, amount="<![CDATA[5.00]]>"),
    message(12).replace("<Quantity>", "<Quantity>\n"),
    message(13),
    message(14).replace("<Amount", "<Amount\n"),
    message(15, currency=' currency="EUR"'),
]


def assert_same(source: bytes | Path) -> None:
    fast = _Reader(None).read(source)
    slow = _Reader(None, fast=False).read(source)
    assert_frame_equal(fast.frame, slow.frame)
    assert_frame_equal(fast.issues, slow.issues)


@pytest.mark.parametrize(("file_text", "plans"), [(False, 1), (True, 3)], ids=["serialized", "bytes"])
def test_odd_layouts_give_what_the_xsd_gives(monkeypatch: pytest.MonkeyPatch, file_text: bool, plans: int):
    monkeypatch.setattr(xmlreader, "FILE_TEXT", file_text)
    assert_same(envelope(*ODD))
    reader = _Reader(None)
    reader.read(envelope(*ODD))
    # A serialization has no blanks between tags, so the three layouts share one shape; in the file's bytes each
    # keeps its own (the long blank squeezed to its line feed). The other odd messages go to the XSD or share one.
    assert reader.batch is not None and reader.batch.plans == plans


@pytest.mark.parametrize("declared", ['<AdjustedItem xmlns="urn:x">', '<OrderAdjustment xmlns="urn:x">'])
def test_items_in_a_namespace_leave_the_lines_of_the_others_alone(declared: str):
    # An item in a default namespace is no AdjustedItem to the tree, though it is written like one.
    odd = message(11).replace(declared.split(" ")[0] + ">", declared, 1)
    assert_same(envelope(*ODD[:5], odd, *ODD[5:], *ODD))


def test_a_nested_message_sends_its_chunk_to_the_xsd():
    nested = message(11).replace("<Message>\n  <MessageID>", "<Message>\n  <Message><MessageID>1</MessageID></Message>"
                                 "<MessageID>")
    assert_same(envelope(*ODD[:5], nested, *ODD[5:]))


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_small_chunks_give_what_the_xsd_gives(monkeypatch: pytest.MonkeyPatch, chunk: int):
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", chunk)
    assert_same(envelope(*ODD))


def test_chunks_cut_by_size_give_what_the_xsd_gives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(xmlreader, "CHUNK_BYTES", 1)
    path = tmp_path / "feed.xml"
    path.write_bytes(envelope(*(ODD * 20)))
    assert_same(path)
    assert_same(path.read_bytes())


def test_lines_of_items_are_where_they_start():
    data = envelope(message(1), message(2, gap=""), message(3))
    text = data.decode()
    expected, start = [], 0
    while (start := text.find("<AdjustedItem>", start) + 1) > 0:
        expected.append(text.count("\n", 0, start) + 1)
    assert _Reader(None).read(data).frame.get_column("line").to_list() == expected

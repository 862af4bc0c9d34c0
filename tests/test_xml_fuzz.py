"""Randomly edited feeds, and values at the limits of each element's type, read the same on the chunk-at-once fast
path as with the XSD on every message."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.model import RawFeed
from orderfeeds.readers.xml import _Reader

HEADER = ("<Header>\n  <DocumentVersion>1.01</DocumentVersion>\n  <MerchantIdentifier>M_1</MerchantIdentifier>\n"
          "</Header>\n")


def adjustment(number: int) -> str:
    """Valid as written; odd messages name their order by AmazonOrderID, even ones by MerchantOrderID."""
    order = ("    <AmazonOrderID>111-2223334-4445551</AmazonOrderID>\n" if number % 2
             else f"    <MerchantOrderID>DE-{number}</MerchantOrderID>\n")
    return (f"<Message>\n  <MessageID>{number}</MessageID>\n  <OperationType>Update</OperationType>\n"
            f"  <OrderAdjustment>\n{order}    <ActionType>Refund</ActionType>\n"
            f"    <AdjustedItem>\n      <AmazonOrderItemCode>2000000000000{number % 10}</AmazonOrderItemCode>\n"
            f"      <MerchantAdjustmentItemID>RMA-{number}</MerchantAdjustmentItemID>\n"
            "      <AdjustmentReason>CustomerReturn</AdjustmentReason>\n      <ItemPriceAdjustments>\n"
            '        <Component><Type>Principal</Type><Amount currency="USD">5.00</Amount></Component>\n'
            '        <Component><Type>Tax</Type><Amount currency="USD">0.40</Amount></Component>\n'
            "      </ItemPriceAdjustments>\n      <PromotionAdjustments>\n"
            "        <MerchantPromotionID>WINTER5</MerchantPromotionID>\n"
            '        <Component><Type>Shipping</Type><Amount currency="USD">-1.5</Amount></Component>\n'
            "      </PromotionAdjustments>\n      <QuantityCancelled>0</QuantityCancelled>\n"
            "      <Quantity>1</Quantity>\n    </AdjustedItem>\n"
            "    <AdjustedItem>\n      <MerchantOrderItemID>DE-1-2</MerchantOrderItemID>\n"
            "      <AdjustmentReason>PriceError</AdjustmentReason>\n      <ItemPriceAdjustments>\n"
            '        <Component><Type>Principal</Type><Amount currency="USD">2</Amount></Component>\n'
            "      </ItemPriceAdjustments>\n    </AdjustedItem>\n  </OrderAdjustment>\n</Message>\n")


def acknowledgement(number: int) -> str:
    """Valid as written, with no item, one or two: an acknowledgement without items is one record on its Message's
    line."""
    item = ("    <Item>\n      <AmazonOrderItemCode>20000000000001</AmazonOrderItemCode>\n"
            f"      <MerchantOrderItemID>US-{number}-1</MerchantOrderItemID>\n"
            "      <CancelReason>NoInventory</CancelReason>\n      <Quantity>2</Quantity>\n    </Item>\n")
    return (f"<Message>\n  <MessageID>{number}</MessageID>\n  <OrderAcknowledgement>\n"
            "    <AmazonOrderID>111-2223334-4445550</AmazonOrderID>\n"
            f"    <MerchantOrderID>US-{number}</MerchantOrderID>\n    <StatusCode>Failure</StatusCode>\n"
            + item * (number % 3) + "  </OrderAcknowledgement>\n</Message>\n")


MESSAGES = {"OrderAdjustment": adjustment, "OrderAcknowledgement": acknowledgement}

# What an edit puts into a message: values each check is close to, blanks and line ends, what a parser changes
# (escapes, comments, CDATA, processing instructions) and the characters markup is made of.
INSERTS = [
    "", " ", "  ", "\n", "\t", "\r\n", "\r", "x", "X", "0", "1", "9", "-", ".", "00", "5.5", ".123", "-0", "é", "€",
    "USD", "EUR", "usd", "Principal", "Shipping", "Refund", "Cancel", "Update", "Delete", "Goodwill",
    "CustomerReturn", "NoInventory", "Success", ">", "&gt;", "&amp;", "&#65;", "&#x35;", '"', "'", "=",
    "<!-- c -->", "<![CDATA[7]]>", "<?pi x?>", "<!-- c\n-->", "<![CDATA[7\n]]>", "<?pi\nx?>", "<!-- <Message> -->",
    "<!-- </Message>\n -->", "<![CDATA[</Message>]]>", ' a="b"', " currency='USD'", ' currency="EUR"', " currency=\"\"",
    "<Quantity>2</Quantity>", "<MerchantOrderID>Z</MerchantOrderID>", "<Type>Tax</Type>",
    "<Amount>1.00</Amount>", "</AdjustedItem><AdjustedItem>", "<Message>", "</Message>", "x" * 60,
]
# Values at and just past the limits of each element's XSD type (amzn-base.xsd), put in place of its text.
_AMOUNTS = ["0", "5", "5.5", "5.55", "5.555", ".5", "5.", "-0.00", "+5.00", "1e2", "1,00", "- 5", "9" * 20 + ".99",
            "9" * 21, " 5.00 ", "\n5.00\n"]
_TEXTS = ["", " ", "\t\n", "a" * 50, "a" * 51, " " + "a" * 50, "a" + " " * 60 + "b", "a\nb", "\u00e9" * 50]
LIMITS = {
    "MessageID": ["0", "00", "01", "9" * 18, "9" * 19, "-1", "+1", " 7 ", "1.0"],
    "OperationType": ["Update", "Delete", "PartialUpdate", "update", " Delete ", ""],
    "AmazonOrderID": ["111-2223334-4445551", "111-2223334-444555", "1112-223334-4445551", "ABC-defghij-klmnopq",
                      "111_2223334_4445551", "111-2223334-44455510", " 111-2223334-4445551 "],
    "AmazonOrderItemCode": ["2" * 14, "2" * 13, "2" * 15, "0" * 14, " " + "2" * 14, "2" * 13 + "x"],
    "ActionType": ["Refund", "Cancel", "refund", " Cancel ", ""],
    "StatusCode": ["Success", "Failure", "success", " Failure", ""],
    "AdjustmentReason": ["CustomerReturn", "Other", "Goodwill", "customerreturn", " PriceError "],
    "CancelReason": ["NoInventory", "CustomerExchange", "noinventory", " BuyerCanceled ", "Other"],
    "Quantity": ["0", "1", "01", "9" * 9, "9" * 10, "-1", "+1", " 2 ", "1.0"],
    "QuantityCancelled": ["0", "00", "9" * 9, "9" * 10, "-1", " 3 ", "1.0"],
    "Amount": _AMOUNTS,
    "Type": ["Principal", "Tax", "Shipping", "Goodwill", "principal", " Tax "],
    **{tag: _TEXTS for tag in ("MerchantOrderID", "MerchantOrderItemID", "MerchantAdjustmentItemID")},
    "MerchantPromotionID": [*_TEXTS, "a" * 80, "a" * 81],
}
# What may stand between two messages (the parser drops it), and what may not.
BETWEEN = ["<!-- c -->\n", "<!-- two\nlines -->", "<?pi x?>\n", "\n\n  ", "<!-- <Message> -->", "<!-- c --",
           "<?pi", "text", "<![CDATA[x]]>", "<Other/>"]
# An Amount's currency attribute: its type is three capitals, and one item's Amounts must name the same currency.
CURRENCIES = ["USD", "EUR", "usd", "US", "USDD", "", " USD ", "U SD", "\u00c9UR", "&#85;SD"]
_CURRENCY = re.compile(r'currency="([^"]*)"')
_TEXT = re.compile(r">([^<]*)<")
_VALUE = re.compile(r"<(\w+)[^>]*>([^<]*)</\1>")
_LEAF = re.compile(r"[ \t]*<(\w+)[^>]*>[^<]*</\1>\n?")
# Characters a value may be made of: digits, letters, blanks, and what markup and escapes are made of.
_VALUE_CHARS = st.sampled_from(list("0123456789.-+AZaz_ \t\n&;#x<>\"'=é€"))


@st.composite
def edited_feeds(draw: st.DrawFn) -> bytes:
    """A feed of a few messages of one type, some of them edited: a leaf's value set at or past the limits of its
    type, a text replaced or added to, something put between two tags or two messages, an attribute added to a
    start tag, or a leaf element left out or written twice."""
    message_type = draw(st.sampled_from(sorted(MESSAGES)))
    messages = [MESSAGES[message_type](number) for number in range(1, draw(st.integers(3, 7)) + 1)]
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(messages) - 1))
        text = messages[index]
        spans = [m.span(1) for m in _TEXT.finditer(text)]
        start, end = draw(st.sampled_from(spans))
        insert = draw(st.sampled_from(INSERTS) | st.text(_VALUE_CHARS, max_size=8))
        how = draw(st.sampled_from(["limit", "limit", "limit", "currency", "replace", "before", "after", "attribute",
                                    "drop", "repeat", "outside"]))
        currencies = list(_CURRENCY.finditer(text))
        if how == "outside":  # between this message and the one before it
            text = draw(st.sampled_from(BETWEEN)) + text
        elif how == "limit":  # a leaf's text at or past the limits of its type
            # (An earlier edit may have made a Message look like a leaf: `<Message>` and `</Message>` inserted.)
            leaves = [leaf for leaf in _VALUE.finditer(text) if leaf.group(1) in LIMITS]
            if leaves:
                leaf = draw(st.sampled_from(leaves))
                value = draw(st.sampled_from(LIMITS[leaf.group(1)]))
                text = text[:leaf.start(2)] + value + text[leaf.end(2):]
        elif how == "currency" and currencies:
            found = draw(st.sampled_from(currencies))
            text = text[:found.start(1)] + draw(st.sampled_from(CURRENCIES)) + text[found.end(1):]
        elif how in ("drop", "repeat"):  # a leaf element left out, or written twice
            leaf = draw(st.sampled_from(list(_LEAF.finditer(text))))
            text = text[:leaf.start()] + leaf.group() * (how == "repeat") * 2 + text[leaf.end():]
        elif how in ("replace", "currency"):  # an acknowledgement has no currency: a text replaced instead
            text = text[:start] + insert + text[end:]
        elif how == "before":
            text = text[:start] + insert + text[start:]
        elif how == "after":
            text = text[:end] + insert + text[end:]
        else:  # into the start tag that ends just before the text
            # Not a line end: libxml2 gives an element the line its start tag ends on, and the file's bytes (what the
            # fast path counts in) the line it starts on, as SPEC asks; the per-message path here has only libxml2's.
            text = text[:start - 1] + insert.replace("\r", "").replace("\n", "") + text[start - 1:]
        messages[index] = text
        if draw(st.booleans()):  # the same edit in a later message: a shape seen again
            later = draw(st.integers(index, len(messages) - 1))
            messages[later] = text.replace(f"<MessageID>{index + 1}<", f"<MessageID>{later + 1}<", 1)
    # The file's bytes are read as UTF-8, as ISO-8859-1 and as windows-1252, each a byte a character in Python.
    return feed(message_type, messages, draw(st.sampled_from(["UTF-8", "ISO-8859-1", "windows-1252"])))


def feed(message_type: str, messages: list[str], encoding: str = "UTF-8") -> bytes:
    """The envelope, in `encoding` (a character it lacks as a character reference)."""
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n<AmazonEnvelope>\n' + HEADER
            + f"<MessageType>{message_type}</MessageType>\n" + "".join(messages)
            + "</AmazonEnvelope>\n").encode(encoding, "xmlcharrefreplace")


@pytest.fixture(autouse=True)
def in_bulk_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every message may take the bulk path, in chunks of two, so that shapes are planned and then met again.
    monkeypatch.setattr(xmlreader, "FEW_MESSAGES", 1)
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 2)
    # Read in small blocks, as a big file is: neither the root's check nor the parser that checks the file for the
    # bytes phase has seen all of it when the first chunk closes, so an edit past it is met in the bytes phase.
    monkeypatch.setattr(xmlreader, "READ_BYTES", 256)
    monkeypatch.setattr(xmlreader, "HEAD_CHUNK", 256)


def read(data: bytes, fast: bool) -> RawFeed | tuple[str, str]:
    try:
        return _Reader(None, fast=fast).read(data)
    except FeedError as exc:
        return exc.name, exc.message


def assert_same_records(fast: RawFeed, slow: RawFeed) -> None:
    assert_frame_equal(fast.frame, slow.frame)
    assert_frame_equal(fast.issues, slow.issues)


@pytest.mark.parametrize("file_text", [True, False], ids=["bytes", "serialized"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=edited_feeds())
def test_edited_feeds_read_as_the_xsd_reads_them(monkeypatch: pytest.MonkeyPatch, file_text: bool, data: bytes):
    monkeypatch.setattr(xmlreader, "FILE_TEXT", file_text)
    fast, slow = read(data, fast=True), read(data, fast=False)
    if isinstance(slow, tuple) or isinstance(fast, tuple):
        assert fast == slow
        return
    assert_same_records(fast, slow)


@pytest.mark.parametrize("message_type", sorted(MESSAGES))
def test_the_unedited_messages_are_valid_and_take_the_bulk_path(monkeypatch: pytest.MonkeyPatch, message_type: str):
    # Else every message would go to the XSD on both sides and the edits would test nothing.
    one_by_one: list[int] = []
    monkeypatch.setattr(_Reader, "_records", lambda self, message, ordinal, *rest: one_by_one.append(ordinal))
    raw = _Reader(None).read(feed(message_type, [MESSAGES[message_type](number) for number in range(1, 8)]))
    assert raw.issues.is_empty() and raw.frame.height >= 7
    assert one_by_one == []


def _limit_cases() -> list[tuple[str, str, str]]:
    cases = []
    for tag, values in LIMITS.items():
        message_type = next(t for t in sorted(MESSAGES, reverse=True) if f"<{tag}" in MESSAGES[t](2) + MESSAGES[t](3))
        cases += [(message_type, tag, value) for value in values]
    return cases + [("OrderAdjustment", "currency", value) for value in CURRENCIES]


@pytest.mark.parametrize("file_text", [True, False], ids=["bytes", "serialized"])
@pytest.mark.parametrize(("message_type", "tag", "value"), _limit_cases())
def test_each_limit_reads_as_the_xsd_reads_it(monkeypatch: pytest.MonkeyPatch, file_text: bool, message_type: str,
                                             tag: str, value: str):
    # Every value of LIMITS in every element that has it, once: a bulk check looser than its XSD type fails here for
    # sure, where the random edits only find it now and then.
    monkeypatch.setattr(xmlreader, "FILE_TEXT", file_text)
    messages = [MESSAGES[message_type](number) for number in range(1, 8)]
    # In a message after the first of its shape, so that its shape has a plan when it is met.
    index = next(i for i in range(3, 7) if f"<{tag}" in messages[i] or f" {tag}=" in messages[i])
    if tag == "currency":  # every Amount of the message, as one that differs from the others is refused anyway
        messages[index] = _CURRENCY.sub(f'currency="{value}"', messages[index])
    else:
        leaf = next(m for m in _VALUE.finditer(messages[index]) if m.group(1) == tag)
        messages[index] = messages[index][:leaf.start(2)] + value + messages[index][leaf.end(2):]
    data = feed(message_type, messages)
    fast, slow = read(data, fast=True), read(data, fast=False)
    assert not isinstance(fast, tuple) and not isinstance(slow, tuple)
    assert_same_records(fast, slow)

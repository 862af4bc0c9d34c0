"""Chunks cut from the file's own bytes (xmlfast.FileText) read exactly as serialized chunks do, or are serialized after all."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from lxml import etree
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers import xmlfast
from orderfeeds.readers.model import RawFeed
from orderfeeds.readers.xml import read_xml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_XML = sorted([*(ROOT / "samples" / "feeds").glob("*.xml"), *(ROOT / "samples" / "cases").glob("*/feed-*.xml")])
LIMIT = 10**9
# libxml2 keeps an element's line in 16 bits: past this line its lines are off, so only the file's bytes are right.
BIG_LINES = 65535
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# The envelope of samples/feeds/*.xml.
HEAD = ('<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">\n'
        "  <Header>\n    <DocumentVersion>1.01</DocumentVersion>\n"
        "    <MerchantIdentifier>M_EXAMPLE_123</MerchantIdentifier>\n  </Header>\n"
        "  <MessageType>{}</MessageType>\n")
# Six messages in chunks of two: the odd one out is the fourth, so the first chunk is taken from the bytes
# before the second is not.
MESSAGES = 6
ODD = 3  # the index of the fourth message


def envelope(message_type: str, messages: list[str], declaration: str = DECLARATION) -> str:
    return declaration + HEAD.format(message_type) + "".join(messages) + "</AmazonEnvelope>\n"


def adjustment(number: int, order: str = "DE-1002", adjustment_item: str = "RMA-77001", promotion: str = "WINTER5",
               currency: str = ' currency="EUR"', reason: str = "CustomerReturn", items: int = 1) -> str:
    """A message like the first of samples/feeds/payment-adjustment.xml (21 lines with one item)."""
    item = ("      <AdjustedItem>\n"
            f"        <MerchantOrderItemID>{number}-1</MerchantOrderItemID>\n"
            f"        <MerchantAdjustmentItemID>{adjustment_item}</MerchantAdjustmentItemID>\n"
            f"        <AdjustmentReason>{reason}</AdjustmentReason>\n"
            "        <ItemPriceAdjustments>\n"
            f"          <Component><Type>Principal</Type><Amount{currency}>79.90</Amount></Component>\n"
            '          <Component><Type>Tax</Type><Amount currency="EUR">15.18</Amount></Component>\n'
            "        </ItemPriceAdjustments>\n"
            "        <PromotionAdjustments>\n"
            f"          <MerchantPromotionID>{promotion}</MerchantPromotionID>\n"
            '          <Component><Type>Principal</Type><Amount currency="EUR">-5.00</Amount></Component>\n'
            "        </PromotionAdjustments>\n"
            "        <Quantity>1</Quantity>\n"
            "      </AdjustedItem>\n")
    return ("  <Message>\n"
            f"    <MessageID>{number}</MessageID>\n"
            "    <OrderAdjustment>\n"
            f"      <MerchantOrderID>{order}</MerchantOrderID>\n"
            "      <ActionType>Refund</ActionType>\n"
            + item * items
            + "    </OrderAdjustment>\n"
            "  </Message>\n")


def acknowledgement(number: int, order: str = "US-5550", items: int = 1) -> str:
    """A message like those of samples/feeds/order-acknowledgement.xml; without items when `items` is 0."""
    item = ("      <Item>\n"
            "        <AmazonOrderItemCode>20000000000001</AmazonOrderItemCode>\n"
            f"        <MerchantOrderItemID>{order}-{number}</MerchantOrderItemID>\n"
            "      </Item>\n")
    return ("  <Message>\n"
            f"    <MessageID>{number}</MessageID>\n"
            "    <OrderAcknowledgement>\n"
            "      <AmazonOrderID>111-2223334-4445550</AmazonOrderID>\n"
            f"      <MerchantOrderID>{order}</MerchantOrderID>\n"
            "      <StatusCode>Success</StatusCode>\n"
            + item * items
            + "    </OrderAcknowledgement>\n"
            "  </Message>\n")


def adjustments(odd: str | None = None, **changes: str) -> str:
    """Six adjustments; the fourth is `odd` if given, else made with `changes`."""
    messages = [adjustment(n) for n in range(1, MESSAGES + 1)]
    messages[ODD] = odd if odd is not None else adjustment(ODD + 1, **changes)
    return envelope("OrderAdjustment", messages)


def acknowledgements() -> str:
    # Items 1, 0, 2, 1, 0, 3: a record without an item is on its Message's line.
    return envelope("OrderAcknowledgement", [acknowledgement(n, items=n % 3 + (n > 4)) for n in range(1, MESSAGES + 1)])


def record_lines(text: str, item_tag: str) -> list[int]:
    """The line of each record's start tag (its item's, or its Message's when it has none), as libxml2 counts lines:
    each LF ends one, and a lone CR none."""
    lines: list[int] = []
    line, at, items = 1, 0, 0
    message = None
    for found in re.finditer(f"<(Message|{item_tag})[ \t\n/>]", text):
        line += text.count("\n", at, found.start())
        at = found.start()
        if found.group(1) == "Message":
            if message is not None and not items:
                lines.append(message)
            message, items = line, 0
        else:
            lines.append(line)
            items += 1
    if message is not None and not items:
        lines.append(message)
    return lines


@dataclass
class Spy:
    """How the chunks of the last read went."""

    made: int = 0  # FileTexts made: none unless the document is UTF-8
    ways: list[str] = field(default_factory=list)  # per survey: "bytes" (cut from the file) or "serialized"
    taken: list[bool] = field(default_factory=list)  # per cut: whether the chunk could be taken from the bytes
    losses: int = 0  # FileText._lose calls
    per_message: list[int] = field(default_factory=list)  # ordinals of messages that went to the XSD on their own

    def reset(self) -> None:
        self.made, self.ways, self.taken, self.losses, self.per_message = 0, [], [], 0, []

    def assert_used(self, chunks: int) -> None:
        assert (self.made, self.losses, self.ways) == (1, 0, ["bytes"] * chunks)
        assert self.taken == [True] * chunks

    def assert_fell_back(self, chunk: int, chunks: int) -> None:
        """Chunks before `chunk` (1-based) were cut from the bytes; it and every one after it were serialized. The
        chunk after it was handed out (with the bytes) before its loss was found, so it could not be cut either."""
        handed = 1 if chunk < chunks else 0
        assert (self.made, self.losses) == (1, 1)
        assert self.taken == [True] * (chunk - 1) + [False] * (1 + handed)
        # The worker's survey of that chunk and the serializing of the lost one on the reader's thread may come in
        # either order.
        assert self.ways[:chunk] == ["bytes"] * chunk
        assert sorted(self.ways[chunk:]) == ["bytes"] * handed + ["serialized"] * (chunks - chunk + 1)

    def assert_unused(self, chunks: int) -> None:
        assert (self.made, self.losses, self.taken, self.ways) == (0, 0, [], ["serialized"] * chunks)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    seen = Spy()
    init, cut, lose = xmlfast.FileText.__init__, xmlfast.FileText.cut, xmlfast.FileText._lose
    survey, records = xmlfast.Batch.survey, xmlreader._Reader._records

    def spied_init(self, *args):
        seen.made += 1
        init(self, *args)

    def spied_cut(self, *args):
        taken = cut(self, *args)
        seen.taken.append(taken is not None)
        return taken

    def spied_lose(self):
        seen.losses += 1
        return lose(self)

    def spied_survey(self, text, *args):
        seen.ways.append("serialized" if isinstance(text, str) else "bytes")
        return survey(self, text, *args)

    def spied_records(self, message, ordinal, *args):
        seen.per_message.append(ordinal)
        return records(self, message, ordinal, *args)

    monkeypatch.setattr(xmlfast.FileText, "__init__", spied_init)
    monkeypatch.setattr(xmlfast.FileText, "cut", spied_cut)
    monkeypatch.setattr(xmlfast.FileText, "_lose", spied_lose)
    monkeypatch.setattr(xmlfast.Batch, "survey", spied_survey)
    monkeypatch.setattr(xmlreader._Reader, "_records", spied_records)
    return seen


@pytest.fixture
def read_both(monkeypatch: pytest.MonkeyPatch, spy: Spy) -> Callable[[bytes], RawFeed]:
    """Reads a file with FILE_TEXT off, then on with the bytes phase, then on without it (what `spy` then holds),
    asserts the three give the same frame and issues, and returns the last. Small files take the bulk path, in
    chunks of two messages."""
    monkeypatch.setattr(xmlreader, "FEW_MESSAGES", 1)
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 2)

    def read(data: bytes) -> RawFeed:
        monkeypatch.setattr(xmlreader, "FILE_TEXT", False)
        serialized = read_xml(data, None, LIMIT)
        assert spy.made == 0 and "bytes" not in spy.ways
        monkeypatch.setattr(xmlreader, "FILE_TEXT", True)
        monkeypatch.setattr(xmlreader, "BYTES_PHASE", True)
        phased = read_xml(data, None, LIMIT)
        assert_frame_equal(phased.frame, serialized.frame)
        assert_frame_equal(phased.issues, serialized.issues)
        spy.reset()
        monkeypatch.setattr(xmlreader, "BYTES_PHASE", False)
        cut = read_xml(data, None, LIMIT)
        assert_frame_equal(cut.frame, serialized.frame)
        assert_frame_equal(cut.issues, serialized.issues)
        return cut

    return read


# ----------------------------------------------------------------------------- the bytes are used


@pytest.mark.parametrize("kind", ["adjustment", "acknowledgement"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_an_indented_file_is_cut_from_its_bytes(read_both, spy: Spy, kind: str, newline: str):
    text = (adjustments() if kind == "adjustment" else acknowledgements()).replace("\n", newline)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    item_tag = "AdjustedItem" if kind == "adjustment" else "Item"
    assert feed.frame.get_column("line").to_list() == record_lines(text, item_tag)
    assert feed.issues.is_empty()


@pytest.mark.parametrize("path", SAMPLE_XML, ids=lambda path: path.relative_to(ROOT / "samples").as_posix())
def test_sample_feeds_are_cut_from_their_bytes(read_both, spy: Spy, path: Path):
    feed = read_both(path.read_bytes())
    assert (spy.made, spy.losses) == (1, 0) and set(spy.ways) == {"bytes"}
    item_tag = "AdjustedItem" if "OrderAdjustment" in path.read_text() else "Item"
    assert feed.frame.get_column("line").to_list() == record_lines(path.read_text(), item_tag)


@pytest.mark.parametrize("read_bytes", [7, 13, xmlreader.READ_BYTES])
def test_non_ascii_text_split_across_reads_is_cut_from_the_bytes(read_both, spy: Spy,
                                                                  monkeypatch: pytest.MonkeyPatch, read_bytes: int):
    monkeypatch.setattr(xmlreader, "READ_BYTES", read_bytes)
    messages = [adjustment(n, order=f"Café-{n}-€", adjustment_item="Ünïcødé-😀", promotion="€😀é" * n)
                for n in range(1, MESSAGES + 1)]
    text = envelope("OrderAdjustment", messages)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("MerchantOrderID").to_list() == [f"Café-{n}-€" for n in range(1, MESSAGES + 1)]
    assert set(feed.frame.get_column("MerchantAdjustmentItemID")) == {"Ünïcødé-😀"}
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


def test_a_utf8_file_with_a_byte_order_mark_is_cut_from_its_bytes(read_both, spy: Spy,
                                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(xmlreader, "READ_BYTES", 7)
    read_both(b"\xef\xbb\xbf" + adjustments(order="Café").encode())
    spy.assert_used(chunks=3)


@pytest.mark.parametrize("declaration", ["", DECLARATION, "<?xml version='1.0' encoding='utf-8'?>\n",
                                         '<?xml version="1.0" encoding="US-ASCII"?>\n'],
                         ids=["none", "utf-8", "single-quoted", "ascii"])
def test_a_utf8_or_ascii_declaration_lets_the_bytes_be_used(read_both, spy: Spy, declaration: str):
    read_both(envelope("OrderAdjustment", [adjustment(n) for n in range(1, MESSAGES + 1)], declaration).encode())
    spy.assert_used(chunks=3)


@pytest.mark.parametrize("read_bytes", [13, xmlreader.READ_BYTES])
def test_a_file_without_a_newline_is_cut_from_its_bytes(read_both, spy: Spy, monkeypatch: pytest.MonkeyPatch,
                                                        read_bytes: int):
    monkeypatch.setattr(xmlreader, "READ_BYTES", read_bytes)
    text = re.sub(r"\n *", "", adjustments(order="A>B"))
    assert "\n" not in text
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert set(feed.frame.get_column("line")) == {1}


@pytest.mark.parametrize("value", ["A>B", "AB>", ">AB", "A > B", "A\">B", ">"])
def test_a_greater_than_sign_in_a_text_is_read_as_the_parser_reads_it(read_both, spy: Spy, value: str):
    # A serialization escapes it (`&gt;`); the file's bytes do not.
    feed = read_both(adjustments(order=value, adjustment_item=value, promotion=value).encode())
    spy.assert_used(chunks=3)
    row = feed.frame.row(ODD, named=True)
    assert (row["MerchantOrderID"], row["MerchantAdjustmentItemID"], row["MerchantPromotionID"]) == (value,) * 3
    assert feed.issues.is_empty()


def test_a_quote_and_greater_than_in_a_text_beside_a_spaced_currency(read_both, spy: Spy):
    # The XSD accepts both; a serialization would escape the `>` and send the message to the XSD.
    messages = [adjustment(n, promotion='P">EUR').replace('<Amount currency="EUR">-5.00', '<Amount currency = "EUR">-5.00')
                for n in range(1, MESSAGES + 1)]
    feed = read_both(envelope("OrderAdjustment", messages).encode())
    assert set(feed.frame.get_column("MerchantPromotionID")) == {'P">EUR'}


@pytest.mark.parametrize(("written", "read"), [("A&amp;B", "A&B"), ("&#65;BC", "ABC"), ("&lt;A&gt;", "<A>"),
                                               ("x&#x20AC;", "x€")])
def test_escaped_characters_are_read_as_the_parser_reads_them(read_both, spy: Spy, written: str, read: str):
    feed = read_both(adjustments(order=written, promotion=written).encode())
    spy.assert_used(chunks=3)
    row = feed.frame.row(ODD, named=True)
    assert (row["MerchantOrderID"], row["MerchantPromotionID"]) == (read, read)
    assert spy.per_message.count(ODD + 1) == 1  # the bytes would need unescaping: the XSD judges it


def test_schema_violations_and_values_the_bulk_checks_refuse_are_the_same(read_both, spy: Spy):
    messages = [adjustment(n) for n in range(1, MESSAGES + 1)]
    messages[1] = adjustment(2, reason="NoSuchReason", items=2)
    messages[3] = adjustment(4, adjustment_item="a" + " " * 60 + "b")  # the XSD collapses the blanks; bulk does not
    messages[4] = adjustment(5, currency=' currency="USD"')  # mixed currencies in one item
    feed = read_both(envelope("OrderAdjustment", messages).encode())
    spy.assert_used(chunks=3)
    assert {2, 4, 5} <= set(spy.per_message)
    assert feed.issues.height == 3  # both items of message 2, and message 5


# ----------------------------------------------------------------------------- the bytes are not used


ALTERED = {
    "lone-cr": adjustment(ODD + 1).replace("<ActionType>", "\r<ActionType>"),
    "comment-on-two-lines": adjustment(ODD + 1).replace("<ActionType>", "<!-- a\nrefund --><ActionType>"),
    "comment-on-two-lines-in-a-text": adjustment(ODD + 1, order="DE-<!--\n-->1002"),
    "pi-on-two-lines": adjustment(ODD + 1).replace("<ActionType>", "<?audit\ndone?><ActionType>"),
    "cdata": adjustment(ODD + 1, adjustment_item="<![CDATA[RMA-77001]]>"),
    "cdata-on-two-lines": adjustment(ODD + 1, adjustment_item="<![CDATA[RMA-\n77001]]>"),
    "comment-beside-cdata": adjustment(ODD + 1, order="DE-<!-- x -->1002", adjustment_item="<![CDATA[RMA-1]]>"),
    "comment-in-cdata": adjustment(ODD + 1, adjustment_item="<![CDATA[RMA-<!-- x -->1]]>"),
    "single-quoted-attribute": adjustment(ODD + 1, currency=" currency='EUR'"),
}


@pytest.mark.parametrize("name", list(ALTERED))
def test_what_the_parser_changes_in_a_message_sends_that_message_to_the_xsd(read_both, spy: Spy, name: str):
    # Only that message: the chunk and the rest of the file are still cut from the bytes, with their true lines.
    text = adjustments(odd=ALTERED[name])
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert ODD + 1 in spy.per_message
    assert feed.frame.get_column("record").to_list() == list(range(1, MESSAGES + 1))
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


LEFT_OPEN = {
    # Before the fourth message: inside the second chunk, after the third message.
    "comment-holding-a-message": "  <!-- <Message> -->\n" + adjustment(ODD + 1),
    "comment-in-a-message-holding-a-message": adjustment(ODD + 1).replace("<ActionType>", "<!-- <Message>\n --><ActionType>"),
    "cdata-holding-a-message": adjustment(ODD + 1, adjustment_item="<![CDATA[<Message>]]>"),
    # The fourth message is the chunk's last: it is taken to end at the first `</Message>`.
    "comment-holding-a-message-end": adjustment(ODD + 1).replace("<ActionType>", "<!-- </Message>\n --><ActionType>"),
}


@pytest.mark.parametrize("name", list(LEFT_OPEN))
def test_what_a_message_start_or_end_in_a_comment_or_cdata_cuts_sends_the_rest_to_the_serializer(read_both, spy: Spy,
                                                                                                 name: str):
    # The chunk is cut where the comment or CDATA holds a `<Message` or `</Message>`: a piece of the chunk then holds
    # one that is left open.
    feed = read_both(adjustments(odd=LEFT_OPEN[name]).encode())
    spy.assert_fell_back(chunk=2, chunks=3)
    assert feed.frame.get_column("record").to_list() == list(range(1, MESSAGES + 1))


INSIDE = {
    "comment-between-elements": (adjustment(ODD + 1).replace("<ActionType>", "<!-- refund --><ActionType>"), None),
    "comment-on-its-own-line": (adjustment(ODD + 1).replace("      <ActionType>", "      <!-- a -->\n      <ActionType>"),
                                None),
    "comment-in-a-text": (adjustment(ODD + 1, order="DE-<!-- x -->1002"), "DE-1002"),
    "pi-in-a-text": (adjustment(ODD + 1, order="DE-<?x y?>10<!--z-->02"), "DE-1002"),
    "pi-between-elements": (adjustment(ODD + 1).replace("<ActionType>", "<?audit done?><ActionType>"), None),
}


@pytest.mark.parametrize("name", list(INSIDE))
def test_what_the_parser_drops_inside_a_message_on_one_line_is_cut_out(read_both, spy: Spy, name: str):
    # The parser drops it and joins the texts around it; cut out, it moves no line.
    odd, order = INSIDE[name]
    text = adjustments(odd=odd)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")
    assert feed.frame.item(ODD, "MerchantOrderID") == (order or "DE-1002")
    assert ODD + 1 not in spy.per_message  # its shape is the others': taken in bulk


BETWEEN_MESSAGES = {
    "comment": "  <!-- next -->\n",
    "pi": "  <?audit?>\n",
    "several-on-lines": "  <!-- one\n two -->\n  <!-- three --> <?x y?>\n\n",
}


@pytest.mark.parametrize("name", list(BETWEEN_MESSAGES))
def test_what_the_parser_drops_between_messages_leaves_the_bytes_in_use(read_both, spy: Spy, name: str):
    # As a feed that names each message's order in a comment before it: cut down to its line feeds, so that the
    # lines still count.
    messages = [("" if n == 1 else BETWEEN_MESSAGES[name]) + adjustment(n) for n in range(1, MESSAGES + 1)]
    text = envelope("OrderAdjustment", messages)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


def between_chunks(between: str) -> str:
    """Six adjustments with `between` after the second: after the first chunk's last message, before the second's
    first."""
    messages = [adjustment(n) for n in range(1, MESSAGES + 1)]
    messages[2] = between + messages[2]
    return envelope("OrderAdjustment", messages)


@pytest.mark.parametrize("between", ["  <!-- a comment -->\n", "  <?audit?>\n", "  <!-- two\n lines -->\n"],
                         ids=["comment", "pi", "comment-on-two-lines"])
def test_what_the_parser_drops_between_chunks_leaves_the_bytes_in_use(read_both, spy: Spy, between: str):
    # It belongs to no message; its lines still count.
    read_both(between_chunks(between).encode())
    spy.assert_used(chunks=3)


def test_a_comment_between_chunks_holding_a_message_sends_the_rest_to_the_serializer(read_both, spy: Spy):
    read_both(between_chunks("  <!-- <Message> -->\n").encode())
    spy.assert_fell_back(chunk=2, chunks=3)


HEADS = {
    "comment-before-the-root": ("<AmazonEnvelope", "<!-- made by the shop -->\n<AmazonEnvelope"),
    "pi-before-the-root": ("<AmazonEnvelope", '<?xml-stylesheet href="feed.xsl"?>\n<AmazonEnvelope'),
    "comment-in-the-header": ("  <Header>", "  <!-- from the\n shop -->\n  <Header>"),
    "cdata-in-the-header": ("M_EXAMPLE_123", "<![CDATA[M_EXAMPLE_123]]>"),
    "single-quoted-attribute": ('xsi:noNamespaceSchemaLocation="amzn-envelope.xsd"',
                                "xsi:noNamespaceSchemaLocation='amzn-envelope.xsd'"),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_what_the_parser_drops_before_the_first_message_leaves_the_bytes_in_use(read_both, spy: Spy, name: str):
    # A feed made by a tool often opens with a comment: its messages are still read from the bytes, with their lines.
    text = adjustments().replace(*HEADS[name], 1)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


HELD = {
    "comment": ("  <Header>", "  <!-- <Message> -->\n  <Header>"),
    "cdata": ("M_EXAMPLE_123", "M_EXAMPLE_<![CDATA[<Message>]]>"),
    "pi": ("  <Header>", "  <?audit <Message> ?>\n  <Header>"),
}


@pytest.mark.parametrize("name", list(HELD))
def test_a_message_start_held_in_the_header_sends_every_chunk_to_the_serializer(read_both, spy: Spy, name: str):
    # The first `<Message` is in it, so what comes before that is not closed.
    read_both(adjustments().replace(*HELD[name], 1).encode())
    spy.assert_fell_back(chunk=1, chunks=3)


def test_a_whole_message_held_in_a_comment_on_one_line_is_not_taken_for_the_first(read_both, spy: Spy,
                                                                                   monkeypatch: pytest.MonkeyPatch):
    # The one case the other checks let through: with one message a chunk, the held `<Message></Message>` would be
    # the chunk's only message, and on one line its line agrees with the parser's. Only the comment, left open
    # before the first `<Message`, gives it away.
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 1)
    text = re.sub(r"\n *", "", adjustments()).replace("<Header>", "<!-- <Message></Message> --><Header>")
    feed = read_both(text.encode())
    spy.assert_fell_back(chunk=1, chunks=MESSAGES)
    assert feed.frame.get_column("record").to_list() == list(range(1, MESSAGES + 1))


def test_a_lone_cr_between_chunks_is_left_alone(read_both, spy: Spy):
    # It is no text of a message, and libxml2 counts no line for it, as the bytes' own counts do not.
    messages = [adjustment(n) for n in range(1, MESSAGES + 1)]
    messages[2] = "\r" + messages[2]
    text = envelope("OrderAdjustment", messages)
    feed = read_both(text.encode())
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


def test_a_nested_message_on_one_line_leaves_the_next_chunks_alone(read_both, spy: Spy):
    # In the first message of the second chunk: its pieces end inside that chunk's last message.
    messages = [adjustment(n) for n in range(1, MESSAGES + 1)]
    messages[2] = messages[2].replace("<OrderAdjustment>", "<Message><MessageID>9</MessageID></Message><OrderAdjustment>")
    text = re.sub(r"\n *", "", envelope("OrderAdjustment", messages))
    feed = read_both(text.encode())
    assert feed.frame.get_column("record").to_list() == list(range(1, MESSAGES + 1))


@pytest.mark.parametrize("declared", ["ISO-8859-1", "iso-8859-1", "latin1"])
def test_an_iso_8859_1_file_is_cut_from_its_bytes(read_both, spy: Spy, monkeypatch: pytest.MonkeyPatch, declared: str):
    # A character a byte, read the same by Python and libxml2: Amazon's own examples declare this encoding.
    monkeypatch.setattr(xmlreader, "READ_BYTES", 13)
    messages = [adjustment(n, order=f"Café-{n}", promotion="Ünï") for n in range(1, MESSAGES + 1)]
    text = envelope("OrderAdjustment", messages, f'<?xml version="1.0" encoding="{declared}"?>\n')
    feed = read_both(text.encode("latin-1"))
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("MerchantOrderID").to_list() == [f"Café-{n}" for n in range(1, MESSAGES + 1)]
    assert set(feed.frame.get_column("MerchantPromotionID")) == {"Ünï"}
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


@pytest.mark.parametrize("encoding", ["windows-1252", "ISO-8859-15"])
def test_another_single_byte_encoding_is_cut_from_its_bytes(read_both, spy: Spy, monkeypatch: pytest.MonkeyPatch,
                                                            encoding: str):
    monkeypatch.setattr(xmlreader, "READ_BYTES", 13)
    messages = [adjustment(n, order=f"Café €{n}") for n in range(1, MESSAGES + 1)]
    text = envelope("OrderAdjustment", messages, f'<?xml version="1.0" encoding="{encoding}"?>\n')
    feed = read_both(text.encode(encoding))
    spy.assert_used(chunks=3)
    assert feed.frame.get_column("MerchantOrderID").to_list() == [f"Café €{n}" for n in range(1, MESSAGES + 1)]
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")


def test_a_byte_python_cannot_decode_sends_the_rest_to_the_serializer(read_both, spy: Spy,
                                                                      monkeypatch: pytest.MonkeyPatch):
    # libxml2 (through iconv) reads 0xCA in windows-1255, Python's codec leaves it undefined: from the chunk it is in
    # (the fourth message's, the second chunk) on, the file is left to the parser.
    monkeypatch.setattr(xmlreader, "READ_BYTES", 13)
    text = adjustments(order="DE-#").replace('encoding="UTF-8"', 'encoding="windows-1255"')
    feed = read_both(text.encode("cp1255").replace(b"#", b"\xca"))
    spy.assert_fell_back(chunk=2, chunks=3)
    assert feed.frame.item(ODD, "MerchantOrderID") == "DE-" + etree.fromstring(
        b'<?xml version="1.0" encoding="windows-1255"?><r>\xca</r>').text


ONE_BYTE = [f"ISO-8859-{part}" for part in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)] + \
    [f"windows-{page}" for page in range(1250, 1259)]


@pytest.mark.parametrize("encoding", ONE_BYTE)
def test_a_one_byte_encoding_taken_from_the_bytes_is_read_as_libxml2_reads_it(encoding: str):
    # Every byte Python decodes is the character libxml2 reads there (or the parser refuses the byte, and the file).
    codec = xmlreader._file_text_codec(f'<?xml version="1.0" encoding="{encoding}"?>'.encode())
    assert codec is not None
    for byte in range(0x80, 0x100):
        try:
            ours = bytes([byte]).decode(codec)
        except UnicodeDecodeError:
            continue
        try:
            theirs = etree.fromstring(f'<?xml version="1.0" encoding="{encoding}"?><r>'.encode() + bytes([byte]) +
                                      b"</r>").text
        except etree.XMLSyntaxError:
            continue
        assert ours == theirs, f"{encoding} {byte:#x}"


@pytest.mark.parametrize(("declaration", "codec"), [
    (b'<?xml version="1.0"?>', "utf-8"), (b'<?xml version="1.0" encoding="us-ascii"?>', "utf-8"),
    (b"<?xml version='1.0' encoding='ISO-8859-1'?>", "latin-1"), (b'<?xml version="1.0" encoding="CP1252"?>', "cp1252"),
    (b'<?xml version="1.0" encoding="windows-1250"?>', "cp1250"), (b'<?xml version="1.0" encoding="iso_8859-15"?>',
                                                                   "iso8859-15"),
    (b'<?xml version="1.0" encoding="ISO-8859-12"?>', None),
    (b'<?xml version="1.0" encoding="Shift_JIS"?>', None), (b'<?xml version="1.0" encoding="KOI8-R"?>', None),
    (codecs.BOM_UTF8 + b'<?xml version="1.0" encoding="ISO-8859-1"?>', None), (b'<?xml version="1.0" enc', None),
])
def test_which_encodings_are_cut_from_the_bytes(declaration: bytes, codec: str | None):
    assert xmlreader._file_text_codec(declaration + b"\n<AmazonEnvelope>") == codec


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_a_utf16_file_is_serialized(read_both, spy: Spy, codec: str):
    messages = [adjustment(n, order=f"Café-{n}-😀") for n in range(1, MESSAGES + 1)]
    data = envelope("OrderAdjustment", messages, '<?xml version="1.0" encoding="UTF-16"?>\n').encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    feed = read_both(data)
    spy.assert_unused(chunks=3)
    assert feed.frame.get_column("MerchantOrderID").to_list() == [f"Café-{n}-😀" for n in range(1, MESSAGES + 1)]


# ----------------------------------------------------------------------------- past line 65535


@cache
def big_feed() -> str:
    """Enough messages to pass line 65535; past it, one message with a schema violation in its second item, one
    without items, and one whose value the XSD accepts but the bulk checks refuse."""
    messages = [adjustment(n, items=1 + (n % 7 == 0)) for n in range(1, 3300)]
    messages += [adjustment(3300, reason="NoSuchReason", items=2).replace("NoSuchReason", "CustomerReturn", 1),
                 adjustment(3301, items=0),
                 adjustment(3302, adjustment_item="a" + " " * 60 + "b", items=2),
                 adjustment(3303)]
    text = envelope("OrderAdjustment", messages)
    assert text.count("\n") > BIG_LINES + 100
    return text


def test_lines_past_65535_are_the_true_lines(read_both, spy: Spy, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 512)
    text = big_feed()
    monkeypatch.setattr(xmlreader, "FILE_TEXT", False)
    serialized = read_xml(text.encode(), None, LIMIT)
    monkeypatch.setattr(xmlreader, "FILE_TEXT", True)
    phased = read_xml(text.encode(), None, LIMIT)
    monkeypatch.setattr(xmlreader, "BYTES_PHASE", False)
    spy.reset()
    feed = read_xml(text.encode(), None, LIMIT)
    spy.assert_used(chunks=7)
    assert_frame_equal(phased.frame, feed.frame)
    expected = record_lines(text, "AdjustedItem")
    lines = feed.frame.get_column("line")
    assert lines.to_list() == expected
    # Before line 65535 libxml2's lines are right, and the two ways agree on everything.
    early = int((lines < BIG_LINES).sum())
    assert 3000 < early < feed.frame.height
    assert_frame_equal(feed.frame.head(early), serialized.frame.head(early))
    assert_frame_equal(feed.issues, serialized.issues)
    # The odd messages past the line went to the XSD on their own, with the true lines of their records.
    assert {3300, 3301, 3302} <= set(spy.per_message)
    last = feed.frame.filter(feed.frame.get_column("record") >= 3300)
    assert last.get_column("line").to_list() == expected[-6:]
    assert min(expected[-6:]) > BIG_LINES
    assert feed.issues.height == 2  # 3300's second item and 3301, which has none
    # The bytes phase parses such messages apart from the file, so even the XSD's explanations name their true lines:
    # the line of the element each names.
    explained = re.findall(r"line ([0-9]+), (\w+):", " ".join(phased.issues.get_column("message")))
    file_lines = text.split("\n")
    assert [tag for _, tag in explained] == ["AdjustmentReason", "OrderAdjustment"]
    assert all(int(line) > BIG_LINES and f"<{tag}>" in file_lines[int(line) - 1] for line, tag in explained)
    assert last.get_column("MerchantAdjustmentItemID").to_list()[3] == "a" + " " * 60 + "b"


def test_a_nested_message_past_65535_leaves_the_next_chunks_alone(read_both, spy: Spy,
                                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 512)
    # Message 2900 is past the line, in the sixth of seven chunks.
    text = big_feed().replace("<MessageID>2900</MessageID>", "<Message><MessageID>9</MessageID></Message>"
                              "<MessageID>2900</MessageID>")
    monkeypatch.setattr(xmlreader, "FILE_TEXT", True)
    for phase in (True, False):
        monkeypatch.setattr(xmlreader, "BYTES_PHASE", phase)
        feed = read_xml(text.encode(), None, LIMIT)
        assert feed.frame.get_column("record").unique(maintain_order=True).to_list() == list(range(1, 3304))
        # Message 2900's nested Message, 3300's second item and 3301, which has none.
        assert feed.issues.height == 3


# ----------------------------------------------------------------------------- broken files


@pytest.mark.parametrize("cut", ["half", "no-end", "mismatched-tag"])
def test_a_broken_file_raises_the_same_error(monkeypatch: pytest.MonkeyPatch, cut: str):
    monkeypatch.setattr(xmlreader, "FEW_MESSAGES", 1)
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 2)
    text = adjustments()
    if cut == "half":
        text = text[:len(text) * 3 // 4]
    elif cut == "no-end":
        text = text.removesuffix("</AmazonEnvelope>\n")
    else:
        text = adjustments(odd=adjustment(ODD + 1).replace("</ActionType>", "</Action>"))
    errors = []
    for file_text, phase in ((False, False), (True, False), (True, True)):
        monkeypatch.setattr(xmlreader, "FILE_TEXT", file_text)
        monkeypatch.setattr(xmlreader, "BYTES_PHASE", phase)
        with pytest.raises(FeedError) as caught:
            read_xml(text.encode(), None, LIMIT)
        errors.append((caught.value.name, caught.value.message, caught.value.line))
    assert errors[0][0] == "malformed-xml"
    assert errors[2] == errors[1] == errors[0]


# ----------------------------------------------------------------------------- long blanks


LONG = "\t" + " " * 70  # squeezed from 64 spaces on (xmlfast.LONG_BLANK)


@pytest.mark.parametrize("read_bytes", [13, 100, xmlreader.READ_BYTES])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "lone-cr"])
def test_long_blanks_between_tags_are_squeezed_and_the_lines_still_count(read_both, spy: Spy,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          read_bytes: int, newline: str):
    # Long blanks holding line breaks, inside messages and between them: cut to their line feeds in the bytes
    # kept (those split between reads stay), so the chunks stay small and every line is where libxml2 says.
    monkeypatch.setattr(xmlreader, "READ_BYTES", read_bytes)
    squeezed, saved = xmlfast.squeezed, []

    def spied(block: bytes) -> bytes:
        out = squeezed(block)
        saved.append(len(block) - len(out))
        return out

    monkeypatch.setattr(xmlfast, "squeezed", spied)
    blank = LONG + newline + LONG + newline + LONG
    text = adjustments().replace(">\n", ">" + blank)
    feed = read_both(text.encode())
    saved.clear()  # what the tee squeezed, read once more without the bytes phase (which squeezes whole chunks)
    spy.reset()
    assert_frame_equal(read_xml(text.encode(), None, LIMIT).frame, feed.frame)
    if read_bytes < len(blank):
        assert not any(saved)
        if newline == "\r":  # a lone CR kept in a message: the parser would read it as LF in a text
            assert spy.losses == 0 and spy.per_message == list(range(1, MESSAGES + 1))
    else:
        assert sum(saved) > len(text) // 2
        spy.assert_used(chunks=3)
    assert feed.frame.get_column("line").to_list() == record_lines(text, "AdjustedItem")
    assert feed.issues.is_empty()


@pytest.mark.parametrize("value, read, issues", [
    (LONG, None, 1),  # blank only: empty to the XSD, which wants at least one character
    ("A" + LONG + "B", "A" + LONG + "B", 0),
    (LONG + "A", "A", 0),
    ("A" + LONG, "A", 0),
], ids=["whole-content", "inside", "leading", "trailing"])
def test_long_blanks_in_a_text_are_read_as_the_parser_reads_them(read_both, spy: Spy, value: str, read: str | None,
                                                                 issues: int):
    # Only a blank between two tags is squeezed; a text keeps its own blanks (the ends trimmed, as always), and an
    # element holding only a blank has no plan, as an empty one has none.
    feed = read_both(adjustments(adjustment_item=value, promotion=value).encode())
    assert (spy.made, spy.losses) == (1, 0) and set(spy.ways) == {"bytes"}
    row = feed.frame.row(ODD, named=True)
    assert (row["MerchantAdjustmentItemID"], row["MerchantPromotionID"]) == (read, read)
    assert feed.issues.height == issues


def test_squeezed_keeps_line_feeds_only_between_tags():
    block = b"<A>" + b" " * 70 + b"\r\n" + b"\t" * 10 + b"\r" + b" " * 5 + b"\n<B>x" + b" " * 70 + b"y</B>"
    assert xmlfast.squeezed(block) == b"<A>\n\n<B>x" + b" " * 70 + b"y</B>"
    assert xmlfast.squeezed(b"<A>" + b" " * 63 + b"<B>") == b"<A>" + b" " * 63 + b"<B>"

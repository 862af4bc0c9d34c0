"""After its first chunk, a feed cut from its bytes is read on in its bytes alone, with no tree (the bytes phase):
whatever the rest of the file holds, the records, issues and errors are those of reading it with a tree."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.model import RawFeed
from orderfeeds.readers.xml import read_xml

LIMIT = 10**9
MESSAGES = 8
ODD = 4  # the fifth message: in the third chunk of two, well into the bytes phase


def adjustment(number: int, reason: str = "CustomerReturn", order: str = "DE-1002") -> str:
    return ("  <Message>\n"
            f"    <MessageID>{number}</MessageID>\n"
            "    <OrderAdjustment>\n"
            f"      <MerchantOrderID>{order}</MerchantOrderID>\n"
            "      <ActionType>Refund</ActionType>\n"
            "      <AdjustedItem>\n"
            f"        <MerchantOrderItemID>{number}-1</MerchantOrderItemID>\n"
            f"        <AdjustmentReason>{reason}</AdjustmentReason>\n"
            "        <ItemPriceAdjustments>\n"
            '          <Component><Type>Principal</Type><Amount currency="EUR">79.90</Amount></Component>\n'
            "        </ItemPriceAdjustments>\n"
            "      </AdjustedItem>\n"
            "    </OrderAdjustment>\n"
            "  </Message>\n")


def feed(odd: str | None = None, encoding: str = "UTF-8", end: str = "</AmazonEnvelope>\n",
         count: int = MESSAGES) -> bytes:
    messages = [adjustment(number) for number in range(1, count + 1)]
    if odd is not None:
        messages[ODD] = odd
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n'
            '<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
            '    xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">\n'
            "  <Header>\n    <DocumentVersion>1.01</DocumentVersion>\n"
            "    <MerchantIdentifier>M_EXAMPLE_123</MerchantIdentifier>\n  </Header>\n"
            "  <MessageType>OrderAdjustment</MessageType>\n"
            + "".join(messages) + end).encode(encoding, "xmlcharrefreplace")


@dataclass
class Phase:
    """What the last read with the bytes phase did."""

    entered: int = 0  # times the reader went on in the bytes
    resumed: int = 0  # times it read the rest of the file with a tree again


@pytest.fixture
def phase(monkeypatch: pytest.MonkeyPatch) -> Phase:
    seen = Phase()
    bytes_phase, resume = xmlreader._Reader._bytes_phase, xmlreader._Reader._resume

    def spied_bytes_phase(self):
        seen.entered += 1
        return bytes_phase(self)

    def spied_resume(self, *args):
        seen.resumed += 1
        return resume(self, *args)

    monkeypatch.setattr(xmlreader._Reader, "_bytes_phase", spied_bytes_phase)
    monkeypatch.setattr(xmlreader._Reader, "_resume", spied_resume)
    monkeypatch.setattr(xmlreader, "FEW_MESSAGES", 1)
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", 2)
    # Read in small blocks, as a big file is: the checking parser has not seen the whole file when the first chunk
    # closes.
    monkeypatch.setattr(xmlreader, "READ_BYTES", 256)
    monkeypatch.setattr(xmlreader, "HEAD_CHUNK", 256)  # else the root's check parses all of a small file
    return seen


def outcome(data: bytes) -> RawFeed | tuple[str, str, int | None]:
    try:
        return read_xml(data, None, LIMIT)
    except FeedError as exc:
        return exc.name, exc.message, exc.line


def read_every_way(monkeypatch: pytest.MonkeyPatch, phase: Phase, data: bytes) -> RawFeed | tuple:
    """The file read with a tree throughout (serialized chunks, then chunks cut from the bytes) and with the bytes
    phase: all three alike. The last is returned, and `phase` says what it did."""
    outcomes = []
    for file_text, bytes_phase in ((False, False), (True, False), (True, True)):
        monkeypatch.setattr(xmlreader, "FILE_TEXT", file_text)
        monkeypatch.setattr(xmlreader, "BYTES_PHASE", bytes_phase)
        phase.entered = phase.resumed = 0
        outcomes.append(outcome(data))
    first = outcomes[0]
    for other in outcomes[1:]:
        if isinstance(first, tuple) or isinstance(other, tuple):
            assert other == first
        else:
            assert_frame_equal(other.frame, first.frame)
            assert_frame_equal(other.issues, first.issues)
    return outcomes[-1]


# What the fifth message is made, and whether the reader must then read the rest with a tree again.
IN_THE_BYTES = {
    "plain": adjustment(ODD + 1),
    "bad-value": adjustment(ODD + 1, reason="NoSuchReason"),
    "escaped": adjustment(ODD + 1, order="DE&amp;1"),
    "character-reference": adjustment(ODD + 1, order="DE&#x2D;1"),
    "comment-on-one-line": adjustment(ODD + 1).replace("<ActionType>", "<!-- c --><ActionType>"),
    "comment-on-two-lines": adjustment(ODD + 1).replace("<ActionType>", "<!-- c\n --><ActionType>"),
    "cdata": adjustment(ODD + 1, order="<![CDATA[DE<1>]]>"),
    "non-ascii": adjustment(ODD + 1, order="DÉ-€"),
}
READ_AGAIN = {
    "nested-message": adjustment(ODD + 1).replace("<ActionType>", "<Message><MessageID>9</MessageID></Message>"
                                                                  "<ActionType>"),
    "cdata-with-an-end-tag": adjustment(ODD + 1, order="<![CDATA[</Message>]]>"),
    "comment-with-a-start-tag": adjustment(ODD + 1).replace("<ActionType>", "<!-- <Message> --><ActionType>"),
    "comment-between": "  <!-- between -->\n" + adjustment(ODD + 1),
    "pi-between": "  <?pi x?>\n" + adjustment(ODD + 1),
    "default-namespace": adjustment(ODD + 1).replace("<Message>", '<Message xmlns="urn:x">'),
    "default-namespace-spaced": adjustment(ODD + 1).replace("<Message>", '<Message xmlns = "urn:x">'),
    # libxml2 gives an element the line its start tag ends on, the bytes the line it starts on.
    "start-tag-over-two-lines": adjustment(ODD + 1).replace("<Message>", "<Message\n>"),
    "text-between": "  text\n" + adjustment(ODD + 1),
    "element-between": "  <Other/>\n" + adjustment(ODD + 1),
    "message-in-an-element": "  <Other>\n" + adjustment(ODD + 1) + "  </Other>\n",
    "self-closed-message": "  <Message/>\n" + adjustment(ODD + 1),
    "end-tag-on-the-same-line": adjustment(ODD + 1).rstrip("\n") + "<Other/>\n",
    "mismatched-tag": adjustment(ODD + 1).replace("</ActionType>", "</Action>"),
}


@pytest.mark.parametrize("odd", sorted(IN_THE_BYTES), ids=sorted(IN_THE_BYTES))
def test_what_a_message_holds_is_read_in_the_bytes(monkeypatch: pytest.MonkeyPatch, phase: Phase, odd: str):
    read = read_every_way(monkeypatch, phase, feed(IN_THE_BYTES[odd]))
    assert not isinstance(read, tuple)
    assert (phase.entered, phase.resumed) == (1, 0)
    assert read.frame.height == MESSAGES


@pytest.mark.parametrize("odd", sorted(READ_AGAIN), ids=sorted(READ_AGAIN))
def test_what_breaks_the_shape_of_the_messages_is_read_with_a_tree(monkeypatch: pytest.MonkeyPatch, phase: Phase,
                                                                   odd: str):
    read_every_way(monkeypatch, phase, feed(READ_AGAIN[odd]))
    assert (phase.entered, phase.resumed) == (1, 1)


@pytest.mark.parametrize("end, resumed", [
    ("</AmazonEnvelope>", 0),
    ("</AmazonEnvelope >\n\n", 0),
    ("", 1),  # not well-formed: found where the bytes not yet cut start
    ("</AmazonEnvelope>\n<!-- made by a tool -->\n", 1),  # a comment after the root is allowed
    ("</AmazonEnvelope>\n<Other/>\n", 1),
    ("  <Other/>\n</AmazonEnvelope>\n", 1),
    ("  tail\n</AmazonEnvelope>\n", 1),
])
def test_what_follows_the_last_message_is_judged_as_with_a_tree(monkeypatch: pytest.MonkeyPatch, phase: Phase,
                                                                end: str, resumed: int):
    read_every_way(monkeypatch, phase, feed(end=end))
    assert (phase.entered, phase.resumed) == (1, resumed)


def test_a_message_that_fails_the_xsd_has_its_true_lines(monkeypatch: pytest.MonkeyPatch, phase: Phase):
    data = feed(adjustment(ODD + 1, reason="NoSuchReason"))
    read = read_every_way(monkeypatch, phase, data)
    assert not isinstance(read, tuple)
    line = data.decode().split("\n").index("        <AdjustmentReason>NoSuchReason</AdjustmentReason>") + 1
    assert read.issues.height == 1 and f"line {line}, AdjustmentReason:" in read.issues.item(0, "message")


def test_a_not_well_formed_file_is_caught_in_the_chunks_already_cut(monkeypatch: pytest.MonkeyPatch, phase: Phase):
    # The checking parser reads ahead of the chunks: the broken tag is in a chunk it has had, but the reader has not
    # yet settled. Its error is libxml2's, with the line and column a tree's parser gives.
    data = feed(adjustment(ODD + 1).replace("<Quantity", "<Quantity").replace("</MerchantOrderID>", "</Merchant>"))
    read = read_every_way(monkeypatch, phase, data)
    assert isinstance(read, tuple) and read[0] == "malformed-xml" and "column" in read[1]


def test_a_byte_python_cannot_decode_is_read_with_a_tree(monkeypatch: pytest.MonkeyPatch, phase: Phase):
    # windows-1255's 0xCA: libxml2 reads it, Python does not.
    data = feed(adjustment(ODD + 1, order="DE-@"), encoding="windows-1255").replace(b"DE-@", b"DE-\xca")
    read = read_every_way(monkeypatch, phase, data)
    assert not isinstance(read, tuple)
    assert (phase.entered, phase.resumed) == (1, 1)


@pytest.mark.parametrize("broken", [False, True])
def test_the_rest_of_a_file_on_one_line_is_read_with_a_tree(monkeypatch: pytest.MonkeyPatch, phase: Phase,
                                                            broken: bool):
    # No line ends with a Message: after KEPT_BYTES without a place to cut, the rest is read with a tree, which gives
    # an error on that long line the same column.
    monkeypatch.setattr(xmlreader, "KEPT_BYTES", 3000)
    text = feed(count=20).decode()
    head, rest = text.split("</Message>\n", 2)[:2], text.split("</Message>\n", 2)[2]
    rest = rest.replace("\n", "")
    if broken:
        at = rest.rfind("<ActionType>")  # in the last message, well past the first chunk
        rest = rest[:at] + "<ActionType a=>" + rest[at + len("<ActionType>"):]
    data = ("</Message>\n".join(head) + "</Message>\n" + rest + "\n").encode()
    read = read_every_way(monkeypatch, phase, data)
    assert (phase.entered, phase.resumed) == (1, 1)
    assert isinstance(read, tuple) == broken


def test_an_error_libxml2_reads_on_after_is_not_lost(monkeypatch: pytest.MonkeyPatch, phase: Phase):
    # A namespace error in the first chunk: libxml2 goes on and lxml raises it at the document's end, which the
    # reader would never reach with a tree if it went on in the bytes.
    data = feed().replace(b"<MerchantOrderID>", b"<p:x/><MerchantOrderID>", 1)
    read = read_every_way(monkeypatch, phase, data)
    assert isinstance(read, tuple) and "Namespace prefix p" in read[1]
    assert phase.entered == 0


def test_a_file_not_well_formed_is_reported_at_its_first_error(monkeypatch: pytest.MonkeyPatch, phase: Phase):
    # lxml's iterparse, given more to read after a fatal error, starts over and reports what it made of the rest,
    # depending on how the file was split into reads; the reader reports the first error of the file instead.
    data = feed(adjustment(ODD + 1, order="a&foo;b"))
    read = read_every_way(monkeypatch, phase, data)
    line = data.split(b"\n").index(b"      <MerchantOrderID>a&foo;b</MerchantOrderID>") + 1
    assert read == ("malformed-xml", f"the file is not well-formed XML: Entity 'foo' not defined (line {line}, "
                    "column 30)", line)

"""iter_xml: an XML feed in pieces gives, concatenated, exactly what read_xml gives, and fails where the file does."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.model import ISSUE_SCHEMA, RawFeed
from orderfeeds.readers.xml import _Reader, iter_xml, read_xml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_XML = sorted([*(ROOT / "samples" / "feeds").glob("*.xml"), *(ROOT / "samples" / "cases").glob("*/feed-*.xml")])
LIMIT = 10**9
HEADER = "<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_1</MerchantIdentifier></Header>"
SIZES = (1, 2, 3, 7)


def envelope(message_type: str, *messages: str, tail: str = "\n</AmazonEnvelope>\n") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n{HEADER}\n'
            f"<MessageType>{message_type}</MessageType>\n" + "\n".join(messages) + tail).encode()


def ack(message_id: str, *items: str, status: str = "Failure") -> str:
    return (f"<Message><MessageID>{message_id}</MessageID><OrderAcknowledgement>"
            f"<AmazonOrderID>111-2223334-4445550</AmazonOrderID><StatusCode>{status}</StatusCode>"
            + "".join(items) + "</OrderAcknowledgement></Message>")


def ack_item(code: str = "20000000000001") -> str:
    return f"<Item><AmazonOrderItemCode>{code}</AmazonOrderItemCode><CancelReason>NoInventory</CancelReason></Item>"


def adj(message_id: str, *items: str) -> str:
    return (f"<Message>\n  <MessageID>{message_id}</MessageID>\n  <OrderAdjustment>\n"
            "    <AmazonOrderID>111-2223334-4445551</AmazonOrderID>\n" + "".join(items)
            + "  </OrderAdjustment>\n</Message>")


def adj_item(amount: str = "5.00", reason: str = "CustomerReturn", code: str = "20000000000002",
             currency: str = "USD", tax: str | None = None) -> str:
    tax_part = (f'<Component><Type>Tax</Type><Amount currency="{currency}">{tax}</Amount></Component>'
                if tax is not None else "")
    return (f"    <AdjustedItem>\n      <AmazonOrderItemCode>{code}</AmazonOrderItemCode>\n"
            f"      <AdjustmentReason>{reason}</AdjustmentReason>\n      <ItemPriceAdjustments>"
            f'<Component><Type>Principal</Type><Amount currency="{currency}">{amount}</Amount></Component>'
            f"{tax_part}</ItemPriceAdjustments>\n    </AdjustedItem>\n")


def generated_adjustments(seed: int, messages: int = 60) -> bytes:
    """Multi-item messages, schema violations (in an item and outside), repeated and non-numeric MessageIDs."""
    rng = random.Random(seed)
    parts, used = [], []
    for number in range(1, messages + 1):
        roll = rng.random()
        if used and roll < 0.15:
            message_id = str(rng.choice(used))  # a repeat, often of a message many pieces back
        elif roll < 0.2:
            message_id = rng.choice(["x1", "0", "", "-3"])  # not a whole number: a schema violation
        else:
            message_id = str(number)
            used.append(number)
        items = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            kind = rng.random()
            if kind < 0.1:
                items.append(adj_item(amount="5.001"))
            elif kind < 0.2:
                items.append(adj_item(reason="Goodwill"))
            elif kind < 0.3:
                items.append(adj_item(tax="1.5", currency=rng.choice(["USD", "EUR"])))
            elif kind < 0.35:
                items.append(adj_item(code="123"))
            else:
                items.append(adj_item(amount=f"{rng.randint(0, 99)}.{rng.randint(0, 99):02d}"))
        parts.append(adj(message_id, *items))
    return envelope("OrderAdjustment", *parts)


def generated_acknowledgements(seed: int, messages: int = 60) -> bytes:
    rng = random.Random(seed)
    parts = []
    for number in range(1, messages + 1):
        message_id = str(rng.randint(1, messages // 2)) if rng.random() < 0.3 else str(number + messages)
        items = [ack_item(rng.choice(["20000000000001", "20000000000002", "2000"])) for _ in range(rng.randint(0, 3))]
        parts.append(ack(message_id, *items, status=rng.choice(["Failure", "Success", "Failure", "Maybe"])))
    return envelope("OrderAcknowledgement", *parts)


GENERATED = {
    "adjustments-1": generated_adjustments(1),
    "adjustments-2": generated_adjustments(2, 120),
    "acknowledgements-3": generated_acknowledgements(3),
    "acknowledgements-4": generated_acknowledgements(4, 120),
}


def concatenated(pieces: list[RawFeed]) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.concat([p.frame for p in pieces]), pl.concat([p.issues for p in pieces])


def assert_pieces_read_like_the_whole(source: bytes | Path, chunk_records: int) -> list[RawFeed]:
    whole = read_xml(source, None, LIMIT)
    pieces = list(iter_xml(source, None, LIMIT, chunk_records))
    frame, issues = concatenated(pieces)
    assert_frame_equal(frame, whole.frame)
    assert_frame_equal(issues, whole.issues)
    for number, piece in enumerate(pieces):
        assert (piece.feed_type, piece.fields, piece.column_order) == (whole.feed_type, whole.fields, whole.column_order)
        assert piece.notes == (whole.notes if number == 0 else ())
        assert piece.frame.height > 0
        assert piece.frame.schema == whole.frame.schema and piece.issues.schema == whole.issues.schema
        if number < len(pieces) - 1:
            assert piece.frame.height >= chunk_records
        # A piece's issues are about its own records.
        assert piece.issues.get_column("seq").is_in(piece.frame.get_column("seq").implode()).all()
    if whole.frame.filter(pl.col("item-index") == 1).height > chunk_records:  # more messages than a piece's records
        assert len(pieces) > 1
    return pieces


@pytest.mark.parametrize("chunk_records", SIZES)
@pytest.mark.parametrize("path", SAMPLE_XML, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_and_golden_feeds_in_pieces_read_like_the_whole(path: Path, chunk_records: int):
    assert_pieces_read_like_the_whole(path, chunk_records)
    assert_pieces_read_like_the_whole(path.read_bytes(), chunk_records)


@pytest.mark.parametrize("chunk_records", SIZES)
@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_feeds_in_pieces_read_like_the_whole(name: str, chunk_records: int):
    data = GENERATED[name]
    pieces = assert_pieces_read_like_the_whole(data, chunk_records)
    errors = set(concatenated(pieces)[1].get_column("error"))
    assert {"schema-violation", "duplicate-message-id"} <= errors


@pytest.mark.parametrize("chunk_messages", [1, 2, 5])
@pytest.mark.parametrize("chunk_records", [1, 4, 10, 1000])
def test_chunk_and_piece_sizes_do_not_change_the_records(monkeypatch: pytest.MonkeyPatch, chunk_messages: int,
                                                         chunk_records: int):
    monkeypatch.setattr(xmlreader, "CHUNK_MESSAGES", chunk_messages)
    assert_pieces_read_like_the_whole(GENERATED["adjustments-2"], chunk_records)


def test_pieces_cut_by_chunk_size_read_like_the_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(xmlreader, "CHUNK_BYTES", 1)
    path = tmp_path / "feed.xml"
    path.write_bytes(GENERATED["adjustments-1"])
    assert_pieces_read_like_the_whole(path, 5)


@pytest.mark.parametrize("chunk_records", SIZES)
def test_the_per_message_path_in_pieces_reads_like_the_whole(chunk_records: int):
    data = GENERATED["adjustments-1"]
    whole = _Reader(None, fast=False).read(data)
    frame, issues = concatenated(list(_Reader(None, fast=False).pieces(data, chunk_records)))
    assert_frame_equal(frame, whole.frame)
    assert_frame_equal(issues, whole.issues)
    assert_frame_equal(whole.frame, read_xml(data, None, LIMIT).frame)


def test_a_repeat_in_a_later_piece_names_the_line_of_the_first_message():
    data = envelope("OrderAcknowledgement", ack("1"), ack("2"), ack("3", ack_item(), ack_item()), ack("1"),
                    ack("2", ack_item(), ack_item()), ack("1"))
    pieces = list(iter_xml(data, None, LIMIT, 1))
    assert [p.frame.height for p in pieces] == [1, 1, 2, 1, 2, 1]
    assert [p.frame.get_column("seq").to_list() for p in pieces] == [[0], [1], [2, 3], [4], [5, 6], [7]]
    first_lines = {1: 5, 2: 6}
    expected = [
        (seq, "duplicate-message-id", f"MessageID {mid} is used again; the message on line {first_lines[mid]} already "
                                      "has it, so this one is not applied. Give every message its own MessageID")
        for seq, mid in ((4, 1), (5, 2), (6, 2), (7, 1))
    ]
    issues = concatenated(pieces)[1]
    assert issues.select("seq", "error", "message").rows() == expected
    assert [p.issues.height for p in pieces] == [0, 0, 0, 1, 2, 1]


def test_the_reader_keeps_no_earlier_piece_and_only_ints_for_message_ids():
    reader = _Reader(None)
    pieces = reader.pieces(GENERATED["adjustments-2"], 3)
    for _ in range(5):
        piece = next(pieces)
        assert reader.chunks == [] and reader.rows == [] and reader.pending == 0
        assert [len(column) for column in reader.issues] == [0, 0, 0]
        assert reader.seen is not None and reader.seen.schema == pl.Schema({"id": pl.Int64, "first-line": pl.Int64})
        assert reader.seq == piece.frame.get_column("seq").max() + 1
    pieces.close()


def test_read_xml_keeps_no_message_ids():
    reader = _Reader(None)
    reader.read(GENERATED["adjustments-1"])
    assert reader.seen is None


@pytest.mark.parametrize("tail, name", [
    ("\n<Message><MessageID>99</Message>\n</AmazonEnvelope>\n", "malformed-xml"),  # not well-formed near the end
    ("\n</AmazonEnvelope>\n<AmazonEnvelope/>\n", "malformed-xml"),  # a second root
    ("\n<Extra/>\n</AmazonEnvelope>\n", "malformed-xml"),  # an envelope break found after the last message
    ("\ntrailing text\n</AmazonEnvelope>\n", "malformed-xml"),
    ("\n<Message><MessageID>99</MessageID>&ent;</Message></AmazonEnvelope>\n", "malformed-xml"),
])
def test_a_broken_end_is_raised_from_the_iterator_after_some_pieces(tail: str, name: str):
    # Large enough that the parser meets messages well before it reads the end.
    messages = [ack(str(n), ack_item()) for n in range(1, 2001)]
    data = envelope("OrderAcknowledgement", *messages, tail=tail)
    pieces: list[RawFeed] = []
    with pytest.raises(FeedError) as caught:
        for piece in iter_xml(data, None, LIMIT, 100):
            pieces.append(piece)
    assert caught.value.name == name
    assert len(pieces) >= 5
    assert not workers()  # the chunk that was being checked when the error came was let go
    with pytest.raises(FeedError) as whole:
        read_xml(data, None, LIMIT)
    assert (whole.value.name, str(whole.value)) == (caught.value.name, str(caught.value))


def workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("orderfeeds-xml")]


def test_the_worker_thread_ends_when_the_caller_stops_early():
    pieces = iter_xml(GENERATED["adjustments-2"], None, LIMIT, 1)
    next(pieces), next(pieces)
    assert workers()  # a chunk was handed out, so the worker thread is up
    pieces.close()
    assert not workers()


def test_up_front_checks_raise_before_any_piece(tmp_path: Path):
    data = GENERATED["acknowledgements-3"]
    with pytest.raises(FeedError) as caught:
        next(iter_xml(data, None, 100, 1))
    assert caught.value.name == "feed-too-large"
    unsafe = data.replace(b"<AmazonEnvelope>", b'<!DOCTYPE AmazonEnvelope [<!ENTITY x "y">]>\n<AmazonEnvelope>', 1)
    with pytest.raises(FeedError) as caught:
        next(iter_xml(unsafe, None, LIMIT, 1))
    assert caught.value.name == "unsafe-xml"
    with pytest.raises(FeedError) as caught:
        next(iter_xml(b"<Other/>", None, LIMIT, 1))
    assert caught.value.name == "malformed-xml"


def test_a_file_with_one_message_is_one_piece():
    pieces = list(iter_xml(envelope("OrderAcknowledgement", ack("1")), None, LIMIT, 1))
    assert len(pieces) == 1 and pieces[0].frame.height == 1
    assert pieces[0].issues.schema == pl.Schema(ISSUE_SCHEMA)


def test_chunk_records_must_be_positive():
    with pytest.raises(ValueError):
        next(iter_xml(envelope("OrderAcknowledgement", ack("1")), None, LIMIT, 0))

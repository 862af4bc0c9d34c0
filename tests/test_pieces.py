"""Feeds applied in pieces (DESIGN §8): a file found broken after pieces were applied applies nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.pipeline import ProcessOptions, process_feeds
from orderfeeds.readers import iter_feed
from orderfeeds.readers import xml as xml_reader
from orderfeeds.snapshot import read_snapshot

CASE = Path(__file__).resolve().parent.parent / "samples" / "cases" / "public-order-adjustment-xml"
OPTIONS = ProcessOptions(as_of="2026-11-28T06:00:00+00:00", chunk_records=1)


@pytest.fixture
def small_xml_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    # The XML reader hands out pieces only between its chunks (thousands of messages): one message each here.
    monkeypatch.setattr(xml_reader, "CHUNK_MESSAGES", 1)


def broken_at_the_end(tmp_path: Path) -> Path:
    """The public adjustment sample with its closing tag cut off: every message is well formed, the
    document is not, and the reader finds out only after it has handed out every piece."""
    data = (CASE / "feed-1.xml").read_bytes()
    cut = data.rstrip().removesuffix(b"</AmazonEnvelope>")
    assert cut != data.rstrip()
    path = tmp_path / "broken.xml"
    path.write_bytes(cut)
    return path


def test_the_broken_feed_does_give_pieces_before_its_error(tmp_path: Path, small_xml_pieces: None):
    """The premise of the next test: pieces really are handed out before the error is found."""
    pieces = iter_feed(broken_at_the_end(tmp_path), chunk_records=1)
    assert next(pieces).frame.height >= 1
    with pytest.raises(FeedError) as raised:
        list(pieces)
    assert raised.value.name == "malformed-xml"


def test_a_feed_broken_after_pieces_were_applied_applies_nothing(tmp_path: Path, small_xml_pieces: None):
    """The error rejects the whole file with one malformed-xml line; the state after it is the
    snapshot, and the next feed of the call runs against that state exactly as if alone."""
    broken = broken_at_the_end(tmp_path)
    whole = CASE / "feed-1.xml"
    snapshot = CASE / "snapshot.tsv"
    run = process_feeds([broken, whole], snapshot, tmp_path / "out", OPTIONS, tmp_path / "after.tsv")
    fatal, applied = run.results
    assert fatal.fatal is not None and fatal.fatal.error == "malformed-xml"
    assert fatal.records.height == 0 and fatal.exit_code == 3
    alone = process_feeds([whole], snapshot, tmp_path / "alone", OPTIONS, tmp_path / "alone.tsv")
    assert_frame_equal(applied.rows, alone.results[0].rows)
    assert (tmp_path / "after.tsv").read_bytes() == (tmp_path / "alone.tsv").read_bytes()
    assert applied.count("Success") > 0  # the sample does change the state, so equality above means something


def test_only_the_broken_feed_is_undone(tmp_path: Path, small_xml_pieces: None):
    """Processed alone, the broken feed leaves the snapshot's lines exactly as they were."""
    snapshot = CASE / "snapshot.tsv"
    run = process_feeds([broken_at_the_end(tmp_path)], snapshot, tmp_path / "out", OPTIONS)
    assert_frame_equal(run.state.sort("order-id", "order-item-id"),
                       read_snapshot(snapshot).sort("order-id", "order-item-id"))


@pytest.mark.parametrize("chunk_records", [1, 2, 5])
def test_refund_totals_add_up_over_pieces(tmp_path: Path, small_xml_pieces: None, chunk_records: int):
    """The summary's refunded money is summed exactly across pieces: the same as the feed read whole."""
    snapshot = CASE / "snapshot.tsv"
    whole = process_feeds([CASE / "feed-1.xml"], snapshot, tmp_path / "a", replace(OPTIONS, chunk_records=0))
    pieces = process_feeds([CASE / "feed-1.xml"], snapshot, tmp_path / "b", replace(OPTIONS, chunk_records=chunk_records))
    assert whole.results[0].refunded
    assert pieces.results[0].refunded == whole.results[0].refunded
    assert pieces.results[0].rows.equals(whole.results[0].rows)
    assert_frame_equal(pieces.state.sort("order-id", "order-item-id"), whole.state.sort("order-id", "order-item-id"))


@pytest.mark.parametrize("chunk_records", [0, 1])
def test_money_of_an_adjustment_without_a_currency_is_totalled_in_its_lines_currency(
        tmp_path: Path, small_xml_pieces: None, chunk_records: int):
    """An XML adjustment may name no currency: its money moves in its line's currency, and the summary totals it
    there, read whole or in pieces (pieces with and without a named currency once could not be combined)."""
    snapshot = CASE / "snapshot.tsv"
    named = process_feeds([CASE / "feed-1.xml"], snapshot, tmp_path / "a", replace(OPTIONS, chunk_records=chunk_records))
    unnamed_feed = tmp_path / "feed-1.xml"
    unnamed_feed.write_bytes(re.sub(rb' currency="[A-Z]{3}"', b"", (CASE / "feed-1.xml").read_bytes()))
    assert b"currency=" not in unnamed_feed.read_bytes()
    unnamed = process_feeds([unnamed_feed], snapshot, tmp_path / "b", replace(OPTIONS, chunk_records=chunk_records))
    assert set(named.results[0].refunded) == {"EUR", "USD"}
    assert unnamed.results[0].refunded == named.results[0].refunded
    assert_frame_equal(unnamed.state.sort("order-id", "order-item-id"), named.state.sort("order-id", "order-item-id"))


def test_a_feed_is_read_in_pieces_of_its_formats_default(monkeypatch: pytest.MonkeyPatch, small_xml_pieces: None):
    """No piece size given: an XML feed is read XML_CHUNK_RECORDS records at a time, a flat one CHUNK_RECORDS."""
    import orderfeeds.readers as readers

    monkeypatch.setattr(readers, "XML_CHUNK_RECORDS", 2)
    monkeypatch.setattr(readers, "CHUNK_RECORDS", 3)
    xml_sizes = [piece.frame.height for piece in iter_feed(CASE / "feed-1.xml", chunk_records=None)]
    flat = sorted(Path(__file__).resolve().parent.parent.glob("samples/feeds/*.txt"))[0]
    flat_sizes = [piece.frame.height for piece in iter_feed(flat, chunk_records=None)]
    assert len(xml_sizes) > 1 and all(size >= 2 for size in xml_sizes[:-1]) and max(xml_sizes) < sum(xml_sizes)
    assert len(flat_sizes) > 1 and max(flat_sizes) <= 4
    assert [piece.frame.height for piece in iter_feed(CASE / "feed-1.xml", chunk_records=0)] == [sum(xml_sizes)]

"""Property tests: reading never crashes on any bytes, and the report always has one row per record, in order."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderfeeds.catalogue import BY_NAME
from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import CANCEL_REASONS, FLAT_ADJUSTMENT_FIELDS, FeedType
from orderfeeds.pipeline import ProcessOptions, process_feed
from orderfeeds.readers import RawFeed, read_feed
from orderfeeds.snapshot import read_snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "orders-snapshot.tsv"
OPTIONS = ProcessOptions(as_of="2026-11-28T00:00:00+00:00")
TEMPLATE = "TemplateType=OrderCancellation\tVersion=1.0/1.0.3\tThis row for Amazon.com use only.  Do not modify or delete."
HEADER = "order-id\tcancellation-reason-code\tamazon-order-item-code"
STATUSES = {"Success", "Warning", "Error"}

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=1)
def sample_state() -> pl.DataFrame:
    """The sample order state, read once (hypothesis does not mix with function-scoped fixtures)."""
    return read_snapshot(SAMPLE)


# ---------------------------------------------------------------- (1) any bytes

# Prefixes that get random bytes past type detection, into the header and record code.
PREFIXES = [
    b"",
    (HEADER + "\n").encode(),
    (TEMPLATE + "\r\n" + HEADER + "\r\n").encode(),
    b"\xef\xbb\xbf" + (HEADER + "\n").encode(),
    ("\t".join(f.name for f in FLAT_ADJUSTMENT_FIELDS) + "\n").encode(),
    b"TemplateType=OrderCancellation\n",
    b"<?xml version='1.0'?>",
]

# Text made of the characters that matter to a flat reader, so structure appears often.
FLAT_CHARS = st.sampled_from(["\t", "\n", "\r\n", "\r", " ", '"', "\ufeff", "ü", "€", "\x00", "-", "1", "a",
                              "111-2223334-4445550", "20000000000001", "NoInventory", "order-id",
                              "cancellation-reason-code", "amazon-order-item-code", "TemplateType="])
flat_text = st.lists(FLAT_CHARS, max_size=40).map("".join)

any_bytes = st.one_of(
    st.binary(max_size=600),
    st.tuples(st.sampled_from(PREFIXES), st.binary(max_size=400)).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from(PREFIXES), flat_text, st.sampled_from(["utf-8", "cp1252", "utf-16"])).map(
        lambda t: t[0] + t[1].encode(t[2], errors="ignore")),
)


@PROPERTY_SETTINGS
@given(data=any_bytes)
def test_read_feed_returns_a_feed_or_a_catalogued_feed_error(data):
    """For any bytes, read_feed returns a RawFeed or raises FeedError with a catalogue name — nothing else."""
    try:
        raw = read_feed(data)
    except FeedError as exc:
        assert exc.name in BY_NAME
        assert BY_NAME[exc.name].fatal
        assert exc.message
        return
    assert isinstance(raw, RawFeed)
    assert raw.feed_type in (FeedType.FLAT_CANCELLATION, FeedType.FLAT_ADJUSTMENT)
    assert raw.frame.get_column("record").to_list() == list(range(1, raw.frame.height + 1))
    assert all(note.error in BY_NAME for note in raw.notes)


@PROPERTY_SETTINGS
@given(data=any_bytes)
def test_process_feed_never_raises(data):
    """For any bytes, process_feed finishes with a result whose rows all carry a status and catalogued errors."""
    result, after = process_feed(data, "f.txt", sample_state(), OPTIONS)
    rows = result.rows
    assert set(rows.get_column("status").to_list()) <= STATUSES
    named = rows.filter(pl.col("error-name").is_not_null())
    assert all(name in BY_NAME for name in named.get_column("error-name").to_list())
    assert named.get_column("error-code").null_count() == 0
    if result.fatal is not None:
        assert rows.height == 1 and result.records.height == 0
        assert after.equals(sample_state())


# ---------------------------------------------------------------- (2) generated cancellation feeds


@lru_cache(maxsize=1)
def known_keys() -> tuple[tuple[str, str], ...]:
    """(order-id, order-item-id) of every sample line."""
    return tuple(sample_state().select("order-id", "order-item-id").rows())


ORDER_IDS = [key[0] for key in known_keys()]
ITEM_CODES = [key[1] for key in known_keys()]

# Valid values are drawn three times as often as broken ones, so the rules see plenty of records.
order_id = st.one_of(
    st.sampled_from(ORDER_IDS), st.sampled_from(ORDER_IDS), st.sampled_from(ORDER_IDS),
    st.sampled_from(["111-2223334-4445599", "1112223334-4445550", "bad", "", "  ", " 111-2223334-4445550 "]),
)
item_code = st.one_of(st.sampled_from(ITEM_CODES), st.sampled_from(["", "20000000000099", "123", " 20000000000001"]))
reason = st.one_of(st.sampled_from(CANCEL_REASONS), st.sampled_from(CANCEL_REASONS), st.sampled_from(CANCEL_REASONS),
                   st.sampled_from(["", "OutOfStock", "buyercanceled", '"NoInventory"']))


@st.composite
def record_line(draw) -> str:
    """One data line: a (possibly ragged) row, with the order's own item code more often than not."""
    order = draw(order_id)
    own_items = [item for o, item in known_keys() if o == order.strip()]
    item = draw(st.one_of(st.sampled_from(own_items), item_code) if own_items else item_code)
    fields = [order, draw(reason), item]
    shape = draw(st.sampled_from(["ok", "ok", "ok", "ok", "short", "long", "whole-order"]))
    if shape == "short":
        fields = fields[: draw(st.integers(1, 2))]
    elif shape == "long":
        fields = fields + [draw(st.sampled_from(["", "x", ITEM_CODES[0]]))]
    elif shape == "whole-order":
        fields = [order, "", ""]
    return "\t".join(fields)


@st.composite
def cancellation_feed(draw) -> tuple[bytes, list[str]]:
    """A cancellation feed and its physical lines: random records, blank lines, template and line endings."""
    body = draw(st.lists(st.one_of(record_line(), record_line(), st.sampled_from(["", "  ", "\t\t"])),
                         min_size=0, max_size=30))
    lines = ([TEMPLATE] if draw(st.booleans()) else []) + [HEADER] + body
    end = draw(st.sampled_from(["\n", "\r\n"]))
    final = draw(st.booleans())
    return (end.join(lines) + (end if final else "")).encode(), lines


@PROPERTY_SETTINGS
@given(generated=cancellation_feed())
def test_report_has_one_row_per_record_in_input_order(generated):
    """Every non-blank data line is exactly one report row, numbered 1..n in file order, on its own line."""
    data, lines = generated
    header_line = lines.index(HEADER) + 1
    expected = [(number, text) for number, text in enumerate(lines, start=1)
                if number > header_line and text.strip(" \t")]
    result, _ = process_feed(data, "f.txt", sample_state(), OPTIONS)
    assert result.fatal is None
    records = result.records
    assert result.rows.height == records.height  # no record-0 notes for this header
    assert records.get_column("original-record-number").to_list() == list(range(1, len(expected) + 1))
    assert records.get_column("line").to_list() == [number for number, _ in expected]
    given_ids = [text.split("\t")[0].strip(" ") or None for _, text in expected]
    assert records.get_column("order-id").to_list() == given_ids
    ragged = [len(text.split("\t")) != 3 for _, text in expected]
    assert [name == "ragged-row" for name in records.get_column("error-name").to_list()] == ragged


@PROPERTY_SETTINGS
@given(generated=cancellation_feed())
def test_statuses_and_codes_come_from_the_catalogue(generated):
    """Each row is Success (no code), or Warning/Error with the catalogue's code and severity for its name."""
    data, _ = generated
    result, _ = process_feed(data, "f.txt", sample_state(), OPTIONS)
    for row in result.records.iter_rows(named=True):
        assert row["status"] in STATUSES
        if row["status"] == "Success":
            assert row["error-code"] is None and row["error-name"] is None
        else:
            entry = BY_NAME[row["error-name"]]
            assert row["error-code"] == entry.code
            assert row["status"] == entry.severity.value
            assert not entry.fatal
            assert row["error-message"]


@PROPERTY_SETTINGS
@given(generated=cancellation_feed())
def test_applied_records_name_known_orders_and_never_apply_twice(generated):
    """Only records of orders in the state are applied, and no line or order is cancelled twice in one feed."""
    data, _ = generated
    result, after = process_feed(data, "f.txt", sample_state(), OPTIONS)
    applied = result.records.filter(pl.col("status") != "Error")
    assert set(applied.get_column("order-id").to_list()) <= set(ORDER_IDS)
    keys = applied.select("order-id", "order-item-id")
    assert keys.height == keys.unique().height
    # Cancelling only ever adds cancelled units, within what was ordered.
    joined = after.join(sample_state(), on=["order-id", "order-item-id"], suffix="_before")
    assert (joined.get_column("quantity-cancelled") >= joined.get_column("quantity-cancelled_before")).all()
    assert (joined.get_column("quantity-cancelled") + joined.get_column("quantity-shipped")
            <= joined.get_column("quantity-ordered")).all()

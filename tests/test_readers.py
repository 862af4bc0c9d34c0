"""Flat feed reading (SPEC §2, §2.1, §2.2): type detection, decoding, lines, header, ragged rows.

Most tests call `read_feed` directly; where the report is what matters (record numbers,
lines, codes), they go through `process_feed` against the sample snapshot.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FLAT_ADJUSTMENT_FIELDS, FeedType
from orderfeeds.pipeline import ProcessOptions, process_feed
from orderfeeds.readers import RawFeed, read_feed
from orderfeeds.snapshot import read_snapshot

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
AS_OF = "2026-11-28T00:00:00+00:00"

TEMPLATE = "TemplateType=OrderCancellation\tVersion=1.0/1.0.3\tThis row for Amazon.com use only.  Do not modify or delete."
HEADER = "order-id\tcancellation-reason-code\tamazon-order-item-code"
ADJUSTMENT_HEADER = "\t".join(f.name for f in FLAT_ADJUSTMENT_FIELDS)

# Orders of samples/orders-snapshot.tsv and what cancelling them gives.
OPEN_ORDER, OPEN_ITEM = "111-2223334-4445550", "20000000000001"            # Unshipped MFN: Success
SHIPPED_ORDER, SHIPPED_ITEM = "111-2223334-4445551", "20000000000002"      # Shipped: already-shipped
REQUESTED_ORDER, REQUESTED_ITEM = "111-2223334-4445558", "20000000000010"  # buyer asked: Success
LABEL_ORDER = "111-2223334-4445556"                                        # label bought
UNKNOWN_ORDER = "111-2223334-4445599"


def feed_bytes(*lines: str, end: str = "\n", final: bool = True, encoding: str = "utf-8") -> bytes:
    """Join lines with `end` (and a final `end` unless final=False), encoded."""
    return (end.join(lines) + (end if final else "")).encode(encoding)


def fields(raw: RawFeed, *columns: str) -> list[tuple]:
    """The given columns of the raw records, as row tuples."""
    return raw.frame.select(columns).rows()


def fatal_name(data: bytes, **kwargs) -> str:
    """The catalogue name of the FeedError that read_feed raises for `data`."""
    with pytest.raises(FeedError) as caught:
        read_feed(data, **kwargs)
    return caught.value.name


def issue_rows(raw: RawFeed) -> list[tuple]:
    """(record, error) of every reader issue, in record order."""
    return (raw.issues.join(raw.frame.select("seq", "record"), on="seq")
            .sort("record").select("record", "error").rows())


@pytest.fixture(scope="module")
def sample_state() -> pl.DataFrame:
    """The order state of samples/orders-snapshot.tsv."""
    return read_snapshot(SAMPLES / "orders-snapshot.tsv")


@pytest.fixture
def process(sample_state: pl.DataFrame):
    """Run one feed's bytes through process_feed against the sample state; returns (result, state after)."""

    def run(data: bytes, name: str = "feed.txt", **options):
        return process_feed(data, name, sample_state, ProcessOptions(as_of=AS_OF, **options))

    return run


def report(result) -> list[tuple]:
    """(record, line, order-id, status, error-name) of every report row, record-0 notes included."""
    return result.rows.select("original-record-number", "line", "order-id", "status", "error-name").rows()


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([HEADER], FeedType.FLAT_CANCELLATION),
        ([TEMPLATE, HEADER], FeedType.FLAT_CANCELLATION),
        (["order-id\tcancellation-reason-code"], FeedType.FLAT_CANCELLATION),
        ([HEADER + "\tmerchant-order-id"], FeedType.FLAT_CANCELLATION),
        ([ADJUSTMENT_HEADER], FeedType.FLAT_ADJUSTMENT),
        (["TemplateType=OrderAdjustment\tVersion=1.0", ADJUSTMENT_HEADER], FeedType.FLAT_ADJUSTMENT),
    ],
    ids=["header", "template+header", "two-columns", "old-4-column", "adjustment", "adjustment-template"],
)
def test_feed_type_is_detected_from_header(lines, expected):
    """The header's column names (with or without a template line) decide the feed type."""
    assert read_feed(feed_bytes(*lines)).feed_type is expected


def test_feed_type_is_not_taken_from_the_file_name(process):
    """A cancellation file named like something else is still read as a cancellation feed."""
    data = feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}")
    result, _ = process(data, name="adjustments.xml")
    assert result.feed_type is FeedType.FLAT_CANCELLATION
    assert report(result) == [(1, 2, OPEN_ORDER, "Success", None)]


def test_template_line_names_the_type_when_the_header_is_broken():
    """With a cancellation template line, a header lacking its reason column is missing-column, not unknown."""
    with pytest.raises(FeedError) as caught:
        read_feed(feed_bytes(TEMPLATE, "order-id\tamazon-order-item-code", f"{OPEN_ORDER}\t{OPEN_ITEM}"))
    assert caught.value.name == "missing-column"
    assert "cancellation-reason-code" in caught.value.message
    assert caught.value.line == 2


def test_template_line_is_not_a_record():
    """The template line is skipped: records count from the line after the header, lines count physically."""
    raw = read_feed(feed_bytes(TEMPLATE, HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}"))
    assert fields(raw, "record", "line", "order-id") == [(1, 3, OPEN_ORDER)]


def test_feed_type_override_replaces_detection():
    """`feed_type` wins over detection: an adjustment-looking header read as a cancellation feed."""
    data = feed_bytes(ADJUSTMENT_HEADER + "\tcancellation-reason-code",
                      "\t".join([OPEN_ORDER, OPEN_ITEM, "NoInventory"] + [""] * (len(FLAT_ADJUSTMENT_FIELDS) - 3)
                                + ["NoInventory"]))
    assert read_feed(data).feed_type is FeedType.FLAT_ADJUSTMENT
    raw = read_feed(data, feed_type=FeedType.FLAT_CANCELLATION)
    assert raw.feed_type is FeedType.FLAT_CANCELLATION
    assert fields(raw, "order-id", "cancellation-reason-code") == [(OPEN_ORDER, "NoInventory")]
    # Every adjustment column but order-id is unknown to a cancellation feed.
    assert {n.error for n in raw.notes} == {"unknown-column"}
    assert len(raw.notes) == len(FLAT_ADJUSTMENT_FIELDS) - 1


def test_feed_type_override_reports_the_missing_columns_of_the_forced_type():
    """Forcing the adjustment type on a cancellation file rejects it naming the adjustment columns it lacks."""
    with pytest.raises(FeedError) as caught:
        read_feed(feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}"), feed_type=FeedType.FLAT_ADJUSTMENT)
    assert caught.value.name == "missing-column"
    assert "adjustment-reason-code" in caught.value.message


def test_feed_type_override_turns_unknown_header_into_missing_column():
    """A header no type matches is unknown-feed-type; with --feed-type it is missing-column for that type."""
    data = feed_bytes("order-id\treason", f"{OPEN_ORDER}\tNoInventory")
    assert fatal_name(data) == "unknown-feed-type"
    assert fatal_name(data, feed_type=FeedType.FLAT_CANCELLATION) == "missing-column"


def test_feed_type_override_to_xml_type_rejects_a_flat_file():
    """Forcing an XML feed type onto a flat file rejects it whole as unknown-feed-type."""
    assert fatal_name(feed_bytes(HEADER), feed_type=FeedType.XML_ACKNOWLEDGEMENT) == "unknown-feed-type"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n \t\n",
        b"hello\tworld\nfoo\tbar\n",
        b"Order-Id\tCancellation-Reason-Code\n111-2223334-4445550\tNoInventory\n",
        b"order-id,cancellation-reason-code,amazon-order-item-code\n111-2223334-4445550,NoInventory,20000000000001\n",
        b"TemplateType=Inventory\tVersion=2\nsku\tprice\tquantity\n",
        b"\xef\xbb\xbf",
    ],
    ids=["empty", "blank-lines", "junk", "header-wrong-case", "comma-separated", "other-template", "bom-only"],
)
def test_unknown_content_is_unknown_feed_type(data):
    """Content that matches no feed type (header names are case-sensitive) is rejected as unknown-feed-type."""
    assert fatal_name(data) == "unknown-feed-type"


def test_unknown_feed_is_one_fatal_record0_line_and_changes_nothing(process, sample_state):
    """Through the pipeline an unknown feed gives a single record-0 line and leaves the state as it was."""
    result, after = process(b"hello\tworld\n")
    assert report(result) == [(0, 1, None, "Error", "unknown-feed-type")]
    assert result.rows.get_column("error-code").to_list() == [90010]
    assert result.records.height == 0
    assert_frame_equal(after, sample_state)


def test_feed_too_large_is_rejected_whole():
    """A file over max_bytes is feed-too-large before anything else is looked at."""
    data = feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}")
    assert fatal_name(data, max_bytes=len(data) - 1) == "feed-too-large"
    assert read_feed(data, max_bytes=len(data)).frame.height == 1


# ---------------------------------------------------------------- encoding


def test_utf8_with_and_without_bom_read_the_same():
    """A UTF-8 BOM is stripped: header and values come out the same as without it."""
    lines = (TEMPLATE, HEADER + "\tmerchant-order-id", f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\tMüller-€1")
    plain = read_feed(feed_bytes(*lines))
    with_bom = read_feed(b"\xef\xbb\xbf" + feed_bytes(*lines))
    assert_frame_equal(plain.frame, with_bom.frame)
    assert with_bom.notes == ()
    assert fields(with_bom, "merchant-order-id") == [("Müller-€1",)]


def test_bom_before_header_without_template_is_not_part_of_the_first_column_name():
    """With no template line the BOM sits before `order-id`; the column is still found."""
    raw = read_feed(b"\xef\xbb\xbf" + feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}"))
    assert raw.notes == ()
    assert fields(raw, "order-id") == [(OPEN_ORDER,)]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("Müller", "cp1252"), ("€ 5 – Grüße", "cp1252"), ("ヤマダ商店", "cp932")],
    ids=["umlaut-cp1252", "euro-dash-cp1252", "katakana-cp932"],
)
def test_fallback_encoding_is_used_when_utf8_fails(text, encoding):
    """Bytes that are not UTF-8 are read in the fallback encoding (cp1252 by default; --encoding chooses)."""
    data = feed_bytes(HEADER + "\tmerchant-order-id", f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\t{text}",
                      encoding=encoding)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    kwargs = {} if encoding == "cp1252" else {"encoding": encoding}
    assert fields(read_feed(data, **kwargs), "merchant-order-id") == [(text,)]


def test_valid_utf8_is_not_read_as_cp1252():
    """UTF-8 is tried first: 'Müller' in UTF-8 is not turned into 'MÃ¼ller'."""
    data = feed_bytes(HEADER + "\tmerchant-order-id", f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\tMüller")
    assert fields(read_feed(data), "merchant-order-id") == [("Müller",)]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (HEADER.encode() + b"\nM\x81ller\tNoInventory\t\n", "cp1252"),
        (HEADER.encode() + b"\n111\x8d\tNoInventory\t\n", "cp1252"),
        (b"\xef\xbb\xbf" + HEADER.encode() + b"\nM\xfcller\tNoInventory\t\n", "cp1252"),
        (HEADER.encode() + b"\nA\x82\tNoInventory\t\n", "cp932"),
        (HEADER.encode() + b"\nM\xfcller\tNoInventory\t\n", "no-such-encoding"),
    ],
    ids=["cp1252-undefined-0x81", "cp1252-undefined-0x8d", "bom-then-not-utf8", "cp932-broken", "unknown-fallback"],
)
def test_undecodable_bytes_are_encoding_error(data, encoding):
    """Bytes undecodable in UTF-8 and in the fallback reject the file; nothing is replaced silently."""
    with pytest.raises(FeedError) as caught:
        read_feed(data, encoding=encoding)
    assert caught.value.name == "encoding-error"
    assert "line 2" in caught.value.message


def test_encoding_error_through_the_pipeline_is_fatal(process, sample_state):
    """An undecodable file gives one record-0 encoding-error line (90012) and no state change."""
    result, after = process(HEADER.encode() + b"\n" + OPEN_ORDER.encode() + b"\t\x81\t\n")
    assert result.rows.select("original-record-number", "status", "error-name", "error-code").rows() == [
        (0, "Error", "encoding-error", 90012)]
    assert "0x81 on line 2" in result.rows.get_column("error-message")[0]
    assert_frame_equal(after, sample_state)


# ---------------------------------------------------------------- lines


RECORD_LINES = (
    TEMPLATE,
    HEADER,
    f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}",
    f"{SHIPPED_ORDER}\t\t",
    f"{UNKNOWN_ORDER}\tBuyerCanceled\t20000000000099",
)


@pytest.mark.parametrize(
    ("end", "final"),
    [("\r\n", True), ("\n", False), ("\r\n", False)],
    ids=["crlf", "lf-no-final-newline", "crlf-no-final-newline"],
)
def test_line_endings_read_the_same(end, final):
    """CRLF, LF and a missing final newline give identical records, lines and issues."""
    reference = read_feed(feed_bytes(*RECORD_LINES))
    other = read_feed(feed_bytes(*RECORD_LINES, end=end, final=final))
    assert_frame_equal(other.frame, reference.frame)
    assert_frame_equal(other.issues, reference.issues)
    assert fields(other, "cancellation-reason-code", "amazon-order-item-code")[1] == (None, None)


def test_mixed_line_endings_read_the_same():
    """A file with some CRLF and some LF lines reads like an all-LF file."""
    mixed = (TEMPLATE + "\r\n" + HEADER + "\n" + RECORD_LINES[2] + "\r\n" + RECORD_LINES[3] + "\n"
             + RECORD_LINES[4]).encode()
    assert_frame_equal(read_feed(mixed).frame, read_feed(feed_bytes(*RECORD_LINES)).frame)


def test_blank_lines_are_skipped_but_counted_for_line():
    """Blank lines (also of spaces and tabs) are not records, but `line` stays the physical line number."""
    data = feed_bytes(
        "",                                              # 1
        TEMPLATE,                                        # 2
        "",                                              # 3
        HEADER,                                          # 4
        f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}",       # 5
        "",                                              # 6
        " \t \t",                                        # 7
        f"{SHIPPED_ORDER}\t\t",                          # 8
        "   ",                                           # 9
        f"{UNKNOWN_ORDER}\t\t",                          # 10
        "",                                              # 11
        end="\r\n",
    )
    raw = read_feed(data)
    assert fields(raw, "record", "line", "order-id") == [
        (1, 5, OPEN_ORDER), (2, 8, SHIPPED_ORDER), (3, 10, UNKNOWN_ORDER)]
    assert raw.issues.height == 0


def test_blank_lines_keep_report_lines_right(process):
    """In the report, records after blank lines carry their physical line and consecutive record numbers."""
    data = feed_bytes(TEMPLATE, HEADER, "", f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}", "", "",
                      f"{SHIPPED_ORDER}\tNoInventory\t{SHIPPED_ITEM}")
    result, _ = process(data)
    assert report(result) == [(1, 4, OPEN_ORDER, "Success", None),
                              (2, 7, SHIPPED_ORDER, "Error", "already-shipped")]


# ---------------------------------------------------------------- header


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["order-id", "cancellation-reason-code", "amazon-order-item-code"])),
    ids=lambda order: "/".join(name.split("-")[0] for name in order),
)
def test_columns_are_found_by_name_in_any_order(order):
    """Whatever the column order, each value lands in the column its header names."""
    values = {"order-id": OPEN_ORDER, "cancellation-reason-code": "NoInventory", "amazon-order-item-code": OPEN_ITEM}
    raw = read_feed(feed_bytes("\t".join(order), "\t".join(values[name] for name in order)))
    assert raw.feed_type is FeedType.FLAT_CANCELLATION
    assert fields(raw, "order-id", "cancellation-reason-code", "amazon-order-item-code") == [
        (OPEN_ORDER, "NoInventory", OPEN_ITEM)]
    assert raw.column_order == order


def test_reordered_columns_give_the_same_report(process):
    """A feed with its columns reordered gives the same report rows as the usual order."""
    usual = feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}", f"{SHIPPED_ORDER}\tNoInventory\t{SHIPPED_ITEM}")
    swapped = feed_bytes("amazon-order-item-code\torder-id\tcancellation-reason-code",
                         f"{OPEN_ITEM}\t{OPEN_ORDER}\tNoInventory", f"{SHIPPED_ITEM}\t{SHIPPED_ORDER}\tNoInventory")
    assert_frame_equal(process(swapped)[0].rows, process(usual)[0].rows)


def test_item_code_column_is_optional():
    """A cancellation header without amazon-order-item-code is fine: the item is blank (whole order)."""
    raw = read_feed(feed_bytes("order-id\tcancellation-reason-code", f"{OPEN_ORDER}\t"))
    assert fields(raw, "order-id", "amazon-order-item-code") == [(OPEN_ORDER, None)]
    assert raw.notes == ()


@pytest.mark.parametrize(
    ("lines", "missing", "line"),
    [
        ([TEMPLATE, "order-id\tamazon-order-item-code"], "cancellation-reason-code", 2),
        ([TEMPLATE, "cancellation-reason-code\tamazon-order-item-code"], "order-id", 2),
        (["", TEMPLATE, "", "merchant-order-id\tcancellation-reason-code"], "order-id", 4),
    ],
    ids=["no-reason", "no-order-id", "no-order-id-after-blank-lines"],
)
def test_missing_required_column_is_missing_column(lines, missing, line):
    """A header lacking a required column rejects the file (missing-column), naming the column and header line."""
    with pytest.raises(FeedError) as caught:
        read_feed(feed_bytes(*lines, f"{OPEN_ORDER}\t{OPEN_ITEM}"))
    assert caught.value.name == "missing-column"
    assert missing in caught.value.message
    assert caught.value.line == line


def test_template_without_header_is_missing_column():
    """A template line and nothing else cannot be read: missing-column."""
    assert fatal_name(feed_bytes(TEMPLATE, "")) == "missing-column"


def test_missing_column_through_the_pipeline_is_fatal(process, sample_state):
    """missing-column gives one record-0 line on the header's line; nothing is applied."""
    result, after = process(feed_bytes(TEMPLATE, "order-id\tamazon-order-item-code", f"{OPEN_ORDER}\t{OPEN_ITEM}"))
    assert report(result) == [(0, 2, None, "Error", "missing-column")]
    assert result.rows.get_column("error-code").to_list() == [90011]
    assert_frame_equal(after, sample_state)


def test_extra_columns_are_ignored_with_a_record0_note(process):
    """Unknown columns: one record-0 unknown-column Warning per column, on the header line; records unaffected."""
    data = feed_bytes(TEMPLATE, "comment\t" + HEADER + "\tsku",
                      f"please\t{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\tSKU-1")
    result, _ = process(data)
    assert report(result) == [
        (0, 2, None, "Warning", "unknown-column"),
        (0, 2, None, "Warning", "unknown-column"),
        (1, 3, OPEN_ORDER, "Success", None),
    ]
    notes = result.rows.filter(pl.col("original-record-number") == 0)
    assert notes.get_column("error-code").to_list() == [90016, 90016]
    messages = notes.get_column("error-message").to_list()
    assert "'comment'" in messages[0] and "'sku'" in messages[1]
    assert result.records.height == 1


def test_repeated_column_is_noted_and_only_the_first_read():
    """A column named twice: the first is read, the repeat gets an unknown-column note."""
    raw = read_feed(feed_bytes(HEADER + "\torder-id", f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\t{SHIPPED_ORDER}"))
    assert fields(raw, "order-id") == [(OPEN_ORDER,)]
    assert [n.error for n in raw.notes] == ["unknown-column"]


# ---------------------------------------------------------------- ragged rows


def test_ragged_rows_are_issues_with_their_record():
    """Rows with fewer or more fields than the header are ragged-row issues of exactly those records."""
    data = feed_bytes(
        TEMPLATE, HEADER,
        f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}",        # 1 ok
        f"{OPEN_ORDER}\tNoInventory",                      # 2 short
        f"{OPEN_ORDER}\t\tNoInventory\t{OPEN_ITEM}",      # 3 long
        f"{SHIPPED_ORDER}\t\t",                            # 4 ok
        f"{SHIPPED_ORDER}",                                # 5 short (one field)
    )
    raw = read_feed(data)
    assert issue_rows(raw) == [(2, "ragged-row"), (3, "ragged-row"), (5, "ragged-row")]
    messages = raw.issues.sort("seq").get_column("message").to_list()
    assert "2 fields" in messages[0] and "header has 3" in messages[0]
    assert "4 fields" in messages[1]


def test_ragged_rows_are_not_shifted(process, sample_state):
    """A ragged row is reported on its own line and not applied; the rows after it keep their own values."""
    data = feed_bytes(
        TEMPLATE, HEADER,
        f"{OPEN_ORDER}\t\tNoInventory\t{OPEN_ITEM}",                  # line 3: extra tab
        f"{REQUESTED_ORDER}\tBuyerCanceled",                           # line 4: missing field
        "",                                                            # line 5
        f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}",                    # line 6
        f"{REQUESTED_ORDER}\tBuyerCanceled\t{REQUESTED_ITEM}",        # line 7
    )
    result, after = process(data)
    assert report(result) == [
        (1, 3, OPEN_ORDER, "Error", "ragged-row"),
        (2, 4, REQUESTED_ORDER, "Error", "ragged-row"),
        (3, 6, OPEN_ORDER, "Success", None),
        (4, 7, REQUESTED_ORDER, "Success", None),
    ]
    assert result.records.get_column("error-code").to_list() == [90102, 90102, None, None]
    # Only records 3 and 4 were applied: each cancelled its line once.
    changed = after.join(sample_state, on=["order-id", "order-item-id"], suffix="_before").filter(
        pl.col("quantity-cancelled") != pl.col("quantity-cancelled_before"))
    assert changed.select("order-id", "quantity-cancelled").sort("order-id").rows() == [
        (OPEN_ORDER, 1), (REQUESTED_ORDER, 2)]


def test_trailing_empty_field_missing_is_ragged():
    """A row that drops its trailing empty field has one tab too few: ragged-row, not a blank item code."""
    raw = read_feed(feed_bytes(HEADER, f"{OPEN_ORDER}\t"))
    assert issue_rows(raw) == [(1, "ragged-row")]


# ---------------------------------------------------------------- values


def test_values_and_header_names_are_trimmed_of_spaces(process):
    """Spaces around header names and values are dropped; a value of only spaces is blank."""
    data = feed_bytes(" order-id \t cancellation-reason-code\tamazon-order-item-code  ",
                      f"  {OPEN_ORDER} \t NoInventory  \t {OPEN_ITEM}",
                      f" {REQUESTED_ORDER}\t   \t   ")
    raw = read_feed(data)
    assert raw.notes == ()
    assert fields(raw, "order-id", "cancellation-reason-code", "amazon-order-item-code") == [
        (OPEN_ORDER, "NoInventory", OPEN_ITEM), (REQUESTED_ORDER, None, None)]
    result, _ = process(data)
    assert report(result) == [(1, 2, OPEN_ORDER, "Success", None), (2, 3, REQUESTED_ORDER, "Success", None)]


def test_double_quote_is_data():
    """A `"` is an ordinary character: kept in the value, never joining fields or lines."""
    data = feed_bytes(
        HEADER + "\tmerchant-order-id",
        f'"{OPEN_ORDER}"\tNoInventory\t{OPEN_ITEM}\t"quoted"',
        f'{OPEN_ORDER}\t"NoInventory\t{OPEN_ITEM}"\tsay "hi',
        f'{SHIPPED_ORDER}\tNoInventory\t{SHIPPED_ITEM}\t"',
    )
    raw = read_feed(data)
    assert fields(raw, "record", "line", "order-id", "cancellation-reason-code", "amazon-order-item-code",
                  "merchant-order-id") == [
        (1, 2, f'"{OPEN_ORDER}"', "NoInventory", OPEN_ITEM, '"quoted"'),
        (2, 3, OPEN_ORDER, '"NoInventory', f'{OPEN_ITEM}"', 'say "hi'),
        (3, 4, SHIPPED_ORDER, "NoInventory", SHIPPED_ITEM, '"'),
    ]
    assert raw.issues.height == 0


def test_quoted_values_are_checked_as_given(process):
    """A quoted order id is not unquoted: it is an invalid-field naming the value with its quotes."""
    result, _ = process(feed_bytes(HEADER, f'"{OPEN_ORDER}"\tNoInventory\t{OPEN_ITEM}'))
    assert report(result) == [(1, 2, f'"{OPEN_ORDER}"', "Error", "invalid-field")]
    assert f"'\"{OPEN_ORDER}\"'" in result.records.get_column("error-message")[0]


def test_incomplete_row_when_only_reason_or_item_given(process):
    """Reason and item code go together (SPEC §2.2): only one of them is incomplete-row; neither cancels the order."""
    data = feed_bytes(HEADER, f"{OPEN_ORDER}\tNoInventory\t", f"{OPEN_ORDER}\t\t{OPEN_ITEM}",
                      f"{REQUESTED_ORDER}\t\t")
    result, _ = process(data)
    assert report(result) == [
        (1, 2, OPEN_ORDER, "Error", "incomplete-row"),
        (2, 3, OPEN_ORDER, "Error", "incomplete-row"),
        (3, 4, REQUESTED_ORDER, "Success", None),
    ]


# ---------------------------------------------------------------- acceptance: saved from Excel

EXCEL_LINES = (
    TEMPLATE,
    "order-id\tcancellation-reason-code\tamazon-order-item-code\tmerchant-order-id\tBemerkung",
    f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\tMüller-0001\tKunde Müller – bitte stornieren",
    f"{SHIPPED_ORDER}\tBuyerCanceled\t{SHIPPED_ITEM}\tMüller-0002\t€ 59,98 erstattet",
    "",
    f"{REQUESTED_ORDER}\tBuyerCanceled\t{REQUESTED_ITEM}\tSchäfer-1\t",
    f"{UNKNOWN_ORDER}\tNoInventory\t20000000000099\tÖzil\t",
    f"Müller-4445550\tNoInventory\t{OPEN_ITEM}\t\t",
    f"{LABEL_ORDER}\t\t\tGrüße\t\"Grüße\"",
    f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}\tMüller-0001",
)


@pytest.fixture
def excel_feed() -> bytes:
    """A cancellation feed as Excel saves it: Windows-1252, no BOM, template line, CRLF, non-ASCII text."""
    return feed_bytes(*EXCEL_LINES, end="\r\n", encoding="cp1252")


@pytest.fixture
def utf8_twin() -> bytes:
    """The same feed as UTF-8 with LF endings."""
    return feed_bytes(*EXCEL_LINES)


def test_excel_feed_really_is_cp1252_crlf_without_bom(excel_feed):
    """Guard for the acceptance test: the Excel bytes are not UTF-8, have no BOM, and use CRLF."""
    with pytest.raises(UnicodeDecodeError):
        excel_feed.decode("utf-8")
    assert not excel_feed.startswith(b"\xef\xbb\xbf")
    assert excel_feed.startswith(b"TemplateType=")
    assert excel_feed.count(b"\r\n") == len(EXCEL_LINES)
    assert b"\x80" in excel_feed and b"\xfc" in excel_feed


def test_excel_saved_feed_reports_like_its_utf8_twin(process, excel_feed, utf8_twin):
    """Acceptance: the cp1252/CRLF Excel file gives exactly the report rows and state of its UTF-8/LF twin."""
    excel, excel_state = process(excel_feed, name="excel.txt")
    twin, twin_state = process(utf8_twin, name="excel.txt")
    assert excel.fatal is None and twin.fatal is None
    assert_frame_equal(excel.rows, twin.rows)
    assert_frame_equal(excel_state, twin_state)
    assert report(excel) == [
        (0, 2, None, "Warning", "unknown-column"),
        (1, 3, OPEN_ORDER, "Success", None),
        (2, 4, SHIPPED_ORDER, "Error", "already-shipped"),
        (3, 6, REQUESTED_ORDER, "Success", None),
        (4, 7, UNKNOWN_ORDER, "Error", "order-not-found"),
        (5, 8, "Müller-4445550", "Error", "invalid-field"),
        (6, 9, LABEL_ORDER, "Error", "label-purchased"),
        (7, 10, OPEN_ORDER, "Error", "ragged-row"),
    ]
    assert "'Müller-4445550'" in excel.records.get_column("error-message")[4]
    assert "'Bemerkung'" in excel.rows.get_column("error-message")[0]


def test_excel_feed_values_decode_to_the_same_text(excel_feed, utf8_twin):
    """The raw records of the Excel file and of its twin are identical, non-ASCII text included."""
    excel, twin = read_feed(excel_feed), read_feed(utf8_twin)
    assert_frame_equal(excel.frame, twin.frame)
    assert_frame_equal(excel.issues, twin.issues)
    assert excel.notes == twin.notes
    assert fields(excel, "merchant-order-id")[:3] == [("Müller-0001",), ("Müller-0002",), ("Schäfer-1",)]


# ---------------------------------------------------------------- the fast path for regular feeds

_CANCEL = (HEADER, f"{OPEN_ORDER}\tNoInventory\t{OPEN_ITEM}", f" {SHIPPED_ORDER} \tCustomerReturn\t",
           f"{REQUESTED_ORDER}\tBuyerCanceled\t{REQUESTED_ITEM}")
_FEEDS = {
    "sample-adjustment": (SAMPLES / "feeds" / "order-adjustment.txt").read_bytes(),
    "sample-cancellation": (SAMPLES / "feeds" / "order-cancellation.txt").read_bytes(),
    "template-crlf": feed_bytes(TEMPLATE, *_CANCEL, end="\r\n"),
    "leading-blank-lines": feed_bytes("", "  \t", *_CANCEL),
    "bom-no-final-newline": b"\xef\xbb\xbf" + feed_bytes(*_CANCEL, final=False),
    "unknown-and-repeated-columns": feed_bytes(HEADER + "\tnote\torder-id", *(line + "\tx\ty" for line in _CANCEL[1:])),
    "cp1252": feed_bytes(HEADER + "\tnote", *(line + "\tCafé" for line in _CANCEL[1:]), encoding="cp1252"),
    "ragged": feed_bytes(*_CANCEL[:2], _CANCEL[2] + "\textra", *_CANCEL[3:]),
    "short": feed_bytes(*_CANCEL[:2], _CANCEL[2].rsplit("\t", 1)[0], *_CANCEL[3:]),
    "blank-line-inside": feed_bytes(*_CANCEL[:2], "", "\t\t", *_CANCEL[2:]),
}


@pytest.mark.parametrize("name", list(_FEEDS))
def test_regular_feed_reads_the_same_by_both_paths(name, monkeypatch):
    """A regular flat feed is read by polars' CSV reader; splitting its lines must give the same raw feed."""
    import orderfeeds.readers.flat as flat

    fast = read_feed(_FEEDS[name])
    monkeypatch.setattr(flat, "_regular_records", lambda *args: None)
    slow = read_feed(_FEEDS[name])
    assert_frame_equal(fast.frame, slow.frame)
    assert_frame_equal(fast.issues, slow.issues)
    assert (fast.feed_type, fast.notes, fast.column_order) == (slow.feed_type, slow.notes, slow.column_order)


@pytest.mark.parametrize(("name", "fast"), [("template-crlf", True), ("unknown-and-repeated-columns", True),
                                            ("ragged", True), ("short", True), ("blank-line-inside", False)])
def test_only_regular_feeds_take_the_fast_path(name, fast, monkeypatch):
    """Ragged and short lines stay on the fast path (as ragged-row issues); blank lines leave it, since the
    reader would skip them and the rows would lose their line numbers."""
    import orderfeeds.readers.flat as flat

    taken = []
    original = flat._regular_records
    monkeypatch.setattr(flat, "_regular_records", lambda *args: taken.append(original(*args)) or taken[-1])
    read_feed(_FEEDS[name])
    assert (taken[0] is not None) == fast

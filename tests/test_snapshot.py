"""The order snapshot (SPEC §3): TSV, CSV and Parquet in, the same typed state out; bad ones rejected whole."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.errors import SnapshotError
from orderfeeds.snapshot import SNAPSHOT_COLUMNS, parse_snapshot, read_snapshot, write_snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "orders-snapshot.tsv"

MONEY_COLUMNS = (
    "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price", "gift-wrap-tax",
    "item-promotion-discount", "ship-promotion-discount",
    "item-price-refunded", "item-tax-refunded", "shipping-price-refunded", "shipping-tax-refunded",
    "gift-wrap-price-refunded", "gift-wrap-tax-refunded", "item-promotion-reversed", "ship-promotion-reversed",
)
REQUIRED_COLUMNS = (
    "order-id", "order-item-id", "order-status", "fulfillment-channel", "currency", "quantity-ordered",
    "quantity-shipped", "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price",
    "gift-wrap-tax",
)


@pytest.fixture(scope="module")
def sample_state() -> pl.DataFrame:
    """The typed state of samples/orders-snapshot.tsv."""
    return read_snapshot(SAMPLE)


@pytest.fixture(scope="module")
def sample_text_frame() -> pl.DataFrame:
    """samples/orders-snapshot.tsv as a frame of strings, exactly as written in the file."""
    return pl.read_csv(SAMPLE, separator="\t", infer_schema=False, quote_char=None)


def tsv(frame: pl.DataFrame) -> bytes:
    """A string frame as snapshot TSV bytes (no quoting: TSV values are taken literally)."""
    return frame.write_csv(separator="\t", quote_style="never").encode()


def csv(frame: pl.DataFrame) -> bytes:
    """A string frame as snapshot CSV bytes."""
    return frame.write_csv().encode()


def parquet(frame: pl.DataFrame) -> bytes:
    """A frame written as Parquet bytes with polars."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def rejection(data: bytes, name: str) -> str:
    """The message of the SnapshotError parse_snapshot raises for `data`."""
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(data, name)
    return str(caught.value)


def with_value(frame: pl.DataFrame, row: int, column: str, value: str) -> pl.DataFrame:
    """`frame` with one cell replaced (row is 0-based)."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


# ---------------------------------------------------------------- formats


def test_sample_state_is_typed(sample_state):
    """The sample reads to one row per order line with integer quantities and booleans."""
    assert sample_state.height == 13
    assert sample_state.schema["quantity-ordered"] == pl.Int64
    assert sample_state.schema["shipping-label-purchased"] == pl.Boolean
    row = sample_state.row(0, named=True)
    assert (row["order-id"], row["order-item-id"], row["item-price"], row["shipping-label-purchased"]) == (
        "111-2223334-4445550", "20000000000001", Decimal("24.99"), False)


def test_money_columns_are_decimal_never_float(sample_state):
    """Every money column is pl.Decimal with 2 decimals; no column is a float."""
    for column in MONEY_COLUMNS:
        dtype = sample_state.schema[column]
        assert isinstance(dtype, pl.Decimal), column
        assert dtype.scale == 2, column
    assert not any(dtype.is_float() for dtype in sample_state.schema.values())


@pytest.mark.parametrize("form", ["csv", "parquet-text", "parquet-typed", "tsv-crlf-bom"])
def test_all_formats_give_the_same_state(form, sample_state, sample_text_frame):
    """TSV, CSV and Parquet (string or typed columns) of the same lines give an equal state."""
    data, name = {
        "csv": lambda: (csv(sample_text_frame), "orders.csv"),
        "parquet-text": lambda: (parquet(sample_text_frame), "orders.parquet"),
        "parquet-typed": lambda: (parquet(sample_state), "orders.parquet"),
        "tsv-crlf-bom": lambda: (b"\xef\xbb\xbf" + tsv(sample_text_frame).replace(b"\n", b"\r\n"), "orders.tsv"),
    }[form]()
    assert_frame_equal(parse_snapshot(data, name), sample_state)


def test_format_is_taken_from_content_not_name(sample_state, sample_text_frame):
    """A CSV called .tsv and Parquet called .txt still read correctly."""
    assert_frame_equal(parse_snapshot(csv(sample_text_frame), "orders.tsv"), sample_state)
    assert_frame_equal(parse_snapshot(parquet(sample_text_frame), "orders.txt"), sample_state)


@pytest.mark.parametrize("writer", [tsv, csv, parquet], ids=["tsv", "csv", "parquet"])
def test_unknown_extra_columns_are_ignored(writer, sample_state, sample_text_frame):
    """Columns SPEC §3 does not name, anywhere in the header, do not change the state."""
    extended = sample_text_frame.select(
        pl.lit("first, with comma").alias("note"), pl.all(), pl.lit("x").alias("asin"))
    assert_frame_equal(parse_snapshot(writer(extended), "orders"), sample_state)


@pytest.mark.parametrize("writer", [tsv, csv, parquet], ids=["tsv", "csv", "parquet"])
def test_optional_columns_may_be_absent(writer, sample_text_frame):
    """With only the required columns, optional ones take their defaults: 0, 0.00, false, null text."""
    state = parse_snapshot(writer(sample_text_frame.select(REQUIRED_COLUMNS)), "orders")
    assert state.columns == list(SNAPSHOT_COLUMNS)
    assert state.get_column("quantity-cancelled").to_list() == [0] * 13
    for column in ("item-promotion-discount", "item-price-refunded", "ship-promotion-reversed"):
        assert state.get_column(column).to_list() == [Decimal("0.00")] * 13, column
    assert state.get_column("shipping-label-purchased").to_list() == [False] * 13
    assert state.get_column("buyer-requested-cancel").to_list() == [False] * 13
    assert state.get_column("merchant-order-id").null_count() == 13


def test_blank_optional_values_take_defaults(sample_text_frame):
    """Blank quantity-cancelled is 0, blank money is 0.00 (also in required money columns), blank flags false."""
    blanked = (with_value(sample_text_frame, 0, "quantity-cancelled", "")
               .pipe(with_value, 0, "item-tax", "")
               .pipe(with_value, 0, "item-promotion-discount", " ")
               .pipe(with_value, 1, "shipping-label-purchased", "")
               .pipe(with_value, 6, "buyer-requested-cancel", ""))
    state = parse_snapshot(tsv(blanked), "orders.tsv")
    first, second, seventh = (state.row(i, named=True) for i in (0, 1, 6))
    assert first["quantity-cancelled"] == 0
    assert first["item-tax"] == Decimal("0.00")
    assert first["item-promotion-discount"] == Decimal("0.00")
    assert second["shipping-label-purchased"] is False
    assert seventh["buyer-requested-cancel"] is False


@pytest.mark.parametrize(("text", "expected"), [("TRUE", True), ("True", True), ("false", False), ("FALSE", False)])
def test_booleans_in_any_letter_case(text, expected, sample_text_frame):
    """true/false are read in any letter case."""
    state = parse_snapshot(tsv(with_value(sample_text_frame, 0, "shipping-label-purchased", text)), "orders.tsv")
    assert state.get_column("shipping-label-purchased")[0] is expected


# ---------------------------------------------------------------- rejected snapshots


BAD_VALUES = [
    ("order-id", "111-2223334", "order-id", "'111-2223334'"),
    ("order-item-id", "2000000000001", "order-item-id", "'2000000000001'"),
    ("order-status", "Open", "order-status", "'Open'"),
    ("fulfillment-channel", "FBA", "fulfillment-channel", "'FBA'"),
    ("currency", "usd", "currency", "'usd'"),
    ("quantity-ordered", "1.5", "quantity-ordered", "'1.5'"),
    ("quantity-shipped", "-1", "quantity-shipped", "'-1'"),
    ("quantity-shipped", "", "quantity-shipped", "blank"),
    ("item-price", "24.999", "item-price", "'24.999'"),
    ("item-tax", "1,000.00", "item-tax", "'1,000.00'"),
    ("shipping-price", "1e3", "shipping-price", "'1e3'"),
    ("shipping-label-purchased", "yes", "shipping-label-purchased", "'yes'"),
]


@pytest.mark.parametrize(("column", "value", "named", "shown"), BAD_VALUES,
                         ids=[f"{c}={v or 'blank'}" for c, v, _, _ in BAD_VALUES])
def test_bad_value_rejects_snapshot_naming_file_line_and_column(column, value, named, shown, sample_text_frame):
    """A value breaking §3 rejects the whole snapshot; the message names the file, the line and the column."""
    bad = with_value(sample_text_frame, 3, column, value)  # data row 4 = line 5
    message = rejection(tsv(bad), "orders.tsv")
    assert "orders.tsv line 5" in message
    assert named in message
    assert shown in message
    assert "line 2:" not in message and "line 4:" not in message


def test_bad_value_in_csv_names_its_line(sample_text_frame):
    """In a CSV snapshot the physical line of the bad row is named."""
    message = rejection(csv(with_value(sample_text_frame, 9, "order-status", "Open")), "orders.csv")
    assert "orders.csv line 11" in message and "order-status 'Open'" in message


def test_bad_value_in_parquet_names_its_row(sample_text_frame):
    """Parquet has no lines: the row (1-based) is named instead, with file and column."""
    message = rejection(parquet(with_value(sample_text_frame, 2, "order-id", "bad")), "orders.parquet")
    assert "orders.parquet row 3" in message and "order-id 'bad'" in message


def test_tsv_blank_lines_do_not_shift_the_line_named(sample_text_frame):
    """Blank lines in a TSV snapshot are skipped, and the error still names the physical line."""
    lines = tsv(with_value(sample_text_frame, 1, "currency", "EURO")).decode().split("\n")
    lines[2:2] = ["", "  "]
    message = rejection("\n".join(lines).encode(), "orders.tsv")
    assert "orders.tsv line 5" in message and "currency 'EURO'" in message


def test_tsv_trailing_blank_lines_are_ignored(sample_state, sample_text_frame):
    """Blank lines at the end of a TSV snapshot are not order lines."""
    assert_frame_equal(parse_snapshot(tsv(sample_text_frame) + b"\n\n  \n", "orders.tsv"), sample_state)


@pytest.mark.parametrize("where", ["trailing", "middle"])
def test_csv_blank_lines_are_ignored_like_tsv(where, sample_state, sample_text_frame):
    """A blank line in a CSV snapshot is skipped, as it is in TSV."""
    lines = csv(sample_text_frame).decode().split("\n")
    lines.insert(len(lines) if where == "trailing" else 3, "")
    assert_frame_equal(parse_snapshot("\n".join(lines).encode(), "orders.csv"), sample_state)


def test_several_bad_lines_are_all_named(sample_text_frame):
    """Every bad line is listed (up to the cap), each with its own line."""
    bad = with_value(sample_text_frame, 0, "order-status", "Open").pipe(with_value, 4, "quantity-ordered", "x")
    message = rejection(tsv(bad), "orders.tsv")
    assert "orders.tsv line 2: order-status 'Open'" in message
    assert "orders.tsv line 6: quantity-ordered 'x'" in message


@pytest.mark.parametrize("column", ["currency", "order-id", "quantity-shipped", "item-price"])
@pytest.mark.parametrize("writer", [tsv, csv, parquet], ids=["tsv", "csv", "parquet"])
def test_missing_required_column_rejects_snapshot(column, writer, sample_text_frame):
    """A snapshot without a required column is rejected, naming the file and the column."""
    message = rejection(writer(sample_text_frame.drop(column)), "orders.snap")
    assert "orders.snap" in message
    assert column in message


def test_missing_required_column_names_the_header_line(sample_text_frame):
    """The missing-column message names the header line, like every other snapshot error."""
    message = rejection(tsv(sample_text_frame.drop("currency")), "orders.tsv")
    assert "line 1" in message


def test_duplicate_order_line_rejects_snapshot(sample_text_frame):
    """The same (order-id, order-item-id) twice rejects the snapshot, naming the repeat's line and the column."""
    doubled = pl.concat([sample_text_frame, sample_text_frame.slice(0, 1)])
    message = rejection(tsv(doubled), "orders.tsv")
    assert "orders.tsv line 15" in message
    assert "order-item-id" in message and "111-2223334-4445550" in message


def test_shipped_plus_cancelled_over_ordered_rejects_snapshot(sample_text_frame):
    """quantity-shipped + quantity-cancelled > quantity-ordered rejects the snapshot, naming line and column."""
    bad = with_value(sample_text_frame, 4, "quantity-cancelled", "1")  # 1 ordered, 1 shipped, now 1 cancelled
    message = rejection(tsv(bad), "orders.tsv")
    assert "orders.tsv line 6" in message
    assert "quantity-shipped" in message
    assert "more than the 1 ordered" in message


def test_shipped_plus_cancelled_equal_to_ordered_is_fine(sample_text_frame):
    """Boundary: shipped + cancelled == ordered is allowed."""
    ok = with_value(sample_text_frame, 5, "quantity-cancelled", "3")  # 3 ordered, 0 shipped
    assert parse_snapshot(tsv(ok), "orders.tsv").get_column("quantity-cancelled")[5] == 3


@pytest.mark.parametrize("column", ["currency", "order-status", "fulfillment-channel"])
def test_lines_of_one_order_must_agree(column, sample_text_frame):
    """Two lines of one order with different currency (or status, or channel) reject the snapshot."""
    other = {"currency": "EUR", "order-status": "Shipped", "fulfillment-channel": "AFN"}[column]
    bad = with_value(sample_text_frame, 5, column, other)  # second line of 111-2223334-4445554, line 7
    message = rejection(tsv(bad), "orders.tsv")
    assert "orders.tsv line 7" in message
    assert f"column {column}" in message
    assert "111-2223334-4445554" in message


def test_ragged_tsv_snapshot_line_is_rejected(sample_text_frame):
    """A TSV snapshot line with the wrong number of fields is rejected naming its line."""
    lines = tsv(sample_text_frame).decode().split("\n")
    lines[3] += "\textra"
    message = rejection("\n".join(lines).encode(), "orders.tsv")
    assert "orders.tsv line 4" in message


@pytest.mark.parametrize("shape", ["short", "long"])
def test_ragged_csv_snapshot_line_is_rejected_naming_its_line(shape, sample_text_frame):
    """A CSV snapshot row with too few or too many fields is rejected, naming its line, like in TSV."""
    lines = csv(sample_text_frame).decode().split("\n")
    # Line 3 is 111-2223334-4445551, whose last two fields are "true,false".
    assert lines[2].endswith(",true,false")
    lines[2] = lines[2][: -len(",true,false")] if shape == "short" else lines[2] + ",extra"
    message = rejection("\n".join(lines).encode(), "orders.csv")
    assert "orders.csv line 3" in message


@pytest.mark.parametrize(("data", "name"), [(b"", "empty.tsv"), (b"PAR1 not really parquet", "broken.parquet")])
def test_unreadable_snapshot_is_snapshot_error(data, name):
    """An empty file or a damaged Parquet file is a SnapshotError naming the file."""
    assert name in rejection(data, name)


def test_missing_file_is_snapshot_error(tmp_path):
    """read_snapshot of a path that does not exist is a SnapshotError naming the path."""
    with pytest.raises(SnapshotError, match="nothere.tsv"):
        read_snapshot(tmp_path / "nothere.tsv")


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet"])
def test_write_then_read_gives_the_same_state(suffix, tmp_path, sample_state):
    """write_snapshot then read_snapshot gives back an equal frame, for every format."""
    path = tmp_path / f"state{suffix}"
    write_snapshot(sample_state, path)
    assert_frame_equal(read_snapshot(path), sample_state)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet"])
def test_round_trip_keeps_refunds_flags_and_awkward_text(suffix, tmp_path, sample_state):
    """Refunded amounts, cancelled units, true flags and text with commas and quotes survive a round trip."""
    changed = sample_state.with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(pl.lit(Decimal("12.34"))).otherwise(pl.col("item-price-refunded"))
        .cast(sample_state.schema["item-price-refunded"]).alias("item-price-refunded"),
        pl.when(pl.int_range(pl.len()) == 10).then(pl.lit('Müller, "GmbH"')).otherwise(pl.col("merchant-order-id"))
        .alias("merchant-order-id"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(2, pl.Int64)).otherwise(pl.col("quantity-cancelled"))
        .alias("quantity-cancelled"),
    )
    path = tmp_path / f"state{suffix}"
    write_snapshot(changed, path)
    back = read_snapshot(path)
    assert_frame_equal(back, changed)
    assert back.get_column("item-price-refunded")[10] == Decimal("12.34")
    assert back.get_column("merchant-order-id")[10] == 'Müller, "GmbH"'


def test_written_snapshot_is_sorted_by_key(tmp_path, sample_state):
    """The written snapshot lists lines by order and item, whatever order the state had."""
    path = tmp_path / "state.tsv"
    write_snapshot(sample_state.reverse(), path)
    assert_frame_equal(read_snapshot(path), sample_state.sort("order-id", "order-item-id"))


def test_written_parquet_money_is_exact(tmp_path, sample_state):
    """A written Parquet snapshot stores money so that read_snapshot gives Decimal values, not floats."""
    path = tmp_path / "state.parquet"
    write_snapshot(sample_state, path)
    raw = pl.read_parquet(path)
    assert not any(dtype.is_float() for dtype in raw.schema.values())
    back = read_snapshot(path)
    assert isinstance(back.schema["item-price"], pl.Decimal)
    assert back.get_column("item-price").sum() == sample_state.get_column("item-price").sum()


# ---------------------------------------------------------------- the fast path for regular files


def _padded(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with spaces around some values, which both paths strip."""
    return frame.with_columns(pl.format(" {} ", pl.col("sales-channel")).alias("sales-channel"),
                              pl.format("{}  ", pl.col("currency")).alias("currency"))


@pytest.mark.parametrize("variant", ["plain", "bom", "crlf", "no-final-newline", "padded", "csv"])
def test_regular_file_reads_the_same_by_both_paths(variant, monkeypatch, sample_text_frame):
    """A regular file is read by polars' CSV reader; the line-by-line path must give the same state."""
    frame = _padded(sample_text_frame) if variant == "padded" else sample_text_frame
    data = csv(frame) if variant == "csv" else tsv(frame)
    if variant == "bom":
        data = b"\xef\xbb\xbf" + data
    elif variant == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif variant == "no-final-newline":
        data = data.rstrip(b"\n")
    fast = parse_snapshot(data, "orders")
    import orderfeeds.snapshot as snapshot_module

    assert snapshot_module._regular_rows(data) is not None  # the fast path did take it
    monkeypatch.setattr(snapshot_module, "_regular_rows", lambda data: None)
    assert_frame_equal(fast, parse_snapshot(data, "orders"))


def test_short_tsv_line_is_rejected_naming_its_line(sample_text_frame):
    """A TSV line with a field too few is not padded with a blank: it is rejected by its line."""
    lines = tsv(sample_text_frame).decode().split("\n")
    lines[3] = lines[3].rsplit("\t", 1)[0]
    assert "orders.tsv line 4" in rejection("\n".join(lines).encode(), "orders.tsv")


def test_line_of_only_tabs_is_blank(sample_state, sample_text_frame):
    """A line of nothing but separators (Excel leaves them) is skipped, not read as an empty order line."""
    lines = tsv(sample_text_frame).decode().split("\n")
    lines.insert(2, "\t" * (sample_text_frame.width - 1))
    assert_frame_equal(parse_snapshot("\n".join(lines).encode(), "orders.tsv"), sample_state)


def test_cp1252_snapshot_is_read_line_by_line(sample_state, sample_text_frame):
    """A snapshot that is not UTF-8 leaves the fast path and is decoded with the fallback."""
    frame = sample_text_frame.with_columns(pl.lit("Café").alias("sales-channel"))
    state = parse_snapshot(tsv(frame).decode().encode("cp1252"), "orders.tsv")
    assert state.get_column("sales-channel").unique().to_list() == ["Café"]


def _variants(frame: pl.DataFrame) -> dict[str, bytes]:
    """Snapshot files that stream block by block, and files that leave for the whole-file path."""
    plain = tsv(frame)
    lines = plain.decode().split("\n")
    return {
        "plain": plain, "crlf": plain.replace(b"\n", b"\r\n"), "bom": b"\xef\xbb\xbf" + plain,
        "no-final-newline": plain.rstrip(b"\n"), "csv": csv(frame), "padded": tsv(_padded(frame)),
        "blank-line": "\n".join([*lines[:3], "", *lines[3:]]).encode(),
        "ragged": "\n".join([*lines[:4], lines[4] + "\tx", *lines[5:]]).encode(),
        "bad-value": tsv(with_value(frame, 5, "currency", "EURO")),
        "repeated-line": "\n".join([*lines[:6], lines[2], *lines[6:]]).encode(),
        "header-only": lines[0].encode() + b"\n",
        "cp1252": tsv(frame.with_columns(pl.lit("Café").alias("sales-channel"))).decode().encode("cp1252"),
    }


@pytest.mark.parametrize("variant", ["plain", "crlf", "bom", "no-final-newline", "csv", "padded", "blank-line",
                                     "ragged", "bad-value", "repeated-line", "header-only", "cp1252"])
def test_streamed_file_reads_like_the_same_bytes(variant, tmp_path, monkeypatch, sample_text_frame):
    """read_snapshot streams a regular file in blocks (tiny ones here, so lines straddle them); the
    state, or the rejection with its line numbers, is exactly what parse_snapshot gives for the bytes."""
    import orderfeeds.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "BLOCK_BYTES", 300)
    data = _variants(sample_text_frame)[variant]
    path = tmp_path / ("orders.csv" if variant == "csv" else "orders.tsv")
    path.write_bytes(data)
    try:
        expected = parse_snapshot(data, path.name)
    except SnapshotError as exc:
        with pytest.raises(SnapshotError) as caught:
            read_snapshot(path)
        assert str(caught.value) == str(exc)
    else:
        assert_frame_equal(read_snapshot(path), expected)


def test_regular_file_is_streamed(tmp_path, monkeypatch, sample_state, sample_text_frame):
    """The sample, in blocks smaller than three lines, never falls back to reading the whole file."""
    import orderfeeds.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "BLOCK_BYTES", 300)
    monkeypatch.setattr(snapshot_module, "parse_snapshot", lambda data, name: pytest.fail("read whole"))
    path = tmp_path / "orders.tsv"
    path.write_bytes(tsv(sample_text_frame))
    assert_frame_equal(read_snapshot(path), sample_state)

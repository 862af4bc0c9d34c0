"""Validation: the pandera behaviour the code relies on (DESIGN §3), and how problems are ranked (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

from orderfeeds.feedtypes import FLAT_ADJUSTMENT_FIELDS
from orderfeeds.pipeline import ProcessOptions, process_feed
from orderfeeds.readers import read_feed
from orderfeeds.snapshot import read_snapshot
from orderfeeds.validate import validate_records

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "orders-snapshot.tsv"
FAILURE_CASE_COLUMNS = ["failure_case", "schema_context", "column", "check", "check_number", "index"]


def _not_equal_to_b(data) -> pl.LazyFrame:
    """A custom check in the style validate.py uses: a boolean LazyFrame over other columns."""
    return data.lazyframe.select(pl.col(data.key).is_null() | (pl.col(data.key) != pl.col("b")))


@pytest.fixture
def tiny_schema() -> pa.DataFrameSchema:
    """Two String columns: `a` required digits that differ from `b`, `b` optional and only 'x' or '1'."""
    return pa.DataFrameSchema(
        {
            "a": pa.Column(pl.String, nullable=False, checks=[
                pa.Check.str_matches(r"^[0-9]+$", error="digits only"),
                pa.Check(_not_equal_to_b, error="a equals b"),
            ]),
            "b": pa.Column(pl.String, nullable=True, checks=pa.Check.isin(["x", "1"], error="x or 1")),
        },
        strict=False,
    )


@pytest.fixture
def tiny_frame() -> pl.DataFrame:
    """Rows 1 (bad digits), 2 (null a, bad b) and 4 (a equals b) fail; rows 0 and 3 pass; row 1's null b is fine."""
    return pl.DataFrame({"a": ["1", "z", None, "3", "1"], "b": ["x", None, "y", "x", "1"]})


def failures(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame:
    """failure_cases of a lazy validation that must fail."""
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.validate(frame, lazy=True)
    return caught.value.failure_cases


def test_failure_cases_has_the_columns_the_code_reads(tiny_schema, tiny_frame):
    """Locks the failure_cases columns (validate.find_issues reads column, check, index, failure_case)."""
    assert failures(tiny_schema, tiny_frame).columns == FAILURE_CASE_COLUMNS


def test_failure_cases_index_is_the_zero_based_row_position(tiny_schema, tiny_frame):
    """Each failure carries its column, the check's `error` text (or not_nullable) and the 0-based row index."""
    found = failures(tiny_schema, tiny_frame).select("column", "check", "index", "failure_case", "schema_context")
    assert sorted(found.rows(), key=lambda r: (r[0], r[2], r[1])) == [
        ("a", "digits only", 1, "z", "Column"),
        ("a", "not_nullable", 2, None, "Column"),
        ("a", "a equals b", 4, "1", "Column"),
        ("b", "x or 1", 2, "y", "Column"),
    ]


def test_failure_cases_index_follows_row_position_not_values(tiny_schema):
    """In a longer frame the index is still the plain row position (it is used with `gather`)."""
    frame = pl.DataFrame({"a": ["1"] * 7 + ["bad"] + ["2"] * 3 + ["worse"], "b": [None] * 12},
                         schema={"a": pl.String, "b": pl.String})
    found = failures(tiny_schema, frame)
    assert found.get_column("check").to_list() == ["digits only", "digits only"]
    assert found.get_column("index").to_list() == [7, 11]


def test_failure_cases_check_number_is_position_in_column_checks(tiny_schema, tiny_frame):
    """check_number is the check's position among its column's checks; null for not_nullable."""
    found = failures(tiny_schema, tiny_frame)
    numbers = dict(zip(found.get_column("check").to_list(), found.get_column("check_number").to_list(), strict=True))
    assert numbers == {"digits only": 0, "a equals b": 1, "x or 1": 0, "not_nullable": None}


def test_null_values_in_nullable_column_are_not_checked(tiny_schema):
    """Value checks skip nulls: a blank optional field is not a failure of its format check."""
    frame = pl.DataFrame({"a": ["1", "2"], "b": [None, "x"]}, schema={"a": pl.String, "b": pl.String})
    assert tiny_schema.validate(frame, lazy=True).equals(frame)


def test_missing_column_is_a_failure_with_null_index(tiny_schema, tiny_frame):
    """A schema-level failure (missing column) has a null index; find_issues treats that as a bug."""
    found = failures(tiny_schema, tiny_frame.drop("b"))
    missing = found.filter(pl.col("check") == "column_in_dataframe")
    assert missing.height == 1
    assert missing.get_column("index").to_list() == [None]
    assert missing.get_column("failure_case").to_list() == ["b"]


# ---------------------------------------------------------------- ranking in validate_records


ORDER, ITEM = "111-2223334-4445551", "20000000000002"  # Shipped, so a refund is possible


def adjustment_feed(header: list[str], values: dict[str, str]) -> bytes:
    """One adjustment record with `values` (others valid), under `header` in the given column order."""
    base = {f.name: "" for f in FLAT_ADJUSTMENT_FIELDS}
    base.update({"order-id": ORDER, "order-item-id": ITEM, "adjustment-reason-code": "CustomerReturn",
                 "currency": "USD", "item-price-adj": "10.00", "item-tax-adj": "0.00", "shipping-price-adj": "0.00",
                 "shipping-tax-adj": "0.00", "gift-wrap-price-adj": "0.00", "gift-wrap-tax-adj": "0.00",
                 "quantity-cancelled": "0"})
    base.update(values)
    return ("\t".join(header) + "\n" + "\t".join(base[name] for name in header) + "\n").encode()


STANDARD = [f.name for f in FLAT_ADJUSTMENT_FIELDS]
AMOUNTS_FIRST = ["item-price-adj", *[n for n in STANDARD if n != "item-price-adj"]]
TWO_PROBLEMS = {"currency": "usd", "item-price-adj": "10.5"}
CURRENCY_MESSAGE = "currency 'usd' is not an ISO 4217 currency code such as USD"
AMOUNT_PREFIX = "item-price-adj '10.5' is not an amount"


@pytest.mark.parametrize(
    ("header", "first_error"),
    [(STANDARD, "invalid-field"), (AMOUNTS_FIRST, "invalid-amount")],
    ids=["currency-column-first", "amount-column-first"],
)
def test_issues_rank_by_column_order_in_the_file(header, first_error):
    """Both problems of the record are issues; the best-ranked is the one whose column comes first in the file."""
    issues = validate_records(read_feed(adjustment_feed(header, TWO_PROBLEMS))).issues.sort("rank")
    assert issues.get_column("seq").to_list() == [0, 0]
    assert sorted(issues.get_column("error").to_list()) == ["invalid-amount", "invalid-field"]
    assert issues.get_column("error")[0] == first_error


def test_records_with_issues_are_not_valid_records():
    """A record with issues is left out of the typed records; a clean one is cast."""
    data = adjustment_feed(STANDARD, {}) + adjustment_feed(STANDARD, TWO_PROBLEMS).split(b"\n", 1)[1]
    checked = validate_records(read_feed(data))
    assert checked.records.get_column("record").to_list() == [1]
    assert isinstance(checked.records.schema["Principal"], pl.Decimal)
    assert set(checked.issues.get_column("seq").to_list()) == {1}


@pytest.fixture(scope="module")
def sample_state() -> pl.DataFrame:
    """The order state of samples/orders-snapshot.tsv."""
    return read_snapshot(SAMPLE)


@pytest.mark.parametrize(
    ("header", "error", "code", "parts"),
    [
        (STANDARD, "invalid-field", 18028, [CURRENCY_MESSAGE, AMOUNT_PREFIX]),
        (AMOUNTS_FIRST, "invalid-amount", 90103, [AMOUNT_PREFIX, CURRENCY_MESSAGE]),
    ],
    ids=["currency-column-first", "amount-column-first"],
)
def test_report_names_first_column_error_and_lists_all(header, error, code, parts, sample_state):
    """One report line per record: the first column's error names it; the message lists both, '; '-joined, in column order."""
    result, _ = process_feed(adjustment_feed(header, TWO_PROBLEMS), "adj.txt", sample_state,
                             ProcessOptions(as_of="2026-11-28T00:00:00+00:00"))
    row = result.records.row(0, named=True)
    assert result.records.height == 1
    assert (row["status"], row["error-name"], row["error-code"]) == ("Error", error, code)
    pieces = row["error-message"].split("; ")
    assert len(pieces) == 2
    assert pieces[0].startswith(parts[0]) and pieces[1].startswith(parts[1])


def test_blank_required_field_ranks_before_a_later_column(sample_state):
    """A blank order-id (missing-field, first column) outranks a bad reason in a later column."""
    result, _ = process_feed(adjustment_feed(STANDARD, {"order-id": "", "adjustment-reason-code": "Oops"}),
                             "adj.txt", sample_state, ProcessOptions(as_of="2026-11-28T00:00:00+00:00"))
    row = result.records.row(0, named=True)
    assert row["error-name"] == "missing-field"
    assert row["error-message"].startswith("order-id is blank; it is required; adjustment-reason-code 'Oops'")


# ---------------------------------------------------------------- the polars pre-pass agrees with pandera

_TRICKY = ["", " ", "12.50", "12.5", "-0.00", "-3.00", "1,000.00", "1e3", "100", "0", "-1", "007",
           "USD", "usd", "JPY", "EUR", "true", "TRUE", "yes", "False", "111-2223334-4445550", "111-2223334-444555",
           "20000000000001", "2000000000000", "NoInventory", "CustomerReturn", "BuyerCanceled", "Principal",
           "MFN", "AFN", "Shipped", "Pending", "x" * 20, "１２.５０", "12.50\n", "café"]


def _valid(field) -> str:
    """A value every check of the field accepts."""
    from orderfeeds.feedtypes import Kind

    return {Kind.ORDER_ID: "111-2223334-4445550", Kind.ITEM_CODE: "20000000000001", Kind.AMOUNT: "1.00",
            Kind.MONEY: "1.00", Kind.COUNT: "1", Kind.CURRENCY: "USD", Kind.BOOL: "true",
            Kind.ENUM: field.choices[0] if field.choices else "x"}.get(field.kind, "x")


def _frame_strategy(fields):
    """Valid rows with up to two cells changed, so one bad cell decides a row's fate and a lax check shows."""
    from hypothesis import strategies as st

    base = {f.name: _valid(f) for f in fields}
    bad = st.one_of(st.none(), st.sampled_from(_TRICKY), st.text(max_size=12))
    change = st.tuples(st.sampled_from([f.name for f in fields]), bad)
    row = st.lists(change, max_size=2).map(lambda changes: {**base, **dict(changes)})
    return st.lists(row, min_size=1, max_size=25).map(
        lambda rows: pl.DataFrame(rows, schema={f.name: pl.String for f in fields}).with_row_index("seq"))


def _pandera_failures(frame: pl.DataFrame, fields, cross) -> set[int]:
    """Rows pandera itself fails, over the whole frame (what find_issues did before the pre-pass)."""
    from orderfeeds.validate import _schema

    schema, _ = _schema(fields, cross)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return set(frame.get_column("seq").gather(exc.failure_cases.get_column("index").drop_nulls()).to_list())
    return set()


@pytest.mark.parametrize("kind", ["flat-adjustment", "flat-cancellation", "xml-adjustment", "snapshot"])
def test_pre_pass_fails_exactly_the_rows_pandera_fails(kind):
    """find_issues shows pandera only the rows the fused polars pass rejects; for that to lose nothing,
    the pass must reject every row pandera would (and, to be cheap, no more): same sets, on tricky values."""
    from hypothesis import given, settings

    from orderfeeds.feedtypes import FLAT_CANCELLATION_FIELDS, FeedType
    from orderfeeds.readers.xml import XML_FIELDS
    from orderfeeds.snapshot import SNAPSHOT_FIELDS
    from orderfeeds.validate import CROSS_CHECKS, passes_all

    fields, feed_type = {
        "flat-adjustment": (FLAT_ADJUSTMENT_FIELDS, FeedType.FLAT_ADJUSTMENT),
        "flat-cancellation": (FLAT_CANCELLATION_FIELDS, FeedType.FLAT_CANCELLATION),
        "xml-adjustment": (XML_FIELDS[FeedType.XML_ADJUSTMENT], FeedType.XML_ADJUSTMENT),
        "snapshot": (SNAPSHOT_FIELDS, None),
    }[kind]
    cross = CROSS_CHECKS.get(feed_type, ())

    @settings(max_examples=150, deadline=None)
    @given(_frame_strategy(fields))
    def check(frame):
        rejected = set(frame.filter(~frame.select(passes_all(fields, cross)).to_series()).get_column("seq").to_list())
        assert rejected == _pandera_failures(frame, fields, cross)

    check()

"""Validation: pandera schemas over the raw text, then a cast to typed records."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from orderfeeds.feedtypes import ZERO_DECIMAL_CURRENCIES, FeedType, Field, Kind
from orderfeeds.readers.model import ENGINE, ID_COLUMNS, ISSUE_SCHEMA, RawFeed

MONEY = pl.Decimal(38, 2)
COUNT = pl.Int64

ORDER_ID_PATTERN = r"^[A-Za-z0-9]{3}-[A-Za-z0-9]{7}-[A-Za-z0-9]{7}$"
ITEM_CODE_PATTERN = r"^[0-9]{14}$"
COUNT_PATTERN = r"^[0-9]{1,9}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
AMOUNT_PATTERN = r"^-?[0-9]{1,20}\.[0-9]{2}$"
# Currencies without minor units may write whole numbers; ".00" stays exact, so it is allowed too.
ZERO_DECIMAL_AMOUNT_PATTERN = r"^-?[0-9]{1,20}(\.00)?$"
MONEY_PATTERN = r"^-?[0-9]{1,20}(\.[0-9]{1,2})?$"
BOOL_VALUES = ("true", "false", "True", "False", "TRUE", "FALSE")


@dataclass(frozen=True)
class _Rule:
    """How one failed pandera check becomes a catalogue error and a sentence."""

    error: str
    # Text after "<field> '<value>' "; for a blank value the whole sentence follows the field name.
    template: str


def _kind_rule(field: Field) -> _Rule | None:
    match field.kind:
        case Kind.ORDER_ID:
            return _Rule("invalid-field", "is not an order id; it has the form 3-7-7, like 111-2223334-4445550")
        case Kind.ITEM_CODE:
            return _Rule("invalid-field", "is not an order item code; it has 14 digits, like 20000000000001")
        case Kind.ENUM:
            return _Rule("invalid-field", "is not an allowed value; use one of " + ", ".join(field.choices))
        case Kind.AMOUNT:
            return _Rule("invalid-amount", "is not an amount: write exactly two decimals (none for currencies "
                         "such as JPY), no thousands separators and no exponent, like 12.50")
        case Kind.MONEY:
            return _Rule("invalid-amount", "is not an amount: write at most two decimals, no thousands "
                         "separators and no exponent, like 12.50")
        case Kind.COUNT:
            return _Rule("invalid-field", "is not a whole number of units (0 or more)")
        case Kind.CURRENCY:
            return _Rule("invalid-field", "is not an ISO 4217 currency code such as USD")
        case Kind.BOOL:
            return _Rule("invalid-field", "is not true or false")
        case _:
            return None


def _amount_ok(name: str) -> pl.Expr:
    value = pl.col(name)
    pattern = (pl.when(pl.col("currency").is_in(ZERO_DECIMAL_CURRENCIES))
               .then(pl.lit(ZERO_DECIMAL_AMOUNT_PATTERN)).otherwise(pl.lit(AMOUNT_PATTERN)))
    return value.is_null() | value.str.contains(pattern)


def _amount_matches(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(_amount_ok(data.key))


_PATTERNS = {
    Kind.ORDER_ID: ORDER_ID_PATTERN, Kind.ITEM_CODE: ITEM_CODE_PATTERN, Kind.COUNT: COUNT_PATTERN,
    Kind.CURRENCY: CURRENCY_PATTERN, Kind.MONEY: MONEY_PATTERN,
}


def _kind_check(field: Field, rule: _Rule) -> pa.Check:
    # `error` is the rule's template: pandera reports it in failure_cases["check"],
    # which is how a failure finds its way back to its catalogue entry.
    match field.kind:
        case Kind.ENUM:
            return pa.Check.isin(list(field.choices), error=rule.template)
        case Kind.BOOL:
            return pa.Check.isin(list(BOOL_VALUES), error=rule.template)
        case Kind.AMOUNT:
            return pa.Check(_amount_matches, error=rule.template)
    return pa.Check.str_matches(_PATTERNS[field.kind], error=rule.template)


def _kind_ok(field: Field) -> pl.Expr | None:
    """What `_kind_check` checks, as a plain polars expression (null where pandera ignores the value)."""
    value = pl.col(field.name)
    match field.kind:
        case Kind.ENUM:
            return value.is_in(list(field.choices))
        case Kind.BOOL:
            return value.is_in(list(BOOL_VALUES))
        case Kind.AMOUNT:
            return _amount_ok(field.name)
        case kind if kind in _PATTERNS:
            # pandera's str_matches anchors the pattern at the start; ours are anchored already.
            return value.str.contains(_PATTERNS[kind])
    return None


def passes_all(fields: tuple[Field, ...], cross: tuple[CrossCheck, ...] = ()) -> pl.Expr:
    """True for a row that passes every check of the schema `_build_schema` makes, in one polars
    pass: pandera then has only the other rows to explain. A check's null result passes, as
    pandera's ignore_na makes it; a blank required value fails, as not_nullable does."""
    parts: list[pl.Expr] = []
    for field in fields:
        ok = _kind_ok(field)
        if ok is not None:
            parts.append(ok.fill_null(True))
        parts.extend(c.passes.fill_null(True) for c in cross if c.column == field.name)
        if field.value_required:
            parts.append(pl.col(field.name).is_not_null())
    return pl.all_horizontal(parts) if parts else pl.lit(True)


MISSING = _Rule("missing-field", "is blank; it is required")


@dataclass(frozen=True)
class CrossCheck:
    """A rule over several fields, run as a check on `column` (DESIGN §3)."""

    column: str
    error: str
    passes: pl.Expr
    message: pl.Expr  # over the raw frame's columns


_SCHEMAS: dict[tuple[tuple[Field, ...], int], tuple[pa.DataFrameSchema, pl.DataFrame]] = {}


def _schema(fields: tuple[Field, ...], cross: tuple[CrossCheck, ...]) -> tuple[pa.DataFrameSchema, pl.DataFrame]:
    # Cross checks are module constants, so their identity is a sound cache key.
    key = (fields, id(cross))
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _build_schema(fields, cross)
    return _SCHEMAS[key]


def _build_schema(fields: tuple[Field, ...], cross: tuple[CrossCheck, ...]) -> tuple[pa.DataFrameSchema, pl.DataFrame]:
    """The pandera schema for a field list, and the lookup from (column, check) to error."""
    columns: dict[str, pa.Column] = {}
    lookup: list[dict[str, object]] = []
    for field in fields:
        checks = []
        rule = _kind_rule(field)
        if rule is not None:
            checks.append(_kind_check(field, rule))
            lookup.append({"column": field.name, "check": rule.template, "error": rule.error, "template": rule.template, "sub": 1})
        for index, extra in enumerate(c for c in cross if c.column == field.name):
            checks.append(pa.Check(lambda data, e=extra.passes: data.lazyframe.select(e), error=extra.error))
            lookup.append({"column": field.name, "check": extra.error, "error": extra.error, "template": None, "sub": 2 + index})
        columns[field.name] = pa.Column(pl.String, nullable=not field.value_required, checks=checks)
        if field.value_required:
            lookup.append({"column": field.name, "check": "not_nullable", "error": MISSING.error, "template": MISSING.template, "sub": 0})
    schema = pa.DataFrameSchema(columns, strict=False)
    return schema, pl.DataFrame(lookup, schema={"column": pl.String, "check": pl.String, "error": pl.String,
                                                "template": pl.String, "sub": pl.Int32})


def find_issues(frame: pl.DataFrame | pl.LazyFrame, fields: tuple[Field, ...], column_order: tuple[str, ...] = (),
                cross: tuple[CrossCheck, ...] = ()) -> pl.DataFrame:
    """Every check every row fails, as issues keyed by `seq` and ranked by column order."""
    schema, lookup = _schema(fields, cross)
    # Most rows are valid: one fused polars pass finds the few pandera has to explain, so its
    # per-check passes run over those rows only. A test holds the two to the same verdicts.
    frame = frame.lazy().filter(~passes_all(fields, cross)).collect(engine=ENGINE)
    if frame.height == 0:
        return pl.DataFrame(schema=ISSUE_SCHEMA)
    try:
        schema.validate(frame, lazy=True)
        return pl.DataFrame(schema=ISSUE_SCHEMA)
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases
    if failures.filter(pl.col("index").is_null()).height:
        # A failure with no row is about the frame itself: the reader built it wrong.
        raise AssertionError(f"schema-level validation failure: {failures.filter(pl.col('index').is_null())}")
    order = {name: i for i, name in enumerate(column_order or [f.name for f in fields])}
    positions = pl.DataFrame({"column": [f.name for f in fields],
                              "position": [order.get(f.name, len(order) + i) for i, f in enumerate(fields)]},
                             schema={"column": pl.String, "position": pl.Int32})
    found = (failures.select("column", "check", "index", pl.col("failure_case").alias("value"))
             .join(lookup, on=["column", "check"], how="left")
             .join(positions, on="column", how="left"))
    unmapped = found.filter(pl.col("error").is_null())
    if unmapped.height:
        raise AssertionError(f"pandera failure without a catalogue entry: {unmapped.head(3)}")
    # failure_cases["index"] is the row position in `frame`; `seq` is the record's identity.
    found = found.with_columns(frame.get_column("seq").gather(found.get_column("index")).alias("seq"))
    message = pl.when(pl.col("value").is_null()).then(pl.format("{} {}", pl.col("column"), pl.col("template"))) \
        .otherwise(pl.format("{} '{}' {}", pl.col("column"), pl.col("value"), pl.col("template")))
    issues = found.select("seq", (pl.col("position") * 10 + pl.col("sub")).cast(pl.Int32).alias("rank"),
                          "error", message.alias("message"), "index")
    for check in cross:
        # Cross-field messages need the other fields' values, so they are built from the frame.
        rows = issues.filter(pl.col("error") == check.error)
        if rows.height:
            texts = frame.select(check.message.alias("message"))
            rows = rows.with_columns(texts.get_column("message").gather(rows.get_column("index")).alias("message"))
            issues = pl.concat([issues.filter(pl.col("error") != check.error), rows])
    return issues.drop("index").cast(ISSUE_SCHEMA)


def minus_flag(canonical: str) -> str:
    """Column that says an amount was written with a minus sign."""
    return f"{canonical}:minus"


def cast_fields(frame: pl.DataFrame | pl.LazyFrame, fields: tuple[Field, ...]) -> pl.DataFrame:
    """Typed columns under canonical names; only call it on rows that passed validation."""
    exprs = []
    for field in fields:
        value = pl.col(field.name)
        match field.kind:
            case Kind.AMOUNT | Kind.MONEY:
                typed = value.cast(MONEY, strict=True)
            case Kind.COUNT:
                typed = value.cast(COUNT, strict=True)
            case Kind.BOOL:
                typed = value.str.to_lowercase() == "true"
            case _:
                typed = value
        if field.defaults_to_zero:
            zero = {Kind.COUNT: pl.lit(0, COUNT), Kind.MONEY: pl.lit("0").cast(MONEY), Kind.BOOL: pl.lit(False)}[field.kind]
            typed = typed.fill_null(zero)
        exprs.append(typed.alias(field.canonical))
        if field.kind is Kind.AMOUNT:
            # "-0.00" casts to zero; the sign rules still need to know a minus was written.
            exprs.append(value.str.starts_with("-").fill_null(False).alias(minus_flag(field.canonical)))
    names = frame.collect_schema().names()
    return frame.lazy().select(*[c for c in ID_COLUMNS if c in names], *exprs).collect(engine=ENGINE)


@dataclass(frozen=True)
class ValidRecords:
    """Typed records that passed validation, and issues for those that did not."""

    records: pl.DataFrame
    issues: pl.DataFrame


_REASON, _ITEM = "cancellation-reason-code", "amazon-order-item-code"
_BOTH_OR_NEITHER = "give both to cancel that line, or neither to cancel the whole order"
CROSS_CHECKS: dict[FeedType, tuple[CrossCheck, ...]] = {
    FeedType.FLAT_CANCELLATION: (
        CrossCheck(
            column=_ITEM, error="incomplete-row",
            passes=pl.col(_REASON).is_null() == pl.col(_ITEM).is_null(),
            message=pl.when(pl.col(_ITEM).is_null())
            .then(pl.format(f"{_REASON} '{{}}' is given without {_ITEM}: {_BOTH_OR_NEITHER}", pl.col(_REASON)))
            .otherwise(pl.format(f"{_ITEM} '{{}}' is given without {_REASON}: {_BOTH_OR_NEITHER}", pl.col(_ITEM))),
        ),
    ),
}


def validate_records(raw: RawFeed) -> ValidRecords:
    """Validate a raw feed; a bad record is an issue row, never an exception."""
    cross = CROSS_CHECKS.get(raw.feed_type, ())
    # Lazy filters, not anti joins: the records are never copied whole, only the failing rows and the typed
    # records are made (a copy of every string column of a piece would be its largest part).
    checked = _without(raw.frame.lazy(), raw.issues)
    found = find_issues(checked, raw.fields, raw.column_order, cross)
    return ValidRecords(records=cast_fields(_without(checked, found), raw.fields),
                        issues=pl.concat([raw.issues, found]))


def _without(rows: pl.LazyFrame, issues: pl.DataFrame) -> pl.LazyFrame:
    """The rows without an issue."""
    if issues.is_empty():
        return rows
    return rows.filter(~pl.col("seq").is_in(issues.get_column("seq").unique().implode()))

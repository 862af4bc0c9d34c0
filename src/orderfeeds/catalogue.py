"""The error catalogue: every code, name and type a report can carry (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "Error"
    WARNING = "Warning"


@dataclass(frozen=True)
class ErrorSpec:
    """One catalogue entry; codes and names are API and never change."""

    code: int
    name: str
    severity: Severity
    fatal: bool
    when: str

    @property
    def type_label(self) -> str:
        """The `type` column of SPEC §6, as the README table shows it."""
        if not self.fatal:
            return self.severity.value
        if self.severity is Severity.WARNING:
            return "Warning (fatal: nothing applied)"
        return "Error (fatal)"


_E, _W = Severity.ERROR, Severity.WARNING

# Order matters: it is the order of the README table and of SPEC §6.
CATALOGUE: tuple[ErrorSpec, ...] = (
    ErrorSpec(5000, "malformed-xml", _E, True, "XML not well-formed or broken envelope; message gives line and column"),
    ErrorSpec(90010, "unknown-feed-type", _E, True, "content matches no feed type"),
    ErrorSpec(90011, "missing-column", _E, True, "a required column is missing from the header"),
    ErrorSpec(90012, "encoding-error", _E, True, "bytes undecodable in UTF-8 and in the fallback encoding"),
    ErrorSpec(90013, "feed-too-large", _E, True, "file over the configured size or record cap"),
    ErrorSpec(90014, "duplicate-feed", _W, True, "identical file already processed"),
    ErrorSpec(90015, "unsafe-xml", _E, True, "DOCTYPE, entity declarations, or other unsafe constructs"),
    ErrorSpec(90016, "unknown-column", _W, False, "header has a column this feed type does not define"),
    ErrorSpec(18028, "invalid-field", _E, False, "a value breaks its format (id pattern, enum, integer); message names the field and value"),
    ErrorSpec(90101, "missing-field", _E, False, "a required field is blank"),
    ErrorSpec(90102, "ragged-row", _E, False, "wrong number of fields on the line"),
    ErrorSpec(90103, "invalid-amount", _E, False, "amount not in the allowed format"),
    ErrorSpec(90104, "incomplete-row", _E, False, "cancellation row with only one of reason / item code"),
    ErrorSpec(90105, "duplicate-message-id", _E, False, "MessageID repeated in the feed"),
    ErrorSpec(90106, "schema-violation", _E, False, "XML message does not match its XSD"),
    ErrorSpec(90001, "already-shipped", _E, False, "cancellation of shipped units"),
    ErrorSpec(90002, "already-cancelled", _E, False, "cancelled order or line"),
    ErrorSpec(90003, "quantity-exceeds-open", _E, False, "more units than are open"),
    ErrorSpec(90004, "order-pending", _E, False, "payment not verified"),
    ErrorSpec(90005, "fulfilled-by-amazon", _E, False, "AFN order"),
    ErrorSpec(90006, "label-purchased", _E, False, "shipping label exists"),
    ErrorSpec(90007, "currency-mismatch", _E, False, "currency differs from order"),
    ErrorSpec(90008, "item-not-found", _E, False, "item not in order"),
    ErrorSpec(90009, "order-not-found", _E, False, "order unknown"),
    ErrorSpec(90017, "order-unfulfillable", _E, False, "order is Unfulfillable"),
    ErrorSpec(90018, "invalid-sign", _E, False, "component sign not allowed"),
    ErrorSpec(90019, "not-yet-charged", _E, False, "refund on a line with nothing shipped"),
    ErrorSpec(18016, "refund-exceeds-charged", _E, False, "cumulative refund above what was charged"),
    ErrorSpec(90020, "net-not-positive", _E, False, "net adjustment not a credit"),
    ErrorSpec(90021, "duplicate-adjustment", _E, False, "MerchantAdjustmentItemID already applied"),
    ErrorSpec(90201, "counts-toward-cancellation-rate", _W, False, "applied; counts against the seller metric"),
    ErrorSpec(90202, "possible-duplicate", _W, False, "applied; identical to an earlier adjustment"),
)

BY_NAME: dict[str, ErrorSpec] = {spec.name: spec for spec in CATALOGUE}


def spec(name: str) -> ErrorSpec:
    """The entry for `name`; a KeyError here is a bug, never user input."""
    return BY_NAME[name]


def markdown_table() -> str:
    """The README's error table, generated so docs cannot drift from code."""
    lines = ["| code | name | type | when |", "|---|---|---|---|"]
    lines += [f"| {e.code} | `{e.name}` | {e.type_label} | {e.when} |" for e in CATALOGUE]
    return "\n".join(lines)


def as_frame():
    """The catalogue as a polars frame, for joining names to codes and types."""
    import polars as pl

    return pl.DataFrame(
        {
            "error": [e.name for e in CATALOGUE],
            "error-code": [e.code for e in CATALOGUE],
            "severity": [e.severity.value for e in CATALOGUE],
        },
        schema={"error": pl.String, "error-code": pl.Int64, "severity": pl.String},
    )

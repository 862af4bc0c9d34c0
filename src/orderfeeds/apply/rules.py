"""Rules as data: an ordered list of (error, condition, message) evaluated as one when-chain."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Rule:
    """One numbered check of SPEC §4; the first rule whose `when` holds decides."""

    error: str
    when: pl.Expr
    message: pl.Expr


def first_failure(rules: list[Rule]) -> tuple[pl.Expr, pl.Expr]:
    """(error, message) expressions: the first failing rule's, or null when all pass."""
    error = pl.when(rules[0].when).then(pl.lit(rules[0].error))
    message = pl.when(rules[0].when).then(rules[0].message)
    for rule in rules[1:]:
        error = error.when(rule.when).then(pl.lit(rule.error))
        message = message.when(rule.when).then(rule.message)
    return error.otherwise(pl.lit(None, pl.String)), message.otherwise(pl.lit(None, pl.String))


def judge(frame: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
    """`frame` with `error` and `message` columns from the first failing rule.

    Messages are formatted only for the rows that fail: polars evaluates every branch of
    a when-chain, and most records pass, so formatting them all would dominate the cost.
    """
    error, message = first_failure(rules)
    judged = frame.with_columns(error.alias("error"))
    at = judged.select(pl.arg_where(pl.col("error").is_not_null())).to_series()
    messages = pl.repeat(None, judged.height, dtype=pl.String, eager=True).alias("message")
    if at.len():
        # Scattered in, so the frame is not split and rebuilt: its other columns are not copied.
        messages = messages.scatter(at, judged[at].select(message).to_series())
    return judged.with_columns(messages)


def plural(count: pl.Expr, word: str) -> pl.Expr:
    """'1 unit' / '3 units', for messages that name quantities."""
    return pl.format("{} {}", count, pl.when(count == 1).then(pl.lit(word)).otherwise(pl.lit(word + "s")))

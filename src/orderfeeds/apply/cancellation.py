"""Cancellation rules (SPEC §4.1) over one round of records, as polars expressions."""

from __future__ import annotations

import polars as pl

from orderfeeds.apply.rules import Rule, judge, plural
from orderfeeds.apply.state import MERCHANT_ID_SCHEMA, POSITIONED_EFFECT_SCHEMA, open_units
from orderfeeds.snapshot import KEY

C = pl.col
PENDING = ("Pending", "PendingAvailability")
SHIPPED = ("Shipped", "InvoiceUnconfirmed")
RETURN_ADVICE = "ask the buyer to return it for a refund"
ADJUSTMENT_ADVICE = ("cancel the unshipped units with an Order Adjustment that gives quantity-cancelled, "
                     "and ask the buyer to return the shipped ones for a refund")


def _order_view(state: pl.DataFrame) -> pl.DataFrame:
    """One row per order: what whole-order rules need to know about all its lines."""
    return state.group_by("order-id").agg(
        C("order-status").first().alias("o-status"),
        C("fulfillment-channel").first().alias("o-channel"),
        (C("quantity-shipped") > 0).any().alias("o-shipped"),
        (C("shipping-label-purchased") & (open_units() > 0)).any().alias("o-label"),
        C("buyer-requested-cancel").any().alias("o-buyer-requested"),
        open_units().sum().alias("o-open"),
    )


def _line_view(state: pl.DataFrame) -> pl.DataFrame:
    return state.select(
        *KEY, "_pos",
        C("quantity-shipped").alias("l-shipped"),
        C("quantity-cancelled").alias("l-cancelled"),
        open_units().alias("l-open"),
        C("shipping-label-purchased").alias("l-label"),
        C("buyer-requested-cancel").alias("l-buyer-requested"),
    )


def _rules() -> list[Rule]:
    """Rules 1 (not found) judge every record; the rest only cancellations, not Success acknowledgements."""
    rules = _cancellation_rules()
    cancelling = ~C("ack")
    return rules[:2] + [Rule(r.error, cancelling & r.when, r.message) for r in rules[2:]]


def _cancellation_rules() -> list[Rule]:
    whole = C("order-item-id").is_null()
    order = C("order-id")
    item = C("order-item-id")
    status = C("o-status")
    partly_shipped = (status == "PartiallyShipped") | (C("o-shipped") & (C("o-open") > 0))
    shipped_advice = pl.when(partly_shipped).then(pl.lit(ADJUSTMENT_ADVICE)).otherwise(pl.lit(RETURN_ADVICE))
    what = pl.when(whole).then(pl.format("order {}", order)).otherwise(pl.format("item {} of order {}", item, order))
    return [
        Rule("order-not-found", status.is_null(),
             pl.format("order {} is not in the order state; check the order-id", order)),
        Rule("item-not-found", ~whole & C("l-open").is_null(),
             pl.format("order {} has no item {}; check the item code against the order", order, item)),
        Rule("order-pending", status.is_in(PENDING),
             pl.format("order {} is {}: payment is not verified yet; cancel it once the order is Unshipped",
                       order, status)),
        Rule("fulfilled-by-amazon", C("o-channel") == "AFN",
             pl.format("order {} is fulfilled by Amazon (AFN); ask seller support to cancel it", order)),
        Rule("already-cancelled",
             (status == "Canceled")
             | (whole & (C("o-open") == 0) & ~C("o-shipped"))
             | (~whole & (C("l-open") == 0) & (C("l-cancelled") > 0)),
             pl.format("{} is already cancelled; nothing was changed", what)),
        Rule("already-shipped",
             status.is_in(SHIPPED) | pl.when(whole).then(C("o-shipped")).otherwise(C("l-shipped") > 0),
             pl.format("{} has already shipped, so it cannot be cancelled: {}", what, shipped_advice)),
        Rule("label-purchased", pl.when(whole).then(C("o-label")).otherwise(C("l-label")),
             pl.format("a shipping label was bought for {}, so it may already be on its way: {}, or void the "
                       "label and send the cancellation again", what, shipped_advice)),
        Rule("order-unfulfillable", status == "Unfulfillable",
             pl.format("order {} is Unfulfillable; it cannot be cancelled by a feed", order)),
        Rule("quantity-exceeds-open", ~whole & C("quantity").is_not_null() & (C("quantity") > C("l-open")),
             pl.format("Quantity {} is more than the {} of item {} of order {}", C("quantity"),
                       plural(C("l-open"), "open unit"), item, order)),
    ]


COUNTS_WARNING = ("applied, and it counts toward your cancellation rate: reason BuyerCanceled is for orders "
                  "the buyer asked to cancel through Amazon, and this buyer did not")


def evaluate_cancellations(batch: pl.DataFrame, state: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Outcomes (seq, error, message, counts-toward-rate), effects, and merchant ids that
    `Success` acknowledgements record, for records of distinct orders."""
    ack = (C("status-code") == "Success").fill_null(False) if "status-code" in batch.columns else pl.lit(False)
    for column in ("merchant-order-id", "merchant-order-item-id"):
        if column not in batch.columns:
            batch = batch.with_columns(pl.lit(None, pl.String).alias(column))
    joined = (batch.with_columns(ack.alias("ack"))
              .join(_order_view(state.filter(C("order-id").is_in(batch.get_column("order-id").implode()))),
                    on="order-id", how="left")
              .join(_line_view(state).drop("_pos"), on=KEY, how="left"))
    # The buyer's request is per line; a whole-order cancellation is covered if any line was asked for.
    requested = pl.when(C("order-item-id").is_null()).then(C("o-buyer-requested")).otherwise(C("l-buyer-requested"))
    buyer_asked = (C("reason") == "BuyerCanceled") & requested
    judged = judge(joined, _rules())
    applied = C("error").is_null() & ~C("ack")
    warn = applied & (C("reason") == "BuyerCanceled") & ~requested
    outcomes = judged.select(
        "seq",
        pl.when(warn).then(pl.lit("counts-toward-cancellation-rate")).otherwise(C("error")).alias("error"),
        pl.when(warn).then(pl.lit(COUNTS_WARNING)).otherwise(C("message")).alias("message"),
        (applied & ~buyer_asked.fill_null(False)).alias("counts-toward-rate"),
        pl.lit(None, pl.String).alias("currency"),
    )
    accepted = judged.filter(C("error").is_null() & ~C("ack"))
    items = accepted.filter(C("order-item-id").is_not_null()).select(
        "seq", *KEY, "_pos", pl.coalesce(C("quantity"), C("l-open")).alias("units-cancelled"))
    # A whole-order cancellation cancels the open units of every line of the order.
    whole = (accepted.filter(C("order-item-id").is_null()).select("seq", "order-id")
             .join(_line_view(state), on="order-id", how="inner")
             .filter(C("l-open") > 0)
             .select("seq", *KEY, "_pos", C("l-open").alias("units-cancelled")))
    effects = pl.concat([items, whole], how="vertical_relaxed")
    ids = judged.filter(C("error").is_null() & C("ack")).select(
        "seq", *KEY, "merchant-order-id", "merchant-order-item-id").cast(MERCHANT_ID_SCHEMA)
    return outcomes, _complete_effects(effects), ids


def _complete_effects(effects: pl.DataFrame) -> pl.DataFrame:
    missing = [pl.lit("0").cast(dtype).alias(name) for name, dtype in POSITIONED_EFFECT_SCHEMA.items()
               if name not in effects.columns]
    return effects.with_columns(missing).select(list(POSITIONED_EFFECT_SCHEMA)).cast(POSITIONED_EFFECT_SCHEMA)

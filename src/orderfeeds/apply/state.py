"""Order state: folding accepted effects into it and recomputing order status (SPEC §4.3)."""

from __future__ import annotations

import polars as pl

from orderfeeds.snapshot import CHARGED_COMPONENTS, KEY, OTHER_NET, PROMOTION_COMPONENTS
from orderfeeds.validate import COUNT, MONEY

# What an accepted record changes on one order line. Amount deltas are positive
# for money returned to the buyer (promotion reversals are kept positive, as in §3).
DELTA_COLUMNS: tuple[str, ...] = (
    *(refunded for _, refunded in CHARGED_COMPONENTS.values()),
    *(reversed_ for _, reversed_ in PROMOTION_COMPONENTS.values()),
    OTHER_NET,
)
EFFECT_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.UInt32, "order-id": pl.String, "order-item-id": pl.String, "units-cancelled": COUNT,
    **{column: MONEY for column in DELTA_COLUMNS},
}


# What a `Success` acknowledgement records: the seller's own ids for an order and its lines.
MERCHANT_ID_SCHEMA = {"seq": pl.UInt32, "order-id": pl.String, "order-item-id": pl.String,
                      "merchant-order-id": pl.String, "merchant-order-item-id": pl.String}


def fold_merchant_ids(state: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Record acknowledged merchant ids; the latest acknowledgement of an order or line wins."""
    if ids.height == 0:
        return state
    orders = (ids.filter(pl.col("merchant-order-id").is_not_null()).unique("order-id", keep="last", maintain_order=True)
              .select("order-id", pl.col("merchant-order-id").alias("_order")))
    items = (ids.filter(pl.col("merchant-order-item-id").is_not_null() & pl.col("order-item-id").is_not_null())
             .unique(KEY, keep="last", maintain_order=True).select(*KEY, pl.col("merchant-order-item-id").alias("_item")))
    return (state.join(orders, on="order-id", how="left", maintain_order="left")
            .join(items, on=KEY, how="left", maintain_order="left")
            .with_columns(pl.coalesce("_order", "merchant-order-id").alias("merchant-order-id"),
                          pl.coalesce("_item", "merchant-order-item-id").alias("merchant-order-item-id"))
            .select(state.columns))


def empty_merchant_ids() -> pl.DataFrame:
    return pl.DataFrame(schema=MERCHANT_ID_SCHEMA)


def empty_effects() -> pl.DataFrame:
    return pl.DataFrame(schema=EFFECT_SCHEMA)


def open_units() -> pl.Expr:
    return pl.col("quantity-ordered") - pl.col("quantity-shipped") - pl.col("quantity-cancelled")


def fold_effects(state: pl.DataFrame, effects: pl.DataFrame) -> pl.DataFrame:
    """The state after `effects`; statuses of touched orders are recomputed, others kept."""
    if effects.height == 0:
        return state
    totals = effects.group_by(KEY).agg(pl.col("units-cancelled").sum(), *[pl.col(c).sum() for c in DELTA_COLUMNS])
    merged = state.join(totals, on=KEY, how="left", suffix="_delta", maintain_order="left").with_columns(
        (pl.col("quantity-cancelled") + pl.col("units-cancelled").fill_null(0)).alias("quantity-cancelled"),
        *[(pl.col(c) + pl.col(f"{c}_delta").fill_null(0)).alias(c) for c in DELTA_COLUMNS],
    )
    touched = merged.join(totals.select("order-id").unique(), on="order-id", how="semi")
    statuses = touched.group_by("order-id").agg(recomputed_status().alias("_status"))
    return (merged.join(statuses, on="order-id", how="left", maintain_order="left")
            .with_columns(pl.coalesce(pl.col("_status"), pl.col("order-status")).alias("order-status"))
            .select(state.columns))


def recomputed_status() -> pl.Expr:
    """SPEC §4.3, as an aggregation per order: all cancelled → Canceled; all shipped or
    cancelled → Shipped; some shipped and some open → PartiallyShipped; nothing shipped → unchanged."""
    all_cancelled = (pl.col("quantity-cancelled") == pl.col("quantity-ordered")).all()
    some_shipped = (pl.col("quantity-shipped") > 0).any()
    none_open = (open_units() == 0).all()
    current = pl.col("order-status").first()
    return (pl.when(all_cancelled).then(pl.lit("Canceled"))
            # InvoiceUnconfirmed is a shipped order waiting for its invoice: keep the finer status.
            .when(some_shipped & none_open & (current == "InvoiceUnconfirmed")).then(current)
            .when(some_shipped & none_open).then(pl.lit("Shipped"))
            .when(some_shipped).then(pl.lit("PartiallyShipped"))
            .otherwise(current))

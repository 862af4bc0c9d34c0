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
# Every column of an order line that folding effects or acknowledgements can change.
MUTABLE_COLUMNS: tuple[str, ...] = ("quantity-cancelled", *DELTA_COLUMNS, "order-status",
                                    "merchant-order-id", "merchant-order-item-id")
# Inside apply, effects also carry `_pos`: the line's row in the working lines.
POSITIONED_EFFECT_SCHEMA: dict[str, pl.DataType] = {**EFFECT_SCHEMA, "_pos": pl.UInt32}


# What a `Success` acknowledgement records: the seller's own ids for an order and its lines.
MERCHANT_ID_SCHEMA = {"seq": pl.UInt32, "order-id": pl.String, "order-item-id": pl.String,
                      "merchant-order-id": pl.String, "merchant-order-item-id": pl.String}


def fold_merchant_ids(state: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Record acknowledged merchant ids; the latest acknowledgement of an order or line wins."""
    if ids.height == 0:
        return state
    orders = (ids.filter(pl.col("merchant-order-id").is_not_null()).unique("order-id", keep="last", maintain_order=True)
              .select("order-id", pl.col("merchant-order-id").alias("_merchant_order")))
    items = (ids.filter(pl.col("merchant-order-item-id").is_not_null() & pl.col("order-item-id").is_not_null())
             .unique(KEY, keep="last", maintain_order=True).select(*KEY, pl.col("merchant-order-item-id").alias("_item")))
    return (state.join(orders, on="order-id", how="left", maintain_order="left")
            .join(items, on=KEY, how="left", maintain_order="left")
            .with_columns(pl.coalesce("_merchant_order", "merchant-order-id").alias("merchant-order-id"),
                          pl.coalesce("_item", "merchant-order-item-id").alias("merchant-order-item-id"))
            .select(state.columns))


def empty_merchant_ids() -> pl.DataFrame:
    return pl.DataFrame(schema=MERCHANT_ID_SCHEMA)


def empty_effects() -> pl.DataFrame:
    return pl.DataFrame(schema=EFFECT_SCHEMA)


def open_units() -> pl.Expr:
    return pl.col("quantity-ordered") - pl.col("quantity-shipped") - pl.col("quantity-cancelled")


def with_positions(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines with `_pos` (the row number) and `_order_no` (a number per order), for `fold_effects`."""
    orders = lines.select("order-id").unique().with_row_index("_order_no")
    return (lines.with_row_index("_pos")
            .join(orders, on="order-id", how="left", maintain_order="left")
            .select(*lines.columns, "_pos", "_order_no"))


def fold_effects(lines: pl.DataFrame, effects: pl.DataFrame) -> pl.DataFrame:
    """The lines after `effects`, which name their line by `_pos` (see `with_positions`);
    the statuses of the orders they touch are recomputed, others kept."""
    if effects.height == 0:
        return lines
    totals = effects.group_by("_pos").agg(pl.col("units-cancelled").sum(), *[pl.col(c).sum() for c in DELTA_COLUMNS])
    at = totals.get_column("_pos")
    # Scatter writes only the touched rows; a join would rebuild every column of every line.
    updated = []
    for column, delta in (("quantity-cancelled", "units-cancelled"), *((c, c) for c in DELTA_COLUMNS)):
        values = lines.get_column(column)
        updated.append(values.clone().scatter(at, values.gather(at) + totals.get_column(delta).cast(values.dtype)))
    lines = lines.with_columns(updated)
    touched = lines.get_column("_order_no").gather(at).unique().implode()
    statuses = (lines.select("_order_no", "order-status", "quantity-ordered", "quantity-shipped", "quantity-cancelled")
                .filter(pl.col("_order_no").is_in(touched))
                .group_by("_order_no").agg(recomputed_status().alias("_status")))
    by_order = pl.repeat(None, int(lines.get_column("_order_no").max()) + 1, dtype=pl.String, eager=True)
    by_order = by_order.scatter(statuses.get_column("_order_no"), statuses.get_column("_status"))
    return lines.with_columns(pl.coalesce(by_order.gather(lines.get_column("_order_no")), pl.col("order-status"))
                              .alias("order-status"))


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

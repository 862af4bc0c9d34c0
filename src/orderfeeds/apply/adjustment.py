"""Adjustment rules (SPEC §4.2) over one round of records, with exact decimal caps."""

from __future__ import annotations

import polars as pl

from orderfeeds.apply.rules import Rule, judge, plural
from orderfeeds.apply.state import POSITIONED_EFFECT_SCHEMA, open_units
from orderfeeds.readers.model import ENGINE
from orderfeeds.snapshot import CHARGED_COMPONENTS, KEY, OTHER_NET, PROMOTION_COMPONENTS
from orderfeeds.validate import MONEY, minus_flag

C = pl.col
ZERO = pl.lit("0").cast(MONEY)

MUST_BE_CREDIT = ("Principal", "Tax", "Shipping", "ShippingTax", "GiftWrap", "GiftWrapTax", "Goodwill")
MUST_BE_CHARGE = ("RestockingFee", "RestockingFeeTax", "ReturnShipping", "PromotionPrincipal", "PromotionShipping")
ANY_SIGN = ("Surcharge", "ExportCharge", "COD", "CODTax", "Other", "FreeReplacementReturnShipping")
COMPONENTS = (*MUST_BE_CREDIT[:6], "RestockingFee", "RestockingFeeTax", "ReturnShipping", "Goodwill",
              *ANY_SIGN, "PromotionPrincipal", "PromotionShipping")
# Components with no charged counterpart: only the line's net caps them.
UNCAPPED = tuple(c for c in COMPONENTS if c not in CHARGED_COMPONENTS and c not in PROMOTION_COMPONENTS)

# Values that make two adjustments "identical in every value" (SPEC §4.2 step 11).
FINGERPRINT_COLUMNS = ("reason", "currency", *COMPONENTS, "quantity-cancelled")

HISTORY_SCHEMA = {"seq": pl.UInt32, "order-id": pl.String, "order-item-id": pl.String, "merchant-adjustment-item-id": pl.String,
                  "fingerprint": pl.String, "feed": pl.String, "record": pl.Int64}


def empty_history() -> pl.DataFrame:
    """Adjustments applied earlier (this call's feeds, or the ledger): what step 11 compares with."""
    return pl.DataFrame(schema=HISTORY_SCHEMA)


def normalise(records: pl.DataFrame) -> pl.DataFrame:
    """Every component as a Decimal column (absent = 0), with its minus flag, and a fingerprint."""
    missing = []
    for component in COMPONENTS:
        if component not in records.columns:
            missing.append(ZERO.alias(component))
        if minus_flag(component) not in records.columns:
            missing.append(pl.lit(False).alias(minus_flag(component)))
    for column in ("merchant-adjustment-item-id",):
        if column not in records.columns:
            missing.append(pl.lit(None, pl.String).alias(column))
    records = records.with_columns(missing).with_columns(
        C(c).fill_null(ZERO) for c in COMPONENTS
    ).with_columns(C("quantity-cancelled").fill_null(0))
    return records.with_columns(
        pl.concat_str([C(c).cast(pl.String).fill_null("") for c in FINGERPRINT_COLUMNS], separator="|").alias("fingerprint")
    )


def resolve_merchant_ids(records: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    """Fill order-id / order-item-id from the seller's own ids (SPEC §4.2 step 1).

    Keeps what the record said in `order-shown` / `item-shown` for the report messages.
    """
    for column in ("merchant-order-id", "merchant-order-item-id"):
        if column not in records.columns:
            records = records.with_columns(pl.lit(None, pl.String).alias(column))
    records = records.with_columns(
        pl.coalesce(C("order-id"), C("merchant-order-id")).alias("order-shown"),
        pl.coalesce(C("order-item-id"), C("merchant-order-item-id")).alias("item-shown"),
    )
    if records.select(C("merchant-order-id").is_not_null().any() | C("merchant-order-item-id").is_not_null().any()).item():
        # A merchant id that names two orders resolves to none: guessing would refund the wrong buyer.
        # Only the lines with an id the records give are grouped: every line with such an id, so a second
        # order with it is still seen, and not the whole state once per piece of a feed.
        named_orders = records.get_column("merchant-order-id").drop_nulls().unique().implode()
        named_items = records.get_column("merchant-order-item-id").drop_nulls().unique().implode()
        orders = (state.filter(C("merchant-order-id").is_in(named_orders)).group_by("merchant-order-id")
                  .agg(C("order-id").unique()).filter(C("order-id").list.len() == 1)
                  .select("merchant-order-id", C("order-id").list.first().alias("_order")))
        items = (state.filter(C("merchant-order-item-id").is_in(named_items)).group_by("order-id", "merchant-order-item-id")
                 .agg(C("order-item-id").first().alias("_item"), pl.len().alias("_n")).filter(C("_n") == 1).drop("_n"))
        records = records.join(orders, on="merchant-order-id", how="left", maintain_order="left").with_columns(
            pl.coalesce(C("order-id"), C("_order")).alias("order-id")).drop("_order")
        records = records.join(items, on=["order-id", "merchant-order-item-id"], how="left", maintain_order="left").with_columns(
            pl.coalesce(C("order-item-id"), C("_item")).alias("order-item-id")).drop("_item")
    return records


def _line_view(state: pl.DataFrame) -> pl.DataFrame:
    refunded = [C(r) for _, r in CHARGED_COMPONENTS.values()]
    reversed_ = [C(r) for _, r in PROMOTION_COMPONENTS.values()]
    charged = [C(c) for c, _ in CHARGED_COMPONENTS.values()]
    discounts = [C(d) for d, _ in PROMOTION_COMPONENTS.values()]
    return state.select(
        *KEY,
        C("order-status").alias("l-status"),
        C("fulfillment-channel").alias("l-channel"),
        C("currency").alias("l-currency"),
        C("quantity-shipped").alias("l-shipped"),
        open_units().alias("l-open"),
        *[C(charged_).alias(f"charged:{component}") for component, (charged_, _) in CHARGED_COMPONENTS.items()],
        *[C(done).alias(f"done:{component}") for component, (_, done) in CHARGED_COMPONENTS.items()],
        *[C(given).alias(f"charged:{component}") for component, (given, _) in PROMOTION_COMPONENTS.items()],
        *[C(done).alias(f"done:{component}") for component, (_, done) in PROMOTION_COMPONENTS.items()],
        (pl.sum_horizontal(charged) - pl.sum_horizontal(discounts)).alias("l-total"),
        (pl.sum_horizontal(refunded) - pl.sum_horizontal(reversed_) + C(OTHER_NET)).alias("l-net-done"),
    )


def _money(value: pl.Expr) -> pl.Expr:
    return value.cast(pl.String)


def _shown(component: str) -> pl.Expr:
    """The amount as written: "-0.00" stays visible, since its sign is what a rule rejects."""
    return pl.when(C(minus_flag(component)) & (C(component) == ZERO)).then(pl.lit("-0.00")).otherwise(_money(C(component)))


def _rules(labels: dict[str, str]) -> list[Rule]:
    order, item, status = C("order-id"), C("order-item-id"), C("l-status")
    net = C("net")

    def label(component: str) -> str:
        return labels.get(component, component)

    wrong_sign = [
        (component, (C(component) < ZERO) | C(minus_flag(component)), "a credit (0 or more, without a minus sign)")
        for component in MUST_BE_CREDIT
    ] + [(component, C(component) > ZERO, "a charge (0 or less)") for component in MUST_BE_CHARGE]
    sign_message = pl.concat_str(
        [pl.when(bad).then(pl.format(f"{label(component)} {{}} must be {what}", _shown(component)))
         for component, bad, what in wrong_sign], separator="; ", ignore_nulls=True)
    over_cap = []
    for component in CHARGED_COMPONENTS:
        over_cap.append((component, C(f"done:{component}") + C(component) > C(f"charged:{component}"),
                         pl.format(f"{label(component)} {{}} plus {{}} refunded before is more than the {{}} charged",
                                   _money(C(component)), _money(C(f"done:{component}")), _money(C(f"charged:{component}")))))
    for component in PROMOTION_COMPONENTS:
        over_cap.append((component, C(f"done:{component}") - C(component) > C(f"charged:{component}"),
                         pl.format(f"{label(component)} {{}} plus {{}} reversed before is more than the {{}} discount given",
                                   _money(C(component)), _money(C(f"done:{component}")), _money(C(f"charged:{component}")))))
    net_over = C("l-net-done") + net > C("l-total")
    cap_message = pl.concat_str(
        [pl.when(bad).then(message) for _, bad, message in over_cap]
        + [pl.when(net_over).then(pl.format("the line's net refund would be {} plus {} refunded before, more than "
                                            "the {} charged for it", _money(net), _money(C("l-net-done")), _money(C("l-total"))))],
        separator="; ", ignore_nulls=True)
    any_money = pl.any_horizontal([C(c) != ZERO for c in COMPONENTS])
    return [
        Rule("order-not-found", ~C("order-known"),
             pl.format("order {} is not in the order state; check the order id", C("order-shown"))),
        Rule("item-not-found", status.is_null(),
             pl.format("order {} has no item {}; check the item against the order", order, C("item-shown"))),
        Rule("order-pending", status.is_in(("Pending", "PendingAvailability")),
             pl.format("order {} is {}: payment is not verified yet, so there is nothing to adjust", order, status)),
        Rule("fulfilled-by-amazon", C("l-channel") == "AFN",
             pl.format("order {} is fulfilled by Amazon (AFN); Amazon issues its refunds, ask seller support", order)),
        Rule("already-cancelled", status == "Canceled",
             pl.format("order {} is cancelled; a cancelled order has nothing left to adjust", order)),
        Rule("currency-mismatch", C("currency") != C("l-currency"),
             pl.format("currency {} differs from the order's currency {}; send the amounts in {}",
                       C("currency"), C("l-currency"), C("l-currency"))),
        Rule("invalid-sign", pl.any_horizontal([bad for _, bad, _ in wrong_sign]), sign_message),
        Rule("quantity-exceeds-open", C("quantity-cancelled") > C("l-open"),
             pl.format("quantity-cancelled {} is more than the {} of item {} of order {}", C("quantity-cancelled"),
                       plural(C("l-open"), "open unit"), item, order)),
        Rule("not-yet-charged", any_money & (C("l-shipped") == 0),
             pl.format("item {} of order {} has not shipped, so the buyer has not been charged yet: cancel it "
                       "instead (quantity-cancelled), or refund after shipment", item, order)),
        Rule("refund-exceeds-charged", pl.any_horizontal([bad for _, bad, _ in over_cap]) | net_over, cap_message),
        Rule("net-not-positive", (net <= ZERO) & (C("quantity-cancelled") == 0),
             pl.format("the adjustment's net is {}, not a credit to the buyer, and it cancels no units; "
                       "send a refund or a quantity-cancelled", _money(net))),
        Rule("duplicate-adjustment", C("dup-feed").is_not_null(),
             pl.format("MerchantAdjustmentItemID {} was already applied to this line by record {} of {}; "
                       "nothing was changed", C("merchant-adjustment-item-id"), C("dup-record"), C("dup-feed"))),
    ]


def known_orders(state: pl.DataFrame) -> pl.Expr:
    """`order-known`: the state holds the record's order (an order never appears or leaves mid-feed)."""
    return C("order-id").is_in(state.get_column("order-id").unique().implode()).fill_null(False).alias("order-known")


def evaluate_adjustments(batch: pl.DataFrame, state: pl.DataFrame, history: pl.DataFrame,
                         labels: dict[str, str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Outcomes and effects for records of distinct orders against `state` and earlier adjustments.

    `labels` names components as the feed does (item-price-adj for Principal in a flat file).
    The records carry `order-known` (see `known_orders`) and `_pos`, their line's row in `state`.
    """
    # Only the history of these records' lines matters; deduplicating the rest is wasted work.
    history = history.join(batch.select(KEY).unique(), on=KEY, how="semi")
    by_id = (history.filter(C("merchant-adjustment-item-id").is_not_null())
             .unique([*KEY, "merchant-adjustment-item-id"], keep="first", maintain_order=True)
             .select(*KEY, "merchant-adjustment-item-id", C("feed").alias("dup-feed"), C("record").alias("dup-record")))
    alike = (history.unique([*KEY, "fingerprint"], keep="first", maintain_order=True)
             .select(*KEY, "fingerprint", C("feed").alias("same-feed"), C("record").alias("same-record")))
    # `_pos` is the record's line in `state` (null: no such line), so its view is a gather.
    # Gathered before the view is computed: the view of the round's lines, not of every line in play.
    lines = _line_view(state[batch.get_column("_pos")]).drop(KEY)
    joined = (pl.concat([batch.with_columns(pl.sum_horizontal([C(c) for c in COMPONENTS]).alias("net")), lines],
                        how="horizontal")
              .join(by_id, on=[*KEY, "merchant-adjustment-item-id"], how="left")
              .join(alike, on=[*KEY, "fingerprint"], how="left"))
    judged = judge(joined, _rules(labels or {}))
    warn = C("error").is_null() & C("merchant-adjustment-item-id").is_null() & C("same-feed").is_not_null()
    outcomes = judged.select(
        "seq",
        pl.when(warn).then(pl.lit("possible-duplicate")).otherwise(C("error")).alias("error"),
        pl.when(warn).then(pl.format("applied, but it is identical to record {} of {}; check the refund was "
                                     "not sent twice", C("same-record"), C("same-feed"))).otherwise(C("message")).alias("message"),
        pl.lit(False).alias("counts-toward-rate"),
        # An XML adjustment may name no currency: its money moves in its line's (a different one is an error).
        pl.coalesce(C("currency"), C("l-currency")).alias("currency"),
    )
    # Select, then filter: filtering first would copy every column of the joined frame.
    effects = judged.lazy().filter(C("error").is_null()).select(
        "seq", *KEY, "_pos", C("quantity-cancelled").alias("units-cancelled"),
        *[C(component).alias(done) for component, (_, done) in CHARGED_COMPONENTS.items()],
        *[(-C(component)).alias(done) for component, (_, done) in PROMOTION_COMPONENTS.items()],
        pl.sum_horizontal([C(c) for c in UNCAPPED]).alias(OTHER_NET),
    ).select(list(POSITIONED_EFFECT_SCHEMA)).cast(POSITIONED_EFFECT_SCHEMA).collect(engine=ENGINE)
    return outcomes, effects


def history_rows(records: pl.DataFrame, accepted_seq: pl.Series, feed: str) -> pl.DataFrame:
    """Ledger rows for the accepted records, for step 11 of later records and feeds."""
    return (records.filter(C("seq").is_in(accepted_seq.implode()))
            .select("seq", *KEY, "merchant-adjustment-item-id", "fingerprint", pl.lit(feed).alias("feed"), "record")
            .cast(HISTORY_SCHEMA))

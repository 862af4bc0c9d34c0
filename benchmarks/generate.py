#!/usr/bin/env python3
"""Seeded generator of realistic benchmark data for orderfeeds (DESIGN.md §8).

    python benchmarks/generate.py --seed 1 --orders-lines 2000000 --records 1000000 --out DIR \
        [--kinds flat-cancellation,flat-adjustment,xml-acknowledgement,xml-adjustment]

writes DIR/snapshot.tsv (one row per order line, SPEC §3) and one feed per kind:
DIR/cancellation.txt, DIR/adjustment.txt, DIR/acknowledgement.xml, DIR/adjustment.xml.

What the data looks like
- Snapshot: 1-3 lines per order; marketplaces US (USD, ~75%), UK (GBP), DE/FR/IT/ES
  (EUR) and JP (JPY, whole yen); ~10% AFN; statuses mostly Unshipped / Shipped /
  PartiallyShipped with a few Pending, PendingAvailability, InvoiceUnconfirmed,
  Canceled and Unfulfillable; quantities shipped/cancelled consistent with the status;
  prices with tax, some shipping, gift wrap and promotions; a few lines already partly
  refunded; labels bought on shipped (and a few unshipped) MFN lines; some
  buyer-requested cancellations; merchant ids on ~25% of MFN orders.
- Feeds: `--records` records each (XML: messages; ~10% carry two Items/AdjustedItems
  of one order). About 95% target lines where the record is valid and applies; about
  5% break a format or a rule (see CANCEL_DEFECTS, ADJUST_DEFECTS); about 2% repeat the
  order of an earlier record in the same feed. Valid records take distinct orders while
  the snapshot has eligible ones; when `--records` exceeds that pool, further records
  reuse lines (cancellations: other lines of used orders first; adjustments: smaller
  partial refunds that still fit what was charged), so more keys repeat. The summary
  printed at the end gives the measured share.

Everything is vectorised with polars (no Python loop per row). Random numbers come
from a counter-based generator (splitmix64 of seed, stream and row index) written as
polars expressions, so the output is the same bytes for the same seed and arguments,
whatever the thread count. Only polars is needed (numpy is not used).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

C = pl.col


def _with(frame: pl.DataFrame, *exprs: object) -> pl.DataFrame:
    """with_columns through the lazy engine: it computes a repeated sub-expression once
    (the random-number expressions repeat theirs), which eager with_columns does not."""
    return frame.lazy().with_columns(*exprs).collect()


def _select(frame: pl.DataFrame, *exprs: object) -> pl.DataFrame:
    return frame.lazy().select(*exprs).collect()

KINDS = ("flat-cancellation", "flat-adjustment", "xml-acknowledgement", "xml-adjustment")
FILE_NAMES = {
    "flat-cancellation": "cancellation.txt",
    "flat-adjustment": "adjustment.txt",
    "xml-acknowledgement": "acknowledgement.xml",
    "xml-adjustment": "adjustment.xml",
}
SNAPSHOT_NAME = "snapshot.tsv"

DEFECT_SHARE = 0.05   # records that break a format or a rule
REPEAT_SHARE = 0.02   # records that repeat the order of an earlier record
PAIR_SHARE = 0.12     # XML: orders (with 2+ eligible lines) whose message carries two items
XML_CHUNK = 100_000   # messages rendered and written at a time
FLAT_CHUNK = 500_000  # flat rows rendered and written at a time
BASE_TIME = datetime(2026, 11, 27, 18, 0, 0)  # "now" for purchase dates (UTC)
MERCHANT = "M_BENCHMARK_{seed}"

SNAPSHOT_COLUMNS = (
    "order-id", "order-item-id", "merchant-order-id", "merchant-order-item-id", "order-status",
    "fulfillment-channel", "sales-channel", "purchase-date", "latest-ship-date", "currency",
    "quantity-ordered", "quantity-shipped", "quantity-cancelled",
    "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price", "gift-wrap-tax",
    "item-promotion-discount", "ship-promotion-discount",
    "item-price-refunded", "item-tax-refunded", "shipping-price-refunded", "shipping-tax-refunded",
    "gift-wrap-price-refunded", "gift-wrap-tax-refunded", "item-promotion-reversed", "ship-promotion-reversed",
    "shipping-label-purchased", "buyer-requested-cancel",
)
# internal cents column -> snapshot column (amounts; JPY is stored as yen * 100)
SNAPSHOT_AMOUNTS = {
    "price": "item-price", "tax": "item-tax", "ship": "shipping-price", "shiptax": "shipping-tax",
    "gw": "gift-wrap-price", "gwtax": "gift-wrap-tax", "pdisc": "item-promotion-discount",
    "sdisc": "ship-promotion-discount", "price_ref": "item-price-refunded", "tax_ref": "item-tax-refunded",
    "ship_ref": "shipping-price-refunded", "shiptax_ref": "shipping-tax-refunded",
    "gw_ref": "gift-wrap-price-refunded", "gwtax_ref": "gift-wrap-tax-refunded",
    "pdisc_rev": "item-promotion-reversed", "sdisc_rev": "ship-promotion-reversed",
}

FLAT_CANCELLATION_TEMPLATE = ("TemplateType=OrderCancellation\tVersion=1.0/1.0.3\t"
                              "This row for Amazon.com use only.  Do not modify or delete.")
FLAT_CANCELLATION_HEADER = ("order-id", "cancellation-reason-code", "amazon-order-item-code")
FLAT_ADJUSTMENT_HEADER = (
    "order-id", "order-item-id", "adjustment-reason-code", "currency", "item-price-adj", "item-tax-adj",
    "shipping-price-adj", "shipping-tax-adj", "gift-wrap-price-adj", "gift-wrap-tax-adj",
    "item-promotion-adj", "item-promotion-id", "ship-promotion-adj", "ship-promotion-id", "quantity-cancelled",
)

# ---------------------------------------------------------------------------------------------
# Random numbers: splitmix64 over (seed, stream, row index), as polars UInt64 expressions
# (UInt64 multiplication and addition wrap, as splitmix needs).
# ---------------------------------------------------------------------------------------------
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


def _u64(value: int) -> pl.Expr:
    return pl.lit(value & _M64, dtype=pl.UInt64)


def _mix(x: pl.Expr) -> pl.Expr:
    x = x.xor(x // _u64(1 << 30)) * _u64(_C1)
    x = x.xor(x // _u64(1 << 27)) * _u64(_C2)
    return x.xor(x // _u64(1 << 31))


class Rng:
    """Counter-based random streams: the same (seed, scope, key, index) gives the same number."""

    def __init__(self, seed: int, scope: str = "") -> None:
        self.seed = seed
        self.scope = scope

    def child(self, scope: str) -> Rng:
        return Rng(self.seed, f"{self.scope}/{scope}")

    def salt(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}|{self.scope}|{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def bits(self, key: str, index: pl.Expr) -> pl.Expr:
        """Uniform UInt64 per row."""
        return _mix(index.cast(pl.UInt64) * _u64(_GOLDEN) + _u64(self.salt(key)))

    def uniform(self, key: str, index: pl.Expr) -> pl.Expr:
        """Uniform Float64 in [0, 1)."""
        return (self.bits(key, index) // _u64(1 << 11)).cast(pl.Float64) * (1.0 / (1 << 53))

    def below(self, key: str, index: pl.Expr, n: int | pl.Expr) -> pl.Expr:
        """Integer in [0, n) (n >= 1; an expression may vary per row)."""
        bound = n if isinstance(n, pl.Expr) else pl.lit(n)
        return (self.bits(key, index) % pl.max_horizontal(bound, 1).cast(pl.UInt64)).cast(pl.Int64)

    def chance(self, key: str, index: pl.Expr, p: float) -> pl.Expr:
        return self.uniform(key, index) < p

    def choice(self, key: str, index: pl.Expr, options: list[tuple[object, float]]) -> pl.Expr:
        return _choose(self.uniform(key, index), options)


def _choose(u: pl.Expr, options: list[tuple[object, float]]) -> pl.Expr:
    """A value picked with the given weights from a uniform [0, 1) expression."""
    total = sum(w for _, w in options)
    last = pl.lit(options[-1][0])
    if len(options) == 1:
        return last
    acc = options[0][1] / total
    chain = pl.when(u < acc).then(pl.lit(options[0][0]))
    for value, weight in options[1:-1]:
        acc += weight / total
        chain = chain.when(u < acc).then(pl.lit(value))
    return chain.otherwise(last)


def _feistel(frame: pl.DataFrame, source: str, target: str, a: int, b: int, rng: Rng, key: str) -> pl.DataFrame:
    """A keyed bijection of [0, a*b) (4-round alternating Feistel), for unique random-looking ids."""
    frame = frame.pipe(_with, (C(source).cast(pl.UInt64) // _u64(b)).alias("_fl"),
                               (C(source).cast(pl.UInt64) % _u64(b)).alias("_fr"))
    sizes = (a, b)
    for r in range(4):
        m = sizes[r % 2]
        f = _mix(C("_fr") * _u64(_GOLDEN) + _u64(rng.salt(f"{key}:{r}"))) % _u64(m)
        frame = frame.pipe(_with, C("_fr").alias("_fl"), ((C("_fl") + f) % _u64(m)).alias("_fr"))
    return frame.pipe(_with, (C("_fl") * _u64(b) + C("_fr")).alias(target)).drop("_fl", "_fr")


def _order_ids(frame: pl.DataFrame, index: str, prefix: str, target: str, rng: Rng) -> pl.DataFrame:
    """3-7-7 order ids: marketplace prefix plus a bijection of the order index (unique)."""
    frame = _feistel(frame, index, "_x", 10**7, 10**7, rng, "order-id")
    return frame.pipe(_with, pl.concat_str([
        C(prefix), pl.lit("-"), (C("_x") // _u64(10**7)).cast(pl.String).str.zfill(7),
        pl.lit("-"), (C("_x") % _u64(10**7)).cast(pl.String).str.zfill(7)]).alias(target)).drop("_x")


def _item_codes(frame: pl.DataFrame, index: str, target: str, rng: Rng) -> pl.DataFrame:
    """14-digit item codes, first digit 1-9, unique per line index."""
    frame = _feistel(frame, index, "_x", 9 * 10**6, 10**7, rng, "item-code")
    return frame.pipe(_with, (C("_x") + _u64(10**13)).cast(pl.String).alias(target)).drop("_x")


# ---------------------------------------------------------------------------------------------
# Money helpers (Int64 minor units; JPY is kept as yen * 100 so one code path formats all)
# ---------------------------------------------------------------------------------------------

def _floor_to(x: pl.Expr, unit: pl.Expr) -> pl.Expr:
    return (x // unit) * unit


def _round_to(x: pl.Expr, unit: pl.Expr) -> pl.Expr:
    """Round a Float64 amount in cents to a multiple of `unit` cents (Int64)."""
    return ((x / unit).round(0) * unit).cast(pl.Int64)


def fmt_amount(cents: pl.Expr, whole: pl.Expr | bool = False) -> pl.Expr:
    """Signed amount text: exactly two decimals, or none where `whole` (JPY in feeds)."""
    a = cents.abs()
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    units = (a // 100).cast(pl.String)
    two = pl.concat_str([sign, units, pl.lit("."), (a % 100).cast(pl.String).str.zfill(2)])
    if isinstance(whole, bool):
        return pl.concat_str([sign, units]) if whole else two
    return pl.when(whole).then(pl.concat_str([sign, units])).otherwise(two)


# ---------------------------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------------------------

MARKETS = pl.DataFrame({
    "m": [0, 1, 2, 3, 4, 5, 6],
    "weight": [75.0, 8.0, 6.0, 2.5, 2.0, 1.5, 5.0],
    "currency": ["USD", "GBP", "EUR", "EUR", "EUR", "EUR", "JPY"],
    "sales_channel": ["Amazon.com", "Amazon.co.uk", "Amazon.de", "Amazon.fr", "Amazon.it", "Amazon.es",
                      "Amazon.co.jp"],
    "prefixes": [["111", "112", "113", "114"], ["202", "203", "204", "205", "206"],
                 ["302", "303", "304", "305", "306"], ["302", "303", "304", "305", "306"],
                 ["302", "303", "304", "305", "306"], ["302", "303", "304", "305", "306"],
                 ["249", "250", "503"]],
    "offset_h": [0, 0, 1, 1, 1, 1, 9],
    "offset": ["+00:00", "+00:00", "+01:00", "+01:00", "+01:00", "+01:00", "+09:00"],
    "vat": [0.0, 0.20, 0.19, 0.20, 0.22, 0.21, 0.10],
    "mprefix": ["US", "UK", "DE", "FR", "IT", "ES", "JP"],
})
US_SALES_TAX = [(0.0, 25), (0.06, 15), (0.07, 15), (0.0725, 10), (0.08, 15), (0.0825, 10), (0.0875, 10)]
STATUS_MFN = [("Unshipped", 52), ("Shipped", 30), ("PartiallyShipped", 6), ("InvoiceUnconfirmed", 1.5),
              ("Pending", 3.5), ("PendingAvailability", 0.5), ("Canceled", 6), ("Unfulfillable", 0.5)]
STATUS_AFN = [("Shipped", 62), ("Unshipped", 22), ("PartiallyShipped", 2), ("Pending", 6), ("Canceled", 5),
              ("Unfulfillable", 3)]
PENDING = ("Pending", "PendingAvailability")
SHIPPED_STATES = ("Shipped", "PartiallyShipped", "InvoiceUnconfirmed")
OPEN_STATES = ("Unshipped", "PartiallyShipped")


@dataclass
class Snapshot:
    """The generated order lines (internal columns, amounts in cents) and the id spaces used."""

    lines: pl.DataFrame
    n_orders: int
    n_lines: int
    seed: int


def build_snapshot(n_lines: int, seed: int) -> Snapshot:
    """Order lines with all the columns the feeds need (see snapshot_text for the file)."""
    if n_lines < 1:
        raise ValueError("--orders-lines must be at least 1")
    if n_lines > 80_000_000:
        raise ValueError("--orders-lines above 80,000,000 is not supported")
    rng = Rng(seed, "snapshot")
    ids = Rng(seed, "ids")
    # Orders: 1-3 lines each; cut so the lines add up to exactly n_lines.
    orders = pl.DataFrame({"oi": pl.int_range(n_lines + 1, eager=True)})
    orders = orders.pipe(_with, rng.choice("lines", C("oi"), [(1, 72), (2, 20), (3, 8)]).cast(pl.Int64).alias("nl"))
    orders = orders.pipe(_with, C("nl").cum_sum().alias("_end"))
    orders = (orders.filter(C("_end") - C("nl") < n_lines)
              .pipe(_with, pl.min_horizontal(C("nl"), n_lines - (C("_end") - C("nl"))).alias("nl"))
              .drop("_end"))
    weights = MARKETS.get_column("weight").to_list()
    orders = orders.pipe(_with,
        rng.choice("market", C("oi"), [(m, w) for m, w in enumerate(weights)]).cast(pl.Int64).alias("m"),
        rng.chance("afn", C("oi"), 0.10).alias("afn"),
    )
    orders = orders.join(MARKETS.drop("weight"), on="m", how="left", maintain_order="left")
    status = (pl.when(C("afn")).then(rng.choice("status-afn", C("oi"), STATUS_AFN))
              .otherwise(rng.choice("status-mfn", C("oi"), STATUS_MFN)))
    orders = orders.pipe(_with,
        status.alias("status0"),
        C("prefixes").list.get(rng.below("prefix", C("oi"), C("prefixes").list.len())).alias("prefix"),
        pl.when(C("m") == 0).then(rng.choice("us-tax", C("oi"), US_SALES_TAX)).otherwise(C("vat")).alias("rate"),
        (C("afn") & rng.chance("mcf", C("oi"), 0.10)).alias("mcf"),
    )
    age = (pl.when(C("status0").is_in(("Unshipped",) + PENDING)).then(rng.below("age", C("oi"), 3 * 86400))
           .when(C("status0") == "PartiallyShipped").then(86400 + rng.below("age", C("oi"), 4 * 86400))
           .otherwise(2 * 86400 + rng.below("age", C("oi"), 28 * 86400)))
    orders = orders.pipe(_with,
        (pl.lit(BASE_TIME) - pl.duration(seconds=age) + pl.duration(hours=C("offset_h"))).alias("_local"))
    orders = orders.pipe(_with,
        pl.concat_str([C("_local").dt.strftime("%Y-%m-%dT%H:%M:%S"), C("offset")]).alias("purchase_date"),
        pl.when(~C("afn")).then(pl.concat_str([
            (C("_local").dt.date() + pl.duration(days=2 + rng.below("ship-days", C("oi"), 2))).dt.strftime("%Y-%m-%d"),
            pl.lit("T23:59:59"), C("offset")])).alias("latest_ship_date"),
        pl.when(C("mcf")).then(pl.lit("Non-Amazon")).otherwise(C("sales_channel")).alias("sales_channel"),
        pl.when(~C("afn") & rng.chance("moid", C("oi"), 0.25))
        .then(pl.concat_str([C("mprefix"), pl.lit("-"), (C("oi") + 1_000_001).cast(pl.String)])).alias("moid"),
    ).drop("_local", "prefixes", "vat", "offset_h", "offset")
    orders = _order_ids(orders, "oi", "prefix", "order_id", ids)
    n_orders = orders.height

    lines = orders.pipe(_with, pl.int_ranges(0, C("nl")).alias("pos")).explode("pos")
    lines = lines.pipe(_with, pl.int_range(pl.len(), dtype=pl.Int64).alias("li"), C("pos").cast(pl.Int64))
    L = C("li")
    lines = lines.pipe(_with,
        rng.choice("qty", L, [(1, 78), (2, 14), (3, 5), (4, 2), (5, 1)]).cast(pl.Int64).alias("qo"),
        (C("currency") == "JPY").alias("zero_dec"),
    )
    lines = lines.pipe(_with,
        pl.when(C("zero_dec")).then(pl.lit(100, pl.Int64)).otherwise(pl.lit(1, pl.Int64)).alias("mu"),
        # PartiallyShipped needs two units somewhere in the order.
        pl.when((C("status0") == "PartiallyShipped") & (C("qo").sum().over("oi") < 2))
        .then(pl.lit("Unshipped")).otherwise(C("status0")).alias("status"),
    ).drop("status0")
    st = C("status")
    part_cancel = (st == "Shipped") & (C("qo") >= 2) & rng.chance("part-cancel", L, 0.05)
    qs = (pl.when(st.is_in(("Shipped", "InvoiceUnconfirmed")))
          .then(C("qo") - pl.when(part_cancel).then(1).otherwise(0))
          .when((st == "PartiallyShipped") & (C("nl") > 1)).then(pl.when(C("pos") == 0).then(C("qo")).otherwise(0))
          .when(st == "PartiallyShipped").then(1 + rng.below("ps-qty", L, C("qo") - 1))
          .otherwise(0))
    qc = pl.when(st == "Canceled").then(C("qo")).when(part_cancel).then(1).otherwise(0)
    lines = lines.pipe(_with, qs.cast(pl.Int64).alias("qs"), qc.cast(pl.Int64).alias("qc"))
    label = (pl.when(C("afn")).then(False)
             .when(C("qs") > 0).then(rng.chance("label", L, 0.97))
             .when(st == "Unshipped").then(rng.chance("label", L, 0.07))
             .when(st == "PartiallyShipped").then(rng.chance("label", L, 0.12))
             .otherwise(False))
    brc = (pl.when(st == "Canceled").then(rng.chance("brc", C("oi"), 0.45))
           .when(st == "Unshipped").then(rng.chance("brc", C("oi"), 0.03))
           .otherwise(rng.chance("brc", C("oi"), 0.005)))
    lines = lines.pipe(_with, label.alias("label"), brc.alias("brc"),
                               (C("qo") - C("qs") - C("qc")).alias("open"))

    # Prices (totals for the line). USD/EUR/GBP: log-uniform 3-300 with .99/.00/.49/.95 endings;
    # JPY: 300-30,000 yen ending in 80 or 00.
    lu = rng.uniform("price", L)
    whole = (lu * (5.7038 - 1.0986) + 1.0986).exp().floor().cast(pl.Int64)     # ln 300, ln 3
    ending = rng.choice("ending", L, [(99, 55), (0, 15), (49, 15), (95, 15)]).cast(pl.Int64)
    yen = (lu * (10.309 - 5.7038) + 5.7038).exp().floor().cast(pl.Int64)      # ln 30000, ln 300
    yen_end = rng.choice("yen-ending", L, [(80, 60), (0, 40)]).cast(pl.Int64)
    unit_price = (pl.when(C("zero_dec")).then(((yen // 100) * 100 + yen_end) * 100)
                  .otherwise(whole * 100 + ending))
    unit_price = pl.when(C("currency") == "GBP").then(_round_to(unit_price * 0.85, pl.lit(1))).otherwise(unit_price)
    fee = (pl.when(C("zero_dec")).then(rng.choice("fee", L, [(35000, 40), (50000, 40), (70000, 20)]))
           .when(C("currency") == "EUR").then(rng.choice("fee", L, [(299, 40), (399, 35), (490, 25)]))
           .when(C("currency") == "GBP").then(rng.choice("fee", L, [(299, 40), (349, 35), (449, 25)]))
           .otherwise(rng.choice("fee", L, [(399, 35), (499, 35), (599, 20), (799, 10)]))).cast(pl.Int64)
    paid_shipping = pl.when(C("pos") == 0).then(rng.chance("ship", L, 0.40)).otherwise(rng.chance("ship", L, 0.15))
    wrap = (pl.when(C("zero_dec")).then(rng.choice("wrap", L, [(30000, 50), (50000, 50)]))
            .otherwise(rng.choice("wrap", L, [(299, 40), (399, 40), (499, 20)]))).cast(pl.Int64)
    lines = lines.pipe(_with,
        (unit_price * C("qo")).alias("price"),
        pl.when(paid_shipping).then(fee).otherwise(0).cast(pl.Int64).alias("ship"),
        pl.when(rng.chance("gift", L, 0.02)).then(wrap * C("qo")).otherwise(0).cast(pl.Int64).alias("gw"),
    )
    u = C("mu")  # minor unit in cents: 1, or 100 for JPY (whole yen)
    lines = lines.pipe(_with,
        _round_to(C("price") * C("rate"), u).alias("tax"),
        _round_to(C("ship") * C("rate"), u).alias("shiptax"),
        _round_to(C("gw") * C("rate"), u).alias("gwtax"),
        pl.when(rng.chance("promo", L, 0.07))
        .then(pl.max_horizontal(u, _round_to(C("price") * rng.choice("promo-pct", L, [(0.10, 50), (0.15, 30), (0.20, 20)]), u)))
        .otherwise(0).cast(pl.Int64).alias("pdisc"),
        pl.when((C("ship") > 0) & rng.chance("ship-promo", L, 0.25)).then(C("ship")).otherwise(0)
        .cast(pl.Int64).alias("sdisc"),
        # A few shipped lines were already partly refunded (item price only).
        pl.when((C("qs") > 0) & rng.chance("refunded", L, 0.05))
        .then(_floor_to((C("price") * rng.choice("refunded-pct", L, [(10, 50), (20, 30), (50, 20)])) // 100, u))
        .otherwise(0).cast(pl.Int64).alias("price_ref"),
    )
    zero = pl.lit(0, pl.Int64)
    lines = lines.pipe(_with, [zero.alias(c) for c in ("tax_ref", "ship_ref", "shiptax_ref", "gw_ref",
                                                               "gwtax_ref", "pdisc_rev", "sdisc_rev")])
    lines = _item_codes(lines, "li", "item_code", ids)
    lines = lines.pipe(_with,
        pl.when(C("moid").is_not_null())
        .then(pl.concat_str([C("moid"), pl.lit("-"), (C("pos") + 1).cast(pl.String)])).alias("miid"),
        C("afn").not_().alias("mfn"),
    )
    return Snapshot(lines=lines, n_orders=n_orders, n_lines=n_lines, seed=seed)


FEED_LINE_COLUMNS = (
    "li", "oi", "pos", "nl", "order_id", "item_code", "moid", "miid", "status", "afn", "mfn", "currency",
    "zero_dec", "mu", "qo", "qs", "qc", "open", "label", "brc", "price", "tax", "ship", "shiptax", "gw", "gwtax",
    "pdisc", "sdisc", "price_ref", "tax_ref", "ship_ref", "shiptax_ref", "gw_ref", "gwtax_ref", "pdisc_rev",
    "sdisc_rev",
)


def for_feeds(snapshot: Snapshot) -> Snapshot:
    """The same snapshot with only the columns the feed builders read (less memory, faster gathers)."""
    return Snapshot(lines=snapshot.lines.select(FEED_LINE_COLUMNS).rechunk(), n_orders=snapshot.n_orders,
                    n_lines=snapshot.n_lines, seed=snapshot.seed)


def snapshot_text(lines: pl.DataFrame) -> pl.DataFrame:
    """The snapshot file's columns (all String), in SPEC §3 order."""
    exprs = [
        C("order_id").alias("order-id"), C("item_code").alias("order-item-id"),
        C("moid").fill_null("").alias("merchant-order-id"), C("miid").fill_null("").alias("merchant-order-item-id"),
        C("status").alias("order-status"),
        pl.when(C("afn")).then(pl.lit("AFN")).otherwise(pl.lit("MFN")).alias("fulfillment-channel"),
        C("sales_channel").alias("sales-channel"), C("purchase_date").alias("purchase-date"),
        C("latest_ship_date").fill_null("").alias("latest-ship-date"), C("currency"),
        C("qo").cast(pl.String).alias("quantity-ordered"), C("qs").cast(pl.String).alias("quantity-shipped"),
        C("qc").cast(pl.String).alias("quantity-cancelled"),
        *[fmt_amount(C(src)).alias(dst) for src, dst in SNAPSHOT_AMOUNTS.items()],
        pl.when(C("label")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("shipping-label-purchased"),
        pl.when(C("brc")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("buyer-requested-cancel"),
    ]
    return _select(lines, exprs).select(SNAPSHOT_COLUMNS)


def write_snapshot(snapshot: Snapshot, path: Path) -> None:
    with path.open("wb") as out:
        for start in range(0, max(snapshot.lines.height, 1), FLAT_CHUNK):
            part = snapshot_text(snapshot.lines.slice(start, FLAT_CHUNK))
            part.write_csv(out, separator="\t", quote_style="never", include_header=start == 0)


# ---------------------------------------------------------------------------------------------
# Picking targets and arranging records
# ---------------------------------------------------------------------------------------------

def pick_units(pool: pl.DataFrame, n: int, rng: Rng, key: str, pair_share: float = 0.0) -> pl.DataFrame:
    """`n` record units (one line, or two lines of one order) from the eligible `pool`.

    Distinct orders come first (one unit per order, in random order), then second units
    of the same orders, and so on; when n exceeds the pool the units are cycled (`cycle`
    > 0). Returns one row per line: unit (0..n-1), item (position in the unit), cycle,
    picks (how many units use that line) and the pool's columns. Works on the (li, oi)
    keys only and fetches the pool's rows by position at the end.
    """
    if n <= 0 or pool.height == 0:
        return pool.clear().pipe(_with, [pl.lit(0, pl.Int64).alias(c) for c in ("unit", "item", "cycle", "picks")])
    keys = pool.select("oi", rng.bits(f"{key}:r", C("li")).alias("_r"),
                       pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    # Rank of each line inside its order (random order), without a window: sort, then
    # subtract the row where the order starts.
    keys = keys.sort("oi", "_r", "_row").pipe(_with, pl.int_range(pl.len(), dtype=pl.Int64).alias("_pos"))
    keys = keys.pipe(_with, pl.when(C("oi") != C("oi").shift(1, fill_value=-1)).then(C("_pos")).forward_fill()
                     .alias("_start"))
    keys = keys.pipe(_with, (C("_pos") - C("_start")).alias("_rank"))
    if pair_share > 0:
        n_in_order = pl.len().over("oi")
        pair = (rng.uniform(f"{key}:pair", C("oi")) < pair_share) & (n_in_order >= 2)
    else:
        pair = pl.lit(False)
    keys = keys.pipe(_with, pair.alias("_pair"))
    keys = keys.pipe(_with, pl.when(C("_pair")).then(C("_rank") // 2).otherwise(C("_rank")).alias("_chunk"),
                     pl.when(C("_pair")).then(C("_rank") % 2).otherwise(0).cast(pl.Int64).alias("item"))
    # A unit is (order, chunk); its first line (item 0) carries the unit's random key.
    heads = keys.filter(C("item") == 0).sort("_chunk", "_r", "oi").select(
        "oi", "_chunk", pl.int_range(pl.len(), dtype=pl.Int64).alias("_u"))
    nu = heads.height
    take = pl.DataFrame({"unit": pl.int_range(n, eager=True, dtype=pl.Int64)})
    take = take.pipe(_with, (C("unit") % nu).alias("_u"), (C("unit") // nu).alias("cycle"))
    take = take.join(heads, on="_u", how="left", maintain_order="left")
    items = (take.join(keys.select("oi", "_chunk", "item", "_row"), on=["oi", "_chunk"], how="inner")
             .sort("unit", "item").select("unit", "item", "cycle", "_row"))
    rows = pool.select(pl.all().gather(items.get_column("_row")))
    items = pl.concat([items.drop("_row"), rows], how="horizontal").rechunk()
    return items.pipe(_with, pl.len().over("li").cast(pl.Int64).alias("picks"))


def sample_lines(pool: pl.DataFrame, n: int, rng: Rng, key: str) -> pl.DataFrame:
    """`n` lines drawn uniformly with replacement from `pool` (for rule-breaking records)."""
    idx = pl.DataFrame({"_j": pl.int_range(n, eager=True, dtype=pl.Int64)})
    idx = idx.pipe(_with, rng.below(key, C("_j"), pool.height).alias("_g"))
    return pool.select(pl.all().gather(idx.get_column("_g")))


def arrange(items: pl.DataFrame, n_repeats: int, rng: Rng,
            repeat: Callable[[pl.DataFrame, pl.Expr, Rng], pl.DataFrame]) -> pl.DataFrame:
    """Shuffle units into file order and add `n_repeats` units that repeat an earlier good unit's order.

    Adds `seq` (0-based position of the unit in the file) and `n_items` (items in the unit).
    The order is worked out on a narrow index frame; the wide rows are gathered once, and
    `repeat(frame, is_repeat, rng)` then changes the copied rows.
    """
    items = items.rechunk()  # built from many parts; gathers and joins are much faster on one chunk
    # The defect flag is the same on every item of a unit, so item 0 speaks for the unit.
    units = (items.filter(C("item") == 0).select("unit", C("defect").is_null().alias("_good"))
             .sort("unit").pipe(_with, rng.bits("slot", C("unit")).alias("_k"))
             .sort("_k", "unit").pipe(_with, pl.int_range(pl.len(), dtype=pl.Int64).alias("_slot")))
    m = units.height
    # Units are numbered 0..m-1, so a unit's slot is found by position.
    slot_of = units.sort("unit").get_column("_slot")
    assert slot_of.len() == int(items.get_column("unit").max()) + 1, "units must be numbered densely from 0"
    index = items.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"), "unit", "item")
    index = index.with_columns(slot_of.gather(index.get_column("unit")).cast(pl.Int64).alias("_slot"),
                               pl.lit(0, pl.Int64).alias("_rep"), pl.lit(0, pl.Int64).alias("_tb"))
    parts = [index]
    good = units.filter(C("_good")).sort("_slot")
    if n_repeats > 0 and good.height > 0:
        reps = pl.DataFrame({"_tb": pl.int_range(n_repeats, eager=True, dtype=pl.Int64)})
        reps = reps.pipe(_with, rng.below("rep-src", C("_tb"), good.height).alias("_g"))
        src = good.select(C("unit").gather(reps.get_column("_g")).alias("_src"),
                          C("_slot").gather(reps.get_column("_g")).alias("_src_slot"))
        reps = pl.concat([reps, src], how="horizontal")
        offset = (pl.when(rng.chance("rep-near", C("_tb"), 0.5)).then(1 + rng.below("rep-off", C("_tb"), 20))
                  .otherwise(1 + rng.below("rep-far", C("_tb"), m)))
        reps = reps.pipe(_with, (C("_src_slot") + offset).alias("_slot"), (m + C("_tb")).alias("unit"),
                         pl.lit(1, pl.Int64).alias("_rep"))
        copied = (index.select("_row", "item", C("unit").alias("_src"))
                  .join(reps.select("_src", "unit", "_slot", "_rep", "_tb"), on="_src", how="inner")
                  .select(index.columns))
        parts.append(copied)
    order = pl.concat(parts, how="vertical").sort("_slot", "_rep", "_tb", "item")
    order = order.pipe(_with, ((C("item") == 0).cum_sum() - 1).cast(pl.Int64).alias("seq"))
    order = order.pipe(_with, pl.len().over("seq").cast(pl.Int64).alias("n_items"))
    out = pl.concat([items.drop("unit").select(pl.all().gather(order.get_column("_row"))),
                     order.select("unit", "seq", "n_items", "_rep")], how="horizontal")
    return repeat(out, C("_rep") == 1, rng.child("repeat")).drop("_rep")


def _defect_counts(n_bad: int, rng: Rng, table: list[tuple[str, float]]) -> dict[str, int]:
    """How many records of each defect type (multinomial draw, deterministic)."""
    if n_bad <= 0:
        return {}
    draws = pl.DataFrame({"_j": pl.int_range(n_bad, eager=True)})
    draws = draws.select(rng.choice("defect-type", C("_j"), table).alias("defect"))
    counts = dict(draws.group_by("defect").len().iter_rows())
    return {name: int(counts.get(name, 0)) for name, _ in table}


def _assign_format_defects(picks: pl.DataFrame, table: list[tuple[str, float]], counts: dict[str, int]
                           ) -> pl.DataFrame:
    """The first units of a pick become the bases of the format defects (the rest stay valid)."""
    names = [name for name, _ in table for _ in range(counts.get(name, 0))]
    lookup = pl.DataFrame({"unit": pl.int_range(len(names), eager=True, dtype=pl.Int64),
                           "defect": pl.Series(names, dtype=pl.String)})
    return picks.join(lookup, on="unit", how="left", maintain_order="left")


def _unknown_orders(snap: Snapshot, n: int, rng: Rng, start_unit: int) -> pl.DataFrame:
    """Rows for orders that are not in the snapshot (valid ids, unused index range)."""
    frame = pl.DataFrame({"_j": pl.int_range(n, eager=True, dtype=pl.Int64)})
    frame = frame.pipe(_with, (snap.n_orders + 1 + C("_j") * 7 + rng.below("gap", C("_j"), 7)).alias("_oi"),
                               (snap.n_lines + 1 + C("_j") * 5 + rng.below("gap-li", C("_j"), 5)).alias("_li"),
                               pl.lit("111").alias("_prefix"))
    ids = Rng(snap.seed, "ids")
    frame = _order_ids(frame, "_oi", "_prefix", "order_id", ids)
    frame = _item_codes(frame, "_li", "item_code", ids)
    return frame.pipe(_with, (start_unit + C("_j")).alias("unit"), pl.lit(0, pl.Int64).alias("item"))


def _with_unknown_items(frame: pl.DataFrame, snap: Snapshot, rng: Rng) -> pl.DataFrame:
    """Replace item_code with 14-digit codes that no line of the snapshot has."""
    frame = frame.pipe(_with, (snap.n_lines + 3 + C("unit") * 3 + rng.below("unknown-item", C("unit"), 3))
                               .alias("_uli"))
    return _item_codes(frame.drop("item_code"), "_uli", "item_code", Rng(snap.seed, "ids")).drop("_uli")


# ---------------------------------------------------------------------------------------------
# Cancellations (flat cancellation feed, XML OrderAcknowledgement)
# ---------------------------------------------------------------------------------------------

CANCEL_REASON_MIX = [("NoInventory", 42), ("BuyerCanceled", 5), ("ShippingAddressUndeliverable", 9),
                     ("CustomerExchange", 6), ("GeneralAdjustment", 9), ("PricingError", 7),
                     ("CarrierCoverageFailure", 4), ("CannotVerifyInformation", 3),
                     ("RiskAssessmentInformationNotValid", 3), ("RejectOrder", 4), ("WeatherDelay", 2),
                     ("CarrierCreditDecision", 1), ("MerchandiseNotReceived", 1), ("CustomerReturn", 1)]
# (name, weight): "rule" defects pick a line in the wrong state; "format" ones break a field.
CANCEL_RULE_DEFECTS = [("order-not-found", 14), ("item-not-found", 7), ("already-shipped", 15),
                       ("label-purchased", 8), ("fulfilled-by-amazon", 8), ("order-pending", 6),
                       ("already-cancelled", 6), ("order-unfulfillable", 3)]
FLAT_CANCEL_FORMAT_DEFECTS = [("bad-order-id", 9), ("bad-item-code", 5), ("bad-reason", 6), ("incomplete-row", 6),
                              ("missing-order-id", 3), ("ragged-row", 3)]
XML_CANCEL_RULE_EXTRA = [("quantity-exceeds-open", 4)]
XML_ACK_FORMAT_DEFECTS = [("bad-order-id", 8), ("bad-item-code", 5), ("bad-reason", 6), ("bad-status-code", 5),
                          ("duplicate-message-id", 4), ("zero-quantity", 3)]
CANCEL_DEFECT_POOLS: dict[str, pl.Expr] = {
    "item-not-found": C("mfn") & (C("status") == "Unshipped"),
    "already-shipped": C("mfn") & (C("qs") > 0) & C("status").is_in(SHIPPED_STATES),
    "label-purchased": C("mfn") & (C("status") == "Unshipped") & C("label"),
    "fulfilled-by-amazon": C("afn") & C("status").is_in(("Unshipped", "Shipped")),
    "order-pending": C("status").is_in(PENDING),
    "already-cancelled": C("mfn") & (C("status") == "Canceled"),
    "order-unfulfillable": C("mfn") & (C("status") == "Unfulfillable"),
}
CANCEL_ITEM_COLUMNS = ["unit", "item", "oi", "li", "order_id", "item_code", "moid", "miid", "status_code", "reason",
                       "qty", "defect"]


def _cancel_ok(lines: pl.DataFrame) -> pl.DataFrame:
    """Flag the lines a cancellation can apply to, and orders a whole-order cancel can."""
    ok = (C("mfn") & C("status").is_in(OPEN_STATES) & (C("qs") == 0) & (C("qc") < C("qo")) & ~C("label"))
    return lines.pipe(_with, ok.alias("cancel_ok")).pipe(_with,
        (C("cancel_ok").all().over("oi") & (C("status") == "Unshipped")).alias("order_cancel_ok"))


def build_cancellations(snap: Snapshot, n: int, seed: int, xml: bool) -> pl.DataFrame:
    """Records of a flat cancellation feed (xml=False) or an OrderAcknowledgement feed (xml=True)."""
    rng = Rng(seed, "acknowledgement" if xml else "cancellation")
    lines = _cancel_ok(snap.lines)
    n_rep = round(n * REPEAT_SHARE)
    n_bad = round(n * DEFECT_SHARE)
    n_base = n - n_rep
    rule_table = CANCEL_RULE_DEFECTS + (XML_CANCEL_RULE_EXTRA if xml else [])
    format_table = XML_ACK_FORMAT_DEFECTS if xml else FLAT_CANCEL_FORMAT_DEFECTS
    counts = _defect_counts(n_bad, rng, rule_table + format_table)
    n_format = sum(counts.get(name, 0) for name, _ in format_table)
    n_good = max(n_base - n_bad, 0)

    # Valid records and the bases of format defects: distinct eligible orders first.
    picks = pick_units(lines.filter(C("cancel_ok")), n_good + n_format, rng, "good", PAIR_SHARE if xml else 0.0)
    picks = _assign_format_defects(picks, format_table, counts)
    picks = picks.pipe(_with, C("unit").n_unique().over("oi").alias("_order_units"))
    U = C("unit")
    reason = (pl.when(C("brc") & rng.chance("buyer", U, 0.85)).then(pl.lit("BuyerCanceled"))
              .otherwise(rng.choice("reason", U, CANCEL_REASON_MIX)))
    whole_ok = C("order_cancel_ok") & (C("_order_units") == 1) & (C("n_in_unit") == 1) & C("defect").is_null()
    if xml:
        kind = (pl.when(C("defect").is_not_null()).then(pl.lit("item"))
                .when(C("cycle") > 0).then(pl.lit("success"))
                .otherwise(rng.choice("kind", U, [("success", 55), ("item", 37), ("order", 8)])))
        kind = pl.when((kind == "order") & ~whole_ok).then(pl.lit("item")).otherwise(kind)
    else:
        kind = pl.when(whole_ok & rng.chance("whole", U, 0.15)).then(pl.lit("order")).otherwise(pl.lit("item"))
    picks = picks.pipe(_with, pl.len().over("unit").alias("n_in_unit"))
    picks = picks.pipe(_with, kind.alias("_kind"))
    merchant_order = pl.coalesce(C("moid"), pl.concat_str([pl.lit("SO-"), (C("oi") + 1_000_001).cast(pl.String)]))
    quantity = (pl.when((C("_kind") == "item") & rng.chance("qty", U, 0.15))
                .then(pl.when(rng.chance("qty-all", U, 0.5)).then(C("open"))
                      .otherwise(1 + rng.below("qty-some", U, C("open")))))
    good = picks.pipe(_with,
        pl.when(C("_kind") == "order").then(pl.lit(None, pl.String)).otherwise(C("item_code")).alias("item_code"),
        pl.when(C("_kind") == "success").then(pl.lit("Success")).otherwise(pl.lit("Failure")).alias("status_code"),
        pl.when(C("_kind") == "item").then(reason).alias("reason"),
        pl.when(C("_kind") == "success").then(merchant_order).alias("moid"),
        pl.when(C("_kind") == "success")
        .then(pl.concat_str([merchant_order, pl.lit("-"), (C("pos") + 1).cast(pl.String)])).alias("miid"),
        (quantity if xml else pl.lit(None, pl.Int64)).cast(pl.Int64).alias("qty"),
    )
    parts = [good.select(CANCEL_ITEM_COLUMNS)]

    # Records that break a rule: lines in the wrong state, or orders and items that do not exist.
    next_unit = n_good + n_format
    for name, _ in rule_table:
        k = counts.get(name, 0)
        if k == 0:
            continue
        sub = rng.child(name)
        pool = lines.filter(CANCEL_DEFECT_POOLS.get(name, C("cancel_ok"))) if name != "order-not-found" else None
        if pool is None or pool.height == 0:
            rows = _unknown_orders(snap, k, sub, next_unit).pipe(_with,
                pl.lit(None, pl.Int64).alias("oi"), pl.lit(None, pl.Int64).alias("li"),
                pl.lit(1, pl.Int64).alias("open"))
        else:
            rows = sample_lines(pool, k, sub, "line").pipe(_with,
                (next_unit + pl.int_range(pl.len(), dtype=pl.Int64)).alias("unit"), pl.lit(0, pl.Int64).alias("item"))
            if name == "item-not-found":
                rows = _with_unknown_items(rows, snap, sub)
        U2 = C("unit")
        whole = (pl.lit(name) == "already-shipped") & sub.chance("whole", U2, 0.3)
        rows = rows.pipe(_with,
            pl.when(whole).then(pl.lit(None, pl.String)).otherwise(C("item_code")).alias("item_code"),
            pl.lit(None, pl.String).alias("moid"), pl.lit(None, pl.String).alias("miid"),
            pl.lit("Failure").alias("status_code"),
            pl.when(whole).then(pl.lit(None, pl.String)).otherwise(sub.choice("reason", U2, CANCEL_REASON_MIX))
            .alias("reason"),
            (pl.when(pl.lit(name) == "quantity-exceeds-open").then(C("open") + 1 + sub.below("extra", U2, 2))
             .when(pl.lit(xml) & sub.chance("qty", U2, 0.1)).then(pl.lit(1)))
            .cast(pl.Int64).alias("qty"),
            pl.lit(None, pl.String).alias("defect"),
        )
        parts.append(rows.select(CANCEL_ITEM_COLUMNS).pipe(_with, pl.lit(name).alias("defect")))
        next_unit += k
    items = pl.concat([p.cast({"oi": pl.Int64, "li": pl.Int64, "qty": pl.Int64}) for p in parts], how="vertical",
                      rechunk=True)
    pool = rows = None
    del parts, good, picks, lines, pool, rows  # only `items` needs to stay alive while it is arranged
    return arrange(items, n_rep, rng, _repeat_cancellation)


def _repeat_cancellation(items: pl.DataFrame, is_repeat: pl.Expr, rng: Rng) -> pl.DataFrame:
    """A later record for the same order: same lines, sometimes another reason."""
    return items.pipe(_with,
        pl.when(is_repeat & C("reason").is_not_null() & rng.chance("new-reason", C("unit"), 0.5))
        .then(rng.choice("reason", C("unit"), CANCEL_REASON_MIX)).otherwise(C("reason")).alias("reason"))


def render_flat_cancellation(items: pl.DataFrame) -> pl.DataFrame:
    d = C("defect")
    order_id = (pl.when(d == "bad-order-id").then(C("order_id").str.replace("-", "", literal=True))
                .when(d == "missing-order-id").then(pl.lit("")).otherwise(C("order_id")))
    reason = (pl.when(d == "bad-reason").then(
        pl.when(C("seq") % 3 == 0).then(pl.lit("OutOfStock")).when(C("seq") % 3 == 1).then(pl.lit("noinventory"))
        .otherwise(pl.lit("Buyer Canceled")))
        .otherwise(C("reason")).fill_null(""))
    item = (pl.when(d == "bad-item-code").then(C("item_code").str.slice(0, 13))
            .when(d == "incomplete-row").then(pl.lit(""))
            .when(d == "ragged-row").then(pl.concat_str([C("item_code"), pl.lit("\t")]))
            .otherwise(C("item_code")).fill_null(""))
    return _select(items, order_id.alias("order-id"), reason.alias("cancellation-reason-code"),
                        item.alias("amazon-order-item-code"))


def _message_id(rng: Rng) -> pl.Expr:
    """MessageID: the message's position, or an earlier one for duplicate-message-id defects."""
    seq = C("seq")
    earlier = seq - rng.below("dup-id", seq, pl.min_horizontal(seq, 20))
    return pl.when((C("defect") == "duplicate-message-id") & (seq > 0)).then(earlier).otherwise(seq + 1).cast(pl.String)


def _opt(prefix: str, value: pl.Expr, suffix: str) -> pl.Expr:
    """`prefix value suffix`, or null (skipped by concat_str(ignore_nulls=True)) when value is null."""
    return pl.concat_str([pl.lit(prefix), value, pl.lit(suffix)])


def render_acknowledgement(items: pl.DataFrame, rng: Rng) -> pl.Expr:
    """One text fragment per item row; concatenated in order they make the Messages."""
    d = C("defect")
    order_id = pl.when(d == "bad-order-id").then(C("order_id").str.replace("-", "", literal=True)).otherwise(C("order_id"))
    status = pl.when(d == "bad-status-code").then(pl.lit("Cancelled")).otherwise(C("status_code"))
    item_code = pl.when(d == "bad-item-code").then(C("item_code").str.slice(0, 13)).otherwise(C("item_code"))
    reason = pl.when(d == "bad-reason").then(pl.lit("OutOfStock")).otherwise(C("reason"))
    qty = pl.when(d == "zero-quantity").then(pl.lit(0, pl.Int64)).otherwise(C("qty")).cast(pl.String)
    head = pl.concat_str([
        pl.lit("  <Message>\n    <MessageID>"), _message_id(rng),
        pl.lit("</MessageID>\n    <OrderAcknowledgement>\n      <AmazonOrderID>"), order_id,
        pl.lit("</AmazonOrderID>\n"), _opt("      <MerchantOrderID>", C("moid"), "</MerchantOrderID>\n"),
        pl.lit("      <StatusCode>"), status, pl.lit("</StatusCode>\n")], ignore_nulls=True)
    item = pl.when(C("item_code").is_not_null()).then(pl.concat_str([
        pl.lit("      <Item>\n        <AmazonOrderItemCode>"), item_code, pl.lit("</AmazonOrderItemCode>\n"),
        _opt("        <MerchantOrderItemID>", C("miid"), "</MerchantOrderItemID>\n"),
        _opt("        <CancelReason>", reason, "</CancelReason>\n"),
        _opt("        <Quantity>", qty, "</Quantity>\n"),
        pl.lit("      </Item>\n")], ignore_nulls=True))
    tail = pl.lit("    </OrderAcknowledgement>\n  </Message>\n")
    return pl.concat_str([pl.when(C("item") == 0).then(head), item,
                          pl.when(C("item") == C("n_items") - 1).then(tail)], ignore_nulls=True)


# ---------------------------------------------------------------------------------------------
# Adjustments (flat adjustment feed, XML OrderAdjustment)
# ---------------------------------------------------------------------------------------------

RETURN_REASONS = [("CustomerReturn", 80), ("DifferentItem", 6), ("Undeliverable", 5), ("RefusedDelivery", 5),
                  ("Exchange", 4)]
PARTIAL_REASONS = [("GeneralAdjustment", 45), ("PriceError", 40), ("Other", 10), ("TransactionRecord", 5)]
SHIPPING_REASONS = [("GeneralAdjustment", 60), ("CarrierCreditDecision", 25), ("CustomerAddressIncorrect", 15)]
CANCEL_UNIT_REASONS = [("NoInventory", 40), ("CouldNotShip", 25), ("CustomerCancel", 20), ("ProductOutofStock", 15)]
ADJUST_RULE_DEFECTS = [("order-not-found", 10), ("item-not-found", 6), ("order-pending", 5),
                       ("fulfilled-by-amazon", 7), ("already-cancelled", 5), ("currency-mismatch", 8),
                       ("invalid-sign", 8), ("refund-exceeds-charged", 10), ("not-yet-charged", 7),
                       ("quantity-exceeds-open", 5), ("net-not-positive", 4)]
XML_ADJUST_RULE_EXTRA = [("unknown-merchant-order-id", 3)]
FLAT_ADJUST_FORMAT_DEFECTS = [("bad-order-id", 4), ("bad-item-code", 3), ("amount-3-decimals", 7),
                              ("thousands-separator", 6), ("amount-exponent", 2), ("bad-reason", 4),
                              ("bad-currency", 2), ("missing-currency", 2), ("bad-quantity", 2), ("ragged-row", 2)]
XML_ADJUST_FORMAT_DEFECTS = [("bad-order-id", 4), ("bad-item-code", 3), ("amount-3-decimals", 7),
                             ("thousands-separator", 6), ("bad-reason", 4), ("bad-component-type", 3),
                             ("bad-currency", 2), ("duplicate-message-id", 3)]
SHIPPED_POOL = C("mfn") & C("status").is_in(SHIPPED_STATES) & (C("qs") > 0)
OPEN_POOL = C("mfn") & C("status").is_in(OPEN_STATES) & (C("open") > 0)
ADJUST_DEFECT_POOLS: dict[str, pl.Expr] = {
    "item-not-found": SHIPPED_POOL, "order-pending": C("status").is_in(PENDING),
    "fulfilled-by-amazon": C("afn") & (C("status") == "Shipped"),
    "already-cancelled": C("mfn") & (C("status") == "Canceled"),
    "currency-mismatch": SHIPPED_POOL, "invalid-sign": SHIPPED_POOL, "refund-exceeds-charged": SHIPPED_POOL,
    "not-yet-charged": C("mfn") & (C("status") == "Unshipped"), "quantity-exceeds-open": OPEN_POOL,
    "net-not-positive": SHIPPED_POOL, "unknown-merchant-order-id": SHIPPED_POOL,
}
AMOUNT_COLUMNS = ("p", "t", "s", "st", "gw", "gwt", "restock", "goodwill", "ipromo", "spromo")
ADJUST_ITEM_COLUMNS = ["unit", "item", "oi", "li", "order_id", "item_code", "moid", "miid", "use_merchant",
                       "currency", "reason", "action", *AMOUNT_COLUMNS, "qc_adj", "qty_ret", "madj_id",
                       "promo_id", "ship_promo_id", "defect"]
LINE_DEFAULTS = {"qo": 1, "qs": 1, "qc": 0, "open": 0, "mu": 1, "picks": 1, "price": 0, "tax": 0, "ship": 0,
                 "shiptax": 0, "gw": 0, "gwtax": 0, "pdisc": 0, "sdisc": 0, "price_ref": 0, "tax_ref": 0,
                 "ship_ref": 0, "shiptax_ref": 0, "gw_ref": 0, "gwtax_ref": 0, "pdisc_rev": 0, "sdisc_rev": 0}


def _amounts(kind: pl.Expr, rng: Rng, xml: bool) -> list[pl.Expr]:
    """Refund amounts (cents) for a line, by kind; never above what is left to refund.

    return: k of the units, pro rata (floor), promotions reversed pro rata (ceil), shipping
    and gift wrap in full when every unit comes back; partial: 5-30% of the price left,
    split over the records that target the line; shipping: the shipping left;
    goodwill (XML): a small Goodwill credit; cancel: quantity-cancelled only; zero: nothing.
    """
    U, u = C("unit"), C("mu")
    p_rem, t_rem = C("price") - C("price_ref"), C("tax") - C("tax_ref")
    s_rem, st_rem = C("ship") - C("ship_ref"), C("shiptax") - C("shiptax_ref")
    gw_rem, gwt_rem = C("gw") - C("gw_ref"), C("gwtax") - C("gwtax_ref")
    d_rem, sd_rem = C("pdisc") - C("pdisc_rev"), C("sdisc") - C("sdisc_rev")
    base_q = pl.when(C("qs") > 0).then(C("qs")).otherwise(C("qo"))
    k = pl.when(rng.chance("k-all", U, 0.7)).then(base_q).otherwise(1 + rng.below("k", U, base_q))
    full = k == C("qo")
    is_ret, is_part = kind == "return", kind == "partial"
    pct = 500 + rng.below("pct", U, 2501)
    partial = pl.max_horizontal(u, _floor_to(p_rem * pct // (10000 * C("picks")), u))
    ceil_share = (d_rem * k + C("qo") - 1) // C("qo")
    restock = pl.when(is_ret & pl.lit(xml) & rng.chance("restock", U, 0.08)) \
        .then(-_floor_to(p_rem * k // C("qo") * 15 // 100, u)).otherwise(0)
    cap = (C("price") + C("tax") + C("ship") + C("shiptax") + C("gw") + C("gwtax") - C("pdisc") - C("sdisc")
           - C("price_ref") - C("tax_ref") - C("ship_ref") - C("shiptax_ref") - C("gw_ref") - C("gwtax_ref")
           + C("pdisc_rev") + C("sdisc_rev"))
    goodwill = pl.min_horizontal(rng.choice("goodwill", U, [(500, 40), (1000, 35), (1500, 15), (2000, 10)])
                                 * pl.when(C("zero_dec")).then(100).otherwise(1), _floor_to(cap // 2, u))
    zero = pl.lit(0, pl.Int64)
    return [
        pl.when(is_ret).then(_floor_to(p_rem * k // C("qo"), u)).when(is_part).then(partial).otherwise(zero).alias("p"),
        pl.when(is_ret).then(_floor_to(t_rem * k // C("qo"), u)).otherwise(zero).alias("t"),
        pl.when(is_ret & full).then(s_rem).when(kind == "shipping").then(s_rem).otherwise(zero).alias("s"),
        pl.when(is_ret & full).then(st_rem).when(kind == "shipping").then(st_rem).otherwise(zero).alias("st"),
        pl.when(is_ret & full).then(gw_rem).otherwise(zero).alias("gw"),
        pl.when(is_ret & full).then(gwt_rem).otherwise(zero).alias("gwt"),
        restock.cast(pl.Int64).alias("restock"),
        pl.when(kind == "goodwill").then(goodwill).otherwise(zero).alias("goodwill"),
        pl.when(is_ret).then(-pl.min_horizontal(d_rem, _floor_to(ceil_share + u - 1, u))).otherwise(zero).alias("ipromo"),
        pl.when(is_ret & full).then(-sd_rem).otherwise(zero).alias("spromo"),
        pl.when(kind == "cancel").then(pl.when(rng.chance("qc-all", U, 0.7)).then(C("open"))
                                       .otherwise(1 + rng.below("qc", U, C("open")))).otherwise(zero).alias("qc_adj"),
        pl.when(is_ret).then(k).alias("qty_ret"),
        pl.when(kind == "return").then(rng.choice("r-return", U, RETURN_REASONS))
        .when(kind == "shipping").then(rng.choice("r-ship", U, SHIPPING_REASONS))
        .when(kind == "goodwill").then(pl.lit("GeneralAdjustment"))
        .when(kind == "cancel").then(rng.choice("r-cancel", U, CANCEL_UNIT_REASONS))
        .otherwise(rng.choice("r-partial", U, PARTIAL_REASONS)).alias("reason"),
        pl.when(kind == "cancel").then(pl.lit("Cancel")).otherwise(pl.lit("Refund")).alias("action"),
    ]


def _finish_adjustments(frame: pl.DataFrame, kind: pl.Expr, rng: Rng, xml: bool) -> pl.DataFrame:
    """Amounts, ids and flags for adjustment rows built from snapshot lines."""
    U = C("unit")
    frame = frame.pipe(_with, kind.alias("_kind"))
    frame = frame.pipe(_with, _amounts(C("_kind"), rng, xml))
    promo_names = [("PCT10-NOV26", 40), ("SAVE15-BF", 35), ("WINTER20", 25)]
    return frame.pipe(_with,
        pl.when(C("ipromo") != 0).then(rng.choice("promo-id", C("oi").fill_null(0), promo_names)).alias("promo_id"),
        pl.when(C("spromo") != 0).then(pl.concat_str([pl.lit("FREESHIP-"), C("currency")])).alias("ship_promo_id"),
        pl.when(pl.lit(xml) & rng.chance("madj", U, 0.6))
        .then(pl.concat_str([pl.lit("RMA-"), (10_000_000 + U * 4 + C("item")).cast(pl.String)])).alias("madj_id"),
    )


def build_adjustments(snap: Snapshot, n: int, seed: int, xml: bool) -> pl.DataFrame:
    """Records of a flat adjustment feed (xml=False) or an OrderAdjustment feed (xml=True)."""
    rng = Rng(seed, "xml-adjustment" if xml else "adjustment")
    lines = snap.lines
    n_rep = round(n * REPEAT_SHARE)
    n_bad = round(n * DEFECT_SHARE)
    rule_table = ADJUST_RULE_DEFECTS + (XML_ADJUST_RULE_EXTRA if xml else [])
    format_table = XML_ADJUST_FORMAT_DEFECTS if xml else FLAT_ADJUST_FORMAT_DEFECTS
    counts = _defect_counts(n_bad, rng, rule_table + format_table)
    n_format = sum(counts.get(name, 0) for name, _ in format_table)
    n_good = max(n - n_rep - n_bad, 0)
    n_cancel = round(n_good * 0.06)
    n_refund = n_good - n_cancel
    pair = PAIR_SHARE if xml else 0.0

    # Refunds (and format-defect bases) on shipped lines; unit cancellations on open lines.
    refunds = pick_units(lines.filter(SHIPPED_POOL), n_refund + n_format, rng.child("refund"), "good", pair)
    refunds = _assign_format_defects(refunds, format_table, counts)
    U = C("unit")
    kinds = [("return", 55), ("partial", 27), ("shipping", 9)] + ([("goodwill", 9)] if xml else [("partial", 9)])
    kind = rng.choice("kind", U, kinds)
    ship_ok = (C("ship") - C("ship_ref") > 0) & (C("sdisc") == 0)
    kind = (pl.when(C("picks") > 1).then(pl.lit("partial"))
            .when(C("defect").is_not_null()).then(pl.lit("return"))
            .when((kind == "shipping") & ~ship_ok).then(pl.lit("partial"))
            .otherwise(kind))
    refunds = _finish_adjustments(refunds, kind, rng, xml)
    cancels = pick_units(lines.filter(OPEN_POOL), n_cancel, rng.child("cancel"), "good", pair)
    cancels = cancels.pipe(_with, (C("unit") + n_refund + n_format).alias("unit"),
                                   pl.lit(None, pl.String).alias("defect"))
    cancels = _finish_adjustments(cancels, pl.lit("cancel"), rng.child("cancel"), xml)
    parts = [refunds, cancels]

    next_unit = n_refund + n_format + n_cancel
    for name, _ in rule_table:
        k = counts.get(name, 0)
        if k == 0:
            continue
        sub = rng.child(name)
        pool = lines.filter(ADJUST_DEFECT_POOLS[name]) if name in ADJUST_DEFECT_POOLS else None
        if pool is None or pool.height == 0:
            rows = _unknown_orders(snap, k, sub, next_unit).pipe(_with,
                pl.lit(None, pl.Int64).alias("oi"), pl.lit(None, pl.Int64).alias("li"),
                pl.lit(None, pl.String).alias("moid"), pl.lit(None, pl.String).alias("miid"),
                pl.lit("USD").alias("currency"), pl.lit(False).alias("zero_dec"),
                (1000 + sub.below("price", C("_j"), 9000)).alias("price"),
                *[pl.lit(v, pl.Int64).alias(c) for c, v in LINE_DEFAULTS.items() if c != "price"])
            kind = pl.lit("return")
        else:
            rows = sample_lines(pool, k, sub, "line").pipe(_with,
                (next_unit + pl.int_range(pl.len(), dtype=pl.Int64)).alias("unit"), pl.lit(0, pl.Int64).alias("item"),
                pl.lit(1, pl.Int64).alias("picks"))
            if name == "item-not-found":
                rows = _with_unknown_items(rows, snap, sub)
            kind = {"quantity-exceeds-open": pl.lit("cancel"), "net-not-positive": pl.lit("zero"),
                    "invalid-sign": pl.lit("partial")}.get(name, pl.lit("return"))
        rows = _finish_adjustments(rows.pipe(_with, pl.lit(name).alias("defect")), kind, sub, xml)
        U2 = C("unit")
        big = pl.when(C("zero_dec")).then(100).otherwise(1) * 100 * (1 + sub.below("extra", U2, 20))
        swap = (pl.when(C("currency") == "USD").then(pl.lit("EUR")).when(C("currency") == "EUR").then(pl.lit("GBP"))
                .when(C("currency") == "GBP").then(pl.lit("EUR")).otherwise(pl.lit("USD")))
        if name == "currency-mismatch":
            rows = rows.pipe(_with, swap.alias("currency"))
        elif name == "invalid-sign":
            rows = rows.pipe(_with, (-C("p")).alias("p"))
        elif name == "refund-exceeds-charged":
            rows = rows.pipe(_with, (C("price") - C("price_ref") + big).alias("p"))
        elif name == "quantity-exceeds-open":
            rows = rows.pipe(_with, (C("open") + 1 + sub.below("over", U2, 2)).alias("qc_adj"),
                                     pl.lit("NoInventory").alias("reason"), pl.lit("Cancel").alias("action"))
        elif name == "net-not-positive":
            rows = rows.pipe(_with, pl.lit("GeneralAdjustment").alias("reason"),
                                     (pl.when(pl.lit(xml)).then(-500 * C("mu")).otherwise(0)
                                      ).cast(pl.Int64).alias("restock"))
        elif name == "unknown-merchant-order-id":
            rows = rows.pipe(_with,
                pl.concat_str([pl.lit("ZZ-"), (9_000_000 + U2).cast(pl.String)]).alias("moid"),
                pl.concat_str([pl.lit("ZZ-"), (9_000_000 + U2).cast(pl.String), pl.lit("-1")]).alias("miid"))
        parts.append(rows)
        next_unit += k

    merchant = (C("moid").is_not_null() & C("defect").is_null() & pl.lit(xml)
                & rng.chance("merchant-ids", C("oi").fill_null(0), 0.5))
    items = pl.concat([p.pipe(_with,
        (merchant | (C("defect") == "unknown-merchant-order-id")).fill_null(False).alias("use_merchant"))
        .select(ADJUST_ITEM_COLUMNS + ["zero_dec", "price", "price_ref"])
        .cast({"oi": pl.Int64, "li": pl.Int64, "qty_ret": pl.Int64, "qc_adj": pl.Int64,
               **{c: pl.Int64 for c in AMOUNT_COLUMNS}}) for p in parts], how="vertical")
    # One message names its order and items one way: merchant ids only if every item has them.
    pool = rows = None
    del parts, refunds, cancels, lines, pool, rows  # only `items` needs to stay alive while it is arranged
    items = items.rechunk().pipe(_with, (C("use_merchant").all().over("unit")).alias("use_merchant"))
    return arrange(items, n_rep, rng, _repeat_adjustment)


def _repeat_adjustment(items: pl.DataFrame, is_repeat: pl.Expr, rng: Rng) -> pl.DataFrame:
    """A later record for the same line(s): half exact copies, half a small extra price refund."""
    U = C("unit")
    extra = is_repeat & rng.chance("extra", U, 0.5)
    small = pl.max_horizontal(C("unit_cents"), _floor_to((C("price") - C("price_ref")) * 5 // 100, C("unit_cents")))
    items = items.pipe(_with, pl.when(C("zero_dec")).then(100).otherwise(1).cast(pl.Int64).alias("unit_cents"))
    zero = pl.lit(0, pl.Int64)
    return items.pipe(_with,
        pl.when(extra).then(small).otherwise(C("p")).alias("p"),
        *[pl.when(extra).then(zero).otherwise(C(c)).alias(c) for c in AMOUNT_COLUMNS if c != "p"],
        pl.when(extra).then(zero).otherwise(C("qc_adj")).alias("qc_adj"),
        pl.when(extra).then(pl.lit(None, pl.Int64)).otherwise(C("qty_ret")).alias("qty_ret"),
        pl.when(extra).then(pl.lit("GeneralAdjustment")).otherwise(C("reason")).alias("reason"),
        pl.when(extra).then(pl.lit("Refund")).otherwise(C("action")).alias("action"),
        pl.when(extra).then(pl.lit(None, pl.String)).otherwise(C("madj_id")).alias("madj_id"),
        pl.when(extra).then(pl.lit(None, pl.String)).otherwise(C("promo_id")).alias("promo_id"),
        pl.when(extra).then(pl.lit(None, pl.String)).otherwise(C("ship_promo_id")).alias("ship_promo_id"),
    ).drop("unit_cents")


def _written_amount(column: str, whole: pl.Expr) -> pl.Expr:
    """An amount as written, with the format defects applied to the item price."""
    text = fmt_amount(C(column), whole)
    if column != "p":
        return text
    d = C("defect")
    a = C("p").abs()
    thousands = pl.concat_str([pl.lit("1,"), ((a // 100) % 1000).cast(pl.String).str.zfill(3), pl.lit("."),
                               (a % 100).cast(pl.String).str.zfill(2)])
    return (pl.when(d == "amount-3-decimals")
            .then(pl.when(whole).then(pl.concat_str([text, pl.lit(".005")])).otherwise(pl.concat_str([text, pl.lit("5")])))
            .when(d == "thousands-separator").then(thousands)
            .when(d == "amount-exponent").then(pl.concat_str([((a // 100) + 1).cast(pl.String), pl.lit("E0")]))
            .otherwise(text))


def render_flat_adjustment(items: pl.DataFrame) -> pl.DataFrame:
    d = C("defect")
    whole = C("currency") == "JPY"
    order_id = pl.when(d == "bad-order-id").then(C("order_id").str.replace("-", "", literal=True)).otherwise(C("order_id"))
    item_code = pl.when(d == "bad-item-code").then(C("item_code").str.slice(0, 13)).otherwise(C("item_code"))
    reason = (pl.when(d == "bad-reason").then(pl.when(C("seq") % 2 == 0).then(pl.lit("Refund")).otherwise(pl.lit("Goodwill")))
              .when(d == "ragged-row").then(pl.concat_str([C("reason"), pl.lit("\t")])).otherwise(C("reason")))
    currency = (pl.when(d == "bad-currency").then(C("currency").str.to_lowercase())
                .when(d == "missing-currency").then(pl.lit("")).otherwise(C("currency")))
    promo = pl.when(C("ipromo") != 0).then(fmt_amount(C("ipromo"), whole)).otherwise(pl.lit(""))
    ship_promo = pl.when(C("spromo") != 0).then(fmt_amount(C("spromo"), whole)).otherwise(pl.lit(""))
    qty = pl.when(d == "bad-quantity").then(pl.lit("1.0")).otherwise(C("qc_adj").cast(pl.String))
    return _select(
        items, order_id.alias("order-id"), item_code.alias("order-item-id"), reason.alias("adjustment-reason-code"),
        currency.alias("currency"), _written_amount("p", whole).alias("item-price-adj"),
        _written_amount("t", whole).alias("item-tax-adj"), _written_amount("s", whole).alias("shipping-price-adj"),
        _written_amount("st", whole).alias("shipping-tax-adj"), _written_amount("gw", whole).alias("gift-wrap-price-adj"),
        _written_amount("gwt", whole).alias("gift-wrap-tax-adj"), promo.alias("item-promotion-adj"),
        C("promo_id").fill_null("").alias("item-promotion-id"), ship_promo.alias("ship-promotion-adj"),
        C("ship_promo_id").fill_null("").alias("ship-promotion-id"), qty.alias("quantity-cancelled"))


def render_adjustment(items: pl.DataFrame, rng: Rng) -> pl.Expr:
    """One text fragment per AdjustedItem row; concatenated in order they make the Messages."""
    d = C("defect")
    whole = C("currency") == "JPY"
    currency = pl.when(d == "bad-currency").then(C("currency").str.to_lowercase()).otherwise(C("currency"))
    order_id = pl.when(d == "bad-order-id").then(C("order_id").str.replace("-", "", literal=True)).otherwise(C("order_id"))
    item_code = pl.when(d == "bad-item-code").then(C("item_code").str.slice(0, 13)).otherwise(C("item_code"))
    reason = pl.when(d == "bad-reason").then(pl.lit("Goodwill")).otherwise(C("reason"))
    principal = pl.when(d == "bad-component-type").then(pl.lit("Refund")).otherwise(pl.lit("Principal"))

    def component(type_: pl.Expr | str, column: str, indent: str = "          ") -> pl.Expr:
        type_expr = type_ if isinstance(type_, pl.Expr) else pl.lit(type_)
        return pl.when(C(column) != 0).then(pl.concat_str([
            pl.lit(indent + "<Component><Type>"), type_expr, pl.lit('</Type><Amount currency="'), currency,
            pl.lit('">'), _written_amount(column, whole), pl.lit("</Amount></Component>\n")]))

    price_columns = ("p", "t", "s", "st", "gw", "gwt", "restock", "goodwill")
    any_price = pl.any_horizontal([C(c) != 0 for c in price_columns])
    price_block = pl.when(any_price).then(pl.concat_str([
        pl.lit("        <ItemPriceAdjustments>\n"),
        component(principal, "p"), component("Tax", "t"), component("Shipping", "s"), component("ShippingTax", "st"),
        component("GiftWrap", "gw"), component("GiftWrapTax", "gwt"), component("RestockingFee", "restock"),
        component("Goodwill", "goodwill"),
        pl.lit("        </ItemPriceAdjustments>\n")], ignore_nulls=True))
    promo_block = pl.when((C("ipromo") != 0) | (C("spromo") != 0)).then(pl.concat_str([
        pl.lit("        <PromotionAdjustments>\n"),
        _opt("          <MerchantPromotionID>", pl.coalesce(C("promo_id"), C("ship_promo_id")), "</MerchantPromotionID>\n"),
        component("Principal", "ipromo"), component("Shipping", "spromo"),
        pl.lit("        </PromotionAdjustments>\n")], ignore_nulls=True))
    merchant = C("use_merchant")
    head = pl.concat_str([
        pl.lit("  <Message>\n    <MessageID>"), _message_id(rng), pl.lit("</MessageID>\n    <OrderAdjustment>\n"),
        pl.when(merchant).then(_opt("      <MerchantOrderID>", C("moid"), "</MerchantOrderID>\n"))
        .otherwise(_opt("      <AmazonOrderID>", order_id, "</AmazonOrderID>\n")),
        pl.when(rng.chance("action", C("seq"), 0.8)).then(_opt("      <ActionType>", C("action"), "</ActionType>\n")),
    ], ignore_nulls=True)
    item = pl.concat_str([
        pl.lit("      <AdjustedItem>\n"),
        pl.when(merchant).then(_opt("        <MerchantOrderItemID>", C("miid"), "</MerchantOrderItemID>\n"))
        .otherwise(_opt("        <AmazonOrderItemCode>", item_code, "</AmazonOrderItemCode>\n")),
        _opt("        <MerchantAdjustmentItemID>", C("madj_id"), "</MerchantAdjustmentItemID>\n"),
        _opt("        <AdjustmentReason>", reason, "</AdjustmentReason>\n"),
        price_block, promo_block,
        pl.when(C("qc_adj") > 0).then(_opt("        <QuantityCancelled>", C("qc_adj").cast(pl.String),
                                           "</QuantityCancelled>\n")),
        _opt("        <Quantity>", C("qty_ret").cast(pl.String), "</Quantity>\n"),
        pl.lit("      </AdjustedItem>\n")], ignore_nulls=True)
    tail = pl.lit("    </OrderAdjustment>\n  </Message>\n")
    return pl.concat_str([pl.when(C("item") == 0).then(head), item,
                          pl.when(C("item") == C("n_items") - 1).then(tail)], ignore_nulls=True)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def _xml_envelope(message_type: str, seed: int) -> tuple[str, str]:
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">\n'
            "  <Header>\n    <DocumentVersion>1.01</DocumentVersion>\n"
            f"    <MerchantIdentifier>{MERCHANT.format(seed=seed)}</MerchantIdentifier>\n  </Header>\n"
            f"  <MessageType>{message_type}</MessageType>\n")
    return head, "</AmazonEnvelope>\n"


def write_xml(items: pl.DataFrame, path: Path, message_type: str, seed: int,
              render: Callable[[pl.DataFrame, Rng], pl.Expr], rng: Rng) -> None:
    """Write an envelope, rendering ~XML_CHUNK messages at a time (items sorted by seq)."""
    head, tail = _xml_envelope(message_type, seed)
    seqs = items.get_column("seq")
    n_messages = int(seqs.max()) + 1 if items.height else 0
    with path.open("wb") as out:
        out.write(head.encode())
        for first in range(0, n_messages, XML_CHUNK):
            lo = int(seqs.search_sorted(first, side="left"))
            hi = int(seqs.search_sorted(first + XML_CHUNK, side="left"))
            part = items.slice(lo, hi - lo)
            text = _select(part, render(part, rng).str.join("")).item()
            out.write(text.encode())
        out.write(tail.encode())


def write_flat(frame_chunks: Callable[[int, int], pl.DataFrame], n_rows: int, path: Path, *,
               template: str | None, header: tuple[str, ...], crlf: bool) -> None:
    eol = "\r\n" if crlf else "\n"
    with path.open("wb") as out:
        if template is not None:
            out.write((template + eol).encode())
        out.write(("\t".join(header) + eol).encode())
        for start in range(0, n_rows, FLAT_CHUNK):
            part = frame_chunks(start, FLAT_CHUNK)
            part.write_csv(out, separator="\t", quote_style="never", include_header=False, line_terminator=eol)


@dataclass
class Written:
    path: Path
    rows: int
    items: int
    seconds: float
    note: str = ""


def _feed_stats(items: pl.DataFrame) -> str:
    units = items.filter(C("item") == 0).sort("seq")
    n = units.height
    repeated = n - int(units.get_column("order_id").is_first_distinct().sum()) if n else 0
    bad = int(units.get_column("defect").is_not_null().sum())
    rounds = int(units.group_by("order_id").len().get_column("len").max() or 0) if n else 0
    note = (f"{bad:,} defect records ({bad / max(n, 1):.1%}); {repeated:,} records repeat an earlier "
            f"record's order-id ({repeated / max(n, 1):.1%}); at most {rounds} records per order")
    if repeated > 0.05 * n:
        note += ("; the snapshot has too few eligible orders for this many valid records, so they share "
                 "orders: use --orders-lines >= 4x --records for about 2%")
    return note


def generate_feed(kind: str, snap: Snapshot, records: int, seed: int, out_dir: Path) -> Written:
    """Build and write one feed; returns what was written."""
    started = time.perf_counter()
    path = out_dir / FILE_NAMES[kind]
    if kind == "flat-cancellation":
        items = build_cancellations(snap, records, seed, xml=False)
        write_flat(lambda s, k: render_flat_cancellation(items.slice(s, k)), items.height, path,
                   template=FLAT_CANCELLATION_TEMPLATE, header=FLAT_CANCELLATION_HEADER, crlf=True)
    elif kind == "flat-adjustment":
        items = build_adjustments(snap, records, seed, xml=False)
        write_flat(lambda s, k: render_flat_adjustment(items.slice(s, k)), items.height, path,
                   template=None, header=FLAT_ADJUSTMENT_HEADER, crlf=False)
    elif kind == "xml-acknowledgement":
        items = build_cancellations(snap, records, seed, xml=True)
        write_xml(items, path, "OrderAcknowledgement", seed, render_acknowledgement, Rng(seed, "render-ack"))
    elif kind == "xml-adjustment":
        items = build_adjustments(snap, records, seed, xml=True)
        write_xml(items, path, "OrderAdjustment", seed, render_adjustment, Rng(seed, "render-adj"))
    else:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    messages = int(items.get_column("seq").max()) + 1 if items.height else 0
    return Written(path, messages, items.height, time.perf_counter() - started, _feed_stats(items))


def generate(out_dir: Path, *, seed: int, orders_lines: int, records: int, kinds: tuple[str, ...] = KINDS,
             log: Callable[[str], None] | None = print) -> list[Written]:
    """Write DIR/snapshot.tsv and the requested feeds; returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    started = time.perf_counter()
    snap = build_snapshot(orders_lines, seed)
    path = out_dir / SNAPSHOT_NAME
    write_snapshot(snap, path)
    written.append(Written(path, snap.n_lines, snap.n_lines, time.perf_counter() - started,
                           f"{snap.n_orders:,} orders"))
    if log:
        log(_describe(written[-1]))
    snap = for_feeds(snap)
    for kind in kinds:
        written.append(generate_feed(kind, snap, records, seed, out_dir))
        if log:
            log(_describe(written[-1]))
    return written


def _describe(w: Written) -> str:
    size = w.path.stat().st_size
    what = f"{w.rows:,} lines" if w.path.name == SNAPSHOT_NAME else f"{w.rows:,} records"
    if w.items != w.rows:
        what += f" ({w.items:,} items)"
    return f"wrote {w.path}  {what}  {size / 1e6:,.1f} MB  {w.seconds:.1f} s  [{w.note}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    parser.add_argument("--orders-lines", type=int, default=2_000_000, help="order lines in the snapshot")
    parser.add_argument("--records", type=int, default=1_000_000, help="records (XML: messages) per feed")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if args.records < 0 or args.orders_lines < 1:
        parser.error("--records must be >= 0 and --orders-lines >= 1")
    started = time.perf_counter()
    written = generate(args.out, seed=args.seed, orders_lines=args.orders_lines, records=args.records, kinds=kinds)
    total = sum(w.path.stat().st_size for w in written)
    print(f"total {total / 1e6:,.1f} MB in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

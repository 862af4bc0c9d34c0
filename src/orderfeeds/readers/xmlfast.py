"""Bulk reading of XML messages whose shape the XSD has already accepted once: checked and cut out in polars.

Validating every message with libxml2's XSD costs more than parsing it, so the reader runs
the XSD only where a message might break it. A message is described by its *shape*: the
tags of its elements in document order with each element's number of children (which
fixes the nesting), plus the texts of its component `Type`s (which decide the columns and
the XSD's "each Type at most once" constraint). The first message of a shape is validated
with the XSD; if it is valid the shape gets a *plan* (which leaf value goes into which
column of which record), and later messages of that shape skip the XSD when

- every element that has no children has text (no leaf is empty),
- no text other than the leaves' is more than whitespace and no attribute but an Amount's
  `currency` is present (one XPath count per message), and
- every value passes a check, run in polars over the chunk, that is at least as strict as
  its XSD simple type (e.g. only ASCII letters and digits where the XSD allows `\\w`).

Such a message is valid for the XSD: the structure and the Types are those of a message it
accepted and every value is one it accepts. A message that fails any of these goes to the
XSD after all (the per-message path of `xml.py`), which gives the explanation the report
shows, so the report is exactly what validating every message would give.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from operator import attrgetter, itemgetter, methodcaller

import polars as pl
from lxml import etree

from orderfeeds.feedtypes import FeedType, Field

# Neither can occur in XML 1.0 text or attribute values, so they join values unambiguously.
SEP = "\x1f"
ABSENT = "\x01"  # an Amount without a currency attribute
WS = " \t\r\n"

TAG = attrgetter("tag")
TEXT = attrgetter("text")

TAIL = attrgetter("tail")
KEYS = methodcaller("keys")

HIDDEN = ("_id", "_op", "_claim")  # MessageID, OperationType, PromotionClaimCode: checked, not reported


def picker(positions: Sequence[int]) -> Callable[[Sequence], tuple]:
    """A C-level getter of several positions that always returns a tuple."""
    if not positions:
        return lambda seq: ()
    if len(positions) == 1:
        only = positions[0]
        return lambda seq: (seq[only],)
    return itemgetter(*positions)


class Shape:
    """What every message with the same tags and child counts has in common."""

    def __init__(self, nodes: list[etree._Element], tags: tuple, lens: tuple[int, ...], item_tag: str):
        self.usable = all(isinstance(tag, str) for tag in tags)
        self.leaf_positions = [i for i, n in enumerate(lens) if n == 0]
        self.type_positions = [i for i, tag in enumerate(tags) if tag == "Type" and lens[i] == 0]
        self.amount_positions = [i for i, tag in enumerate(tags) if tag == "Amount"]
        self.item_positions = [i for i, node in enumerate(nodes)
                               if tags[i] == item_tag and node.getparent() is not None
                               and node.getparent().getparent() is nodes[0]]
        self.leaves = picker(self.leaf_positions)
        # Elements with children (their text must be blank) and every element inside the message (their
        # tails must be blank); the message's own tail belongs to the envelope.
        self.inner = picker([i for i, n in enumerate(lens) if n])
        self.inside = picker(range(1, len(nodes)))
        self.types = picker(self.type_positions)
        self.amounts = picker(self.amount_positions)
        self.items = picker(self.item_positions)
        self.plans: dict[tuple, Plan | None] = {}


class Plan:
    """Where a valid message of one shape keeps each record's values."""

    def __init__(self, plan_id: int, rows: list[tuple[dict[str, int], list[int], bool]]):
        self.id = plan_id
        self.rows = rows


def build_plan(plan_id: int, message: etree._Element, nodes: list[etree._Element], shape: Shape,
               feed_type: FeedType, payload_tag: str, item_tag: str, order_tags: Sequence[str],
               item_tags: Sequence[str], promotion_columns: dict[str, str]) -> Plan | None:
    """The plan of an XSD-valid message; None if some leaf would escape the checks (then the XSD keeps it)."""
    position = {id(node): i for i, node in enumerate(nodes)}
    leaf_index = {p: k for k, p in enumerate(shape.leaf_positions)}
    amount_index = {p: k for k, p in enumerate(shape.amount_positions)}
    covered: set[int] = set()

    def leaf(node: etree._Element) -> int:
        p = position[id(node)]
        covered.add(p)
        return leaf_index[p]

    def kind(node: etree._Element) -> str:
        covered.add(position[id(node)])
        return (node.text or "").strip(WS)

    base: dict[str, int] = {}
    items: list[etree._Element] = []
    for child in message:
        if child.tag == "MessageID":
            base["_id"] = leaf(child)
        elif child.tag == "OperationType":
            base["_op"] = leaf(child)
        elif child.tag == payload_tag:
            for part in child:
                if part.tag == item_tag:
                    items.append(part)
                elif part.tag in order_tags:
                    base[part.tag] = leaf(part)
    rows: list[tuple[dict[str, int], list[int], bool]] = []
    for item in items:
        row, currencies = dict(base), []
        for child in item:
            tag = child.tag
            if tag in ("ItemPriceAdjustments", "PromotionAdjustments"):
                for part in child:
                    if part.tag == "Component":
                        type_node, amount = part[0], part[1]
                        name = kind(type_node)
                        column = name if tag == "ItemPriceAdjustments" else promotion_columns[name]
                        row[column] = leaf(amount)
                        currencies.append(amount_index[position[id(amount)]])
                    elif part.tag == "MerchantPromotionID":
                        row["MerchantPromotionID"] = leaf(part)
                    elif part.tag == "PromotionClaimCode":
                        row["_claim"] = leaf(part)
            elif tag in item_tags:
                row[tag] = leaf(child)
        rows.append((row, currencies, True))
    if not items:
        rows.append((base, [], False))
    if covered != set(shape.leaf_positions) or (feed_type is FeedType.XML_ADJUSTMENT and not items):
        return None
    return Plan(plan_id, rows)


# ----------------------------------------------------------------------------- value checks


@cache
def xsd_enumeration(file: str, name: str) -> tuple[str, ...]:
    """The values of the enumeration declared for `name` (a simpleType or an element) in a shipped XSD."""
    document = etree.fromstring((resources.files("orderfeeds") / "schemas" / file).read_bytes(),
                                etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    ns = {"xsd": "http://www.w3.org/2001/XMLSchema"}
    found = document.xpath(f".//xsd:simpleType[@name='{name}']//xsd:enumeration/@value"
                           f" | .//xsd:element[@name='{name}']//xsd:enumeration/@value", namespaces=ns)
    if not found:
        raise LookupError(f"{file} declares no enumeration for {name}")
    return tuple(found)


def _pattern(regex: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda v: v.str.contains(regex)


def _enum(file: str, name: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda v: v.is_in(list(xsd_enumeration(file, name)))


def _text(limit: int) -> Callable[[pl.Expr], pl.Expr]:
    # Lengths count characters after whitespace collapsing, which never makes a value longer.
    return lambda v: v.str.len_chars().is_between(1, limit)


def _positive(v: pl.Expr) -> pl.Expr:
    return v.str.contains(r"^[0-9]{1,9}$") & v.str.contains("[1-9]")


AMOUNT = r"^-?[0-9]{1,20}(\.[0-9]{1,2})?$"
# At least as strict as the XSD type of each column's element (amzn-base.xsd and the payload XSDs).
CHECKS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "_id": lambda v: v.str.contains(r"^[0-9]{1,18}$") & v.str.contains("[1-9]"),
    "_op": _enum("amzn-base.xsd", "OperationType"),
    "_claim": _text(50),
    "AmazonOrderID": _pattern(r"^[A-Za-z0-9]{3}-[A-Za-z0-9]{7}-[A-Za-z0-9]{7}$"),
    "MerchantOrderID": _text(50),
    "ActionType": _enum("OrderAdjustment.xsd", "ActionType"),
    "StatusCode": _enum("OrderAcknowledgement.xsd", "StatusCode"),
    "AmazonOrderItemCode": _pattern(r"^[0-9]{14}$"),
    "MerchantOrderItemID": _text(50),
    "MerchantAdjustmentItemID": _text(50),
    "AdjustmentReason": _enum("amzn-base.xsd", "AdjustmentReasonType"),
    "CancelReason": _enum("amzn-base.xsd", "CancelReasonType"),
    "MerchantPromotionID": _text(80),
    "QuantityCancelled": _pattern(r"^[0-9]{1,9}$"),
    "Quantity": _positive,
}


def _check(column: str) -> Callable[[pl.Expr], pl.Expr]:
    return CHECKS.get(column, _pattern(AMOUNT))  # every other column is an amount


def _two_decimals(v: pl.Expr) -> pl.Expr:
    """An amount that passed AMOUNT with exactly two decimals ("5" → "5.00", "-5.5" → "-5.50")."""
    return (pl.when(v.str.contains(r"\.[0-9]{2}$")).then(v)
            .when(v.str.contains(r"\.[0-9]$")).then(v + "0")
            .otherwise(v + ".00"))


class Batch:
    """Messages of one chunk taken on the fast path, and the plans they use."""

    def __init__(self, fields: tuple[Field, ...]):
        self.fields = fields
        self.value_columns = [f.name for f in fields if f.name != "currency"] + list(HIDDEN)
        self.amount_columns = {f.name for f in fields if f.name not in CHECKS and f.name != "currency"}
        self.plan_rows: dict[str, list] = {"plan": [], "_item": [], "_has": [], "_cur": [],
                                           **{f"p:{c}": [] for c in self.value_columns}}
        self.plan_frame: pl.DataFrame | None = None
        self.plans = 0
        self.reset()

    def reset(self) -> None:
        self.messages = array("q")
        self.plan_ids = array("q")
        self.vals: list[str] = []
        self.curs: list[str] = []
        self.message_lines = array("q")
        self.offsets = array("q")
        self.lines = array("q")
        self.elements: dict[int, etree._Element] = {}

    def add_plan(self, plan: Plan) -> None:
        rows = self.plan_rows
        for index, (row, currencies, has_item) in enumerate(plan.rows):
            rows["plan"].append(plan.id)
            rows["_item"].append(index + 1)
            rows["_has"].append(has_item)
            rows["_cur"].append(currencies)
            for column in self.value_columns:
                rows[f"p:{column}"].append(row.get(column))
        self.plan_frame = None

    def _plans(self) -> pl.DataFrame:
        if self.plan_frame is None:
            rows = self.plan_rows
            self.plan_frame = pl.DataFrame({
                "plan": pl.Series(rows["plan"], dtype=pl.Int64),
                "_item": pl.Series(rows["_item"], dtype=pl.Int32),
                "_cur": pl.Series(rows["_cur"], dtype=pl.List(pl.Int32)),
                **{f"p:{c}": pl.Series(rows[f"p:{c}"], dtype=pl.Int32) for c in self.value_columns},
            })
        return self.plan_frame

    def frame(self) -> tuple[pl.DataFrame, list[int]]:
        """The records of the chunk's messages that pass every check, and the ordinals of those that do not."""
        chunk = pl.DataFrame({
            "_msg": pl.Series(self.messages, dtype=pl.Int64),
            "plan": pl.Series(self.plan_ids, dtype=pl.Int64),
            "vals": pl.Series(self.vals, dtype=pl.String).str.split(SEP),
            "curs": pl.Series(self.curs, dtype=pl.String).str.split(SEP),
            "_mline": pl.Series(self.message_lines, dtype=pl.Int64),
            "_offset": pl.Series(self.offsets, dtype=pl.Int64),
        })
        records = chunk.join(self._plans(), on="plan", how="inner")
        values = {c: pl.col("vals").list.get(pl.col(f"p:{c}"), null_on_oob=True).str.strip_chars(WS)
                  for c in self.value_columns}
        currencies = (pl.col("curs").list.gather(pl.col("_cur"))
                      .list.eval(pl.element().filter(pl.element() != ABSENT).str.strip_chars(WS)))
        checks = [pl.col(f"p:{c}").is_null() | _check(c)(values[c]).fill_null(False) for c in self.value_columns]
        if any(f.name == "currency" for f in self.fields):
            checks.append(pl.col("_currencies").list.eval(pl.element().str.contains("^[A-Z]{3}$")).list.all()
                          & (pl.col("_currencies").list.n_unique() <= 1))
        records = records.with_columns(currencies.alias("_currencies")).with_columns(
            pl.all_horizontal(checks).all().over("_msg").alias("_ok"))
        failed = records.filter(~pl.col("_ok")).get_column("_msg").unique().sort().to_list()
        lines = pl.Series(self.lines, dtype=pl.Int64)
        passed = records.filter(pl.col("_ok"))
        shown = []
        for f in self.fields:
            if f.name == "currency":
                shown.append(pl.col("_currencies").list.first().alias("currency"))
            elif f.name in self.amount_columns:
                shown.append(_two_decimals(values[f.name]).alias(f.name))
            else:
                shown.append(values[f.name].alias(f.name))
        out = passed.select(
            "_msg", "_item",
            values["_id"].cast(pl.Int64).alias("_record"),
            pl.lit(True).alias("_numbered"),
            (pl.col("_offset") + pl.col("_item") - 1).alias("_line"),
            "_mline",
            *shown,
        )
        out = out.with_columns(lines.gather(out.get_column("_line")).alias("_line"))
        return out, failed

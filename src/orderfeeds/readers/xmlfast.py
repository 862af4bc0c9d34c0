"""Bulk reading of XML messages whose shape the XSD has already accepted once: checked and cut out in polars.

Validating every message with libxml2's XSD costs more than parsing it, and walking every
message in Python costs about as much again, so a chunk of messages is handled at once. The
chunk's text, taken from the file's own bytes (`FileText`) or else serialized by libxml2 in one
call, is cut into one string per Message, and polars turns each into a *signature* and a list of
*values*: every text that is more than whitespace becomes
a value (and a MARK in the signature), an Amount's `currency` (or its absence) becomes a value
too, and a component `Type`'s text stays in the signature (it decides the columns and the
XSD's "each Type at most once" constraint). Two messages with the same signature have the same
elements, nesting, blanks and Types, and differ only in their values.

The first message of a signature is validated with the XSD; if it is valid the signature gets
a *plan* (which value goes into which column of which record, and which currencies belong to
which item; a signature whose values do not all have a checked column gets none). Later
messages of that signature skip the XSD when

- their text has no escaped character (`&`) and no attribute but an Amount's `currency`, and
- every value passes a check, run in polars over the chunk, that is at least as strict as
  its XSD simple type (e.g. only ASCII letters and digits where the XSD allows `\\w`).

Such a message is valid for the XSD: its structure and Types are those of a message it
accepted and every value is one it accepts. A message that fails any of these goes to the
XSD after all (the per-message path of `xml.py`), which gives the explanation the report
shows, so the report is exactly what validating every message would give. If the
text cannot be cut into exactly the chunk's messages (a Message nested in another, say), the
whole chunk takes the per-message path.

`Batch.survey` (cutting, signatures, and the bulk checks of the messages whose signature already
has a plan) runs on the reader's worker thread and reads only the chunk's text and lines; plans
are made, and failures sent to the XSD, on the parser's thread (`xml.py`), which hands the worker
each plan table as a new frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from operator import attrgetter

import polars as pl
from lxml import etree

from orderfeeds.feedtypes import FeedType, Field
from orderfeeds.readers.model import ENGINE

# Cannot occur in XML 1.0 text or attribute values, so it cannot be taken for a currency.
ABSENT = "\x01"  # an Amount without a currency attribute
WS = " \t\r\n"

TAG = attrgetter("tag")


HIDDEN = ("_id", "_op", "_claim")  # MessageID, OperationType, PromotionClaimCode: checked, not reported


class Shape:
    """Where a message's leaves and Amounts are among its elements in document order."""

    def __init__(self, tags: tuple, lens: tuple[int, ...]):
        self.usable = all(isinstance(tag, str) for tag in tags)  # comments and PIs have no str tag
        self.leaf_positions = [i for i, n in enumerate(lens) if n == 0]
        self.amount_positions = [i for i, tag in enumerate(tags) if tag == "Amount"]


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


# ----------------------------------------------------------------------------- a chunk in bulk

MARK = "\x1f"  # stands for a text value in a signature; cannot occur in XML text
CUT = "\x02"  # marks where a Message starts; cannot occur in XML either
# A Message's start tag (`<MessageID` is not one).
_MESSAGE_START = r"<Message([ \t\r\n/>])"
_TAG_END_CHARS = " \t\r\n/>"  # what may follow a tag's name in a start tag
_TAG_END = f"[{_TAG_END_CHARS}]"
# Long blanks between tags (the parser keeps a long run) would be copied with every copy of a chunk;
# element-only content ignores them, so they are squeezed out first.
LONG_BLANK = " " * 64
_BLANKS = r">[ \t\r\n]+<"
_TEXT = r">[^<]*[^< \t\r\n][^<]*<"  # a text that is more than whitespace, with the tag ends around it
_ENVELOPE_END = "</AmazonEnvelope>"
# An Amount's currency, or its absence, is made a text of its own, and a Type's text part of its start tag.
_PREPARED = {
    "<Amount>": '<Amount currency=>' + ABSENT + '"><:>',
    '<Amount currency="': "<Amount currency=>",
    '">': '"><:>',
    "<Type>": "<Type ",
}
_MESSAGE_END = "</Message>"
_MESSAGE_BODY = r"(?s)^(.*?</Message>)"
# What the parser drops or changes (comments, CDATA, PIs), and an attribute it would serialize in double quotes:
# a message holding any of these (but a comment or PI on one line) goes to the XSD on its own.
_ALTERED = ["<!", "<?", "='"]
# What opens a comment, a PI or CDATA: left once the closed ones are cut out, one is open.
_OPENERS = ["<!", "<?"]
_BIG_LINES = 65535
# A comment and a processing instruction (the XML declaration among them), each whole; for Python's re and polars.
_COMMENT, _PI = r"<!--(?s:.*?)-->", r"<\?(?s:.*?)\?>"
# Comments, PIs and CDATA sections, each whole.
_CLOSED = re.compile(rf"{_COMMENT}|{_PI}|<!\[CDATA\[(?s:.*?)\]\]>")
# A comment or PI on one line: the parser drops it and joins the texts around it, which its removal does too
# without moving a line. (Inside CDATA it would be text, but a message with CDATA goes to the XSD on its own.)
_ONE_LINE_DROPPED = r"<!--[^\n]*?-->|<\?[^\n]*?\?>"
# What may follow a Message before the next one: blanks, and comments and PIs, each whole.
_DROPPED_TAIL = rf"(?:[ \t\r\n]|{_COMMENT}|{_PI})+$"


_LONG_BLANK_BYTES = LONG_BLANK.encode()
_BLANK_RUN = re.compile(rb"(?<=>)[ \t\r\n]{64,}(?=<)")


def squeezed(block: bytes) -> bytes:
    """A block of the file's bytes with each long blank between tags cut to its line feeds (libxml2 counts a line
    at each LF, none at a lone CR), so that lines still count: a chunk's text is copied a few times, the parser
    drops those blanks, and so does a serialization. A blank split between two blocks stays."""
    if _LONG_BLANK_BYTES not in block:
        return block
    return _BLANK_RUN.sub(_line_breaks, block)


def _line_breaks(run: re.Match[bytes]) -> bytes:
    return b"\n" * run.group().count(b"\n")


def serialized_messages(serialized: str, count: int) -> pl.DataFrame | None:
    """The first `count` Messages of an envelope serialized by libxml2, as `table` takes them; None if there
    are fewer."""
    raw = pl.col("raw")
    # The text's own `squeezed`: a serialization has no lines to keep.
    without_blanks = pl.when(raw.str.contains(LONG_BLANK, literal=True)).then(raw.str.replace_all(_BLANKS, "><")).otherwise(raw)
    pieces = pl.DataFrame({"raw": pl.Series([serialized], dtype=pl.String)}).lazy().select(
        without_blanks.str.replace_all(_MESSAGE_START, CUT + "${1}").str.split(CUT).alias("raw"),
    ).explode("raw").slice(1, count).collect(engine=ENGINE)
    return pieces if pieces.height == count else None


class FileText:
    """The file's own bytes, cut into each chunk's messages on the worker thread: what serializing the chunk
    would give, without the parser's thread spending its time serializing it.

    The parser reads the file through a tee, and each chunk is handed the bytes read since the one before.
    The bytes not yet part of a chunk (`carry`) wait for the next; `line` is the line the carry starts on.
    A chunk is taken from the bytes only when they agree with what the parser made of them: each of its
    `count` Messages is a piece from `<Message` to its `</Message>`, with only blanks up to the next (and
    comments and PIs, which the parser drops: they are cut down to their line feeds), and
    starts on the line the parser gave it (or, past line 65535, where libxml2's lines run late, no later);
    and every comment, PI or CDATA section in its messages closes in the message it opens in (one left open
    may hold a `<Message` the chunk was cut at). Before its first message (the prolog and the envelope's head,
    or blanks between two chunks) a comment, a PI or CDATA may stand if it closes there: a feed made by a tool
    often opens with a comment.

    A message whose text the parser changes goes to the XSD on its own (`ok` false), with the lines counted in
    the bytes: one holding a comment or PI over several lines, CDATA, a lone carriage return or an attribute in
    single quotes (a serialization would write it in double quotes), or a `>` in a text (a serialization would
    escape it). A comment or PI on one line is cut out instead, as the parser drops it and joins the texts
    around it, so such a message can still be taken in bulk. Escaped characters and attributes other than an
    Amount's currency are `table`'s concern, as in a serialization. Once a chunk cannot be taken from the bytes
    the carry is lost: `cut` gives None from then on and the reader serializes its chunks instead.

    Only a UTF-8 (or ASCII) document is read this way, or one in an encoding of a byte a character that Python
    and libxml2 read alike (ISO-8859-x, windows-125x); a byte Python cannot decode there loses the carry.
    """

    def __init__(self, codec: str = "utf-8") -> None:
        # "utf-8", or the codec of an encoding of a byte a character, so that offsets in the text are offsets in the
        # bytes.
        self.codec = codec
        self.carry = b""
        self.line = 1
        self.column: int | None = 1
        self.lost = False

    def cut(self, blocks: list[bytes], count: int, message_lines: pl.Series,
            item_tag: str) -> tuple[pl.DataFrame, pl.Series, pl.Series] | None:
        """The chunk's `count` Messages as `table` takes them (each from just after `<Message`, CR LF read as LF),
        the line each starts on and the line of each of their `item_tag` elements, in document order; None if
        the chunk cannot be taken from the bytes. `blocks` are the bytes read since the chunk before.

        The lines are counted in the bytes: libxml2 keeps an element's line in 16 bits, and gives an element
        past line 65535 the line of its first child, often the next line."""
        if self.lost:
            return None
        blocks.insert(0, self.carry)
        data = b"".join(blocks)
        del blocks[:]  # the chunk's bytes are held once, not twice, while they are cut
        # The bytes after the chunk may end mid-character, or not be text at all where the parser has not
        # yet said so: they are carried over as bytes, never read. The chunk's own bytes are valid UTF-8,
        # the parser having read them, so byte offsets in the decoded text hold up to the chunk's end (in a
        # codec of a byte a character, offsets in characters are offsets in bytes).
        if self.codec == "utf-8":
            text = data.decode("utf-8", "replace")
        else:
            try:
                text = data.decode(self.codec)  # never fails for latin-1
            except UnicodeDecodeError:
                return self._lose()  # a byte Python cannot decode (libxml2 may: windows-1255's 0xCA)
        t = pl.col("t")
        size = t.str.len_bytes() if self.codec == "utf-8" else t.str.len_chars()
        pieces = _split(text).slice(0, count + 1).with_columns(
            size.cast(pl.Int64).alias("bytes"),  # in the file
            t.str.count_matches("\n", literal=True).cast(pl.Int64).alias("nl"),
            # A piece that does not end a Message holds the start of one nested in it (or is the chunk's last):
            # then the chunk's end would be misplaced.
            t.str.strip_chars_end(WS).str.ends_with(_MESSAGE_END).alias("whole"),
        ).collect(engine=ENGINE)
        if pieces.height != count + 1:
            return self._lose()
        if not pieces.get_column("whole").slice(1, count - 1).all():
            pieces = _without_dropped_tails(pieces, count)
            if not pieces.get_column("whole").slice(1, count - 1).all():
                return self._lose()
        head, messages = pieces.row(0, named=True), pieces.slice(1)
        # The chunk's last message runs to its first `</Message>` (the others to the next `<Message`: `table`
        # sees that only blanks follow their `</Message>`).
        last = messages.item(count - 1, "t")
        ending = last.find(_MESSAGE_END)
        if ending < 0:
            return self._lose()
        last = last[:ending + len(_MESSAGE_END)]
        cut = pl.concat([messages.get_column("t").head(count - 1), pl.Series("t", [last], dtype=pl.String)])
        nl = messages.get_column("nl")
        # The line each message starts on, by the newlines before it. The parser's line of an element past
        # line 65535 is that of its first child (libxml2 keeps 16 bits): the same or a later one.
        lines = (nl.cum_sum() - nl + (self.line + head["nl"])).alias("_mline")
        matched = (lines == message_lines) | ((lines >= _BIG_LINES) & (message_lines >= lines))
        # Every `<Message` in the chunk starts an element: none is hidden in a comment, CDATA or a PI, and neither
        # text nor attributes can hold `<`. What comes before the chunk's first message (the prolog and the
        # envelope's head, or the blanks after the chunk before) belongs to no message, so a comment, a PI or
        # CDATA there may stay as long as it is closed there: one left open would hold the first `<Message`.
        before = _CLOSED.sub("", head["t"])
        if not matched.all() or any(opener in before for opener in _OPENERS):
            return self._lose()
        judged = _judged(cut, lines, item_tag)
        if judged is None:
            return self._lose()
        end = head["bytes"] + int(messages.get_column("bytes").head(count - 1).sum()) + count * len("<Message") \
            + (len(last.encode()) if self.codec == "utf-8" else len(last))
        self.line += head["nl"] + int(nl.head(count - 1).sum()) + last.count("\n")
        self.carry = data[end:]
        # The column the carry starts in, as libxml2 counts it (a character a column, from 1 after each LF); None
        # when the last message has no LF after which to count (or a lone CR, which the parser may count apart).
        after = last.rfind("\n")
        self.column = len(last) - after if after >= 0 and "\r" not in last[after:] else None
        return judged

    def _lose(self) -> None:
        self.lost = True
        self.carry = b""
        return None


@dataclass
class Chunk:
    """Messages as the file's bytes hold them, with no parser's count to hold them to (xml.py's bytes phase): `data`
    runs from between two top-level messages to just after a `</Message>` (and maybe the line end after it),
    `count` is how many `</Message>` it holds and `line` the line it starts on."""

    data: bytes
    count: int
    line: int
    codec: str


def cut_chunk(chunk: Chunk, item_tag: str) -> tuple[pl.DataFrame, pl.Series, pl.Series] | None:
    """What `FileText.cut` gives for a chunk (and each message's `text` as the bytes have it), cut with no parser's
    count or lines to check it by; None if the chunk is not `count` top-level Messages with only blanks around them.

    The chunk starts between two top-level messages. So when it is blanks and then pieces that each run from a
    `<Message` start tag to the one `</Message>` they hold, with only blanks after it, each piece is one top-level
    Message: in a document that is well-formed (the reader's parser checks that) that end tag closes the innermost
    Message open, which is the piece's own, as no other starts in it. A comment, a PI or CDATA holding a Message's tag
    breaks that shape, or else is left open in its message (`_judged`); what else could stand between messages (an
    element, text) breaks it too."""
    try:
        text = squeezed(chunk.data).decode(chunk.codec)
    except UnicodeDecodeError:
        return None  # the parser will say where (or read it apart from Python: windows-1255's 0xCA)
    t = pl.col("t")
    pieces = _split(text).with_columns(
        t.str.count_matches("\n", literal=True).cast(pl.Int64).alias("nl"),
        (t.str.strip_chars_end(WS).str.ends_with(_MESSAGE_END)
         & (t.str.count_matches(_MESSAGE_END, literal=True) == 1)).alias("whole"),
    ).collect(engine=ENGINE)
    if pieces.height != chunk.count + 1 or pieces.item(0, "t").strip(WS):
        return None
    messages = pieces.slice(1)
    if not messages.get_column("whole").all():
        return None
    # libxml2 gives an element the line its start tag ends on, and the bytes the line it starts on: a Message whose
    # start tag holds a line end would have its records on another line than the tree's.
    tagged = messages.filter(~t.str.starts_with(">")).get_column("t").to_list()
    if any("\n" in _start_tag_rest(piece) for piece in tagged):
        return None
    nl = messages.get_column("nl")
    lines = (nl.cum_sum() - nl + (chunk.line + pieces.item(0, "nl"))).alias("_mline")
    texts = messages.get_column("t")
    judged = _judged(texts, lines, item_tag)
    if judged is None:
        return None
    # What the bytes say, for a message that is parsed apart: `raw` has had comments cut out, even from inside CDATA.
    return judged[0].with_columns(texts.alias("text")), judged[1], judged[2]


def _split(text: str) -> pl.LazyFrame:
    """`text` cut just after each `<Message` (column `t`): what precedes the first, then each message to the next."""
    t = pl.col("t")
    return pl.DataFrame({"t": pl.Series([text], dtype=pl.String)}).lazy().select(
        t.str.replace_all(_MESSAGE_START, CUT + "${1}").str.split(CUT)).explode("t")


def _start_tag_rest(piece: str) -> str:
    """What follows `<Message` in its start tag, to its `>` (attribute values may hold a `>`)."""
    quote = ""
    for at, char in enumerate(piece):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ">":
            return piece[:at]
    return piece


def _judged(cut: pl.Series, lines: pl.Series, item_tag: str) -> tuple[pl.DataFrame, pl.Series, pl.Series] | None:
    """A chunk's messages cut from the file's bytes (`cut`, each from just after `<Message`, starting on `lines`) as
    `table` takes them, with `ok` false for one whose text the parser changes, and the lines of their items; None if
    a comment, PI or CDATA section opens in a message and does not close in it (it may hold a `<Message` the chunk
    was cut at)."""
    altered = cut.str.contains_any(_ALTERED)
    if altered.any():  # a plain chunk looks once; one with a comment twice
        cut = cut.str.replace_all(_ONE_LINE_DROPPED, "")
        altered = cut.str.contains_any(_ALTERED)
        if altered.any() and cut.filter(altered).str.replace_all(_CLOSED.pattern, "").str.contains_any(
                _OPENERS).any():
            return None
    if cut.str.contains("\r", literal=True).any():
        cut = cut.str.replace_all("\r\n", "\n", literal=True)
        altered = altered | cut.str.contains("\r", literal=True)  # the parser reads a lone CR as LF
    item_lines = _item_lines(cut, lines.item(0), item_tag)
    # A `>` in a text would be escaped in a serialization, and here it could pass for a tag's end.
    ok = ~altered & (cut.str.count_matches("<", literal=True) + 1 == cut.str.count_matches(">", literal=True))
    return pl.DataFrame({"raw": cut, "ok": ok}), lines, item_lines


def _without_dropped_tails(pieces: pl.DataFrame, count: int) -> pl.DataFrame:
    """`pieces` (the chunk's head, then its messages each to the next `<Message`) with what the parser drops after
    each of the first `count - 1` messages (comments and PIs, each whole, between blanks) cut down to its line
    feeds, so that lines still count, and `whole` anew. `bytes` and `nl` stay those of the file."""
    t = pl.col("t")
    kept = t.str.replace(_DROPPED_TAIL, "")
    line_feeds = pl.lit("\n").repeat_by(pl.col("nl") - kept.str.count_matches("\n", literal=True)).list.join("")
    fixed = pl.when(pl.int_range(pl.len()).is_between(1, count - 1) & ~pl.col("whole")).then(kept + line_feeds)
    return pieces.lazy().with_columns(fixed.otherwise(t).alias("t")).with_columns(
        t.str.strip_chars_end(WS).str.ends_with(_MESSAGE_END).alias("whole")).collect(engine=ENGINE)


def _item_lines(messages: pl.Series, line: int, item_tag: str) -> pl.Series:
    """The line of every `item_tag` start tag in `messages`, the text of consecutive messages (each without the
    `<Message` before it) starting on `line`: the line it starts on and the newlines before it."""
    m, part = pl.col("m"), pl.col("part")

    def lines(cut: pl.Expr) -> pl.DataFrame:
        return pl.DataFrame({"part": messages}).with_row_index("m").lazy().select(m, cut).explode("part").select(
            m.is_first_distinct().not_().alias("item"),  # every part but a message's first follows an item's start
            part.str.count_matches("\n", literal=True).alias("nl"),
            part.str.head(1).alias("next"),
        ).with_columns((pl.col("nl").cum_sum() - pl.col("nl") + line).alias("line")).filter("item").collect(
            engine=ENGINE)

    # Split at the tag's name, then made sure the name ends there (`table` counts the items the same way).
    found = lines(part.str.split(f"<{item_tag}"))
    if not found.get_column("next").is_in(list(_TAG_END_CHARS)).all():
        found = lines(part.str.replace_all(f"(<{item_tag}{_TAG_END})", CUT + "${1}").str.split(CUT))
    return found.get_column("line").cast(pl.Int64)


def table(pieces: pl.DataFrame, item_tag: str) -> pl.DataFrame | None:
    """Per Message of a chunk (`pieces`: `raw`, its text from just after `<Message`, and maybe `ok`, false
    for a message that must go to the XSD): its signature (None if it must go to the XSD), its text values
    in document order (each with the tag ends around it) and how many `item_tag` elements it holds (at any
    depth); None if the pieces are not one per top-level message.

    The pieces are cut just after each `<Message`; a Message nested in another (or any cut that is not
    one per top-level message) leaves a piece that does not end with `</Message>`: the parser drops
    comments and PIs (`FileText` cuts them out, or sends their message to the XSD, or takes no such chunk),
    and text cannot hold `<`. A chunk that declares a default namespace inside a message is not cut either
    (see below). Each piece is then prepared: a Type's text moves into its start tag and an Amount's currency
    (or its absence) becomes a text of its own, so that the one regex for texts finds the values and leaves
    the Types.

    The signature is the piece with every text that is more than whitespace replaced by MARK; a Type's
    text stays (it decides the columns), and an Amount's currency (or its absence) is a value, so it does
    not split shapes. Blanks stay as they are (a serialization has few, the file's bytes its indentation),
    so a signature fixes every element, every blank and every place a value sits. All of it runs in
    polars, which lets go of the GIL: the reader's worker thread does this while the parser reads on.
    """
    raw = pl.col("raw")
    parts = pieces.lazy().select(
        raw.str.strip_chars_end(WS).str.strip_suffix(_ENVELOPE_END)
        # In one pass: no two of these overlap, and each replacement is what replacing them in turn gives.
        .str.replace_many(list(_PREPARED), list(_PREPARED.values())),
        *[column for column in ("ok",) if column in pieces.columns],
    ).collect(engine=ENGINE)
    cut = parts.get_column("raw")
    # Items are counted where they are written, and a default namespace declared inside a message would make
    # an element written `<AdjustedItem>` one the parser does not call AdjustedItem: then the counts would
    # not match the lines the parser's thread read for the items, so such a chunk is not cut either.
    if not cut.str.ends_with("</Message>").all() or cut.str.contains("xmlns=", literal=True).any():
        return None
    # An escaped character would need unescaping, and only an Amount's currency may be an attribute
    # (prepared, it no longer reads `="`).
    usable = raw.str.starts_with(">") & ~raw.str.contains(r'&|="')
    if "ok" in pieces.columns:
        usable = usable & pl.col("ok")
    return parts.lazy().select(
        pl.when(usable).then(raw.str.replace_all(_TEXT, ">" + MARK + "<")).alias("sig"),
        raw.str.extract_all(_TEXT).alias("vals"),
        # A start tag reads `<Tag>`, `<Tag/>` or `<Tag` and a blank.
        raw.str.count_matches(f"<{item_tag}{_TAG_END}").cast(pl.Int64).alias("_n"),
    ).collect(engine=ENGINE)


def sig_plan(plan_id: int, message: etree._Element, signature: str, feed_type: FeedType, payload_tag: str,
             item_tag: str, order_tags: Sequence[str], item_tags: Sequence[str],
             promotion_columns: dict[str, str]) -> Plan | None:
    """The plan of an XSD-valid message in terms of its signature's values; None if they do not line up."""
    nodes = list(message.iter())
    tags = tuple(map(TAG, nodes))
    lens = tuple(map(len, nodes))
    shape = Shape(tags, lens)
    if not shape.usable:
        return None
    plan = build_plan(plan_id, message, nodes, shape, feed_type, payload_tag, item_tag, order_tags, item_tags,
                      promotion_columns)
    if plan is None:
        return None
    # Values come in document order: an Amount's currency, then each leaf's text (a Type's stays in the signature).
    value_of_leaf: dict[int, int] = {}
    value_of_amount: dict[int, int] = {}
    count = 0
    for i in range(1, len(nodes)):
        if tags[i] == "Amount":
            value_of_amount[i] = count
            count += 1
        if lens[i] == 0 and tags[i] != "Type":
            value_of_leaf[i] = count
            count += 1
    if count != signature.count(MARK):
        return None
    rows = []
    try:
        for row, currencies, has_item in plan.rows:
            rows.append(({c: value_of_leaf[shape.leaf_positions[k]] for c, k in row.items()},
                         [value_of_amount[shape.amount_positions[k]] for k in currencies], has_item))
    except KeyError:
        return None
    used = {v for row, currencies, _ in rows for v in (*row.values(), *currencies)}
    if used != set(range(count)):
        return None  # a value no check would see
    return Plan(plan_id, rows)


@dataclass
class Survey:
    """What the bulk checks made of one chunk: `unplanned` (None if the chunk could not be cut into its
    messages, then every message goes to the XSD) holds the messages whose signature had no plan (columns
    as `frame` takes them, with `sig`), `fast` the records that passed, `failed` the ordinals that did not.
    `lost`: the chunk could not be taken from the file's bytes (see `FileText`), or a `Chunk` is not top-level
    messages (see `cut_chunk`), and nothing was surveyed."""

    first: int
    count: int
    unplanned: pl.DataFrame | None
    fast: pl.DataFrame | None
    failed: list[int]
    lines: pl.Series | None
    lost: bool = False
    # Of each message that may go to the XSD (no plan, or failed), by its place in the chunk: its line, those of its
    # items, and for a `Chunk` its text as the bytes hold it (from just after `<Message`), where the parser's thread
    # finds its element, as no tree holds it. Plain values, so that the parser's thread runs no polars query for
    # them while the workers' queries fill polars' threads.
    slow: dict[int, tuple[int, list[int], str | None]] = field(default_factory=dict)
    last_line: int = 0  # the line of the chunk's last message
    # Each signature of the messages without a plan (those that may be given one): the places of its first three
    # messages, and how many it has.
    shapes: list[tuple[str, list[int], int]] = field(default_factory=list)

    def where(self, ordinals: list[int]) -> list[tuple[int, list[int]] | None]:
        """The line of each of these messages of the chunk and those of its items, as the bulk checks found them."""
        slow = self.slow
        return [slow[ordinal - self.first][:2] if ordinal - self.first in slow else None for ordinal in ordinals]


class Batch:
    """The plans of the fast path, and the bulk check of a chunk's messages that have one."""

    def __init__(self, fields: tuple[Field, ...]):
        self.fields = fields
        self.value_columns = [f.name for f in fields if f.name != "currency"] + list(HIDDEN)
        self.amount_columns = {f.name for f in fields if f.name not in CHECKS and f.name != "currency"}
        self.plan_rows: dict[str, list] = {"plan": [], "_item": [], "_has": [], "_items": [], "_cur": [],
                                           **{f"p:{c}": [] for c in self.value_columns}}
        self.plan_frame: pl.DataFrame | None = None
        self.plans = 0
        self.signatures: dict[str, Plan | None] = {}
        self.expressions: dict[tuple[str, ...], tuple[list[pl.Expr], pl.Expr, list[pl.Expr]]] = {}
        # `signatures` with a plan, as Series for the worker thread's lookup: rebuilt after plans were added,
        # never changed in place (the worker may be reading them).
        self.known: tuple[pl.Series, pl.Series] | None = None

    def add_plan(self, signature: str, plan: Plan) -> None:
        self.plans += 1
        self.signatures[signature] = plan
        self.known = None
        rows = self.plan_rows
        items = sum(has_item for _, _, has_item in plan.rows)
        for index, (row, currencies, has_item) in enumerate(plan.rows):
            rows["_items"].append(items)
            rows["plan"].append(plan.id)
            rows["_item"].append(index + 1)
            rows["_has"].append(has_item)
            rows["_cur"].append(currencies)
            for column in self.value_columns:
                rows[f"p:{column}"].append(row.get(column))

    def plan_table(self) -> pl.DataFrame:
        """A row per record of every plan (where its values are); a new frame whenever plans were added."""
        rows = self.plan_rows
        if rows["plan"] or self.plan_frame is None:
            # Only the plans added since the last call are built; the rest are kept as a frame.
            added = pl.DataFrame({
                "plan": pl.Series(rows["plan"], dtype=pl.Int64),
                "_item": pl.Series(rows["_item"], dtype=pl.Int32),
                "_has": pl.Series(rows["_has"], dtype=pl.Boolean),
                "_items": pl.Series(rows["_items"], dtype=pl.Int64),
                "_cur": pl.Series(rows["_cur"], dtype=pl.List(pl.Int32)),
                **{f"p:{c}": pl.Series(rows[f"p:{c}"], dtype=pl.Int32) for c in self.value_columns},
            })
            self.plan_frame = added if self.plan_frame is None else pl.concat([self.plan_frame, added])
            for column in rows.values():
                column.clear()
        return self.plan_frame

    def _expressions(self, used: tuple[str, ...]) -> tuple[list[pl.Expr], pl.Expr, list[pl.Expr]]:
        """What cuts the values out (each once, as a column of its own), the check of a record, and the shown
        columns, when only the value columns `used` have a value in some plan (the others are null)."""
        if used in self.expressions:
            return self.expressions[used]
        # A value is cut out with the tag ends around it (a text on the bulk path holds neither `<` nor `>`).
        cut = [pl.col("vals").list.get(pl.col(f"p:{c}"), null_on_oob=True).str.strip_chars(WS + "<>").alias(f"v:{c}")
               if c in used else pl.lit(None, pl.String).alias(f"v:{c}")
               for c in self.value_columns]
        cut.append(pl.col("vals").list.gather(pl.col("_cur"))
                   .list.eval(pl.element().str.strip_chars(WS + '<>"').filter(pl.element() != ABSENT))
                   .alias("_currencies"))
        values = {c: pl.col(f"v:{c}") for c in self.value_columns}
        checks = [pl.col(f"p:{c}").is_null() | _check(c)(values[c]).fill_null(False) for c in used]
        if any(f.name == "currency" for f in self.fields):
            checks.append(pl.col("_currencies").list.eval(pl.element().str.contains("^[A-Z]{3}$")).list.all()
                          & (pl.col("_currencies").list.n_unique() <= 1))
        shown = []
        for f in self.fields:
            if f.name == "currency":
                shown.append(pl.col("_currencies").list.first().alias("currency"))
            elif f.name not in used:
                shown.append(pl.lit(None, pl.String).alias(f.name))
            elif f.name in self.amount_columns:
                shown.append(_two_decimals(values[f.name]).alias(f.name))
            else:
                shown.append(values[f.name].alias(f.name))
        # The item lines were found by tag anywhere in the message: they must be exactly its items.
        checks.append(pl.col("_n") == pl.col("_items"))
        self.expressions[used] = cut, pl.all_horizontal(checks), shown
        return self.expressions[used]

    def lookup(self) -> tuple[pl.Series, pl.Series]:
        """The signatures that have a plan and the plans' ids, as the worker thread is handed them."""
        if self.known is None:
            planned = {signature: plan.id for signature, plan in self.signatures.items() if plan is not None}
            self.known = (pl.Series(list(planned), dtype=pl.String), pl.Series(list(planned.values()), dtype=pl.Int64))
        return self.known

    def survey(self, text: str | tuple[FileText, list[bytes]] | Chunk, count: int, first: int, item_tag: str,
               message_lines: pl.Series, item_lines: pl.Series | None, known: tuple[pl.Series, pl.Series],
               plans: pl.DataFrame) -> Survey:
        """One chunk's messages (ordinals `first`...) judged in bulk with the plans known when it was handed out.

        `text` is the chunk serialized (its messages the first `count` of the envelope), the file's bytes
        read since the chunk before with what cuts them, or a `Chunk` (whose `count` this is). Runs on a
        worker thread of the reader: it touches no element, only that text, the lines of the chunk's messages
        as the parser gave them and, for a serialized chunk, those of every `item_tag` element in document
        order (those of messages after the chunk may follow); lines counted in the file's bytes replace them
        when the chunk is cut from those.
        """
        if isinstance(text, str):
            pieces = serialized_messages(text, count)
        else:
            taken = cut_chunk(text, item_tag) if isinstance(text, Chunk) else text[0].cut(text[1], count,
                                                                                        message_lines, item_tag)
            if taken is None:
                return Survey(first, count, None, None, [], None, lost=True)
            pieces, message_lines, item_lines = taken
        table_ = table(pieces, item_tag) if pieces is not None else None
        if table_ is None or item_lines is None:
            # A `Chunk` has no tree to take its messages from one by one.
            return Survey(first, count, None, None, [], None, lost=isinstance(text, Chunk))
        items = table_.get_column("_n")
        signatures, ids = known
        chunk = pl.DataFrame({
            "_msg": pl.int_range(first, first + count, dtype=pl.Int64, eager=True),
            "sig": table_.get_column("sig"),
            "plan": table_.get_column("sig").replace_strict(signatures, ids, default=None, return_dtype=pl.Int64),
            "vals": table_.get_column("vals"),
            "_mline": message_lines,
            "_offset": items.cum_sum() - items,
            "_n": items,
        })
        planned = chunk.filter(pl.col("plan").is_not_null())
        fast, failed = self.frame(planned, item_lines, plans) if planned.height else (None, [])
        unplanned = chunk.filter(pl.col("plan").is_null())
        rows = sorted({*(unplanned.get_column("_msg") - first).to_list(), *(ordinal - first for ordinal in failed)})
        all_lines = item_lines.to_list() if rows else []
        places = chunk.select("_mline", "_offset", "_n")[rows].rows()
        texts = pieces.get_column("text").gather(rows).to_list() if isinstance(text, Chunk) else [None] * len(rows)
        slow = {row: (line, all_lines[offset:offset + n], message)
                for row, (line, offset, n), message in zip(rows, places, texts, strict=True)}
        shapes = unplanned.lazy().drop_nulls("sig").group_by("sig").agg(
            (pl.col("_msg") - first).head(3).alias("rows"), pl.len().alias("n")).collect(engine=ENGINE).rows()
        return Survey(first, count, unplanned, fast, failed, item_lines, slow=slow,
                      last_line=message_lines.item(count - 1), shapes=shapes)

    def frame(self, chunk: pl.DataFrame, lines: pl.Series, plans: pl.DataFrame) -> tuple[pl.DataFrame, list[int]]:
        """The records of the chunk's messages (columns _msg, plan, vals, _mline, _offset, _n) that pass every
        check, and the ordinals of those that do not. `_offset` + item index - 1 is an item's place in `lines`
        (the lines of the chunk's items); a record without an item is on its message's line.
        `plans` is what `plan_table()` gave: the worker thread is handed it, as only the reader's thread adds plans."""
        # Columns no plan has a value for are null: they are neither cut out nor checked.
        used = tuple(c for c in self.value_columns if plans.get_column(f"p:{c}").null_count() < plans.height)
        cut, ok, shown = self._expressions(used)
        records = chunk.join(plans, on="plan", how="inner").with_columns(*cut)
        bad = records.filter(~ok).get_column("_msg").unique()
        failed = bad.sort().to_list()
        passed = records.filter(~pl.col("_msg").is_in(bad.implode())) if len(bad) else records
        out = passed.select(
            "_msg", "_item",
            pl.col("v:_id").cast(pl.Int64).alias("_record"),
            pl.lit(True).alias("_numbered"),
            # An item's place among the chunk's item lines; a record without an item is on its message's line.
            pl.when("_has").then(pl.col("_offset") + pl.col("_item") - 1).alias("_line"),
            "_mline",
            *shown,
        )
        out = out.with_columns(pl.coalesce(pl.lit(lines.gather(out.get_column("_line"))), "_mline").alias("_line"))
        return out, failed

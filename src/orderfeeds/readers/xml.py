"""XML feeds (SPEC §2.4) to a raw frame of String columns: hardened, streaming, one XSD check per message.

How a file is read, in order:

1. Safety before any parsing: the prolog (what precedes the root element) is scanned
   as bytes; any markup declaration there (`<!DOCTYPE`, and with it every DTD,
   entity and parameter-entity declaration) rejects the file as `unsafe-xml`
   without the parser ever seeing it. UTF-16/32 files are scanned after decoding
   their first bytes.
2. The root start tag is read with a pull parser (hardened: no entity resolution,
   no DTD loading, no network, libxml2's size and depth limits kept). Its document
   info is checked again for a DOCTYPE (a second line of defence for encodings the
   byte scan cannot read), and the root must be `AmazonEnvelope`.
3. The file is streamed with `lxml.etree.iterparse` (same hardening) from its path or
   its bytes, reporting only the end of top-level `Message` elements and of the root. At
   the first Message the envelope before it is checked (Header against the XSD,
   MessageType, optional MarketplaceName / PurgeAndReplace / EffectiveDate in order);
   between messages only whitespace and further Messages may appear. Any envelope break
   rejects the file (`malformed-xml`, or `unknown-feed-type` for another Amazon
   MessageType or a `--feed-type` that names the other XML type).
4. Each Message is judged exactly as its message-level schema (root `Message`, payload
   fixed to the feed's MessageType, built from the shipped XSDs, compiled once per thread)
   judges it. A message whose shape the XSD has accepted before is taken on the fast
   path (xmlfast: its leaf values are gathered and checked in bulk per chunk); any other
   message, and any fast-path message that fails a bulk check, is validated with the XSD
   on its own and its records are cut out one by one. Both give the same records.
5. Messages are handled in chunks of CHUNK_MESSAGES (or CHUNK_BYTES of the file). When a chunk
   closes, one worker thread cuts its text into messages and checks them in bulk (polars, which
   lets go of the GIL) while the parser reads the next chunk; at the next close the parser's
   thread settles it (new shapes get their plan, what failed goes to the XSD). So a chunk's
   messages stay in the tree until the chunk after them closes, then they are deleted, and the
   tree never grows with the file. The chunk's text is the file's own bytes, which the parser
   reads through a tee (xmlfast.FileText, for a UTF-8 or ASCII document, or one in an encoding of
   a byte a character that Python and libxml2 read alike, whose bytes match what the parser
   made of them; its lines are counted there too), or else the chunk serialized by the parser's
   thread, which then also reads the lines of its items. Only the worker reads the chunk's text
   and only the parser's thread touches elements. Blank text between elements is not kept at
   all. Each chunk becomes a frame in file order (on the worker too).
   The bytes phase: once the file's first chunk has been cut from its bytes, the rest is read without a
   tree (building it is most of a parse). A parser with no callbacks, fed the file from its start,
   only checks that it is well-formed; the chunks are cut from the bytes at a line end after a
   `</Message>` (`xmlfast.cut_chunk`, which takes only top-level messages with blanks between them)
   and surveyed on two worker threads; a message that goes to the XSD is parsed apart from its text,
   inside the root's start tag, with its lines shifted to the file's (so the XSD's explanations name
   the true lines too). Whatever else the rest of the file holds (a comment or text between messages,
   a nested Message, a default namespace, an element or text after the last message, a byte Python
   cannot decode) or where it is not well-formed, the rest is read from the start of that chunk with a
   tree as above (`_Reader._resume`): the parser is given the file's head, blanks inside the root's
   start tag to reach that place's line and column, and the file from there, so it reports every
   error, line and column as one pass over the file would. Records, issues and errors are those of
   reading the file with a tree, but for lines past 65535: there the bytes phase gives true lines
   where the tree's are libxml2's (late), and where chunks fall decides which messages of a chunk
   that must be serialized get libxml2's lines. A file not well-formed is reported at its first
   fatal error, found by reading it again with no callbacks (`_not_well_formed_error`).
6. `iter_xml` hands the records out in pieces: once a piece's worth of records (`chunk_records`) has
   gathered, the chunks so far become one frame (concatenated, not rechunked), its schema
   violations get their `seq` and repeated MessageIDs are found in one vectorised pass; the reader
   then lets go of them. Only the numbered MessageIDs already handed out and the line of each one's
   first message (two Int64 columns) are kept, so that a repeat in a later piece is found too.
   `read_xml` is the same pass in one piece.

Records: an `Item` (OrderAcknowledgement) or `AdjustedItem` (OrderAdjustment) is one
record; an acknowledgement without Items (and any message whose items cannot be
found) is one record with item-index 1. `record` is the MessageID; a MessageID that
is not a whole number from 1 to 18 digits (already a schema violation) is replaced
by the message's 1-based position in the file so that the record can still be found.
`line` is where the Item / AdjustedItem starts (the Message, for a record without one). libxml2
keeps an element's line in 16 bits and gives an element past line 65535 the line of its first
child, often one too late; lines counted in the file's bytes (point 5) are exact, so the lines
libxml2 gives are only used in a file whose chunks are serialized, and in the XSD's explanations.

Schema violations are row issues (`schema-violation`, rank 0). An XSD error inside
item k (or about item k's own content) belongs to record k only; an error anywhere
else in the message (MessageID, order fields, a misplaced element, ...) belongs to
every record of the message. The message lists the XSD's own explanations, made
readable, with their line numbers. A repeated MessageID gives every record of every
repeat a `duplicate-message-id` issue (rank 0, after any schema-violation).

Amounts are handed on with exactly two decimals ("5" and "5.5" become "5.00" and
"5.50"; the sign is kept) once the XSD has accepted them (at most two decimals),
so validation's amount check applies unchanged. The item's `currency` is the
`currency` attribute its amounts carry; amounts of one item that name different
currencies are a schema violation of that record.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import polars as pl
from lxml import etree

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import ADJUSTMENT_REASONS, CANCEL_REASONS, FeedType, Field, Kind
from orderfeeds.readers import xmlfast
from orderfeeds.readers.model import ISSUE_SCHEMA, UNCHUNKED, RawFeed, joined, record_columns

# ----------------------------------------------------------------------------- fields

ACTION_TYPES = ("Refund", "Cancel")
STATUS_CODES = ("Success", "Failure")

# Price components, in the order of the XSD enumeration; each is a column named by its Type.
PRICE_COMPONENTS = (
    "Principal", "Shipping", "Tax", "ShippingTax", "RestockingFee", "RestockingFeeTax", "GiftWrap",
    "GiftWrapTax", "Surcharge", "ReturnShipping", "Goodwill", "ExportCharge", "COD", "CODTax", "Other",
    "FreeReplacementReturnShipping",
)
# PromotionAdjustments components (Type Principal | Shipping), as the flat file names them.
PROMOTION_COMPONENTS = {"Principal": "PromotionPrincipal", "Shipping": "PromotionShipping"}


def _optional(name: str, canonical: str, kind: Kind, choices: tuple[str, ...] = ()) -> Field:
    return Field(name, canonical, kind, column_required=False, value_required=False, choices=choices)


def _required(name: str, canonical: str, kind: Kind, choices: tuple[str, ...] = ()) -> Field:
    return Field(name, canonical, kind, column_required=True, value_required=True, choices=choices)


XML_ACKNOWLEDGEMENT_FIELDS: tuple[Field, ...] = (
    _required("AmazonOrderID", "order-id", Kind.ORDER_ID),
    _optional("MerchantOrderID", "merchant-order-id", Kind.TEXT),
    _required("StatusCode", "status-code", Kind.ENUM, STATUS_CODES),
    _optional("AmazonOrderItemCode", "order-item-id", Kind.ITEM_CODE),
    _optional("MerchantOrderItemID", "merchant-order-item-id", Kind.TEXT),
    _optional("CancelReason", "reason", Kind.ENUM, CANCEL_REASONS),
    # Absent means "every open unit of the line"; the XSD makes a given Quantity 1 or more.
    Field("Quantity", "quantity", Kind.COUNT, column_required=False, blank_is_zero=False),
)

XML_ADJUSTMENT_FIELDS: tuple[Field, ...] = (
    # The XSD requires AmazonOrderID or MerchantOrderID (and per item the code or the seller's id).
    _optional("AmazonOrderID", "order-id", Kind.ORDER_ID),
    _optional("MerchantOrderID", "merchant-order-id", Kind.TEXT),
    _optional("ActionType", "action-type", Kind.ENUM, ACTION_TYPES),
    _optional("AmazonOrderItemCode", "order-item-id", Kind.ITEM_CODE),
    _optional("MerchantOrderItemID", "merchant-order-item-id", Kind.TEXT),
    _optional("MerchantAdjustmentItemID", "merchant-adjustment-item-id", Kind.TEXT),
    _required("AdjustmentReason", "reason", Kind.ENUM, ADJUSTMENT_REASONS),
    # From the `currency` attributes of the item's Amounts; absent when none names one.
    _optional("currency", "currency", Kind.CURRENCY),
    *(_optional(name, name, Kind.AMOUNT) for name in PRICE_COMPONENTS),
    _optional("MerchantPromotionID", "merchant-promotion-id", Kind.TEXT),
    *(_optional(name, name, Kind.AMOUNT) for name in PROMOTION_COMPONENTS.values()),
    _optional("QuantityCancelled", "quantity-cancelled", Kind.COUNT),
    Field("Quantity", "quantity", Kind.COUNT, column_required=False, blank_is_zero=False),
)

XML_FIELDS: dict[FeedType, tuple[Field, ...]] = {
    FeedType.XML_ACKNOWLEDGEMENT: XML_ACKNOWLEDGEMENT_FIELDS,
    FeedType.XML_ADJUSTMENT: XML_ADJUSTMENT_FIELDS,
}

# MessageType → feed type, and the element that holds one record inside the payload.
MESSAGE_TYPES: dict[str, FeedType] = {
    "OrderAcknowledgement": FeedType.XML_ACKNOWLEDGEMENT,
    "OrderAdjustment": FeedType.XML_ADJUSTMENT,
}
PAYLOAD_TAGS: dict[FeedType, str] = {feed_type: tag for tag, feed_type in MESSAGE_TYPES.items()}
ITEM_TAGS: dict[FeedType, str] = {FeedType.XML_ACKNOWLEDGEMENT: "Item", FeedType.XML_ADJUSTMENT: "AdjustedItem"}
# Elements read at order level (children of the payload) and item level (children of the item).
ORDER_ELEMENTS: dict[FeedType, tuple[str, ...]] = {
    FeedType.XML_ACKNOWLEDGEMENT: ("AmazonOrderID", "MerchantOrderID", "StatusCode"),
    FeedType.XML_ADJUSTMENT: ("AmazonOrderID", "MerchantOrderID", "ActionType"),
}
ITEM_ELEMENTS: dict[FeedType, tuple[str, ...]] = {
    FeedType.XML_ACKNOWLEDGEMENT: ("AmazonOrderItemCode", "MerchantOrderItemID", "CancelReason", "Quantity"),
    FeedType.XML_ADJUSTMENT: ("AmazonOrderItemCode", "MerchantOrderItemID", "MerchantAdjustmentItemID",
                              "AdjustmentReason", "QuantityCancelled", "Quantity"),
}

# Message types of other Amazon feeds: a file of one of them is a real feed of a type this
# product does not process (unknown-feed-type), not a broken one (malformed-xml).
OTHER_AMAZON_MESSAGE_TYPES = frozenset({
    "CatPIL", "CharacteristicData", "Customer", "FulfillmentCenter", "FulfillmentOrderCancellationRequest",
    "FulfillmentOrderRequest", "Image", "Inventory", "InvoiceConfirmation", "Item", "Loyalty",
    "MultiChannelOrderReport", "NavigationReport", "Offer", "OrderFulfillment", "OrderNotificationReport",
    "OrderReport", "Override", "Price", "ProcessingReport", "Product", "ProductImage", "Relationship",
    "SettlementReport", "StoreLocator", "WebstoreItem", "CartonContentsRequest", "EasyShipDocument",
    "ShippingOverride", "SourcingOnDemand", "Lowest",
})

ROOT_TAG = "AmazonEnvelope"
# Optional envelope fields between MessageType and the first Message, in this order.
OPTIONAL_ENVELOPE_TAGS = ("MarketplaceName", "PurgeAndReplace", "EffectiveDate")

# ----------------------------------------------------------------------------- parser settings

# Every parser this module makes: entities never replaced, no DTD, no network, libxml2's
# limits on depth, text size and amplification kept (huge_tree=False); comments and
# processing instructions are dropped so that only elements are left in the tree.
PARSER_OPTIONS = {
    "resolve_entities": False,
    "load_dtd": False,
    "no_network": True,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
HEAD_CHUNK = 64 * 1024
SNIFF_BYTES = 256 * 1024
# How much of a UTF-16/32 file is decoded to scan its prolog; beyond it the parser-level
# DOCTYPE check (step 2) still applies.
WIDE_PROLOG_BYTES = 4 * 1024 * 1024
MAX_EXPLANATIONS = 10
# Messages per chunk: a chunk's messages stay in the tree until the chunk is checked in bulk.
CHUNK_MESSAGES = 8 * 1024
# ... and at most about this much of the file, as a chunk is serialized and copied a few times.
CHUNK_BYTES = 4 * 1024 * 1024
# Fewer messages than this whose shape was new in their chunk are validated one by one, not in bulk.
FEW_MESSAGES = 64
# Chunks are cut from the file's own bytes (xmlfast.FileText) unless this is off, the document is not
# UTF-8, or more than KEPT_BYTES were read without a chunk closing (then they are serialized instead).
FILE_TEXT = True
KEPT_BYTES = 64 * 1024 * 1024
# The most the parser is given per read (tests make it small, to split characters and tags across reads).
READ_BYTES = 1024 * 1024
# After the first chunk, a file whose chunks are cut from its bytes is read on in its bytes alone (the bytes phase,
# see `_Reader._bytes_phase`) unless this is off.
BYTES_PHASE = True
# In the bytes phase two worker threads survey chunks (the parser's thread, which builds no tree, has little to do),
# and up to three chunks are out at a time so that both have one while the oldest is settled.
BYTES_WORKERS = 2
CHUNKS_OUT = 3

_XML_SPACE = " \t\r\n"
_SPACE_RUN = re.compile(rb"[ \t\r\n]*")
_AMOUNT = re.compile(r"(-?)([0-9]{1,20})(?:\.([0-9]{1,2}))?")
_MESSAGE_ID = re.compile(r"[0-9]{1,18}")

# ----------------------------------------------------------------------------- schemas

SCHEMA_FILES = ("amzn-base.xsd", "amzn-envelope.xsd", "OrderAcknowledgement.xsd", "OrderAdjustment.xsd",
                "ProcessingReport.xsd")

# The message-level schema: a Message exactly as amzn-envelope.xsd declares it, with the
# payload fixed to the feed's MessageType.
_MESSAGE_SCHEMA = """<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <xsd:include schemaLocation="{payload}.xsd"/>
  <xsd:element name="Message">
    <xsd:complexType>
      <xsd:sequence>
        <xsd:element ref="MessageID"/>
        <xsd:element ref="OperationType" minOccurs="0"/>
        <xsd:element ref="{payload}"/>
      </xsd:sequence>
    </xsd:complexType>
  </xsd:element>
</xsd:schema>"""


def schema_text(name: str) -> bytes:
    """The bytes of one shipped XSD (package data, found through importlib.resources)."""
    if name not in SCHEMA_FILES:
        raise KeyError(f"no shipped schema named {name!r}")
    return (resources.files("orderfeeds") / "schemas" / name).read_bytes()


class _PackagedSchemas(etree.Resolver):
    """Resolves xsd:include of the shipped schemas from the package, never from disk or network."""

    def resolve(self, system_url, public_id, context):
        name = (system_url or "").replace("\\", "/").rsplit("/", 1)[-1]
        if name in SCHEMA_FILES:
            return self.resolve_string(schema_text(name), context, base_url=name)
        return self.resolve_empty(context)


def _schema_parser() -> etree.XMLParser:
    parser = etree.XMLParser(**PARSER_OPTIONS)
    parser.resolvers.add(_PackagedSchemas())
    return parser


def _compile(document: bytes, base_url: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(document, _schema_parser(), base_url=base_url))


def load_schema(name: str) -> etree.XMLSchema:
    """Compile one shipped XSD (e.g. "ProcessingReport.xsd") with its includes."""
    return _compile(schema_text(name), name)


class _Schemas:
    """The compiled schemas the reader needs. lxml validators keep their error log on the
    instance, so each thread compiles its own (once) instead of sharing one."""

    def __init__(self) -> None:
        self.envelope = load_schema("amzn-envelope.xsd")
        self.message = {
            feed_type: _compile(_MESSAGE_SCHEMA.format(payload=tag).encode(), f"Message-{tag}.xsd")
            for feed_type, tag in PAYLOAD_TAGS.items()
        }


_local = threading.local()


def _schemas() -> _Schemas:
    cached = getattr(_local, "schemas", None)
    if cached is None:
        cached = _local.schemas = _Schemas()
    return cached


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class XmlHead:
    """What the first bytes of an XML file say; every field None when unknown."""

    root: str | None = None
    message_type: str | None = None
    merchant_identifier: str | None = None

    @property
    def feed_type(self) -> FeedType | None:
        return MESSAGE_TYPES.get(self.message_type or "") if self.root == ROOT_TAG else None


def sniff_xml(data: bytes, limit: int = SNIFF_BYTES) -> XmlHead:
    """Root tag, MessageType and MerchantIdentifier from at most `limit` first bytes.

    Never raises and never resolves anything: a file with a DOCTYPE, broken XML or a
    MessageType beyond the limit just gives less. `read_xml` decides what is wrong.
    """
    if _prolog_declaration(data[:limit]) is not None:
        return XmlHead()
    parser = etree.XMLPullParser(events=("start", "end"), **PARSER_OPTIONS)
    root = message_type = merchant = None
    depth = 0
    try:
        for start in range(0, min(len(data), limit), HEAD_CHUNK):
            parser.feed(data[start:min(start + HEAD_CHUNK, limit)])
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if depth == 1:
                        if _has_doctype(elem) or elem.tag != ROOT_TAG:
                            return XmlHead(root=None if _has_doctype(elem) else _tag_name(elem))
                        root = elem.tag
                    elif depth == 2 and elem.tag == "Message":
                        return XmlHead(root, message_type, merchant)
                    continue
                depth -= 1
                if depth == 2 and elem.tag == "MerchantIdentifier" and elem.getparent().tag == "Header":
                    merchant = _text(elem)
                elif depth == 1 and elem.tag == "MessageType":
                    message_type = _text(elem)
                    return XmlHead(root, message_type, merchant)
    except (etree.LxmlError, ValueError, LookupError):
        pass
    return XmlHead(root, message_type, merchant)


def detect_xml(data: bytes) -> FeedType | None:
    """The XML feed type named by the MessageType in the first bytes, or None."""
    return sniff_xml(data).feed_type


# ----------------------------------------------------------------------------- reading


def read_xml(source: bytes | Path, feed_type: FeedType | None, max_bytes: int) -> RawFeed:
    """Raw records of an XML feed (its bytes, or a file streamed from disk), or a FeedError naming why
    the whole file is rejected: `iter_xml`'s pieces, taken as one."""
    return joined(list(iter_xml(source, feed_type, max_bytes, UNCHUNKED)))


def iter_xml(source: bytes | Path, feed_type: FeedType | None, max_bytes: int,
             chunk_records: int = UNCHUNKED) -> Iterator[RawFeed]:
    """Raw records of an XML feed in pieces of about `chunk_records` records each, in file order.

    The file is checked up front as `read_xml` checks it (size cap, prolog, root) and then streamed;
    a piece is handed out at a chunk boundary (always between messages) once at least
    `chunk_records` records have gathered since the last piece, and the last piece holds the rest.
    The pieces, concatenated (frames and issues), are exactly what `read_xml` gives: `seq` counts
    on across pieces from 0, and a MessageID repeated in a later piece is a `duplicate-message-id`
    naming the line of its first message, wherever that was. Every piece has the feed type, fields
    and column order; notes, if any, come with the first. The reader keeps no earlier piece, so
    consuming the pieces one at a time needs memory for one piece, not the file.

    A FeedError is raised where the problem is found: a broken envelope or malformed XML near the
    end of the file comes after some pieces were yielded. The whole file is rejected then, so the
    caller must discard everything it did with the pieces it already had.
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be 1 or more, not {chunk_records}")
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > max_bytes:
        raise FeedError("feed-too-large", f"the file has {size:,} bytes; the limit is {max_bytes:,}")
    if feed_type is not None and not feed_type.is_xml:
        raise FeedError("unknown-feed-type", f"the file is XML, not a flat {feed_type.value} feed")
    _reject_prolog_declarations(read_head(source, WIDE_PROLOG_BYTES))
    _check_root(_chunks(source))
    yield from _Reader(feed_type).pieces(source, chunk_records)


def read_head(source: bytes | Path, limit: int) -> bytes:
    """At most `limit` first bytes of a feed: all that detection and the prolog checks look at."""
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            return stream.read(limit)
    return source[:limit]


def _chunks(source: bytes | Path) -> Iterator[bytes]:
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            while chunk := stream.read(HEAD_CHUNK):
                yield chunk
        return
    for start in range(0, len(source), HEAD_CHUNK):
        yield source[start:start + HEAD_CHUNK]


class _Tee:
    """The file as the parser reads it, keeping the bytes read since the last chunk was handed out.

    The file is read in blocks of READ_BYTES, kept whole (long blanks squeezed, see `xmlfast.squeezed`) and given
    to the parser in the pieces it asks for (32 kB): a kept block may run ahead of what the parser has read."""

    def __init__(self, stream: BinaryIO, keep: bool, checker: etree.XMLParser | None = None):
        self.stream = stream
        self.blocks: list[bytes] | None = [] if keep else None  # None: not kept (any more)
        self.kept = 0
        self.block = b""  # the block being given to the parser, and how much of it it has had
        self.given = 0
        # A parser that checks the file block by block as read, for the bytes phase; None once that cannot follow.
        self.checker = checker
        self.squeezed = self.took_squeezed = False  # whether blocks kept (taken) since the last take were squeezed

    def read(self, size: int = -1) -> bytes:
        if self.given >= len(self.block):
            self.block, self.given = self.stream.read(READ_BYTES), 0
            if self.checker is not None and self.block:
                try:
                    self.checker.feed(self.block)
                except etree.XMLSyntaxError:
                    self.checker = None  # the parser reading through the tee will say what and where
            if self.blocks is not None:
                self.kept += len(self.block)
                if self.kept > KEPT_BYTES:
                    self.blocks = None
                else:
                    block = xmlfast.squeezed(self.block)
                    self.squeezed = self.squeezed or block is not self.block
                    self.blocks.append(block)
        start = self.given
        self.given = len(self.block) if size < 0 else min(len(self.block), start + size)
        return self.block[start:self.given]

    def take(self) -> list[bytes] | None:
        """The bytes kept since the last call (None if some were not kept); the parser may not have had all yet."""
        blocks = self.blocks
        if blocks is not None:
            self.blocks, self.kept = [], 0
        self.took_squeezed, self.squeezed = self.squeezed, False
        return blocks

    def tell(self) -> int:
        """How much of the file the parser has been given."""
        return self.stream.tell() - (len(self.block) - self.given)

    @property
    def closed(self) -> bool:
        return self.stream.closed


class _Reader:
    """One pass over one file; holds the rows and issues built so far."""

    def __init__(self, wanted: FeedType | None, fast: bool = True):
        self.wanted = wanted
        # Pieces: records to gather before one is handed out, records in `chunks`, records handed out
        # (the next piece's first seq), whether a piece is due, and the numbered MessageIDs of the
        # pieces handed out with the line of each one's first message (Int64 id, Int64 first-line).
        self.chunk_records = self.chunk_messages = UNCHUNKED
        self.pending = 0
        self.seq = 0
        self.due = False
        self.seen: pl.DataFrame | None = None
        self.feed_type: FeedType | None = None
        self.fields: tuple[Field, ...] = ()
        self.position: dict[str, int] = {}
        self.order_position: dict[str, int] = {}
        self.item_position: dict[str, int] = {}
        self.price_position: dict[str, int] = {}
        self.promotion_position: dict[str, int] = {}
        self.promotion_id = self.currency = -1
        self.payload_tag = self.item_tag = ""
        self.schema: etree.XMLSchema | None = None
        # Messages on the per-message path (XSD on each): rows as tuples (tuples of strings are
        # untracked by the cyclic GC, lists are not), keyed by message ordinal and item index.
        self.rows: list[tuple[str | None, ...]] = []
        self.keys: tuple[array, array, array, array, array, array] = _key_arrays()
        self.chunks: list[pl.DataFrame | Future[pl.DataFrame]] = []
        # Schema issues by (message ordinal, item index); they get their seq once the frame is built.
        self.issues: tuple[array, array, list[str]] = (array("q"), array("q"), [])
        self.messages = 0
        self.flushed_messages = 0
        self.last: etree._Element | None = None
        self.fast = fast
        self.batch: xmlfast.Batch | None = None
        self.order_tags: tuple[str, ...] = ()
        self.item_tags: tuple[str, ...] = ()
        self.root: etree._Element | None = None
        # The chunks handed out and not yet settled, oldest first: the worker's job (made on the first hand-out)
        # and what it was handed, should the chunk have to be serialized after all. At most two: a chunk cut from
        # the file's bytes is handed out before the one before it is settled.
        self.jobs: deque[tuple[Future[xmlfast.Survey], tuple]] = deque()
        self.message_lines = array("q")  # of the messages not yet handed out
        self.worker: ThreadPoolExecutor | None = None
        self.stream: _Tee | None = None
        self.flushed_bytes = 0
        # The chunks' text is cut from the file's bytes (None once they are serialized instead).
        self.file_text: xmlfast.FileText | None = None
        # The bytes phase: whether the reader went on to it, the file up to the root's `>` (to read on from a place
        # in the file) and the root's start tag on one line (to parse messages in), and whether the rest of the file
        # is being read on from a place (`_resume`), after a message on line `resumed_after`.
        self.handed_over = self.continued = False
        self.root_head: bytes | None = None
        self.root_tag = ""
        self.resumed_after = 0
        self.pool: ThreadPoolExecutor | None = None
        self.events: etree.iterparse | None = None  # the parser that builds the tree, while it does
        self.source: BinaryIO = io.BytesIO()  # the file, read again to say why it is not well-formed

    # -- the stream --------------------------------------------------------------

    def read(self, source: bytes | Path) -> RawFeed:
        """The whole file as one RawFeed."""
        return joined(list(self.pieces(source)))

    def pieces(self, source: bytes | Path, chunk_records: int = UNCHUNKED) -> Iterator[RawFeed]:
        """The file in pieces of about `chunk_records` records (see `iter_xml`)."""
        self.chunk_records = chunk_records
        self.chunk_messages = min(CHUNK_MESSAGES, chunk_records)
        if isinstance(source, Path):
            with open(source, "rb") as stream:
                yield from self._read(stream)
            return
        yield from self._read(io.BytesIO(source))

    def _read(self, stream: BinaryIO) -> Iterator[RawFeed]:
        keep = self.fast and FILE_TEXT
        checker = _checking_parser() if keep and BYTES_PHASE else None
        self.source = stream
        try:
            yield from self._parse(_Tee(stream, keep=keep, checker=checker))
        finally:
            for pool in (self.worker, self.pool):
                if pool is not None:
                    # An unfinished file (an error, or the caller stopped early) leaves a few jobs behind.
                    pool.shutdown(wait=True, cancel_futures=True)
            self.worker = self.pool = None

    def _parse(self, tee: _Tee) -> Iterator[RawFeed]:
        self.stream = tee
        # Blank text between elements is dropped as it is parsed (a blank that is an element's whole
        # content is kept): the XSD ignores it in element-only content, and a chunk serializes smaller.
        events = self.events = etree.iterparse(tee, events=("end",), tag=("Message", ROOT_TAG),
                                               remove_blank_text=True, **PARSER_OPTIONS)
        try:
            yield from self._events(events)
        except etree.XMLSyntaxError as exc:
            raise self._not_well_formed_error(exc, events.error_log) from None
        if self.handed_over:
            del events  # and with it the tree: the rest of the file is read in its bytes
            self.events = None
            yield from self._bytes_phase()

    def _events(self, events: etree.iterparse) -> Iterator[RawFeed]:
        root = None
        for _, elem in events:
            if elem.tag == "Message":
                parent = elem.getparent()
                if root is None:
                    if parent is None or parent.getparent() is not None:
                        continue  # a Message nested deeper is part of its message (and its XSD error)
                    root = parent
                    if self.continued:
                        self.root = root
                        self._next_message(elem, root)
                    else:
                        self._first_message(elem, root)
                elif parent is not root:
                    continue
                else:
                    self._next_message(elem, root)
            elif elem.getparent() is None:
                self._finish(elem)
            if self.due:
                yield self._piece()
            if self.handed_over:
                return
        assert self.feed_type is not None  # _finish raised otherwise
        self._flush()
        if self.due:
            yield self._piece()
        self._drain()
        if self.chunks:  # none only when the last chunk closed a piece: every message has a record
            yield self._piece()

    def _first_message(self, elem: etree._Element, root: etree._Element) -> None:
        before = list(elem.itersiblings(preceding=True))
        before.reverse()
        self.root = root
        stream = self.stream
        blocks = stream.blocks if stream is not None else None
        head = b"".join(islice(blocks, 64)) if blocks else b""
        codec = _file_text_codec(head[:4096]) if blocks else None
        if codec is not None:
            self.file_text = xmlfast.FileText(codec)
            found = _ROOT_START.match(head)
            if found is not None and not stream.squeezed:
                self.root_head = head[:found.start(2)]
                self.root_tag = re.sub(r"[\r\n]", " ", (found.group(1) + found.group(2)).decode(codec, "replace"))
        elif stream is not None:
            stream.blocks = None  # no chunk will be cut from them: the tee stops keeping (and squeezing) them
        if stream is not None and self.root_head is None:
            stream.checker = None
        self._envelope(root, before, elem)
        self._done(elem, root, len(before))

    def _next_message(self, elem: etree._Element, root: etree._Element) -> None:
        # Normally exactly one element precedes since the last message: that message itself, with no tail
        # (blank tails are not kept).
        previous = elem.getprevious()
        if previous is not None and previous is self.last and previous.tail is None:
            self._done(elem, root, 0)
            return
        for other in elem.itersiblings(preceding=True):
            if other.tag != "Message":
                raise _envelope_break(other, "is not part of the envelope; only Message elements may follow the "
                                             "first Message")
            tail = other.tail
            if tail is not None and tail.strip(_XML_SPACE):
                _check_tail(other)
            if other is self.last:
                break
        if self.last is None:  # the first message read on from a place: what precedes it follows the message before
            _check_text_at(root.text, self.resumed_after, "after <Message>")
        self._done(elem, root, 0)

    def _done(self, elem: etree._Element, root: etree._Element, before: int) -> None:
        self.messages += 1
        self.last = elem
        if self.fast:
            self.message_lines.append(elem.sourceline)
        else:
            self._records(elem, self.messages)
            # Its tail may still be growing in the parser, so it is kept.
            elem.clear(keep_tail=True)
        if before:
            del root[:before]  # the envelope's Header and MessageType, checked already
        if self.messages - self.flushed_messages >= self.chunk_messages or (
                not self.messages % 32 and self.fast and self.stream is not None
                and self.stream.tell() - self.flushed_bytes >= CHUNK_BYTES):
            self._flush(hand_over=True)

    def _finish(self, root: etree._Element) -> None:
        children = list(root)
        if self.root is None and not self.continued:
            self._envelope(root, children, None)
            raise FeedError("malformed-xml", f"line {root.sourceline}: the AmazonEnvelope has no Message; a feed "
                            "has one Message per order", line=root.sourceline)
        if self.continued and self.last is None:  # read on from a place, and no message after it
            _check_text_at(root.text, self.resumed_after, "after <Message>")
        for child in children:
            if child.tag != "Message":
                raise _envelope_break(child, "is not part of the envelope; only Message elements may follow the "
                                             "first Message")
            _check_tail(child)

    # -- the envelope ------------------------------------------------------------

    def _envelope(self, root: etree._Element, before: list[etree._Element], first: etree._Element | None) -> None:
        """Header, MessageType and the optional fields before the first Message (SPEC §2.4)."""
        _check_text(root.text, root, "before the Header")
        where = first if first is not None else root
        parts = iter(before)
        header = next(parts, None)
        if header is None or header.tag != "Header":
            found = f"<{_tag_name(header)}>" if header is not None else "a Message"
            node = header if header is not None else where
            raise FeedError("malformed-xml", f"line {node.sourceline}: the AmazonEnvelope must start with a Header "
                            f"(DocumentVersion, MerchantIdentifier), but {found} comes first", line=node.sourceline)
        _validate_envelope_part(header)
        kind = next(parts, None)
        if kind is None or kind.tag != "MessageType":
            node = kind if kind is not None else where
            found = f"<{_tag_name(kind)}>" if kind is not None else ("a Message" if first is not None else "nothing")
            raise FeedError("malformed-xml", f"line {node.sourceline}: the Header must be followed by MessageType "
                            f"(OrderAcknowledgement or OrderAdjustment), but {found} follows it", line=node.sourceline)
        self._message_type(kind)
        last = -1
        for part in parts:
            index = OPTIONAL_ENVELOPE_TAGS.index(part.tag) if part.tag in OPTIONAL_ENVELOPE_TAGS else -1
            if index <= last:
                raise _envelope_break(part, "is not part of the envelope here; after MessageType come only "
                                            f"{', '.join(OPTIONAL_ENVELOPE_TAGS)} (each at most once, in this "
                                            "order) and then the Messages")
            _validate_envelope_part(part)
            last = index
        for part in before:
            _check_tail(part)

    def _message_type(self, elem: etree._Element) -> None:
        line = elem.sourceline
        value = _text(elem)
        if len(elem):
            raise _envelope_break(elem, "must hold only the message type's name, not elements")
        if value is None:
            raise FeedError("malformed-xml", f"line {line}: MessageType is empty; it names the feed's message type "
                            "(OrderAcknowledgement or OrderAdjustment)", line=line)
        found = MESSAGE_TYPES.get(value)
        if found is None:
            if value in OTHER_AMAZON_MESSAGE_TYPES:
                raise FeedError("unknown-feed-type", f"line {line}: MessageType '{value}' is an Amazon feed this "
                                "product does not process; it reads OrderAcknowledgement "
                                f"({FeedType.XML_ACKNOWLEDGEMENT.value}) and OrderAdjustment "
                                f"({FeedType.XML_ADJUSTMENT.value}) feeds", line=line)
            raise FeedError("malformed-xml", f"line {line}: MessageType '{_shown(value)}' is not a message type of an "
                            "Amazon feed; use OrderAcknowledgement or OrderAdjustment", line=line)
        if self.wanted is not None and self.wanted is not found:
            raise FeedError("unknown-feed-type", f"line {line}: the file is an {value} feed ({found.value}), not a "
                            f"{self.wanted.value} feed as the feed type given says", line=line)
        self.feed_type = found
        self.fields = XML_FIELDS[found]
        self.payload_tag, self.item_tag = PAYLOAD_TAGS[found], ITEM_TAGS[found]
        self.schema = _schemas().message[found]
        position = self.position = {f.name: i for i, f in enumerate(self.fields)}
        self.order_position = {name: position[name] for name in ORDER_ELEMENTS[found]}
        self.item_position = {name: position[name] for name in ITEM_ELEMENTS[found]}
        self.order_tags, self.item_tags = ORDER_ELEMENTS[found], ITEM_ELEMENTS[found]
        self.batch = xmlfast.Batch(self.fields)
        if found is FeedType.XML_ADJUSTMENT:
            self.price_position = {name: position[name] for name in PRICE_COMPONENTS}
            self.promotion_position = {kind: position[name] for kind, name in PROMOTION_COMPONENTS.items()}
            self.promotion_id, self.currency = position["MerchantPromotionID"], position["currency"]

    # -- one message -------------------------------------------------------------

    def _records(self, message: etree._Element, ordinal: int, where: tuple[int, list[int]] | None = None,
                 shift: int = 0) -> None:
        """The per-message path: the XSD on the message, then its records cut out one by one. `where`: the
        line of the message and of each of its items, when the bulk checks counted them (else the parser's, with
        `shift` added: the message may have been parsed apart from the file)."""
        explained_whole: list[str] = []
        explained_items: dict[int, list[str]] = {}
        schema = self.schema
        assert schema is not None
        if not schema.validate(message):
            explained_whole, explained_items = _explain(schema.error_log, self.payload_tag, self.item_tag, shift)

        message_id = payload = None
        for child in message:
            tag = child.tag
            if tag == "MessageID":
                if message_id is None:
                    message_id = (child.text or "").strip(_XML_SPACE)
            elif tag == self.payload_tag and payload is None:
                payload = child
        if message_id and _MESSAGE_ID.fullmatch(message_id) and int(message_id) > 0:
            record, numbered = int(message_id), True
        else:
            record, numbered = ordinal, False  # see the module doc

        base: list[str | None] = [None] * len(self.fields)
        items: list[etree._Element] = []
        if payload is not None:
            order_position, item_tag = self.order_position, self.item_tag
            for child in payload:
                tag = child.tag
                if tag == item_tag:
                    items.append(child)
                    continue
                index = order_position.get(tag)  # type: ignore[arg-type]
                if index is not None and base[index] is None:
                    text = child.text
                    if text is not None:
                        base[index] = text.strip(_XML_SPACE) or None

        message_line = message.sourceline + shift
        item_lines: list[int] = []
        if where is not None:
            message_line, item_lines = where
        if len(item_lines) != len(items):  # items nested deeper were counted too: the parser's lines, then
            item_lines = [item.sourceline + shift for item in items]
        rows, keys = self.rows, self.keys
        if not items:
            rows.append(tuple(base))
            _append_key(keys, ordinal, 1, record, numbered, message_line, message_line)
            if explained_whole:
                self._problems(ordinal, 1, record, numbered, message_line, explained_whole)
            return
        last = len(items) - 1
        for position, item in enumerate(items):
            row = base if position == last else base.copy()
            currency_problem = self._fill_item(item, row)
            rows.append(tuple(row))
            _append_key(keys, ordinal, position + 1, record, numbered, item_lines[position], message_line)
            problems = explained_whole
            if explained_items or currency_problem:
                problems = problems + explained_items.get(position + 1, [])
                if currency_problem:
                    problems.append(f"line {item_lines[position]}, {self.item_tag}: {currency_problem}")
            if problems:
                self._problems(ordinal, position + 1, record, numbered, message_line, problems)

    def _problems(self, ordinal: int, item: int, record: int, numbered: bool, message_line: int,
                  problems: list[str]) -> None:
        if numbered:
            label = f"message {record}"
        else:
            label = (f"the message on line {message_line} (its MessageID is not a whole number, so the "
                     f"report shows it as record {record}, its position in the file)")
        shown = problems[:MAX_EXPLANATIONS]
        more = len(problems) - len(shown)
        messages, items, texts = self.issues
        messages.append(ordinal)
        items.append(item)
        texts.append(f"{label} does not match the {self.payload_tag} message schema: "
                     + "; ".join(shown) + (f"; and {more} more" if more else ""))

    def _fill_item(self, item: etree._Element, row: list[str | None]) -> str | None:
        """Item fields into `row`; a sentence when the item's amounts disagree on currency."""
        item_position = self.item_position
        if self.feed_type is FeedType.XML_ACKNOWLEDGEMENT:
            for child in item:
                index = item_position.get(child.tag)  # type: ignore[arg-type]
                if index is not None and row[index] is None:
                    text = child.text
                    if text is not None:
                        row[index] = text.strip(_XML_SPACE) or None
            return None
        currencies: dict[str, None] = {}
        for child in item:
            tag = child.tag
            if tag == "ItemPriceAdjustments":
                for component in child:
                    if component.tag == "Component":
                        _component(component, self.price_position, row, currencies)
            elif tag == "PromotionAdjustments":
                for part in child:
                    if part.tag == "Component":
                        _component(part, self.promotion_position, row, currencies)
                    elif part.tag == "MerchantPromotionID" and row[self.promotion_id] is None:
                        row[self.promotion_id] = _text(part)
            else:
                index = item_position.get(tag)  # type: ignore[arg-type]
                if index is not None and row[index] is None:
                    text = child.text
                    if text is not None:
                        row[index] = text.strip(_XML_SPACE) or None
        if currencies:
            row[self.currency] = next(iter(currencies))
            if len(currencies) > 1:
                return (f"the amounts of this item name different currencies ({', '.join(currencies)}); all "
                        "amounts of one item are in the order's currency")
        return None

    # -- the frame ---------------------------------------------------------------

    def _hand_out(self, root: etree._Element, first: int, count: int) -> None:
        """Give the chunk's messages (the first `count` children of the root) to the worker thread, whose bulk
        checks run while the parser reads the next chunk: the bytes read since the last chunk, or else the
        chunk serialized and the lines of its items."""
        batch, stream = self.batch, self.stream
        assert batch is not None and stream is not None
        text: str | tuple[xmlfast.FileText, list[bytes]]
        if self._cut_from_bytes():
            assert self.file_text is not None
            text, item_lines = (self.file_text, stream.take()), None  # the worker counts the lines in the bytes
        else:
            self.file_text = None  # the tee stopped keeping the bytes: serialized from now on
            text, item_lines = etree.tostring(root, encoding="unicode"), self._item_lines(root)
        message_lines = pl.Series(self.message_lines, dtype=pl.Int64)
        self.message_lines = array("q")
        handed = (count, first, self.item_tag, message_lines, item_lines, batch.lookup(), batch.plan_table())
        if self.worker is None:
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orderfeeds-xml")
        self.jobs.append((self.worker.submit(batch.survey, text, *handed), handed))

    def _cut_from_bytes(self) -> bool:
        """Whether the chunk handed out next is cut from the file's bytes (else it is serialized)."""
        return self.file_text is not None and self.stream is not None and self.stream.blocks is not None

    def _item_lines(self, root: etree._Element) -> pl.Series:
        """The lines of the items under the root, in document order, as the parser gives them."""
        # The elements are read here, on the parser's thread, never by the worker; each proxy is dropped at once.
        return pl.Series([item.sourceline for item in root.iter(self.item_tag)], dtype=pl.Int64)

    def _settle(self, survey: xmlfast.Survey,
                elements: Callable[[list[int]], list[tuple[etree._Element, int]]]) -> pl.DataFrame | None:
        """The records of a surveyed chunk, whose messages `elements` gives (by their places in the chunk, each with
        what to add to its lines): new signatures get a plan (once the XSD accepts a message of theirs) and are
        checked in bulk too; every message that has no plan or fails a check is validated with the XSD on its own."""
        batch, schema = self.batch, self.schema
        assert batch is not None and schema is not None and self.feed_type is not None
        first, count = survey.first, survey.count
        unplanned = survey.unplanned
        if unplanned is None:  # the text could not be cut into these messages: each on its own
            for index, (message, shift) in enumerate(elements(list(range(count)))):
                self._records(message, first + index, None, shift)
            return None
        assert survey.lines is not None
        parts = [survey.fast] if survey.fast is not None else []
        failed = list(survey.failed)
        slow = unplanned
        if survey.shapes:
            plan_of: dict[str, int] = {}
            signatures = batch.signatures
            # A signature without a plan in the lookup the chunk was handed out with is new, known to have none, or
            # got its plan since (when a chunk before, settled after this one was handed out, had it too).
            new = []
            for signature, rows, _ in survey.shapes:
                known = signatures.get(signature, False)
                if known is False:
                    new.append((signature, rows))
                elif known is not None:
                    plan_of[signature] = known.id
            needed = sorted({row for _, rows in new for row in rows})
            element = {row: message for row, (message, _) in zip(needed, elements(needed), strict=True)}
            for signature, rows in new:
                # A shape is taken on trust only once the XSD has accepted a message of it.
                for row in rows:
                    if schema.validate(element[row]):
                        plan = xmlfast.sig_plan(batch.plans, element[row], signature, self.feed_type,
                                                self.payload_tag, self.item_tag, self.order_tags, self.item_tags,
                                                PROMOTION_COMPONENTS)
                        if plan is None:
                            signatures[signature] = None
                        else:
                            batch.add_plan(signature, plan)
                            plan_of[signature] = plan.id
                        break
            # A few messages cost less on the per-message path than a bulk check.
            if sum(n for signature, _, n in survey.shapes if signature in plan_of) >= FEW_MESSAGES:
                planned = unplanned.with_columns(
                    pl.col("sig").replace_strict(list(plan_of), list(plan_of.values()), default=None,
                                                 return_dtype=pl.Int64).alias("plan"))
                slow = planned.filter(pl.col("plan").is_null())
                fast, more = batch.frame(planned.filter(pl.col("plan").is_not_null()), survey.lines,
                                         batch.plan_table())
                parts.append(fast)
                failed += more
        wanted = sorted(slow.get_column("_msg").to_list() + failed)
        for ordinal, (message, shift), where in zip(wanted, elements([ordinal - first for ordinal in wanted]),
                                                    survey.where(wanted), strict=True):
            self._records(message, ordinal, where, shift)
        return pl.concat(parts) if parts else None

    def _flush(self, hand_over: bool = False) -> None:
        """Close a chunk: hand it out and settle the chunk before it (whose bulk checks ran meanwhile), and turn
        the settled records into one frame in file order. The file's first chunk, closed before its end
        (`hand_over`), may instead be settled at once, and the rest of the file read in its bytes."""
        first, count = self.flushed_messages + 1, self.messages - self.flushed_messages
        self.flushed_messages = self.messages
        if self.stream is not None and not self.stream.closed:
            self.flushed_bytes = self.stream.tell()
        root = self.root
        parts = []
        if self.fast and root is not None:
            if count and self._cut_from_bytes():
                # Cut from the file's bytes, the chunk needs no element: it is handed out first, so that the worker
                # has it while the chunk before is settled here.
                self._hand_out(root, first, count)
                if hand_over and self._hand_over(root):
                    return
                parts = self._settled(root, leave=1)
            else:
                # Serialized, the chunk before must go first: its messages are the first children of the root.
                if self.stream is not None:
                    self.stream.checker = None  # no bytes phase after a chunk not cut from the bytes
                parts = self._settled(root)
                if count:
                    self._hand_out(root, first, count)
        elif root is not None and self.last is not None and self.last.getparent() is root:
            # The per-message path is done with the chunk's messages; the last one stays, as its tail may
            # still be growing in the parser.
            del root[:root.index(self.last)]
        self._close(parts)

    def _hand_over(self, root: etree._Element) -> bool:
        """Whether the chunk just handed out, the file's first, has been settled here so that the rest of the file is
        read in its bytes (`_bytes_phase`): only if it was cut from the bytes, which the checking parser has had from
        the start, and it ends where the next can be cut from (known column, no blank squeezed in its bytes)."""
        stream, text = self.stream, self.file_text
        assert stream is not None and text is not None  # the chunk was cut from the bytes
        # A file read on from a place (`_resume`) has no checking parser.
        if stream.checker is None or len(self.jobs) != 1:
            return False
        if self.events is not None and _first_error(self.events.error_log) is not None:
            # An error libxml2 lets the parse go on after (a namespace's, say) is raised at the document's end, and
            # the checking parser does not raise it at all: the tree's parser must read on to the end.
            stream.checker = None
            return False
        survey = self.jobs[0][0].result()
        if survey.lost or text.column is None or stream.took_squeezed:
            stream.checker = None
            return False
        self.resumed_after = survey.last_line
        self._close(self._settled(root))
        self.handed_over = True
        self.root = self.last = None  # the tree is let go
        return True

    def _not_well_formed_error(self, exc: etree.XMLSyntaxError, log) -> FeedError:
        """Why the file is not well-formed, when the tree's parser stopped at `exc`: the first fatal error of the
        whole file read again in one go by a parser with no callbacks, or else the tree parser's own (an error that
        parser finds and the other does not: a namespace's). lxml's iterparse can go on after a fatal error when
        given more to read, clearing its log and starting over, and then reports what it made of the rest (say
        "Start tag expected" at line 1 for an entity that is not defined), and what it makes of it depends on how
        the file was split into reads."""
        checker = _checking_parser()
        self.source.seek(0)
        try:
            while block := self.source.read(READ_BYTES):
                checker.feed(block)
            checker.close()
        except etree.XMLSyntaxError as found:
            return _malformed(found, checker.error_log)
        return _malformed(exc, log)

    # -- the bytes phase ----------------------------------------------------------

    def _bytes_phase(self) -> Iterator[RawFeed]:
        """The rest of the file after its first chunk, read in its bytes: no parser builds a tree for it.

        The checking parser the tee has fed from the start reads on, block by block, and only says whether the
        file is well-formed (libxml2 with no callbacks: the tree costs most of a parse). Chunks are cut at a line
        end after a `</Message>` and surveyed on two worker threads, cut by `xmlfast.cut_chunk`, which takes only a
        chunk of top-level messages with nothing but blanks between them; the messages that go to the XSD are
        parsed apart from their text (`_fragments`). Anything else (a chunk that is not such messages, text or an
        element after the last one, a file not well-formed) has the rest of the file read from that chunk's start
        with a tree (`_resume`), so the records, issues and errors are the same in every case."""
        tee, text = self.stream, self.file_text
        assert tee is not None and text is not None and tee.checker is not None and text.column is not None
        checker, stream, codec = tee.checker, tee.stream, text.codec
        tee.checker = None
        data = text.carry
        place = _Place(stream.tell() - len(data), text.line, text.column)
        most = self.chunk_messages
        pending, size, ends = [data], len(data), data.count(_END_TAG)
        block = b"-"
        while block:
            block = stream.read(READ_BYTES)
            if block:
                try:
                    checker.feed(block)
                except etree.XMLSyntaxError as exc:
                    yield from self._not_well_formed(exc, checker, place)
                    return
                pending.append(block)
                size += len(block)
                ends += block.count(_END_TAG)
                if size < CHUNK_BYTES and ends < most:
                    continue
            data = b"".join(pending)
            ends = data.count(_END_TAG)  # exactly: a block may end inside one
            while end := _chunk_end(data, ends, most, at_end=not block):
                rest = data.count(_END_TAG, end)
                chunk = data[:end]
                self._hand_out_chunk(chunk, ends - rest, place, codec)
                if (yield from self._settled_chunks(leave=CHUNKS_OUT - 1)):
                    return
                place = _after(place, chunk, codec)
                data, ends = data[end:], rest
                if block and len(data) < CHUNK_BYTES and ends < most:
                    break
            if len(data) > KEPT_BYTES:
                yield from self._resume(place)  # no line ends with a Message: a file on one line, say
                return
            pending, size = [data], len(data)
        if (yield from self._settled_chunks(leave=0)):
            return
        if not _ROOT_END.fullmatch(data):
            yield from self._resume(place)  # what follows the last message is for the parser to judge
            return
        try:
            checker.close()
        except etree.XMLSyntaxError as exc:
            yield from self._not_well_formed(exc, checker, place)
            return
        if self.chunks:
            yield self._piece()

    def _hand_out_chunk(self, chunk: bytes, count: int, place: _Place, codec: str) -> None:
        """Give the workers a chunk of the bytes phase, of `count` messages (its `</Message>`)."""
        batch = self.batch
        assert batch is not None
        first = self.messages + 1
        self.messages = self.flushed_messages = self.messages + count
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=BYTES_WORKERS, thread_name_prefix="orderfeeds-xml-bytes")
        job = self.pool.submit(batch.survey, xmlfast.Chunk(chunk, count, place.line, codec), count, first,
                               self.item_tag, pl.Series(dtype=pl.Int64), None, batch.lookup(), batch.plan_table())
        self.jobs.append((job, (place, first)))

    def _settled_chunks(self, leave: int) -> Iterator[RawFeed]:
        """Settle the chunks out but the last `leave`, oldest first, handing out a piece when one is due; True (the
        generator's value) if one of them was not what it must be, and the rest of the file was read from its start."""
        while len(self.jobs) > leave:
            job, (place, first) = self.jobs.popleft()
            survey = job.result()
            parts = None if survey.lost else self._settled_apart(survey)
            if parts is None:
                yield from self._resume(place, first)
                return True
            self.resumed_after = survey.last_line
            self._close(parts)
            if self.due:
                yield self._piece()
        return False

    def _settled_apart(self, survey: xmlfast.Survey) -> list[pl.DataFrame] | None:
        """`_settle` for a chunk of the bytes phase; None, and nothing kept, if a message would not parse apart."""
        rows, keys, issues = len(self.rows), [len(column) for column in self.keys], len(self.issues[2])
        try:
            fast = self._settle(survey, lambda offsets: self._fragments(survey, offsets))
        except (etree.XMLSyntaxError, _NotAsCut):
            del self.rows[rows:]
            for column, length in zip(self.keys, keys, strict=True):
                del column[length:]
            for column in self.issues:
                del column[issues:]
            return None
        return [fast] if fast is not None else []

    def _fragments(self, survey: xmlfast.Survey, offsets: list[int]) -> list[tuple[etree._Element, int]]:
        """The elements of the chunk's messages at these places, each with what to add to its lines: parsed from their
        text in the root's start tag, a few thousand lines at a time (libxml2 keeps a line in 16 bits)."""
        slow = survey.slow
        texts = [slow[offset][2] or "" for offset in offsets]
        lines = [slow[offset][0] for offset in offsets]
        found: list[tuple[etree._Element, int]] = []
        start = 0
        while start < len(texts):
            parts, shifts, line = [self.root_tag], [], 1
            end = start
            while end < len(texts) and (end == start or line + texts[end].count("\n") < _FRAGMENT_LINES):
                parts += ("<Message", texts[end])
                shifts.append(lines[end] - line)
                line += texts[end].count("\n")
                end += 1
            parts.append("</AmazonEnvelope>")
            root = etree.fromstring("".join(parts), _fragment_parser())
            # A default namespace declared on a Message makes it another element (`xmlns = "..."` passes `table`).
            if len(root) != end - start or any(message.tag != "Message" for message in root):
                raise _NotAsCut()
            found += zip(root, shifts, strict=True)
            start = end
        return found

    def _not_well_formed(self, exc: etree.XMLSyntaxError, checker: etree.XMLParser, place: _Place) -> Iterator[RawFeed]:
        """The checking parser found the file not well-formed, before `place` (where the bytes not yet handed out
        start) or after it: in the chunks handed out, where the first pass would have found nothing else before it
        once they are settled, or after them, where the rest of the file is read as the first pass would."""
        if (yield from self._settled_chunks(leave=0)):
            return
        entry = _first_error(checker.error_log)
        where = (entry.line, entry.column) if entry is not None else exc.position
        if where < (place.line, place.column):
            raise _malformed(exc, checker.error_log) from None
        yield from self._resume(place)

    def _resume(self, place: _Place, first: int | None = None) -> Iterator[RawFeed]:
        """The rest of the file from `place`, between two top-level messages (`first` is the next one's ordinal), read
        by a parser that builds the tree, as the first pass reads a file: everything before it is settled."""
        self.jobs.clear()  # a chunk still out is after the place; the worker's result is not waited for
        if first is not None:
            self.messages = self.flushed_messages = first - 1
        assert self.stream is not None and self.root_head is not None and self.file_text is not None
        codec = self.file_text.codec
        self.file_text = xmlfast.FileText(codec)
        self.root = self.last = None
        self.continued, self.handed_over = True, False
        self.message_lines = array("q")
        self.flushed_bytes = 0
        yield from self._parse(_Tee(_Resumed(self.stream.stream, self.root_head, place, codec), keep=True))

    def _drain(self) -> None:
        """At the end of the file: settle the chunks still out."""
        while self.root is not None and self.jobs:
            self._close(self._settled(self.root))

    def _settled(self, root: etree._Element, leave: int = 0) -> list[pl.DataFrame]:
        """The bulk records of the oldest chunk out, if more than `leave` are out, once settled; its messages are
        let go."""
        if len(self.jobs) <= leave:
            return []
        job, handed = self.jobs.popleft()
        survey = job.result()
        if survey.lost:
            # The file's bytes did not match the chunk: it is serialized after all, and so is every chunk after it.
            assert self.batch is not None and self.stream is not None
            self.file_text = self.stream.blocks = None
            count, first, item_tag, message_lines, _, known, plans = handed
            survey = self.batch.survey(etree.tostring(root, encoding="unicode"), count, first, item_tag, message_lines,
                                       self._item_lines(root), known, plans)
        fast = self._settle(survey, lambda offsets: [(message, 0) for message in _children(root, offsets)])
        # Memory stays flat: the chunk's messages are done. While the parser runs, the next chunk's messages
        # follow them, so none of them is the last, whose tail may still grow.
        del root[:survey.count]
        return [fast] if fast is not None else []

    def _close(self, parts: list[pl.DataFrame]) -> None:
        """The records settled (bulk `parts` and the per-message rows) as the next chunk frame."""
        n = len(self.rows)
        if n:
            values = pl.DataFrame(self.rows, schema={f.name: pl.String for f in self.fields}, orient="row")
            ordinals, items, records, numbered, lines, message_lines = self.keys
            parts.append(pl.DataFrame({
                "_msg": pl.Series(ordinals, dtype=pl.Int64),
                "_item": pl.Series(items, dtype=pl.Int32),
                "_record": pl.Series(records, dtype=pl.Int64),
                "_numbered": pl.Series(numbered, dtype=pl.Int8).cast(pl.Boolean),
                "_line": pl.Series(lines, dtype=pl.Int64),
                "_mline": pl.Series(message_lines, dtype=pl.Int64),
            }).hstack(values))
            self.rows, self.keys = [], _key_arrays()
        if parts:
            # Put in file order on the worker thread when there is one: after the bulk checks of the chunk
            # just handed out, while the parser reads on.
            self.chunks.append(self.worker.submit(_in_file_order, parts) if self.worker is not None
                               else _in_file_order(parts))
            self.pending += sum(part.height for part in parts)
            self.due = self.pending >= self.chunk_records

    def _duplicates(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`duplicate-message-id` for every record of every message whose MessageID an earlier one has, in
        this piece or an earlier one; the piece's new MessageIDs are remembered for the pieces after it."""
        # The few columns needed are picked before filtering, which would copy every column of every chunk.
        messages = frame.select("_item", "_numbered", "_record", "_mline", "seq").filter(pl.col("_item") == 1).select(
            pl.when(pl.col("_numbered")).then(pl.col("_record")).otherwise(-1).alias("id"),
            pl.col("_mline").alias("line"), pl.col("seq").cast(pl.Int64),
        )
        ids = messages.get_column("id")
        ids = ids.filter(ids > 0)
        seen = self.seen
        if (seen is None or not ids.is_in(seen.get_column("id").implode()).any()) and ids.is_unique().all():
            self._remember(messages.filter(pl.col("id") > 0).select("id", pl.col("line").alias("first-line")))
            return pl.DataFrame(schema=ISSUE_SCHEMA)
        sizes = frame.group_by("_msg", maintain_order=True).len().get_column("len").cast(pl.Int64)
        messages = messages.with_columns(sizes.alias("size")).with_row_index("order").with_columns(
            pl.col("order").cast(pl.Int64))
        numbered = messages.filter(pl.col("id") > 0)
        first = numbered.group_by("id").agg(pl.col("order").min().alias("first"),
                                            pl.col("line").sort_by("order").first().alias("first-line"))
        if seen is not None:
            # A MessageID an earlier piece has: every message of this piece that has it is a repeat.
            first = first.join(seen, on="id", how="left", suffix=":seen").select(
                "id",
                pl.when(pl.col("first-line:seen").is_null()).then(pl.col("first")).otherwise(-1).alias("first"),
                pl.coalesce("first-line:seen", "first-line").alias("first-line"),
            )
        self._remember(first.filter(pl.col("first") >= 0).select("id", "first-line"))
        repeats = numbered.join(first, on="id").filter(pl.col("order") != pl.col("first"))
        return repeats.select(
            pl.int_ranges(pl.col("seq"), pl.col("seq") + pl.col("size")).alias("seq"), "id", "first-line",
        ).explode("seq").sort("seq").select(
            pl.col("seq").cast(pl.UInt32),
            pl.lit(0, pl.Int32).alias("rank"),
            pl.lit("duplicate-message-id").alias("error"),
            pl.format("MessageID {} is used again; the message on line {} already has it, so this one is not "
                      "applied. Give every message its own MessageID", pl.col("id"), pl.col("first-line")).alias("message"),
        ).cast(ISSUE_SCHEMA)

    def _remember(self, first: pl.DataFrame) -> None:
        """MessageIDs met for the first time (id, first-line: two Int64 columns, nothing else is kept)."""
        if self.chunk_records >= UNCHUNKED:
            return  # one piece: no piece comes after it to look them up
        first = first.cast({"id": pl.Int64, "first-line": pl.Int64})
        self.seen = first if self.seen is None else pl.concat([self.seen, first], rechunk=False)

    def _piece(self) -> RawFeed:
        """The records gathered since the last piece, with their issues; the reader lets go of them."""
        assert self.feed_type is not None  # _finish raised otherwise
        # No rechunk: copying every string column into one buffer would cost far more memory than the frame.
        frame = pl.concat([chunk.result() if isinstance(chunk, Future) else chunk for chunk in self.chunks],
                          rechunk=False)
        self.chunks, self.pending, self.due = [], 0, False
        n, start = frame.height, self.seq
        self.seq += n
        frame = frame.with_columns(pl.int_range(start, start + n, dtype=pl.UInt32).alias("seq"))
        # Every issue so far belongs to a message of this piece: messages are checked before their chunk closes.
        ordinals, items, texts = self.issues
        self.issues = (array("q"), array("q"), [])
        schema_issues = pl.DataFrame({
            "_msg": pl.Series(ordinals, dtype=pl.Int64), "_item": pl.Series(items, dtype=pl.Int32),
            "message": pl.Series(texts, dtype=pl.String),
        }).join(frame.select("_msg", "_item", "seq"), on=["_msg", "_item"], how="left").select(
            "seq", pl.lit(0, pl.Int32).alias("rank"), pl.lit("schema-violation").alias("error"), "message",
        ).cast(ISSUE_SCHEMA)
        issues = pl.concat([schema_issues, self._duplicates(frame)]).sort("seq", maintain_order=True)
        # A column empty in every chunk is a constant in each, and stays one concatenated.
        frame = frame.select(*record_columns(n, pl.col("_line"), pl.col("_record"), pl.col("_item"), first=start),
                             *[pl.col(f.name) for f in self.fields])
        return RawFeed(feed_type=self.feed_type, fields=self.fields, frame=frame, issues=issues,
                       column_order=tuple(f.name for f in self.fields))


def _in_file_order(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """A chunk's records, bulk and per-message, as one frame in file order."""
    return _empty_as_constants(pl.concat(parts, how="vertical_relaxed").sort("_msg", "_item"))


def _empty_as_constants(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with each String column that holds no value made a constant null: polars then keeps one value for
    it instead of 16 bytes a row, and filters and casts keep it so. Most price components are empty in most feeds."""
    height = frame.height
    empty = [name for name, dtype in frame.schema.items()
             if dtype == pl.String and frame.get_column(name).null_count() == height]
    return frame.with_columns(pl.lit(None, pl.String).alias(name) for name in empty) if empty and height else frame


def _children(root: etree._Element, offsets: list[int]) -> Iterator[etree._Element]:
    """The root's children at these increasing offsets, in one walk (root[i] walks from the first child each time)."""
    children = root.iterchildren()
    at = -1
    for offset in offsets:
        yield next(islice(children, offset - at - 1, None))
        at = offset


def _key_arrays() -> tuple[array, array, array, array, array, array]:
    """Per record of the per-message path: message ordinal, item index, record, numbered, line, message line."""
    return array("q"), array("q"), array("q"), array("b"), array("q"), array("q")


def _append_key(keys: tuple[array, ...], ordinal: int, item: int, record: int, numbered: bool, line: int,
                message_line: int) -> None:
    ordinals, items, records, flags, lines, message_lines = keys
    ordinals.append(ordinal)
    items.append(item)
    records.append(record)
    flags.append(numbered)
    lines.append(line)
    message_lines.append(message_line)


def _component(component: etree._Element, positions: dict[str, int], row: list[str | None],
               currencies: dict[str, None]) -> None:
    """One Component: its Amount into the column its Type names, its currency into `currencies`."""
    kind = amount = None
    for part in component:
        tag = part.tag
        if tag == "Type":
            if kind is None:
                kind = _text(part)
        elif tag == "Amount" and amount is None:
            amount = part
    if amount is None:
        return
    currency = amount.get("currency")
    if currency is not None:
        currency = currency.strip(_XML_SPACE)
        if currency:
            currencies.setdefault(currency, None)
    index = positions.get(kind) if kind is not None else None  # type: ignore[arg-type]
    if index is not None and row[index] is None:
        # A repeated Type is an XSD error (identity constraint); the first one is kept.
        row[index] = _amount_text(_text(amount))


# ----------------------------------------------------------------------------- the bytes phase

_END_TAG = b"</Message>"
_LINE_END = re.compile(rb"[ \t\r]*\n")
# The root's start tag, after what may come before it (a byte order mark, blanks, the XML declaration, comments and
# PIs: the prolog has been checked for declarations already). Its last group is the `>` that ends it.
_ROOT_START = re.compile(rb"(?:\xef\xbb\xbf)?(?:[ \t\r\n]+|<!--(?s:.*?)-->|<\?(?s:.*?)\?>)*"
                         rb"(<AmazonEnvelope(?:[ \t\r\n]+[^ \t\r\n=/>]+[ \t\r\n]*=[ \t\r\n]*(?:\"[^\"]*\"|'[^']*'))*"
                         rb"[ \t\r\n]*)(>)")
_ROOT_END = re.compile(rb"[ \t\r\n]*</AmazonEnvelope[ \t\r\n]*>[ \t\r\n]*")
# At most this many lines of messages go into one document parsed to find their elements: libxml2 keeps a line in 16
# bits.
_FRAGMENT_LINES = 60_000


class _NoEvents:
    """A parser target that wants no event: libxml2 then checks the document without building a tree for it."""

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class _Place:
    """Where in the file a chunk of the bytes phase starts: its offset, and the line and column (libxml2's: from 1,
    a character a column) of that byte."""

    offset: int
    line: int
    column: int


class _Resumed:
    """The file read on from a place by a new parser: the file's own start up to the root's start tag, then blanks
    inside that tag so that the tag ends just before the place, then the file from there. So every line and column
    the parser gives is the file's, and it sees what it would have seen there in one pass."""

    def __init__(self, stream: BinaryIO, head: bytes, place: _Place, codec: str):
        lines = place.line - (head.count(b"\n") + 1)  # lines between the tag's end and the place
        column = _last_line_length(head, codec) + 1  # where the tag's `>` would go
        if lines == 0:
            padding = b" " * (place.column - 1 - column) + b">"
        elif place.column == 1:
            padding = b"\n" * (lines - 1) + b">\n"
        else:
            padding = b"\n" * lines + b" " * (place.column - 2) + b">"
        stream.seek(place.offset)
        self.stream = stream
        self.prefix = head + padding
        self.given = 0

    def read(self, size: int = -1) -> bytes:
        if self.given < len(self.prefix):
            part = self.prefix[self.given:] if size < 0 else self.prefix[self.given:self.given + size]
        else:
            part = self.stream.read(size)
        self.given += len(part)
        return part

    def tell(self) -> int:
        return self.given

    @property
    def closed(self) -> bool:
        return self.stream.closed


def _checking_parser() -> etree.XMLParser:
    """A parser that builds nothing and calls nothing back: it only finds whether a document is well-formed."""
    return etree.XMLParser(target=_NoEvents(), **PARSER_OPTIONS)


class _NotAsCut(Exception):
    """Messages parsed apart from their text are not the elements they were cut as."""


def _fragment_parser() -> etree.XMLParser:
    """The parser of messages parsed apart, as hardened as the file's; one per thread, as lxml's parsers are."""
    cached = getattr(_local, "fragment_parser", None)
    if cached is None:
        cached = _local.fragment_parser = etree.XMLParser(remove_blank_text=True, **PARSER_OPTIONS)
    return cached


def _after(place: _Place, chunk: bytes, codec: str) -> _Place:
    """Where the bytes after `chunk`, which starts at `place`, start."""
    line_feeds = chunk.count(b"\n")
    column = (1 if line_feeds else place.column) + _last_line_length(chunk, codec)
    return _Place(place.offset + len(chunk), place.line + line_feeds, column)


def _last_line_length(data: bytes, codec: str) -> int:
    """How many characters (libxml2's columns) follow the last line feed in `data` (all of it, if it has none)."""
    return len(data[data.rfind(b"\n") + 1:].decode(codec, "replace"))


def _chunk_end(data: bytes, ends: int, most: int, at_end: bool) -> int:
    """Where a chunk of the bytes phase ends in `data` (which holds `ends` `</Message>`): after a `</Message>` and the
    blanks and line end after it (so that the next starts a line) among the first `most` messages, or 0 if there is
    no such place. At the file's end, the last of those `</Message>` will do (0 if there is none)."""
    limit = len(data)
    if ends > most:
        at = -1
        for _ in range(most):
            at = data.find(_END_TAG, at + 1)
        limit = at + len(_END_TAG)
        line_end = _LINE_END.match(data, limit)
        if line_end is not None:
            limit = line_end.end()
    if at_end:
        last = data.rfind(_END_TAG, 0, limit)
        return last + len(_END_TAG) if last >= 0 else 0
    # Line by line from the end: a line that ends a Message is found within a few lines in an indented file, and
    # a file on one line has none at all.
    end = data.rfind(b"\n", 0, limit)
    for _ in range(1000):
        if end < 0:
            return 0
        before = data[max(0, end - 64):end].rstrip(b" \t\r")
        if before.endswith(_END_TAG):
            return end + 1
        end = data.rfind(b"\n", 0, end)
    return 0


# ----------------------------------------------------------------------------- safety checks


def _prolog_declaration(data: bytes) -> int | None:
    """Line of a markup declaration (`<!DOCTYPE`, `<!ENTITY`, ...) before the root element, if any."""
    text = _prolog_bytes(data)
    i = 0
    if text.startswith(codecs.BOM_UTF8):
        i = len(codecs.BOM_UTF8)
    while True:
        i = _SPACE_RUN.match(text, i).end()
        if text.startswith(b"<?", i):
            end = text.find(b"?>", i + 2)
        elif text.startswith(b"<!--", i):
            end = text.find(b"-->", i + 4)
        elif text.startswith(b"<!", i):
            return text.count(b"\n", 0, i) + 1
        else:
            return None
        if end < 0:
            return None  # unterminated: the parser reports it (or meets the declaration itself)
        i = end + 2 if text[end] == ord("?") else end + 3


def _wide(data: bytes) -> tuple[bytes, str] | None:
    """A UTF-16/32 file's start (after its byte order mark) and its codec; None for an ASCII-compatible one."""
    for mark, codec in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(mark):
            return data[len(mark):WIDE_PROLOG_BYTES], codec
    for start, codec in ((b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
                         (b"\x00<\x00", "utf-16-be"), (b"<\x00", "utf-16-le")):
        if data.startswith(start):
            return data[:WIDE_PROLOG_BYTES], codec
    return None


def _prolog_bytes(data: bytes) -> bytes:
    """The file's start in an ASCII-compatible form: UTF-16/32 files are decoded (their start)."""
    wide = _wide(data)
    if wide is None:
        return data  # UTF-8 or another ASCII-compatible encoding: markup bytes are ASCII
    chunk, codec = wide
    return chunk.decode(codec, errors="replace").encode("utf-8")


def _reject_prolog_declarations(data: bytes) -> None:
    line = _prolog_declaration(data)
    if line is not None:
        raise FeedError("unsafe-xml", f"line {line}: the file declares a document type (<!DOCTYPE ...>) or other "
                        "markup declarations before the root element; XML feeds may not contain a DOCTYPE, DTD or "
                        "entity declarations, so the file is not read", line=line)


_DECLARED_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding[ \t\r\n]*=[ \t\r\n]*["']([A-Za-z0-9._-]*)["']""")


_UTF8_NAMES = (b"UTF-8", b"UTF8", b"US-ASCII", b"ASCII")
_LATIN1_NAMES = (b"ISO-8859-1", b"ISO8859-1", b"ISO_8859-1", b"ISO-LATIN-1", b"LATIN1", b"L1")
# Other encodings of a byte a character that Python and libxml2 (through iconv) read alike: a byte that Python decodes,
# libxml2 reads as the same character (tests check every byte of each). A byte libxml2 reads and Python cannot
# (windows-1255 has one) stops the reading from the bytes instead.
_ONE_BYTE = re.compile(rb"ISO[-_]?8859-([2-9]|1[0-6])|(?:WINDOWS-|CP)(125[0-8])")


def _file_text_codec(head: bytes) -> str | None:
    """How the bytes of a document starting with these bytes decode to what libxml2 reads, which decides by a byte
    order mark, else the declared encoding, else UTF-8: "utf-8" for UTF-8 or ASCII, "latin-1" for ISO-8859-1,
    Python's codec for another encoding of a byte a character that Python and libxml2 read alike (`_ONE_BYTE`),
    None for any other. A declaration cut off reads as None."""
    if _wide(head) is not None:
        return None
    bom = head.startswith(codecs.BOM_UTF8)
    if bom:
        head = head[len(codecs.BOM_UTF8):]
    if not head.startswith(b"<?xml"):
        return "utf-8"
    end = head.find(b"?>")
    if end < 0:
        return None
    declared = _DECLARED_ENCODING.match(head[:end + 2])
    name = declared.group(1).upper() if declared is not None else b"UTF-8"
    if name in _UTF8_NAMES:
        return "utf-8"
    if bom:
        return None  # a byte order mark that disagrees with the declaration: left to the parser
    if name in _LATIN1_NAMES:
        return "latin-1"
    one_byte = _ONE_BYTE.fullmatch(name)
    if one_byte is None:
        return None
    part, page = one_byte.groups()
    codec = f"iso8859-{part.decode()}" if part else f"cp{page.decode()}"
    try:
        codecs.lookup(codec)
    except LookupError:  # ISO-8859-12 was never published
        return None
    return codec


def _has_doctype(elem: etree._Element) -> bool:
    info = elem.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None \
        or bool(info.system_url) or bool(info.public_id)


def _check_root(chunks: Iterable[bytes]) -> None:
    """Parse up to the root start tag: it must be AmazonEnvelope, and no DOCTYPE may precede it."""
    parser = etree.XMLPullParser(events=("start",), **PARSER_OPTIONS)
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for _, elem in parser.read_events():
                if _has_doctype(elem):
                    line = elem.sourceline
                    raise FeedError("unsafe-xml", f"line {line}: the file has a document type declaration "
                                    "(<!DOCTYPE ...>); XML feeds may not contain a DOCTYPE, DTD or entity "
                                    "declarations, so the file is not read", line=line)
                if elem.tag != ROOT_TAG:
                    line = elem.sourceline
                    raise FeedError("malformed-xml", f"line {line}: the root element is <{_tag_name(elem)}>, but an "
                                    f"XML feed is an {ROOT_TAG} (with no namespace)", line=line)
                return
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise _malformed(exc, parser.error_log) from None
    raise FeedError("malformed-xml", "the file has no root element; an XML feed is an AmazonEnvelope")


_LIMIT_ERRORS = ("excessive depth", "huge text", "huge input", "amplification", "entity reference loop",
                 "resource limit", "too large", "xml_parse_huge")


def _first_error(log):
    for entry in log or ():
        if entry.level >= etree.ErrorLevels.ERROR:
            return entry
    return None


def _malformed(exc: etree.XMLSyntaxError, log) -> FeedError:
    """`malformed-xml` with libxml2's own reason and where it is; parser limits are `unsafe-xml`."""
    entry = _first_error(log)
    if entry is not None:
        reason, line, column = entry.message, entry.line, entry.column
    else:
        reason = re.sub(r", line \d+, column \d+$", "", str(exc.msg or exc))
        line, column = exc.position if exc.position else (0, 0)
    reason = reason.strip().rstrip(".")
    if any(word in reason.lower() for word in _LIMIT_ERRORS):
        return FeedError("unsafe-xml", f"the file exceeds the XML parser's safety limits ({reason}) at line {line}, "
                         f"column {column}; nesting, text and entity sizes are limited so that no file can exhaust "
                         "memory", line=line or None)
    return FeedError("malformed-xml", f"the file is not well-formed XML: {reason} (line {line}, column {column})",
                     line=line or None)


def _envelope_break(elem: etree._Element, what: str) -> FeedError:
    line = elem.sourceline
    return FeedError("malformed-xml", f"line {line}: <{_tag_name(elem)}> {what}", line=line)


def _check_text(text: str | None, near: etree._Element, where: str) -> None:
    if text is not None and text.strip(_XML_SPACE):
        _check_text_at(text, near.sourceline, where)


def _check_text_at(text: str | None, line: int, where: str) -> None:
    if text is not None and text.strip(_XML_SPACE):
        raise FeedError("malformed-xml", f"line {line}: the AmazonEnvelope holds text '{_shown(text.strip())}' "
                        f"{where}; it may hold only elements", line=line)


def _check_tail(elem: etree._Element) -> None:
    _check_text(elem.tail, elem, f"after <{_tag_name(elem)}>")


def _validate_envelope_part(elem: etree._Element) -> None:
    schema = _schemas().envelope
    if not schema.validate(elem):
        reasons = [_readable(e) for e in _relevant(schema.error_log)]
        line = elem.sourceline
        raise FeedError("malformed-xml", f"line {line}: the envelope's {elem.tag} does not match the schema: "
                        + "; ".join(reasons[:MAX_EXPLANATIONS]), line=line)


# ----------------------------------------------------------------------------- XSD explanations

_ITEM_STEP = re.compile(r"(?P<tag>[^/\[]+)(?:\[(?P<n>[0-9]+)\])?")
_FACET = re.compile(r"\[facet '[^']*'\] ")
_WHERE = re.compile(r"Element '(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: (?P<body>.*)", re.S)
_ENUMERATION = re.compile(r"is not an element of the set \{(?P<values>.*)\}")
_ATOMIC = re.compile(r"is not a valid value of the atomic type '(?P<type>[^']*)'")
_PATTERN = re.compile(r"is not accepted by the pattern '(?P<pattern>.*)'")

TYPE_HINTS = {
    "MessageIDType": "a whole number from 1, at most 18 digits",
    "PositiveCount": "a whole number of 1 or more",
    "NonNegativeCount": "a whole number of 0 or more",
    "BaseCurrencyAmount": "an amount with at most two decimals, like 12.50",
    "CurrencyAmount": "an amount with at most two decimals, like 12.50",
    "xs:boolean": "true or false",
    "xs:dateTime": "a date and time such as 2024-05-01T10:00:00Z",
}
PATTERN_HINTS = {
    r"\w{3}-\w{7}-\w{7}": "an order id has the form 3-7-7, like 111-2223334-4445550",
    "[0-9]{14}": "an order item code has 14 digits, like 20000000000001",
    "[A-Z]{3}": "a currency is an ISO 4217 code such as USD",
    r"-?[0-9]{1,20}(\.[0-9]{1,2})?": "an amount has at most two decimals, no plus sign, no thousands separators "
                                     "and no exponent, like 12.50",
    "[0-9]{1,9}": "a number of units is written with digits only",
    "[0-9]{1,18}": "a MessageID is written with digits only",
    r"[0-9]{1,2}\.[0-9]{1,2}": "a DocumentVersion looks like 1.01",
}


def _relevant(log) -> list:
    """Schema errors worth showing: libxml2's follow-up notes and repeats about the same node dropped."""
    kept, seen = [], set()
    for entry in log:
        message = entry.message
        if "No precomputed value available" in message:
            continue
        key = (entry.path, message.split(": ", 1)[0])
        if key in seen:
            continue
        seen.add(key)
        kept.append(entry)
    return kept


def _explain(log, payload_tag: str, item_tag: str, shift: int = 0) -> tuple[list[str], dict[int, list[str]]]:
    """XSD errors as sentences: those about the message as a whole, and those of each item (`shift` added to the
    lines)."""
    whole: list[str] = []
    items: dict[int, list[str]] = {}
    for entry in _relevant(log):
        index = _item_of(entry.path or "", entry.message, payload_tag, item_tag)
        (whole if index is None else items.setdefault(index, [])).append(_readable(entry, shift))
    return whole, items


def _item_of(path: str, message: str, payload_tag: str, item_tag: str) -> int | None:
    """The 1-based item an error path lies in (or is about), None for the message as a whole."""
    steps = path.split("/")
    # ["", "Message", payload, item, ...]
    if len(steps) < 4 or steps[1] != "Message" or steps[2] not in (payload_tag, f"{payload_tag}[1]"):
        return None
    step = _ITEM_STEP.fullmatch(steps[3])
    if step is None or step["tag"] != item_tag:
        return None
    if len(steps) == 4 and "This element is not expected" in message:
        return None  # the item itself is out of place: the message's structure is broken
    return int(step["n"] or 1)


def _readable(entry, shift: int = 0) -> str:
    """One libxml2 schema error as 'line L, Element/@attribute: explanation'."""
    return f"line {entry.line + shift}{_sentence(entry.message)}"


@lru_cache(maxsize=4096)
def _sentence(message: str) -> str:
    """What follows an error's line in `_readable`. Cached: a feed broken the same way in every message (one wrong
    code, say) repeats the same few messages, and rewriting each was a fifth of reading such a feed."""
    message = _FACET.sub("", message.strip())
    match = _WHERE.fullmatch(message)
    if match is None:
        return f": {message}"
    where = match["element"] + (f"/@{match['attribute']}" if match["attribute"] else "")
    body = match["body"]
    body = _ENUMERATION.sub(
        lambda m: "is not an allowed value; use one of " + ", ".join(v.strip().strip("'") for v in m["values"].split(",")),
        body)
    body = _ATOMIC.sub(lambda m: f"is not a valid {m['type']}" + (f" ({TYPE_HINTS[m['type']]})" if m["type"] in TYPE_HINTS else ""), body)
    body = _PATTERN.sub(lambda m: f"does not have the required form: {PATTERN_HINTS.get(m['pattern'], 'pattern ' + m['pattern'])}", body)
    return f", {where}: {body.rstrip('.')}"


# ----------------------------------------------------------------------------- small helpers


def _text(elem: etree._Element) -> str | None:
    text = elem.text
    if text is None:
        return None
    text = text.strip(_XML_SPACE)
    return text or None


def _amount_text(text: str | None) -> str | None:
    """An XSD-valid amount with exactly two decimals; anything else is handed on as written."""
    if text is None:
        return None
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return text
    sign, whole, fraction = match.groups()
    return f"{sign}{whole}.{(fraction or '').ljust(2, '0')}"


def _tag_name(elem: etree._Element | None) -> str:
    if elem is None:
        return ""
    tag = elem.tag
    if not isinstance(tag, str):
        return "?"
    return _shown(tag)


def _shown(text: str, limit: int = 80) -> str:
    """Input text quoted in a message: one line, cut to a readable length."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The XML processing report of an XML feed (SPEC §5), valid against schemas/ProcessingReport.xsd.

    AmazonEnvelope
      Header (DocumentVersion, MerchantIdentifier)
      MessageType  ProcessingReport
      Message
        MessageID  1
        ProcessingReport
          DocumentTransactionID   digits derived from the feed file's SHA-256 (same file, same id)
          StatusCode              Complete
          ProcessingSummary       MessagesProcessed, MessagesSuccessful, MessagesWithError, MessagesWithWarning
          Result*                 MessageID, ResultCode, ResultMessageCode, ResultDescription, AdditionalInfo?

Counting is by message, not by record (item): a message is "with error" when any of its
records is an Error, "with warning" when any is a Warning and none is an Error;
successful = processed − with error (a message applied with a warning is successful).
Records of one message are consecutive in the report rows, and the first has
item-index 1, which is how messages are told apart (two messages that share a MessageID
still count as two).

There is one Result per record (Item / AdjustedItem) with an error or a warning — as
Amazon's own reports do — so every result carries one code, one explanation and, in
AdditionalInfo, the order id and item code it is about. When a message has several
records the description starts with the item's position ("item 2: ..."). File-level
lines (record 0: a rejected file, a file note) are Results with MessageID 0; a rejected
file processed no message.
"""

from __future__ import annotations

import hashlib
import io
import re

import polars as pl
from lxml import etree

from orderfeeds.outcomes import FeedResult

DOCUMENT_VERSION = "1.02"
UNKNOWN_MERCHANT = "unknown"

_ORDER_ID = re.compile(r"[A-Za-z0-9]{3}-[A-Za-z0-9]{7}-[A-Za-z0-9]{7}")
_ITEM_CODE = re.compile(r"[0-9]{14}")
# Characters XML 1.0 cannot carry; they are shown as U+FFFD rather than failing the report.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def document_transaction_id(sha256: str) -> str:
    """A positive number of at most 19 digits, the same for the same file bytes."""
    try:
        value = int(sha256[:15], 16)
    except ValueError:
        value = int(hashlib.sha256(sha256.encode("utf-8")).hexdigest()[:15], 16)
    return str(value or 1)


def message_counts(result: FeedResult) -> dict[str, int]:
    """ProcessingSummary: messages processed, successful, with error, with warning."""
    records = result.records
    if records.height == 0:
        return {"MessagesProcessed": 0, "MessagesSuccessful": 0, "MessagesWithError": 0, "MessagesWithWarning": 0}
    messages = (
        records.with_columns((pl.col("item-index").fill_null(1) == 1).cum_sum().alias("_message"))
        .group_by("_message")
        .agg((pl.col("status") == "Error").any().alias("error"), (pl.col("status") == "Warning").any().alias("warning"))
    )
    processed = messages.height
    with_error = messages.filter(pl.col("error")).height
    with_warning = messages.filter(pl.col("warning") & ~pl.col("error")).height
    return {"MessagesProcessed": processed, "MessagesSuccessful": processed - with_error,
            "MessagesWithError": with_error, "MessagesWithWarning": with_warning}


def _results(result: FeedResult) -> pl.DataFrame:
    """The rows that become Results, in report order, with the number of records of their message."""
    record = pl.col("original-record-number") > 0
    starts = record & (pl.col("item-index").fill_null(1) == 1)
    rows = result.rows.with_columns(pl.when(record).then(starts.cum_sum()).otherwise(-1).alias("_message"))
    rows = rows.with_columns(pl.when(record).then(pl.len().over("_message")).otherwise(1).alias("_size"))
    return rows.filter(pl.col("status") != "Success")


def _clean(text: str | None) -> str:
    return _NOT_XML.sub("\ufffd", text or "")


def render_processing_report_xml(result: FeedResult, merchant_identifier: str | None = None) -> bytes:
    """The processing report document; `merchant_identifier` is the feed's Header/MerchantIdentifier."""
    counts = message_counts(result)
    merchant = _clean(merchant_identifier).strip() or UNKNOWN_MERCHANT
    buffer = io.BytesIO()
    with etree.xmlfile(buffer, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element("AmazonEnvelope"):
            _indent(xf, 1)
            with xf.element("Header"):
                _leaf(xf, "DocumentVersion", DOCUMENT_VERSION, 2)
                _leaf(xf, "MerchantIdentifier", merchant[:50], 2)
                _indent(xf, 1)
            _leaf(xf, "MessageType", "ProcessingReport", 1)
            _indent(xf, 1)
            with xf.element("Message"):
                _leaf(xf, "MessageID", "1", 2)
                _indent(xf, 2)
                with xf.element("ProcessingReport"):
                    _leaf(xf, "DocumentTransactionID", document_transaction_id(result.sha256), 3)
                    _leaf(xf, "StatusCode", "Complete", 3)
                    _indent(xf, 3)
                    with xf.element("ProcessingSummary"):
                        for name, value in counts.items():
                            _leaf(xf, name, str(value), 4)
                        _indent(xf, 3)
                    for row in _results(result).iter_rows(named=True):
                        _result(xf, row)
                    _indent(xf, 2)
                _indent(xf, 1)
            _indent(xf, 0)
    return buffer.getvalue() + b"\n"


def _indent(xf, depth: int) -> None:
    xf.write("\n" + "  " * depth)


def _leaf(xf, tag: str, text: str, depth: int) -> None:
    _indent(xf, depth)
    with xf.element(tag):
        xf.write(text)


def _result(xf, row: dict) -> None:
    record = row["original-record-number"] or 0
    description = _clean(row["error-message"]) or row["error-name"] or "no explanation was recorded"
    if record > 0 and row["_size"] > 1:
        description = f"item {row['item-index']}: {description}"
    order_id, item_code = row["order-id"], row["order-item-id"]
    info = [("AmazonOrderID", order_id) if order_id and _ORDER_ID.fullmatch(order_id) else None,
            ("AmazonOrderItemCode", item_code) if item_code and _ITEM_CODE.fullmatch(item_code) else None]
    info = [pair for pair in info if pair is not None]
    _indent(xf, 3)
    with xf.element("Result"):
        _leaf(xf, "MessageID", str(record), 4)
        _leaf(xf, "ResultCode", row["status"], 4)
        _leaf(xf, "ResultMessageCode", str(row["error-code"] if row["error-code"] is not None else 0), 4)
        _leaf(xf, "ResultDescription", description, 4)
        if info:
            _indent(xf, 4)
            with xf.element("AdditionalInfo"):
                for tag, value in info:
                    _leaf(xf, tag, value, 5)
                _indent(xf, 4)
        _indent(xf, 3)

"""The XML processing report (SPEC §5): counts by message, one Result per noted record, valid XSD."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from lxml import etree

from orderfeeds.catalogue import spec
from orderfeeds.feedtypes import FeedType
from orderfeeds.outcomes import REPORT_SCHEMA, FeedResult, assemble_rows, fatal_result, note_rows
from orderfeeds.readers.model import Note
from orderfeeds.readers.xml import load_schema, read_xml, sniff_xml
from orderfeeds.report_xml import document_transaction_id, message_counts, render_processing_report_xml

ROOT = Path(__file__).resolve().parents[1]
ACK = (ROOT / "samples" / "feeds" / "order-acknowledgement.xml").read_bytes()
ADJ = (ROOT / "samples" / "feeds" / "payment-adjustment.xml").read_bytes()
SHA = "9f2c" * 16


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return load_schema("ProcessingReport.xsd")


def parse(document: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(document, parser)


def assert_valid(schema: etree.XMLSchema, document: bytes) -> etree._Element:
    root = parse(document)
    assert schema.validate(root), [e.message for e in schema.error_log]
    return root


def rows(*records: tuple) -> pl.DataFrame:
    """Report rows: (record, item-index, order-id, order-item-id, error-name or None, message)."""
    data = []
    for record, index, order, item, error, message in records:
        entry = spec(error) if error else None
        data.append({
            "original-record-number": record, "line": 10 + len(data), "item-index": index, "order-id": order,
            "order-item-id": item, "status": entry.severity.value if entry else "Success",
            "error-code": entry.code if entry else None, "error-name": error, "error-message": message,
        })
    return pl.DataFrame(data, schema=REPORT_SCHEMA)


def result(frame: pl.DataFrame, sha: str = SHA) -> FeedResult:
    return FeedResult(name="feed.xml", sha256=sha, as_of="2026-11-28T06:00:00+00:00",
                      feed_type=FeedType.XML_ADJUSTMENT, rows=frame)


def summary(root: etree._Element) -> dict[str, int]:
    block = root.find("Message/ProcessingReport/ProcessingSummary")
    return {child.tag: int(child.text) for child in block}


def results(root: etree._Element) -> list[dict[str, str]]:
    found = []
    for node in root.iterfind("Message/ProcessingReport/Result"):
        entry = {child.tag: child.text for child in node if child.tag != "AdditionalInfo"}
        info = node.find("AdditionalInfo")
        if info is not None:
            entry.update({f"info:{child.tag}": child.text for child in info})
        found.append(entry)
    return found


ORDER, ITEM = "111-2223334-4445550", "20000000000001"

MIXED = rows(
    (0, None, None, None, "unknown-column", "column 3 'x' is not a column of this feed type and is ignored"),
    (1, 1, ORDER, ITEM, None, None),
    (1, 2, ORDER, "20000000000002", "already-shipped", "item 20000000000002 has shipped units"),
    (2, 1, ORDER, ITEM, "counts-toward-cancellation-rate", "applied; counts"),
    (3, 1, ORDER, ITEM, "counts-toward-cancellation-rate", "applied; counts"),
    (3, 2, "bad id", "123", "invalid-field", "AmazonOrderID 'bad id' is not an order id"),
    (4, 1, ORDER, ITEM, None, None),
    (4, 1, ORDER, ITEM, "duplicate-message-id", "MessageID 4 is used again"),
    (5, 1, None, None, "possible-duplicate", "identical to record 2"),
)


def test_counts_are_by_message_not_by_record(schema):
    root = assert_valid(schema, render_processing_report_xml(result(MIXED)))
    # Messages: 1 (error), 2 (warning), 3 (warning and error → error), 4, 4 again (error), 5 (warning).
    assert summary(root) == {"MessagesProcessed": 6, "MessagesSuccessful": 3, "MessagesWithError": 3,
                             "MessagesWithWarning": 2}
    assert message_counts(result(MIXED)) == summary(root)


def test_one_result_per_noted_record_in_report_order(schema):
    root = assert_valid(schema, render_processing_report_xml(result(MIXED)))
    found = results(root)
    assert [(r["MessageID"], r["ResultCode"], r["ResultMessageCode"]) for r in found] == [
        ("0", "Warning", "90016"), ("1", "Error", "90001"), ("2", "Warning", "90201"), ("3", "Warning", "90201"),
        ("3", "Error", "18028"), ("4", "Error", "90105"), ("5", "Warning", "90202"),
    ]
    # Several records in one message: the description says which item it is about.
    assert found[1]["ResultDescription"] == "item 2: item 20000000000002 has shipped units"
    assert found[2]["ResultDescription"] == "applied; counts"
    assert found[4]["ResultDescription"].startswith("item 2: AmazonOrderID 'bad id'")
    # AdditionalInfo names the order and item when they are well-formed ids, and nothing otherwise.
    assert (found[1]["info:AmazonOrderID"], found[1]["info:AmazonOrderItemCode"]) == (ORDER, "20000000000002")
    assert not any(key.startswith("info:") for key in found[0]) and not any(k.startswith("info:") for k in found[4])
    assert not any(key.startswith("info:") for key in found[6])


def test_a_feed_rejected_whole_processed_no_message(schema):
    fatal = fatal_result("feed.xml", SHA, "2026-11-28T06:00:00+00:00", None,
                         Note("malformed-xml", "the file is not well-formed XML: x (line 3, column 4)", 3))
    root = assert_valid(schema, render_processing_report_xml(fatal))
    assert summary(root) == {"MessagesProcessed": 0, "MessagesSuccessful": 0, "MessagesWithError": 0,
                             "MessagesWithWarning": 0}
    assert results(root) == [{"MessageID": "0", "ResultCode": "Error", "ResultMessageCode": "5000",
                              "ResultDescription": "the file is not well-formed XML: x (line 3, column 4)"}]


def test_an_all_clean_feed_has_no_result(schema):
    clean = rows((1, 1, ORDER, ITEM, None, None), (2, 1, ORDER, ITEM, None, None), (2, 2, ORDER, ITEM, None, None))
    root = assert_valid(schema, render_processing_report_xml(result(clean)))
    assert summary(root) == {"MessagesProcessed": 2, "MessagesSuccessful": 2, "MessagesWithError": 0,
                             "MessagesWithWarning": 0}
    assert results(root) == []


def test_envelope_header_and_transaction_id(schema):
    document = render_processing_report_xml(result(MIXED), merchant_identifier="  M_EXAMPLE_123 ")
    root = assert_valid(schema, document)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<AmazonEnvelope>")
    assert root.findtext("Header/MerchantIdentifier") == "M_EXAMPLE_123"
    assert root.findtext("MessageType") == "ProcessingReport" and root.findtext("Message/MessageID") == "1"
    report = root.find("Message/ProcessingReport")
    assert report.findtext("StatusCode") == "Complete"
    transaction = report.findtext("DocumentTransactionID")
    assert transaction == document_transaction_id(SHA) and transaction.isdigit() and len(transaction) <= 20
    assert document_transaction_id(SHA) == document_transaction_id(SHA)
    assert document_transaction_id("0" * 64) == "1"
    assert document_transaction_id(SHA) != document_transaction_id("8" + SHA[1:])
    assert document_transaction_id("not a hash").isdigit()
    unnamed = parse(render_processing_report_xml(result(MIXED)))
    assert unnamed.findtext("Header/MerchantIdentifier") == "unknown"
    # Same result, same bytes: the report is deterministic.
    assert render_processing_report_xml(result(MIXED)) == render_processing_report_xml(result(MIXED))


def test_text_xml_cannot_carry_is_replaced_and_markup_is_escaped(schema):
    hostile = rows((1, 1, ORDER, ITEM, "invalid-field", "value 'a\x00b\x1bc\ufffe' </ResultDescription><x>&amp;"))
    root = assert_valid(schema, render_processing_report_xml(result(hostile)))
    (found,) = results(root)
    assert found["ResultDescription"] == "value 'a\ufffdb\ufffdc\ufffd' </ResultDescription><x>&amp;"


def test_the_schema_is_not_vacuous(schema):
    document = render_processing_report_xml(result(MIXED))
    for before, after in ((b"<ResultCode>Error</ResultCode>", b"<ResultCode>Info</ResultCode>"),
                          (b"<StatusCode>Complete</StatusCode>", b"<StatusCode>Done</StatusCode>"),
                          (b"<MessagesProcessed>6</MessagesProcessed>", b""),
                          (b"<MessageType>ProcessingReport</MessageType>", b"<MessageType>OrderAdjustment</MessageType>")):
        assert before in document
        assert not schema.validate(parse(document.replace(before, after, 1)))


@pytest.mark.parametrize("sample", [ACK, ADJ])
def test_reports_of_the_samples_are_valid(schema, sample):
    """Read a sample, mark every clean record as applied, and render its report."""
    from orderfeeds.validate import validate_records

    raw = read_xml(sample, None, 10**9)
    valid = validate_records(raw)
    outcomes = valid.records.select("seq", pl.lit(None, pl.String).alias("error"), pl.lit(None, pl.String).alias("message"))
    frame = pl.concat([note_rows([]), assemble_rows(raw, valid.issues, outcomes)])
    feed = FeedResult(name="sample.xml", sha256=SHA, as_of="", feed_type=raw.feed_type, rows=frame)
    root = assert_valid(schema, render_processing_report_xml(feed, sniff_xml(sample).merchant_identifier))
    assert root.findtext("Header/MerchantIdentifier") == "M_EXAMPLE_123"
    found = results(root)
    if raw.feed_type is FeedType.XML_ACKNOWLEDGEMENT:
        # 7 messages (MessageID 5 twice); the repeat and message 7 are in error.
        assert summary(root) == {"MessagesProcessed": 7, "MessagesSuccessful": 5, "MessagesWithError": 2,
                                 "MessagesWithWarning": 0}
        assert [(r["MessageID"], r["ResultMessageCode"]) for r in found] == [("5", "90105"), ("7", "90106")]
    else:
        # Message 4: item 1 breaks the schema, item 2 is applied; the message is in error.
        assert summary(root) == {"MessagesProcessed": 5, "MessagesSuccessful": 4, "MessagesWithError": 1,
                                 "MessagesWithWarning": 0}
        assert [(r["MessageID"], r["ResultMessageCode"]) for r in found] == [("4", "90106")]
        assert found[0]["ResultDescription"].startswith("item 1: message 4 does not match")
        assert found[0]["info:AmazonOrderItemCode"] == "20000000000002"

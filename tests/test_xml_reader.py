"""The XML reader (SPEC §2.4): records, lines, schema violations, envelope breaks, shipped XSDs."""

from __future__ import annotations

import codecs
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
from lxml import etree

from orderfeeds.errors import FeedError
from orderfeeds.feedtypes import FeedType, Kind
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.model import ID_COLUMNS, ISSUE_SCHEMA
from orderfeeds.readers.xml import (
    PRICE_COMPONENTS,
    SCHEMA_FILES,
    XML_ACKNOWLEDGEMENT_FIELDS,
    XML_ADJUSTMENT_FIELDS,
    detect_xml,
    load_schema,
    read_xml,
    sniff_xml,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "feeds"
ACK = (SAMPLES / "order-acknowledgement.xml").read_bytes()
ADJ = (SAMPLES / "payment-adjustment.xml").read_bytes()
LIMIT = 10**9

HEADER = "<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_1</MerchantIdentifier></Header>"


def envelope(message_type: str, *messages: str, header: str = HEADER, extra: str = "") -> bytes:
    body = "\n".join(messages)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n{header}\n'
            f"<MessageType>{message_type}</MessageType>{extra}\n{body}\n</AmazonEnvelope>\n").encode()


def ack(message_id: str, *items: str, order: str = "111-2223334-4445550", status: str = "Failure", more: str = "") -> str:
    return (f"<Message><MessageID>{message_id}</MessageID><OrderAcknowledgement>"
            f"<AmazonOrderID>{order}</AmazonOrderID>{more}<StatusCode>{status}</StatusCode>"
            + "".join(items) + "</OrderAcknowledgement></Message>")


def ack_item(code: str = "20000000000001", reason: str | None = "NoInventory", quantity: str | None = None) -> str:
    return ("<Item>" f"<AmazonOrderItemCode>{code}</AmazonOrderItemCode>"
            + (f"<CancelReason>{reason}</CancelReason>" if reason else "")
            + (f"<Quantity>{quantity}</Quantity>" if quantity else "") + "</Item>")


def adj(message_id: str, *items: str, order: str = "<AmazonOrderID>111-2223334-4445551</AmazonOrderID>") -> str:
    return (f"<Message><MessageID>{message_id}</MessageID><OrderAdjustment>{order}"
            + "".join(items) + "</OrderAdjustment></Message>")


def adj_item(*components: tuple[str, str, str | None], reason: str = "CustomerReturn", code: str = "20000000000002",
             promotion: str = "", tail: str = "") -> str:
    parts = "".join(f"<Component><Type>{kind}</Type><Amount{f' currency={chr(34)}{cur}{chr(34)}' if cur else ''}>"
                    f"{amount}</Amount></Component>" for kind, amount, cur in components)
    prices = f"<ItemPriceAdjustments>{parts}</ItemPriceAdjustments>" if components else ""
    return (f"<AdjustedItem><AmazonOrderItemCode>{code}</AmazonOrderItemCode>"
            f"<AdjustmentReason>{reason}</AdjustmentReason>{prices}{promotion}{tail}</AdjustedItem>")


def issues_by_seq(raw) -> dict[int, list[tuple[str, str]]]:
    found: dict[int, list[tuple[str, str]]] = {}
    for seq, _rank, error, message in raw.issues.iter_rows():
        found.setdefault(seq, []).append((error, message))
    return found


def rejected(data: bytes, feed_type: FeedType | None = None) -> FeedError:
    with pytest.raises(FeedError) as caught:
        read_xml(data, feed_type, LIMIT)
    return caught.value


# ------------------------------------------------------------------------------ the samples


def test_acknowledgement_sample_records_lines_and_issues():
    raw = read_xml(ACK, None, LIMIT)
    assert raw.feed_type is FeedType.XML_ACKNOWLEDGEMENT
    frame = raw.frame
    assert frame["record"].to_list() == [1, 2, 3, 3, 4, 5, 5, 7]
    assert frame["item-index"].to_list() == [1, 1, 1, 2, 1, 1, 1, 1]
    lines = ACK.decode().splitlines()
    # An item's line is where <Item> starts; an itemless message's line is where <Message> starts.
    for line in frame["line"]:
        assert lines[line - 1].strip() in ("<Item>", "<Message>")
    assert lines[frame["line"][4] - 1].strip() == "<Message>"
    assert frame.row(0, named=True) | {} == {
        "seq": 0, "record": 1, "line": 14, "item-index": 1, "AmazonOrderID": "111-2223334-4445550",
        "MerchantOrderID": "US-5550", "StatusCode": "Success", "AmazonOrderItemCode": "20000000000001",
        "MerchantOrderItemID": "US-5550-1", "CancelReason": None, "Quantity": None,
    }
    assert frame.filter(pl.col("record") == 2)["Quantity"].to_list() == ["1"]
    found = issues_by_seq(raw)
    assert set(found) == {6, 7}
    assert found[6] == [("duplicate-message-id", found[6][0][1])]
    assert "MessageID 5" in found[6][0][1] and "line 54" in found[6][0][1]
    (error, message), = found[7]
    assert error == "schema-violation"
    assert "line 76" in message and "StatusCode" in message and "'Cancelled'" in message
    assert "Success, Failure" in message


def test_adjustment_sample_records_amounts_and_item_level_violation():
    raw = read_xml(ADJ, None, LIMIT)
    assert raw.feed_type is FeedType.XML_ADJUSTMENT
    frame = raw.frame
    assert frame["record"].to_list() == [1, 2, 3, 4, 4, 5]
    assert frame["item-index"].to_list() == [1, 1, 1, 1, 2, 1]
    first = frame.row(0, named=True)
    assert first["AmazonOrderID"] == "305-1112223-3334440" and first["ActionType"] == "Refund"
    assert (first["Principal"], first["Tax"], first["RestockingFee"]) == ("79.90", "15.18", "-8.00")
    assert (first["PromotionPrincipal"], first["MerchantPromotionID"], first["currency"]) == ("-5.00", "WINTER5", "EUR")
    assert first["Quantity"] == "1" and first["QuantityCancelled"] is None and first["Shipping"] is None
    second = frame.row(1, named=True)
    assert second["AmazonOrderID"] is None and second["MerchantOrderID"] == "DE-1002"
    assert second["MerchantOrderItemID"] == "DE-1002-1" and second["MerchantAdjustmentItemID"] == "RMA-77002"
    # Message 4: item 1's reason breaks the enumeration, item 2 is fine and stays a clean record.
    found = issues_by_seq(raw)
    assert set(found) == {3}
    (error, message), = found[3]
    assert error == "schema-violation" and "line 66" in message and "'Goodwill'" in message
    assert frame.row(4, named=True)["Goodwill"] == "5.00"


def test_frames_have_the_reader_contract():
    for data, fields in ((ACK, XML_ACKNOWLEDGEMENT_FIELDS), (ADJ, XML_ADJUSTMENT_FIELDS)):
        raw = read_xml(data, None, LIMIT)
        assert raw.fields == fields
        assert raw.frame.columns == [*ID_COLUMNS, *(f.name for f in fields)]
        assert raw.column_order == tuple(f.name for f in fields)
        assert dict(raw.frame.schema) == {"seq": pl.UInt32, "record": pl.Int64, "line": pl.Int64,
                                          "item-index": pl.Int32, **{f.name: pl.String for f in fields}}
        assert raw.frame["seq"].to_list() == list(range(raw.frame.height))
        assert dict(raw.issues.schema) == ISSUE_SCHEMA
        assert set(raw.issues["rank"].to_list()) <= {0}


def test_field_names_and_canonical_columns():
    ack_fields = {f.name: f for f in XML_ACKNOWLEDGEMENT_FIELDS}
    assert ack_fields["AmazonOrderID"].canonical == "order-id" and ack_fields["AmazonOrderID"].kind is Kind.ORDER_ID
    assert ack_fields["AmazonOrderItemCode"].canonical == "order-item-id"
    assert ack_fields["StatusCode"].choices == ("Success", "Failure")
    assert ack_fields["CancelReason"].canonical == "reason" and ack_fields["Quantity"].kind is Kind.COUNT
    adj_fields = {f.name: f for f in XML_ADJUSTMENT_FIELDS}
    amounts = [f.name for f in XML_ADJUSTMENT_FIELDS if f.kind is Kind.AMOUNT]
    assert amounts == [*PRICE_COMPONENTS, "PromotionPrincipal", "PromotionShipping"]
    assert all(adj_fields[name].canonical == name for name in amounts)
    assert {adj_fields[n].canonical for n in ("AdjustmentReason", "MerchantAdjustmentItemID", "ActionType",
                                               "QuantityCancelled", "Quantity", "currency")} == {
        "reason", "merchant-adjustment-item-id", "action-type", "quantity-cancelled", "quantity", "currency"}
    assert adj_fields["MerchantOrderID"].canonical == "merchant-order-id"
    assert adj_fields["MerchantOrderItemID"].canonical == "merchant-order-item-id"


def test_sample_frames_pass_field_validation():
    """Everything the XSD accepted also passes validate.py's field checks (amounts have two decimals)."""
    from orderfeeds.validate import validate_records

    for data in (ACK, ADJ):
        raw = read_xml(data, None, LIMIT)
        valid = validate_records(raw)
        assert valid.issues.sort("seq").equals(raw.issues.sort("seq"))
        assert valid.records.height == raw.frame.height - raw.issues["seq"].n_unique()


# ------------------------------------------------------------------------------ records


def test_itemless_acknowledgement_is_one_record_on_the_message_line():
    raw = read_xml(envelope("OrderAcknowledgement", ack("9")), None, LIMIT)
    assert raw.frame.select("record", "line", "item-index", "AmazonOrderItemCode").rows() == [(9, 5, 1, None)]
    assert raw.issues.height == 0


def test_amounts_get_two_decimals_and_keep_their_sign():
    item = adj_item(("Principal", "5", "USD"), ("Tax", "0.5", "USD"), ("RestockingFee", "-0.5", None),
                    ("Goodwill", " 7.25 ", "USD"))
    raw = read_xml(envelope("OrderAdjustment", adj("1", item)), None, LIMIT)
    row = raw.frame.row(0, named=True)
    assert (row["Principal"], row["Tax"], row["RestockingFee"], row["Goodwill"]) == ("5.00", "0.50", "-0.50", "7.25")
    assert row["currency"] == "USD" and raw.issues.height == 0


@pytest.mark.parametrize("amount, explains", [
    ("1.005", "fractional digits"), ("+2.00", "at most two decimals"), ("1,000.00", "at most two decimals"),
    ("1e3", "at most two decimals"), ("", "at most two decimals"),
])
def test_bad_amounts_are_schema_violations(amount, explains):
    raw = read_xml(envelope("OrderAdjustment", adj("1", adj_item(("Principal", amount, "USD")))), None, LIMIT)
    (error, message), = issues_by_seq(raw)[0]
    assert error == "schema-violation" and explains in message


def test_currency_comes_from_the_amounts_and_must_agree():
    same = adj_item(("Principal", "1.00", "EUR"), ("Tax", "0.19", None))
    mixed = adj_item(("Principal", "1.00", "EUR"), ("Tax", "0.19", "USD"))
    none = adj_item(("Principal", "1.00", None))
    raw = read_xml(envelope("OrderAdjustment", adj("1", same, mixed, none)), None, LIMIT)
    assert raw.frame["currency"].to_list() == ["EUR", "EUR", None]
    found = issues_by_seq(raw)
    assert set(found) == {1}
    assert "different currencies (EUR, USD)" in found[1][0][1]
    bad = read_xml(envelope("OrderAdjustment", adj("1", adj_item(("Principal", "1.00", "eur")))), None, LIMIT)
    assert "currency" in issues_by_seq(bad)[0][0][1] and "ISO 4217" in issues_by_seq(bad)[0][0][1]


def test_repeated_component_type_is_a_schema_violation_with_the_xsd_explanation():
    item = adj_item(("Principal", "1.00", "USD"), ("Principal", "2.00", "USD"))
    promo = adj_item(promotion="<PromotionAdjustments><Component><Type>Shipping</Type><Amount>-1.00</Amount></Component>"
                               "<Component><Type>Shipping</Type><Amount>-2.00</Amount></Component></PromotionAdjustments>")
    raw = read_xml(envelope("OrderAdjustment", adj("1", item), adj("2", promo)), None, LIMIT)
    found = issues_by_seq(raw)
    assert "Duplicate key-sequence ['Principal']" in found[0][0][1]
    assert "Duplicate key-sequence ['Shipping']" in found[1][0][1]
    assert raw.frame["Principal"][0] == "1.00" and raw.frame["PromotionShipping"][1] == "-1.00"


def test_promotion_components_have_their_own_columns():
    promo = ("<PromotionAdjustments><PromotionClaimCode>CLAIM</PromotionClaimCode><MerchantPromotionID>P-1"
             "</MerchantPromotionID><Component><Type>Principal</Type><Amount currency=\"USD\">-1.50</Amount></Component>"
             "<Component><Type>Shipping</Type><Amount currency=\"USD\">-0.99</Amount></Component></PromotionAdjustments>")
    item = adj_item(("Principal", "10.00", "USD"), promotion=promo, tail="<QuantityCancelled>0</QuantityCancelled>")
    raw = read_xml(envelope("OrderAdjustment", adj("1", item)), None, LIMIT)
    row = raw.frame.row(0, named=True)
    assert (row["Principal"], row["PromotionPrincipal"], row["PromotionShipping"]) == ("10.00", "-1.50", "-0.99")
    assert row["MerchantPromotionID"] == "P-1" and row["QuantityCancelled"] == "0" and raw.issues.height == 0
    other = adj_item(promotion="<PromotionAdjustments><Component><Type>Tax</Type><Amount>-1.00</Amount>"
                               "</Component></PromotionAdjustments>")
    raw = read_xml(envelope("OrderAdjustment", adj("1", other)), None, LIMIT)
    assert "'Tax'" in issues_by_seq(raw)[0][0][1] and "Principal, Shipping" in issues_by_seq(raw)[0][0][1]


def test_an_error_inside_an_item_belongs_to_that_item_only():
    items = [ack_item("20000000000001"), ack_item("20000000000002", quantity="0"), ack_item("2000000000003")]
    raw = read_xml(envelope("OrderAcknowledgement", ack("3", *items)), None, LIMIT)
    found = issues_by_seq(raw)
    assert set(found) == {1, 2}
    assert "Quantity" in found[1][0][1] and "1 or more" in found[1][0][1]
    assert "AmazonOrderItemCode" in found[2][0][1] and "14 digits" in found[2][0][1]


def test_an_error_outside_the_items_belongs_to_every_record_of_the_message():
    raw = read_xml(envelope("OrderAcknowledgement", ack("3", ack_item(), ack_item("20000000000002"), order="111-222")),
                   None, LIMIT)
    found = issues_by_seq(raw)
    assert set(found) == {0, 1}
    assert all("AmazonOrderID" in found[i][0][1] and "3-7-7" in found[i][0][1] for i in (0, 1))
    # An item out of place breaks the message's structure, so every record is rejected.
    misplaced = ("<Message><MessageID>4</MessageID><OrderAcknowledgement><AmazonOrderID>111-2223334-4445550"
                 "</AmazonOrderID>" + ack_item() + "<StatusCode>Failure</StatusCode>" + ack_item("20000000000002")
                 + "</OrderAcknowledgement></Message>")
    raw = read_xml(envelope("OrderAcknowledgement", misplaced), None, LIMIT)
    assert set(issues_by_seq(raw)) == {0, 1}
    assert "not expected" in issues_by_seq(raw)[0][0][1]


def test_messages_without_their_payload_or_items_are_one_record():
    wrong_payload = "<Message><MessageID>1</MessageID><OrderAdjustment/></Message>"
    no_items = "<Message><MessageID>2</MessageID><OrderAdjustment><MerchantOrderID>X-1</MerchantOrderID></OrderAdjustment></Message>"
    raw = read_xml(envelope("OrderAcknowledgement", wrong_payload), None, LIMIT)
    assert raw.frame.select("record", "item-index").rows() == [(1, 1)]
    assert "OrderAdjustment" in issues_by_seq(raw)[0][0][1]
    raw = read_xml(envelope("OrderAdjustment", no_items), None, LIMIT)
    assert raw.frame.select("record", "MerchantOrderID").rows() == [(2, "X-1")]
    assert "AdjustedItem" in issues_by_seq(raw)[0][0][1]


@pytest.mark.parametrize("message_id", ["abc", "0", "-3", "1.5", "1234567890123456789", ""])
def test_a_message_id_that_is_not_a_number_gets_its_position(message_id):
    data = envelope("OrderAcknowledgement", ack("7"), ack(message_id))
    raw = read_xml(data, None, LIMIT)
    assert raw.frame["record"].to_list() == [7, 2]
    (error, message), = issues_by_seq(raw)[1]
    assert error == "schema-violation" and "MessageID" in message and "record 2" in message


def test_repeated_message_ids_flag_every_repeat_even_on_one_line():
    one_line = envelope("OrderAcknowledgement", ack("1"), ack("2"), ack("1", ack_item(), ack_item("20000000000002")),
                        ack("1")).replace(b"\n<Message>", b"<Message>")
    raw = read_xml(one_line, None, LIMIT)
    assert raw.frame["record"].to_list() == [1, 2, 1, 1, 1]
    found = issues_by_seq(raw)
    assert set(found) == {2, 3, 4}
    assert all(found[i][0][0] == "duplicate-message-id" for i in (2, 3, 4))
    # Message ids compare as numbers.
    raw = read_xml(envelope("OrderAcknowledgement", ack("5"), ack("005")), None, LIMIT)
    assert raw.frame["record"].to_list() == [5, 5] and set(issues_by_seq(raw)) == {1}


def test_a_repeat_that_also_breaks_the_schema_gets_both_issues_schema_first():
    raw = read_xml(envelope("OrderAcknowledgement", ack("1"), ack("1", status="Maybe")), None, LIMIT)
    assert [error for error, _ in issues_by_seq(raw)[1]] == ["schema-violation", "duplicate-message-id"]


def test_values_are_trimmed_and_blank_is_null():
    item = ("<Item><AmazonOrderItemCode>\n  20000000000001 \n</AmazonOrderItemCode>"
            "<MerchantOrderItemID>  A B  </MerchantOrderItemID></Item>")
    raw = read_xml(envelope("OrderAcknowledgement", ack(" 1 ", item, status=" Success ", more="<MerchantOrderID> </MerchantOrderID>")),
                   None, LIMIT)
    row = raw.frame.row(0, named=True)
    assert (row["record"], row["StatusCode"], row["AmazonOrderItemCode"]) == (1, "Success", "20000000000001")
    assert row["MerchantOrderItemID"] == "A B"
    assert row["MerchantOrderID"] is None
    assert "MerchantOrderID" in issues_by_seq(raw)[0][0][1]  # blank breaks minLength 1


def test_comments_processing_instructions_cdata_and_character_references_are_fine():
    data = envelope("OrderAcknowledgement",
                    "<!-- first --><?pi x?>" + ack("1", more="<MerchantOrderID><![CDATA[A&B]]>&#65;&amp;</MerchantOrderID>"),
                    extra="<!-- note -->")
    raw = read_xml(data, None, LIMIT)
    assert raw.frame["MerchantOrderID"].to_list() == ["A&BA&"] and raw.issues.height == 0


def test_many_messages_keep_exact_line_numbers_past_65535():
    messages = [ack(str(i), ack_item(f"{20000000000000 + i}")).replace("<Item>", "\n<Item>") for i in range(1, 40001)]
    data = envelope("OrderAcknowledgement", *messages)
    raw = read_xml(data, None, LIMIT)
    assert raw.frame.height == 40000 and raw.issues.height == 0
    lines = data.split(b"\n")
    last = raw.frame.row(-1, named=True)
    assert last["line"] > 65535 and lines[last["line"] - 1].startswith(b"<Item><AmazonOrderItemCode>20000000040000")
    assert raw.frame["record"].to_list() == list(range(1, 40001))


def test_utf16_and_bom_files_read_the_same():
    expected = read_xml(ACK, None, LIMIT).frame
    text = ACK.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    for data in (codecs.BOM_UTF16_LE + text.encode("utf-16-le"), codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
                 codecs.BOM_UTF8 + ACK):
        assert read_xml(data, None, LIMIT).frame.equals(expected)


def test_optional_envelope_fields_in_order_are_accepted():
    extra = ("<MarketplaceName>Amazon.de</MarketplaceName><PurgeAndReplace>false</PurgeAndReplace>"
             "<EffectiveDate>2026-11-28T06:00:00Z</EffectiveDate>")
    raw = read_xml(envelope("OrderAcknowledgement", ack("1"), extra=extra), None, LIMIT)
    assert raw.frame.height == 1
    error = rejected(envelope("OrderAcknowledgement", ack("1"), extra="<PurgeAndReplace>maybe</PurgeAndReplace>"))
    assert error.name == "malformed-xml" and "PurgeAndReplace" in error.message and "true or false" in error.message
    error = rejected(envelope("OrderAcknowledgement", ack("1"),
                              extra="<PurgeAndReplace>true</PurgeAndReplace><MarketplaceName>X</MarketplaceName>"))
    assert error.name == "malformed-xml" and "<MarketplaceName>" in error.message


def test_elements_nested_deeper_named_message_do_not_confuse_the_stream():
    nested = ack("1", more="<Message><MessageID>2</MessageID></Message>")
    raw = read_xml(envelope("OrderAcknowledgement", nested, ack("3")), None, LIMIT)
    assert raw.frame["record"].to_list() == [1, 3]
    assert "Message" in issues_by_seq(raw)[0][0][1] and set(issues_by_seq(raw)) == {0}


# ------------------------------------------------------------------------------ whole-file rejections


def test_the_feed_type_given_must_match():
    assert read_xml(ACK, FeedType.XML_ACKNOWLEDGEMENT, LIMIT).feed_type is FeedType.XML_ACKNOWLEDGEMENT
    error = rejected(ACK, FeedType.XML_ADJUSTMENT)
    assert error.name == "unknown-feed-type" and "OrderAcknowledgement" in error.message and error.line == 7
    error = rejected(ADJ, FeedType.FLAT_ADJUSTMENT)
    assert error.name == "unknown-feed-type" and "not a flat" in error.message


def test_too_large():
    with pytest.raises(FeedError) as caught:
        read_xml(ACK, None, len(ACK) - 1)
    assert caught.value.name == "feed-too-large"


@pytest.mark.parametrize("data, line, column", [
    (b"<AmazonEnvelope>\n<Header>\n</AmazonEnvelope>", 3, 18),
    (b'<?xml version="1.0"?>\n<AmazonEnvelope><Header a="1" a="2"/></AmazonEnvelope>', 2, 36),
    (ACK[:-40], None, None),
    (ACK.replace(b"<Quantity>1</Quantity>", b"<Quantity>1</Quantity"), 29, None),
    (ACK + b"<AmazonEnvelope/>", 80, None),
    (ACK.replace(b"US-5550-1", b"US-\xff-1"), 16, None),
])
def test_not_well_formed_is_malformed_xml_with_line_and_column(data, line, column):
    error = rejected(data)
    assert error.name == "malformed-xml"
    assert "not well-formed" in error.message and ", column " in error.message
    if line is not None:
        assert error.line == line and f"(line {line}, column " in error.message
    if column is not None:
        assert f"column {column})" in error.message


def test_an_undeclared_entity_is_malformed_and_named():
    error = rejected(envelope("OrderAcknowledgement", ack("1", more="<MerchantOrderID>&foo;</MerchantOrderID>")))
    assert error.name == "malformed-xml" and "Entity 'foo' not defined" in error.message and error.line == 5


@pytest.mark.parametrize("data, expected", [
    (b"<Envelope/>", "root element is <Envelope>"),
    (b'<AmazonEnvelope xmlns="urn:x"/>', "root element is <{urn:x}AmazonEnvelope>"),
    (envelope("OrderAcknowledgement", ack("1"), header=""), "must start with a Header (DocumentVersion, "
                                                             "MerchantIdentifier), but <MessageType> comes first"),
    (envelope("OrderAcknowledgement", ack("1")).replace(b"<MessageType>OrderAcknowledgement</MessageType>", b""),
     "must be followed by MessageType (OrderAcknowledgement or OrderAdjustment), but a Message follows it"),
    (b"<AmazonEnvelope>" + ack("1").encode() + b"</AmazonEnvelope>", "must start with a Header"),
    (envelope("OrderAcknowledgement", ack("1"), header="<Header><DocumentVersion>1.01</DocumentVersion></Header>"),
     "MerchantIdentifier"),
    (envelope("OrderAcknowledgement", ack("1"), header="<Header><DocumentVersion>v1</DocumentVersion>"
                                                        "<MerchantIdentifier>M</MerchantIdentifier></Header>"),
     "DocumentVersion looks like 1.01"),
    (envelope("", ack("1")), "MessageType is empty"),
    (envelope("OrderCancellation", ack("1")), "MessageType 'OrderCancellation' is not a message type"),
    (envelope("OrderAcknowledgement"), "has no Message"),
    (envelope("OrderAcknowledgement", ack("1"), "<Note>hi</Note>", ack("2")), "<Note> is not part of the envelope"),
    (envelope("OrderAcknowledgement", ack("1"), "<Note>hi</Note>"), "<Note> is not part of the envelope"),
    (envelope("OrderAcknowledgement", ack("1"), "stray text", ack("2")), "holds text 'stray text'"),
    (envelope("OrderAcknowledgement", ack("1"), extra="<Extra/>"), "<Extra> is not part of the envelope here"),
    (envelope("OrderAcknowledgement", ack("1")).replace(b"<AmazonEnvelope>", b"<AmazonEnvelope>text"),
     "holds text 'text'"),
])
def test_a_broken_envelope_rejects_the_file(data, expected):
    error = rejected(data)
    assert error.name == "malformed-xml"
    assert expected in error.message
    assert error.line is not None and f"line {error.line}" in error.message


@pytest.mark.parametrize("message_type", ["Inventory", "ProcessingReport", "OrderFulfillment", "Product"])
def test_another_amazon_feed_is_an_unknown_feed_type(message_type):
    error = rejected(envelope(message_type, "<Message><MessageID>1</MessageID></Message>"))
    assert error.name == "unknown-feed-type" and f"'{message_type}'" in error.message and error.line == 4


# ------------------------------------------------------------------------------ detection


def test_detection_reads_the_first_bytes():
    assert detect_xml(ACK) is FeedType.XML_ACKNOWLEDGEMENT
    assert detect_xml(ADJ) is FeedType.XML_ADJUSTMENT
    head = sniff_xml(ADJ)
    assert (head.root, head.message_type, head.merchant_identifier) == ("AmazonEnvelope", "OrderAdjustment", "M_EXAMPLE_123")
    # Only the head is read: a broken tail does not matter, a missing MessageType gives None.
    assert detect_xml(ACK[:700]) is FeedType.XML_ACKNOWLEDGEMENT
    assert detect_xml(envelope("Inventory", ack("1"))) is None
    assert detect_xml(b"order-id\tcancellation-reason-code\n") is None
    assert detect_xml(b"<Envelope/>") is None
    assert detect_xml(b"") is None
    assert detect_xml(b'<!DOCTYPE x [<!ENTITY a "b">]><AmazonEnvelope/>') is None
    padded = envelope("OrderAdjustment", ack("1"), extra="<!--" + "x" * 300_000 + "-->")
    assert detect_xml(padded) is FeedType.XML_ADJUSTMENT  # MessageType comes before the padding


# ------------------------------------------------------------------------------ the shipped schemas


def test_every_schema_is_package_data_and_compiles():
    folder = resources.files("orderfeeds") / "schemas"
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".xsd")) == sorted(SCHEMA_FILES)
    for name in SCHEMA_FILES:
        load_schema(name)
    top = ROOT / "schemas"
    if top.exists():
        assert sorted(p.name for p in top.glob("*.xsd")) == sorted(SCHEMA_FILES)


def test_whole_file_validation_agrees_with_the_reader():
    """The envelope XSD on a whole sample reports exactly what the reader turns into row issues."""
    schema = load_schema("amzn-envelope.xsd")
    assert not schema.validate(etree.fromstring(ACK))
    messages = [(e.line, e.message) for e in schema.error_log]
    assert any("Duplicate key-sequence ['5']" in m for _, m in messages)
    assert any(line == 76 and "'Cancelled'" in m for line, m in messages)
    assert len(messages) == 2
    assert not schema.validate(etree.fromstring(ADJ))
    assert [(e.line, "'Goodwill'" in e.message) for e in schema.error_log] == [(66, True)]
    fixed = ADJ.replace(b"<AdjustmentReason>Goodwill</AdjustmentReason>", b"<AdjustmentReason>Other</AdjustmentReason>")
    assert schema.validate(etree.fromstring(fixed))
    assert read_xml(fixed, None, LIMIT).issues.height == 0


def test_message_schemas_are_compiled_once_per_thread():
    first = xmlreader._schemas()
    read_xml(ACK, None, LIMIT)
    assert xmlreader._schemas() is first

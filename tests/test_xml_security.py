"""Hostile XML: every payload is rejected (or made harmless) quickly, with bounded memory, and leaks nothing.

The memory tests run the reader in a fresh interpreter on a file written to disk, so
that the input bytes are already in memory before the baseline is taken and the peak
RSS growth (ru_maxrss) is the reader's own.
"""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from orderfeeds.errors import FeedError
from orderfeeds.readers import xml as xmlreader
from orderfeeds.readers.xml import read_xml, sniff_xml

ROOT = Path(__file__).resolve().parents[1]
ACK_SAMPLE = ROOT / "samples" / "feeds" / "order-acknowledgement.xml"
LIMIT = 10**10
SECRET = "TOP-SECRET-6f1c2a9e-do-not-leak"

HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n<Header><DocumentVersion>1.01</DocumentVersion>'
        b"<MerchantIdentifier>M_1</MerchantIdentifier></Header>\n<MessageType>OrderAcknowledgement</MessageType>\n")
TAIL = b"</AmazonEnvelope>\n"


def message(message_id: int, merchant_order: bytes = b"US-1", padding: bytes = b"") -> bytes:
    return (b"<Message><MessageID>%d</MessageID><OrderAcknowledgement>%s<AmazonOrderID>111-2223334-4445550"
            b"</AmazonOrderID><MerchantOrderID>%s</MerchantOrderID><StatusCode>Success</StatusCode>"
            b"</OrderAcknowledgement></Message>\n" % (message_id, padding, merchant_order))


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def everything_said(exc: BaseException) -> str:
    """Every text an exception could show: message, attributes, chained causes, traceback."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [str(value) for value in vars(exc).values()]
    return "\n".join(parts)


def rejected(data: bytes, *names: str) -> FeedError:
    with pytest.raises(FeedError) as caught:
        read_xml(data, None, LIMIT)
    assert caught.value.name in names, caught.value.message
    return caught.value


def raw_text(raw) -> str:
    """Every value and message a raw feed carries, as one string."""
    return "\n".join(str(v) for row in raw.frame.iter_rows() for v in row) + "\n".join(raw.issues["message"])


# ------------------------------------------------------------------------------ DTDs and entities


def billion_laughs(levels: int = 10) -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, levels))
    return (b'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [' + entities + b"]>\n"
            + HEAD.split(b"\n", 1)[1] + message(1, b"&lol%d;" % (levels - 1)) + TAIL)


def test_billion_laughs_is_unsafe():
    error = rejected(billion_laughs(), "unsafe-xml")
    assert error.line == 2 and "DOCTYPE" in error.message


def test_quadratic_blowup_is_unsafe():
    big = b"A" * 100_000
    data = (b'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [<!ENTITY a "' + big + b'">]>\n'
            + HEAD.split(b"\n", 1)[1] + message(1, b"&a;" * 20_000) + TAIL)
    rejected(data, "unsafe-xml")


def test_external_entity_to_a_local_file_is_unsafe_and_leaks_nothing(secret_file: Path):
    data = (b'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [<!ENTITY xxe SYSTEM "file://'
            + str(secret_file).encode() + b'">]>\n' + HEAD.split(b"\n", 1)[1] + message(1, b"&xxe;") + TAIL)
    error = rejected(data, "unsafe-xml")
    assert SECRET not in everything_said(error)
    assert str(secret_file) not in error.message


def test_external_dtd_is_unsafe(secret_file: Path):
    dtd = secret_file.parent / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "file://{secret_file}">')
    for system in (b"http://example.invalid/evil.dtd", b"file://" + str(dtd).encode()):
        data = (b'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope SYSTEM "' + system + b'">\n'
                + HEAD.split(b"\n", 1)[1] + message(1, b"&leak;") + TAIL)
        error = rejected(data, "unsafe-xml")
        assert SECRET not in everything_said(error)


def test_parameter_entities_are_unsafe(secret_file: Path):
    data = (b'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [\n<!ENTITY % file SYSTEM "file://'
            + str(secret_file).encode() + b'">\n<!ENTITY % wrap "<!ENTITY leak \'%file;\'>">\n%wrap;\n]>\n'
            + HEAD.split(b"\n", 1)[1] + message(1, b"&leak;") + TAIL)
    error = rejected(data, "unsafe-xml")
    assert SECRET not in everything_said(error)


def test_a_doctype_behind_comments_and_processing_instructions_is_found():
    prolog = b"<!-- " + b"-" * 10 + b" x " * 200_000 + b" -->\n<?pi data?>\n \t\r\n"
    data = b'<?xml version="1.0"?>\n' + prolog + b'<!DOCTYPE AmazonEnvelope [<!ENTITY a "b">]>\n' + HEAD.split(b"\n", 1)[1] + message(1) + TAIL
    error = rejected(data, "unsafe-xml")
    assert error.line == 5


@pytest.mark.parametrize("codec, bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
                                        ("utf-16-le", b""), ("utf-32-le", codecs.BOM_UTF32_LE)])
def test_a_doctype_in_a_wide_encoding_is_found(codec, bom, secret_file: Path):
    text = (f'<?xml version="1.0" encoding="{codec[:6].upper()}"?>\n<!DOCTYPE AmazonEnvelope '
            f'[<!ENTITY xxe SYSTEM "file://{secret_file}">]>\n<AmazonEnvelope>&xxe;</AmazonEnvelope>')
    error = rejected(bom + text.encode(codec), "unsafe-xml", "malformed-xml")
    assert SECRET not in everything_said(error)


@pytest.mark.parametrize("payload", ["xxe", "parameter", "laughs", "ebcdic"])
def test_the_parser_level_check_rejects_a_doctype_the_byte_scan_missed(payload, secret_file: Path, monkeypatch):
    """Second line of defence: with the prolog scan switched off, the parser's document info still rejects."""
    monkeypatch.setattr(xmlreader, "_prolog_declaration", lambda data: None)
    url = f"file://{secret_file}"
    data = {
        "xxe": f'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [<!ENTITY xxe SYSTEM "{url}">]>\n'
               "<AmazonEnvelope>&xxe;</AmazonEnvelope>".encode(),
        "parameter": f'<?xml version="1.0"?>\n<!DOCTYPE AmazonEnvelope [<!ENTITY % p SYSTEM "{url}"> %p;]>\n'
                     "<AmazonEnvelope/>".encode(),
        "laughs": billion_laughs(),
        "ebcdic": (f'<?xml version="1.0" encoding="IBM037"?>\n<!DOCTYPE AmazonEnvelope [<!ENTITY xxe SYSTEM "{url}">]>\n'
                   "<AmazonEnvelope>&xxe;</AmazonEnvelope>").encode("cp037"),
    }[payload]
    error = rejected(data, "unsafe-xml", "malformed-xml")
    assert SECRET not in everything_said(error)
    assert sniff_xml(data).root is None


def test_an_entity_reference_without_a_declaration_is_malformed():
    error = rejected(HEAD + message(1, b"&xxe;") + TAIL, "malformed-xml")
    assert "Entity 'xxe' not defined" in error.message


def test_xinclude_is_never_processed(secret_file: Path):
    include = (b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://' + str(secret_file).encode()
               + b'" parse="text"/>')
    raw = read_xml(HEAD + message(1, include) + message(2, padding=include) + TAIL, None, LIMIT)
    assert SECRET not in raw_text(raw)
    assert raw.issues["error"].to_list() == ["schema-violation", "schema-violation"]
    assert "XInclude}include" in raw.issues["message"][1]
    error = rejected(HEAD + include + message(1) + TAIL, "malformed-xml")
    assert SECRET not in everything_said(error)


def test_schema_location_hints_in_the_document_are_ignored(tmp_path: Path):
    """xsi:schemaLocation must not swap in another schema: the message is still checked against ours."""
    permissive = tmp_path / "anything.xsd"
    permissive.write_text('<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
                          '<xsd:element name="Message"/></xsd:schema>')
    hint = (b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="file://'
            + str(permissive).encode() + b'"')
    bad = message(1).replace(b"<Message>", b"<Message" + hint + b">").replace(b"Success", b"Whatever")
    raw = read_xml(HEAD.replace(b"<AmazonEnvelope>", b"<AmazonEnvelope" + hint + b">") + bad + TAIL, None, LIMIT)
    assert raw.issues["error"].to_list() == ["schema-violation"] and "'Whatever'" in raw.issues["message"][0]


# ------------------------------------------------------------------------------ size limits, in a fresh process

MEASURE = r"""
import json, resource, sys
from orderfeeds.errors import FeedError
from orderfeeds.readers.xml import read_xml
read_xml(open(sys.argv[2], "rb").read(), None, 10**9)  # imports, schemas compiled: not the reader's growth
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    raw = read_xml(data, None, 10**11)
    outcome = {"records": raw.frame.height, "issues": raw.issues.height}
except FeedError as exc:
    outcome = {"error": exc.name, "message": exc.message[:300]}
outcome["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(outcome))
"""


def measured(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(ACK_SAMPLE)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write(path: Path, *parts: bytes, repeat: tuple[bytes, int] | None = None, after: bytes = b"") -> Path:
    """Write a file piece by piece, so that the test process never holds it whole."""
    with path.open("wb") as handle:
        for part in parts:
            handle.write(part)
        if repeat is not None:
            chunk, times = repeat
            for _ in range(times):
                handle.write(chunk)
        handle.write(after)
    return path


def test_a_huge_text_node_is_rejected_with_bounded_memory(tmp_path: Path):
    path = write(tmp_path / "huge-text.xml", HEAD, b"<Message><MessageID>1</MessageID><OrderAcknowledgement>"
                 b"<AmazonOrderID>111-2223334-4445550</AmazonOrderID><MerchantOrderID>",
                 repeat=(b"x" * 1024 * 1024, 50), after=b"</MerchantOrderID></OrderAcknowledgement></Message>" + TAIL)
    outcome = measured(path)
    assert outcome["error"] == "unsafe-xml", outcome
    assert "Text node too long" in outcome["message"]
    assert outcome["growth_mb"] < 48, outcome  # libxml2 stops at 10 MB of text; the file is 50 MB


def test_very_deep_nesting_is_rejected_with_bounded_memory(tmp_path: Path):
    depth = 100_000
    path = write(tmp_path / "deep.xml", HEAD, b"<Message>", repeat=(b"<a>", depth), after=b"</a>" * depth + b"</Message>" + TAIL)
    outcome = measured(path)
    assert outcome["error"] == "unsafe-xml", outcome
    assert "depth" in outcome["message"]
    assert outcome["growth_mb"] < 16, outcome


def test_a_huge_attribute_is_rejected(tmp_path: Path):
    # libxml2 buffers a start tag whole before parsing it, so memory is bounded by the
    # tag's size (and the file-size limit), not by a parser limit.
    path = write(tmp_path / "huge-attribute.xml", HEAD, b'<Message id="', repeat=(b"x" * 1024 * 1024, 50),
                 after=b'"/>' + TAIL)
    outcome = measured(path)
    assert outcome["error"] == "unsafe-xml", outcome
    assert outcome["growth_mb"] < 200, outcome


def test_memory_stays_flat_while_streaming(tmp_path: Path):
    """Messages padded with 20 kB of whitespace each, 20 MB and then 80 MB of them: what the reader holds does not
    follow the file. The growth itself is mostly one-time (compiled regexes, thread pools, what the allocators
    keep), so the two files are compared: 60 MB more file may cost only a few MB more."""
    padding = b" " * 20_000
    growth = {}
    for count in (1_000, 4_000):
        path = tmp_path / f"padded-{count}.xml"
        with path.open("wb") as handle:
            handle.write(HEAD)
            for number in range(1, count + 1):
                handle.write(message(number, padding=padding))
            handle.write(TAIL)
        outcome = measured(path)
        assert (outcome.get("records"), outcome.get("issues")) == (count, 0), outcome
        growth[count] = outcome["growth_mb"]
    assert growth[4_000] - growth[1_000] < 12, growth
    assert growth[4_000] < 40, growth  # half the file


def test_a_long_prolog_of_whitespace_is_scanned_quickly():
    data = b'<?xml version="1.0"?>' + b" " * 5_000_000 + HEAD.split(b"\n", 1)[1] + message(1) + TAIL
    assert read_xml(data, None, LIMIT).frame.height == 1

"""Report files of SPEC §5, rendered from a FeedResult and written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl

from orderfeeds import __version__
from orderfeeds.outcomes import REPORT_COLUMNS, FeedResult
from orderfeeds.report_xml import render_processing_report_xml

TEXT_COLUMNS = ("order-id", "order-item-id", "error-message")


def report_names(stem: str, xml: bool = False) -> dict[str, str]:
    """The report file names of a feed NAME.EXT, by kind (SPEC §5)."""
    return {
        "report": f"{stem}.report.tsv",
        "processing-report": f"{stem}.processing-report.{'xml' if xml else 'txt'}",
        "summary": f"{stem}.summary.json",
    }


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not safe once other threads run.
UMASK = _umask()


def atomic_write(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename, fsync the folder: all or nothing.

    The file gets the permissions a plain `open` would give it (0666 less the umask): mkstemp
    makes it 0600, and a report only its writer can read is no use to the team that reviews it.
    """
    folder = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def safe_text(value: pl.Expr) -> pl.Expr:
    """Make input text inert in a spreadsheet and keep the TSV shape (SPEC §5)."""
    risky = value.str.contains(r"^[=+\-@\t\r]")
    guarded = pl.when(risky).then(pl.lit("'") + value).otherwise(value)
    return guarded.str.replace_all(r"[\t\r\n]", " ")


def render_tsv(result: FeedResult) -> bytes:
    frame = result.rows.select(REPORT_COLUMNS).with_columns(safe_text(pl.col(c)).alias(c) for c in TEXT_COLUMNS)
    return frame.write_csv(separator="\t", quote_style="never", null_value="").encode("utf-8")


def render_processing_report(result: FeedResult) -> bytes:
    """Amazon's flat processing report: summary block, blank line, errors and warnings."""
    processed = result.records.height
    successful = processed - result.count("Error")
    noted = result.rows.filter(pl.col("status") != "Success").select(
        "original-record-number", "order-id", "order-item-id", "error-code",
        pl.col("status").alias("error-type"), "error-message",
    ).with_columns(safe_text(pl.col(c)).alias(c) for c in TEXT_COLUMNS)
    head = ("Feed Processing Summary:\n"
            f"\tNumber of records processed\t\t{processed}\n"
            f"\tNumber of records successful\t\t{successful}\n\n")
    return head.encode("utf-8") + noted.write_csv(separator="\t", quote_style="never", null_value="").encode("utf-8")


def summary(result: FeedResult) -> dict:
    records = result.records
    by_error = (records.filter(pl.col("error-name").is_not_null()).group_by("error-name").len()
                .sort("error-name"))
    return {
        "feed": result.name,
        "feed-type": result.feed_type.value if result.feed_type else None,
        "sha256": result.sha256,
        "as-of": result.as_of,
        "orderfeeds-version": __version__,
        "fatal": None if result.fatal is None else {"error-name": result.fatal.error, "error-message": result.fatal.message},
        "records": records.height,
        "by-status": {status: result.count(status) for status in ("Success", "Warning", "Error")},
        "by-error": {row[0]: row[1] for row in by_error.iter_rows()},
        "file-notes": result.rows.height - records.height,
        "cancellations-counting-toward-rate": result.cancellations_counting,
        "refunded": result.refunded,
        "timings-seconds": {stage: round(seconds, 4) for stage, seconds in result.timings.items()},
    }


def render_reports(result: FeedResult, stem: str | None = None) -> dict[str, bytes]:
    """Every report file of one feed, by file name; nothing is written."""
    names = report_names(stem or Path(result.name).stem, result.xml)
    processing = (render_processing_report_xml(result, result.merchant_identifier) if result.xml
                  else render_processing_report(result))
    return {
        names["report"]: render_tsv(result),
        names["processing-report"]: processing,
        names["summary"]: (json.dumps(summary(result), indent=2) + "\n").encode("utf-8"),
    }


def write_reports(result: FeedResult, out_dir: Path, stem: str | None = None) -> dict[str, Path]:
    """Write every report file of one feed atomically; returns their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = render_reports(result, stem)
    for name, content in files.items():
        atomic_write(out_dir / name, content)
    kinds = report_names(stem or Path(result.name).stem, result.xml)
    return {kind: out_dir / name for kind, name in kinds.items() if name in files}

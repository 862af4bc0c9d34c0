"""The `orderfeeds` command: parses options, calls the library, renders; nothing more."""

from __future__ import annotations

import codecs
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
import polars as pl

from orderfeeds import __version__
from orderfeeds.errors import OrderfeedsError
from orderfeeds.feedtypes import FeedType
from orderfeeds.outcomes import FeedResult
from orderfeeds.pipeline import ProcessOptions, process_feeds

SHOWN_PROBLEMS = 10


def _encoding(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise click.BadParameter(f"unknown encoding '{value}' (try cp1252, cp932, latin-1)") from None
    return value


def _as_of(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is None:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 time such as 2026-11-28T06:00:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orderfeeds")
def main() -> None:
    """Validate and apply order cancellation and adjustment feeds; write a report per feed."""


@main.command()
@click.argument("feeds", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--snapshot", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Order state to apply the feeds to: TSV, CSV or Parquet (SPEC §3).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the report files (created if missing).")
@click.option("--as-of", callback=_as_of, metavar="TIME", help="Processing time stamped on the reports (ISO 8601; default now).")
@click.option("--write-snapshot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the resulting order state as a snapshot file (.tsv, .csv or .parquet).")
@click.option("--feed-type", type=click.Choice([t.value for t in FeedType]),
              help="Skip detection and read every feed as this type.")
@click.option("--encoding", default="cp1252", show_default=True, callback=_encoding,
              help="Fallback encoding for flat files that are not UTF-8.")
def process(feeds: tuple[Path, ...], snapshot: Path, out_dir: Path, as_of: str, write_snapshot: Path | None,
            feed_type: str | None, encoding: str) -> None:
    """Apply FEED files, in the order given, to a snapshot file and write their reports.

    Nothing is kept between calls: use it to see which records would be rejected, and why.
    """
    names = [f.stem for f in feeds]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise click.UsageError(f"feeds named {', '.join(clashes)} would write the same report files; rename one")
    options = ProcessOptions(feed_type=FeedType(feed_type) if feed_type else None, encoding=encoding, as_of=as_of)
    try:
        run = process_feeds(list(feeds), snapshot, out_dir, options, write_snapshot)
    except OrderfeedsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: cannot write {exc.filename or 'the reports'}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    for result, files in zip(run.results, run.report_files):
        click.echo(render_result(result, files["report"]))
    if write_snapshot is not None:
        click.echo(f"resulting order state written to {write_snapshot}")
    sys.exit(run.exit_code)


def render_result(result: FeedResult, report: Path) -> str:
    """A few lines a person reads on the terminal; the files hold everything."""
    kind = result.feed_type.value if result.feed_type else "feed"
    if result.fatal is not None:
        return (f"{result.name}: rejected whole ({result.fatal.error}): {result.fatal.message}\n"
                f"  nothing was applied; report: {report}")
    lines = [f"{result.name} ({kind}): {result.records.height} records: {result.count('Success')} applied, "
             f"{result.count('Warning')} applied with a warning, {result.count('Error')} rejected",
             f"  report: {report}"]
    noted = result.rows.filter(pl.col("status") != "Success")
    for row in noted.head(SHOWN_PROBLEMS).iter_rows(named=True):
        lines.append(f"  record {row['original-record-number']} (line {row['line'] or '-'}): "
                     f"{row['status']} {row['error-name']}: {row['error-message']}")
    if noted.height > SHOWN_PROBLEMS:
        lines.append(f"  ... and {noted.height - SHOWN_PROBLEMS} more in the report")
    return "\n".join(lines)

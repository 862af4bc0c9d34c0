"""The `orderfeeds` command: parses options, calls the library, renders; nothing more."""

from __future__ import annotations

import codecs
import sys
from datetime import UTC, datetime
from pathlib import Path

from orderfeeds import __version__, allocator

allocator.tune_polars()  # before polars is imported: the command's setting, not the library's

import click  # noqa: E402
import polars as pl  # noqa: E402

from orderfeeds.errors import OrderfeedsError  # noqa: E402
from orderfeeds.feedtypes import FeedType  # noqa: E402
from orderfeeds.outcomes import FeedResult  # noqa: E402
from orderfeeds.pipeline import ProcessOptions, process_feeds  # noqa: E402
from orderfeeds.readers import CHUNK_RECORDS, XML_CHUNK_RECORDS  # noqa: E402
from orderfeeds.runner import Locked, RunOptions, run_spool  # noqa: E402
from orderfeeds.snapshot import read_snapshot, write_snapshot  # noqa: E402
from orderfeeds.state.store import DEFAULT_URL, StateError, open_store  # noqa: E402

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
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orderfeeds")
def main() -> None:
    """Validate and apply order cancellation and adjustment feeds; write a report per feed."""
    allocator.tune()


chunk_option = click.option("--chunk-records", default=None, type=click.IntRange(min=1), metavar="N",
                            help=f"Records read, validated and applied at a time; lower it to use less memory. "
                                 f"[default: {CHUNK_RECORDS:,} for a flat file, {XML_CHUNK_RECORDS:,} for XML]")


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
@chunk_option
def process(feeds: tuple[Path, ...], snapshot: Path, out_dir: Path, as_of: str, write_snapshot: Path | None,
            feed_type: str | None, encoding: str, chunk_records: int | None) -> None:
    """Apply FEED files, in the order given, to a snapshot file and write their reports.

    Nothing is kept between calls: use it to see which records would be rejected, and why.
    """
    names = [f.stem for f in feeds]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise click.UsageError(f"feeds named {', '.join(clashes)} would write the same report files; rename one")
    options = ProcessOptions(feed_type=FeedType(feed_type) if feed_type else None, encoding=encoding, as_of=as_of,
                             chunk_records=chunk_records)
    try:
        run = process_feeds(list(feeds), snapshot, out_dir, options, write_snapshot)
    except OrderfeedsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: cannot write {exc.filename or 'the reports'}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    for result, files in zip(run.results, run.report_files, strict=True):
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


def _store_errors(action):
    """Run `action`; a state problem becomes a message and its exit code, never a traceback."""
    try:
        return action()
    except StateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OrderfeedsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


state_option = click.option("--state", "state_url", default=DEFAULT_URL, show_default=True, metavar="URL",
                            help="The persistent order state (sqlite:///path.db).")


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("feeds"), show_default=True,
              help="The spool folder: inbox/, processing/, done/, failed/, reports/.")
@state_option
@click.option("--as-of", callback=_as_of, metavar="TIME", help="Processing time stamped on the reports (ISO 8601; default now).")
@click.option("--encoding", default="cp1252", show_default=True, callback=_encoding,
              help="Fallback encoding for flat files that are not UTF-8.")
@chunk_option
def run(root: Path, state_url: str, as_of: str, encoding: str, chunk_records: int | None) -> None:
    """Process every feed in ROOT/inbox against the persistent state (the cron job).

    Oldest file first; each feed is one transaction; an overlapping run exits 75 at once.
    """
    progress = (lambda text: click.echo(text, err=True)) if sys.stderr.isatty() else None
    options = RunOptions(root=root, state_url=_resolve_url(state_url, root),
                         process=ProcessOptions(encoding=encoding, as_of=as_of, chunk_records=chunk_records))
    try:
        report = _store_errors(lambda: run_spool(options, log=lambda line: click.echo(line, err=True), progress=progress))
    except Locked as exc:
        click.echo(f"orderfeeds: {exc}; nothing was done", err=True)
        sys.exit(75)
    except OSError as exc:
        click.echo(f"error: {exc.filename or root}: {exc.strerror or exc}; unfinished feeds stay in "
                   f"{root / 'processing'} and the next run finishes them", err=True)
        sys.exit(2)
    for feed in report.feeds:
        if feed.entry is not None:
            resumed = " (finished after an interrupted run)" if feed.resumed else ""
            click.echo(f"{feed.name}: {feed.outcome}{resumed}: {feed.entry.records} records, {feed.entry.errors} rejected; "
                       f"reports {root / 'reports' / feed.entry.report_stem}.*")
    if not report.feeds:
        click.echo(f"nothing to do: {root / 'inbox'} has no ready feeds")
    sys.exit(report.exit_code)


def _resolve_url(url: str, root: Path) -> str:
    """The default state lives in the spool root, whichever root is chosen."""
    return f"sqlite:///{root / 'state.db'}" if url == DEFAULT_URL else url


@main.group()
def snapshot() -> None:
    """Load or dump the persistent order state."""


@snapshot.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@state_option
def snapshot_import(file: Path, state_url: str) -> None:
    """Replace the persistent order lines with FILE (TSV, CSV or Parquet); the ledger is kept."""
    import hashlib

    def action() -> int:
        lines = read_snapshot(file)
        store = open_store(state_url)
        try:
            return store.import_snapshot(lines, file.name, hashlib.sha256(file.read_bytes()).hexdigest())
        finally:
            store.close()

    count = _store_errors(action)
    click.echo(f"imported {count} order lines from {file}")


@snapshot.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@state_option
def snapshot_export(file: Path, state_url: str) -> None:
    """Write the current order state to FILE, sorted by order and item (a valid --snapshot)."""
    def action() -> int:
        store = open_store(state_url, must_exist=True)
        try:
            lines = store.export_lines()
        finally:
            store.close()
        write_snapshot(lines, file)
        return lines.height

    count = _store_errors(action)
    click.echo(f"exported {count} order lines to {file}")


@main.command()
@state_option
@click.option("--limit", default=50, show_default=True, help="How many feeds to show.")
def history(state_url: str, limit: int) -> None:
    """The processed feeds, newest first, with their counts."""
    def action():
        store = open_store(state_url, must_exist=True)
        try:
            return store.feeds()[:limit]
        finally:
            store.close()

    entries = _store_errors(action)
    click.echo("id\tcommitted-at\tfeed\ttype\toutcome\trecords\tapplied\twarnings\trejected\treports")
    for e in entries:
        click.echo(f"{e.id}\t{e.committed_at}\t{e.name}\t{e.feed_type or '-'}\t{e.outcome}\t{e.records}\t"
                   f"{e.successful}\t{e.warnings}\t{e.errors}\t{e.report_stem}.*")


@main.command()
@click.argument("order_id")
@state_option
def explain(order_id: str, state_url: str) -> None:
    """ORDER-ID's lines, their current state, and every effect applied to them."""
    def action():
        store = open_store(state_url, must_exist=True)
        try:
            lines = store.load_lines(pl.Series([order_id]), pl.Series([order_id]))
            # ORDER-ID may be the seller's own id: effects are kept under Amazon's.
            resolved = lines.item(0, "order-id") if lines.height else order_id
            return lines, store.order_effects(resolved)
        finally:
            store.close()

    lines, effects = _store_errors(action)
    if lines.height == 0:
        click.echo(f"order {order_id} is not in the state", err=True)
        sys.exit(1)
    shown = ["order-item-id", "merchant-order-item-id", "order-status", "currency", "quantity-ordered",
             "quantity-shipped", "quantity-cancelled", "item-price", "item-price-refunded", "item-tax-refunded",
             "shipping-price-refunded", "other-adjustments-net"]
    click.echo(f"order {lines.item(0, 'order-id')} ({lines.item(0, 'order-status')}, "
               f"{lines.item(0, 'fulfillment-channel')}, {lines.item(0, 'currency')})")
    # Tab-separated, so a reviewer can paste it into a spreadsheet as it is.
    click.echo(lines.select(shown).write_csv(separator="\t", null_value="").rstrip("\n"))
    click.echo(f"\napplied effects ({effects.height}):")
    if effects.height:
        click.echo(effects.write_csv(separator="\t", null_value="").rstrip("\n"))

"""The order snapshot: read and check it (SPEC §3), and write the state back as one."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import polars as pl

from orderfeeds.errors import SnapshotError
from orderfeeds.feedtypes import ORDER_STATUSES, Field, Kind
from orderfeeds.readers.model import record_columns
from orderfeeds.readers.text import blank_to_null, decode, is_blank, regular_fields, split_lines, trimmed
from orderfeeds.validate import cast_fields, find_issues


def _money(name: str, column_required: bool = True) -> Field:
    return Field(name, name, Kind.MONEY, column_required=column_required)


# Charged component → the snapshot column that records how much of it was refunded.
CHARGED_COMPONENTS: dict[str, tuple[str, str]] = {
    "Principal": ("item-price", "item-price-refunded"),
    "Tax": ("item-tax", "item-tax-refunded"),
    "Shipping": ("shipping-price", "shipping-price-refunded"),
    "ShippingTax": ("shipping-tax", "shipping-tax-refunded"),
    "GiftWrap": ("gift-wrap-price", "gift-wrap-price-refunded"),
    "GiftWrapTax": ("gift-wrap-tax", "gift-wrap-tax-refunded"),
}
# Promotion component → (discount given, discount reversed so far), both positive.
PROMOTION_COMPONENTS: dict[str, tuple[str, str]] = {
    "PromotionPrincipal": ("item-promotion-discount", "item-promotion-reversed"),
    "PromotionShipping": ("ship-promotion-discount", "ship-promotion-reversed"),
}
# Components with no charge of their own (Goodwill, RestockingFee, ...) are capped
# only by the line's net; their running net is kept in this column, which SPEC §3
# does not name: without it a written snapshot would forget them.
OTHER_NET = "other-adjustments-net"

SNAPSHOT_FIELDS: tuple[Field, ...] = (
    Field("order-id", "order-id", Kind.ORDER_ID, value_required=True),
    Field("order-item-id", "order-item-id", Kind.ITEM_CODE, value_required=True),
    Field("merchant-order-id", "merchant-order-id", Kind.TEXT, column_required=False),
    Field("merchant-order-item-id", "merchant-order-item-id", Kind.TEXT, column_required=False),
    Field("order-status", "order-status", Kind.ENUM, value_required=True, choices=ORDER_STATUSES),
    Field("fulfillment-channel", "fulfillment-channel", Kind.ENUM, value_required=True, choices=("MFN", "AFN")),
    Field("sales-channel", "sales-channel", Kind.TEXT, column_required=False),
    Field("purchase-date", "purchase-date", Kind.TEXT, column_required=False),
    Field("latest-ship-date", "latest-ship-date", Kind.TEXT, column_required=False),
    Field("currency", "currency", Kind.CURRENCY, value_required=True),
    Field("quantity-ordered", "quantity-ordered", Kind.COUNT, value_required=True),
    Field("quantity-shipped", "quantity-shipped", Kind.COUNT, value_required=True),
    Field("quantity-cancelled", "quantity-cancelled", Kind.COUNT, column_required=False),
    *(_money(charged) for charged, _ in CHARGED_COMPONENTS.values()),
    *(_money(given, column_required=False) for given, _ in PROMOTION_COMPONENTS.values()),
    *(_money(refunded, column_required=False) for _, refunded in CHARGED_COMPONENTS.values()),
    *(_money(reversed_, column_required=False) for _, reversed_ in PROMOTION_COMPONENTS.values()),
    _money(OTHER_NET, column_required=False),
    Field("shipping-label-purchased", "shipping-label-purchased", Kind.BOOL, column_required=False),
    Field("buyer-requested-cancel", "buyer-requested-cancel", Kind.BOOL, column_required=False),
)
SNAPSHOT_COLUMNS = tuple(f.name for f in SNAPSHOT_FIELDS)
KEY = ["order-id", "order-item-id"]
MAX_LISTED = 5


# Bytes per block when a regular text snapshot is streamed: the text of one block is
# held at a time, so memory is the typed state plus one block, not the file's strings too.
BLOCK_BYTES = 32 << 20


def read_snapshot(path: Path) -> pl.DataFrame:
    """The order lines of a TSV, CSV or Parquet snapshot, typed; SnapshotError if it breaks §3."""
    try:
        streamed = _stream_regular(path)
        if streamed is not None:
            return streamed
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_snapshot(data, path.name)


def _stream_regular(path: Path) -> pl.DataFrame | None:
    """A regular text snapshot (see `_regular_block`) read, checked and typed block by
    block; None for anything else (Parquet, quoted CSV, irregular or bad lines), which
    the whole-file path then reads and explains exactly as it always has."""
    with path.open("rb") as file:
        head = file.readline()
        parsed = _regular_header(head) if not head.startswith(b"PAR1") and head.endswith(b"\n") else None
        if parsed is None:
            return None
        header, separator = parsed
        if any(f.column_required and f.name not in header for f in SNAPSHOT_FIELDS):
            return None
        order = tuple(h for h in header if h in SNAPSHOT_COLUMNS)
        typed, seq, line, rest = [], 0, 2, b""
        while True:
            block = file.read(BLOCK_BYTES)
            data = rest + block
            if block:  # cut after the last whole line; the rest starts the next block
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
            if data:
                if separator == "," and b'"' in data:
                    return None
                body = _regular_block(data, header, separator, seq, line)
                if body is None:
                    return None
                body = body.with_columns(pl.lit(None, pl.String).alias(f.name)
                                         for f in SNAPSHOT_FIELDS if f.name not in header)
                if find_issues(body, SNAPSHOT_FIELDS, order).height:
                    return None
                typed.append(cast_fields(body, SNAPSHOT_FIELDS))
                seq, line = seq + body.height, line + body.height
            if not block:
                break
    if not typed:
        return None
    state = one_chunk(typed)
    _check_consistency(path.name, "line", state)
    return state.drop("seq", "record", "line", "item-index")


def one_chunk(blocks: list[pl.DataFrame]) -> pl.DataFrame:
    """The blocks as one frame of one chunk per column, emptying `blocks`.

    A frame of many chunks is copied whole by the first lazy operation on it (polars rechunks);
    joining the blocks column by column, each block's column freed as it is copied, costs
    one column more than the frame instead of the frame twice.
    """
    columns = []
    for name in blocks[0].columns:
        columns.append(pl.concat([block.drop_in_place(name) for block in blocks], rechunk=True))
    blocks.clear()
    return pl.DataFrame(columns)


def parse_snapshot(data: bytes, name: str = "snapshot") -> pl.DataFrame:
    """Like read_snapshot, from bytes; `name` is used in messages."""
    where = "line"
    if data.startswith(b"PAR1"):
        where = "row"
        frame, header = _parquet_rows(data, name)
        header_at = "the header"
    else:
        frame, header, header_line = _text_rows(data, name)
        header_at = f"line {header_line}: the header"
    fields = SNAPSHOT_FIELDS
    missing = [f.name for f in fields if f.column_required and f.name not in header]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise SnapshotError(f"{name} {header_at} lacks the required column{plural} {', '.join(missing)}")
    frame = frame.with_columns(pl.lit(None, pl.String).alias(f.name) for f in fields if f.name not in header)
    issues = find_issues(frame, fields, tuple(h for h in header if h in SNAPSHOT_COLUMNS))
    if issues.height:
        _reject(name, where, frame, issues.sort("seq", "rank"))
    state = cast_fields(frame, fields)
    _check_consistency(name, where, state)
    return state.drop("seq", "record", "line", "item-index")


def _text_rows(data: bytes, name: str) -> tuple[pl.DataFrame, list[str], int]:
    fast = _regular_rows(data)
    if fast is not None:
        return fast
    try:
        text = decode(data)
    except Exception as exc:  # FeedError from decode: reword for a snapshot
        raise SnapshotError(f"{name}: {getattr(exc, 'message', exc)}") from None
    lines = split_lines(text).filter(~is_blank(pl.col("text")))
    if lines.height == 0:
        raise SnapshotError(f"{name}: the file is empty; a snapshot needs a header line")
    first = lines.row(0, named=True)
    separator = "\t" if "\t" in first["text"] else ","
    if separator == "," and '"' in text:
        return _quoted_csv_rows(text, name)
    header = [h.strip(" ").lstrip("\ufeff") for h in first["text"].split(separator)]
    body = lines.slice(1)
    # split_exact yields every field as one struct in a single pass; the separator count
    # catches ragged lines, whose extra fields split_exact would silently drop.
    fields = body.select(pl.col("text").str.split_exact(separator, len(header) - 1)).unnest("text")
    fields.columns = [f"_{i}" for i in range(len(header))]
    body = pl.concat([body.select("line", (pl.col("text").str.count_matches(separator, literal=True) + 1).alias("_n")),
                      fields.select(pl.col(f"_{i}").alias(h) for i, h in _wanted(header))], how="horizontal")
    return _rows(name, body, header), header, first["line"]


def _regular_rows(data: bytes) -> tuple[pl.DataFrame, list[str], int] | None:
    """The whole file as one regular block (see `_regular_block`), or None."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    end = data.find(b"\n")
    parsed = _regular_header(data[:end + 1] if end >= 0 else data)
    if parsed is None or (parsed[1] == "," and b'"' in data):
        return None
    header, separator = parsed
    body = _regular_block(data[end + 1:] if end >= 0 else b"", header, separator, 0, 2)
    return None if body is None else (body, header, 1)


def _regular_header(line: bytes) -> tuple[list[str], str] | None:
    """The header names and separator of a first line fit for the fast path (UTF-8, not blank,
    no stray CR; a BOM is dropped), or None."""
    if line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8):]
    try:
        first = line.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        return None
    if not first.strip(" \t") or "\r" in first:
        return None
    separator = "\t" if "\t" in first else ","
    return [h.strip(" ") for h in first.split(separator)], separator


def _regular_block(data: bytes, header: list[str], separator: str, seq: int, line: int) -> pl.DataFrame | None:
    """Whole lines after the header, if regular (see `regular_fields`), with their identity
    columns; `seq` and `line` are the first line's. None sends the file to the line-by-line path."""
    frame = regular_fields(data, len(header), separator)
    columns = trimmed(frame, _wanted(header)) if frame is not None else None
    if frame is None or columns is None:
        return None
    n = frame.height
    return frame.select(pl.int_range(seq, seq + n, dtype=pl.UInt32).alias("seq"),
                        pl.int_range(seq + 1, seq + n + 1, dtype=pl.Int64).alias("record"),
                        pl.int_range(line, line + n, dtype=pl.Int64).alias("line"),
                        pl.lit(1, pl.Int32).alias("item-index"), *columns)


def _wanted(header: list[str]) -> list[tuple[int, str]]:
    seen: set[str] = set()
    wanted = []
    for index, name in enumerate(header):
        if name in SNAPSHOT_COLUMNS and name not in seen:
            seen.add(name)
            wanted.append((index, name))
    return wanted


def _rows(name: str, body: pl.DataFrame, header: list[str]) -> pl.DataFrame:
    """Reject a ragged line by its number; then the identity columns and the known columns."""
    ragged = body.filter(pl.col("_n") != len(header))
    if ragged.height:
        row = ragged.row(0, named=True)
        raise SnapshotError(f"{name} line {row['line']}: the line has {row['_n']} fields but the header has {len(header)}")
    return body.select(*record_columns(body.height, pl.col("line")),
                       *[blank_to_null(pl.col(h)).alias(h) for _, h in _wanted(header)])


def _quoted_csv_rows(text: str, name: str) -> tuple[pl.DataFrame, list[str], int]:
    """CSV with quoting: Python's csv module, so a quoted field may hold commas and newlines
    and every row still knows the line it starts on. Quoted snapshots are the rare case."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 1
    lines, counts, values = [], [], []
    try:
        start = 1
        for row in reader:
            if not any(field.strip(" \t") for field in row):
                start = reader.line_num + 1
                continue
            if header is None:
                header = [h.strip(" ").lstrip("\ufeff") for h in row]
                header_line = start
            else:
                lines.append(start)
                counts.append(len(row))
                values.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SnapshotError(f"{name} line {reader.line_num}: not readable as CSV: {exc}") from None
    assert header is not None  # the caller saw a non-blank line
    columns = {h: [row[i] if i < len(row) else None for row in values] for i, h in _wanted(header)}
    body = pl.DataFrame({"line": lines, "_n": counts, **columns},
                        schema={"line": pl.Int64, "_n": pl.Int64, **{h: pl.String for h in columns}})
    return _rows(name, body, header), header, header_line


def _parquet_rows(data: bytes, name: str) -> tuple[pl.DataFrame, list[str]]:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several types for a damaged file
        raise SnapshotError(f"{name}: not a readable Parquet file: {exc}") from None
    header = frame.columns
    wanted = [h for h in header if h in SNAPSHOT_COLUMNS]
    frame = frame.select(*record_columns(frame.height, pl.int_range(1, frame.height + 1)),
                         *[blank_to_null(pl.col(h).cast(pl.String)) for h in wanted])
    return frame, header


def _reject(name: str, where: str, frame: pl.DataFrame, issues: pl.DataFrame) -> None:
    first = issues.unique("seq", keep="first", maintain_order=True)
    shown = first.head(MAX_LISTED).join(frame.select("seq", "line"), on="seq", how="left")
    problems = [f"{name} {where} {row['line']}: {row['message']}" for row in shown.iter_rows(named=True)]
    more = first.height - len(problems)
    if more > 0:
        problems.append(f"... and {more} more line{'s' if more > 1 else ''} with problems")
    raise SnapshotError("the snapshot breaks its schema; nothing was applied:\n  " + "\n  ".join(problems))


def _check_consistency(name: str, where: str, state: pl.DataFrame) -> None:
    """Rules over several columns or lines that a per-value check cannot see."""
    problems: list[str] = []
    over = state.filter(pl.col("quantity-shipped") + pl.col("quantity-cancelled") > pl.col("quantity-ordered"))
    for row in over.head(MAX_LISTED).iter_rows(named=True):
        problems.append(f"{name} {where} {row['line']}, column quantity-shipped: {row['quantity-shipped']} shipped plus "
                        f"{row['quantity-cancelled']} cancelled is more than the {row['quantity-ordered']} ordered")
    columns = ("order-status", "fulfillment-channel", "currency")
    # Counting 64-bit hashes of rows is several times faster than grouping them; the grouping that
    # names the lines runs only when the hashes show something to name. Equal rows hash equal, so a
    # problem always shows (short of different rows colliding so as to cancel it exactly); a
    # collision alone only costs the grouping, which then finds nothing.
    repeats = state.select(pl.struct(KEY).hash().is_duplicated().any()).item()
    orders = state.select(pl.col("order-id").hash().n_unique()).item()
    agreeing = state.select(pl.struct("order-id", *columns).hash().n_unique()).item()
    repeated = (state.group_by(KEY).agg(pl.col("line").max(), pl.len().alias("_n")).filter(pl.col("_n") > 1)
                .sort("line")) if repeats else state.clear()
    for row in repeated.head(MAX_LISTED).iter_rows(named=True):
        problems.append(f"{name} {where} {row['line']}, column order-item-id: order {row['order-id']} item "
                        f"{row['order-item-id']} appears on more than one line")
    mixed = (state.group_by("order-id").agg(pl.col("line").max(), *[pl.col(c).n_unique() for c in columns])
             .filter(pl.any_horizontal(pl.col(c) > 1 for c in columns)).sort("line")) if orders != agreeing else state.clear()
    for row in mixed.head(MAX_LISTED).iter_rows(named=True):
        column = next(c for c in columns if row[c] > 1)
        problems.append(f"{name} {where} {row['line']}, column {column}: order {row['order-id']} has lines "
                        f"with different {column} values; one order has one {column}")
    if problems:
        raise SnapshotError("the snapshot breaks its schema; nothing was applied:\n  " + "\n  ".join(problems))


def snapshot_frame(state: pl.DataFrame) -> pl.DataFrame:
    """The state as snapshot text columns, in SPEC §3 order."""
    exprs = []
    for field in SNAPSHOT_FIELDS:
        value = pl.col(field.canonical)
        if field.kind is Kind.BOOL:
            value = pl.when(value).then(pl.lit("true")).otherwise(pl.lit("false"))
        exprs.append(value.cast(pl.String).fill_null("").alias(field.name))
    return state.select(exprs)


def write_snapshot(state: pl.DataFrame, path: Path) -> None:
    """Write the state so that `read_snapshot` gives it back (TSV, CSV or Parquet by suffix).

    Lines are sorted by order and item, so the same state always gives the same bytes.
    """
    from orderfeeds.report import atomic_write  # reports own the atomic-write helper

    frame = snapshot_frame(state.sort(KEY))
    buffer = io.BytesIO()
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.write_parquet(buffer)
    else:
        frame.write_csv(buffer, separator="," if suffix == ".csv" else "\t",
                        quote_style="necessary" if suffix == ".csv" else "never")
    atomic_write(path, buffer.getvalue())

"""The bulk form of stored state: order lines and ledger rows as compressed Arrow IPC chunks, bucketed by order."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.feedtypes import Kind
from orderfeeds.snapshot import SNAPSHOT_FIELDS
from orderfeeds.validate import COUNT, MONEY

# Every order's lines and ledger rows live in one of this many buckets. Changing it needs a migration.
# Each chunk costs about a millisecond to encode or decode whatever its size, and a feed rewrites the
# buckets it touches: 256 keeps a 1M-record feed's overhead low without making a small feed rewrite much.
BUCKETS = 256
BUCKET = "_bucket"

LINE_SCHEMA: dict[str, pl.DataType] = {
    f.name: (COUNT if f.kind is Kind.COUNT else pl.Boolean() if f.kind is Kind.BOOL else
             MONEY if f.kind is Kind.MONEY else pl.String())
    for f in SNAPSHOT_FIELDS
}
# The columns of an order line that feeds change (cancelled units, refunded amounts, status, the seller's
# ids) are stored apart from the rest (schema version 3), row for row, so that a commit re-encodes and
# rewrites only these: 13 of the 32 columns, about a tenth of the stored bytes. Changing the split needs
# a migration; a commit that would change a fixed column falls back to rewriting both parts.
STATE_COLUMNS: tuple[str, ...] = ("merchant-order-id", "merchant-order-item-id", "order-status",
                                  "quantity-cancelled", *DELTA_COLUMNS)
FIXED_SCHEMA: dict[str, pl.DataType] = {c: t for c, t in LINE_SCHEMA.items() if c not in STATE_COLUMNS}
STATE_SCHEMA: dict[str, pl.DataType] = {c: LINE_SCHEMA[c] for c in LINE_SCHEMA if c in STATE_COLUMNS}
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "record": pl.Int64(), "item-index": pl.Int32(), "line": pl.Int64(), "order-id": pl.String(),
    "order-item-id": pl.String(), "units-cancelled": COUNT, **{c: MONEY for c in DELTA_COLUMNS},
    "merchant-adjustment-item-id": pl.String(), "fingerprint": pl.String(),
}
# The ledger's NOT NULL columns: a row missing one of them is a bug upstream, never stored.
LEDGER_REQUIRED = ("record", "item-index", "line", "order-id", "order-item-id", "units-cancelled", *DELTA_COLUMNS)


class DamagedChunk(Exception):
    """A stored chunk cannot be decoded: the database is damaged."""


def bucket_of(column: str = "order-id") -> pl.Expr:
    """The bucket of an order id. Buckets are stored, so this must never change with a library
    version: arithmetic on the id's last six characters (base 36), not polars' hash."""
    return (pl.col(column).str.slice(-6).str.to_integer(base=36, strict=False).fill_null(0) % BUCKETS
            ).cast(pl.Int64).alias(BUCKET)


def buckets(order_ids: pl.Series) -> list[int]:
    return order_ids.to_frame("order-id").select(bucket_of().unique().sort()).to_series().to_list()


def encode(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    # lz4: a sixth of the plain size for less than the cost of writing it; zstd is smaller but slower.
    # The stream format: no footer to seek, half the decoding cost of the file format for small chunks.
    frame.write_ipc_stream(out, compression="lz4")
    return out.getvalue()


def decode(blob: bytes, schema: dict[str, pl.DataType], rows: int | None = None) -> pl.DataFrame:
    """A stored chunk, checked to have `schema` (and `rows` rows when given)."""
    try:
        frame = pl.read_ipc_stream(blob)
    except Exception as exc:  # polars and Arrow raise several types for bytes that are not IPC
        raise DamagedChunk(str(exc)) from None
    if frame.schema != pl.Schema(schema):
        raise DamagedChunk("a stored chunk has unexpected columns")
    if rows is not None and frame.height != rows:
        raise DamagedChunk("a stored chunk does not hold the rows it claims")
    return frame


def _map(function, items: list) -> list:
    # polars encodes and decodes without holding the GIL: chunks go two at a time on two cores.
    if len(items) < 8:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(function, items))


def decode_all(blobs: list[bytes], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frames = _map(lambda blob: decode(blob, schema), blobs)
    return pl.concat(frames, how="vertical", rechunk=True) if frames else pl.DataFrame(schema=schema)


def decode_lines(fixed: list[tuple[int, bytes]], state: list[tuple[int, bytes]]) -> pl.DataFrame:
    """Order lines from their two stored parts, (rows, blob) per bucket in the same bucket order:
    every column of LINE_SCHEMA, in its order."""
    jobs = [(blob, FIXED_SCHEMA, rows) for rows, blob in fixed] + [(blob, STATE_SCHEMA, rows) for rows, blob in state]
    frames = _map(lambda job: decode(*job), jobs)
    if not frames:
        return pl.DataFrame(schema=LINE_SCHEMA)
    parts = [pl.concat(frames[:len(fixed)], how="vertical", rechunk=True),
             pl.concat(frames[len(fixed):], how="vertical", rechunk=True)]
    return pl.concat(parts, how="horizontal").select(list(LINE_SCHEMA))


def by_bucket(frame: pl.DataFrame) -> list[tuple[int, pl.DataFrame]]:
    """`frame`'s rows grouped by bucket (ascending), rows in their given order within a bucket."""
    keyed = frame.with_columns(bucket_of())
    # One stable gather by bucket, then zero-copy slices: cheaper than partition_by's copy per part.
    ordered = keyed.sort(BUCKET, maintain_order=True)
    return slices(ordered.drop(BUCKET), ordered.get_column(BUCKET))


def slices(frame: pl.DataFrame, bucket: pl.Series) -> list[tuple[int, pl.DataFrame]]:
    """(bucket, rows) for each run of `bucket`, the bucket of each row of `frame` (grouped already)."""
    parts, start = [], 0
    for rows, value in bucket.rle().struct.unnest().iter_rows():
        parts.append((value, frame.slice(start, rows)))
        start += rows
    return parts


def encode_all(frames: list[pl.DataFrame]) -> list[bytes]:
    return _map(encode, frames)


def split(frame: pl.DataFrame) -> list[tuple[int, int, bytes]]:
    """(bucket, rows, chunk) for each bucket `frame` has rows in, rows in their given order."""
    parts = by_bucket(frame)
    blobs = encode_all([part for _, part in parts])
    return [(bucket, part.height, blob) for (bucket, part), blob in zip(parts, blobs, strict=True)]


def split_lines(frame: pl.DataFrame) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]]]:
    """Order lines as (bucket, rows, chunk) of their fixed part and of their state part, row for row."""
    parts = by_bucket(frame)
    blobs = encode_all([part.select(list(FIXED_SCHEMA)) for _, part in parts]
                       + [part.select(list(STATE_SCHEMA)) for _, part in parts])
    fixed = [(bucket, part.height, blob) for (bucket, part), blob in zip(parts, blobs[:len(parts)], strict=True)]
    state = [(bucket, part.height, blob) for (bucket, part), blob in zip(parts, blobs[len(parts):], strict=True)]
    return fixed, state

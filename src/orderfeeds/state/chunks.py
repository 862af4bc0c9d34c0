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


def decode(blob: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    try:
        frame = pl.read_ipc_stream(blob)
    except Exception as exc:  # polars and Arrow raise several types for bytes that are not IPC
        raise DamagedChunk(str(exc)) from None
    if frame.schema != pl.Schema(schema):
        raise DamagedChunk("a stored chunk has unexpected columns")
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


def split(frame: pl.DataFrame) -> list[tuple[int, int, bytes]]:
    """(bucket, rows, chunk) for each bucket `frame` has rows in, rows in their given order."""
    keyed = frame.with_columns(bucket_of())
    # One stable gather by bucket, then zero-copy slices: cheaper than partition_by's copy per part.
    ordered = keyed.sort(BUCKET, maintain_order=True)
    runs = ordered.group_by(BUCKET, maintain_order=True).len()
    parts, start = [], 0
    for bucket, rows in runs.iter_rows():
        parts.append((bucket, ordered.slice(start, rows).drop(BUCKET)))
        start += rows
    blobs = _map(lambda part: encode(part[1]), parts)
    return [(bucket, part.height, blob) for (bucket, part), blob in zip(parts, blobs, strict=True)]

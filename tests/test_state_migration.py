"""Schema migrations: a state database written by an earlier orderfeeds opens and keeps working."""

from __future__ import annotations

import io
import sqlite3
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.snapshot import SNAPSHOT_COLUMNS, read_snapshot
from orderfeeds.state import FeedEntry, StateError, chunks, open_store
from orderfeeds.state.schema import DELTA_SQL, LINE_COLUMNS, MIGRATIONS, SCHEMA_VERSION

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "orders-snapshot.tsv"
EUR_ORDER = "305-1112223-3334441"
EUR_ITEM = "30000000000002"


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return read_snapshot(SAMPLE)


def version_1_database(path: Path, sample: pl.DataFrame) -> None:
    """What orderfeeds wrote with schema version 1: one SQL row per line and per ledger row,
    money as exact text, booleans as 0/1, after one applied feed that refunded 10.00."""
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    stored = sample.with_columns(
        *[pl.col(c).cast(pl.String) for c, t in sample.schema.items() if isinstance(t, pl.Decimal)],
        *[pl.col(c).cast(pl.Int64) for c, t in sample.schema.items() if t == pl.Boolean])
    db.executemany(f"INSERT INTO order_lines ({', '.join(LINE_COLUMNS)}) VALUES ({', '.join('?' for _ in LINE_COLUMNS)})",
                   stored.select(SNAPSHOT_COLUMNS).rows())
    insert_old_feed(db)
    deltas = {c: "0.00" for c in DELTA_SQL} | {"item_price_refunded": "10.00"}
    db.execute(f"INSERT INTO effects (feed_id, record, item_index, line, order_id, order_item_id, units_cancelled, "
               f"{', '.join(DELTA_SQL)}, merchant_adjustment_item_id, fingerprint) "
               f"VALUES (1, 1, 1, 2, ?, ?, 0, {', '.join('?' for _ in DELTA_SQL)}, 'M-1', 'PriceError|EUR|10.00')",
               (EUR_ORDER, EUR_ITEM, *deltas.values()))
    db.close()


def test_version_1_database_is_migrated_and_keeps_its_state(tmp_path: Path, sample: pl.DataFrame) -> None:
    """Opening a version-1 database moves its lines and ledger into the current layout in one
    transaction: the export, the duplicate-check history and `explain` see exactly what was
    stored before, and new feeds commit on top of it."""
    path = tmp_path / "state.db"
    version_1_database(path, sample)
    store = open_store(f"sqlite:///{path}")
    try:
        assert_frame_equal(store.export_lines(), sample.select(SNAPSHOT_COLUMNS))
        assert_old_refund(store)
        commit_new_refund(store)
        after = store.export_lines().filter(pl.col("order-id") == EUR_ORDER)
        assert after.get_column("item-price-refunded").to_list() == [Decimal("20.00")]
        assert store.order_effects(EUR_ORDER).get_column("feed").to_list() == ["old.txt", "new.txt"]
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        tables = current_tables(db)
        assert not {"order_lines_v1", "effects_v1"} & tables
    finally:
        db.close()


def _v2_chunk(frame: pl.DataFrame) -> bytes:
    """A chunk as schema version 2 stored it: an lz4-compressed Arrow IPC stream."""
    out = io.BytesIO()
    frame.write_ipc_stream(out, compression="lz4")
    return out.getvalue()


def version_2_database(path: Path, sample: pl.DataFrame) -> None:
    """What orderfeeds wrote with schema version 2: each bucket's lines as one chunk of every
    column, and one ledger chunk per feed and bucket, after one applied feed that refunded 10.00
    (the line's refunded amount already holds it)."""
    db = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            statement(db) if callable(statement) else db.execute(statement)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    lines = (sample.select(SNAPSHOT_COLUMNS).with_columns(
        pl.when((pl.col("order-id") == EUR_ORDER) & (pl.col("order-item-id") == EUR_ITEM))
        .then(pl.col("item-price-refunded") + Decimal("10.00")).otherwise(pl.col("item-price-refunded"))
        .cast(sample.schema["item-price-refunded"]).alias("item-price-refunded"))
        .with_columns(chunks.bucket_of()))
    for (bucket,), part in lines.partition_by(chunks.BUCKET, as_dict=True, maintain_order=True,
                                              include_key=False).items():
        db.execute("INSERT INTO order_lines (bucket, lines, data) VALUES (?, ?, ?)", (bucket, part.height, _v2_chunk(part)))
    insert_old_feed(db)
    effect = pl.DataFrame({"record": [1], "item-index": [1], "line": [2], "order-id": [EUR_ORDER],
                           "order-item-id": [EUR_ITEM], "units-cancelled": [0],
                           **{c: [Decimal("10.00") if c == "item-price-refunded" else Decimal("0.00")]
                              for c in DELTA_COLUMNS},
                           "merchant-adjustment-item-id": ["M-1"], "fingerprint": ["PriceError|EUR|10.00"]},
                          schema=chunks.LEDGER_SCHEMA)
    db.execute("INSERT INTO effects (feed_id, bucket, rows, data) VALUES (1, ?, 1, ?)",
               (chunks.buckets(pl.Series([EUR_ORDER]))[0], _v2_chunk(effect)))
    db.close()


def test_version_2_database_is_migrated_and_keeps_its_state(tmp_path: Path, sample: pl.DataFrame) -> None:
    """Opening a version-2 database splits each bucket's lines into the columns feeds never change
    and the ones they do; the export, history and `explain` are what they were, and new feeds
    commit on top."""
    path = tmp_path / "state.db"
    version_2_database(path, sample)
    expected = sample.select(SNAPSHOT_COLUMNS).with_columns(
        pl.when(pl.col("order-id") == EUR_ORDER).then(pl.col("item-price-refunded") + Decimal("10.00"))
        .otherwise(pl.col("item-price-refunded")).cast(sample.schema["item-price-refunded"]))
    store = open_store(f"sqlite:///{path}")
    try:
        assert_frame_equal(store.export_lines(), expected)
        assert_old_refund(store)
        commit_new_refund(store)
        assert_frame_equal(store.export_lines(), expected.with_columns(
            pl.when(pl.col("order-id") == EUR_ORDER).then(Decimal("20.00")).otherwise(pl.col("item-price-refunded"))
            .cast(sample.schema["item-price-refunded"]).alias("item-price-refunded")))
        assert store.order_effects(EUR_ORDER).get_column("feed").to_list() == ["old.txt", "new.txt"]
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        tables = current_tables(db)
        assert "order_lines_v2" not in tables
        fixed = db.execute("SELECT count(*), sum(lines) FROM order_lines").fetchone()
        state = db.execute("SELECT count(*), sum(lines) FROM order_line_state").fetchone()
        assert fixed == state and fixed[1] == sample.height
    finally:
        db.close()


def test_a_damaged_version_2_chunk_is_refused_and_left_alone(tmp_path: Path, sample: pl.DataFrame) -> None:
    """A version-2 chunk that cannot be read stops the migration with a StateError saying the
    database is damaged; nothing is migrated half way."""
    path = tmp_path / "state.db"
    version_2_database(path, sample)
    db = sqlite3.connect(path)
    db.execute("UPDATE order_lines SET data = ? WHERE bucket = (SELECT min(bucket) FROM order_lines)", (b"junk",))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="damaged"):
        open_store(f"sqlite:///{path}")
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        assert "order_line_state" not in {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()


def assert_old_refund(store) -> None:
    """The migrated ledger still has the old feed's one refund, for step 11 and for `explain`."""
    history = store.load_history(pl.Series([EUR_ORDER]))
    assert history.select("order-id", "order-item-id", "merchant-adjustment-item-id", "fingerprint", "feed",
                          "record").rows() == [(EUR_ORDER, EUR_ITEM, "M-1", "PriceError|EUR|10.00", "old.txt", 1)]
    effects = store.order_effects(EUR_ORDER)
    assert effects.height == 1 and effects.item(0, "item_price_refunded") == "10.00"
    assert effects.item(0, "feed") == "old.txt"


def commit_new_refund(store) -> None:
    """Commit a feed new.txt that raises the EUR line's item-price-refunded to 20.00."""
    lines = store.load_lines(pl.Series([EUR_ORDER]), pl.Series([], dtype=pl.String))
    changed = lines.with_columns(pl.lit(Decimal("20.00")).cast(pl.Decimal(38, 2)).alias("item-price-refunded"))
    ledger = pl.DataFrame({"record": [1], "item-index": [1], "line": [2], "order-id": [EUR_ORDER],
                           "order-item-id": [EUR_ITEM], "units-cancelled": [0],
                           **{c: [Decimal("0.00")] for c in DELTA_COLUMNS}}).with_columns(
        pl.lit(None, pl.String).alias("merchant-adjustment-item-id"), pl.lit("x").alias("fingerprint"))
    store.commit_feed(FeedEntry(id=0, name="new.txt", claim="c-new", sha256="b", feed_type=None, outcome="applied",
                                records=1, successful=1, warnings=0, errors=0, report_stem="new", as_of="x",
                                committed_at="", seconds=0.1), changed, ledger, pl.DataFrame(), {})


def insert_old_feed(db: sqlite3.Connection) -> None:
    """The registry row of the one feed (old.txt) an old database had applied."""
    db.execute("INSERT INTO feeds (id, name, claim, sha256, applied_sha256, feed_type, outcome, records, successful, "
               "warnings, errors, report_stem, as_of, committed_at, seconds) VALUES "
               "(1, 'old.txt', 'c-old', 'a', 'a', 'POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA', 'applied', 1, 1, 0, 0, "
               "'old', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00', 0.1)")


def current_tables(db: sqlite3.Connection) -> set[str]:
    """The tables of a migrated database, after checking it says it is at the current schema version."""
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

"""The persistent state store (DESIGN §6), used directly: snapshot import/export, the feed
registry, the effects ledger, one transaction per feed, and the bad databases `run` must
survive with a clear message (a locked, corrupt or newer-schema database).

The store is what makes `run` exactly-once: everything a feed changes commits together or
not at all, and the registry's unique applied hash makes a second application impossible.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orderfeeds.apply.state import DELTA_COLUMNS, MUTABLE_COLUMNS
from orderfeeds.snapshot import KEY, SNAPSHOT_COLUMNS, read_snapshot, write_snapshot
from orderfeeds.state import FeedEntry, StateError, chunks, open_store
from orderfeeds.state.schema import SCHEMA_VERSION

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "orders-snapshot.tsv"
AS_OF = "2026-11-28T06:00:00+00:00"

ORDER = "111-2223334-4445558"  # Unshipped MFN, one line of 2 units
ITEM = "20000000000010"
EUR_ORDER = "305-1112223-3334441"  # Shipped EUR line, 100.00 charged
EUR_ITEM = "30000000000002"

LEDGER_SCHEMA = {
    "record": pl.Int64, "item-index": pl.Int32, "line": pl.Int64, "order-id": pl.String,
    "order-item-id": pl.String, "units-cancelled": pl.Int64, **{c: pl.Decimal(38, 2) for c in DELTA_COLUMNS},
    "merchant-adjustment-item-id": pl.String, "fingerprint": pl.String,
}


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    """The typed order state of samples/orders-snapshot.tsv (13 lines, sorted by order and item)."""
    return read_snapshot(SAMPLE)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's state database lives."""
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path, sample: pl.DataFrame):
    """A fresh SQLite store holding the sample snapshot; closed after the test."""
    opened = open_store(f"sqlite:///{db_path}")
    opened.import_snapshot(sample, SAMPLE.name, "0" * 64)
    yield opened
    opened.close()


def snapshot_bytes(frame: pl.DataFrame, folder: Path, name: str = "export.tsv") -> bytes:
    """The bytes `snapshot export` writes for `frame` (write_snapshot into `folder`)."""
    path = folder / name
    write_snapshot(frame, path)
    return path.read_bytes()


def entry(claim: str, sha256: str, outcome: str = "applied", name: str = "feed.txt") -> FeedEntry:
    """A registry row as the runner builds it before committing (id and committed_at are set by the store)."""
    return FeedEntry(id=0, name=name, claim=claim, sha256=sha256, feed_type="POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA",
                     outcome=outcome, records=1, successful=1, warnings=0, errors=0,
                     report_stem=Path(name).stem, as_of=AS_OF, committed_at="", seconds=0.01)


def ledger(*rows: dict) -> pl.DataFrame:
    """Ledger rows (one per applied record): every delta column 0 unless given."""
    full = []
    for row in rows:
        values = {c: None for c in LEDGER_SCHEMA}
        values.update({"item-index": 1, "units-cancelled": 0, **{c: Decimal("0.00") for c in DELTA_COLUMNS}})
        values.update(row)
        full.append(values)
    return pl.DataFrame(full, schema=LEDGER_SCHEMA)


def refunded_line(sample: pl.DataFrame, amount: str) -> pl.DataFrame:
    """The EUR order's line after a refund of `amount` on item-price (what `apply` would hand the store)."""
    return sample.filter(pl.col("order-id") == EUR_ORDER).with_columns(
        (pl.col("item-price-refunded") + pl.lit(Decimal(amount)).cast(pl.Decimal(38, 2)))
        .cast(sample.schema["item-price-refunded"]).alias("item-price-refunded"))


def refund_ledger(amount: str, record: int = 1) -> pl.DataFrame:
    """The ledger row of that refund, with the fingerprint later possible-duplicate checks compare."""
    return ledger({"record": record, "line": record + 1, "order-id": EUR_ORDER, "order-item-id": EUR_ITEM,
                   "item-price-refunded": Decimal(amount), "fingerprint": f"PriceError|EUR|{amount}"})


def registry_counts(db_path: Path) -> dict[str, int]:
    """Rows per table, read with a separate connection (what a crash would leave on disk)."""
    db = sqlite3.connect(db_path)
    try:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("feeds", "effects", "feed_reports", "order_lines", "merchant_ids")}
    finally:
        db.close()


# ---------------------------------------------------------------- snapshot import / export


def test_import_then_export_gives_back_the_snapshot(store, sample: pl.DataFrame) -> None:
    """Importing the sample snapshot and exporting it gives the same typed lines, in order."""
    exported = store.export_lines()
    assert exported.columns == list(SNAPSHOT_COLUMNS)
    assert_frame_equal(exported, sample.select(SNAPSHOT_COLUMNS))


def test_export_then_import_changes_nothing(store, tmp_path: Path) -> None:
    """An exported snapshot is a valid snapshot file, and importing it changes nothing:
    the next export is byte-identical (DESIGN §6)."""
    first = snapshot_bytes(store.export_lines(), tmp_path, "first.tsv")
    reread = read_snapshot(tmp_path / "first.tsv")
    assert store.import_snapshot(reread, "first.tsv", "1" * 64) == 13
    second = snapshot_bytes(store.export_lines(), tmp_path, "second.tsv")
    assert second == first


def test_export_after_changes_round_trips_refunded_and_cancelled(store, sample: pl.DataFrame, tmp_path: Path) -> None:
    """The export carries refunded amounts and cancelled units, so export → import → export
    loses nothing after feeds have changed the state."""
    changed = refunded_line(sample, "10.00")
    store.commit_feed(entry("c1", "a" * 64), changed, refund_ledger("10.00"), pl.DataFrame(), {"feed.report.tsv": b"x"})
    first = snapshot_bytes(store.export_lines(), tmp_path, "first.tsv")
    assert b"\t10.00\t" in first.split(EUR_ORDER.encode())[1].split(b"\n")[0]
    store.import_snapshot(read_snapshot(tmp_path / "first.tsv"), "first.tsv", "2" * 64)
    assert snapshot_bytes(store.export_lines(), tmp_path, "second.tsv") == first


def test_export_is_deterministic_whatever_the_import_order(db_path: Path, sample: pl.DataFrame, tmp_path: Path) -> None:
    """Export is sorted by order and item: the same state imported in reverse order exports the
    same bytes, and two exports of one state are byte-identical."""
    one = open_store(f"sqlite:///{db_path}")
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        one.import_snapshot(sample, "sample.tsv", "0" * 64)
        other.import_snapshot(sample.reverse(), "reversed.tsv", "0" * 64)
        assert other.export_lines().select(KEY).rows() == sorted(sample.select(KEY).rows())
        a = snapshot_bytes(one.export_lines(), tmp_path, "a.tsv")
        b = snapshot_bytes(one.export_lines(), tmp_path, "b.tsv")
        c = snapshot_bytes(other.export_lines(), tmp_path, "c.tsv")
    finally:
        one.close()
        other.close()
    assert a == b == c


def test_import_replaces_the_lines_and_keeps_the_ledger(store, sample: pl.DataFrame) -> None:
    """A second import replaces every order line (no leftovers from the first) but keeps the
    effects ledger, so duplicate checks still see what was applied before."""
    store.commit_feed(entry("c1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"), pl.DataFrame(), {})
    smaller = sample.filter(pl.col("order-id") == EUR_ORDER)
    assert store.import_snapshot(smaller, "small.tsv", "3" * 64) == 1
    assert store.export_lines().select(KEY).rows() == [(EUR_ORDER, EUR_ITEM)]
    history = store.load_history(pl.Series([EUR_ORDER]))
    assert history.get_column("fingerprint").to_list() == ["PriceError|EUR|10.00"]


def test_state_survives_closing_and_reopening(db_path: Path, sample: pl.DataFrame) -> None:
    """Everything committed is on disk: a new store on the same file sees the lines, the
    registry and the stored reports."""
    first = open_store(f"sqlite:///{db_path}")
    first.import_snapshot(sample, "sample.tsv", "0" * 64)
    committed = first.commit_feed(entry("c1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"),
                                  pl.DataFrame(), {"feed.report.tsv": b"report bytes"})
    before = first.export_lines()
    first.close()
    again = open_store(f"sqlite:///{db_path}")
    try:
        assert_frame_equal(again.export_lines(), before)
        assert [e.claim for e in again.feeds()] == ["c1"]
        assert again.reports_of(committed.id) == {"feed.report.tsv": b"report bytes"}
    finally:
        again.close()


def test_load_lines_fetches_only_the_orders_named(store) -> None:
    """`load_lines` returns the lines of the orders asked for, by order id or by the seller's
    merchant-order-id, and nothing else."""
    lines = store.load_lines(pl.Series(["111-2223334-4445554"]), pl.Series(["DE-1002"]))
    assert sorted(lines.select(KEY).rows()) == [
        ("111-2223334-4445554", "20000000000005"), ("111-2223334-4445554", "20000000000006"),
        (EUR_ORDER, EUR_ITEM)]


# ---------------------------------------------------------------- one transaction per feed


def test_commit_feed_stores_lines_ledger_registry_and_reports(store, sample: pl.DataFrame) -> None:
    """A committed feed: its changed lines replace the old ones, the ledger has its effects
    (visible to later duplicate checks and to `explain`), the registry knows it by claim and by
    hash, and its reports are kept for re-rendering after a crash."""
    committed = store.commit_feed(entry("claim-1", "a" * 64), refunded_line(sample, "10.00"),
                                  refund_ledger("10.00"), pl.DataFrame(), {"feed.report.tsv": b"r", "feed.summary.json": b"{}"})
    assert committed.id > 0 and committed.committed_at
    assert store.claimed("claim-1") == committed
    assert store.applied_feed("a" * 64) == committed
    assert store.reports_of(committed.id) == {"feed.report.tsv": b"r", "feed.summary.json": b"{}"}
    line = store.export_lines().filter(pl.col("order-id") == EUR_ORDER).row(0, named=True)
    assert line["item-price-refunded"] == Decimal("10.00")
    untouched = store.export_lines().filter(pl.col("order-id") != EUR_ORDER)
    assert_frame_equal(untouched, sample.filter(pl.col("order-id") != EUR_ORDER).select(SNAPSHOT_COLUMNS))
    history = store.load_history(pl.Series([EUR_ORDER]))
    assert history.select("order-id", "order-item-id", "feed", "record").rows() == [(EUR_ORDER, EUR_ITEM, "feed.txt", 1)]
    effects = store.order_effects(EUR_ORDER)
    assert effects.height == 1 and effects.item(0, "item_price_refunded") == "10.00"


def test_rejected_or_duplicate_feed_does_not_claim_its_hash(store) -> None:
    """Only an applied feed blocks its bytes: a rejected or duplicate-feed registry row is
    findable by claim but `applied_feed` does not return it."""
    empty_lines = pl.DataFrame(schema={c: pl.String for c in SNAPSHOT_COLUMNS})
    store.commit_feed(entry("claim-r", "b" * 64, outcome="rejected"), empty_lines, ledger(), pl.DataFrame(), {})
    store.commit_feed(entry("claim-d", "b" * 64, outcome="duplicate"), empty_lines, ledger(), pl.DataFrame(), {})
    assert store.applied_feed("b" * 64) is None
    assert store.claimed("claim-r").outcome == "rejected"
    assert [e.claim for e in store.feeds()] == ["claim-d", "claim-r"]  # newest first


def test_commit_feed_failing_half_way_changes_nothing(store, sample: pl.DataFrame, tmp_path: Path, db_path: Path) -> None:
    """All or nothing: a commit that fails after the registry row and the new lines were
    written (here a ledger row without an order id breaks a NOT NULL constraint) leaves no
    registry row, no line change, no ledger row and no report behind."""
    before = snapshot_bytes(store.export_lines(), tmp_path, "before.tsv")
    counts = registry_counts(db_path)
    broken = ledger({"record": 1, "line": 2, "order-id": None, "order-item-id": EUR_ITEM,
                     "item-price-refunded": Decimal("10.00"), "fingerprint": "x"})
    with pytest.raises(ValueError, match="ledger rows without order-id: nothing was committed"):
        store.commit_feed(entry("claim-1", "a" * 64), refunded_line(sample, "10.00"), broken, pl.DataFrame(),
                          {"feed.report.tsv": b"r"})
    assert snapshot_bytes(store.export_lines(), tmp_path, "after.tsv") == before
    assert registry_counts(db_path) == counts
    assert store.claimed("claim-1") is None and store.applied_feed("a" * 64) is None
    # the store is still usable: the same feed commits cleanly afterwards
    store.commit_feed(entry("claim-1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"),
                      pl.DataFrame(), {"feed.report.tsv": b"r"})
    assert store.applied_feed("a" * 64) is not None


def test_the_same_bytes_cannot_be_applied_twice(store, sample: pl.DataFrame, tmp_path: Path, db_path: Path) -> None:
    """The registry's unique applied hash: committing a second application of the same file
    (another claim, another name) fails as a whole and leaves the first application alone."""
    store.commit_feed(entry("claim-1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"),
                      pl.DataFrame(), {"feed.report.tsv": b"r"})
    after_first = snapshot_bytes(store.export_lines(), tmp_path, "first.tsv")
    counts = registry_counts(db_path)
    with pytest.raises(StateError, match="refused the change .*UNIQUE.*; nothing was committed"):
        store.commit_feed(entry("claim-2", "a" * 64, name="renamed.txt"), refunded_line(sample, "20.00"),
                          refund_ledger("10.00"), pl.DataFrame(), {"renamed.report.tsv": b"r"})
    assert snapshot_bytes(store.export_lines(), tmp_path, "second.tsv") == after_first
    assert registry_counts(db_path) == counts
    assert store.claimed("claim-2") is None


# ---------------------------------------------------------------- bad databases


def test_unsupported_state_url_is_a_state_error(tmp_path: Path) -> None:
    """A URL the store cannot serve is a StateError that says which URLs work."""
    with pytest.raises(StateError, match="sqlite:///"):
        open_store("mysql://localhost/orders")


def test_newer_schema_version_is_refused(db_path: Path, sample: pl.DataFrame) -> None:
    """A database written by a newer orderfeeds (higher schema version) is refused with a
    message naming both versions and the fix, and is left untouched."""
    open_store(f"sqlite:///{db_path}").close()
    db = sqlite3.connect(db_path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = db_path.read_bytes()
    with pytest.raises(StateError) as caught:
        open_store(f"sqlite:///{db_path}")
    message = str(caught.value)
    assert str(SCHEMA_VERSION + 1) in message and "newer" in message and "upgrade" in message
    assert str(db_path) in message
    assert caught.value.exit_code not in (0, 75)
    assert db_path.read_bytes() == before


def test_file_that_is_not_a_database_is_refused_clearly(db_path: Path) -> None:
    """A state file that is not SQLite at all (garbage bytes) is a StateError naming the file and
    saying it is damaged, not a sqlite3 exception; the file is left as it was."""
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not a database, it is a shopping list\n" * 200
    db_path.write_bytes(garbage)
    with pytest.raises(StateError) as caught:
        open_store(f"sqlite:///{db_path}")
    assert str(db_path) in str(caught.value)
    assert "damaged" in str(caught.value) or "not a database" in str(caught.value)
    assert db_path.read_bytes() == garbage


def test_damaged_database_is_a_state_error(store, db_path: Path, damage_table) -> None:
    """A database whose header is fine but whose order table is damaged is refused with a
    StateError (a clear message naming the file), not a raw sqlite3 exception."""
    store.close()
    damage_table(db_path, "order_lines")
    reopened = open_store(f"sqlite:///{db_path}")  # the header is intact: opening may succeed
    try:
        with pytest.raises(StateError) as caught:
            reopened.export_lines()
    finally:
        reopened.close()
    assert str(db_path) in str(caught.value)


def test_locked_database_is_a_retryable_state_error(store, db_path: Path, sample: pl.DataFrame, tmp_path: Path) -> None:
    """While another program holds a write transaction, a write is a StateError with exit code
    75 ("try again later") and a message saying the database is locked; nothing is changed,
    and once the other program is done the same write succeeds. (Waits out the 5 s busy timeout.)"""
    before = snapshot_bytes(store.export_lines(), tmp_path, "before.tsv")
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateError) as caught:
            store.import_snapshot(sample.head(1), "one-line.tsv", "4" * 64)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert caught.value.exit_code == 75
    assert "locked" in str(caught.value) and str(db_path) in str(caught.value)
    assert snapshot_bytes(store.export_lines(), tmp_path, "after.tsv") == before
    store.commit_feed(entry("claim-1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"),
                      pl.DataFrame(), {})
    assert store.applied_feed("a" * 64) is not None


# ---------------------------------------------------------------- the stored layout (schema version 3)


def stored_chunks(db_path: Path, table: str) -> dict[int, bytes]:
    """bucket → chunk of one of the two line tables, read with a separate connection."""
    db = sqlite3.connect(db_path)
    try:
        return {bucket: bytes(data) for bucket, data in db.execute(f"SELECT bucket, data FROM {table}")}
    finally:
        db.close()


def test_a_feed_rewrites_only_the_changing_columns(store, sample: pl.DataFrame, db_path: Path) -> None:
    """A commit that changes amounts, units or status of existing lines rewrites only the state
    chunk of their bucket: the chunk of the columns no feed changes is left byte for byte."""
    fixed_before = stored_chunks(db_path, "order_lines")
    state_before = stored_chunks(db_path, "order_line_state")
    lines = store.load_lines(pl.Series([EUR_ORDER]), pl.Series([], dtype=pl.String))
    changed = lines.with_columns(pl.lit("Canceled").alias("order-status"),
                                 pl.lit(1, pl.Int64).alias("quantity-cancelled"),
                                 pl.lit(Decimal("10.00")).cast(pl.Decimal(38, 2)).alias("item-price-refunded"))
    store.commit_feed(entry("c1", "a" * 64), changed, refund_ledger("10.00"), pl.DataFrame(), {})
    assert stored_chunks(db_path, "order_lines") == fixed_before
    state_after = stored_chunks(db_path, "order_line_state")
    assert [b for b in state_after if state_after[b] != state_before[b]] == chunks.buckets(pl.Series([EUR_ORDER]))
    exported = store.export_lines()
    assert_frame_equal(exported.filter(pl.col("order-id") == EUR_ORDER), changed.select(SNAPSHOT_COLUMNS))
    assert_frame_equal(exported.filter(pl.col("order-id") != EUR_ORDER),
                       sample.filter(pl.col("order-id") != EUR_ORDER).select(SNAPSHOT_COLUMNS))


@pytest.mark.parametrize("loaded_first", [True, False], ids=["after-load", "without-load"])
def test_lines_in_any_order_are_put_back_in_place(store, sample: pl.DataFrame, loaded_first: bool) -> None:
    """The changed lines may come in any order and with or without a load_lines before the commit:
    each lands on its own line."""
    if loaded_first:
        store.load_lines(sample.get_column("order-id"), pl.Series([], dtype=pl.String))
    changed = sample.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("quantity-cancelled"),
                                  pl.concat_str(pl.col("order-item-id"), pl.lit("-M")).alias("merchant-order-item-id"))
    store.commit_feed(entry("c1", "a" * 64), changed.reverse(), ledger(), pl.DataFrame(), {})
    assert_frame_equal(store.export_lines(), changed.select(SNAPSHOT_COLUMNS))


def test_a_changed_fixed_column_or_a_new_line_is_still_stored(store, sample: pl.DataFrame) -> None:
    """Nothing in `run` changes the columns kept apart from the state today, nor adds or drops a
    line; if something ever does, the commit rewrites both chunks and nothing is lost."""
    lines = store.load_lines(pl.Series([EUR_ORDER, ORDER]), pl.Series([], dtype=pl.String))
    flagged = lines.with_columns(pl.lit(True).alias("shipping-label-purchased"))
    added = flagged.filter(pl.col("order-id") == ORDER).with_columns(pl.lit("29999999999999").alias("order-item-id"))
    changed = pl.concat([flagged, added])
    store.commit_feed(entry("c1", "a" * 64), changed, ledger(), pl.DataFrame(), {})
    untouched = sample.filter(~pl.col("order-id").is_in([EUR_ORDER, ORDER]))
    assert_frame_equal(store.export_lines(), pl.concat([untouched, changed]).select(SNAPSHOT_COLUMNS)
                       .sort("order-id", "order-item-id"))
    # and an order that loses a line keeps only the lines given
    store.commit_feed(entry("c2", "b" * 64), added, ledger(), pl.DataFrame(), {})
    assert store.export_lines().filter(pl.col("order-id") == ORDER).get_column("order-item-id").to_list() == [
        "29999999999999"]


def test_a_failed_commit_after_load_does_not_leave_stale_lines(store, sample: pl.DataFrame) -> None:
    """What load_lines keeps for the commit is dropped when the commit fails: the next commit
    starts from what is stored, not from a half-applied copy."""
    store.commit_feed(entry("c1", "a" * 64), refunded_line(sample, "10.00"), refund_ledger("10.00"), pl.DataFrame(), {})
    store.load_lines(pl.Series([EUR_ORDER]), pl.Series([], dtype=pl.String))
    with pytest.raises(StateError):  # the same bytes again: the registry refuses it inside the transaction
        store.commit_feed(entry("c2", "a" * 64), refunded_line(sample, "30.00"), refund_ledger("20.00", 2),
                          pl.DataFrame(), {})
    line = store.load_lines(pl.Series([EUR_ORDER]), pl.Series([], dtype=pl.String))
    assert line.get_column("item-price-refunded").to_list() == [Decimal("10.00")]
    store.commit_feed(entry("c3", "c" * 64), refunded_line(sample, "15.00"), refund_ledger("5.00", 2),
                      pl.DataFrame(), {})
    assert store.export_lines().filter(pl.col("order-id") == EUR_ORDER).get_column("item-price-refunded").to_list() == [
        Decimal("15.00")]


@pytest.mark.parametrize("table", ["order_lines", "order_line_state"])
@pytest.mark.parametrize("damage", ["junk", "other-rows"])
def test_a_damaged_chunk_is_a_state_error(store, db_path: Path, table: str, damage: str) -> None:
    """A chunk that is not Arrow, or whose row count no longer matches its other half, is a
    StateError saying the database is damaged, for export and for a feed's load alike."""
    db = sqlite3.connect(db_path)
    bucket = chunks.buckets(pl.Series([EUR_ORDER]))[0]
    if damage == "junk":
        db.execute(f"UPDATE {table} SET data = ? WHERE bucket = ?", (b"\x00junk" * 40, bucket))
    else:
        db.execute(f"UPDATE {table} SET lines = lines + 1 WHERE bucket = ?", (bucket,))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="damaged"):
        store.export_lines()
    with pytest.raises(StateError, match="damaged"):
        store.load_lines(pl.Series([EUR_ORDER]), pl.Series([], dtype=pl.String))


def test_the_stored_state_columns_are_the_ones_apply_changes() -> None:
    """Every column apply may change is in the state part: otherwise every commit would take the
    slow path that rewrites both parts (correct, but the layout would have missed its point)."""
    assert set(MUTABLE_COLUMNS) <= set(chunks.STATE_COLUMNS)
    assert set(chunks.STATE_COLUMNS) | set(chunks.FIXED_SCHEMA) == set(SNAPSHOT_COLUMNS)


def test_pieces_of_one_feed_decode_each_bucket_once(store, sample: pl.DataFrame, monkeypatch) -> None:
    """A feed applied in pieces loads lines once per piece: a bucket decoded for one piece is taken
    as it is by the next piece and by the commit, which still stores exactly the lines given."""
    decoded: list[int] = []
    real = chunks.decode_lines
    monkeypatch.setattr(chunks, "decode_lines", lambda fixed, state: decoded.append(len(fixed)) or real(fixed, state))
    no_ids = pl.Series([], dtype=pl.String)
    first = store.load_lines(pl.Series([EUR_ORDER]), no_ids)
    second = store.load_lines(pl.Series([EUR_ORDER, ORDER]), no_ids)
    assert decoded == [1, 1]  # the two orders are in two buckets: the second piece reads only ORDER's
    assert_frame_equal(second.filter(pl.col("order-id") == EUR_ORDER), first)
    changed = second.with_columns(pl.lit(Decimal("1.00")).cast(pl.Decimal(38, 2)).alias("other-adjustments-net"))
    store.commit_feed(entry("c1", "a" * 64), changed.reverse(), ledger(), pl.DataFrame(), {})
    assert decoded == [1, 1]
    untouched = sample.filter(~pl.col("order-id").is_in([EUR_ORDER, ORDER]))
    assert_frame_equal(store.export_lines(), pl.concat([untouched, changed]).select(SNAPSHOT_COLUMNS)
                       .sort("order-id", "order-item-id"))


def test_lines_written_by_another_program_since_the_load_are_kept(db_path: Path, sample: pl.DataFrame) -> None:
    """Lines decoded for a feed are not trusted once another connection has committed: the commit
    reads its buckets again, so a change to another order of the same bucket is not undone."""
    bucket = chunks.buckets(pl.Series([EUR_ORDER]))[0]
    twin_id = next(o for o in (f"305-1112223-33{n:05d}" for n in range(100000))
                   if o != EUR_ORDER and chunks.buckets(pl.Series([o])) == [bucket])
    twin = sample.filter(pl.col("order-id") == EUR_ORDER).with_columns(pl.lit(twin_id).alias("order-id"))
    one = open_store(f"sqlite:///{db_path}")
    other = open_store(f"sqlite:///{db_path}")
    try:
        one.import_snapshot(pl.concat([sample, twin]), "sample.tsv", "0" * 64)
        no_ids = pl.Series([], dtype=pl.String)
        loaded = one.load_lines(pl.Series([EUR_ORDER, twin_id]), no_ids)
        twin_changed = other.load_lines(pl.Series([twin_id]), no_ids).with_columns(
            pl.lit("Canceled").alias("order-status"))
        other.commit_feed(entry("c-other", "b" * 64), twin_changed, ledger(), pl.DataFrame(), {})
        mine = loaded.filter(pl.col("order-id") == EUR_ORDER).with_columns(pl.lit("Canceled").alias("order-status"))
        one.commit_feed(entry("c-one", "a" * 64), mine, ledger(), pl.DataFrame(), {})
        statuses = dict(one.export_lines().filter(pl.col("order-id").is_in([EUR_ORDER, twin_id]))
                        .select("order-id", "order-status").rows())
    finally:
        one.close()
        other.close()
    assert statuses == {EUR_ORDER: "Canceled", twin_id: "Canceled"}


def test_positions_of_lines_in_any_order() -> None:
    """The stored row of each changed line: taken as is when the lines come in stored order, found by
    key otherwise; null for a line that is not stored."""
    from orderfeeds.state.store import _positions

    stored = pl.DataFrame({"order-id": ["a", "a", "b", "c"], "order-item-id": ["1", "2", "1", "1"]})
    rows = pl.Series([4, 5, 7, 9], dtype=pl.UInt32)
    assert _positions(stored, stored, rows).to_list() == [4, 5, 7, 9]
    shuffled = pl.DataFrame({"order-id": ["c", "a", "x", "a"], "order-item-id": ["1", "2", "1", "1"]})
    assert _positions(shuffled, stored, rows).to_list() == [9, 5, None, 4]

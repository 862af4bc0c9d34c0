"""The state store: order lines, the effects ledger, the feed registry and merchant ids."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from orderfeeds.apply.adjustment import HISTORY_SCHEMA
from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.errors import OrderfeedsError
from orderfeeds.state import chunks
from orderfeeds.state.chunks import LEDGER_SCHEMA, LINE_SCHEMA, DamagedChunk
from orderfeeds.state.schema import MIGRATIONS, SCHEMA_VERSION, sql_name

DEFAULT_URL = "sqlite:///feeds/state.db"


class StateError(OrderfeedsError):
    """The state store cannot be used; `exit_code` 75 means "try again later"."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class FeedEntry:
    """One row of the feed registry."""

    id: int
    name: str
    claim: str
    sha256: str
    feed_type: str | None
    outcome: str  # applied | rejected | duplicate
    records: int
    successful: int
    warnings: int
    errors: int
    report_stem: str
    as_of: str
    committed_at: str
    seconds: float


class StateStore(Protocol):
    """What `run` needs from a state database; SQLite now, PostgreSQL next, same SQL."""

    def import_snapshot(self, lines: pl.DataFrame, file_name: str, sha256: str) -> int: ...
    def export_lines(self) -> pl.DataFrame: ...
    def load_lines(self, order_ids: pl.Series, merchant_order_ids: pl.Series) -> pl.DataFrame: ...
    def load_history(self, order_ids: pl.Series) -> pl.DataFrame: ...
    def applied_feed(self, sha256: str) -> FeedEntry | None: ...
    def claimed(self, claim: str) -> FeedEntry | None: ...
    def report_stem_taken(self, stem: str) -> bool: ...
    def commit_feed(self, entry: FeedEntry, lines: pl.DataFrame, ledger: pl.DataFrame,
                    merchant_ids: pl.DataFrame, reports: dict[str, bytes]) -> FeedEntry: ...
    def reports_of(self, feed_id: int) -> dict[str, bytes]: ...
    def feeds(self) -> list[FeedEntry]: ...
    def order_effects(self, order_id: str) -> pl.DataFrame: ...
    def close(self) -> None: ...


def open_store(url: str, root: Path | None = None, must_exist: bool = False) -> StateStore:
    """The store a URL names: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`.

    `must_exist` is for commands that only read: they must not create an empty state.
    """
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if root is not None and not path.is_absolute() and url == DEFAULT_URL:
            path = root / "state.db"
        if must_exist and not path.exists():
            raise StateError(f"there is no state database at {path}; load one with `orderfeeds snapshot import FILE`")
        return SqliteStore(path)
    raise StateError(f"unsupported state URL '{url}'; use sqlite:///path/to/state.db")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _typed(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """`frame` in the stored column order and types; an empty frame of any types becomes empty typed."""
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return frame.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def _json_list(values: list) -> str:
    # One JSON parameter read with json_each: a single statement, whatever the number of values.
    return json.dumps(values)


_KEY = ["order-id", "order-item-id"]


def _positions(keys: pl.DataFrame, stored: pl.DataFrame, rows: pl.Series) -> pl.Series:
    """Where each of `keys` is among `stored` (the keys of the stored lines `rows`), as a stored row;
    null where it is not. A hash collision can only give a wrong row, never go unnoticed: the caller
    compares every fixed column, the keys among them, at the rows found."""
    if keys.height == stored.height and keys.equals(stored):
        return rows  # in the order load_lines gave them (one load for the whole feed)
    # Otherwise (pieces, or any order) by a 64-bit hash of the key, joined among these rows only:
    # much cheaper than a join on the two strings against every line of the buckets.
    found = (keys.hash_rows().to_frame("_hash")
             .join(stored.hash_rows().to_frame("_hash").with_row_index("_at"), on="_hash", how="left",
                   maintain_order="left").get_column("_at"))
    if found.len() == keys.height:
        return rows.gather(found)
    # Two stored keys with one hash: look them up by the keys themselves.
    return (keys.join(stored.with_row_index("_at"), on=_KEY, how="left", maintain_order="left")
            .get_column("_at").pipe(rows.gather))


def _rewritten(stored: pl.DataFrame, lines: pl.DataFrame, orders: pl.Series
               ) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]]]:
    """The chunks to write so that the orders in `orders` have exactly `lines`: (fixed, state) as
    (bucket, rows, chunk). `stored` is every line of their buckets, grouped by bucket, with `_bucket`.

    A feed changes only the state columns of lines that exist: then each bucket's state chunk is
    rewritten with the new values put in place, and its fixed chunk is left alone. Anything else (a
    line added or gone, a fixed column changed) rewrites both chunks of the buckets involved."""
    touched = stored.get_column("order-id").is_in(orders.implode()).arg_true()
    at = _positions(lines.select(_KEY), stored.select(_KEY)[touched], touched)
    in_place = (touched.len() == lines.height and not at.has_nulls() and at.n_unique() == lines.height
                and lines.select(list(chunks.FIXED_SCHEMA)).equals(
                    stored.select(list(chunks.FIXED_SCHEMA))[at], null_equal=True))
    if not in_place:
        kept = stored.filter(~pl.col("order-id").is_in(orders.implode())).drop(chunks.BUCKET)
        # Not sorted again (export sorts): a bucket keeps its lines, then the rewritten ones.
        return chunks.split_lines(pl.concat([kept, lines]))
    # Scattered into copies: `stored` may be what load_lines keeps, and must stay what is stored.
    state = pl.DataFrame([stored.get_column(column).clone().scatter(at, lines.get_column(column))
                          for column in chunks.STATE_SCHEMA])
    parts = chunks.slices(state, stored.get_column(chunks.BUCKET))
    blobs = chunks.encode_all([part for _, part in parts])
    return [], [(bucket, part.height, blob) for (bucket, part), blob in zip(parts, blobs, strict=True)]


class SqliteStore:
    """The embedded default: one SQLite file in WAL mode."""

    def __init__(self, path: Path):
        self.path = path
        # The buckets load_lines decoded for the feed being applied, kept for its next load_lines and
        # its commit (see _decoded): (the database's change marker then, the buckets, their lines).
        self._loaded: tuple[tuple[int, int], frozenset[int], pl.DataFrame] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit, one per feed.
            self.db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        except DamagedChunk as exc:  # a chunk a migration had to read
            raise self._damaged(exc) from None
        except OSError as exc:
            raise StateError(f"the state database {path} cannot be opened: {exc.strerror or exc}") from None

    def _explain(self, exc: sqlite3.Error) -> StateError:
        if "locked" in str(exc) or "busy" in str(exc):
            return StateError(f"the state database {self.path} is locked by another program; try again later", 75)
        if isinstance(exc, sqlite3.IntegrityError):
            # A constraint kept a change out (the same file applied twice, say): the database is sound.
            return StateError(f"the state database {self.path} refused the change ({exc}); nothing was committed")
        if not isinstance(exc, sqlite3.OperationalError) or "malformed" in str(exc) or "not a database" in str(exc):
            return StateError(f"the state database {self.path} is damaged or not a database ({exc}); "
                              "restore it from a backup")
        return StateError(f"the state database {self.path} cannot be used: {exc}")

    def _version(self) -> int:
        exists = self.db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not exists:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StateError(f"the state database {self.path} has schema version {version}, newer than this "
                             f"orderfeeds understands ({SCHEMA_VERSION}); upgrade orderfeeds")
        if version == SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    if callable(statement):
                        statement(self.db)
                    else:
                        self.db.execute(statement)
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- transactions ---------------------------------------------------------------

    def _transaction(self):
        store = self

        class _Tx:
            def __enter__(self):
                try:
                    store.db.execute("BEGIN IMMEDIATE")
                except sqlite3.DatabaseError as exc:
                    raise store._explain(exc) from None
                return store.db

            def __exit__(self, kind, value, traceback):
                if kind is None:
                    try:
                        store.db.execute("COMMIT")
                    except sqlite3.DatabaseError as exc:
                        store.db.execute("ROLLBACK")
                        raise store._explain(exc) from None
                else:
                    store.db.execute("ROLLBACK")
                    if isinstance(value, sqlite3.DatabaseError):
                        raise store._explain(value) from None
                return False

        return _Tx()

    def _damaged(self, exc: DamagedChunk) -> StateError:
        return StateError(f"the state database {self.path} is damaged ({exc}); restore it from a backup")

    def _blobs(self, query: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.db.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _unchanged_since(self) -> tuple[int, int]:
        """Changes by another connection move data_version; changes by this one move total_changes."""
        try:
            return self.db.execute("PRAGMA data_version").fetchone()[0], self.db.total_changes
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _decoded(self, buckets: list[int] | None) -> pl.DataFrame:
        """The lines stored in `buckets` (None: every bucket), with `_bucket`, each bucket's rows
        together; perhaps with other buckets' too. Buckets load_lines decoded for this feed are
        taken as decoded if nothing was written since; only the others are read, and kept too."""
        wanted = frozenset(range(chunks.BUCKETS) if buckets is None else buckets)
        marker = self._unchanged_since()
        if self._loaded is not None and self._loaded[0] == marker:
            _, loaded, frame = self._loaded
        else:
            loaded, frame = frozenset(), None
        missing = wanted - loaded
        if missing or frame is None:
            read = self._lines_of(None if buckets is None and not loaded else sorted(missing))
            # Not rechunked: the decoded part stays as it is, and each bucket's rows stay together.
            frame = read if frame is None else pl.concat([frame, read], how="vertical", rechunk=False)
            loaded = loaded | missing
        self._loaded = (marker, loaded, frame)
        return frame

    def _loaded_buckets(self, buckets: list[int]) -> pl.DataFrame:
        """The lines stored in `buckets`, with `_bucket`, and no other bucket's."""
        frame = self._decoded(buckets)
        if self._loaded is not None and self._loaded[1] == frozenset(buckets):
            return frame
        return frame.filter(pl.col(chunks.BUCKET).is_in(buckets))

    def _lines_of(self, buckets: list[int] | None) -> pl.DataFrame:
        """The lines stored in `buckets` (None: every bucket), grouped by bucket, with it in `_bucket`."""
        if buckets is None:
            where, params = "", ()
        else:
            where, params = " WHERE bucket IN (SELECT value FROM json_each(?))", (_json_list(buckets),)
        fixed = self._blobs(f"SELECT bucket, lines, data FROM order_lines{where} ORDER BY bucket", params)
        state = self._blobs(f"SELECT bucket, lines, data FROM order_line_state{where} ORDER BY bucket", params)
        try:
            if [row[:2] for row in fixed] != [row[:2] for row in state]:
                raise DamagedChunk("the two parts of the stored order lines do not match")
            lines = chunks.decode_lines([row[1:] for row in fixed], [row[1:] for row in state])
        except DamagedChunk as exc:
            raise self._damaged(exc) from None
        bucket = pl.Series(chunks.BUCKET, [row[0] for row in fixed], dtype=pl.Int64).repeat_by(
            pl.Series([row[1] for row in fixed], dtype=pl.UInt32)).explode()
        return lines.with_columns(bucket) if lines.height else lines.with_columns(pl.lit(None, pl.Int64).alias(chunks.BUCKET))

    def _ledger_of(self, buckets: list[int]) -> pl.DataFrame:
        """The ledger rows of the orders in `buckets`, with their feed, in application order."""
        rows = self._blobs("SELECT e.feed_id, e.rows, e.data FROM effects e "
                           "WHERE e.bucket IN (SELECT value FROM json_each(?))", (_json_list(buckets),))
        try:
            ledger = chunks.decode_all([row[2] for row in rows], LEDGER_SCHEMA)
        except DamagedChunk as exc:
            raise self._damaged(exc) from None
        feed_ids = pl.Series("feed-id", [row[0] for row in rows], dtype=pl.Int64).repeat_by(
            pl.Series([row[1] for row in rows], dtype=pl.UInt32)).explode()
        if feed_ids.len() != ledger.height:
            raise self._damaged(DamagedChunk("a ledger chunk does not hold the rows it claims"))
        return ledger.with_columns(feed_ids).sort("feed-id", "record", maintain_order=True)

    def _feed_names(self) -> pl.DataFrame:
        rows = self._blobs("SELECT id, name, committed_at FROM feeds")
        return pl.DataFrame(rows, schema={"feed-id": pl.Int64, "feed": pl.String, "committed_at": pl.String},
                            orient="row")

    # -- snapshot ---------------------------------------------------------------------

    def import_snapshot(self, lines: pl.DataFrame, file_name: str, sha256: str) -> int:
        fixed, state = chunks.split_lines(_typed(lines, LINE_SCHEMA).sort("order-id", "order-item-id"))
        with self._transaction() as db:
            db.execute("DELETE FROM order_lines")
            db.execute("DELETE FROM order_line_state")
            db.executemany("INSERT INTO order_lines (bucket, lines, data) VALUES (?, ?, ?)", fixed)
            db.executemany("INSERT INTO order_line_state (bucket, lines, data) VALUES (?, ?, ?)", state)
            db.execute("INSERT INTO imports (file_name, sha256, lines, imported_at) VALUES (?, ?, ?, ?)",
                       (file_name, sha256, lines.height, _now()))
        return lines.height

    def export_lines(self) -> pl.DataFrame:
        return self._lines_of(None).drop(chunks.BUCKET).sort("order-id", "order-item-id")

    def load_lines(self, order_ids: pl.Series, merchant_order_ids: pl.Series) -> pl.DataFrame:
        """The lines of the orders a feed names, by order id or by the seller's order id."""
        wanted = order_ids.drop_nulls().unique()
        if merchant_order_ids.len():
            # The seller's ids are not what buckets are made of: look in every bucket.
            lines = self._decoded(None)
            found = lines.filter(pl.col("merchant-order-id").is_in(merchant_order_ids.implode())).get_column("order-id")
            wanted = pl.concat([wanted.cast(pl.String), found]).unique()
        else:
            lines = self._decoded(chunks.buckets(wanted))
        return lines.filter(pl.col("order-id").is_in(wanted.implode())).drop(chunks.BUCKET)

    def load_history(self, order_ids: pl.Series) -> pl.DataFrame:
        wanted = order_ids.drop_nulls().unique()
        ledger = self._ledger_of(chunks.buckets(wanted)).filter(
            pl.col("fingerprint").is_not_null() & pl.col("order-id").is_in(wanted.implode()))
        if ledger.height == 0:
            return pl.DataFrame(schema=HISTORY_SCHEMA)
        return (ledger.join(self._feed_names(), on="feed-id", how="left", maintain_order="left")
                .with_columns(pl.lit(None, pl.UInt32).alias("seq")).select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA))

    # -- registry ---------------------------------------------------------------------

    _FEED_COLUMNS = ("id, name, claim, sha256, feed_type, outcome, records, successful, warnings, errors, "
                     "report_stem, as_of, committed_at, seconds")

    def _entries(self, where: str, params: tuple) -> list[FeedEntry]:
        try:
            rows = self.db.execute(f"SELECT {self._FEED_COLUMNS} FROM feeds {where}", params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        return [FeedEntry(*row) for row in rows]

    def applied_feed(self, sha256: str) -> FeedEntry | None:
        found = self._entries("WHERE applied_sha256 = ?", (sha256,))
        return found[0] if found else None

    def claimed(self, claim: str) -> FeedEntry | None:
        found = self._entries("WHERE claim = ?", (claim,))
        return found[0] if found else None

    def report_stem_taken(self, stem: str) -> bool:
        return bool(self._entries("WHERE report_stem = ?", (stem,)))

    def feeds(self) -> list[FeedEntry]:
        return self._entries("ORDER BY id DESC", ())

    def reports_of(self, feed_id: int) -> dict[str, bytes]:
        try:
            rows = self.db.execute("SELECT file_name, content FROM feed_reports WHERE feed_id = ?", (feed_id,)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        return {name: bytes(content) for name, content in rows}

    def commit_feed(self, entry: FeedEntry, lines: pl.DataFrame, ledger: pl.DataFrame,
                    merchant_ids: pl.DataFrame, reports: dict[str, bytes]) -> FeedEntry:
        """One transaction: the registry row, the changed lines, the ledger and the reports."""
        try:
            return self._commit_feed(entry, lines, ledger, merchant_ids, reports)
        finally:
            # What load_lines kept was for this commit only, whether it went through or not.
            self._loaded = None

    def _commit_feed(self, entry: FeedEntry, lines: pl.DataFrame, ledger: pl.DataFrame,
                     merchant_ids: pl.DataFrame, reports: dict[str, bytes]) -> FeedEntry:
        lines = _typed(lines, LINE_SCHEMA)
        ledger = _typed(ledger, LEDGER_SCHEMA)
        missing = [c for c in chunks.LEDGER_REQUIRED if ledger.get_column(c).has_nulls()]
        if missing:
            raise ValueError(f"ledger rows without {', '.join(missing)}: nothing was committed")
        ledger_chunks = chunks.split(ledger)
        fixed_chunks: list[tuple[int, int, bytes]] = []
        state_chunks: list[tuple[int, int, bytes]] = []
        with self._transaction() as db:
            if lines.height:
                # Read inside the write transaction, before writing anything (see _loaded_buckets):
                # the buckets rewritten are the ones stored now.
                orders = lines.get_column("order-id").unique()
                fixed_chunks, state_chunks = _rewritten(self._loaded_buckets(chunks.buckets(orders)), lines, orders)
            cursor = db.execute(
                "INSERT INTO feeds (name, claim, sha256, applied_sha256, feed_type, outcome, records, successful, "
                "warnings, errors, report_stem, as_of, committed_at, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.name, entry.claim, entry.sha256, entry.sha256 if entry.outcome == "applied" else None,
                 entry.feed_type, entry.outcome, entry.records, entry.successful, entry.warnings, entry.errors,
                 entry.report_stem, entry.as_of, _now(), entry.seconds))
            feed_id = cursor.lastrowid
            if fixed_chunks:
                db.executemany("INSERT OR REPLACE INTO order_lines (bucket, lines, data) VALUES (?, ?, ?)",
                               fixed_chunks)
            if state_chunks:
                db.executemany("INSERT OR REPLACE INTO order_line_state (bucket, lines, data) VALUES (?, ?, ?)",
                               state_chunks)
            db.executemany(f"INSERT INTO effects (feed_id, bucket, rows, data) VALUES ({feed_id}, ?, ?, ?)",
                           ledger_chunks)
            if merchant_ids.height:
                db.executemany(
                    f"INSERT INTO merchant_ids (feed_id, record, order_id, order_item_id, merchant_order_id, "
                    f"merchant_order_item_id) VALUES ({feed_id}, ?, ?, ?, ?, ?)",
                    merchant_ids.select("record", "order-id", "order-item-id", "merchant-order-id",
                                        "merchant-order-item-id").iter_rows())
            db.executemany("INSERT INTO feed_reports (feed_id, file_name, content) VALUES (?, ?, ?)",
                           [(feed_id, name, content) for name, content in reports.items()])
        return self.claimed(entry.claim)  # type: ignore[return-value]

    def order_effects(self, order_id: str) -> pl.DataFrame:
        ledger = self._ledger_of(chunks.buckets(pl.Series([order_id]))).filter(pl.col("order-id") == order_id)
        return (ledger.join(self._feed_names(), on="feed-id", how="left", maintain_order="left")
                .select("feed", "committed_at", "record", "line", pl.col("order-item-id").alias("order_item_id"),
                        pl.col("units-cancelled").alias("units_cancelled"),
                        *[pl.col(c).cast(pl.String).alias(sql_name(c)) for c in DELTA_COLUMNS],
                        pl.col("merchant-adjustment-item-id").alias("merchant_adjustment_item_id")))

    def close(self) -> None:
        self.db.close()

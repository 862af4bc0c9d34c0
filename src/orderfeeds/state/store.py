"""The state store: order lines, the effects ledger, the feed registry and merchant ids."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from orderfeeds.apply.adjustment import HISTORY_SCHEMA
from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.errors import OrderfeedsError
from orderfeeds.feedtypes import Kind
from orderfeeds.snapshot import SNAPSHOT_FIELDS
from orderfeeds.state.schema import DELTA_SQL, LINE_COLUMNS, MIGRATIONS, SCHEMA_VERSION, sql_name
from orderfeeds.validate import COUNT, MONEY

DEFAULT_URL = "sqlite:///feeds/state.db"
BATCH = 50_000


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


_LINE_SCHEMA = {
    sql_name(f.name): (COUNT if f.kind is Kind.COUNT else pl.Boolean if f.kind is Kind.BOOL else
                       MONEY if f.kind is Kind.MONEY else pl.String)
    for f in SNAPSHOT_FIELDS
}


def _to_sql_rows(frame: pl.DataFrame) -> list[tuple]:
    """Money as exact text, booleans as 0/1: the portable column types."""
    converted = frame.with_columns(
        pl.col(c).cast(pl.String) for c, t in frame.schema.items() if isinstance(t, pl.Decimal)
    ).with_columns(pl.col(c).cast(pl.Int64) for c, t in frame.schema.items() if t == pl.Boolean)
    return converted.rows()


class SqliteStore:
    """The embedded default: one SQLite file in WAL mode."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit, one per feed.
            self.db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        except OSError as exc:
            raise StateError(f"the state database {path} cannot be opened: {exc.strerror or exc}") from None

    def _explain(self, exc: sqlite3.Error) -> StateError:
        if "locked" in str(exc) or "busy" in str(exc):
            return StateError(f"the state database {self.path} is locked by another program; try again later", 75)
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

    def _select_frame(self, query: str, params: tuple = (), schema: dict | None = None) -> pl.DataFrame:
        """Rows of a query as a frame; `schema` gives Decimal, Boolean and Int64 columns their types."""
        try:
            cursor = self.db.execute(query, params)
            rows = cursor.fetchall()
            names = [d[0] for d in cursor.description]
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        series = []
        for name, values in zip(names, columns, strict=True):
            wanted = (schema or {}).get(name)
            if isinstance(wanted, pl.Decimal):
                series.append(pl.Series(name, values, dtype=pl.String).cast(wanted))
            elif wanted == pl.Boolean:
                series.append(pl.Series(name, values, dtype=pl.Int64).cast(pl.Boolean))
            elif wanted is not None:
                series.append(pl.Series(name, values, dtype=wanted))
            else:
                series.append(pl.Series(name, values, strict=False))
        return pl.DataFrame(series)

    def _lines_frame(self, query: str, params: tuple = ()) -> pl.DataFrame:
        frame = self._select_frame(query, params, _LINE_SCHEMA)
        return frame.rename({sql_name(f.name): f.name for f in SNAPSHOT_FIELDS})

    def _fill_wanted(self, table: str, values: pl.Series) -> None:
        self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (value TEXT PRIMARY KEY)")
        self.db.execute(f"DELETE FROM {table}")
        self.db.executemany(f"INSERT OR IGNORE INTO {table} (value) VALUES (?)", ((v,) for v in values.to_list()))

    # -- snapshot ---------------------------------------------------------------------

    def import_snapshot(self, lines: pl.DataFrame, file_name: str, sha256: str) -> int:
        placeholders = ", ".join("?" for _ in LINE_COLUMNS)
        rows = _to_sql_rows(lines.select([f.name for f in SNAPSHOT_FIELDS]))
        with self._transaction() as db:
            db.execute("DELETE FROM order_lines")
            for start in range(0, len(rows), BATCH):
                db.executemany(f"INSERT INTO order_lines ({', '.join(LINE_COLUMNS)}) VALUES ({placeholders})",
                               rows[start:start + BATCH])
            db.execute("INSERT INTO imports (file_name, sha256, lines, imported_at) VALUES (?, ?, ?, ?)",
                       (file_name, sha256, len(rows), _now()))
        return len(rows)

    def export_lines(self) -> pl.DataFrame:
        return self._lines_frame(f"SELECT {', '.join(LINE_COLUMNS)} FROM order_lines ORDER BY order_id, order_item_id")

    def load_lines(self, order_ids: pl.Series, merchant_order_ids: pl.Series) -> pl.DataFrame:
        """The lines of the orders a feed names, by order id or by the seller's order id."""
        self._fill_wanted("wanted_orders", order_ids)
        if merchant_order_ids.len():
            self._fill_wanted("wanted_merchant", merchant_order_ids)
            self.db.execute("INSERT OR IGNORE INTO wanted_orders (value) SELECT order_id FROM order_lines "
                            "WHERE merchant_order_id IN (SELECT value FROM wanted_merchant)")
        return self._lines_frame(f"SELECT {', '.join('l.' + c for c in LINE_COLUMNS)} FROM order_lines l "
                                 "JOIN wanted_orders w ON l.order_id = w.value")

    def load_history(self, order_ids: pl.Series) -> pl.DataFrame:
        self._fill_wanted("wanted_orders", order_ids)
        frame = self._select_frame(
            "SELECT e.order_id, e.order_item_id, e.merchant_adjustment_item_id, e.fingerprint, f.name, e.record "
            "FROM effects e JOIN feeds f ON f.id = e.feed_id JOIN wanted_orders w ON e.order_id = w.value "
            "WHERE e.fingerprint IS NOT NULL ORDER BY e.feed_id, e.record")
        if frame.height == 0:
            return pl.DataFrame(schema=HISTORY_SCHEMA)
        frame.columns = ["order-id", "order-item-id", "merchant-adjustment-item-id", "fingerprint", "feed", "record"]
        return frame.with_columns(pl.lit(None, pl.UInt32).alias("seq")).select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)

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
        placeholders = ", ".join("?" for _ in LINE_COLUMNS)
        line_rows = _to_sql_rows(lines.select([f.name for f in SNAPSHOT_FIELDS]))
        orders = lines.get_column("order-id").unique()
        ledger_columns = ["record", "item_index", "line", "order_id", "order_item_id", "units_cancelled",
                          *DELTA_SQL, "merchant_adjustment_item_id", "fingerprint"]
        ledger_rows = _to_sql_rows(ledger.select("record", "item-index", "line", "order-id", "order-item-id",
                                                 "units-cancelled", *DELTA_COLUMNS,
                                                 "merchant-adjustment-item-id", "fingerprint"))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO feeds (name, claim, sha256, applied_sha256, feed_type, outcome, records, successful, "
                "warnings, errors, report_stem, as_of, committed_at, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.name, entry.claim, entry.sha256, entry.sha256 if entry.outcome == "applied" else None,
                 entry.feed_type, entry.outcome, entry.records, entry.successful, entry.warnings, entry.errors,
                 entry.report_stem, entry.as_of, _now(), entry.seconds))
            feed_id = cursor.lastrowid
            if line_rows:
                self._fill_wanted("wanted_orders", orders)
                db.execute("DELETE FROM order_lines WHERE order_id IN (SELECT value FROM wanted_orders)")
                for start in range(0, len(line_rows), BATCH):
                    db.executemany(f"INSERT INTO order_lines ({', '.join(LINE_COLUMNS)}) VALUES ({placeholders})",
                                   line_rows[start:start + BATCH])
            for start in range(0, len(ledger_rows), BATCH):
                db.executemany(
                    f"INSERT INTO effects (feed_id, {', '.join(ledger_columns)}) "
                    f"VALUES ({feed_id}, {', '.join('?' for _ in ledger_columns)})", ledger_rows[start:start + BATCH])
            if merchant_ids.height:
                db.executemany(
                    f"INSERT INTO merchant_ids (feed_id, record, order_id, order_item_id, merchant_order_id, "
                    f"merchant_order_item_id) VALUES ({feed_id}, ?, ?, ?, ?, ?)",
                    merchant_ids.select("record", "order-id", "order-item-id", "merchant-order-id",
                                        "merchant-order-item-id").rows())
            db.executemany("INSERT INTO feed_reports (feed_id, file_name, content) VALUES (?, ?, ?)",
                           list((feed_id, name, content) for name, content in reports.items()))
        return self.claimed(entry.claim)  # type: ignore[return-value]

    def order_effects(self, order_id: str) -> pl.DataFrame:
        return self._select_frame(
            "SELECT f.name AS feed, f.committed_at, e.record, e.line, e.order_item_id, e.units_cancelled, "
            f"{', '.join('e.' + c for c in DELTA_SQL)}, e.merchant_adjustment_item_id "
            "FROM effects e JOIN feeds f ON f.id = e.feed_id WHERE e.order_id = ? ORDER BY e.feed_id, e.record",
            (order_id,))

    def close(self) -> None:
        self.db.close()

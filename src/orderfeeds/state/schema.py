"""The state database's tables, as versioned migrations in portable SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import polars as pl

from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.feedtypes import Kind
from orderfeeds.snapshot import SNAPSHOT_FIELDS
from orderfeeds.state import chunks


def sql_name(column: str) -> str:
    """Hyphens are not portable in SQL identifiers: order-id is stored as order_id."""
    return column.replace("-", "_")


def _sql_type(kind: Kind) -> str:
    # Money is exact decimal text: SQLite has no exact decimal type, and text round-trips.
    return {Kind.COUNT: "INTEGER", Kind.BOOL: "INTEGER"}.get(kind, "TEXT")


LINE_COLUMNS = [sql_name(f.name) for f in SNAPSHOT_FIELDS]
_LINE_DEFINITIONS = ",\n  ".join(f"{sql_name(f.name)} {_sql_type(f.kind)}" for f in SNAPSHOT_FIELDS)
DELTA_SQL = [sql_name(c) for c in DELTA_COLUMNS]
_DELTA_DEFINITIONS = ",\n  ".join(f"{c} TEXT NOT NULL" for c in DELTA_SQL)



def _rows_frame(db: sqlite3.Connection, query: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Version-1 rows (money as text, booleans as 0/1) as a typed frame."""
    stored = {c: pl.String() if isinstance(t, pl.Decimal) else pl.Int64() if t == pl.Boolean else t
              for c, t in schema.items()}
    frame = pl.DataFrame(db.execute(query).fetchall(), schema=stored, orient="row")
    return frame.cast(schema)


def _rows_to_chunks(db: sqlite3.Connection) -> None:
    """Version 2: lines and ledger rows move from one SQL row each into bucketed chunks, so a
    feed moves them in bulk instead of one Python tuple per row."""
    lines = _rows_frame(db, f"SELECT {', '.join(LINE_COLUMNS)} FROM order_lines_v1 ORDER BY order_id, order_item_id",
                        chunks.LINE_SCHEMA)
    db.executemany("INSERT INTO order_lines (bucket, lines, data) VALUES (?, ?, ?)", chunks.split(lines))
    ledger_columns = ["record", "item_index", "line", "order_id", "order_item_id", "units_cancelled", *DELTA_SQL,
                      "merchant_adjustment_item_id", "fingerprint"]
    ledger = _rows_frame(db, f"SELECT feed_id, {', '.join(ledger_columns)} FROM effects_v1 ORDER BY feed_id, rowid",
                         {"feed_id": pl.Int64(), **chunks.LEDGER_SCHEMA})
    for (feed_id,), rows in ledger.partition_by("feed_id", as_dict=True, maintain_order=True,
                                                include_key=False).items():
        db.executemany(f"INSERT INTO effects (feed_id, bucket, rows, data) VALUES ({int(feed_id)}, ?, ?, ?)",
                       chunks.split(rows))


def _split_line_chunks(db: sqlite3.Connection) -> None:
    """Version 3: each bucket's lines, one chunk of every column before, become two chunks, row for row:
    the columns feeds never change and the ones they do, so a commit rewrites only the second."""
    rows = db.execute("SELECT bucket, lines, data FROM order_lines_v2 ORDER BY bucket").fetchall()
    for bucket, count, blob in rows:
        lines = chunks.decode(blob, chunks.LINE_SCHEMA, count)
        db.execute("INSERT INTO order_lines (bucket, lines, data) VALUES (?, ?, ?)",
                   (bucket, count, chunks.encode(lines.select(list(chunks.FIXED_SCHEMA)))))
        db.execute("INSERT INTO order_line_state (bucket, lines, data) VALUES (?, ?, ?)",
                   (bucket, count, chunks.encode(lines.select(list(chunks.STATE_SCHEMA)))))


# Each entry moves the schema one version up; never edit an entry once released. A step is SQL,
# or a function for data that SQL alone cannot move.
MIGRATIONS: list[list[str | Callable[[sqlite3.Connection], None]]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE order_lines (
  {_LINE_DEFINITIONS},
  PRIMARY KEY (order_id, order_item_id)
)""",
        "CREATE INDEX order_lines_merchant ON order_lines (merchant_order_id)",
        """CREATE TABLE imports (
  id INTEGER PRIMARY KEY, file_name TEXT NOT NULL, sha256 TEXT NOT NULL,
  lines INTEGER NOT NULL, imported_at TEXT NOT NULL
)""",
        # applied_sha256 is set only for applied feeds: UNIQUE makes a second application impossible.
        """CREATE TABLE feeds (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, claim TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
  applied_sha256 TEXT UNIQUE,
  feed_type TEXT, outcome TEXT NOT NULL, records INTEGER NOT NULL, successful INTEGER NOT NULL,
  warnings INTEGER NOT NULL, errors INTEGER NOT NULL, report_stem TEXT NOT NULL,
  as_of TEXT NOT NULL, committed_at TEXT NOT NULL, seconds REAL NOT NULL
)""",
        "CREATE INDEX feeds_sha256 ON feeds (sha256)",
        """CREATE TABLE feed_reports (
  feed_id INTEGER NOT NULL REFERENCES feeds (id), file_name TEXT NOT NULL, content BLOB NOT NULL,
  PRIMARY KEY (feed_id, file_name)
)""",
        f"""CREATE TABLE effects (
  feed_id INTEGER NOT NULL REFERENCES feeds (id), record INTEGER NOT NULL, item_index INTEGER NOT NULL,
  line INTEGER NOT NULL, order_id TEXT NOT NULL, order_item_id TEXT NOT NULL, units_cancelled INTEGER NOT NULL,
  {_DELTA_DEFINITIONS},
  merchant_adjustment_item_id TEXT, fingerprint TEXT
)""",
        "CREATE INDEX effects_order ON effects (order_id)",
        """CREATE TABLE merchant_ids (
  feed_id INTEGER NOT NULL REFERENCES feeds (id), record INTEGER NOT NULL, order_id TEXT NOT NULL,
  order_item_id TEXT, merchant_order_id TEXT, merchant_order_item_id TEXT
)""",
    ],
    [
        "ALTER TABLE order_lines RENAME TO order_lines_v1",
        "ALTER TABLE effects RENAME TO effects_v1",
        # All lines of the orders in one bucket (chunks.bucket_of), sorted by order and item.
        "CREATE TABLE order_lines (bucket INTEGER PRIMARY KEY, lines INTEGER NOT NULL, data BLOB NOT NULL)",
        # The ledger rows one feed applied to the orders in one bucket, in record order.
        """CREATE TABLE effects (
  feed_id INTEGER NOT NULL REFERENCES feeds (id), bucket INTEGER NOT NULL, rows INTEGER NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (bucket, feed_id)
)""",
        _rows_to_chunks,
        "DROP TABLE order_lines_v1",
        "DROP TABLE effects_v1",
    ],
    [
        "ALTER TABLE order_lines RENAME TO order_lines_v2",
        # A bucket's lines in two chunks of the same rows in the same order: order_lines holds the columns
        # no feed changes (the keys among them), order_line_state the others (chunks.STATE_COLUMNS).
        "CREATE TABLE order_lines (bucket INTEGER PRIMARY KEY, lines INTEGER NOT NULL, data BLOB NOT NULL)",
        "CREATE TABLE order_line_state (bucket INTEGER PRIMARY KEY, lines INTEGER NOT NULL, data BLOB NOT NULL)",
        _split_line_chunks,
        "DROP TABLE order_lines_v2",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

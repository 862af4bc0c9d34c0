"""The state database's tables, as versioned migrations in portable SQL."""

from __future__ import annotations

from orderfeeds.apply.state import DELTA_COLUMNS
from orderfeeds.feedtypes import Kind
from orderfeeds.snapshot import SNAPSHOT_FIELDS


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

# Each entry moves the schema one version up; never edit an entry once released.
MIGRATIONS: list[list[str]] = [
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
]
SCHEMA_VERSION = len(MIGRATIONS)

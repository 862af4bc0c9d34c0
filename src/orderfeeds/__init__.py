"""orderfeeds: bulk processing of order cancellation and adjustment feeds."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public names, imported when first used: `import orderfeeds.cli` must not import polars before the command
# has set up polars' allocator (`orderfeeds.allocator.tune_polars`).
_EXPORTS = {
    "Applied": "orderfeeds.apply", "apply_records": "orderfeeds.apply",
    "FeedError": "orderfeeds.errors", "OrderfeedsError": "orderfeeds.errors", "SnapshotError": "orderfeeds.errors",
    "FeedType": "orderfeeds.feedtypes", "FeedResult": "orderfeeds.outcomes",
    "ProcessOptions": "orderfeeds.pipeline", "process_feed": "orderfeeds.pipeline",
    "process_feeds": "orderfeeds.pipeline",
    "RawFeed": "orderfeeds.readers", "read_feed": "orderfeeds.readers", "write_reports": "orderfeeds.report",
    "read_snapshot": "orderfeeds.snapshot", "write_snapshot": "orderfeeds.snapshot",
    "ValidRecords": "orderfeeds.validate", "validate_records": "orderfeeds.validate",
}

__all__ = [
    "Applied", "FeedError", "FeedResult", "FeedType", "OrderfeedsError", "ProcessOptions", "RawFeed",
    "SnapshotError", "ValidRecords", "apply_records", "process_feed", "process_feeds", "read_feed",
    "read_snapshot", "validate_records", "write_reports", "write_snapshot", "__version__",
]

if TYPE_CHECKING:
    from orderfeeds.apply import Applied, apply_records
    from orderfeeds.errors import FeedError, OrderfeedsError, SnapshotError
    from orderfeeds.feedtypes import FeedType
    from orderfeeds.outcomes import FeedResult
    from orderfeeds.pipeline import ProcessOptions, process_feed, process_feeds
    from orderfeeds.readers import RawFeed, read_feed
    from orderfeeds.report import write_reports
    from orderfeeds.snapshot import read_snapshot, write_snapshot
    from orderfeeds.validate import ValidRecords, validate_records


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orderfeeds' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""orderfeeds: bulk processing of order cancellation and adjustment feeds."""

__version__ = "0.1.0"

from orderfeeds.apply import Applied, apply_records  # noqa: E402
from orderfeeds.errors import FeedError, OrderfeedsError, SnapshotError  # noqa: E402
from orderfeeds.feedtypes import FeedType  # noqa: E402
from orderfeeds.outcomes import FeedResult  # noqa: E402
from orderfeeds.pipeline import ProcessOptions, process_feed, process_feeds  # noqa: E402
from orderfeeds.readers import RawFeed, read_feed  # noqa: E402
from orderfeeds.report import write_reports  # noqa: E402
from orderfeeds.snapshot import read_snapshot, write_snapshot  # noqa: E402
from orderfeeds.validate import ValidRecords, validate_records  # noqa: E402

__all__ = [
    "Applied", "FeedError", "FeedResult", "FeedType", "OrderfeedsError", "ProcessOptions", "RawFeed",
    "SnapshotError", "ValidRecords", "apply_records", "process_feed", "process_feeds", "read_feed",
    "read_snapshot", "validate_records", "write_reports", "write_snapshot", "__version__",
]

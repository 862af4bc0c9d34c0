"""Exceptions for whole-file failures; a bad record is never an exception."""

from __future__ import annotations


class OrderfeedsError(Exception):
    """Root of every error this library raises on purpose."""


class FeedError(OrderfeedsError):
    """The whole feed is rejected; `name` is its catalogue entry."""

    def __init__(self, name: str, message: str, line: int | None = None):
        super().__init__(message)
        self.name = name
        self.message = message
        self.line = line


class SnapshotError(OrderfeedsError):
    """The order snapshot breaks its schema; nothing can be applied."""

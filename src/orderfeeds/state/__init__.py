"""Persistent order state for `run`: the store interface and its SQLite implementation."""

from orderfeeds.state.store import FeedEntry, StateError, StateStore, open_store

__all__ = ["FeedEntry", "StateError", "StateStore", "open_store"]

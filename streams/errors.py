"""Errors of the streaming side: services that are missing, busy or unreachable."""

from __future__ import annotations

from schemas.errors import DistillwatchError


class StoreLockedError(DistillwatchError):
    """The embedded ClickHouse store is owned by another process."""


class StoreError(DistillwatchError):
    """ClickHouse could not be reached or refused a statement."""


class KafkaSetupError(DistillwatchError):
    """The local broker cannot be fetched, formatted, started or reached."""

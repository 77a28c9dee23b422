"""Errors of alert delivery."""

from __future__ import annotations

from schemas.errors import DistillwatchError


class AlertingError(DistillwatchError):
    """An alert could not be built or delivered as configured."""


class WebhookVerificationError(AlertingError):
    """A received webhook is not genuine: a header is missing, the signature does not match,
    or its timestamp is outside the tolerance (a replay)."""

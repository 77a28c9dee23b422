"""Intent label sets. The MangaAssist default; deployments configure their own."""

from __future__ import annotations

MANGAASSIST_INTENTS: tuple[str, ...] = (
    "faq",
    "recommendation",
    "order_tracking",
    "returns",
    "payment_dispute",
    "safety_escalation",
    "legal_complaint",
    "account_lockout",
    "refund_fraud",
)
"""Configured class order; top-1 ties go to the earlier class."""

MANGAASSIST_HIGH_RISK: tuple[str, ...] = MANGAASSIST_INTENTS[4:]
"""Escalation classes: rare, and costly to miss."""

"""Customer text is never stored raw (DESIGN §8): a keyed hash, or a redacted copy.

``prompt_hash`` is HMAC-SHA256 under a secret key, so equal prompts can be grouped in SQL
without the text being recoverable. ``redact`` masks e-mail addresses, phone numbers, card
numbers (only digit runs that pass the Luhn check, so order totals survive) and order ids.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
"""Starts only where a run of local-part characters starts: tried from inside a run too, a
long run without "@" (a pasted blob) made redaction quadratic in the text's length."""
CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")
DEFAULT_ORDER_ID = r"\b(?:ORD|ord|order)[-_#]?\d{6,}\b"


def prompt_hash(text: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the text under ``key`` (64 characters)."""
    mac = _keyed(key).copy()  # the key's padded states, hashed once (1.6 -> 1.1 µs a prompt)
    mac.update(text.encode("utf-8", "surrogatepass"))
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 under ``key`` that has seen no message: copied for each one."""
    return hmac.new(key, digestmod=hashlib.sha256)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Redactor:
    """Masks personal data in free text; the order-id pattern is configurable."""

    def __init__(self, order_id_pattern: str = DEFAULT_ORDER_ID) -> None:
        self.order_id = re.compile(order_id_pattern)

    def __call__(self, text: str) -> str:
        text = EMAIL.sub("[EMAIL]", text)
        text = CARD_CANDIDATE.sub(self._card, text)
        text = self.order_id.sub("[ORDER_ID]", text)
        return PHONE.sub("[PHONE]", text)

    @staticmethod
    def _card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)

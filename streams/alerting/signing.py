"""Standard Webhooks signatures: signing what distillwatch sends, verifying what a receiver gets.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,`` + base64(HMAC-SHA256(key, content)) where the key is the base64 part of a
``whsec_…`` secret (https://www.standardwebhooks.com). A receiver calls :func:`verify` with
the secret, the request headers and the raw body before trusting anything in it; it rejects
a missing header, a signature that does not match (compared in constant time), and a
timestamp more than ``tolerance_s`` away from its clock, which stops replays of old
requests. Besides the standard library it needs only distillwatch's error classes.

>>> secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
>>> headers = sign(secret, "msg_1", 1_700_000_000, b'{"ok":true}')
>>> verify(secret, headers, b'{"ok":true}', now=1_700_000_030)  # genuine: returns None
>>> verify(secret, headers, b'{"ok":false}', now=1_700_000_030)
Traceback (most recent call last):
...
streams.alerting.errors.WebhookVerificationError: webhook-signature does not match the body (wrong secret or tampered body)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any

from schemas.errors import ConfigError
from streams.alerting.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 16
DEFAULT_TOLERANCE_S = 300
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret in ``whsec_<base64>`` form, for the sender and the receiver."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def decode_secret(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (raw bytes are used as they are)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigError("webhook secret must look like whsec_<base64> (Standard Webhooks)")
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("webhook secret after whsec_ is not valid base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"webhook secret key is {len(key)} bytes; use at least {MIN_KEY_BYTES}")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of '{msg_id}.{timestamp}.{body}'>``."""
    content = f"{msg_id}.{int(timestamp)}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def sign(secret: str | bytes, msg_id: str, timestamp: int | float, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    ts = int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature(decode_secret(secret), msg_id, ts, body),
    }


def verify(secret: str | bytes, headers: Mapping[str, str] | Any, body: bytes | str, *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Return if the request is genuine and fresh; raise WebhookVerificationError otherwise.

    ``headers`` is any mapping with ``items()`` (a dict, ``http.client.HTTPMessage``, a web
    framework's headers); names are matched case-insensitively. ``body`` must be the raw
    bytes as received, before any JSON parsing.
    """
    key = decode_secret(secret)
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    missing = [h for h in HEADERS if not lowered.get(h)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    msg_id, ts_text, signatures = (lowered[h] for h in HEADERS)
    try:
        ts = int(ts_text)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {ts_text[:40]!r} is not epoch seconds") from None
    clock = time.time() if now is None else now
    if clock - ts > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {clock - ts:.0f} s old; more than {tolerance_s:g} s (replayed or delayed)")
    if ts - clock > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {ts - clock:.0f} s in the future; more than {tolerance_s:g} s")
    raw = body.encode() if isinstance(body, str) else body
    expected = signature(key, msg_id, ts, raw).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(expected, candidate.encode("utf-8", "replace")):
            return
    raise WebhookVerificationError("webhook-signature does not match the body (wrong secret or tampered body)")

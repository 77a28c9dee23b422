"""S1, signed webhooks: the receiver's verifier accepts what distillwatch signs and rejects
forgeries, tampering and replays (Standard Webhooks, DESIGN §6).

Expected signatures are computed here with hmac/hashlib, or taken from the published
Standard Webhooks test vector, never from the signing module under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from schemas.errors import DistillwatchError
from streams.alerting.delivery import deliver, http_client
from streams.alerting.errors import WebhookVerificationError
from streams.alerting.notification import Notification
from streams.alerting.signing import sign, verify
from streams.alerting.targets import WebhookTarget, render
from streams.local_alertmanager import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
T0 = 1_760_000_000.0


def hand_signature(secret: str, msg_id: str, ts: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def notification() -> Notification:
    return Notification(
        alert_id="a1b2c3", fingerprint="safety_escalation_recall/region=br", status="firing",
        rule="safety_escalation_recall", slice="region=br", severity="critical",
        metric="safety_escalation_recall", value=0.71, threshold=0.9, op="<",
        window_start=1_759_999_800, window_s=60, starts_at=1_759_999_740.0,
        forensics_sql="SELECT 1", example_request_ids=("r-1", "r-2"),
        replay_offsets="shadow.requests[3]=1200..1450", support=412, ci_low=0.66, ci_high=0.76)


def genuine() -> tuple[dict[str, str], bytes]:
    request = render(WebhookTarget(name="hook", url="http://127.0.0.1:1/h", secret=SECRET),
                     notification(), now=T0)
    return request.headers, request.body


def test_published_standard_webhooks_vector_is_reproduced_and_accepted() -> None:
    secret, msg_id, ts = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    headers = sign(secret, msg_id, ts, body)
    assert headers == {"webhook-id": msg_id, "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    verify(secret, headers, body, now=ts + 10)


def test_genuine_rendered_webhook_is_accepted_and_signed_over_id_timestamp_body() -> None:
    headers, body = genuine()
    assert headers["webhook-id"] == "a1b2c3.hook"
    assert headers["webhook-timestamp"] == str(int(T0))
    assert headers["webhook-signature"] == hand_signature(SECRET, "a1b2c3.hook", str(int(T0)), body)
    verify(SECRET, headers, body, now=T0 + 5)
    # header names are case-insensitive, as HTTP stacks deliver them
    verify(SECRET, {k.upper(): v for k, v in headers.items()}, body, now=T0 + 5)


def test_tampered_body_is_rejected() -> None:
    headers, body = genuine()
    tampered = body.replace(b'"value":"0.71"', b'"value":"0.99"')
    assert tampered != body
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(SECRET, headers, tampered, now=T0)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, body + b" ", now=T0)


def test_wrong_secret_is_rejected() -> None:
    headers, body = genuine()
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(OTHER_SECRET, headers, body, now=T0)


def test_timestamp_older_than_five_minutes_is_rejected() -> None:
    headers, body = genuine()
    verify(SECRET, headers, body, now=T0 + 299)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(SECRET, headers, body, now=T0 + 301)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(SECRET, headers, body, now=T0 + 86_400)


def test_timestamp_too_far_in_the_future_is_rejected() -> None:
    headers, body = genuine()
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(SECRET, headers, body, now=T0 - 301)


def test_replay_with_a_fresh_timestamp_is_rejected() -> None:
    """An attacker re-sends a captured request with the timestamp moved to now."""
    headers, body = genuine()
    later = T0 + 3600
    replayed = {**headers, "webhook-timestamp": str(int(later))}
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(SECRET, replayed, body, now=later)


def test_changed_webhook_id_is_rejected() -> None:
    headers, body = genuine()
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(SECRET, {**headers, "webhook-id": "other.hook"}, body, now=T0)


@pytest.mark.parametrize("forged", [
    "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "v1,",
    "garbage",
    "v1,Zm9yZ2Vk ü",
])
def test_forged_signature_is_rejected(forged: str) -> None:
    headers, body = genuine()
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-signature": forged}, body, now=T0)


def test_signature_made_with_the_attackers_key_is_rejected() -> None:
    headers, body = genuine()
    forged = hand_signature(OTHER_SECRET, headers["webhook-id"], headers["webhook-timestamp"], body)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-signature": forged}, body, now=T0)


def test_right_mac_under_another_version_tag_is_rejected() -> None:
    headers, body = genuine()
    v2 = headers["webhook-signature"].replace("v1,", "v2,", 1)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-signature": v2}, body, now=T0)


def test_any_of_several_signatures_may_match() -> None:
    """Key rotation: the sender lists signatures under old and new keys."""
    headers, body = genuine()
    rotated = hand_signature(OTHER_SECRET, headers["webhook-id"], headers["webhook-timestamp"], body)
    both = {**headers, "webhook-signature": f"{rotated} {headers['webhook-signature']}"}
    verify(SECRET, both, body, now=T0)
    verify(OTHER_SECRET, both, body, now=T0)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(header: str) -> None:
    headers, body = genuine()
    without = {k: v for k, v in headers.items() if k != header}
    with pytest.raises(WebhookVerificationError, match=header):
        verify(SECRET, without, body, now=T0)
    with pytest.raises(WebhookVerificationError, match=header):
        verify(SECRET, {**headers, header: ""}, body, now=T0)


def test_non_numeric_timestamp_is_rejected() -> None:
    headers, body = genuine()
    with pytest.raises(WebhookVerificationError, match="epoch seconds"):
        verify(SECRET, {**headers, "webhook-timestamp": "yesterday"}, body, now=T0)


def test_verification_error_is_a_distillwatch_error() -> None:
    assert issubclass(WebhookVerificationError, DistillwatchError)


def test_every_retry_is_signed_afresh_with_the_same_id() -> None:
    target = WebhookTarget(name="hook", url="http://127.0.0.1:1/h", secret=SECRET)
    first = render(target, notification(), now=T0)
    retry = render(target, notification(), now=T0 + 400)
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert retry.headers["webhook-timestamp"] == str(int(T0 + 400))
    verify(SECRET, retry.headers, retry.body, now=T0 + 400)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, first.headers, first.body, now=T0 + 400)


# --- the receiver example of docs/alerting.md, run as written --------------------------------

def _docs_receiver() -> str:
    text = (REPO / "docs" / "alerting.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    receivers = [b for b in blocks if "verify(" in b and "serve_forever" in b]
    assert len(receivers) == 1, "docs/alerting.md should hold exactly one receiver example"
    return receivers[0]


@pytest.fixture
def docs_receiver(tmp_path: Path):
    script = tmp_path / "receiver.py"
    script.write_text(_docs_receiver(), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "WEBHOOK_SECRET": SECRET, "PORT": str(port), "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "receiver.out", "w+")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/distillwatch"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)  # any answer (501 for GET) means it listens
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read()
            time.sleep(0.1)
    try:
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_docs_receiver_accepts_delivered_webhook_and_rejects_forgeries(docs_receiver) -> None:
    url, log = docs_receiver
    n = notification()
    attempts: list = []
    with http_client() as client:
        good = deliver(WebhookTarget(name="hook", url=url, secret=SECRET), n, client, attempts.append)
        wrong_key = deliver(WebhookTarget(name="evil", url=url, secret=OTHER_SECRET),
                            replace(n, alert_id="x9"), client, attempts.append)
        request = render(WebhookTarget(name="hook", url=url, secret=SECRET), n)
        tampered = client.post(url, headers=request.headers,
                               content=request.body.replace(b"region=br", b"region=jp"))
        stale = render(WebhookTarget(name="hook", url=url, secret=SECRET), n, now=time.time() - 600)
        replayed = client.post(url, headers=stale.headers, content=stale.body)
    assert (good.status, good.http_status) == ("delivered", 204)
    assert (wrong_key.status, wrong_key.http_status, wrong_key.attempt) == ("failed", 401, 1)
    assert [a.status for a in attempts] == ["delivered", "failed"]
    assert tampered.status_code == 401
    assert replayed.status_code == 401
    log.seek(0)
    out = log.read().splitlines()
    firing = [line for line in out if line.startswith("firing ")]
    assert firing == [f"firing region=br {n.headline}"]
    assert sum(line.startswith("rejected:") for line in out) == 3
    # the body the receiver parsed is the Alertmanager v4 shape
    assert json.loads(request.body)["version"] == "4"

"""Payload and example sampling is a deterministic draw per request id (a replay samples the
same requests): the draw is blake2b-64 of "salt:request_id" read as a fraction of 2**64."""

from __future__ import annotations

import hashlib

from streams.evaluator.outputs import SamplingPolicy


def _reference(request_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def test_draw_is_blake2b_of_salt_and_request_id_whatever_came_before() -> None:
    ids = ["req-00000001", "req-00000002", "ワンピース-1", "", "req-00000001"]
    for salt in ("payload", "forensic", "example", "payload", "new-salt"):
        assert [SamplingPolicy.unit(rid, salt) for rid in ids] == [_reference(rid, salt) for rid in ids]


def test_draws_are_uniform_and_differ_by_salt() -> None:
    draws = [SamplingPolicy.unit(f"req-{i:08d}", "payload") for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(sum(d < 0.05 for d in draws) / len(draws) - 0.05) < 0.006  # ~4.5 standard errors
    assert sum(SamplingPolicy.unit(f"req-{i:08d}", "example") == d for i, d in enumerate(draws)) == 0

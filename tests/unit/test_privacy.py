"""Customer text is never stored raw: keyed prompt hash and redaction (DESIGN §8)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from evaluators.privacy import Redactor, luhn_ok, prompt_hash


def test_prompt_hash_is_hmac_sha256_under_the_key() -> None:
    expected = hmac.new(b"k1", "is Nana in hardcover?".encode(), hashlib.sha256).hexdigest()
    assert prompt_hash("is Nana in hardcover?", b"k1") == expected
    assert prompt_hash("is Nana in hardcover?", b"k2") != expected
    assert len(expected) == 64


def test_prompt_hash_of_one_prompt_does_not_depend_on_earlier_ones() -> None:
    """Each hash starts from the key alone, whatever was hashed before under it or others."""
    prompts = ["a", "ワンピース 3巻", "a", "", "is Nana in hardcover?"]
    for key in (b"k1", b"k2", b"k1"):
        got = [prompt_hash(p, key) for p in prompts]
        assert got == [hmac.new(key, p.encode(), hashlib.sha256).hexdigest() for p in prompts]


@pytest.mark.parametrize("number, valid", [
    ("4111111111111111", True),   # the classic Visa test number
    ("5500005555555559", True),   # Mastercard test number
    ("4111111111111112", False),
    ("1234567890123", False),
])
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_ok(number) is valid


@pytest.mark.parametrize("text, gone, kept", [
    ("mail me at yuki.tanaka+manga@example.co.jp please", "yuki.tanaka+manga@example.co.jp", "please"),
    ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "exp 12/29"),
    ("card 4111-1111-1111-1111", "4111-1111-1111-1111", "card"),
    ("my order ORD-20261128 never came", "ORD-20261128", "never came"),
    ("call +81 90-1234-5678 after six", "90-1234-5678", "after six"),
])
def test_redaction_removes_personal_data(text: str, gone: str, kept: str) -> None:
    out = Redactor()(text)
    assert gone not in out
    assert kept in out


def test_redaction_keeps_numbers_that_are_not_cards() -> None:
    """A 16-digit run failing Luhn is not a card; volume numbers and prices survive."""
    out = Redactor()("ISBN-ish 4111111111111112, vol 12, ¥1,320")
    assert "vol 12" in out and "¥1,320" in out
    assert "[CARD]" not in out


def test_order_id_pattern_is_configurable() -> None:
    redact = Redactor(order_id_pattern=r"\bMA-\d{4}\b")
    assert "MA-1234" not in redact("about MA-1234")

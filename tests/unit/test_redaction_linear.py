"""Redaction takes time linear in the text: a hostile or just large prompt cannot stall it.

Every request's prompt goes through the Redactor, so a pattern that backtracks over the
whole text from every position turns one 1 MB prompt into hours of CPU in the evaluator
(found by fault test F6: the e-mail pattern, on any long run of letters, digits, dots or
dashes without an "@"). Each text below runs in a child process that must finish well
within the limit; a quadratic pattern needs hours for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
N = 1_000_000
HOSTILE = {
    "letters": "'a' * N",
    "digits and dashes": "'1-' * (N // 2) + 'x'",
    "digits and spaces": "'1 ' * (N // 2) + '1x'",
    "at signs": "'a@' * (N // 2)",
    "dotted domain": "'a@' + 'a.' * (N // 2) + '1'",
    "parentheses": "'(1' * (N // 2) + 'x'",
    "order prefix": "'ORD' + '1' * N + 'x'",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_megabyte_of_hostile_text_is_redacted_quickly(name: str) -> None:
    code = ("from evaluators.privacy import Redactor\n"
            f"N = {N}\ntext = {HOSTILE[name]}\nout = Redactor()(text)\nprint(len(out))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


def test_the_anchored_email_pattern_still_finds_addresses() -> None:
    from evaluators.privacy import Redactor

    redact = Redactor()
    assert redact("mail jo.doe+x@example.co.uk now") == "mail [EMAIL] now"
    assert redact("a@b.cd,e_f@g.hi;x-y@z.io") == "[EMAIL],[EMAIL];[EMAIL]"
    assert redact("<ann@ex.org>") == "<[EMAIL]>"

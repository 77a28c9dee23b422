"""The student's tokenizer and model: reproducible, local only, loadable by the worker backend."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from schemas.errors import ConfigError  # noqa: E402
from training.student import build_student, train_tokenizer  # noqa: E402
from training.synthetic import rare_collapse  # noqa: E402

TEXTS = [e.prompt for e in rare_collapse(n_train=600, n_heldout=200, seed=2)]


def test_vocabulary_is_the_same_on_every_run_and_skips_one_off_words() -> None:
    a = train_tokenizer(TEXTS, 4000, 64)
    b = train_tokenizer(list(reversed(TEXTS)), 4000, 64)
    assert a.get_vocab() == b.get_vocab()
    once = train_tokenizer(TEXTS + ["my name is zebulon"], 4000, 64)
    assert "zebulon" not in once.get_vocab()  # seen once: spelled out from characters
    assert once.tokenize("zebulon")[0] == "z" and "[UNK]" not in once.tokenize("zebulon")
    assert "shipping" in once.get_vocab()


def test_saved_student_loads_with_auto_classes_and_as_a_starting_point(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classes = ["faq", "returns", "safety_escalation"]
    model, tok, max_length = build_student("tiny", classes, TEXTS, dropout=0.0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.id2label == {0: "faq", 1: "returns", 2: "safety_escalation"}
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tok(TEXTS[:3])["input_ids"] == tok(TEXTS[:3])["input_ids"]
    # --student PATH: a local directory, its head resized to another label set.
    more = ["faq", "returns", "safety_escalation", "refund_fraud"]
    again, tok2, _ = build_student(str(tmp_path), more, [])
    assert again.config.num_labels == 4 and again.config.id2label[3] == "refund_fraud"
    assert tok2.get_vocab() == tok.get_vocab()
    with pytest.raises(ConfigError, match="not a size"):
        build_student(str(tmp_path / "nowhere"), classes, TEXTS)

"""The student: a transformers ``AutoModelForSequenceClassification`` and its tokenizer.

Either a local pretrained directory (``--student PATH``: loaded with ``local_files_only``,
its classification head resized to the configured intents), or a small BERT built from a
config with a WordPiece tokenizer trained on the training prompts (``--student tiny|mini|
small``). Nothing is ever downloaded. The config's ``id2label`` names the intents, which is
what the ``transformers`` worker backend reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class StudentSize:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    lr: float
    max_length: int = 64
    dropout: float = 0.1


SIZES = {
    "tiny": StudentSize(layers=2, hidden=64, heads=2, intermediate=128, vocab=4000, lr=3e-3),
    "mini": StudentSize(layers=4, hidden=128, heads=4, intermediate=512, vocab=8000, lr=1e-3),
    "small": StudentSize(layers=4, hidden=256, heads=4, intermediate=1024, vocab=16000, lr=5e-4,
                         max_length=128),
}
PRETRAINED_LR = 5e-5
"""Fine-tuning a pretrained directory: the usual BERT-style rate."""


def default_lr(spec: str) -> float:
    """Models trained from scratch take a larger step than pretrained ones."""
    size = SIZES.get(spec)
    return size.lr if size is not None else PRETRAINED_LR


def quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers in job output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int, min_count: int = 3) -> Any:
    """A lower-casing BERT-style WordPiece tokenizer whose vocabulary is learned from ``texts``.

    The vocabulary is the special tokens, every character seen (alone and as a ``##``
    continuation, so no word is ever unknown) and then the most frequent words seen at least
    ``min_count`` times, ties broken alphabetically. The floor keeps one-off words (a name, an
    address the redactor did not catch) out of a vocabulary that ships with the model. ``tokenizers``' own WordPiece trainer breaks ties in hash-map order, so it
    gives a different vocabulary on every run; this one is the same for the same data, which
    keeps a seeded training run (and every DDP rank) reproducible.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({ch for word in counts for ch in word})
    vocab = list(SPECIAL_TOKENS) + chars + [f"##{ch}" for ch in chars]
    seen = set(vocab)
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size or n < min_count:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def label_maps(classes: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    return dict(enumerate(classes)), {c: i for i, c in enumerate(classes)}


def build_student(spec: str, classes: Sequence[str], texts: Sequence[str],
                  dropout: float | None = None, tokenizer: Any = None,
                  vocab_min_count: int = 3) -> tuple[Any, Any, int]:
    """(model, tokenizer, max_length) for a size name or a local pretrained directory.

    ``tokenizer``: reuse one (DDP ranks load the one rank 0 trained) instead of training.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig
    from transformers import BertForSequenceClassification

    quiet_transformers()
    id2label, label2id = label_maps(classes)
    size = SIZES.get(spec)
    if size is not None:
        if tokenizer is None:
            tokenizer = train_tokenizer(texts, size.vocab, size.max_length, vocab_min_count)
        p = size.dropout if dropout is None else dropout
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
            num_attention_heads=size.heads, intermediate_size=size.intermediate,
            max_position_embeddings=size.max_length, hidden_dropout_prob=p,
            attention_probs_dropout_prob=p, id2label=id2label,
            label2id=label2id, pad_token_id=tokenizer.pad_token_id)
        return BertForSequenceClassification(config), tokenizer, size.max_length
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--student {spec!r}: not a size ({', '.join(SIZES)}) and not a local "
                          "model directory with a config.json")
    kwargs: dict[str, Any] = {}
    if dropout is not None:
        kwargs.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(classes), id2label=id2label, label2id=label2id,
        ignore_mismatched_sizes=True, local_files_only=True, **kwargs)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    return model, tokenizer, max_length


def parameter_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))

"""A local sequence-classification model (a student checkpoint written by ``train``).

The directory holds a Hugging Face tokenizer and an ``AutoModelForSequenceClassification``
whose config names the classes (``id2label``). torch and transformers are the optional
``training`` extra: they are imported when the backend is created, so a missing install fails
at start-up with the command to run; the weights are loaded on the first batch. Device:
CUDA when available, else CPU. A batch that fails in inference becomes error predictions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from streams.backends.base import BadResponse, Prediction, RequestLike, check_intent_probs

INSTALL_HINT = "pip install 'distillwatch[training]'"


def import_torch() -> tuple[Any, Any]:
    """(torch, transformers), or ImportError naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"the transformers backend needs torch and transformers ({exc.name or exc} is "
            f"missing): {INSTALL_HINT}") from exc
    return torch, transformers


class TransformersBackend:
    """Batched softmax over a classifier's logits, mapped to class names by ``id2label``."""

    def __init__(self, model_dir: Path | str, model_name: str | None = None,
                 model_version: str | None = None, max_batch: int = 32, max_length: int = 512,
                 device: str | None = None) -> None:
        self._torch, self._transformers = import_torch()
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ConfigError(f"model directory {self.model_dir} has no config.json; "
                              "expected a saved sequence-classification model and tokenizer")
        self.model_name = model_name or self.model_dir.name
        self.model_version = model_version or _config_digest(self.model_dir)
        self.max_batch = max_batch
        self.max_length = max_length
        self.device = device or ("cuda" if self._torch.cuda.is_available() else "cpu")
        self._tokenizer: Any = None
        self._model: Any = None
        self._labels: list[str] = []

    def load(self) -> None:
        """Load tokenizer and weights (once); called by the first ``predict``."""
        if self._model is not None:
            return
        auto = self._transformers
        self._tokenizer = auto.AutoTokenizer.from_pretrained(self.model_dir)
        model = auto.AutoModelForSequenceClassification.from_pretrained(self.model_dir)
        model.to(self.device)
        model.eval()
        id2label = model.config.id2label
        self._labels = [str(id2label[i]) for i in range(model.config.num_labels)]
        self._model = model

    def predict(self, batch: Sequence[RequestLike]) -> list[Prediction]:
        """One Prediction per request; every request of a chunk shares its latency."""
        self.load()
        out: list[Prediction] = []
        for start in range(0, len(batch), self.max_batch):
            out.extend(self._chunk(batch[start:start + self.max_batch]))
        return out

    def close(self) -> None:
        self._model = None

    def _chunk(self, chunk: Sequence[RequestLike]) -> list[Prediction]:
        started = time.monotonic()
        rows: list[list[float] | None]
        try:
            rows = self._infer([request.prompt for request in chunk])
            error = None
        except Exception as exc:  # OOM, tokenizer failure: answer every request with the reason
            rows, error = [None] * len(chunk), f"inference_error: {type(exc).__name__}: {exc}"[:300]
        latency_ms = (time.monotonic() - started) * 1000.0
        answered = datetime.now(timezone.utc)
        predictions = []
        for request, row in zip(chunk, rows):
            p = Prediction(request.request_id, latency_ms=latency_ms, model=self.model_name,
                           model_version=self.model_version, ts=answered, error=error)
            if row is not None:
                try:
                    p.intent_probs = check_intent_probs(dict(zip(self._labels, row)))
                except BadResponse as exc:
                    p.error = f"bad_response: {exc}"
            predictions.append(p)
        return predictions

    def _infer(self, prompts: list[str]) -> list[list[float] | None]:
        torch = self._torch
        encoded = self._tokenizer(prompts, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
        encoded = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        with torch.inference_mode():
            logits = self._model(**encoded).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu().tolist()
        return [list(map(float, row)) for row in probs]


def _config_digest(model_dir: Path) -> str:
    """A version that changes whenever the checkpoint's config (or weights index) changes."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json", "model.safetensors"):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(str(path.stat().st_size).encode())
            if path.stat().st_size < 1 << 20:
                digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:12]

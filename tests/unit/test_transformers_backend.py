"""The transformers backend without torch: a clear ImportError naming the extra to install."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from distillwatch.cli import app

TORCH_MISSING = importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None


@pytest.mark.skipif(not TORCH_MISSING, reason="torch and transformers are installed")
def test_missing_torch_names_the_extra(tmp_path: Path) -> None:
    from streams.backends.transformers import TransformersBackend

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ImportError, match=r"pip install 'distillwatch\[training\]'"):
        TransformersBackend(tmp_path)


@pytest.mark.skipif(not TORCH_MISSING, reason="torch and transformers are installed")
def test_cli_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["worker", "student", "--backend", "transformers",
                                      "--model-dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'distillwatch[training]'" in lines[0]


class _Tensor:
    """Just enough of a torch tensor for the backend's glue code: rows of floats."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = rows

    def to(self, _device: str) -> _Tensor:
        return self

    def float(self) -> _Tensor:
        return self

    def cpu(self) -> _Tensor:
        return self

    def tolist(self) -> list[list[float]]:
        return self.rows


def _fake_torch_stack(logits_of: dict[str, list[float]], labels: list[str]) -> tuple[object, object]:
    """Stand-ins for torch and transformers that record what the backend asked for."""
    import contextlib
    import math
    from types import SimpleNamespace

    calls: list[list[str]] = []

    def softmax(t: _Tensor, dim: int) -> _Tensor:
        assert dim == -1
        return _Tensor([[math.exp(x) / sum(math.exp(y) for y in row) for x in row] for row in t.rows])

    class Model:
        config = SimpleNamespace(id2label=dict(enumerate(labels)), num_labels=len(labels))

        def to(self, device: str) -> None:
            self.device = device

        def eval(self) -> None:
            pass

        def __call__(self, input_ids: _Tensor) -> object:
            prompts = [row[0] for row in input_ids.rows]
            if "explode" in prompts:
                raise RuntimeError("CUDA out of memory")
            return SimpleNamespace(logits=_Tensor([logits_of[p] for p in prompts]))

    def tokenizer(prompts: list[str], **kwargs: object) -> dict[str, _Tensor]:
        assert kwargs["truncation"] is True and kwargs["return_tensors"] == "pt"
        calls.append(list(prompts))
        return {"input_ids": _Tensor([[p] for p in prompts])}

    torch = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False),
                            inference_mode=contextlib.nullcontext, softmax=softmax)
    transformers = SimpleNamespace(
        AutoTokenizer=SimpleNamespace(from_pretrained=lambda _d: tokenizer),
        AutoModelForSequenceClassification=SimpleNamespace(from_pretrained=lambda _d: Model()),
        calls=calls)
    return torch, transformers


def test_batched_softmax_named_by_id2label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The glue around torch: chunking, softmax → intent_probs by id2label, failures as errors."""
    import math
    import sys

    import schemas
    from streams.backends import transformers as backend_module

    logits = {f"p{i}": [float(i % 3), 0.0, -1.0] for i in range(5)} | {"explode": [0.0] * 3}
    torch, transformers = _fake_torch_stack(logits, ["faq", "returns", "refund_fraud"])
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "transformers", transformers)
    (tmp_path / "config.json").write_text('{"num_labels": 3}')
    backend = backend_module.TransformersBackend(tmp_path, max_batch=2)
    assert backend.device == "cpu" and backend.model_version.startswith("sha256:")

    def req(prompt: str) -> schemas.ShadowRequest:
        return schemas.validate(schemas.ShadowRequest, {
            "request_id": f"r-{prompt}", "ts": "2025-03-01T12:00:00Z", "prompt": prompt, "slice": {}})

    batch = [req(p) for p in ("p0", "p1", "p2", "explode", "p4")]
    out = backend.predict(batch)
    assert transformers.calls == [["p0", "p1"], ["p2", "explode"], ["p4"]]  # type: ignore[attr-defined]
    assert [p.request_id for p in out] == [r.request_id for r in batch]
    expected = [math.exp(1.0), 1.0, math.exp(-1.0)]
    probs = out[1].intent_probs or {}
    assert list(probs) == ["faq", "returns", "refund_fraud"]
    assert math.isclose(probs["faq"], expected[0] / sum(expected))
    assert out[2].error == out[3].error == "inference_error: RuntimeError: CUDA out of memory"
    assert out[4].error is None and out[0].model == tmp_path.name

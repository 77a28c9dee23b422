"""JSON Schema (draft 2020-12) for each wire message, for producers in other languages.

Rules that JSON Schema cannot state (probabilities summing to 1 ± 1e-3, ``intent_probs``
required unless ``error``) are described in each schema's ``$comment``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.messages import CatalogRecord, Label, ModelResponse, RetrainRequest, ShadowRequest
from schemas.replay import ReplayLine

_COMMENTS = {
    "ModelResponse": "intent_probs: each value in [0, 1], summing to 1 ± 0.001; required "
    "unless error is set.",
    "Label": "carries at least one of intent, preferred, answer_correct.",
    "ReplayLine": "teacher/student responses must have that role and the request's id.",
}


def schemas() -> dict[str, dict[str, Any]]:
    """{name: JSON Schema} for every message of the wire contract."""
    models: list[type[BaseModel]] = [ShadowRequest, ModelResponse, CatalogRecord, Label, RetrainRequest]
    out: dict[str, dict[str, Any]] = {m.__name__: m.model_json_schema() for m in models}
    out["ReplayLine"] = TypeAdapter(ReplayLine).json_schema()
    out["ReplayLine"]["title"] = "ReplayLine"
    for name, schema in out.items():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://distillwatch.dev/schemas/v1/{name}.json"
        if name in _COMMENTS:
            schema["$comment"] = _COMMENTS[name]
    return out


def export(directory: Path) -> list[Path]:
    """Write ``<Name>.schema.json`` files; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written

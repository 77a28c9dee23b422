"""The distillation retraining job (DESIGN §9): shadow data in, a calibrated student out.

Entry point: :func:`training.job.run_training` (``TrainingOptions`` → ``TrainingResult``),
also reachable as ``training.run_training``. torch and transformers (the ``training`` extra)
are imported only by the modules that need them, so ``training.dataset`` and
``training.selection`` stay importable without them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainingOptions", "TrainingResult", "run_training"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from training import job

        return getattr(job, name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")

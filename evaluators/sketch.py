"""A mergeable quantile sketch with a relative-error guarantee (the DDSketch idea).

Positive values fall into logarithmic buckets ``ceil(log_gamma(x))`` with
``gamma = (1 + a) / (1 - a)``; a bucket's representative ``2 gamma^i / (gamma + 1)`` is within
relative error ``a`` of every value in it. Merging adds bucket counts, so sketches built on
parts of a stream merge into exactly the sketch of the whole stream. Values ≤ ``min_value``
are counted in a zero bucket and reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RELATIVE_ACCURACY = 0.005
"""Half of the 1 % the metrics promise, leaving room for rank rounding."""


@dataclass
class QuantileSketch:
    """Quantiles of non-negative values within a relative accuracy, mergeable."""

    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    min_value: float = 1e-9
    bins: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    count: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self._gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        self._log_gamma = math.log(self._gamma)

    @property
    def log_gamma(self) -> float:
        """``log(gamma)``: a value's bucket is ``ceil(log(value) / log_gamma)``."""
        return self._log_gamma

    def key(self, value: float) -> int | None:
        """Bucket index of a value (None: the zero bucket). Exposed so callers can reuse it."""
        if value <= self.min_value:
            return None
        return math.ceil(math.log(value) / self._log_gamma)

    def add_key(self, key: int | None, n: int = 1) -> None:
        """Count ``n`` values of a bucket; a negative ``n`` takes values back out."""
        if key is None:
            self.zeros += n
        else:
            total = self.bins.get(key, 0) + n
            if total:
                self.bins[key] = total
            else:
                del self.bins[key]
        self.count += n

    def update(self, value: float) -> QuantileSketch:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"sketch values must be finite and ≥ 0, got {value}")
        self.add_key(self.key(value))
        return self

    def extend(self, values: Iterable[float]) -> QuantileSketch:
        for v in values:
            self.update(v)
        return self

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        for k, n in other.bins.items():
            self.bins[k] = self.bins.get(k, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        return self

    def quantile(self, q: float) -> float | None:
        """The value of rank ``floor(q (n - 1))`` (numpy's ``method="lower"``), approximately."""
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen > rank:
                return 2 * self._gamma**k / (self._gamma + 1)
        raise AssertionError("unreachable: rank below count")

    def to_dict(self) -> dict[str, Any]:
        """Compact, JSON-friendly: parallel lists of bucket keys and counts."""
        keys = sorted(self.bins)
        return {"a": self.relative_accuracy, "z": self.zeros, "k": keys, "n": [self.bins[k] for k in keys]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        sketch = cls(relative_accuracy=data["a"])
        sketch.bins = dict(zip(data["k"], data["n"], strict=True))
        sketch.zeros = data["z"]
        sketch.count = sketch.zeros + sum(sketch.bins.values())
        return sketch

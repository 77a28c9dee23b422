"""Confidence intervals for rates."""

from __future__ import annotations

import math

Z95 = 1.959963984540054
"""The 0.975 quantile of the standard normal: a two-sided 95 % interval."""


def wilson(numerator: float, denominator: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion numerator/denominator.

    >>> lo, hi = wilson(0, 10)
    >>> (round(lo, 4), round(hi, 4))
    (0.0, 0.2775)
    """
    if denominator <= 0:
        raise ValueError("denominator must be > 0")
    p = numerator / denominator
    z2 = z * z
    centre = (p + z2 / (2 * denominator)) / (1 + z2 / denominator)
    half = z * math.sqrt(p * (1 - p) / denominator + z2 / (4 * denominator * denominator))
    half /= 1 + z2 / denominator
    # The Wilson interval always contains p (it is exactly [0, …] at 0 and […, 1] at 1);
    # rounding can leave it a hair off, e.g. a lower bound of 2e-19 for 0 of 1591.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))

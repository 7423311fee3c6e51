"""Cost model: predicted export time learned online from export history.

Pure object.  One model per export destination.  After every export the pipeline
reports the batch's bytes, item count and measured latency; the model keeps an
exponentially weighted least-squares fit of

    seconds = base + per_byte * bytes

(``base`` is the per-request overhead: the round trip, request setup).  Item
predictions (used by the predictive policy and to report queue cost in seconds)
split ``base`` over the mean batch size seen so far.  Before the first sample
the model uses a prior of 1 ms per request and 10 ns per byte.
"""

from __future__ import annotations

import math

__all__ = ["CostModel"]

_PRIOR_BASE = 1e-3
_PRIOR_PER_BYTE = 1e-8


class CostModel:
    """Exponentially weighted linear fit of export latency against batch bytes.

    Invariants: ``base >= 0`` and ``per_byte >= 0`` at all times; ``samples`` counts
    successful observations; sums decay by ``0.5 ** (1 / half_life)`` per sample.
    """

    __slots__ = (
        "_decay",
        "_mean_items",
        "_sw",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "base",
        "per_byte",
        "samples",
    )

    def __init__(self, half_life: int = 64) -> None:
        if half_life < 1:
            raise ValueError(f"half_life must be >= 1, got {half_life}")
        self._decay = 0.5 ** (1.0 / half_life)
        self._sw = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._mean_items = 1.0
        self.base = _PRIOR_BASE
        self.per_byte = _PRIOR_PER_BYTE
        self.samples = 0

    def observe(self, nbytes: int, items: int, seconds: float) -> None:
        """Learn from one successful export of ``items`` items and ``nbytes`` bytes."""
        if nbytes <= 0 or items <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        d = self._decay
        x, y = float(nbytes), seconds
        self._sw = self._sw * d + 1.0
        self._sx = self._sx * d + x
        self._sy = self._sy * d + y
        self._sxx = self._sxx * d + x * x
        self._sxy = self._sxy * d + x * y
        self._mean_items = self._mean_items * d + items * (1.0 - d) if self.samples else float(items)
        self.samples += 1
        self._fit()

    def _fit(self) -> None:
        sw, sx, sy = self._sw, self._sx, self._sy
        var = sw * self._sxx - sx * sx
        if self.samples >= 3 and var > 1e-9 * sw * self._sxx:
            slope = (sw * self._sxy - sx * sy) / var
            intercept = (sy - slope * sx) / sw
            if slope >= 0.0 and intercept >= 0.0:
                self.per_byte, self.base = slope, intercept
                return
            if slope < 0.0:  # latency does not grow with size here: all of it is overhead
                self.per_byte, self.base = 0.0, sy / sw
                return
            self.per_byte, self.base = sy / sx, 0.0  # negative intercept: proportional fit
            return
        # Too few or too similar sizes to separate the terms: keep the split, rescale to the mean.
        mean_y, mean_x = sy / sw, sx / sw
        predicted = self.base + self.per_byte * mean_x
        if predicted > 0:
            scale = mean_y / predicted
            self.base *= scale
            self.per_byte *= scale

    def predict(self, nbytes: int) -> float:
        """Predicted seconds to export one request of ``nbytes`` bytes."""
        return self.base + self.per_byte * nbytes

    def item_seconds(self, cost: int) -> float:
        """An item's share of a typical request: its bytes plus its part of the overhead."""
        return self.per_byte * cost + self.base / self._mean_items

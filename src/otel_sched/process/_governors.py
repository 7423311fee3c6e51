"""Governors: pure objects that turn resource samples into decisions.

No clock, thread or I/O: the caller passes the sample (from :mod:`._probe`) and ``now``, so they
are tested with scenario tables.  :class:`CpuMeter` (the pipeline's CPU share),
:class:`MemoryGovernor` (NORMAL / SOFT / HARD, like the Collector's ``memory_limiter``),
:class:`CpuGovernor` (fewer lanes, bigger batches when the process is CPU-bound) and
:class:`BatchTuner` (batch size and delay from the cost model's fit).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ._probe import ResourceSample

__all__ = [
    "BatchDecision",
    "BatchTuner",
    "CpuAdvice",
    "CpuGovernor",
    "CpuMeter",
    "MemoryGovernor",
    "MemoryLevel",
    "cpu_saturated",
    "shape_batches",
]


# -- CPU share ---------------------------------------------------------------------------------------


class CpuMeter:
    """The pipeline's CPU use in cores, EWMA-smoothed, from successive CPU-seconds totals.

    Pure: the caller passes the total (e.g. :func:`thread_cpu_seconds` over the pipeline's
    threads) and ``now``.  A total that goes down (a thread ended and its time left the
    sum) rebases without a reading, rather than reporting a negative share.
    """

    __slots__ = ("_alpha", "_last_at", "_last_cpu", "readings", "share")

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self._alpha = alpha
        self._last_cpu: float | None = None
        self._last_at = 0.0
        self.readings = 0
        self.share = 0.0

    def update(self, pipeline_cpu_seconds: float, now: float) -> float:
        """Record the total at ``now``; returns the smoothed share in cores."""
        last_cpu = self._last_cpu
        if last_cpu is None or pipeline_cpu_seconds < last_cpu:
            self._last_cpu, self._last_at = pipeline_cpu_seconds, now
            return self.share
        elapsed = now - self._last_at
        if elapsed <= 0:
            return self.share
        raw = (pipeline_cpu_seconds - last_cpu) / elapsed
        # The first reading is taken as is: smoothing it from 0 would hide a busy start.
        self.share = raw if self.readings == 0 else self._alpha * raw + (1.0 - self._alpha) * self.share
        self.readings += 1
        self._last_cpu, self._last_at = pipeline_cpu_seconds, now
        return self.share


# -- memory --------------------------------------------------------------------------------------------


class MemoryLevel(enum.Enum):
    NORMAL = 0
    SOFT = 1  # stop growing: shed low priority, refuse what is not worth the memory
    HARD = 2  # give memory back: shed queued items until below the soft level


def _level_of(ratio: float | None, soft: float, hard: float, scale: float) -> int:
    if ratio is None:
        return 0
    if ratio >= hard * scale:
        return 2
    return 1 if ratio >= soft * scale else 0


_LEVELS = (MemoryLevel.NORMAL, MemoryLevel.SOFT, MemoryLevel.HARD)


class MemoryGovernor:
    """Memory pressure as NORMAL / SOFT / HARD, in the manner of the Collector's ``memory_limiter``.

    Two independent sources, the worse one wins:

    * the pipeline's own bytes against its budget: SOFT at ``soft_fraction``, HARD at
      ``hard_fraction``;
    * the whole process against its container: when the RSS or the container's working
      set reaches ``container_headroom`` of the container limit, at least SOFT; halfway
      from there to the limit, HARD -- the pipeline gives its memory back first, because
      the application's memory cannot be shed.

    Hysteresis: a level is left only once its source is ``hysteresis`` (5 %) below the
    threshold that entered it, so a queue hovering at a threshold does not flap.
    """

    def __init__(
        self,
        budget_bytes: int,
        soft_fraction: float = 0.8,
        hard_fraction: float = 0.95,
        container_headroom: float = 0.9,
        *,
        minimum_bytes: int = 1,
        hysteresis: float = 0.05,
    ) -> None:
        floor = max(1, minimum_bytes)
        if budget_bytes < floor:
            raise ValueError(f"memory budget must be at least {floor} bytes, got {budget_bytes}")
        if not 0.0 < soft_fraction < hard_fraction <= 1.0:
            raise ValueError(
                f"need 0 < soft_fraction < hard_fraction <= 1, got {soft_fraction!r} and {hard_fraction!r}"
            )
        if not 0.0 < container_headroom < 1.0:
            raise ValueError(f"container_headroom must be in (0, 1), got {container_headroom!r}")
        if not 0.0 <= hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        self.budget_bytes = budget_bytes
        self._soft = soft_fraction
        self._hard = hard_fraction
        self._c_soft = container_headroom
        self._c_hard = container_headroom + (1.0 - container_headroom) / 2.0
        self._stay = 1.0 - hysteresis
        self._own = self._proc = 0  # each source's level, for its own hysteresis
        self.current = MemoryLevel.NORMAL
        self.reason: str | None = None  # "pipeline" or "container": what set the current level
        self.transitions = 0

    def next_threshold_bytes(self) -> float:
        """Pipeline bytes at which the budget source enters the level above the current one."""
        if self._own >= 2:
            return math.inf
        return self.budget_bytes * (self._soft if self._own == 0 else self._hard)

    def level(self, pipeline_bytes: int, sample: ResourceSample | None) -> MemoryLevel:
        """The pressure level after this reading (see the class docstring for the rule)."""
        own = max(0, pipeline_bytes) / self.budget_bytes
        process = _container_ratio(sample)
        # Per source: rise at once, fall only as far as the lowered (hysteresis) thresholds allow.
        self._own = max(
            _level_of(own, self._soft, self._hard, 1.0),
            min(self._own, _level_of(own, self._soft, self._hard, self._stay)),
        )
        self._proc = max(
            _level_of(process, self._c_soft, self._c_hard, 1.0),
            min(self._proc, _level_of(process, self._c_soft, self._c_hard, self._stay)),
        )
        new = max(self._own, self._proc)
        if new != self.current.value:
            self.transitions += 1
            self.current = _LEVELS[new]
        if new == 0:
            self.reason = None
        else:
            self.reason = "pipeline" if self._own >= self._proc else "container"
        return self.current


def _container_ratio(sample: ResourceSample | None) -> float | None:
    if sample is None or not sample.container_limit:
        return None
    used = max((v for v in (sample.rss, sample.container_usage) if v is not None), default=None)
    return None if used is None else used / sample.container_limit


# -- CPU -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuAdvice:
    """Multipliers for the dispatcher: lanes ``x max_lanes_factor``, batch size ``x batch_factor``."""

    max_lanes_factor: float
    batch_factor: float


def cpu_saturated(sample: ResourceSample | None) -> bool:
    """Whether the process is CPU-bound, by the rule :class:`CpuGovernor` documents."""
    if sample is None or sample.process_cpu is None:
        return False
    if sample.cpu_count == 1:
        return sample.process_cpu >= 0.95
    # Only when the machine has no spare capacity: fewer lanes would not give a GIL-bound
    # process CPU that idle cores could, and they cost throughput against slow collectors.
    return sample.process_cpu >= 0.9 and sample.system_cpu is not None and sample.system_cpu >= 0.9


def shape_batches(
    items: int, delay: float, cpu_factor: float, max_items: int, max_delay: float
) -> tuple[int, float]:
    """Batch size and delay: the tuner's (``items``, ``delay``) scaled by the CPU governor's
    ``cpu_factor`` -- fewer, larger requests while the process is CPU-saturated -- and never past
    the configured ``max_items`` / ``max_delay``."""
    return min(max_items, max(1, int(items * cpu_factor))), min(max_delay, delay * cpu_factor)


class CpuGovernor:
    """Keeps the pipeline's CPU within ``cap_cores`` while the process is CPU-bound.

    Saturated means: the process uses at least 0.9 of a core -- about all one GIL-bound
    interpreter can -- and the machine has no spare capacity (``system_cpu >= 0.9``); on
    a single CPU (the count is lowered to a container's CPU quota), process CPU >= 0.95
    alone.  Then,
    when the pipeline's share exceeds the cap, each sample scales lanes by ``cap / share``
    (down to ``min_lanes_factor``) and batch size by ``share / cap`` (up to
    ``max_batch_factor``: fewer, bigger requests amortise per-request overhead).  When
    the machine has idle capacity (``system_cpu < 0.5``) the advice returns to 1.0 / 1.0
    so backlogs drain at full speed.  In between, the advice holds.

    No flapping: switching between reducing and full speed takes ``confirm`` (2)
    consecutive samples asking for it; a sample asking for neither resets the count.
    """

    _REDUCE, _FULL = "reduce", "full"

    def __init__(
        self,
        cap_cores: float = 0.25,
        *,
        min_lanes_factor: float = 0.1,
        max_batch_factor: float = 4.0,
        confirm: int = 2,
    ) -> None:
        if not (cap_cores > 0 and math.isfinite(cap_cores)):
            raise ValueError(f"cap_cores must be a positive number of cores, got {cap_cores!r}")
        if not 0.0 < min_lanes_factor <= 1.0:
            raise ValueError(f"min_lanes_factor must be in (0, 1], got {min_lanes_factor!r}")
        if max_batch_factor < 1.0:
            raise ValueError(f"max_batch_factor must be >= 1, got {max_batch_factor!r}")
        if confirm < 1:
            raise ValueError(f"confirm must be >= 1, got {confirm!r}")
        self.cap_cores = cap_cores
        self._min_lanes = min_lanes_factor
        self._max_batch = max_batch_factor
        self._confirm = confirm
        self._direction = self._FULL
        self._pending: str | None = None
        self._pending_count = 0
        self._lanes = 1.0
        self._batch = 1.0

    def advise(self, pipeline_share: float, sample: ResourceSample | None) -> CpuAdvice:
        want: str | None = None
        if cpu_saturated(sample) and pipeline_share > self.cap_cores:
            want = self._REDUCE
        elif sample is not None and sample.system_cpu is not None and sample.system_cpu < 0.5:
            want = self._FULL
        if want is None:
            self._pending, self._pending_count = None, 0
        elif want != self._direction:
            self._pending_count = self._pending_count + 1 if self._pending == want else 1
            self._pending = want
            if self._pending_count >= self._confirm:
                self._direction = want
                self._pending, self._pending_count = None, 0
                self._apply(want, pipeline_share)
        else:
            self._pending, self._pending_count = None, 0
            if want == self._REDUCE:
                self._apply(want, pipeline_share)  # still over the cap at the reduced rate: further
        return CpuAdvice(self._lanes, self._batch)

    def _apply(self, direction: str, share: float) -> None:
        if direction == self._FULL:
            self._lanes = self._batch = 1.0
            return
        ratio = self.cap_cores / share
        self._lanes = max(self._min_lanes, self._lanes * ratio)
        self._batch = min(self._max_batch, self._batch / ratio)


# -- batch tuning --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """One :meth:`BatchTuner.tune` outcome; ``target_items`` is the rule's size before step limits."""

    items: int
    delay: float
    target_items: int
    overhead_share: float  # per-request overhead / predicted export time at ``items``


class BatchTuner:
    """Batch size and delay from the cost model's fit ``seconds = base + per_byte * bytes``.

    Size: the smallest batch whose per-request overhead is at most ``overhead_target``
    (10 %) of its transfer time, ``n = base / (overhead_target * per_byte * item_bytes)``,
    clamped to ``[min_items, max_items]``: large batches when overhead (the round trip)
    dominates, small ones -- lower latency, more requests in parallel -- when bytes do.
    Delay: the predicted export time of such a batch, clamped to ``[min_delay,
    max_delay]``, so a lane's next batch fills while the previous one is in flight.

    Stability: each call moves the size at most ``x step`` (2) towards the target and
    ignores changes under 10 % (size or delay); ``adjustments`` counts actual changes.
    """

    __slots__ = (
        "_dead_band",
        "_max_delay",
        "_max_items",
        "_min_delay",
        "_min_items",
        "_step",
        "_target",
        "adjustments",
        "delay",
        "items",
        "last",
    )

    def __init__(
        self,
        min_items: int,
        max_items: int,
        min_delay: float,
        max_delay: float,
        *,
        overhead_target: float = 0.1,
        step: float = 2.0,
        initial_items: int | None = None,
        initial_delay: float | None = None,
    ) -> None:
        if not 1 <= min_items <= max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {min_items} and {max_items}")
        if not 0.0 <= min_delay <= max_delay:
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {min_delay!r} and {max_delay!r}")
        if not overhead_target > 0.0:
            raise ValueError(f"overhead_target must be > 0, got {overhead_target!r}")
        if step <= 1.0:
            raise ValueError(f"step must be > 1, got {step!r}")
        self._min_items, self._max_items = min_items, max_items
        self._min_delay, self._max_delay = min_delay, max_delay
        self._target = overhead_target
        self._step = step
        self._dead_band = 0.1
        self.items = min(max_items, max(min_items, max_items if initial_items is None else initial_items))
        self.delay = min(max_delay, max(min_delay, max_delay if initial_delay is None else initial_delay))
        self.adjustments = 0
        self.last: BatchDecision | None = None

    def tune(self, base: float, per_byte: float, mean_item_bytes: float) -> tuple[int, float]:
        """Returns (items, delay seconds); invalid inputs leave the current decision as it is."""
        if not (
            math.isfinite(base)
            and math.isfinite(per_byte)
            and math.isfinite(mean_item_bytes)
            and base >= 0
            and per_byte >= 0
            and mean_item_bytes > 0
        ):
            return self.items, self.delay
        per_item = per_byte * mean_item_bytes
        lo, hi = self._min_items, self._max_items
        if per_item <= 0:
            target = hi
        else:
            ideal = base / (self._target * per_item)
            # (the tolerance keeps float noise such as 10.000000000000002 from rounding up to 11)
            target = hi if ideal >= hi else max(lo, math.ceil(ideal * (1.0 - 1e-9)))
        items = self.items
        if abs(target - items) > self._dead_band * items:
            stepped = min(max(target, math.ceil(items / self._step)), math.floor(items * self._step))
            items = min(hi, max(lo, stepped))
        predicted = base + per_item * items
        delay = min(self._max_delay, max(self._min_delay, predicted))
        if abs(delay - self.delay) <= self._dead_band * self.delay and items == self.items:
            delay = self.delay
        if items != self.items or delay != self.delay:
            self.adjustments += 1
            self.items, self.delay = items, delay
        self.last = BatchDecision(
            items=self.items,
            delay=self.delay,
            target_items=target,
            overhead_share=base / predicted if predicted > 0 else 0.0,
        )
        return self.items, self.delay

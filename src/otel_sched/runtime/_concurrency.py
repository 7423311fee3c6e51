"""Adaptive concurrency and execution modes: pure control objects, driven with explicit time.

:class:`AIMDController` decides how many exports may be in flight at once, in the
spirit of Vector's adaptive request concurrency: start at 1; once per observation
window (about one round trip) raise the limit by one if the limit was actually
reached and the window's mean latency stayed within 50% (or 25 ms) of the baseline
(the best window of the last 30 -- the round trip without queueing); cut it
multiplicatively on back-pressure (failure, timeout, throttling) or when latency
rises well above the baseline.  A server's ``Retry-After`` pauses dispatching.

:class:`ModeMachine` is the pipeline's visible execution mode:

    normal --(every endpoint failing)--> degraded --(a success)--> recovering
    recovering --(enough consecutive successes)--> normal
    recovering --(every endpoint failing again)--> degraded

While degraded the pipeline keeps accepting and shedding by priority, but sends at
most one probe export at a time, spaced by a backoff (0.5 s growing by 1.5x up to
5 s), instead of hammering a collector that is down -- and notices its return within
a few seconds.
"""

from __future__ import annotations

import enum
import math
from collections import deque

__all__ = ["AIMDController", "Mode", "ModeMachine", "Signal"]


class Signal(enum.Enum):
    """What one export told the controller."""

    OK = "ok"
    ERROR = "error"  # failed or raised: back-pressure
    TIMEOUT = "timeout"  # overran export_timeout_millis: back-pressure
    THROTTLED = "throttled"  # HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED: back-pressure


class AIMDController:
    """Additive-increase / multiplicative-decrease limit on concurrent exports.

    Invariants: ``1 <= limit <= max_limit``; ``baseline`` is None until the first
    successful window, then the lowest window mean latency of the last ``history`` windows.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        initial_limit: int = 1,
        decrease_ratio: float = 0.5,
        latency_decrease_ratio: float = 0.9,
        history: int = 30,
        min_window: float = 0.05,
        tolerance: float = 0.5,
        slack: float = 0.025,
        adaptive: bool = True,
    ) -> None:
        if max_limit < 1:
            raise ValueError(f"max_limit must be >= 1, got {max_limit}")
        self.max_limit = max_limit
        self.adaptive = adaptive  # False: the limit stays at max_limit; Retry-After is still honoured
        self.limit = max(1, min(initial_limit if adaptive else max_limit, max_limit))
        self._decrease = decrease_ratio  # on back-pressure
        self._latency_decrease = latency_decrease_ratio  # on latency well above the baseline
        self._history: deque[float] = deque(maxlen=history)  # recent window means
        # Below this much extra latency it is scheduling jitter (GIL hand-offs), not queueing.
        self._slack = slack
        self._min_window = min_window
        self._tolerance = tolerance
        self.baseline: float | None = None
        self._window_start: float | None = None
        self._sum = 0.0
        self._count = 0
        self._reached = False
        self._pressure = False
        self.paused_until = 0.0
        self.increases = 0
        self.decreases = 0
        self._in_flight = 0  # exports started and not yet observed
        self._last_cut = -math.inf

    def dispatched(self, now: float) -> None:
        """An export started."""
        if self._window_start is None:
            self._window_start = now
        self._in_flight += 1
        if self._in_flight >= self.limit:
            self._reached = True

    def observe(self, now: float, latency: float, signal: Signal, retry_after: float | None = None) -> None:
        """An export finished (or was given up at its timeout) after ``latency`` seconds."""
        self._in_flight = max(0, self._in_flight - 1)
        if self._window_start is None:
            self._window_start = now - latency
        if signal is Signal.OK:
            self._sum += latency
            self._count += 1
        elif now - latency >= self._last_cut:
            # Exports started before the last cut reflect the old limit: they may not cut it again.
            self._pressure = True
            if retry_after is not None and retry_after > 0:
                self.paused_until = max(self.paused_until, now + retry_after)
        # One decision per window of about one round trip: a burst of failures cuts once, not per failure.
        window = max(self._min_window, self.baseline or 0.0)
        if now - self._window_start >= window:
            self._close_window(now)

    def may_dispatch(self, now: float, in_flight: int) -> bool:
        return in_flight < self.limit and now >= self.paused_until

    def _close_window(self, now: float) -> None:
        if self._pressure:
            self._cut(self._decrease)
            self._last_cut = now
        elif self._count:
            mean = self._sum / self._count
            self._history.append(mean)
            # The baseline is the best recent round trip: latency above it is queueing somewhere
            # (at the collector or in our own CPU), which more concurrency would only lengthen.
            self.baseline = min(self._history)
            if mean > self.baseline * (1 + self._tolerance) and mean - self.baseline > self._slack:
                self._cut(self._latency_decrease)
            elif self._reached:
                self._raise()
        self._window_start = now
        self._sum = 0.0
        self._count = 0
        self._reached = self._in_flight >= self.limit  # still at the limit: the new window starts "reached"
        self._pressure = False

    def _raise(self) -> None:
        if self.adaptive and self.limit < self.max_limit:
            self.limit += 1
            self.increases += 1

    def _cut(self, ratio: float) -> None:
        if not self.adaptive:
            return
        new = max(1, math.floor(self.limit * ratio))
        if new < self.limit:
            self.decreases += 1
        self.limit = new


class Mode(str, enum.Enum):
    NORMAL = "normal"
    DEGRADED = "degraded"
    RECOVERING = "recovering"


class ModeMachine:
    """The execution mode and, while degraded, when the next probe may go.

    Invariants: ``backoff`` is within [min_backoff, max_backoff]; ``next_probe`` only
    matters in DEGRADED.
    """

    def __init__(
        self,
        *,
        recovery_successes: int = 5,
        min_backoff: float = 0.5,
        max_backoff: float = 5.0,
        backoff_factor: float = 1.5,
    ) -> None:
        self.mode = Mode.NORMAL
        self._factor = backoff_factor
        self._needed = recovery_successes
        self._successes = 0
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self.backoff = min_backoff
        self.next_probe = 0.0
        self.transitions = 0

    def on_result(self, now: float, ok: bool, all_down: bool) -> Mode | None:
        """Record one export result; returns the new mode when it changed."""
        before = self.mode
        if ok:
            self.backoff = self._min_backoff
            if self.mode is Mode.DEGRADED:
                self.mode = Mode.RECOVERING
                self._successes = 1
            elif self.mode is Mode.RECOVERING:
                self._successes += 1
                if self._successes >= self._needed:
                    self.mode = Mode.NORMAL
        else:
            self._successes = 0
            if all_down:
                if self.mode is Mode.DEGRADED:
                    self.backoff = min(self._max_backoff, self.backoff * self._factor)
                self.mode = Mode.DEGRADED
                self.next_probe = now + self.backoff
        if self.mode is not before:
            self.transitions += 1
            return self.mode
        return None

    def may_dispatch(self, now: float, in_flight: int) -> bool:
        """Degraded: one probe at a time, no sooner than the backoff allows."""
        if self.mode is not Mode.DEGRADED:
            return True
        return in_flight == 0 and now >= self.next_probe

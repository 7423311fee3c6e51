"""Routing: health-aware choice among several collector endpoints.  Pure object, explicit time.

The collector fleet is the scale-out tier: this module only spreads one process's
exports over the endpoints it was given and steers around failing ones; it never
coordinates with other processes.

Per endpoint it keeps an EWMA of export latency, the exports in flight and a
circuit: a failed export opens it for a backoff (0.5 s growing by 1.5x up to 5 s, or
the server's Retry-After); when the backoff has passed, one probe export is let through (half-open); a success
closes it.  :meth:`Router.pick` chooses the closed endpoint with the least expected
wait, ``(in_flight + 1) * latency``, so load follows measured speed.
"""

from __future__ import annotations

__all__ = ["Endpoint", "Router"]


class Endpoint:
    """Health of one endpoint.  Invariant: ``in_flight >= 0``; ``probing`` only while open."""

    __slots__ = ("backoff", "failures", "in_flight", "latency", "name", "open_until", "probing", "successes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.latency = 0.0  # EWMA seconds; 0 until measured (optimistic: new endpoints get traffic)
        self.in_flight = 0
        self.failures = 0  # consecutive
        self.successes = 0
        self.open_until = 0.0  # circuit open (endpoint taken out) until this time
        self.backoff = 0.0
        self.probing = False

    def healthy(self, now: float) -> bool:
        return self.failures == 0 or (now >= self.open_until and not self.probing)


class Router:
    """Chooses an endpoint per batch and learns from each result."""

    def __init__(
        self,
        names: list[str],
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 5.0,
        factor: float = 1.5,
        alpha: float = 0.3,
    ) -> None:
        if not names:
            raise ValueError("a router needs at least one endpoint")
        self.endpoints = [Endpoint(n) for n in names]
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._factor = factor
        self._factor = factor
        self._alpha = alpha

    def pick(self, now: float, exclude: frozenset[int] = frozenset()) -> int | None:
        """The endpoint to send the next batch to, or None when all are out (or excluded)."""
        best: int | None = None
        best_score = 0.0
        for i, ep in enumerate(self.endpoints):
            if i in exclude or not ep.healthy(now):
                continue
            score = (ep.in_flight + 1) * max(ep.latency, 1e-4)
            if best is None or score < best_score:
                best, best_score = i, score
        return best

    def all_down(self, now: float) -> bool:
        return all(ep.failures > 0 for ep in self.endpoints)

    def started(self, index: int) -> None:
        """A batch was routed to ``index``."""
        ep = self.endpoints[index]
        ep.in_flight += 1
        if ep.failures:
            ep.probing = True  # half-open: this export is the probe

    def finished(self, index: int) -> None:
        """The batch routed to ``index`` left (whichever lane finally sent it)."""
        ep = self.endpoints[index]
        ep.in_flight = max(0, ep.in_flight - 1)

    def record(self, index: int, now: float, ok: bool, latency: float, open_for: float | None = None) -> None:
        """The result of an export that really went to ``index``; ``open_for``: a server's Retry-After."""
        ep = self.endpoints[index]
        ep.probing = False
        if ok:
            ep.failures = 0
            ep.successes += 1
            ep.backoff = 0.0
            ep.latency = (
                latency if ep.latency == 0.0 else (1 - self._alpha) * ep.latency + self._alpha * latency
            )
        else:
            ep.failures += 1
            ep.successes = 0
            grown = min(self._max_backoff, ep.backoff * self._factor)
            ep.backoff = self._min_backoff if ep.backoff == 0.0 else grown
            ep.open_until = now + (ep.backoff if open_for is None else max(open_for, 0.0))

    def next_reopen(self) -> float | None:
        """Earliest time an open circuit may take a probe (for the scheduler's wake-up)."""
        times = [ep.open_until for ep in self.endpoints if ep.failures and not ep.probing]
        return min(times) if times else None

"""Batch former: cuts the policy's order into export calls by count, bytes and delay.

Pure object; the scheduler thread passes ``now``.

A batch is due when a full batch is waiting (``max_items`` tasks or ``max_bytes``
predicted bytes), when the oldest waiting task has waited ``delay`` seconds since
the queue became non-empty or since the last batch, or when a flush asks for it.
A task whose cost alone exceeds ``max_bytes`` is sent in a batch of its own, so it
never stalls the queue.
"""

from __future__ import annotations

from ._policies import Policy
from ._queues import QueueSet
from ._task import Task

__all__ = ["BatchFormer"]


class BatchFormer:
    """Decides when a batch is due and takes it out of the queues in policy order.

    Invariants: every returned batch has 1 <= len <= max_items tasks and its cost
    sum is <= max_bytes, unless it is a single oversized task.
    """

    def __init__(self, max_items: int, max_bytes: int, delay: float) -> None:
        if max_items < 1 or max_bytes < 1 or delay <= 0:
            raise ValueError(
                "batch limits must be positive, got "
                f"max_items={max_items} max_bytes={max_bytes} delay={delay}"
            )
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.delay = delay
        # When the current batch window opened (the queue became non-empty, or the
        # previous batch left with tasks still queued); None while the queue is empty.
        self._window_start: float | None = None

    def note_arrival(self, now: float) -> None:
        if self._window_start is None:
            self._window_start = now

    def due(self, queues: QueueSet, now: float, *, flushing: bool = False) -> bool:
        if not queues.count:
            self._window_start = None
            return False
        if flushing or queues.count >= self.max_items or queues.nbytes >= self.max_bytes:
            return True
        return self._window_start is not None and now - self._window_start >= self.delay

    def next_due(self, queues: QueueSet) -> float | None:
        """Monotonic time at which the delay expires, or None when nothing waits."""
        if not queues.count or self._window_start is None:
            return None
        return self._window_start + self.delay

    def form(self, queues: QueueSet, policy: Policy, now: float) -> list[Task]:
        batch: list[Task] = []
        nbytes = 0
        max_items, max_bytes = self.max_items, self.max_bytes
        while len(batch) < max_items:
            sq = policy.select(now)
            if sq is None:
                break
            cost = sq.tasks[0].cost
            if batch and nbytes + cost > max_bytes:
                break
            task = queues.pop_head(sq)
            policy.served(sq, task, now)
            batch.append(task)
            nbytes += cost
            if nbytes >= max_bytes:
                break
        self._window_start = now if queues.count else None
        return batch

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
from ._queues import QueueSet, SubQueue
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
        self.runs: list[tuple[int, str, int, int]] = []  # of the last formed batch (see form)

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
        """The next batch, in the policy's order.

        Runs: when the policy picks the same sub-queue twice in a row, one decision serves as
        many of its head tasks as the policy says it would have chosen one by one
        (:meth:`Policy.run_limit`), so a backlogged tenant costs a decision per run, not per
        task, while interleaved tenants pay nothing for it.  ``runs`` is left holding
        (priority, tenant, tasks, bytes) per run.
        """
        batch: list[Task] = []
        runs: list[tuple[int, str, int, int]] = []
        nbytes = 0
        max_items, max_bytes = self.max_items, self.max_bytes
        last: SubQueue | None = None
        while len(batch) < max_items:
            sq = policy.select(now)
            if sq is None:
                break
            head_cost = sq.tasks[0].cost
            if batch and nbytes + head_cost > max_bytes:  # the head does not fit in what is left
                break
            if sq is not last:  # tenants interleave more often than not: a first pick is one task
                last = sq
                single = True
            else:  # chosen twice in a row: ask how long a run it gets
                limit, credit = policy.run_limit(sq, now, max_items - len(batch))
                room: float = max_bytes - nbytes
                if credit < room:
                    room = credit
                single = limit == 1 or head_cost >= room
            if single:
                # A run of one (tenants interleaved, or the head fills the room; alone when it is
                # oversized, rather than stall the queue): as cheap as the per-task path.
                task = queues.pop_head(sq)
                policy.served(sq, task, now)
                batch.append(task)
                runs.append((sq.priority, sq.tenant, 1, head_cost))
                nbytes += head_cost
            else:
                tasks = sq.tasks
                if limit >= len(tasks) and sq.nbytes <= room:  # the whole sub-queue fits (no per-task sum)
                    n, size = len(tasks), sq.nbytes
                else:
                    n = size = 0
                    for task in tasks:
                        cost = task.cost
                        if n >= limit or size + cost > room:
                            break
                        n += 1
                        size += cost
                run = queues.take(sq, n, size)
                policy.served_run(sq, run, size, now)
                batch.extend(run)
                runs.append((sq.priority, sq.tenant, n, size))
                nbytes += size
            if nbytes >= max_bytes:
                break
        self._window_start = now if queues.count else None
        self.runs = runs
        return batch

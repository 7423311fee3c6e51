"""Queues: one FIFO sub-queue per (priority class, tenant[, cost bucket]).

The :class:`QueueSet` owns the tasks and the accounting (counts and predicted bytes
per class and per tenant) that admission needs; the policy only decides *which*
sub-queue is served next.  Tasks leave a sub-queue at its head (served) or at its
tail (shed by admission), both O(1).

Bounded by what is queued, not by how many keys were ever seen: a sub-queue that empties
is forgotten (with the policy's references to it) once empty ones outnumber the non-empty,
so a tenant attribute with a million distinct values costs memory only for the sub-queues
holding tasks now.

Single-threaded: only the scheduler thread touches a QueueSet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from ._task import PriorityClass, Task

__all__ = ["NUM_CLASSES", "QueueSet", "SubQueue"]

NUM_CLASSES = len(PriorityClass)
# Empty sub-queues kept around for reuse before a sweep (a steady set of tenants never sweeps).
_SLACK = 256


class SubQueue:
    """Tasks of one (class, tenant[, bucket]) in arrival order.

    Invariants: ``nbytes == sum(t.cost for t in tasks)``; ``weight > 0``.
    ``linked``, ``deficit`` and ``turn`` belong to the policy that serves this
    sub-queue (a sub-queue is served by exactly one policy structure).
    """

    __slots__ = (
        "bucket",
        "deficit",
        "key",
        "linked",
        "nbytes",
        "priority",
        "tasks",
        "tenant",
        "turn",
        "weight",
    )

    def __init__(self, key: tuple[int, str, int], weight: float) -> None:
        self.key = key
        self.priority, self.tenant, self.bucket = key
        self.tasks: deque[Task] = deque()
        self.nbytes = 0
        self.weight = weight
        self.linked = False
        self.deficit = 0.0
        self.turn = False

    def __repr__(self) -> str:
        return f"SubQueue({self.key}, n={len(self.tasks)}, bytes={self.nbytes})"


class QueueSet:
    """All queued tasks of one pipeline, with the accounting admission reads.

    Invariants:
      * ``count == sum(len(sq.tasks))`` and ``nbytes == sum(sq.nbytes)``;
      * ``class_count[c]`` / ``class_bytes[c]`` are the same sums per class;
      * ``usage[c][tenant]`` is the bytes of that tenant in class ``c``, and the
        key is absent when the tenant has nothing queued in that class.
    """

    def __init__(
        self,
        weight_of: Callable[[str], float],
        on_activate: Callable[[SubQueue], None],
        *,
        cost_buckets: bool = False,
        on_compact: Callable[[], None] | None = None,
    ) -> None:
        self._weight_of = weight_of
        self._on_activate = on_activate
        self._on_compact = on_compact
        self._cost_buckets = cost_buckets
        self._subqueues: dict[tuple[int, str, int], SubQueue] = {}
        self.live = 0  # non-empty sub-queues
        self.count = 0
        self.nbytes = 0
        self.class_count = [0] * NUM_CLASSES
        self.class_bytes = [0] * NUM_CLASSES
        self.usage: list[dict[str, int]] = [{} for _ in range(NUM_CLASSES)]
        self.tenant_count: dict[str, int] = {}

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[SubQueue]:
        return iter(list(self._subqueues.values()))

    @property
    def size(self) -> int:
        """Sub-queues held, empty ones included (bounded by about twice the non-empty ones)."""
        return len(self._subqueues)

    def push(self, task: Task) -> SubQueue:
        bucket = task.cost.bit_length() if self._cost_buckets else 0
        key = (task.priority, task.tenant, bucket)
        sq = self._subqueues.get(key)
        if sq is None:
            sq = self._create(key)
        sq.tasks.append(task)
        self._account(sq, 1, task.cost)
        if len(sq.tasks) == 1:
            self.live += 1
            self._on_activate(sq)
        return sq

    def push_run(self, tasks: list[Task], nbytes: int) -> None:
        """:meth:`push` each of ``tasks`` (consecutive arrivals of one class and tenant, whose costs
        sum to ``nbytes``): the same sub-queue, order and activation, accounted once."""
        if self._cost_buckets:  # the bucket follows each task's cost
            for task in tasks:
                self.push(task)
            return
        first = tasks[0]
        key = (first.priority, first.tenant, 0)
        sq = self._subqueues.get(key)
        if sq is None:
            sq = self._create(key)
        was_empty = not sq.tasks
        sq.tasks.extend(tasks)
        self._account(sq, len(tasks), nbytes)
        if was_empty:
            self.live += 1
            self._on_activate(sq)

    def _create(self, key: tuple[int, str, int]) -> SubQueue:
        """A new sub-queue for ``key``; first, when empty sub-queues outnumber the non-empty ones
        (plus a slack), forget them: O(sub-queues), at most once per that many creations."""
        if len(self._subqueues) >= 2 * self.live + _SLACK:
            self.forget_empty()
        sq = self._subqueues[key] = SubQueue(key, self._weight_of(key[1]))
        return sq

    def pop_head(self, sq: SubQueue) -> Task:
        task = sq.tasks.popleft()
        self._account(sq, -1, -task.cost)
        return task

    def take(self, sq: SubQueue, n: int, nbytes: int) -> list[Task]:
        """The ``n`` head tasks of ``sq``, whose costs sum to ``nbytes``, accounted once."""
        popleft = sq.tasks.popleft
        run = [popleft() for _ in range(n)]
        self._account(sq, -n, -nbytes)
        return run

    def pop_tail(self, sq: SubQueue) -> Task:
        task = sq.tasks.pop()
        self._account(sq, -1, -task.cost)
        return task

    def newest_of(self, priority: int, tenant: str) -> SubQueue | None:
        """The sub-queue of (priority, tenant) whose tail is the newest task."""
        best: SubQueue | None = None
        if not self._cost_buckets:
            sq = self._subqueues.get((priority, tenant, 0))
            return sq if sq is not None and sq.tasks else None
        for sq in self._subqueues.values():  # only the predictive policy buckets; few buckets per tenant
            if (
                sq.priority == priority
                and sq.tenant == tenant
                and sq.tasks
                and (best is None or sq.tasks[-1].seq > best.tasks[-1].seq)
            ):
                best = sq
        return best

    def oldest_of(self, priority: int, tenant: str) -> SubQueue | None:
        """The sub-queue of (priority, tenant) whose head is the oldest task."""
        if not self._cost_buckets:
            sq = self._subqueues.get((priority, tenant, 0))
            return sq if sq is not None and sq.tasks else None
        best: SubQueue | None = None
        for sq in self._subqueues.values():  # only the predictive policy buckets; few buckets per tenant
            if (
                sq.priority == priority
                and sq.tenant == tenant
                and sq.tasks
                and (best is None or sq.tasks[0].seq < best.tasks[0].seq)
            ):
                best = sq
        return best

    def lowest_nonempty_class(self) -> int | None:
        for c, n in enumerate(self.class_count):
            if n:
                return c
        return None

    def _account(self, sq: SubQueue, count: int, cost: int) -> None:
        """``count`` tasks of ``cost`` bytes in all joined (> 0) or left (< 0) ``sq``."""
        sq.nbytes += cost
        self.count += count
        self.nbytes += cost
        c = sq.priority
        self.class_count[c] += count
        self.class_bytes[c] += cost
        usage = self.usage[c]
        left = usage.get(sq.tenant, 0) + cost
        if left:
            usage[sq.tenant] = left
        else:
            del usage[sq.tenant]
        tenant_left = self.tenant_count.get(sq.tenant, 0) + count
        if tenant_left:
            self.tenant_count[sq.tenant] = tenant_left
        else:
            del self.tenant_count[sq.tenant]
        if count < 0 and not sq.tasks:
            self.live -= 1

    def forget_empty(self) -> int:
        """Drop empty sub-queues, after the policy has let go of them (``on_compact``); returns how
        many.  Called from :meth:`push` (never while a policy decision is being served)."""
        if self._on_compact is not None:
            self._on_compact()
        dead = [k for k, sq in self._subqueues.items() if not sq.tasks and not sq.linked]
        for k in dead:
            del self._subqueues[k]
        return len(dead)

    def mean_cost(self, default: float) -> float:
        """Mean cost (bytes) of a queued task: what an item is expected to weigh; ``default`` when empty."""
        return self.nbytes / self.count if self.count else default

    def min_seq(self) -> int | None:
        """Smallest queued sequence number (O(number of sub-queues); used by force_flush only)."""
        heads = [sq.tasks[0].seq for sq in self._subqueues.values() if sq.tasks]
        return min(heads) if heads else None

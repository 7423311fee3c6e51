"""Policies: which queued task is exported next.

A policy is a pure object driven by the scheduler thread with an explicit ``now``
(monotonic seconds); it never reads a clock, starts a thread or takes a lock, so
it is tested with plain scenario tables.  The :class:`~otel_sched.scheduling._queues.QueueSet`
owns the tasks; a policy keeps references to non-empty sub-queues and answers
:meth:`Policy.select` -- the sub-queue whose head goes next.

Cost of one decision, S = number of non-empty sub-queues, K = 3 priority classes:

=============== ======================================================= =============
policy          order                                                   per decision
=============== ======================================================= =============
fifo            arrival order                                           O(log S)
priority        highest class first, aging lifts waiting classes        O(K log S)
fair            deficit round robin over tenants on cost, by weight     O(K) amortised
predictive      shortest predicted export time first, with aging        O(log S)
deadline        earliest deadline first (enqueue time + class max age)  O(log S)
priority_fair   priority classes with aging, DRR over tenants inside    O(K) amortised
=============== ======================================================= =============
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from ._queues import NUM_CLASSES, SubQueue
from ._task import PriorityClass, Task

__all__ = [
    "DeadlinePolicy",
    "FairPolicy",
    "FifoPolicy",
    "Policy",
    "PredictivePolicy",
    "PriorityFairPolicy",
    "PriorityPolicy",
    "make_policy",
]


class Policy(ABC):
    """Decides the serving order.  Driven by one thread; ``now`` is monotonic seconds."""

    name: ClassVar[str]
    #: Split sub-queues by cost bucket (powers of two), so that heads approximate the smallest items.
    cost_buckets: ClassVar[bool] = False

    @abstractmethod
    def activate(self, sq: SubQueue) -> None:
        """``sq`` has just become non-empty."""

    @abstractmethod
    def select(self, now: float) -> SubQueue | None:
        """The non-empty sub-queue whose head should be served next, or None if all are empty.

        Does not remove anything; the caller pops the head and then calls :meth:`served`.
        """

    def served(self, sq: SubQueue, task: Task, now: float) -> None:  # noqa: B027 - optional hook
        """``task`` was taken from the head of ``sq``."""

    @abstractmethod
    def compact(self) -> None:
        """Let go of every empty sub-queue (unlink it), so the QueueSet can forget it.  O(held)."""

    def run_limit(self, sq: SubQueue, now: float, room: int) -> tuple[int, float]:
        """How much of ``sq``, just returned by :meth:`select`, may leave in a row.

        Returns (tasks, bytes): serving up to that many head tasks (each fitting in what is
        left of the byte credit) one by one, :meth:`select` would have returned ``sq`` every
        time, so the batch former takes them as one run with one decision.  At most ``room``
        tasks are asked for.  The default, one task, is always right.
        """
        return 1, math.inf

    def served_run(self, sq: SubQueue, tasks: list[Task], nbytes: int, now: float) -> None:
        """``tasks`` (``nbytes`` in all) were taken from the head of ``sq`` as one run."""
        for task in tasks:
            self.served(sq, task, now)


# -- building blocks -------------------------------------------------------------------------------


class _HeadHeap:
    """Sub-queues ordered by a key of their head task, with lazy repair.

    Guarantees: each sub-queue appears at most once (``sq.linked``); an entry whose
    head changed (served, or shed at the tail until empty) is repaired or removed on
    the next :meth:`peek`, so every operation is O(log S) amortised.
    """

    __slots__ = ("_heap", "_key")

    def __init__(self, key: Callable[[Task], float]) -> None:
        self._key = key
        self._heap: list[tuple[float, int, SubQueue]] = []

    def add(self, sq: SubQueue) -> None:
        if not sq.linked:
            sq.linked = True
            head = sq.tasks[0]
            heapq.heappush(self._heap, (self._key(head), head.seq, sq))

    def peek(self) -> SubQueue | None:
        heap = self._heap
        while heap:
            _, seq, sq = heap[0]
            if not sq.tasks:
                heapq.heappop(heap)
                sq.linked = False
                continue
            head = sq.tasks[0]
            if head.seq != seq:
                heapq.heapreplace(heap, (self._key(head), head.seq, sq))
                continue
            return sq
        return None

    def compact(self) -> None:
        live = []
        for entry in self._heap:
            if entry[2].tasks:
                live.append(entry)
            else:
                entry[2].linked = False
        if len(live) != len(self._heap):
            heapq.heapify(live)  # stale heads stay stale: peek repairs them as before
            self._heap = live

    def run_limit(self, sq: SubQueue, room: int) -> int:
        """Head tasks of ``sq`` (the root, just peeked) that would stay the root one after another.

        heapreplace keeps a new head at the root exactly when its (key, seq) is below both
        children's entries -- stale entries included, as the per-task path compares them too --
        and leaves the heap as it was, so a run of such heads is the per-task order.
        """
        heap = self._heap
        size = len(heap)
        if size == 1:
            return room
        tasks = sq.tasks
        if room < 2 or len(tasks) < 2:
            return 1
        # Entries compare by (key, seq) and seqs are unique: the sub-queue itself is never compared.
        runner = heap[1] if size == 2 or heap[1] < heap[2] else heap[2]
        runner_key, runner_seq = runner[0], runner[1]
        key = self._key
        n = 1
        for task in itertools.islice(tasks, 1, room):
            k = key(task)
            if k > runner_key or (k == runner_key and task.seq > runner_seq):
                break
            n += 1
        return n


class _Flow:
    """One DRR participant: a sub-queue, or (for ``fair``) a tenant's sub-queues by class."""

    __slots__ = ("deficit", "linked", "parts", "turn", "weight")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.deficit = 0.0
        self.turn = False
        self.linked = False
        self.parts: list[SubQueue | None] = [None] * NUM_CLASSES

    def head_queue(self) -> SubQueue | None:
        for c in range(NUM_CLASSES - 1, -1, -1):  # highest class inside the flow first
            sq = self.parts[c]
            if sq is not None and sq.tasks:
                return sq
        return None


class _DeficitRoundRobin:
    """Deficit round robin over flows, cost = predicted bytes.

    Each turn a flow earns ``quantum * weight`` bytes of credit and is served while
    its head fits the credit.  A head larger than one quantum is topped up to fit
    in a single turn, so a decision never loops over the ring more than once
    (O(1) amortised) at the price of over-serving oversized items by at most one
    item per turn.
    """

    __slots__ = ("_quantum", "_ring")

    def __init__(self, quantum: int) -> None:
        self._quantum = float(quantum)
        self._ring: deque[_Flow] = deque()

    def add(self, flow: _Flow) -> None:
        if not flow.linked:
            flow.linked = True
            flow.deficit = 0.0
            flow.turn = False
            self._ring.append(flow)

    def peek(self) -> SubQueue | None:
        ring = self._ring
        while ring:
            flow = ring[0]
            sq = flow.head_queue()
            if sq is None:
                ring.popleft()
                flow.linked = False
                flow.deficit = 0.0
                for part in flow.parts:
                    if part is not None:
                        part.linked = False  # lets the QueueSet forget it once idle
                continue
            cost = sq.tasks[0].cost
            if not flow.turn:
                flow.turn = True
                flow.deficit += self._quantum * flow.weight
                if flow.deficit < cost:
                    flow.deficit = float(cost)
            if cost <= flow.deficit:
                return sq
            flow.turn = False
            ring.rotate(-1)
        return None

    def compact(self) -> None:
        """Drop empty flows from the ring and empty parts from the flows that stay."""
        ring: deque[_Flow] = deque()
        for flow in self._ring:
            parts = flow.parts
            for c, part in enumerate(parts):
                if part is not None and not part.tasks:
                    part.linked = False
                    parts[c] = None
            if any(parts):
                ring.append(flow)
            else:
                flow.linked = False
                flow.deficit = 0.0
                flow.turn = False
        self._ring = ring

    @staticmethod
    def charge(flow: _Flow, cost: int) -> None:
        flow.deficit -= cost

    def credit(self) -> float:
        """Bytes the flow just returned by :meth:`peek` may still be served before the ring turns."""
        return self._ring[0].deficit


class _ClassAging:
    """Strict priority classes where waiting raises a class one level per ``aging`` seconds.

    effective(c) = c + (now - since[c]) / aging, where ``since[c]`` is when class c was
    last served or became non-empty; the highest effective class wins (ties go to the
    higher class).  A waiting class therefore overtakes every class above it within
    ``aging * (levels above)`` seconds: nothing starves.
    """

    __slots__ = ("_aging", "_since", "_sticky_class", "_sticky_now")

    def __init__(self, aging: float) -> None:
        self._aging = aging
        self._since: list[float | None] = [None] * NUM_CLASSES
        # The class that keeps winning at ``_sticky_now`` even after being served (see choose).
        self._sticky_now: float | None = None
        self._sticky_class = 0

    def activated(self, c: int, at: float) -> None:
        self._sticky_now = None  # a class that was empty may now compete
        if self._since[c] is None:
            self._since[c] = at

    def sticky(self, now: float) -> int | None:
        """The class ``choose`` would pick again at ``now``, if that is known without recomputing."""
        return self._sticky_class if self._sticky_now == now else None

    def choose(self, heads: list[SubQueue | None], now: float) -> int | None:
        best: int | None = None
        best_eff = runner_up = -1.0
        for c in range(NUM_CLASSES - 1, -1, -1):
            if heads[c] is None:
                self._since[c] = None
                continue
            since = self._since[c]
            eff = c + (now - (now if since is None else since)) / self._aging
            if best is None or eff > best_eff:
                best, best_eff, runner_up = c, eff, best_eff
            elif eff > runner_up:
                runner_up = eff
        # Served, the winner's effective priority drops to its class; if that still beats every
        # other class, it wins again at this ``now`` until it empties: no need to recompute.
        if best is not None and runner_up < best:
            self._sticky_now, self._sticky_class = now, best
        else:
            self._sticky_now = None
        return best

    def served(self, c: int, now: float) -> None:
        self._since[c] = now


# -- the policies ----------------------------------------------------------------------------------


class _HeapPolicy(Policy):
    """Serves the sub-queue whose head has the smallest key; the subclass gives the key."""

    _heap: _HeadHeap

    def activate(self, sq: SubQueue) -> None:
        self._heap.add(sq)

    def select(self, now: float) -> SubQueue | None:
        return self._heap.peek()

    def compact(self) -> None:
        self._heap.compact()

    def run_limit(self, sq: SubQueue, now: float, room: int) -> tuple[int, float]:
        return self._heap.run_limit(sq, room), math.inf


class FifoPolicy(_HeapPolicy):
    """Arrival order across all classes and tenants: the stock processor's order."""

    name = "fifo"

    def __init__(self) -> None:
        self._heap = _HeadHeap(lambda t: float(t.seq))


class DeadlinePolicy(_HeapPolicy):
    """Earliest deadline first; a task's deadline is its enqueue time plus its class's max age."""

    name = "deadline"

    def __init__(self) -> None:
        self._heap = _HeadHeap(lambda t: t.deadline)


class PredictivePolicy(_HeapPolicy):
    """Shortest predicted export time first, with aging.

    key = predicted_seconds(cost) + aging_rate * enqueued: waiting one second is
    worth ``aging_rate`` seconds of predicted export time, so large items are
    served eventually.  Sub-queues are split by cost bucket (powers of two) so the
    heads the heap compares are the small items, within a factor of two.
    """

    name = "predictive"
    cost_buckets = True

    def __init__(self, predict_seconds: Callable[[int], float], aging_rate: float = 0.01) -> None:
        self._heap = _HeadHeap(lambda t: predict_seconds(t.cost) + aging_rate * t.enqueued)


class _AgedClasses(Policy):
    """Priority classes chosen by :class:`_ClassAging`; each class orders its own sub-queues."""

    _aging: _ClassAging
    _classes: Sequence[_HeadHeap] | Sequence[_DeficitRoundRobin]

    def select(self, now: float) -> SubQueue | None:
        sticky = self._aging.sticky(now)
        if sticky is not None:
            sq = self._classes[sticky].peek()
            if sq is not None:
                return sq
        heads = [c.peek() for c in self._classes]
        chosen = self._aging.choose(heads, now)
        return None if chosen is None else heads[chosen]

    def served(self, sq: SubQueue, task: Task, now: float) -> None:
        self._aging.served(sq.priority, now)

    def run_limit(self, sq: SubQueue, now: float, room: int) -> tuple[int, float]:
        if self._aging.sticky(now) is None:  # another class may win once this one is served
            return 1, math.inf
        return self._within_class(sq, room)

    def _within_class(self, sq: SubQueue, room: int) -> tuple[int, float]:
        return 1, math.inf


class PriorityPolicy(_AgedClasses):
    """Strict priority classes with aging; arrival order inside a class."""

    name = "priority"

    def __init__(self, aging_seconds: float) -> None:
        self._aging = _ClassAging(aging_seconds)
        self._heaps = [_HeadHeap(lambda t: float(t.seq)) for _ in range(NUM_CLASSES)]
        self._classes = self._heaps

    def activate(self, sq: SubQueue) -> None:
        self._heaps[sq.priority].add(sq)
        self._aging.activated(sq.priority, sq.tasks[0].enqueued)

    def _within_class(self, sq: SubQueue, room: int) -> tuple[int, float]:
        return self._heaps[sq.priority].run_limit(sq, room), math.inf

    def compact(self) -> None:
        for heap in self._heaps:
            heap.compact()

    def served_run(self, sq: SubQueue, tasks: list[Task], nbytes: int, now: float) -> None:
        self._aging.served(sq.priority, now)


class FairPolicy(Policy):
    """Weighted fair queuing across tenants (DRR on predicted bytes); inside a tenant, higher class first."""

    name = "fair"

    def __init__(self, quantum: int) -> None:
        self._drr = _DeficitRoundRobin(quantum)
        self._flows: dict[str, _Flow] = {}

    def activate(self, sq: SubQueue) -> None:
        flow = self._flows.get(sq.tenant)
        if flow is None:
            flow = self._flows[sq.tenant] = _Flow(sq.weight)
        flow.parts[sq.priority] = sq
        sq.linked = True
        self._drr.add(flow)

    def select(self, now: float) -> SubQueue | None:
        return self._drr.peek()

    def compact(self) -> None:
        self._drr.compact()
        self._flows = {k: f for k, f in self._flows.items() if f.linked}

    def served(self, sq: SubQueue, task: Task, now: float) -> None:
        self._drr.charge(self._flows[sq.tenant], task.cost)

    def run_limit(self, sq: SubQueue, now: float, room: int) -> tuple[int, float]:
        return room, self._drr.credit()

    def served_run(self, sq: SubQueue, tasks: list[Task], nbytes: int, now: float) -> None:
        self._drr.charge(self._flows[sq.tenant], nbytes)


class PriorityFairPolicy(_AgedClasses):
    """Priority classes with aging; weighted DRR across tenants inside each class (the default)."""

    name = "priority_fair"

    def __init__(self, aging_seconds: float, quantum: int) -> None:
        self._aging = _ClassAging(aging_seconds)
        self._drr = [_DeficitRoundRobin(quantum) for _ in range(NUM_CLASSES)]
        self._classes = self._drr
        self._flows: dict[tuple[int, str, int], _Flow] = {}

    def activate(self, sq: SubQueue) -> None:
        flow = self._flows.get(sq.key)
        if flow is None:
            flow = self._flows[sq.key] = _Flow(sq.weight)
        flow.parts[sq.priority] = sq
        sq.linked = True
        self._drr[sq.priority].add(flow)
        self._aging.activated(sq.priority, sq.tasks[0].enqueued)

    def served(self, sq: SubQueue, task: Task, now: float) -> None:
        self._aging.served(sq.priority, now)
        self._drr[sq.priority].charge(self._flows[sq.key], task.cost)

    def _within_class(self, sq: SubQueue, room: int) -> tuple[int, float]:
        return room, self._drr[sq.priority].credit()

    def served_run(self, sq: SubQueue, tasks: list[Task], nbytes: int, now: float) -> None:
        self._aging.served(sq.priority, now)
        self._drr[sq.priority].charge(self._flows[sq.key], nbytes)

    def compact(self) -> None:
        for drr in self._drr:
            drr.compact()
        self._flows = {k: f for k, f in self._flows.items() if f.linked}


def make_policy(
    name: str,
    *,
    aging_seconds: float = 1.0,
    quantum: int = 16 * 1024,
    predict_seconds: Callable[[int], float] | None = None,
) -> Policy:
    """Build a policy by its configured name (already validated by the config module)."""
    if name == "fifo":
        return FifoPolicy()
    if name == "priority":
        return PriorityPolicy(aging_seconds)
    if name == "fair":
        return FairPolicy(quantum)
    if name == "predictive":
        return PredictivePolicy(predict_seconds or (lambda cost: cost * 1e-8))
    if name == "deadline":
        return DeadlinePolicy()
    if name == "priority_fair":
        return PriorityFairPolicy(aging_seconds, quantum)
    raise ValueError(
        f"policy {name!r} is not one of fifo, priority, fair, predictive, deadline, priority_fair"
    )


def deadline_for(max_age_millis: Mapping[PriorityClass, float]) -> list[float]:
    """Max age in seconds indexed by class value, for the classify stage."""
    return [max_age_millis[PriorityClass(c)] / 1000.0 for c in range(NUM_CLASSES)]

"""Admission and shedding: what to drop when the queues are full.

Pure object, driven by the scheduler thread.  When an arriving task does not fit
(by count or by predicted bytes) the victim is, in order:

1. if a class below the arriving task's holds tasks: the oldest task of the tenant
   furthest over its fair share in the lowest such class (``shed_priority``);
2. within the arriving task's own class: the oldest task of the tenant furthest over
   its weighted fair share (queued bytes / weight), counting the arrival --
   ``queue_full`` when that is the arriving task's own tenant (it makes room for its
   own newer item, as the stock processor drops its oldest), ``shed_fair_share`` when
   it is another tenant;
3. the arriving task, when everything queued outranks it (``queue_full``).

Dropping the oldest keeps what is exported fresh and queue waits bounded.  Victims'
trace ids are remembered (bounded) so that, while the queue stays under pressure,
later spans of a shed trace are dropped too (``shed_trace``) instead of evicting spans
of traces that are still whole.  HIGH tasks are never dropped for trace consistency,
and a newer HIGH task is never dropped while anything below HIGH is queued.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from operator import attrgetter

from ._queues import NUM_CLASSES, QueueSet
from ._task import PriorityClass, Task

__all__ = ["Admission", "Drop"]

Drop = tuple[Task, str]

_HIGH = int(PriorityClass.HIGH)
_cost_of = attrgetter("cost")


class _Heaviest:
    """Approximate arg-max of ``usage[tenant] / weight`` for one class.

    Entries are pushed when a tenant's usage grows by more than 1/8 since its last
    entry and repaired lazily when read, so the answer is within 12.5% of the true
    maximum and every operation is O(log T) amortised.  Rebuilt when stale entries
    outnumber live tenants, which keeps the heap bounded.
    """

    __slots__ = ("_heap", "_marks")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._marks: dict[str, float] = {}

    def grew(self, tenant: str, share: float) -> None:
        mark = self._marks.get(tenant)
        if mark is None or share > mark * 1.125:
            self._marks[tenant] = share
            heapq.heappush(self._heap, (-share, tenant))

    def reset(self, usage: dict[str, int], weight_of: Callable[[str], float]) -> None:
        self._marks = {t: u / weight_of(t) for t, u in usage.items() if u > 0}
        self._heap = [(-share, t) for t, share in self._marks.items()]
        heapq.heapify(self._heap)

    def top(self, share_of: Callable[[str], float], live: int) -> str | None:
        heap = self._heap
        if len(heap) > 4 * live + 64:
            self._rebuild(share_of)
        while heap:
            neg, tenant = heap[0]
            current = share_of(tenant)
            if current <= 0.0:
                heapq.heappop(heap)
                self._marks.pop(tenant, None)
                continue
            if current * 1.125 < -neg:  # shrank since pushed: re-rank it
                self._marks[tenant] = current
                heapq.heapreplace(heap, (-current, tenant))
                continue
            return tenant
        return None

    def _rebuild(self, share_of: Callable[[str], float]) -> None:
        fresh = {t: share_of(t) for t in self._marks}
        self._marks = {t: s for t, s in fresh.items() if s > 0.0}
        self._heap = [(-s, t) for t, s in self._marks.items()]
        heapq.heapify(self._heap)


class Admission:
    """Bounds the queues by count and predicted bytes; picks shedding victims."""

    def __init__(
        self,
        max_count: int,
        max_bytes: int,
        weight_of: Callable[[str], float],
        *,
        shed_trace_memory: int = 16384,
        pressure: float = 0.9,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError(f"admission bounds must be positive, got count={max_count} bytes={max_bytes}")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._weight_of = weight_of
        self._heaviest = [_Heaviest() for _ in range(NUM_CLASSES)]
        self._shed_traces: OrderedDict[int, None] = OrderedDict()
        self._shed_trace_memory = shed_trace_memory
        self._pressure_count = int(max_count * pressure)
        self._pressure_bytes = int(max_bytes * pressure)
        self._track_count = max_count // 2
        self._track_bytes = max_bytes // 2
        self._tracking = False

    def admit(self, task: Task, queues: QueueSet) -> list[Drop]:
        """Make room for ``task`` and push it, or refuse it.

        Returns what was dropped (possibly ``task`` itself), each with its reason.
        """
        if task.cost > self.max_bytes:
            return [(task, "item_too_large")]
        if (
            task.priority < _HIGH
            and task.trace_id
            and task.trace_id in self._shed_traces
            and (queues.count >= self._pressure_count or queues.nbytes >= self._pressure_bytes)
        ):
            return [(task, "shed_trace")]
        drops: list[Drop] = []
        while queues.count + 1 > self.max_count or queues.nbytes + task.cost > self.max_bytes:
            victim = self._victim(task, queues)
            if victim is None:
                self._remember(task)
                drops.append((task, "queue_full"))
                return drops
            drops.append(victim)
            self._remember(victim[0])
        queues.push(task)
        # Who is heaviest matters only when the queue can fill: track it from half full on.
        if queues.count >= self._track_count or queues.nbytes >= self._track_bytes:
            if not self._tracking:
                self._tracking = True
                for c, heaviest in enumerate(self._heaviest):
                    heaviest.reset(queues.usage[c], self._weight_of)
            else:
                c = task.priority
                self._heaviest[c].grew(
                    task.tenant, queues.usage[c].get(task.tenant, 0) / self._weight_of(task.tenant)
                )
        else:
            self._tracking = False
        return drops

    def admit_runs(self, runs: list[list[Task]], queues: QueueSet) -> list[Drop]:
        """:meth:`admit` each task of ``runs`` in order; a run is consecutive arrivals of one class
        and tenant.  Returns what was dropped.

        Below half full (with the runs in), where :meth:`admit` can neither drop, shed nor track
        who is heaviest, each run is pushed and accounted at once: the same queues, order and
        drops.  From half full on, tasks go one by one: who is heaviest is an approximation whose
        answer depends on when each tenant's growth was noted, so it is noted per task, as
        :meth:`admit` notes it, and shedding picks the same victims either way.
        """
        sizes = [sum(map(_cost_of, run)) for run in runs]
        count, nbytes = queues.count + sum(map(len, runs)), queues.nbytes + sum(sizes)
        if count < self._track_count and nbytes < self._track_bytes:
            push_run = queues.push_run
            for run, size in zip(runs, sizes, strict=True):
                push_run(run, size)
            self._tracking = False
            return []
        drops: list[Drop] = []
        admit = self.admit
        for run in runs:
            for task in run:
                dropped = admit(task, queues)
                if dropped:
                    drops.extend(dropped)
        return drops

    def _victim(self, task: Task, queues: QueueSet) -> Drop | None:
        low = queues.lowest_nonempty_class()
        if low is None:
            return None
        if low < task.priority:
            reason = "shed_priority"
        elif low == task.priority:
            reason = "shed_fair_share"
        else:
            return None
        usage = queues.usage[low]
        weight_of = self._weight_of

        def share_of(tenant: str) -> float:
            return usage.get(tenant, 0) / weight_of(tenant)

        tenant = self._heaviest[low].top(share_of, len(usage))
        if tenant is None:  # accounting says non-empty; the heap lost track: fall back to a scan
            tenant = max(usage, key=share_of)
        if reason == "shed_fair_share":
            own = (usage.get(task.tenant, 0) + task.cost) / weight_of(task.tenant)
            if own >= share_of(tenant):  # the arriving task's tenant is the heaviest
                tenant, reason = task.tenant, "queue_full"
        sq = queues.oldest_of(low, tenant)
        if sq is None:
            return None  # nothing of its own queued: the arrival itself is refused
        return queues.pop_head(sq), reason

    def _remember(self, task: Task) -> None:
        if not task.trace_id or task.priority >= _HIGH:
            return
        traces = self._shed_traces
        traces[task.trace_id] = None
        traces.move_to_end(task.trace_id)
        if len(traces) > self._shed_trace_memory:
            traces.popitem(last=False)

"""The process-wide level above the processors: one memory budget, one export budget, weights.

Every pipeline in the process (spans, logs, several processors of one kind) registers
here.  Local queues stay per pipeline; this level decides how much each may hold and
how many exports each may have in flight:

* **memory** -- one budget (``memory_limit_mib``; default: the sum of the pipelines'
  own byte bounds x 1.5) over everything the pipelines hold (queued bytes, bytes in
  flight, and the intake).  A :class:`~otel_sched.process._governors.MemoryGovernor` turns the
  total, and the process's standing against its container limit, into a level like the
  Collector's memory_limiter.  A pipeline within its weighted share of the budget is held
  one level lower than the total, so a log flood pushes the logs pipeline into shedding
  while spans keep flowing.  SOFT: LOW items are refused and the batch delay halves;
  HARD: only HIGH items are accepted and the intake shrinks.
* **exports** -- a pipeline may have at most its weighted share of all lanes in flight
  while another pipeline is backlogged, and all of them when alone (work conserving).
* **CPU** -- the pipelines' own threads' CPU time is measured; when the process is
  CPU-saturated and the pipelines use more than ``cpu_cap_cores``, the lanes shrink
  (:class:`~otel_sched.process._governors.CpuGovernor`); with idle capacity they drain at full
  speed.

The resource probe (psutil, cgroup files) runs on its own background thread; pipelines
read its latest sample.  Decisions are refreshed at most every :data:`TICK` seconds by
whichever scheduler thread comes first; the lock is held only for that refresh.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._governors import CpuGovernor, CpuMeter, MemoryGovernor, MemoryLevel
from ._probe import ResourceProbe, thread_cpu_seconds

__all__ = ["CPU_EVERY", "TICK", "Coordinator", "Member", "coordinator"]

_logger = logging.getLogger(__name__)

TICK = 0.25
# The pipelines' thread clocks are read this often, not every TICK: the probe samples the machine
# once a second, so the CPU governor's other input changes no faster, and each reading is a
# syscall per thread (a pool's idle lanes included) on a scheduler thread.
CPU_EVERY = 1.0
_LEVELS = [MemoryLevel.NORMAL, MemoryLevel.SOFT, MemoryLevel.HARD]


class Member:
    """What the coordinator knows of one pipeline; written by the coordinator under its lock."""

    __slots__ = (
        "active",
        "budget_explicit",
        "budget_mib",
        "bytes",
        "collectors",
        "cpu_cap",
        "jobs",
        "level",
        "name",
        "ready",
        "resource_aware",
        "sent",
        "share_bytes",
        "threads",
        "weight",
    )

    def __init__(
        self,
        name: str,
        weight: float,
        budget_mib: float,
        budget_explicit: bool,
        cpu_cap: float,
        resource_aware: bool,
        threads: Callable[[], list[threading.Thread]],
        collectors: frozenset[str] | None = None,
    ) -> None:
        self.name = name
        self.weight = weight
        self.budget_mib = budget_mib
        self.budget_explicit = budget_explicit  # memory_limit_mib given: a process-wide figure
        self.cpu_cap = cpu_cap
        self.resource_aware = resource_aware
        self.threads = threads
        self.collectors = collectors  # host:port it exports to; None: unknown (shares with everyone)
        self.bytes = 0
        self.jobs = 0  # exports in flight
        self.active = False  # has a backlog: competes for export slots
        self.level = MemoryLevel.NORMAL
        self.share_bytes = 0  # its weighted share of the process-wide memory budget
        self.sent = 0.0  # bytes sent while contending, divided by weight (weighted fair turns)
        self.ready = False  # has a batch due and nothing of its own holding it back


class Coordinator:
    """Process-wide budgets.  Thread-safe; pipelines call :meth:`refresh` from their scheduler threads."""

    def __init__(
        self,
        probe_factory: Callable[[], ResourceProbe] = ResourceProbe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._members: dict[int, tuple[weakref.ReferenceType[Any], Member]] = {}
        self._probe_factory = probe_factory
        self._probe: ResourceProbe | None = None
        self._clock = clock
        self._last = -math.inf
        self._memory: MemoryGovernor | None = None
        self._budget = 0
        self._alarm = math.inf  # total held bytes at which the next level up starts (decided at once)
        self._cpu_meter = CpuMeter()
        self._cpu = CpuGovernor()
        self.lanes_factor = 1.0
        self.batch_factor = 1.0  # batches this much larger (within their bounds) while CPU-saturated
        self.pipeline_cpu = 0.0  # cores used by all pipeline threads (EWMA), read every CPU_EVERY
        self._cpu_read_at = -math.inf
        self.level = MemoryLevel.NORMAL

    # -- membership ---------------------------------------------------------------------------------

    def join(self, owner: Any, member: Member) -> None:
        with self._lock:
            self._members[id(owner)] = (weakref.ref(owner), member)
            self._rebudget()
            if member.resource_aware and self._probe is None:
                self._probe = self._probe_factory()
                self._probe.start()
            self._last = -math.inf

    def leave(self, owner: Any) -> None:
        with self._lock:
            self._members.pop(id(owner), None)
            self._rebudget()
            if self._probe is not None and not any(m.resource_aware for _, m in self._members.values()):
                self._probe.stop(timeout=1.0)
                self._probe = None

    def _rebudget(self) -> None:
        members = [m for _, m in self._members.values()]
        explicit = [m.budget_mib for m in members if m.budget_explicit]
        # An explicit limit is for the whole process; derived ones add up, one per pipeline.
        mib = max(explicit) if explicit else sum(m.budget_mib for m in members)
        self._budget = int(mib * 1024 * 1024)
        self._memory = MemoryGovernor(self._budget) if self._budget > 0 else None
        self._alarm = self._memory.next_threshold_bytes() if self._memory is not None else math.inf
        if members:
            self._cpu = CpuGovernor(cap_cores=min(m.cpu_cap for m in members))

    # -- decisions ------------------------------------------------------------------------------------------

    def refresh(
        self,
        owner: Any,
        held_bytes: int,
        active: bool,
        now: float | None = None,
        ready: bool = False,
        jobs: int = 0,
    ) -> Member | None:
        """Report this pipeline's state; returns its member with current decisions."""
        now = self._clock() if now is None else now
        with self._lock:
            entry = self._members.get(id(owner))
            if entry is None:
                return None
            member = entry[1]
            member.bytes = held_bytes
            member.jobs = jobs
            member.active = active
            member.ready = ready
            # Memory rising past the next threshold is decided at once: at tens of MB/s, a TICK's
            # wait would let the pipelines overshoot the budget by megabytes.
            if now - self._last >= TICK or sum(m.bytes for _, m in self._members.values()) >= self._alarm:
                self._last = now
                self._decide(now)
            return member

    def _decide(self, now: float) -> None:
        members = [m for ref, m in self._members.values() if ref() is not None]
        sample = self._probe.latest() if self._probe is not None else None
        total = sum(m.bytes for m in members)
        if self._memory is not None:
            self.level = self._memory.level(total, sample)
            self._alarm = self._memory.next_threshold_bytes()
        if now - self._cpu_read_at >= CPU_EVERY:
            self._cpu_read_at = now
            threads = [t for m in members if m.resource_aware for t in m.threads()]
            self.pipeline_cpu = self._cpu_meter.update(thread_cpu_seconds(threads), now) if threads else 0.0
        advice = self._cpu.advise(self.pipeline_cpu, sample)
        self.lanes_factor, self.batch_factor = advice.max_lanes_factor, advice.batch_factor
        weights = sum(m.weight for m in members) or 1.0
        for m in members:
            m.share_bytes = int(self._budget * m.weight / weights)
            if not m.resource_aware:
                m.level = MemoryLevel.NORMAL
                continue
            level = _LEVELS.index(self.level)
            if level and len(members) > 1 and m.bytes <= m.share_bytes:
                level -= 1  # within its weighted share while others hold more: one level gentler
            m.level = _LEVELS[level]

    def lane_cap(self, owner: Any, lanes: int) -> int:
        """How many exports this pipeline may have in flight now (its share while others contend).

        ``lanes`` is the pipeline's own number of lanes; the CPU governor's factor scales it.
        (Not its adaptive limit: a share of that would keep the limit from ever being reached,
        and so from growing.)
        """
        with self._lock:
            entry = self._members.get(id(owner))
            if entry is None:
                return lanes
            me = entry[1]
            if not me.resource_aware:
                return lanes
            cap = max(1, int(lanes * self.lanes_factor))
            others = [
                m for ref, m in self._members.values() if m is not me and m.active and ref() is not None
            ]
            if not others or not me.active:
                return cap
            weights = me.weight + sum(m.weight for m in others)
            share = max(1, math.floor(cap * me.weight / weights + 0.5))
            shared = [m for m in others if _same_collector(me, m)]
            if not shared:
                return share
            # A collector serves what is queued at it roughly in arrival order, so its time goes to
            # each pipeline in proportion to the requests it has there: the weights must hold for the
            # requests in flight, not only for the lanes (a pipeline that keeps more outstanding
            # than its share takes the collector from the others whatever their lanes).
            weights = me.weight + sum(m.weight for m in shared)
            total = me.jobs + sum(m.jobs for m in shared)
            return min(share, max(1, math.floor((total + 1) * me.weight / weights + 0.5)))

    def _contenders(self, me: Member) -> list[Member]:
        # Only pipelines that could send right now: a stuck or paused one must not hold others back.
        return [
            m
            for ref, m in self._members.values()
            if m is not me and m.ready and m.resource_aware and ref() is not None
        ]

    def contended(self, owner: Any) -> bool:
        """Whether another pipeline is backlogged at the same time (turns then apply)."""
        with self._lock:
            entry = self._members.get(id(owner))
            return entry is not None and bool(self._contenders(entry[1]))

    def may_send(self, owner: Any, allowance: float) -> bool:
        """Weighted fair turns between backlogged pipelines sharing collectors and CPU.

        A pipeline may start an export unless it is more than ``allowance`` (one batch, in
        bytes) ahead of another backlogged pipeline, counting bytes sent divided by weight:
        deficit round robin across pipelines, so a log flood gets its share of the exports,
        not all of them.
        """
        with self._lock:
            entry = self._members.get(id(owner))
            if entry is None or not entry[1].resource_aware:
                return True
            me = entry[1]
            others = self._contenders(me)
            return not others or me.sent <= min(m.sent for m in others) + allowance / me.weight

    def charge(self, owner: Any, nbytes: int) -> None:
        """An export of ``nbytes`` started."""
        with self._lock:
            entry = self._members.get(id(owner))
            if entry is None:
                return
            me = entry[1]
            others = self._contenders(me)
            if others:
                # Coming back from idle earns no credit: start level with the others.
                me.sent = max(me.sent, min(m.sent for m in others) - nbytes / me.weight)
            me.sent += nbytes / me.weight

    def snapshot(self) -> dict[str, Any]:
        with self._lock:  # pipelines join and leave on other threads
            pipelines_bytes = sum(m.bytes for _, m in self._members.values())
        sample = self._probe.latest() if self._probe is not None else None
        return {
            "memory_level": self.level.name.lower(),
            "memory_budget_bytes": self._budget,
            "pipelines_bytes": pipelines_bytes,
            "pipeline_cpu_cores": self.pipeline_cpu,
            "lanes_factor": self.lanes_factor,
            "batch_factor": self.batch_factor,
            "probe": None
            if self._probe is None
            else {
                "enabled": self._probe.enabled,
                "disabled_reason": self._probe.disabled_reason,
                "rss": None if sample is None else sample.rss,
                "process_cpu": None if sample is None else sample.process_cpu,
                "system_cpu": None if sample is None else sample.system_cpu,
                "container_limit": None if sample is None else sample.container_limit,
            },
        }


def _same_collector(a: Member, b: Member) -> bool:
    return a.collectors is not None and b.collectors is not None and bool(a.collectors & b.collectors)


_COORDINATOR: Coordinator | None = None
_COORDINATOR_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    # A lock held by a parent thread at fork stays held in the child, where that thread is gone.
    global _COORDINATOR_LOCK
    _COORDINATOR_LOCK = threading.Lock()
    if _COORDINATOR is not None:
        _COORDINATOR._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def coordinator() -> Coordinator:
    """The process-wide coordinator (created on first use)."""
    global _COORDINATOR
    with _COORDINATOR_LOCK:
        if _COORDINATOR is None:
            _COORDINATOR = Coordinator()
        return _COORDINATOR

"""Workers: the hybrid pool of export lanes.

Layer boundary: the scheduler thread decides *whether* a batch may go (concurrency
limit, mode, endpoint health) and *where* it should go; this module only executes.

* A :class:`Lane` owns one exporter instance.  A *sync* lane is a daemon thread; an
  *async* lane is a slot on the pool's single asyncio event loop, which runs in a
  daemon thread of its own (never on the application's loop).
* Formed batches (:class:`Job`) wait on per-lane deques.  A lane takes from its own
  deque first and, when that is empty, steals the newest job of the most loaded
  other lane -- so one slow endpoint or exporter instance does not sit on work that
  an idle lane could send.

Guarantees:
  * ``export`` is never called concurrently on one exporter instance: a lane runs one
    job at a time and no two lanes share an instance;
  * every submitted job produces exactly one completion callback, from the lane that
    ran it (a job overtaken by its timeout still reports, flagged by the scheduler as
    late);
  * a replaced (hung) lane takes no new job; its thread ends when its call returns,
    shuts its exporter down and leaves ``lanes``.  At most ``max_retired`` such lanes
    exist at a time: past that, a hung lane is not replaced (``replace`` returns None);
  * threads hold no reference to the processor, so it can be garbage collected.

Recursion control: every lane thread is registered in :mod:`otel_sched._threads` with the
depth of the work it is doing.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from .._threads import register_thread, unregister_thread
from ..otlp._exporters import FastPath
from ..scheduling._express import express_tasks
from ..scheduling._task import Task

__all__ = ["Job", "Lane", "LanePool", "Outcome"]

_logger = logging.getLogger(__name__)

_LAG_PERIOD = 0.1  # seconds between event-loop heartbeats
_LAG_BLOCKED = 0.1  # a heartbeat this late means something blocked the loop


class Outcome(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # the exporter returned FAILURE
    ERROR = "error"  # the exporter raised
    CANCELLED = "cancelled"  # an async export cancelled at its timeout
    RETRYABLE = "retryable"  # pre-encoded path: a transient failure; the batch may be sent again


_ODD_RESULT_LOGGED: set[type] = set()


def _outcome_of(result: Any, exporter: Any) -> Outcome:
    """The SDK's contract: only FAILURE (or an exception) fails; any other return is success.

    By name: SpanExportResult, LogRecordExportResult and the deprecated LogExportResult all count.
    """
    if isinstance(result, enum.Enum) and result.name == "FAILURE":
        return Outcome.FAILURE
    if not (isinstance(result, enum.Enum) and result.name == "SUCCESS"):
        kind = type(exporter)
        if kind not in _ODD_RESULT_LOGGED:  # once per exporter class: a None return is common
            _ODD_RESULT_LOGGED.add(kind)
            _logger.debug(
                "Exporter %s returned %r, not an export result; counted as success, as the SDK does",
                kind.__name__,
                result,
            )
    return Outcome.SUCCESS


class Job:
    """One formed batch on its way to an exporter.

    An express job (``items`` set, see ``runtime._express``) carries its spans as they came in:
    ``batch`` stays empty until the dispatcher builds tasks for a batch that was not delivered.
    ``count`` is the items either way.
    """

    __slots__ = (
        "anywhere",
        "attempts",
        "batch",
        "body",
        "count",
        "depth",
        "detail",
        "endpoint",
        "express",
        "first_seq",
        "items",
        "lane",
        "routed",
        "runs",
        "spooled",
        "started_at",
        "timed_out",
        "tried",
    )

    def __init__(
        self,
        batch: list[Task],
        depth: int,
        routed: int,
        runs: list[tuple[int, str, int, int]] | None = None,
    ) -> None:
        self.batch = batch
        self.count = len(batch)
        self.express = False
        # An express job's spans, until a lane delivers them (the tasks are built only if it does not).
        self.items: list[Any] | None = None
        self.first_seq = 0  # an express job's first item's seq (its items' seqs follow in order)
        self.depth = depth
        self.routed = routed  # endpoint the scheduler chose (its in-flight count was raised)
        self.endpoint = routed  # endpoint it was actually sent to
        self.attempts = 1
        self.tried: frozenset[int] = frozenset((routed,))
        self.lane: Lane | None = None
        self.started_at = 0.0
        self.timed_out = False  # set by the scheduler: its result will be late and is not counted again
        self.detail: Any = None  # pre-encoded path: the sender's SendResult
        self.anywhere = False  # a transient failure: may be retried on any endpoint, the same one included
        self.body: bytes | None = None  # a spooled batch being replayed: the assembled request
        self.spooled: Any = None  # ... and its spool row
        # (priority, tenant, tasks, bytes) per run of the batch, as the batch former took them
        self.runs = runs if runs is not None else [(t.priority, t.tenant, 1, t.cost) for t in batch]

    def tasks(self, classify: Callable[[Any, float], Task]) -> list[Task]:
        """The job's tasks.  An express job's are built now (``classify``: the pipeline's classifier):
        it was not delivered, and what is not delivered is counted (or spooled) task by task."""
        if self.express and not self.batch:
            self.batch = express_tasks(self.items, self.runs, classify, self.first_seq, time.monotonic())
        return self.batch


DoneCallback = Callable[["Lane", Job, Outcome, float], None]


class Lane:
    """One exporter instance; sync (own thread) or async (a slot on the pool's loop)."""

    def __init__(self, pool: LanePool, index: int, endpoint: int, exporter: Any, asynchronous: bool) -> None:
        self.pool = pool
        self.index = index
        self.endpoint = endpoint
        self.exporter = exporter
        self.asynchronous = asynchronous
        # Sleeps here; shares the pool's lock so that waking one lane never wakes them all.
        self.wakeup = threading.Condition(pool.lock) if not asynchronous else None
        self.jobs: deque[Job] = deque()  # waiting for this lane (others may steal); guarded by pool.cond
        self.current: Job | None = None  # guarded by pool.cond
        self.retired = False  # replaced after a hang: takes no new job
        self.stolen = 0
        self.task: asyncio.Future[Any] | None = None
        self._thread: threading.Thread | None = None
        if not asynchronous:
            self._thread = threading.Thread(target=self._run, name=f"{pool.name}-lane-{index}", daemon=True)
            self._thread.start()

    @property
    def busy(self) -> bool:
        return self.current is not None

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- sync lanes ---------------------------------------------------------------------------------

    def _run(self) -> None:
        cell = register_thread()
        pool = self.pool
        try:
            while True:
                job: Job | None = None
                try:
                    with pool.cond:
                        job = pool._take(self)
                        while job is None:
                            if pool.stopping or self.retired:
                                return
                            assert self.wakeup is not None
                            self.wakeup.wait()
                            job = pool._take(self)
                    cell[0] = job.depth + 1
                    outcome, seconds = self._export_sync(job)
                    cell[0] = 0
                except Exception:  # supervised: a bug of ours here must not end the lane
                    _logger.exception("otel-sched: export lane %s failed; it carries on", self.index)
                    if job is None:
                        continue
                    outcome, seconds = Outcome.ERROR, 0.0
                pool._finish(self, job, outcome, seconds)
        finally:
            unregister_thread()
            if self.retired:
                pool._close_exporter(self.exporter)
                pool._forget(self)

    def _export_sync(self, job: Job) -> tuple[Outcome, float]:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        start = time.monotonic()
        try:
            exporter = self.exporter
            if type(exporter) is FastPath:  # ours, by class: a user's object is never probed
                if job.body is not None:
                    job.detail = result = exporter.send_body(job.body)
                else:
                    job.detail = result = exporter.export_tasks(job.batch)
                if result.ok:
                    outcome = Outcome.SUCCESS
                else:
                    outcome = Outcome.RETRYABLE if result.retryable else Outcome.FAILURE
            elif job.express:
                # A list of its own, as a formed batch is: a retry sends what the exporter was first given.
                outcome = _outcome_of(self.exporter.export(list(job.items or ())), self.exporter)
                if outcome is Outcome.SUCCESS:  # delivered: the items die here, young, not a hand-off later
                    job.items = None
            else:
                outcome = _outcome_of(self.exporter.export([t.item for t in job.batch]), self.exporter)
                if outcome is Outcome.SUCCESS:  # delivered: the items die here, young, not a hand-off later
                    for task in job.batch:
                        task.item = None
        except BaseException:  # an exporter that raises (even SystemExit) must not kill the lane
            _logger.exception(
                "Exporter %s raised while exporting %d items", type(self.exporter).__name__, job.count
            )
            outcome = Outcome.ERROR
        finally:
            detach(token)
        return outcome, time.monotonic() - start

    # -- async lanes (run on the pool's loop) ----------------------------------------------------------

    async def export_async(self, job: Job) -> None:
        items = list(job.items or ()) if job.express else [t.item for t in job.batch]
        # ``export`` itself when it is a coroutine function (an AsyncMock's is); ``aexport`` only for
        # an exporter whose ``export`` is sync.  Tested as ``is_async`` tests: by what is called.
        method = self.exporter.export
        if not inspect.iscoroutinefunction(method):
            method = self.exporter.aexport
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        start = time.monotonic()
        try:
            outcome = _outcome_of(await method(items), self.exporter)
        except asyncio.CancelledError:
            outcome = Outcome.CANCELLED
        except Exception:
            _logger.exception(
                "Async exporter %s raised while exporting %d items", type(self.exporter).__name__, len(items)
            )
            outcome = Outcome.ERROR
        finally:
            detach(token)
        self.pool._finish(self, job, outcome, time.monotonic() - start)
        if self.retired:
            self.pool._forget(self)
        try:
            self.pool._kick_async()
        except Exception:  # supervised: the loop lives on; the next submit kicks again
            _logger.exception("otel-sched: starting the next async export failed")


class LanePool:
    """Lanes grouped by endpoint, per-lane job deques with stealing, and the asyncio loop.

    ``cond`` guards every lane's ``jobs`` and ``current``; it is held only for deque
    operations, never across an export.
    """

    def __init__(
        self,
        name: str,
        make_exporter: Callable[[int], Any],
        first: Any,
        asynchronous: bool,
        lanes_per_endpoint: list[int],
        on_done: DoneCallback,
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopping = False
        self.asynchronous = asynchronous
        self._make_exporter = make_exporter
        self._on_done = on_done
        self.replaced = 0
        self.replace_refused = 0  # hung lanes not replaced: max_retired lanes were still stuck
        # Retired lanes whose call has not returned yet: each holds a thread and an exporter.
        self.max_retired = max(1, sum(lanes_per_endpoint))
        self._index = itertools.count()
        # Written by the scheduler: a lane of an endpoint taken out of rotation steals nothing.
        self.endpoint_ok = [True] * len(lanes_per_endpoint)
        self.max_loop_lag = 0.0
        self.loop_blocked = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        if asynchronous:
            self._start_loop()
        self.lanes: list[Lane] = []
        # Lanes not retired.  A replacement retires one lane and adds one, so it only changes here.
        self._live = sum(lanes_per_endpoint)
        for endpoint, count in enumerate(lanes_per_endpoint):
            for k in range(count):
                exporter = first if not self.lanes else make_exporter(endpoint)
                self.lanes.append(Lane(self, next(self._index), endpoint, exporter, asynchronous))
                del k

    # -- the asyncio loop ---------------------------------------------------------------------------------

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            register_thread()
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            self._heartbeat_task = loop.create_task(self._heartbeat())
            try:
                loop.run_forever()
                # Stopped: let what is still pending (the heartbeat, cancelled exports) end cleanly.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()
            finally:
                unregister_thread()

        self._loop = loop
        self._loop_thread = threading.Thread(target=run, name=f"{self.name}-asyncio", daemon=True)
        self._loop_thread.start()
        ready.wait(5)

    async def _heartbeat(self) -> None:
        """Measures event-loop lag: an async exporter that blocks the loop shows up here."""
        blocked = False
        while not self.stopping:
            start = time.monotonic()
            await asyncio.sleep(_LAG_PERIOD)
            lag = time.monotonic() - start - _LAG_PERIOD
            self.max_loop_lag = max(self.max_loop_lag, lag)
            if lag > _LAG_BLOCKED and not blocked:
                self.loop_blocked += 1
                _logger.warning(
                    "otel-sched: the export event loop was blocked for %.0f ms: an async exporter is "
                    "running blocking code",
                    lag * 1000,
                )
            blocked = lag > _LAG_BLOCKED

    def _kick_async(self) -> None:
        """On the loop: start a job on every idle async lane that can get one."""
        with self.cond:
            starts = []
            for lane in self.lanes:
                if lane.current is None and not lane.retired:
                    job = self._take(lane)
                    if job is not None:
                        starts.append((lane, job))
        assert self._loop is not None
        for lane, job in starts:
            lane.task = self._loop.create_task(lane.export_async(job))

    # -- scheduler side ---------------------------------------------------------------------------------

    def lane_for(self, endpoint: int) -> Lane:
        """The live lane of ``endpoint`` with the least work, busy counting as one job."""
        with self.cond:
            candidates = [lane for lane in self.lanes if lane.endpoint == endpoint and not lane.retired]
            if not candidates:
                candidates = [lane for lane in self.lanes if not lane.retired]
            return min(candidates, key=lambda lane: len(lane.jobs) + (1 if lane.current else 0))

    def submit(self, job: Job, lane: Lane) -> None:
        with self.cond:
            lane.jobs.append(job)
            self._wake_for(lane)
        if self.asynchronous and self._loop is not None:
            self._loop.call_soon_threadsafe(self._kick_async)

    def live_lanes(self) -> int:
        return self._live

    def running(self) -> list[Job]:
        with self.cond:
            return [lane.current for lane in self.lanes if lane.current is not None]

    def pending(self) -> list[Job]:
        """Every job submitted and not finished: waiting in a deque or running."""
        with self.cond:
            jobs = [job for lane in self.lanes for job in lane.jobs]
            jobs.extend(lane.current for lane in self.lanes if lane.current is not None)
            return jobs

    def retired(self) -> int:
        with self.cond:
            return sum(1 for lane in self.lanes if lane.retired)

    def replace(self, lane: Lane) -> Lane | None:
        """Retire a hung lane and start a fresh one (a new exporter instance) in its place.

        None when it cannot: ``max_retired`` retired lanes are still stuck in their calls (each is a
        thread and an exporter: replacing without a bound grows both without one), or no exporter
        could be built."""
        if self.retired() >= self.max_retired:
            self.replace_refused += 1
            return None
        try:
            exporter = self._make_exporter(lane.endpoint)
        except Exception:
            _logger.exception("otel-sched: could not build a replacement exporter")
            return None
        with self.cond:
            lane.retired = True
            orphans = list(lane.jobs)
            lane.jobs.clear()
            fresh = Lane(self, next(self._index), lane.endpoint, exporter, self.asynchronous)
            fresh.jobs.extend(orphans)
            self.lanes.append(fresh)
            self.replaced += 1
            self._wake_all()
        if lane.asynchronous and lane.task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(lane.task.cancel)
        if self.asynchronous and self._loop is not None:
            self._loop.call_soon_threadsafe(self._kick_async)
        return fresh

    def cancel_async(self, lane: Lane) -> None:
        if lane.task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(lane.task.cancel)

    def _wake_for(self, lane: Lane) -> None:
        """Wake ``lane`` for its new job, or, when it is busy, one idle lane that may steal it (lock held)."""
        if lane.asynchronous:
            return
        if lane.current is None and not lane.retired:
            assert lane.wakeup is not None
            lane.wakeup.notify()
            return
        for other in self.lanes:
            if other.current is None and not other.retired and self.endpoint_ok[other.endpoint]:
                assert other.wakeup is not None
                other.wakeup.notify()
                return

    def _wake_all(self) -> None:
        for lane in self.lanes:
            if lane.wakeup is not None:
                lane.wakeup.notify()

    # -- lane side (pool.cond held) -----------------------------------------------------------------------

    def _take(self, lane: Lane) -> Job | None:
        if lane.retired or (self.stopping and not any(other.jobs for other in self.lanes)):
            return None
        job: Job | None = None
        if lane.jobs:
            job = lane.jobs.popleft()
        elif self.endpoint_ok[lane.endpoint]:
            victim = max(self.lanes, key=lambda other: len(other.jobs), default=None)
            # The newest job: the victim keeps the work it would start next.  A retried batch is
            # not taken back to an endpoint it already failed on.
            if victim is not None and victim.jobs and lane.endpoint not in victim.jobs[-1].tried:
                job = victim.jobs.pop()
                lane.stolen += 1
        if job is not None:
            job.lane = lane
            job.endpoint = lane.endpoint
            job.tried = job.tried | {lane.endpoint}
            job.started_at = time.monotonic()
            lane.current = job
        return job

    def _forget(self, lane: Lane) -> None:
        """A retired lane whose call returned: nothing scans it any more."""
        with self.cond:
            if lane in self.lanes:
                self.lanes.remove(lane)

    def _finish(self, lane: Lane, job: Job, outcome: Outcome, seconds: float) -> None:
        with self.cond:
            lane.current = None
            lane.task = None
            # Under the lock: withdraw() finds every job either still held or already reported.
            self._on_done(lane, job, outcome, seconds)

    # -- shutdown -----------------------------------------------------------------------------------------

    def withdraw(self) -> list[Job]:
        """Take back every job not reported yet (shutdown gives up on them): waiting jobs leave their
        deques, running ones are flagged ``timed_out`` so that a result they still report is late."""
        with self.cond:
            jobs: list[Job] = []
            for lane in self.lanes:
                jobs.extend(lane.jobs)
                lane.jobs.clear()
                job = lane.current
                if job is not None and not job.timed_out:
                    job.timed_out = True
                    jobs.append(job)
            return jobs

    def stop(self) -> None:
        """Lanes finish what they hold and end; the loop lives on until the exporters are shut down."""
        with self.cond:
            self.stopping = True
            self._wake_all()

    def exporters(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for lane in self.lanes:
            seen.setdefault(id(lane.exporter), lane.exporter)
        return list(seen.values())

    def shutdown_exporters(self, deadline: float) -> None:
        for exporter in self.exporters():
            self._close_exporter(exporter, deadline)
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _close_exporter(self, exporter: Any, deadline: float | None = None) -> None:
        try:
            shutdown = exporter.shutdown
            remaining = max((deadline or time.monotonic() + 5) - time.monotonic(), 0.0) * 1000.0
            # As the SDK decides: by the signature, never by trying (a TypeError may be the exporter's own).
            try:
                takes_timeout = "timeout_millis" in inspect.signature(shutdown).parameters
            except (TypeError, ValueError):
                takes_timeout = False
            result = shutdown(timeout_millis=remaining) if takes_timeout else shutdown()
            if inspect.isawaitable(result):
                if self._loop is not None and self._loop.is_running():
                    asyncio.run_coroutine_threadsafe(_awaited(result), self._loop).result(
                        max(remaining / 1000.0, 0.1)
                    )
                else:
                    asyncio.run(_awaited(result))
        except Exception:
            _logger.exception("Exporter %s raised in shutdown()", type(exporter).__name__)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable

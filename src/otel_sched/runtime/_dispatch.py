"""Dispatch: from formed batches to lanes, and from lane results to counts, retries and the spool.

Owns the jobs in flight and what is known about them: the completions the lanes report, the
batches waiting for a retry, the lanes hung past ``export_timeout_millis``, the export timing
that lets batches queue ahead of a busy lane, and the decision whether a job may start now.

Invariants (between two scheduler steps):

* ``jobs_in_flight`` = jobs submitted and neither completed nor timed out;
* ``in_flight`` = items of those jobs and of ``retries`` that are not spooled replays; each such
  item is in no queue and in no count, so it is a term of the balance;
* a lane is in ``hung`` only while its timed-out call has not returned and it could not be
  replaced.

Threads: lane threads call the completion sink (:func:`completion_sink`); everything else is the
scheduler thread's.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..process._coordinator import coordinator
from ..scheduling._classify import DEFAULT_TENANT
from ..scheduling._express import ExpressBatch, express_runs
from ..scheduling._task import Task
from ._concurrency import Mode
from ._concurrency import Signal as Feedback
from ._workers import Job, Lane, Outcome

if TYPE_CHECKING:
    from .._config import Config
    from ..durability._bridge import SpoolBridge
    from ..scheduling._task import Signal
    from ._builders import Lanes, Stages
    from ._concurrency import ModeMachine
    from ._intake import Intake
    from ._ledger import Ledger
    from ._metrics import SelfMetrics, Stats
    from ._standing import Standing

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")

_MAX_ATTEMPTS = 6  # transient failures on the pre-encoded path: tries per batch, as the stock exporters
# Batches that may wait behind each busy lane while exports are instant (see may_queue_ahead).
_INSTANT = 0.002
_AHEAD_INSTANT = 4
_depth_of = operator.attrgetter("depth")
_deadline_of = operator.attrgetter("deadline")
_FAILED = {
    Outcome.FAILURE: "export_failed",
    Outcome.ERROR: "export_error",
    Outcome.CANCELLED: "export_timeout",
    Outcome.RETRYABLE: "export_failed",
}

Completion = tuple[Lane, Job, Outcome, float]


def _note_mode(signal: Signal, modes: ModeMachine, mode: Mode | None) -> None:
    if mode is None:
        return
    if mode is Mode.DEGRADED:
        _logger.warning(
            "otel-sched %s pipeline: every export endpoint is failing; degraded mode: probing every "
            "%.1fs, shedding by priority meanwhile",
            signal.value,
            modes.backoff,
        )
    else:
        _logger.warning("otel-sched %s pipeline: export mode is now %s", signal.value, mode.value)


def completion_sink(
    completions: deque[Completion], intake: Intake
) -> Callable[[Lane, Job, Outcome, float], None]:
    """What a lane calls when its job is done (on the lane's thread): queue it, wake the scheduler
    (unless it is ``quiet``: then its next wake-up, which a deadline bounds, settles the job)."""

    def lane_done(lane: Lane, job: Job, outcome: Outcome, seconds: float) -> None:
        completions.append((lane, job, outcome, seconds))
        if not intake.quiet:
            intake.bell.ring()

    return lane_done


def _replay_job(bridge: SpoolBridge, now: float, endpoint: int) -> Job | None:
    """A job for the oldest spooled batch (its request body as it was stored), or None."""
    row = bridge.take()
    if row is None:
        return None
    task = Task(None, row.priority, row.tenant, row.cost, 0, now, math.inf, 0)
    job = Job([task], 0, endpoint)
    job.body = row.payload
    job.spooled = row
    return job


class Dispatcher:
    """Starts jobs on lanes when they may start, and settles each job's outcome exactly once."""

    def __init__(
        self,
        owner: Any,
        config: Config,
        stages: Stages,
        lanes: Lanes,
        completions: deque[Completion],
        stats: Stats,
        metrics: SelfMetrics,
        ledger: Ledger,
        bridge: SpoolBridge,
        standing: Standing,
        intake: Intake,
        can_multiply: bool,
    ) -> None:
        self.owner = owner  # the pipeline: the coordinator's key for this member
        self.config = config
        self.signal = config.signal
        self.completions = completions  # appended by lanes (completion_sink), popped here
        self.pool, self.router, self.controller, self.modes = (
            lanes.pool,
            lanes.router,
            lanes.controller,
            lanes.modes,
        )
        self.queues, self.former, self.policy = stages.queues, stages.former, stages.policy
        self.cost_model = stages.cost_model
        self.classify = stages.classifier.classify  # an express batch's tasks, when it is not delivered
        self.stats, self.metrics, self.ledger, self.bridge = stats, metrics, ledger, bridge
        self.standing, self.intake = standing, intake
        self.can_multiply = can_multiply  # a timed-out lane can be replaced by a fresh exporter
        # Copies of a batch's bytes while it is sent (see flight_bytes), and a Task's own bytes.
        self.copies_in_flight, self.task_overhead = lanes.copies_in_flight, lanes.task_overhead
        self.timeout = config.export_timeout_millis / 1000.0
        self.retries: deque[Job] = deque()  # failed batches waiting for an endpoint to take them again
        self.hung: set[Lane] = set()  # timed out, no replacement possible: wait for the call to return
        self.jobs_in_flight = 0
        self.in_flight = 0  # items in jobs that were submitted and have not completed or timed out
        self.flight_item = 512.0  # bytes per item of the last batch dispatched
        self.export_seconds = math.inf  # moving average of successful export calls (may_queue_ahead)
        self.dispatchable = False  # the last dispatch could have started a job

    def flight_bytes(self) -> int:
        """What the batches in flight hold (see ``Standing.held_bytes``).  Bounded to a third of the
        memory share (:meth:`may_dispatch`): request bodies and their compressed copies are no
        queue's, and concurrency grows with the collector's latency, so without that bound the
        budget would bound the queues only."""
        return int(self.in_flight * (self.copies_in_flight * self.flight_item + self.task_overhead))

    def may_dispatch(self, now: float, turns: bool = True) -> bool:
        in_flight = self.jobs_in_flight
        standing = self.standing
        return (
            in_flight < min(self.pool.live_lanes() - len(self.hung), standing.lane_cap)
            and (
                not in_flight or self.flight_bytes() < standing._share_bytes // 3 or not standing._share_bytes
            )
            and self.controller.may_dispatch(now, in_flight)
            and self.modes.may_dispatch(now, in_flight)
            and self.router.pick(now) is not None
            and (
                not turns
                or not standing.contended
                or coordinator().may_send(self.owner, standing.turn_allowance)
            )
        )

    def may_queue_ahead(self, now: float) -> bool:
        """Every lane busy, a full batch queued, the exporter keeping up: formed batches may wait
        behind the running ones.  A lane goes on to them in its own turn on the GIL instead of a
        round trip through the scheduler's (a producer that never blocks hands the GIL on only
        every ``sys.getswitchinterval()``), as the stock processor's worker drains its whole queue.

        Only while the recent exports all succeeded in under :data:`_INSTANT` each (moving
        average), and at most :data:`_AHEAD_INSTANT` batches per lane: the early decision then
        costs an item arriving meanwhile (a HIGH one too) a few milliseconds at most.  With a
        slower or failing exporter the policy keeps every choice until a lane is free."""
        return self.queues.count >= self.former.max_items and self.may_wait_ahead(now)

    def may_wait_ahead(self, now: float) -> bool:
        """:meth:`may_queue_ahead` but for the full batch queued: a batch formed now would wait
        behind the running ones for a short while only."""
        if self.export_seconds >= _INSTANT:
            return False
        in_flight = self.jobs_in_flight
        lanes = min(self.pool.live_lanes(), self.standing.lane_cap, self.controller.limit)
        return (
            0 < in_flight < (1 + _AHEAD_INSTANT) * lanes
            and not self.retries
            and not self.hung
            and not self.standing.contended
            and self.modes.mode is Mode.NORMAL
            and now >= self.controller.paused_until
            and self.router.pick(now) is not None
        )

    def replay_due(self, pending: list[Any]) -> bool:
        """A spooled batch goes next (``pending``: the flush/shutdown requests waiting)."""
        return self.bridge.replay_due(
            any(r.kind != "flush" for r in pending), self.queues.count >= self.former.max_items
        )

    def dispatch(self, now: float, pending: list[Any]) -> None:
        """Start every job that may start now: retries first, then a spooled batch when one is due,
        then the batch the policy forms.  ``pending``: the flush/shutdown requests waiting."""
        flushing = bool(pending)
        bridge = self.bridge
        while True:
            # Left by a break below with True: nothing was submitted since, so it still holds.
            may = self.may_dispatch(now) or self.may_queue_ahead(now)
            if not may:
                break
            if self.retries:
                job = self.retries[0]
                endpoint = self.router.pick(now, job.tried)
                if endpoint is None and job.anywhere:
                    endpoint = self.router.pick(now)
                if endpoint is None:  # every other endpoint is out as well: the batch is lost
                    self.retries.popleft()
                    self.in_flight -= job.count
                    self.ledger.drop([(t, "export_failed") for t in job.tasks(self.classify)], submitted=True)
                    continue
                self.retries.popleft()
                job.routed = job.endpoint = endpoint
                job.tried = job.tried | {endpoint}
            elif self.replay_due(pending):
                endpoint = self.router.pick(now)
                if endpoint is None:
                    break
                replay = _replay_job(bridge, now, endpoint)
                if replay is None:
                    continue
                job = replay
                bridge.live_since_replay = 0
            else:
                endpoint = self.router.pick(now)
                if endpoint is None or not self.former.due(self.queues, now, flushing=flushing):
                    break
                bridge.live_since_replay += 1
                batch = self.former.form(self.queues, self.policy, now)
                if not batch:
                    break
                job = Job(batch, max(map(_depth_of, batch)), endpoint, self.former.runs)
                self._note_dispatch(batch, now)
                self.in_flight += len(batch)
            self._start(job, endpoint, now)
        if bridge.spool is not None and self.modes.mode is Mode.DEGRADED:
            self._spool_queue(now)
        # Wake for a full batch (or intake.batch items) when a job could go; otherwise classify in
        # chunks (admission still matters).
        self.dispatchable = may
        intake = self.intake
        if not may:
            intake.wake_after = min(intake.batch, intake.cap // 8)
        elif self.queues.count:
            intake.wake_after = min(intake.batch, max(0, self.former.max_items - self.queues.count - 1))
        else:
            intake.wake_after = 0

    def _start(self, job: Job, endpoint: int, now: float) -> None:
        self.jobs_in_flight += 1
        if self.standing.contended:
            coordinator().charge(self.owner, sum(run[3] for run in job.runs))
        self.router.started(endpoint)
        self.controller.dispatched(now)
        self.pool.submit(job, self.pool.lane_for(endpoint))

    def express(self, batch: ExpressBatch, first_seq: int, now: float) -> None:
        """Start an express batch (``runtime._express``, which checked that one may start now)."""
        endpoint = self.router.pick(now)
        if endpoint is None:  # Express.ample saw one: the balance must not depend on it
            raise RuntimeError("express batch started with no endpoint to take it")
        n = len(batch.items)
        job = Job([], 0, endpoint, express_runs(batch, DEFAULT_TENANT))
        job.express = True
        job.items, job.count, job.first_seq = batch.items, n, first_seq
        self.bridge.live_since_replay += 1
        self.stats.submitted += n
        self.stats.express_items += n
        self.flight_item = batch.nbytes / n
        self.in_flight += n
        self._start(job, endpoint, now)

    def _spool_queue(self, now: float) -> None:
        """Degraded: move what is queued into the spool now, so a crash loses as little as possible."""
        while self.queues.count:
            batch = self.former.form(self.queues, self.policy, now)
            if not batch:
                break
            self.ledger.drop([(t, "export_failed") for t in batch])

    def _note_dispatch(self, batch: list[Task], now: float) -> None:
        self.stats.submitted += len(batch)
        # What an item in flight weighs: the queue's mean says nothing once the queue is empty.
        self.flight_item = sum(task.cost for task in batch) / len(batch)
        waits = [now - task.enqueued for task in batch]
        self.stats.queue_wait.extend(waits)
        if self.metrics.enabled:
            self.metrics.waited(waits)
        if now > min(map(_deadline_of, batch)):  # rarely: most batches meet every deadline
            missed = self.stats.deadline_missed
            for task in batch:
                if now > task.deadline:
                    missed[task.priority] += 1

    def drain_completions(self) -> None:
        completions = self.completions
        now = time.monotonic()
        while completions:
            lane, job, outcome, seconds = completions.popleft()
            self.router.finished(job.routed)
            if job.timed_out:  # already counted as export_timeout when it overran
                self.hung.discard(lane)
                self.stats.late_results += 1
                continue
            self.jobs_in_flight -= 1
            ok = outcome is Outcome.SUCCESS
            if not ok:
                self.export_seconds = math.inf  # no batch waits ahead for a failing exporter
            detail = job.detail
            retry_after = detail.retry_after if detail is not None and not ok else None
            self.router.record(job.endpoint, now, ok, seconds, open_for=retry_after)
            self.pool.endpoint_ok[job.endpoint] = ok
            if ok:
                feedback = Feedback.OK
            else:
                feedback = Feedback.THROTTLED if detail is not None and detail.throttled else Feedback.ERROR
            self.controller.observe(now, seconds, feedback, retry_after)
            _note_mode(self.signal, self.modes, self.modes.on_result(now, ok, self.router.all_down(now)))
            if job.spooled is not None:
                self.bridge.finish_replay(job.spooled, ok)
                continue
            if not ok and self.bridge.spool is not None:
                # Durable before it is tried again: the batch goes to the spool now, and its replay
                # (on any endpoint, as the router allows) is the retry.  In memory a kill -9 loses it.
                self.in_flight -= job.count
                self._finish_batch(job, outcome, seconds)
                continue
            if outcome is Outcome.RETRYABLE and job.attempts < _MAX_ATTEMPTS:
                job.attempts += 1
                job.anywhere = True
                job.detail = None
                self.retries.append(job)  # transient: sent again once the endpoint or another takes it
                self.stats.retried += 1
                continue
            if ok and detail is not None and detail.rejected:
                self.stats.rejected += detail.rejected
            if not ok and len(job.tried) < len(self.router.endpoints):
                job.attempts += 1
                self.retries.append(job)  # try another endpoint before giving the batch up
                self.stats.retried += 1
                continue
            self.in_flight -= job.count
            self._finish_batch(job, outcome, seconds)

    def _finish_batch(self, job: Job, outcome: Outcome, seconds: float) -> None:
        stats = self.stats
        stats.export_calls += 1
        stats.export_latency.append(seconds)
        if outcome is Outcome.SUCCESS:
            stats.record_export(job.runs)
            last = self.export_seconds
            self.export_seconds = seconds if last == math.inf else 0.75 * last + 0.25 * seconds
            self.cost_model.observe(sum(run[3] for run in job.runs), job.count, seconds)
            self.standing.tune()
            if self.metrics.enabled:
                self.metrics.exported(job.count, seconds)
            job.batch = []  # the items go now, not when the lane lets go of the job
            job.items = None
        else:
            stats.export_failures += 1
            self.ledger.drop([(t, _FAILED[outcome]) for t in job.tasks(self.classify)], submitted=True)

    def check_hung(self, now: float) -> None:
        """Count a job past ``export_timeout_millis`` as ``export_timeout`` and free or replace its lane."""
        if not self.jobs_in_flight:  # nothing running that is not already counted as timed out
            return
        for job in self.pool.running():
            if job.timed_out or now - job.started_at <= self.timeout:
                continue
            job.timed_out = True
            self.export_seconds = math.inf
            lane = job.lane
            assert lane is not None
            self.jobs_in_flight -= 1
            if job.spooled is None:
                self.in_flight -= job.count
            self.stats.export_calls += 1
            self.stats.export_failures += 1
            self.router.record(job.endpoint, now, False, now - job.started_at)
            self.pool.endpoint_ok[job.endpoint] = False
            self.controller.observe(now, now - job.started_at, Feedback.TIMEOUT)
            _note_mode(self.signal, self.modes, self.modes.on_result(now, False, self.router.all_down(now)))
            if lane.asynchronous:
                action = "cancelled it"
                self.pool.cancel_async(lane)
            elif self.can_multiply and self.pool.replace(lane) is not None:
                action = "replaced the lane with a fresh exporter"
            else:
                action = "waiting for the call to return"
                self.hung.add(lane)
            _logger.warning(
                "otel-sched: exporter %s did not return within export_timeout_millis=%s; counting %d items "
                "as dropped (export_timeout); %s",
                type(lane.exporter).__name__,
                self.config.export_timeout_millis,
                job.count,
                action,
            )
            if job.spooled is not None:
                self.bridge.finish_replay(job.spooled, False)
            else:
                self.ledger.drop([(t, "export_timeout") for t in job.tasks(self.classify)], submitted=True)

    def withdraw(self, jobs: list[Job]) -> list[tuple[Task, str]]:
        """Shutdown ends: give up the retries and the ``jobs`` withdrawn from the lanes; returns their
        items as ``shutdown_timeout`` (a replay's row stays in the spool)."""
        submitted: list[tuple[Task, str]] = []
        for job in [*self.retries, *jobs]:
            if job in jobs:
                self.jobs_in_flight -= 1
            if job.spooled is not None:  # a replay: its row stays in the spool
                self.bridge.finish_replay(job.spooled, False)
                continue
            self.in_flight -= job.count
            submitted.extend((t, "shutdown_timeout") for t in job.tasks(self.classify))
        self.retries.clear()
        return submitted

"""The scheduler loop: the one thread that moves items from the intake to the lanes.

Owns the scheduler thread, its step lock and its supervision.  Each step, in order: report to the
process-wide level when due, record the application threads' drops, settle the lanes' results,
release held spans whose time is up, take the requests (classifying the whole intake first, so a
flush covers everything offered before it) or else a chunk of the intake, time out hung exports,
dispatch, answer the requests.  A step that raises is recovered from: its items are counted as
``internal_error`` and the loop carries on.

Threads: the scheduler thread runs :meth:`SchedulerLoop.run`; ``step_lock`` is held across each
step, so that ``snapshot()`` on another thread reads the balance between steps.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from .._threads import register_thread, unregister_thread
from ..process._coordinator import TICK

if TYPE_CHECKING:
    from .._config import Config
    from ..durability._bridge import SpoolBridge
    from ..scheduling._tenancy import Holder
    from ._builders import Stages
    from ._dispatch import Dispatcher
    from ._express import Express
    from ._intake import Intake, IntakeDrain
    from ._ledger import Ledger
    from ._lifecycle import Lifecycle
    from ._metrics import SelfMetrics
    from ._standing import Standing

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")


class SchedulerLoop:
    """Runs the steps on the scheduler thread; sleeps on the intake's bell between them."""

    def __init__(
        self,
        name: str,
        config: Config,
        intake: Intake,
        drain: IntakeDrain,
        dispatcher: Dispatcher,
        standing: Standing,
        lifecycle: Lifecycle,
        ledger: Ledger,
        bridge: SpoolBridge,
        stages: Stages,
        holder: Holder | None,
        metrics: SelfMetrics,
        express: Express | None,
    ) -> None:
        self.config = config
        self.signal = config.signal
        self.intake = intake
        self.drain = drain
        self.dispatcher = dispatcher
        self.standing = standing
        self.lifecycle = lifecycle
        self.ledger = ledger
        self.bridge = bridge
        self.classifier, self.queues, self.former = stages.classifier, stages.queues, stages.former
        self.holder = holder
        self.metrics = metrics
        self.express = express
        # Held by the scheduler thread across each step: snapshot() reads the balance between steps,
        # never half way through moving an item from one term to another.
        self.step_lock = threading.RLock()
        self.step_failures = 0  # steps that raised (the first one is logged with its traceback)
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        register_thread()
        intake = self.intake
        queue, bell = intake.queue, intake.bell
        completions = self.dispatcher.completions
        requests = self.lifecycle.requests
        try:
            due = -math.inf  # when the full step's time-based work is next due (_next_deadline)
            while True:
                try:
                    now = time.monotonic()
                    if now >= due:  # after a full step: also under a load that never lets it sleep
                        deadline = self._next_deadline(now)
                        due = math.inf if deadline is None else deadline
                    if len(queue) <= intake.wake_after and (intake.quiet or not completions) and not requests:
                        intake.sleeping = True
                        if len(queue) <= intake.wake_after:  # re-check: an offer may have missed the flag
                            # A little past the deadline, so that what is due is due when we look.
                            bell.wait(None if due == math.inf else max(due - now, 0.0) + 0.0005)
                        intake.sleeping = False
                    bell.clear()
                    now = time.monotonic()
                    with self.step_lock:
                        if now < due and self._light_step(now):
                            continue
                        due = -math.inf
                        if self._step(now):
                            return
                except Exception:  # noqa: BLE001 - supervised: one failing step must not stop the pipeline
                    due = -math.inf
                    with self.step_lock:
                        self._recover()

        finally:
            unregister_thread()

    def _recover(self) -> None:
        """After a step raised: log it, resynchronise the in-flight counts with the jobs that really
        exist, and count the items the step held (no longer queued, in flight or accounted for)
        as dropped with reason ``internal_error``."""
        if not self.step_failures:
            _logger.exception(
                "otel-sched %s pipeline: a scheduler step failed; the items it held are counted as dropped "
                "(internal_error) and the pipeline carries on",
                self.signal.value,
            )
        else:
            _logger.debug("otel-sched: scheduler step failed again", exc_info=True)
        self.step_failures += 1
        self.intake.sleeping = False
        try:
            dispatcher = self.dispatcher
            pending = [job for job in dispatcher.pool.pending() if not job.timed_out]
            dispatcher.jobs_in_flight = len(pending)
            dispatcher.in_flight = sum(
                job.count for job in (*pending, *dispatcher.retries) if job.spooled is None
            )
            self.ledger.count_lost(self.queues.count, dispatcher.in_flight)
        except Exception:  # pragma: no cover - counting must not take the thread down either
            _logger.debug("otel-sched: could not count the items of a failed step", exc_info=True)
        self.intake.bell.wait(0.01)  # a step failing every time must not spin a core

    def _step(self, now: float) -> bool:
        """One scheduler iteration; True when the pipeline has finished shutting down."""
        lifecycle, drain, holder = self.lifecycle, self.drain, self.holder
        if self.standing.due(now, bool(lifecycle.requests)):
            self.standing.coordinate(now)
        if self.metrics.enabled:
            self.ledger.report_app_drops()
        self.dispatcher.drain_completions()
        if holder is not None:
            holder.expire(now)
        # Requests first, so a flush covers everything offered before it was asked.
        if lifecycle.requests:
            drain.drain(now, limit=None)
            if holder is not None and holder.count:
                # Held spans go now, after the whole intake was seen (inherit_priority's marks too).
                holder.release_all()
                drain.drain(now, limit=None)
            lifecycle.accept(self.classifier.last_seq)
        else:
            self._drain_chunk(now)
        self.dispatcher.check_hung(now)
        self.dispatcher.dispatch(now, lifecycle.pending)
        if self.express is not None:
            self.express.after_dispatch(now, bool(lifecycle.requests))
        return lifecycle.settle(now)

    def _light_step(self, now: float) -> bool:
        """Woken by the intake alone, before any time-based work is due: classify and admit, and
        sleep again unless a batch is now due.  False: the full :meth:`_step` is needed.

        Most wake-ups are these (every ``intake.batch`` items, a batch every ``max_items``); the
        full step's dispatch, timeout and coordination work would be paid on each, on cold caches.
        Only with items queued before: then the next batch's due time, which is in ``due``, is
        not moved earlier by newer arrivals.
        """
        dispatcher, standing = self.dispatcher, self.standing
        if (
            dispatcher.completions
            or self.lifecycle.requests
            or dispatcher.retries
            or not self.queues.count
            or now >= standing.coordinate_at
        ):
            return False
        self._drain_chunk(now)
        if self.former.due(self.queues, now) or standing.held_bytes() >= standing.report_above:
            return False
        if dispatcher.dispatchable:
            intake = self.intake
            intake.wake_after = min(intake.batch, max(0, self.former.max_items - self.queues.count - 1))
        return True

    def _drain_chunk(self, now: float) -> None:
        """Classify a chunk of the intake: as many items as the queues have room for, or, while
        nothing is scarce, what completes the queued batch (the rest may go in express batches)."""
        drain = self.drain
        if self.express is None:
            drain.drain(now, drain.chunk())
            return
        limit = self.express.drain_limit(now, drain.chunk())
        if limit:
            drain.drain(now, limit)

    def _next_deadline(self, now: float) -> float | None:
        """When the full step next has time-based work (a batch's delay, a hung export, a pause
        ending, a request's deadline, a TICK); None: nothing but an event can give it work."""
        dispatcher = self.dispatcher
        candidates: list[float] = []
        if dispatcher.may_dispatch(now):
            due = self.former.next_due(self.queues)
            if due is not None:
                candidates.append(due)
            if dispatcher.replay_due(
                self.lifecycle.pending
            ):  # spooled batches wait (e.g. left by a previous process)
                candidates.append(now)
        elif self.queues.count or dispatcher.retries or self.bridge.pending():
            # Blocked by a pause, a probe backoff or an open circuit: wake when that ends.
            for t in (
                dispatcher.controller.paused_until,
                dispatcher.modes.next_probe,
                dispatcher.router.next_reopen(),
            ):
                if t is not None and t > now:
                    candidates.append(t)
        if dispatcher.jobs_in_flight:
            for job in dispatcher.pool.pending():  # a job not yet taken by its lane will start about now
                if not job.timed_out:
                    candidates.append((job.started_at or now) + dispatcher.timeout)
        for request in self.lifecycle.pending:
            candidates.append(request.deadline)
        waiting = None if self.express is None else self.express.next_deadline()
        if waiting is not None:  # spans left in the intake for a full express batch
            candidates.append(waiting)
        held = None if self.holder is None else self.holder.next_deadline()
        if held is not None:
            candidates.append(held)
        if self.intake.wake_after or (
            self.config.resource_aware and (self.queues.count or self.intake.queue)
        ):
            # An arrival below wake_after does not wake us: bound how long it waits unclassified
            # (and, holding items, keep the process-wide decisions fresh).
            candidates.append(now + TICK)
        if not candidates:
            return None
        return min(candidates)

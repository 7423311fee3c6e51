"""Lifecycle: force_flush, shutdown and their deadlines; fork, interpreter exit and SIGTERM.

Owns the requests other threads make of the scheduler (sync, flush, shutdown, close) until they
are answered, the end of a pipeline (what is left is spooled or counted, the lanes stop, the
exporters are shut down), and the process-wide registry of live pipelines with its fork, exit
and SIGTERM hooks.

Threads: any thread calls :meth:`Lifecycle.sync`, :meth:`~Lifecycle.force_flush`,
:meth:`~Lifecycle.shutdown` and :meth:`~Lifecycle.close_async` -- each appends a request and waits
on its ``Event`` against a monotonic deadline, never on a lock the scheduler holds; the scheduler
thread alone answers them (:meth:`~Lifecycle.accept`, :meth:`~Lifecycle.settle`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ..process._coordinator import coordinator
from ._concurrency import Mode

if TYPE_CHECKING:
    from .._config import Config
    from ..durability._bridge import SpoolBridge
    from ..scheduling._queues import QueueSet
    from ..scheduling._task import Task
    from ._dispatch import Dispatcher
    from ._intake import Intake, IntakeDrain
    from ._ledger import Ledger
    from ._metrics import Stats
    from ._pipeline import Pipeline
    from ._workers import Job, LanePool

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")

_ABANDON_MARGIN = 0.25  # seconds before shutdown's deadline at which the scheduler gives up waiting


class _Request:
    """force_flush or shutdown, answered by the scheduler thread through ``done``."""

    __slots__ = ("deadline", "done", "kind", "ok", "target")

    def __init__(self, kind: str, deadline: float) -> None:
        self.kind = kind
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = False
        self.target: int | None = None  # highest task seq the request covers, once known


class Lifecycle:
    """Answers sync, flush and shutdown requests; ends the pipeline."""

    thread: threading.Thread  # the scheduler's, wired by the pipeline once built

    def __init__(
        self,
        owner: Pipeline,
        config: Config,
        intake: Intake,
        drain: IntakeDrain,
        dispatcher: Dispatcher,
        queues: QueueSet,
        ledger: Ledger,
        stats: Stats,
        bridge: SpoolBridge,
        pool: LanePool,
        template: Any,
    ) -> None:
        self.owner = owner  # the pipeline: its key in the coordinator and in _LIVE
        self.config = config
        self.signal = config.signal
        self.intake = intake  # intake.closed: shutdown started (set here, once)
        self.drain = drain
        self.dispatcher = dispatcher
        self.queues = queues
        self.ledger = ledger
        self.stats = stats
        self.bridge = bridge
        self.pool = pool
        self.template = template  # the user's exporter when lanes were built from it: ours to close
        self.requests: deque[_Request] = deque()  # appended by any thread, popped by the scheduler
        # Accepted by the scheduler (their target known), answered once covered or past deadline.
        self.pending: list[_Request] = []

    # -- any thread -------------------------------------------------------------------------------------

    def sync(self, timeout_s: float = 1.0) -> None:
        """Wait (up to ``timeout_s``) until the scheduler has classified and admitted everything
        offered so far: the self-metrics then show queue size and drops as of this moment."""
        if self.intake.closed or threading.current_thread() is self.thread or not self.thread.is_alive():
            return
        request = _Request("sync", time.monotonic() + timeout_s)
        self.requests.append(request)
        self.intake.bell.ring()
        request.done.wait(timeout_s)

    def force_flush(self, timeout_s: float | None) -> bool:
        if self.intake.closed:
            return False
        timeout = self.config.export_timeout_millis / 1000.0 if timeout_s is None else timeout_s
        request = _Request("flush", time.monotonic() + max(timeout, 0.0))
        self.requests.append(request)
        self.intake.bell.ring()
        if threading.current_thread() is self.thread:
            return False  # called from inside the pipeline: waiting on ourselves would deadlock
        request.done.wait(max(timeout, 0.0))
        return request.ok

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Drain, stop the threads, shut the exporter down.  Safe to call twice; bounded by the timeout.

        A second call (or a call after the processor was collected) waits for the first to finish,
        within its own timeout.
        """
        timeout = self.config.shutdown_timeout_millis / 1000.0 if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        exiting = _exit_deadline()
        if exiting is not None:
            deadline = min(deadline, exiting)
        thread = self.thread
        if self.intake.closed:
            if threading.current_thread() is not thread:
                thread.join(max(deadline - time.monotonic(), 0.0))
            return not thread.is_alive()
        self.intake.closed = True
        # The scheduler gives up a little before the caller's deadline: spooling or counting what is
        # left is done by then, not after shutdown() returned.
        request = _Request("shutdown", deadline - min(0.25 * timeout, _ABANDON_MARGIN))
        self.requests.append(request)
        self.intake.bell.ring()
        if threading.current_thread() is not thread:
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():  # late on a loaded machine: its last step accounts for what is left
                thread.join(_ABANDON_MARGIN)
        self._shutdown_exporters(deadline)
        _LIVE.discard(self.owner)
        return request.ok

    def close_async(self, deadline: float | None = None) -> None:
        """Begin shutdown without waiting (garbage collection of the processor, interpreter exit)."""
        if self.intake.closed:
            return
        self.intake.closed = True
        now = time.monotonic()
        if deadline is None:
            deadline = now + self.config.shutdown_timeout_millis / 1000
        # As shutdown(): give up a little early, so that what is left is spooled or counted by the
        # deadline (at exit or SIGTERM the process ends right after it).
        margin = min(0.25 * max(deadline - now, 0.0), _ABANDON_MARGIN)
        self.requests.append(_Request("close", deadline - margin))
        self.intake.bell.ring()

    def _shutdown_exporters(self, deadline: float) -> None:
        self.pool.shutdown_exporters(deadline)
        if self.template is not None:  # the user's instance was only a template: it is still ours to close
            self.pool._close_exporter(self.template, deadline)

    # -- the scheduler thread -----------------------------------------------------------------------------

    def accept(self, last_seq: int) -> None:
        """The intake was classified and admitted up to ``last_seq``: a sync is answered, a flush or
        shutdown now waits for everything up to there."""
        while self.requests:
            request = self.requests.popleft()
            if request.kind == "sync":  # the intake is classified and admitted: that is all it asks
                request.ok = True
                request.done.set()
                continue
            request.target = last_seq
            self.pending.append(request)

    def settle(self, now: float) -> bool:
        """Answer what is covered or past its deadline; True when the pipeline has finished shutting down."""
        finished = False
        still: list[_Request] = []
        stuck = bool(self.pending) and self._stuck()
        down = bool(self.pending) and self._down()
        for request in self.pending:
            if self._covered(request):
                request.ok = True
            elif now < request.deadline and not stuck and not (down and request.kind != "flush"):
                still.append(request)
                continue
            if stuck and not request.ok:
                _logger.warning(
                    "otel-sched %s pipeline: every export lane is hung (export_timeout_millis=%s); %s ends "
                    "now",
                    self.signal.value,
                    self.config.export_timeout_millis,
                    "force_flush" if request.kind == "flush" else "shutdown",
                )
            if request.kind != "flush":
                finished = True
                self._abandon()
                self.bridge.close()
                coordinator().leave(self.owner)
                if request.kind == "close":  # nobody waits for a collected processor: finish the job here
                    self._shutdown_exporters(request.deadline)
                    _LIVE.discard(self.owner)
            request.done.set()
        self.pending = still
        if finished:
            for request in self.pending:
                request.done.set()
            self.pending = []
            self.pool.stop()
        return finished

    def _covered(self, request: _Request) -> bool:
        """No queued or in-flight task has a seq at or below the request's target."""
        target = request.target or 0
        low = self.queues.min_seq()
        if low is not None and low <= target:
            return False
        jobs = [*self.dispatcher.retries, *self.pool.pending()]
        return not any(not job.timed_out and _first_seq(job) <= target for job in jobs)

    def _stuck(self) -> bool:
        """Nothing can move: every live lane is hung (and could not be replaced), none is running a
        job within its timeout.  Waiting longer for a flush or shutdown would only wait."""
        if self.pool.live_lanes() > len(self.dispatcher.hung):
            return False
        return not any(not job.timed_out for job in self.pool.running())

    def _down(self) -> bool:
        """Every endpoint is failing (degraded mode) and no export call is running: a shutdown
        waiting longer would only wait for the next probe.  It ends now, its items spooled or
        counted, rather than spend the rest of its budget (at exit, a budget that a process manager
        may add to its own: gunicorn's master waits for its workers, then exits in turn)."""
        if self.dispatcher.modes.mode is not Mode.DEGRADED:
            return False
        return not any(not job.timed_out for job in self.pool.running())

    def _abandon(self) -> None:
        """Shutdown ends: spool (spool on) or count as ``shutdown_timeout`` everything still held --
        in the intake, queued, waiting for a retry, and in flight.  A batch still being sent is
        abandoned too: if its call succeeds after all, it is delivered as well (at least once)."""
        jobs = self.pool.withdraw()
        self.dispatcher.drain_completions()  # what was reported before the withdrawal counts as it is
        self.drain.drain(time.monotonic(), None)
        leftovers: list[tuple[Task, str]] = []
        for sq in self.queues:
            while sq.tasks:
                leftovers.append((self.queues.pop_head(sq), "shutdown_timeout"))
        # Handed to the exporter before: the SDK-named metric already counted them as processed.
        submitted = self.dispatcher.withdraw(jobs)
        if leftovers or submitted:
            spooled = self.stats.spooled_items
            self.ledger.drop(leftovers)
            self.ledger.drop(submitted, submitted=True)
            leftovers += submitted
            spooled = self.stats.spooled_items - spooled
            _logger.warning(
                "otel-sched %s pipeline: shutdown ended with %d items not exported: %d spooled, %d dropped "
                "(shutdown_timeout)",
                self.signal.value,
                len(leftovers),
                spooled,
                len(leftovers) - spooled,
            )


# -- process-wide hooks: fork, interpreter exit and SIGTERM -------------------------------------------

_LIVE: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for pipeline in list(_LIVE):
        pipeline._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


_EXIT_DEADLINE: float | None = None


def _exit_deadline() -> float | None:
    """At interpreter exit, the one deadline every pipeline's shutdown shares; None before.

    Exit is when atexit hooks run: on the main thread once threading has shut down (every
    non-daemon thread joined), so that the main thread no longer counts as alive (CPython 3.8
    to 3.13).  The first shutdown at exit -- ours or a provider's hook, in
    whatever order they were registered -- starts every live pipeline draining at once, so
    the process exits within ``exit_timeout_millis`` however many pipelines there are and
    whatever the collector does.
    """
    global _EXIT_DEADLINE
    if _EXIT_DEADLINE is not None:
        return _EXIT_DEADLINE
    main = threading.main_thread()
    if main.is_alive() or threading.current_thread() is not main:
        return None
    live = list(_LIVE)
    budget = max((p.config.exit_timeout_millis for p in live), default=0.0) / 1000.0
    _EXIT_DEADLINE = deadline = time.monotonic() + budget
    for pipeline in live:
        pipeline.close_async(deadline)
    return deadline


_SIGTERM_HOOKED = False


def install_sigterm_flush() -> None:
    """Drain every pipeline before a SIGTERM that would end the process without running atexit.

    SIGTERM's default action ends the process at once: no atexit hook, so no flush by us or by
    the SDK's providers, and whatever is queued is lost without a count (a plain ``python app.py``
    stopped by Kubernetes; uvicorn, which restores the previous handler and raises the signal
    again after its own graceful shutdown).  Where the handler is still the default, ours drains
    every live pipeline within ``exit_timeout_millis`` and then ends the process of the same
    signal, as it would have.  A handler the application or its server set is never replaced:
    such a process exits through atexit, where ``shutdown_all`` drains.  Main thread only (Python
    delivers signals there); installed once per process.
    """
    global _SIGTERM_HOOKED
    if _SIGTERM_HOOKED or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _flush_then_terminate)
    except (AttributeError, OSError, ValueError):  # no SIGTERM here, or not the main interpreter
        return
    _SIGTERM_HOOKED = True


def _flush_then_terminate(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    try:
        budget = max((p.config.exit_timeout_millis for p in list(_LIVE)), default=0.0) / 1000.0
        shutdown_all(budget)
    finally:
        signal.raise_signal(signum)


def shutdown_all(timeout_s: float = 10.0) -> None:
    """Flush and stop every live pipeline within one overall deadline (used at interpreter exit)."""
    deadline = time.monotonic() + timeout_s
    exiting = _exit_deadline()
    if exiting is not None:
        deadline = min(deadline, exiting)
    for pipeline in list(_LIVE):
        pipeline.close_async(deadline)  # all drain at once
    for pipeline in list(_LIVE):
        pipeline.shutdown(max(deadline - time.monotonic(), 0.0))


def _first_seq(job: Job) -> int:
    return job.first_seq if job.express else min(t.seq for t in job.batch)

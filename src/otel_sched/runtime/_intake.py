"""The intake: where an application thread leaves an item, and where the scheduler takes it from.

Owns the intake deque and its wake-up protocol (:class:`Intake`), the conversions done on the
application thread (``snapshot_log``) and on the scheduler thread (``_readable_log``), and the
draining of the intake into the queues (:class:`IntakeDrain`: classify, encode on the pre-encoded
path, admit by runs).

Threads: application threads call :meth:`Intake.offer` (one ``deque.append`` and two comparisons:
no lock, no I/O), :meth:`Intake.offer_checked` and :meth:`Intake.reject_shutdown`; a lane thread or
a caller of flush/shutdown rings the bell.  Everything else -- taking items out, ``cap``,
``wake_after``, :class:`IntakeDrain` -- is the scheduler thread's.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import StatusCode

from .._threads import export_depth
from ..otlp._encoding import EncodingError
from ..scheduling._tenancy import Released

if TYPE_CHECKING:
    from ..scheduling._task import Signal, Task
    from ..scheduling._tenancy import Holder
    from ._builders import Stages
    from ._ledger import Ledger
    from ._metrics import Stats
    from ._standing import Standing

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")

_CHUNK = 4096  # intake items classified per scheduler iteration before dispatching again
MIN_INTAKE = 2048
_MALFORMED = "otel-sched could not classify a %s item; dropping it"


class _Nested:
    """An item produced on one of our own threads, with the depth it was produced at."""

    __slots__ = ("depth", "item")

    def __init__(self, item: Any, depth: int) -> None:
        self.item = item
        self.depth = depth


class _Bell:
    """Wakes the scheduler: :meth:`ring` from any thread, :meth:`wait` on the scheduler thread only.

    A binary semaphore on a raw lock (locked: not rung).  Both sides are one C call; an Event is
    a Condition's Python code on each side, and one side is the application thread.

    Guarantees: a ring before or during a ``wait`` ends it; rings before a ``wait`` coalesce into
    one; :meth:`clear` forgets a ring not yet waited for.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def ring(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress costs a context manager on the application thread
            self._lock.release()
        except RuntimeError:  # released already: rung and not yet waited for
            pass

    def wait(self, timeout: float | None) -> bool:
        """True if rung (consuming the ring), False once ``timeout`` seconds (None: no limit) pass."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))

    def clear(self) -> None:
        self._lock.acquire(blocking=False)


def _intake_batch() -> int:
    """Raw items let wait in the intake before the scheduler is woken (when a batch could go).

    A raw SDK span is a dozen or more GC-tracked objects, alive until it is classified.  Once the
    young generation's threshold of them (``gc.get_threshold()[0]``, 700 by default) piles up, the
    allocating thread -- the application's -- collects them and promotes the survivors, which older
    collections then traverse again.  Woken every 1/20 of the threshold, the scheduler frees them
    first: they die young.  With the collector off only the cost of a wake-up counts.
    """
    threshold = gc.get_threshold()[0]
    if not gc.isenabled() or threshold <= 0:  # a threshold of 0 turns automatic collection off
        return 256
    return max(8, min(256, threshold // 20))


_NO_CONTEXT = Context()
_new_object = object.__new__


def _log_snapshot(keep_context: bool) -> Callable[[Any], Any]:
    def snapshot_log(record: Any) -> Any:
        """At ``on_emit``: what the stock processor's copy protects, for a fraction of its cost.

        The API record's fields (a processor registered after ours that sets ``body`` or
        ``attributes`` changes its own record, not ours) without the Context, which may be large
        (kept only where the tenant is read from it: the classifier then drops it), plus the
        record's resource, scope and limits as they are now.  The record itself is rebuilt on the
        scheduler thread.
        """
        if not isinstance(record, ReadWriteLogRecord):
            return record
        api = record.log_record
        try:
            fields = api.__dict__.copy()
        except AttributeError:  # an API record without a __dict__: the stock processor's copy
            api = copy.copy(api)
            if not keep_context:
                api.context = _NO_CONTEXT
            return ReadWriteLogRecord(api, record.resource, record.instrumentation_scope, record.limits)
        if not keep_context:
            fields["context"] = _NO_CONTEXT
        # A plain tuple (no span or log record is one): the cheapest object to build here.
        return (type(api), fields, record.resource, record.instrumentation_scope, record.limits)

    return snapshot_log


snapshot_log = _log_snapshot(keep_context=False)
# With a tenant key: a log record's context names its baggage and span; the classifier reads, then drops it.
snapshot_log_with_context = _log_snapshot(keep_context=True)


def _error_span(item: Any) -> bool:
    """An ERROR span, told apart on the application thread without the priority rules."""
    try:
        return bool(item.status.status_code is StatusCode.ERROR)
    except Exception:  # noqa: BLE001 - not a span (a nested item): not urgent
        return False


def _error_log(item: Any) -> bool:
    """A log record of severity ERROR or above (as offered: usually a ``snapshot_log`` tuple)."""
    try:
        severity = item[1].get("severity_number") if type(item) is tuple else item.log_record.severity_number
        return severity is not None and severity.value >= SeverityNumber.ERROR.value
    except Exception:  # noqa: BLE001 - not a log record (a nested item): not urgent
        return False


def _readable_log(record: Any) -> Any:
    """The stock BatchLogRecordProcessor's ReadableLogRecord, built from the on_emit snapshot."""
    if type(record) is tuple:  # from snapshot_log
        kind, fields, resource, scope, limits = record
        api_record = _new_object(kind)
        api_record.__dict__ = fields
    elif isinstance(record, ReadWriteLogRecord):  # offered without snapshot_log
        api_record = copy.copy(record.log_record)
        api_record.context = _NO_CONTEXT
        resource, scope, limits = record.resource, record.instrumentation_scope, record.limits
    else:
        return record
    return ReadableLogRecord(
        log_record=api_record,
        resource=resource if resource is not None else Resource.create({}),
        instrumentation_scope=scope,
        limits=limits,
    )


class Intake:
    """The unclassified items between the application threads and the scheduler.

    Built once per pipeline (the processors bind :meth:`offer` once); :meth:`reset` starts it
    afresh after a fork.  Attribute names are short on purpose: :meth:`offer` is the hot path.

    Slotted: the fields live in the object itself.  With a plain instance (values in a separate
    array) on_end cost the application thread ~140 ns more per span whenever the scheduler ran
    concurrently (benchmarks/bench_on_end.py, spans: ~580 against ~430 ns, 2-core machine).
    """

    __slots__ = (
        "base_cap",
        "batch",
        "bell",
        "cap",
        "closed",
        "max_depth",
        "queue",
        "quiet",
        "sleeping",
        "stats",
        "urgent",
        "wake_after",
    )

    stats: Stats  # set by reset()
    bell: _Bell
    sleeping: bool
    wake_after: int
    batch: int
    base_cap: int

    def __init__(self, cap: int, urgent: Callable[[Any], bool], max_depth: int) -> None:
        # Items beyond which offer() goes to _overflow().  Written by the scheduler only (the
        # memory level bounds it by bytes); at most base_cap.
        self.cap = cap
        self.urgent = urgent  # an item that may displace another at a full intake (ERROR)
        self.max_depth = max_depth  # nesting beyond which an item from our own threads is dropped
        # Set once by shutdown or close_async, never cleared: nothing is held back any more.
        self.closed = False
        self.queue: deque[Any] = deque()

    def reset(self, stats: Stats) -> None:
        """A fresh intake (construction, after a fork): the parent's items stay the parent's."""
        # Appended by application threads (and appendleft by the holder); popped by the scheduler.
        self.queue = deque()
        self.stats = stats  # app_drops: the counters the application threads advance
        self.bell = _Bell()
        # True only while the scheduler is about to wait or waits: the next offer rings the bell.
        self.sleeping = False
        # An append to an intake already holding this many items wakes the scheduler.
        self.wake_after = 0
        # True: a lane's completion does not wake the scheduler (set by the scheduler while spans
        # wait for a full express batch: the next wake-up, due by a deadline, settles it).
        self.quiet = False
        self.batch = _intake_batch()  # see _intake_batch; refreshed by the scheduler
        self.base_cap = self.cap  # the cap at the NORMAL memory level

    # -- application threads ----------------------------------------------------------------------------

    def offer(self, item: Any) -> None:
        """Hot path: called by on_end / on_emit.  O(1), lock-free."""
        intake = self.queue
        n = len(intake)
        if n < self.cap:
            intake.append(item)
            if n >= self.wake_after and self.sleeping:
                self.sleeping = False
                self.bell.ring()
        else:
            self._overflow(item)

    def _overflow(self, item: Any) -> None:
        """The intake is full (the scheduler is starved of the GIL).  An ERROR span or ERROR log
        takes the place of the newest item, else of the oldest, when that one is not urgent (which
        is dropped as ``intake_full`` instead); when both ends are urgent too it is held beyond the
        cap, up to twice it.  O(1) and lock-free: one status check and two deque operations."""
        urgent = self.urgent
        intake = self.queue
        if urgent(item):
            with contextlib.suppress(IndexError):  # IndexError: the scheduler emptied it meanwhile
                victim = intake.pop()
                if urgent(victim):
                    intake.append(victim)
                    victim = intake.popleft()
                    if urgent(victim):
                        intake.appendleft(victim)
                        victim = None
                if victim is not None:
                    next(self.stats.app_drops["intake_full"])
                elif len(intake) >= 2 * self.cap:
                    next(self.stats.app_drops["intake_full"])
                    return
            intake.append(item)
            if self.sleeping:
                self.sleeping = False
                self.bell.ring()
            return
        next(self.stats.app_drops["intake_full"])

    def offer_checked(self, item: Any) -> None:
        """offer() for logs: items produced on our own threads are tagged; past the depth cap, dropped."""
        depth = export_depth()
        if depth is None:
            self.offer(item)
        elif depth + 1 > self.max_depth:
            next(self.stats.app_drops["recursion"])
        else:
            self.offer(_Nested(item, depth + 1))

    def reject_shutdown(self, item: Any) -> None:
        next(self.stats.app_drops["already_shutdown"])


class IntakeDrain:
    """The scheduler's side of the intake: classify (and encode) items, admit them into the queues.

    Every item it takes ends in a queue or in a count (:class:`Ledger`); ``ledger.taken`` grows by
    what it took, whatever happens, so that a failed step's items can be counted.
    """

    def __init__(
        self,
        signal: Signal,
        intake: Intake,
        stages: Stages,
        holder: Holder | None,
        standing: Standing,
        ledger: Ledger,
        stats: Stats,
        prepare: Callable[[Any], Any] | None,
    ) -> None:
        self.signal = signal
        self.intake = intake
        self.classifier = classifier = stages.classifier
        self.tenants, self.admission = stages.tenants, stages.admission
        self.queues, self.former = stages.queues, stages.former
        self.holder = holder
        self.standing = standing
        self.ledger = ledger
        self.stats = stats
        self.prepare = prepare  # raw item -> what is classified (logs: the stock ReadableLogRecord)
        # Resolved once per build: the per-item loop has no fast-path branch.  Pre-encoded path:
        # classifies and encodes in one call.
        self.classify_item: Callable[[Any, float], Task] = classifier.classifier()
        self.max_item = 1 << 62  # a predicted size: admission bounds it by max_queue_bytes

    def use_encoding(
        self, encode: Callable[[Any], bytes], envelopes: Callable[[Any], Any], max_item: int
    ) -> None:
        """The pre-encoded path: exact costs, each item encoded as it is classified, to fit one request."""
        self.classifier.use_exact_cost()
        self.classify_item = self.classifier.encoding_classifier(encode, envelopes)
        self.max_item = max_item

    def chunk(self) -> int:
        """Intake items to classify before dispatching again: what the queues have room for (at
        least a batch, at most :data:`_CHUNK`).  A scheduler that was starved finds a full intake;
        admitted all at once it would shed what the lanes are about to make room for."""
        room = self.admission.max_count - self.queues.count
        return min(_CHUNK, max(room, self.former.max_items))

    def drain(self, now: float, limit: int | None) -> None:
        """Classify up to ``limit`` intake items (on the pre-encoded path: and encode them, in the
        same call) and admit them with the consecutive arrivals of their class and tenant, as
        runs (``Admission.admit_runs``)."""
        intake = self.intake.queue
        self.tenants.now = now
        classify = self.classify_item
        prepare = self.prepare
        # Once shutting down nothing is held back: every span goes out (or is counted) with the rest.
        park = self.holder.park if self.holder is not None and not self.intake.closed else None
        max_item = self.max_item
        min_priority = self.standing.min_priority
        drops: list[tuple[Task, str]] = []
        runs: list[list[Task]] = []
        run: list[Task] = []
        last_priority, last_tenant = -1, ""
        n = parked = 0
        try:
            while intake and (limit is None or n < limit):
                raw = intake.popleft()
                n += 1
                depth = 0
                if type(raw) is _Nested:
                    depth, raw = raw.depth, raw.item
                elif type(raw) is Released:
                    raw = raw.item
                elif park is not None and park(raw, now):
                    parked += 1  # still held: in the intake term, not taken
                    continue
                item = None
                try:
                    item = raw if prepare is None else prepare(raw)
                    task = classify(item, now)
                except EncodingError as exc:
                    self._encode_failed_item(item, now, exc)
                    continue
                except Exception:  # one malformed item must not stop the pipeline
                    _logger.exception(_MALFORMED, self.signal.value)
                    self.stats.dropped["malformed"] += 1
                    continue
                if depth:
                    task.depth = depth
                priority = task.priority
                if priority < min_priority:
                    drops.append((task, "memory_pressure"))
                    continue
                if task.cost > max_item:
                    drops.append((task, "item_too_large"))
                    continue
                if priority == last_priority and task.tenant == last_tenant:
                    run.append(task)
                else:
                    run = [task]
                    runs.append(run)
                    last_priority, last_tenant = priority, task.tenant
            if runs:
                dropped = self.admission.admit_runs(runs, self.queues)
                if dropped:
                    drops.extend(dropped)
        finally:  # taken, whatever happens next: the loop's recovery counts what a failed step lost
            self.ledger.taken += n - parked
        if n:
            self.former.note_arrival(now)
        if drops:
            self.ledger.drop(drops)

    def _encode_failed_item(self, item: Any, now: float, exc: EncodingError) -> None:
        try:
            task = self.classifier.classify(item, now)
        except Exception:  # not seen when encoding it: classify() itself fails (a hostile item)
            _logger.exception(_MALFORMED, self.signal.value)
            self.stats.dropped["malformed"] += 1
            return
        if self.stats.dropped["encode_error"] == 0:
            _logger.warning("otel-sched: an item could not be OTLP-encoded and is dropped (%s)", exc)
        self.ledger.drop([(task, "encode_error")])

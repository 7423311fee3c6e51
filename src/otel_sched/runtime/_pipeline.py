"""The pipeline: intake -> classify -> admission/queues -> policy -> batch former -> lanes.

Threads and what each may touch:

* application threads call :meth:`Pipeline.offer` -- one ``deque.append`` and two
  comparisons; no lock, no I/O, no allocation beyond the deque slot;
* one scheduler thread owns everything else: it drains the intake, classifies,
  admits or sheds, forms batches, hands them to idle lanes, processes lane results,
  enforces export timeouts and answers flush/shutdown requests;
* one thread per lane calls the exporter (see ``_workers``).

Requests from other threads (force_flush, shutdown) are objects appended to a
deque and answered through an ``Event``: the scheduler never blocks on callers and
callers wait against a monotonic deadline.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import logging
import math
import operator
import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import StatusCode

from .._config import Config
from .._safe import safe_url
from .._threads import export_depth, register_thread, unregister_thread
from ..durability._spool import Spool
from ..durability._spool_file import SpoolUnavailable
from ..otlp._encoding import (
    EncodingError,
    assemble_logs,
    assemble_traces,
    encode_log,
    encode_log_native,
    encode_log_python,
    encode_span,
    encode_span_native,
    encode_span_python,
    estimate_span_native,
    log_envelopes,
    span_classifier_native,
    span_envelopes,
)
from ..otlp._exporters import ExporterSpec, assemble_tasks, build_spec, fast_path_for
from ..process._coordinator import TICK, Member, coordinator
from ..process._governors import BatchTuner, MemoryLevel, shape_batches
from ..scheduling._admission import Admission
from ..scheduling._batching import BatchFormer
from ..scheduling._classify import Classifier, TenantRegistry
from ..scheduling._cost_model import CostModel
from ..scheduling._policies import deadline_for, make_policy
from ..scheduling._priority_rules import compile_rules
from ..scheduling._queues import QueueSet
from ..scheduling._task import Signal, Task
from ..scheduling._tenancy import Holder, Released
from ._concurrency import AIMDController, Mode, ModeMachine
from ._concurrency import Signal as Feedback
from ._metrics import SelfMetrics, Stats, sdk_error_type
from ._routing import Router
from ._workers import Job, Lane, LanePool, Outcome

__all__ = ["Pipeline", "snapshot_log"]

_logger = logging.getLogger(__name__)

_CHUNK = 4096  # intake items classified per scheduler iteration before dispatching again
_MIN_INTAKE = 2048
_MAX_ATTEMPTS = 6  # transient failures on the pre-encoded path: tries per batch, as the stock exporters
_LIVE_PER_REPLAY = 3  # with a live backlog, one spooled batch is replayed per this many live batches
_MIN_PRIORITY = {MemoryLevel.NORMAL: 0, MemoryLevel.SOFT: 1, MemoryLevel.HARD: 2}
# Batches that may wait behind each busy lane while exports are instant (see _may_queue_ahead).
_INSTANT = 0.002
_AHEAD_INSTANT = 4
_TUNE_EVERY = 8  # successful exports between self-tuning decisions
_TASK_OVERHEAD = 256  # a Task, its bytes object's header and its queue slot
_RAW_OVERHEAD = {Signal.TRACES: 3072, Signal.LOGS: 1024}  # an SDK span / log record around its payload
_COORDINATE_EVERY = 0.125  # seconds between reports to the process-wide level (its TICK is 0.25)
# ...or sooner, once the bytes held have grown this much (at least) since the last report: a rise
# towards the next memory level is reported at once, a steady state costs no locks per step.
_REPORT_STEP = 256 * 1024
_ABANDON_MARGIN = 0.25  # seconds before shutdown's deadline at which the scheduler gives up waiting
_MALFORMED = "otel-sched could not classify a %s item; dropping it"
_MEMBERS = itertools.count(1)  # names pipelines in the process-wide level
# Reasons for which a pre-encoded item goes to the spool (when there is one) instead of being lost.
_SPOOLABLE: frozenset[str] = frozenset(
    {
        "queue_full",
        "shed_priority",
        "shed_fair_share",
        "shed_trace",
        "export_failed",
        "export_error",
        "export_timeout",
        "shutdown_timeout",
        "memory_pressure",
    }
)
_depth_of = operator.attrgetter("depth")
_deadline_of = operator.attrgetter("deadline")


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


class _Request:
    """force_flush or shutdown, answered by the scheduler thread through ``done``."""

    __slots__ = ("deadline", "done", "kind", "ok", "target")

    def __init__(self, kind: str, deadline: float) -> None:
        self.kind = kind
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = False
        self.target: int | None = None  # highest task seq the request covers, once known


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


class Pipeline:
    """One processor's scheduled export pipeline.  See the module docstring for the thread model."""

    def __init__(
        self,
        config: Config,
        exporter: Any,
        *,
        exporter_factory: Callable[..., Any] | None = None,
        meter_provider: Any = None,
        metrics_enabled: bool = False,
    ) -> None:
        self.config = config
        self.signal = config.signal
        self._exporter = exporter
        self._spec: ExporterSpec = build_spec(exporter, exporter_factory, list(config.endpoints))
        self._meter_provider = meter_provider
        self._metrics_enabled = metrics_enabled
        self._priority_of = compile_rules(config.priority_rules, config.signal.value)
        # Logs are converted as the stock processor does; spans go as they are (no call per item).
        self._prepare: Callable[[Any], Any] | None = None if config.signal is Signal.TRACES else _readable_log
        self._urgent: Callable[[Any], bool] = _error_span if config.signal is Signal.TRACES else _error_log
        # Unclassified items waiting for the scheduler.  The GIL lets an application thread run ~5 ms
        # between scheduler slices (hundreds of spans), so the intake must absorb such a burst.
        self._intake_cap = max(config.max_queue_size, _MIN_INTAKE)
        self._timeout = config.export_timeout_millis / 1000.0
        self._shutdown = False
        self.name = _stable_name(config.signal, exporter)
        self._build()
        _LIVE.add(self)
        self._join_coordinator()

    # -- construction (also after fork) ---------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        weights = dict(cfg.tenant_weights)
        self._weight_of: Callable[[str], float] = lambda tenant: weights.get(tenant, 1.0)
        self.cost_model = CostModel()
        self.policy = make_policy(
            cfg.policy,
            aging_seconds=cfg.aging_millis / 1000.0,
            quantum=cfg.fair_quantum_bytes,
            predict_seconds=self.cost_model.item_seconds,
        )
        self.queues = QueueSet(
            self._weight_of,
            self.policy.activate,
            cost_buckets=self.policy.cost_buckets,
            on_compact=self.policy.compact,
        )
        self.admission = Admission(cfg.max_queue_size, cfg.max_queue_bytes, self._weight_of)
        self.former = BatchFormer(
            cfg.max_export_batch_size, cfg.max_export_batch_bytes, cfg.schedule_delay_millis / 1000.0
        )
        self.tenants = TenantRegistry(cfg.max_tenants, lambda t: t not in self.queues.tenant_count)
        self.classifier = Classifier(
            cfg.signal,
            self._priority_of.function(),
            cfg.tenant_key,
            self.tenants,
            deadline_for(cfg.max_age_millis),
            cfg.inherit_priority,
            native_estimate=estimate_span_native if cfg.native_encoder else None,
            native_classifier=(
                span_classifier_native if cfg.native_encoder and self._priority_of.status_rule_only else None
            ),
        )
        self.stats = Stats(cfg.max_tenants)
        if cfg.signal is Signal.TRACES:
            self._encode: Callable[[Any], bytes] = encode_span if cfg.native_encoder else encode_span_python
            self._envelopes: Callable[[Any], Any] = span_envelopes
        else:
            self._encode = encode_log if cfg.native_encoder else encode_log_python
            self._envelopes = log_envelopes
        self.metrics = SelfMetrics(
            cfg.signal,
            self._meter_provider,
            self._metrics_enabled,
            cfg.max_queue_size,
            lambda: self.queues.count + len(self._intake),
            self._gauges,
            self.processed_counts,
            self.sync,
        )
        self._intake: deque[Any] = deque()
        self._taken = 0  # items taken from the intake (each then ends in a queue, a job or a count)
        # Held by the scheduler thread across each step: snapshot() reads the balance between steps,
        # never half way through moving an item from one term to another.
        self._step_lock = threading.RLock()
        # Spans waiting for an ancestor to end, for their tenant (or, inherit_priority, their class).
        self.holder: Holder | None = None
        if cfg.signal is Signal.TRACES and (cfg.tenant_key or cfg.inherit_priority):
            self.holder = Holder(
                self.classifier.resolver,
                self._intake.appendleft,
                # Half the queue: what a flush releases at once fits beside what is queued.
                max(cfg.max_queue_size // 2, 256),
                self._priority_of.function() if cfg.inherit_priority else None,
            )
        self._completions: deque[tuple[Lane, Job, Outcome, float]] = deque()
        self._requests: deque[_Request] = deque()
        self._pending: list[_Request] = []
        self._wake = _Bell()
        self._sleeping = False
        # An append to an intake already holding this many items wakes the scheduler.
        self._wake_after = 0
        self._intake_batch = _intake_batch()
        self._dispatchable = False  # the last dispatch could have started a job
        self._in_flight = 0  # items in jobs that were submitted and have not completed or timed out
        self._flight_item = 512.0  # bytes per item of the last batch dispatched
        self._export_seconds = math.inf  # moving average of successful export calls (_may_queue_ahead)
        self._jobs_in_flight = 0
        self._retries: deque[Job] = deque()
        self._hung: set[Lane] = set()  # timed out, no replacement possible: wait for the call to return
        self._pid = os.getpid()
        self._level = MemoryLevel.NORMAL
        self._lane_cap = 1 << 30
        self._share_bytes = 0
        self._contended = False  # another pipeline of the process is backlogged too
        self._coordinate_at = -math.inf
        self._report_above = 0  # held bytes at which to report before _coordinate_at
        self._turn_allowance = float(cfg.max_export_batch_bytes)
        self._base_intake_cap = self._intake_cap
        self._tuner = (
            BatchTuner(
                max(1, cfg.max_export_batch_size // 8),
                cfg.max_export_batch_size,
                cfg.schedule_delay_millis / 10000.0,
                cfg.schedule_delay_millis / 1000.0,
            )
            if cfg.self_tuning
            else None
        )
        self._since_tune = 0
        # (items, delay) as self-tuning last chose them; the CPU governor's factor scales them.
        self._tuned = (cfg.max_export_batch_size, cfg.schedule_delay_millis / 1000.0)
        self._batch_factor = 1.0
        self._app_drops_reported: dict[str, int] = {}
        self._step_failures = 0
        self._unaccounted = 0  # the balance's gap after the last failed step's items were counted
        prefix = f"otel-sched-{cfg.signal.value}"
        self._build_pool(prefix)
        # Resolved once per build (after fork too): the per-item loop has no fast-path branch.
        self._classify_item: Callable[[Any, float], Task] = self.classifier.classifier()
        self._max_item = 1 << 62  # a predicted size: admission bounds it by max_queue_bytes
        if self._fast:
            self.classifier.use_exact_cost()
            self._classify_item = self.classifier.encoding_classifier(self._encode, self._envelopes)
            self._max_item = cfg.max_export_batch_bytes  # exact: it must fit in one request
        self._open_spool()
        self._thread = threading.Thread(target=self._run, name=f"{prefix}-scheduler", daemon=True)
        self._thread.start()

    def _build_pool(self, prefix: str) -> None:
        spec, cfg = self._spec, self.config
        endpoints = spec.endpoints or [""]
        total = cfg.max_concurrent_exports if spec.can_multiply else 1
        per_endpoint = [
            total // len(endpoints) + (1 if i < total % len(endpoints) else 0) for i in range(len(endpoints))
        ]
        per_endpoint = [max(1, n) for n in per_endpoint]

        signal = cfg.signal.value
        fast = None if not cfg.otlp_fast_path or spec.asynchronous else fast_path_for(spec.first, signal)
        self._fast = fast is not None
        # Copies of a batch's bytes while it is sent: the tasks' own, the assembled request body,
        # and the compressed body when the sender compresses (gzip/deflate: a third buffer).
        compressed = fast is not None and getattr(fast.sender, "compression", "none") != "none"
        self._copies_in_flight = 3 if compressed else 2
        # Bytes an item holds beyond its encoded size (measured with tracemalloc on CPython 3.11 and
        # opentelemetry-sdk 1.45, rounded up): the memory budget is about RSS, not payload.
        self._raw_overhead = _RAW_OVERHEAD[self.signal]
        self._task_overhead = _TASK_OVERHEAD + (0 if self._fast else self._raw_overhead)
        if fast is not None:
            fast.sender.shutdown()  # it only proved the path works; lanes get their own senders

        def make(endpoint: int) -> Any:
            exporter = spec.make(spec.endpoints[endpoint] if spec.endpoints else None)
            if not self._fast:
                return exporter
            lane = fast_path_for(exporter, signal)
            if lane is None:
                raise TypeError(f"{type(exporter).__name__} built for a lane has no pre-encoded path")
            return lane

        def first_lane() -> Any:
            if spec.endpoints:  # every lane is built for its endpoint; the user's instance is a template
                return make(0)
            if not self._fast:
                return spec.first
            return fast_path_for(spec.first, signal)

        first = first_lane()
        self.pool = LanePool(prefix, make, first, spec.asynchronous, per_endpoint, self._lane_done)
        self.router = Router([safe_url(e) for e in spec.endpoints] or ["default"])
        lanes = self.pool.live_lanes()
        self.controller = AIMDController(lanes, adaptive=cfg.adaptive_concurrency)
        self.modes = ModeMachine()

    def _open_spool(self) -> None:
        cfg = self.config
        self.spool: Spool | None = None
        self._live_since_replay = 0
        if not cfg.spool_dir:
            return
        if not self._fast:
            _logger.warning(
                "otel-sched: OTEL_PYTHON_SCHED_SPOOL_DIR=%r is ignored for the %s pipeline: the spool stores "
                "pre-encoded OTLP and needs the fast path (a stock OTLP exporter, otlp_fast_path on)",
                cfg.spool_dir,
                self.signal.value,
            )
            return
        try:
            self.spool = Spool(
                cfg.spool_dir,
                signal_scope=self.signal.value,
                max_bytes=cfg.spool_max_bytes,
                max_age_s=cfg.spool_max_age_millis / 1000.0,
            )
        except SpoolUnavailable as exc:
            _logger.error(
                "otel-sched: the spool at %r cannot be used (%s); the %s pipeline continues in memory only",
                cfg.spool_dir,
                exc,
                self.signal.value,
            )
            return
        head, tail = os.path.split(cfg.spool_dir.rstrip(os.sep))
        if tail == "{pid}":  # one directory per worker: take over what dead workers left behind
            try:
                adopted = self.spool.adopt_orphans(head)
            except SpoolUnavailable:
                adopted = 0
            if adopted:
                _logger.info("otel-sched: adopted %d spooled batches left by earlier processes", adopted)

    # -- the process-wide level ------------------------------------------------------------------------

    def _join_coordinator(self) -> None:
        cfg = self.config
        explicit = cfg.memory_limit_mib is not None
        # Derived: 1.5 x the memory the queue bounds let this pipeline hold, in _held_bytes' terms.
        bound = (
            cfg.max_queue_bytes
            + cfg.max_queue_size * self._task_overhead
            + (self._base_intake_cap + (0 if self.holder is None else self.holder.cap)) * self._raw_overhead
        )
        budget = cfg.memory_limit_mib if explicit else 1.5 * bound / (1024 * 1024)
        coordinator().join(
            self,
            Member(
                f"{self.signal.value}#{next(_MEMBERS)}",
                cfg.signal_weights.get(self.signal.value, 1.0),
                float(budget or 0.0),
                explicit,
                cfg.cpu_cap_cores,
                cfg.resource_aware,
                self._threads,
                self._spec.collectors(),
            ),
        )

    def _threads(self) -> list[threading.Thread]:
        threads = [self._thread]
        threads.extend(lane._thread for lane in self.pool.lanes if lane._thread is not None)
        return threads

    def _held_bytes(self) -> int:
        """The memory this pipeline holds: queued, in flight, in the intake and held for a tenant.

        Encoded (or predicted) bytes plus the Python objects around them: a Task per queued or
        in-flight item, the raw SDK object of an item not yet encoded, and the request body a
        lane assembles from the bytes of a batch in flight (a second copy while it is sent, a
        third when the sender compresses it).
        """
        queues = self.queues
        per_item = queues.mean_cost(self._flight_item)
        unclassified = len(self._intake) + (0 if self.holder is None else self.holder.count)
        return int(
            queues.nbytes
            + queues.count * self._task_overhead
            + self._flight_bytes()
            + unclassified * (per_item + self._raw_overhead)
        )

    def _flight_bytes(self) -> int:
        """What the batches in flight hold (see :meth:`_held_bytes`).  Bounded to a third of the
        memory share (:meth:`_may_dispatch`): request bodies and their compressed copies are no
        queue's, and concurrency grows with the collector's latency, so without that bound the
        budget would bound the queues only."""
        return int(self._in_flight * (self._copies_in_flight * self._flight_item + self._task_overhead))

    def _coordinate(self, now: float) -> None:
        self._intake_batch = _intake_batch()  # the application may tune or stop the collector
        active = self.queues.count >= self.former.max_items or self._jobs_in_flight > 0
        ready = self.former.due(self.queues, now) and self._may_dispatch(now, turns=False)
        held = self._held_bytes()
        coord = coordinator()
        member = coord.refresh(self, held, active, now, ready, self._jobs_in_flight)
        if member is None:
            self._report_above = 1 << 62
            return
        self._report_above = held + max(_REPORT_STEP, member.share_bytes // 64)
        if not self.config.resource_aware:
            return
        self._contended = coord.contended(self)
        self._lane_cap = coord.lane_cap(self, self.pool.live_lanes())
        self._share_bytes = member.share_bytes
        if coord.batch_factor != self._batch_factor:
            self._batch_factor = coord.batch_factor
            self._shape_batches()
        level = member.level
        if level is self._level:
            return
        if level.value > self._level.value:
            _logger.warning(
                "otel-sched %s pipeline: memory level %s (%s): %s",
                self.signal.value,
                level.name,
                "budget" if member.bytes > 0 else "process",
                "only HIGH items are accepted" if level is MemoryLevel.HARD else "LOW items are refused",
            )
        self._level = level
        base_delay = self.config.schedule_delay_millis / 1000.0
        if level is MemoryLevel.NORMAL:
            self._intake_cap = self._base_intake_cap
            self._shape_batches()
        else:
            # Give memory back: an intake bounded by bytes (a quarter of the share), batches sent
            # sooner, and the classes now refused shed down to the soft level.
            per_item = self.queues.mean_cost(512.0)
            self._intake_cap = int(min(self._base_intake_cap, max(64, 0.25 * member.share_bytes / per_item)))
            self.former.delay = min(self.former.delay, base_delay / 2)
            self._shed_below(_MIN_PRIORITY[level], int(0.8 * member.share_bytes))

    def _shed_below(self, min_priority: int, target_bytes: int) -> None:
        """Shed queued items below ``min_priority``, lowest class and oldest first, to ``target_bytes``."""
        drops: list[tuple[Task, str]] = []
        held = self._held_bytes()
        for c in range(min_priority):
            for sq in self.queues:
                if sq.priority != c:
                    continue
                while sq.tasks and held > target_bytes:
                    task = self.queues.pop_head(sq)
                    held -= task.cost
                    drops.append((task, "memory_pressure"))
        if drops:
            self._drop(drops)

    def _tune(self) -> None:
        tuner = self._tuner
        if tuner is None or self.cost_model.samples < 3:
            return
        self._since_tune += 1
        if self._since_tune < _TUNE_EVERY:
            return
        self._since_tune = 0
        mean_item = self.stats.exported_bytes / self.stats.exported if self.stats.exported else 512.0
        self._tuned = tuner.tune(self.cost_model.base, self.cost_model.per_byte, mean_item)
        self._shape_batches()

    def _shape_batches(self) -> None:
        """Apply the tuned batch shape, scaled by the CPU factor; the delay only at the NORMAL level
        (the memory levels shorten it on their own)."""
        cfg = self.config
        items, delay = shape_batches(
            *self._tuned, self._batch_factor, cfg.max_export_batch_size, cfg.schedule_delay_millis / 1000.0
        )
        self.former.max_items = items
        if self._level is MemoryLevel.NORMAL:
            self.former.delay = delay

    def _after_fork_in_child(self) -> None:
        # Parent threads do not exist here and their locks may be held: rebuild everything.
        # The parent's queued items stay the parent's to export.
        if self._shutdown:
            return
        self._build()

    # -- application threads ----------------------------------------------------------------------------

    def offer(self, item: Any) -> None:
        """Hot path: called by on_end / on_emit.  O(1), lock-free."""
        intake = self._intake
        n = len(intake)
        if n < self._intake_cap:
            intake.append(item)
            if n >= self._wake_after and self._sleeping:
                self._sleeping = False
                self._wake.ring()
        else:
            self._overflow(item)

    def _overflow(self, item: Any) -> None:
        """The intake is full (the scheduler is starved of the GIL).  An ERROR span or ERROR log
        takes the place of the newest item, else of the oldest, when that one is not urgent (which
        is dropped as ``intake_full`` instead); when both ends are urgent too it is held beyond the
        cap, up to twice it.  O(1) and lock-free: one status check and two deque operations."""
        urgent = self._urgent
        intake = self._intake
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
                elif len(intake) >= 2 * self._intake_cap:
                    next(self.stats.app_drops["intake_full"])
                    return
            intake.append(item)
            if self._sleeping:
                self._sleeping = False
                self._wake.ring()
            return
        next(self.stats.app_drops["intake_full"])

    def offer_checked(self, item: Any) -> None:
        """offer() for logs: items produced on our own threads are tagged; past the depth cap, dropped."""
        depth = export_depth()
        if depth is None:
            self.offer(item)
        elif depth + 1 > self.config.max_recursion_depth:
            next(self.stats.app_drops["recursion"])
        else:
            self.offer(_Nested(item, depth + 1))

    def reject_shutdown(self, item: Any) -> None:
        next(self.stats.app_drops["already_shutdown"])

    def sync(self, timeout_s: float = 1.0) -> None:
        """Wait (up to ``timeout_s``) until the scheduler has classified and admitted everything
        offered so far: the self-metrics then show queue size and drops as of this moment."""
        if self._shutdown or threading.current_thread() is self._thread or not self._thread.is_alive():
            return
        request = _Request("sync", time.monotonic() + timeout_s)
        self._requests.append(request)
        self._wake.ring()
        request.done.wait(timeout_s)

    def processed_counts(self) -> dict[str | None, int]:
        """``otel.sdk.processor.*.processed`` as the SDK counts it: items handed to the exporter
        (key None) and items dropped before that, by SDK ``error.type``."""
        counts: dict[str | None, int] = {None: self.stats.submitted}
        counts.update(self.stats.sdk_dropped)
        for reason, n in self.stats.app_drop_counts().items():
            if n:
                key = sdk_error_type(reason)
                counts[key] = counts.get(key, 0) + n
        return counts

    # -- requests from any thread ------------------------------------------------------------------------

    def force_flush(self, timeout_s: float | None) -> bool:
        if self._shutdown:
            return False
        timeout = self.config.export_timeout_millis / 1000.0 if timeout_s is None else timeout_s
        request = _Request("flush", time.monotonic() + max(timeout, 0.0))
        self._requests.append(request)
        self._wake.ring()
        if threading.current_thread() is self._thread:
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
        if self._shutdown:
            if threading.current_thread() is not self._thread:
                self._thread.join(max(deadline - time.monotonic(), 0.0))
            return not self._thread.is_alive()
        self._shutdown = True
        # The scheduler gives up a little before the caller's deadline: spooling or counting what is
        # left is done by then, not after shutdown() returned.
        request = _Request("shutdown", deadline - min(0.25 * timeout, _ABANDON_MARGIN))
        self._requests.append(request)
        self._wake.ring()
        if threading.current_thread() is not self._thread:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
            if self._thread.is_alive():  # late on a loaded machine: its last step accounts for what is left
                self._thread.join(_ABANDON_MARGIN)
        self._shutdown_exporters(deadline)
        _LIVE.discard(self)
        return request.ok

    def close_async(self, deadline: float | None = None) -> None:
        """Begin shutdown without waiting (garbage collection of the processor, interpreter exit)."""
        if self._shutdown:
            return
        self._shutdown = True
        now = time.monotonic()
        if deadline is None:
            deadline = now + self.config.shutdown_timeout_millis / 1000
        # As shutdown(): give up a little early, so that what is left is spooled or counted by the
        # deadline (at exit or SIGTERM the process ends right after it).
        margin = min(0.25 * max(deadline - now, 0.0), _ABANDON_MARGIN)
        self._requests.append(_Request("close", deadline - margin))
        self._wake.ring()

    def _shutdown_exporters(self, deadline: float) -> None:
        self.pool.shutdown_exporters(deadline)
        if self._spec.endpoints:  # the user's instance was only a template: it is still ours to close
            self.pool._close_exporter(self._exporter, deadline)

    # -- the scheduler thread ------------------------------------------------------------------------------

    def _lane_done(self, lane: Lane, job: Job, outcome: Outcome, seconds: float) -> None:
        self._completions.append((lane, job, outcome, seconds))
        self._wake.ring()

    def _run(self) -> None:
        register_thread()
        try:
            due = -math.inf  # when the full step's time-based work is next due (_next_deadline)
            while True:
                try:
                    now = time.monotonic()
                    if now >= due:  # after a full step: also under a load that never lets it sleep
                        deadline = self._next_deadline(now)
                        due = math.inf if deadline is None else deadline
                    if len(self._intake) <= self._wake_after and not self._completions and not self._requests:
                        self._sleeping = True
                        if (
                            len(self._intake) <= self._wake_after
                        ):  # re-check: an offer may have missed the flag
                            # A little past the deadline, so that what is due is due when we look.
                            self._wake.wait(None if due == math.inf else max(due - now, 0.0) + 0.0005)
                        self._sleeping = False
                    self._wake.clear()
                    now = time.monotonic()
                    with self._step_lock:
                        if now < due and self._light_step(now):
                            continue
                        due = -math.inf
                        if self._step(now):
                            return
                except Exception:  # noqa: BLE001 - supervised: one failing step must not stop the pipeline
                    due = -math.inf
                    with self._step_lock:
                        self._recover()

        finally:
            unregister_thread()

    def _recover(self) -> None:
        """After a step raised: log it, resynchronise the in-flight counts with the jobs that really
        exist, and count the items the step held (no longer queued, in flight or accounted for)
        as dropped with reason ``internal_error``."""
        if not self._step_failures:
            _logger.exception(
                "otel-sched %s pipeline: a scheduler step failed; the items it held are counted as dropped "
                "(internal_error) and the pipeline carries on",
                self.signal.value,
            )
        else:
            _logger.debug("otel-sched: scheduler step failed again", exc_info=True)
        self._step_failures += 1
        self._sleeping = False
        try:
            pending = [job for job in self.pool.pending() if not job.timed_out]
            self._jobs_in_flight = len(pending)
            self._in_flight = sum(len(job.batch) for job in (*pending, *self._retries) if job.spooled is None)
            stats = self.stats
            accounted = (
                stats.exported
                - stats.replayed_items
                + sum(stats.dropped.values())
                + stats.spooled_items
                + self.queues.count
                + self._in_flight
            )
            # Measured against the gap left after the previous failure (never counted twice).
            gap = self._taken - accounted
            lost = gap - self._unaccounted
            if lost > 0:
                stats.dropped["internal_error"] += lost
                stats.sdk_dropped["internal_error"] += lost
                gap -= lost
            self._unaccounted = gap
        except Exception:  # pragma: no cover - counting must not take the thread down either
            _logger.debug("otel-sched: could not count the items of a failed step", exc_info=True)
        self._wake.wait(0.01)  # a step failing every time must not spin a core

    def _step(self, now: float) -> bool:
        """One scheduler iteration; True when the pipeline has finished shutting down."""
        if now >= self._coordinate_at or self._requests or self._held_bytes() >= self._report_above:
            # The process-wide decisions change every TICK; reporting much more often only costs locks.
            self._coordinate_at = now + _COORDINATE_EVERY
            self._coordinate(now)
        if self.metrics.enabled:
            self._report_app_drops()
        self._drain_completions()
        if self.holder is not None:
            self.holder.expire(now)
        # Requests first, so a flush covers everything offered before it was asked.
        if self._requests:
            self._drain_intake(now, limit=None)
            if self.holder is not None and self.holder.count:
                # Held spans go now, after the whole intake was seen (inherit_priority's marks too).
                self.holder.release_all()
                self._drain_intake(now, limit=None)
            while self._requests:
                request = self._requests.popleft()
                if request.kind == "sync":  # the intake is classified and admitted: that is all it asks
                    request.ok = True
                    request.done.set()
                    continue
                request.target = self.classifier.last_seq
                self._pending.append(request)
        else:
            self._drain_intake(now, limit=self._chunk())
        self._check_hung(now)
        self._dispatch(now)
        return self._settle_requests(now)

    def _light_step(self, now: float) -> bool:
        """Woken by the intake alone, before any time-based work is due: classify and admit, and
        sleep again unless a batch is now due.  False: the full :meth:`_step` is needed.

        Most wake-ups are these (every ``_intake_batch`` items, a batch every ``max_items``); the
        full step's dispatch, timeout and coordination work would be paid on each, on cold caches.
        Only with items queued before: then the next batch's due time, which is in ``due``, is
        not moved earlier by newer arrivals.
        """
        if (
            self._completions
            or self._requests
            or self._retries
            or not self.queues.count
            or now >= self._coordinate_at
        ):
            return False
        self._drain_intake(now, self._chunk())
        if self.former.due(self.queues, now) or self._held_bytes() >= self._report_above:
            return False
        if self._dispatchable:
            self._wake_after = min(self._intake_batch, max(0, self.former.max_items - self.queues.count - 1))
        return True

    def _chunk(self) -> int:
        """Intake items to classify before dispatching again: what the queues have room for (at
        least a batch, at most :data:`_CHUNK`).  A scheduler that was starved finds a full intake;
        admitted all at once it would shed what the lanes are about to make room for."""
        room = self.admission.max_count - self.queues.count
        return min(_CHUNK, max(room, self.former.max_items))

    def _report_app_drops(self) -> None:
        """The application thread only counts its drops; the metrics are recorded from here."""
        for reason, count in self.stats.app_drop_counts().items():
            delta = count - self._app_drops_reported.get(reason, 0)
            if delta:
                self._app_drops_reported[reason] = count
                self.metrics.dropped_unclassified(reason, delta)

    def _drain_intake(self, now: float, limit: int | None) -> None:
        """Classify up to ``limit`` intake items (on the pre-encoded path: and encode them, in the
        same call) and admit them with the consecutive arrivals of their class and tenant, as
        runs (``Admission.admit_runs``)."""
        intake = self._intake
        self.tenants.now = now
        classify = self._classify_item
        prepare = self._prepare
        # Once shutting down nothing is held back: every span goes out (or is counted) with the rest.
        park = self.holder.park if self.holder is not None and not self._shutdown else None
        max_item = self._max_item
        min_priority = _MIN_PRIORITY[self._level]
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
        finally:  # taken, whatever happens next: _recover counts what a failed step lost
            self._taken += n - parked
        if n:
            self.former.note_arrival(now)
        if drops:
            self._drop(drops)

    def _encode_failed_item(self, item: Any, now: float, exc: EncodingError) -> None:
        try:
            task = self.classifier.classify(item, now)
        except Exception:  # not seen when encoding it: classify() itself fails (a hostile item)
            _logger.exception(_MALFORMED, self.signal.value)
            self.stats.dropped["malformed"] += 1
            return
        self._encode_failed(task, exc)

    def _encode_failed(self, task: Task, exc: EncodingError) -> None:
        if self.stats.dropped["encode_error"] == 0:
            _logger.warning("otel-sched: an item could not be OTLP-encoded and is dropped (%s)", exc)
        self._drop([(task, "encode_error")])

    def _drop(self, drops: list[tuple[Task, str]], submitted: bool = False) -> None:
        """Count ``drops`` (or spool them); ``submitted``: they were handed to the exporter before,
        so the SDK-named metric already counted them as processed."""
        if self.spool is not None:
            drops = self._spool_instead(drops)
            if not drops:
                return
        record = self.stats.record_drop
        sdk = self.stats.sdk_dropped
        for task, reason in drops:
            record(task, reason)
            task.item = None
            if not submitted:
                sdk[sdk_error_type(reason)] += 1
        if self.metrics.enabled:
            self.metrics.dropped((reason, t.priority, t.tenant) for t, reason in drops)

    # -- the spool ---------------------------------------------------------------------------------------

    def _spool_instead(self, drops: list[tuple[Task, str]]) -> list[tuple[Task, str]]:
        """Put what can be spooled into the spool; returns the drops that remain."""
        keep: list[Task] = []
        rest: list[tuple[Task, str]] = []
        reasons: dict[int, str] = {}
        for task, reason in drops:
            if reason in _SPOOLABLE and task.encoded is not None:
                keep.append(task)
                reasons[id(task)] = reason
            else:
                rest.append((task, reason))
        if keep:
            rest.extend((task, reasons[id(task)]) for task in self._spool_tasks(keep))
        return rest

    def _spool_tasks(self, tasks: list[Task]) -> list[Task]:
        """Spool ``tasks`` as batches of one (class, tenant) each; returns those that could not be stored."""
        spool = self.spool
        assert spool is not None
        assemble = assemble_traces if self.signal is Signal.TRACES else assemble_logs
        groups: dict[tuple[int, str], list[Task]] = {}
        for task in tasks:
            groups.setdefault((task.priority, task.tenant), []).append(task)
        mono, wall = time.monotonic(), time.time()
        limit = self.config.max_export_batch_bytes
        failed: list[Task] = []
        for (priority, tenant), group in groups.items():
            chunk: list[Task] = []
            size = 0
            for nxt in [*group, None]:
                if nxt is not None and (not chunk or size + nxt.cost <= limit):
                    chunk.append(nxt)
                    size += nxt.cost
                    continue
                try:
                    stored = spool.put(
                        self.signal.value,
                        tenant,
                        priority,
                        size,
                        wall - (mono - min(t.enqueued for t in chunk)),
                        len(chunk),
                        assemble_tasks(assemble, chunk),
                    )
                except SpoolUnavailable as exc:
                    _logger.error(
                        "otel-sched: writing to the spool at %r failed (%s); the %s pipeline continues in "
                        "memory only",
                        self.config.spool_dir,
                        exc,
                        self.signal.value,
                    )
                    with contextlib.suppress(Exception):
                        spool.close()
                    self.spool = None
                    failed.extend(chunk)
                    failed.extend(t for t in tasks if t.encoded is not None and t not in failed)
                    return failed
                if stored is None:
                    failed.extend(chunk)
                else:
                    self.stats.spooled_batches += 1
                    self.stats.spooled_items += len(chunk)
                    for t in chunk:
                        t.encoded = t.envelope = t.item = None
                if nxt is not None:
                    chunk, size = [nxt], nxt.cost
        return failed

    def _replay_due(self) -> bool:
        spool = self.spool
        if spool is None or not spool.pending()[0] or any(r.kind != "flush" for r in self._pending):
            return False
        backlogged = self.queues.count >= self.former.max_items
        return not backlogged or self._live_since_replay >= _LIVE_PER_REPLAY

    def _replay_job(self, now: float, endpoint: int) -> Job | None:
        assert self.spool is not None
        try:
            rows = self.spool.take(1)
        except SpoolUnavailable:
            self.spool = None
            return None
        if not rows:
            return None
        row = rows[0]
        task = Task(None, row.priority, row.tenant, row.cost, 0, now, math.inf, 0)
        job = Job([task], 0, endpoint)
        job.body = row.payload
        job.spooled = row
        return job

    def _finish_replay(self, job: Job, ok: bool) -> None:
        row = job.spooled
        spool = self.spool
        if spool is None:
            return
        try:
            if ok:
                spool.ack([row.id])
                self.stats.record_replay(row.priority, row.tenant, row.items, row.cost)
            else:
                spool.nack([row.id])
        except SpoolUnavailable:
            self.spool = None

    def _spool_queue(self, now: float) -> None:
        """Degraded: move what is queued into the spool now, so a crash loses as little as possible."""
        while self.queues.count:
            batch = self.former.form(self.queues, self.policy, now)
            if not batch:
                break
            self._drop([(t, "export_failed") for t in batch])

    def _may_dispatch(self, now: float, turns: bool = True) -> bool:
        in_flight = self._jobs_in_flight
        return (
            in_flight < min(self.pool.live_lanes() - len(self._hung), self._lane_cap)
            and (not in_flight or self._flight_bytes() < self._share_bytes // 3 or not self._share_bytes)
            and self.controller.may_dispatch(now, in_flight)
            and self.modes.may_dispatch(now, in_flight)
            and self.router.pick(now) is not None
            and (not turns or not self._contended or coordinator().may_send(self, self._turn_allowance))
        )

    def _may_queue_ahead(self, now: float) -> bool:
        """Every lane busy, a full batch queued, the exporter keeping up: formed batches may wait
        behind the running ones.  A lane goes on to them in its own turn on the GIL instead of a
        round trip through the scheduler's (a producer that never blocks hands the GIL on only
        every ``sys.getswitchinterval()``), as the stock processor's worker drains its whole queue.

        Only while the recent exports all succeeded in under :data:`_INSTANT` each (moving
        average), and at most :data:`_AHEAD_INSTANT` batches per lane: the early decision then
        costs an item arriving meanwhile (a HIGH one too) a few milliseconds at most.  With a
        slower or failing exporter the policy keeps every choice until a lane is free."""
        if self._export_seconds >= _INSTANT:
            return False
        in_flight = self._jobs_in_flight
        lanes = min(self.pool.live_lanes(), self._lane_cap, self.controller.limit)
        return (
            0 < in_flight < (1 + _AHEAD_INSTANT) * lanes
            and self.queues.count >= self.former.max_items
            and not self._retries
            and not self._hung
            and not self._contended
            and self.modes.mode is Mode.NORMAL
            and now >= self.controller.paused_until
            and self.router.pick(now) is not None
        )

    def _dispatch(self, now: float) -> None:
        flushing = bool(self._pending)
        while True:
            # Left by a break below with True: nothing was submitted since, so it still holds.
            may = self._may_dispatch(now) or self._may_queue_ahead(now)
            if not may:
                break
            if self._retries:
                job = self._retries[0]
                endpoint = self.router.pick(now, job.tried)
                if endpoint is None and job.anywhere:
                    endpoint = self.router.pick(now)
                if endpoint is None:  # every other endpoint is out as well: the batch is lost
                    self._retries.popleft()
                    self._in_flight -= len(job.batch)
                    self._drop([(t, "export_failed") for t in job.batch], submitted=True)
                    continue
                self._retries.popleft()
                job.routed = job.endpoint = endpoint
                job.tried = job.tried | {endpoint}
            elif self._replay_due():
                endpoint = self.router.pick(now)
                if endpoint is None:
                    break
                replay = self._replay_job(now, endpoint)
                if replay is None:
                    continue
                job = replay
                self._live_since_replay = 0
            else:
                endpoint = self.router.pick(now)
                if endpoint is None or not self.former.due(self.queues, now, flushing=flushing):
                    break
                self._live_since_replay += 1
                batch = self.former.form(self.queues, self.policy, now)
                if not batch:
                    break
                job = Job(batch, max(map(_depth_of, batch)), endpoint, self.former.runs)
                self._note_dispatch(batch, now)
                self._in_flight += len(batch)
            self._jobs_in_flight += 1
            if self._contended:
                coordinator().charge(self, sum(t.cost for t in job.batch))
            self.router.started(endpoint)
            self.controller.dispatched(now)
            self.pool.submit(job, self.pool.lane_for(endpoint))
        if self.spool is not None and self.modes.mode is Mode.DEGRADED:
            self._spool_queue(now)
        # Wake for a full batch (or _intake_batch items) when a job could go; otherwise classify in chunks
        # (admission still matters).
        self._dispatchable = may
        if not may:
            self._wake_after = min(self._intake_batch, self._intake_cap // 8)
        elif self.queues.count:
            self._wake_after = min(self._intake_batch, max(0, self.former.max_items - self.queues.count - 1))
        else:
            self._wake_after = 0

    def _note_dispatch(self, batch: list[Task], now: float) -> None:
        self.stats.submitted += len(batch)
        # What an item in flight weighs: the queue's mean says nothing once the queue is empty.
        self._flight_item = sum(task.cost for task in batch) / len(batch)
        waits = [now - task.enqueued for task in batch]
        self.stats.queue_wait.extend(waits)
        if self.metrics.enabled:
            self.metrics.waited(waits)
        if now > min(map(_deadline_of, batch)):  # rarely: most batches meet every deadline
            missed = self.stats.deadline_missed
            for task in batch:
                if now > task.deadline:
                    missed[task.priority] += 1

    def _drain_completions(self) -> None:
        completions = self._completions
        now = time.monotonic()
        while completions:
            lane, job, outcome, seconds = completions.popleft()
            self.router.finished(job.routed)
            if job.timed_out:  # already counted as export_timeout when it overran
                self._hung.discard(lane)
                self.stats.late_results += 1
                continue
            self._jobs_in_flight -= 1
            ok = outcome is Outcome.SUCCESS
            if not ok:
                self._export_seconds = math.inf  # no batch waits ahead for a failing exporter
            detail = job.detail
            retry_after = detail.retry_after if detail is not None and not ok else None
            self.router.record(job.endpoint, now, ok, seconds, open_for=retry_after)
            self.pool.endpoint_ok[job.endpoint] = ok
            if ok:
                feedback = Feedback.OK
            else:
                feedback = Feedback.THROTTLED if detail is not None and detail.throttled else Feedback.ERROR
            self.controller.observe(now, seconds, feedback, retry_after)
            self._note_mode(self.modes.on_result(now, ok, self.router.all_down(now)))
            if job.spooled is not None:
                self._finish_replay(job, ok)
                continue
            if not ok and self.spool is not None:
                # Durable before it is tried again: the batch goes to the spool now, and its replay
                # (on any endpoint, as the router allows) is the retry.  In memory a kill -9 loses it.
                self._in_flight -= len(job.batch)
                self._finish_batch(job, outcome, seconds)
                continue
            if outcome is Outcome.RETRYABLE and job.attempts < _MAX_ATTEMPTS:
                job.attempts += 1
                job.anywhere = True
                job.detail = None
                self._retries.append(job)  # transient: sent again once the endpoint or another takes it
                self.stats.retried += 1
                continue
            if ok and detail is not None and detail.rejected:
                self.stats.rejected += detail.rejected
            if not ok and len(job.tried) < len(self.router.endpoints):
                job.attempts += 1
                self._retries.append(job)  # try another endpoint before giving the batch up
                self.stats.retried += 1
                continue
            self._in_flight -= len(job.batch)
            self._finish_batch(job, outcome, seconds)

    def _note_mode(self, mode: Mode | None) -> None:
        if mode is None:
            return
        if mode is Mode.DEGRADED:
            _logger.warning(
                "otel-sched %s pipeline: every export endpoint is failing; degraded mode: probing every "
                "%.1fs, shedding by priority meanwhile",
                self.signal.value,
                self.modes.backoff,
            )
        else:
            _logger.warning("otel-sched %s pipeline: export mode is now %s", self.signal.value, mode.value)

    def _finish_batch(self, job: Job, outcome: Outcome, seconds: float) -> None:
        stats = self.stats
        stats.export_calls += 1
        stats.export_latency.append(seconds)
        batch = job.batch
        if outcome is Outcome.SUCCESS:
            stats.record_export(job.runs)
            last = self._export_seconds
            self._export_seconds = seconds if last == math.inf else 0.75 * last + 0.25 * seconds
            self.cost_model.observe(sum(run[3] for run in job.runs), len(batch), seconds)
            self._tune()
            if self.metrics.enabled:
                self.metrics.exported(len(batch), seconds)
            job.batch = []  # the items go now, not when the lane lets go of the job
        else:
            stats.export_failures += 1
            reason = {
                Outcome.FAILURE: "export_failed",
                Outcome.ERROR: "export_error",
                Outcome.CANCELLED: "export_timeout",
                Outcome.RETRYABLE: "export_failed",
            }[outcome]
            self._drop([(t, reason) for t in batch], submitted=True)

    def _check_hung(self, now: float) -> None:
        if not self._jobs_in_flight:  # nothing running that is not already counted as timed out
            return
        for job in self.pool.running():
            if job.timed_out or now - job.started_at <= self._timeout:
                continue
            job.timed_out = True
            self._export_seconds = math.inf
            lane = job.lane
            assert lane is not None
            self._jobs_in_flight -= 1
            if job.spooled is None:
                self._in_flight -= len(job.batch)
            self.stats.export_calls += 1
            self.stats.export_failures += 1
            self.router.record(job.endpoint, now, False, now - job.started_at)
            self.pool.endpoint_ok[job.endpoint] = False
            self.controller.observe(now, now - job.started_at, Feedback.TIMEOUT)
            self._note_mode(self.modes.on_result(now, False, self.router.all_down(now)))
            if lane.asynchronous:
                action = "cancelled it"
                self.pool.cancel_async(lane)
            elif self._spec.can_multiply and self.pool.replace(lane) is not None:
                action = "replaced the lane with a fresh exporter"
            else:
                action = "waiting for the call to return"
                self._hung.add(lane)
            _logger.warning(
                "otel-sched: exporter %s did not return within export_timeout_millis=%s; counting %d items "
                "as dropped (export_timeout); %s",
                type(lane.exporter).__name__,
                self.config.export_timeout_millis,
                len(job.batch),
                action,
            )
            if job.spooled is not None:
                self._finish_replay(job, False)
            else:
                self._drop([(t, "export_timeout") for t in job.batch], submitted=True)

    def _covered(self, request: _Request) -> bool:
        """No queued or in-flight task has a seq at or below the request's target."""
        target = request.target or 0
        low = self.queues.min_seq()
        if low is not None and low <= target:
            return False
        jobs = [*self._retries, *self.pool.pending()]
        return not any(not job.timed_out and min(t.seq for t in job.batch) <= target for job in jobs)

    def _stuck(self) -> bool:
        """Nothing can move: every live lane is hung (and could not be replaced), none is running a
        job within its timeout.  Waiting longer for a flush or shutdown would only wait."""
        if self.pool.live_lanes() > len(self._hung):
            return False
        return not any(not job.timed_out for job in self.pool.running())

    def _settle_requests(self, now: float) -> bool:
        finished = False
        still: list[_Request] = []
        stuck = bool(self._pending) and self._stuck()
        for request in self._pending:
            if self._covered(request):
                request.ok = True
            elif now < request.deadline and not stuck:
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
                if self.spool is not None:
                    self.spool.close()
                    self.spool = None
                coordinator().leave(self)
                if request.kind == "close":  # nobody waits for a collected processor: finish the job here
                    self._shutdown_exporters(request.deadline)
                    _LIVE.discard(self)
            request.done.set()
        self._pending = still
        if finished:
            for request in self._pending:
                request.done.set()
            self._pending = []
            self.pool.stop()
        return finished

    def _abandon(self) -> None:
        """Shutdown ends: spool (spool on) or count as ``shutdown_timeout`` everything still held --
        in the intake, queued, waiting for a retry, and in flight.  A batch still being sent is
        abandoned too: if its call succeeds after all, it is delivered as well (at least once)."""
        jobs = self.pool.withdraw()
        self._drain_completions()  # what was reported before the withdrawal counts as it is
        self._drain_intake(time.monotonic(), None)
        leftovers: list[tuple[Task, str]] = []
        for sq in self.queues:
            while sq.tasks:
                leftovers.append((self.queues.pop_head(sq), "shutdown_timeout"))
        # Handed to the exporter before: the SDK-named metric already counted them as processed.
        submitted: list[tuple[Task, str]] = []
        for job in [*self._retries, *jobs]:
            if job in jobs:
                self._jobs_in_flight -= 1
            if job.spooled is not None:  # a replay: its row stays in the spool
                self._finish_replay(job, False)
                continue
            self._in_flight -= len(job.batch)
            submitted.extend((t, "shutdown_timeout") for t in job.batch)
        self._retries.clear()
        if leftovers or submitted:
            spooled = self.stats.spooled_items
            self._drop(leftovers)
            self._drop(submitted, submitted=True)
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

    def _next_deadline(self, now: float) -> float | None:
        """When the full step next has time-based work (a batch's delay, a hung export, a pause
        ending, a request's deadline, a TICK); None: nothing but an event can give it work."""
        candidates: list[float] = []
        if self._may_dispatch(now):
            due = self.former.next_due(self.queues)
            if due is not None:
                candidates.append(due)
            if self._replay_due():  # spooled batches wait (e.g. left by a previous process)
                candidates.append(now)
        elif self.queues.count or self._retries or (self.spool is not None and self.spool.pending()[0]):
            # Blocked by a pause, a probe backoff or an open circuit: wake when that ends.
            for t in (self.controller.paused_until, self.modes.next_probe, self.router.next_reopen()):
                if t is not None and t > now:
                    candidates.append(t)
        if self._jobs_in_flight:
            for job in self.pool.pending():  # a job not yet taken by its lane will start about now
                if not job.timed_out:
                    candidates.append((job.started_at or now) + self._timeout)
        for request in self._pending:
            candidates.append(request.deadline)
        held = None if self.holder is None else self.holder.next_deadline()
        if held is not None:
            candidates.append(held)
        if self._wake_after or (self.config.resource_aware and (self.queues.count or self._intake)):
            # An arrival below _wake_after does not wake us: bound how long it waits unclassified
            # (and, holding items, keep the process-wide decisions fresh).
            candidates.append(now + TICK)
        if not candidates:
            return None
        return min(candidates)

    # -- introspection -----------------------------------------------------------------------------------

    def _encoder_name(self) -> str | None:
        """Which encoder the fast path uses: "native" (compiled), "python", or None off the fast path."""
        if not self._fast:
            return None
        if self._encode is encode_span_native or self._encode is encode_log_native:
            return "native"
        return "python"

    def _spool_stats(self) -> dict[str, Any]:
        spool = self.spool
        out: dict[str, Any] = {
            "enabled": spool is not None,
            "directory": None if spool is None else str(spool.directory),
            "spooled_batches": self.stats.spooled_batches,
            "spooled_items": self.stats.spooled_items,
            "replayed_batches": self.stats.replayed_batches,
            "replayed_items": self.stats.replayed_items,
        }
        if spool is not None:
            out["pending_batches"], out["pending_bytes"] = spool.pending()
            out.update(spool.counts())
        return out

    def _gauges(self) -> dict[str, float]:
        snap = self.snapshot()
        return {
            "fairness_index": snap["fairness_index"] or 1.0,
            "in_flight_exports": float(snap["concurrency"]["in_flight"]),
            "queued_bytes": float(snap["queued_bytes"]),
        }

    def balance(self) -> dict[str, Any]:
        """The accounting terms, read between two scheduler steps (so they are consistent):
        ``received == exported + dropped + spooled + queued + intake + in_flight``.

        ``exported`` counts items of this process's batches (not replays of spooled batches,
        which were counted in ``spooled`` when they were stored); ``dropped`` includes the
        application thread's drops (intake full, recursion, after shutdown)."""
        with self._step_lock:
            stats = self.stats
            # Spans held for an ancestor's tenant were not taken from the intake: they count in it.
            intake = len(self._intake) + (0 if self.holder is None else self.holder.count)
            app = sum(stats.app_drop_counts().values())
            terms = {
                "received": self._taken + intake + app,
                "exported": stats.exported - stats.replayed_items,
                "dropped": sum(stats.dropped.values()) + app,
                "spooled": stats.spooled_items,
                "queued": self.queues.count,
                "intake": intake,
                "in_flight": self._in_flight,
            }
        held = terms["queued"] + terms["intake"] + terms["in_flight"]
        accounted = terms["exported"] + terms["dropped"] + terms["spooled"] + held
        return {**terms, "held": held, "balanced": terms["received"] == accounted}

    def snapshot(self) -> dict[str, Any]:
        balance = self.balance()
        queues = self.queues
        by_class = list(queues.class_count)
        by_tenant = queues.tenant_count.copy()
        snap = self.stats.snapshot(by_class, by_tenant, self._weight_of)
        queued = queues.count
        # Spans held for their tenant are offered and not classified yet: in "intake" for the balance.
        held = 0 if self.holder is None else self.holder.count
        intake = len(self._intake) + held
        snap.update(
            {
                "signal": self.signal.value,
                "name": self.name,
                "policy": self.config.policy,
                "mode": "shutdown" if self._shutdown else self.modes.mode.value,
                "received": balance["received"],
                "balance": balance,
                "queued": queued,
                "queued_bytes": queues.nbytes,
                "intake": intake,
                "in_flight": self._in_flight,
                "capacity": {"items": self.config.max_queue_size, "bytes": self.config.max_queue_bytes},
                "concurrency": {
                    "lanes": self.pool.live_lanes(),
                    "in_flight": self._jobs_in_flight,
                    "limit": self.controller.limit,
                    "max": self.controller.max_limit,
                    "hung": len(self._hung),
                    "replaced": self.pool.replaced,
                    "retired": self.pool.retired(),
                    "replace_refused": self.pool.replace_refused,
                    "stolen": sum(lane.stolen for lane in self.pool.lanes),
                    "increases": self.controller.increases,
                    "decreases": self.controller.decreases,
                    "asynchronous": self.pool.asynchronous,
                },
                "endpoints": [
                    {
                        "name": ep.name,
                        "healthy": ep.failures == 0,
                        "latency_ms": ep.latency * 1000.0,
                        "in_flight": ep.in_flight,
                        "consecutive_failures": ep.failures,
                    }
                    for ep in self.router.endpoints
                ],
                "retried_batches": self.stats.retried,
                "rejected_by_collector": self.stats.rejected,
                "otlp_fast_path": self._fast,
                "encoder": self._encoder_name(),
                "spool": self._spool_stats(),
                "resources": {
                    "memory_level": self._level.name.lower(),
                    "held_bytes": self._held_bytes(),
                    "lane_cap": min(self._lane_cap, self.pool.live_lanes()),
                    "intake_capacity": self._intake_cap,
                    "process": coordinator().snapshot(),
                },
                "tuning": {
                    "enabled": self._tuner is not None,
                    "batch_items": self.former.max_items,
                    "batch_delay_ms": self.former.delay * 1000.0,
                    "cpu_batch_factor": self._batch_factor,
                    "adjustments": 0 if self._tuner is None else self._tuner.adjustments,
                },
                "async_loop": {
                    "max_lag_ms": self.pool.max_loop_lag * 1000.0,
                    "blocked": self.pool.loop_blocked,
                },
                "cost_model": {
                    "base_ms": self.cost_model.base * 1000.0,
                    "per_kib_ms": self.cost_model.per_byte * 1024 * 1000.0,
                    "samples": self.cost_model.samples,
                },
                "tenants": {
                    "tracked": len(self.tenants),
                    "overflowed": self.tenants.overflowed,
                    "retired": self.tenants.retired,
                    "missing_key": self.classifier.tenant_missing,
                    "inherited": self.classifier.tenant_inherited,
                    "held": held,
                    "held_released_unresolved": 0 if self.holder is None else self.holder.timeouts,
                },
                "rule_errors": getattr(self._priority_of, "errors", 0),
            }
        )
        return snap


# -- process-wide hooks: fork and interpreter exit ----------------------------------------------------

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


_NAMES_TAKEN: dict[tuple[Signal, str], int] = {}
_NAMES_LOCK = threading.Lock()


def _stable_name(signal: Signal, exporter: Any) -> str:
    """The exporter's class name; the second pipeline of a signal with the same one gets "#2"."""
    base = type(exporter).__name__
    with _NAMES_LOCK:
        n = _NAMES_TAKEN.get((signal, base), 0) + 1
        _NAMES_TAKEN[(signal, base)] = n
    return base if n == 1 else f"{base}#{n}"


def stats() -> dict[str, dict[str, dict[str, Any]]]:
    """``stats()`` of every live pipeline of the process: ``{signal: {name: snapshot}}``.

    Reaches the processors that ``opentelemetry-instrument`` or ``configure()`` created, which
    application code holds no reference to.  A name stays the same for the pipeline's lifetime.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {signal.value: {} for signal in Signal}
    for pipeline in sorted(_LIVE, key=lambda p: p.name):
        out[pipeline.signal.value][pipeline.name] = pipeline.snapshot()
    return out


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

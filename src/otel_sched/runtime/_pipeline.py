"""The pipeline: intake -> classify -> admission/queues -> policy -> batch former -> lanes.

:class:`Pipeline` is the composition root: it builds one processor's components, wires them and
hands the processors their entry points.  Each component owns its state:

* ``_intake``: :class:`Intake` (the application threads' O(1), lock-free ``offer``) and
  :class:`IntakeDrain` (classify, encode, admit);
* ``_loop``: :class:`SchedulerLoop`, the one scheduler thread and its supervised steps;
* ``_dispatch``: :class:`Dispatcher`, jobs in flight, retries, completions, export timeouts, hangs;
* ``_ledger``: :class:`Ledger`, drops (or spooled instead) and the balance's terms;
* ``_standing``: :class:`Standing`, memory and CPU as the process-wide level sees them, self-tuning;
* ``durability._bridge``: :class:`SpoolBridge`, what goes to disk and comes back;
* ``_lifecycle``: :class:`Lifecycle`, flush/shutdown requests, fork, exit and SIGTERM;
* ``_introspection``: ``stats()``, the balance, the gauges.

Threads: application threads call ``offer``; one scheduler thread owns everything else; one thread
per lane calls the exporter (see ``_workers``).  Requests from other threads (force_flush,
shutdown) are objects appended to a deque and answered through an ``Event``: the scheduler never
blocks on callers and callers wait against a monotonic deadline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from .._config import Config
from .._safe import safe_url
from ..durability._bridge import SpoolBridge
from ..otlp._encoding import (
    encode_log,
    encode_log_python,
    encode_span,
    encode_span_python,
    log_envelopes,
    span_envelopes,
)
from ..otlp._exporters import ExporterSpec, build_spec, fast_path_for
from ..scheduling._admission import Admission
from ..scheduling._batching import BatchFormer
from ..scheduling._classify import Classifier, TenantRegistry
from ..scheduling._cost_model import CostModel
from ..scheduling._policies import deadline_for, make_policy
from ..scheduling._priority_rules import compile_rules
from ..scheduling._queues import QueueSet
from ..scheduling._task import Signal, Task
from ..scheduling._tenancy import Holder
from ._concurrency import AIMDController, ModeMachine
from ._dispatch import Completion, Dispatcher, completion_sink
from ._intake import MIN_INTAKE, Intake, IntakeDrain, _error_log, _error_span, _readable_log
from ._intake import snapshot_log as snapshot_log
from ._intake import snapshot_log_with_context as snapshot_log_with_context
from ._introspection import balance, gauges, snapshot, stable_name
from ._introspection import stats as stats
from ._ledger import Ledger
from ._lifecycle import _LIVE, Lifecycle
from ._lifecycle import install_sigterm_flush as install_sigterm_flush
from ._lifecycle import shutdown_all as shutdown_all
from ._loop import SchedulerLoop
from ._metrics import SelfMetrics, Stats
from ._routing import Router
from ._standing import Standing
from ._workers import LanePool

__all__ = [
    "Pipeline",
    "install_sigterm_flush",
    "shutdown_all",
    "snapshot_log",
    "snapshot_log_with_context",
    "stats",
]

_TASK_OVERHEAD = 256  # a Task, its bytes object's header and its queue slot
_RAW_OVERHEAD = {Signal.TRACES: 3072, Signal.LOGS: 1024}  # an SDK span / log record around its payload


class _Lanes(NamedTuple):
    pool: LanePool
    router: Router
    controller: AIMDController
    modes: ModeMachine
    fast: bool  # the pre-encoded path: lanes send OTLP bytes through our own senders
    copies_in_flight: int  # copies of a batch's bytes while it is sent
    raw_overhead: int  # bytes an item holds beyond its encoded size before it is encoded
    task_overhead: int  # bytes a queued item holds beyond its encoded (or predicted) size


def _build_lanes(spec: ExporterSpec, cfg: Config, prefix: str, on_done: Callable[..., None]) -> _Lanes:
    endpoints = spec.endpoints or [""]
    total = cfg.max_concurrent_exports if spec.can_multiply else 1
    per_endpoint = [
        total // len(endpoints) + (1 if i < total % len(endpoints) else 0) for i in range(len(endpoints))
    ]
    per_endpoint = [max(1, n) for n in per_endpoint]

    signal = cfg.signal.value
    probe = None if not cfg.otlp_fast_path or spec.asynchronous else fast_path_for(spec.first, signal)
    fast = probe is not None
    # Copies of a batch's bytes while it is sent: the tasks' own, the assembled request body,
    # and the compressed body when the sender compresses (gzip/deflate: a third buffer).
    compressed = probe is not None and getattr(probe.sender, "compression", "none") != "none"
    # Bytes an item holds beyond its encoded size (measured with tracemalloc on CPython 3.11 and
    # opentelemetry-sdk 1.45, rounded up): the memory budget is about RSS, not payload.
    raw_overhead = _RAW_OVERHEAD[cfg.signal]
    if probe is not None:
        probe.sender.shutdown()  # it only proved the path works; lanes get their own senders

    def make(endpoint: int) -> Any:
        exporter = spec.make(spec.endpoints[endpoint] if spec.endpoints else None)
        if not fast:
            return exporter
        lane = fast_path_for(exporter, signal)
        if lane is None:
            raise TypeError(f"{type(exporter).__name__} built for a lane has no pre-encoded path")
        return lane

    def first_lane() -> Any:
        if spec.endpoints:  # every lane is built for its endpoint; the user's instance is a template
            return make(0)
        if not fast:
            return spec.first
        return fast_path_for(spec.first, signal)

    pool = LanePool(prefix, make, first_lane(), spec.asynchronous, per_endpoint, on_done)
    router = Router([safe_url(e) for e in spec.endpoints] or ["default"])
    controller = AIMDController(pool.live_lanes(), adaptive=cfg.adaptive_concurrency)
    return _Lanes(
        pool,
        router,
        controller,
        ModeMachine(),
        fast,
        3 if compressed else 2,
        raw_overhead,
        _TASK_OVERHEAD + (0 if fast else raw_overhead),
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
        # Unclassified items waiting for the scheduler.  The GIL lets an application thread run ~5 ms
        # between scheduler slices (hundreds of spans), so the intake must absorb such a burst.
        # Built once (after a fork too): the processors bind its methods once.
        traces = config.signal is Signal.TRACES
        self.intake = Intake(
            max(config.max_queue_size, MIN_INTAKE),
            _error_span if traces else _error_log,
            config.max_recursion_depth,
        )
        # The application threads' entry points: no hop through the pipeline on the hot path.
        self.offer: Callable[[Any], None] = self.intake.offer
        self.offer_checked: Callable[[Any], None] = self.intake.offer_checked
        self.reject_shutdown: Callable[[Any], None] = self.intake.reject_shutdown
        self.name = stable_name(config.signal, exporter)
        self._build()
        _LIVE.add(self)
        self.standing.join(self._threads, self._spec.collectors())

    # -- construction (also after fork) ---------------------------------------------------------------

    def _build_stages(self, cfg: Config) -> None:
        """The pure stages: cost model, policy, queues, admission, batch former, classifier."""
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
        )
        traces = cfg.signal is Signal.TRACES
        if traces:
            self._encode: Callable[[Any], bytes] = encode_span if cfg.native_encoder else encode_span_python
            self._envelopes: Callable[[Any], Any] = span_envelopes
        else:
            self._encode = encode_log if cfg.native_encoder else encode_log_python
            self._envelopes = log_envelopes

    def _build(self) -> None:
        cfg = self.config
        self._build_stages(cfg)
        self.stats = Stats(cfg.max_tenants)
        self.metrics = SelfMetrics(
            cfg.signal,
            self._meter_provider,
            self._metrics_enabled,
            cfg.max_queue_size,
            lambda: self.queues.count + len(self.intake.queue),
            self._gauges,
            self.processed_counts,
            self.sync,
        )
        intake = self.intake
        intake.reset(self.stats)
        # Spans waiting for an ancestor to end, for their tenant (or, inherit_priority, their class).
        self.holder: Holder | None = None
        if cfg.signal is Signal.TRACES and (cfg.tenant_key or cfg.inherit_priority):
            self.holder = Holder(
                self.classifier.resolver,
                intake.queue.appendleft,
                # Half the queue: what a flush releases at once fits beside what is queued.
                max(cfg.max_queue_size // 2, 256),
                self._priority_of.function() if cfg.inherit_priority else None,
            )
        prefix = f"otel-sched-{cfg.signal.value}"
        completions: deque[Completion] = deque()
        lanes = _build_lanes(self._spec, cfg, prefix, completion_sink(completions, intake.bell))
        self.pool, self.router, self.controller, self.modes = (
            lanes.pool,
            lanes.router,
            lanes.controller,
            lanes.modes,
        )
        self._fast = lanes.fast
        self.bridge = SpoolBridge(cfg, self.stats, self._fast)
        self.ledger = ledger = Ledger(self.stats, self.metrics, self.bridge)
        self.standing = standing = Standing(
            self,
            cfg,
            intake,
            self.holder,
            self.queues,
            self.former,
            self.cost_model,
            self.stats,
            ledger,
            lanes.task_overhead,
            lanes.raw_overhead,
        )
        # Logs are converted as the stock processor does; spans go as they are (no call per item).
        prepare = None if cfg.signal is Signal.TRACES else _readable_log
        self.drain = drain = IntakeDrain(
            cfg.signal,
            intake,
            self.classifier,
            self.tenants,
            self.admission,
            self.queues,
            self.former,
            self.holder,
            standing,
            ledger,
            self.stats,
            prepare,
        )
        if self._fast:
            drain.use_encoding(self._encode, self._envelopes, cfg.max_export_batch_bytes)
        self.dispatcher = dispatcher = Dispatcher(
            self,
            cfg,
            completions,
            self.pool,
            self.router,
            self.controller,
            self.modes,
            self.queues,
            self.former,
            self.policy,
            self.stats,
            self.metrics,
            self.cost_model,
            ledger,
            self.bridge,
            standing,
            intake,
            self._spec.can_multiply,
            lanes.copies_in_flight,
            lanes.task_overhead,
        )
        standing.dispatcher = dispatcher
        self.lifecycle = lifecycle = Lifecycle(
            self,
            cfg,
            intake,
            drain,
            dispatcher,
            self.queues,
            ledger,
            self.stats,
            self.bridge,
            self.pool,
            self._exporter if self._spec.endpoints else None,
        )
        self.loop = SchedulerLoop(
            f"{prefix}-scheduler",
            cfg,
            intake,
            drain,
            dispatcher,
            standing,
            lifecycle,
            ledger,
            self.bridge,
            self.classifier,
            self.queues,
            self.former,
            self.holder,
            self.metrics,
        )
        self._thread = lifecycle.thread = self.loop.thread
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        # Parent threads do not exist here and their locks may be held: rebuild everything.
        # The parent's queued items stay the parent's to export.
        if self.intake.closed:
            return
        self._build()

    def _threads(self) -> list[Any]:
        threads = [self._thread]
        threads.extend(lane._thread for lane in self.pool.lanes if lane._thread is not None)
        return threads

    # -- entry points (the processors', the self-metrics', stats()) ----------------------------------------

    def sync(self, timeout_s: float = 1.0) -> None:
        self.lifecycle.sync(timeout_s)

    def processed_counts(self) -> dict[str | None, int]:
        return self.ledger.processed_counts()

    def force_flush(self, timeout_s: float | None) -> bool:
        return self.lifecycle.force_flush(timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        return self.lifecycle.shutdown(timeout_s)

    def close_async(self, deadline: float | None = None) -> None:
        self.lifecycle.close_async(deadline)

    def balance(self) -> dict[str, Any]:
        return balance(self)

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self)

    def _gauges(self) -> dict[str, float]:
        return gauges(self)

    def _report_app_drops(self) -> None:
        self.ledger.report_app_drops()

    # Reached by tests: the scheduler's per-item classifier, the batch shape self-tuning chose.
    @property
    def _classify_item(self) -> Callable[[Any, float], Task]:
        return self.drain.classify_item

    @_classify_item.setter
    def _classify_item(self, value: Callable[[Any, float], Task]) -> None:
        self.drain.classify_item = value

    @property
    def _tuned(self) -> tuple[int, float]:
        return self.standing.tuned

    @_tuned.setter
    def _tuned(self, value: tuple[int, float]) -> None:
        self.standing.tuned = value

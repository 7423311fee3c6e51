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
from typing import Any

from .._config import Config
from ..durability._bridge import SpoolBridge
from ..otlp._exporters import ExporterSpec, build_spec
from ..scheduling._priority_rules import compile_rules
from ..scheduling._task import Signal, Task
from ..scheduling._tenancy import Holder
from ._builders import build_lanes, build_stages
from ._dispatch import Completion, Dispatcher, completion_sink
from ._express import Express
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
from ._standing import Standing

__all__ = [
    "Pipeline",
    "install_sigterm_flush",
    "shutdown_all",
    "snapshot_log",
    "snapshot_log_with_context",
    "stats",
]


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

    def _build(self) -> None:
        cfg = self.config
        self.stages = stages = build_stages(cfg, self._priority_of.function())
        self.admission, self.queues = stages.admission, stages.queues  # (reached by tests and metrics)
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
                stages.classifier.resolver,
                intake.queue.appendleft,
                # Half the queue: what a flush releases at once fits beside what is queued.
                max(cfg.max_queue_size // 2, 256),
                self._priority_of.function() if cfg.inherit_priority else None,
            )
        prefix = f"otel-sched-{cfg.signal.value}"
        completions: deque[Completion] = deque()
        self.lanes = lanes = build_lanes(self._spec, cfg, prefix, completion_sink(completions, intake))
        self.pool = lanes.pool
        self.bridge = SpoolBridge(cfg, self.stats, lanes.fast)
        self.ledger = ledger = Ledger(self.stats, self.metrics, self.bridge)
        self.standing = standing = Standing(self, cfg, intake, self.holder, stages, lanes, self.stats, ledger)
        # Logs are converted as the stock processor does; spans go as they are (no call per item).
        prepare = None if cfg.signal is Signal.TRACES else _readable_log
        self.drain = drain = IntakeDrain(
            cfg.signal, intake, stages, self.holder, standing, ledger, self.stats, prepare
        )
        if lanes.fast:
            drain.use_encoding(stages.encode, stages.envelopes, cfg.max_export_batch_bytes)
        self.dispatcher = dispatcher = Dispatcher(
            self,
            cfg,
            stages,
            lanes,
            completions,
            self.stats,
            self.metrics,
            ledger,
            self.bridge,
            standing,
            intake,
            self._spec.can_multiply,
        )
        standing.dispatcher = dispatcher
        self.lifecycle = lifecycle = Lifecycle(
            self,
            cfg,
            intake,
            drain,
            dispatcher,
            stages.queues,
            ledger,
            self.stats,
            self.bridge,
            self.pool,
            self._exporter if self._spec.endpoints else None,
        )
        # Spans off the pre-encoded path, classified by their status alone (the default rules, and no
        # holder: no tenant key, no inherit_priority): express batches apply.
        express = None
        if self.holder is None and not lanes.fast and self._priority_of.status_rule_only:
            express = Express(
                stages.classifier.express_taker(),
                intake,
                stages.queues,
                stages.former,
                stages.classifier,
                dispatcher,
                standing,
                ledger,
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
            stages,
            self.holder,
            self.metrics,
            express,
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

"""Self-monitoring: the counters behind ``stats()`` and the SDK self-metrics.

:class:`Stats` is written by the scheduler thread only (single writer, no lock);
``stats()`` on any thread reads it through :meth:`Stats.snapshot`, which copies
each container with C-level operations that are atomic under the GIL.

:class:`SelfMetrics` publishes the SDK's processor metrics (semantic conventions
``otel.sdk.processor.span.*`` / ``otel.sdk.processor.log.*``), gated exactly like
the SDK by ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``, plus ours under
``otel_sched.processor.*``.  Tenant attributes on metrics are limited to the first
:data:`METRIC_TENANTS` tenants (the rest are ``__other__``) so a tenant attribute
with a million values cannot explode metric cardinality.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter_provider

from ..scheduling._task import PriorityClass, Signal, Task

__all__ = ["METRIC_TENANTS", "SelfMetrics", "Stats", "jain_index", "sdk_error_type"]

METRIC_TENANTS = 50
_SAMPLES = 2048
_MAX_TENANT_ROWS_FACTOR = 2
_CLASS_NAMES = [c.name.lower() for c in PriorityClass]

# Our drop reasons that mean what the SDK calls ``queue_full``: no room for the item.  The others
# keep their own name as ``error.type`` (the semantic conventions allow any low-cardinality value).
_QUEUE_FULL = frozenset(
    {"queue_full", "intake_full", "shed_priority", "shed_fair_share", "shed_trace", "memory_pressure"}
)


def sdk_error_type(reason: str) -> str:
    """The ``error.type`` of ``otel.sdk.processor.*.processed`` for one of our drop reasons."""
    return "queue_full" if reason in _QUEUE_FULL else reason


def _percentiles(samples: Iterable[float]) -> dict[str, float]:
    values = sorted(samples)
    if not values:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    n = len(values)

    def at(q: float) -> float:
        return values[min(n - 1, int(q * n))] * 1000.0

    return {
        "count": n,
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": values[-1] * 1000.0,
        "mean": sum(values) / n * 1000.0,
    }


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index: 1.0 when all equal, 1/n when one takes everything."""
    xs = [v for v in values if v >= 0]
    if not xs:
        return None
    total = sum(xs)
    squares = sum(x * x for x in xs)
    return (total * total) / (len(xs) * squares) if squares else 1.0


class Stats:
    """Counters of one pipeline.

    With the pipeline's held terms they balance at every step (``Pipeline.balance``):
    received == exported - replayed_items + dropped (app drops included) + spooled_items
    + queued + intake + in_flight.
    """

    def __init__(self, max_tenants: int) -> None:
        self.exported = 0
        self.exported_bytes = 0
        self.export_calls = 0
        self.export_failures = 0
        self.late_results = 0
        self.express_items = 0  # sent in express batches (never queued: nothing was scarce)
        self.retried = 0  # batches sent again after a failure
        self.rejected = 0  # items a collector refused in a partial success (counted among exported batches)
        self.spooled_batches = 0
        self.spooled_items = 0  # put into the spool instead of being dropped
        self.replayed_batches = 0
        self.replayed_items = 0  # taken back from the spool and exported (counted in exported too)
        self.dropped: Counter[str] = Counter()
        # As the SDK's processed metric counts: handed to the exporter, or dropped before (by error.type).
        self.submitted = 0
        self.sdk_dropped: Counter[str] = Counter()
        self.class_exported = [0] * len(PriorityClass)
        self.class_dropped = [0] * len(PriorityClass)
        self.deadline_missed = [0] * len(PriorityClass)  # exported (or sent) after enqueue + max age
        # tenant -> [exported, dropped, exported_bytes]
        self.tenants: dict[str, list[int]] = {}
        self._tenant_rows = max_tenants * _MAX_TENANT_ROWS_FACTOR
        self.export_latency: deque[float] = deque(maxlen=_SAMPLES)
        self.queue_wait: deque[float] = deque(maxlen=_SAMPLES)
        # Drops on the application thread: itertools.count is atomic in CPython, a += is not.
        self.app_drops: dict[str, itertools.count[int]] = {
            "intake_full": itertools.count(),
            "already_shutdown": itertools.count(),
            "recursion": itertools.count(),
        }
        self._app_reads = 0  # values app_drop_counts took from each counter
        self._app_reads_lock = threading.Lock()

    def _tenant(self, tenant: str) -> list[int]:
        row = self.tenants.get(tenant)
        if row is None:
            if len(self.tenants) >= self._tenant_rows:
                tenant = "__retired__"  # bounded: later tenants share one row
                row = self.tenants.get(tenant)
                if row is not None:
                    return row
            row = self.tenants[tenant] = [0, 0, 0]
        return row

    def record_drop(self, task: Task, reason: str) -> None:
        self.dropped[reason] += 1
        self.class_dropped[task.priority] += 1
        self._tenant(task.tenant)[1] += 1

    def record_replay(self, priority: int, tenant: str, items: int, nbytes: int) -> None:
        self.exported += items
        self.exported_bytes += nbytes
        self.replayed_batches += 1
        self.replayed_items += items
        self.class_exported[priority] += items
        row = self._tenant(tenant)
        row[0] += items
        row[2] += nbytes

    def record_export(self, runs: Iterable[tuple[int, str, int, int]]) -> None:
        """An exported batch, as (priority, tenant, items, bytes) runs."""
        for priority, tenant, items, nbytes in runs:
            self.exported += items
            self.exported_bytes += nbytes
            self.class_exported[priority] += items
            row = self._tenant(tenant)
            row[0] += items
            row[2] += nbytes

    def app_drop_counts(self) -> dict[str, int]:
        # Reading a count takes a value from it too: every read takes one from each counter, and
        # the lock keeps two readers' takes apart.
        with self._app_reads_lock:
            counts = {reason: next(counter) - self._app_reads for reason, counter in self.app_drops.items()}
            self._app_reads += 1
        return counts

    def snapshot(
        self, queued_by_class: list[int], queued_by_tenant: dict[str, int], weights: Callable[[str], float]
    ) -> dict[str, Any]:
        dropped = dict(self.dropped.copy())
        for reason, n in self.app_drop_counts().items():
            if n:
                dropped[reason] = dropped.get(reason, 0) + n
        tenants = self.tenants.copy()
        by_tenant = {
            t: {
                "exported": row[0],
                "dropped": row[1],
                "exported_bytes": row[2],
                "queued": queued_by_tenant.get(t, 0),
            }
            for t, row in tenants.items()
        }
        for t, n in queued_by_tenant.items():
            by_tenant.setdefault(t, {"exported": 0, "dropped": 0, "exported_bytes": 0, "queued": n})
        by_priority = {
            _CLASS_NAMES[c]: {
                "exported": self.class_exported[c],
                "dropped": self.class_dropped[c],
                "queued": queued_by_class[c],
                "deadline_missed": self.deadline_missed[c],
            }
            for c in range(len(PriorityClass))
        }
        # Fairness among tenants that had more to send than they got (backlogged), by weighted bytes.
        backlogged = [
            row["exported_bytes"] / weights(t)
            for t, row in by_tenant.items()
            if row["dropped"] or row["queued"]
        ]
        return {
            "exported": self.exported,
            "exported_bytes": self.exported_bytes,
            "export_calls": self.export_calls,
            "export_failures": self.export_failures,
            "late_results": self.late_results,
            "express_items": self.express_items,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "by_priority": by_priority,
            "by_tenant": by_tenant,
            "export_latency_ms": _percentiles(list(self.export_latency)),
            "queue_wait_ms": _percentiles(list(self.queue_wait)),
            "fairness_index": jain_index(backlogged) if len(backlogged) > 1 else None,
        }


class SelfMetrics:
    """OTel instruments for one processor; all no-ops when disabled."""

    _instances = itertools.count()

    def __init__(
        self,
        signal: Signal,
        meter_provider: MeterProvider | None,
        enabled: bool,
        capacity: int,
        queue_size: Callable[[], int],
        gauges: Callable[[], dict[str, float]],
        processed: Callable[[], dict[str | None, int]],
        sync: Callable[[], None],
    ) -> None:
        self.enabled = enabled
        self._tenants: set[str] = set()
        if not enabled:
            return
        noun = "span" if signal is Signal.TRACES else "log"
        kind = "batching_span_processor" if signal is Signal.TRACES else "batching_log_processor"
        # The SDK's component type (we are a batching processor) and its "{type}/{n}" name form; our
        # own numbering, so the name never collides with a stock processor's in the same process.
        self._attrs = {
            "otel.component.type": kind,
            "otel.component.name": f"{kind}/otel_sched_{next(self._instances)}",
        }
        meter = (meter_provider or get_meter_provider()).get_meter("otel_sched")

        # Observable, read from the pipeline's live counts at collection time (after the scheduler
        # has caught up with the intake): the values the SDK's synchronous instruments would hold,
        # with nothing recorded on the application thread.
        def observe_processed(_options: CallbackOptions) -> Iterable[Observation]:
            sync()
            return [
                Observation(n, self._attrs if error is None else {**self._attrs, "error.type": error})
                for error, n in processed().items()
                if n
            ]

        meter.create_observable_counter(
            f"otel.sdk.processor.{noun}.processed",
            callbacks=[observe_processed],
            unit=f"{{{noun}}}",
            description=f"The number of {noun}s for which the processing has finished, "
            "either successful or failed.",
        )
        capacity_counter = meter.create_up_down_counter(
            f"otel.sdk.processor.{noun}.queue.capacity",
            unit=f"{{{noun}}}",
            description=f"The maximum number of {noun}s the queue of a given instance of an SDK {noun} "
            "processor can hold.",
        )
        capacity_counter.add(capacity, self._attrs)

        def observe_queue(_options: CallbackOptions) -> Iterable[Observation]:
            sync()
            return (Observation(queue_size(), self._attrs),)

        meter.create_observable_up_down_counter(
            f"otel.sdk.processor.{noun}.queue.size",
            callbacks=[observe_queue],
            unit=f"{{{noun}}}",
            description=f"The number of {noun}s in the queue of a given instance of an SDK {noun} processor.",
        )
        self._dropped = meter.create_counter(
            "otel_sched.processor.dropped",
            unit=f"{{{noun}}}",
            description="Items dropped by otel-sched, by reason, priority class and tenant.",
        )
        self._latency = meter.create_histogram(
            "otel_sched.processor.export.duration",
            unit="s",
            description="Duration of one export call made by otel-sched.",
        )
        self._wait = meter.create_histogram(
            "otel_sched.processor.queue.wait",
            unit="s",
            description="Time items spent queued before export.",
        )

        def observe_gauges(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {**self._attrs, "otel_sched.gauge": k}) for k, v in gauges().items()]

        meter.create_observable_gauge(
            "otel_sched.processor.state",
            callbacks=[observe_gauges],
            description="otel-sched pipeline state: fairness index, concurrency, queued bytes.",
        )

    def _tenant_attr(self, tenant: str) -> str:
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < METRIC_TENANTS:
            self._tenants.add(tenant)
            return tenant
        return "__other__"

    def exported(self, count: int, seconds: float) -> None:
        if not self.enabled:
            return
        self._latency.record(seconds, self._attrs)

    def waited(self, waits: list[float]) -> None:
        if not self.enabled:
            return
        for w in waits:
            self._wait.record(w, self._attrs)

    def dropped_unclassified(self, reason: str, count: int) -> None:
        """Drops on the application thread (intake full, after shutdown, recursion): not classified yet."""
        if not self.enabled or count <= 0:
            return
        self._dropped.add(
            count,
            {
                **self._attrs,
                "error.type": reason,
                "otel_sched.priority": "unclassified",
                "otel_sched.tenant": "unclassified",
            },
        )

    def dropped(self, drops: Iterable[tuple[str, int, str]]) -> None:
        """``drops``: (reason, priority class, tenant) per dropped item."""
        if not self.enabled:
            return
        grouped: Counter[tuple[str, int, str]] = Counter(drops)
        for (reason, priority, tenant), n in grouped.items():
            self._dropped.add(
                n,
                {
                    **self._attrs,
                    "error.type": reason,
                    "otel_sched.priority": _CLASS_NAMES[priority],
                    "otel_sched.tenant": self._tenant_attr(tenant),
                },
            )

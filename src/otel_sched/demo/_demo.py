"""``otel-sched demo``: one realistic overload scenario, run with the stock processors and with ours.

Both runs happen in the same process, one after the other, each with its own
TracerProvider / LoggerProvider (the global providers are never touched), the same
resource, the real OTLP/HTTP exporters and a fresh embedded :class:`OTLPReceiver`
(a receiver per run, so a straggler of one run can never be counted for the other).

What is counted where:

* offered -- by the generator, per signal, priority and tenant, as it creates items;
* delivered -- at the receiver (``item_hook``), per signal, priority and tenant, with
  the latency from the item's end/timestamp to its receipt;
* ours' drops by reason -- from ``stats()``; the stock processors expose no counters,
  so their loss is offered - delivered;
* CPU -- ``time.process_time()`` over the run, and separately the embedded receiver's
  threads (decoding is the collector's work, not the pipeline's);
* memory -- process RSS sampled at ~20 Hz, peak minus the baseline taken just before.

:func:`run_demo` returns a plain JSON-ready dict; ``_report`` turns it into the
console table and the HTML report.  The scenario and its producers are in ``_scenario``, the
counting at the receiver and the resource sampling in ``_measure``; this module runs the
pipelines through them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._measure import (
    MIB,
    Delivery,
    ResourceSampler,
    capture_warnings,
    hist_percentiles,
    machine_info,
    trim_heap,
)
from ._receiver import OTLPReceiver
from ._scenario import (
    TENANT_KEY,
    DemoConfig,
    Producer,
    Progress,
    ProgressCallback,
    demo_resource,
    tenant_names,
)

__all__ = ["PIPELINES", "PIPELINE_LABELS", "PRIORITIES", "SIGNALS", "run_demo"]

_logger = logging.getLogger(__name__)

SIGNALS = ("spans", "logs")
PIPELINES = ("stock", "otel_sched")
PIPELINE_LABELS = {"stock": "stock", "otel_sched": "otel-sched"}
PRIORITIES = ("high", "normal")

_SAMPLE_EVERY_S = 0.25
_POLL_S = 0.05  # how soon the main thread notices that what it waits for is done


# -- one pipeline run ----------------------------------------------------------------------------------


class _Pipelines:
    """The span and log processors of one run, stock or ours, behind one interface."""

    def __init__(self, kind: str, config: DemoConfig, rx: OTLPReceiver, resource: Resource) -> None:
        self.kind = kind
        span_exporter = OTLPSpanExporter(endpoint=rx.traces_url)
        log_exporter = OTLPLogExporter(endpoint=rx.logs_url)
        self.span_processor: Any
        self.log_processor: Any
        if kind == "stock":
            self.span_processor = BatchSpanProcessor(span_exporter)
            self.log_processor = BatchLogRecordProcessor(log_exporter)
        else:
            options: dict[str, Any] = {
                "policy": config.policy,
                "tenant_key": TENANT_KEY,
                "shutdown_timeout_millis": config.drain_timeout_s * 1000.0,
            }
            self.span_processor = ScheduledSpanProcessor(span_exporter, **options)
            self.log_processor = ScheduledLogRecordProcessor(log_exporter, **options)
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(self.span_processor)
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(self.log_processor)

    def waiting(self) -> dict[str, tuple[int | None, int | None]]:
        """Per signal: (items waiting to be exported, items handed to the exporter and unanswered).

        None where it cannot be read: the stock processors expose neither; their queue length is
        read from a private attribute, and what their one export call holds is not visible.
        """
        return {"spans": self._waiting(self.span_processor), "logs": self._waiting(self.log_processor)}

    def _waiting(self, processor: Any) -> tuple[int | None, int | None]:
        if self.kind == "stock":
            queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
            try:
                return (len(queue) if queue is not None else None), None
            except TypeError:
                return None, None
        snap = processor.stats()
        return int(snap["queued"]) + int(snap["intake"]), int(snap["in_flight"])

    def stats(self) -> dict[str, Any] | None:
        if self.kind == "stock":
            return None
        return {"spans": self.span_processor.stats(), "logs": self.log_processor.stats()}

    def drain(self, timeout_s: float) -> None:
        ms = int(timeout_s * 1000)
        self.span_processor.force_flush(ms)
        self.log_processor.force_flush(ms)
        self.shutdown(timeout_s)

    def shutdown(self, timeout_s: float) -> None:
        for processor in (self.span_processor, self.log_processor):
            inner = getattr(processor, "_batch_processor", None) if self.kind == "stock" else None
            if inner is not None and callable(getattr(inner, "shutdown", None)):
                # The stock processors' own shutdown() takes no timeout; their inner batcher does.
                inner.shutdown(timeout_millis=int(timeout_s * 1000))
            else:
                processor.shutdown()


class _Interrupted(Exception):
    """Ctrl-C or the caller's stop event."""


def _in_thread(fn: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    return thread


class _Run:
    """Runs one pipeline through the scenario and collects its numbers."""

    def __init__(
        self,
        kind: str,
        index: int,
        config: DemoConfig,
        resource: Resource,
        progress: ProgressCallback | None,
        stop: threading.Event,
    ) -> None:
        self.kind = kind
        self.index = index
        self.config = config
        self.resource = resource
        self.progress = progress
        self.stop = stop
        self.delivery = Delivery()
        self.timeline: list[dict[str, Any]] = []
        self.producers: list[Producer] = []
        self.notes: list[str] = []
        self.step = "load"
        self.interrupted_step = ""
        self.load_started = 0.0
        self.load_seconds = 0.0

    # The main thread loops here while work happens on other threads: it samples the
    # timeline, reports progress, and stays responsive to Ctrl-C.
    def _tick_until(self, done: Callable[[], bool], deadline: float, pipelines: _Pipelines) -> bool:
        next_sample = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_sample:
                self._sample(pipelines, now)
                next_sample = now + _SAMPLE_EVERY_S
            if done():
                return True
            if now >= deadline:
                return False
            if self.stop.wait(max(min(next_sample, deadline, now + _POLL_S) - now, 0.0)):
                raise _Interrupted

    def _offered_now(self) -> tuple[int, int]:
        return sum(p.offered.spans for p in self.producers), sum(p.offered.logs for p in self.producers)

    def _sample(self, pipelines: _Pipelines, now: float) -> None:
        spans, logs = self._offered_now()
        waiting = pipelines.waiting()
        d = self.delivery.signals
        self.timeline.append(
            {
                "t": round(now - self.load_started, 3),
                "step": self.step,
                "offered_spans": spans,
                "offered_logs": logs,
                "delivered_spans": d["spans"].total,
                "delivered_logs": d["logs"].total,
                "waiting_spans": waiting["spans"][0],
                "waiting_logs": waiting["logs"][0],
                "in_flight_spans": waiting["spans"][1],
                "in_flight_logs": waiting["logs"][1],
            }
        )
        if self.progress is not None:
            self.progress(
                Progress(
                    pipeline=self.kind,
                    step=self.step,
                    run_index=self.index,
                    runs=len(PIPELINES),
                    elapsed_s=now - self.load_started,
                    duration_s=self.config.duration_s,
                    offered=spans + logs,
                    delivered=self.delivery.total(),
                )
            )

    def execute(self) -> dict[str, Any]:
        config = self.config
        interrupted = False
        drained = True
        rx = OTLPReceiver(
            latency_s=config.latency_ms / 1000.0,
            failure_rate=config.failure_rate,
            seed=config.seed,
            keep_items=False,
            item_hook=self.delivery.hook,
            max_concurrent_requests=config.collector_concurrency,
        ).start()
        sampler: ResourceSampler | None = None
        pipelines: _Pipelines | None = None
        stop_producers = threading.Event()
        closing = False  # the processors' shutdown has been started
        try:
            trim_heap()
            sampler = ResourceSampler()
            sampler.start()
            cpu_start = time.process_time()
            pipelines = _Pipelines(self.kind, config, rx, self.resource)
            self.load_started = time.monotonic()
            self.producers = [
                Producer(
                    i,
                    config,
                    pipelines.tracer_provider,
                    pipelines.logger_provider,
                    stop_producers,
                    self.load_started,
                )
                for i in range(config.producers)
            ]
            for producer in self.producers:
                producer.start()
            try:
                self._tick_until(
                    lambda: not any(p.is_alive() for p in self.producers),
                    self.load_started + config.duration_s + 5.0,
                    pipelines,
                )
                self.load_seconds = time.monotonic() - self.load_started
                self.step = "drain"
                at_end_of_load = pipelines.stats()
                drainer = _in_thread(lambda: pipelines.drain(config.drain_timeout_s), "otel-sched-demo-drain")
                closing = True
                drained = self._tick_until(
                    lambda: not drainer.is_alive(),
                    time.monotonic() + config.drain_timeout_s * 2 + 5.0,
                    pipelines,
                )
                if not drained:
                    self.notes.append(
                        f"{PIPELINE_LABELS[self.kind]}: force_flush/shutdown did not finish in time"
                    )
                self._wait_for_stragglers(rx, pipelines)
            except (KeyboardInterrupt, _Interrupted):
                interrupted = True
                self.interrupted_step = self.step
                if not self.load_seconds:
                    self.load_seconds = time.monotonic() - self.load_started
                at_end_of_load = None
                closing = True
                self._stop_quickly(stop_producers, pipelines)
            cpu_s = time.process_time() - cpu_start
            sampler.stop()
        finally:
            stop_producers.set()
            if pipelines is not None and not closing:  # an unexpected error: do not leave exporters retrying
                _in_thread(lambda: pipelines.shutdown(1.0), "otel-sched-demo-stop").join(2.0)
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            rx.stop()
        for producer in self.producers:
            if producer.error is not None:
                self.notes.append(f"producer {producer.name} failed: {producer.error!r}")
        return self._result(pipelines, sampler, cpu_s, interrupted, drained, at_end_of_load)

    def _wait_for_stragglers(self, rx: OTLPReceiver, pipelines: _Pipelines) -> None:
        # Shutdown returned, but a request may still be in the receiver (the hook runs after it is counted).
        def settled() -> bool:
            d = self.delivery.signals
            return rx.in_flight == 0 and d["spans"].total >= rx.span_count and d["logs"].total >= rx.log_count

        self.step = "drain"
        self._tick_until(settled, time.monotonic() + 2.0, pipelines)

    def _stop_quickly(self, stop_producers: threading.Event, pipelines: _Pipelines | None) -> None:
        self.step = "stopping"
        stop_producers.set()
        timeout = self.config.interrupt_timeout_s
        deadline = time.monotonic() + timeout
        for producer in self.producers:
            producer.join(max(deadline - time.monotonic(), 0.0))
        if pipelines is None:
            return
        stopper = _in_thread(lambda: pipelines.shutdown(timeout), "otel-sched-demo-stop")
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting, report what we have
            stopper.join(max(deadline - time.monotonic(), 0.1))
        if stopper.is_alive():
            self.notes.append(
                f"{PIPELINE_LABELS[self.kind]}: processors still stopping when the demo gave up"
            )

    def _result(
        self,
        pipelines: _Pipelines | None,
        sampler: ResourceSampler | None,
        cpu_s: float,
        interrupted: bool,
        drained: bool,
        at_end_of_load: dict[str, Any] | None,
    ) -> dict[str, Any]:
        offered_by_key: Counter[tuple[str, str, str]] = Counter()
        skipped = 0
        for producer in self.producers:
            offered_by_key.update(producer.offered.by_key)
            skipped += producer.offered.skipped
        stats = pipelines.stats() if pipelines is not None else None
        signals: dict[str, Any] = {}
        for signal in SIGNALS:
            delivered = self.delivery.signals[signal]
            offered_total = sum(n for (s, _, _), n in offered_by_key.items() if s == signal)
            by_priority = {
                p: _share(
                    sum(n for (s, q, _), n in offered_by_key.items() if s == signal and q == p),
                    delivered.by_priority[p],
                )
                for p in PRIORITIES
            }
            tenants = sorted({t for (s, _, t) in offered_by_key if s == signal} | set(delivered.by_tenant))
            by_tenant = {
                t: _share(
                    sum(n for (s, _, u), n in offered_by_key.items() if s == signal and u == t),
                    delivered.by_tenant[t],
                )
                for t in tenants
            }
            entry: dict[str, Any] = {
                **_share(offered_total, delivered.total),
                "by_priority": by_priority,
                "by_tenant": by_tenant,
                "latency_ms": hist_percentiles(delivered.latency_hist),
            }
            if stats is not None:
                snap = stats[signal]
                entry["drops"] = dict(sorted(snap["dropped"].items()))
                entry["processor"] = _processor_summary(snap)
                if at_end_of_load is not None:
                    entry["processor_at_end_of_load"] = _processor_summary(at_end_of_load[signal])
            else:
                lost = max(offered_total - delivered.total, 0)
                entry["drops"] = {"queue_full/lost": lost}
            signals[signal] = entry
        receiver_cpu = sampler.receiver_cpu_s if sampler is not None else 0.0
        delivered_total = self.delivery.total()
        pipeline_cpu = max(cpu_s - receiver_cpu, 0.0)
        return {
            "pipeline": self.kind,
            "label": "BatchSpanProcessor + BatchLogRecordProcessor"
            if self.kind == "stock"
            else f"ScheduledSpanProcessor + ScheduledLogRecordProcessor (policy={self.config.policy})",
            "completed": not interrupted,
            "interrupted_in": self.interrupted_step if interrupted else None,
            "drained": drained and not interrupted,
            "load_seconds": round(self.load_seconds, 3),
            "generator_skipped": skipped,
            "cpu_s": round(cpu_s, 3),
            "cpu_receiver_s": round(receiver_cpu, 3),
            "cpu_app_pipeline_s": round(pipeline_cpu, 3),
            "cpu_us_per_delivered": round(pipeline_cpu / delivered_total * 1e6, 2)
            if delivered_total
            else None,
            "rss_baseline_mib": round(sampler.baseline_rss / MIB, 1) if sampler is not None else None,
            "rss_peak_growth_mib": round((sampler.peak_rss - sampler.baseline_rss) / MIB, 1)
            if sampler is not None
            else None,
            "signals": signals,
            "timeline": self.timeline,
            "notes": self.notes,
        }


def _share(offered: int, delivered: int) -> dict[str, Any]:
    return {
        "offered": offered,
        "delivered": delivered,
        "delivered_pct": round(100.0 * delivered / offered, 2) if offered else None,
    }


def _processor_summary(snap: dict[str, Any]) -> dict[str, Any]:
    """The parts of ours' stats() the report shows (the full snapshot is large and mostly internal)."""
    keys = (
        "received",
        "exported",
        "dropped_total",
        "queued",
        "intake",
        "in_flight",
        "export_calls",
        "export_failures",
        "fairness_index",
        "by_priority",
        "by_tenant",
        "export_latency_ms",
        "queue_wait_ms",
    )
    return {k: snap.get(k) for k in keys}


# -- the whole demo ------------------------------------------------------------------------------------


def _warm_up(config: DemoConfig, resource: Resource, progress: ProgressCallback | None) -> None:
    """Run the scenario briefly through both pipelines first, unmeasured.

    Lazy imports, the encoders' first use and HTTP connection pools would otherwise be
    charged to whichever pipeline runs first; and CPython keeps much of a run's heap
    after it ends, so without a comparable run before it the first measured run would
    show more RSS growth than the second for the same work.
    """
    if config.warmup_s <= 0:
        return
    quick = replace(config, duration_s=config.warmup_s, failure_rate=0.0)
    with OTLPReceiver(latency_s=quick.latency_ms / 1000.0, keep_items=False, item_hook=Delivery().hook) as rx:
        for kind in PIPELINES:
            if progress is not None:
                progress(Progress(kind, "warm-up", 0, len(PIPELINES), 0.0, quick.duration_s, 0, 0))
            pipelines = _Pipelines(kind, quick, rx, resource)
            halt = threading.Event()
            producers = [
                Producer(
                    i, quick, pipelines.tracer_provider, pipelines.logger_provider, halt, time.monotonic()
                )
                for i in range(quick.producers)
            ]
            for producer in producers:
                producer.start()
            try:
                for producer in producers:
                    producer.join()
            finally:
                halt.set()
                pipelines.shutdown(2.0)


def run_demo(
    config: DemoConfig,
    *,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the scenario with the stock processors, then with ours; return every number as a dict.

    ``stop`` (or Ctrl-C in the calling thread) ends the current run early: the
    generator stops, the processors get ``interrupt_timeout_s`` to shut down, and the
    result is marked ``partial``.
    """
    stop = stop if stop is not None else threading.Event()
    started = datetime.now(timezone.utc)
    resource = demo_resource()
    runs: dict[str, Any] = {}
    partial = False
    with capture_warnings() as captured:
        _warm_up(config, resource, progress)
        for index, kind in enumerate(PIPELINES, start=1):
            run = _Run(kind, index, config, resource, progress, stop)
            result = run.execute()
            runs[kind] = result
            if not result["completed"]:
                partial = True
                break
    return {
        "title": "otel-sched demo: stock batch processors vs otel-sched under overload",
        "date": started.isoformat(timespec="seconds"),
        "partial": partial,
        "config": asdict(config),
        "tenants": tenant_names(config.tenants),
        "noisy_tenant": tenant_names(config.tenants)[0],
        "tenant_key": TENANT_KEY,
        "machine": machine_info(),
        "runs": runs,
        "warnings": [
            {"logger": name, "message": message, "count": n}
            for (name, message), n in captured.counts.most_common(20)
        ],
    }

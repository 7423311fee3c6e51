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
console table and the HTML report.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import math
import os
import platform
import random
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import psutil
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from .._config import POLICY_NAMES
from .._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._received import ReceivedItem
from ._receiver import OTLPReceiver

__all__ = [
    "PIPELINES",
    "SIGNALS",
    "TENANT_KEY",
    "DemoConfig",
    "Progress",
    "machine_info",
    "run_demo",
    "tenant_names",
]

_logger = logging.getLogger(__name__)

TENANT_KEY = "tenant.id"
SIGNALS = ("spans", "logs")
PIPELINES = ("stock", "otel_sched")
PIPELINE_LABELS = {"stock": "stock", "otel_sched": "otel-sched"}
PRIORITIES = ("high", "normal")

_ERROR_SEVERITY = SeverityNumber.ERROR.value
_SAMPLE_EVERY_S = 0.25
_POLL_S = 0.05  # how soon the main thread notices that what it waits for is done
_RSS_EVERY_S = 0.05
_LATENCY_BUCKETS = 600_000  # 1 ms buckets: 10 minutes, far above any export timeout
_MIB = 1024 * 1024


# -- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """The scenario.  Rates are items per second over the whole process; duration is per pipeline."""

    duration_s: float = 15.0
    span_rate: float = 5000.0
    log_rate: float = 4000.0
    latency_ms: float = 300.0
    failure_rate: float = 0.0
    # Requests the collector serves at once (others wait their turn).  Four at 300 ms: the stock
    # processors (one export per signal) reach a third of the load, the concurrent lanes more, and
    # both are still overloaded, so what is compared is how many items get through and which.
    collector_concurrency: int = 4
    tenants: int = 5
    noisy_share: float = 0.7
    error_share: float = 0.05
    policy: str = "priority_fair"
    seed: int = 1
    producers: int = 2
    drain_timeout_s: float = 15.0  # force_flush + shutdown, per pipeline
    interrupt_timeout_s: float = 3.0  # how long a Ctrl-C waits for the processors to stop
    warmup_s: float = 2.0  # per pipeline, unmeasured, before the measured runs (see _warm_up)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{name}: {why}" for name, why in problems))

    def problems(self) -> list[tuple[str, str]]:
        """(field, reason) for every invalid field; empty when the configuration is usable."""
        out: list[tuple[str, str]] = []

        def finite(
            name: str, value: float, low: float, high: float = math.inf, *, open_low: bool = False
        ) -> None:
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                out.append((name, f"must be a finite number, got {value!r}"))
            elif value < low or (open_low and value == low) or value > high:
                bound = f"> {low}" if open_low else f">= {low}"
                rng = f"within {low}..{high}" if high != math.inf else bound
                out.append((name, f"must be {rng}, got {value!r}"))

        finite("duration_s", self.duration_s, 0.0, open_low=True)
        finite("span_rate", self.span_rate, 0.0)
        finite("log_rate", self.log_rate, 0.0)
        finite("latency_ms", self.latency_ms, 0.0)
        finite("failure_rate", self.failure_rate, 0.0, 1.0)
        finite("noisy_share", self.noisy_share, 0.0, 1.0)
        finite("error_share", self.error_share, 0.0, 1.0)
        finite("drain_timeout_s", self.drain_timeout_s, 0.0, open_low=True)
        finite("interrupt_timeout_s", self.interrupt_timeout_s, 0.0, open_low=True)
        finite("warmup_s", self.warmup_s, 0.0)
        if not isinstance(self.collector_concurrency, int) or self.collector_concurrency < 1:
            out.append(
                ("collector_concurrency", f"must be an integer >= 1, got {self.collector_concurrency!r}")
            )
        if not isinstance(self.tenants, int) or self.tenants < 1:
            out.append(("tenants", f"must be an integer >= 1, got {self.tenants!r}"))
        if not isinstance(self.producers, int) or self.producers < 1:
            out.append(("producers", f"must be an integer >= 1, got {self.producers!r}"))
        if self.policy not in POLICY_NAMES:
            out.append(("policy", f"must be one of {', '.join(POLICY_NAMES)}, got {self.policy!r}"))
        return out


@dataclass(frozen=True)
class Progress:
    """What the demo is doing right now; handed to the progress callback ~4 times a second."""

    pipeline: str  # "stock" | "otel_sched"
    step: str  # "load" | "drain" | "stopping"
    run_index: int  # 1-based
    runs: int
    elapsed_s: float  # since this pipeline's load started
    duration_s: float
    offered: int  # this pipeline, spans + logs
    delivered: int  # this pipeline, spans + logs


ProgressCallback = Callable[[Progress], None]


def tenant_names(n: int) -> list[str]:
    """Readable tenant ids; the first one is the noisy tenant."""
    if n <= 26:
        return [f"tenant-{chr(ord('a') + i)}" for i in range(n)]
    width = len(str(n - 1))
    return [f"tenant-{i:0{width}d}" for i in range(n)]


# -- the workload --------------------------------------------------------------------------------------

_ROUTES = (
    ("GET", "/api/v1/orders/{id}"),
    ("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/users/{id}"),
    ("PUT", "/api/v1/users/{id}"),
    ("GET", "/api/v1/catalog/search"),
    ("POST", "/api/v1/cart/items"),
    ("DELETE", "/api/v1/cart/items/{id}"),
    ("GET", "/healthz"),
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    "curl/8.8.0",
)
_OK_STATUS = (200, 200, 200, 200, 200, 201, 204, 304, 400, 404)
_LOG_LEVELS = (
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.DEBUG, "DEBUG"),
    (SeverityNumber.WARN, "WARN"),
)
_LOG_MESSAGES = (
    "request handled",
    "cache miss for key",
    "order state changed",
    "payment authorised",
    "rate limit close to quota",
    "retrying upstream call",
)
_ERROR_MESSAGES = (
    "upstream timed out after 3 retries",
    "database deadlock detected; transaction rolled back",
    "payment provider returned 502",
)


def demo_resource() -> Resource:
    """The one resource both runs share."""
    return Resource.create(
        {
            "service.name": "checkout-api",
            "service.version": "4.2.0",
            "service.namespace": "shop",
            "deployment.environment": "demo",
            "host.name": platform.node() or "localhost",
            "process.pid": os.getpid(),
        }
    )


class _Offered:
    """Counts of what one producer offered; merged once the producers stop."""

    def __init__(self) -> None:
        self.spans = 0
        self.logs = 0
        self.skipped = 0  # items the producer could not create in time (it fell behind its rate)
        self.by_key: Counter[tuple[str, str, str]] = Counter()  # (signal, priority, tenant)


class _Producer(threading.Thread):
    """Creates spans and logs at a fixed rate with the scenario's tenant and error mix."""

    _MAX_BURST = 64  # items per pacing step, so spans and logs interleave
    _MAX_LAG_S = 0.25  # behind by more than this: skip ahead instead of bursting (counted)

    def __init__(
        self,
        index: int,
        config: DemoConfig,
        tracer_provider: TracerProvider,
        logger_provider: LoggerProvider,
        stop: threading.Event,
        start_at: float,
    ) -> None:
        super().__init__(name=f"otel-sched-demo-producer-{index}", daemon=True)
        self.offered = _Offered()
        self._config = config
        self._tracer = tracer_provider.get_tracer("checkout.http", "4.2.0")
        self._logger = logger_provider.get_logger("checkout.app", "4.2.0")
        self._halt_event = stop
        self._start_at = start_at
        self._span_rate = config.span_rate / config.producers
        self._log_rate = config.log_rate / config.producers
        self._rng = random.Random(config.seed * 7919 + index)
        self._tenants = tenant_names(config.tenants)
        self._last_span: dict[str, Any] = {}  # tenant -> its latest span: a trace belongs to one tenant
        self.error: BaseException | None = None

    def _tenant(self) -> str:
        rng, tenants = self._rng, self._tenants
        if len(tenants) == 1 or rng.random() < self._config.noisy_share:
            return tenants[0]
        return tenants[1 + rng.randrange(len(tenants) - 1)]

    def _span(self) -> None:
        rng = self._rng
        tenant = self._tenant()
        error = rng.random() < self._config.error_share
        method, route = _ROUTES[rng.randrange(len(_ROUTES))]
        target = route.replace("{id}", str(rng.randrange(1, 10**7)))
        status = 500 if error else _OK_STATUS[rng.randrange(len(_OK_STATUS))]
        now = time.time_ns()
        span = self._tracer.start_span(
            f"{method} {route}",
            kind=SpanKind.SERVER,
            start_time=now - rng.randrange(200_000, 80_000_000),
            attributes={
                TENANT_KEY: tenant,
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "url.full": f"https://shop.example.com{target}?session={rng.getrandbits(40):x}",
                "url.scheme": "https",
                "user_agent.original": _AGENTS[rng.randrange(len(_AGENTS))],
                "client.address": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "server.address": "shop.example.com",
                "network.protocol.version": "1.1",
            },
        )
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        self._last_span[tenant] = span
        self.offered.spans += 1
        self.offered.by_key["spans", "high" if error else "normal", tenant] += 1

    def _log(self) -> None:
        rng = self._rng
        tenant = self._tenant()
        error = rng.random() < self._config.error_share
        if error:
            severity, text = SeverityNumber.ERROR, "ERROR"
            body = _ERROR_MESSAGES[rng.randrange(len(_ERROR_MESSAGES))]
        else:
            severity, text = _LOG_LEVELS[rng.randrange(len(_LOG_LEVELS))]
            body = _LOG_MESSAGES[rng.randrange(len(_LOG_MESSAGES))]
        # Logs carry the trace context of a recent request, as instrumented handlers' logs do.
        span = self._last_span.get(tenant)
        context = set_span_in_context(span) if span is not None else None
        self._logger.emit(
            timestamp=time.time_ns(),
            context=context,
            severity_number=severity,
            severity_text=text,
            body=body,
            attributes={
                TENANT_KEY: tenant,
                "code.function.name": "handle_request",
                "code.file.path": "/srv/checkout/app/handlers.py",
                "code.line.number": 100 + rng.randrange(400),
                "thread.name": "MainThread",
                "order.id": rng.randrange(10**8),
            },
        )
        self.offered.logs += 1
        self.offered.by_key["logs", "high" if severity.value >= _ERROR_SEVERITY else "normal", tenant] += 1

    def run(self) -> None:
        try:
            self._pace()
        except Exception as exc:  # noqa: BLE001 - reported in the result; a producer must not die silently
            self.error = exc

    def _pace(self) -> None:
        duration = self._config.duration_s
        span_rate, log_rate = self._span_rate, self._log_rate
        offered = self.offered
        # Items the producer gave up on count against the schedule so it never bursts to catch up.
        skipped_spans = skipped_logs = 0
        while not self._halt_event.is_set():
            elapsed = time.monotonic() - self._start_at
            if elapsed >= duration:
                return
            due_spans = int(span_rate * elapsed) - offered.spans - skipped_spans
            due_logs = int(log_rate * elapsed) - offered.logs - skipped_logs
            if due_spans > span_rate * self._MAX_LAG_S:
                skip = due_spans - int(span_rate * self._MAX_LAG_S)
                skipped_spans += skip
                due_spans -= skip
            if due_logs > log_rate * self._MAX_LAG_S:
                skip = due_logs - int(log_rate * self._MAX_LAG_S)
                skipped_logs += skip
                due_logs -= skip
            offered.skipped = skipped_spans + skipped_logs
            if due_spans <= 0 and due_logs <= 0:
                self._halt_event.wait(0.002)
                continue
            for _ in range(min(due_spans, self._MAX_BURST)):
                self._span()
            for _ in range(min(due_logs, self._MAX_BURST)):
                self._log()


# -- delivery, counted at the receiver ----------------------------------------------------------------


class _SignalDelivery:
    __slots__ = ("by_priority", "by_tenant", "latency_hist", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_priority: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()
        self.latency_hist = array("Q", bytes(8 * (_LATENCY_BUCKETS + 1)))


class _Delivery:
    """The receiver's item_hook: counts what arrived, per signal, priority and tenant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.signals = {"spans": _SignalDelivery(), "logs": _SignalDelivery()}

    def hook(self, item: ReceivedItem) -> None:
        latency_ms = (time.time_ns() - item.end_time_unix_nano) // 1_000_000
        if item.signal == "traces":
            counts = self.signals["spans"]
            priority = "high" if item.status_code == 2 else "normal"
        else:
            counts = self.signals["logs"]
            priority = "high" if item.severity_number >= _ERROR_SEVERITY else "normal"
        tenant = item.attributes.get(TENANT_KEY)
        if tenant is None:
            tenant = item.resource.get(TENANT_KEY, "(none)")
        bucket = min(max(latency_ms, 0), _LATENCY_BUCKETS)
        with self._lock:
            counts.total += 1
            counts.by_priority[priority] += 1
            counts.by_tenant[str(tenant)] += 1
            counts.latency_hist[bucket] += 1

    def total(self) -> int:
        return self.signals["spans"].total + self.signals["logs"].total


def _hist_percentiles(hist: array[int]) -> dict[str, float | int | None]:
    count = sum(hist)
    if not count:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    wanted = {"p50": math.ceil(0.50 * count), "p99": math.ceil(0.99 * count)}
    found: dict[str, float | int | None] = {"count": count}
    seen = 0
    top = 0
    for ms, n in enumerate(hist):
        if not n:
            continue
        seen += n
        top = ms
        for name, rank in wanted.items():
            if name not in found and seen >= rank:
                found[name] = float(ms)
    found["max"] = float(top)
    return found


# -- resources: CPU and memory -------------------------------------------------------------------------


def _trim_heap() -> None:
    """Return freed memory to the OS so the next run's RSS baseline is not inflated by the previous one."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)


class _ResourceSampler(threading.Thread):
    """Peak RSS at ~20 Hz, and the CPU time of the embedded receiver's threads.

    Thread CPU is read from the OS per thread id; a receiver thread's time is the
    largest value seen for it, so a thread that ends between two samples loses at
    most one sampling interval.
    """

    _CPU_EVERY = 5  # thread CPU is read every 5th RSS sample (~4 Hz): it costs more than RSS

    def __init__(self) -> None:
        super().__init__(name="otel-sched-demo-sampler", daemon=True)
        self._proc = psutil.Process()
        self._halted = threading.Event()
        self.baseline_rss = self._proc.memory_info().rss
        self.peak_rss = self.baseline_rss
        self._receiver_cpu: dict[int, float] = {}
        self._receiver_cpu_start = self._thread_cpu()
        for tid, seconds in self._receiver_cpu_start.items():
            self._receiver_cpu[tid] = seconds

    def _thread_cpu(self) -> dict[int, float]:
        ids = {t.native_id for t in threading.enumerate() if t.name.startswith("otlp-receiver")}
        try:
            return {t.id: t.user_time + t.system_time for t in self._proc.threads() if t.id in ids}
        except psutil.Error:
            return {}

    def sample_cpu(self) -> None:
        for tid, seconds in self._thread_cpu().items():
            if seconds > self._receiver_cpu.get(tid, 0.0):
                self._receiver_cpu[tid] = seconds

    def run(self) -> None:
        n = 0
        while not self._halted.wait(_RSS_EVERY_S):
            try:
                rss = self._proc.memory_info().rss
            except psutil.Error:
                continue
            if rss > self.peak_rss:
                self.peak_rss = rss
            n += 1
            if n % self._CPU_EVERY == 0:
                self.sample_cpu()

    def stop(self) -> None:
        self.sample_cpu()
        self._halted.set()
        self.join(2.0)

    @property
    def receiver_cpu_s(self) -> float:
        start = self._receiver_cpu_start
        return sum(v - start.get(tid, 0.0) for tid, v in self._receiver_cpu.items())


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
        self.delivery = _Delivery()
        self.timeline: list[dict[str, Any]] = []
        self.producers: list[_Producer] = []
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
        sampler: _ResourceSampler | None = None
        pipelines: _Pipelines | None = None
        stop_producers = threading.Event()
        closing = False  # the processors' shutdown has been started
        try:
            _trim_heap()
            sampler = _ResourceSampler()
            sampler.start()
            cpu_start = time.process_time()
            pipelines = _Pipelines(self.kind, config, rx, self.resource)
            self.load_started = time.monotonic()
            self.producers = [
                _Producer(
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
        sampler: _ResourceSampler | None,
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
                "latency_ms": _hist_percentiles(delivered.latency_hist),
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
            "rss_baseline_mib": round(sampler.baseline_rss / _MIB, 1) if sampler is not None else None,
            "rss_peak_growth_mib": round((sampler.peak_rss - sampler.baseline_rss) / _MIB, 1)
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


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    from .. import __version__

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "opentelemetry_sdk": _version("opentelemetry-sdk"),
        "opentelemetry_exporter_otlp_proto_http": _version("opentelemetry-exporter-otlp-proto-http"),
        "otel_sched": __version__,
        "memory_total_mib": round(psutil.virtual_memory().total / _MIB),
    }


class _CapturedWarnings(logging.Handler):
    """Keeps the SDK's warnings (queue full, export retries) off the console during the runs; counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.counts[record.name, record.getMessage()[:200]] += 1


@contextlib.contextmanager
def _capture_warnings() -> Iterator[_CapturedWarnings]:
    handler = _CapturedWarnings()
    loggers = [logging.getLogger(name) for name in ("opentelemetry", "otel_sched")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, (propagate, _) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate


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
    with OTLPReceiver(
        latency_s=quick.latency_ms / 1000.0, keep_items=False, item_hook=_Delivery().hook
    ) as rx:
        for kind in PIPELINES:
            if progress is not None:
                progress(Progress(kind, "warm-up", 0, len(PIPELINES), 0.0, quick.duration_s, 0, 0))
            pipelines = _Pipelines(kind, quick, rx, resource)
            halt = threading.Event()
            producers = [
                _Producer(
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
    with _capture_warnings() as captured:
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

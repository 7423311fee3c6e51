"""The processors as a user runs them: real SDK providers, real OTLP exporters, a real receiver."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

from ._exporters import RecordingExporter, wait_until

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test"})


def _tracer(processor: Any, sampler: Sampler | None = None) -> tuple[TracerProvider, Any]:
    provider = (
        TracerProvider(resource=RESOURCE, sampler=sampler) if sampler else TracerProvider(resource=RESOURCE)
    )
    provider.add_span_processor(processor)
    return provider, provider.get_tracer("test.scope", "1.0")


def _spans(tracer: Any, n: int, *, tenant: str = "acme", error_every: int = 0, prefix: str = "op") -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}{i}", attributes={"tenant.id": tenant, "i": i}) as span:
            if error_every and i % error_every == 0:
                span.set_status(Status(StatusCode.ERROR, "failed"))


# -- drop-in behaviour through the real OTLP exporters ------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_spans_reach_the_collector_through_the_real_otlp_exporter(
    receiver: OTLPReceiver, transport: str
) -> None:
    exporter = (
        HttpSpanExporter(endpoint=receiver.traces_url)
        if transport == "http"
        else GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    )
    processor = ScheduledSpanProcessor(exporter, tenant_key="tenant.id")
    provider, tracer = _tracer(processor)
    _spans(tracer, 120, error_every=10)
    assert processor.force_flush(10_000)
    spans = receiver.spans()
    assert len(spans) == 120
    assert {s.transport for s in spans} == {transport}
    assert {s.resource["service.name"] for s in spans} == {"checkout"}
    assert {s.scope_name for s in spans} == {"test.scope"}
    assert sum(1 for s in spans if s.status_code == 2) == 12
    assert sorted(s.attributes["i"] for s in spans) == list(range(120))
    stats = processor.stats()
    assert stats["exported"] == 120 and stats["dropped_total"] == 0
    assert stats["by_priority"]["high"]["exported"] == 12
    assert stats["by_tenant"]["acme"]["exported"] == 120
    provider.shutdown()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_log_records_reach_the_collector_through_the_real_otlp_exporter(
    receiver: OTLPReceiver, transport: str
) -> None:
    exporter = (
        HttpLogExporter(endpoint=receiver.logs_url)
        if transport == "http"
        else GrpcLogExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    )
    provider = LoggerProvider(resource=RESOURCE)
    processor = ScheduledLogRecordProcessor(exporter)
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("app.logs")
    for i in range(50):
        severity = SeverityNumber.ERROR if i % 5 == 0 else SeverityNumber.INFO
        logger.emit(body=f"message {i}", severity_number=severity, attributes={"i": i})
    assert processor.force_flush(10_000)
    logs = receiver.logs()
    assert sorted(r.attributes["i"] for r in logs) == list(range(50))
    assert {r.resource["service.name"] for r in logs} == {"checkout"}
    assert processor.stats()["by_priority"]["high"]["exported"] == 10
    provider.shutdown()


def test_python_logging_through_the_otel_handler(receiver: OTLPReceiver) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    processor = ScheduledLogRecordProcessor(HttpLogExporter(endpoint=receiver.logs_url))
    provider.add_log_record_processor(processor)
    handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("test.python.logging")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("payment failed for order %s", 42)
        log.warning("slow")
        assert processor.force_flush(10_000)
    finally:
        log.removeHandler(handler)
    bodies = {r.name: r.severity_number for r in receiver.logs()}
    assert bodies == {"payment failed for order 42": 17, "slow": 13}
    provider.shutdown()


def test_a_full_batch_is_exported_without_waiting_for_the_delay() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=10, schedule_delay_millis=60_000)
    _, tracer = _tracer(processor)
    _spans(tracer, 10)
    assert wait_until(lambda: len(exporter.items) == 10)
    assert exporter.batches == [10]
    processor.shutdown()


def test_a_partial_batch_is_exported_when_the_delay_expires() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=50)
    _, tracer = _tracer(processor)
    _spans(tracer, 3)
    assert wait_until(lambda: len(exporter.items) == 3)
    processor.shutdown()


@pytest.mark.parametrize("fast_path", [False, True])
def test_a_steady_trickle_is_exported_on_the_delay(receiver: OTLPReceiver, fast_path: bool) -> None:
    # Arrivals keep waking the scheduler (every few dozen items) without ever filling a batch:
    # those wake-ups only classify, and the batch must still go when the delay expires.
    exporter = HttpSpanExporter(endpoint=receiver.traces_url) if fast_path else RecordingExporter()
    processor = ScheduledSpanProcessor(
        exporter, max_export_batch_size=100_000, max_queue_size=200_000, schedule_delay_millis=100
    )
    _, tracer = _tracer(processor)

    def exported() -> int:
        return receiver.span_count if fast_path else len(exporter.items)  # type: ignore[attr-defined]

    made = 0
    deadline = time.monotonic() + 20
    while exported() == 0 and time.monotonic() < deadline:
        _spans(tracer, 50)
        made += 50
        time.sleep(0.002)
    # A batch of 100,000 never fills: what left, left on the delay, before any flush.
    assert exported() > 0, f"nothing exported after {made} spans in 20 s"
    assert processor.force_flush(10_000)
    assert wait_until(lambda: exported() == made)
    processor.shutdown()


def test_a_hanging_export_is_timed_out_under_a_load_that_never_lets_the_scheduler_sleep() -> None:
    # The scheduler is kept busy classifying the whole time; its hang check must still run.
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter,
        max_export_batch_size=50,
        max_queue_size=100_000,
        export_timeout_millis=200,
        shutdown_timeout_millis=300,
    )
    _, tracer = _tracer(processor)
    deadline = time.monotonic() + 20
    while not processor.stats()["dropped"].get("export_timeout") and time.monotonic() < deadline:
        _spans(tracer, 100)  # as fast as the test thread can: the intake never runs dry
    assert processor.stats()["dropped"].get("export_timeout") == 50
    exporter.gate.set()
    processor.shutdown()


class _RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "record-only"


def test_unsampled_spans_are_not_exported() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter)
    _, tracer = _tracer(processor, sampler=_RecordOnly())
    _spans(tracer, 5)
    assert processor.force_flush(5_000)
    assert exporter.items == [] and processor.stats()["received"] == 0
    processor.shutdown()


def test_export_runs_under_suppress_instrumentation_and_never_concurrently() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=5)
    _, tracer = _tracer(processor)
    _spans(tracer, 100)
    assert processor.force_flush(5_000)
    assert exporter.suppressed and all(exporter.suppressed)
    assert exporter.max_concurrent == 1
    processor.shutdown()


# -- shutdown, flush, timeouts -------------------------------------------------------------------------


def test_shutdown_exports_what_is_queued_and_is_safe_twice() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider, tracer = _tracer(processor)
    _spans(tracer, 7)
    provider.shutdown()
    assert len(exporter.items) == 7
    processor.shutdown()
    assert exporter.shutdown_calls == 1


def test_items_after_shutdown_are_dropped_and_counted() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter)
    _, tracer = _tracer(processor)
    processor.shutdown()
    _spans(tracer, 4)
    assert processor.stats()["dropped"]["already_shutdown"] == 4
    assert processor.force_flush(100) is False


def test_force_flush_returns_false_when_its_timeout_passes() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()  # the exporter hangs
    processor = ScheduledSpanProcessor(exporter, export_timeout_millis=60_000, shutdown_timeout_millis=500)
    _, tracer = _tracer(processor)
    _spans(tracer, 3)
    start = time.monotonic()
    assert processor.force_flush(200) is False
    assert time.monotonic() - start < 10  # returned at its timeout, not when the export ends
    exporter.gate.set()
    assert processor.force_flush(5_000) is True
    processor.shutdown()


def test_a_hanging_exporter_is_timed_out_counted_and_does_not_hang_shutdown() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter, max_export_batch_size=5, export_timeout_millis=100, shutdown_timeout_millis=300
    )
    _, tracer = _tracer(processor)
    _spans(tracer, 5)
    assert wait_until(lambda: processor.stats()["dropped"].get("export_timeout") == 5)
    assert processor.stats()["concurrency"]["hung"] == 1
    _spans(tracer, 3)  # queued behind the hung lane
    processor.shutdown()  # must return (bounded by shutdown_timeout_millis) and release the exporter
    stats = processor.stats()
    assert stats["dropped"]["export_timeout"] == 5
    assert exporter.shutdown_calls == 1
    assert stats["exported"] + stats["dropped_total"] + stats["queued"] == 8


@pytest.mark.parametrize(
    ("configure", "reason"),
    [
        (lambda e: setattr(e, "result", SpanExportResult.FAILURE), "export_failed"),
        (lambda e: setattr(e, "raise_exc", RuntimeError("collector exploded")), "export_error"),
    ],
)
def test_failing_exporters_are_counted_and_the_pipeline_goes_on(configure: Any, reason: str) -> None:
    exporter = RecordingExporter()
    configure(exporter)
    processor = ScheduledSpanProcessor(exporter)
    _, tracer = _tracer(processor)
    _spans(tracer, 4)
    processor.force_flush(5_000)
    assert processor.stats()["dropped"] == {reason: 4}
    exporter.result, exporter.raise_exc = SpanExportResult.SUCCESS, None
    _spans(tracer, 2, prefix="later")
    assert processor.force_flush(5_000)
    assert [s.name for s in exporter.items] == ["later0", "later1"]
    processor.shutdown()


async def test_asyncio_flush_and_shutdown_do_not_block_the_running_loop() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(exporter, shutdown_timeout_millis=5_000)
    _, tracer = _tracer(processor)
    _spans(tracer, 3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    flush = asyncio.create_task(processor.aforce_flush(5_000))
    while ticks < 5:  # the loop keeps running while the flush waits on the hung exporter
        await asyncio.sleep(0.005)
    assert not flush.done()
    exporter.gate.set()
    assert await flush is True
    await processor.ashutdown()
    task.cancel()
    assert len(exporter.items) == 3


# -- overload: priority and tenants --------------------------------------------------------------------


def test_under_overload_error_spans_and_quiet_tenants_are_kept() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()  # nothing leaves until we open the gate
    processor = ScheduledSpanProcessor(
        exporter,
        max_queue_size=300,
        max_export_batch_size=50,
        tenant_key="tenant.id",
        schedule_delay_millis=10,
    )
    _, tracer = _tracer(processor)
    # 600 items offered for 300 places: 2x overload. The noisy tenant sends 70%, ten quiet tenants 3%
    # each (18 items) -- under their fair share of the normal class ((300 - 30 errors) / 11 tenants).
    for i in range(600):
        tenant = "noisy" if i % 100 < 70 else f"quiet{i % 10}"
        with tracer.start_as_current_span(f"op{i}", attributes={"tenant.id": tenant}) as span:
            if i % 20 == 0:
                span.set_status(Status(StatusCode.ERROR))
    exporter.gate.set()
    assert processor.force_flush(10_000)
    stats = processor.stats()
    exported = exporter.items
    errors = [s for s in exported if s.status.status_code is StatusCode.ERROR]
    assert len(errors) == 30  # every ERROR span kept
    by_tenant = stats["by_tenant"]
    for quiet in (f"quiet{k}" for k in range(10)):
        assert by_tenant[quiet]["dropped"] == 0, by_tenant
    assert by_tenant["noisy"]["dropped"] == stats["dropped_total"] > 0
    assert stats["received"] == stats["exported"] + stats["dropped_total"] == 600
    processor.shutdown()


def test_overload_drops_are_counted_never_silent() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(exporter, max_queue_size=20, max_export_batch_size=10)
    _, tracer = _tracer(processor)
    _spans(tracer, 500)
    exporter.gate.set()
    assert processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["received"] == 500
    assert stats["exported"] + stats["dropped_total"] == 500
    assert set(stats["dropped"]) <= {"queue_full", "shed_fair_share", "shed_trace", "intake_full"}
    processor.shutdown()


def test_items_offered_while_every_lane_is_busy_are_still_classified_promptly() -> None:
    # One lane (a custom exporter), stuck on its first batch: nothing more can be dispatched, and
    # a few items arrive -- fewer than any chunk that wakes the scheduler.  They must still be
    # classified (admitted, counted, held to the memory levels) within a bounded time, not only
    # when the stuck export times out (30 s).
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=1, schedule_delay_millis=5)
    _, tracer = _tracer(processor)
    _spans(tracer, 1)
    assert wait_until(lambda: processor.stats()["concurrency"]["in_flight"] == 1)
    _spans(tracer, 5, prefix="late")
    assert wait_until(lambda: (processor.stats()["intake"], processor.stats()["queued"]) == (0, 5), timeout=5)
    exporter.gate.set()
    assert processor.force_flush(5_000)
    assert len(exporter.items) == 6
    processor.shutdown()


def test_huge_items_beyond_the_byte_bound_are_dropped_with_a_reason() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, max_queue_bytes=4096)
    _, tracer = _tracer(processor)
    with tracer.start_as_current_span("huge", attributes={"blob": "x" * 100_000}):
        pass
    _spans(tracer, 2)
    assert processor.force_flush(5_000)
    assert processor.stats()["dropped"] == {"item_too_large": 1}
    assert [s.name for s in exporter.items] == ["op0", "op1"]
    processor.shutdown()


# -- recursion, GC, fork, exit -------------------------------------------------------------------------


def test_an_exporter_logging_through_the_otel_handler_does_not_loop() -> None:
    provider = LoggerProvider(resource=RESOURCE)
    calls = 0

    class LoudExporter(RecordingExporter):
        def export(self, batch: Any) -> Any:
            nonlocal calls
            calls += 1
            logging.getLogger("test.loud.exporter").error("export failed for %d records", len(batch))
            return LogRecordExportResult.FAILURE

    processor = ScheduledLogRecordProcessor(LoudExporter(), schedule_delay_millis=10)
    provider.add_log_record_processor(processor)
    handler = LoggingHandler(logger_provider=provider)
    loud = logging.getLogger("test.loud.exporter")
    app = logging.getLogger("test.loud.app")
    for lg in (loud, app):
        lg.addHandler(handler)
        lg.propagate = False
    try:
        app.error("first")
        assert wait_until(lambda: processor.stats()["dropped"].get("recursion", 0) >= 1)
        settled = calls
        processor.force_flush(2_000)
        # The feedback stops after max_recursion_depth: a bounded number of exports, not a loop.
        assert calls <= settled + 1 and calls <= 3
    finally:
        for lg in (loud, app):
            lg.removeHandler(handler)
        processor.shutdown()


def test_the_processor_can_be_garbage_collected_and_its_threads_end() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)  # atexit would keep it alive
    provider.add_span_processor(processor)
    _spans(provider.get_tracer("gc"), 3)
    pipeline = processor._pipeline
    threads = [pipeline._thread, *[lane._thread for lane in pipeline.pool.lanes if lane._thread is not None]]
    del pipeline
    ref = weakref.ref(processor)
    del processor, provider
    gc.collect()
    assert ref() is None
    assert wait_until(lambda: not any(t.is_alive() for t in threads))
    assert len(exporter.items) == 3  # queued items were flushed on the way out
    assert exporter.shutdown_calls == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork_the_child_exports_its_own_items_and_the_parent_is_unaffected(
    receiver: OTLPReceiver,
) -> None:
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url), schedule_delay_millis=60_000
    )
    provider, tracer = _tracer(processor)
    _spans(tracer, 3, prefix="parent-before")
    pid = os.fork()
    if pid == 0:  # child: only its own spans, exported by its own fresh pipeline
        code = 1
        try:
            _spans(tracer, 2, prefix="child")
            code = 0 if processor.force_flush(10_000) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _spans(tracer, 1, prefix="parent-after")
    assert processor.force_flush(10_000)
    names = sorted(s.name for s in receiver.spans())
    assert names == [
        "child0",
        "child1",
        "parent-after0",
        "parent-before0",
        "parent-before1",
        "parent-before2",
    ]
    provider.shutdown()


def test_buffered_spans_are_flushed_at_interpreter_exit(receiver: OTLPReceiver) -> None:
    script = textwrap.dedent(
        f"""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from otel_sched import ScheduledSpanProcessor
        provider = TracerProvider(shutdown_on_exit=False)  # only our own exit hook can save them
        provider.add_span_processor(ScheduledSpanProcessor(
            OTLPSpanExporter(endpoint={receiver.traces_url!r}), schedule_delay_millis=600000))
        tracer = provider.get_tracer("exit")
        for i in range(25):
            with tracer.start_as_current_span(f"exit{{i}}"):
                pass
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert receiver.wait_for_spans(25, timeout=10)

"""The process-wide level: one memory budget and one export budget for every pipeline, weights, CPU."""

from __future__ import annotations

import logging
import threading
import tracemalloc
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched._config import resolve_config
from otel_sched.demo._receiver import OTLPReceiver
from otel_sched.process import _coordinator as coordinator_module
from otel_sched.process._coordinator import CPU_EVERY, TICK, Coordinator, Member
from otel_sched.process._governors import CpuAdvice, MemoryLevel, shape_batches
from otel_sched.process._probe import ResourceSample
from otel_sched.scheduling._task import Signal

from ._exporters import RecordingExporter, wait_until

KIB = 1024


class _FakeProbe:
    def __init__(self, sample: ResourceSample | None) -> None:
        self.sample = sample
        self.enabled = True
        self.disabled_reason = None
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float | None = None) -> None:
        self.started = False

    def latest(self) -> ResourceSample | None:
        return self.sample


def _sample(**kw: Any) -> ResourceSample:
    base: dict[str, Any] = {
        "rss": 100 * 1024 * 1024,
        "container_limit": None,
        "container_usage": None,
        "process_cpu": 0.1,
        "system_cpu": 0.1,
        "cpu_count": 2,
        "at": 0.0,
    }
    base.update(kw)
    return ResourceSample(**base)


class _Owner:
    pass


def _member(name: str, weight: float = 1.0, budget_mib: float = 10.0, explicit: bool = True) -> Member:
    return Member(name, weight, budget_mib, explicit, 0.25, True, lambda: [threading.current_thread()])


# -- the coordinator as an object with explicit time --------------------------------------------------


def test_a_pipeline_within_its_share_is_held_one_level_gentler_than_the_total() -> None:
    c = Coordinator(probe_factory=lambda: _FakeProbe(None))  # type: ignore[arg-type, return-value]
    spans, logs = _Owner(), _Owner()
    c.join(spans, _member("traces"))
    c.join(logs, _member("logs"))
    mib = 1024 * 1024
    # a log flood holds 9.6 MiB of the 10 MiB budget; spans hold 0.1 MiB
    c.refresh(logs, int(9.6 * mib), True, now=1.0)
    member = c.refresh(spans, int(0.1 * mib), True, now=2.0)
    assert c.level is MemoryLevel.HARD
    assert member is not None and member.level is MemoryLevel.SOFT
    logs_member = c.refresh(logs, int(9.6 * mib), True, now=3.0)
    assert logs_member is not None and logs_member.level is MemoryLevel.HARD


@pytest.mark.parametrize(
    ("span_collectors", "log_collectors", "span_jobs", "log_jobs", "expected"),
    [
        # One collector: its time follows the requests outstanding at it, so the caps hold the
        # weights (4:1) for the requests in flight: logs keep one while spans have four ...
        ({"c:4318"}, {"c:4318"}, 4, 1, (5, 1)),
        # ... and get a second once spans have eight (8:1 is over the weights: spans may add none).
        ({"c:4318"}, {"c:4318"}, 8, 1, (8, 2)),
        # Different collectors: only the lanes are shared (12:4 of 16 at 4:1).
        ({"a:4318"}, {"b:4318"}, 4, 1, (13, 3)),
        # An exporter whose destination is unknown: lanes only.
        (None, {"c:4318"}, 4, 1, (13, 3)),
    ],
)
def test_pipelines_sharing_a_collector_share_its_requests_in_flight_by_weight(
    span_collectors: set[str] | None,
    log_collectors: set[str] | None,
    span_jobs: int,
    log_jobs: int,
    expected: tuple[int, int],
) -> None:
    c = Coordinator(probe_factory=lambda: _FakeProbe(None))  # type: ignore[arg-type, return-value]
    spans, logs = _Owner(), _Owner()
    for owner, name, weight, collectors in (
        (spans, "traces", 4.0, span_collectors),
        (logs, "logs", 1.0, log_collectors),
    ):
        member = _member(name, weight)
        member.collectors = None if collectors is None else frozenset(collectors)
        c.join(owner, member)
    c.refresh(spans, 0, True, now=1.0, jobs=span_jobs)
    c.refresh(logs, 0, True, now=1.0, jobs=log_jobs)
    assert (c.lane_cap(spans, 16), c.lane_cap(logs, 16)) == expected
    c.refresh(spans, 0, False, now=2.0, jobs=0)  # spans idle: logs may use every lane (work conserving)
    assert c.lane_cap(logs, 16) == 16


def test_memory_rising_past_a_level_is_decided_at_once_not_at_the_next_tick() -> None:
    c = Coordinator(probe_factory=lambda: _FakeProbe(None))  # type: ignore[arg-type, return-value]
    owner = _Owner()
    c.join(owner, _member("traces", explicit=True))  # 10 MiB: SOFT from 8, HARD from 9.5
    mib = 1024 * 1024
    assert c.refresh(owner, 1 * mib, True, now=1.0).level is MemoryLevel.NORMAL  # type: ignore[union-attr]
    # 10 ms later (well inside one TICK) the pipeline holds 8.5 MiB, then 9.8 MiB.
    assert c.refresh(owner, int(8.5 * mib), True, now=1.01).level is MemoryLevel.SOFT  # type: ignore[union-attr]
    assert c.refresh(owner, int(9.8 * mib), True, now=1.02).level is MemoryLevel.HARD  # type: ignore[union-attr]
    # Falling is not urgent: it waits for the TICK (and the hysteresis).
    assert c.refresh(owner, 1 * mib, True, now=1.03).level is MemoryLevel.HARD  # type: ignore[union-attr]
    assert c.refresh(owner, 1 * mib, True, now=1.03 + TICK).level is MemoryLevel.NORMAL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [((1.0, 1.0), (8, 8)), ((3.0, 1.0), (12, 4))],
)
def test_export_lanes_are_shared_by_weight_while_both_are_backlogged(
    weights: tuple[float, float], expected: tuple[int, int]
) -> None:
    c = Coordinator(probe_factory=lambda: _FakeProbe(None))  # type: ignore[arg-type, return-value]
    spans, logs = _Owner(), _Owner()
    c.join(spans, _member("traces", weights[0]))
    c.join(logs, _member("logs", weights[1]))
    c.refresh(spans, 0, True, now=1.0)
    c.refresh(logs, 0, True, now=1.0)
    assert (c.lane_cap(spans, 16), c.lane_cap(logs, 16)) == expected
    c.refresh(logs, 0, False, now=2.0)  # logs idle: spans may use every lane (work conserving)
    assert c.lane_cap(spans, 16) == 16


def test_cpu_saturation_with_a_greedy_pipeline_shrinks_the_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _FakeProbe(_sample(process_cpu=1.0, system_cpu=0.95))
    c = Coordinator(probe_factory=lambda: probe)  # type: ignore[arg-type, return-value]
    owner = _Owner()
    c.join(owner, _member("traces"))
    cpu = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])  # the pipeline's threads use 1 core
    monkeypatch.setattr(coordinator_module, "thread_cpu_seconds", lambda threads: next(cpu))
    for t in range(1, 6):
        c.refresh(owner, 0, True, now=t * 0.5)
    assert c.pipeline_cpu > 0.25
    assert c.lane_cap(owner, 16) < 16
    assert c.batch_factor > 1.0 and c.snapshot()["batch_factor"] == c.batch_factor  # fewer, larger requests
    probe.sample = _sample(process_cpu=0.3, system_cpu=0.2)  # idle capacity again: full speed
    c.refresh(owner, 0, True, now=10.0)
    c.refresh(owner, 0, True, now=10.5)
    assert c.lane_cap(owner, 16) == 16
    assert c.batch_factor == 1.0


def test_thread_clocks_are_read_once_per_cpu_interval_not_every_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _FakeProbe(_sample(process_cpu=1.0, system_cpu=0.95))
    c = Coordinator(probe_factory=lambda: probe)  # type: ignore[arg-type, return-value]
    owner = _Owner()
    c.join(owner, _member("traces"))
    reads: list[float] = []
    monkeypatch.setattr(coordinator_module, "thread_cpu_seconds", lambda threads: reads.append(0.0) or 0.0)
    steps = int(3 * CPU_EVERY / TICK)
    for i in range(steps):
        c.refresh(owner, 0, True, now=10.0 + i * TICK)  # a decision every TICK
    assert len(reads) == 3


@pytest.mark.parametrize(
    ("tuned", "factor", "expected"),
    [
        ((64, 0.05), 1.0, (64, 0.05)),  # not saturated: the tuner's shape
        ((64, 0.05), 4.0, (256, 0.2)),  # saturated: four times larger and longer
        ((200, 2.0), 4.0, (512, 5.0)),  # never past max_export_batch_size / schedule_delay
        ((1, 0.01), 0.5, (1, 0.005)),  # at least one item
    ],
)
def test_cpu_saturation_makes_batches_larger_within_their_bounds(
    tuned: tuple[int, float], factor: float, expected: tuple[int, float]
) -> None:
    items, delay = shape_batches(*tuned, factor, 512, 5.0)
    assert (items, round(delay, 9)) == expected


def test_the_pipeline_applies_the_cpu_batch_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test: the coordinator is process-wide.
    monkeypatch.setattr(coordinator_module.coordinator(), "batch_factor", 1.0)
    processor = ScheduledSpanProcessor(RecordingExporter(), max_export_batch_size=512)
    pipeline = processor._pipeline
    pipeline._tuned = (64, 0.05)  # as self-tuning could have left it (no export runs in this test)
    # The process-wide CPU governor says: saturated, over the cap.
    monkeypatch.setattr(
        coordinator_module.coordinator()._cpu, "advise", lambda share, sample: CpuAdvice(0.5, 4.0)
    )
    coordinator_module.coordinator()._last = -1e9  # decide at the next report
    processor.force_flush(1_000)  # a step of the scheduler: it reports and reads the decisions
    assert wait_until(lambda: processor.stats()["tuning"]["cpu_batch_factor"] == 4.0)
    assert processor.stats()["tuning"]["batch_items"] == 256
    assert processor.stats()["tuning"]["batch_delay_ms"] == pytest.approx(200.0)
    processor.shutdown()


def test_a_process_near_its_container_limit_gives_memory_back_first() -> None:
    limit = 1024 * 1024 * 1024
    probe = _FakeProbe(
        _sample(rss=int(0.92 * limit), container_limit=limit, container_usage=int(0.92 * limit))
    )
    c = Coordinator(probe_factory=lambda: probe)  # type: ignore[arg-type, return-value]
    owner = _Owner()
    c.join(owner, _member("traces", budget_mib=100.0))
    c.refresh(owner, 1024, True, now=1.0)
    assert c.level is not MemoryLevel.NORMAL  # the pipeline holds almost nothing, the container is full


# -- the processors under a memory budget ---------------------------------------------------------------


def _span(tracer: Any, name: str, error: bool = False, size: int = 2000) -> None:
    with tracer.start_as_current_span(name, attributes={"payload": "x" * size}) as span:
        if error:
            span.set_status(Status(StatusCode.ERROR))


def test_under_memory_pressure_normal_items_are_shed_and_errors_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()  # nothing leaves: memory only grows
    processor = ScheduledSpanProcessor(
        exporter,
        memory_limit_mib=0.5,
        max_export_batch_bytes=64 * KIB,
        max_export_batch_size=10,
        schedule_delay_millis=5,
        max_queue_size=4096,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("memory")
    with caplog.at_level(logging.WARNING, logger="otel_sched.runtime._pipeline"):
        for i in range(400):
            _span(tracer, f"n{i}", error=i % 10 == 0)
            if i % 50 == 0:
                wait_until(lambda: processor.stats()["intake"] == 0, timeout=2)
        shed = wait_until(lambda: processor.stats()["dropped"].get("memory_pressure", 0) > 0)
        assert shed, processor.stats()["dropped"]
        # Items still in the intake count as held until classified (and refused): read after that.
        assert wait_until(lambda: processor.stats()["intake"] == 0)
    stats = processor.stats()
    # Shedding gave the memory back, so the level may already be normal again.
    assert stats["resources"]["held_bytes"] < 0.95 * 512 * KIB
    assert stats["by_priority"]["high"]["dropped"] == 0
    assert "memory level" in caplog.text
    exporter.gate.set()
    processor.shutdown()


def test_a_log_flood_does_not_starve_spans_of_the_shared_budget() -> None:
    span_exporter, log_exporter = RecordingExporter(), RecordingExporter()
    log_exporter.gate = threading.Event()  # the logs collector is stuck: logs pile up
    spans = ScheduledSpanProcessor(
        span_exporter,
        memory_limit_mib=1,
        max_export_batch_bytes=64 * KIB,
        schedule_delay_millis=5,
        max_queue_size=8192,
    )
    logs = ScheduledLogRecordProcessor(
        log_exporter,
        memory_limit_mib=1,
        max_export_batch_bytes=64 * KIB,
        schedule_delay_millis=5,
        max_queue_size=8192,
    )
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(spans)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(logs)
    logger = logger_provider.get_logger("flood")
    for i in range(3000):
        logger.emit(body="y" * 1000, severity_number=SeverityNumber.INFO, attributes={"i": i})
        if i % 200 == 0:
            wait_until(lambda: logs.stats()["intake"] == 0, timeout=2)
    assert wait_until(lambda: logs.stats()["resources"]["memory_level"] != "normal")
    tracer = tracer_provider.get_tracer("app")
    for i in range(200):
        _span(tracer, f"s{i}", size=200)
        if i % 50 == 0:
            # Within their share means what the pipeline holds, intake included: 200 unclassified
            # SDK spans (~3.5 KiB each) are more than the 512 KiB share, and a scheduler starved
            # for a whole TICK would rightly see the traces pipeline over its share.
            wait_until(lambda: spans.stats()["intake"] == 0, timeout=2)
    assert spans.force_flush(10_000)
    assert len(span_exporter.items) == 200  # spans within their share keep flowing
    assert spans.stats()["dropped_total"] == 0
    # the logs pipeline sheds (by class, and with a byte-bounded intake) to stay in its share
    assert logs.stats()["dropped_total"] > 0
    log_exporter.gate.set()
    spans.shutdown()
    logs.shutdown()


def test_self_tuning_stays_within_the_configured_bounds() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=64, schedule_delay_millis=20)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tune")
    for i in range(3000):
        _span(tracer, f"t{i}", size=50)
    assert processor.force_flush(10_000)
    tuning = processor.stats()["tuning"]
    assert tuning["enabled"] is True
    assert 64 // 8 <= tuning["batch_items"] <= 64
    assert 2.0 <= tuning["batch_delay_ms"] <= 20.0
    processor.shutdown()


# -- bad input ------------------------------------------------------------------------------------------


def test_a_memory_limit_below_two_batches_is_refused_from_code() -> None:
    with pytest.raises(ValueError, match=r"memory_limit_mib=1 is below what two export batches need"):
        ScheduledSpanProcessor(RecordingExporter(), memory_limit_mib=1)  # 2 x 2 MiB batches


def test_a_negative_memory_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="memory_limit_mib=-5"):
        ScheduledSpanProcessor(RecordingExporter(), memory_limit_mib=-5)


def test_a_bad_memory_limit_from_env_warns_and_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB", "0.5")
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        config = resolve_config(Signal.TRACES)
    assert config.memory_limit_mib is None
    assert "memory_limit_mib=0.5 is below" in caplog.text


def test_signal_weights_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_SIGNAL_WEIGHTS", "traces=3,logs=1")
    assert resolve_config(Signal.LOGS).signal_weights == {"traces": 3.0, "logs": 1.0}


@pytest.mark.parametrize("fast_path", [False, True])
def test_held_bytes_cover_what_queued_items_really_take(receiver: OTLPReceiver, fast_path: bool) -> None:
    # The memory budget is about the process's memory: what the pipeline reports holding must not
    # be a fraction of what its queued items take (encoded bytes alone leave out the Task objects,
    # and raw SDK spans on the standard path).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=receiver.traces_url) if fast_path else RecordingExporter()
    processor = ScheduledSpanProcessor(
        exporter,
        schedule_delay_millis=600_000,  # nothing is due: every item stays queued
        max_export_batch_size=100_000,
        max_queue_size=100_000,
        otlp_fast_path=fast_path,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("memory")
    n = 2000

    def emit() -> None:
        for i in range(n):
            with tracer.start_as_current_span(f"op{i}", attributes={"payload": f"{i:08d}" * 25, "i": i}):
                pass

    emit()  # once through, so the encoder's (bounded) caches are as full as they will be
    assert processor.force_flush(10_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        emit()
        assert wait_until(lambda: processor.stats()["intake"] == 0 and processor.stats()["queued"] == n)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = processor.stats()["resources"]["held_bytes"]
    assert processor.stats()["otlp_fast_path"] is fast_path
    assert 0.8 * taken <= held <= 2.0 * taken, (held, taken)
    processor.shutdown()


def test_the_collectors_a_pipeline_sends_to_are_known_for_stock_exporters_and_endpoints() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from otel_sched.otlp._exporters import build_spec

    http_spans = OTLPSpanExporter(endpoint="http://Collector.local:4318/v1/traces")
    http_logs = OTLPLogExporter(endpoint="http://collector.local:4318/v1/logs")
    grpc = GrpcExporter(endpoint="collector.local:4317", insecure=True)
    # Spans and logs of one collector meet there, whatever their paths and the host's case.
    assert build_spec(http_spans, None, []).collectors() == frozenset({"collector.local:4318"})
    assert build_spec(http_logs, None, []).collectors() == frozenset({"collector.local:4318"})
    assert build_spec(grpc, None, []).collectors() == frozenset({"collector.local:4317"})
    endpoints = ["http://a:4318", "http://b:4318"]
    assert build_spec(http_spans, None, endpoints).collectors() == frozenset({"a:4318", "b:4318"})
    # Anything else may send anywhere.
    assert build_spec(RecordingExporter(), None, []).collectors() is None
    for exporter in (http_spans, http_logs, grpc):
        exporter.shutdown()

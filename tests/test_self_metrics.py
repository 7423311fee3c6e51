"""Self-monitoring: the SDK's processor metrics and ours, gated like the SDK's."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_sched import ScheduledSpanProcessor
from otel_sched.runtime._metrics import METRIC_TENANTS

from ._exporters import RecordingExporter


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _run(monkeypatch: pytest.MonkeyPatch, enabled: bool) -> dict[str, list[Any]]:
    if enabled:
        monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter,
        meter_provider=meters,
        max_queue_size=20,
        max_export_batch_size=10,
        tenant_key="tenant",
        schedule_delay_millis=10,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("m")
    for i in range(200):
        with tracer.start_as_current_span("op", attributes={"tenant": f"t{i % (METRIC_TENANTS + 20)}"}):
            pass
    exporter.gate.set()
    assert processor.force_flush(10_000)
    points = _points(reader)
    processor.shutdown()
    return points


def test_metrics_are_off_unless_the_sdk_switch_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", raising=False)
    assert _run(monkeypatch, enabled=False) == {}


def test_sdk_processor_metrics_and_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _run(monkeypatch, enabled=True)
    processed = points["otel.sdk.processor.span.processed"]
    ok = sum(p.value for p in processed if "error.type" not in p.attributes)
    dropped = sum(p.value for p in processed if "error.type" in p.attributes)
    assert ok + dropped == 200 and dropped > 0
    assert {p.attributes["otel.component.type"] for p in processed} == {"batching_span_processor"}
    assert points["otel.sdk.processor.span.queue.capacity"][0].value == 20
    assert "otel.sdk.processor.span.queue.size" in points
    ours = points["otel_sched.processor.dropped"]
    assert sum(p.value for p in ours) == dropped
    tenants = {p.attributes["otel_sched.tenant"] for p in ours}
    assert len(tenants) <= METRIC_TENANTS + 1  # bounded: the rest are reported as __other__
    assert "otel_sched.processor.export.duration" in points
    assert "otel_sched.processor.queue.wait" in points


def test_drops_on_the_application_thread_reach_the_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    processor = ScheduledSpanProcessor(
        RecordingExporter(), meter_provider=MeterProvider(metric_readers=[reader])
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    processor.shutdown()
    for _ in range(3):
        with provider.get_tracer("m").start_as_current_span("late"):
            pass
    processor._pipeline._report_app_drops()  # the scheduler has stopped: report as it would
    points = _points(reader)
    late = [
        p
        for p in points["otel.sdk.processor.span.processed"]
        if p.attributes.get("error.type") == "already_shutdown"
    ]
    assert sum(p.value for p in late) == 3

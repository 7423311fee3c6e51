"""The pre-encoded OTLP path: encode once on the scheduler thread, send assembled bytes."""

from __future__ import annotations

import os
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver
from otel_sched.otlp import _encoding

from ._exporters import RecordingExporter, wait_until

RESOURCE = Resource.create({"service.name": "fast", "host.name": "h1"}, schema_url="https://schema/1")


def _tracer(processor: Any) -> Any:
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def _emit(provider: Any, n: int, prefix: str = "op") -> None:
    tracer = provider.get_tracer("scope.a", "2.0")
    other = provider.get_tracer("scope.b")
    for i in range(n):
        t = tracer if i % 2 else other
        with t.start_as_current_span(f"{prefix}{i}", attributes={"i": i, "tags": ["x", "y"]}) as span:
            span.add_event("evt", {"k": True})
            if i % 7 == 0:
                span.set_status(Status(StatusCode.ERROR, "bad"))


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_stock_otlp_exporters_take_the_fast_path_and_spans_arrive_intact(
    receiver: OTLPReceiver, transport: str
) -> None:
    exporter = (
        HttpSpanExporter(endpoint=receiver.traces_url)
        if transport == "http"
        else GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    )
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=16)
    provider = _tracer(processor)
    _emit(provider, 100)
    assert processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["otlp_fast_path"] is True
    spans = receiver.spans()
    assert sorted(s.attributes["i"] for s in spans) == list(range(100))
    assert {s.scope_name for s in spans} == {"scope.a", "scope.b"}
    assert {s.resource["host.name"] for s in spans} == {"h1"}
    assert sum(1 for s in spans if s.status_code == 2) == 15
    assert all(s.attributes["tags"] == ["x", "y"] for s in spans)
    # the cost the scheduler used is the exact encoded size: requests only add envelopes
    assert 0.8 * receiver.bytes_received <= stats["exported_bytes"] <= receiver.bytes_received
    provider.shutdown()


@pytest.mark.parametrize("native", [True, False])
def test_spans_are_encoded_natively_unless_turned_off_and_arrive_the_same(
    receiver: OTLPReceiver, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _encoding.encode_span_native is None and os.environ.get("CI") != "true":
        pytest.skip("the compiled encoder was not built (no C compiler at install time)")
    monkeypatch.setenv("OTEL_PYTHON_SCHED_NATIVE_ENCODER", "true" if native else "false")
    processor = ScheduledSpanProcessor(HttpSpanExporter(endpoint=receiver.traces_url))
    provider = _tracer(processor)
    _emit(provider, 40)
    assert processor.force_flush(10_000)
    assert processor.stats()["encoder"] == ("native" if native else "python")
    spans = receiver.spans()
    assert sorted(s.attributes["i"] for s in spans) == list(range(40))
    assert all(s.attributes["tags"] == ["x", "y"] for s in spans)
    assert sum(1 for s in spans if s.status_code == 2) == 6
    provider.shutdown()


def test_log_records_take_the_fast_path(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_SCHED_NATIVE_ENCODER", raising=False)  # the default encoder
    provider = LoggerProvider(resource=RESOURCE)
    processor = ScheduledLogRecordProcessor(HttpLogExporter(endpoint=receiver.logs_url))
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("app")
    for i in range(20):
        logger.emit(body={"msg": f"m{i}", "n": i}, severity_number=SeverityNumber.WARN, attributes={"i": i})
    assert processor.force_flush(10_000)
    assert processor.stats()["otlp_fast_path"] is True
    assert processor.stats()["encoder"] == ("native" if _encoding.encode_log_native else "python")
    assert sorted(r.attributes["i"] for r in receiver.logs()) == list(range(20))
    provider.shutdown()


def test_the_fast_path_can_be_turned_off(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_OTLP_FAST_PATH", "false")
    processor = ScheduledSpanProcessor(HttpSpanExporter(endpoint=receiver.traces_url))
    provider = _tracer(processor)
    _emit(provider, 5)
    assert processor.force_flush(10_000)
    assert processor.stats()["otlp_fast_path"] is False and receiver.span_count == 5
    provider.shutdown()


def test_other_exporters_keep_their_own_export() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter)
    provider = _tracer(processor)
    _emit(provider, 3)
    assert processor.force_flush(5_000)
    assert processor.stats()["otlp_fast_path"] is False and len(exporter.items) == 3
    provider.shutdown()


def test_transient_failures_are_retried_honouring_retry_after(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=503, retry_after_s=1)
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url), max_export_batch_size=10
    )
    provider = _tracer(processor)
    _emit(provider, 30)
    assert wait_until(lambda: receiver.refused_request_count >= 1)
    receiver.set_faults(failure_rate=0.0)
    assert processor.force_flush(20_000)
    stats = processor.stats()
    assert receiver.span_count == 30 and stats["dropped_total"] == 0
    assert stats["retried_batches"] >= 1
    provider.shutdown()


def test_a_bad_request_is_not_retried_and_is_counted(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=400)
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url), max_export_batch_size=10
    )
    provider = _tracer(processor)
    _emit(provider, 10)
    processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["dropped"] == {"export_failed": 10}
    assert receiver.request_count == 1 and stats["retried_batches"] == 0
    provider.shutdown()


def test_an_item_larger_than_a_request_is_dropped_with_its_reason(receiver: OTLPReceiver) -> None:
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url), max_export_batch_bytes=4096
    )
    provider = _tracer(processor)
    with provider.get_tracer("t").start_as_current_span("huge", attributes={"blob": "x" * 10_000}):
        pass
    _emit(provider, 2)
    assert processor.force_flush(10_000)
    assert processor.stats()["dropped"] == {"item_too_large": 1}
    assert receiver.span_count == 2
    provider.shutdown()


def test_an_item_the_encoder_refuses_is_dropped_and_counted(receiver: OTLPReceiver) -> None:
    processor = ScheduledSpanProcessor(HttpSpanExporter(endpoint=receiver.traces_url))
    provider = _tracer(processor)
    with provider.get_tracer("t").start_as_current_span("bad \ud800 name"):
        pass
    _emit(provider, 2)
    assert processor.force_flush(10_000)
    assert processor.stats()["dropped"] == {"encode_error": 1}
    assert receiver.span_count == 2
    provider.shutdown()

"""Drop-in edges a user meets before any scheduling matters (issue 14).

Mock() exporters, exporters returning None or raising, a processor registered after ours that
changes log records, a scheduler step or a lane that fails, the SDK-named metrics read right
after on_end, and Setup's one deadline for traces and logs.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from typing import Any
from unittest import mock

import pytest
from opentelemetry import context as otel_context
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor, Setup

from ._exporters import RecordingExporter, wait_until


def _tracer(processor: Any) -> Any:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider.get_tracer("dropin")


def _spans(tracer: Any, n: int, prefix: str = "op") -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}{i}"):
            pass


@pytest.mark.parametrize("factory", [mock.Mock, mock.MagicMock, mock.AsyncMock])
def test_a_mock_exporter_gets_export_called(factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    exporter = factory()
    processor = ScheduledSpanProcessor(exporter)
    _spans(_tracer(processor), 5)
    assert processor.force_flush(10_000)
    assert sum(len(c.args[0]) for c in exporter.export.call_args_list) == 5
    stats = processor.stats()
    assert stats["exported"] == 5 and stats["dropped"] == {}
    processor.shutdown()
    assert exporter.shutdown.called
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_exporter_returning_none_delivers_and_says_so_once_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class ReturnsNothing:  # a class of its own: the note is once per exporter class
        def __init__(self) -> None:
            self.names: list[str] = []

        def export(self, batch: Any) -> None:
            self.names.extend(span.name for span in batch)

        def shutdown(self) -> None:
            pass

    exporter = ReturnsNothing()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=10)
    caplog.set_level(logging.DEBUG, logger="otel_sched")
    _spans(_tracer(processor), 40)
    assert processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["exported"] == 40 and stats["dropped"] == {} and stats["export_failures"] == 0
    assert stats["mode"] == "normal"
    assert len(exporter.names) == 40
    notes = [r for r in caplog.records if "ReturnsNothing returned None" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.DEBUG
    processor.shutdown()


def test_a_mock_exporter_that_raises_is_a_failure_and_the_pipeline_goes_on() -> None:
    exporter = mock.Mock()
    exporter.export.side_effect = [RuntimeError("collector exploded"), None]
    processor = ScheduledSpanProcessor(exporter)
    tracer = _tracer(processor)
    _spans(tracer, 3)
    processor.force_flush(10_000)
    _spans(tracer, 2, prefix="later")
    assert processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["dropped"] == {"export_error": 3} and stats["exported"] == 2
    processor.shutdown()


def test_an_exporter_raising_system_exit_does_not_end_the_lane() -> None:
    exporter = RecordingExporter()
    exporter.raise_exc = SystemExit(3)  # type: ignore[assignment]
    processor = ScheduledSpanProcessor(exporter)
    tracer = _tracer(processor)
    _spans(tracer, 2)
    processor.force_flush(10_000)
    exporter.raise_exc = None
    _spans(tracer, 2, prefix="later")
    assert processor.force_flush(10_000)
    assert [s.name for s in exporter.items] == ["later0", "later1"]
    assert processor.stats()["dropped"] == {"export_error": 2}
    processor.shutdown()


class _Rewriter(LogRecordProcessor):
    """Registered after ours: changes the record the way a redacting processor would."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        log_record.log_record.body = "changed"
        log_record.log_record.attributes = {"secret": "redacted"}
        log_record.log_record.severity_number = SeverityNumber.TRACE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _Payload:
    """A value in the Context; the Context must not be kept alive by a queued record."""


def test_what_is_exported_is_what_was_emitted_and_the_context_is_not_kept() -> None:
    exporter = RecordingExporter()
    processor = ScheduledLogRecordProcessor(exporter, schedule_delay_millis=30_000)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    provider.add_log_record_processor(_Rewriter())
    logger = provider.get_logger("dropin")

    payload = _Payload()
    payload_ref = weakref.ref(payload)
    ctx = otel_context.set_value("big", payload)
    logger.emit(
        LogRecord(
            body="original", attributes={"user": "alice"}, severity_number=SeverityNumber.WARN, context=ctx
        )
    )
    del payload, ctx
    gc.collect()
    assert payload_ref() is None  # queued, and the Context already gone

    assert processor.force_flush(10_000)
    [record] = exporter.items
    assert record.log_record.body == "original"
    assert dict(record.log_record.attributes) == {"user": "alice"}
    assert record.log_record.severity_number is SeverityNumber.WARN
    processor.shutdown()


def test_a_failing_scheduler_step_counts_its_items_and_the_pipeline_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=30_000)
    admission = processor._pipeline.admission
    real = admission.admit_runs
    failures = 0

    def admit_twice_broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures < 2:  # twice: the second failure's count must not repeat the first's
            failures += 1
            raise RuntimeError("a bug in a scheduler step")
        return real(*args, **kwargs)

    admission.admit_runs = admit_twice_broken  # type: ignore[method-assign]
    tracer = _tracer(processor)
    _spans(tracer, 5)
    assert wait_until(lambda: failures == 1)
    _spans(tracer, 5, prefix="again")
    assert wait_until(lambda: failures == 2)
    _spans(tracer, 5, prefix="later")
    assert processor.force_flush(10_000)
    stats = processor.stats()
    lost = stats["dropped"].get("internal_error", 0)
    assert 2 <= lost <= 10 and set(stats["dropped"]) == {"internal_error"}
    assert stats["exported"] + lost == 15
    assert [s.name for s in exporter.items][-5:] == [f"later{i}" for i in range(5)]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "internal_error" in errors[0].getMessage()
    processor.shutdown()


def test_queue_size_and_drops_are_current_right_after_on_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter, meter_provider=meters, max_queue_size=20, max_export_batch_size=5, policy="fifo"
    )
    tracer = _tracer(processor)
    _spans(tracer, 5)
    assert exporter.entered.wait(10)  # one batch of 5 with the exporter, which waits
    _spans(tracer, 30, prefix="more")  # 20 fit in the queue, 10 do not

    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: m.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert [p.value for p in points["otel.sdk.processor.span.queue.size"]] == [20]
    processed = {p.attributes.get("error.type"): p.value for p in points["otel.sdk.processor.span.processed"]}
    assert processed == {None: 5, "queue_full": 10}
    exporter.gate.set()
    processor.shutdown()
    meters.shutdown()


class _Provider:
    """Stands in for a tracer or logger provider: each call waits until the other one is running."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.timeouts: list[int] = []

    def _meet(self) -> bool:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return False
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.timeouts.append(timeout_millis)
        return self._meet()

    def shutdown(self) -> None:
        assert self._meet(), "shut down one after the other"


def _setup(barrier: threading.Barrier) -> tuple[Setup, _Provider, _Provider]:
    traces, logs = _Provider(barrier), _Provider(barrier)
    return Setup(traces, logs, None, None), traces, logs  # type: ignore[arg-type]


def test_setup_flushes_traces_and_logs_at_the_same_time_within_one_deadline() -> None:
    setup, traces, logs = _setup(threading.Barrier(2, timeout=10))
    assert setup.force_flush(timeout_millis=2000)
    assert traces.timeouts == [2000] and logs.timeouts == [2000]


async def test_setup_aforce_flush_and_shutdown_run_both_at_once() -> None:
    setup, _, _ = _setup(threading.Barrier(2, timeout=10))
    assert await setup.aforce_flush(timeout_millis=2000)
    setup.shutdown()


@pytest.mark.parametrize("hanging", ["traces", "logs"])
def test_setup_force_flush_is_false_when_one_side_misses_the_deadline(hanging: str) -> None:
    release = threading.Event()

    class Hangs:
        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return release.wait(30)  # ignores its timeout

    quick = _Provider(threading.Barrier(1))
    pair = (Hangs(), quick) if hanging == "traces" else (quick, Hangs())
    setup = Setup(*pair, None, None)  # type: ignore[arg-type]
    try:
        assert setup.force_flush(timeout_millis=50) is False
        assert quick.timeouts == [50]
    finally:
        release.set()

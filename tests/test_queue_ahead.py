"""Batches formed ahead of a busy lane (an instant exporter) are never lost uncounted."""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace import TracerProvider

from otel_sched import ScheduledSpanProcessor

from ._exporters import RecordingExporter, wait_until


class _Stuck(RecordingExporter):
    def shutdown(self) -> None:  # a call that hangs stays hung through shutdown
        self.shutdown_calls += 1


def test_batches_waiting_behind_a_hung_call_are_counted_at_shutdown() -> None:
    exporter = _Stuck()
    processor = ScheduledSpanProcessor(
        exporter,
        max_export_batch_size=10,
        schedule_delay_millis=60_000,
        export_timeout_millis=60_000,
        shutdown_timeout_millis=1000,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for _ in range(200):  # instant exports: batches may now be formed ahead of the lane
        with tracer.start_as_current_span("fast"):
            pass
    assert processor.force_flush(30_000)
    assert len(exporter.items) == 200
    exporter.gate = threading.Event()  # the next call hangs
    exporter.entered.clear()
    for _ in range(100):
        with tracer.start_as_current_span("stuck"):
            pass
    assert exporter.entered.wait(10)
    assert wait_until(lambda: processor.stats()["queued"] + processor.stats()["intake"] < 100)
    processor.shutdown()  # nothing can move: after shutdown_timeout_millis what is left is counted
    # Of the 100, the hung call holds 10; every other one is counted, wherever it waited.
    try:
        assert wait_until(lambda: processor.stats()["dropped"].get("shutdown_timeout", 0) >= 90, timeout=10)
    finally:
        exporter.gate.set()

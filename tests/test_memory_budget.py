"""The memory budget bounds what batches in flight hold, not only the queues.

Request bodies (and their compressed copies) are held by the lanes, outside every queue bound;
with a slow collector adaptive concurrency keeps adding lanes, so without a bound on the bytes
in flight the budget does not bound memory (benchmarks/bench_memory_budget.py has the RSS figure).
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledSpanProcessor

from ._exporters import RecordingExporter, wait_until


def test_batches_in_flight_are_bounded_by_the_memory_budget() -> None:
    gate = threading.Event()  # a collector that does not answer until the test says so
    made: list[RecordingExporter] = []

    def factory() -> RecordingExporter:
        exporter = RecordingExporter()
        if made:  # made[0] is the probe checked (and shut down, which opens its gate) at construction
            exporter.gate = gate
        made.append(exporter)
        return exporter

    first = RecordingExporter()
    first.gate = gate
    processor = ScheduledSpanProcessor(
        first,
        exporter_factory=factory,
        max_concurrent_exports=16,
        adaptive_concurrency=False,
        max_export_batch_size=10,
        schedule_delay_millis=10,
        memory_limit_mib=1,
        max_export_batch_bytes=256 * 1024,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("budget")
    n = 300
    for i in range(n):  # ERROR spans: high priority, accepted at every memory level
        with tracer.start_as_current_span(f"op{i}", attributes={"payload": f"{i:05d}" * 2000}) as span:
            span.set_status(Status(StatusCode.ERROR))

    def settled() -> bool:  # everything classified: admitted (queued or dispatched) or dropped
        s: dict[str, Any] = processor.stats()
        classified = s["queued"] + s["in_flight"] + s["dropped_total"] == n
        return s["intake"] == 0 and classified and s["in_flight"] > 0

    assert wait_until(settled)
    stats = processor.stats()
    # 10 spans of ~10 KB, held twice while sent: ~200 KB a batch; a third of 1 MiB lets one or two go.
    assert stats["concurrency"]["in_flight"] <= 3, stats["concurrency"]
    assert stats["queued"] > 0  # what waits is queued (bounded and shed by priority), not in flight
    gate.set()
    assert processor.force_flush(30_000)
    exported = sum(len(e.items) for e in [first, *made])
    assert exported + processor.stats()["dropped_total"] == n
    processor.shutdown()

"""The intake under a burst that starves the scheduler: ERROR items are not what overflows.

The scheduler thread is held inside its first item (as when a producer that never blocks
keeps the GIL), the application offers more than the intake holds, then the scheduler is
let go.  Every ERROR span / ERROR log must be exported while lower-priority items were
waiting, and every item is accounted for: exported or dropped with its reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor

from ._exporters import RecordingExporter

CAP = 2048  # the intake's capacity with default settings (max(max_queue_size, 2048))


class _Collect(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _spans(n: int, error: bool) -> list[Any]:
    tracer = TracerProvider().get_tracer("t")  # no processor: the spans are offered by hand
    out = []
    for i in range(n):
        with tracer.start_as_current_span("error" if error else "ok", attributes={"i": i}) as span:
            if error:
                span.set_status(Status(StatusCode.ERROR))
        out.append(span)
    return out


def _logs(n: int, error: bool) -> list[Any]:
    collect = _Collect()
    provider = LoggerProvider()
    provider.add_log_record_processor(collect)
    logger = provider.get_logger("t")
    for i in range(n):
        logger.emit(
            severity_number=SeverityNumber.ERROR if error else SeverityNumber.INFO,
            body="error" if error else "ok",
            attributes={"i": i},
        )
    return collect.records


def _is_error(item: Any) -> bool:
    if hasattr(item, "status"):
        return bool(item.status.status_code is StatusCode.ERROR)
    return bool(item.log_record.severity_number.value >= SeverityNumber.ERROR.value)


SIGNALS: dict[str, tuple[Callable[..., Any], Callable[[int, bool], list[Any]], Any]] = {
    "traces": (ScheduledSpanProcessor, _spans, None),
    "logs": (ScheduledLogRecordProcessor, _logs, LogRecordExportResult.SUCCESS),
}


def _held_scheduler(processor: Any) -> tuple[threading.Event, threading.Event]:
    """Make the scheduler block on the next item it classifies, until ``release`` is set."""
    pipeline = processor._pipeline
    classify = pipeline._classify_item
    entered, release = threading.Event(), threading.Event()

    def blocking(item: Any, now: float) -> Any:
        if not release.is_set():
            entered.set()
            release.wait(30)
        return classify(item, now)

    pipeline._classify_item = blocking
    return entered, release


@pytest.mark.parametrize("signal", list(SIGNALS))
def test_error_items_displace_lower_priority_ones_at_a_full_intake(signal: str) -> None:
    make_processor, make_items, result = SIGNALS[signal]
    exporter = RecordingExporter(result) if result is not None else RecordingExporter()
    processor = make_processor(exporter)
    offer = processor.on_end if signal == "traces" else processor.on_emit
    first, *normal = make_items(CAP + 1 + 500, False)
    errors = make_items(300, True)
    entered, release = _held_scheduler(processor)
    try:
        offer(first)
        assert entered.wait(10)  # the scheduler is inside the first item: nothing drains the intake
        for item in normal[:CAP]:
            offer(item)  # fills the intake
        for item in errors:
            offer(item)  # each takes the place of the newest waiting normal item
        for item in normal[CAP:]:
            offer(item)  # dropped: the intake is full
    finally:
        release.set()
    assert processor.force_flush(30_000)
    exported = exporter.items
    assert sum(map(_is_error, exported)) == 300
    stats = processor.stats()
    assert stats["dropped"].get("intake_full") == 300 + 500
    # Everything else is accounted for (the queue, max_queue_size = CAP, may shed a normal item).
    assert len(exported) + sum(stats["dropped"].values()) == 1 + CAP + 500 + 300
    assert len(exported) >= CAP - 300
    processor.shutdown()


@pytest.mark.parametrize("signal", list(SIGNALS))
def test_error_items_are_held_beyond_the_cap_when_the_intake_is_all_errors(signal: str) -> None:
    make_processor, make_items, result = SIGNALS[signal]
    exporter = RecordingExporter(result) if result is not None else RecordingExporter()
    processor = make_processor(exporter, max_queue_size=CAP)
    offer = processor.on_end if signal == "traces" else processor.on_emit
    (first,) = make_items(1, False)
    errors = make_items(CAP + 100, True)
    entered, release = _held_scheduler(processor)
    try:
        offer(first)
        assert entered.wait(10)
        for item in errors:
            offer(item)
    finally:
        release.set()
    assert processor.force_flush(30_000)
    assert processor.stats()["dropped"].get("intake_full", 0) == 0
    # Past the intake, the queue (max_queue_size) may still shed, counted; everything is accounted
    # for, and at least a queue's worth of the errors is exported.
    dropped = processor.stats()["dropped"]
    assert len(exporter.items) + sum(dropped.values()) == 1 + CAP + 100
    assert sum(map(_is_error, exporter.items)) >= CAP
    processor.shutdown()

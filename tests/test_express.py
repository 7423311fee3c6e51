"""Express batches: while nothing is scarce, full batches of spans go from the intake as they are.

The taker and the tasks of an undelivered batch are pure (no threads); the pipeline tests hold the
scheduler's step lock while spans are offered, so that a step finds full batches in the intake.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledSpanProcessor
from otel_sched.otlp._encoding import estimate_span_native
from otel_sched.scheduling._classify import Classifier, TenantRegistry, estimate_span_bytes
from otel_sched.scheduling._express import ExpressBatch, express_runs, express_taker, express_tasks
from otel_sched.scheduling._priority_rules import compile_rules
from otel_sched.scheduling._task import PriorityClass, Signal

from ._exporters import RecordingExporter, wait_until

HIGH, NORMAL = int(PriorityClass.HIGH), int(PriorityClass.NORMAL)


class _Capture(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _spans(n: int, errors: frozenset[int] = frozenset()) -> list[ReadableSpan]:
    capture = _Capture()
    provider = TracerProvider()
    provider.add_span_processor(capture)
    tracer = provider.get_tracer("express")
    for i in range(n):
        with tracer.start_as_current_span(f"op{i}", attributes={"i": i}) as span:
            if i in errors:
                span.set_status(Status(StatusCode.ERROR, "boom"))
    return capture.spans


_taker = express_taker(estimate_span_native, estimate_span_bytes)


def _take(intake: deque[Any], max_items: int, max_bytes: int) -> ExpressBatch:
    items: list[Any] = []
    batch = _taker(intake, max_items, max_bytes, items)
    assert batch.items is items
    return batch


# -- the taker ----------------------------------------------------------------------------------------------


def test_the_taker_takes_a_batch_in_arrival_order_and_counts_the_error_spans() -> None:
    spans = _spans(10, errors=frozenset({2, 7}))
    intake: deque[Any] = deque(spans)
    batch = _take(intake, 8, 1 << 20)
    assert batch.items == spans[:8]
    assert list(intake) == spans[8:]
    assert batch.nbytes == sum(estimate_span_bytes(s) for s in spans[:8])
    assert batch.high == 2
    assert batch.high_bytes == estimate_span_bytes(spans[2]) + estimate_span_bytes(spans[7])


def test_the_taker_counts_only_the_error_spans_it_takes() -> None:
    spans = _spans(6, errors=frozenset({0, 5}))
    batch = _take(deque(spans), 5, 1 << 20)
    assert (len(batch.items), batch.high) == (5, 1)
    assert batch.high_bytes == estimate_span_bytes(spans[0])


@pytest.mark.parametrize(
    "odd",
    [
        "a string",
        None,
        object(),
    ],
)
def test_the_taker_stops_before_an_item_it_does_not_know_and_puts_it_back(odd: Any) -> None:
    spans = _spans(4)
    intake: deque[Any] = deque([*spans[:2], odd, *spans[2:]])
    batch = _take(intake, 8, 1 << 20)
    assert batch.items == spans[:2]
    assert list(intake) == [odd, *spans[2:]]  # the classifier sees it next, in its place


def test_the_taker_leaves_a_span_it_cannot_read_to_the_classifier() -> None:
    spans = _spans(3)
    spans[1]._status = None  # type: ignore[assignment]  # reading its status code raises
    intake: deque[Any] = deque(spans)
    batch = _take(intake, 8, 1 << 20)
    assert batch.items == spans[:1]
    assert list(intake) == spans[1:]


def test_the_taker_keeps_a_batch_within_max_bytes_and_leaves_an_oversized_span() -> None:
    spans = _spans(5)
    one = estimate_span_bytes(spans[0])
    intake: deque[Any] = deque(spans)
    batch = _take(intake, 8, 2 * one + one // 2)
    assert len(batch.items) == 2 and batch.nbytes <= 2 * one + one // 2
    assert len(intake) == 3
    # A span larger than a whole batch is not taken at all: the batch former sends it on its own.
    assert _take(intake, 8, one // 2) == ExpressBatch([], 0, 0, 0)
    assert len(intake) == 3


def test_runs_report_the_classes_as_the_batch_former_does() -> None:
    assert express_runs(ExpressBatch([1, 2, 3], 300, 1, 120), "default") == [
        (HIGH, "default", 1, 120),
        (NORMAL, "default", 2, 180),
    ]
    assert express_runs(ExpressBatch([1, 2], 200, 0, 0), "default") == [(NORMAL, "default", 2, 200)]
    assert express_runs(ExpressBatch([1], 90, 1, 90), "default") == [(HIGH, "default", 1, 90)]


def _classifier() -> Classifier:
    return Classifier(
        Signal.TRACES,
        compile_rules(None, "traces").function(),
        None,
        TenantRegistry(16, lambda tenant: True),
        [60.0, 60.0, 60.0],
        native_estimate=estimate_span_native,
    )


def test_an_undelivered_batch_gets_the_tasks_classification_would_have_given_it() -> None:
    classifier = _classifier()
    spans = _spans(5, errors=frozenset({3}))
    batch = _take(deque(spans), 5, 1 << 20)
    first = classifier.reserve(5)
    assert classifier.last_seq == first + 4
    tasks = express_tasks(batch.items, express_runs(batch, "default"), classifier.classify, first, 7.0)
    assert [t.item for t in tasks] == spans
    assert [t.seq for t in tasks] == list(range(first, first + 5))
    assert [t.priority for t in tasks] == [NORMAL, NORMAL, NORMAL, HIGH, NORMAL]
    assert [t.cost for t in tasks] == [estimate_span_bytes(s) for s in spans]
    assert all(t.tenant == "default" for t in tasks)


def test_without_its_items_an_undelivered_batch_is_counted_from_its_runs() -> None:
    runs = [(HIGH, "default", 2, 200), (NORMAL, "default", 3, 330)]
    tasks = express_tasks(None, runs, _classifier().classify, 40, 1.0)
    assert [t.seq for t in tasks] == [40, 41, 42, 43, 44]
    assert [t.priority for t in tasks] == [HIGH, HIGH, NORMAL, NORMAL, NORMAL]
    assert [t.cost for t in tasks] == [100, 100, 110, 110, 110]
    assert all(t.item is None for t in tasks)


def test_reserving_numbers_moves_the_classifier_on() -> None:
    classifier = _classifier()
    task = classifier.classify(_spans(1)[0], 0.0)
    first = classifier.reserve(10)
    assert first == task.seq + 1
    assert classifier.classify(_spans(1)[0], 0.0).seq == first + 10


def test_only_the_default_rules_for_spans_are_the_status_rule_alone() -> None:
    assert compile_rules(None, "traces").status_rule_only
    assert not compile_rules("name == health -> low", "traces").status_rule_only
    assert not compile_rules(None, "traces", default=PriorityClass.LOW).status_rule_only
    assert not compile_rules(None, "logs").status_rule_only


# -- in a pipeline ------------------------------------------------------------------------------------------

_BATCH = 8


@contextlib.contextmanager
def _held_scheduler(processor: ScheduledSpanProcessor) -> Iterator[None]:
    """Hold the scheduler between steps: what is offered meanwhile is in the intake at its next step,
    which runs before this returns."""
    lock = processor._pipeline.loop.step_lock
    got = threading.Event()

    def hold() -> None:
        with lock:
            got.set()
            release.wait(30)

    release = threading.Event()
    holder = threading.Thread(target=hold)
    holder.start()
    assert got.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)
    # Its next step took the intake (a flush asked before it would take the usual path).
    assert wait_until(lambda: processor.stats()["intake"] == 0)


def _pipeline(exporter: Any, **options: Any) -> tuple[ScheduledSpanProcessor, Any]:
    processor = ScheduledSpanProcessor(
        exporter, max_export_batch_size=_BATCH, schedule_delay_millis=60_000, **options
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return processor, provider.get_tracer("express")


def _offer(tracer: Any, n: int, errors: int = 0) -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"op{i}") as span:
            if i < errors:
                span.set_status(Status(StatusCode.ERROR))


def _balanced(processor: ScheduledSpanProcessor) -> dict[str, Any]:
    stats = processor.stats()
    assert stats["balance"]["balanced"], stats["balance"]
    return stats


def test_full_batches_go_express_and_are_counted_as_classified_batches_are() -> None:
    exporter = RecordingExporter()
    processor, tracer = _pipeline(exporter)
    with _held_scheduler(processor):
        _offer(tracer, 3 * _BATCH + 3, errors=2)
    assert processor.force_flush(10_000)
    stats = _balanced(processor)
    assert stats["express_items"] >= _BATCH
    assert len(exporter.items) == 3 * _BATCH + 3 and stats["exported"] == 3 * _BATCH + 3
    assert stats["by_priority"]["high"]["exported"] == 2
    assert stats["by_priority"]["normal"]["exported"] == 3 * _BATCH + 1
    assert stats["by_tenant"]["default"]["exported"] == 3 * _BATCH + 3
    assert stats["dropped_total"] == 0
    # Delivered in arrival order, whichever path each batch took.
    assert [s.name for s in exporter.items] == [f"op{i}" for i in range(3 * _BATCH + 3)]
    processor.shutdown()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda e: setattr(e, "result", SpanExportResult.FAILURE), "export_failed"),
        (lambda e: setattr(e, "raise_exc", RuntimeError("exporter down")), "export_error"),
    ],
)
def test_an_express_batch_not_delivered_is_dropped_with_its_reason_and_classes(
    setup: Any, reason: str
) -> None:
    exporter = RecordingExporter()
    setup(exporter)
    processor, tracer = _pipeline(exporter)
    with _held_scheduler(processor):
        _offer(tracer, _BATCH, errors=3)
    assert processor.force_flush(10_000)
    stats = _balanced(processor)
    assert stats["express_items"] == _BATCH
    assert stats["dropped"] == {reason: _BATCH}
    assert stats["by_priority"]["high"]["dropped"] == 3
    assert stats["by_priority"]["normal"]["dropped"] == _BATCH - 3
    processor.shutdown()


def test_an_express_batch_past_the_export_timeout_is_counted_as_timed_out() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor, tracer = _pipeline(exporter, export_timeout_millis=100)
    try:
        with _held_scheduler(processor):
            _offer(tracer, _BATCH, errors=1)
        assert exporter.entered.wait(10)
        assert wait_until(lambda: processor.stats()["dropped"].get("export_timeout", 0) == _BATCH)
        stats = _balanced(processor)
        assert stats["express_items"] == _BATCH
        assert stats["by_priority"]["high"]["dropped"] == 1
    finally:
        exporter.gate.set()
    processor.shutdown()


@pytest.mark.parametrize(
    "options",
    [
        {"tenant_key": "tenant"},  # tenants are told apart item by item
        {"priority_rules": "name == op1 -> low"},  # rules beyond the status rule
        {"inherit_priority": True},  # spans may be held for their trace
    ],
)
def test_where_classification_tells_spans_apart_every_span_is_classified(options: dict[str, Any]) -> None:
    exporter = RecordingExporter()
    processor, tracer = _pipeline(exporter, **options)
    with _held_scheduler(processor):
        _offer(tracer, 3 * _BATCH)
    assert processor.force_flush(10_000)
    stats = _balanced(processor)
    assert stats["express_items"] == 0
    assert len(exporter.items) == 3 * _BATCH
    processor.shutdown()


def test_a_flush_waits_for_express_batches_still_in_flight() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor, tracer = _pipeline(exporter)
    with _held_scheduler(processor):
        _offer(tracer, _BATCH)
    assert exporter.entered.wait(10)
    done = threading.Event()
    result: list[tuple[bool, int]] = []

    def flush() -> None:
        # What the exporter had received when the flush returned: an exporter records before it returns.
        result.append((processor.force_flush(10_000), len(exporter.items)))
        done.set()

    flusher = threading.Thread(target=flush)
    flusher.start()
    exporter.gate.set()
    assert done.wait(10) and result == [(True, _BATCH)]
    flusher.join(10)
    assert processor.stats()["express_items"] == _BATCH
    processor.shutdown()


class _AsyncExporter:
    """An async exporter: ``fail`` makes every call return FAILURE."""

    def __init__(self, fail: bool = False) -> None:
        self.items: list[Any] = []
        self.fail = fail

    async def export(self, batch: Any) -> SpanExportResult:
        if self.fail:
            return SpanExportResult.FAILURE
        self.items.extend(batch)
        return SpanExportResult.SUCCESS

    async def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_express_batches_go_through_async_exporters_too(fail: bool) -> None:
    exporter = _AsyncExporter(fail)
    processor, tracer = _pipeline(exporter)
    with _held_scheduler(processor):
        _offer(tracer, 2 * _BATCH, errors=1)
    assert processor.force_flush(10_000)
    stats = _balanced(processor)
    assert stats["express_items"] >= _BATCH
    if fail:
        assert stats["dropped"] == {"export_failed": 2 * _BATCH}
        assert stats["by_priority"]["high"]["dropped"] == 1
    else:
        assert [s.name for s in exporter.items] == [f"op{i}" for i in range(2 * _BATCH)]
        assert stats["by_priority"]["high"]["exported"] == 1
    processor.shutdown()


def test_a_step_that_fails_while_sending_express_counts_the_batch_and_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = RecordingExporter()
    processor, tracer = _pipeline(exporter)
    dispatcher = processor._pipeline.dispatcher
    real = dispatcher.express
    failed = threading.Event()

    def broken(*args: Any) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("injected fault")
        real(*args)

    dispatcher.express = broken  # type: ignore[method-assign]
    with _held_scheduler(processor):
        _offer(tracer, _BATCH)
    assert failed.is_set()
    assert wait_until(lambda: processor.stats()["dropped"].get("internal_error", 0) == _BATCH)
    _offer(tracer, 3)  # the pipeline carries on
    assert processor.force_flush(10_000)
    stats = _balanced(processor)
    assert stats["exported"] == 3 and len(exporter.items) == 3
    assert "scheduler step failed" in caplog.text
    processor.shutdown()

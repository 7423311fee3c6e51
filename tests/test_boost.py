"""Dynamic priority: marking a trace important while it runs."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_sched import PriorityClass, ScheduledSpanProcessor, mark_trace_important, unmark_trace
from otel_sched.scheduling._boost import _MARKED, MAX_MARKED_TRACES, marked_priority

from ._exporters import RecordingExporter


def test_spans_ending_after_the_mark_are_high_priority() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request") as root:
        with tracer.start_as_current_span("before"):
            pass
        assert mark_trace_important() == root.get_span_context().trace_id
        with tracer.start_as_current_span("after"):
            pass
    assert processor.force_flush(5_000)
    stats = processor.stats()["by_priority"]
    # "after" and the root ended after the mark; "before" too if it was still waiting to be classified
    assert stats["high"]["exported"] >= 2
    assert stats["high"]["exported"] + stats["normal"]["exported"] == 3
    unmark_trace(root.get_span_context().trace_id)
    processor.shutdown()


def test_marking_without_a_current_trace_does_nothing() -> None:
    assert mark_trace_important() is None


@pytest.mark.parametrize("bad", [0, -1, 1 << 128, "abc", True])
def test_invalid_trace_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not a valid trace id"):
        mark_trace_important(bad)  # type: ignore[arg-type]


def test_an_explicit_class_and_an_unknown_one() -> None:
    mark_trace_important(12345, "low")
    assert marked_priority(12345) == PriorityClass.LOW
    unmark_trace(12345)
    with pytest.raises(ValueError, match="urgent"):
        mark_trace_important(12345, "urgent")


def test_the_registry_is_bounded() -> None:
    for i in range(1, MAX_MARKED_TRACES + 100):
        mark_trace_important(i)
    assert len(_MARKED) == MAX_MARKED_TRACES
    assert marked_priority(1) is None
    _MARKED.clear()

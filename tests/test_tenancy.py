"""Tenants from baggage and inherited within a trace; priority inherited within a trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched._config import resolve_config
from otel_sched.scheduling._classify import DEFAULT_TENANT, Classifier, TenantRegistry
from otel_sched.scheduling._priority_rules import compile_rules
from otel_sched.scheduling._task import PriorityClass, Signal
from otel_sched.scheduling._tenancy import (
    Holder,
    Released,
    TenantResolver,
    capture_origin,
    parse_tenant_sources,
)

from ._exporters import RecordingExporter


class _Capture(SpanProcessor):
    """What ScheduledSpanProcessor.on_start does, without the pipeline: spans collected as they end."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: context.Context | None = None) -> None:
        capture_origin(span, context.get_current() if parent_context is None else parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def _tracer(resource: dict[str, Any] | None = None) -> tuple[trace.Tracer, _Capture]:
    capture = _Capture()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(capture)
    return provider.get_tracer("test"), capture


def _classifier(tenant_key: str | None, inherit_priority: bool = False) -> Classifier:
    return Classifier(
        Signal.TRACES,
        compile_rules(None, "traces").function(),
        tenant_key,
        TenantRegistry(1000, lambda t: True),
        [30.0, 10.0, 2.0],
        inherit_priority,
    )


def _tenants(c: Classifier, spans: list[ReadableSpan]) -> dict[str, str]:
    return {str(s.name): c.classify(s, 0.0).tenant for s in spans}


# -- parsing -----------------------------------------------------------------------------------------


def test_sources_parse_in_order() -> None:
    assert parse_tenant_sources(" tenant.id , baggage:tenant.id,Baggage: org ") == (
        (False, "tenant.id"),
        (True, "tenant.id"),
        (True, "org"),
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("tenant.id,,baggage:x", "an entry is empty"),
        ("baggage:", "names no baggage key"),
        ("tenant.id, tenant.id", "listed twice"),
    ],
)
def test_bad_tenant_key_names_the_value_and_what_was_expected(value: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        ScheduledSpanProcessor(RecordingExporter(), tenant_key=value)
    assert f"tenant_key={value!r}" in str(info.value)
    assert "baggage:<key>" in str(info.value) and fragment in str(info.value)


def test_bad_tenant_key_from_env_warns_and_uses_one_tenant(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_TENANT_KEY", "baggage:")
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        config = resolve_config(Signal.TRACES)
    assert config.tenant_key is None
    assert "OTEL_PYTHON_SCHED_TENANT_KEY" in caplog.text and "'baggage:'" in caplog.text


@pytest.mark.parametrize(("kwargs", "env"), [({"inherit_priority": "sometimes"}, None), ({}, "sometimes")])
def test_bad_inherit_priority(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, Any],
    env: str | None,
) -> None:
    if env is None:
        with pytest.raises(ValueError, match=r"inherit_priority='sometimes'.*true or false"):
            ScheduledSpanProcessor(RecordingExporter(), **kwargs)
        return
    monkeypatch.setenv("OTEL_PYTHON_SCHED_INHERIT_PRIORITY", env)
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        assert resolve_config(Signal.TRACES).inherit_priority is False
    assert "OTEL_PYTHON_SCHED_INHERIT_PRIORITY" in caplog.text and "'sometimes'" in caplog.text


# -- resolution (scheduler side, no threads) ---------------------------------------------------------


def test_baggage_source_and_the_order_of_sources() -> None:
    tracer, capture = _tracer()
    token = context.attach(baggage.set_baggage("tenant.id", "from-baggage"))
    try:
        tracer.start_span("bag").end()
        tracer.start_span("both", attributes={"tenant.id": "from-attribute"}).end()
    finally:
        context.detach(token)
    tracer.start_span("none").end()
    first_attr = _tenants(_classifier("tenant.id, baggage:tenant.id"), capture.ended)
    assert first_attr == {"bag": "from-baggage", "both": "from-attribute", "none": DEFAULT_TENANT}
    first_bag = _tenants(_classifier("baggage:tenant.id,tenant.id"), capture.ended)
    assert first_bag["both"] == "from-baggage"


def test_a_span_without_a_tenant_inherits_its_nearest_ancestors() -> None:
    tracer, capture = _tracer()
    with tracer.start_as_current_span("root", attributes={"tenant.id": "acme"}):
        with (
            tracer.start_as_current_span("mid", attributes={"tenant.id": "globex"}),
            tracer.start_as_current_span("leaf"),
        ):
            pass
        with tracer.start_as_current_span("sibling"):
            pass
    c = _classifier("tenant.id")
    expected = {"leaf": "globex", "mid": "globex", "sibling": "acme", "root": "acme"}
    assert _tenants(c, capture.ended) == expected
    assert c.tenant_inherited == 2 and c.tenant_missing == 0


def test_a_remote_parent_is_not_inherited_from() -> None:
    tracer, capture = _tracer()
    remote = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    )
    tracer.start_span("child", context=trace.set_span_in_context(remote)).end()
    assert _tenants(_classifier("tenant.id"), capture.ended) == {"child": DEFAULT_TENANT}


def test_a_tenant_set_on_the_parent_after_the_child_ended_reaches_the_held_child() -> None:
    tracer, capture = _tracer()
    requeued: list[Any] = []
    c = _classifier("tenant.id")
    holder = Holder(c.resolver, requeued.append, cap=100, priority_of=None)
    with tracer.start_as_current_span("request") as request:
        with tracer.start_as_current_span("http receive"):
            pass
        (child,) = capture.ended
        assert holder.park(child, 0.0) and holder.count == 1  # its parent runs and has no tenant yet
        request.set_attribute("tenant.id", "acme")  # e.g. set by the handler, after the child ended
    root = capture.ended[-1]
    assert not holder.park(root, 1.0)  # the parent's arrival lets the child go...
    assert requeued == [child] and holder.count == 0
    assert not holder.park(child, 1.0)  # ...and, looked at again, it waits no more
    assert c.classify(child, 1.0).tenant == "acme"
    assert holder.timeouts == 0


def test_held_spans_are_bounded_in_number_and_time_whatever_the_number_of_traces() -> None:
    tracer, capture = _tracer()
    c = _classifier("tenant.id")
    requeued: list[Any] = []
    holder = Holder(c.resolver, requeued.append, cap=64, priority_of=None, hold_seconds=5.0)
    roots = []
    for i in range(2000):  # 2000 traces whose roots never end (leaked spans): the worst case
        root = tracer.start_span(f"root{i}")
        with trace.use_span(root, end_on_exit=False):
            tracer.start_span("child").end()
        roots.append(root)
        holder.park(capture.ended[-1], float(i) * 0.001)
        assert holder.count <= 64
    assert len(holder._groups) <= 64
    forced = [r for r in requeued if type(r) is Released]
    assert len(forced) == 2000 - 64 and holder.timeouts == len(forced)
    holder.expire(1.994 + 5.0)  # held at t=1.936..1.999: the first ones' time is up
    assert 0 < holder.count < 64
    holder.expire(2.0 + 5.0)
    assert holder.count == 0 and not holder._groups and holder.next_deadline() is None
    assert all(c.classify(r.item, 7.0).tenant == DEFAULT_TENANT for r in requeued[:10])


def test_held_groups_are_cleared_as_traces_end() -> None:
    tracer, capture = _tracer()
    c = _classifier("tenant.id")
    requeued: list[Any] = []
    holder = Holder(c.resolver, requeued.append, cap=10_000, priority_of=None)
    for i in range(500):
        with tracer.start_as_current_span(f"root{i}") as root:
            with tracer.start_as_current_span("child"):
                pass
            holder.park(capture.ended[-1], 0.0)
            root.set_attribute("tenant.id", f"t{i}")
        holder.park(capture.ended[-1], 0.0)
        assert holder.count == 0 and not holder._groups
    assert holder.timeouts == 0 and len(requeued) == 500


def test_inherit_priority_raises_siblings_that_ended_before_the_error() -> None:
    tracer, capture = _tracer()
    c = _classifier(None, inherit_priority=True)
    requeued: list[Any] = []
    rules = compile_rules(None, "traces").function()
    holder = Holder(c.resolver, requeued.append, cap=100, priority_of=rules)
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("ok-before"):
            pass
        assert holder.park(capture.ended[-1], 0.0)
        with tracer.start_as_current_span("failed") as failed:
            failed.set_status(Status(StatusCode.ERROR))
        assert holder.park(capture.ended[-1], 0.0)
    root = capture.ended[-1]
    assert not holder.park(root, 0.0)
    classes = {s.name: c.classify(s, 0.0).priority for s in [root, *requeued]}
    assert classes == dict.fromkeys(("root", "ok-before", "failed"), PriorityClass.HIGH)
    # Another trace, without an error, keeps its classes.
    with tracer.start_as_current_span("calm"):
        pass
    assert c.classify(capture.ended[-1], 0.0).priority == PriorityClass.NORMAL


def test_resolver_without_sources_finds_nothing() -> None:
    tracer, capture = _tracer({"tenant.id": "x"})
    tracer.start_span("s").end()
    assert TenantResolver(()).span_tenant(capture.ended[0]) is None


# -- through the processors --------------------------------------------------------------------------


def _by_tenant(processor: Any) -> dict[str, int]:
    return {t: row["exported"] for t, row in processor.stats()["by_tenant"].items() if row["exported"]}


def test_spans_processor_end_to_end_with_baggage_inheritance_and_a_late_tenant() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, tenant_key="tenant.id, baggage:tenant.id")
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    token = context.attach(baggage.set_baggage("tenant.id", "bag-tenant"))
    try:
        with tracer.start_as_current_span("edge"), tracer.start_as_current_span("db"):
            pass
    finally:
        context.detach(token)
    with tracer.start_as_current_span("late") as late:
        with tracer.start_as_current_span("early-child"):
            pass
        assert processor.force_flush(10_000) is not None
        late.set_attribute("tenant.id", "late-tenant")
    assert processor.force_flush(10_000)
    stats = processor.stats()
    processor.shutdown()
    # early-child was flushed before its parent got a tenant (a flush classifies what it can now).
    assert _by_tenant(processor) == {"bag-tenant": 2, "late-tenant": 1, DEFAULT_TENANT: 1}
    assert stats["received"] == stats["exported"] == 4


def test_spans_held_for_a_late_tenant_are_exported_with_it() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, tenant_key="tenant.id")
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        for _ in range(3):
            with tracer.start_as_current_span("child"):
                pass
        request.set_attribute("tenant.id", "acme")
    assert processor.force_flush(10_000)
    snap = processor.stats()
    processor.shutdown()
    assert _by_tenant(processor) == {"acme": 4}
    assert snap["tenants"]["held"] == 0 and snap["tenants"]["inherited"] == 3


def test_logs_take_the_tenant_of_their_baggage_or_their_span(otel_globals: None) -> None:
    exporter = RecordingExporter()
    processor = ScheduledLogRecordProcessor(exporter, tenant_key="baggage:tenant.id, tenant.id")
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(processor)
    log = logging.getLogger("test.tenancy.logs")
    log.propagate = False
    handler = LoggingHandler(logger_provider=logger_provider)
    log.addHandler(handler)
    tracer, _ = _tracer()
    try:
        token = context.attach(baggage.set_baggage("tenant.id", "bag"))
        try:
            log.warning("from baggage")
        finally:
            context.detach(token)
        with (
            tracer.start_as_current_span("request", attributes={"tenant.id": "span-tenant"}),
            tracer.start_as_current_span("inner"),
        ):
            log.warning("from the span's parent")
        log.warning("no tenant")
        assert processor.force_flush(10_000)
    finally:
        log.removeHandler(handler)
    processor.shutdown()
    assert _by_tenant(processor) == {"bag": 1, "span-tenant": 1, DEFAULT_TENANT: 1}
    # The queued copies do not keep the application's context alive.
    assert all(not item.log_record.context for item in exporter.items)


def test_inherit_priority_through_the_processor_exports_an_error_trace_as_high() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, inherit_priority=True)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span("cache lookup"):
            pass
        with tracer.start_as_current_span("payment") as payment:
            payment.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span("healthcheck"):
        pass
    assert processor.force_flush(10_000)
    snap = processor.stats()
    processor.shutdown()
    assert snap["by_priority"]["high"]["exported"] == 3
    assert snap["by_priority"]["normal"]["exported"] == 1


def test_a_hostile_span_is_counted_and_the_scheduler_lives_on(caplog: pytest.LogCaptureFixture) -> None:
    from unittest.mock import Mock

    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(
        exporter, tenant_key="tenant.id, baggage:tenant.id", inherit_priority=True
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    hostile = Mock()
    processor.on_start(hostile, None)
    with caplog.at_level(logging.ERROR, logger="otel_sched.runtime._pipeline"):
        processor.on_end(hostile)
        provider.get_tracer("test").start_span("fine").end()
        assert processor.force_flush(10_000)
    snap = processor.stats()
    processor.shutdown()
    assert snap["dropped"].get("malformed") == 1 and snap["exported"] == 1
    assert [s.name for s in exporter.items] == ["fine"]


def test_held_spans_stay_bounded_through_the_processor_whatever_the_number_of_traces() -> None:
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, tenant_key="tenant.id", max_queue_size=8192)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    cap = processor._pipeline.holder.cap  # type: ignore[union-attr]
    assert cap == 4096
    most_held = 0
    for i in range(3 * cap):  # each trace's root never ends (a leaked span): its child waits for it
        root = tracer.start_span(f"root{i}")
        with trace.use_span(root, end_on_exit=False):
            tracer.start_span("child").end()
        if i % 500 == 0:
            most_held = max(most_held, processor.stats()["tenants"]["held"])
    assert processor.force_flush(30_000)
    snap = processor.stats()
    processor.shutdown()
    assert most_held <= cap
    assert snap["tenants"]["held"] == 0 and snap["received"] == 3 * cap
    assert snap["tenants"]["held_released_unresolved"] == 3 * cap
    assert snap["tenants"]["missing_key"] == 3 * cap
    # Idle: every span exported, or dropped and counted (a flush may release more than fits at once).
    assert snap["received"] == snap["exported"] + snap["dropped_total"]
    assert snap["exported"] >= 2 * cap

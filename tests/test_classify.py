"""Classification: tenants (bounded), priority defaults, size estimates, on real SDK items."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_sched.scheduling._classify import (
    DEFAULT_TENANT,
    MAX_TENANT_LABEL,
    OVERFLOW_TENANT,
    Classifier,
    TenantRegistry,
    estimate_span_bytes,
)
from otel_sched.scheduling._priority_rules import compile_rules
from otel_sched.scheduling._task import PriorityClass, Signal


def _spans(resource: dict[str, Any] | None = None, **spans: dict[str, Any]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for name, attrs in spans.items():
        with tracer.start_as_current_span(name, attributes=attrs.get("attributes")) as span:
            if attrs.get("error"):
                span.set_status(Status(StatusCode.ERROR, "boom"))
    return list(exporter.get_finished_spans())


def _classifier(tenant_key: str | None = "tenant", cap: int = 1000) -> Classifier:
    registry = TenantRegistry(cap, lambda t: True)
    return Classifier(Signal.TRACES, compile_rules(None, "traces"), tenant_key, registry, [30.0, 10.0, 2.0])


def test_error_spans_are_high_and_others_normal() -> None:
    ok, bad = _spans(ok={}, bad={"error": True})
    c = _classifier()
    assert c.classify(ok, 0.0).priority == PriorityClass.NORMAL
    assert c.classify(bad, 0.0).priority == PriorityClass.HIGH


def test_deadline_is_enqueue_time_plus_the_class_max_age() -> None:
    ok, bad = _spans(ok={}, bad={"error": True})
    c = _classifier()
    assert c.classify(ok, 100.0).deadline == 110.0
    assert c.classify(bad, 100.0).deadline == 102.0


def test_tenant_from_item_attribute_first_then_resource() -> None:
    own, inherited = _spans({"tenant": "from-resource"}, own={"attributes": {"tenant": "acme"}}, inherited={})
    c = _classifier()
    assert c.classify(own, 0.0).tenant == "acme"
    assert c.classify(inherited, 0.0).tenant == "from-resource"


def test_missing_tenant_goes_to_the_default_tenant_and_is_counted() -> None:
    (span,) = _spans(plain={})
    c = _classifier()
    assert c.classify(span, 0.0).tenant == DEFAULT_TENANT
    assert c.tenant_missing == 1


def test_no_tenant_key_means_one_tenant_and_no_missing_count() -> None:
    (span,) = _spans(plain={"attributes": {"tenant": "acme"}})
    c = _classifier(tenant_key=None)
    assert c.classify(span, 0.0).tenant == DEFAULT_TENANT
    assert c.tenant_missing == 0


@pytest.mark.parametrize(
    ("raw", "label"),
    [(42, "42"), (True, "true"), (3.5, "3.5"), (("a", "b"), "a,b"), ("x" * 500, "x" * MAX_TENANT_LABEL)],
)
def test_non_string_and_long_tenant_values_get_bounded_string_labels(raw: object, label: str) -> None:
    assert TenantRegistry(10, lambda t: True).label(raw) == label


def test_a_million_distinct_tenants_keep_memory_bounded_and_overflow_is_counted() -> None:
    busy: set[str] = set()
    registry = TenantRegistry(1000, lambda t: t not in busy)
    for i in range(1000):
        busy.add(registry.label(f"t{i}"))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1000, 1_000_000):
        assert registry.label(f"t{i}") == OVERFLOW_TENANT
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(registry) == 1000
    assert registry.overflowed == 999_000
    assert grown < 1_000_000


def test_idle_tenants_are_retired_to_make_room() -> None:
    registry = TenantRegistry(2, lambda t: t in ("idle", "new"), idle_seconds=10.0)
    registry.label("idle")
    registry.label("busy")
    registry.now = 9.0
    assert registry.label("new") == OVERFLOW_TENANT  # nothing queued, but seen too recently: no churn
    registry.now = 10.0
    assert registry.label("new") == "new"
    assert registry.retired == 1
    registry.now = 100.0
    assert registry.label("another") == OVERFLOW_TENANT  # "busy" has work queued, "new" was seen later
    assert registry.overflowed == 2


def test_size_estimate_grows_with_content_and_stays_positive() -> None:
    small, large = _spans(small={}, large={"attributes": {f"k{i}": "v" * 100 for i in range(20)}})
    assert 0 < estimate_span_bytes(small) < estimate_span_bytes(large)
    assert estimate_span_bytes(large) > 20 * 100


def test_sequence_numbers_increase() -> None:
    spans = _spans(a={}, b={}, c={})
    c = _classifier()
    seqs = [c.classify(s, 0.0).seq for s in spans]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and c.last_seq == seqs[-1]

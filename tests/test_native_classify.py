"""The compiled classifier and size estimate: the same tasks as the Python classifier.

``_speedups.estimate_span`` returns ``estimate_span_bytes``'s integer or None (the Python estimate
decides); ``_speedups.span_classifier`` builds the Python closure's task for the default
configuration and hands everything it does not read to that closure.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import event, given
from opentelemetry.trace import Status, StatusCode

from otel_sched.otlp import _encoding
from otel_sched.scheduling._boost import mark_trace, unmark_trace
from otel_sched.scheduling._classify import DEFAULT_TENANT, Classifier, TenantRegistry, estimate_span_bytes
from otel_sched.scheduling._policies import deadline_for
from otel_sched.scheduling._priority_rules import compile_rules
from otel_sched.scheduling._task import PriorityClass, Signal, Task

from .test_encoding import SETTINGS, span, span_batches

pytestmark = pytest.mark.skipif(
    _encoding.span_classifier_native is None and os.environ.get("CI") != "true",
    reason="the compiled encoder was not built (no C compiler at install time)",
)

MAX_AGE = {PriorityClass.LOW: 60_000.0, PriorityClass.NORMAL: 30_000.0, PriorityClass.HIGH: 5_000.0}


def classifier(native: bool, rules: Any = None, tenant_key: str | None = None) -> Classifier:
    priority = compile_rules(rules, "traces")
    return Classifier(
        Signal.TRACES,
        priority.function(),
        tenant_key,
        TenantRegistry(10, lambda t: True),
        deadline_for(MAX_AGE),
        native_estimate=_encoding.estimate_span_native if native else None,
        native_classifier=_encoding.span_classifier_native if native and priority.status_rule_only else None,
    )


def fields(task: Task) -> dict[str, Any]:
    # Every slot: the compiled classifier fills them without running Task.__init__.
    return {name: getattr(task, name) for name in Task.__slots__}


@SETTINGS
@given(span_batches())
def test_the_compiled_estimate_is_the_python_one_where_it_answers(spans: list[Any]) -> None:
    assert _encoding.estimate_span_native is not None
    for item in spans:
        native = _encoding.estimate_span_native(item)
        event("estimated natively" if native is not None else "left to Python")
        assert native is None or native == estimate_span_bytes(item)


@SETTINGS
@given(span_batches())
def test_the_compiled_classifier_builds_the_python_classifiers_tasks(spans: list[Any]) -> None:
    native, python = classifier(True).classifier(), classifier(False).classifier()
    assert type(native) is not type(python)  # the compiled one is in use
    for i, item in enumerate(spans):
        now = 100.0 + i / 7
        assert fields(native(item, now)) == fields(python(item, now))


def test_an_error_span_is_high_and_the_rest_normal() -> None:
    classify = classifier(True).classifier()
    assert classify(span(status=Status(StatusCode.ERROR, "boom")), 1.0).priority == PriorityClass.HIGH
    assert classify(span(status=Status(StatusCode.OK)), 1.0).priority == PriorityClass.NORMAL
    task = classify(span(), 1.0)
    assert (task.priority, task.tenant, task.deadline) == (PriorityClass.NORMAL, DEFAULT_TENANT, 31.0)


def test_a_marked_trace_raises_the_class_of_its_spans() -> None:
    trace_id = 0x0123456789ABCDEF0123456789ABCDEF
    classify = classifier(True).classifier()
    mark_trace(trace_id, int(PriorityClass.HIGH))
    try:
        assert classify(span(trace_id=trace_id), 1.0).priority == PriorityClass.HIGH
        assert classify(span(trace_id=trace_id + 1), 1.0).priority == PriorityClass.NORMAL
    finally:
        unmark_trace(trace_id)
    assert classify(span(trace_id=trace_id), 1.0).priority == PriorityClass.NORMAL


class _OtherSpan:
    """Not an SDK span: the compiled classifier must leave it to the Python closure."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_what_it_does_not_read_goes_to_the_python_classifier_on_the_same_sequence() -> None:
    owner = classifier(True)
    classify = owner.classifier()
    tasks = [
        classify(span(), 1.0),
        classify(_OtherSpan(span(status=Status(StatusCode.ERROR))), 1.0),
        classify(span(attributes={"k": {"nested": 1}}), 1.0),  # a mapping value: the Python estimate
        classify(span(), 1.0),
    ]
    assert [t.seq for t in tasks] == [1, 2, 3, 4] and owner.last_seq == 4
    assert tasks[1].priority == PriorityClass.HIGH
    assert tasks[2].cost == estimate_span_bytes(tasks[2].item)


@pytest.mark.parametrize(
    ("rules", "tenant_key"),
    [("name == health -> low", None), (None, "tenant.id")],
    ids=["rules", "tenant_key"],
)
def test_other_configurations_keep_the_python_classifier(rules: Any, tenant_key: str | None) -> None:
    native, python = classifier(True, rules, tenant_key).classifier(), classifier(False).classifier()
    assert type(native) is type(python)


def test_a_task_class_of_another_shape_is_called_instead() -> None:
    def task(*args: Any) -> Any:  # not a slotted class: called with the eight fields
        return args

    def fallback(item: Any, now: float) -> Any:
        raise AssertionError("an SDK span is classified natively")

    assert _encoding.span_classifier_native is not None
    classify = _encoding.span_classifier_native(
        task, deadline_for(MAX_AGE), {}, iter([7]), DEFAULT_TENANT, StatusCode.ERROR, 2, 1, fallback
    )
    item = span()
    assert classify(item, 1.0) == (
        item,
        1,
        DEFAULT_TENANT,
        estimate_span_bytes(item),
        item.context.trace_id,
        1.0,
        31.0,
        7,
    )

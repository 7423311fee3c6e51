"""The compiled size estimate: the same tasks as the Python classifier.

``_speedups.estimate_span`` returns ``estimate_span_bytes``'s integer or None (the Python estimate
decides); a classifier given it builds the same tasks as one without it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import event, given

from otel_sched.otlp import _encoding
from otel_sched.scheduling._classify import Classifier, TenantRegistry, estimate_span_bytes
from otel_sched.scheduling._policies import deadline_for
from otel_sched.scheduling._priority_rules import compile_rules
from otel_sched.scheduling._task import PriorityClass, Signal, Task

from .test_encoding import SETTINGS, span, span_batches

pytestmark = pytest.mark.skipif(
    _encoding.estimate_span_native is None and os.environ.get("CI") != "true",
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
    )


def fields(task: Task) -> dict[str, Any]:
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
def test_a_classifier_with_the_compiled_estimate_builds_the_same_tasks(spans: list[Any]) -> None:
    native, python = classifier(True).classifier(), classifier(False).classifier()
    for i, item in enumerate(spans):
        now = 100.0 + i / 7
        assert fields(native(item, now)) == fields(python(item, now))


def test_what_the_estimate_does_not_read_is_estimated_in_python() -> None:
    classify = classifier(True).classifier()
    item = span(attributes={"k": {"nested": 1}})  # a mapping value: the Python estimate
    assert classify(item, 1.0).cost == estimate_span_bytes(item)

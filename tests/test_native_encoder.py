"""The compiled span encoder: what it handles itself, and that its bytes are the Python encoder's.

tests/test_encoding.py runs every equivalence test against both encoders and the stock one.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceState,
    set_span_in_context,
)

from otel_sched import _encoding
from otel_sched._encoding import EncodingError

from .test_encoding import _SAMPLED, SETTINGS, assert_traces_match, span, span_batches

# Where a compiler is installed (CI) the compiled encoder must have been built.
pytestmark = pytest.mark.skipif(
    _encoding.try_encode_span_native is None and os.environ.get("CI") != "true",
    reason="the compiled encoder was not built (no C compiler at install time)",
)


def _without_status(item: ReadableSpan) -> ReadableSpan:
    item._status = None  # type: ignore[assignment]
    return item


def _native(item: ReadableSpan) -> bytes | None:
    try_native = _encoding.try_encode_span_native
    assert try_native is not None, "the compiled encoder (otel_sched._speedups) was not built"
    return try_native(item)


@SETTINGS
@given(span_batches())
def test_native_bytes_are_the_python_encoders(batch: list[ReadableSpan]) -> None:
    for item in batch:
        data = _native(item)
        if data is not None:  # None: handed to the Python encoder, which the tests above cover
            assert data == _encoding.encode_span_python(item)


def test_native_handles_what_the_sdk_makes() -> None:
    # Spans as instrumentations make them, every attribute type the SDK keeps, events and links
    # with attributes, limits that drop, remote and local parents, statuses with a message: all
    # encoded natively (none handed back), byte for byte what the Python encoder writes.
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc"}),
        span_limits=SpanLimits(max_span_attributes=8, max_events=2, max_links=1),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("lib", "1.0")
    values: list[Any] = ["", "é" * 200, True, False, 0, -1, 2**63 - 1, -(2**63), 0.5, -0.0, math.inf]
    values += [b"\x00\xff", (), ("a", "b"), (1, 2), (True,), (1.5, -2.0), ["x" * 300] * 3]
    remote = SpanContext(3, 4, is_remote=True, trace_flags=_SAMPLED)
    for i, value in enumerate(values):
        links = [Link(remote, {"l": i}), Link(SpanContext(5, 6, False), {"m": value})]
        parent = set_span_in_context(NonRecordingSpan(remote)) if i % 2 else None
        with tracer.start_as_current_span(
            f"op {i}", context=parent, kind=SpanKind(i % 5), attributes={"v": value, "i": i}, links=links
        ) as sp:
            for j in range(3):
                sp.add_event(f"e{j}", {"v": value}, timestamp=1_000 + j)
            for j in range(10):
                sp.set_attribute(f"extra{j}", j)  # past the limit: dropped, counted
            if i % 3 == 0:
                sp.set_status(Status(StatusCode.ERROR, f"failed {i} é"))
            elif i % 3 == 1:
                sp.set_status(Status(StatusCode.OK))
    provider.shutdown()
    finished = list(exporter.get_finished_spans())
    assert len(finished) == len(values)
    for item in finished:
        data = _native(item)
        assert data is not None, f"handed back to Python: {item.name}"
        assert data == _encoding.encode_span_python(item)
    assert_traces_match(finished)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: span(trace_state=TraceState([("v", "1")])), id="trace_state"),
        pytest.param(lambda: span(attributes={"m": {"k": 1}}), id="kvlist"),
        pytest.param(lambda: span(attributes={"n": ((1,),)}), id="nested array"),
        pytest.param(lambda: span(attributes={"big": 2**64}), id="int beyond int64"),
        pytest.param(lambda: span(attributes={"bad": "x\ud800"}), id="lone surrogate"),
        pytest.param(lambda: span(attributes={1: "non-str key"}), id="non-str key"),
        pytest.param(lambda: span(start_time=None), id="no start time"),
        pytest.param(lambda: _without_status(span()), id="no status"),
        pytest.param(lambda: span(attributes={"e": StatusCode.OK}), id="int subclass"),
    ],
)
def test_native_hands_the_unusual_to_the_python_encoder(make: Any) -> None:
    item = make()
    assert _native(item) is None
    native = _encoding.encode_span_native
    assert native is not None
    # Through the public entry point the Python encoder decides: same bytes, same errors.
    try:
        expected: Any = _encoding.encode_span_python(item)
    except EncodingError as exc:
        with pytest.raises(EncodingError) as info:
            native(item)
        assert info.value.field == exc.field
    else:
        assert native(item) == expected


def test_native_judges_a_new_span_class_through_the_python_encoder() -> None:
    class Renamed(ReadableSpan):
        @property
        def name(self) -> str:
            return "renamed"

    class Plain(ReadableSpan):
        pass

    native = _encoding.encode_span_native
    assert native is not None
    for cls, trusted in ((Renamed, False), (Plain, True)):
        item = cls(
            name="op",
            context=SpanContext(1, 2, False),
            start_time=1,
            end_time=2,
            status=Status(StatusCode.UNSET),
        )
        _encoding._TRUSTED_SPAN_TYPES.pop(cls, None)
        assert _native(item) is None  # not judged yet
        assert native(item) == _encoding.encode_span_python(item)
        assert _encoding._TRUSTED_SPAN_TYPES[cls] is trusted
        assert (_native(item) is not None) is trusted
    assert PB2Span.FromString(native(item)).name == "op"

"""The compiled span encoder: what it handles itself, and that its bytes are the Python encoder's.

tests/test_encoding.py runs every equivalence test against both encoders and the stock one.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from otel_sched.otlp import _encoding
from otel_sched.otlp._encoding import EncodingError

from .test_encoding import (
    _SAMPLED,
    SETTINGS,
    SPAN_IDS,
    TEXT,
    TRACE_IDS,
    assert_logs_match,
    assert_traces_match,
    attribute_maps,
    events,
    links,
    log,
    log_batches,
    span,
    span_batches,
    statuses,
)

# Where a compiler is installed (CI) the compiled encoder must have been built.
pytestmark = pytest.mark.skipif(
    (_encoding.try_encode_span_native is None or _encoding.try_encode_log_native is None)
    and os.environ.get("CI") != "true",
    reason="the compiled encoder was not built (no C compiler at install time)",
)


def _without_status(item: ReadableSpan) -> ReadableSpan:
    item._status = None  # type: ignore[assignment]
    return item


def _assert_decided_by_python(native: Any, python: Any, item: Any) -> None:
    """Through the compiled entry point the Python encoder decides: same bytes, same errors."""
    assert native is not None
    try:
        expected = python(item)
    except EncodingError as exc:
        with pytest.raises(EncodingError) as info:
            native(item)
        assert info.value.field == exc.field
    else:
        assert native(item) == expected


def _native(item: ReadableSpan) -> bytes | None:
    try_native = _encoding.try_encode_span_native
    assert try_native is not None, "the compiled encoder (otel_sched.otlp._speedups) was not built"
    return try_native(item)


@SETTINGS
@given(span_batches())
def test_native_bytes_are_the_python_encoders(batch: list[ReadableSpan]) -> None:
    for item in batch:
        data = _native(item)
        if data is not None:  # None: handed to the Python encoder, which the tests above cover
            assert data == _encoding.encode_span_python(item)


@st.composite
def sdk_shaped_spans(draw: st.DrawFn) -> ReadableSpan:
    """Spans as the SDK ends them (start and end times set, no vendor trace_state), whatever
    their attributes, events, links and status: what the compiled encoder is for."""
    times = sorted(draw(st.lists(st.integers(1, 2**64 - 1), min_size=2, max_size=2)))
    trace_state = draw(st.sampled_from([None, TraceState()]))
    parent = draw(st.one_of(st.none(), st.builds(SpanContext, TRACE_IDS, SPAN_IDS, st.booleans())))
    return ReadableSpan(
        name=draw(TEXT),
        context=SpanContext(draw(TRACE_IDS), draw(SPAN_IDS), False, TraceFlags(1), trace_state),
        parent=parent,
        attributes=draw(attribute_maps()),
        events=draw(st.lists(events(), max_size=3)),
        links=draw(st.lists(links(), max_size=2)),
        kind=draw(st.sampled_from(list(SpanKind))),
        status=draw(statuses()),
        start_time=times[0],
        end_time=times[1],
    )


@SETTINGS
@given(st.lists(sdk_shaped_spans(), min_size=1, max_size=4))
def test_native_sdk_shaped_spans_match_python_and_stock(batch: list[ReadableSpan]) -> None:
    for item in batch:
        data = _native(item)
        event("native" if data is not None else "handed to Python")
        if data is not None:
            assert data == _encoding.encode_span_python(item)
    assert_traces_match(batch)


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
        pytest.param(lambda: span(attributes={"m": {1: "k"}}), id="kvlist with a non-str key"),
        pytest.param(lambda: span(attributes={"n": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}), id="too deep"),
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
    _assert_decided_by_python(_encoding.encode_span_native, _encoding.encode_span_python, item)


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


def test_native_encodes_nested_arrays_and_kvlists() -> None:
    # A plain-dict attribute map (a custom processor's) can hold them: encoded natively too.
    nested = {"deep": [{"k": [1, "x", None]}, (), {"": {"e": b"\x00"}}], "m": {"a": 1.5}, "t": ((1, 2), [])}
    item = span(attributes=nested)
    data = _native(item)
    assert data is not None
    assert data == _encoding.encode_span_python(item)
    assert_traces_match([item])


# -- log records


def _native_log(record: ReadableLogRecord) -> bytes | None:
    try_native = _encoding.try_encode_log_native
    assert try_native is not None, "the compiled encoder (otel_sched.otlp._speedups) was not built"
    return try_native(record)


@SETTINGS
@given(log_batches())
def test_native_log_bytes_are_the_python_encoders(batch: list[ReadableLogRecord]) -> None:
    for record in batch:
        data = _native_log(record)
        if data is not None:  # None: handed to the Python encoder, which test_encoding covers
            assert data == _encoding.encode_log_python(record)


class _Keep(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[Any] = []

    def on_emit(self, log_record: Any) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_native_handles_the_log_records_the_sdk_makes() -> None:
    from otel_sched.runtime._intake import _readable_log  # the pipeline's conversion, as on its thread

    keep = _Keep()
    provider = LoggerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_log_record_processor(keep)
    logger = provider.get_logger("app", "1.0")
    bodies: list[Any] = [
        "plain",
        "",
        None,
        42,
        1.5,
        True,
        b"\x01",
        ["a", 1],
        {"msg": "m", "n": [1, {"x": None}]},
    ]
    for i, body in enumerate(bodies):
        logger.emit(
            body=body,
            severity_number=list(SeverityNumber)[i % len(SeverityNumber)],
            severity_text=None if i % 3 else "WARN",
            attributes={"i": i, "tags": ("a", "b"), "ok": True, "ratio": 0.25},
            event_name="evt" if i % 2 else None,
        )
    provider.shutdown()
    records = [_readable_log(r) for r in keep.records]
    assert len(records) == len(bodies)
    for record in records:
        data = _native_log(record)
        assert data is not None, f"handed back to Python: {record.log_record.body!r}"
        assert data == _encoding.encode_log_python(record)
    assert_logs_match(records)


def _with(record: ReadableLogRecord, **fields: Any) -> ReadableLogRecord:
    for name, value in fields.items():
        setattr(record.log_record, name, value)
    return record


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: log(body={1: "non-str key"}), id="body with a non-str key"),
        pytest.param(lambda: log(body=2**64), id="body beyond int64"),
        pytest.param(lambda: log(body="x\ud800"), id="lone surrogate"),
        pytest.param(lambda: log(severity_number=9), id="plain int severity"),
        pytest.param(lambda: log(trace_id=None), id="no trace id"),
        pytest.param(lambda: log(timestamp=-1), id="negative timestamp"),
        pytest.param(lambda: log(severity_text=b"WARN"), id="bytes severity text"),  # type: ignore[arg-type]
        pytest.param(lambda: _with(log(), trace_flags=TraceFlags(1) + 0.5), id="float trace flags"),
    ],
)
def test_native_hands_unusual_log_records_to_the_python_encoder(make: Any) -> None:
    record = make()
    assert _native_log(record) is None
    _assert_decided_by_python(_encoding.encode_log_native, _encoding.encode_log_python, record)


def _refcounts(objects: list[Any]) -> list[int]:
    import sys

    return [sys.getrefcount(o) for o in objects]


def _without_memory(encode: Any, item: Any, after: int) -> Any:
    """``encode(item)`` with every allocation after the first ``after`` failing (CPython's
    _testcapi memory hooks)."""
    testcapi = pytest.importorskip("_testcapi")
    testcapi.set_nomemory(after, 0)
    try:
        return encode(item)
    except MemoryError:
        # Reported as Python reports it (on 3.10 the fallback encoder's own allocations fail too):
        # a correct outcome; what these tests check is that no reference leaked.
        return MEMORY_ERROR
    finally:
        testcapi.remove_mem_hooks()


MEMORY_ERROR = "MemoryError"


def test_native_span_releases_what_it_read_when_the_buffer_cannot_grow() -> None:
    # Names around the 2 KiB stack buffer: the buffer must grow at each of put_span's own
    # reservations in turn, and every growth fails; the span is handed back, nothing leaked.
    for n in range(1900, 2100):
        item = span(
            "n" * n,
            attributes={"k": "v"},
            events=[Event("e", {"a": 1}, timestamp=1)],
            links=[Link(SpanContext(1, 2, False), {"b": 2})],
            status=Status(StatusCode.ERROR, "bad"),
        )
        parts = [item._context, item._name, item._attributes, item._events, item._links, item._status]
        parts += [item._events[0], item._links[0], item._status._description]
        before = _refcounts(parts)
        for after in range(4):
            assert _without_memory(_native, item, after) in (
                None,
                MEMORY_ERROR,
                _encoding.encode_span_python(item),
            )
            assert _refcounts(parts) == before, f"references leaked: {n}-character name, {after}"
        assert _native(item) == _encoding.encode_span_python(item)


def test_native_log_releases_what_it_read_when_the_buffer_cannot_grow() -> None:
    for n in range(1900, 2100):
        record = log("b" * n, attributes={"k": "v"}, event_name="evt")
        lr = record.log_record
        parts = [lr, lr.body, lr.attributes]  # this record's own: no cache holds them
        before = _refcounts(parts)
        for after in range(4):
            assert _without_memory(_native_log, record, after) in (
                None,
                MEMORY_ERROR,
                _encoding.encode_log_python(record),
            )
            assert _refcounts(parts) == before, f"references leaked: {n}-character body, {after}"
        assert _native_log(record) == _encoding.encode_log_python(record)

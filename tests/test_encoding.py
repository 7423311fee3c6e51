"""The hand-written OTLP encoder must decode to exactly what the stock encoder builds."""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from otel_sched.otlp import _encoding
from otel_sched.otlp._encoding import (
    EncodingError,
    Envelope,
    assemble_logs,
    assemble_traces,
    encode_logs_request,
    encode_spans_request,
    log_envelopes,
    resource_envelope,
    scope_envelope,
    span_envelopes,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Every test here runs against both encoders (spans and logs): the compiled one (where it was built;
# required under CI=true, where a compiler is installed) and the pure-Python one.  A test
# marked ``python_encoder_caches`` is about the Python encoder's caches alone.
ENCODERS = {
    "native": (_encoding.encode_span_native, _encoding.encode_log_native),
    "python": (_encoding.encode_span_python, _encoding.encode_log_python),
}


@pytest.fixture(autouse=True, params=sorted(ENCODERS))
def span_encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "native" and request.node.get_closest_marker("python_encoder_caches"):
        pytest.skip("about the Python encoder's caches: the compiled encoder keeps none")
    span_encoder, log_encoder = ENCODERS[name]
    if span_encoder is None or log_encoder is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the compiled encoder (otel_sched.otlp._speedups) was not built")
        pytest.skip("the compiled encoder was not built (no C compiler at install time)")
    monkeypatch.setattr(_encoding, "encode_span", span_encoder)
    monkeypatch.setattr(_encoding, "encode_log", log_encoder)
    return name


# ---------------------------------------------------------------------------
# comparison helpers


def assert_traces_match(spans: Sequence[ReadableSpan]) -> bytes:
    stock = encode_spans(spans)  # callers make sure stock can encode these
    data = encode_spans_request(spans)
    ours = ExportTraceServiceRequest.FromString(data)
    assert ours == stock
    # upb compares NaN payloads bitwise; canonical bytes double-check everything else.
    assert ours.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)
    return data


def assert_logs_match(records: Sequence[ReadableLogRecord]) -> bytes:
    stock = encode_logs(records)  # callers make sure stock can encode these
    data = encode_logs_request(records)
    ours = ExportLogsServiceRequest.FromString(data)
    assert ours == stock
    assert ours.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)
    return data


def group_by_envelopes(items: Sequence[Any], envelopes: Any, encode: Any) -> list[Any]:
    """What a pipeline does with pre-encoded items: group by envelope key, first envelope wins."""
    groups: dict[Hashable, tuple[Envelope, dict[Hashable, tuple[Envelope, list[bytes]]]]] = {}
    encoded = [encode(item) for item in items]  # encode first, assemble later
    for item, data in zip(items, encoded, strict=True):
        renv, senv = envelopes(item)
        scopes = groups.setdefault(renv.key, (renv, {}))[1]
        scopes.setdefault(senv.key, (senv, []))[1].append(data)
    return [(renv, list(scopes.values())) for renv, scopes in groups.values()]


def span(
    name: str = "op",
    *,
    trace_id: int = 0x0123456789ABCDEF0123456789ABCDEF,
    span_id: int = 0x1122334455667788,
    parent: SpanContext | None = None,
    attributes: Any = None,
    events: Sequence[Event] = (),
    links: Sequence[Link] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    status: Status | None = None,
    start_time: int | None = 1_700_000_000_000_000_000,
    end_time: int | None = 1_700_000_000_100_000_000,
    resource: Resource | None = None,
    scope: InstrumentationScope | None = None,
    trace_state: TraceState | None = None,
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, False, TraceFlags(1), trace_state),
        parent=parent,
        resource=resource if resource is not None else Resource({"service.name": "test"}),
        attributes=attributes,
        events=events,
        links=links,
        kind=kind,
        status=status if status is not None else Status(StatusCode.UNSET),
        start_time=start_time,
        end_time=end_time,
        instrumentation_scope=scope if scope is not None else InstrumentationScope("lib", "1.0"),
    )


_SAMPLED = TraceFlags(1)


def log(
    body: Any = "hello",
    *,
    attributes: Any = None,
    trace_id: int | None = 0x0123456789ABCDEF0123456789ABCDEF,
    span_id: int | None = 0x1122334455667788,
    trace_flags: Any = _SAMPLED,
    severity_number: Any = SeverityNumber.INFO,
    severity_text: str | None = "INFO",
    timestamp: int | None = 1_700_000_000_000_000_000,
    observed_timestamp: int | None = 1_700_000_000_000_000_001,
    event_name: str | None = None,
    resource: Resource | None = None,
    scope: InstrumentationScope | None = None,
) -> ReadableLogRecord:
    record = LogRecord(
        timestamp=timestamp,
        observed_timestamp=observed_timestamp,
        severity_text=severity_text,
        severity_number=severity_number,
        body=body,
        attributes=attributes,
        event_name=event_name,
    )
    # Assigned afterwards: passing them to LogRecord() is deprecated.
    record.trace_id = trace_id  # type: ignore[assignment]
    record.span_id = span_id  # type: ignore[assignment]
    record.trace_flags = trace_flags
    return ReadableLogRecord(
        record,
        resource=resource if resource is not None else Resource({"service.name": "test"}),
        instrumentation_scope=scope,
    )


# ---------------------------------------------------------------------------
# strategies

INT64 = st.integers(-(2**63), 2**63 - 1)
INT_EDGES = st.sampled_from(
    [0, 1, -1, 127, 128, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64, -(2**63) - 1, 10**30]
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.text(max_size=40)
SHORT = st.text(max_size=12)
SCALARS = st.one_of(TEXT, st.booleans(), INT64, INT_EDGES, FLOATS, st.binary(max_size=20))
# What the SDK's attribute cleaning lets through: scalars and homogeneous sequences.
HOMOGENEOUS = st.one_of(
    st.lists(TEXT, max_size=4),
    st.lists(st.booleans(), max_size=4),
    st.lists(INT64, max_size=4),
    st.lists(FLOATS, max_size=4),
).flatmap(lambda xs: st.sampled_from([xs, tuple(xs)]))
# Extended attributes and log bodies: anything nested, None included.
ANY_VALUE = st.recursive(
    st.one_of(st.none(), SCALARS),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(SHORT, children, max_size=3),
    ),
    max_leaves=8,
)
SPAN_VALUE = st.one_of(SCALARS, HOMOGENEOUS, ANY_VALUE)


@st.composite
def attribute_maps(draw: st.DrawFn, values: st.SearchStrategy[Any] = SPAN_VALUE, max_size: int = 6) -> Any:
    attrs = draw(st.dictionaries(SHORT, values, max_size=max_size))
    kind = draw(st.sampled_from(["dict", "none", "bounded"]))
    if kind == "none" and not attrs:
        return None
    if kind == "bounded":
        # The SDK's own container: cleans values and counts what maxlen drops.
        maxlen = draw(st.one_of(st.none(), st.integers(0, 6)))
        return BoundedAttributes(maxlen=maxlen, attributes=attrs, immutable=draw(st.booleans()))
    return attrs


SPAN_IDS = st.integers(1, 2**64 - 1)
TRACE_IDS = st.integers(1, 2**128 - 1)
TIMES = st.one_of(st.none(), st.just(0), st.integers(1, 2**64 - 1))
TRACE_STATES = st.sampled_from(
    [None, TraceState(), TraceState([("vendor", "v1")]), TraceState([("a", "1"), ("b@x", "two")])]
)


@st.composite
def span_contexts(draw: st.DrawFn) -> SpanContext:
    return SpanContext(
        draw(TRACE_IDS),
        draw(SPAN_IDS),
        draw(st.booleans()),
        TraceFlags(draw(st.integers(0, 255))),
        draw(TRACE_STATES),
    )


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(draw(TEXT), draw(attribute_maps(max_size=3)), timestamp=draw(st.integers(0, 2**64 - 1)))


@st.composite
def links(draw: st.DrawFn) -> Link:
    return Link(draw(span_contexts()), draw(attribute_maps(max_size=3)))


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    code = draw(st.sampled_from(list(StatusCode)))
    description = draw(st.one_of(st.none(), TEXT)) if code is StatusCode.ERROR else None
    return Status(code, description)


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    # No NaN: stock groups two resources holding distinct NaN objects apart (NaN != NaN)
    # while their encodings, and so our envelope keys, are equal.  Documented deviation.
    values: st.SearchStrategy[Any] = st.one_of(
        TEXT, st.booleans(), INT64, st.floats(allow_nan=False), HOMOGENEOUS.filter(_no_nan)
    )
    return Resource(
        draw(st.dictionaries(SHORT, values, max_size=4)),
        schema_url=draw(st.sampled_from([None, "", "https://opentelemetry.io/schemas/1.26.0"])),
    )


def _no_nan(xs: Sequence[Any]) -> bool:
    return not any(isinstance(x, float) and math.isnan(x) for x in xs)


@st.composite
def scopes(draw: st.DrawFn) -> InstrumentationScope | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    return InstrumentationScope(
        draw(st.sampled_from(["lib.a", "lib.b", "", "ünïcødé"])),
        draw(st.sampled_from([None, "", "1.0", "2.0.0-rc1"])),
        draw(st.sampled_from([None, "", "https://example.com/schema"])),
        draw(st.one_of(st.none(), st.dictionaries(SHORT, st.one_of(TEXT, st.booleans(), INT64), max_size=3))),
    )


@st.composite
def spans(draw: st.DrawFn, resource_pool: Sequence[Resource], scope_pool: Sequence[Any]) -> ReadableSpan:
    ev = draw(st.lists(events(), max_size=3))
    ln = draw(st.lists(links(), max_size=2))
    if draw(st.booleans()):
        ev_list: Any = BoundedList.from_seq(draw(st.integers(0, 3)), ev)
    else:
        ev_list = tuple(ev)
    ln_list: Any = BoundedList.from_seq(draw(st.integers(0, 2)), ln) if draw(st.booleans()) else ln
    return ReadableSpan(
        name=draw(TEXT),
        context=draw(span_contexts()),
        parent=draw(st.one_of(st.none(), span_contexts())),
        resource=draw(st.sampled_from(resource_pool)),
        attributes=draw(attribute_maps()),
        events=ev_list,
        links=ln_list,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=draw(statuses()),
        start_time=draw(TIMES),
        end_time=draw(TIMES),
        instrumentation_scope=draw(st.sampled_from(scope_pool)),
    )


@st.composite
def span_batches(draw: st.DrawFn) -> list[ReadableSpan]:
    resource_pool = draw(st.lists(resources(), min_size=1, max_size=3))
    scope_pool = draw(st.lists(scopes(), min_size=1, max_size=3))
    return draw(st.lists(spans(resource_pool, scope_pool), max_size=6))


@st.composite
def log_records(
    draw: st.DrawFn, resource_pool: Sequence[Resource], scope_pool: Sequence[Any]
) -> ReadableLogRecord:
    return log(
        draw(ANY_VALUE),
        attributes=draw(attribute_maps(values=ANY_VALUE)),
        trace_id=draw(st.one_of(st.just(0), TRACE_IDS)),
        span_id=draw(st.one_of(st.just(0), SPAN_IDS)),
        trace_flags=TraceFlags(draw(st.integers(0, 255))),
        severity_number=draw(st.one_of(st.none(), st.sampled_from(list(SeverityNumber)))),
        severity_text=draw(st.one_of(st.none(), SHORT)),
        timestamp=draw(TIMES),
        observed_timestamp=draw(TIMES),
        event_name=draw(st.one_of(st.none(), SHORT)),
        resource=draw(st.sampled_from(resource_pool)),
        scope=draw(st.sampled_from(scope_pool)),
    )


@st.composite
def log_batches(draw: st.DrawFn) -> list[ReadableLogRecord]:
    resource_pool = draw(st.lists(resources(), min_size=1, max_size=3))
    scope_pool = draw(st.lists(scopes(), min_size=1, max_size=3))
    return draw(st.lists(log_records(resource_pool, scope_pool), max_size=6))


# ---------------------------------------------------------------------------
# properties


@SETTINGS
@given(span_batches())
def test_spans_match_stock(batch: list[ReadableSpan]) -> None:
    data = assert_traces_match(batch)
    # Pre-encoded items assembled under envelopes give the same request.
    assert assemble_traces(group_by_envelopes(batch, span_envelopes, _encoding.encode_span)) == data


@SETTINGS
@given(log_batches())
def test_logs_match_stock(batch: list[ReadableLogRecord]) -> None:
    try:
        encode_logs(batch)
    except ValueError:
        # A body stock cannot encode (e.g. an int beyond int64) fails its whole
        # request; we refuse exactly the offending records.
        refused = []
        for record in batch:
            try:
                encode_logs([record])
            except ValueError:
                refused.append(record)
                with pytest.raises(EncodingError) as info:
                    _encoding.encode_log(record)
                assert info.value.field == "body"
        assert refused
        batch = [record for record in batch if record not in refused]
    data = assert_logs_match(batch)
    assert assemble_logs(group_by_envelopes(batch, log_envelopes, _encoding.encode_log)) == data


@SETTINGS
@given(span_batches())
def test_span_messages_decode_alone(batch: list[ReadableSpan]) -> None:
    for item in batch:
        stock = encode_spans([item]).resource_spans[0].scope_spans[0].spans[0]
        assert PB2Span.FromString(_encoding.encode_span(item)) == stock


# ---------------------------------------------------------------------------
# fixed corner cases


def test_empty_batches() -> None:
    assert encode_spans_request([]) == encode_spans([]).SerializeToString() == b""
    assert encode_logs_request([]) == encode_logs([]).SerializeToString() == b""
    assert assemble_traces([]) == b""


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        {},
        {"": "empty key"},
        {"s": ""},
        {"b": b""},
        {"n": None},
        {"l": []},
        {"t": ()},
        {"d": {}},
        {"nested": {"a": [1, "x", None, {"b": b"\x00\xff"}]}},
        {"big": 2**63 - 1, "small": -(2**63), "neg": -1},
        {"unicode": "ünïcødé ✓ 𝄞", "ключ": "значение"},
        {"inf": math.inf, "ninf": -math.inf, "nan": math.nan, "negzero": -0.0, "zero": 0.0},
        {"bools": (True, False), "ints": (1, 2**40), "floats": (1.5, -0.0), "strs": ("a", "")},
        {"bytearray": bytearray(b"ab"), "range": range(3)},
    ],
)
def test_attribute_values(attributes: Any) -> None:
    assert_traces_match([span(attributes=attributes)])
    assert_logs_match([log(attributes=attributes)])
    assert_logs_match([log(body=attributes)])


def test_out_of_range_ints_are_dropped_like_stock(caplog: pytest.LogCaptureFixture) -> None:
    attributes = {"ok": 1, "too_big": 2**63, "too_small": -(2**63) - 1, "in_list": [1, 2**64], "huge": 10**30}
    data = assert_traces_match([span(attributes=attributes)])
    decoded = ExportTraceServiceRequest.FromString(data)
    keys = [kv.key for kv in decoded.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["ok"]
    assert_logs_match([log(attributes=attributes)])
    assert "too_big" in caplog.text


def test_unknown_value_types_are_dropped_like_stock() -> None:
    class Opaque:
        pass

    attributes = {"a": 1, "set": {1, 2}, "obj": Opaque(), "nested": {"x": [Opaque()]}, "z": "kept"}
    assert_traces_match([span(attributes=attributes)])
    assert_logs_match([log(attributes=attributes)])


def test_unknown_body_type_is_refused_like_stock() -> None:
    record = log(body={1, 2})
    with pytest.raises(Exception, match="Invalid type"):
        encode_logs([record])
    with pytest.raises(EncodingError) as info:
        _encoding.encode_log(record)
    assert info.value.field == "body"
    with pytest.raises(EncodingError, match="body"):
        encode_logs_request([record])
    with pytest.raises(EncodingError):
        _encoding.encode_log(log(body=2**64))


def test_lone_surrogates() -> None:
    bad = "x\ud800y"
    # In attributes (key or value, at any depth) stock logs and drops the pair.
    attributes = {"ok": "v", "bad": bad, bad: "v", "deep": {"k": [bad]}, "last": 1}
    assert_traces_match([span(attributes=attributes)])
    assert_logs_match([log(attributes=attributes)])
    # Anywhere else stock fails the whole request; we refuse the item, naming the field.
    cases: list[tuple[str, Any, Any]] = [
        ("name", lambda: span(name=bad), _encoding.encode_span),
        ("events", lambda: span(events=[Event(bad, timestamp=1)]), _encoding.encode_span),
        ("status", lambda: span(status=Status(StatusCode.ERROR, bad)), _encoding.encode_span),
        ("body", lambda: log(body=bad), _encoding.encode_log),
        ("body", lambda: log(body={"k": bad}), _encoding.encode_log),
        ("severity_text", lambda: log(severity_text=bad), _encoding.encode_log),
        ("event_name", lambda: log(event_name=bad), _encoding.encode_log),
    ]
    for field, make, encode in cases:
        item = make()
        stock_encode = encode_spans if encode is _encoding.encode_span else encode_logs
        with pytest.raises(UnicodeEncodeError):
            stock_encode([item])
        with pytest.raises(EncodingError) as info:
            encode(item)
        assert info.value.field == field
        assert isinstance(info.value, ValueError)
    with pytest.raises(EncodingError, match=r"scope\.name"):
        scope_envelope(InstrumentationScope(bad))
    with pytest.raises(EncodingError, match=r"resource\.schema_url"):
        resource_envelope(Resource({}, schema_url=bad))


def test_span_context_and_parents() -> None:
    local_parent = SpanContext(1, 2, is_remote=False)
    remote_parent = SpanContext(1, 3, is_remote=True, trace_flags=TraceFlags(1))
    zero_parent = SpanContext(0, 0, is_remote=False)
    batch = [
        span(parent=None),
        span(parent=local_parent),
        span(parent=remote_parent),
        span(parent=zero_parent),
        span(trace_state=TraceState([("vendor", "x"), ("other", "y")])),
        span(trace_state=TraceState([("vendor", "x")]), parent=remote_parent),
        span(trace_id=2**128 - 1, span_id=2**64 - 1),
    ]
    data = assert_traces_match(batch)
    decoded = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans
    assert [s.flags for s in decoded[:3]] == [0x100, 0x100, 0x300]
    assert decoded[0].parent_span_id == b""


def test_events_links_and_status() -> None:
    remote = SpanContext(5, 6, is_remote=True, trace_state=TraceState([("k", "v")]))
    batch = [
        span(events=[]),
        span(events=[Event("e", timestamp=0), Event("ünï", {"a": 1, "b": [1.5]}, timestamp=7)]),
        span(links=[Link(remote), Link(SpanContext(7, 8, False), {"x": "y"})]),
        span(status=Status(StatusCode.OK)),
        span(status=Status(StatusCode.ERROR)),
        span(status=Status(StatusCode.ERROR, "boom")),
        span(status=Status(StatusCode.ERROR, "")),
        span(kind=SpanKind.CONSUMER, start_time=None, end_time=None),
        span(start_time=0, end_time=2**64 - 1),
        span(name=""),
    ]
    for kind in SpanKind:
        batch.append(span(kind=kind))
    assert_traces_match(batch)


def test_dropped_counts_from_real_sdk_limits() -> None:
    exporter = InMemorySpanExporter()
    limits = SpanLimits(
        max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1, max_link_attributes=1
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "limits"}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t", "1", schema_url="https://s", attributes={"scope.attr": True})
    ctx = SpanContext(9, 10, is_remote=True)
    with tracer.start_as_current_span(
        "s", attributes={"a": 1, "b": 2, "c": 3}, links=[Link(ctx), Link(ctx, {"x": 1, "y": 2})]
    ) as sp:
        sp.add_event("e1")
        sp.add_event("e2", {"p": 1, "q": 2})  # max_events=1 keeps the newest
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("url", "https://example.com")
    provider.shutdown()
    finished = list(exporter.get_finished_spans())
    assert finished[1].dropped_attributes and finished[1].dropped_events and finished[1].dropped_links
    data = assert_traces_match(finished)
    parent = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans[1]
    assert (parent.dropped_attributes_count, parent.dropped_events_count, parent.dropped_links_count) == (
        1,
        1,
        1,
    )
    assert parent.events[0].dropped_attributes_count == 1
    assert parent.links[0].dropped_attributes_count == 1


def test_log_record_corner_cases() -> None:
    records = [
        log(),
        log(body=None),
        log(body=""),
        log(body=b""),
        log(body=b"\x00\xff"),
        log(body=["a", 1, None, {"k": {"n": [True, 2.5]}}]),
        log(body="x" * 500),
        log(trace_id=0, span_id=0),
        log(trace_id=0, span_id=5),
        log(trace_flags=TraceFlags(0)),
        log(severity_number=None, severity_text=None),
        log(severity_number=SeverityNumber.UNSPECIFIED),
        log(severity_number=9),  # no .value: stock omits it
        log(timestamp=None, observed_timestamp=0),
        log(event_name=""),
        log(event_name="ünï.event"),
        log(attributes=BoundedAttributes(maxlen=1, attributes={"a": 1, "b": 2}, immutable=False)),
    ]
    assert_logs_match(records)


def test_log_ids_none_are_refused_like_stock() -> None:
    for record, field in ((log(trace_id=None), "trace_id"), (log(span_id=None), "span_id")):
        with pytest.raises(AttributeError):
            encode_logs([record])
        with pytest.raises(EncodingError) as info:
            _encoding.encode_log(record)
        assert info.value.field == field


def test_encoding_error_pickles() -> None:
    import pickle

    error = EncodingError("name", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.field, str(clone)) == (error.field, str(error))


def test_log_attributes_mutated_mid_encode() -> None:
    class Mutator:
        """Hashing it (the cache lookup) mutates the dict being iterated, like a racing thread."""

        def __init__(self, target: dict[str, Any]) -> None:
            self.target = target

        def __hash__(self) -> int:
            self.target[f"added{len(self.target)}"] = "x"
            return 1

    attributes = BoundedAttributes(attributes={"a": "1", "b": 2}, immutable=False)
    attributes._dict["m"] = Mutator(attributes._dict)  # type: ignore[assignment]
    decoded = ExportLogsServiceRequest.FromString(encode_logs_request([log(attributes=attributes)]))
    keys = [kv.key for kv in decoded.resource_logs[0].scope_logs[0].log_records[0].attributes]
    assert keys[:2] == ["a", "b"] and "m" not in keys
    assert any(key.startswith("added") for key in keys)  # re-read from a fresh copy


def test_invalid_numbers_are_refused() -> None:
    with pytest.raises(EncodingError, match="start_time"):
        _encoding.encode_span(span(start_time=-1))
    with pytest.raises(EncodingError, match="end_time"):
        _encoding.encode_span(span(end_time=2**64))
    with pytest.raises(EncodingError) as info:
        _encoding.encode_span(span(start_time=None, end_time=-5))
    assert info.value.field == "end_time_unix_nano"
    with pytest.raises(EncodingError):
        _encoding.encode_span(span(trace_id=2**128))
    with pytest.raises(EncodingError):
        _encoding.encode_span(span(start_time=True))
    with pytest.raises(EncodingError, match="flags"):
        _encoding.encode_log(log(trace_flags=2**32))
    with pytest.raises(EncodingError, match="severity_number"):
        _encoding.encode_log(log(severity_number=_FakeSeverity(2**31)))
    missing_context = ReadableSpan("no-context")
    with pytest.raises(AttributeError):
        encode_spans([missing_context])
    with pytest.raises(EncodingError):
        _encoding.encode_span(missing_context)


class _FakeSeverity:
    def __init__(self, value: int) -> None:
        self.value = value


def test_span_subclass_properties_are_honoured() -> None:
    class Renamed(ReadableSpan):
        @property
        def name(self) -> str:
            return "renamed:" + self._name

        @property
        def attributes(self) -> Any:
            return {"extra": 1, **(self._attributes or {})}

    item = Renamed("orig", context=SpanContext(1, 2, False), attributes={"a": "b"}, resource=Resource({}))
    data = assert_traces_match([item])
    decoded = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans[0]
    assert decoded.name == "renamed:orig"
    assert [kv.key for kv in decoded.attributes] == ["extra", "a"]


def test_resources_and_scopes_grouping() -> None:
    r1 = Resource({"service.name": "a"}, schema_url="https://r1")
    r1_equal = Resource({"service.name": "a"}, schema_url="https://r1")
    r_bool = Resource({"flag": True})
    r_int = Resource({"flag": 1})
    s1 = InstrumentationScope("lib", "1", "https://s", {"k": "v"})
    s1_equal = InstrumentationScope("lib", "1", "https://s", {"k": "v"})
    s_true = InstrumentationScope("lib", "1", None, {"x": True})
    s_one = InstrumentationScope("lib", "1", None, {"x": 1})  # == s_true for stock: merged
    batch = [
        span(resource=r1, scope=s1),
        span(resource=r_bool, scope=s_true),
        span(resource=r1_equal, scope=s1_equal),
        span(resource=r_int, scope=s_one),
        span(resource=r_bool, scope=s_one),
        span(resource=r1, scope=None),
    ]
    batch.append(ReadableSpan("no-scope", context=SpanContext(1, 2, False), resource=r1))
    data = assert_traces_match(batch)
    decoded = ExportTraceServiceRequest.FromString(data)
    assert len(decoded.resource_spans) == 3
    assert resource_envelope(r1).key == resource_envelope(r1_equal).key
    assert resource_envelope(r_bool).key != resource_envelope(r_int).key
    assert scope_envelope(s_true).key == scope_envelope(s_one).key
    assert scope_envelope(None).data == b""
    records = [
        log(resource=res, scope=sc)
        for res, sc in ((r1, s1), (r_int, None), (r1_equal, s1_equal), (r1, s_one))
    ]
    assert_logs_match(records)


def test_envelope_caching() -> None:
    resource = Resource({"a": 1}, schema_url="https://x")
    scope = InstrumentationScope("n", "v", "https://y", {"b": 2})
    assert resource_envelope(resource) is resource_envelope(resource)
    assert scope_envelope(scope) is scope_envelope(scope)
    renv = resource_envelope(resource)
    assert renv.schema_url == "https://x"
    assert renv.head.endswith(renv.data) and renv.tail.endswith(b"https://x")
    for i in range(3 * _encoding._ENVELOPE_CACHE_MAX):
        resource_envelope(Resource({"i": i}))
        scope_envelope(InstrumentationScope(f"s{i}"))
    assert len(_encoding._RESOURCE_ENVELOPES) <= _encoding._ENVELOPE_CACHE_MAX
    assert len(_encoding._SCOPE_ENVELOPES) <= _encoding._ENVELOPE_CACHE_MAX


def test_none_resource_encodes_as_empty_resource() -> None:
    # Deliberate leniency: stock cannot encode this at all.
    env = resource_envelope(None)
    item = log()
    data = assemble_logs([(env, [(scope_envelope(None), [_encoding.encode_log(item)])])])
    decoded = ExportLogsServiceRequest.FromString(data)
    assert decoded.resource_logs[0].HasField("resource")
    assert decoded.resource_logs[0].resource.attributes == []
    assert decoded.resource_logs[0].scope_logs[0].HasField("scope")


@pytest.mark.python_encoder_caches
def test_true_one_and_one_point_zero_are_cached_apart() -> None:
    for cache in _encoding._CACHES:
        cache.clear()
    values = [True, 1, 1.0, False, 0, 0.0, -0.0, "1", b"1", (1,), (True,), ("1",), None]
    # Same key, every value twice in a row, through both the cold and the warm path.
    batch = [span(attributes={"k": v}) for v in values for _ in range(2)]
    data = assert_traces_match(batch)
    decoded = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans
    fields = [s.attributes[0].SerializeToString() for s in decoded[::2]]
    assert len(set(fields[:3])) == 3
    assert len(set(fields)) == len(fields)
    assert_logs_match([log(attributes={"k": v}) for v in values for _ in range(2)])
    # Repeated after the caches are warm, in reverse order.
    assert_traces_match(list(reversed(batch)))


@pytest.mark.python_encoder_caches
def test_caches_stay_bounded() -> None:
    n = 50_000
    for i in range(0, n, 25):
        attributes: dict[str, Any] = {f"k{j}": f"value-{i + j}" for j in range(25)}
        attributes["int"] = i
        _encoding.encode_span(
            span(name=f"op-{i}", attributes=attributes, events=[Event(f"e{i}", {"x": i}, timestamp=1)])
        )
        _encoding.encode_log(log(attributes=attributes, severity_text=f"S{i}"))
    for cache in _encoding._CACHES:
        assert len(cache) <= _encoding._CACHE_MAX
    # Long values are not cached at all.
    for cache in _encoding._CACHES:
        cache.clear()
    _encoding.encode_span(span(attributes={"long": "x" * 10_000}))
    assert len(_encoding._SPAN_KV) == 0


def test_varint_and_header_edges_match_stock() -> None:
    # The miss fast paths and the header tables around their ends: string lengths
    # near the 1/2-byte varint edge and past the tables, ints with 1-4 byte varints,
    # keys long enough to take the general path; cold (misses), then warm (hits).
    for cache in _encoding._CACHES:
        cache.clear()
    values: list[Any] = ["x" * n for n in (120, 125, 126, 127, 128, 129, 200, 240, 250, 260, 300, 20_000)]
    values += ["é" * 60, "é" * 127, "é" * 200]
    values += [2047, 2048, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 2**35, 2**63 - 1, -1, -(2**63)]
    keys = ["k", "k" * 100, "k" * 127, "k" * 128]  # + suffix: 128 chars is still cached, 129 not
    for _ in range(2):
        batch = []
        records = []
        for key in keys:
            attributes = {f"{key}{i}": v for i, v in enumerate(values)}
            batch.append(
                span(
                    attributes=attributes,
                    events=[Event("e", attributes, timestamp=5)],
                    links=[Link(SpanContext(7, 8, False), attributes)],
                )
            )
            records.append(log(body=str(values[6]) + key, attributes=attributes))
        assert_traces_match(batch)
        assert_logs_match(records)


@pytest.mark.python_encoder_caches
def test_a_key_with_ever_new_values_does_not_flood_the_cache() -> None:
    for cache in _encoding._CACHES:
        cache.clear()
    n = 2 * _encoding._KEY_BUDGET
    batch = [
        span(attributes={"url": f"https://x/{i}", "port": 40_000 + i, "method": "GET"}) for i in range(n)
    ]
    assert_traces_match(batch)
    # Past its budget only every 8th fresh value of a key is kept.
    assert len(_encoding._SPAN_KV) < 2 * (_encoding._KEY_BUDGET + n // 4)
    # A value that does repeat still gets in, a few misses later.
    repeated = span(attributes={"url": "https://x/again", "port": 1})
    for _ in range(8):
        _encoding.encode_span(repeated)
    assert ("url", "https://x/again") in _encoding._SPAN_KV
    assert_traces_match([repeated, repeated])
    # The per-key table is bounded like the other caches.
    for i in range(0, _encoding._CACHE_MAX + 100, 50):
        _encoding.encode_span(span(attributes={f"key{i + j}": j for j in range(50)}))
    assert len(_encoding._KEYS) <= _encoding._CACHE_MAX


def test_mixed_bag_through_the_real_sdk() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "pid": 7}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracers = [provider.get_tracer("a", "1"), provider.get_tracer("b", schema_url="https://b")]
    for i in range(30):
        tracer = tracers[i % 2]
        with tracer.start_as_current_span(
            f"span {i}", kind=SpanKind(i % 5), attributes={"i": i, "s": str(i)}
        ) as sp:
            sp.add_event("evt", {"n": i})
            if i % 3 == 0:
                sp.set_status(Status(StatusCode.ERROR, f"err {i}"))
    provider.shutdown()
    finished = list(exporter.get_finished_spans())
    data = assert_traces_match(finished)
    assert assemble_traces(group_by_envelopes(finished, span_envelopes, _encoding.encode_span)) == data

"""An SDK release that moves ReadableSpan's private fields: spans are still exported, whole.

The encoders, the priority rules and the classifier read ``ReadableSpan``'s private fields for
speed (``otel_sched._sdk_fields``).  Here a child interpreter renames those fields on every
ReadableSpan (and points the public properties at the new names) before importing otel_sched,
as a future SDK might, and exports through the real OTLP/HTTP exporter to the embedded receiver.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Runs before otel_sched is imported: a ReadableSpan whose data lives under other names.
_RENAMED_SDK = """
from types import MappingProxyType
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.util import BoundedList

RENAMED = {"_attributes": "_attrs_v2", "_events": "_events_v2", "_links": "_links_v2",
           "_status": "_status_v2", "_context": "_context_v2", "_resource": "_resource_v2"}
_init = ReadableSpan.__init__

def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if type(self) is ReadableSpan:  # the live SDK Span keeps its own fields
        for old, new in RENAMED.items():
            self.__dict__[new] = self.__dict__.pop(old)

def field(self, old):
    d = self.__dict__
    return d[RENAMED[old]] if RENAMED[old] in d else d[old]

def dropped(value):
    return value.dropped if isinstance(value, (BoundedAttributes, BoundedList)) else 0

ReadableSpan.__init__ = __init__
ReadableSpan.attributes = property(lambda self: MappingProxyType(field(self, "_attributes") or {}))
ReadableSpan.events = property(lambda self: tuple(field(self, "_events")))
ReadableSpan.links = property(lambda self: tuple(field(self, "_links")))
ReadableSpan.status = property(lambda self: field(self, "_status"))
ReadableSpan.context = property(lambda self: field(self, "_context"))
ReadableSpan.get_span_context = lambda self: field(self, "_context")
ReadableSpan.resource = property(lambda self: field(self, "_resource"))
ReadableSpan.dropped_attributes = property(lambda self: dropped(field(self, "_attributes")))
ReadableSpan.dropped_events = property(lambda self: dropped(field(self, "_events")))
ReadableSpan.dropped_links = property(lambda self: dropped(field(self, "_links")))
"""

_EXPORT = """
import json, logging
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

logging.basicConfig(level=logging.WARNING)
from otel_sched import ScheduledSpanProcessor, _sdk_fields
from otel_sched.otlp._encoding import encode_span, encode_span_python
from otel_sched.demo._receiver import OTLPReceiver

with OTLPReceiver() as receiver:
    processor = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=receiver.traces_url), tenant_key="tenant.id", policy="priority_fair"
    )
    provider = TracerProvider(resource=Resource({"service.name": "renamed"}))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    same = True
    for i in range(40):
        with tracer.start_as_current_span(f"s{i}", attributes={"tenant.id": f"t{i % 4}", "i": i}) as span:
            span.add_event("ev", {"k": i})
            if i % 10 == 0:
                span.set_status(Status(StatusCode.ERROR, "boom"))
    provider.force_flush()
    receiver.wait_for_spans(40, timeout=30)
    provider.shutdown()
    spans = receiver.spans()
    stats = processor.stats()
    # One more span, encoded by our encoders and by the SDK's own, byte for byte.
    with tracer.start_as_current_span("cmp", attributes={"a": 1}) as s:
        s.add_event("e", {"b": 2})
    readable = s._readable_span()
    stock = encode_spans([readable]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    same = encode_span(readable) == stock and encode_span_python(readable) == stock
print(json.dumps({
    "fields": _sdk_fields.SPAN_FIELDS,
    "received": len(spans),
    "tenants": sorted({s.attributes.get("tenant.id") for s in spans}),
    "errors": sum(1 for s in spans if s.status_code == 2),
    "dropped": stats["dropped"],
    "same_bytes": same,
}))
"""


def _child(prelude: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(prelude) + _EXPORT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_an_sdk_with_renamed_span_fields_is_exported_through_the_public_properties() -> None:
    result, stderr = _child(_RENAMED_SDK)
    assert result["fields"] is False
    assert result["received"] == 40
    assert result["dropped"] == {}
    assert result["tenants"] == ["t0", "t1", "t2", "t3"]
    assert result["errors"] == 4
    assert result["same_bytes"] is True
    # Said once, naming what moved.
    assert stderr.count("does not keep span data where this release reads it") == 1
    assert "ReadableSpan._context" in stderr


def test_the_installed_sdk_keeps_the_fast_path() -> None:
    result, stderr = _child("")
    assert result["fields"] is True
    assert result["received"] == 40
    assert result["same_bytes"] is True
    assert "does not keep span data" not in stderr

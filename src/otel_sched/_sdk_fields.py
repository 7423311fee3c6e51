"""The SDK's private fields our hot paths read, checked once against the installed SDK.

The encoders (Python and compiled), the priority rules and the classifier read span data from
``ReadableSpan``'s fields (``_attributes._dict``, ``_events._dq``, ``_status._status_code``, ...)
instead of its properties, which copy (a ``MappingProxyType`` or a tuple per access).  Those
fields are private: an SDK release may rename them.  At import this module builds one span with
every part set and compares each private read with the public property.

* ``SPAN_FIELDS`` -- True where every read matched.  Where it is False, each reader takes the
  public properties (and the span encoder the SDK's own OTLP encoder): slower, same output, and
  one warning says so.  A span is never dropped because the SDK moved a field.
* ``FAST_SPAN`` / ``FAST_ATTRIBUTES`` -- the classes whose fields may be read: ``ReadableSpan``
  and ``BoundedAttributes`` where the check passed, else a class no object is an instance of, so
  a reader's ``obj.__class__ is FAST_SPAN`` test costs the same either way.  ``FAST_SPANS`` adds
  the SDK's own ``Span`` classes (the live span, same fields), or is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Span as _SdkSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceState
from opentelemetry.trace.status import Status, StatusCode

__all__ = ["FAST_ATTRIBUTES", "FAST_SPAN", "FAST_SPANS", "SPAN_FIELDS", "mismatch"]

_logger = logging.getLogger(__name__)


class _NoSuchClass:
    """Stands in for a class whose fields may not be read: nothing is an instance of it."""


def _probe() -> list[tuple[str, Callable[[], bool]]]:
    ctx = SpanContext(trace_id=0x1234, span_id=0x56, is_remote=False, trace_state=TraceState([("k", "v")]))
    parent = SpanContext(trace_id=0x1234, span_id=0x78, is_remote=True)
    attributes = BoundedAttributes(attributes={"a": 1}, immutable=True)
    event = Event("ev", {"e": 2}, timestamp=7)
    link = Link(parent, {"l": 3})
    status = Status(StatusCode.ERROR, "why")
    span: Any = ReadableSpan(
        name="probe",
        context=ctx,
        parent=parent,
        resource=Resource({"r": 4}),
        attributes=attributes,
        events=BoundedList.from_seq(4, [event]),
        links=BoundedList.from_seq(4, [link]),
        kind=SpanKind.SERVER,
        status=status,
        start_time=5,
        end_time=6,
        instrumentation_scope=InstrumentationScope("probe"),
    )
    ev: Any = event
    ln: Any = link
    st: Any = status
    at: Any = attributes
    ts: Any = ctx.trace_state
    # Every private name read by _encoding.py, _speedups.c, _priority_rules.py and _classify.py.
    return [
        ("ReadableSpan._context", lambda: span._context is span.context),
        ("ReadableSpan._parent", lambda: span._parent is span.parent),
        ("ReadableSpan._name", lambda: span._name == span.name),
        ("ReadableSpan._kind", lambda: span._kind is span.kind and span._kind._value_ == 1),
        ("ReadableSpan._start_time", lambda: span._start_time == span.start_time),
        ("ReadableSpan._end_time", lambda: span._end_time == span.end_time),
        ("ReadableSpan._status", lambda: span._status is span.status),
        ("ReadableSpan._resource", lambda: span._resource is span.resource),
        (
            "ReadableSpan._instrumentation_scope",
            lambda: span._instrumentation_scope is span.instrumentation_scope,
        ),
        ("ReadableSpan._attributes", lambda: span._attributes is attributes),
        (
            "ReadableSpan._events",
            lambda: tuple(span._events._dq) == span.events and span._events.dropped == 0,
        ),
        ("ReadableSpan._links", lambda: tuple(span._links._dq) == span.links and span._links.dropped == 0),
        (
            "BoundedAttributes._dict",
            lambda: at._dict == {"a": 1} and at._immutable is True and at.dropped == 0,
        ),
        ("Event fields", lambda: (ev._name, ev._timestamp, ev._attributes) == ("ev", 7, event.attributes)),
        ("Link fields", lambda: ln._context is link.context and ln._attributes == link.attributes),
        ("Status fields", lambda: (st._status_code, st._description) == (status.status_code, "why")),
        ("TraceState._dict", lambda: dict(ts._dict) == {"k": "v"}),
        ("SpanContext tuple", lambda: tuple(ctx)[:2] == (ctx.trace_id, ctx.span_id) and ctx[2] is False),
    ]


def _check() -> str | None:
    """The first private read that does not match the public one, or None."""
    try:
        checks = _probe()
    except Exception as exc:  # noqa: BLE001 - the SDK's constructors changed: a finding, not a crash
        return f"building a probe span ({type(exc).__name__}: {exc})"
    for name, check in checks:
        try:
            if not check():
                return name
        except Exception:  # noqa: BLE001 - a field that raises is a mismatch too
            return name
    return None


mismatch: Final[str | None] = _check()
"""What differs from the SDK this release was built against, or None."""

SPAN_FIELDS: Final[bool] = mismatch is None
FAST_SPAN: Final[Any] = ReadableSpan if SPAN_FIELDS else _NoSuchClass
FAST_ATTRIBUTES: Final[Any] = BoundedAttributes if SPAN_FIELDS else _NoSuchClass
FAST_SPANS: Final[frozenset[type[Any]]] = (
    frozenset({ReadableSpan, _SdkSpan, *_SdkSpan.__subclasses__()}) if SPAN_FIELDS else frozenset()
)

if mismatch is not None:
    _logger.warning(
        "otel-sched: the installed OpenTelemetry SDK does not keep span data where this release reads it "
        "(%s); spans are read through the SDK's public properties instead (same output, more CPU). "
        "An otel-sched release made for this SDK restores the fast path.",
        mismatch,
    )

"""Tenant sources, inheritance within a trace, and holding spans until their tenant is known.

``tenant_key`` is a comma list of sources tried in order: ``tenant.id`` (the item's attribute,
then its resource's) or ``baggage:tenant.id`` (the W3C baggage entry).  An item none of them
names takes the tenant of its nearest in-process ancestor span that has one.

* Application thread (``on_start``, O(1)): :func:`capture_origin` keeps the span's parent context
  (its parent span and baggage) with the span: one attribute store.  Log records keep their context
  themselves.
* Scheduler thread: :class:`TenantResolver` walks those links, reading ancestors' *current*
  attributes, so a tenant set on a parent after its child started is seen.  When a span's tenant
  is still unknown while an ancestor runs (the tenant may be set on it later), :class:`Holder`
  holds the span until that ancestor ends -- or, with ``inherit_priority``, every span until its
  local root ends, so that an ERROR anywhere in the trace raises it whole.  Held spans are bounded
  in number and time; what is released at the bound takes what is known then.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace.propagation import _SPAN_KEY

from ._boost import mark_trace
from ._task import PriorityClass

__all__ = [
    "ORIGIN",
    "Holder",
    "Released",
    "TenantResolver",
    "capture_origin",
    "parse_tenant_sources",
]

# An attribute of an SDK span's attribute map (its ``_attributes``, a BoundedAttributes): the one
# object the live span and the ReadableSpan the SDK hands on_end share that takes a Python attribute
# without allocating.  Holds the span's parent Context.  Invisible to the span's mapping interface.
ORIGIN = "_otel_sched_origin"
BAGGAGE_PREFIX = "baggage:"
MAX_DEPTH = 64  # ancestors walked at most (a cycle cannot form, but a pathological chain is cut)
HOLD_SECONDS = 5.0  # longest a span is held waiting for an ancestor to end
_HIGH = int(PriorityClass.HIGH)
_EMPTY = Context()

Source = tuple[bool, str]  # (from baggage, key)


def parse_tenant_sources(spec: str) -> tuple[Source, ...]:
    """``"tenant.id, baggage:tenant.id"`` -> ((False, "tenant.id"), (True, "tenant.id"))."""
    expected = (
        "a comma list of attribute names and baggage:<key> entries, e.g. 'tenant.id, baggage:tenant.id'"
    )
    sources: list[Source] = []
    for part in spec.split(","):
        name = part.strip()
        if not name:
            raise ValueError(f"{expected} (an entry is empty)")
        if name.lower().startswith(BAGGAGE_PREFIX):
            key = name[len(BAGGAGE_PREFIX) :].strip()
            if not key:
                raise ValueError(f"{expected} ({name!r} names no baggage key)")
            source = (True, key)
        else:
            source = (False, name)
        if source in sources:
            raise ValueError(f"{expected} ({name!r} is listed twice)")
        sources.append(source)
    return tuple(sources)


def render_sources(sources: tuple[Source, ...]) -> str:
    return ",".join(BAGGAGE_PREFIX + key if bag else key for bag, key in sources)


def capture_origin(span: Any, context: Context | None) -> None:
    """on_start: keep the parent context with ``span`` (the processor inlines this)."""
    with contextlib.suppress(AttributeError):  # not an SDK span: it gets its own sources only
        span._attributes._otel_sched_origin = get_current() if context is None else context


class TenantResolver:
    """Finds the raw tenant value of a span or log record (scheduler thread)."""

    def __init__(self, sources: tuple[Source, ...]) -> None:
        self._sources = sources
        self.inherited = 0  # items whose tenant came from an ancestor span
        self._looked_at: tuple[Any, object | None, Context | None] | None = None  # by waits_for

    def _own(self, attributes: Mapping[str, Any] | None, resource: Any, baggage: Any) -> object | None:
        for from_baggage, key in self._sources:
            if from_baggage:
                value = baggage.get(key) if baggage else None
            else:
                value = _plain(attributes).get(key) if attributes else None
                if value is None and resource is not None:
                    value = _plain(resource.attributes).get(key)
            if value is not None and value != "":
                return value  # type: ignore[no-any-return]
        return None

    def _own_span(self, span: Any, origin: Any) -> object | None:
        attributes = getattr(span, "_attributes", None)  # the live map: no read-only proxy per lookup
        return self._own(
            attributes if attributes is not None else span.attributes,
            span.resource,
            origin.get(_BAGGAGE_KEY) if origin else None,
        )

    def _ancestors(self, origin: Any) -> Any:
        """Yield (ancestor span, its origin) from the nearest up, in-process SDK spans only."""
        for _ in range(MAX_DEPTH):
            parent = origin.get(_SPAN_KEY) if origin else None
            if not isinstance(parent, ReadableSpan):
                return
            origin = _origin(parent)
            yield parent, origin

    def _inherit(self, origin: Any) -> object | None:
        for ancestor, its_origin in self._ancestors(origin):
            value = self._own_span(ancestor, its_origin)
            if value is not None:
                self.inherited += 1
                return value
        return None

    def span_tenant(self, span: Any) -> object | None:
        cached = self._looked_at
        if cached is not None and cached[0] is span:  # the holder just looked: an ended span's own
            self._looked_at = None  # sources do not change
            _, value, origin = cached
        else:
            origin = _origin(span)
            value = self._own_span(span, origin)
        return value if value is not None else self._inherit(origin)

    def log_tenant(self, record: Any) -> object | None:
        log = record.log_record
        context = getattr(log, "context", None)
        if context:
            log.context = _EMPTY  # resolved now: the queued record must not keep the context alive
        get = context.get if isinstance(context, Mapping) else _none
        value = self._own(log.attributes, record.resource, get(_BAGGAGE_KEY))
        if value is not None:
            return value
        span = get(_SPAN_KEY)
        if not isinstance(span, ReadableSpan):
            return None
        origin = _origin(span)
        value = self._own_span(span, origin)
        if value is not None:
            self.inherited += 1
            return value
        return self._inherit(origin)

    def waits_for(self, span: Any, to_root: str | None) -> int:
        """Span id of the ancestor ``span`` should wait for, or 0 to classify it now.

        Waits for the nearest running ancestor while no tenant is known (it may yet get one);
        with ``to_root`` (the attribute a holder marks the spans it has seen with), for the local
        root until the holder has seen it: running, or ended and still on its way.
        """
        origin = _origin(span)
        own = self._own_span(span, origin)
        self._looked_at = (span, own, origin)  # span_tenant, right after, needs the same
        if not origin or not isinstance(origin.get(_SPAN_KEY), ReadableSpan):
            return 0  # a local root: nothing to wait for
        known = own is not None
        if known and not to_root:
            return 0
        root: Any = None
        for ancestor, its_origin in self._ancestors(origin):
            root = ancestor
            if known:
                if not to_root:
                    return 0
                continue
            if self._own_span(ancestor, its_origin) is not None:
                known = True
                if not to_root:
                    return 0
            elif ancestor.end_time is None:
                return _span_id(ancestor)
        if to_root and root is not None and not getattr(root._attributes, to_root, False):
            return _span_id(root)
        return 0


def _plain(attributes: Any) -> Any:
    """The SDK's BoundedAttributes as its plain dict: a missing key costs no KeyError inside ``get``."""
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else attributes


def _origin(span: Any) -> Context | None:
    origin = getattr(getattr(span, "_attributes", None), ORIGIN, None)
    return origin if isinstance(origin, Context) else None  # a Mock answers every name


def _none(key: object) -> None:
    return None


def _span_id(span: Any) -> int:
    context = span.context
    return context.span_id if context is not None else 0


class Released:
    """A span the holder let go at its bound: classified as it is, never held again."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


class Holder:
    """Spans waiting for an ancestor to end (scheduler thread only).

    Bounded: at most ``cap`` spans, each at most ``HOLD_SECONDS``; past either bound the oldest
    group is released (``timeouts``).  Groups are keyed by the awaited span id and released when
    that span arrives; a released span is checked again (it may wait for a further ancestor).
    ``requeue`` puts a span back at the front of the intake.
    """

    def __init__(
        self,
        resolver: TenantResolver,
        requeue: Callable[[Any], None],
        cap: int,
        priority_of: Callable[[Any], int] | None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._resolver = resolver
        self._requeue = requeue
        self.cap = cap
        self._priority_of = priority_of  # set: inherit_priority (hold each span until its local root ends)
        # inherit_priority: marks on a span's attribute map that this holder has seen it arrive.
        self._seen = f"_otel_sched_seen_{id(self):x}" if priority_of is not None else None
        self._hold = hold_seconds
        self._groups: OrderedDict[int, tuple[float, list[Any]]] = OrderedDict()
        self.count = 0
        self.timeouts = 0  # spans released at a bound rather than by their ancestor's end

    def park(self, span: Any, now: float) -> bool:
        """True: ``span`` is held.  Also lets go of the spans that waited for it.

        Never raises: an item it cannot look at goes on to be classified (and counted there).
        """
        try:
            if self._seen is not None:
                with contextlib.suppress(AttributeError):
                    setattr(span._attributes, self._seen, True)
                if self._priority_of is not None and self._priority_of(span) >= _HIGH:
                    mark_trace(span.context.trace_id, _HIGH)  # before its held relatives are classified
            if self._groups:
                group = self._groups.pop(span.context.span_id, None)
                if group is not None:
                    waiting = group[1]
                    self.count -= len(waiting)
                    for item in reversed(waiting):
                        self._requeue(item)
            awaited = self._resolver.waits_for(span, self._seen)
        except Exception:  # noqa: BLE001 - a hostile item must not stop the scheduler thread
            return False
        if not awaited:
            return False
        while self.count >= self.cap and self._groups:
            self._release_oldest()
        group = self._groups.get(awaited)
        if group is None:
            self._groups[awaited] = (now + self._hold, [span])
        else:
            group[1].append(span)
        self.count += 1
        return True

    def expire(self, now: float) -> None:
        groups = self._groups
        while groups and next(iter(groups.values()))[0] <= now:
            self._release_oldest()

    def release_all(self) -> None:
        while self._groups:
            self._release_oldest()

    def next_deadline(self) -> float | None:
        return next(iter(self._groups.values()))[0] if self._groups else None

    def _release_oldest(self) -> None:
        _, (_, waiting) = self._groups.popitem(last=False)
        self.count -= len(waiting)
        self.timeouts += len(waiting)
        for item in reversed(waiting):
            self._requeue(Released(item))

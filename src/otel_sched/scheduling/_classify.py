"""Classify: turn a raw span or log record into a :class:`Task`.

Runs on the scheduler thread, never on the application thread.  Everything that
depends on configuration (priority rules, tenant lookup, size estimate) is
resolved once into plain callables when the pipeline is built, so classifying an
item is a handful of calls with no configuration branches.

* priority -- the compiled rule list (see ``_priority_rules``); default: ERROR status
  or severity >= ERROR is HIGH, everything else NORMAL;
* tenant -- the first ``tenant_key`` source that names one (an attribute of the item, else of
  its resource; or a baggage entry), else the nearest in-process ancestor span's (see
  ``_tenancy``); at most ``max_tenants`` distinct tenants are tracked, one idle for
  :data:`TENANT_IDLE_SECONDS` is retired to make room, and the rest share
  :data:`OVERFLOW_TENANT` (counted);
* cost -- the item's predicted encoded size in bytes (an estimate from its fields);
* deadline -- enqueue time plus the class's max age.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import SpanContext

from .._sdk_fields import FAST_SPAN, FAST_SPANS
from ._boost import _MARKED, mark_trace
from ._express import Taker, express_taker
from ._task import PriorityClass, Signal, Task
from ._tenancy import TenantResolver, parse_tenant_sources

__all__ = [
    "DEFAULT_TENANT",
    "MAX_TENANT_LABEL",
    "OVERFLOW_TENANT",
    "TENANT_IDLE_SECONDS",
    "Classifier",
    "TenantRegistry",
    "estimate_log_bytes",
    "estimate_span_bytes",
]

DEFAULT_TENANT = "default"
OVERFLOW_TENANT = "__overflow__"
MAX_TENANT_LABEL = 128
# A tracked tenant unseen this long, with nothing queued, may give its place to a newcomer.  Shorter
# would churn labels (a sub-queue, a fair-share flow and a stats row per value) when the attribute
# holds a user or request id; the tail of such values shares the overflow tenant instead.
TENANT_IDLE_SECONDS = 30.0


class TenantRegistry:
    """Bounded map from raw tenant values to tenant labels.

    Guarantees: at most ``cap`` distinct labels besides :data:`OVERFLOW_TENANT` and
    :data:`DEFAULT_TENANT` are live at once; when full, the least recently seen
    tenant is retired if it has nothing queued and was last seen ``idle_seconds``
    or more before ``now``, else the newcomer goes to the overflow tenant.  Memory
    is O(cap) whatever the input, and so is the number of labels created per
    ``idle_seconds``.

    ``now`` (monotonic seconds) is set by the owner before labelling a chunk of items.
    """

    def __init__(
        self, cap: int, is_idle: Callable[[str], bool], idle_seconds: float = TENANT_IDLE_SECONDS
    ) -> None:
        self._cap = cap
        self._is_idle = is_idle
        self._idle_seconds = idle_seconds
        self._lru: OrderedDict[str, float] = OrderedDict()  # label -> when last seen
        self.now = 0.0
        self.overflowed = 0  # items mapped to the overflow tenant
        self.retired = 0  # idle tenants forgotten to make room

    def label(self, raw: object) -> str:
        key = raw if type(raw) is str else _render(raw)
        if len(key) > MAX_TENANT_LABEL:
            key = key[:MAX_TENANT_LABEL]
        lru = self._lru
        if key in lru:
            lru[key] = self.now
            lru.move_to_end(key)
            return key
        if len(lru) >= self._cap:
            oldest, seen = next(iter(lru.items()))
            if self.now - seen < self._idle_seconds or not self._is_idle(oldest):
                self.overflowed += 1
                return OVERFLOW_TENANT
            del lru[oldest]
            self.retired += 1
        lru[key] = self.now
        return key

    def __len__(self) -> int:
        return len(self._lru)


def _render(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, bytes):
        return raw.hex()
    if isinstance(raw, list | tuple):
        return ",".join(_render(v) for v in raw)
    try:
        return str(raw)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not break classification
        return f"<{type(raw).__name__}>"


# -- size estimates: close to the OTLP protobuf size, cheap to compute -----------------------------


def _value_bytes(value: object) -> int:
    t = type(value)
    if t is str:
        return len(value) + 4  # type: ignore[arg-type]
    if t is bool or t is int or t is float:
        return 11
    if t is bytes:
        return len(value) + 4  # type: ignore[arg-type]
    if isinstance(value, list | tuple):
        return 4 + sum(_value_bytes(v) + 2 for v in value)
    if isinstance(value, Mapping):
        return 4 + sum(len(str(k)) + 6 + _value_bytes(v) for k, v in value.items())
    return 16


def _attributes_bytes(attributes: Mapping[str, Any] | None) -> int:
    if not attributes:
        return 0
    total = 0
    for key, value in attributes.items():
        t = type(value)
        if t is str:
            total += len(key) + len(value) + 10
        elif t is int or t is float or t is bool:
            total += len(key) + 17
        else:
            total += len(key) + 6 + _value_bytes(value)
    return total


def estimate_span_bytes(span: Any) -> int:
    """Predicted OTLP size of one span message (ids, times, name, attributes, events, links).

    On the SDK's own span classes the fields are read directly: the public properties copy
    the events and links into tuples and wrap the attributes, under a lock each -- more than
    the rest of the scheduler's work on an item.
    """
    if span.__class__ in FAST_SPANS:
        name, attributes, events, links, status = (
            span._name,
            span._attributes,
            span._events,
            span._links,
            span._status,
        )
        # BoundedAttributes: its plain dict (iterating the mapping takes a lock and a lookup per key).
        attributes = getattr(attributes, "_dict", attributes)
    else:
        name, attributes, events, links, status = (
            span.name,
            span.attributes,
            span.events,
            span.links,
            span.status,
        )
    total = 64 + len(name or "") + _attributes_bytes(attributes)
    if events:
        for event in events:
            total += 16 + len(event.name or "") + _attributes_bytes(event.attributes)
    if links:
        for link in links:
            total += 40 + _attributes_bytes(link.attributes)
    description = status.description if status is not None else None
    if description:
        total += len(description) + 4
    return total


def estimate_log_bytes(record: Any) -> int:
    """Predicted OTLP size of one log record message."""
    log = record.log_record
    body = log.body
    total = 48 + (len(body) + 4 if type(body) is str else (_value_bytes(body) if body is not None else 0))
    total += _attributes_bytes(log.attributes)
    if log.severity_text:
        total += len(log.severity_text) + 2
    return total


# -- the classifier ---------------------------------------------------------------------------------


class Classifier:
    """Builds tasks.  Single-threaded (scheduler thread); counters are read by ``stats()``."""

    def __init__(
        self,
        signal: Signal,
        priority_of: Callable[[Any], int],
        tenant_key: str | None,
        tenants: TenantRegistry,
        max_age_seconds: list[float],
        inherit_priority: bool = False,
        native_estimate: Callable[[Any], int | None] | None = None,
    ) -> None:
        self._signal = signal
        self._priority_of = priority_of
        if inherit_priority:  # a HIGH item raises the rest of its trace, as mark_trace_important() does
            self._priority_of = _marking(priority_of, self._trace_id_of(signal))
        self.resolver = TenantResolver(parse_tenant_sources(tenant_key) if tenant_key else ())
        self._tenants = tenants
        self._max_age = max_age_seconds
        self._seqs = itertools.count(1)
        self.tenant_missing = 0  # items without the tenant attribute (a key that never matches shows here)
        self._tenant_of = self._tenant_lookup(tenant_key)
        self._trace_id: Callable[[Any], int] = self._trace_id_of(signal)
        self._estimate: Callable[[Any], int] = (
            estimate_span_bytes if signal is Signal.TRACES else estimate_log_bytes
        )
        # The compiled twin of estimate_span_bytes (same integer), or None where it leaves the span
        # to it: a third of the per-span classification time in Python.
        self._first_estimate: Callable[[Any], int | None] = (
            native_estimate if native_estimate is not None and signal is Signal.TRACES else self._estimate
        )

    def use_exact_cost(self) -> None:
        """The fast path encodes every item right after classification: skip the estimate."""
        self._estimate = self._first_estimate = _unit_cost

    def _tenant_lookup(self, key: str | None) -> Callable[[Any], str]:
        if key is None:
            return lambda item: DEFAULT_TENANT
        label = self._tenants.label
        resolve = self.resolver.span_tenant if self._signal is Signal.TRACES else self.resolver.log_tenant

        def tenant_of(item: Any) -> str:
            value = resolve(item)
            if value is None:
                self.tenant_missing += 1
                return DEFAULT_TENANT
            return label(value)

        return tenant_of

    @staticmethod
    def _trace_id_of(signal: Signal) -> Callable[[Any], int]:
        return _span_trace_id if signal is Signal.TRACES else _log_trace_id

    @property
    def tenant_inherited(self) -> int:
        return self.resolver.inherited

    def classify(self, item: Any, now: float) -> Task:
        priority = int(self._priority_of(item))
        trace_id = self._trace_id(item)
        if trace_id and _MARKED:  # nothing marked is the common case: no lookup then
            marked = _MARKED.get(trace_id)
            if marked is not None and marked > priority:
                priority = marked
        seq = next(self._seqs)
        cost = self._first_estimate(item)
        if cost is None:
            cost = self._estimate(item)
        return Task(
            item,
            priority,
            self._tenant_of(item),
            cost if cost > 0 else 1,
            trace_id,
            now,
            now + self._max_age[priority],
            seq,
        )

    def classifier(self) -> Callable[[Any, float], Task]:
        """:meth:`classify` as a closure over its collaborators (the per-item call the scheduler
        makes off the pre-encoded path): the same tasks, without an attribute lookup per field."""
        priority_of, trace_id_of, tenant_of = self._priority_of, self._trace_id, self._tenant_of
        first_estimate, estimate, max_age = self._first_estimate, self._estimate, self._max_age
        marked_traces = _MARKED  # mutated in place, never rebound
        next_seq = self._seqs.__next__

        def classify(item: Any, now: float) -> Task:
            priority = priority_of(item)  # an int: PriorityClassifier.function()
            trace_id = trace_id_of(item)
            if trace_id and marked_traces:
                marked = marked_traces.get(trace_id)
                if marked is not None and marked > priority:
                    priority = marked
            seq = next_seq()
            cost = first_estimate(item)
            if cost is None:
                cost = estimate(item)
            return Task(
                item,
                priority,
                tenant_of(item),
                cost if cost > 0 else 1,
                trace_id,
                now,
                now + max_age[priority],
                seq,
            )

        return classify

    def encoding_classifier(
        self, encode: Callable[[Any], bytes], envelopes: Callable[[Any], Any]
    ) -> Callable[[Any, float], Task]:
        """:meth:`classify` and the pre-encoded path's encoding, fused into one call per item.

        The task returned holds the item's OTLP bytes, its (resource, scope) envelopes and its
        exact cost (the encoded size plus the field header around it), not the item.  What
        ``encode`` or ``envelopes`` raise propagates before anything is counted; :meth:`classify`
        then builds the task that records the drop.
        """
        priority_of, trace_id_of, tenant_of = self._priority_of, self._trace_id, self._tenant_of
        max_age = self._max_age
        marked_traces = _MARKED  # mutated in place, never rebound

        def classify_encoded(item: Any, now: float) -> Task:
            priority = int(priority_of(item))
            trace_id = trace_id_of(item)
            if trace_id and marked_traces:
                marked = marked_traces.get(trace_id)
                if marked is not None and marked > priority:
                    priority = marked
            encoded = encode(item)
            envelope = envelopes(item)
            return Task(
                None,
                priority,
                tenant_of(item),
                len(encoded) + 4,
                trace_id,
                now,
                now + max_age[priority],
                next(self._seqs),
                encoded,
                0,
                envelope,
            )

        return classify_encoded

    def express_taker(self) -> Taker:
        """What takes an express batch off the intake, with this classifier's size estimate."""
        return express_taker(self._first_estimate, self._estimate)

    def reserve(self, n: int) -> int:
        """Numbers for ``n`` >= 1 items that are not classified (an express batch): the first of them."""
        first = next(self._seqs)
        deque(itertools.islice(self._seqs, n - 1), maxlen=0)  # advanced in C, not n calls
        return first

    @property
    def last_seq(self) -> int:
        # repr is "count(N)", N the next number: reading it does not advance the counter.
        return int(repr(self._seqs)[6:-1]) - 1


_HIGH = int(PriorityClass.HIGH)
_NORMAL = int(PriorityClass.NORMAL)


def _marking(priority_of: Callable[[Any], int], trace_id_of: Callable[[Any], int]) -> Callable[[Any], int]:
    def priority(item: Any) -> int:
        value = int(priority_of(item))
        if value >= _HIGH:
            trace_id = trace_id_of(item)
            if trace_id:
                mark_trace(trace_id, value)
        return value

    return priority


def _unit_cost(item: Any) -> int:
    return 1


def _span_trace_id(span: Any) -> int:
    # ReadableSpan.context and SpanContext.trace_id are properties over a field and a tuple slot.
    context = span._context if span.__class__ is FAST_SPAN else span.context
    if context is None:
        return 0
    return context[0] if context.__class__ is SpanContext else context.trace_id


def _log_trace_id(record: Any) -> int:
    trace_id = record.log_record.trace_id
    return trace_id if trace_id else 0

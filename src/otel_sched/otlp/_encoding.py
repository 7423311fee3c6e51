"""Hand-written OTLP protobuf encoder for spans and log records.

Each item is encoded once, off the application thread, into the bytes of its own
``Span`` / ``LogRecord`` message.  Batches are later assembled from those bytes under
cached Resource / InstrumentationScope envelopes: a repeated message field on the
wire is just a run of length-delimited records, so concatenating pre-encoded
messages is valid protobuf and nothing is re-encoded.

The output decodes (``ExportTraceServiceRequest.FromString`` /
``ExportLogsServiceRequest.FromString``) to a message equal to the one built by the
stock ``opentelemetry.exporter.otlp.proto.common`` encoders for the same input,
field presence included (e.g. ``Span.status``, ``LogRecord.body`` and the resource /
scope sub-messages are always present, even when empty, because stock sets them).
Fields are written in field-number order, so for most inputs the bytes are identical
to ``SerializeToString()`` too, but only decoded equality is guaranteed.

Corner cases
------------
Outcomes were checked against the stock encoder with the upb protobuf backend:

* Lone surrogates (``"\\ud800"``) cannot be encoded as UTF-8; protobuf raises
  ``UnicodeEncodeError`` when the stock encoder builds the message.  Inside an
  attribute key or value (at any nesting depth) the stock ``_encode_attributes``
  catches it, logs and drops that one key/value pair: we do the same.  Anywhere else
  (span/event name, trace_state, status message, severity_text, event_name, log body,
  scope name/version, schema urls) the stock encoder fails the whole request: we
  raise :class:`EncodingError` naming the field.  ``bytes`` given where a string is
  expected is accepted if it is valid UTF-8 (protobuf accepts it), otherwise refused.
* Values of unexpected types (``set``, arbitrary objects, anything that is not
  None/bool/str/int/float/bytes/Sequence/Mapping, also nested): stock
  ``_encode_value`` raises; ``_encode_attributes`` catches, logs and drops the pair,
  so we drop it (with a warning log).  In a log ``body``
  nothing catches it, so :class:`EncodingError` (field ``body``).
  ``bytearray``/``memoryview``/``range`` are ``Sequence`` s, so like stock they
  become arrays of ints; mapping keys are passed through ``str()``.
* Integers outside int64 in attribute values: protobuf raises ``ValueError``, so the
  pair is dropped; in a log body the record is refused.  Out-of-range timestamps
  (fixed64), dropped counts (uint32), trace flags (fixed32), ``severity_number``
  (int32 enum) and ids (128/64 bit) refuse the item, as do ``bool`` timestamps
  (protobuf rejects bools for integer fields).
* ``None`` attribute values and a ``None`` body encode as an empty ``AnyValue`` that
  is present; ``None`` string fields and ``None``/``0`` timestamps are omitted.
* Log ``trace_id``/``span_id`` equal to ``0`` are omitted; ``None`` ids make the
  stock encoder raise (``None.to_bytes``), so we refuse such a record too.
  ``severity_number`` without a ``.value`` (e.g. a plain ``int``) is omitted, as stock
  does with ``getattr(..., "value", None)``.
* ``Span.flags`` carries only the HAS_IS_REMOTE / IS_REMOTE bits (not the W3C trace
  flags) and ``Link.trace_state`` is never written: stock does exactly that.
* A ``None`` resource (which stock cannot encode) is encoded as an empty, present
  ``Resource`` instead of failing the item: a deliberate leniency.
* Grouping by resource/scope: stock groups by ``Resource``/``InstrumentationScope``
  hash+equality and writes the first object of each group.  Envelope keys (small
  ints interned per identity) reproduce that: resource = schema url + set of
  encoded attributes, which keeps ``True``/``1`` apart like stock's JSON hash; scope
  = name, version, schema url and attribute *equality*, which merges ``True``/``1``
  like stock.  They differ only for resources whose nested mapping values differ in
  key order, that hold distinct NaN objects, or whose attributes include values
  neither side can encode.

Assumptions: spans are normally encoded after they ended (as in
``SpanProcessor.on_end``; the SDK then refuses further changes, so their attribute
dicts and event/link lists are read without copying; an unended span is read from
copies); log record attributes may still change and are re-read from
a copy if another thread mutates them mid-encode.  Resource and
InstrumentationScope objects are immutable (the SDK makes their attributes
immutable): their envelopes are cached by identity.  All caches are bounded (cleared
when full) and safe to share between threads under the GIL.
"""

from __future__ import annotations

import itertools
import logging
import struct
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from operator import index as _index
from typing import Any, Final

from opentelemetry._logs import LogRecord
from opentelemetry._logs.severity import SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from .._sdk_fields import FAST_ATTRIBUTES, FAST_SPAN, FAST_SPANS, SPAN_FIELDS

__all__ = [
    "EncodingError",
    "Envelope",
    "assemble_logs",
    "assemble_traces",
    "encode_log",
    "encode_log_native",
    "encode_log_python",
    "encode_logs_request",
    "encode_span",
    "encode_span_native",
    "encode_span_python",
    "encode_spans_request",
    "estimate_span_native",
    "log_envelopes",
    "resource_envelope",
    "scope_envelope",
    "span_envelopes",
]

_logger = logging.getLogger(__name__)


class EncodingError(ValueError):
    """The item cannot be encoded; the stock OTLP encoder would refuse it as well.

    ``field`` names the offending protobuf field (dotted for nested ones).
    """

    def __init__(self, field: str, cause: object) -> None:
        self.field = field
        self.reason = str(cause)
        super().__init__(f"cannot encode field {field!r}: {self.reason}")

    def __reduce__(self) -> tuple[type[EncodingError], tuple[str, str]]:
        return type(self), (self.field, self.reason)


# ---------------------------------------------------------------------------
# wire primitives

_M64: Final = (1 << 64) - 1
_INT64_MIN: Final = -(1 << 63)
_INT64_END: Final = 1 << 63
_INT32_MIN: Final = -(1 << 31)
_INT32_END: Final = 1 << 31
_UINT32_END: Final = 1 << 32


_pack_bb: Final = struct.Struct("BB").pack
_pack_bbb: Final = struct.Struct("BBB").pack


def _varint_slow(n: int) -> bytes:
    """Varint of a non-negative int (callers mask negatives to 64 bits)."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return _pack_bb((n & 0x7F) | 0x80, n >> 7)
    if n < 0x200000:
        return _pack_bbb((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths of attributes, events and whole spans nearly always fit; a tuple index
# beats building the varint every time.
_VT_SIZE: Final = 2048
_VT: Final[tuple[bytes, ...]] = tuple(_varint_slow(i) for i in range(_VT_SIZE))


def _uvarint(n: int) -> bytes:
    if n < _VT_SIZE:
        return _VT[n]
    return _varint_slow(n)


def _ld(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field."""
    n = len(data)
    return tag + (_VT[n] if n < _VT_SIZE else _varint_slow(n)) + data


_pack_tag_q: Final = struct.Struct("<BQ").pack  # 1-byte tag + fixed64
_pack_tag_i: Final = struct.Struct("<BI").pack  # 1-byte tag + fixed32
_pack_tag_d: Final = struct.Struct("<Bd").pack  # 1-byte tag + double
# trace_id (field 1, 16 bytes) + span_id (field 2, 8 bytes) as big-endian halves.
_pack_ids: Final = struct.Struct(">HQQHQ").pack
_IDS_TAGS: Final = 0x0A10
_SID_TAGS: Final = 0x1208
# LogRecord.trace_id (field 9) and span_id (field 10)
_LOG_IDS_TAGS: Final = 0x4A10
_LOG_SID_TAGS: Final = 0x5208


def _str_bytes(value: object) -> bytes:
    """UTF-8 for a protobuf ``string`` field, accepting what protobuf accepts."""
    if value is None:
        return b""
    if isinstance(value, str):
        return str.encode(value)
    if isinstance(value, bytes):
        value.decode()  # protobuf accepts bytes for strings only if valid UTF-8
        return bytes(value)
    raise TypeError(f"expected str, got {type(value).__name__}")


def _str_field(tag: bytes, value: object) -> bytes:
    data = _str_bytes(value)
    return _ld(tag, data) if data else b""


def _fixed64_field(tag: int, value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    return _pack_tag_q(tag, value) if value else b""


def _uint32_field(tag: bytes, value: object) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    if not 0 <= value < _UINT32_END:
        raise ValueError(f"value out of uint32 range: {value}")
    return tag + _uvarint(value) if value else b""


def _int32_enum_field(tag: bytes, value: object) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    value = _index(value)
    if not _INT32_MIN <= value < _INT32_END:
        raise ValueError(f"value out of int32 range: {value}")
    return tag + _uvarint(value & _M64) if value else b""


# ---------------------------------------------------------------------------
# AnyValue / KeyValue


def _any(value: Any) -> bytes:
    """Body of an ``AnyValue`` message; same type dispatch order as stock ``_encode_value``."""
    cls = value.__class__
    # Exact-type fast paths; the isinstance chain below is the authoritative order.
    if cls is str:
        return _ld(b"\x0a", value.encode())
    if cls is int:
        if not _INT64_MIN <= value < _INT64_END:
            raise ValueError(f"value out of int64 range: {value}")
        return b"\x18" + _uvarint(value & _M64)
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _ld(b"\x0a", str.encode(value))
    if isinstance(value, int):
        ivalue = _index(value)
        if not _INT64_MIN <= ivalue < _INT64_END:
            raise ValueError(f"value out of int64 range: {ivalue}")
        return b"\x18" + _uvarint(ivalue & _M64)
    if isinstance(value, float):
        return _pack_tag_d(0x21, value)
    if isinstance(value, bytes):
        return _ld(b"\x3a", bytes(value))
    if isinstance(value, Sequence):
        array = b"".join([_ld(b"\x0a", _any(item)) for item in value])
        return _ld(b"\x2a", array)
    if isinstance(value, Mapping):
        kvlist = b"".join([_ld(b"\x0a", _kv_body(str(k), v)) for k, v in value.items()])
        return _ld(b"\x32", kvlist)
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")


def _kv_body(key: object, value: Any) -> bytes:
    keyb = _str_bytes(key)
    anyb = _any(value)
    if keyb:
        return _ld(b"\x0a", keyb) + _ld(b"\x12", anyb)
    return _ld(b"\x12", anyb)


def _kv_field(tag: bytes, key: object, value: Any) -> bytes:
    """A whole ``KeyValue`` field, or b"" when stock would log and drop the pair."""
    try:
        return _ld(tag, _kv_body(key, value))
    except Exception as exc:  # noqa: BLE001 - stock catches everything here, logs and drops the pair
        _logger.warning("Dropping attribute %r that cannot be OTLP-encoded: %r", key, exc)
        return b""


# Encoded KeyValue fields, one dict per field tag so an entry is the complete field,
# looked up by the mapping's (key, value) item tuple itself: no tuple to build in
# the hot loop.  True == 1 == 1.0 (and 0.0 == -0.0) hash and compare equal, so
# only exact-str values are stored as bare bytes (no other builtin equals a str);
# any other type is stored as (type, field) and a hit is used only if the type of
# the value at hand matches.
_CACHE_MAX: Final = 4096
_CACHE_MAX_LEN: Final = 128  # longer values are rarely repeated and cost memory

_SPAN_KV: Final[dict[Hashable, Any]] = {}
_EVENT_KV: Final[dict[Hashable, Any]] = {}
_LINK_KV: Final[dict[Hashable, Any]] = {}
_LOG_KV: Final[dict[Hashable, Any]] = {}
# Whole string fields by value: span names, event names, severity texts.
_SPAN_NAMES: Final[dict[Hashable, Any]] = {}
_EVENT_NAMES: Final[dict[Hashable, Any]] = {}
_SEVERITY_TEXTS: Final[dict[Hashable, Any]] = {}
# Per attribute key: [KeyValue.key field + the tag of KeyValue.value, store budget].
# Misses are mostly fresh values under a known key, so only the value is encoded.
# Values under a key that keeps missing (urls, ids, ports) are seldom seen twice;
# storing each would cost time and flush the hot entries out of the bounded caches.
# So past _KEY_BUDGET stores (per cache generation) only every 8th miss of the key is
# stored: values that do repeat still get in, a few misses later.
_KEYS: Final[dict[Hashable, Any]] = {}
_KEY_BUDGET: Final = 256
_CACHES: Final = (
    _SPAN_KV,
    _EVENT_KV,
    _LINK_KV,
    _LOG_KV,
    _SPAN_NAMES,
    _EVENT_NAMES,
    _SEVERITY_TEXTS,
    _KEYS,
)

# tag + length varint as one object, for the hot length-delimited fields: indexing
# a tuple beats concatenating (and leaves one part fewer to join).
_HDR_SIZE: Final = 256


def _headers(tag: int) -> tuple[bytes, ...]:
    return tuple(bytes((tag,)) + _VT[n] for n in range(_HDR_SIZE))


_SPAN_KV_HDRS: Final = _headers(0x4A)
_EVENT_KV_HDRS: Final = _headers(0x1A)
_LINK_KV_HDRS: Final = _headers(0x22)
_LOG_KV_HDRS: Final = _headers(0x32)
_EVENT_HDRS: Final = _headers(0x5A)
_LINK_HDRS: Final = _headers(0x6A)
# AnyValue length + string_value tag + string length, by the string's UTF-8 length.
_STR_HEADS: Final = tuple(_VT[n + 1 + len(_VT[n])] + b"\x0a" + _VT[n] for n in range(_HDR_SIZE))
# AnyValue length + int_value tag, by the length of the varint.
_INT_HEADS: Final = tuple(bytes((n + 1, 0x18)) for n in range(11))


def _store(cache: dict[Hashable, Any], key: Hashable, entry: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # crude but bounded; hot entries come back on their next miss
    cache[key] = entry


def _cacheable(cls: type, value: Any) -> bool:
    if cls is int or cls is bool or value is None:
        return True
    if cls is bytes or cls is str:
        return len(value) <= _CACHE_MAX_LEN
    if cls is float:
        # 0.0 == -0.0 would share an entry; NaN never finds itself.
        return bool(value != 0.0 and value == value)
    if cls is tuple:
        # All-str only: (True,) == (1,) and a type check on the tuple cannot tell.
        return len(value) <= 16 and all(v.__class__ is str and len(v) <= _CACHE_MAX_LEN for v in value)
    return False


def _key_entry(key: str) -> list[Any]:
    """New ``_KEYS`` entry for ``key``; empty if its pairs take the general path."""
    if len(key) > _CACHE_MAX_LEN:
        return []  # its pairs are not cached: nothing to gain here
    try:
        kb = key.encode()
    except UnicodeEncodeError:
        return []
    entry = [_ld(b"\x0a", kb) + b"\x12" if kb else b"\x12", _KEY_BUDGET]
    if len(_KEYS) >= _CACHE_MAX:
        _KEYS.clear()
    _KEYS[key] = entry
    return entry


def _kv_miss(cache: dict[Hashable, Any], hdrs: tuple[bytes, ...], item: tuple[Any, Any]) -> bytes:
    """Field (tag: ``hdrs[0][0]``) for an attribute item not (usably) found in ``cache``."""
    key, value = item
    cls = value.__class__
    # Fast paths for the usual misses (fresh ids, urls, ports) under a str key.
    if key.__class__ is str and (cls is str or cls is int):
        entry = _KEYS.get(key) or _key_entry(key)
        if entry:
            prefix = entry[0]
            stored: Any
            if cls is str:
                try:
                    vb = value.encode()
                except UnicodeEncodeError:
                    return _kv_general(cache, hdrs, item)
                nv = len(vb)
                if nv < _HDR_SIZE:
                    head = _STR_HEADS[nv]
                else:
                    nh = _varint_slow(nv)
                    head = _uvarint(1 + len(nh) + nv) + b"\x0a" + nh
                n = len(prefix) + len(head) + nv
                field = b"".join(
                    (hdrs[n] if n < _HDR_SIZE else hdrs[0][:1] + _varint_slow(n), prefix, head, vb)
                )
                if len(value) > _CACHE_MAX_LEN:
                    return field
                stored = field
            else:
                if 0 <= value < _VT_SIZE:
                    vb = _VT[value]
                elif 0 <= value < 0x200000:  # ports, pids, small ids: 2 or 3 bytes, no call
                    vb = (
                        _pack_bb((value & 0x7F) | 0x80, value >> 7)
                        if value < 0x4000
                        else _pack_bbb((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14)
                    )
                elif _INT64_MIN <= value < _INT64_END:
                    vb = _varint_slow(value & _M64)
                else:
                    return _kv_general(cache, hdrs, item)  # stock logs and drops it
                head = _INT_HEADS[len(vb)]
                n = len(prefix) + len(head) + len(vb)
                field = b"".join(
                    (hdrs[n] if n < _HDR_SIZE else hdrs[0][:1] + _varint_slow(n), prefix, head, vb)
                )
                stored = (int, field)
            budget = entry[1] - 1
            entry[1] = budget
            if budget >= 0 or not budget & 7:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                    _KEYS.clear()  # a new generation: budgets start over
                cache[item] = stored
            return field
    return _kv_general(cache, hdrs, item)


def _kv_general(cache: dict[Hashable, Any], hdrs: tuple[bytes, ...], item: tuple[Any, Any]) -> bytes:
    key, value = item
    cls = value.__class__
    field = _kv_field(hdrs[0][:1], key, value)
    if field and key.__class__ is str and len(key) <= _CACHE_MAX_LEN and _cacheable(cls, value):
        _store(cache, item, field if cls is str else (cls, field))
    return field


def _attrs(items: Iterable[Any], cache: dict[Hashable, Any], hdrs: tuple[bytes, ...]) -> bytes:
    """Concatenated KeyValue fields (tag: ``hdrs[0][0]``) for mapping ``items``."""
    get = cache.get
    out: list[bytes] = []
    append = out.append
    for item in items:
        try:
            entry = get(item)
        except TypeError:  # unhashable value
            entry = None
        if entry.__class__ is not bytes:
            if entry is not None and entry[0] is item[1].__class__:
                entry = entry[1]
            else:
                entry = _kv_miss(cache, hdrs, item)
        append(entry)
    return b"".join(out)


def _attribute_fields(tag: bytes, attributes: Any) -> list[bytes]:
    """Uncached KeyValue fields (for resources and scopes, encoded once per object)."""
    if not attributes:
        return []
    fields = [_kv_field(tag, key, value) for key, value in attributes.items()]
    return [field for field in fields if field]


def _name_miss(cache: dict[Hashable, Any], tag: bytes, name: Any) -> bytes:
    field = _str_field(tag, name)
    if name.__class__ is str and len(name) <= _CACHE_MAX_LEN:
        _store(cache, name, field)
    return field


def _unwrap(attributes: Any) -> tuple[Any, int]:
    """(mapping to iterate, dropped count) without the ABC isinstance checks and the
    Mapping mixin's per-key ``__getitem__`` that BoundedAttributes otherwise costs."""
    cls = attributes.__class__
    if cls is FAST_ATTRIBUTES:
        # Copied unless immutable; dict.copy() is atomic under the GIL.
        return (attributes._dict if attributes._immutable else attributes._dict.copy()), attributes.dropped
    if attributes is None or cls is dict:
        return attributes, 0
    return attributes, (attributes.dropped if isinstance(attributes, BoundedAttributes) else 0)


# ---------------------------------------------------------------------------
# spans

# SDK kind value + 1 == proto SpanKind.
_KIND: Final[dict[object, bytes]] = {kind: b"\x30" + bytes((kind.value + 1,)) for kind in SpanKind}
# Span.flags (field 16, fixed32): HAS_IS_REMOTE always, IS_REMOTE for remote parents.
_FLAGS_LOCAL: Final = b"\x85\x01" + (0x100).to_bytes(4, "little")
_FLAGS_REMOTE: Final = b"\x85\x01" + (0x300).to_bytes(4, "little")
_LINK_FLAGS_LOCAL: Final = _pack_tag_i(0x35, 0x100)
_LINK_FLAGS_REMOTE: Final = _pack_tag_i(0x35, 0x300)
# trace_id, span_id, parent_span_id (fields 1, 2, 4)
_pack_ids_parent: Final = struct.Struct(">HQQHQHQ").pack
_PARENT_TAG: Final = 0x2208
# kind, start and end time (fields 6, 7, 8)
_pack_kind_times: Final = struct.Struct("<BBBQBQ").pack


def _status_body(code: int, message: object) -> bytes:
    return _str_field(b"\x12", message) + _int32_enum_field(b"\x18", code)


# Status (field 15) is always present in stock output, even when empty.
_STATUS_BY_VALUE: Final = tuple(_ld(b"\x7a", _status_body(v, None)) for v in range(3))
assert tuple(code.value for code in StatusCode) == (0, 1, 2)


def _encode_status(status: Any) -> bytes:
    if status is None:
        return b""
    return _ld(b"\x7a", _status_body(status.status_code.value, status.description))


def _trace_state(trace_state: Any) -> str:
    return ",".join([f"{key}={value}" for key, value in trace_state.items()])


_SPAN_PROPERTIES: Final = (
    "name",
    "parent",
    "kind",
    "start_time",
    "end_time",
    "attributes",
    "events",
    "links",
    "status",
    "dropped_attributes",
    "dropped_events",
    "dropped_links",
    "resource",
    "instrumentation_scope",
)
_CONTEXT_GETTERS: Final = (ReadableSpan.get_span_context, SdkSpan.get_span_context)
_TRUSTED_SPAN_TYPES: Final[dict[type, bool]] = {}


def _trusted_span_type(cls: type) -> bool:
    """Whether ``cls`` reads its data straight from ReadableSpan's private fields, so
    the encoder may too (skipping the MappingProxy / tuple copies the properties make)."""
    trusted = all(getattr(cls, p, None) is getattr(ReadableSpan, p) for p in _SPAN_PROPERTIES) and any(
        getattr(cls, "get_span_context", None) is getter for getter in _CONTEXT_GETTERS
    )
    if len(_TRUSTED_SPAN_TYPES) < 64:
        _TRUSTED_SPAN_TYPES[cls] = trusted
    return trusted


def _list_and_dropped(seq: Any, ended: bool) -> tuple[Any, int]:
    cls = seq.__class__
    if cls is BoundedList:
        # An ended span's lists no longer change: iterate the deque, no copy.
        return (seq._dq if ended else tuple(seq._dq)), seq.dropped
    if cls is tuple or cls is list:
        return seq, 0
    return seq, (seq.dropped if isinstance(seq, BoundedList) else 0)


def _encode_span_fields(span: ReadableSpan) -> bytes:
    """Serialized ``opentelemetry.proto.trace.v1.Span`` message for an ended ``span`` (pure Python)."""
    # `field` only names the culprit in the error message; a local store is ~free.
    field = "span"
    try:
        sp: Any = span
        cls = sp.__class__
        trusted = cls is ReadableSpan or _TRUSTED_SPAN_TYPES.get(cls)
        if trusted is None:
            trusted = _trusted_span_type(cls)
        if trusted:
            ctx = sp._context
            parent = sp._parent
            name = sp._name
            kind = sp._kind
            start = sp._start_time
            end = sp._end_time
            status = sp._status
            field = "attributes"
            attributes = sp._attributes
            ended = end is not None
            if attributes.__class__ is BoundedAttributes:
                # No copy once ended: the SDK refuses changes to an ended span.
                dropped_attributes = attributes.dropped
                attributes = attributes._dict if ended else attributes._dict.copy()
            else:
                attributes, dropped_attributes = _unwrap(attributes)
            field = "events"
            events = sp._events
            if events.__class__ is BoundedList:
                # An ended span's lists no longer change: iterate the deque, no copy.
                # (The SDK's stub for BoundedList does not declare the deque.)
                dropped_events = events.dropped
                events = events._dq if ended else tuple(events._dq)  # type: ignore[attr-defined]
            else:
                events, dropped_events = _list_and_dropped(events, ended)
            field = "links"
            links = sp._links
            if links.__class__ is BoundedList:
                dropped_links = links.dropped
                links = links._dq if ended else tuple(links._dq)  # type: ignore[attr-defined]
            else:
                links, dropped_links = _list_and_dropped(links, ended)
        else:
            ctx = sp.get_span_context()
            parent = sp.parent
            name = sp.name
            kind = sp.kind
            start = sp.start_time
            end = sp.end_time
            attributes = sp.attributes
            events = sp.events
            links = sp.links
            status = sp.status
            dropped_attributes = sp.dropped_attributes
            dropped_events = sp.dropped_events
            dropped_links = sp.dropped_links

        field = "trace_id"
        if ctx.__class__ is SpanContext:
            tid = ctx[0]
            sid = ctx[1]
            trace_state = ctx[4]
        else:
            tid = ctx.trace_id
            sid = ctx.span_id
            trace_state = ctx.trace_state
        field = "parent_span_id"
        if parent:
            if parent.__class__ is SpanContext:
                psid = parent[1]
                flags = _FLAGS_REMOTE if parent[2] else _FLAGS_LOCAL
            else:
                psid = parent.span_id
                flags = _FLAGS_REMOTE if parent.is_remote else _FLAGS_LOCAL
        else:
            psid = None
            flags = _FLAGS_LOCAL
        field = "trace_state"
        if trace_state is not None and (
            trace_state._dict if trace_state.__class__ is TraceState else trace_state
        ):
            ids = _pack_ids(_IDS_TAGS, tid >> 64, tid & _M64, _SID_TAGS, sid) + _str_field(
                b"\x1a", _trace_state(trace_state)
            )
            if psid is not None:
                field = "parent_span_id"
                ids += b"\x22\x08" + psid.to_bytes(8, "big")
        elif psid is not None:
            field = "trace_id"
            ids = _pack_ids_parent(_IDS_TAGS, tid >> 64, tid & _M64, _SID_TAGS, sid, _PARENT_TAG, psid)
        else:
            field = "trace_id"
            ids = _pack_ids(_IDS_TAGS, tid >> 64, tid & _M64, _SID_TAGS, sid)
        field = "name"
        name_field = _SPAN_NAMES.get(name) or _name_miss(_SPAN_NAMES, b"\x2a", name)
        field = "start_time_unix_nano/end_time_unix_nano"
        if (
            kind.__class__ is SpanKind
            and start.__class__ is int
            and end.__class__ is int
            and start > 0
            and end > 0
        ):
            parts = [ids, name_field, _pack_kind_times(0x30, kind._value_ + 1, 0x39, start, 0x41, end)]
        else:
            parts = [ids, name_field]
            field = "kind"
            parts.append(_KIND[kind])
            field = "start_time_unix_nano"
            parts.append(_fixed64_field(0x39, start))
            field = "end_time_unix_nano"
            parts.append(_fixed64_field(0x41, end))
        append = parts.append
        field = "attributes"
        if attributes:
            # _attrs inlined: the fields go straight into `parts`, no join of their own.
            get = _SPAN_KV.get
            for item in attributes.items():
                try:
                    entry = get(item)
                except TypeError:  # unhashable value
                    entry = None
                if entry.__class__ is not bytes:
                    if entry is not None and entry[0] is item[1].__class__:
                        entry = entry[1]
                    else:
                        entry = _kv_miss(_SPAN_KV, _SPAN_KV_HDRS, item)
                append(entry)
        field = "dropped_attributes_count"
        if dropped_attributes:
            append(_uint32_field(b"\x50", dropped_attributes))
        field = "events"
        if events:
            names_get = _EVENT_NAMES.get
            eget = _EVENT_KV.get
            for event in events:
                if event.__class__ is Event:
                    ename = event._name
                    ets = event._timestamp
                    eattrs = event._attributes
                    if eattrs.__class__ is BoundedAttributes and eattrs._immutable:
                        edropped = eattrs.dropped
                        eattrs = eattrs._dict
                    else:
                        eattrs, edropped = _unwrap(eattrs)
                else:
                    ename = event.name
                    ets = event.timestamp
                    eattrs = event.attributes
                    edropped = event.dropped_attributes
                ts_field = (
                    _pack_tag_q(0x09, ets) if ets.__class__ is int and ets > 0 else _fixed64_field(0x09, ets)
                )
                name_field = names_get(ename) or _name_miss(_EVENT_NAMES, b"\x12", ename)
                # The event's fields go into `parts` as they are; its header, once
                # their total length is known, into the slot reserved for it.
                at = len(parts)
                append(b"")
                append(ts_field)
                append(name_field)
                n = len(ts_field) + len(name_field)
                if eattrs:
                    for item in eattrs.items():
                        try:
                            entry = eget(item)
                        except TypeError:  # unhashable value
                            entry = None
                        if entry.__class__ is not bytes:
                            if entry is not None and entry[0] is item[1].__class__:
                                entry = entry[1]
                            else:
                                entry = _kv_miss(_EVENT_KV, _EVENT_KV_HDRS, item)
                        append(entry)
                        n += len(entry)
                if edropped:
                    entry = _uint32_field(b"\x20", edropped)
                    append(entry)
                    n += len(entry)
                parts[at] = _EVENT_HDRS[n] if n < _HDR_SIZE else b"\x5a" + _varint_slow(n)
        field = "dropped_events_count"
        if dropped_events:
            append(_uint32_field(b"\x60", dropped_events))
        field = "links"
        if links:
            lget = _LINK_KV.get
            for link in links:
                if link.__class__ is Link:
                    lctx = link._context
                    lattrs = link._attributes
                    if lattrs.__class__ is BoundedAttributes and lattrs._immutable:
                        ldropped = lattrs.dropped
                        lattrs = lattrs._dict
                    else:
                        lattrs, ldropped = _unwrap(lattrs)
                else:
                    lctx = link.context
                    lattrs = link.attributes
                    ldropped = link.dropped_attributes
                if lctx.__class__ is SpanContext:
                    tid = lctx[0]
                    sid = lctx[1]
                    lremote = lctx[2]
                else:
                    tid = lctx.trace_id
                    sid = lctx.span_id
                    lremote = lctx and lctx.is_remote
                # Laid out like an event: header slot, then the fields as they are.
                at = len(parts)
                append(b"")
                append(_pack_ids(_IDS_TAGS, tid >> 64, tid & _M64, _SID_TAGS, sid))
                n = 33  # 28 bytes of ids + 5 of flags
                if lattrs:
                    for item in lattrs.items():
                        try:
                            entry = lget(item)
                        except TypeError:  # unhashable value
                            entry = None
                        if entry.__class__ is not bytes:
                            if entry is not None and entry[0] is item[1].__class__:
                                entry = entry[1]
                            else:
                                entry = _kv_miss(_LINK_KV, _LINK_KV_HDRS, item)
                        append(entry)
                        n += len(entry)
                if ldropped:
                    entry = _uint32_field(b"\x28", ldropped)
                    append(entry)
                    n += len(entry)
                append(_LINK_FLAGS_REMOTE if lremote else _LINK_FLAGS_LOCAL)
                parts[at] = _LINK_HDRS[n] if n < _HDR_SIZE else b"\x6a" + _varint_slow(n)
        field = "dropped_links_count"
        if dropped_links:
            append(_uint32_field(b"\x70", dropped_links))
        field = "status"
        if status.__class__ is Status and not status._description:
            append(_STATUS_BY_VALUE[status._status_code._value_])
        else:
            append(_encode_status(status))
        append(flags)
        return b"".join(parts)
    except EncodingError:
        raise
    except Exception as exc:
        raise EncodingError(field, exc) from exc


def _encode_span_public(span: ReadableSpan) -> bytes:
    """The same message through the SDK's own encoder, which reads only public properties: for an
    SDK whose private fields moved (``_sdk_fields``)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    try:
        request = encode_spans([span])
        return bytes(request.resource_spans[0].scope_spans[0].spans[0].SerializeToString())
    except Exception as exc:
        raise EncodingError("span", exc) from exc


encode_span_python: Callable[[ReadableSpan], bytes] = (
    _encode_span_fields if SPAN_FIELDS else _encode_span_public
)
"""Serialized ``opentelemetry.proto.trace.v1.Span`` message for an ended ``span`` (pure Python)."""


# The compiled encoder (``_speedups.c``, built by ``pip install`` where a C compiler is found)
# writes the same bytes for the spans it handles -- a trusted class with the SDK's own part
# types -- and hands every other span to encode_span_python, which then also judges new classes.
_speedups: Any
try:
    from . import _speedups
except ImportError:  # built without a compiler: the Python encoder alone
    _speedups = None
if not SPAN_FIELDS:  # it reads the same private fields
    _speedups = None
if _speedups is None:
    encode_span_native: Callable[[ReadableSpan], bytes] | None = None
    try_encode_span_native: Callable[[ReadableSpan], bytes | None] | None = None
    estimate_span_native: Callable[[Any], int | None] | None = None
else:
    _speedups.configure(
        encode_span_python,
        _TRUSTED_SPAN_TYPES,
        ReadableSpan,
        BoundedAttributes,
        BoundedList,
        Event,
        Link,
        SpanContext,
        TraceState,
        Status,
        SpanKind,
    )
    encode_span_native = _speedups.encode_span
    try_encode_span_native = _speedups.try_encode_span
    # scheduling._classify.estimate_span_bytes in C for the spans it reads (None: the Python one decides).
    _speedups.configure_estimate(FAST_SPANS)
    estimate_span_native = _speedups.estimate_span

encode_span: Callable[[ReadableSpan], bytes] = encode_span_native or encode_span_python
"""Serialized ``opentelemetry.proto.trace.v1.Span`` message for an ended ``span``: the compiled
encoder where it was built, else the pure-Python one (same output)."""


# ---------------------------------------------------------------------------
# log records

_SEVERITY_BY_VALUE: Final = {sev.value: _int32_enum_field(b"\x10", sev.value) for sev in SeverityNumber}
# LogRecord.body (field 5) header of a string body, by its UTF-8 length.
_BODY_HEADS: Final = tuple(b"\x2a" + head for head in _STR_HEADS)


def _encode_log_fields(record: ReadableLogRecord) -> bytes:
    """Serialized ``opentelemetry.proto.logs.v1.LogRecord`` message for ``record`` (pure Python)."""
    field = "log_record"
    try:
        lr: Any = record.log_record
        field = "time_unix_nano"
        ts = lr.timestamp
        if ts.__class__ is int and ts > 0:
            parts = [_pack_tag_q(0x09, ts)]
        else:
            parts = [] if ts is None else [_fixed64_field(0x09, ts)]
        append = parts.append
        field = "severity_number"
        severity = lr.severity_number
        if severity is not None:
            if severity.__class__ is SeverityNumber:
                append(_SEVERITY_BY_VALUE[severity._value_])
            else:
                value = getattr(severity, "value", None)
                if value is not None:
                    append(_int32_enum_field(b"\x10", value))
        field = "severity_text"
        text = lr.severity_text
        if text:
            append(_SEVERITY_TEXTS.get(text) or _name_miss(_SEVERITY_TEXTS, b"\x1a", text))
        field = "body"
        # Present even for a None body (stock sets an empty AnyValue).
        body = lr.body
        if body.__class__ is str:
            vb = body.encode()
            n = len(vb)
            if n < _HDR_SIZE:
                append(_BODY_HEADS[n])
                append(vb)
            else:
                append(_ld(b"\x2a", _ld(b"\x0a", vb)))
        else:
            append(_ld(b"\x2a", _any(body)))
        field = "attributes"
        attributes = lr.attributes
        if attributes.__class__ is FAST_ATTRIBUTES and record.__class__ is ReadableLogRecord:
            dropped = attributes.dropped
            attributes = attributes._dict
        else:
            attributes, dropped = _unwrap(attributes)
            if record.__class__ is not ReadableLogRecord:
                dropped = record.dropped_attributes
        if attributes:
            mark = len(parts)
            try:
                # _attrs inlined, as in encode_span.
                get = _LOG_KV.get
                for item in attributes.items():
                    try:
                        entry = get(item)
                    except TypeError:  # unhashable value
                        entry = None
                    if entry.__class__ is not bytes:
                        if entry is not None and entry[0] is item[1].__class__:
                            entry = entry[1]
                        else:
                            entry = _kv_miss(_LOG_KV, _LOG_KV_HDRS, item)
                    append(entry)
            except RuntimeError:
                # Mutated by another thread mid-iteration (log records stay mutable):
                # retry on a copy, which is atomic under the GIL.
                del parts[mark:]
                append(_attrs(dict(attributes).items(), _LOG_KV, _LOG_KV_HDRS))
        field = "dropped_attributes_count"
        if dropped:
            append(_uint32_field(b"\x38", dropped))
        field = "flags"
        flags = lr.trace_flags
        if flags.__class__ is not TraceFlags:
            flags = int(flags)
        if flags:
            append(_pack_tag_i(0x45, flags))
        field = "trace_id"
        tid = lr.trace_id
        sid = lr.span_id
        if tid.__class__ is int and sid.__class__ is int and tid > 0 and sid > 0:
            append(_pack_ids(_LOG_IDS_TAGS, tid >> 64, tid & _M64, _LOG_SID_TAGS, sid))
        else:
            if tid != 0:
                append(b"\x4a\x10" + tid.to_bytes(16, "big"))
            field = "span_id"
            if sid != 0:
                append(b"\x52\x08" + sid.to_bytes(8, "big"))
        field = "observed_time_unix_nano"
        ts = lr.observed_timestamp
        if ts.__class__ is int and ts > 0:
            append(_pack_tag_q(0x59, ts))
        elif ts is not None:
            append(_fixed64_field(0x59, ts))
        field = "event_name"
        name = lr.event_name
        if name:
            append(_str_field(b"\x62", name))
        return b"".join(parts)
    except EncodingError:
        raise
    except Exception as exc:
        raise EncodingError(field, exc) from exc


def _encode_log_public(record: ReadableLogRecord) -> bytes:
    """The same message through the SDK's own encoder (see ``_encode_span_public``)."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    try:
        request = encode_logs([record])
        return bytes(request.resource_logs[0].scope_logs[0].log_records[0].SerializeToString())
    except Exception as exc:
        raise EncodingError("log_record", exc) from exc


encode_log_python: Callable[[ReadableLogRecord], bytes] = (
    _encode_log_fields if SPAN_FIELDS else _encode_log_public
)
"""Serialized ``opentelemetry.proto.logs.v1.LogRecord`` message for ``record`` (pure Python)."""


# The compiled encoder's log records: an exact ReadableLogRecord over the API's LogRecord, with
# the SDK's part types; any other record goes to encode_log_python.
if _speedups is not None:
    _speedups.configure_logs(encode_log_python, ReadableLogRecord, LogRecord, SeverityNumber, TraceFlags)
    encode_log_native: Callable[[ReadableLogRecord], bytes] | None = _speedups.encode_log
    try_encode_log_native: Callable[[ReadableLogRecord], bytes | None] | None = _speedups.try_encode_log
else:
    encode_log_native = try_encode_log_native = None

encode_log: Callable[[ReadableLogRecord], bytes] = encode_log_native or encode_log_python
"""Serialized ``opentelemetry.proto.logs.v1.LogRecord`` message for ``record``: the compiled
encoder where it was built, else the pure-Python one (same output)."""


# ---------------------------------------------------------------------------
# envelopes


class Envelope:
    """Encoded resource or instrumentation scope, shared by every item under it.

    ``data`` is the serialized ``Resource`` / ``InstrumentationScope`` message and
    ``schema_url`` the url that goes to ``Resource*.schema_url`` / ``Scope*.schema_url``.
    ``head`` and ``tail`` are the wire bytes an assembled ``ResourceSpans`` /
    ``ScopeSpans`` (or the ``*Logs`` equivalents, same field numbers) starts and ends
    with: field 1 (the message, always present) and field 3 (the schema url).
    Envelopes with equal ``key`` (an int) belong in the same group and are
    interchangeable; use the first one seen in a batch, as stock does (see
    "Corner cases").
    """

    __slots__ = ("data", "head", "key", "schema_url", "tail")

    def __init__(self, key: Hashable, data: bytes, schema_url: str | None) -> None:
        self.key = key
        self.data = data
        self.schema_url = schema_url
        self.head = _ld(b"\x0a", data)
        self.tail = _str_field(b"\x1a", schema_url)

    def __repr__(self) -> str:
        return f"Envelope(key={self.key!r}, data={self.data!r}, schema_url={self.schema_url!r})"


_ENVELOPE_CACHE_MAX: Final = 256
# id(obj) -> (obj, envelope); the strong ref keeps id() from being reused.
_RESOURCE_ENVELOPES: Final[dict[int, tuple[object, Envelope]]] = {}
_SCOPE_ENVELOPES: Final[dict[int, tuple[object, Envelope]]] = {}
# id(scope) -> (scope, resource, (renv, senv)): one int-keyed lookup per item.  A
# scope object belongs to one tracer/logger, hence to one resource; should it turn
# up under another, the entry is simply replaced.
_PAIRS: Final[dict[int, tuple[object, object, tuple[Envelope, Envelope]]]] = {}

# Envelope keys are small ints interned per grouping identity: callers hash them
# once per item.  Ids are never reused; if the table is ever cleared, equal envelopes
# made before and after merely land in separate (still valid) groups.
_KEY_IDS: Final[dict[Hashable, int]] = {}
_KEY_IDS_MAX: Final = 1 << 16
_next_key_id: Final = itertools.count(1).__next__


def _key_id(identity: Hashable) -> int:
    key_id = _KEY_IDS.get(identity)
    if key_id is None:
        if len(_KEY_IDS) >= _KEY_IDS_MAX:
            _KEY_IDS.clear()
        key_id = _KEY_IDS.setdefault(identity, _next_key_id())  # atomic under the GIL
    return key_id


_NONE_RESOURCE: Final = Envelope(_key_id(("resource", None)), b"", None)
_NONE_SCOPE: Final = Envelope(_key_id(("scope", None)), b"", None)


def _remember(cache: dict[int, tuple[object, Envelope]], obj: object, envelope: Envelope) -> Envelope:
    if len(cache) >= _ENVELOPE_CACHE_MAX:
        cache.clear()
    cache[id(obj)] = (obj, envelope)
    return envelope


def _new_resource_envelope(resource: Resource) -> Envelope:
    field = "resource.attributes"
    try:
        fields = _attribute_fields(b"\x0a", resource.attributes)
        field = "resource.schema_url"
        schema_url = resource.schema_url
        _str_bytes(schema_url)
    except Exception as exc:
        raise EncodingError(field, exc) from exc
    # Order-insensitive and type-sensitive, like stock's sorted-JSON hash + equality.
    key = _key_id(("resource", schema_url, frozenset(fields)))
    return _remember(_RESOURCE_ENVELOPES, resource, Envelope(key, b"".join(fields), schema_url))


def resource_envelope(resource: Resource | None) -> Envelope:
    """Cached envelope for ``resource`` (``None`` encodes as an empty Resource)."""
    if resource is None:
        return _NONE_RESOURCE
    entry = _RESOURCE_ENVELOPES.get(id(resource))
    if entry is not None and entry[0] is resource:
        return entry[1]
    return _new_resource_envelope(resource)


def _new_scope_envelope(scope: InstrumentationScope) -> Envelope:
    field = "scope"
    try:
        field = "scope.name"
        name = scope.name
        parts = [_str_field(b"\x0a", name)]
        field = "scope.version"
        version = scope.version
        parts.append(_str_field(b"\x12", version))
        field = "scope.attributes"
        attributes = scope.attributes
        fields = _attribute_fields(b"\x1a", attributes)
        parts.extend(fields)
        field = "scope.schema_url"
        schema_url = scope.schema_url
        _str_bytes(schema_url)
    except Exception as exc:
        raise EncodingError(field, exc) from exc
    # Stock groups scopes by (name, version, schema_url) and attribute equality.
    identity: Hashable
    try:
        identity = ("scope", name, version, schema_url, frozenset(dict(attributes or {}).items()))
    except TypeError:  # unhashable attribute values
        identity = ("scope-fields", name, version, schema_url, frozenset(fields))
    return _remember(_SCOPE_ENVELOPES, scope, Envelope(_key_id(identity), b"".join(parts), schema_url))


def scope_envelope(scope: InstrumentationScope | None) -> Envelope:
    """Cached envelope for ``scope``; ``None`` gives an empty, present scope (as stock)."""
    if scope is None:
        return _NONE_SCOPE
    entry = _SCOPE_ENVELOPES.get(id(scope))
    if entry is not None and entry[0] is scope:
        return entry[1]
    return _new_scope_envelope(scope)


def _envelope_pair(resource: Any, scope: Any) -> tuple[Envelope, Envelope]:
    pair = (resource_envelope(resource), scope_envelope(scope or None))
    if len(_PAIRS) >= _ENVELOPE_CACHE_MAX:
        _PAIRS.clear()
    _PAIRS[id(scope)] = (scope, resource, pair)
    return pair


def span_envelopes(span: ReadableSpan) -> tuple[Envelope, Envelope]:
    """(resource, scope) envelopes for ``span``; grouping uses their ``key``."""
    sp: Any = span
    cls = sp.__class__
    if cls is FAST_SPAN or _TRUSTED_SPAN_TYPES.get(cls):
        resource = sp._resource
        scope = sp._instrumentation_scope
    else:
        resource = sp.resource
        scope = sp.instrumentation_scope
    entry = _PAIRS.get(id(scope))
    if entry is not None and entry[0] is scope and entry[1] is resource:
        return entry[2]
    return _envelope_pair(resource, scope)


def log_envelopes(record: ReadableLogRecord) -> tuple[Envelope, Envelope]:
    """(resource, scope) envelopes for ``record``; grouping uses their ``key``."""
    resource = record.resource
    scope = record.instrumentation_scope
    entry = _PAIRS.get(id(scope))
    if entry is not None and entry[0] is scope and entry[1] is resource:
        return entry[2]
    return _envelope_pair(resource, scope)


# ---------------------------------------------------------------------------
# assembly

_Groups = Iterable[tuple[Envelope, Iterable[tuple[Envelope, Sequence[bytes]]]]]


# Field 2 (ScopeSpans.spans / ScopeLogs.log_records) headers by item length.
_HDR2: Final = tuple(b"\x12" + v for v in _VT)


def _assemble(groups: _Groups) -> bytes:
    # One flat list and a single join: each item's bytes are copied exactly once.
    # Headers are placeholders patched in once the nested lengths are known.
    out: list[bytes] = []
    append = out.append
    for renv, scopes in groups:
        r_at = len(out)
        append(b"")
        append(renv.head)
        r_len = len(renv.head) + len(renv.tail)
        for senv, items in scopes:
            s_at = len(out)
            append(b"")
            append(senv.head)
            s_len = len(senv.head) + len(senv.tail)
            # Item headers (tag 2 + length) and the interleaving all run in C.
            lens = list(map(len, items))
            if lens and max(lens) < _VT_SIZE:
                headers = list(map(_HDR2.__getitem__, lens))
            else:
                headers = [b"\x12" + _uvarint(n) for n in lens]
            block: list[bytes] = [b""] * (2 * len(lens))
            block[0::2] = headers
            block[1::2] = items
            out += block
            s_len += sum(lens) + sum(map(len, headers))
            append(senv.tail)
            header = b"\x12" + _uvarint(s_len)
            out[s_at] = header
            r_len += len(header) + s_len
        append(renv.tail)
        out[r_at] = b"\x0a" + _uvarint(r_len)
    return b"".join(out)


def assemble_traces(groups: _Groups) -> bytes:
    """Serialized ``ExportTraceServiceRequest``: one ResourceSpans per resource envelope,
    one ScopeSpans per scope envelope, spans (from :func:`encode_span`) in order."""
    return _assemble(groups)


def assemble_logs(groups: _Groups) -> bytes:
    """Serialized ``ExportLogsServiceRequest``; same shape as :func:`assemble_traces`
    (ResourceLogs/ScopeLogs share the field numbers of ResourceSpans/ScopeSpans)."""
    return _assemble(groups)


def _group(
    items: Sequence[Any],
    envelopes: Callable[[Any], tuple[Envelope, Envelope]],
    encode: Callable[[Any], bytes],
) -> list[tuple[Envelope, list[tuple[Envelope, list[bytes]]]]]:
    # Bucket by the (cached, hence identical) envelope pair: hashing two object ids
    # beats two key lookups per item.
    by_pair: dict[tuple[Envelope, Envelope], list[bytes]] = {}
    encoded = [encode(item) for item in items]
    for item, data in zip(items, encoded, strict=True):
        pair = envelopes(item)
        bucket = by_pair.get(pair)
        if bucket is None:
            by_pair[pair] = [data]
        else:
            bucket.append(data)
    resources: dict[Hashable, tuple[Envelope, list[tuple[Envelope, list[bytes]]]]] = {}
    if len({(renv.key, senv.key) for renv, senv in by_pair}) == len(by_pair):
        for (renv, senv), datas in by_pair.items():
            group = resources.get(renv.key)
            if group is None:
                resources[renv.key] = (renv, [(senv, datas)])
            else:
                group[1].append((senv, datas))
        return list(resources.values())
    # Distinct but equal resources/scopes: stock merges them keeping batch order, and
    # the first one seen for a key provides the bytes.
    by_key: dict[Hashable, tuple[Envelope, dict[Hashable, tuple[Envelope, list[bytes]]]]] = {}
    for item, data in zip(items, encoded, strict=True):
        renv, senv = envelopes(item)
        scopes = by_key.setdefault(renv.key, (renv, {}))[1]
        scopes.setdefault(senv.key, (senv, []))[1].append(data)
    return [(renv, list(scopes.values())) for renv, scopes in by_key.values()]


def encode_spans_request(spans: Sequence[ReadableSpan]) -> bytes:
    """Serialized ``ExportTraceServiceRequest`` grouped like the stock ``encode_spans``."""
    return _assemble(_group(spans, span_envelopes, encode_span))


def encode_logs_request(records: Sequence[ReadableLogRecord]) -> bytes:
    """Serialized ``ExportLogsServiceRequest`` grouped like the stock ``encode_logs``."""
    return _assemble(_group(records, log_envelopes, encode_log))

"""What the embedded OTLP receiver received: decoded items, counters and the queries on them.

:func:`decode_items` turns an OTLP export request into :class:`ReceivedItem` rows as a collector
would read them; :class:`ReceiverRecord` keeps them with the request counters, under one condition
variable that :class:`~otel_sched.demo._receiver.OTLPReceiver` (its subclass) also guards its fault
settings with, so ``wait_until`` predicates see one consistent state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, TypeAlias

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["ExportRequest", "ReceivedItem", "ReceiverRecord", "count_items", "decode_items"]

ExportRequest: TypeAlias = ExportTraceServiceRequest | ExportLogsServiceRequest

_REQUEST_TIMES_MAX: Final = 100_000


@dataclass(slots=True)
class ReceivedItem:
    """One span or log record as the receiver decoded it."""

    signal: str
    resource: dict[str, Any]
    scope_name: str
    name: str
    attributes: dict[str, Any]
    trace_id: bytes
    span_id: bytes
    severity_number: int
    status_code: int
    end_time_unix_nano: int
    received_at: float
    transport: str


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def count_items(request: ExportRequest) -> int:
    if isinstance(request, ExportTraceServiceRequest):
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def decode_items(request: ExportRequest, received_at: float, transport: str) -> list[ReceivedItem]:
    out: list[ReceivedItem] = []
    if isinstance(request, ExportTraceServiceRequest):
        for rs in request.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append(
                        ReceivedItem(
                            signal="traces",
                            resource=dict(resource),
                            scope_name=ss.scope.name,
                            name=span.name,
                            attributes=_attributes(span.attributes),
                            trace_id=span.trace_id,
                            span_id=span.span_id,
                            severity_number=0,
                            status_code=int(span.status.code),
                            end_time_unix_nano=span.end_time_unix_nano,
                            received_at=received_at,
                            transport=transport,
                        )
                    )
        return out
    for rl in request.resource_logs:
        resource = _attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                body = _any_value(record.body) if record.HasField("body") else None
                out.append(
                    ReceivedItem(
                        signal="logs",
                        resource=dict(resource),
                        scope_name=sl.scope.name,
                        name="" if body is None else body if isinstance(body, str) else str(body),
                        attributes=_attributes(record.attributes),
                        trace_id=record.trace_id,
                        span_id=record.span_id,
                        severity_number=int(record.severity_number),
                        status_code=0,
                        end_time_unix_nano=record.time_unix_nano or record.observed_time_unix_nano,
                        received_at=received_at,
                        transport=transport,
                    )
                )
    return out


class ReceiverRecord:
    """The items and counters of every request, guarded by one re-entrant condition."""

    def __init__(self, *, keep_items: bool, item_hook: Callable[[ReceivedItem], None] | None) -> None:
        self._keep_items = keep_items
        self._item_hook = item_hook
        # One re-entrant lock guards all state below (and the subclass's fault settings);
        # wait_until() predicates run under it and may read the public properties.
        self._cond = threading.Condition(threading.RLock())
        self._spans: list[ReceivedItem] = []
        self._logs: list[ReceivedItem] = []
        self._span_count = 0
        self._log_count = 0
        self._request_count = 0
        self._refused_count = 0
        self._bytes_received = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._request_times: deque[tuple[float, str, int]] = deque(maxlen=_REQUEST_TIMES_MAX)

    def spans(self) -> list[ReceivedItem]:
        with self._cond:
            return list(self._spans)

    def logs(self) -> list[ReceivedItem]:
        with self._cond:
            return list(self._logs)

    @property
    def span_count(self) -> int:
        with self._cond:
            return self._span_count

    @property
    def log_count(self) -> int:
        with self._cond:
            return self._log_count

    @property
    def request_count(self) -> int:
        with self._cond:
            return self._request_count

    @property
    def refused_request_count(self) -> int:
        with self._cond:
            return self._refused_count

    @property
    def bytes_received(self) -> int:
        with self._cond:
            return self._bytes_received

    @property
    def in_flight(self) -> int:
        """Requests being processed right now (including their injected latency)."""
        with self._cond:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Highest number of requests processed at the same time since start or clear()."""
        with self._cond:
            return self._max_in_flight

    def request_times(self) -> list[tuple[float, str, int]]:
        """(monotonic arrival time, signal, HTTP status or gRPC code) of the last 100_000 requests."""
        with self._cond:
            times = list(self._request_times)
        # Appended at completion, so overlapping requests may be out of arrival order.
        times.sort(key=itemgetter(0))
        return times

    def wait_for_spans(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._span_count >= n, timeout)

    def wait_for_logs(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._log_count >= n, timeout)

    def clear(self) -> None:
        """Forget received items and reset every counter (fault settings are kept)."""
        with self._cond:
            self._spans.clear()
            self._logs.clear()
            self._span_count = 0
            self._log_count = 0
            self._request_count = 0
            self._refused_count = 0
            self._bytes_received = 0
            self._max_in_flight = self._in_flight
            self._request_times.clear()
            self._cond.notify_all()

    def _record_invalid(self, signal: str, status: int) -> None:
        with self._cond:
            self._request_count += 1
            self._request_times.append((time.monotonic(), signal, status))
            self._cond.notify_all()

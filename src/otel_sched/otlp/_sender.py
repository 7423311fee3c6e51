"""OTLP senders: one attempt to deliver pre-encoded request bytes.

The pipeline encodes every item once (:mod:`otel_sched.otlp._encoding`) and assembles each
batch into the bytes of an ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``;
a sender puts those bytes on the wire, over OTLP/HTTP (protobuf, :mod:`._http`) or
OTLP/gRPC (:mod:`._grpc`).  This module holds what both share: the outcome
(:class:`SendResult`), its classification helpers, and :func:`sender_for`.

Unlike the stock exporters a sender never retries and never sleeps: ``send()`` makes
exactly one attempt and classifies its outcome in a :class:`SendResult`.  The pipeline
re-queues a retryable batch itself, honouring ``retry_after``, so an export lane is
never parked in a backoff while other batches wait.  (The one exception: a request that
fails on a reused HTTP keep-alive connection before any response byte arrived, i.e. one
the server closed while idle, is sent once more on a fresh connection.)

Outcomes (OTLP specification, "Failures" / "Throttling"):

* HTTP: 2xx succeeds, and the response's ``partial_success`` is read (rejected items
  are counted, never retried); 429, 502, 503, 504 are retryable, 429 and 503 are
  throttling; connection errors and timeouts are retryable (``"connection_error"`` /
  ``"timeout"``); any other status (3xx, 400, 401, 404, 413, 500, ...) is final.
  ``Retry-After`` is read as delay-seconds or an HTTP-date.
* gRPC: OK succeeds (``partial_success`` as for HTTP); CANCELLED, DEADLINE_EXCEEDED,
  ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED
  only when the server sent a ``google.rpc.RetryInfo`` (from the
  ``google.rpc.retryinfo-bin`` trailer the stock exporter reads, or the standard
  ``grpc-status-details-bin``); UNAVAILABLE and RESOURCE_EXHAUSTED are throttling.
  A connection that cannot be made is UNAVAILABLE (gRPC does not tell it apart).

``send()`` never raises for a network or server problem; it raises ``ValueError`` for
a non-positive timeout, and lets programming errors through.

Configuration: a sender is built from the user's stock exporter (:func:`sender_for`, which
reads its settings through :mod:`._stock`), or from explicit arguments with the stock
exporters' defaults.  Senders do not read ``OTEL_EXPORTER_OTLP_*`` themselves: the stock
exporter they stand in for already did.

Threading: a sender is used by one lane at a time (the pipeline guarantees it);
``send()`` must not be called concurrently on one instance.  ``shutdown()`` may come
from another thread while a ``send()`` is in flight: that call then returns its own
outcome or ``status="shutdown"``.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .._safe import safe_url
from ._stock import stock_kind

if TYPE_CHECKING:
    from ._grpc import GRPCSender
    from ._http import HTTPSender

__all__ = ["SendResult", "Sender", "sender_for"]

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: Final = 10.0
MAX_MESSAGE_CHARS: Final = 512
_PARTIAL_WARNED_MAX: Final = 256


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one ``send()``."""

    ok: bool
    retryable: bool  # transient per the OTLP spec: the same bytes may be sent again later
    throttled: bool  # HTTP 429/503 or gRPC RESOURCE_EXHAUSTED/UNAVAILABLE: back-pressure
    retry_after: float | None  # seconds the server asked to wait (Retry-After / RetryInfo)
    status: str  # "200", "503", "OK", "UNAVAILABLE", "connection_error", "timeout", "shutdown", ...
    rejected: int  # partial success: items the server rejected (counted, never retried)
    message: str  # the server's error / partial-success message, at most 512 characters


class Sender(Protocol):
    """What a lane calls on the pre-encoded path."""

    signal: str  # "traces" | "logs"
    endpoint: str

    def send(self, body: bytes, timeout: float) -> SendResult: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Signal:
    http_path: str
    grpc_method: str
    response: Any  # Export*ServiceResponse class
    rejected_field: str


_SIGNALS: Final[dict[str, Signal]] = {
    "traces": Signal(
        "v1/traces",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        ExportTraceServiceResponse,
        "rejected_spans",
    ),
    "logs": Signal(
        "v1/logs",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        ExportLogsServiceResponse,
        "rejected_log_records",
    ),
}

_SHUTDOWN_RESULT: Final = SendResult(False, False, False, None, "shutdown", 0, "sender is shut down")
SHUTDOWN_RESULT: Final = _SHUTDOWN_RESULT

_partial_warned: dict[tuple[str, str, str], None] = {}
_partial_warned_lock = threading.Lock()


def signal_info(signal: str) -> Signal:
    try:
        return _SIGNALS[signal]
    except KeyError:
        raise ValueError(f"signal must be 'traces' or 'logs', got {signal!r}") from None


def check_timeout(timeout: float, what: str) -> float:
    value = float(timeout)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a number of seconds > 0, got {timeout!r}")
    return value


def compression_name(value: str | enum.Enum) -> str:
    if isinstance(value, enum.Enum):
        if isinstance(value.value, str):  # the HTTP exporters' Compression enums
            return value.value.strip().lower()
        # grpc.Compression: NoCompression / Deflate / Gzip, with int values
        name = value.name.lower()
        return "none" if name == "nocompression" else name
    return str(value).strip().lower()


def checked_compression(compression: str | enum.Enum | None, allowed: tuple[str, ...]) -> str:
    if compression is None:
        return "none"
    name = compression_name(compression)
    if name not in allowed:
        raise ValueError(f"compression must be one of {', '.join(allowed)}; got {compression!r}")
    return name


def truncate(message: str) -> str:
    return message[:MAX_MESSAGE_CHARS]


def _warn_partial(signal: str, endpoint: str, rejected: int, message: str) -> None:
    # A collector repeats the same partial-success message for every batch; once is enough.
    key = (signal, endpoint, message)
    with _partial_warned_lock:
        if key in _partial_warned:
            return
        if len(_partial_warned) >= _PARTIAL_WARNED_MAX:
            _partial_warned.clear()
        _partial_warned[key] = None
    _logger.warning(
        "otel-sched: %s endpoint %s accepted a batch partially, %d rejected: %s",
        signal,
        safe_url(endpoint),
        rejected,
        message or "(no message)",
    )


def ok_result(status: str, info: Signal, signal: str, endpoint: str, response: Any) -> SendResult:
    """Success, with the response's partial success read (and warned about once per message)."""
    rejected, message = 0, ""
    if response.HasField("partial_success"):
        partial = response.partial_success
        rejected, message = int(getattr(partial, info.rejected_field)), truncate(partial.error_message)
    if rejected or message:
        _warn_partial(signal, endpoint, rejected, message)
    return SendResult(True, False, False, None, status, rejected, message)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or HTTP-date, RFC 9110); None if unusable.

    Mirrors the stock exporter's parsing: decimals are accepted, negative delays and
    past dates become 0.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        retry_at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if retry_at.tzinfo is None:
        retry_at = retry_at.replace(tzinfo=timezone.utc)
    return max(retry_at.timestamp() - time.time(), 0.0)


def sender_for(exporter: Any) -> HTTPSender | GRPCSender | None:
    """A sender standing in for a stock OTLP span/log exporter instance, else ``None``.

    ``None`` also when the exporter's internals are not as expected (another stock
    version): the caller then keeps using the exporter itself.
    """
    kind = stock_kind(exporter)
    if kind is None:
        return None
    try:
        if kind[0] == "http":
            from ._http import HTTPSender

            return HTTPSender.from_exporter(exporter)
        from ._grpc import GRPCSender

        return GRPCSender.from_exporter(exporter)
    except Exception as exc:  # noqa: BLE001 - unknown internals: fall back to the exporter, and say why
        _logger.debug("otel-sched: no OTLP sender for %s: %r", type(exporter).__qualname__, exc)
        return None

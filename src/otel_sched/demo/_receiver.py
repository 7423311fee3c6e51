"""An embedded OTLP receiver (HTTP/protobuf and gRPC).

It is the collector the test suite's real exporters talk to, and the local
collector behind ``otel-sched demo`` and the benchmarks, where it injects
latency, failures and outages. It is built on ``opentelemetry-proto``'s
messages and gRPC service classes so that what the stock exporters send is
decoded exactly as a collector would decode it. Everything it keeps stays in
memory; it is not meant to be a production collector.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import math
import random
import socket
import socketserver
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from types import EllipsisType, TracebackType
from typing import Any, Final, TypeAlias, cast

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OTLPReceiver", "ReceivedItem"]

_logger = logging.getLogger(__name__)

_ExportRequest: TypeAlias = ExportTraceServiceRequest | ExportLogsServiceRequest
_ExportResponse: TypeAlias = ExportTraceServiceResponse | ExportLogsServiceResponse

_HTTP_PATHS: Final[dict[str, str]] = {"/v1/traces": "traces", "/v1/logs": "logs"}
_REQUEST_TIMES_MAX: Final = 100_000
# Keep-alive connections an exporter abandons must not pin a thread forever.
_IDLE_CONNECTION_TIMEOUT_S: Final = 120.0
_MAX_BODY_BYTES: Final = 256 * 1024 * 1024
_STOP_TIMEOUT_S: Final = 5.0
# serve_forever() only notices shutdown() between polls; this bounds stop().
_POLL_INTERVAL_S: Final = 0.1
_GRPC_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
# Trailer the stock gRPC exporter reads its backoff from (besides the standard
# grpc-status-details-bin that grpcio-status based clients use).
_RETRY_INFO_TRAILER: Final = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_TRAILER: Final = "grpc-status-details-bin"
_PARTIAL_MESSAGE: Final = "rejected by test"


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


@dataclass(slots=True, frozen=True)
class _Verdict:
    accepted: bool
    status: int  # HTTP status (http) or gRPC code number (grpc) that was answered
    retry_after_s: float | None
    grpc_code: Any  # grpc.StatusCode to abort with when refused over gRPC
    partial_rejected: int = 0  # accepted, but answered as a partial success rejecting this many


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


def _count_items(request: _ExportRequest) -> int:
    if isinstance(request, ExportTraceServiceRequest):
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def _decode_items(request: _ExportRequest, received_at: float, transport: str) -> list[ReceivedItem]:
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


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class OTLPReceiver:
    """A local OTLP collector with fault injection.

    Accepts ``POST /v1/traces`` and ``/v1/logs`` (``application/x-protobuf``,
    optionally gzip/deflate encoded) and, with ``grpc=True``, the OTLP gRPC
    trace and logs services. Each request waits ``latency_s`` on its own
    thread, so concurrent exports overlap like real round trips. A refused
    request (``failure_rate`` draw or ``down``) is answered ``failure_status``
    over HTTP or ``UNAVAILABLE``/``RESOURCE_EXHAUSTED`` over gRPC, with
    Retry-After / RetryInfo when ``retry_after_s`` is set; its items are not
    counted. With ``partial_rejected=N`` an accepted request is answered as a
    partial success (``rejected_spans`` / ``rejected_log_records`` = N,
    ``error_message`` "rejected by test"); its items are still kept and
    counted, since the receiver does not pick which ones it "rejected".
    ``request_count`` and ``request_times`` cover every OTLP request
    (accepted, refused or undecodable); requests to unknown paths are not
    counted. ``bytes_received`` sums the decompressed bodies of accepted
    requests.

    A receiver is started once; after ``stop()`` it keeps its counters and
    items but cannot be restarted.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc: bool = False,
        grpc_port: int = 0,
        latency_s: float = 0.0,
        failure_rate: float = 0.0,
        failure_status: int = 503,
        retry_after_s: float | None = None,
        seed: int | None = None,
        keep_items: bool = True,
        item_hook: Callable[[ReceivedItem], None] | None = None,
        max_concurrent_requests: int = 64,
        partial_rejected: int = 0,
    ) -> None:
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        _check_faults(latency_s, failure_rate, failure_status, retry_after_s, partial_rejected)
        self._host = host
        self._http_port_requested = http_port
        self._grpc_enabled = grpc
        self._grpc_port_requested = grpc_port
        self._keep_items = keep_items
        self._item_hook = item_hook
        self._max_concurrent = max_concurrent_requests

        # One re-entrant lock guards all state below; wait_until() predicates
        # run under it and may read the public properties.
        self._cond = threading.Condition(threading.RLock())
        self._latency_s = latency_s
        self._failure_rate = failure_rate
        self._failure_status = failure_status
        self._retry_after_s = retry_after_s
        self._partial_rejected = partial_rejected
        self._down = False
        self._rng = random.Random(seed)

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

        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._stopping = threading.Event()
        self._http_slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._httpd: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._http_port: int | None = None
        self._grpc_server: Any = None
        self._grpc_executor: ThreadPoolExecutor | None = None
        self._grpc_port: int | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind and serve. Port 0 picks an ephemeral port; a busy fixed port raises OSError."""
        with self._lifecycle_lock:
            if self._started:
                raise RuntimeError("OTLPReceiver can only be started once")
            self._started = True
            try:
                self._start_http()
                if self._grpc_enabled:
                    self._start_grpc()
            except BaseException:
                self._stopped = True
                self._shutdown_servers(time.monotonic() + _STOP_TIMEOUT_S)
                raise
        return self

    def _start_http(self) -> None:
        address = (self._host, self._http_port_requested)
        try:
            httpd = _HTTPServer(address, self)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"OTLP receiver cannot bind HTTP to {_format_host(self._host)}:{self._http_port_requested}: "
                f"{exc.strerror or exc}",
            ) from exc
        self._httpd = httpd
        self._http_port = int(httpd.server_address[1])
        self._http_thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"otlp-receiver-http-{self._http_port}",
            daemon=True,
        )
        self._http_thread.start()

    def _start_grpc(self) -> None:
        executor = ThreadPoolExecutor(
            max_workers=self._max_concurrent, thread_name_prefix="otlp-receiver-grpc"
        )
        self._grpc_executor = executor
        server = grpc.server(
            executor,
            options=[
                # grpc enables SO_REUSEPORT by default, which would let a second
                # receiver silently share a busy fixed port.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceServicer(self), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _LogsServicer(self), server
        )
        self._grpc_server = server
        address = f"{_format_host(self._host)}:{self._grpc_port_requested}"
        try:
            port = int(server.add_insecure_port(address))
        except RuntimeError as exc:
            raise OSError(errno.EADDRINUSE, f"OTLP receiver cannot bind gRPC to {address}: {exc}") from exc
        if port == 0:  # older grpcio reports bind failures this way
            raise OSError(errno.EADDRINUSE, f"OTLP receiver cannot bind gRPC to {address}")
        self._grpc_port = port
        server.start()

    def stop(self) -> None:
        """Stop serving and join the server threads. Idempotent and bounded in time.

        Requests still waiting out their injected latency are answered as refused.
        """
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        self._shutdown_servers(time.monotonic() + _STOP_TIMEOUT_S)

    def _shutdown_servers(self, deadline: float) -> None:
        self._stopping.set()
        httpd = self._httpd
        if httpd is not None:
            if self._http_thread is not None and self._http_thread.is_alive():
                httpd.shutdown()
            httpd.server_close()
            for thread in httpd.close_connections():
                thread.join(max(0.0, deadline - time.monotonic()))
            if self._http_thread is not None:
                self._http_thread.join(max(0.0, deadline - time.monotonic()))
        if self._grpc_server is not None:
            # A short grace lets handlers interrupted by _stopping send their answer.
            self._grpc_server.stop(0.5).wait(max(0.0, deadline - time.monotonic()))
        executor = self._grpc_executor
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            for thread in list(executor._threads):
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> OTLPReceiver:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- endpoints -----------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        if self._http_port is None:
            raise RuntimeError("OTLPReceiver is not started")
        return f"http://{_format_host(self._host)}:{self._http_port}"

    @property
    def traces_url(self) -> str:
        return self.http_endpoint + "/v1/traces"

    @property
    def logs_url(self) -> str:
        return self.http_endpoint + "/v1/logs"

    @property
    def grpc_endpoint(self) -> str:
        if not self._grpc_enabled:
            raise RuntimeError("OTLPReceiver was created with grpc=False")
        if self._grpc_port is None:
            raise RuntimeError("OTLPReceiver is not started")
        return f"{_format_host(self._host)}:{self._grpc_port}"

    # -- faults ----------------------------------------------------------------

    def set_faults(
        self,
        *,
        latency_s: float | None = None,
        failure_rate: float | None = None,
        failure_status: int | None = None,
        retry_after_s: float | EllipsisType | None = ...,
        down: bool | None = None,
        partial_rejected: int | None = None,
    ) -> None:
        """Change fault injection for the next requests; ``None`` (``...`` for retry_after_s) keeps a value.

        ``down=True`` refuses every request, simulating an outage; ``partial_rejected=N``
        answers accepted requests as partial successes rejecting N items (0 turns it off).
        """
        with self._cond:
            new_latency = self._latency_s if latency_s is None else latency_s
            new_rate = self._failure_rate if failure_rate is None else failure_rate
            new_status = self._failure_status if failure_status is None else failure_status
            new_retry = self._retry_after_s if isinstance(retry_after_s, EllipsisType) else retry_after_s
            new_rejected = self._partial_rejected if partial_rejected is None else partial_rejected
            _check_faults(new_latency, new_rate, new_status, new_retry, new_rejected)
            self._latency_s = new_latency
            self._failure_rate = new_rate
            self._failure_status = new_status
            self._retry_after_s = new_retry
            self._partial_rejected = new_rejected
            if down is not None:
                self._down = down
            self._cond.notify_all()

    # -- observations ------------------------------------------------------------

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

    def wait_until(self, predicate: Callable[[OTLPReceiver], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds; it is re-evaluated whenever the receiver's state changes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

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

    # -- request processing (shared by both transports) ------------------------

    def _record_invalid(self, signal: str, status: int) -> None:
        with self._cond:
            self._request_count += 1
            self._request_times.append((time.monotonic(), signal, status))
            self._cond.notify_all()

    def _process(self, signal: str, transport: str, request: _ExportRequest, nbytes: int) -> _Verdict:
        arrived = time.monotonic()
        with self._cond:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            latency = self._latency_s
            refused = self._down or (self._failure_rate > 0 and self._rng.random() < self._failure_rate)
            failure_status = self._failure_status
            retry_after = self._retry_after_s
            partial_rejected = self._partial_rejected
            self._cond.notify_all()

        items: list[ReceivedItem] = []
        count = 0
        try:
            if latency > 0 and self._stopping.wait(latency):
                refused, failure_status = True, 503
            if not refused:
                count = _count_items(request)
                if self._keep_items or self._item_hook is not None:
                    items = _decode_items(request, arrived, transport)
        except BaseException:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()
            raise

        grpc_code = (
            grpc.StatusCode.RESOURCE_EXHAUSTED if failure_status == 429 else grpc.StatusCode.UNAVAILABLE
        )
        if transport == "grpc":
            status = int(grpc_code.value[0]) if refused else int(grpc.StatusCode.OK.value[0])
        else:
            status = failure_status if refused else 200
        with self._cond:
            self._in_flight -= 1
            self._request_count += 1
            self._request_times.append((arrived, signal, status))
            if refused:
                self._refused_count += 1
            else:
                self._bytes_received += nbytes
                if signal == "traces":
                    self._span_count += count
                    if self._keep_items:
                        self._spans.extend(items)
                else:
                    self._log_count += count
                    if self._keep_items:
                        self._logs.extend(items)
            self._cond.notify_all()

        hook = self._item_hook
        if hook is not None:
            for item in items:
                try:
                    hook(item)
                except Exception:
                    _logger.exception("OTLPReceiver item_hook raised")
        if refused:
            return _Verdict(False, status, retry_after, grpc_code)
        return _Verdict(True, status, None, grpc_code, partial_rejected)

    def _grpc_export(self, signal: str, request: _ExportRequest, context: Any) -> _ExportResponse:
        verdict = self._process(signal, "grpc", request, request.ByteSize())
        if verdict.accepted:
            return _export_response(signal, verdict.partial_rejected)
        message = "receiver stopping" if self._stopping.is_set() else "injected failure"
        if verdict.retry_after_s is not None:
            delay = _duration(verdict.retry_after_s)
            retry_info = RetryInfo(retry_delay=delay)
            detail = AnyMessage()
            detail.Pack(retry_info)
            status = RpcStatus(code=verdict.status, message=message, details=[detail])
            context.set_trailing_metadata(
                (
                    (_RETRY_INFO_TRAILER, retry_info.SerializeToString()),
                    (_STATUS_DETAILS_TRAILER, status.SerializeToString()),
                )
            )
        context.abort(verdict.grpc_code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _export_response(signal: str, partial_rejected: int) -> _ExportResponse:
    if signal == "traces":
        traces = ExportTraceServiceResponse()
        if partial_rejected:
            traces.partial_success.rejected_spans = partial_rejected
            traces.partial_success.error_message = _PARTIAL_MESSAGE
        return traces
    logs = ExportLogsServiceResponse()
    if partial_rejected:
        logs.partial_success.rejected_log_records = partial_rejected
        logs.partial_success.error_message = _PARTIAL_MESSAGE
    return logs


def _duration(seconds: float) -> Duration:
    whole, nanos = divmod(round(seconds * 1_000_000_000), 1_000_000_000)
    return Duration(seconds=whole, nanos=nanos)


def _check_faults(
    latency_s: float,
    failure_rate: float,
    failure_status: int,
    retry_after_s: float | None,
    partial_rejected: int = 0,
) -> None:
    if not latency_s >= 0:
        raise ValueError(f"latency_s must be >= 0, got {latency_s!r}")
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be within [0, 1], got {failure_rate!r}")
    if not 400 <= failure_status <= 599:
        raise ValueError(f"failure_status must be an HTTP error status, got {failure_status!r}")
    if retry_after_s is not None and not retry_after_s >= 0:
        raise ValueError(f"retry_after_s must be >= 0 or None, got {retry_after_s!r}")
    if isinstance(partial_rejected, bool) or not isinstance(partial_rejected, int) or partial_rejected < 0:
        raise ValueError(f"partial_rejected must be an int >= 0, got {partial_rejected!r}")


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> _ExportResponse:
        return self._receiver._grpc_export("traces", request, context)


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportLogsServiceRequest, context: Any) -> _ExportResponse:
        return self._receiver._grpc_export("logs", request, context)


# -- HTTP transport -------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() joins the handler threads itself, with a deadline, after
    # shutting their sockets down; the stock join would wait for every idle
    # keep-alive connection to be closed by its client.
    block_on_close = False

    def __init__(self, address: tuple[str, int], receiver: OTLPReceiver) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.receiver = receiver
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._closing = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN, which can stall
        # on a machine without working DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            if not self._closing:
                self._conns.add(request)
                self._handler_threads = [t for t in self._handler_threads if t.is_alive()]
                thread = threading.Thread(
                    target=self.process_request_thread,
                    args=(request, client_address),
                    name="otlp-receiver-http-conn",
                    daemon=True,
                )
                self._handler_threads.append(thread)
                thread.start()
                return
        self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> list[threading.Thread]:
        """Refuse new connections, unblock the open ones and return their handler threads."""
        with self._conn_lock:
            self._closing = True
            conns = list(self._conns)
            threads = list(self._handler_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return threads

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-request (or stop() shutting sockets) are routine here.
        _logger.debug("OTLP receiver HTTP connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so exporter sessions reuse connections
    server_version = "otel-sched-receiver"
    sys_version = ""
    timeout = _IDLE_CONNECTION_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = cast(_HTTPServer, self.server).receiver
        signal = _HTTP_PATHS.get(self.path.split("?", 1)[0])
        try:
            raw = self._read_body()
        except _BadRequest as exc:
            self.close_connection = True
            self._reply(exc.status, str(exc).encode(), "text/plain; charset=utf-8")
            return
        if signal is None:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")
            return
        try:
            request, nbytes = self._decode(signal, raw)
        except _BadRequest as exc:
            receiver._record_invalid(signal, exc.status)
            self._reply(exc.status, str(exc).encode(), "text/plain; charset=utf-8")
            return

        with receiver._http_slots:
            verdict = receiver._process(signal, "http", request, nbytes)
        if verdict.accepted:
            response = _export_response(signal, verdict.partial_rejected).SerializeToString()
            self._reply(200, response, "application/x-protobuf")
            return
        headers: list[tuple[str, str]] = []
        if verdict.retry_after_s is not None:
            headers.append(("Retry-After", str(math.ceil(verdict.retry_after_s))))
        self._reply(verdict.status, b"", None, headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _BadRequest(411, "Content-Length required")
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length < 0 or length > _MAX_BODY_BYTES:
            raise _BadRequest(413, "body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest(400, "truncated body")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "bad chunk") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers carry nothing we use
                return b"".join(parts)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _BadRequest(413, "body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _decode(self, signal: str, raw: bytes) -> tuple[_ExportRequest, int]:
        content_type = self.headers.get("Content-Type", "application/x-protobuf").split(";", 1)[0].strip()
        if content_type.lower() not in ("application/x-protobuf", "application/protobuf"):
            raise _BadRequest(415, f"unsupported Content-Type {content_type!r}")
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        try:
            if encoding == "gzip":
                data = gzip.decompress(raw)
            elif encoding == "deflate":
                try:
                    data = zlib.decompress(raw)
                except zlib.error:
                    data = zlib.decompress(raw, -zlib.MAX_WBITS)  # raw deflate, no zlib header
            elif encoding in ("", "identity"):
                data = raw
            else:
                raise _BadRequest(415, f"unsupported Content-Encoding {encoding!r}")
        except (OSError, EOFError, zlib.error) as exc:
            raise _BadRequest(400, f"cannot decompress body: {exc}") from None
        request: _ExportRequest = (
            ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()
        )
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise _BadRequest(400, f"cannot decode {type(request).__name__}: {exc}") from None
        return request, len(data)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

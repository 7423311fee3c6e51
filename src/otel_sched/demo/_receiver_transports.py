"""The embedded OTLP receiver's transports: HTTP/protobuf (``http.server``) and gRPC (grpcio).

Each transport decodes a request, hands it to :meth:`OTLPReceiver._process
<otel_sched.demo._receiver.OTLPReceiver._process>`, which applies the fault settings and records
it, and answers with the :class:`Verdict`: the OTLP response (a partial success if configured),
or the refusal with its Retry-After / RetryInfo.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import math
import socket
import socketserver
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

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

from ._received import ExportRequest

if TYPE_CHECKING:
    from ._receiver import OTLPReceiver

__all__ = ["ReceiverHTTPServer", "Verdict", "bind_grpc", "format_host", "grpc_server", "start_http"]

_logger = logging.getLogger(__name__)

_ExportResponse: TypeAlias = ExportTraceServiceResponse | ExportLogsServiceResponse

_HTTP_PATHS: Final[dict[str, str]] = {"/v1/traces": "traces", "/v1/logs": "logs"}
# Keep-alive connections an exporter abandons must not pin a thread forever.
_IDLE_CONNECTION_TIMEOUT_S: Final = 120.0
_MAX_BODY_BYTES: Final = 256 * 1024 * 1024
# serve_forever() only notices shutdown() between polls; this bounds stop().
_POLL_INTERVAL_S: Final = 0.1
_GRPC_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
# Trailer the stock gRPC exporter reads its backoff from (besides the standard
# grpc-status-details-bin that grpcio-status based clients use).
_RETRY_INFO_TRAILER: Final = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_TRAILER: Final = "grpc-status-details-bin"
_PARTIAL_MESSAGE: Final = "rejected by test"


@dataclass(slots=True, frozen=True)
class Verdict:
    """How a request was answered."""

    accepted: bool
    status: int  # HTTP status (http) or gRPC code number (grpc) that was answered
    retry_after_s: float | None
    grpc_code: Any  # grpc.StatusCode to abort with when refused over gRPC
    partial_rejected: int = 0  # accepted, but answered as a partial success rejecting this many


def format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- gRPC transport -------------------------------------------------------------


def grpc_server(receiver: OTLPReceiver, max_workers: int) -> tuple[Any, ThreadPoolExecutor]:
    """A gRPC server (not bound yet) with the OTLP trace and logs services, and its executor."""
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-receiver-grpc")
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
        _TraceServicer(receiver), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _LogsServicer(receiver), server
    )
    return server, executor


def bind_grpc(server: Any, host: str, port: int) -> int:
    """Bind ``server`` to ``host:port``; returns the port.  A busy port raises OSError."""
    address = f"{format_host(host)}:{port}"
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(errno.EADDRINUSE, f"OTLP receiver cannot bind gRPC to {address}: {exc}") from exc
    if bound == 0:  # older grpcio reports bind failures this way
        raise OSError(errno.EADDRINUSE, f"OTLP receiver cannot bind gRPC to {address}")
    return bound


def _grpc_export(
    receiver: OTLPReceiver, signal: str, request: ExportRequest, context: Any
) -> _ExportResponse:
    verdict = receiver._process(signal, "grpc", request, request.ByteSize())
    if verdict.accepted:
        return _export_response(signal, verdict.partial_rejected)
    message = "receiver stopping" if receiver._stopping.is_set() else "injected failure"
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


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> _ExportResponse:
        return _grpc_export(self._receiver, "traces", request, context)


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportLogsServiceRequest, context: Any) -> _ExportResponse:
        return _grpc_export(self._receiver, "logs", request, context)


# -- HTTP transport -------------------------------------------------------------


def start_http(
    receiver: OTLPReceiver, host: str, port: int
) -> tuple[ReceiverHTTPServer, threading.Thread, int]:
    """Serve OTLP/HTTP on ``host:port`` on a daemon thread; returns (server, thread, port)."""
    try:
        httpd = ReceiverHTTPServer((host, port), receiver)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"OTLP receiver cannot bind HTTP to {format_host(host)}:{port}: {exc.strerror or exc}",
        ) from exc
    bound = int(httpd.server_address[1])
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": _POLL_INTERVAL_S},
        name=f"otlp-receiver-http-{bound}",
        daemon=True,
    )
    thread.start()
    return httpd, thread, bound


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ReceiverHTTPServer(ThreadingHTTPServer):
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
        receiver = cast(ReceiverHTTPServer, self.server).receiver
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

    def _decode(self, signal: str, raw: bytes) -> tuple[ExportRequest, int]:
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
        request: ExportRequest = (
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

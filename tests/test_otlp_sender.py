"""One-attempt OTLP senders over HTTP and gRPC, against the embedded receiver and scripted servers."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import os
import socket
import ssl
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
import trustme
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_sched.demo._receiver import OTLPReceiver
from otel_sched.otlp import _sender as _otlp_sender
from otel_sched.otlp._encoding import encode_logs_request, encode_spans_request
from otel_sched.otlp._grpc import GRPCSender
from otel_sched.otlp._http import HTTPSender
from otel_sched.otlp._sender import SendResult, sender_for

TRANSPORTS = ["http", "grpc"]
SIGNALS = ["traces", "logs"]
RESOURCE = {"service.name": "checkout", "tenant.id": "acme"}
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stock exporters read OTEL_EXPORTER_OTLP_*: no test may see the developer's or CI's values."""
    for name in list(os.environ):
        if name.startswith(("OTEL_EXPORTER_OTLP_", "OTEL_PYTHON_EXPORTER_OTLP_")):
            monkeypatch.delenv(name)


# -- data ---------------------------------------------------------------------------------


def _spans(n: int = 2) -> Sequence[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.sender")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}", attributes={"i": i, "route": "/pay", "ok": True}):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def _logs(n: int = 2) -> Sequence[ReadableLogRecord]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("test.sender")
    for i in range(n):
        logger.emit(body=f"line-{i}", severity_number=SeverityNumber.WARN, attributes={"i": i})
    provider.shutdown()
    return memory.get_finished_logs()


def _body(signal: str, n: int = 2) -> bytes:
    return encode_spans_request(_spans(n)) if signal == "traces" else encode_logs_request(_logs(n))


def _sender(
    rx: OTLPReceiver, transport: str, signal: str = "traces", **kwargs: Any
) -> HTTPSender | GRPCSender:
    if transport == "http":
        return HTTPSender(signal, endpoint=rx.traces_url if signal == "traces" else rx.logs_url, **kwargs)
    return GRPCSender(signal, endpoint=rx.grpc_endpoint, insecure=True, **kwargs)


def _send(sender: HTTPSender | GRPCSender, body: bytes, timeout: float = TIMEOUT) -> SendResult:
    try:
        return sender.send(body, timeout)
    finally:
        sender.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- scripted servers: exact answers the receiver does not give, and what arrived -------------


class ScriptedHTTP:
    """Answers every POST with ``reply`` = (status, headers, body) and records what it got."""

    def __init__(self) -> None:
        self.reply: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                scripted.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, payload = scripted.reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class ScriptedGRPC:
    """OTLP Export methods answering ``abort`` = (code, details, trailers), else ``response`` bytes."""

    def __init__(self) -> None:
        self.abort: tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]] | None = None
        self.response = b""
        self.requests: list[tuple[dict[str, str], bytes]] = []
        handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=None, response_serializer=None
        )
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=4),
            handlers=[
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": handler}
                ),
            ],
            options=[("grpc.so_reuseport", 0)],
        )
        self.endpoint = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _export(self, request: bytes, context: Any) -> bytes:
        self.requests.append(({k: v for k, v in context.invocation_metadata()}, request))
        if self.abort is not None:
            code, details, trailers = self.abort
            if trailers:
                context.set_trailing_metadata(trailers)
            context.abort(code, details)
        return self.response

    def stop(self) -> None:
        self.server.stop(0).wait(10)


@pytest.fixture
def scripted_http() -> Iterator[ScriptedHTTP]:
    server = ScriptedHTTP()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scripted_grpc() -> Iterator[ScriptedGRPC]:
    server = ScriptedGRPC()
    try:
        yield server
    finally:
        server.stop()


# -- delivery ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_arrive_intact(receiver: OTLPReceiver, transport: str) -> None:
    spans = _spans(3)
    result = _send(_sender(receiver, transport), encode_spans_request(spans))
    assert result == SendResult(True, False, False, None, "200" if transport == "http" else "OK", 0, "")
    got = receiver.spans()
    assert [item.name for item in got] == ["op-0", "op-1", "op-2"]
    for item, span in zip(got, spans, strict=True):
        assert item.transport == transport
        assert item.scope_name == "test.sender"
        assert item.resource["service.name"] == "checkout" and item.resource["tenant.id"] == "acme"
        assert item.attributes == {"i": int(item.name[-1]), "route": "/pay", "ok": True}
        assert item.span_id == span.context.span_id.to_bytes(8, "big")
    assert receiver.request_count == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logs_arrive_intact(receiver: OTLPReceiver, transport: str) -> None:
    result = _send(_sender(receiver, transport, "logs"), encode_logs_request(_logs(2)))
    assert result.ok and result.rejected == 0
    got = receiver.logs()
    assert [item.name for item in got] == ["line-0", "line-1"]
    assert [item.attributes for item in got] == [{"i": 0}, {"i": 1}]
    assert {item.severity_number for item in got} == {SeverityNumber.WARN.value}
    assert all(RESOURCE.items() <= item.resource.items() and item.transport == transport for item in got)
    assert receiver.span_count == 0


@pytest.mark.parametrize(
    ("transport", "compression"), [("http", "gzip"), ("http", "deflate"), ("grpc", "gzip")]
)
def test_compressed_requests_arrive(receiver: OTLPReceiver, transport: str, compression: str) -> None:
    body = _body("traces", 4)
    sender = _sender(receiver, transport, compression=compression)
    assert sender.compression == compression
    assert _send(sender, body).ok
    assert [item.name for item in receiver.spans()] == ["op-0", "op-1", "op-2", "op-3"]
    if transport == "http":
        assert receiver.bytes_received == len(body)  # the receiver counts decompressed bytes


@pytest.mark.parametrize(
    ("compression", "decompress"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)]
)
def test_http_body_is_compressed_on_the_wire(
    scripted_http: ScriptedHTTP, compression: str, decompress: Callable[[bytes], bytes]
) -> None:
    body = _body("logs")
    sender = HTTPSender("logs", endpoint=scripted_http.url + "/v1/logs", compression=compression)
    assert _send(sender, body).ok
    ((path, headers, wire),) = scripted_http.requests
    assert path == "/v1/logs"
    assert headers["content-encoding"] == compression
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["user-agent"].startswith("OTel-OTLP-Exporter-Python/")
    assert wire != body and decompress(wire) == body


# -- outcome classification: HTTP ----------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_http_throttling_with_retry_after_seconds(receiver: OTLPReceiver, status: int) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=status, retry_after_s=7)
    result = _send(_sender(receiver, "http"), _body("traces"))
    assert result == SendResult(False, True, True, 7.0, str(status), 0, result.message)
    assert receiver.span_count == 0 and receiver.request_count == 1  # exactly one attempt


def test_http_server_error_without_retry_after(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=503)
    result = _send(_sender(receiver, "http"), _body("traces"))
    assert (result.ok, result.retryable, result.throttled, result.retry_after) == (False, True, True, None)


def test_http_400_is_final(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=400)
    result = _send(_sender(receiver, "http"), _body("traces"))
    assert (result.ok, result.retryable, result.throttled, result.status) == (False, False, False, "400")


def test_http_retry_after_forms(scripted_http: ScriptedHTTP) -> None:
    sender = HTTPSender("traces", endpoint=scripted_http.url + "/v1/traces")
    later = format_datetime(datetime.fromtimestamp(time.time() + 120, timezone.utc), usegmt=True)
    cases = {
        later: lambda v: v is not None and 60 < v <= 121,  # an HTTP-date: seconds from now
        "Wed, 21 Oct 2015 07:28:00 GMT": lambda v: v == 0.0,  # in the past: retry now
        "3": lambda v: v == 3.0,
        "not a date": lambda v: v is None,
    }
    try:
        for value, check in cases.items():
            scripted_http.reply = (503, {"Retry-After": value}, b"")
            result = sender.send(b"", TIMEOUT)
            assert result.retryable and result.throttled
            assert check(result.retry_after), (value, result.retry_after)
    finally:
        sender.shutdown()


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (502, {}, b"", (False, True, False, "502", "Bad Gateway")),
        (504, {}, b"", (False, True, False, "504", "Gateway Timeout")),
        (
            400,
            {"Content-Type": "application/x-protobuf"},
            RpcStatus(code=3, message="bad payload").SerializeToString(),
            (False, False, False, "400", "bad payload"),
        ),
        (401, {"Content-Type": "text/plain"}, b"no token\n", (False, False, False, "401", "no token")),
        (404, {}, b"", (False, False, False, "404", "Not Found")),
        (413, {}, b"x" * 2000, (False, False, False, "413", "x" * 512)),
        (500, {"Retry-After": "5"}, b"", (False, False, False, "500", "Internal Server Error")),
        (307, {"Location": "/elsewhere"}, b"", (False, False, False, "307", "Temporary Redirect")),
        (202, {}, b"", (True, False, False, "202", "")),
        (200, {"Content-Type": "application/x-protobuf"}, b"\xff\xff", (True, False, False, "200", "")),
    ],
    ids=["502", "504", "400-status", "401-text", "404", "413-long", "500", "307", "202", "200-garbage"],
)
def test_http_status_classification(
    scripted_http: ScriptedHTTP,
    status: int,
    headers: dict[str, str],
    body: bytes,
    expected: tuple[bool, bool, bool, str, str],
) -> None:
    scripted_http.reply = (status, headers, body)
    result = _send(HTTPSender("traces", endpoint=scripted_http.url + "/v1/traces"), _body("traces"))
    assert (result.ok, result.retryable, result.throttled, result.status, result.message) == expected
    assert result.rejected == 0
    assert len(scripted_http.requests) == 1  # no redirect followed, no retry


# -- outcome classification: gRPC -----------------------------------------------------------------


def test_grpc_unavailable_is_retryable_throttling(receiver: OTLPReceiver) -> None:
    receiver.set_faults(down=True)
    sender = _sender(receiver, "grpc")
    try:
        result = sender.send(_body("traces"), TIMEOUT)
        assert (result.ok, result.retryable, result.throttled, result.status) == (
            False,
            True,
            True,
            "UNAVAILABLE",
        )
        assert result.retry_after is None and result.message == "injected failure"
        receiver.set_faults(down=False)  # the sender recovers on its next attempt
        assert sender.send(_body("traces"), TIMEOUT).ok
    finally:
        sender.shutdown()
    assert receiver.span_count == 2 and receiver.request_count == 2


@pytest.mark.parametrize("retry_after_s", [1.5, None])
def test_grpc_resource_exhausted_needs_retry_info(
    receiver: OTLPReceiver, retry_after_s: float | None
) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=429, retry_after_s=retry_after_s)
    result = _send(_sender(receiver, "grpc"), _body("traces"))
    assert result.status == "RESOURCE_EXHAUSTED" and result.throttled
    assert result.retryable is (retry_after_s is not None)
    assert result.retry_after == retry_after_s


def _status_details(code: grpc.StatusCode, seconds: int) -> bytes:
    detail = AnyMessage()
    detail.Pack(RetryInfo(retry_delay=Duration(seconds=seconds, nanos=250_000_000)))
    return RpcStatus(code=code.value[0], message="busy", details=[detail]).SerializeToString()


@pytest.mark.parametrize(
    ("code", "trailers", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, (), (False, False, None)),
        (grpc.StatusCode.PERMISSION_DENIED, (), (False, False, None)),
        (grpc.StatusCode.INTERNAL, (), (False, False, None)),
        (grpc.StatusCode.DATA_LOSS, (), (True, False, None)),
        (grpc.StatusCode.ABORTED, (), (True, False, None)),
        # RetryInfo only in the standard status details (grpcio-status style servers).
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            (("grpc-status-details-bin", _status_details(grpc.StatusCode.RESOURCE_EXHAUSTED, 2)),),
            (True, True, 2.25),
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            (("google.rpc.retryinfo-bin", RetryInfo(retry_delay=Duration(seconds=4)).SerializeToString()),),
            (True, True, 4.0),
        ),
    ],
    ids=lambda value: value.name if isinstance(value, grpc.StatusCode) else None,
)
def test_grpc_status_classification(
    scripted_grpc: ScriptedGRPC,
    code: grpc.StatusCode,
    trailers: tuple[tuple[str, bytes], ...],
    expected: tuple[bool, bool, float | None],
) -> None:
    scripted_grpc.abort = (code, f"scripted {code.name}", trailers)
    result = _send(GRPCSender("traces", endpoint=scripted_grpc.endpoint, insecure=True), _body("traces"))
    assert (result.retryable, result.throttled, result.retry_after) == expected
    assert (result.ok, result.status, result.message) == (False, code.name, f"scripted {code.name}")
    assert len(scripted_grpc.requests) == 1


# -- partial success, connection problems ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("signal", SIGNALS)
def test_partial_success_is_ok_with_rejected_count(
    receiver: OTLPReceiver, transport: str, signal: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.set_faults(partial_rejected=3)
    sender = _sender(receiver, transport, signal)
    with caplog.at_level(logging.WARNING, logger=_otlp_sender.__name__):
        try:
            results = [sender.send(_body(signal, 4), TIMEOUT) for _ in range(2)]
        finally:
            sender.shutdown()
    for result in results:
        assert (result.ok, result.retryable, result.rejected, result.message) == (
            True,
            False,
            3,
            "rejected by test",
        )
    warnings = [r for r in caplog.records if "rejected by test" in r.getMessage()]
    assert len(warnings) == 1  # once per distinct message, not per batch
    assert "3 rejected" in warnings[0].getMessage()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_is_retryable(transport: str) -> None:
    port = _free_port()
    if transport == "http":
        sender: HTTPSender | GRPCSender = HTTPSender("traces", endpoint=f"http://127.0.0.1:{port}/v1/traces")
    else:
        sender = GRPCSender("traces", endpoint=f"127.0.0.1:{port}", insecure=True)
    result = _send(sender, _body("traces"))
    assert (result.ok, result.retryable) == (False, True)
    assert result.status == ("connection_error" if transport == "http" else "UNAVAILABLE")
    assert result.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout_is_retryable(receiver: OTLPReceiver, transport: str) -> None:
    receiver.set_faults(latency_s=60)  # stop() at teardown ends the wait
    result = _send(_sender(receiver, transport), _body("traces"), timeout=0.3)
    assert (result.ok, result.retryable) == (False, True)
    assert result.status == ("timeout" if transport == "http" else "DEADLINE_EXCEEDED")


# -- lifecycle -------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_shutdown_is_idempotent_and_refuses_later_sends(receiver: OTLPReceiver, transport: str) -> None:
    sender = _sender(receiver, transport)
    assert sender.send(_body("traces"), TIMEOUT).ok
    sender.shutdown()
    sender.shutdown()
    result = sender.send(_body("traces"), TIMEOUT)
    assert (result.ok, result.retryable, result.status) == (False, False, "shutdown")
    assert receiver.request_count == 1


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="signal"):
        HTTPSender("metrics")
    with pytest.raises(ValueError, match="compression"):
        HTTPSender("traces", compression="brotli")
    with pytest.raises(ValueError, match="timeout"):
        GRPCSender("traces", timeout=0)
    sender = HTTPSender("traces")
    try:
        with pytest.raises(ValueError, match="timeout"):
            sender.send(b"", 0)
    finally:
        sender.shutdown()


# -- from_exporter / sender_for ------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_senders_take_the_environment_the_stock_exporters_resolved(
    monkeypatch: pytest.MonkeyPatch, signal: str
) -> None:
    """Senders read no OTEL_EXPORTER_OTLP_* themselves: they send with what the stock exporter resolved."""
    upper = signal.upper()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318/")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS", "a=1,B=two%20words")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "c=3")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_CERTIFICATE", "/ca.pem")
    http_stock = (HttpSpanExporter if signal == "traces" else HttpLogExporter)()
    grpc_stock = (GrpcSpanExporter if signal == "traces" else GrpcLogExporter)()
    http_sender, grpc_sender = sender_for(http_stock), sender_for(grpc_stock)
    try:
        assert isinstance(http_sender, HTTPSender) and isinstance(grpc_sender, GRPCSender)
        assert http_sender.endpoint == f"http://generic:4318/v1/{signal}"
        assert (http_sender.headers["a"], http_sender.headers["b"]) == ("1", "two words")
        assert "c" not in http_sender.headers  # the per-signal variable wins, as in stock
        assert (http_sender.timeout, http_sender.compression) == (3.0, "gzip")
        assert (http_sender.verify, http_sender.cert) == ("/ca.pem", None)
        assert (grpc_sender.endpoint, grpc_sender.insecure) == ("generic:4318", True)
        assert grpc_sender.headers == {"a": "1", "b": "two words"}
        assert (grpc_sender.timeout, grpc_sender.compression) == (3.0, "gzip")
    finally:
        for closeable in (http_sender, grpc_sender, http_stock, grpc_stock):
            if closeable is not None:
                closeable.shutdown()


@pytest.mark.parametrize("signal", SIGNALS)
def test_http_from_exporter_sends_with_its_settings(scripted_http: ScriptedHTTP, signal: str) -> None:
    exporter_cls = HttpSpanExporter if signal == "traces" else HttpLogExporter
    exporter = exporter_cls(
        endpoint=f"{scripted_http.url}/custom/{signal}",
        headers={"X-Tenant": "acme"},
        timeout=7,
        compression=Compression.Gzip,
    )
    sender = sender_for(exporter)
    exporter.shutdown()
    assert isinstance(sender, HTTPSender)
    assert (sender.signal, sender.endpoint, sender.timeout, sender.compression) == (
        signal,
        f"{scripted_http.url}/custom/{signal}",
        7.0,
        "gzip",
    )
    body = _body(signal)
    assert _send(sender, body).ok  # the exporter's shutdown did not touch the sender's session
    ((path, headers, wire),) = scripted_http.requests
    assert path == f"/custom/{signal}"
    assert headers["x-tenant"] == "acme"
    assert headers["user-agent"].startswith("OTel-OTLP-Exporter-Python/")
    assert headers["content-encoding"] == "gzip" and gzip.decompress(wire) == body


@pytest.mark.parametrize("signal", SIGNALS)
def test_grpc_from_exporter_sends_with_its_settings(scripted_grpc: ScriptedGRPC, signal: str) -> None:
    exporter_cls = GrpcSpanExporter if signal == "traces" else GrpcLogExporter
    exporter = exporter_cls(
        endpoint=scripted_grpc.endpoint,
        insecure=True,
        headers={"x-tenant": "acme"},
        timeout=6,
        compression=grpc.Compression.Gzip,
    )
    sender = sender_for(exporter)
    exporter.shutdown()
    assert isinstance(sender, GRPCSender)
    assert (sender.signal, sender.endpoint, sender.insecure, sender.timeout, sender.compression) == (
        signal,
        scripted_grpc.endpoint,
        True,
        6.0,
        "gzip",
    )
    partial = ExportTraceServiceResponse()
    partial.partial_success.error_message = f"{signal} warning only"  # rejected 0: still worth a warning
    scripted_grpc.response = partial.SerializeToString()
    body = _body(signal)
    result = _send(sender, body)
    assert (result.ok, result.rejected, result.message) == (True, 0, f"{signal} warning only")
    ((metadata, request),) = scripted_grpc.requests
    assert request == body
    assert metadata["x-tenant"] == "acme"
    assert metadata["user-agent"].startswith("OTel-OTLP-Exporter-Python/")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_from_exporter_delivers_to_the_receiver(receiver: OTLPReceiver, transport: str) -> None:
    if transport == "http":
        exporter: Any = HttpLogExporter(endpoint=receiver.logs_url)
    else:
        exporter = GrpcLogExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    sender = sender_for(exporter)
    exporter.shutdown()
    assert sender is not None and sender.signal == "logs"
    assert _send(sender, _body("logs", 3)).ok
    assert [item.name for item in receiver.logs()] == ["line-0", "line-1", "line-2"]


def test_from_exporter_copies_tls_settings() -> None:
    http_exporter = HttpSpanExporter(
        endpoint="https://collector:4318/v1/traces",
        certificate_file="/ca.pem",
        client_key_file="/client.key",
        client_certificate_file="/client.pem",
    )
    credentials = grpc.ssl_channel_credentials()
    grpc_exporter = GrpcSpanExporter(endpoint="https://collector:4317", credentials=credentials)
    http_sender = HTTPSender.from_exporter(http_exporter)
    grpc_sender = GRPCSender.from_exporter(grpc_exporter)
    try:
        assert (http_sender.verify, http_sender.cert) == ("/ca.pem", ("/client.pem", "/client.key"))
        assert (grpc_sender.endpoint, grpc_sender.insecure) == ("collector:4317", False)
        assert grpc_sender._credentials is credentials
    finally:
        for closeable in (http_sender, grpc_sender, http_exporter, grpc_exporter):
            closeable.shutdown()


def test_sender_for_declines_what_it_cannot_stand_in_for(caplog: pytest.LogCaptureFixture) -> None:
    class Custom(HttpSpanExporter):
        pass

    assert sender_for(InMemorySpanExporter()) is None
    assert sender_for(object()) is None
    custom = Custom(endpoint="http://127.0.0.1:1/v1/traces")
    broken = HttpSpanExporter(endpoint="http://127.0.0.1:1/v1/traces")
    del broken._client  # internals of an unknown version
    odd = GrpcSpanExporter(endpoint="127.0.0.1:1", insecure=True)
    odd._compression = "zstd"
    try:
        assert sender_for(custom) is None  # a subclass may add behaviour a sender would bypass
        with caplog.at_level(logging.DEBUG, logger=_otlp_sender.__name__):
            assert sender_for(broken) is None
            assert sender_for(odd) is None
        assert sum("no OTLP sender for" in r.getMessage() for r in caplog.records) == 2
        with pytest.raises(TypeError):
            HTTPSender.from_exporter(odd)
        with pytest.raises(TypeError):
            GRPCSender.from_exporter(custom)
    finally:
        custom.shutdown()
        odd.shutdown()


def test_http_from_exporter_shares_a_session_subclass(scripted_http: ScriptedHTTP) -> None:
    class AuthSession(requests.Session):
        """Stands for a credential provider's session: behaviour a copy would lose."""

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("headers", {})["authorization"] = "Bearer fresh"
            return super().request(method, url, *args, **kwargs)

    session = AuthSession()
    exporter = HttpSpanExporter(endpoint=scripted_http.url + "/v1/traces", session=session)
    sender = HTTPSender.from_exporter(exporter)
    assert sender._session is session
    assert _send(sender, _body("traces")).ok
    assert scripted_http.requests[0][1]["authorization"] == "Bearer fresh"
    assert (
        exporter.export(_spans(1)).name == "SUCCESS"
    )  # the sender's shutdown left the exporter's session alone
    exporter.shutdown()


def test_http_from_exporter_reads_the_older_layout(scripted_http: ScriptedHTTP) -> None:
    # Releases before the pluggable transport kept settings on the exporter itself.
    exporter = HttpLogExporter(endpoint=scripted_http.url + "/v1/logs")
    exporter._client.shutdown()
    del exporter._client
    legacy_session = requests.Session()
    legacy_session.headers.update(
        {"User-Agent": "legacy-agent", "Content-Encoding": "gzip", "x-session": "1"}
    )
    exporter._session = legacy_session
    exporter._headers = {"X-Tenant": "acme"}
    exporter._timeout = 4
    exporter._compression = Compression.Gzip
    exporter._certificate_file = True
    exporter._client_cert = None
    sender = sender_for(exporter)
    assert isinstance(sender, HTTPSender)
    assert (sender.timeout, sender.compression, sender.verify, sender.cert) == (4.0, "gzip", True, None)
    body = _body("logs")
    assert _send(sender, body).ok
    ((_, headers, wire),) = scripted_http.requests
    assert (headers["x-tenant"], headers["x-session"], headers["user-agent"]) == ("acme", "1", "legacy-agent")
    assert gzip.decompress(wire) == body


@pytest.mark.parametrize(
    ("compression", "name"),
    [(grpc.Compression.Gzip, "gzip"), (grpc.Compression.NoCompression, "none"), ("GZIP", "gzip")],
)
def test_grpc_compression_argument_forms(receiver: OTLPReceiver, compression: Any, name: str) -> None:
    sender = GRPCSender("traces", endpoint=receiver.grpc_endpoint, insecure=True, compression=compression)
    assert sender.compression == name
    assert _send(sender, _body("traces", 1)).ok
    assert receiver.span_count == 1


# -- the light HTTP transport: choice, keep-alive, parity with requests -------------------------------


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy, CA-bundle or netrc setting of the machine's may steer requests for these tests."""
    for name in (*_PROXY_VARIABLES, *(v.upper() for v in _PROXY_VARIABLES)):
        monkeypatch.delenv(name, raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC", "SSLKEYLOGFILE"):
        monkeypatch.delenv(name, raising=False)


def _reply(status: str = "200 OK", headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """Raw response bytes; no header is added, so that tests control framing exactly."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + body


def _framed(status: str = "200 OK", headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    return _reply(status, (*headers, ("Content-Length", str(len(body)))), body)


OK_REPLY = _framed()

Script = Callable[[int], tuple[bytes, str]]


class RawHTTP:
    """A loopback HTTP/1.1 server that answers request n (counted from 1) with ``script(n)``.

    ``script`` gives raw response bytes and what to do next: ``"keep"`` the connection, ``"close"``
    it (a FIN, no ``Connection: close``), ``"drop"`` it unanswered, ``"reset"`` it (RST), ``"hang"``
    until stop(), or ``"stall"`` (stop reading before the body). It counts connections and keeps
    every request's raw bytes, so tests see keep-alive, retries and exactly what was on the wire.
    """

    def __init__(self, script: Script = lambda n: (OK_REPLY, "keep"), tls: ssl.SSLContext | None = None):
        self.script = script
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.answered: list[bytes] = []  # the requests that got their answer ("keep"/"close")
        self.release = threading.Event()
        self._cond = threading.Condition()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def wait_for_requests(self, n: int, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.connections += 1
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                with self._cond:
                    self._sockets.append(conn)
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                with self._cond:
                    n = len(self.requests) + 1
                reply, action = self.script(n)
                if action != "stall":
                    while len(pending) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                request, pending = head + b"\r\n\r\n" + pending[:length], pending[length:]
                with self._cond:
                    self.requests.append(request)
                    if action in ("keep", "close"):
                        self.answered.append(request)
                    self._cond.notify_all()
                if reply:
                    conn.sendall(reply)
                if action == "keep":
                    continue
                if action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif action in ("hang", "stall"):
                    self.release.wait()
                return
        except OSError:  # incl. TLS handshakes the client gives up on
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        self._listener.close()
        with self._cond:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)


@pytest.fixture
def raw_http() -> Iterator[Callable[..., RawHTTP]]:
    """Makes RawHTTP servers, stopped at teardown."""
    servers: list[RawHTTP] = []

    def make(script: Script = lambda n: (OK_REPLY, "keep"), tls: ssl.SSLContext | None = None) -> RawHTTP:
        servers.append(RawHTTP(script, tls))
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


def _twins(url: str, signal: str = "traces", **kwargs: Any) -> tuple[HTTPSender, HTTPSender]:
    """The same sender twice: on the light transport, and on requests (a session passed in)."""
    light = HTTPSender(signal, endpoint=url, **kwargs)
    heavy = HTTPSender(signal, endpoint=url, session=requests.Session(), **kwargs)
    assert (light.transport, heavy.transport) == ("http.client", "requests")
    return light, heavy


def _outcome(result: SendResult) -> SendResult:
    """A result without its message where the message names a transport-level exception."""
    failed = result.status in ("connection_error", "timeout", "error", "shutdown")
    assert result.message or not failed
    return dataclasses.replace(result, message="") if failed else result


def test_the_light_transport_serves_a_plain_setup(plain_env: None, receiver: OTLPReceiver) -> None:
    sender = HTTPSender("traces", endpoint=receiver.traces_url)
    exporter = HttpLogExporter(endpoint=receiver.logs_url)
    from_stock = sender_for(exporter)
    exporter.shutdown()
    assert isinstance(from_stock, HTTPSender)
    try:
        assert sender.transport == from_stock.transport == "http.client"
        assert "transport='http.client'" in repr(sender)
        assert sender.send(_body("traces"), TIMEOUT).ok and from_stock.send(_body("logs"), TIMEOUT).ok
    finally:
        sender.shutdown()
        from_stock.shutdown()
    assert (receiver.span_count, receiver.log_count) == (2, 2)


class _SessionSubclass(requests.Session):
    """Stands for any session type with behaviour of its own."""


@pytest.mark.parametrize(
    "case",
    [
        "session",
        "session_subclass",
        "session_proxies",
        "session_auth",
        "netrc",
        "url_auth",
    ],
)
def test_requests_is_kept_where_it_would_do_more_than_a_post(
    plain_env: None,
    raw_http: Callable[..., RawHTTP],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
) -> None:
    server = raw_http()
    url = server.url + "/v1/traces"
    exporter: Any = None
    if case == "session":
        sender = HTTPSender("traces", endpoint=url, session=requests.Session())
    elif case == "session_subclass":
        exporter = HttpSpanExporter(endpoint=url, session=_SessionSubclass())
        sender = HTTPSender.from_exporter(exporter)
    elif case in ("session_proxies", "session_auth"):
        exporter = HttpSpanExporter(endpoint=url)
        session = exporter._client._transport._session
        if case == "session_proxies":
            session.proxies = {"http": server.url}  # the server answers as the proxy too
        else:
            session.auth = ("user", "secret")
        sender = HTTPSender.from_exporter(exporter)
    elif case == "netrc":
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login user password secret\n")
        monkeypatch.setenv("NETRC", str(netrc))
        sender = HTTPSender("traces", endpoint=url)
    else:
        sender = HTTPSender("traces", endpoint=url.replace("://", "://user:secret@"))
    assert sender.transport == "requests"
    try:
        assert _send(sender, _body("traces")).ok
    finally:
        if exporter is not None:
            exporter.shutdown()
    (request,) = server.requests
    if case == "session_proxies":
        assert request.startswith(f"POST {url} HTTP/1.1".encode())  # absolute form: via the proxy
    if case in ("session_auth", "netrc", "url_auth"):
        assert b"\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n" in request


@pytest.mark.parametrize(("no_proxy", "transport"), [(None, "requests"), ("127.0.0.1", "http.client")])
def test_an_environment_proxy_keeps_requests_unless_no_proxy_covers_the_host(
    plain_env: None,
    raw_http: Callable[..., RawHTTP],
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str | None,
    transport: str,
) -> None:
    proxy, collector = raw_http(), raw_http()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    sender = HTTPSender("traces", endpoint=collector.url + "/v1/traces")
    assert sender.transport == transport
    assert _send(sender, _body("traces")).ok
    through_proxy = transport == "requests"
    assert (len(proxy.requests), len(collector.requests)) == ((1, 0) if through_proxy else (0, 1))


def test_patched_requests_code_is_used_instead(
    plain_env: None, raw_http: Callable[..., RawHTTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mocking library patches requests: the sender must go through the patch, as before."""
    server = raw_http()
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    seen: list[str] = []

    def fake_send(self: Any, request: Any, **kwargs: Any) -> requests.Response:
        seen.append(request.url)
        response = requests.Response()
        response.status_code, response.reason, response._content = 418, "I'm a teapot", b""
        return response

    try:
        with monkeypatch.context() as patch:
            patch.setattr(requests.adapters.HTTPAdapter, "send", fake_send)
            assert sender.send(_body("traces"), TIMEOUT).status == "418"
        assert sender.send(_body("traces"), TIMEOUT).ok  # unpatched: the light transport again
    finally:
        sender.shutdown()
    assert seen == [server.url + "/v1/traces"] and len(server.requests) == 1
    assert sender.transport == "http.client"


def test_requests_instrumentation_is_bypassed_only_while_suppressed(
    plain_env: None, raw_http: Callable[..., RawHTTP]
) -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    server = raw_http()
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    RequestsInstrumentor().instrument(tracer_provider=provider)
    try:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # as on the export lanes
        try:
            assert sender.send(_body("traces"), TIMEOUT).ok
        finally:
            detach(token)
        assert sender.send(_body("traces"), TIMEOUT).ok  # instrumented: through requests, traced
    finally:
        RequestsInstrumentor().uninstrument()
        sender.shutdown()
        provider.shutdown()
    quiet, traced = server.requests
    assert b"traceparent" not in quiet.lower() and b"\r\ntraceparent: " in traced.lower()
    assert [span.name for span in memory.get_finished_spans()] == ["POST"]
    assert server.connections == 2  # the light transport's connection, then requests' own


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_the_request_bytes_are_those_requests_sends(
    plain_env: None, raw_http: Callable[..., RawHTTP], compression: str
) -> None:
    server = raw_http()
    body = _body("logs", 3)
    light, heavy = _twins(
        server.url + "/v1/logs?tenant=a%20b", "logs", compression=compression, headers={"X-Tenant": "acme"}
    )
    for sender in (light, heavy):
        assert _send(sender, body).ok
    ours, theirs = server.requests
    assert ours == theirs
    assert ours.startswith(b"POST /v1/logs?tenant=a%20b HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nx-tenant: acme\r\n" in ours and b"\r\nAccept-Encoding: gzip, deflate\r\n" in ours


def test_keep_alive_reuses_one_connection(plain_env: None, raw_http: Callable[..., RawHTTP]) -> None:
    server = raw_http()
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    try:
        assert all(sender.send(_body("traces"), TIMEOUT).ok for _ in range(5))
    finally:
        sender.shutdown()
    assert (server.connections, len(server.requests)) == (1, 5)


def test_connection_close_from_the_server_is_honoured(
    plain_env: None, raw_http: Callable[..., RawHTTP]
) -> None:
    server = raw_http(lambda n: (_framed(headers=[("Connection", "close")]), "keep"))
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    try:
        assert all(sender.send(_body("traces"), TIMEOUT).ok for _ in range(3))
    finally:
        sender.shutdown()
    assert (server.connections, len(server.answered)) == (3, 3)


def test_a_connection_the_server_closed_while_idle_is_replaced(
    plain_env: None, raw_http: Callable[..., RawHTTP]
) -> None:
    """A keep-alive timeout: the server closes after answering, without saying so."""
    server = raw_http(lambda n: (OK_REPLY, "close"))
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    bodies = [_body("traces", n) for n in (1, 2, 3)]
    try:
        assert all(sender.send(body, TIMEOUT).ok for body in bodies)
    finally:
        sender.shutdown()
    assert all(request.endswith(body) for request, body in zip(server.answered, bodies, strict=True))
    assert server.connections == 3  # each delivered exactly once, on its own connection


@pytest.mark.parametrize("how", ["drop", "reset"])
def test_a_stale_connection_is_retried_once_on_a_fresh_one(
    plain_env: None, raw_http: Callable[..., RawHTTP], how: str
) -> None:
    """The server gives up the idle connection just as the next request arrives on it."""
    server = raw_http(lambda n: (b"", how) if n == 2 else (OK_REPLY, "keep"))
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    first, second = _body("traces", 1), _body("traces", 2)
    try:
        assert sender.send(first, TIMEOUT).ok
        assert sender.send(second, TIMEOUT).ok
    finally:
        sender.shutdown()
    assert server.connections == 2
    # each batch answered exactly once: the dropped attempt was never processed
    assert all(request.endswith(body) for request, body in zip(server.answered, (first, second), strict=True))
    assert len(server.requests) == 3


def test_a_fresh_connection_is_not_retried(plain_env: None, raw_http: Callable[..., RawHTTP]) -> None:
    server = raw_http(lambda n: (b"", "drop"))
    light, heavy = _twins(server.url + "/v1/traces")
    results = [_send(sender, _body("traces")) for sender in (light, heavy)]
    assert _outcome(results[0]) == _outcome(results[1])
    assert results[0].status == "connection_error" and results[0].retryable
    assert (server.connections, len(server.requests)) == (2, 2)  # one attempt each


def _protobuf_partial(rejected: int) -> bytes:
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = rejected
    response.partial_success.error_message = "some spans rejected"
    return response.SerializeToString()


_PARITY: dict[str, tuple[bytes, str]] = {
    "partial-success": (
        _framed(headers=[("CONTENT-TYPE", "application/x-protobuf")], body=_protobuf_partial(3)),
        "keep",
    ),
    "400-text": (_framed("400 Bad Request", [("Content-Type", "text/plain")], b"bad payload\n"), "keep"),
    "400-gzip-text": (
        _framed("400 Bad Request", [("Content-Encoding", "gzip")], gzip.compress(b"zipped reason")),
        "keep",
    ),
    "400-deflate-text": (
        _framed("400 Bad Request", [("content-encoding", "deflate")], zlib.compress(b"deflated reason")),
        "keep",
    ),
    "400-undecodable": (_framed("400 Bad Request", [("Content-Encoding", "gzip")], b"not gzip"), "keep"),
    "429-seconds": (_framed("429 Too Many Requests", [("RETRY-AFTER", "7")]), "keep"),
    "503-date": (b"", "keep"),  # the date is set by the test, an hour from then
    "503-two-retry-after": (
        _framed("503 Service Unavailable", [("Retry-After", "5"), ("Retry-After", "7")]),
        "keep",
    ),
    "301-not-followed": (
        _framed("301 Moved Permanently", [("Location", "http://127.0.0.1:1/")], b"moved"),
        "keep",
    ),
    "302-undecodable": (
        _framed("302 Found", [("Location", "/x"), ("Content-Encoding", "gzip")], b"zz"),
        "keep",
    ),
    "chunked": (
        _reply("400 Bad Request", [("Transfer-Encoding", "chunked")], b"4\r\nnope\r\n0\r\n\r\n"),
        "keep",
    ),
    "bad-chunk": (_reply("200 OK", [("Transfer-Encoding", "chunked")], b"zz\r\n"), "close"),
    "short-body": (_reply("200 OK", [("Content-Length", "10")], b"abc"), "close"),
    "until-close": (_reply("400 Bad Request", [("Content-Type", "text/plain")], b"read to the end"), "close"),
    "two-lengths": (_reply("200 OK", [("Content-Length", "3"), ("Content-Length", "4")], b"abc"), "close"),
    "listed-length": (_reply("200 OK", [("Content-Length", "3, 3")], b"abcd"), "close"),
    "bad-status-line": (b"garbage\r\n\r\n", "close"),
    "unanswered": (b"", "drop"),
    "reset": (b"", "reset"),
    "answer-timeout": (b"", "hang"),
    "body-timeout": (
        _reply("200 OK", [("Content-Length", "10")], b"abc"),
        "hang",
    ),  # requests: ConnectionError
}


@pytest.mark.parametrize("case", list(_PARITY))
def test_outcomes_are_those_of_the_requests_path(
    plain_env: None, raw_http: Callable[..., RawHTTP], case: str
) -> None:
    reply, action = _PARITY[case]
    if case == "503-date":
        later = format_datetime(datetime.fromtimestamp(time.time() + 3600, timezone.utc), usegmt=True)
        reply = _framed("503 Service Unavailable", [("retry-after", later)])
    server = raw_http(lambda n: (reply, action))
    light, heavy = _twins(server.url + "/v1/traces")
    ours, theirs = (_send(sender, _body("traces"), timeout=0.3) for sender in (light, heavy))
    if case == "503-date":  # seconds until the date, read at two moments
        assert ours.retry_after is not None and theirs.retry_after is not None
        assert 3000 < ours.retry_after <= 3600 and 3000 < theirs.retry_after <= 3600
        ours, theirs = (dataclasses.replace(r, retry_after=None) for r in (ours, theirs))
    assert _outcome(ours) == _outcome(theirs)
    expected = {
        "partial-success": ("200", 3, "some spans rejected"),
        "400-gzip-text": ("400", 0, "zipped reason"),
        "400-deflate-text": ("400", 0, "deflated reason"),
        "400-undecodable": ("connection_error", 0, None),
        "429-seconds": ("429", 0, "Too Many Requests"),
        "301-not-followed": ("301", 0, "moved"),
        "302-undecodable": ("302", 0, "Found"),
        "two-lengths": ("error", 0, None),
        "answer-timeout": ("timeout", 0, None),
        "body-timeout": ("connection_error", 0, None),
    }.get(case)
    if expected is not None:
        assert (ours.status, ours.rejected) == expected[:2]
        assert expected[2] is None or ours.message == expected[2]
    if case == "429-seconds":
        assert (ours.retryable, ours.throttled, ours.retry_after) == (True, True, 7.0)
    assert len(server.requests) == 2  # one attempt each, no redirect followed


@pytest.mark.parametrize(
    "fault",
    [
        {"partial_rejected": 3},
        {"failure_rate": 1.0, "failure_status": 400},
        {"failure_rate": 1.0, "failure_status": 429, "retry_after_s": 2},
        {"failure_rate": 1.0, "failure_status": 503, "retry_after_s": 5},
    ],
    ids=["partial", "400", "429", "503"],
)
def test_receiver_outcomes_match_between_transports(
    plain_env: None, receiver: OTLPReceiver, fault: dict[str, Any]
) -> None:
    receiver.set_faults(**fault)
    light, heavy = _twins(receiver.traces_url)
    ours, theirs = (_send(sender, _body("traces", 4)) for sender in (light, heavy))
    assert ours == theirs
    assert receiver.request_count == 2


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_bodies_arrive_decodable_over_the_light_transport(
    plain_env: None, receiver: OTLPReceiver, compression: str
) -> None:
    sender = HTTPSender("traces", endpoint=receiver.traces_url, compression=compression)
    assert sender.transport == "http.client"
    body = _body("traces", 3)
    assert _send(sender, body).ok
    assert [item.name for item in receiver.spans()] == ["op-0", "op-1", "op-2"]
    assert receiver.bytes_received == len(body)


def test_refused_and_timed_out_match_between_transports(plain_env: None, receiver: OTLPReceiver) -> None:
    refused = [
        _send(sender, _body("traces")) for sender in _twins(f"http://127.0.0.1:{_free_port()}/v1/traces")
    ]
    assert _outcome(refused[0]) == _outcome(refused[1])
    assert (refused[0].status, refused[0].retryable) == ("connection_error", True)
    receiver.set_faults(latency_s=60)  # stop() at teardown ends the wait
    timed_out = [_send(sender, _body("traces"), timeout=0.3) for sender in _twins(receiver.traces_url)]
    assert _outcome(timed_out[0]) == _outcome(timed_out[1])
    assert (timed_out[0].status, timed_out[0].retryable) == ("timeout", True)


def test_a_timeout_while_sending_is_a_connection_error_as_in_requests(
    plain_env: None, raw_http: Callable[..., RawHTTP]
) -> None:
    server = raw_http(lambda n: (b"", "stall"))  # reads the head, never the body
    body = b"\x00" * (32 * 1024 * 1024)  # more than the socket buffers hold
    results = [_send(sender, body, timeout=0.3) for sender in _twins(server.url + "/v1/traces")]
    assert _outcome(results[0]) == _outcome(results[1])
    assert (results[0].status, results[0].retryable) == ("connection_error", True)


def test_shutdown_during_a_send_returns_shutdown(plain_env: None, raw_http: Callable[..., RawHTTP]) -> None:
    server = raw_http(lambda n: (OK_REPLY, "keep") if n == 1 else (b"", "hang"))
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces")
    assert sender.send(_body("traces"), TIMEOUT).ok
    results: list[SendResult] = []
    thread = threading.Thread(target=lambda: results.append(sender.send(_body("traces"), 60)))
    thread.start()
    try:
        assert server.wait_for_requests(2)
        sender.shutdown()
        thread.join(timeout=TIMEOUT)  # the shutdown wakes the read: no 60 s wait
        assert not thread.is_alive()
    finally:
        sender.shutdown()
        server.release.set()
        thread.join(timeout=TIMEOUT)
    assert results == [_otlp_sender._SHUTDOWN_RESULT]
    assert sender.send(_body("traces"), TIMEOUT) == _otlp_sender._SHUTDOWN_RESULT


def test_a_cookie_hands_the_session_back_to_requests(
    plain_env: None, raw_http: Callable[..., RawHTTP]
) -> None:
    server = raw_http(
        lambda n: (_framed(headers=[("Set-Cookie", "lb=7; Path=/")] if n in (1, 4) else []), "keep")
    )
    light, heavy = _twins(server.url + "/v1/traces")
    for sender in (light, heavy):
        try:
            assert all(sender.send(b"", TIMEOUT).ok for _ in range(3))
        finally:
            sender.shutdown()
    assert light.transport == "requests"  # requests sends the session's cookie from now on
    ours, theirs = server.requests[:3], server.requests[3:]
    assert ours == theirs
    assert [b"\r\nCookie: lb=7\r\n" in request for request in ours] == [False, True, True]


# -- the light HTTP transport over TLS -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A test CA with a client certificate, and another CA that signed nothing here."""
    folder = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    client = ca.issue_cert("client@example.test")
    paths = {
        name: str(folder / name) for name in ("ca.pem", "other.pem", "client.pem", "client.key", "both.pem")
    }
    ca.cert_pem.write_to_path(paths["ca.pem"])
    other.cert_pem.write_to_path(paths["other.pem"])
    client.cert_chain_pems[0].write_to_path(paths["client.pem"])
    client.private_key_pem.write_to_path(paths["client.key"])
    client.private_key_and_cert_chain_pem.write_to_path(paths["both.pem"])
    return {"ca": ca, **paths}


def _tls_server(
    raw_http: Callable[..., RawHTTP],
    tls: dict[str, Any],
    names: Sequence[str] = ("127.0.0.1",),
    mutual: bool = False,
) -> RawHTTP:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls["ca"].issue_cert(*names).configure_cert(context)
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        tls["ca"].configure_trust(context)
    return raw_http(tls=context)


def test_tls_verifies_the_server_with_the_certificate_file(
    plain_env: None, raw_http: Callable[..., RawHTTP], tls_files: dict[str, Any]
) -> None:
    server = _tls_server(raw_http, tls_files)
    sender = HTTPSender("traces", endpoint=server.url + "/v1/traces", certificate_file=tls_files["ca.pem"])
    assert sender.transport == "http.client"
    try:
        assert sender.send(_body("traces"), TIMEOUT).ok and sender.send(_body("traces"), TIMEOUT).ok
    finally:
        sender.shutdown()
    assert (server.connections, len(server.requests)) == (1, 2)


@pytest.mark.parametrize("case", ["default-roots", "other-ca", "wrong-name", "no-client-cert"])
def test_tls_failures_are_those_of_the_requests_path(
    plain_env: None, raw_http: Callable[..., RawHTTP], tls_files: dict[str, Any], case: str
) -> None:
    server = _tls_server(
        raw_http,
        tls_files,
        names=("localhost",) if case == "wrong-name" else ("127.0.0.1",),
        mutual=case == "no-client-cert",
    )
    ca_file = {"default-roots": None, "other-ca": tls_files["other.pem"]}.get(case, tls_files["ca.pem"])
    results = [
        _send(sender, _body("traces"))
        for sender in _twins(server.url + "/v1/traces", certificate_file=ca_file)
    ]
    assert _outcome(results[0]) == _outcome(results[1])
    assert (results[0].status, results[0].retryable) == ("connection_error", True)
    assert server.requests == []  # no request got past the handshake


@pytest.mark.parametrize("split", [True, False], ids=["cert-and-key", "one-file"])
def test_mutual_tls_with_a_client_certificate(
    plain_env: None, raw_http: Callable[..., RawHTTP], tls_files: dict[str, Any], split: bool
) -> None:
    server = _tls_server(raw_http, tls_files, mutual=True)
    client = (
        {"client_certificate_file": tls_files["client.pem"], "client_key_file": tls_files["client.key"]}
        if split
        else {"client_certificate_file": tls_files["both.pem"]}
    )
    light, heavy = _twins(server.url + "/v1/traces", certificate_file=tls_files["ca.pem"], **client)
    assert _send(light, _body("traces")).ok and _send(heavy, _body("traces")).ok
    assert len(server.answered) == 2


def test_requests_ca_bundle_wins_over_the_certificate_file_as_in_requests(
    plain_env: None,
    raw_http: Callable[..., RawHTTP],
    tls_files: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests lets REQUESTS_CA_BUNDLE override the session's verify (trust_env): so must we."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files["ca.pem"])
    server = _tls_server(raw_http, tls_files)
    light, heavy = _twins(server.url + "/v1/traces", certificate_file=tls_files["other.pem"])
    assert _send(light, _body("traces")).ok and _send(heavy, _body("traces")).ok


def test_unverified_tls_warns_on_every_send_as_urllib3_does(
    plain_env: None, raw_http: Callable[..., RawHTTP], tls_files: dict[str, Any]
) -> None:
    from urllib3.exceptions import InsecureRequestWarning

    server = _tls_server(raw_http, tls_files)
    exporter = HttpSpanExporter(endpoint=server.url + "/v1/traces")
    exporter._client._transport._session.verify = False
    light = HTTPSender.from_exporter(exporter)
    exporter.shutdown()
    heavy = HTTPSender("traces", endpoint=server.url + "/v1/traces", session=requests.Session())
    heavy._session.verify = False
    assert (light.transport, heavy.transport, light.verify) == ("http.client", "requests", False)
    messages = []
    for sender in (light, heavy):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert sender.send(_body("traces"), TIMEOUT).ok and _send(sender, _body("traces")).ok
        messages.append([str(w.message) for w in caught if w.category is InsecureRequestWarning])
    assert messages[0] == messages[1] and len(messages[0]) == 2

"""One-attempt OTLP senders over HTTP and gRPC, against the embedded receiver and scripted servers."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
import requests
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

from otel_sched import _otlp_sender
from otel_sched._encoding import encode_logs_request, encode_spans_request
from otel_sched._otlp_sender import GRPCSender, HTTPSender, SendResult, sender_for
from otel_sched._receiver import OTLPReceiver

TRANSPORTS = ["http", "grpc"]
SIGNALS = ["traces", "logs"]
RESOURCE = {"service.name": "checkout", "tenant.id": "acme"}
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The senders read OTEL_EXPORTER_OTLP_*: no test may see the developer's or CI's values."""
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


# -- environment -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "signal", "endpoint"),
    [
        ({}, "traces", "http://localhost:4318/v1/traces"),
        ({}, "logs", "http://localhost:4318/v1/logs"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            "traces",
            "http://collector:4318/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/base/"}, "logs", "https://c:4318/base/v1/logs"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:2/x",
            },
            "traces",
            "http://t:2/x",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:2/x",
            },
            "logs",
            "http://generic:1/v1/logs",
        ),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l:3"}, "logs", "http://l:3"),
    ],
)
def test_http_endpoint_from_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], signal: str, endpoint: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sender = HTTPSender(signal)
    sender.shutdown()
    assert sender.endpoint == endpoint
    assert HTTPSender(signal, endpoint="http://explicit:9/p").endpoint == "http://explicit:9/p"


def test_http_settings_from_env(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Api-Key=generic,other=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Api-Key=per%20signal, X-Tenant = acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2.5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/etc/client.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key")
    traces = HTTPSender("traces")
    logs = HTTPSender("logs")
    explicit = HTTPSender("traces", headers={"API-KEY": "explicit"}, timeout=1, compression="none")
    for sender in (traces, logs, explicit):
        sender.shutdown()
    # The per-signal variable replaces the generic one entirely; keys are lower-cased.
    assert traces.headers["api-key"] == "per signal" and traces.headers["x-tenant"] == "acme"
    assert "other" not in traces.headers
    assert logs.headers["api-key"] == "generic" and logs.headers["other"] == "1"
    assert traces.headers["user-agent"].startswith("OTel-OTLP-Exporter-Python/")
    assert (traces.timeout, logs.timeout) == (2.5, 5.0)
    assert traces.compression == logs.compression == "gzip"
    assert traces.headers["content-encoding"] == "gzip"
    assert traces.verify == logs.verify == "/etc/ca.pem"
    assert traces.cert == ("/etc/client.pem", "/etc/client.key")
    assert logs.cert is None  # a key without a certificate is not a client certificate
    assert explicit.headers["api-key"] == "explicit" and explicit.headers["x-tenant"] == "acme"
    assert (explicit.timeout, explicit.compression) == (1.0, "none")
    assert "content-encoding" not in explicit.headers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_env_values_warn_and_use_defaults(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "ten")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli")
    with caplog.at_level(logging.WARNING, logger=_otlp_sender.__name__):
        sender = (HTTPSender if transport == "http" else GRPCSender)("logs")
        sender.shutdown()
    assert (sender.timeout, sender.compression) == (10.0, "none")
    messages = [r.getMessage() for r in caplog.records]
    assert any("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT" in m and "'ten'" in m for m in messages)
    assert any("OTEL_EXPORTER_OTLP_COMPRESSION" in m and "'brotli'" in m for m in messages)


@pytest.mark.parametrize(
    ("env", "endpoint", "insecure"),
    [
        ({}, "localhost:4317", True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"}, "collector:4317", False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "collector:4317", True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:2",
            },
            "t:2",
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "collector:4317", False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
            "collector:4317",
            True,
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false"},
            "c:1",
            False,
        ),
        # https always means TLS, whatever the INSECURE variables say (as stock).
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:1", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true"},
            "c:1",
            False,
        ),
    ],
)
def test_grpc_endpoint_and_insecure_from_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str, insecure: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sender = GRPCSender("traces")
    sender.shutdown()
    assert (sender.endpoint, sender.insecure) == (endpoint, insecure)
    stock = GrpcSpanExporter()  # the stock exporter resolves the same environment the same way
    try:
        assert (stock._endpoint, stock._insecure) == (endpoint, insecure)
    finally:
        stock.shutdown()


def test_grpc_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "Api-Key=logs,x-tenant=acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip")
    traces, logs = GRPCSender("traces"), GRPCSender("logs")
    traces.shutdown()
    logs.shutdown()
    assert traces.headers == {"api-key": "generic"}
    assert logs.headers == {"api-key": "logs", "x-tenant": "acme"}
    assert traces.timeout == logs.timeout == 4.0
    assert (traces.compression, logs.compression) == ("none", "gzip")


@pytest.mark.parametrize("signal", SIGNALS)
def test_env_resolution_matches_the_stock_exporters(monkeypatch: pytest.MonkeyPatch, signal: str) -> None:
    upper = signal.upper()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318/")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS", "a=1,B=two%20words")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "c=3")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{upper}_CERTIFICATE", "/ca.pem")
    http_stock = (HttpSpanExporter if signal == "traces" else HttpLogExporter)()
    grpc_stock = (GrpcSpanExporter if signal == "traces" else GrpcLogExporter)()
    pairs: list[tuple[Any, Any]] = [
        (HTTPSender(signal), HTTPSender.from_exporter(http_stock)),
        (GRPCSender(signal), GRPCSender.from_exporter(grpc_stock)),
    ]
    try:
        for ours, theirs in pairs:
            assert ours.endpoint == theirs.endpoint
            assert ours.headers == theirs.headers
            assert (ours.timeout, ours.compression) == (theirs.timeout, theirs.compression)
        http_ours, http_theirs = pairs[0]
        assert http_ours.endpoint == f"http://generic:4318/v1/{signal}"
        assert (
            (http_ours.verify, http_ours.cert) == (http_theirs.verify, http_theirs.cert) == ("/ca.pem", None)
        )
        assert pairs[1][0].insecure == pairs[1][1].insecure is True
    finally:
        for ours, theirs in pairs:
            ours.shutdown()
            theirs.shutdown()
        http_stock.shutdown()
        grpc_stock.shutdown()


# -- from_exporter / sender_for ------------------------------------------------------------------------


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

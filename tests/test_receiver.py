"""The embedded OTLP receiver, exercised with the stock OTLP exporters."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_sched.demo._received import ReceivedItem
from otel_sched.demo._receiver import OTLPReceiver

TRANSPORTS = ["http", "grpc"]
RESOURCE = {"service.name": "checkout", "tenant.id": "acme"}


# -- helpers -----------------------------------------------------------------------


def _span_exporter(rx: OTLPReceiver, transport: str, **kwargs: Any) -> SpanExporter:
    if transport == "http":
        return HttpSpanExporter(endpoint=rx.traces_url, **kwargs)
    return GrpcSpanExporter(endpoint=rx.grpc_endpoint, insecure=True, **kwargs)


def _log_exporter(rx: OTLPReceiver, transport: str, **kwargs: Any) -> LogRecordExporter:
    if transport == "http":
        return HttpLogExporter(endpoint=rx.logs_url, **kwargs)
    return GrpcLogExporter(endpoint=rx.grpc_endpoint, insecure=True, **kwargs)


def _finished_spans(n: int = 2) -> Sequence[ReadableSpan]:
    """Real SDK spans, captured in memory so a test can hand them to an exporter itself."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.direct")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def _trace_body(name: str = "raw") -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = name
    span.trace_id = b"\x01" * 16
    span.span_id = b"\x02" * 8
    return request.SerializeToString()


def _http_post(
    rx: OTLPReceiver,
    body: bytes,
    *,
    path: str = "/v1/traces",
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> http.client.HTTPResponse:
    own = conn is None
    if conn is None:
        conn = _connect(rx)
    all_headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
    conn.request("POST", path, body=body, headers=all_headers)
    response = conn.getresponse()
    response.read()  # drain it so the connection can carry the next request
    if own:
        conn.close()
    return response


def _connect(rx: OTLPReceiver) -> http.client.HTTPConnection:
    host, port = rx.http_endpoint.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _grpc_export_raw(rx: OTLPReceiver, request: ExportTraceServiceRequest | None = None) -> None:
    with grpc.insecure_channel(rx.grpc_endpoint) as channel:
        TraceServiceStub(channel).Export(
            request if request is not None else ExportTraceServiceRequest.FromString(_trace_body()),
            timeout=10,
        )


def _codes(rx: OTLPReceiver) -> list[int]:
    return [code for _, _, code in rx.request_times()]


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., OTLPReceiver]]:
    started: list[OTLPReceiver] = []

    def make(**kwargs: Any) -> OTLPReceiver:
        rx = OTLPReceiver(**kwargs).start()
        started.append(rx)
        return rx

    yield make
    for rx in started:
        rx.stop()


# -- round trips with the stock exporters ---------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_round_trip(receiver: OTLPReceiver, transport: str) -> None:
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(_span_exporter(receiver, transport)))
    tracer = provider.get_tracer("test.scope")
    attributes = {"http.route": "/pay", "retries": 3, "ratio": 0.5, "ok": True, "tags": ("a", "b")}
    try:
        with (
            tracer.start_as_current_span("parent", attributes=attributes) as parent,
            tracer.start_as_current_span("child") as child,
        ):
            child.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        provider.shutdown()

    assert receiver.wait_for_spans(2, timeout=5)
    by_name = {item.name: item for item in receiver.spans()}
    assert set(by_name) == {"parent", "child"}
    got_parent, got_child = by_name["parent"], by_name["child"]
    for item in (got_parent, got_child):
        assert item.signal == "traces"
        assert item.transport == transport
        assert item.scope_name == "test.scope"
        assert item.resource["service.name"] == "checkout"
        assert item.resource["tenant.id"] == "acme"
        assert item.trace_id == parent.get_span_context().trace_id.to_bytes(16, "big")
        assert item.severity_number == 0
    assert got_parent.attributes == {
        "http.route": "/pay",
        "retries": 3,
        "ratio": 0.5,
        "ok": True,
        "tags": ["a", "b"],
    }
    assert got_parent.span_id == parent.get_span_context().span_id.to_bytes(8, "big")
    assert got_child.span_id == child.get_span_context().span_id.to_bytes(8, "big")
    assert got_parent.status_code == 0
    assert got_child.status_code == 2
    assert got_parent.end_time_unix_nano == parent.end_time  # type: ignore[attr-defined]
    assert receiver.span_count == 2 and receiver.log_count == 0
    assert receiver.request_count == 2 and receiver.refused_request_count == 0
    assert receiver.bytes_received > 0
    assert _codes(receiver) == ([200, 200] if transport == "http" else [0, 0])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logs_round_trip(receiver: OTLPReceiver, transport: str) -> None:
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(_log_exporter(receiver, transport)))
    logger = provider.get_logger("test.logs")
    tracer = TracerProvider().get_tracer("ctx")
    try:
        with tracer.start_as_current_span("op") as span:
            logger.emit(
                body="payment failed", severity_number=SeverityNumber.ERROR, attributes={"order.id": 42}
            )
        logger.emit(body={"k": "v"}, severity_number=SeverityNumber.INFO)
        logger.emit(severity_number=SeverityNumber.WARN, attributes={"empty": True})
    finally:
        provider.shutdown()

    assert receiver.wait_for_logs(3, timeout=5)
    first, second, third = receiver.logs()
    for item in (first, second, third):
        assert item.signal == "logs"
        assert item.transport == transport
        assert item.scope_name == "test.logs"
        assert item.resource["service.name"] == "checkout"
        assert item.status_code == 0
        assert item.end_time_unix_nano > 0
    assert first.name == "payment failed"
    assert first.severity_number == SeverityNumber.ERROR.value
    assert first.attributes == {"order.id": 42}
    assert first.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
    assert first.span_id == span.get_span_context().span_id.to_bytes(8, "big")
    assert second.name == str({"k": "v"})
    assert second.severity_number == SeverityNumber.INFO.value
    assert second.trace_id == b""
    assert third.name == ""
    assert third.severity_number == SeverityNumber.WARN.value
    assert receiver.log_count == 3 and receiver.span_count == 0


def test_http_exporter_gzip(receiver: OTLPReceiver) -> None:
    spans = _finished_spans(3)
    exporter = HttpSpanExporter(endpoint=receiver.traces_url, compression=Compression.Gzip)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert [item.name for item in receiver.spans()] == ["op-0", "op-1", "op-2"]
    # bytes_received counts the decompressed body, i.e. exactly what the exporter encoded.
    assert receiver.bytes_received == len(encode_spans(spans).SerializeToString())


def _raw_deflate(data: bytes) -> bytes:
    # A deflate stream without the zlib header, which some clients send for "deflate".
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
def test_http_content_encodings(
    receiver: OTLPReceiver, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = _trace_body("compressed")
    response = _http_post(receiver, compress(body), headers={"Content-Encoding": encoding})
    assert response.status == 200
    assert [item.name for item in receiver.spans()] == ["compressed"]
    assert receiver.bytes_received == len(body)


# -- latency ---------------------------------------------------------------------------


def test_latency_is_per_request_and_overlaps(receiver: OTLPReceiver) -> None:
    receiver.set_faults(latency_s=1.0)
    barrier = threading.Barrier(4)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = _connect(receiver)
        conn.connect()
        barrier.wait(timeout=10)
        response = _http_post(receiver, _trace_body(), conn=conn)
        conn.close()
        with lock:
            statuses.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    # All four wait out their latency at the same time instead of queueing behind each other.
    assert receiver.wait_until(lambda r: r.max_in_flight >= 4, timeout=10)
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert statuses == [200] * 4
    assert receiver.span_count == 4
    assert receiver.in_flight == 0


# -- failures and outages -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("retry_after_s", [None, 30.0])
def test_failures_make_exporter_fail_and_count_nothing(
    receiver: OTLPReceiver, transport: str, retry_after_s: float | None
) -> None:
    receiver.set_faults(failure_rate=1.0, retry_after_s=retry_after_s)
    exporter = _span_exporter(receiver, transport, timeout=2)
    try:
        assert exporter.export(_finished_spans()) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert receiver.span_count == 0 and receiver.spans() == []
    assert receiver.bytes_received == 0
    assert receiver.request_count >= 1
    assert receiver.refused_request_count == receiver.request_count
    assert set(_codes(receiver)) == ({503} if transport == "http" else {grpc.StatusCode.UNAVAILABLE.value[0]})
    if retry_after_s is not None:
        # The exporter read the server's backoff (Retry-After / RetryInfo), saw it
        # exceed its deadline and gave up after a single attempt.
        assert receiver.request_count == 1


def test_http_retry_after_header(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=429, retry_after_s=0.2)
    response = _http_post(receiver, _trace_body())
    assert response.status == 429
    assert response.getheader("Retry-After") == "1"
    assert response.getheader("Content-Length") == "0"

    receiver.set_faults(retry_after_s=None)
    response = _http_post(receiver, _trace_body())
    assert response.status == 429
    assert response.getheader("Retry-After") is None
    assert receiver.span_count == 0
    assert receiver.refused_request_count == 2


def test_grpc_refusal_carries_retry_info(receiver: OTLPReceiver) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=429, retry_after_s=1.5)
    with pytest.raises(grpc.RpcError) as info:
        _grpc_export_raw(receiver)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(error.trailing_metadata())
    retry_info = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert (retry_info.retry_delay.seconds, retry_info.retry_delay.nanos) == (1, 500_000_000)
    status = RpcStatus.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    detail = RetryInfo()
    assert status.details[0].Unpack(detail)
    assert detail.retry_delay.seconds == 1
    assert _codes(receiver) == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]


def test_down_toggles_an_outage(receiver: OTLPReceiver) -> None:
    receiver.set_faults(down=True)
    assert _http_post(receiver, _trace_body()).status == 503
    with pytest.raises(grpc.RpcError) as info:
        _grpc_export_raw(receiver)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert receiver.span_count == 0

    receiver.set_faults(down=False)
    assert _http_post(receiver, _trace_body()).status == 200
    _grpc_export_raw(receiver)
    assert receiver.span_count == 2
    assert receiver.request_count == 4
    assert receiver.refused_request_count == 2


def test_failure_rate_is_seeded(make_receiver: Callable[..., OTLPReceiver]) -> None:
    def statuses(seed: int) -> list[int]:
        rx = make_receiver(failure_rate=0.5, seed=seed)
        for _ in range(20):
            _http_post(rx, _trace_body())
        return _codes(rx)

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) == {200, 503}


# -- protocol errors -----------------------------------------------------------------------


def test_http_errors_keep_the_connection(receiver: OTLPReceiver) -> None:
    conn = _connect(receiver)
    try:
        assert _http_post(receiver, _trace_body(), path="/v1/metrics", conn=conn).status == 404
        sock = conn.sock
        assert _http_post(receiver, b"\xff\xff\xff", conn=conn).status == 400
        assert (
            _http_post(receiver, b"not gzip", headers={"Content-Encoding": "gzip"}, conn=conn).status == 400
        )
        json = _http_post(receiver, b"{}", headers={"Content-Type": "application/json"}, conn=conn)
        assert json.status == 415
        ok = _http_post(receiver, _trace_body(), conn=conn)
        assert ok.status == 200
        assert ok.getheader("Content-Type") == "application/x-protobuf"
        assert conn.sock is sock  # HTTP/1.1 keep-alive: one connection for all five requests
    finally:
        conn.close()
    assert receiver.span_count == 1
    assert receiver.request_count == 4  # the 404 is not an OTLP request
    assert _codes(receiver) == [400, 400, 415, 200]


def test_logs_endpoint_rejects_garbage(receiver: OTLPReceiver) -> None:
    assert _http_post(receiver, b"\x0a\xff\xff\xff\xff", path="/v1/logs").status == 400
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hi"
    assert _http_post(receiver, request.SerializeToString(), path="/v1/logs").status == 200
    with grpc.insecure_channel(receiver.grpc_endpoint) as channel:
        LogsServiceStub(channel).Export(request, timeout=10)
    assert [item.name for item in receiver.logs()] == ["hi", "hi"]
    assert [item.transport for item in receiver.logs()] == ["http", "grpc"]


# -- item handling -----------------------------------------------------------------------------


def test_keep_items_false_only_counts(make_receiver: Callable[..., OTLPReceiver]) -> None:
    rx = make_receiver(keep_items=False)
    exporter = HttpSpanExporter(endpoint=rx.traces_url)
    assert exporter.export(_finished_spans(5)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert rx.span_count == 5
    assert rx.spans() == []


def test_item_hook_sees_items(make_receiver: Callable[..., OTLPReceiver]) -> None:
    seen: list[ReceivedItem] = []
    rx = make_receiver(keep_items=False, item_hook=seen.append)
    exporter = HttpSpanExporter(endpoint=rx.traces_url)
    assert exporter.export(_finished_spans(3)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    # The hook runs before the response is sent, so the export's success implies it ran.
    assert [item.name for item in seen] == ["op-0", "op-1", "op-2"]
    assert rx.spans() == []


def test_clear_and_waits(receiver: OTLPReceiver) -> None:
    assert not receiver.wait_for_spans(1, timeout=0.01)
    assert not receiver.wait_for_logs(1, timeout=0.01)
    _http_post(receiver, _trace_body())
    assert receiver.wait_for_spans(1, timeout=5)
    receiver.clear()
    assert receiver.span_count == 0 and receiver.spans() == []
    assert receiver.request_count == 0 and receiver.request_times() == []
    assert receiver.bytes_received == 0


# -- lifecycle -----------------------------------------------------------------------------------


def test_stop_is_idempotent_and_closes_the_port() -> None:
    OTLPReceiver().stop()  # never started: no-op
    rx = OTLPReceiver(grpc=True).start()
    conn = _connect(rx)
    rx.stop()
    rx.stop()
    with pytest.raises(OSError):
        conn.connect()
    with pytest.raises(RuntimeError):
        rx.start()


def test_stop_interrupts_latency_and_idle_connections() -> None:
    rx = OTLPReceiver().start()
    idle = _connect(rx)
    assert _http_post(rx, b"", conn=idle).status == 200  # leaves a kept-alive connection open
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            outcome.append(_http_post(rx, _trace_body()).status)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_request)
    rx.set_faults(latency_s=60.0)  # far beyond the test's budget: only stop() can end it
    thread.start()
    assert rx.wait_until(lambda r: r.in_flight >= 1, timeout=10)
    rx.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert outcome and outcome[0] != 200
    idle.close()


def test_busy_fixed_port_raises(make_receiver: Callable[..., OTLPReceiver]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            OTLPReceiver(http_port=port).start()
    first = make_receiver(grpc=True)
    grpc_port = int(first.grpc_endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError, match=f"127.0.0.1:{grpc_port}"):
        OTLPReceiver(grpc=True, grpc_port=grpc_port).start()


def test_context_manager_and_endpoints() -> None:
    with OTLPReceiver() as rx:
        assert rx.traces_url == rx.http_endpoint + "/v1/traces"
        assert rx.logs_url == rx.http_endpoint + "/v1/logs"
        assert rx.http_endpoint.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            _ = rx.grpc_endpoint
    with pytest.raises(ValueError):
        OTLPReceiver(failure_rate=1.5)
    with pytest.raises(ValueError):
        rx.set_faults(latency_s=-1)


# -- partial success -------------------------------------------------------------------------


def test_partial_rejected_answers_a_partial_success(receiver: OTLPReceiver) -> None:
    receiver.set_faults(partial_rejected=2)
    response = _http_post(receiver, _trace_body("partial"))
    assert response.status == 200
    conn = _connect(receiver)
    try:
        conn.request("POST", "/v1/logs", body=b"", headers={"Content-Type": "application/x-protobuf"})
        logs_answer = ExportLogsServiceResponse.FromString(conn.getresponse().read())
        conn.request(
            "POST", "/v1/traces", body=_trace_body(), headers={"Content-Type": "application/x-protobuf"}
        )
        traces_answer = ExportTraceServiceResponse.FromString(conn.getresponse().read())
    finally:
        conn.close()
    assert (logs_answer.partial_success.rejected_log_records, logs_answer.partial_success.error_message) == (
        2,
        "rejected by test",
    )
    assert traces_answer.partial_success.rejected_spans == 2
    assert traces_answer.partial_success.error_message == "rejected by test"

    with grpc.insecure_channel(receiver.grpc_endpoint) as channel:
        grpc_answer = TraceServiceStub(channel).Export(
            ExportTraceServiceRequest.FromString(_trace_body("partial-grpc")), timeout=10
        )
        assert grpc_answer.partial_success.rejected_spans == 2
        assert grpc_answer.partial_success.error_message == "rejected by test"
        receiver.set_faults(partial_rejected=0)
        plain = TraceServiceStub(channel).Export(
            ExportTraceServiceRequest.FromString(_trace_body("whole")), timeout=10
        )
        assert not plain.HasField("partial_success")
    # A partial success is still an accepted request: its items are kept and counted.
    assert [item.name for item in receiver.spans()] == ["partial", "raw", "partial-grpc", "whole"]
    assert receiver.refused_request_count == 0
    with pytest.raises(ValueError):
        receiver.set_faults(partial_rejected=-1)
    with pytest.raises(ValueError):
        OTLPReceiver(partial_rejected=-1)

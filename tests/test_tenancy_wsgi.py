"""End to end: a WSGI app under the real WSGI and requests instrumentations, exported over OTLP.

The instrumentation makes the server span and the HTTP client spans; the app makes a database-like
span of its own.  No span but (in one mode) the server span names a tenant: the tenant comes from
the request's W3C baggage, or from the server span's attribute set by the handler *after* a child
span ended.  Every span must be attributed to its request's tenant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

TENANTS = {"acme": 12, "globex": 8, "initech": 5, "umbrella": 3}  # requests per tenant
SPANS_PER_REQUEST = 4  # server, "load order", two HTTP client spans


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _app(tracer: trace.Tracer, backend: str, set_attribute: bool) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = requests.Session()
        session.get(backend, timeout=10)  # a client span that ends before the tenant is known
        if set_attribute:
            trace.get_current_span().set_attribute("tenant.id", environ["HTTP_X_TENANT"])
        with tracer.start_as_current_span("load order"):
            session.get(backend, timeout=10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    return app


@pytest.mark.parametrize("mode", ["baggage", "attribute_set_late"])
def test_every_span_is_attributed_to_its_requests_tenant(
    receiver: OTLPReceiver, backend: str, mode: str
) -> None:
    processor = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=receiver.traces_url), tenant_key="tenant.id, baggage:tenant.id"
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    try:
        wsgi = OpenTelemetryMiddleware(
            _app(provider.get_tracer("app"), backend, mode == "attribute_set_late"), tracer_provider=provider
        )
        for tenant, n in TENANTS.items():
            for _ in range(n):
                environ: dict[str, Any] = {"PATH_INFO": "/orders", "HTTP_X_TENANT": tenant}
                if mode == "baggage":
                    environ["HTTP_BAGGAGE"] = f"tenant.id={tenant}"
                setup_testing_defaults(environ)
                body = wsgi(environ, lambda status, headers, exc_info=None: None)
                assert b"".join(body) == b"done"
                getattr(body, "close", lambda: None)()  # the middleware ends the server span here
        assert processor.force_flush(30_000)
        snap = processor.stats()
    finally:
        RequestsInstrumentor().uninstrument()
        processor.shutdown()
    total = sum(TENANTS.values()) * SPANS_PER_REQUEST
    assert receiver.wait_for_spans(total, timeout=10)
    assert snap["exported"] == total
    by_tenant = {t: row["exported"] for t, row in snap["by_tenant"].items() if row["exported"]}
    attributed = sum(by_tenant.get(t, 0) for t in TENANTS)
    assert attributed / total >= 0.99, by_tenant
    assert by_tenant == {t: n * SPANS_PER_REQUEST for t, n in TENANTS.items()}
    requests_made = sum(TENANTS.values())
    # With the attribute, the three child spans inherit it (one had ended before it was set).
    assert snap["tenants"]["inherited"] == (3 * requests_made if mode == "attribute_set_late" else 0)

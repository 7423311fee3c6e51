"""A WSGI application run under ``opentelemetry-instrument``, exporting through otel-sched.

Two ways to run it:

* ``python examples/instrumented_wsgi_app.py`` -- starts the package's embedded OTLP receiver
  (unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` names an OTLP/HTTP collector, e.g.
  ``http://localhost:4318``), re-executes itself under
  ``opentelemetry-instrument`` with the OTEL_* variables pointing at it, sends a few requests and
  prints what arrived.
* ``opentelemetry-instrument python examples/instrumented_wsgi_app.py`` with your own OTEL_*
  variables -- serves on 127.0.0.1 (``PORT``, default: any free port) until stdin closes or Ctrl-C.

Needs the ``instrument`` extra plus ``opentelemetry-instrumentation-wsgi`` and
``opentelemetry-instrumentation-logging`` (all in the ``test`` extra).  The WSGI middleware is
applied in code (WSGI has no auto-instrumentor); ``logging`` is instrumented automatically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger("orders")


def orders_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    from opentelemetry import trace

    path = environ.get("PATH_INFO", "/")
    tenant = parse_qs(environ.get("QUERY_STRING", "")).get("tenant", ["anonymous"])[0]
    trace.get_current_span().set_attribute("tenant.id", tenant)
    if path == "/health":
        status, body = "200 OK", b"ok\n"
    elif path.startswith("/orders/"):
        order = path.rsplit("/", 1)[-1]
        if order.endswith("13"):
            # Extra attributes become log record attributes: tenant fairness applies to logs too.
            log.error("order %s of %s: payment declined", order, tenant, extra={"tenant.id": tenant})
            status, body = "502 Bad Gateway", b"payment declined\n"
        else:
            log.info("order %s of %s served", order, tenant, extra={"tenant.id": tenant})
            status, body = "200 OK", f"order {order}\n".encode()
    else:
        status, body = "404 Not Found", b"not found\n"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> None:
    """Runs under opentelemetry-instrument: serve until stdin closes, then report the processors."""
    from opentelemetry import _logs, trace
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    log.setLevel(logging.INFO)
    server = make_server(
        "127.0.0.1",
        int(os.environ.get("PORT", "0")),
        OpenTelemetryMiddleware(orders_app),
        _Server,
        _QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_port} (close stdin or Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()
    server.shutdown()

    tracer_provider: Any = trace.get_tracer_provider()
    logger_provider: Any = _logs.get_logger_provider()
    tracer_provider.force_flush()
    logger_provider.force_flush()
    # What opentelemetry-instrument built: the SDK's providers holding otel-sched's processors.
    for label, processors in (
        ("span processors", tracer_provider._active_span_processor._span_processors),
        ("log record processors", logger_provider._multi_log_record_processor._log_record_processors),
    ):
        for processor in processors:
            stats = processor.stats() if hasattr(processor, "stats") else {}
            print(
                f"{label}: {type(processor).__name__}"
                f" exported={stats.get('exported')} dropped={stats.get('dropped_total')}"
                f" tenants={sorted(stats.get('by_tenant', {}))}",
                flush=True,
            )


def run_under_opentelemetry_instrument() -> int:
    """Plain ``python``: start a receiver, re-run this file under opentelemetry-instrument, drive it."""
    from otel_sched.demo._receiver import OTLPReceiver

    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    if not instrument.exists():
        print("opentelemetry-instrument not found: pip install 'otel-sched[instrument]'", file=sys.stderr)
        return 1
    receiver = None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is None:
        receiver = OTLPReceiver().start()
        endpoint = receiver.http_endpoint
    env = dict(os.environ)
    env.update(
        {
            "OTEL_PYTHON_DISTRO": "otel_sched",  # in case another distro is installed too
            "OTEL_PYTHON_CONFIGURATOR": "otel_sched",
            "OTEL_SERVICE_NAME": "orders",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=example",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            # otel-sched's own options, as opentelemetry-instrument users set them:
            "OTEL_PYTHON_SCHED_TENANT_KEY": "tenant.id",
            "OTEL_PYTHON_SCHED_PRIORITY_RULES": 'name == "GET /health" -> low',
        }
    )
    child = subprocess.Popen(
        [str(instrument), sys.executable, str(Path(__file__).resolve())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        banner = child.stdout.readline()
        if not banner.startswith("listening on "):
            print(f"the instrumented app did not start: {banner!r}", file=sys.stderr)
            return 1
        base = banner.split()[2]
        print(f"app under opentelemetry-instrument {banner.strip()}")
        codes: Counter[int] = Counter()
        for i in range(20):
            path = "/health" if i % 5 == 0 else f"/orders/{100 + i}?tenant={('acme', 'globex')[i % 2]}"
            try:
                with urllib.request.urlopen(base + path, timeout=10) as response:
                    codes[response.status] += 1
            except urllib.error.HTTPError as exc:
                codes[exc.code] += 1
        print(f"sent 20 requests: {dict(sorted(codes.items()))}")
        out, _ = child.communicate(input="", timeout=60)
        print(out, end="")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if receiver is not None:
        receiver.wait_for_spans(20, timeout=10)
        spans, logs = receiver.spans(), receiver.logs()
        services = sorted({item.resource.get("service.name", "?") for item in spans + logs})
        print(f"the embedded receiver got {len(spans)} spans and {len(logs)} log records from {services}")
        print("span names:", json.dumps(dict(Counter(s.name for s in spans).most_common(4))))
        errors = [s.name for s in spans if s.status_code == 2]
        print(f"error spans: {errors}")
        print("error logs:", [r.name for r in logs if r.severity_number >= 17])
        receiver.stop()
    return child.returncode


def main() -> int:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        serve()  # opentelemetry-instrument already configured the SDK
        return 0
    return run_under_opentelemetry_instrument()


if __name__ == "__main__":
    sys.exit(main())

"""Manual setup: traces and logs through otel-sched to an OTLP/HTTP collector.

Run as written: it starts the package's embedded OTLP receiver on 127.0.0.1 so it needs no
collector; point OTLP_ENDPOINT at a real collector (e.g. http://localhost:4318) to use one.
"""

from __future__ import annotations

import logging
import os

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver


def main() -> None:
    receiver = None
    endpoint = os.environ.get("OTLP_ENDPOINT")
    if endpoint is None:
        receiver = OTLPReceiver().start()
        endpoint = receiver.http_endpoint

    resource = Resource.create({"service.name": "manual-setup-example"})
    tracer_provider = TracerProvider(resource=resource)
    spans = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        tenant_key="tenant.id",
        priority_rules="attr.http.route == /health -> low",
    )
    tracer_provider.add_span_processor(spans)

    logger_provider = LoggerProvider(resource=resource)
    logs = ScheduledLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
    logger_provider.add_log_record_processor(logs)
    log = logging.getLogger("manual-setup-example")
    log.addHandler(LoggingHandler(logger_provider=logger_provider))
    log.setLevel(logging.INFO)

    tracer = tracer_provider.get_tracer(__name__)
    for i in range(100):
        tenant = "acme" if i % 4 else "globex"
        with tracer.start_as_current_span("GET /orders", attributes={"tenant.id": tenant}) as span:
            if i % 25 == 0:
                span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
                log.error("order lookup failed for %s", tenant)
    tracer_provider.force_flush()
    logger_provider.force_flush()

    stats = spans.stats()
    print(f"spans exported: {stats['exported']}, dropped: {stats['dropped_total']}")
    print(f"log records exported: {logs.stats()['exported']}")
    tracer_provider.shutdown()
    logger_provider.shutdown()
    if receiver is not None:
        print(f"the embedded receiver got {receiver.span_count} spans and {receiver.log_count} log records")
        receiver.stop()


if __name__ == "__main__":
    main()

"""An asyncio service: flush and shut down otel-sched without blocking the event loop.

``await processor.aforce_flush()`` and ``await processor.ashutdown()`` wait in a worker thread,
so the loop keeps serving while telemetry drains -- here a heartbeat task keeps ticking while a
flush waits on a deliberately slow collector.

Run as written: it starts the package's embedded OTLP receiver (with 200 ms of latency per
request) so it needs no collector; set OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP, e.g.
http://localhost:4318) to use a real one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode, Tracer

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver


async def handle(tracer: Tracer, job: int, tenant: str) -> None:
    with tracer.start_as_current_span("process job", attributes={"tenant.id": tenant, "job": job}) as span:
        await asyncio.sleep(random.uniform(0, 0.002))  # the "I/O" of the job
        if job % 40 == 0:
            span.set_status(Status(StatusCode.ERROR, "downstream refused"))
            logging.getLogger("jobs").error("job %d of %s failed", job, tenant)


async def heartbeat(ticks: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        ticks[0] += 1
        await asyncio.sleep(0.01)


async def main() -> None:
    receiver = None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is None:
        receiver = OTLPReceiver(latency_s=0.2).start()
        endpoint = receiver.http_endpoint

    resource = Resource.create({"service.name": "asyncio-example"})
    spans = ScheduledSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), tenant_key="tenant.id")
    logs = ScheduledLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(spans)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(logs)
    logging.getLogger("jobs").addHandler(_otel_handler(logger_provider))
    tracer = tracer_provider.get_tracer(__name__)

    await asyncio.gather(*(handle(tracer, job, ("acme", "globex", "initech")[job % 3]) for job in range(600)))

    ticks = [0]
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(ticks, stop))
    flushed = await spans.aforce_flush(timeout_millis=20_000)
    logs_flushed = await logs.aforce_flush(timeout_millis=20_000)
    stop.set()
    await beat
    print(f"flushed spans: {flushed}, logs: {logs_flushed}; the event loop ticked {ticks[0]} times meanwhile")

    stats = spans.stats()
    print(f"spans exported: {stats['exported']} in {stats['export_calls']} export calls, ", end="")
    print(f"dropped: {stats['dropped_total']}, tenants: {sorted(stats['by_tenant'])}")
    print(f"log records exported: {logs.stats()['exported']}")

    await spans.ashutdown()
    await logs.ashutdown()
    if receiver is not None:
        print(f"the embedded receiver got {receiver.span_count} spans and {receiver.log_count} log records")
        receiver.stop()


def _otel_handler(logger_provider: LoggerProvider) -> logging.Handler:
    # opentelemetry-instrumentation-logging's handler when installed; the SDK's (deprecated) otherwise.
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        from opentelemetry.sdk._logs import LoggingHandler  # type: ignore[assignment]
    handler: logging.Handler = LoggingHandler(logger_provider=logger_provider)
    return handler


if __name__ == "__main__":
    asyncio.run(main())

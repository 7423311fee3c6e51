"""App-thread cost of on_end (spans) and on_emit (logs): stock batch processors vs otel-sched.

    python benchmarks/bench_on_end.py [--quick] [--json PATH]

The processor's ``on_end`` / ``on_emit`` is called directly in a tight loop on
pre-built ended spans (10 attributes) and pre-built log records, with an exporter
that does nothing.  Each round times one chunk of calls, then flushes (not timed),
so no queue is ever full during a timed loop.  Reported per call: wall time and the
calling thread's own CPU time (``time.thread_time_ns``: it leaves out time spent
waiting for the GIL while the processor's threads run), median over the rounds.

The span rows "on_start+on_end" call ``on_start(span, parent_context)`` then ``on_end(span)``
for each span, with a parent context holding a parent span (a child span, as instrumentation
makes them) and, for "+baggage", a W3C baggage entry too; otel-sched is configured with
``tenant_key="tenant.id, baggage:tenant.id"`` there, so its on_start keeps the parent and the
baggage with the span.  The stock on_start does nothing: the target is ours' on_start+on_end at
or below the stock on_end.

Two settings:
  * isolated -- batch size and delay so large that the processor's threads sleep
    through the loop: the cost of the call itself;
  * defaults -- stock batch size / delay, the processor's threads working while the
    app calls (their GIL share shows in wall time, not in thread CPU).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import _common as c
from opentelemetry import baggage, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind

from otel_sched import ScheduledLogRecordProcessor


class _NoopLogExporter(LogRecordExporter):
    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _Collect(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def make_spans(n: int) -> list[ReadableSpan]:
    provider = TracerProvider(resource=c.RESOURCE)  # no processor: ending a span costs nothing extra
    tracer = provider.get_tracer("bench.on_end")
    spans: list[ReadableSpan] = []
    for i in range(n):
        span = tracer.start_span(
            "GET /api/v1/orders/{id}",
            kind=SpanKind.SERVER,
            attributes={
                "tenant.id": f"tenant-{i % 5}",
                "http.request.method": "GET",
                "http.route": "/api/v1/orders/{id}",
                "http.response.status_code": 200,
                "url.full": f"https://shop.example.com/api/v1/orders/{i}",
                "url.scheme": "https",
                "user_agent.original": "python-requests/2.32.3",
                "client.address": "10.0.0.12",
                "server.address": "shop.example.com",
                "network.protocol.version": "1.1",
            },
        )
        span.end()
        spans.append(cast(ReadableSpan, span))  # an ended SDK Span is the ReadableSpan on_end receives
    return spans


def parent_context(with_baggage: bool) -> Context:
    """A context holding a (local, recording) parent span and, optionally, a tenant in baggage."""
    parent = TracerProvider(resource=c.RESOURCE).get_tracer("bench.on_start").start_span("parent")
    context = trace.set_span_in_context(parent)
    return baggage.set_baggage("tenant.id", "tenant-1", context) if with_baggage else context


def make_logs(n: int) -> list[ReadWriteLogRecord]:
    collect = _Collect()
    provider = LoggerProvider(resource=c.RESOURCE)
    provider.add_log_record_processor(collect)
    logger = provider.get_logger("bench.on_emit")
    for i in range(n):
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="request handled",
            attributes={"tenant.id": f"tenant-{i % 5}", "order.id": i, "code.function.name": "handle"},
        )
    return collect.records


def _time_rounds(
    call: Callable[[Any], None], items: Sequence[Any], rounds: int, flush: Callable[[], Any]
) -> tuple[float, float]:
    """Median wall ns/call and median thread-CPU ns/call over ``rounds`` chunks."""
    wall: list[float] = []
    cpu: list[float] = []
    n = len(items)
    for _ in range(rounds):
        flush()
        gc.collect()
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for item in items:
            call(item)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        wall.append((t1 - t0) / n)
        cpu.append((c1 - c0) / n)
    flush()
    return c.median(wall), c.median(cpu)


def _options(setting: str, chunk: int) -> dict[str, Any]:
    if setting == "isolated":
        # Nothing reaches the wake-up thresholds inside a chunk: both processors' threads stay asleep.
        return {
            "max_queue_size": chunk + 1,
            "max_export_batch_size": chunk + 1,
            "schedule_delay_millis": 600_000,
        }
    return {"max_queue_size": chunk + 1}


def _start_and_end(processor: Any, context: Context) -> Callable[[Any], None]:
    on_start, on_end = processor.on_start, processor.on_end

    def call(span: Any) -> None:
        on_start(span, context)
        on_end(span)

    return call


def measure(signal: str, kind: str, setting: str, items: Sequence[Any], rounds: int) -> tuple[float, float]:
    options = _options(setting, len(items))
    processor: Any
    if signal == "spans":
        processor = c.span_processor(kind, c.NoopSpanExporter(), **options)
        call = processor.on_end
    elif signal.startswith("spans+on_start"):
        options["tenant_key"] = "tenant.id, baggage:tenant.id"
        processor = c.span_processor(kind, c.NoopSpanExporter(), **options)
        call = _start_and_end(processor, parent_context(with_baggage=signal.endswith("baggage")))
    else:
        exporter = _NoopLogExporter()
        if kind == c.STOCK:
            processor = BatchLogRecordProcessor(exporter, **options)
        else:
            processor = ScheduledLogRecordProcessor(exporter, **options)
        call = processor.on_emit
    try:
        return _time_rounds(call, items, rounds, lambda: processor.force_flush(60_000))
    finally:
        processor.shutdown()


_CALLS = {
    "spans": "on_end (spans)",
    "spans+on_start": "on_start+on_end (child spans)",
    "spans+on_start+baggage": "on_start+on_end (child spans, baggage)",
    "logs": "on_emit (logs)",
}


def main(argv: list[str] | None = None) -> int:
    args = c.parser("on_end", __doc__).parse_args(argv)
    chunk, rounds = (5_000, 5) if args.quick else (20_000, 9)
    params = {"chunk": chunk, "rounds": rounds, "quick": args.quick}
    c.print_header("on_end / on_emit: app-thread cost per call (median of rounds)", params)
    spans = make_spans(chunk)
    logs = make_logs(chunk)
    results: dict[str, Any] = {}
    rows = []
    cases = (("spans", spans), ("spans+on_start", spans), ("spans+on_start+baggage", spans), ("logs", logs))
    for signal, items in cases:
        for setting in ("isolated", "defaults"):
            measured = {kind: measure(signal, kind, setting, items, rounds) for kind in (c.STOCK, c.OURS)}
            (s_wall, s_cpu), (o_wall, o_cpu) = measured[c.STOCK], measured[c.OURS]
            entry = {
                "stock_wall_ns": s_wall,
                "stock_thread_cpu_ns": s_cpu,
                "ours_wall_ns": o_wall,
                "ours_thread_cpu_ns": o_cpu,
                "cpu_ratio_stock_over_ours": c.ratio(s_cpu, o_cpu),
                "wall_ratio_stock_over_ours": c.ratio(s_wall, o_wall),
            }
            results[f"{signal}/{setting}"] = entry
            rows.append(
                [
                    f"{_CALLS[signal]}, {setting}",
                    f"{s_cpu:,.0f}",
                    f"{o_cpu:,.0f}",
                    c.fmt_ratio(entry["cpu_ratio_stock_over_ours"]),
                    f"{s_wall:,.0f}",
                    f"{o_wall:,.0f}",
                    c.fmt_ratio(entry["wall_ratio_stock_over_ours"]),
                ]
            )
    c.print_table(
        [
            "call",
            "stock CPU ns",
            "ours CPU ns",
            "stock/ours",
            "stock wall ns",
            "ours wall ns",
            "stock/ours",
        ],
        rows,
    )
    print("  (stock/ours > 1: ours costs the app thread less)")
    c.write_json(args.json, "on_end", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

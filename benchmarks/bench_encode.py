"""Per-item OTLP encoding cost: stock protobuf encoders vs ``otel_sched.otlp._encoding``.

    python benchmarks/bench_encode.py [--spans N] [--logs N] [--batch 512] [--reps 7] [--json PATH]

Spans and log records are produced by the real SDK (TracerProvider / LoggerProvider
with in-memory exporters), so they carry BoundedAttributes, BoundedList events etc.
exactly as a processor would see them.  The mix is an HTTP service: server spans with
~11 attributes (some high-cardinality: url, target, peer port), 1-3 events, 0-2 links,
some errors; log records with ~5 attributes and trace context; one resource with
8 attributes; 3 scopes.

All sides encode the same batches of ``--batch`` items in the same process, in
round-robin repetitions: stock, ours with the compiled encoder (where pip built it) and
ours with the pure-Python one (the fallback without a C compiler).  "ours" is what the
pipeline does, via
``encode_spans_request``: ``encode_span`` + ``span_envelopes`` per item, bucketing by
envelope, one ``assemble_traces`` per batch (likewise for logs); "encode only" is
just the per-item encode.  The encoder caches
are cleared before every repetition so each one sees every distinct value once, as
a live pipeline would.  The best repetition is reported (median alongside).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AnyValue

from otel_sched.otlp import _encoding

ROUTES = ["/api/users/{id}", "/api/orders", "/api/orders/{id}", "/health", "/api/cart", "/login", "/search"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "okhttp/4.12.0",
]
STATEMENTS = [f"SELECT * FROM table_{i} WHERE id = $1" for i in range(20)]


def _resource() -> Resource:
    return Resource(
        {
            "service.name": "checkout",
            "service.version": "2.14.1",
            "service.instance.id": "627cc493-f310-47de-96bd-71410b7dec09",
            "deployment.environment": "production",
            "host.name": "ip-10-0-12-34.ec2.internal",
            "process.pid": 48213,
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": "1.45.2",
        },
        schema_url="https://opentelemetry.io/schemas/1.26.0",
    )


def make_spans(n: int, rng: random.Random) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracers = [
        provider.get_tracer(
            "opentelemetry.instrumentation.flask", "0.48b0", "https://opentelemetry.io/schemas/1.11.0"
        ),
        provider.get_tracer("checkout.db", "2.14.1"),
        provider.get_tracer("checkout.logic", "2.14.1", attributes={"team": "payments"}),
    ]
    recent: list[Any] = []
    for i in range(n):
        tracer = tracers[0] if i % 2 == 0 else tracers[1 + i % 2]
        route = rng.choice(ROUTES)
        target = route.replace("{id}", str(rng.randrange(10**6)))
        status_code = rng.choice([200] * 8 + [404, 500])
        method = rng.choice(METHODS)
        attributes: dict[str, AnyValue] = {
            "http.method": method,
            "http.route": route,
            "http.target": target,
            "http.url": f"https://shop.example.com{target}?session={rng.getrandbits(48):x}",
            "http.scheme": "https",
            "http.flavor": "1.1",
            "http.status_code": status_code,
            "http.user_agent": rng.choice(AGENTS),
            "net.host.name": "shop.example.com",
            "net.peer.ip": f"10.1.{rng.randrange(4)}.{rng.randrange(50)}",
            "net.peer.port": rng.randrange(32768, 61000),
        }
        links = [
            Link(ctx, {"link.kind": "follows"})
            for ctx in rng.sample(recent, min(len(recent), rng.randrange(3)))
        ]
        span = tracer.start_span(
            f"{method} {route}", kind=SpanKind.SERVER, attributes=attributes, links=links
        )
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.5:
                span.add_event(
                    "db.query", {"db.system": "postgresql", "db.statement": rng.choice(STATEMENTS)}
                )
            else:
                span.add_event(
                    "cache.miss", {"cache.key": f"user:{rng.randrange(10**5)}", "cache.tier": "l2"}
                )
        if status_code == 500:
            span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        span.end()
        recent = [span.get_span_context(), *recent][:8]
    provider.shutdown()
    return list(exporter.get_finished_spans())


def make_logs(n: int, rng: random.Random, spans: Sequence[ReadableSpan]) -> list[ReadableLogRecord]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=_resource())
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    loggers = [provider.get_logger("checkout.http", "2.14.1"), provider.get_logger("checkout.db", "2.14.1")]
    for i in range(n):
        span = spans[i % len(spans)]
        ctx = set_span_in_context(NonRecordingSpan(span.context))
        level = rng.choice(
            [SeverityNumber.INFO] * 6 + [SeverityNumber.WARN, SeverityNumber.ERROR, SeverityNumber.DEBUG]
        )
        loggers[i % 2].emit(
            timestamp=time.time_ns(),
            context=ctx,
            severity_number=level,
            severity_text=level.name,
            body=f"handled request {rng.getrandbits(32):x} in {rng.randrange(1, 900)} ms",
            attributes={
                "code.filepath": "/app/checkout/handlers.py",
                "code.function": rng.choice(["get_user", "create_order", "search"]),
                "code.lineno": rng.choice([41, 87, 133, 210]),
                "thread.name": rng.choice(["MainThread", "worker-1", "worker-2"]),
                "user.id": rng.randrange(10**5),
            },
        )
    provider.shutdown()
    return list(exporter.get_finished_logs())


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _time_interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, list[int]]:
    """Run the contenders round-robin so background load hits them alike."""
    samples: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            # Cold caches each repetition: every distinct value is new once, as live.
            _clear_caches()
            t0 = time.perf_counter_ns()
            fn()
            samples[name].append(time.perf_counter_ns() - t0)
    return samples


def _clear_caches() -> None:
    for cache in _encoding._CACHES:
        cache.clear()


def _ours(
    batches: list[Sequence[Any]],
    request: Callable[[Sequence[Any]], bytes],
    name: str,
    encode: Callable[[Any], bytes],
) -> Callable[[], None]:
    # encode_*_request is the pipeline's path: per item envelope lookup + encode_*,
    # bucketing by envelope, then one assemble_* per batch; ``encode`` is put in as
    # _encoding.<name> (the compiled or the pure-Python encoder) for the run.
    def run() -> None:
        before = getattr(_encoding, name)
        setattr(_encoding, name, encode)
        try:
            for batch in batches:
                request(batch)
        finally:
            setattr(_encoding, name, before)

    return run


def _encode_only(batches: list[Sequence[Any]], encode: Callable[[Any], bytes]) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            for item in batch:
                encode(item)

    return run


def _summary(samples: list[int], n: int) -> dict[str, float]:
    return {"best_us": min(samples) / n / 1000, "median_us": statistics.median(samples) / n / 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=5120)
    parser.add_argument("--logs", type=int, default=None, help="default: same as --spans")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "encode.json")
    args = parser.parse_args(argv)
    n_logs = args.logs if args.logs is not None else args.spans

    rng = random.Random(args.seed)
    spans = make_spans(args.spans, rng)
    logs = make_logs(n_logs, rng, spans)
    span_batches = _batches(spans, args.batch)
    log_batches = _batches(logs, args.batch)

    # Same decoded output, or the timings mean nothing.
    for batch in span_batches[:2]:
        ours = ExportTraceServiceRequest.FromString(_encoding.encode_spans_request(batch))
        assert ours == encode_spans(batch), "span encodings differ"
    for batch in log_batches[:2]:
        ours_l = ExportLogsServiceRequest.FromString(_encoding.encode_logs_request(batch))
        assert ours_l == encode_logs(batch), "log encodings differ"

    def stock_traces() -> None:
        for batch in span_batches:
            encode_spans(batch).SerializeToString()

    def stock_logs() -> None:
        for batch in log_batches:
            encode_logs(batch).SerializeToString()

    # The corpus is built up front; keep the cyclic GC from re-walking it during timing
    # (a live pipeline does not hold thousands of finished spans).
    gc.collect()
    gc.freeze()
    reps = args.reps
    results: dict[str, Any] = {}
    contenders = (
        (
            "spans",
            len(spans),
            stock_traces,
            span_batches,
            _encoding.encode_spans_request,
            "encode_span",
            _encoding.encode_span_native,
            _encoding.encode_span_python,
        ),
        (
            "logs",
            len(logs),
            stock_logs,
            log_batches,
            _encoding.encode_logs_request,
            "encode_log",
            _encoding.encode_log_native,
            _encoding.encode_log_python,
        ),
    )
    if _encoding.encode_span_native is None:
        print("(the compiled encoder was not built: the pure-Python one only)")
    for signal, n, stock_fn, batches, request, name, native, python in contenders:
        fns: dict[str, Callable[[], object]] = {"stock": stock_fn}
        if native is not None:
            fns["ours"] = _ours(batches, request, name, native)
            fns["only"] = _encode_only(batches, native)
        fns["python"] = _ours(batches, request, name, python)
        fns["python_only"] = _encode_only(batches, python)
        samples = _time_interleaved(fns, reps)
        stock = _summary(samples["stock"], n)
        py = _summary(samples["python"], n)
        py_only = _summary(samples["python_only"], n)
        ours = _summary(samples["ours"], n) if native is not None else py
        only = _summary(samples["only"], n) if native is not None else py_only
        results[signal] = {
            "items": n,
            "compiled_encoder": native is not None,
            "stock_us_per_item": stock,
            "ours_us_per_item": ours,
            "ours_encode_only_us_per_item": only,
            "ratio_best": stock["best_us"] / ours["best_us"],
            "ratio_median": stock["median_us"] / ours["median_us"],
            "python_us_per_item": py,
            "python_encode_only_us_per_item": py_only,
            "python_ratio_best": stock["best_us"] / py["best_us"],
            "python_ratio_median": stock["median_us"] / py["median_us"],
        }
        for label, mine, mine_only, shown in (
            ("compiled", ours, only, native is not None),
            ("pure Python", py, py_only, True),
        ):
            if shown:
                print(
                    f"{signal:5s}: stock {stock['best_us']:7.2f} us/item  ours ({label}) "
                    f"{mine['best_us']:6.2f} us/item (encode only {mine_only['best_us']:5.2f})  "
                    f"ratio {stock['best_us'] / mine['best_us']:5.1f}x "
                    f"(median {stock['median_us'] / mine['median_us']:4.1f}x)"
                )

    payload = {
        "benchmark": "encode",
        "batch_size": args.batch,
        "repetitions": reps,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

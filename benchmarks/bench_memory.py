"""Memory under ~10x overload with large spans (~10 KB of attributes): stock vs otel-sched.

    python benchmarks/bench_memory.py [--quick] [--json PATH] [--seconds S]

Two app threads offer 5,000 spans/s, each span carrying four fresh 2.5 KB string
attributes, through the real OTLP/HTTP exporter to an embedded receiver that takes
1 s per request: one export lane carries ~500 spans/s, so ~10x overload and the
queues stay full.  Measured per run: peak RSS growth over the run's baseline (RSS
sampled at 20 Hz) and, in the full run, the peak of the Python heap as tracemalloc
sees it (exact and independent of what the allocator kept from earlier runs, but
slower, so in separate runs).

Settings: ``defaults`` (max_queue_size 2048 for both) and ``queue16k``
(max_queue_size 16384 for both -- a common way to "fix" drops -- where otel-sched is
still bounded by its byte budget, max_queue_bytes, 32 MiB by default).
A short unmeasured run of both pipelines goes first so neither measured run pays
one-time costs or starts from a smaller heap than the other.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import tracemalloc
from typing import Any

import _common as c
from opentelemetry.sdk.trace import TracerProvider

# Stopping with a backlog at 1 s per request makes the exporters log failed batches: expected here.
logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
logging.getLogger("otel_sched").setLevel(logging.ERROR)  # "shutdown timed out with N items queued"

RATE = 5000.0
LATENCY_MS = 1000.0
ATTRIBUTE_BYTES = 2500
SETTINGS = {"defaults": {}, "queue16k": {"max_queue_size": 16384}}

_POOL = random.Random(7).randbytes(1 << 20).hex()  # 2 MiB of text to cut fresh attribute values from


def large_attributes(rng: random.Random) -> dict[str, Any]:
    # Slicing copies: every span owns ~10 KB of its own strings, as real payload attributes would.
    def fresh() -> str:
        at = rng.randrange(len(_POOL) - ATTRIBUTE_BYTES)
        return _POOL[at : at + ATTRIBUTE_BYTES]

    return {
        "db.query.text": fresh(),
        "http.request.body": fresh(),
        "http.response.body": fresh(),
        "exception.stacktrace": fresh(),
    }


def run(kind: str, setting: str, seconds: float, traced: bool) -> dict[str, Any]:
    c.trim_heap()
    options = dict(SETTINGS[setting])
    if kind == c.OURS:
        options["shutdown_timeout_millis"] = 2000
    with c.receiver(LATENCY_MS) as rx:
        provider = TracerProvider(resource=c.RESOURCE)
        processor = c.span_processor(kind, c.otlp_span_exporter(rx), **options)
        provider.add_span_processor(processor)
        makers = [c.SpanFactory(provider, large_attributes, seed=i) for i in range(2)]
        if traced:
            tracemalloc.start()
            traced_base = tracemalloc.get_traced_memory()[0]
        peak_queued_bytes = 0
        peak_waiting = 0
        peak_in_flight = 0  # items handed to exporters: outside the queue bounds, for both pipelines
        with c.RssSampler() as sampler:
            result: list[tuple[int, int, float]] = []
            load = threading.Thread(target=lambda: result.append(c.paced_threads(makers, RATE, seconds)))
            load.start()
            while load.is_alive():
                load.join(0.25)
                if kind == c.OURS:
                    snap = processor.stats()
                    peak_queued_bytes = max(peak_queued_bytes, snap["queued_bytes"])
                    peak_waiting = max(peak_waiting, snap["queued"] + snap["intake"])
                    peak_in_flight = max(peak_in_flight, snap["in_flight"])
                else:
                    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
                    if queue is not None:
                        peak_waiting = max(peak_waiting, len(queue))
            made, skipped, load_s = result[0]
        traced_peak = None
        if traced:
            traced_peak = (tracemalloc.get_traced_memory()[1] - traced_base) / (1024 * 1024)
            tracemalloc.stop()
        # Memory is what is measured: stop without waiting for the whole backlog at 1 s a request.
        inner = getattr(processor, "_batch_processor", None)
        if inner is not None:
            inner.shutdown(timeout_millis=2000)
        else:
            processor.shutdown()
        delivered = rx.span_count
    return {
        "offered": made,
        "generator_skipped": skipped,
        "load_s": load_s,
        "delivered_during_load": delivered,
        "rss_growth_mib": sampler.growth_mib,
        "tracemalloc_peak_mib": traced_peak,
        "peak_waiting_items": peak_waiting,
        "peak_in_flight_items": peak_in_flight if kind == c.OURS else None,
        "peak_queued_bytes_mib": peak_queued_bytes / (1024 * 1024) if kind == c.OURS else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser("memory", __doc__)
    p.add_argument("--seconds", type=float, default=None, help="load per run (default 8, quick 3)")
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (2.5 if args.quick else 8.0)
    settings = ["defaults"] if args.quick else list(SETTINGS)
    params = {
        "seconds": seconds,
        "rate": RATE,
        "latency_ms": LATENCY_MS,
        "span_attribute_bytes": 4 * ATTRIBUTE_BYTES,
        "settings": {k: SETTINGS[k] for k in settings},
        "tracemalloc": not args.quick,
    }
    c.print_header("Memory under ~10x overload, ~10 KB spans", params)
    for kind in (c.STOCK, c.OURS):  # unmeasured: one-time costs and a comparable starting heap
        run(kind, settings[-1], 0.5 if args.quick else 1.5, traced=False)
    results: dict[str, Any] = {}
    rows = []
    for setting in settings:
        entry: dict[str, Any] = {}
        for kind in (c.STOCK, c.OURS):
            entry[kind] = run(kind, setting, seconds, traced=False)
            if not args.quick:
                traced = run(kind, setting, seconds, traced=True)
                entry[kind]["tracemalloc_peak_mib"] = traced["tracemalloc_peak_mib"]
                # tracemalloc slows every thread down: the queues may fill differently from the RSS run.
                entry[kind]["traced_run_peak_waiting_items"] = traced["peak_waiting_items"]
        s, o = entry[c.STOCK], entry[c.OURS]
        entry["rss_ratio_ours_over_stock"] = c.ratio(o["rss_growth_mib"], s["rss_growth_mib"])
        entry["tracemalloc_ratio_ours_over_stock"] = c.ratio(
            o["tracemalloc_peak_mib"], s["tracemalloc_peak_mib"]
        )
        results[setting] = entry
        rows.append(
            [
                setting,
                f"{s['offered'] / s['load_s']:,.0f}",
                f"{s['rss_growth_mib']:.0f}",
                f"{o['rss_growth_mib']:.0f}",
                c.fmt_ratio(entry["rss_ratio_ours_over_stock"]),
                c.fmt(s["tracemalloc_peak_mib"], ".0f"),
                c.fmt(o["tracemalloc_peak_mib"], ".0f"),
                c.fmt_ratio(entry["tracemalloc_ratio_ours_over_stock"]),
                f"{s['peak_waiting_items']:,} / {o['peak_waiting_items']:,}",
                f"{o['peak_in_flight_items']:,}",
                c.fmt(o["peak_queued_bytes_mib"], ".1f"),
            ]
        )
    c.print_table(
        [
            "setting",
            "offered/s",
            "stock RSS MiB",
            "ours RSS MiB",
            "ours/stock",
            "stock heap MiB",
            "ours heap MiB",
            "ours/stock",
            "peak waiting items (stock / ours)",
            "ours peak in flight",
            "ours peak queued MiB (predicted)",
        ],
        rows,
    )
    print("  (ours/stock < 1: ours grew less; heap = tracemalloc peak, full run only; in flight = items")
    print("   handed to exporters and not yet answered, which no queue bound covers: stock has at most 512)")
    c.write_json(args.json, "memory", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Delivered spans/s vs collector latency: stock BatchSpanProcessor vs otel-sched.

    python benchmarks/bench_throughput_latency.py [--quick] [--json PATH] [--seconds S]

Two app threads offer 20,000 spans/s (4 attributes each) for S seconds through the
real OTLP/HTTP exporter to an embedded receiver that adds 0, 5, 50 or 200 ms to every
request; one more case offers 4,000 spans/s at 200 ms.  Delivered = spans the
receiver accepted by the end of force_flush + shutdown (the % column); delivered/s
counts what arrived while the app was offering, over the load time.  Both processors
run with their default settings.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as c
from opentelemetry.sdk.trace import TracerProvider

CASES = [(20_000.0, 0.0), (20_000.0, 5.0), (20_000.0, 50.0), (20_000.0, 200.0), (4_000.0, 200.0)]
QUICK_CASES = [(20_000.0, 0.0), (20_000.0, 200.0), (4_000.0, 200.0)]


def run(kind: str, rate: float, latency_ms: float, seconds: float) -> dict[str, Any]:
    c.trim_heap()
    with c.receiver(latency_ms) as rx:
        provider = TracerProvider(resource=c.RESOURCE)
        processor = c.span_processor(kind, c.otlp_span_exporter(rx))
        provider.add_span_processor(processor)
        makers = [c.SpanFactory(provider, c.four_attributes, seed=i) for i in range(2)]
        made, skipped, load_s = c.paced_threads(makers, rate, seconds)
        during_load = rx.span_count  # throughput is what arrived while the app was offering
        c.shutdown_processor(processor)
        c.wait_settled(rx)
        delivered = rx.span_count
        return {
            "offered": made,
            "generator_skipped": skipped,
            "load_s": load_s,
            "delivered": delivered,
            "delivered_during_load": during_load,
            "delivered_per_s": during_load / load_s,
            "delivered_pct": 100.0 * delivered / made if made else None,
            "requests": rx.request_count,
        }


def main(argv: list[str] | None = None) -> int:
    p = c.parser("throughput_latency", __doc__)
    p.add_argument(
        "--seconds", type=float, default=None, help="load per case and pipeline (default 8, quick 1.5)"
    )
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (1.5 if args.quick else 8.0)
    cases = QUICK_CASES if args.quick else CASES
    params = {
        "seconds": seconds,
        "cases": [{"rate": r, "latency_ms": lat} for r, lat in cases],
        "producers": 2,
    }
    c.print_header("Delivered throughput vs collector latency (OTLP/HTTP)", params)
    run(c.STOCK, 2000.0, 0.0, 0.3)  # warm-up: imports, first encodes, connection pools
    run(c.OURS, 2000.0, 0.0, 0.3)
    results = []
    rows = []
    for rate, latency in cases:
        stock = run(c.STOCK, rate, latency, seconds)
        ours = run(c.OURS, rate, latency, seconds)
        ratio = c.ratio(ours["delivered_per_s"], stock["delivered_per_s"])
        results.append(
            {"rate": rate, "latency_ms": latency, "stock": stock, "otel_sched": ours, "ratio": ratio}
        )
        rows.append(
            [
                f"{rate:,.0f}/s @ {latency:g} ms",
                f"{stock['offered'] / stock['load_s']:,.0f}",
                f"{stock['delivered_per_s']:,.0f}",
                f"{stock['delivered_pct']:.1f} %",
                f"{ours['offered'] / ours['load_s']:,.0f}",
                f"{ours['delivered_per_s']:,.0f}",
                f"{ours['delivered_pct']:.1f} %",
                c.fmt_ratio(ratio),
            ]
        )
        print(f"  done: {rows[-1][0]}", flush=True)
    c.print_table(
        [
            "offered @ latency",
            "stock offered/s",
            "stock delivered/s",
            "stock %",
            "ours offered/s",
            "ours delivered/s",
            "ours %",
            "ours/stock",
        ],
        rows,
    )
    print("  (ours/stock > 1: ours delivers more; offered/s is what the app threads managed to create)")
    c.write_json(args.json, "throughput_latency", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU per exported span through OTLP/HTTP: stock BatchSpanProcessor vs otel-sched.

    python benchmarks/bench_cpu_per_span.py [--quick] [--json PATH] [--rate N] [--seconds S] [--repeat R]

An app thread creates spans (4 attributes) at a fixed rate for S seconds, exported
through the real OTLP/HTTP exporter to an embedded receiver on 127.0.0.1 (no added
latency).  The same app runs three times in this process: with no processor (the
app's own cost), with the stock processor and with ours.  CPU per exported span =
(process CPU of the run - process CPU of the no-processor run) / spans delivered.
The rate is one both pipelines carry without drops, so both export the same spans.

The receiver decodes in this process too; its threads' CPU is measured apart and
shown both ways (pipeline only, and pipeline + receiver).  A third row reads the
pipeline's own threads (stock: its worker; ours: scheduler, lanes, probe) from the
kernel's per-thread CPU clocks: steadier, but it leaves out the app thread's on_end.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

import _common as c
from opentelemetry.sdk.trace import TracerProvider

from otel_sched._resources import thread_cpu_seconds


def run(kind: str | None, rate: float, seconds: float) -> dict[str, Any]:
    """One run: ``kind`` None is the app alone."""
    c.trim_heap()
    with c.receiver() as rx:
        provider = TracerProvider(resource=c.RESOURCE)
        processor = None
        if kind is not None:
            processor = c.span_processor(kind, c.otlp_span_exporter(rx))
            provider.add_span_processor(processor)
        make = c.SpanFactory(provider, c.four_attributes)
        with c.RssSampler() as sampler:
            cpu0 = time.process_time()
            made, skipped = c.paced(make, rate, seconds)
            threads_cpu = 0.0
            if processor is not None:
                processor.force_flush(30_000)
                # The pipeline's own threads, read from the kernel's per-thread clocks before they
                # end: steadier than the difference of two process totals.
                threads_cpu = thread_cpu_seconds(
                    t for t in threading.enumerate() if t.name.startswith(("otel-sched", "OtelBatch"))
                )
                c.shutdown_processor(processor)
            c.wait_settled(rx)
            cpu = time.process_time() - cpu0
        receiver_cpu = sampler.receiver_cpu_s
        return {
            "made": made,
            "skipped": skipped,
            "delivered": rx.span_count,
            "cpu_s": cpu,
            "receiver_cpu_s": receiver_cpu,
            "threads_cpu_s": threads_cpu,
        }


def _per_span(r: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    # Scale the app's own cost to the spans this run made (the pacing may differ by a few).
    app_cpu = baseline["cpu_s"] * r["made"] / max(baseline["made"], 1)
    delivered = max(r["delivered"], 1)
    r["pipeline_cpu_s"] = r["cpu_s"] - app_cpu - r["receiver_cpu_s"]
    r["us_per_span"] = r["pipeline_cpu_s"] / delivered * 1e6
    r["us_per_span_with_receiver"] = (r["cpu_s"] - app_cpu) / delivered * 1e6
    r["threads_us_per_span"] = r["threads_cpu_s"] / delivered * 1e6
    return r


def main(argv: list[str] | None = None) -> int:
    p = c.parser("cpu_per_span", __doc__)
    p.add_argument("--rate", type=float, default=2000.0, help="spans per second (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=None, help="per run (default: 5, --quick: 3)")
    p.add_argument(
        "--repeat", type=int, default=None, help="rounds of (app, stock, ours) (default: 3, quick: 1)"
    )
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 5.0)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    params = {"rate": args.rate, "seconds": seconds, "repeat": repeat, "attributes": 4, "latency_ms": 0}
    c.print_header("CPU per exported span, OTLP/HTTP to a local receiver", params)

    run(c.STOCK, args.rate, 0.5)  # warm-up: imports, first encodes and connections are paid by neither
    run(c.OURS, args.rate, 0.5)
    # Rounds interleave the app-alone run with both pipelines, so a machine that gets busier or
    # quieter during the benchmark shifts all three alike; the median round is reported.
    rounds: list[dict[str, Any]] = []
    for _ in range(repeat):
        baseline = run(None, args.rate, seconds)
        rounds.append(
            {
                "app_only": baseline,
                c.STOCK: _per_span(run(c.STOCK, args.rate, seconds), baseline),
                c.OURS: _per_span(run(c.OURS, args.rate, seconds), baseline),
            }
        )
    ratios = [c.ratio(r[c.STOCK]["us_per_span"], r[c.OURS]["us_per_span"]) or 0.0 for r in rounds]
    median_round = sorted(range(repeat), key=lambda i: ratios[i])[repeat // 2]
    chosen = rounds[median_round]
    s, o, baseline = chosen[c.STOCK], chosen[c.OURS], chosen["app_only"]
    results: dict[str, Any] = {
        "app_only": baseline,
        c.STOCK: s,
        c.OURS: o,
        "ratio_stock_over_ours": c.ratio(s["us_per_span"], o["us_per_span"]),
        "ratio_with_receiver": c.ratio(s["us_per_span_with_receiver"], o["us_per_span_with_receiver"]),
        "ratios_all_rounds": ratios,
        "rounds": rounds,
    }
    app_us = baseline["cpu_s"] / max(baseline["made"], 1) * 1e6
    thread_stock = statistics.median(r[c.STOCK]["threads_us_per_span"] for r in rounds)
    thread_ours = statistics.median(r[c.OURS]["threads_us_per_span"] for r in rounds)
    results["threads_us_per_span"] = {c.STOCK: thread_stock, c.OURS: thread_ours}
    c.print_table(
        ["", "stock", "otel-sched", "stock/ours"],
        [
            ["spans made", s["made"], o["made"], ""],
            ["spans delivered", s["delivered"], o["delivered"], ""],
            [
                "CPU us per span, pipeline",
                f"{s['us_per_span']:.1f}",
                f"{o['us_per_span']:.1f}",
                c.fmt_ratio(results["ratio_stock_over_ours"]),
            ],
            [
                "CPU us per span, + receiver",
                f"{s['us_per_span_with_receiver']:.1f}",
                f"{o['us_per_span_with_receiver']:.1f}",
                c.fmt_ratio(results["ratio_with_receiver"]),
            ],
            [
                "CPU us per span, pipeline threads only (median of rounds)",
                f"{thread_stock:.1f}",
                f"{thread_ours:.1f}",
                c.fmt_ratio(c.ratio(thread_stock, thread_ours)),
            ],
            ["(app alone: us per span created)", f"{app_us:.1f}", f"{app_us:.1f}", ""],
        ],
    )
    print(
        f"  (median of {repeat} rounds; stock/ours per round: {', '.join(c.fmt_ratio(r) for r in ratios)}; "
        "> 1: ours spends less CPU per exported span)"
    )
    c.write_json(args.json, "cpu_per_span", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

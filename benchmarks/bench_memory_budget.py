"""The memory budget as a bound on RSS: OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB=64, large spans, slow collector.

    python benchmarks/bench_memory_budget.py [--quick] [--json PATH]

Each run is a fresh child process (this script with ``--child``), so that no run inherits
another's heap.  The app offers 3,000 spans/s for 8 s (``--quick``: 3 s), each span with one
distinct 10 KB string attribute, through the stock OTLP/HTTP exporter to an embedded receiver
(in the parent) that answers each request after 500 ms.  ``OTEL_BSP_MAX_QUEUE_SIZE=100000``
for every run, so that for otel-sched the budget (``OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB=64``)
is the only bound.  Runs: the same app with no processor (``none``), the stock
BatchSpanProcessor, otel-sched.  Figure: peak RSS (sampled at 20 Hz) minus the RSS before the
load, minus the same figure of the app alone: what the processor made the process hold.
Also shown: spans the receiver got during the load, per second (the budget's price).
Target: otel-sched <= budget + 15 % (73.6 MiB).  Twice: uncompressed requests, and gzip
(``OTEL_EXPORTER_OTLP_COMPRESSION=gzip``: a compressed copy of each body in flight).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

import _common as c

BUDGET_MIB = 64.0
TARGET_MIB = BUDGET_MIB * 1.15
RATE = 3000.0
LATENCY_MS = 500.0
ATTRIBUTE_BYTES = 10_000
KINDS = ("none", c.STOCK, c.OURS)
_POOL = random.Random(7).randbytes(1 << 20).hex()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    logging.getLogger("otel_sched").setLevel(logging.ERROR)
    provider = TracerProvider(resource=c.RESOURCE, shutdown_on_exit=False)
    processor = None
    if spec["kind"] != "none":
        processor = c.span_processor(spec["kind"], OTLPSpanExporter(endpoint=spec["url"]))
        provider.add_span_processor(processor)

    def attributes(rng: random.Random) -> dict[str, Any]:
        at = rng.randrange(len(_POOL) - ATTRIBUTE_BYTES)
        return {"payload": _POOL[at : at + ATTRIBUTE_BYTES]}  # a slice: a fresh 10 KB string

    makers = [c.SpanFactory(provider, attributes, seed=i) for i in range(2)]
    c.trim_heap()
    peak_held = 0
    with c.RssSampler() as sampler:
        result: list[tuple[int, int, float]] = []
        load = threading.Thread(target=lambda: result.append(c.paced_threads(makers, RATE, spec["seconds"])))
        load.start()
        while load.is_alive():
            load.join(0.25)
            if spec["kind"] == c.OURS and processor is not None:
                peak_held = max(peak_held, processor.stats()["resources"]["held_bytes"])
    made, _skipped, load_s = result[0]
    return {
        "offered": made,
        "offered_per_s": made / load_s,
        "rss_growth_mib": sampler.growth_mib,
        "peak_held_mib": peak_held / (1024 * 1024) if spec["kind"] == c.OURS else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser("memory_budget", __doc__)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--compression", nargs="+", choices=("none", "gzip"), default=["none", "gzip"])
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        os._exit(0)  # measured: do not wait for the backlog at 500 ms a request
    seconds = 3.0 if args.quick else 8.0
    params = {
        "seconds": seconds,
        "rate": RATE,
        "latency_ms": LATENCY_MS,
        "attribute_bytes": ATTRIBUTE_BYTES,
        "budget_mib": BUDGET_MIB,
        "OTEL_BSP_MAX_QUEUE_SIZE": 100000,
    }
    c.print_header("The memory budget bounds RSS: 64 MiB budget, 10 KB spans, 500 ms collector", params)
    os.environ["OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB"] = str(int(BUDGET_MIB))
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = "100000"
    all_results: dict[str, Any] = {}
    passed = True
    for compression in args.compression:
        os.environ["OTEL_EXPORTER_OTLP_COMPRESSION"] = compression
        results: dict[str, Any] = {}
        with c.receiver(LATENCY_MS) as rx:
            for kind in KINDS:
                spec = {"kind": kind, "url": rx.traces_url, "seconds": seconds}
                before = rx.span_count
                results[kind] = c.Child(Path(__file__), spec).wait(seconds + 120)
                results[kind]["delivered_per_s"] = (rx.span_count - before) / seconds
        alone = results["none"]["rss_growth_mib"]
        for kind in (c.STOCK, c.OURS):
            results[kind]["over_app_alone_mib"] = results[kind]["rss_growth_mib"] - alone
        ours = results[c.OURS]["over_app_alone_mib"]
        passed = passed and ours <= TARGET_MIB
        all_results[compression] = results
        print(f"\n  compression: {compression}")
        c.print_table(
            ["", "offered/s", "delivered/s", "RSS growth MiB", "over the app alone MiB", "peak held MiB"],
            [
                [
                    kind,
                    f"{results[kind]['offered_per_s']:,.0f}",
                    "-" if kind == "none" else f"{results[kind]['delivered_per_s']:,.0f}",
                    f"{results[kind]['rss_growth_mib']:.0f}",
                    "-" if kind == "none" else f"{results[kind]['over_app_alone_mib']:.0f}",
                    c.fmt(results[kind].get("peak_held_mib"), ".0f"),
                ]
                for kind in KINDS
            ],
        )
        print(
            f"  otel-sched over the app alone: {ours:.0f} MiB (budget + 15 %: {TARGET_MIB:.1f} MiB); "
            f"stock {results[c.STOCK]['over_app_alone_mib']:.0f} MiB"
        )
    print(f"  acceptance, otel-sched <= budget + 15 % in both runs: {'PASS' if passed else 'FAIL'}")
    c.write_json(args.json, "memory_budget", params, all_results, passed=passed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

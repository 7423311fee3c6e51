"""A producer at full speed: spans created in a tight loop, an exporter that returns at once.

    python benchmarks/bench_full_speed.py [--quick] [--spans N] [--rounds R] [--json PATH]

``with tracer.start_as_current_span(...)`` in a loop that never sleeps, default settings
for both processors, an exporter that returns SUCCESS at once (nothing is ever scarce).
Stock and otel-sched alternate, R rounds each, in one process.  Per run: the loop's wall
time, the process CPU time of loop + force_flush (all threads), spans exported and
dropped.  Ratios are otel-sched / stock per round (adjacent runs, so a neighbour's load
hits both alike); the table shows their median and spread.

Target (issue 19): nothing lost where stock loses nothing; loop time within 1.15x stock.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Sequence
from typing import Any

import _common as c
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult


class CountingExporter(c.NoopSpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def run(kind: str, spans: int) -> dict[str, Any]:
    gc.collect()
    exporter = CountingExporter()
    processor = c.span_processor(kind, exporter)
    provider = TracerProvider(resource=c.RESOURCE)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench.full_speed")
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(spans):
        with tracer.start_as_current_span(
            "GET /api/orders", attributes={"http.route": "/api/orders", "n": i}
        ):
            pass
    loop = time.perf_counter() - t0
    processor.force_flush(60_000)
    cpu = time.process_time() - cpu0
    dropped: dict[str, int] = {}
    if kind == c.OURS:
        snap = processor.stats()
        dropped = {k: v for k, v in snap["dropped"].items() if v}
    provider.shutdown()
    return {
        "kind": kind,
        "loop_s": loop,
        "cpu_s": cpu,
        "exported": exporter.exported,
        "dropped": dropped,
        "lost": spans - exporter.exported,
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser("full_speed", __doc__)
    p.add_argument("--spans", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    spans = 20_000 if args.quick else args.spans
    rounds = 1 if args.quick else args.rounds
    params = {"spans": spans, "rounds": rounds, "exporter": "returns SUCCESS at once", "settings": "defaults"}
    c.print_header("full-speed producer, instant exporter", params)
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        order = (c.STOCK, c.OURS) if r % 2 == 0 else (c.OURS, c.STOCK)  # neither always goes first
        pair = {kind: run(kind, spans) for kind in order}
        runs.extend(pair.values())
        stock, ours = pair[c.STOCK], pair[c.OURS]
        print(
            f"  round {r + 1}: stock {stock['loop_s']:.2f} s, otel-sched {ours['loop_s']:.2f} s "
            f"({ours['loop_s'] / stock['loop_s']:.2f}x), lost stock {stock['lost']:,} / otel-sched "
            f"{ours['lost']:,} {ours['dropped'] or ''}"
        )
        sys.stdout.flush()
    stock = [x for x in runs if x["kind"] == c.STOCK]
    ours = [x for x in runs if x["kind"] == c.OURS]
    loop_ratios = [o["loop_s"] / s["loop_s"] for s, o in zip(stock, ours, strict=True)]
    cpu_ratios = [o["cpu_s"] / s["cpu_s"] for s, o in zip(stock, ours, strict=True)]
    rows = [
        [
            c.LABELS[kind],
            f"{c.median([x['loop_s'] for x in xs]):.2f}",
            f"{c.median([x['cpu_s'] for x in xs]):.2f}",
            f"{spans / c.median([x['loop_s'] for x in xs]):,.0f}",
            max(x["lost"] for x in xs),
        ]
        for kind, xs in ((c.STOCK, stock), (c.OURS, ours))
    ]
    c.print_table(["", "loop s (median)", "CPU s (median)", "spans/s", "lost (worst)"], rows)
    print(
        f"  otel-sched / stock, per round: loop {c.median(loop_ratios):.2f}x "
        f"(spread {min(loop_ratios):.2f}-{max(loop_ratios):.2f}), CPU {c.median(cpu_ratios):.2f}x "
        f"(spread {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})"
    )
    c.write_json(
        args.json,
        "full_speed",
        params,
        runs,
        loop_ratio=c.median(loop_ratios),
        loop_ratios=loop_ratios,
        cpu_ratios=cpu_ratios,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Several collector endpoints: one slow endpoint, and an outage with recovery.

(1) Three OTLP/HTTP receivers with a fixed round trip; then the same with one of them 10x
slower.  Ours spreads batches by measured latency and in-flight count: delivered spans/s
with one slow endpoint as a share of the all-healthy case (target >= 80%).  The stock
processor can only use one endpoint: it is shown on a healthy one for scale.

(2) One endpoint answering 503 for a while: requests per second that reach it while the
pipeline is degraded, the time from recovery to full throughput, and loss.  Stock beside it.

    python benchmarks/bench_endpoints.py [--quick] [--json PATH]
"""

from __future__ import annotations

import threading
import time
from typing import Any

from _common import (
    LABELS,
    OURS,
    RESOURCE,
    STOCK,
    SpanFactory,
    four_attributes,
    paced,
    parser,
    print_header,
    print_table,
    ratio,
    receiver,
    shutdown_processor,
    span_processor,
    write_json,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider


def _provider(processor: Any) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def spread(latencies_ms: list[float], kind: str, rate: float, duration: float) -> dict[str, Any]:
    receivers = [receiver(latency_ms=ms) for ms in latencies_ms]
    rxs = [cm.__enter__() for cm in receivers]
    try:
        if kind == STOCK:
            processor = span_processor(STOCK, OTLPSpanExporter(endpoint=rxs[0].traces_url))
        else:
            processor = span_processor(
                OURS,
                OTLPSpanExporter(endpoint=rxs[0].traces_url),
                endpoints=[rx.http_endpoint for rx in rxs],
            )
        provider = _provider(processor)
        factory = SpanFactory(provider, four_attributes)
        start = time.monotonic()
        made, _ = paced(factory, rate, duration)
        elapsed = time.monotonic() - start
        during = sum(rx.span_count for rx in rxs)
        shutdown_processor(processor, 10)
        return {
            "offered": made,
            "offered_per_s": made / elapsed,
            "delivered_during_run": during,
            "delivered_per_s": during / elapsed,
            "per_endpoint": [rx.span_count for rx in rxs],
        }
    finally:
        for cm in receivers:
            cm.__exit__(None, None, None)


def outage(kind: str, rate: float, before: float, down: float, after: float) -> dict[str, Any]:
    with receiver(latency_ms=5) as rx:
        exporter = OTLPSpanExporter(endpoint=rx.traces_url, timeout=2)
        processor = span_processor(kind, exporter)
        provider = _provider(processor)
        factory = SpanFactory(provider, four_attributes)
        timeline: list[tuple[float, int, int]] = []  # (t, requests, spans)
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.wait(0.25):
                timeline.append((time.monotonic() - t0, rx.request_count, rx.span_count))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def faults() -> None:
            time.sleep(before)
            rx.set_faults(down=True, failure_status=503)
            time.sleep(down)
            rx.set_faults(down=False)

        fault_thread = threading.Thread(target=faults, daemon=True)
        fault_thread.start()
        made, _ = paced(factory, rate, before + down + after)
        fault_thread.join()
        stop.set()
        sampler.join()
        shutdown_processor(processor, 15)
        # requests per second reaching the endpoint while it was down (skip the first second: in-flight)
        down_window = [(t, r) for t, r, _ in timeline if before + 1.0 <= t <= before + down]
        down_rate = (
            (down_window[-1][1] - down_window[0][1]) / (down_window[-1][0] - down_window[0][0])
            if len(down_window) > 1
            else None
        )
        # time after recovery until throughput reaches 90% of the offered rate over a 1 s window
        recovered_after = None
        for i, (t, _, spans) in enumerate(timeline):
            if t < before + down:
                continue
            later = [x for x in timeline[i:] if x[0] <= t + 1.0]
            if len(later) > 1 and (later[-1][2] - spans) / (later[-1][0] - t) >= 0.9 * rate:
                recovered_after = t - (before + down)
                break
        return {
            "offered": made,
            "delivered": rx.span_count,
            "lost": made - rx.span_count,
            "requests_per_s_while_down": down_rate,
            "seconds_to_full_throughput_after_recovery": recovered_after,
            "stats": processor.stats() if kind == OURS else None,
        }


def main() -> None:
    args = parser("endpoints", __doc__).parse_args()
    duration = 5.0 if args.quick else 15.0
    rate = 8000.0 if args.quick else 12000.0
    rtt = 50.0
    params = {"rate": rate, "duration_s": duration, "rtt_ms": rtt}
    print_header("several endpoints: one 10x slower; outage and recovery", params)

    healthy = spread([rtt, rtt, rtt], OURS, rate, duration)
    slow = spread([rtt, rtt, rtt * 10], OURS, rate, duration)
    stock = spread([rtt], STOCK, rate, duration)
    share = ratio(slow["delivered_per_s"], healthy["delivered_per_s"])
    print_table(
        ["case", "offered/s", "delivered/s", "per endpoint"],
        [
            [
                "otel-sched, 3 healthy endpoints",
                f"{healthy['offered_per_s']:.0f}",
                f"{healthy['delivered_per_s']:.0f}",
                str(healthy["per_endpoint"]),
            ],
            [
                "otel-sched, one 10x slower",
                f"{slow['offered_per_s']:.0f}",
                f"{slow['delivered_per_s']:.0f}",
                str(slow["per_endpoint"]),
            ],
            [
                "stock, one healthy endpoint",
                f"{stock['offered_per_s']:.0f}",
                f"{stock['delivered_per_s']:.0f}",
                str(stock["per_endpoint"]),
            ],
        ],
    )
    print(
        f"  one slow endpoint keeps {share:.0%} of the all-healthy throughput (target >= 80%)"
        if share
        else ""
    )

    before, down, after = (2.0, 4.0, 4.0) if args.quick else (3.0, 10.0, 6.0)
    outage_rate = 2000.0
    results = {kind: outage(kind, outage_rate, before, down, after) for kind in (STOCK, OURS)}
    print(f"\n  endpoint answers 503 for {down:.0f} s at {outage_rate:.0f} spans/s offered")
    print_table(
        ["pipeline", "offered", "delivered", "lost", "requests/s while down", "s to full rate after"],
        [
            [
                LABELS[k],
                r["offered"],
                r["delivered"],
                r["lost"],
                "-" if r["requests_per_s_while_down"] is None else f"{r['requests_per_s_while_down']:.1f}",
                "-"
                if r["seconds_to_full_throughput_after_recovery"] is None
                else f"{r['seconds_to_full_throughput_after_recovery']:.1f}",
            ]
            for k, r in results.items()
        ],
    )
    for r in results.values():
        r.pop("stats", None)
    write_json(
        args.json,
        "endpoints",
        params,
        {"healthy": healthy, "one_slow": slow, "stock_single": stock, "slow_share": share, "outage": results},
    )


if __name__ == "__main__":
    main()

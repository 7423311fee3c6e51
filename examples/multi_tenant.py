"""Several tenants, one noisy, under overload: fairness and priority at work.

A bulk import floods the pipeline with spans of tenant ``bulk-import`` while three quiet
tenants send a trickle, some of it errors and health checks.  The queue is small and the
collector slow (50 ms per request), so most spans cannot be delivered; what matters is *which*.
The same workload runs through the stock ``BatchSpanProcessor`` and through otel-sched, and the
per-tenant / per-priority figures are printed from ``stats()`` and from what the receiver got.

Run as written: it uses the package's embedded OTLP receiver (no collector needed).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

QUIET = ("acme", "globex", "initech")
NOISY = "bulk-import"
ROUNDS = 3000  # each round: 4 noisy spans; every 20th round one span per quiet tenant
QUIET_EVERY = 20

# Priority rules as they would come from OTEL_PYTHON_SCHED_PRIORITY_RULES.
RULES = """
attr.http.route == /health & status != error -> low
resource.tier == gold -> high   # this service runs as tier=standard: shown for the syntax
"""


def workload(provider: TracerProvider) -> Counter[tuple[str, bool]]:
    """Offer the same spans to ``provider``; return how many each (tenant, is health check) offered."""
    tracer = provider.get_tracer("multi-tenant-example")
    offered: Counter[tuple[str, bool]] = Counter()
    for i in range(ROUNDS):
        for _ in range(4):
            with tracer.start_as_current_span("import row", attributes={"tenant.id": NOISY}):
                offered[NOISY, False] += 1
        if i % QUIET_EVERY:
            continue
        for n, tenant in enumerate(QUIET):
            route = "/health" if (i // QUIET_EVERY + n) % 5 == 0 else "/orders"
            with tracer.start_as_current_span(
                f"GET {route}", attributes={"tenant.id": tenant, "http.route": route}
            ) as span:
                if (i // QUIET_EVERY) % 7 == 0:
                    span.set_status(Status(StatusCode.ERROR, "card declined"))
                offered[tenant, route == "/health"] += 1
    return offered


def run(label: str, make_processor: Any) -> tuple[Counter[tuple[str, bool]], OTLPReceiver, Any]:
    receiver = OTLPReceiver(latency_s=0.05).start()
    processor: SpanProcessor = make_processor(OTLPSpanExporter(endpoint=receiver.traces_url))
    provider = TracerProvider(resource=Resource.create({"service.name": "multi-tenant", "tier": "standard"}))
    provider.add_span_processor(processor)
    offered = workload(provider)
    provider.force_flush(30_000)
    provider.shutdown()
    receiver.stop()
    print(f"\n== {label}")
    return offered, receiver, processor


def report(offered: Counter[tuple[str, bool]], receiver: OTLPReceiver) -> None:
    got = Counter(
        (s.attributes.get("tenant.id"), s.attributes.get("http.route") == "/health") for s in receiver.spans()
    )
    errors_offered = (ROUNDS // QUIET_EVERY + 6) // 7 * len(QUIET)
    errors_got = sum(1 for s in receiver.spans() if s.status_code == 2)
    print(
        f"{'tenant':<12} {'offered':>8} {'delivered':>10} {'share':>6}   {'of which not health checks':>26}"
    )
    for tenant in (NOISY, *QUIET):
        total_offered = offered[tenant, False] + offered[tenant, True]
        total_got = got[tenant, False] + got[tenant, True]
        kept, sent = got[tenant, False], offered[tenant, False]
        other = f"{kept} of {sent} ({kept / sent:.0%})"
        print(
            f"{tenant:<12} {total_offered:>8} {total_got:>10} {total_got / total_offered:>6.0%}   {other:>26}"
        )
    print(f"error spans delivered: {errors_got} of {errors_offered}")


def main() -> None:
    offered, receiver, _ = run(
        "stock BatchSpanProcessor (drops whatever arrives when the queue is full)",
        lambda exporter: BatchSpanProcessor(
            exporter, max_queue_size=256, schedule_delay_millis=50, max_export_batch_size=64
        ),
    )
    report(offered, receiver)

    offered, receiver, processor = run(
        "otel-sched ScheduledSpanProcessor (priority_fair, tenant_key=tenant.id)",
        lambda exporter: ScheduledSpanProcessor(
            exporter,
            max_queue_size=256,
            schedule_delay_millis=50,
            max_export_batch_size=64,
            tenant_key="tenant.id",
            priority_rules=RULES,
        ),
    )
    report(offered, receiver)

    stats = processor.stats()
    print("\nstats()['by_tenant']:")
    for tenant, row in sorted(stats["by_tenant"].items()):
        print(f"  {tenant:<12} exported={row['exported']:>6} dropped={row['dropped']:>6}")
    print("stats()['by_priority']:")
    for cls, row in stats["by_priority"].items():
        print(f"  {cls:<7} exported={row['exported']:>6} dropped={row['dropped']:>6}")
    print("drops by reason:", dict(stats["dropped"]))


if __name__ == "__main__":
    main()

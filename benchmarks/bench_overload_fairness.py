"""Overload and fairness: who gets delivered when the offered load is ~3x what the exporter carries.

    python benchmarks/bench_overload_fairness.py [--quick] [--json PATH] [--seconds S] [--tenant-in baggage]

Five tenants (attribute ``tenant.id``, or with ``--tenant-in baggage`` a W3C baggage entry
``tenant.id`` in the span's parent context, on no span, and ``tenant_key="baggage:tenant.id"``);
tenant-a sends 70 % of the spans, the four
quiet tenants 7.5 % each; 5 % of all spans have status ERROR.  Two app threads offer
6,500 spans/s through the real OTLP/HTTP exporter to an embedded receiver that takes
200 ms per request.  Two collector settings:

  * collector_ceiling -- the receiver serves one request at a time, so the collector,
    not the processor, sets the ceiling (~2,100 spans/s here, whatever the number of
    export lanes): both pipelines face the same ~3x overload and the only question
    is *which* spans get through;
  * open_collector -- 64 requests at a time: ~3x what the stock processor's single
    export thread carries, and otel-sched may use more export lanes.

Delivery is counted at the receiver.

Jain's fairness index is computed over the *backlogged* tenants only (those that lost
spans), on delivered bytes / weight (all weights 1): a tenant that got everything it
asked for is not starved, whatever its share.  Acceptance for otel-sched: ERROR spans
>= 99 % and every quiet tenant >= 95 % delivered.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter
from typing import Any

import _common as c
from opentelemetry import baggage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_sched.demo._received import ReceivedItem
from otel_sched.runtime._metrics import jain_index

TENANTS = ["tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"]
NOISY = "tenant-a"
NOISY_SHARE = 0.7
ERROR_SHARE = 0.05
RATE = 6500.0
LATENCY_MS = 200.0


def _item_bytes(item: ReceivedItem) -> int:
    """Approximate encoded size of a received span (what a fair share is measured in)."""
    return 64 + len(item.name) + sum(len(k) + len(str(v)) + 6 for k, v in item.attributes.items())


class _Counts:
    def __init__(self) -> None:
        self.trace_tenant: dict[int, str] = {}  # baggage mode: the spans carry no tenant; producers note it
        self.lock = threading.Lock()
        self.tenant: Counter[str] = Counter()
        self.tenant_bytes: Counter[str] = Counter()
        self.priority: Counter[str] = Counter()

    def hook(self, item: ReceivedItem) -> None:
        tenant = item.attributes.get("tenant.id")
        if tenant is None:
            tenant = self.trace_tenant.get(int.from_bytes(item.trace_id, "big"), "?")
        priority = "error" if item.status_code == 2 else "normal"
        size = _item_bytes(item)
        with self.lock:
            self.tenant[tenant] += 1
            self.tenant_bytes[tenant] += size
            self.priority[priority] += 1

    def total(self) -> int:
        with self.lock:
            return sum(self.tenant.values())


class _Producer:
    """A span maker for one app thread, counting what it offered."""

    def __init__(self, provider: TracerProvider, seed: int, trace_tenant: dict[int, str] | None) -> None:
        self.rng = random.Random(seed)
        self.trace_tenant = trace_tenant  # set: the tenant travels in baggage, not as an attribute
        self.contexts = {t: baggage.set_baggage("tenant.id", t) for t in TENANTS}
        self.tracer = provider.get_tracer("bench.overload")
        self.tenant: Counter[str] = Counter()
        self.priority: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def __call__(self) -> None:
        rng = self.rng
        tenant = NOISY if rng.random() < NOISY_SHARE else TENANTS[1 + rng.randrange(len(TENANTS) - 1)]
        error = rng.random() < ERROR_SHARE
        attributes: dict[str, Any] = {} if self.trace_tenant is not None else {"tenant.id": tenant}
        span = self.tracer.start_span(
            "POST /api/v1/import",
            context=self.contexts[tenant] if self.trace_tenant is not None else None,
            kind=SpanKind.SERVER,
            attributes={
                **attributes,
                "http.request.method": "POST",
                "http.route": "/api/v1/import",
                "http.response.status_code": 500 if error else 200,
                "url.full": f"https://api.example.com/api/v1/import?batch={rng.getrandbits(40):x}",
                "user_agent.original": "python-requests/2.32.3",
            },
        )
        if error:
            span.set_status(Status(StatusCode.ERROR))
        if self.trace_tenant is not None:
            self.trace_tenant[span.get_span_context().trace_id] = tenant
        span.end()
        self.tenant[tenant] += 1
        self.priority["error" if error else "normal"] += 1
        if error:
            self.errors[tenant] += 1


def run(
    kind: str, seconds: float, collector_concurrency: int, tenant_in: str = "attribute"
) -> dict[str, Any]:
    c.trim_heap()
    counts = _Counts()
    in_baggage = tenant_in == "baggage"
    with c.receiver(LATENCY_MS, item_hook=counts.hook, max_concurrent_requests=collector_concurrency) as rx:
        provider = TracerProvider(resource=c.RESOURCE)
        tenant_key = "baggage:tenant.id" if in_baggage else "tenant.id"
        processor = c.span_processor(kind, c.otlp_span_exporter(rx), tenant_key=tenant_key)
        provider.add_span_processor(processor)
        trace_tenant = counts.trace_tenant if in_baggage else None
        producers = [_Producer(provider, seed, trace_tenant) for seed in (1, 2)]
        made, skipped, load_s = c.paced_threads(producers, RATE, seconds)
        during_load = counts.total()
        stats = processor.stats() if kind == c.OURS else None
        c.shutdown_processor(processor)
        c.wait_settled(rx, counts.total)
    offered_t: Counter[str] = Counter()
    offered_p: Counter[str] = Counter()
    errors_t: Counter[str] = Counter()
    for p in producers:
        offered_t.update(p.tenant)
        offered_p.update(p.priority)
        errors_t.update(p.errors)
    tenants: dict[str, dict[str, Any]] = {
        t: {
            "offered": offered_t[t],
            "delivered": counts.tenant[t],
            "delivered_bytes": counts.tenant_bytes[t],
            "delivered_pct": 100.0 * counts.tenant[t] / offered_t[t] if offered_t[t] else None,
        }
        for t in TENANTS
    }
    priorities: dict[str, dict[str, Any]] = {
        p: {
            "offered": offered_p[p],
            "delivered": counts.priority[p],
            "delivered_pct": 100.0 * counts.priority[p] / offered_p[p] if offered_p[p] else None,
        }
        for p in ("error", "normal")
    }
    backlogged = [t for t, row in tenants.items() if row["delivered"] < row["offered"]]
    jain = (
        jain_index(tenants[t]["delivered_bytes"] / 1.0 for t in backlogged) if len(backlogged) > 1 else None
    )
    delivered = sum(counts.tenant.values())
    return {
        "offered": made,
        "generator_skipped": skipped,
        "load_s": load_s,
        "delivered": delivered,
        "delivered_pct": 100.0 * delivered / made if made else None,
        "delivered_during_load": during_load,
        "delivered_per_s": during_load / load_s,
        "tenants": tenants,
        "priorities": priorities,
        "errors_by_tenant": dict(errors_t),
        "backlogged_tenants": backlogged,
        "jain_backlogged": jain,
        "processor_stats_fairness_index": None if stats is None else stats.get("fairness_index"),
        "processor_dropped": None if stats is None else stats.get("dropped"),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def max_min_fair(demands: dict[str, float], capacity: float) -> dict[str, float]:
    """Water-filling: what each tenant gets when capacity is shared max-min fairly (equal weights)."""
    alloc: dict[str, float] = {}
    left = capacity
    pending = sorted(demands, key=lambda t: demands[t])
    while pending:
        share = left / len(pending)
        tenant = pending[0]
        if demands[tenant] <= share:
            alloc[tenant] = demands[tenant]
            left -= demands[tenant]
            pending.pop(0)
        else:
            for t in pending:
                alloc[t] = share
            break
    return alloc


def fair_ideal(run: dict[str, Any]) -> dict[str, float | None]:
    """Per tenant: the delivered % max-min fairness would give at this run's throughput.

    ERROR spans go first (they are a priority class above the tenants), so the tenants
    share what is left of the delivered spans.
    """
    errors_by_tenant = run["errors_by_tenant"]
    demands = {t: run["tenants"][t]["offered"] - errors_by_tenant.get(t, 0) for t in TENANTS}
    capacity = run["delivered"] - run["priorities"]["error"]["delivered"]
    alloc = max_min_fair({t: float(d) for t, d in demands.items()}, float(capacity))
    out: dict[str, float | None] = {}
    for t in TENANTS:
        offered = run["tenants"][t]["offered"]
        errors = errors_by_tenant.get(t, 0)
        out[t] = 100.0 * (alloc[t] + errors) / offered if offered else None
    return out


SETTINGS = {
    # One request at a time: the collector's ceiling (512 spans / 200 ms) binds both pipelines equally.
    "collector_ceiling": 1,
    # The receiver's default 64 concurrent requests: extra export lanes can raise what gets through.
    "open_collector": 64,
}


def report(setting: str, s: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    carried = max(s["delivered_per_s"], o["delivered_per_s"], 1.0)
    overload_stock = s["offered"] / s["load_s"] / max(s["delivered_per_s"], 1.0)
    overload_ours = o["offered"] / o["load_s"] / max(o["delivered_per_s"], 1.0)
    ideal = fair_ideal(o)
    rows = [
        ["offered/s", f"{s['offered'] / s['load_s']:,.0f}", f"{o['offered'] / o['load_s']:,.0f}", ""],
        ["delivered/s", f"{s['delivered_per_s']:,.0f}", f"{o['delivered_per_s']:,.0f}", ""],
        ["overload (offered / delivered)", f"{overload_stock:.1f}x", f"{overload_ours:.1f}x", ""],
        ["delivered, all", _pct(s["delivered_pct"]), _pct(o["delivered_pct"]), ""],
        [
            "delivered, ERROR spans",
            _pct(s["priorities"]["error"]["delivered_pct"]),
            _pct(o["priorities"]["error"]["delivered_pct"]),
            "100.0 %",
        ],
    ]
    for t in TENANTS:
        label = f"delivered, {t}" + (" (noisy)" if t == NOISY else "")
        rows.append(
            [
                label,
                _pct(s["tenants"][t]["delivered_pct"]),
                _pct(o["tenants"][t]["delivered_pct"]),
                _pct(ideal[t]),
            ]
        )
    rows.append(
        [
            "Jain index, backlogged tenants",
            c.fmt(s["jain_backlogged"], ".3f"),
            c.fmt(o["jain_backlogged"], ".3f"),
            f"({len(s['backlogged_tenants'])} / {len(o['backlogged_tenants'])} backlogged)",
        ]
    )
    print(f"\n  {setting} (collector serves {SETTINGS[setting]} request(s) at a time)")
    c.print_table(["", "stock", "otel-sched", "max-min fair*"], rows)
    error_ok = (o["priorities"]["error"]["delivered_pct"] or 0.0) >= 99.0
    quiet = [o["tenants"][t]["delivered_pct"] or 0.0 for t in TENANTS[1:]]
    quiet_ok = min(quiet) >= 95.0
    print(
        f"  acceptance, otel-sched: ERROR spans >= 99 %: {'PASS' if error_ok else 'FAIL'}; "
        f"every quiet tenant >= 95 %: {'PASS' if quiet_ok else 'FAIL'} (worst {min(quiet):.1f} %)"
    )
    return {
        "stock": s,
        "otel_sched": o,
        "carried_per_s": carried,
        "overload_stock": overload_stock,
        "overload_ours": overload_ours,
        "max_min_fair_ideal_pct_ours": ideal,
        "acceptance": {
            "error_spans_ge_99": error_ok,
            "quiet_tenants_ge_95": quiet_ok,
            "worst_quiet_pct": min(quiet),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser("overload_fairness", __doc__)
    p.add_argument("--seconds", type=float, default=None, help="load per pipeline (default 12, quick 3)")
    p.add_argument(
        "--tenant-in",
        choices=("attribute", "baggage"),
        default="attribute",
        help="where the tenant travels: a span attribute, or W3C baggage only (no span carries it)",
    )
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 12.0)
    params = {
        "seconds": seconds,
        "rate": RATE,
        "latency_ms": LATENCY_MS,
        "collector_concurrency": SETTINGS,
        "tenants": TENANTS,
        "noisy_share": NOISY_SHARE,
        "error_share": ERROR_SHARE,
        "tenant_in": args.tenant_in,
    }
    c.print_header("Overload (~3x) with one noisy tenant and 5 % ERROR spans", params)
    results: dict[str, Any] = {}
    for setting, concurrency in SETTINGS.items():
        runs = {kind: run(kind, seconds, concurrency, args.tenant_in) for kind in (c.STOCK, c.OURS)}
        results[setting] = report(setting, runs[c.STOCK], runs[c.OURS])
    print(
        "  * max-min fair: what each tenant would get if otel-sched's delivered throughput were shared\n"
        "    max-min fairly (equal weights) after ERROR spans -- a tenant asking for more than 1/5 of it is\n"
        "    capped there, whatever the scheduler."
    )
    c.write_json(args.json, "overload_fairness", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

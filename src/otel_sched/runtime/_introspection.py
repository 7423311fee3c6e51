"""Introspection: ``processor.stats()``, the balance, the gauges, and ``otel_sched.stats()``.

Owns nothing but the process-wide names of pipelines; reads the components a pipeline is made of.

Threads: any thread.  :func:`balance` reads under the scheduler's step lock, so its terms are
those between two steps; the rest of a snapshot is read without it (counters that may be a step
apart, as the metrics they mirror).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..otlp._encoding import encode_log_native, encode_span_native
from ..scheduling._task import Signal
from ._lifecycle import _LIVE

if TYPE_CHECKING:
    from ._pipeline import Pipeline


def encoder_name(pipeline: Pipeline) -> str | None:
    """Which encoder the fast path uses: "native" (compiled), "python", or None off the fast path."""
    if not pipeline.lanes.fast:
        return None
    encode = pipeline.stages.encode
    if encode is encode_span_native or encode is encode_log_native:
        return "native"
    return "python"


def gauges(pipeline: Pipeline) -> dict[str, float]:
    snap = snapshot(pipeline)
    return {
        "fairness_index": snap["fairness_index"] or 1.0,
        "in_flight_exports": float(snap["concurrency"]["in_flight"]),
        "queued_bytes": float(snap["queued_bytes"]),
    }


def balance(pipeline: Pipeline) -> dict[str, Any]:
    """The accounting terms, read between two scheduler steps (so they are consistent):
    ``received == exported + dropped + spooled + queued + intake + in_flight``.

    ``exported`` counts items of this process's batches (not replays of spooled batches,
    which were counted in ``spooled`` when they were stored); ``dropped`` includes the
    application thread's drops (intake full, recursion, after shutdown)."""
    with pipeline.loop.step_lock:
        stats = pipeline.stats
        holder = pipeline.holder
        # Spans held for an ancestor's tenant were not taken from the intake: they count in it.
        intake = len(pipeline.intake.queue) + (0 if holder is None else holder.count)
        app = sum(stats.app_drop_counts().values())
        terms = {
            "received": pipeline.ledger.taken + intake + app,
            "exported": stats.exported - stats.replayed_items,
            "dropped": sum(stats.dropped.values()) + app,
            "spooled": stats.spooled_items,
            "queued": pipeline.stages.queues.count,
            "intake": intake,
            "in_flight": pipeline.dispatcher.in_flight,
        }
    held = terms["queued"] + terms["intake"] + terms["in_flight"]
    accounted = terms["exported"] + terms["dropped"] + terms["spooled"] + held
    return {**terms, "held": held, "balanced": terms["received"] == accounted}


def snapshot(pipeline: Pipeline) -> dict[str, Any]:
    p = pipeline
    terms = balance(p)
    stages, lanes, dispatcher = p.stages, p.lanes, p.dispatcher
    queues, pool, controller = stages.queues, lanes.pool, lanes.controller
    by_class = list(queues.class_count)
    by_tenant = queues.tenant_count.copy()
    snap = p.stats.snapshot(by_class, by_tenant, stages.weight_of)
    # Spans held for their tenant are offered and not classified yet: in "intake" for the balance.
    held = 0 if p.holder is None else p.holder.count
    snap.update(
        {
            "signal": p.signal.value,
            "name": p.name,
            "policy": p.config.policy,
            "mode": "shutdown" if p.intake.closed else lanes.modes.mode.value,
            "received": terms["received"],
            "balance": terms,
            "queued": queues.count,
            "queued_bytes": queues.nbytes,
            "intake": len(p.intake.queue) + held,
            "in_flight": dispatcher.in_flight,
            "capacity": {"items": p.config.max_queue_size, "bytes": p.config.max_queue_bytes},
            "concurrency": {
                "lanes": pool.live_lanes(),
                "in_flight": dispatcher.jobs_in_flight,
                "limit": controller.limit,
                "max": controller.max_limit,
                "hung": len(dispatcher.hung),
                "replaced": pool.replaced,
                "retired": pool.retired(),
                "replace_refused": pool.replace_refused,
                "stolen": sum(lane.stolen for lane in pool.lanes),
                "increases": controller.increases,
                "decreases": controller.decreases,
                "asynchronous": pool.asynchronous,
            },
            "endpoints": [
                {
                    "name": ep.name,
                    "healthy": ep.failures == 0,
                    "latency_ms": ep.latency * 1000.0,
                    "in_flight": ep.in_flight,
                    "consecutive_failures": ep.failures,
                }
                for ep in lanes.router.endpoints
            ],
            "retried_batches": p.stats.retried,
            "rejected_by_collector": p.stats.rejected,
            "otlp_fast_path": lanes.fast,
            "encoder": encoder_name(p),
            "spool": p.bridge.snapshot(),
            **p.standing.snapshot(),
            "async_loop": {
                "max_lag_ms": pool.max_loop_lag * 1000.0,
                "blocked": pool.loop_blocked,
            },
            "cost_model": {
                "base_ms": stages.cost_model.base * 1000.0,
                "per_kib_ms": stages.cost_model.per_byte * 1024 * 1000.0,
                "samples": stages.cost_model.samples,
            },
            "tenants": {
                "tracked": len(stages.tenants),
                "overflowed": stages.tenants.overflowed,
                "retired": stages.tenants.retired,
                "missing_key": stages.classifier.tenant_missing,
                "inherited": stages.classifier.tenant_inherited,
                "held": held,
                "held_released_unresolved": 0 if p.holder is None else p.holder.timeouts,
            },
            "rule_errors": getattr(p._priority_of, "errors", 0),
        }
    )
    return snap


_NAMES_TAKEN: dict[tuple[Signal, str], int] = {}
_NAMES_LOCK = threading.Lock()


def stable_name(signal: Signal, exporter: Any) -> str:
    """The exporter's class name; the second pipeline of a signal with the same one gets "#2"."""
    base = type(exporter).__name__
    with _NAMES_LOCK:
        n = _NAMES_TAKEN.get((signal, base), 0) + 1
        _NAMES_TAKEN[(signal, base)] = n
    return base if n == 1 else f"{base}#{n}"


def stats() -> dict[str, dict[str, dict[str, Any]]]:
    """``stats()`` of every live pipeline of the process: ``{signal: {name: snapshot}}``.

    Reaches the processors that ``opentelemetry-instrument`` or ``configure()`` created, which
    application code holds no reference to.  A name stays the same for the pipeline's lifetime.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {signal.value: {} for signal in Signal}
    for pipeline in sorted(_LIVE, key=lambda p: p.name):
        out[pipeline.signal.value][pipeline.name] = pipeline.snapshot()
    return out

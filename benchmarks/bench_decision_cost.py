"""Scheduling decision cost as the number of tenants grows (1 .. 10,000), for every policy.

    python benchmarks/bench_decision_cost.py [--quick] [--json PATH]

Drives the scheduler's own pieces directly -- ``QueueSet`` + ``make_policy(...)`` +
``BatchFormer`` -- with pre-built tasks, no threads and no exporter: a steady state
where a backlog of 4,096 tasks is kept (a full default queue and intake), each step
pushes 512 new tasks (random tenant, 5 % high priority, 200..2,000 predicted bytes)
and forms one batch of 512.  Reported: ns per decision (``form`` time / tasks formed:
select + pop + served) and ns per push (``push`` time / tasks pushed, which includes
the policy's ``activate``), median of several rounds, and how each grows relative to
the 1-tenant case.  There is no stock counterpart: the stock processor's decision is
a deque pop, shown as the reference row.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from typing import Any

import _common as c

from otel_sched._option_parsers import POLICY_NAMES
from otel_sched.scheduling._batching import BatchFormer
from otel_sched.scheduling._policies import make_policy
from otel_sched.scheduling._queues import QueueSet
from otel_sched.scheduling._task import Task

TENANT_COUNTS = [1, 10, 100, 1000, 10_000]
BACKLOG = 4096
BATCH = 512


def _tasks(n: int, tenants: int, rng: random.Random, start_seq: int) -> list[Task]:
    names = [f"tenant-{i}" for i in range(tenants)]
    out = []
    for i in range(n):
        priority = 2 if rng.random() < 0.05 else 1
        out.append(
            Task(
                item=object(),
                priority=priority,
                tenant=names[rng.randrange(tenants)],
                cost=rng.randrange(200, 2000),
                trace_id=rng.getrandbits(64),
                enqueued=0.0,
                deadline=5.0 if priority == 2 else 30.0,
                seq=start_seq + i,
            )
        )
    return out


def measure(policy_name: str, tenants: int, steps: int, rounds: int) -> dict[str, float]:
    rng = random.Random(tenants)
    decide: list[float] = []
    push: list[float] = []
    for _ in range(rounds):
        policy = make_policy(
            policy_name, aging_seconds=1.0, quantum=16 * 1024, predict_seconds=lambda cost: cost * 1e-8
        )
        queues = QueueSet(lambda tenant: 1.0, policy.activate, cost_buckets=policy.cost_buckets)
        former = BatchFormer(BATCH, 2 * 1024 * 1024, 0.005)
        seq = 0
        for task in _tasks(BACKLOG, tenants, rng, seq):
            queues.push(task)
        seq += BACKLOG
        fresh = [_tasks(BATCH, tenants, rng, seq + i * BATCH) for i in range(steps)]
        now = 0.0
        push_ns = decide_ns = 0
        formed = pushed = 0
        for batch in fresh:
            now += 0.001
            for task in batch:
                task.enqueued = now
            t0 = time.perf_counter_ns()
            for task in batch:
                queues.push(task)
            t1 = time.perf_counter_ns()
            out = former.form(queues, policy, now)
            t2 = time.perf_counter_ns()
            push_ns += t1 - t0
            decide_ns += t2 - t1
            pushed += len(batch)
            formed += len(out)
        decide.append(decide_ns / max(formed, 1))
        push.append(push_ns / max(pushed, 1))
    return {"decision_ns": c.median(decide), "push_ns": c.median(push)}


def stock_reference(steps: int, rounds: int) -> dict[str, float]:
    """What the stock BatchProcessor does per item: appendleft on emit, pop when exporting."""
    decide: list[float] = []
    push: list[float] = []
    for _ in range(rounds):
        queue: deque[object] = deque([object()] * BACKLOG, BACKLOG * 2)
        items = [object()] * BATCH
        push_ns = decide_ns = 0
        for _ in range(steps):
            t0 = time.perf_counter_ns()
            for item in items:
                queue.appendleft(item)
            t1 = time.perf_counter_ns()
            batch = [queue.pop() for _ in range(min(BATCH, len(queue)))]
            t2 = time.perf_counter_ns()
            push_ns += t1 - t0
            decide_ns += t2 - t1
            assert len(batch) == BATCH
        decide.append(decide_ns / (steps * BATCH))
        push.append(push_ns / (steps * BATCH))
    return {"decision_ns": c.median(decide), "push_ns": c.median(push)}


def main(argv: list[str] | None = None) -> int:
    args = c.parser("decision_cost", __doc__).parse_args(argv)
    steps, rounds = (8, 3) if args.quick else (40, 5)
    params = {"backlog": BACKLOG, "batch": BATCH, "steps": steps, "rounds": rounds, "tenants": TENANT_COUNTS}
    c.print_header("Scheduling decision cost vs number of tenants", params)
    results: dict[str, Any] = {"stock_deque_reference": stock_reference(steps, rounds)}
    rows = []
    ref = results["stock_deque_reference"]
    rows.append(
        ["stock deque (reference)"]
        + [f"{ref['decision_ns']:.0f} / {ref['push_ns']:.0f}"] * len(TENANT_COUNTS)
        + ["1.00x"]
    )
    for name in POLICY_NAMES:
        per: dict[str, Any] = {}
        for tenants in TENANT_COUNTS:
            per[str(tenants)] = measure(name, tenants, steps, rounds)
        base = per["1"]["decision_ns"]
        for tenants in TENANT_COUNTS:
            per[str(tenants)]["decision_growth"] = c.ratio(per[str(tenants)]["decision_ns"], base)
        results[name] = per
        worst = max(per[str(t)]["decision_growth"] or 0.0 for t in TENANT_COUNTS)
        rows.append(
            [name]
            + [f"{per[str(t)]['decision_ns']:.0f} / {per[str(t)]['push_ns']:.0f}" for t in TENANT_COUNTS]
            + [f"{worst:.2f}x"]
        )
        print(f"  done: {name}", flush=True)
    c.print_table(
        ["policy (ns decision / ns push)"] + [f"{t:,} tenants" for t in TENANT_COUNTS] + ["max growth"], rows
    )
    print("  (growth = decision ns at N tenants / at 1 tenant, worst over N)")
    c.write_json(args.json, "decision_cost", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

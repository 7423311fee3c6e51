"""Tenant cardinality: an unbounded stream of tenant names keeps the queue set and policies bounded.

Pure objects, simulated time, no threads: the queue set, each policy, admission and the batch
former are driven with tenant names that never repeat (a user id used as tenant key), mixed
with a few that do.  What is held must depend on what is queued, not on how many names were
ever seen, and every task pushed must still come out exactly once.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_sched.scheduling._queues import _SLACK

from ._helpers import Rig

POLICIES = ["fifo", "priority", "fair", "predictive", "deadline", "priority_fair"]

# One step: ("push", fresh names?, class, cost, how many), ("serve", how many), ("batch", items) or
# ("tick",).
_step = st.one_of(
    st.tuples(st.just("push"), st.booleans(), st.integers(0, 2), st.integers(1, 5000), st.integers(1, 100)),
    st.tuples(st.just("serve"), st.integers(1, 40)),
    st.tuples(st.just("batch"), st.integers(1, 64)),
    st.tuples(st.just("tick")),
)


def _bound(rig: Rig) -> int:
    """Sub-queues a queue set of this capacity may hold: twice what can be non-empty, plus the slack."""
    return 2 * rig.admission.max_count + _SLACK


def _flows(rig: Rig) -> int:
    flows = getattr(rig.policy, "_flows", None)
    return 0 if flows is None else len(flows)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=15, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=40), repeat=st.integers(1, 120))
def test_live_sub_queues_stay_bounded_whatever_the_tenant_names(
    policy: str, steps: list[tuple[object, ...]], repeat: int
) -> None:
    rig = Rig(policy, max_count=100, max_bytes=400_000, quantum=2000)
    former = rig.former(max_items=50, max_bytes=100_000)
    names = itertools.count()
    pushed: set[int] = set()
    out: list[int] = []
    for step in (steps * (1 + repeat // len(steps)))[:repeat]:
        kind = step[0]
        if kind == "push":
            _, fresh, priority, cost, many = step
            for _ in range(int(many)):  # type: ignore[call-overload]
                tenant = f"user-{next(names)}" if fresh else f"steady-{cost % 3}"  # type: ignore[operator]
                task, drops = rig.admit(priority=priority, tenant=tenant, cost=cost)
                pushed.add(task.seq)
                out.extend(t.seq for t, _ in drops)
                assert rig.queues.size <= _bound(rig)
        elif kind == "serve":
            out.extend(t.seq for t in rig.drain(int(step[1])))  # type: ignore[call-overload]
        elif kind == "batch":
            former.max_items = int(step[1])  # type: ignore[call-overload]
            out.extend(t.seq for t in former.form(rig.queues, rig.policy, rig.now))
        else:
            rig.now += 0.5
        queues = rig.queues
        assert queues.size <= _bound(rig)
        assert _flows(rig) <= queues.size
        assert queues.live <= queues.count
    out.extend(t.seq for t in rig.drain())
    assert len(rig.queues) == 0 and rig.queues.live == 0
    assert sorted(out) == sorted(pushed)  # each task left exactly once: served or shed
    rig.push(tenant="one-more")  # the next new name finds only empty sub-queues: they go
    assert rig.queues.size <= _SLACK and _flows(rig) <= _SLACK


@pytest.mark.parametrize("policy", POLICIES)
def test_a_hundred_thousand_one_off_tenants_leave_a_few_sub_queues(policy: str) -> None:
    rig = Rig(policy, max_count=1000, quantum=500)
    for i in range(100_000):
        rig.admit(priority=i % 3, tenant=f"request-{i}", cost=100 + i % 7)
        if i % 64 == 63:
            rig.drain(48)
        assert rig.queues.size <= _bound(rig)
    rig.drain()
    rig.push(tenant="one-more")
    assert rig.queues.size == 1 and _flows(rig) <= 1  # thousands were empty: swept

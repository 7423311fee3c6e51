"""Policies as pure objects: scenario tables in simulated time, no threads."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_sched.scheduling._policies import make_policy
from otel_sched.scheduling._task import PriorityClass

from ._helpers import Rig

LOW, NORMAL, HIGH = int(PriorityClass.LOW), int(PriorityClass.NORMAL), int(PriorityClass.HIGH)
ALL = ["fifo", "priority", "fair", "predictive", "deadline", "priority_fair"]


def test_fifo_serves_in_arrival_order_across_classes_and_tenants() -> None:
    rig = Rig("fifo")
    pushed = [
        rig.push(priority=p, tenant=t) for p, t in [(LOW, "a"), (HIGH, "b"), (NORMAL, "a"), (HIGH, "c")]
    ]
    assert [t.seq for t in rig.drain()] == [t.seq for t in pushed]


@pytest.mark.parametrize("policy", ["priority", "priority_fair"])
def test_priority_policies_serve_higher_classes_first(policy: str) -> None:
    rig = Rig(policy)
    for p in (LOW, NORMAL, HIGH, LOW, HIGH, NORMAL):
        rig.push(priority=p)
    assert [t.priority for t in rig.drain()] == [HIGH, HIGH, NORMAL, NORMAL, LOW, LOW]


@pytest.mark.parametrize("policy", ["priority", "priority_fair"])
def test_aging_lets_a_waiting_low_item_overtake_a_stream_of_high_items(policy: str) -> None:
    # One LOW item waits while a HIGH item arrives and is served every 100 ms.
    rig = Rig(policy, aging=1.0)
    low = rig.push(priority=LOW)
    served_low_at = None
    for _ in range(100):
        rig.push(priority=HIGH)
        task = rig.pop()
        assert task is not None
        if task is low:
            served_low_at = rig.now
            break
        rig.now += 0.1
    # Two levels below HIGH: it must wait about 2 aging periods, not forever and not less.
    assert served_low_at is not None
    assert 2.0 <= served_low_at <= 2.5


@pytest.mark.parametrize("policy", ["priority", "priority_fair"])
def test_without_competition_a_low_class_is_served_immediately(policy: str) -> None:
    rig = Rig(policy)
    low = rig.push(priority=LOW)
    assert rig.pop() is low


@pytest.mark.parametrize(
    ("weights", "costs", "expected_share_a"),
    [
        ({}, {"a": 100, "b": 100}, 0.5),  # equal weights, equal costs: equal items
        ({"a": 3.0}, {"a": 100, "b": 100}, 0.75),  # weight 3:1 -> 3/4 of the bytes
        ({}, {"a": 200, "b": 100}, 0.5),  # fair on bytes, not items: a gets half the bytes
    ],
)
@pytest.mark.parametrize("policy", ["fair", "priority_fair"])
def test_fair_policies_share_bytes_by_weight(
    policy: str, weights: dict[str, float], costs: dict[str, int], expected_share_a: float
) -> None:
    rig = Rig(policy, weights=weights, quantum=1000)
    for _ in range(400):
        rig.push(tenant="a", cost=costs["a"])
        rig.push(tenant="b", cost=costs["b"])
    served = rig.drain(300)
    bytes_by = Counter[str]()
    for t in served:
        bytes_by[t.tenant] += t.cost
    share_a = bytes_by["a"] / (bytes_by["a"] + bytes_by["b"])
    assert share_a == pytest.approx(expected_share_a, abs=0.05)


def test_fair_policy_keeps_priority_order_inside_a_tenant() -> None:
    rig = Rig("fair")
    rig.push(tenant="a", priority=NORMAL)
    rig.push(tenant="a", priority=HIGH)
    assert rig.pop().priority == HIGH  # type: ignore[union-attr]


def test_fair_policy_serves_a_quiet_tenant_promptly_behind_a_noisy_backlog() -> None:
    rig = Rig("priority_fair", quantum=1000)
    for _ in range(5000):
        rig.push(tenant="noisy", cost=100)
    quiet = rig.push(tenant="quiet", cost=100)
    served = rig.drain(25)
    assert quiet in served  # within one DRR round, not after 5000 noisy items


def test_predictive_serves_small_items_first_and_ages_large_ones() -> None:
    rig = Rig("predictive", predict=lambda cost: cost * 1e-6)
    big = rig.push(cost=100_000)  # predicted 0.1 s
    small = [rig.push(cost=100) for _ in range(3)]
    assert rig.drain(3) == small
    # A stream of fresh small items cannot hold the big one back forever.
    served_big = False
    for _ in range(1000):
        rig.now += 1.0
        rig.push(cost=100)
        if rig.pop() is big:
            served_big = True
            break
    assert served_big


def test_deadline_policy_is_earliest_deadline_first() -> None:
    rig = Rig("deadline")
    late = rig.push(priority=LOW, deadline=30.0)
    soon = rig.push(priority=HIGH, deadline=2.0)
    mid = rig.push(priority=NORMAL, deadline=10.0)
    assert rig.drain() == [soon, mid, late]


def test_unknown_policy_name_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'lifo' is not one of fifo"):
        make_policy("lifo")


# -- conservation under any interleaving of push / serve / shed ---------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["push", "pop", "evict"]),
        st.integers(0, 2),
        st.sampled_from(["a", "b", "c"]),
        st.integers(1, 5000),
    ),
    max_size=200,
)


@pytest.mark.parametrize("policy", ALL)
@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_every_task_leaves_exactly_once(policy: str, ops: list[tuple[str, int, str, int]]) -> None:
    rig = Rig(policy, quantum=700)
    pushed: set[int] = set()
    left: list[int] = []
    for op, priority, tenant, cost in ops:
        rig.now += 0.01
        if op == "push":
            pushed.add(rig.push(priority=priority, tenant=tenant, cost=cost).seq)
        elif op == "pop":
            task = rig.pop()
            if task is not None:
                left.append(task.seq)
        else:
            sq = rig.queues.newest_of(priority, tenant)
            if sq is not None:
                left.append(rig.queues.pop_tail(sq).seq)
    left.extend(t.seq for t in rig.drain())
    assert sorted(left) == sorted(pushed)
    assert len(rig.queues) == 0 and rig.queues.nbytes == 0
    assert all(not usage for usage in rig.queues.usage)


@pytest.mark.parametrize("policy", ["priority", "priority_fair"])
def test_a_class_that_won_by_aging_yields_after_one_item_at_the_same_instant(policy: str) -> None:
    rig = Rig(policy, aging=1.0)
    for _ in range(3):
        rig.push(priority=LOW)
    rig.push(priority=HIGH)
    rig.now = 2.4
    assert rig.pop().priority == HIGH  # type: ignore[union-attr]
    for _ in range(3):
        rig.push(priority=HIGH)
    rig.now = 2.5  # LOW has waited 2.5 s: effective 2.5 beats HIGH's 2.1, once
    assert [t.priority for t in rig.drain(3)] == [LOW, HIGH, HIGH]


def test_mean_cost_is_the_mean_queued_item_weight_or_the_default_when_empty() -> None:
    rig = Rig("fifo")
    assert rig.queues.mean_cost(512.0) == 512.0
    rig.push(cost=100)
    rig.push(cost=300)
    assert rig.queues.mean_cost(512.0) == 200.0
    rig.pop()  # the older one, cost 100
    assert rig.queues.mean_cost(512.0) == 300.0

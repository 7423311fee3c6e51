"""Admission and shedding rules, as a pure object."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_sched.scheduling._task import PriorityClass, Task

from ._helpers import Rig

LOW, NORMAL, HIGH = int(PriorityClass.LOW), int(PriorityClass.NORMAL), int(PriorityClass.HIGH)


def test_admits_while_there_is_room() -> None:
    rig = Rig("priority_fair", max_count=3)
    for _ in range(3):
        _, drops = rig.admit()
        assert drops == []
    assert len(rig.queues) == 3


def test_higher_priority_evicts_the_oldest_of_the_lowest_class() -> None:
    rig = Rig("priority_fair", max_count=3)
    normal, _ = rig.admit(priority=NORMAL)
    oldest_low, _ = rig.admit(priority=LOW)
    newest_low, _ = rig.admit(priority=LOW)
    high, drops = rig.admit(priority=HIGH)
    assert drops == [(oldest_low, "shed_priority")]
    assert rig.drain() == [high, normal, newest_low]


def test_an_arrival_below_everything_queued_is_refused() -> None:
    rig = Rig("priority_fair", max_count=2)
    rig.admit(priority=HIGH)
    rig.admit(priority=HIGH)
    low, drops = rig.admit(priority=LOW)
    assert drops == [(low, "queue_full")]


def test_a_new_high_item_is_never_dropped_while_lower_items_are_queued() -> None:
    rig = Rig("priority_fair", max_count=100)
    for _ in range(100):
        rig.admit(priority=NORMAL, tenant="noisy")
    for _ in range(50):
        high, drops = rig.admit(priority=HIGH, tenant="noisy")
        assert all(t is not high for t, _ in drops)
    assert rig.queues.class_count[HIGH] == 50


def test_within_a_class_the_tenant_most_over_its_share_is_shed() -> None:
    rig = Rig("priority_fair", max_count=10)
    noisy_items = [rig.admit(tenant="noisy")[0] for _ in range(8)]
    rig.admit(tenant="quiet")
    rig.admit(tenant="quiet")
    _, drops = rig.admit(tenant="quiet")
    assert drops == [(noisy_items[0], "shed_fair_share")]  # the noisy tenant's oldest
    newcomer, drops = rig.admit(tenant="noisy")
    # The heaviest tenant makes room for its own newer item, as the stock processor drops its oldest.
    assert drops == [(noisy_items[1], "queue_full")]
    assert newcomer in rig.drain()


def test_fair_share_is_weighted() -> None:
    # gold holds 6 items at weight 3 (share 2), bronze 4 items at weight 1 (share 4): bronze is over.
    rig = Rig("priority_fair", max_count=10, weights={"gold": 3.0})
    for _ in range(6):
        rig.admit(tenant="gold")
    for _ in range(4):
        rig.admit(tenant="bronze")
    _, drops = rig.admit(tenant="gold")
    assert [(t.tenant, r) for t, r in drops] == [("bronze", "shed_fair_share")]


def test_byte_bound_sheds_enough_items_to_fit() -> None:
    rig = Rig("priority_fair", max_bytes=1000)
    for _ in range(10):
        rig.admit(priority=LOW, cost=100)
    _, drops = rig.admit(priority=HIGH, cost=350)
    assert [r for _, r in drops] == ["shed_priority"] * 4
    assert rig.queues.nbytes == 950


def test_an_item_larger_than_the_byte_bound_is_refused_with_its_reason() -> None:
    rig = Rig("priority_fair", max_bytes=1000)
    big, drops = rig.admit(cost=5000)
    assert drops == [(big, "item_too_large")]
    assert len(rig.queues) == 0


def test_spans_of_a_shed_trace_are_dropped_while_under_pressure() -> None:
    rig = Rig("priority_fair", max_count=10)
    victim_trace = 777
    rig.admit(priority=LOW, tenant="a", trace_id=victim_trace)
    for _ in range(9):
        rig.admit(priority=LOW, tenant="a")
    _, drops = rig.admit(priority=LOW, tenant="a")  # evicts tenant a's oldest: the victim trace's span
    assert [t.trace_id for t, _ in drops] == [victim_trace]
    sibling, drops = rig.admit(priority=NORMAL, tenant="b", trace_id=victim_trace)
    assert drops == [(sibling, "shed_trace")]
    high_sibling, drops = rig.admit(priority=HIGH, tenant="b", trace_id=victim_trace)
    assert all(t is not high_sibling for t, _ in drops)  # HIGH is kept whatever its trace


def test_shed_trace_rule_does_not_apply_without_pressure() -> None:
    rig = Rig("priority_fair", max_count=10)
    for _ in range(10):
        rig.admit(priority=LOW, tenant="a")
    rig.admit(priority=LOW, tenant="a", trace_id=5)  # shed
    rig.drain()
    _, drops = rig.admit(priority=LOW, tenant="a", trace_id=5)
    assert drops == []


def test_trace_memory_is_bounded() -> None:
    rig = Rig("priority_fair", max_count=1)
    rig.admit(priority=HIGH)
    for i in range(20_000):
        rig.admit(priority=LOW, trace_id=i + 1)
    assert len(rig.admission._shed_traces) <= 16384


@pytest.mark.parametrize("tenants", [1, 10, 1000])
def test_heaviest_tenant_lookup_follows_usage_as_it_moves(tenants: int) -> None:
    rig = Rig("fifo", max_count=tenants * 3 + 40)
    for _ in range(20):
        rig.admit(tenant="early")
    for i in range(tenants * 3):
        rig.admit(tenant=f"t{i % tenants}")
    for _ in range(20):
        rig.admit(tenant="hog")
    _, drops = rig.admit(tenant="t0")  # early and hog tie at 20: either may go
    assert drops[0][0].tenant in ("early", "hog")
    rig.drain(20)  # fifo serves "early" first: now hog alone is heaviest
    for _ in range(25):
        rig.admit(tenant="hog")
    _, drops = rig.admit(tenant="t0")
    assert [(t.tenant, r) for t, r in drops] == [("hog", "shed_fair_share")]


def test_invalid_bounds_are_rejected() -> None:
    from otel_sched.scheduling._admission import Admission

    with pytest.raises(ValueError, match="count=0"):
        Admission(0, 10, lambda t: 1.0)


def _runs_of(tasks: list[Task]) -> list[list[Task]]:
    runs: list[list[Task]] = []
    for task in tasks:
        if runs and (runs[-1][0].priority, runs[-1][0].tenant) == (task.priority, task.tenant):
            runs[-1].append(task)
        else:
            runs.append([task])
    return runs


def _state(rig: Rig) -> tuple[object, ...]:
    q = rig.queues
    return (
        sorted((sq.key, [t.seq for t in sq.tasks], sq.nbytes) for sq in q),
        q.count,
        q.nbytes,
        q.class_count,
        q.class_bytes,
        q.usage,
        q.tenant_count,
        [t.seq for t in rig.drain()],  # what the policy serves, in order: activation included
    )


_arrivals = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["a", "a", "b", "c"]), st.integers(1, 400)),
    max_size=60,
)


@pytest.mark.parametrize("policy", ["fifo", "priority", "fair", "predictive", "deadline", "priority_fair"])
@settings(max_examples=60, deadline=None)
@given(queued=_arrivals, chunks=st.lists(_arrivals, min_size=1, max_size=4), max_count=st.integers(1, 120))
def test_admitting_runs_equals_admitting_task_by_task(
    policy: str, queued: list[tuple[int, str, int]], chunks: list[list[tuple[int, str, int]]], max_count: int
) -> None:
    # The scheduler admits each intake chunk as runs of one class and tenant; whether a run goes in
    # at once (below half full) or task by task, queues, drops and service order must not change.
    by_runs, by_task = (
        Rig(policy, max_count=max_count, max_bytes=20_000),
        Rig(policy, max_count=max_count, max_bytes=20_000),
    )
    for rig in (by_runs, by_task):
        for priority, tenant, cost in queued:
            rig.admit(priority=priority, tenant=tenant, cost=cost)
    for chunk in chunks:
        runs_tasks = [by_runs.task(priority=p, tenant=t, cost=c) for p, t, c in chunk]
        task_tasks = [by_task.task(priority=p, tenant=t, cost=c) for p, t, c in chunk]
        got = by_runs.admission.admit_runs(_runs_of(runs_tasks), by_runs.queues) if runs_tasks else []
        want = [d for task in task_tasks for d in by_task.admission.admit(task, by_task.queues)]
        assert [(t.seq, reason) for t, reason in got] == [(t.seq, reason) for t, reason in want]
    assert _state(by_runs) == _state(by_task)


def test_runs_are_admitted_in_order_and_accounted() -> None:
    rig = Rig("fifo", max_count=100)
    tasks = [rig.task(tenant="a") for _ in range(10)] + [rig.task(tenant="b") for _ in range(5)]
    tasks += [rig.task(tenant="a", priority=HIGH)]
    assert rig.admission.admit_runs(_runs_of(tasks), rig.queues) == []
    assert rig.queues.count == 16 and rig.queues.usage[NORMAL] == {"a": 1000, "b": 500}
    assert rig.queues.usage[HIGH] == {"a": 100}
    assert rig.drain() == tasks

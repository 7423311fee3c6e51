"""Batch former: count, bytes, delay and oversized items, in simulated time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_sched.scheduling._batching import BatchFormer

from ._helpers import Rig


def test_not_due_while_empty_or_before_the_delay() -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=10, delay=1.0)
    assert not former.due(rig.queues, 0.0)
    rig.push()
    former.note_arrival(0.0)
    assert not former.due(rig.queues, 0.5)
    assert former.next_due(rig.queues) == 1.0
    assert former.due(rig.queues, 1.0)


def test_due_as_soon_as_a_full_batch_waits() -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=3, delay=100.0)
    former.note_arrival(0.0)
    for _ in range(3):
        rig.push()
    assert former.due(rig.queues, 0.0)
    assert len(former.form(rig.queues, rig.policy, 0.0)) == 3


def test_due_when_the_bytes_of_a_batch_wait() -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=100, max_bytes=1000, delay=100.0)
    former.note_arrival(0.0)
    for _ in range(4):
        rig.push(cost=250)
    assert former.due(rig.queues, 0.0)


def test_flush_makes_any_batch_due() -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=100, delay=100.0)
    rig.push()
    assert former.due(rig.queues, 0.0, flushing=True)


@pytest.mark.parametrize(
    ("costs", "max_items", "max_bytes", "expected_sizes"),
    [
        ([100] * 25, 10, 10_000, [10, 10, 5]),
        ([400] * 5, 10, 1000, [2, 2, 1]),  # by bytes
        ([100, 5000, 100, 100], 10, 1000, [1, 1, 2]),  # the oversized item goes alone
        ([5000], 10, 1000, [1]),
    ],
)
def test_form_respects_count_and_bytes_and_isolates_oversized_items(
    costs: list[int], max_items: int, max_bytes: int, expected_sizes: list[int]
) -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=max_items, max_bytes=max_bytes)
    for cost in costs:
        rig.push(cost=cost)
    sizes = []
    while len(rig.queues):
        batch = former.form(rig.queues, rig.policy, 0.0)
        assert sum(t.cost for t in batch) <= max_bytes or len(batch) == 1
        sizes.append(len(batch))
    assert sizes == expected_sizes


def test_leftovers_open_a_new_delay_window() -> None:
    rig = Rig("fifo")
    former = rig.former(max_items=2, delay=1.0)
    former.note_arrival(0.0)
    for _ in range(3):
        rig.push()
    former.form(rig.queues, rig.policy, 5.0)
    assert former.next_due(rig.queues) == 6.0
    former.form(rig.queues, rig.policy, 6.0)
    assert former.next_due(rig.queues) is None


def test_invalid_limits_name_the_values() -> None:
    with pytest.raises(ValueError, match="max_items=0"):
        BatchFormer(0, 10, 1.0)


# -- runs: one decision per run must give the per-task order exactly ------------------------------------

_POLICIES = ["fifo", "priority", "fair", "predictive", "deadline", "priority_fair"]
_steps = st.lists(
    st.tuples(
        st.sampled_from(["push"] * 6 + ["form", "evict"]),
        st.integers(0, 2),  # priority class
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(1, 3000),  # cost
        st.sampled_from([0.0, 0.0, 0.05, 0.7]),  # time step
    ),
    max_size=250,
)


def _form_one_by_one(rig: Rig, max_items: int, max_bytes: int) -> list[int]:
    """The reference: one policy decision per task (the former before runs)."""
    batch: list[int] = []
    nbytes = 0
    while len(batch) < max_items:
        sq = rig.policy.select(rig.now)
        if sq is None:
            break
        cost = sq.tasks[0].cost
        if batch and nbytes + cost > max_bytes:
            break
        task = rig.queues.pop_head(sq)
        rig.policy.served(sq, task, rig.now)
        batch.append(task.seq)
        nbytes += cost
        if nbytes >= max_bytes:
            break
    return batch


@pytest.mark.parametrize("policy", _POLICIES)
@settings(max_examples=80, deadline=None)
@given(steps=_steps, max_items=st.integers(1, 40), max_bytes=st.integers(500, 20_000))
def test_runs_serve_exactly_the_per_task_order(
    policy: str, steps: list[tuple[str, int, str, int, float]], max_items: int, max_bytes: int
) -> None:
    def rig() -> Rig:
        return Rig(policy, weights={"b": 3.0}, quantum=1500, aging=0.5, predict=lambda c: c * 1e-6)

    by_runs, by_task = rig(), rig()
    former = by_runs.former(max_items, max_bytes)
    drain = [("form", 0, "a", 1, 0.0)] + [("form", 0, "a", 1, 1.0)] * 60  # aging lets every class out
    for op, priority, tenant, cost, dt in [*steps, *drain]:
        for r in (by_runs, by_task):
            r.now += dt
            if op == "push":
                r.push(priority=priority, tenant=tenant, cost=cost)
            elif op == "evict":
                sq = r.queues.newest_of(priority, tenant)
                if sq is not None:
                    r.queues.pop_tail(sq)
        if op == "form":
            got = former.form(by_runs.queues, by_runs.policy, by_runs.now)
            assert [t.seq for t in got] == _form_one_by_one(by_task, max_items, max_bytes)
            assert sum(n for _, _, n, _ in former.runs) == len(got)
            assert sum(b for _, _, _, b in former.runs) == sum(t.cost for t in got)
    assert len(by_runs.queues) == len(by_task.queues) == 0
    assert by_runs.queues.nbytes == 0 and all(not usage for usage in by_runs.queues.usage)


@pytest.mark.parametrize("policy", ["fair", "priority_fair"])
def test_a_run_stops_where_the_tenants_deficit_runs_out(policy: str) -> None:
    # Quantum 1,500 bytes, 1,000-byte items: a backlogged tenant gets one or two items a turn.
    rig, reference = Rig(policy, quantum=1500), Rig(policy, quantum=1500)
    for r in (rig, reference):
        for tenant in "ab":
            for _ in range(5):
                r.push(tenant=tenant, cost=1000)
    batch = rig.former(40, 10**6).form(rig.queues, rig.policy, 0.0)
    assert [t.tenant for t in batch] == ["a", "b", "a", "a", "b", "b", "a", "b", "a", "b"]
    assert [t.seq for t in batch] == _form_one_by_one(reference, 40, 10**6)

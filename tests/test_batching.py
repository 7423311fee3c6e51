"""Batch former: count, bytes, delay and oversized items, in simulated time."""

from __future__ import annotations

import pytest

from otel_sched._batching import BatchFormer

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

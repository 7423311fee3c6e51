"""Endpoint routing: load by measured latency, circuits with backoff and probes."""

from __future__ import annotations

import pytest

from otel_sched.runtime._routing import Router


def test_prefers_the_faster_endpoint_and_spreads_by_in_flight() -> None:
    router = Router(["a", "b"])
    router.record(0, 0.0, True, 0.1)
    router.record(1, 0.0, True, 0.3)
    picks = []
    for _ in range(8):
        i = router.pick(0.0)
        assert i is not None
        router.started(i)
        picks.append(i)
    # a is 3x faster: with in-flight counted, it takes about 3 of every 4 batches
    assert picks.count(0) == 6 and picks.count(1) == 2


def test_a_failing_endpoint_is_taken_out_then_probed_back_in() -> None:
    router = Router(["a", "b"], min_backoff=1.0)
    router.record(0, 10.0, False, 0.1)
    assert router.pick(10.5) == 1
    assert router.pick(11.0) == 0 or router.endpoints[0].healthy(11.0)
    router.started(0)  # the probe
    assert not router.endpoints[0].healthy(11.0)  # one probe at a time
    router.finished(0)
    router.record(0, 11.2, True, 0.1)
    assert router.endpoints[0].failures == 0


def test_backoff_grows_up_to_the_cap() -> None:
    router = Router(["a"], min_backoff=1.0, max_backoff=4.0, factor=2.0)
    now = 0.0
    gaps = []
    for _ in range(5):
        router.record(0, now, False, 0.1)
        gaps.append(router.endpoints[0].open_until - now)
        now = router.endpoints[0].open_until
    assert gaps == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert router.next_reopen() == now


def test_all_down_and_exclusions() -> None:
    router = Router(["a", "b"])
    assert router.pick(0.0, frozenset({0})) == 1
    assert router.pick(0.0, frozenset({0, 1})) is None
    router.record(0, 0.0, False, 0.1)
    assert not router.all_down(0.0)
    router.record(1, 0.0, False, 0.1)
    assert router.all_down(0.0) and router.pick(0.25) is None


def test_needs_an_endpoint() -> None:
    with pytest.raises(ValueError):
        Router([])

"""Adaptive concurrency (AIMD) and execution modes: scenario tables in simulated time."""

from __future__ import annotations

import pytest

from otel_sched.runtime._concurrency import AIMDController, Mode, ModeMachine, Signal


def drive(controller: AIMDController, rounds: list[tuple[float, Signal]], rtt_gap: float = 0.01) -> list[int]:
    """Each round: fill the limit, then every export completes with the given latency and signal."""
    now = 0.0
    limits = []
    for latency, signal in rounds:
        limit = controller.limit
        for _ in range(limit):
            controller.dispatched(now)
        now += latency
        for _ in range(limit):
            controller.observe(now, latency, signal)
        now += rtt_gap
        limits.append(controller.limit)
    return limits


OK, ERR, THROTTLED, TIMEOUT = Signal.OK, Signal.ERROR, Signal.THROTTLED, Signal.TIMEOUT


@pytest.mark.parametrize(
    ("name", "rounds", "expected"),
    [
        ("steady latency ramps up by one per window", [(0.2, OK)] * 5, [2, 3, 4, 5, 6]),
        ("ramp stops at the maximum", [(0.2, OK)] * 12, [2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8]),
        ("an error halves the limit", [(0.2, OK)] * 5 + [(0.2, ERR)], [2, 3, 4, 5, 6, 3]),
        ("throttling halves it too", [(0.2, OK)] * 3 + [(0.2, THROTTLED)], [2, 3, 4, 2]),
        ("a timeout cuts it", [(0.2, OK)] * 3 + [(5.0, TIMEOUT)], [2, 3, 4, 2]),
        ("never below one", [(0.2, ERR)] * 4, [1, 1, 1, 1]),
        (
            "latency rising far above the baseline cuts by 10%",
            [(0.2, OK)] * 7 + [(1.0, OK)],
            [2, 3, 4, 5, 6, 7, 8, 7],
        ),
        (
            "recovers additively after a cut",
            [(0.2, OK)] * 3 + [(0.2, ERR)] + [(0.2, OK)] * 2,
            [2, 3, 4, 2, 3, 4],
        ),
    ],
)
def test_aimd_scenarios(name: str, rounds: list[tuple[float, Signal]], expected: list[int]) -> None:
    assert drive(AIMDController(8), rounds) == expected, name


def test_no_increase_when_the_limit_is_not_reached() -> None:
    controller = AIMDController(8)
    now = 0.0
    for _ in range(10):
        now += 0.3
        controller.observe(now, 0.2, OK)  # completions without ever being at the limit
    assert controller.limit == 1


def test_retry_after_pauses_dispatching() -> None:
    controller = AIMDController(4, initial_limit=4)
    controller.dispatched(0.0)
    controller.observe(0.1, 0.1, THROTTLED, retry_after=2.0)
    assert not controller.may_dispatch(1.0, 0)
    assert controller.may_dispatch(2.2, 0)


def test_fixed_concurrency_when_not_adaptive() -> None:
    controller = AIMDController(4, adaptive=False)
    assert drive(controller, [(0.2, OK), (0.2, ERR), (2.0, OK), (0.2, THROTTLED)]) == [4, 4, 4, 4]
    assert controller.may_dispatch(0.0, 3) and not controller.may_dispatch(0.0, 4)


def test_invalid_maximum() -> None:
    with pytest.raises(ValueError, match="max_limit"):
        AIMDController(0)


# -- modes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "modes"),
    [
        # (ok, all_down) per result -> mode after it
        ([(False, False)], [Mode.NORMAL]),  # one endpoint of several failing: still normal
        ([(False, True)], [Mode.DEGRADED]),
        ([(False, True), (True, False)], [Mode.DEGRADED, Mode.RECOVERING]),
        (
            [(False, True), (True, False), (True, False), (True, False), (True, False), (True, False)],
            [Mode.DEGRADED, Mode.RECOVERING, Mode.RECOVERING, Mode.RECOVERING, Mode.RECOVERING, Mode.NORMAL],
        ),
        ([(False, True), (True, False), (False, True)], [Mode.DEGRADED, Mode.RECOVERING, Mode.DEGRADED]),
    ],
)
def test_mode_transitions(events: list[tuple[bool, bool]], modes: list[Mode]) -> None:
    machine = ModeMachine(recovery_successes=5)
    seen = []
    for i, (ok, all_down) in enumerate(events):
        machine.on_result(float(i), ok, all_down)
        seen.append(machine.mode)
    assert seen == modes


def test_degraded_mode_sends_one_probe_at_a_time_with_growing_backoff() -> None:
    machine = ModeMachine(min_backoff=0.5, max_backoff=4.0, backoff_factor=2.0)
    machine.on_result(0.0, False, True)
    assert not machine.may_dispatch(0.2, 0)
    assert machine.may_dispatch(0.5, 0)
    assert not machine.may_dispatch(0.5, 1)  # a probe is already out
    probes = []
    now = 0.5
    for _ in range(5):
        machine.on_result(now, False, True)
        probes.append(machine.next_probe - now)
        now = machine.next_probe
    assert probes == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert machine.on_result(now, True, False) is Mode.RECOVERING
    assert machine.may_dispatch(now, 7)


def test_a_collector_that_serves_one_request_at_a_time_keeps_the_limit_low() -> None:
    # Latency grows with our own concurrency: more in flight only queues at the collector.
    controller = AIMDController(16)
    limits = []
    for _ in range(60):
        limits.extend(drive(controller, [(0.1 * controller.limit, OK)]))
    assert max(limits[-20:]) <= 2


def test_a_collector_with_room_for_concurrency_gets_all_lanes() -> None:
    controller = AIMDController(16)
    drive(controller, [(0.1, OK)] * 30)
    assert controller.limit == 16

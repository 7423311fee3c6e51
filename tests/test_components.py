"""The pipeline's components, each on its own: no scheduler thread, no lanes, no exporter."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched._config import resolve_config
from otel_sched.durability._bridge import SpoolBridge
from otel_sched.otlp._encoding import encode_span, span_envelopes
from otel_sched.runtime._dispatch import completion_sink
from otel_sched.runtime._intake import Intake, _Bell, _error_span
from otel_sched.runtime._ledger import Ledger
from otel_sched.runtime._metrics import SelfMetrics, Stats
from otel_sched.runtime._workers import Outcome
from otel_sched.scheduling._task import Signal, Task


def _spans(n: int, error: bool = False, size: int = 0) -> list[Any]:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("components")
    spans = []
    for i in range(n):
        span = tracer.start_span(f"op{i}", attributes={"pad": "x" * size})
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        spans.append(span)
    return spans


def _intake(cap: int = 4) -> tuple[Intake, Stats]:
    intake = Intake(cap, _error_span, max_depth=2)
    stats = Stats(16)
    intake.reset(stats)
    return intake, stats


def _rung(bell: _Bell) -> bool:
    return bell.wait(0)


def test_intake_offer_wakes_a_sleeping_scheduler_only_past_wake_after() -> None:
    intake, _ = _intake(cap=8)
    intake.wake_after = 2
    intake.sleeping = True
    intake.offer("a")
    intake.offer("b")
    assert not _rung(intake.bell)  # below wake_after: the scheduler's own deadline covers them
    intake.offer("c")
    assert _rung(intake.bell) and not intake.sleeping
    intake.offer("d")  # awake: nobody to ring for
    assert not _rung(intake.bell)
    assert list(intake.queue) == ["a", "b", "c", "d"]


def test_a_full_intake_lets_an_error_span_displace_a_normal_one_and_counts_it() -> None:
    intake, stats = _intake(cap=3)
    normal, errors = _spans(3), _spans(2, error=True)
    for span in normal:
        intake.offer(span)
    intake.offer(errors[0])  # displaces the newest normal span
    assert list(intake.queue) == [normal[0], normal[1], errors[0]]
    intake.offer(_spans(1)[0])  # a normal span at a full intake is dropped
    assert stats.app_drop_counts()["intake_full"] == 2
    intake.offer(errors[1])  # newest is urgent: the oldest normal one goes instead
    assert list(intake.queue) == [normal[1], errors[0], errors[1]]
    assert stats.app_drop_counts()["intake_full"] == 3


def test_intake_reset_after_a_fork_starts_empty_with_the_same_cap() -> None:
    intake, _ = _intake(cap=5)
    intake.offer("parent's")
    intake.cap = 3  # as a memory level leaves it
    stats = Stats(16)
    intake.reset(stats)
    assert not intake.queue and intake.base_cap == 3 and intake.stats is stats


class _NoSpool:
    spool = None


def _ledger() -> tuple[Ledger, Stats]:
    stats = Stats(16)
    metrics = SelfMetrics(Signal.TRACES, None, False, 16, lambda: 0, dict, dict, lambda: None)
    return Ledger(stats, metrics, _NoSpool()), stats  # type: ignore[arg-type]


def _task(seq: int = 1, cost: int = 100, encoded: bytes | None = None, envelope: Any = None) -> Task:
    return Task(None, 1, "t", cost, 0, 0.0, float("inf"), seq, encoded=encoded, envelope=envelope)


def test_ledger_counts_drops_by_reason_and_by_sdk_error_type_unless_submitted() -> None:
    ledger, stats = _ledger()
    ledger.drop([(_task(1), "queue_full"), (_task(2), "queue_full")])
    ledger.drop([(_task(3), "export_failed")], submitted=True)
    assert stats.dropped["queue_full"] == 2 and stats.dropped["export_failed"] == 1
    assert sum(stats.sdk_dropped.values()) == 2  # a submitted item was already processed for the SDK


def test_ledger_counts_what_a_failed_step_lost_once() -> None:
    ledger, stats = _ledger()
    ledger.taken = 10
    ledger.count_lost(queued=4, in_flight=2)
    assert stats.dropped["internal_error"] == 4
    ledger.count_lost(queued=4, in_flight=2)  # nothing new was lost: not counted again
    assert stats.dropped["internal_error"] == 4
    ledger.taken = 13
    ledger.count_lost(queued=4, in_flight=3)
    assert stats.dropped["internal_error"] == 6


def _encoded_tasks(n: int) -> list[Task]:
    return [
        _task(i, cost=len(data), encoded=data, envelope=span_envelopes(span))
        for i, span in enumerate(_spans(n, size=600))
        for data in [encode_span(span)]
    ]


def test_spool_bridge_spools_what_may_be_spooled_in_batches_that_fit_one_request(tmp_path: Path) -> None:
    tasks = _encoded_tasks(5)
    limit = 2 * max(t.cost for t in tasks) + 1  # two per spooled batch
    assert limit >= 1024 and 3 * min(t.cost for t in tasks) > limit
    config = resolve_config(Signal.TRACES, spool_dir=str(tmp_path), max_export_batch_bytes=limit)
    stats = Stats(16)
    bridge = SpoolBridge(config, stats, fast=True)
    assert bridge.spool is not None
    unencoded = _task(99)
    rest = bridge.spool_instead([(t, "export_failed") for t in tasks] + [(unencoded, "export_failed")])
    assert rest == [(unencoded, "export_failed")]  # nothing to store without its OTLP bytes
    assert (stats.spooled_items, stats.spooled_batches) == (5, 3)
    assert all(t.encoded is None for t in tasks)  # the spool holds them now, not memory
    assert bridge.replay_due(closing=False, backlogged=False)
    assert not bridge.replay_due(closing=True, backlogged=False)  # shutdown: nothing replayed
    row = bridge.take()
    bridge.finish_replay(row, ok=True)
    assert stats.replayed_batches == 1 and stats.replayed_items == row.items
    bridge.close()
    assert bridge.spool is None and not bridge.pending()


def test_spool_bridge_without_the_fast_path_is_off(tmp_path: Path) -> None:
    config = resolve_config(Signal.TRACES, spool_dir=str(tmp_path))
    bridge = SpoolBridge(config, Stats(16), fast=False)
    assert bridge.spool is None and not bridge.pending()
    assert not bridge.replay_due(closing=False, backlogged=False)


def test_a_lane_completion_is_queued_and_wakes_the_scheduler_unless_it_is_quiet() -> None:
    completions: deque[Any] = deque()
    intake = Intake(100, _error_span, 4)
    intake.reset(Stats(16))
    sink = completion_sink(completions, intake)
    sink("lane", "job", Outcome.SUCCESS, 0.5)  # type: ignore[arg-type]
    assert list(completions) == [("lane", "job", Outcome.SUCCESS, 0.5)]
    assert _rung(intake.bell)
    # Quiet (spans wait for a full express batch): queued for the next wake-up, which a deadline bounds.
    intake.quiet = True
    sink("lane", "job2", Outcome.FAILURE, 0.1)  # type: ignore[arg-type]
    assert len(completions) == 2
    assert not _rung(intake.bell)

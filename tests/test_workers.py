"""Export lanes: concurrency without concurrent export per instance, stealing, async, failover, modes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

from ._exporters import RecordingExporter, wait_until


def _tracer(processor: Any) -> Any:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider.get_tracer("workers")


def _spans(tracer: Any, n: int, prefix: str = "op") -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}{i}"):
            pass


class _Factory:
    """Builds RecordingExporters; each instance remembers whether it ever saw two calls at once."""

    def __init__(self) -> None:
        self.made: list[RecordingExporter] = []
        self.gates: dict[int, threading.Event] = {}

    def __call__(self) -> RecordingExporter:
        exporter = RecordingExporter()
        exporter.gate = self.gates.get(len(self.made))
        self.made.append(exporter)
        return exporter

    @property
    def items(self) -> int:
        return sum(len(e.items) for e in self.made)


def test_lanes_export_concurrently_but_never_twice_at_once_on_one_instance() -> None:
    factory = _Factory()
    gate = threading.Event()
    first = RecordingExporter()
    first.gate = gate
    for k in range(1, 4):  # made[0] is the probe the factory is checked with at construction
        factory.gates[k] = gate
    processor = ScheduledSpanProcessor(
        first,
        exporter_factory=factory,
        max_concurrent_exports=4,
        adaptive_concurrency=False,
        max_export_batch_size=10,
        schedule_delay_millis=10,
    )
    tracer = _tracer(processor)
    _spans(tracer, 100)
    probe, *lanes = factory.made
    assert probe.shutdown_calls == 1 and probe.calls == 0
    exporters = [first, *lanes]
    assert len(exporters) == 4
    assert wait_until(lambda: sum(e.concurrent for e in exporters) == 4)  # four exports in flight at once
    gate.set()
    assert processor.force_flush(10_000)
    assert sum(len(e.items) for e in exporters) == 100
    assert all(e.max_concurrent <= 1 for e in exporters)
    processor.shutdown()
    assert all(e.shutdown_calls == 1 for e in exporters)


def test_stock_otlp_exporter_is_cloned_into_concurrent_lanes(receiver: OTLPReceiver) -> None:
    receiver.set_faults(latency_s=0.3)
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url),
        max_export_batch_size=20,
        schedule_delay_millis=10,
        max_concurrent_exports=4,
        adaptive_concurrency=False,
    )
    tracer = _tracer(processor)
    _spans(tracer, 200)
    assert processor.force_flush(20_000)
    assert receiver.span_count == 200
    assert receiver.max_in_flight >= 2
    assert processor.stats()["concurrency"]["lanes"] == 4
    processor.shutdown()


class _StuckAfterFirst(RecordingExporter):
    """Fast for one export (so it measures as the quickest endpoint), then stuck on its gate."""

    def export(self, batch: Sequence[Any]) -> Any:
        if self.calls == 0:
            with self._lock:
                self.calls += 1
                self.items.extend(batch)
            return SpanExportResult.SUCCESS
        return super().export(batch)


class _Slow(RecordingExporter):
    def export(self, batch: Sequence[Any]) -> Any:
        time.sleep(0.05)  # a slower collector round trip
        return super().export(batch)


def test_an_idle_lane_steals_work_queued_behind_a_stuck_endpoint() -> None:
    gate = threading.Event()
    lanes: dict[str, RecordingExporter] = {}

    def factory(endpoint: str) -> RecordingExporter:
        exporter: RecordingExporter = _StuckAfterFirst() if "quick" in endpoint else _Slow()
        exporter.gate = gate if "quick" in endpoint else None
        lanes[endpoint] = exporter  # the last one built per endpoint is the lane's
        return exporter

    processor = ScheduledSpanProcessor(
        RecordingExporter(),
        exporter_factory=factory,
        endpoints="http://quick:4318,http://steady:4318",
        max_concurrent_exports=2,
        adaptive_concurrency=False,
        max_export_batch_size=5,
        schedule_delay_millis=5,
        export_timeout_millis=60_000,
    )
    gate.clear()  # the construction probe's shutdown opened it
    tracer = _tracer(processor)
    _spans(tracer, 5, prefix="warm")
    assert wait_until(lambda: sum(len(e.items) for e in lanes.values()) == 5)
    _spans(tracer, 60)
    # The router keeps preferring the endpoint that measured quickest, whose lane is now stuck;
    # the steady lane steals what queues there, so only the batch the stuck lane holds waits.
    steady = lanes["http://steady:4318"]
    assert wait_until(lambda: len(steady.items) >= 55)
    assert processor.stats()["concurrency"]["stolen"] >= 1
    gate.set()
    assert processor.force_flush(10_000)
    processor.shutdown()


def test_a_hung_lane_is_timed_out_and_replaced_while_the_others_go_on() -> None:
    gate = threading.Event()
    hanging = RecordingExporter()
    hanging.gate = gate
    factory = _Factory()
    processor = ScheduledSpanProcessor(
        hanging,
        exporter_factory=factory,
        max_concurrent_exports=1,
        max_export_batch_size=5,
        schedule_delay_millis=5,
        export_timeout_millis=200,
        shutdown_timeout_millis=2_000,
    )
    tracer = _tracer(processor)
    _spans(tracer, 5, prefix="lost")
    assert wait_until(lambda: processor.stats()["concurrency"]["replaced"] == 1)
    _spans(tracer, 5, prefix="kept")
    assert processor.force_flush(10_000)
    stats = processor.stats()
    assert stats["dropped"] == {"export_timeout": 5}
    assert [s.name for s in factory.made[-1].items] == [f"kept{i}" for i in range(5)]
    gate.set()
    assert wait_until(lambda: processor.stats()["late_results"] == 1)
    processor.shutdown()


@pytest.mark.parametrize(
    ("factory", "exc", "fragment"),
    [
        (lambda: 1 / 0, ValueError, "raised ZeroDivisionError"),
        (lambda: object(), TypeError, "which is not an exporter"),
        (42, TypeError, "exporter_factory=42 is not callable"),
    ],
)
def test_a_bad_exporter_factory_fails_at_construction(
    factory: Any, exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc, match=fragment):
        ScheduledSpanProcessor(RecordingExporter(), exporter_factory=factory)


@pytest.mark.parametrize(
    ("endpoints", "fragment"),
    [
        ("http://ok:4318,ftp://collector:21", "endpoint #2 'ftp://collector:21'"),
        ("collector:4318", "endpoint #1 'collector:4318'"),
    ],
)
def test_a_misconfigured_endpoint_list_names_the_entry(endpoints: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ScheduledSpanProcessor(RecordingExporter(), endpoints=endpoints)


def test_endpoints_need_a_way_to_build_exporters() -> None:
    with pytest.raises(ValueError, match="exporter_factory"):
        ScheduledSpanProcessor(RecordingExporter(), endpoints="http://a:4318,http://b:4318")


def _pair() -> tuple[OTLPReceiver, OTLPReceiver]:
    return OTLPReceiver().start(), OTLPReceiver().start()


def test_a_failing_endpoint_is_taken_out_and_its_batches_retried_on_the_others() -> None:
    down, up = _pair()
    try:
        down.set_faults(down=True)
        processor = ScheduledSpanProcessor(
            HttpSpanExporter(endpoint=up.traces_url, timeout=1),
            endpoints=[down.http_endpoint, up.http_endpoint],
            max_export_batch_size=10,
            schedule_delay_millis=10,
            max_concurrent_exports=4,
        )
        tracer = _tracer(processor)
        _spans(tracer, 100)
        assert processor.force_flush(20_000)
        assert up.span_count == 100 and down.span_count == 0
        stats = processor.stats()
        assert stats["dropped_total"] == 0
        assert [e["healthy"] for e in stats["endpoints"]] == [False, True]
        assert stats["mode"] == "normal"  # one endpoint out of two: not degraded
        processor.shutdown()
    finally:
        down.stop()
        up.stop()


def test_all_endpoints_down_degrades_then_recovers_without_hammering(receiver: OTLPReceiver) -> None:
    receiver.set_faults(down=True)
    processor = ScheduledSpanProcessor(
        HttpSpanExporter(endpoint=receiver.traces_url, timeout=0.5),
        max_export_batch_size=10,
        schedule_delay_millis=10,
        max_concurrent_exports=4,
    )
    tracer = _tracer(processor)
    _spans(tracer, 30, prefix="during")
    assert wait_until(lambda: processor.stats()["mode"] == "degraded")
    _spans(tracer, 30, prefix="still-during")
    # While degraded at most one probe export is out at a time, however much is queued.
    seen = receiver.request_count
    in_flight: list[int] = []

    def probed_twice() -> bool:
        in_flight.append(processor.stats()["concurrency"]["in_flight"])
        return receiver.request_count >= seen + 2

    assert wait_until(probed_twice, timeout=20)
    assert max(in_flight) <= 1
    assert processor.stats()["queued"] > 0  # kept, not hammered out
    receiver.set_faults(down=False)
    _spans(tracer, 10, prefix="after")
    assert wait_until(lambda: any(s.name == "after9" for s in receiver.spans()), timeout=40)
    assert processor.stats()["mode"] in ("recovering", "normal")
    processor.shutdown()


# -- async exporters -------------------------------------------------------------------------------------


class AsyncExporter:
    def __init__(self, block: float = 0.0, hang: bool = False) -> None:
        self.items: list[Any] = []
        self.loops: set[int] = set()
        self.block = block
        self.hang = hang
        self.closed = False

    async def export(self, batch: Sequence[Any]) -> SpanExportResult:
        self.loops.add(id(asyncio.get_running_loop()))
        if self.block:
            time.sleep(self.block)  # a badly written exporter: blocks the loop
        if self.hang:
            await asyncio.sleep(3600)
        await asyncio.sleep(0.01)
        self.items.extend(batch)
        return SpanExportResult.SUCCESS

    async def shutdown(self) -> None:
        self.closed = True


async def test_async_exporters_run_on_the_pipelines_own_loop() -> None:
    exporter = AsyncExporter()
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=10, schedule_delay_millis=5)
    tracer = _tracer(processor)
    _spans(tracer, 50)
    assert await processor.aforce_flush(10_000)
    assert len(exporter.items) == 50
    assert exporter.loops and id(asyncio.get_running_loop()) not in exporter.loops
    assert processor.stats()["concurrency"]["asynchronous"] is True
    await processor.ashutdown()
    assert exporter.closed


def test_an_async_exporter_that_blocks_the_loop_is_detected() -> None:
    exporter = AsyncExporter(block=0.4)
    processor = ScheduledSpanProcessor(exporter, max_export_batch_size=5, schedule_delay_millis=5)
    tracer = _tracer(processor)
    _spans(tracer, 5)
    assert wait_until(lambda: processor.stats()["async_loop"]["blocked"] >= 1)
    assert processor.stats()["async_loop"]["max_lag_ms"] >= 100
    processor.shutdown()


def test_a_hanging_async_export_is_cancelled_at_its_timeout() -> None:
    exporter = AsyncExporter(hang=True)
    processor = ScheduledSpanProcessor(
        exporter,
        max_export_batch_size=5,
        schedule_delay_millis=5,
        export_timeout_millis=200,
        shutdown_timeout_millis=1_000,
    )
    tracer = _tracer(processor)
    _spans(tracer, 5)
    assert wait_until(lambda: processor.stats()["dropped"].get("export_timeout") == 5)
    assert wait_until(lambda: processor.stats()["late_results"] == 1)  # the cancelled call reported back
    exporter.hang = False
    _spans(tracer, 3, prefix="after")
    assert processor.force_flush(10_000)
    assert [s.name for s in exporter.items] == ["after0", "after1", "after2"]
    processor.shutdown()


def test_the_schedulers_bell_wakes_once_per_ring_and_across_threads() -> None:
    from otel_sched.runtime._intake import _Bell

    bell = _Bell()
    assert bell.wait(0) is False  # not rung
    bell.ring()
    bell.ring()  # rings before a wait coalesce
    assert bell.wait(0) is True
    assert bell.wait(0) is False
    bell.ring()
    bell.clear()  # forgets the ring
    assert bell.wait(0) is False

    woke: list[bool] = []
    waiting = threading.Event()

    def sleeper() -> None:
        waiting.set()
        woke.append(bell.wait(60))

    t = threading.Thread(target=sleeper)
    t.start()
    assert waiting.wait(10)
    bell.ring()  # before or during its wait: either way it ends it
    t.join(10)
    assert woke == [True]


def test_the_intake_wake_threshold_follows_the_collectors_settings() -> None:
    # Raw spans must be freed before a young collection finds them: the scheduler wakes at a
    # twentieth of the young generation's threshold, and rarely when the collector is off.
    import gc

    from otel_sched.runtime._intake import _intake_batch

    saved, enabled = gc.get_threshold(), gc.isenabled()
    try:
        gc.set_threshold(700, *saved[1:])
        assert _intake_batch() == 35
        gc.set_threshold(100_000, *saved[1:])
        assert _intake_batch() == 256
        gc.set_threshold(0, *saved[1:])
        assert _intake_batch() == 256
        gc.set_threshold(700, *saved[1:])
        gc.disable()
        assert _intake_batch() == 256
    finally:
        gc.set_threshold(*saved)
        if enabled:
            gc.enable()

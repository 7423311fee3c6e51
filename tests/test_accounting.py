"""Every item ends in exactly one bucket: the faults that used to lose items or hang, one test each.

The stateful test (test_accounting_stateful.py) checks the balance under random interleavings;
these pin the defects it was written for.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver
from otel_sched.durability._spool import Spool

from ._exporters import RecordingExporter, wait_until


def _provider(processor: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "acct"}), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def _emit(provider: TracerProvider, n: int, prefix: str = "op", size: int = 0) -> None:
    tracer = provider.get_tracer("acct")
    for i in range(n):
        with tracer.start_as_current_span(
            f"{prefix}{i}", attributes={"tenant.id": "acme", "pad": "x" * size}
        ):
            pass


def _spooled_names(directory: Path) -> Counter[str]:
    """Span names in every batch the spool holds (read back as a restarted process would)."""
    spool = Spool(directory, signal_scope="traces")
    names: Counter[str] = Counter()
    try:
        while True:
            rows = spool.take(1 << 30)
            if not rows:
                return names
            for row in rows:
                request = ExportTraceServiceRequest.FromString(row.payload)
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        names.update(span.name for span in ss.spans)
                spool.ack([row.id])
    finally:
        spool.close()


def _assert_settled(stats: dict[str, Any], received: int) -> None:
    balance = stats["balance"]
    assert balance["received"] == received
    assert balance["queued"] == balance["intake"] == balance["in_flight"] == 0, balance
    assert balance["exported"] + balance["dropped"] + balance["spooled"] == received, balance
    assert balance["balanced"] is True


def test_the_batch_in_flight_at_shutdown_is_spooled_not_lost(receiver: OTLPReceiver, tmp_path: Path) -> None:
    # The collector accepts the request and never answers within the shutdown timeout.
    receiver.set_faults(latency_s=30)
    spool = tmp_path / "spool"
    processor = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=receiver.traces_url, timeout=30),
        spool_dir=str(spool),
        max_export_batch_size=20,
        schedule_delay_millis=10,
        max_concurrent_exports=1,
        export_timeout_millis=30_000,
        shutdown_timeout_millis=300,
    )
    provider = _provider(processor)
    _emit(provider, 20, prefix="inflight")
    assert wait_until(lambda: receiver.in_flight >= 1)
    _emit(provider, 30, prefix="queued")
    assert not processor.shutdown()
    stats = processor.stats()
    assert stats["spool"]["spooled_items"] == 50, stats["dropped"]
    _assert_settled(stats, 50)
    names = _spooled_names(spool)
    assert set(names) == {f"inflight{i}" for i in range(20)} | {f"queued{i}" for i in range(30)}
    assert max(names.values()) == 1


def test_the_batch_in_flight_at_shutdown_is_counted_without_a_spool() -> None:
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter, max_export_batch_size=10, export_timeout_millis=30_000, shutdown_timeout_millis=200
    )
    provider = _provider(processor)
    _emit(provider, 10)
    assert exporter.entered.wait(10)
    assert not processor.shutdown()
    stats = processor.stats()
    assert stats["dropped"] == {"shutdown_timeout": 10}
    _assert_settled(stats, 10)
    exporter.gate.set()


def test_a_group_larger_than_one_request_is_spooled_whole_and_once(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    # One (class, tenant) group of ~60 KiB left at shutdown, spooled in requests of at most 4 KiB.
    receiver.set_faults(latency_s=30)
    spool = tmp_path / "spool"
    processor = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=receiver.traces_url, timeout=30),
        spool_dir=str(spool),
        tenant_key="tenant.id",
        max_export_batch_size=5,
        max_export_batch_bytes=4096,
        schedule_delay_millis=10,
        max_concurrent_exports=1,
        export_timeout_millis=30_000,
        shutdown_timeout_millis=300,
    )
    provider = _provider(processor)
    _emit(provider, 5, prefix="first", size=500)
    assert wait_until(lambda: receiver.in_flight >= 1)
    _emit(provider, 100, prefix="big", size=500)
    assert wait_until(lambda: processor.stats()["queued"] == 100)
    processor.shutdown()
    stats = processor.stats()
    assert stats["spool"]["spooled_items"] == 105 and stats["dropped_total"] == 0
    _assert_settled(stats, 105)
    names = _spooled_names(spool)
    assert set(names) == {f"first{i}" for i in range(5)} | {f"big{i}" for i in range(100)}
    assert max(names.values()) == 1


def test_shutdown_with_every_lane_hung_ends_at_about_the_export_timeout() -> None:
    # A user's exporter instance cannot be cloned: its one lane hangs, nothing else can move.
    exporter = RecordingExporter()
    exporter.gate = threading.Event()
    processor = ScheduledSpanProcessor(
        exporter,
        max_export_batch_size=5,
        export_timeout_millis=300,
        shutdown_timeout_millis=600_000,  # far past any test timeout: only "stuck" can end it
    )
    provider = _provider(processor)
    _emit(provider, 5, prefix="hung")
    assert wait_until(lambda: processor.stats()["dropped"].get("export_timeout") == 5)
    _emit(provider, 12, prefix="behind")
    assert not processor.force_flush(600_000)  # returns: nothing can move
    done = threading.Event()
    threading.Thread(target=lambda: (processor.shutdown(), done.set()), daemon=True).start()
    assert done.wait(60), "shutdown waited for its own timeout though every lane is hung"
    stats = processor.stats()
    assert stats["dropped"] == {"export_timeout": 5, "shutdown_timeout": 12}
    _assert_settled(stats, 17)
    exporter.gate.set()


class _Hanging(RecordingExporter):
    def shutdown(self) -> None:  # does not release the shared gate
        self.shutdown_calls += 1


class _Factory:
    """Builds exporters that hang until released: every lane and every replacement hangs."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, endpoint: str | None = None) -> RecordingExporter:
        exporter = _Hanging()
        exporter.gate = self.gate
        return exporter


def test_hung_lane_replacements_are_capped_and_retired_lanes_leave_the_pool() -> None:
    factory = _Factory()
    processor = ScheduledSpanProcessor(
        factory(),
        exporter_factory=factory,
        max_concurrent_exports=2,
        adaptive_concurrency=False,
        max_export_batch_size=1,
        export_timeout_millis=100,
        schedule_delay_millis=1,
    )
    pipeline = processor._pipeline
    provider = _provider(processor)
    _emit(provider, 40)
    # Two lanes hang, are replaced twice (the cap: as many retired lanes as live ones), then wait.
    assert wait_until(lambda: processor.stats()["concurrency"]["hung"] == 2, timeout=30)
    concurrency = processor.stats()["concurrency"]
    assert concurrency["replaced"] == 2 and concurrency["retired"] == 2
    assert concurrency["replace_refused"] >= 2
    assert len(pipeline.pool.lanes) == 4
    factory.gate.set()  # the calls return: retired lanes end and leave the pool
    assert wait_until(
        lambda: len(pipeline.pool.lanes) == 2 and processor.stats()["concurrency"]["retired"] == 0
    )
    assert processor.force_flush(30_000)
    provider.shutdown()
    _assert_settled(processor.stats(), 40)


def test_coordinator_snapshot_survives_pipelines_joining_and_leaving() -> None:
    from otel_sched.process._coordinator import Coordinator, Member

    coord = Coordinator()
    stop = threading.Event()
    errors: list[BaseException] = []

    class Owner:
        pass

    def churn() -> None:
        owners = [Owner() for _ in range(50)]
        while not stop.is_set():
            for owner in owners:
                coord.join(owner, Member("m", 1.0, 0.0, False, 1.0, False, list, None))
            for owner in owners:
                coord.leave(owner)

    def read() -> None:
        try:
            for _ in range(3000):
                coord.snapshot()
        except BaseException as exc:  # noqa: BLE001 - the failure under test
            errors.append(exc)

    writer = threading.Thread(target=churn)
    writer.start()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        read()
    finally:
        sys.setswitchinterval(old)
        stop.set()
        writer.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_coordinator_lock_held_at_fork_does_not_deadlock_the_child() -> None:
    from otel_sched.process import _coordinator
    from otel_sched.runtime import _workers

    coord = _coordinator.coordinator()
    exporter = RecordingExporter()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=1)
    provider = _provider(processor)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with coord._lock, _coordinator._COORDINATOR_LOCK:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holder thread does not exist here
            code = 1
            try:
                signal.alarm(30)  # a deadlocked child dies instead of hanging the suite
                stale = [ident for ident in _workers._THREADS if ident != threading.get_ident()]
                live = {t.ident for t in threading.enumerate()}
                if any(ident not in live for ident in stale):
                    code = 3  # the parent's thread registry leaked into the child
                else:
                    _emit(provider, 10, prefix="child")
                    ok = processor.force_flush(10_000)
                    stats = processor.stats()
                    code = 0 if ok and stats["exported"] == 10 and stats["balance"]["balanced"] else 2
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    provider.shutdown()

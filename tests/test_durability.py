"""Fault injection with the spool on: outages, shedding, 503/429, hangs, kill -9, disk errors, fork.

Every test asserts items sent = items received, or that the difference is counted with a reason;
duplicates only within the documented at-least-once window.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

from ._exporters import RecordingExporter, wait_until

RESOURCE = Resource.create({"service.name": "durable"})


def _provider(processor: Any) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def _emit(
    provider: TracerProvider, n: int, prefix: str = "op", tenant: str = "acme", error_every: int = 0
) -> None:
    tracer = provider.get_tracer("durable")
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}{i}", attributes={"tenant.id": tenant}) as span:
            if error_every and i % error_every == 0:
                span.set_status(Status(StatusCode.ERROR))


def _names(rx: OTLPReceiver) -> Counter[str]:
    return Counter(s.name for s in rx.spans())


def _processor(rx: OTLPReceiver, spool: Path, **options: Any) -> ScheduledSpanProcessor:
    options.setdefault("max_export_batch_size", 50)
    options.setdefault("schedule_delay_millis", 20)
    return ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=rx.traces_url, timeout=1),
        spool_dir=str(spool),
        tenant_key="tenant.id",
        **options,
    )


def test_collector_down_then_back_loses_nothing(receiver: OTLPReceiver, tmp_path: Path) -> None:
    receiver.set_faults(down=True)
    processor = _processor(receiver, tmp_path / "spool", max_queue_size=200)
    provider = _provider(processor)
    _emit(provider, 1000, error_every=10)  # five times the queue: without the spool most would be shed
    assert wait_until(lambda: processor.stats()["mode"] == "degraded")
    assert wait_until(lambda: processor.stats()["spool"]["spooled_items"] > 0)
    receiver.set_faults(down=False)
    assert wait_until(lambda: receiver.span_count >= 1000, timeout=60)
    assert processor.force_flush(30_000)
    names = _names(receiver)
    assert set(names) == {f"op{i}" for i in range(1000)}
    stats = processor.stats()
    assert stats["dropped_total"] == 0
    assert stats["spool"]["replayed_items"] == stats["spool"]["spooled_items"] > 0
    # tenant and priority survive the round trip through the disk
    assert stats["by_tenant"]["acme"]["exported"] == 1000
    assert stats["by_priority"]["high"]["exported"] == 100
    provider.shutdown()


def test_items_the_queue_would_shed_are_spooled_and_delivered_later(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    receiver.set_faults(latency_s=0.2)
    processor = _processor(receiver, tmp_path / "spool", max_queue_size=100, max_concurrent_exports=1)
    provider = _provider(processor)
    _emit(provider, 1500)
    assert wait_until(lambda: processor.stats()["spool"]["spooled_items"] > 0)
    receiver.set_faults(latency_s=0.0)
    assert wait_until(lambda: receiver.span_count >= 1500, timeout=60)
    assert processor.force_flush(30_000)
    assert processor.stats()["dropped_total"] == 0
    assert set(_names(receiver)) == {f"op{i}" for i in range(1500)}
    provider.shutdown()


@pytest.mark.parametrize("status", [503, 429])
def test_throttling_with_retry_after_is_honoured_and_nothing_is_lost(
    receiver: OTLPReceiver, tmp_path: Path, status: int
) -> None:
    receiver.set_faults(failure_rate=1.0, failure_status=status, retry_after_s=1)
    processor = _processor(receiver, tmp_path / "spool")
    provider = _provider(processor)
    _emit(provider, 200)
    assert wait_until(lambda: receiver.refused_request_count >= 2)
    receiver.set_faults(failure_rate=0.0)
    assert wait_until(lambda: receiver.span_count >= 200, timeout=60)
    assert processor.force_flush(30_000)
    assert set(_names(receiver)) == {f"op{i}" for i in range(200)}
    assert processor.stats()["dropped_total"] == 0
    provider.shutdown()


def test_a_hanging_exporter_times_out_into_the_spool(tmp_path: Path, receiver: OTLPReceiver) -> None:
    # A stock exporter that hangs on its first call: the batch it held is spooled, not lost.
    gate = threading.Event()
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=1)
    original = exporter._client.export
    calls = []

    def hang_once(data: bytes) -> Any:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(30)
        return original(data)

    exporter._client.export = hang_once  # type: ignore[method-assign]
    processor = ScheduledSpanProcessor(
        exporter,
        spool_dir=str(tmp_path / "spool"),
        otlp_fast_path=True,
        export_timeout_millis=300,
        max_export_batch_size=20,
        schedule_delay_millis=10,
    )
    provider = _provider(processor)
    _emit(provider, 20)
    assert processor.force_flush(20_000)
    gate.set()
    assert wait_until(lambda: receiver.span_count >= 20, timeout=30)
    provider.shutdown()


def _child_script(endpoint: str, spool: Path, n: int, mode: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from otel_sched import ScheduledSpanProcessor
        p = ScheduledSpanProcessor(
            OTLPSpanExporter(endpoint={endpoint!r}, timeout=1),
            spool_dir={str(spool)!r}, max_export_batch_size=50, schedule_delay_millis=20,
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(p)
        if {mode!r} == "burst":
            tracer = provider.get_tracer("crash")
            for i in range({n}):
                with tracer.start_as_current_span(f"burst{{i}}"):
                    pass
            deadline = time.monotonic() + 30
            while p.stats()["spool"]["spooled_items"] < {n} and time.monotonic() < deadline:
                time.sleep(0.02)
            print(p.stats()["spool"]["spooled_items"], flush=True)
            time.sleep(3600)  # wait to be killed
        else:
            deadline = time.monotonic() + 30
            while p.stats()["spool"]["replayed_items"] < {n} and time.monotonic() < deadline:
                time.sleep(0.02)
            print(p.stats()["spool"]["replayed_items"], flush=True)
            p.shutdown()
        """
    )


def test_kill_9_then_restart_delivers_everything_the_spool_had_committed(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    receiver.set_faults(down=True)
    child = subprocess.Popen(
        [sys.executable, "-c", _child_script(receiver.traces_url, spool, 300, "burst")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        committed = int(child.stdout.readline())  # type: ignore[union-attr]
        assert committed == 300
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    receiver.set_faults(down=False)
    restarted = subprocess.run(
        [sys.executable, "-c", _child_script(receiver.traces_url, spool, committed, "replay")],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    assert int(restarted.stdout.strip()) >= committed
    names = _names(receiver)
    assert set(names) == {f"burst{i}" for i in range(300)}
    # at-least-once: duplicates only for batches the first process had in flight when it died
    assert sum(names.values()) - 300 <= 100


def test_an_unusable_spool_directory_is_reported_once_and_the_pipeline_runs_in_memory(
    receiver: OTLPReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.ERROR, logger="otel_sched.runtime._pipeline"):
        processor = _processor(receiver, blocker / "spool")
    assert "cannot be used" in caplog.text and str(blocker) in caplog.text
    provider = _provider(processor)
    _emit(provider, 10)
    assert processor.force_flush(10_000)
    assert receiver.span_count == 10 and processor.stats()["spool"]["enabled"] is False
    provider.shutdown()


def test_a_write_error_switches_to_memory_loudly_and_counts_the_drops(
    receiver: OTLPReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_sched.durability._spool import Spool

    receiver.set_faults(down=True)
    processor = _processor(receiver, tmp_path / "spool", max_queue_size=100)
    monkeypatch.setattr(Spool, "put", lambda self, *a, **k: _raise_unavailable())
    provider = _provider(processor)
    with caplog.at_level(logging.ERROR, logger="otel_sched.runtime._pipeline"):
        _emit(provider, 300)
        assert wait_until(lambda: processor.stats()["spool"]["enabled"] is False)
    assert caplog.text.count("continues in memory only") == 1
    receiver.set_faults(down=False)
    processor.force_flush(20_000)
    stats = processor.stats()
    assert receiver.span_count + stats["dropped_total"] == 300
    provider.shutdown()


def _raise_unavailable() -> Any:
    from otel_sched.durability._spool_file import SpoolUnavailable

    raise SpoolUnavailable("database or disk is full")


def test_a_second_live_process_on_the_same_spool_runs_in_memory(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first = _processor(receiver, spool)
    script = textwrap.dedent(
        f"""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from otel_sched import ScheduledSpanProcessor
        exporter = OTLPSpanExporter(endpoint={receiver.traces_url!r})
        p = ScheduledSpanProcessor(exporter, spool_dir={str(spool)!r})
        print(p.stats()["spool"]["enabled"])
        p.shutdown()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
    assert "cannot be used" in out.stderr and "in use by another process" in out.stderr
    assert first.stats()["spool"]["enabled"] is True
    first.shutdown()


def test_the_spool_needs_the_fast_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_sched.runtime._pipeline"):
        processor = ScheduledSpanProcessor(RecordingExporter(), spool_dir=str(tmp_path / "spool"))
    assert "needs the fast path" in caplog.text
    assert processor.stats()["spool"]["enabled"] is False
    processor.shutdown()


def test_the_spool_files_are_private(receiver: OTLPReceiver, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    processor = _processor(receiver, spool)
    assert os.stat(spool).st_mode & 0o777 == 0o700
    for path in spool.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    processor.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_under_load_each_process_delivers_its_own(receiver: OTLPReceiver, tmp_path: Path) -> None:
    processor = _processor(receiver, tmp_path / "spool-{pid}")
    provider = _provider(processor)
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            _emit(provider, 1, prefix=f"parent{i}-")
            i += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _emit(provider, 100, prefix="child")
                code = 0 if processor.force_flush(20_000) and processor.stats()["spool"]["enabled"] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        stop.set()
        loader.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert processor.force_flush(20_000)
    assert {f"child{i}" for i in range(100)} <= set(_names(receiver))

    def parent_accounted() -> bool:
        # A batch that failed under load went to the spool (that is where a failed batch waits for
        # its retry) and is replayed once the endpoint answers again: wait for it, then count.
        stats = processor.stats()
        delivered = {n for n in _names(receiver) if n.startswith("parent")}
        return len(delivered) + stats["dropped_total"] == stats["received"]

    assert wait_until(parent_accounted, timeout=30, interval=0.05)
    provider.shutdown()


def test_a_worker_adopts_what_dead_workers_left_in_sibling_directories(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    from otel_sched.durability._spool import Spool
    from otel_sched.otlp._encoding import encode_spans_request

    # A dead worker (pid 999999) left a spooled batch behind.
    exporter = RecordingExporter()
    source = _provider(ScheduledSpanProcessor(exporter))
    _emit(source, 3, prefix="orphan")
    source.force_flush()
    body = encode_spans_request(exporter.items)
    dead = Spool(tmp_path / "999999", signal_scope="traces")
    dead.put("traces", "acme", 1, len(body), time.time(), 3, body)
    dead.close()

    processor = _processor(receiver, tmp_path / "{pid}")
    assert wait_until(lambda: receiver.span_count >= 3)
    assert set(_names(receiver)) == {"orphan0", "orphan1", "orphan2"}
    assert not (tmp_path / "999999" / "spool-traces.db").exists()
    processor.shutdown()
    source.shutdown()


def test_a_batch_that_fails_once_is_on_disk_before_it_is_retried(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    # Retried from memory, a kill -9 between attempts would lose it: it must be spooled first.
    receiver.set_faults(failure_rate=1.0, failure_status=503)
    processor = _processor(receiver, tmp_path / "spool")
    provider = _provider(processor)
    _emit(provider, 20)
    assert wait_until(lambda: receiver.refused_request_count >= 2)  # the first attempt and a retry
    assert processor.stats()["spool"]["spooled_items"] == 20
    receiver.set_faults(failure_rate=0.0)
    assert wait_until(lambda: receiver.span_count >= 20, timeout=60)
    assert processor.force_flush(30_000)
    assert set(_names(receiver)) == {f"op{i}" for i in range(20)}
    assert processor.stats()["dropped_total"] == 0
    provider.shutdown()

"""The SDK's own batch-processor tests, pointed at our processors.

Carried over, rewritten in our words, from opentelemetry-python (SDK 1.45 line, the 1.45.0.dev
tree of the repository):

* ``opentelemetry-sdk/tests/shared_internal/test_batch_processor.py`` (``TestBatchProcessor``);
* ``opentelemetry-sdk/tests/trace/export/test_export.py`` (``TestBatchSpanProcessor``);
* ``opentelemetry-sdk/tests/logs/test_export.py`` (``TestBatchLogRecordProcessor``).

What differs from upstream, and why:

* items go in through the public ``on_end`` / ``on_emit`` (upstream calls the stock classes'
  private ``_batch_processor.emit``), so spans carry a sampled context and a log record comes
  out as the ``ReadableLogRecord`` the stock ``on_emit`` makes of it;
* settings are read from our resolved configuration instead of the stock classes' private
  attributes; upstream's ``time.sleep`` waits are waits on a condition with a deadline, and its
  timing assertions (``< 1 s``) are left out (tests here assert behaviour, not speed);
* the shutdown-interrupts-the-export case uses an export that blocks until the exporter is shut
  down, so its outcome does not depend on how fast the machine is;
* the SDK-named self-metrics are looked up by name under our instrumentation scope
  (``otel_sched``, not ``opentelemetry-sdk``: see docs/migration.md);
* ``TestCommonFuncs`` (the SDK's log DuplicateFilter) tests an SDK helper, not a processor.

Every case runs for the ``fifo`` policy and for the default (``priority_fair``).  The one
intended difference, priority order under a priority policy, is tested as such at the end.
"""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest import mock

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor

from ._exporters import wait_until

POLICIES = ["fifo", None]  # None: the default policy

SCOPE = InstrumentationScope("example", "example")


_IDS = itertools.count(1)


def _span(name: str = "MySpan") -> ReadableSpan:
    # A trace of its own, as a root span from a tracer has: a shed trace drops its later spans too.
    context = SpanContext(next(_IDS), 0x2B, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name, context=context, instrumentation_scope=SCOPE)


def _log(body: str = "") -> ReadWriteLogRecord:
    return ReadWriteLogRecord(log_record=LogRecord(body=body), instrumentation_scope=SCOPE)


class Kind:
    """One signal: its processor class, how an item goes in and how to recognise it coming out."""

    def __init__(self, name: str, cls: Any, make: Callable[[str], Any]) -> None:
        self.name = name
        self.cls = cls
        self.make = make

    def __repr__(self) -> str:
        return self.name

    def build(self, exporter: Any, policy: str | None, **kwargs: Any) -> Any:
        if policy is not None:
            kwargs["policy"] = policy
        return self.cls(exporter, **kwargs)

    def feed(self, processor: Any, item: Any) -> None:
        if self.cls is ScheduledSpanProcessor:
            processor.on_end(item)
        else:
            processor.on_emit(item)

    def same(self, exported: Any, item: Any) -> bool:
        if self.cls is ScheduledSpanProcessor:
            return exported is item
        # The stock on_emit hands the exporter a ReadableLogRecord copy without the context.
        return (
            isinstance(exported, ReadableLogRecord)
            and exported.log_record.body == item.log_record.body
            and exported.instrumentation_scope == item.instrumentation_scope
        )


KINDS = [Kind("logs", ScheduledLogRecordProcessor, _log), Kind("spans", ScheduledSpanProcessor, _span)]


@pytest.fixture(params=KINDS, ids=repr)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=POLICIES, ids=lambda p: p or "default")
def policy(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def _exported(exporter: mock.Mock) -> list[list[Any]]:
    return [list(c.args[0]) for c in exporter.export.call_args_list]


# -- shared_internal/test_batch_processor.py: TestBatchProcessor ---------------------------------------


def test_a_full_batch_is_exported_without_waiting_for_the_delay(kind: Kind, policy: str | None) -> None:
    exporter = mock.Mock()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=15,
        max_export_batch_size=15,
        schedule_delay_millis=30_000,  # never reached: the full batch wakes the worker
        export_timeout_millis=500,
    )
    item = kind.make("x")
    for _ in range(15):
        kind.feed(processor, item)
    assert wait_until(lambda: exporter.export.call_count >= 1)
    processor.shutdown()
    assert exporter.export.call_count == 1
    assert len(_exported(exporter)[0]) == 15


def test_an_item_is_exported_once_the_delay_passes(kind: Kind, policy: str | None) -> None:
    exporter = mock.Mock()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=15,
        max_export_batch_size=15,
        schedule_delay_millis=100,
        export_timeout_millis=500,
    )
    item = kind.make("x")
    kind.feed(processor, item)
    assert wait_until(lambda: exporter.export.call_count >= 1)
    exporter.export.assert_called_once()
    [[exported]] = _exported(exporter)
    assert kind.same(exported, item)
    processor.shutdown()


def test_shutdown_flushes_what_came_before_and_drops_what_comes_after(kind: Kind, policy: str | None) -> None:
    exporter = mock.Mock()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=15,
        max_export_batch_size=15,
        schedule_delay_millis=30_000,
        export_timeout_millis=500,
    )
    item = kind.make("before")
    kind.feed(processor, item)
    processor.shutdown()
    exporter.export.assert_called_once()
    [[exported]] = _exported(exporter)
    assert kind.same(exported, item)

    kind.feed(processor, kind.make("after"))
    exporter.export.assert_called_once()
    assert processor.stats()["dropped"] == {"already_shutdown": 1}


def test_force_flush_exports_everything_queued(kind: Kind, policy: str | None) -> None:
    exporter = mock.Mock()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=15,
        max_export_batch_size=15,
        schedule_delay_millis=30_000,
        export_timeout_millis=500,
    )
    item = kind.make("x")
    for _ in range(10):
        kind.feed(processor, item)
    assert processor.force_flush()
    exporter.export.assert_called_once()
    [batch] = _exported(exporter)
    assert len(batch) == 10 and all(kind.same(e, item) for e in batch)
    processor.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork_the_child_exports_only_its_own_items(kind: Kind, policy: str | None) -> None:
    exporter = mock.Mock()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=200,
        max_export_batch_size=10,
        schedule_delay_millis=30_000,
        export_timeout_millis=500,
    )
    item = kind.make("x")
    for _ in range(9):  # the parent's: exported by the parent only
        kind.feed(processor, item)

    def child(conn: Any) -> None:
        for _ in range(100):
            kind.feed(processor, item)
        processor.force_flush()
        # The 100 in ten full batches of 10, as upstream expects; nothing of the parent's nine.
        sizes = [len(batch) for batch in _exported(exporter)]
        conn.send(sizes == [10] * 10)
        conn.close()

    context = multiprocessing.get_context("fork")
    parent_conn, child_conn = context.Pipe()
    process = context.Process(target=child, args=(child_conn,))
    process.start()
    assert parent_conn.recv() is True
    process.join()
    processor.force_flush()
    assert exporter.export.call_count == 1
    assert len(_exported(exporter)[0]) == 9
    processor.shutdown()


def test_a_shut_down_processor_is_garbage_collected(kind: Kind, policy: str | None) -> None:
    processor = kind.build(mock.Mock(), policy)
    ref = weakref.ref(processor)
    processor.shutdown()
    del processor
    gc.collect()
    assert ref() is None


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs fork and register_at_fork")
def test_a_collected_processor_does_not_break_fork(kind: Kind, policy: str | None) -> None:
    processor = kind.build(mock.Mock(), policy)
    ref = weakref.ref(processor)
    processor.shutdown()
    del processor
    gc.collect()
    assert ref() is None

    # The child's at-fork hooks write an unraisable exception to stderr if they fail: capture it.
    read_fd, write_fd = os.pipe()
    saved_fd = os.dup(sys.stderr.fileno())
    saved_hook = sys.unraisablehook
    try:
        os.dup2(write_fd, sys.stderr.fileno())
        sys.unraisablehook = sys.__unraisablehook__
        pid = os.fork()
        if pid == 0:  # the hooks have run by now
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        sys.unraisablehook = saved_hook
        os.dup2(saved_fd, sys.stderr.fileno())
        os.close(saved_fd)
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        child_stderr = pipe.read().decode("utf-8", "replace")
    assert "Error" not in child_stderr


class _ExportBlocksUntilShutdown:
    """An export that waits until the exporter is shut down, then fails (upstream's
    MockExporterForTesting, without its two-second timer)."""

    def __init__(self) -> None:
        self.calls = 0
        self.interrupted = False
        self._shut = threading.Event()

    def export(self, batch: Any) -> None:
        self.calls += 1
        if self._shut.is_set():
            raise ValueError("Cannot export, already shutdown")
        self._shut.wait()
        self.interrupted = True
        raise ValueError("Did not get to finish !")

    def shutdown(self) -> None:
        self._shut.set()


def test_shutdown_within_its_timeout_interrupts_the_export_in_flight(kind: Kind, policy: str | None) -> None:
    exporter = _ExportBlocksUntilShutdown()
    processor = kind.build(
        exporter,
        policy,
        max_queue_size=200,
        max_export_batch_size=1,
        schedule_delay_millis=30_000,
        shutdown_timeout_millis=300,
    )
    for _ in range(3):
        kind.feed(processor, kind.make("x"))
    assert wait_until(lambda: exporter.calls == 1)
    processor.shutdown()
    assert wait_until(lambda: exporter.interrupted)  # the export in flight ends when the exporter shuts down
    assert exporter.calls == 1  # the two still queued were never handed over
    # Every item is accounted for: the two never handed over and the interrupted batch, which was
    # still in flight when the deadline came.
    stats = processor.stats()
    assert stats["dropped"]["shutdown_timeout"] == 3
    assert stats["balance"]["balanced"]


# -- trace/export/test_export.py: TestBatchSpanProcessor -------------------------------------------------


class _NameExporter:
    """Upstream's MySpanExporter: records span names, refuses batches above a size."""

    def __init__(self, destination: list[str], max_export_batch_size: int | None = None) -> None:
        self.destination = destination
        self.max_export_batch_size = max_export_batch_size

    def export(self, spans: Any) -> SpanExportResult:
        if self.max_export_batch_size is not None and len(spans) > self.max_export_batch_size:
            raise ValueError("Batch is too big")
        self.destination.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_span_exporter_property_is_the_exporter(policy: str | None) -> None:
    exporter = _NameExporter([])
    processor = KINDS[1].build(exporter, policy)
    assert processor.span_exporter is exporter
    processor.shutdown()


def _settings(processor: Any) -> tuple[int, float, int, float]:
    config = processor._pipeline.config
    return (
        config.max_queue_size,
        config.schedule_delay_millis,
        config.max_export_batch_size,
        config.export_timeout_millis,
    )


def test_span_processor_reads_the_bsp_variables(monkeypatch: pytest.MonkeyPatch, policy: str | None) -> None:
    for name, value in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ("OTEL_BSP_SCHEDULE_DELAY", "2"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "4"),
    ]:
        monkeypatch.setenv(name, value)
    processor = KINDS[1].build(_NameExporter([]), policy)
    assert _settings(processor) == (10, 2, 3, 4)
    processor.shutdown()


def test_span_processor_defaults(policy: str | None) -> None:
    processor = KINDS[1].build(_NameExporter([]), policy)
    assert _settings(processor) == (2048, 5000, 512, 30000)
    processor.shutdown()


def test_span_processor_falls_back_on_bad_bsp_variables(
    monkeypatch: pytest.MonkeyPatch, policy: str | None
) -> None:
    for name, value in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "a"),
        ("OTEL_BSP_SCHEDULE_DELAY", " "),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "One"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "@"),
    ]:
        monkeypatch.setenv(name, value)
    processor = KINDS[1].build(_NameExporter([]), policy)
    assert _settings(processor) == (2048, 5000, 512, 30000)
    processor.shutdown()


def test_on_start_receives_the_parent_context(policy: str | None) -> None:
    processor = mock.Mock(wraps=KINDS[1].build(_NameExporter([]), policy))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    context = Context()
    span = provider.get_tracer(__name__).start_span("foo", context=context)
    processor.on_start.assert_called_once_with(span, parent_context=context)
    provider.shutdown()


def test_unsampled_spans_are_not_exported(policy: str | None) -> None:
    names: list[str] = []
    provider = TracerProvider(sampler=sampling.ALWAYS_OFF, shutdown_on_exit=False)
    processor = KINDS[1].build(
        _NameExporter(names, max_export_batch_size=128),
        policy,
        max_queue_size=256,
        max_export_batch_size=64,
        schedule_delay_millis=100,
    )
    provider.add_span_processor(processor)
    with provider.get_tracer(__name__).start_as_current_span("foo"):
        pass
    assert processor.force_flush()
    assert names == []
    processor.shutdown()


_INVALID_ARGUMENTS: list[dict[str, int]] = [
    {"max_queue_size": 0},
    {"max_queue_size": -500},
    {"schedule_delay_millis": 0},
    {"schedule_delay_millis": -500},
    {"max_export_batch_size": 0},
    {"max_export_batch_size": -500},
    {"max_queue_size": 256, "max_export_batch_size": 512},
]


@pytest.mark.parametrize("arguments", _INVALID_ARGUMENTS)
def test_invalid_arguments_raise_value_error_before_the_exporter_is_looked_at(
    kind: Kind, arguments: dict[str, int]
) -> None:
    # Upstream passes None as the exporter: the arguments are checked first.
    with pytest.raises(ValueError, match=r"max_queue_size|schedule_delay_millis|max_export_batch_size"):
        kind.cls(None, **arguments)
    with pytest.raises(ValueError):  # a real exporter changes nothing
        kind.cls(InMemoryLogRecordExporter(), **arguments)


# -- logs/test_export.py: TestBatchLogRecordProcessor ----------------------------------------------------


def test_a_logging_call_reaches_on_emit_once(policy: str | None) -> None:
    processor = mock.Mock(wraps=KINDS[0].build(InMemoryLogRecordExporter(), policy))
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    logger = logging.getLogger("otel_sched.test.emit_call")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.error("error")
    finally:
        logger.removeHandler(handler)
    assert processor.on_emit.call_count == 1
    processor.shutdown()


def test_many_threads_emitting_lose_nothing(policy: str | None) -> None:
    exporter = InMemoryLogRecordExporter()
    processor = KINDS[0].build(
        exporter,
        policy,
        max_queue_size=3000,
        max_export_batch_size=50,
        schedule_delay_millis=30_000,
        export_timeout_millis=500,
    )
    record = _log()

    def emit(n: int) -> None:
        for _ in range(n):
            processor.on_emit(record)

    with ThreadPoolExecutor(max_workers=69) as executor:
        for n in range(1, 70):
            executor.submit(emit, n)
    processor.shutdown()
    assert len(exporter.get_finished_logs()) == sum(range(1, 70))


def test_log_processor_takes_its_arguments(policy: str | None) -> None:
    exporter = InMemoryLogRecordExporter()
    processor = KINDS[0].build(
        exporter,
        policy,
        max_queue_size=1024,
        schedule_delay_millis=2500,
        max_export_batch_size=256,
        export_timeout_millis=15000,
    )
    assert processor.exporter is exporter
    assert _settings(processor) == (1024, 2500, 256, 15000)
    processor.shutdown()


def test_log_processor_reads_the_blrp_variables(monkeypatch: pytest.MonkeyPatch, policy: str | None) -> None:
    for name, value in [
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "1024"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "2500"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "256"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "15000"),
    ]:
        monkeypatch.setenv(name, value)
    processor = KINDS[0].build(InMemoryLogRecordExporter(), policy)
    assert _settings(processor) == (1024, 2500, 256, 15000)
    processor.shutdown()


@pytest.mark.parametrize("explicit_none", [False, True])
def test_log_processor_defaults(policy: str | None, explicit_none: bool) -> None:
    arguments: dict[str, Any] = {}
    if explicit_none:
        arguments = dict.fromkeys(
            ("max_queue_size", "schedule_delay_millis", "max_export_batch_size", "export_timeout_millis")
        )
    processor = KINDS[0].build(InMemoryLogRecordExporter(), policy, **arguments)
    assert _settings(processor) == (2048, 1000, 512, 30000)
    processor.shutdown()


def test_log_processor_falls_back_on_bad_blrp_variables(
    monkeypatch: pytest.MonkeyPatch, policy: str | None
) -> None:
    for name, value in [
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "a"),
        ("OTEL_BLRP_SCHEDULE_DELAY", " "),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "One"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "@"),
    ]:
        monkeypatch.setenv(name, value)
    processor = KINDS[0].build(InMemoryLogRecordExporter(), policy)
    assert _settings(processor) == (2048, 1000, 512, 30000)
    processor.shutdown()


# -- the SDK-named self-metrics (test_metrics / test_metrics_already_shutdown of both files) -----------


def _sdk_metrics(reader: InMemoryMetricReader, noun: str) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name.startswith(f"otel.sdk.processor.{noun}."):
                    assert sm.scope.name == "otel_sched"
                    out[metric.name] = list(metric.data.data_points)
    return out


def _by_error(points: list[Any]) -> dict[str | None, int]:
    return {p.attributes.get("error.type"): p.value for p in points}


@pytest.fixture
def sdk_metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")


@pytest.mark.usefixtures("sdk_metrics_on")
def test_items_after_shutdown_are_counted_as_already_shutdown(kind: Kind, policy: str | None) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = mock.MagicMock()
    exporter.export.return_value = SpanExportResult.SUCCESS  # a Mock answers every name but this one
    processor = kind.build(exporter, policy, meter_provider=meters)
    kind.feed(processor, kind.make("before"))  # drained by shutdown: processed, no error
    processor.shutdown()
    kind.feed(processor, kind.make("after"))  # refused: already_shutdown
    noun = "span" if kind.cls is ScheduledSpanProcessor else "log"
    processed = _sdk_metrics(reader, noun)[f"otel.sdk.processor.{noun}.processed"]
    assert _by_error(processed) == {None: 1, "already_shutdown": 1}
    meters.shutdown()


@pytest.mark.usefixtures("sdk_metrics_on")
def test_processed_queue_size_and_capacity_as_the_sdk_counts_them(kind: Kind, policy: str | None) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    reader._set_meter_provider(NoOpMeterProvider())  # as upstream: collect only what the processor owns
    first_export = threading.Event()
    go = threading.Event()
    calls = 0

    def export(_batch: Any) -> Any:
        nonlocal calls
        first_export.set()
        go.wait()
        calls += 1
        if calls == 3:
            raise BrokenPipeError("Export failed")
        return None  # as good as SUCCESS, for the SDK and for us

    exporter = mock.MagicMock()
    exporter.export.side_effect = export
    processor = kind.build(
        exporter,
        policy,
        meter_provider=meters,
        max_queue_size=1,
        max_export_batch_size=1,
        schedule_delay_millis=1_000_000_000,
    )
    noun = "span" if kind.cls is ScheduledSpanProcessor else "log"
    component = f"batching_{noun}_processor"

    kind.feed(processor, kind.make("foo"))
    assert first_export.wait(10)  # "foo" is with the exporter, which blocks
    kind.feed(processor, kind.make("bar"))  # queued
    kind.feed(processor, kind.make("baz"))  # the queue is full: one of the two is dropped

    metrics = _sdk_metrics(reader, noun)
    assert sorted(metrics) == [
        f"otel.sdk.processor.{noun}.processed",
        f"otel.sdk.processor.{noun}.queue.capacity",
        f"otel.sdk.processor.{noun}.queue.size",
    ]
    processed = metrics[f"otel.sdk.processor.{noun}.processed"]
    assert _by_error(processed) == {None: 1, "queue_full": 1}  # "foo" counted when handed over
    for point in [*processed, *metrics[f"otel.sdk.processor.{noun}.queue.capacity"]]:
        assert point.attributes["otel.component.type"] == component
        assert point.attributes["otel.component.name"].startswith(f"{component}/")
    assert [p.value for p in metrics[f"otel.sdk.processor.{noun}.queue.capacity"]] == [1]
    assert [p.value for p in metrics[f"otel.sdk.processor.{noun}.queue.size"]] == [1]

    go.set()
    assert processor.force_flush()
    kind.feed(processor, kind.make("failed"))  # handed over, then the exporter raises
    processor.force_flush()
    assert wait_until(lambda: calls == 3)

    metrics = _sdk_metrics(reader, noun)
    # Counted when handed to the exporter, whatever the export's outcome.
    assert _by_error(metrics[f"otel.sdk.processor.{noun}.processed"]) == {None: 3, "queue_full": 1}
    assert [p.value for p in metrics[f"otel.sdk.processor.{noun}.queue.size"]] == [0]
    processor.shutdown()
    meters.shutdown()


# -- the intended difference ------------------------------------------------------------------------------


def _error_span(name: str) -> ReadableSpan:
    context = SpanContext(0x2A, 0x2C, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name, context=context, instrumentation_scope=SCOPE, status=Status(StatusCode.ERROR))


@pytest.mark.parametrize(("policy_name", "first"), [("fifo", "n0"), ("priority", "error")])
def test_items_leave_in_emission_order_under_fifo_and_by_priority_under_a_priority_policy(
    policy_name: str, first: str
) -> None:
    exporter = mock.Mock()
    processor = ScheduledSpanProcessor(exporter, schedule_delay_millis=30_000, policy=policy_name)
    for i in range(3):
        processor.on_end(_span(f"n{i}"))
    processor.on_end(_error_span("error"))
    assert processor.force_flush()
    names = [span.name for batch in _exported(exporter) for span in batch]
    assert sorted(names) == ["error", "n0", "n1", "n2"]
    assert names[0] == first
    assert [n for n in names if n != "error"] == ["n0", "n1", "n2"]  # within a class: emission order
    processor.shutdown()

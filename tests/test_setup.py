"""configure(), adopt() and patch_batch_processors() with in-memory exporters and the local receiver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ConcurrentMultiSpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_sched
from otel_sched import (
    ScheduledLogRecordProcessor,
    ScheduledSpanProcessor,
    adopt,
    configure,
    patch_batch_processors,
    unpatch_batch_processors,
)
from otel_sched._adopt import batch_processors_patched
from otel_sched.demo._receiver import OTLPReceiver

from ._exporters import RecordingExporter, wait_until


@pytest.fixture
def unpatched() -> Iterator[None]:
    yield
    unpatch_batch_processors()


def _spans(provider: TracerProvider, names: list[str], **attributes: Any) -> None:
    tracer = provider.get_tracer("test")
    for name in names:
        with tracer.start_as_current_span(name, attributes=attributes):
            pass


def _processors(provider: TracerProvider) -> tuple[Any, ...]:
    return provider._active_span_processor._span_processors  # type: ignore[attr-defined,no-any-return]


def _log_processors(provider: LoggerProvider) -> tuple[Any, ...]:
    return provider._multi_log_record_processor._log_record_processors  # type: ignore[no-any-return]


# -- configure() ------------------------------------------------------------------------------------


def test_configure_with_given_exporters_wires_our_processors_and_a_logging_handler() -> None:
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    setup = configure(
        service_name="unit",
        span_exporter=spans,
        log_exporter=logs,
        set_global=False,
        policy="fifo",
        tenant_key="tenant.id",
    )
    try:
        assert isinstance(setup.span_processor, ScheduledSpanProcessor)
        assert isinstance(setup.log_processor, ScheduledLogRecordProcessor)
        assert setup.tracer_provider is not None and setup.logger_provider is not None
        assert _processors(setup.tracer_provider) == (setup.span_processor,)
        assert setup.logging_handler in logging.getLogger().handlers
        assert not setup.is_global

        _spans(setup.tracer_provider, ["a", "b"], **{"tenant.id": "acme"})
        logger = logging.getLogger("test_setup.configure")
        logger.warning("hello %s", "world")
        assert setup.force_flush(10_000)

        assert [s.name for s in spans.get_finished_spans()] == ["a", "b"]
        assert spans.get_finished_spans()[0].resource.attributes["service.name"] == "unit"
        bodies = [r.log_record.body for r in logs.get_finished_logs()]
        assert "hello world" in bodies
        stats = setup.stats()
        assert stats["traces"]["policy"] == "fifo" and stats["logs"]["policy"] == "fifo"
        assert "acme" in stats["traces"]["by_tenant"]
    finally:
        setup.shutdown()
    assert setup.logging_handler is None
    assert not any(h.__class__.__name__ == "LoggingHandler" for h in logging.getLogger().handlers)


def test_configure_sends_to_the_receiver_over_http_and_grpc(receiver: OTLPReceiver) -> None:
    http = configure(
        service_name="over-http",
        endpoint=receiver.http_endpoint,
        protocol="http/protobuf",
        logs=False,
        set_global=False,
    )
    grpc = configure(
        service_name="over-grpc",
        endpoint=f"http://{receiver.grpc_endpoint}",
        protocol="grpc",
        logs=False,
        set_global=False,
    )
    try:
        assert http.tracer_provider is not None and grpc.tracer_provider is not None
        _spans(http.tracer_provider, ["via-http"])
        _spans(grpc.tracer_provider, ["via-grpc"])
        assert http.force_flush(10_000) and grpc.force_flush(10_000)
        assert receiver.wait_for_spans(2, timeout=10)
    finally:
        http.shutdown()
        grpc.shutdown()
    services = {s.name: (s.resource["service.name"], s.transport) for s in receiver.spans()}
    assert services == {"via-http": ("over-http", "http"), "via-grpc": ("over-grpc", "grpc")}


def test_configure_reads_protocol_and_endpoint_from_the_standard_variables(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    setup = configure(set_global=False, logging_handler=False)
    try:
        assert setup.tracer_provider is not None and setup.logger_provider is not None
        _spans(setup.tracer_provider, ["env-span"])
        setup.logger_provider.get_logger("t").emit(body="env-log")
        assert setup.force_flush(10_000)
        assert receiver.wait_for_spans(1, timeout=10) and receiver.wait_for_logs(1, timeout=10)
    finally:
        setup.shutdown()
    assert receiver.spans()[0].resource["service.name"] == "from-env"
    assert receiver.logs()[0].name == "env-log"


def test_configure_refuses_bad_arguments_before_building_anything() -> None:
    with pytest.raises(ValueError, match="protocol='http/json'"):
        configure(protocol="http/json", set_global=False)
    with pytest.raises(TypeError, match="unknown option"):
        configure(span_exporter=InMemorySpanExporter(), set_global=False, polcy="fifo")
    with pytest.raises(ValueError, match="policy='random'"):
        configure(span_exporter=InMemorySpanExporter(), set_global=False, policy="random")


def test_configure_warns_on_a_bad_protocol_variable_and_uses_grpc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon")
    setup = configure(logs=False, set_global=False)
    try:
        assert setup.span_processor is not None
        assert type(setup.span_processor.span_exporter).__module__.startswith(
            "opentelemetry.exporter.otlp.proto.grpc"
        )
    finally:
        setup.shutdown()
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in caplog.text and "carrier-pigeon" in caplog.text


def test_configure_reports_a_bad_sched_variable_once_per_processor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_POLICY", "round-robin")
    setup = configure(
        span_exporter=InMemorySpanExporter(),
        log_exporter=InMemoryLogRecordExporter(),
        set_global=False,
        logging_handler=False,
    )
    setup.shutdown()
    warnings = [r for r in caplog.records if "OTEL_PYTHON_SCHED_POLICY" in r.getMessage()]
    assert len(warnings) == 2 and all("'round-robin'" in r.getMessage() for r in warnings)
    assert setup.stats()["traces"]["policy"] == "priority_fair"


@pytest.mark.usefixtures("otel_globals")
def test_configure_sets_the_globals_once_and_leaves_an_existing_global_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = configure(span_exporter=InMemorySpanExporter(), log_exporter=InMemoryLogRecordExporter())
    assert first.is_global
    assert trace.get_tracer_provider() is first.tracer_provider
    assert _logs.get_logger_provider() is first.logger_provider

    second = configure(
        span_exporter=InMemorySpanExporter(), log_exporter=InMemoryLogRecordExporter(), logging_handler=False
    )
    assert not second.is_global
    assert trace.get_tracer_provider() is first.tracer_provider
    assert "already set" in caplog.text and "adopt" in caplog.text
    second.shutdown()


async def test_setup_async_flush_and_shutdown() -> None:
    spans = InMemorySpanExporter()
    setup = configure(span_exporter=spans, logs=False, set_global=False)
    assert setup.tracer_provider is not None
    _spans(setup.tracer_provider, ["async"])
    assert await setup.aforce_flush(10_000)
    assert [s.name for s in spans.get_finished_spans()] == ["async"]
    await setup.ashutdown()


# -- adopt() ----------------------------------------------------------------------------------------


class _CustomBatch(BatchSpanProcessor):
    """A vendor's subclass: adopt() must leave it alone."""


def test_adopt_replaces_stock_processors_in_place_with_the_same_exporter_and_settings() -> None:
    provider = TracerProvider()
    exporter = RecordingExporter()
    simple_exporter = InMemorySpanExporter()
    custom_exporter = InMemorySpanExporter()
    stock = BatchSpanProcessor(exporter, max_queue_size=600, schedule_delay_millis=60_000)
    simple = SimpleSpanProcessor(simple_exporter)
    custom = _CustomBatch(custom_exporter)
    for processor in (simple, stock, custom):
        provider.add_span_processor(processor)
    # Queued in the stock processor (its delay is a minute): adopt() must export them, not lose them.
    _spans(provider, ["before-1", "before-2"])

    replaced = adopt(provider, policy="fifo")

    assert len(replaced) == 1
    (r,) = replaced
    assert r.signal == "traces" and r.old is stock and r.drained
    new = r.new
    assert isinstance(new, ScheduledSpanProcessor)
    assert new.span_exporter is exporter
    assert _processors(provider) == (simple, new, custom)
    stats = new.stats()
    assert stats["capacity"]["items"] == 600 and stats["policy"] == "fifo"
    assert [s.name for s in exporter.items] == ["before-1", "before-2"]
    assert exporter.shutdown_calls == 0
    assert not stock._batch_processor._worker_thread.is_alive()

    _spans(provider, ["after"])
    assert provider.force_flush(10_000)
    assert [s.name for s in exporter.items] == ["before-1", "before-2", "after"]
    assert new.stats()["exported"] == 1
    # The replaced processor's shutdown no longer reaches the shared exporter.
    stock.shutdown()
    assert exporter.shutdown_calls == 0
    provider.shutdown()
    assert exporter.shutdown_calls == 1
    assert custom_exporter.get_finished_spans()  # the subclass kept working


def test_adopt_handles_concurrent_and_nested_multi_processors() -> None:
    active = ConcurrentMultiSpanProcessor(2)
    provider = TracerProvider(active_span_processor=active)
    nested = SynchronousMultiSpanProcessor()
    inner_exporter, outer_exporter = RecordingExporter(), RecordingExporter()
    nested.add_span_processor(BatchSpanProcessor(inner_exporter))
    provider.add_span_processor(BatchSpanProcessor(outer_exporter))
    provider.add_span_processor(nested)

    replaced = adopt(provider)

    assert len(replaced) == 2
    assert all(isinstance(p, ScheduledSpanProcessor) for p in active._span_processors if p is not nested)
    assert isinstance(nested._span_processors[0], ScheduledSpanProcessor)
    _spans(provider, ["x"])
    assert provider.force_flush(10_000)
    assert [s.name for s in inner_exporter.items] == ["x"] == [s.name for s in outer_exporter.items]
    provider.shutdown()


def test_adopt_replaces_a_processor_shared_by_two_multi_processors_once() -> None:
    provider = TracerProvider()
    nested = SynchronousMultiSpanProcessor()
    exporter = RecordingExporter()
    shared = BatchSpanProcessor(exporter)
    provider.add_span_processor(shared)
    nested.add_span_processor(shared)
    provider.add_span_processor(nested)

    (replacement,) = adopt(provider)

    assert _processors(provider) == (replacement.new, nested)
    assert nested._span_processors == (replacement.new,)
    provider.shutdown()
    assert exporter.shutdown_calls == 1


def test_adopt_replaces_log_record_processors() -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "logs"}))
    exporter = InMemoryLogRecordExporter()
    stock = BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000)
    provider.add_log_record_processor(stock)
    provider.get_logger("t").emit(body="queued-before")

    replaced = adopt(logger_provider=provider, tenant_key="tenant.id")

    assert [(r.signal, r.old) for r in replaced] == [("logs", stock)]
    new = replaced[0].new
    assert isinstance(new, ScheduledLogRecordProcessor) and new.exporter is exporter
    assert _log_processors(provider) == (new,)
    provider.get_logger("t").emit(body="after", attributes={"tenant.id": "acme"})
    assert provider.force_flush(10_000)
    assert [r.log_record.body for r in exporter.get_finished_logs()] == ["queued-before", "after"]
    assert "acme" in new.stats()["by_tenant"]
    provider.shutdown()


@pytest.mark.usefixtures("otel_globals")
def test_adopt_without_arguments_uses_the_global_providers() -> None:
    assert adopt() == []  # nothing set yet: the API's proxies are left alone
    provider = TracerProvider()
    exporter = RecordingExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(InMemoryLogRecordExporter()))
    _logs.set_logger_provider(logger_provider)

    replaced = adopt()

    assert sorted(r.signal for r in replaced) == ["logs", "traces"]
    assert isinstance(_processors(provider)[0], ScheduledSpanProcessor)
    assert isinstance(_log_processors(logger_provider)[0], ScheduledLogRecordProcessor)
    assert adopt() == []  # idempotent: nothing stock is left


def test_adopt_changes_nothing_when_the_internals_are_unexpected(caplog: pytest.LogCaptureFixture) -> None:
    class VendorProvider:
        """Looks like a provider to its users, but has none of the SDK's internals."""

        def add_span_processor(self, processor: object) -> None:
            pass

    assert adopt(VendorProvider()) == []
    assert "nothing was changed" in caplog.text

    # An SDK provider whose stock processor lacks what adopt() relies on: also left alone.
    provider = TracerProvider()
    exporter = RecordingExporter()
    stock = BatchSpanProcessor(exporter)
    provider.add_span_processor(stock)
    worker = stock._batch_processor._worker_thread
    awaken = stock._batch_processor._worker_awaken
    del stock._batch_processor._worker_awaken
    caplog.clear()
    assert adopt(provider) == []
    assert "nothing was changed" in caplog.text
    assert _processors(provider) == (stock,) and worker.is_alive()
    stock._batch_processor._worker_awaken = awaken
    provider.shutdown()
    assert not worker.is_alive()


def test_adopt_refuses_bad_options_before_changing_anything() -> None:
    provider = TracerProvider()
    stock = BatchSpanProcessor(RecordingExporter())
    provider.add_span_processor(stock)
    with pytest.raises(ValueError, match="policy"):
        adopt(provider, policy="lottery")
    assert _processors(provider) == (stock,)
    provider.shutdown()


# -- patch_batch_processors() -----------------------------------------------------------------------


@pytest.mark.usefixtures("unpatched")
def test_patch_makes_stock_constructors_build_ours_and_unpatch_reverts() -> None:
    # A binding made before patching (as the SDK's configurator module holds one) is patched too.
    from opentelemetry.sdk._configuration import BatchSpanProcessor as EarlyBinding

    exporter = RecordingExporter()
    patch_batch_processors(policy="fair", tenant_key="tenant.id")
    assert batch_processors_patched()

    span_processor = BatchSpanProcessor(exporter, 1000, schedule_delay_millis=50.0)
    assert isinstance(span_processor, ScheduledSpanProcessor)
    assert span_processor.span_exporter is exporter
    stats = span_processor.stats()
    assert stats["capacity"]["items"] == 1000 and stats["policy"] == "fair"
    assert isinstance(EarlyBinding(RecordingExporter()), ScheduledSpanProcessor)

    log_exporter = InMemoryLogRecordExporter()
    log_processor = BatchLogRecordProcessor(log_exporter, max_queue_size=4096)
    assert isinstance(log_processor, ScheduledLogRecordProcessor)
    assert log_processor.exporter is log_exporter

    # Subclasses keep their class; the stock argument checks keep their messages.
    custom = _CustomBatch(RecordingExporter())
    assert type(custom) is _CustomBatch
    with pytest.raises(ValueError, match=r"max_queue_size must be a positive integer\."):
        BatchSpanProcessor(RecordingExporter(), max_queue_size=0)

    provider = TracerProvider()
    provider.add_span_processor(span_processor)
    _spans(provider, ["patched"], **{"tenant.id": "acme"})
    assert provider.force_flush(10_000)
    assert [s.name for s in exporter.items] == ["patched"]

    unpatch_batch_processors()
    assert not batch_processors_patched()
    stock = BatchSpanProcessor(RecordingExporter())
    assert type(stock) is BatchSpanProcessor
    assert type(BatchLogRecordProcessor(InMemoryLogRecordExporter())) is BatchLogRecordProcessor
    assert type(_CustomBatch(RecordingExporter())) is _CustomBatch
    for p in (stock, custom, log_processor):
        p.shutdown()
    provider.shutdown()


@pytest.mark.usefixtures("unpatched")
def test_patch_refuses_bad_options_and_can_be_repatched() -> None:
    with pytest.raises(ValueError, match="policy"):
        patch_batch_processors(policy="lottery")
    assert not batch_processors_patched()
    patch_batch_processors(policy="fifo")
    patch_batch_processors(policy="deadline")
    processor = BatchSpanProcessor(RecordingExporter())
    assert isinstance(processor, ScheduledSpanProcessor)
    assert processor.stats()["policy"] == "deadline"
    processor.shutdown()


def test_public_names() -> None:
    for name in ("configure", "adopt", "patch_batch_processors", "unpatch_batch_processors", "Setup"):
        assert name in otel_sched.__all__
        assert hasattr(otel_sched, name)
    assert wait_until(lambda: True)

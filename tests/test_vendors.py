"""Under the vendor setups people already run: logfire, the community distro, a vendor distro.

* No credential a user's object carries (a token attribute, exporter headers, an endpoint with
  userinfo) appears in a log record or an exception message of ours.
* logfire (the ``vendors`` test extra; skipped where it is not installed) with
  ``send_to_logfire=False`` and a local OTLP endpoint: the documented recipe, ``adopt()`` on its
  proxies and wrappers, ``configure()`` after it, and the patch leaving its own export path intact.
* Two distros installed (ours and ``opentelemetry-distro``): nothing changes unless ours is
  selected; ``OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS=true`` puts our processors under the
  community distro's setup, end to end through ``opentelemetry-instrument``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import _logs, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

import otel_sched
from otel_sched import (
    ScheduledLogRecordProcessor,
    ScheduledSpanProcessor,
    _adopt,
    _distro,
    adopt,
    patch_batch_processors,
    unpatch_batch_processors,
)
from otel_sched.demo._receiver import OTLPReceiver

from ._exporters import RecordingExporter

SECRET = "pylf_v1_us_S3cr3tT0kenDoNotLeak"

needs_logfire = pytest.mark.skipif(
    importlib.util.find_spec("logfire") is None, reason="logfire is not installed (the vendors test extra)"
)
# logfire checks a token against its API in a thread; the receiver standing in for it answers 501.
quiet_token_check = pytest.mark.filterwarnings("ignore:Logfire API returned:UserWarning")
needs_community_distro = pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.distro") is None,
    reason="opentelemetry-distro is not installed (the vendors test extra)",
)


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What adopt() and the patch reported 'once' is per process: each test starts from none."""
    monkeypatch.setattr(_adopt, "_reported", set())
    yield
    unpatch_batch_processors()


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# -- no credential in our messages ------------------------------------------------------------------


@dataclass
class VendorConfig:
    """A vendor's configuration object: its dataclass repr prints the token."""

    token: str = SECRET
    headers: dict[str, str] = field(default_factory=lambda: {"authorization": f"Bearer {SECRET}"})


@dataclass
class NotAnExporter:
    config: VendorConfig = field(default_factory=VendorConfig)


@dataclass
class TokenFactory:
    """An exporter factory holding a token, which fails."""

    token: str = SECRET

    def __call__(self) -> Any:
        raise RuntimeError("cannot build the exporter")


@dataclass
class VendorTracerProvider(trace.TracerProvider):
    """A vendor's proxy provider that is not (and holds no) SDK provider."""

    config: VendorConfig = field(default_factory=VendorConfig)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return trace.NoOpTracer()


def test_no_credential_in_any_message_or_exception(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, otel_globals: None
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    leaky = NotAnExporter()
    userinfo_url = f"http://user:{SECRET}@127.0.0.1:{receiver.http_endpoint.rsplit(':', 1)[1]}"

    # Construction: an object that is not an exporter, a bad endpoint, a factory that raises.
    for build in (
        lambda: ScheduledSpanProcessor(leaky),  # type: ignore[arg-type]
        lambda: ScheduledLogRecordProcessor(leaky),  # type: ignore[arg-type]
        lambda: ScheduledSpanProcessor(RecordingExporter(), endpoints=[f"ftp://user:{SECRET}@host"]),
        lambda: ScheduledSpanProcessor(RecordingExporter(), exporter_factory=TokenFactory()),
    ):
        with pytest.raises((TypeError, ValueError)) as raised:
            build()
        errors.append(str(raised.value))

    # The export path: the stock OTLP exporter with credentials in its URL and headers, sent to
    # the receiver, which also answers some batches with errors (the pipeline's warnings).
    receiver.set_faults(failure_rate=0.5, failure_status=400, partial_rejected=1)
    exporter = OTLPSpanExporter(
        endpoint=f"{userinfo_url}/v1/traces", headers={"authorization": f"Bearer {SECRET}"}
    )
    fanned = ScheduledSpanProcessor(
        RecordingExporter(),
        endpoints=[userinfo_url, receiver.http_endpoint],
        exporter_factory=lambda endpoint: OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        schedule_delay_millis=10,
    )
    direct = ScheduledSpanProcessor(exporter, schedule_delay_millis=10)
    provider = TracerProvider()
    provider.add_span_processor(direct)
    provider.add_span_processor(fanned)
    tracer = provider.get_tracer("secrets")
    for i in range(40):
        with tracer.start_as_current_span(f"span {i}"):
            pass
    provider.force_flush(30_000)
    stats = json.dumps([direct.stats(), fanned.stats()], default=str)
    assert SECRET not in stats
    assert "127.0.0.1" in stats  # the endpoints are named, without their userinfo
    receiver.set_faults(failure_rate=0.0, partial_rejected=0)

    # configure() while a vendor's provider (carrying the token) is the global one.
    trace.set_tracer_provider(VendorTracerProvider())
    setup = otel_sched.configure(
        span_exporter=RecordingExporter(), log_exporter=RecordingExporter(), logging_handler=False
    )
    assert setup.is_global is False
    setup.shutdown()

    # adopt() on objects that are not providers and hold none.
    assert adopt(VendorTracerProvider()) == []
    assert adopt(None, VendorConfig()) == []

    # The patch, when ours refuses what the stock class would take.
    patch_batch_processors()
    stock = BatchSpanProcessor(leaky)  # type: ignore[arg-type]
    assert type(stock) is BatchSpanProcessor
    unpatch_batch_processors()

    provider.shutdown()
    messages = _messages(caplog)
    assert any("VendorTracerProvider" in m for m in messages)  # named by type...
    assert any("NotAnExporter" in m for m in messages + errors)
    leaks = [m for m in messages + errors if SECRET in m]
    assert not leaks  # ...never by what it holds
    assert SECRET not in caplog.text


# -- a vendor's global providers: configure() tells the truth, adopt() finds their processors -----


def test_configure_after_a_vendor_set_the_globals_warns_once_and_reports_it(
    caplog: pytest.LogCaptureFixture, otel_globals: None
) -> None:
    vendor = VendorTracerProvider()
    trace.set_tracer_provider(vendor)
    setup = otel_sched.configure(
        span_exporter=RecordingExporter(), log_exporter=RecordingExporter(), logging_handler=False
    )
    try:
        assert setup.is_global is False
        assert trace.get_tracer_provider() is vendor
        # Logs had no global yet: ours became it.
        assert _logs.get_logger_provider() is setup.logger_provider
        (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "otel_sched.configure()" in warning.getMessage()
        assert "VendorTracerProvider" in warning.getMessage() and "adopt()" in warning.getMessage()
    finally:
        setup.shutdown()


def test_adopt_before_any_setup_says_there_is_nothing_to_adopt(
    caplog: pytest.LogCaptureFixture, otel_globals: None
) -> None:
    assert adopt() == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "no global tracer or logger provider is set yet" in warning


def test_configure_with_no_global_set_reports_is_global(otel_globals: None) -> None:
    setup = otel_sched.configure(
        span_exporter=RecordingExporter(), log_exporter=RecordingExporter(), logging_handler=False
    )
    try:
        assert setup.is_global is True
        assert trace.get_tracer_provider() is setup.tracer_provider
    finally:
        setup.shutdown()


@dataclass
class Wrapper(SpanProcessor):
    """The wrapper shape logfire documents: the wrapped processor in ``processor``."""

    processor: SpanProcessor

    def on_end(self, span: Any) -> None:
        self.processor.on_end(span)

    def shutdown(self) -> None:
        self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis)


def test_adopt_finds_batch_processors_inside_wrappers_and_reports_the_ones_it_cannot_replace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    inner = SynchronousMultiSpanProcessor()
    replaceable_exporter = RecordingExporter()
    inner.add_span_processor(BatchSpanProcessor(replaceable_exporter))  # type: ignore[arg-type]
    held = BatchSpanProcessor(RecordingExporter())  # type: ignore[arg-type]
    provider = TracerProvider()
    provider.add_span_processor(Wrapper(Wrapper(inner)))
    provider.add_span_processor(Wrapper(held))
    try:
        (replacement,) = adopt(provider)
        assert isinstance(replacement.new, ScheduledSpanProcessor)
        assert replacement.new.span_exporter is replaceable_exporter
        assert inner._span_processors == (replacement.new,)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        (warning,) = warnings
        assert "Wrapper.processor = opentelemetry.sdk.trace.export.BatchSpanProcessor" in warning
        assert "additional_span_processors" in warning  # the supported route
        # Said once: a second adopt() has nothing new to say.
        caplog.clear()
        assert adopt(provider) == []
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        provider.shutdown()


# -- logfire ----------------------------------------------------------------------------------------


def _logfire(receiver: OTLPReceiver | None = None, **kwargs: Any) -> Any:
    """A local (non-global) logfire instance; ``receiver`` stands in for the Logfire backend."""
    import logfire

    options: dict[str, Any] = {"console": False, "metrics": False, "local": True, "send_to_logfire": False}
    if receiver is not None:
        kwargs.setdefault("advanced", logfire.AdvancedOptions(base_url=receiver.http_endpoint))
    options.update(kwargs)
    return logfire.configure(**options)


def _tree(processor: Any) -> list[Any]:
    """Every processor in a span processor tree (multi processors and logfire's wrappers)."""
    out = [processor]
    for child in getattr(processor, "_span_processors", ()):
        out += _tree(child)
    for name in ("processor", "deferred_processor"):
        child = vars(processor).get(name) if hasattr(processor, "__dict__") else None
        if isinstance(child, SpanProcessor):
            out += _tree(child)
    return out


def _emit_logs(lf: Any, n: int) -> None:
    logger = lf.config.get_logger_provider().get_logger("vendors-test")
    for i in range(n):
        logger.emit(body=f"log {i}", severity_number=SeverityNumber.ERROR if i == 0 else SeverityNumber.INFO)


@needs_logfire
def test_logfire_recipe_our_processors_as_additional_processors(receiver: OTLPReceiver) -> None:
    """The documented integration: logfire builds nothing stock, ours export everything."""
    import logfire

    span_processor = ScheduledSpanProcessor(OTLPSpanExporter(endpoint=receiver.traces_url))
    log_processor = ScheduledLogRecordProcessor(OTLPLogExporter(endpoint=receiver.logs_url))
    lf = _logfire(
        service_name="shop",
        additional_span_processors=[span_processor],
        advanced=logfire.AdvancedOptions(log_record_processors=[log_processor]),
    )
    try:
        for i in range(20):
            with lf.span("order {i}", i=i):
                pass
        _emit_logs(lf, 5)
        assert lf.force_flush(30_000)
        assert receiver.wait_for_spans(20, timeout=30), receiver.span_count
        assert receiver.wait_for_logs(5, timeout=30), receiver.log_count
        assert {s.resource["service.name"] for s in receiver.spans()} == {"shop"}
        assert span_processor.stats()["exported"] >= 20
        assert log_processor.stats()["exported"] == 5
        tree = _tree(lf.config.get_tracer_provider().provider._active_span_processor)
        assert not [p for p in tree if type(p) is BatchSpanProcessor]
    finally:
        lf.shutdown()


@needs_logfire
def test_adopt_replaces_the_batch_processors_logfire_builds_for_an_otlp_endpoint(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """logfire adds stock batch processors for OTEL_EXPORTER_OTLP_ENDPOINT, inside its wrappers."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    lf = _logfire()
    try:
        replacements = adopt(lf.config.get_tracer_provider(), lf.config.get_logger_provider())
        assert sorted(r.signal for r in replacements) == ["logs", "traces"]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        for i in range(12):
            with lf.span("adopted {i}", i=i):
                pass
        _emit_logs(lf, 3)
        assert lf.force_flush(30_000)
        assert receiver.wait_for_spans(12, timeout=30), receiver.span_count
        assert receiver.wait_for_logs(3, timeout=30), receiver.log_count
        by_signal = {r.signal: r.new.stats() for r in replacements}
        assert by_signal["traces"]["exported"] >= 12
        assert by_signal["logs"]["exported"] == 3
        tree = _tree(lf.config.get_tracer_provider().provider._active_span_processor)
        assert not [p for p in tree if type(p) is BatchSpanProcessor]
    finally:
        lf.shutdown()


@needs_logfire
@quiet_token_check
def test_logfire_with_a_token_adopt_keeps_its_own_export_path_says_so_once_and_leaks_no_token(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lf = _logfire(receiver, send_to_logfire=True, token=SECRET)
    try:
        tracer_provider = lf.config.get_tracer_provider()
        replacements = adopt(tracer_provider, lf.config.get_logger_provider())
        # logfire's own log processor sits in a multi processor: replaced.  Its span processor
        # sits directly in DynamicBatchSpanProcessor, which reads its internals: left, and said.
        assert [r.signal for r in replacements] == ["logs"]
        warnings = [r.getMessage() for r in caplog.records if r.name.startswith("otel_sched")]
        (warning,) = [m for m in warnings if "left" in m]
        assert "DynamicBatchSpanProcessor" in warning and "additional_span_processors" in warning
        assert adopt(tracer_provider) == []
        assert len([m for m in _messages(caplog) if "DynamicBatchSpanProcessor" in m]) == 1
        for i in range(12):
            with lf.span("still exported {i}", i=i):
                pass
        assert lf.force_flush(30_000)
        assert receiver.wait_for_spans(12, timeout=30), receiver.span_count
    finally:
        lf.shutdown()
    assert not [m for m in _messages(caplog) if SECRET in m and m.startswith("otel")]
    assert not [r for r in caplog.records if r.name.startswith("otel_sched") and SECRET in r.getMessage()]


@needs_logfire
@quiet_token_check
def test_the_patch_leaves_logfires_dynamic_batch_processor_and_pending_spans_working(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    from logfire._internal.exporters.dynamic_batch import DynamicBatchSpanProcessor
    from logfire._internal.tracer import PendingSpanProcessor

    patch_batch_processors()
    lf = _logfire(receiver, send_to_logfire=True, token=SECRET)
    try:
        tree = _tree(lf.config.get_tracer_provider().provider._active_span_processor)
        (dynamic, *_) = [p for p in tree if isinstance(p, DynamicBatchSpanProcessor)]
        assert type(dynamic.processor) is BatchSpanProcessor  # what logfire reads stays stock
        assert [p for p in tree if isinstance(p, PendingSpanProcessor)]  # not silently left out
        # logfire's own log processor holds no internals of interest: it became ours.
        assert "ScheduledLogRecordProcessor" in repr(
            [type(p).__name__ for p in _all_log_processors(lf.config.get_logger_provider().provider)]
        )
        for i in range(15):  # the 10th span is where logfire changes the stock processor's delay
            with lf.span("span {i}", i=i):
                pass
        assert lf.force_flush(30_000)
        assert receiver.wait_for_spans(15, timeout=30), receiver.span_count
        assert dynamic.schedule_delay_millis == 500  # logfire's own adjustment took effect
    finally:
        lf.shutdown()
        unpatch_batch_processors()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no logfire internal error
    (said,) = [m for m in _messages(caplog) if "dynamic_batch" in m]
    assert "additional_span_processors" in said


def _all_log_processors(provider: Any) -> list[Any]:
    out: list[Any] = []
    pending = [provider._multi_log_record_processor]
    while pending:
        node = pending.pop()
        out.append(node)
        pending.extend(getattr(node, "_log_record_processors", ()))
        child = vars(node).get("processor") if hasattr(node, "__dict__") else None
        if child is not None:
            pending.append(child)
    return out


@needs_logfire
def test_configure_after_logfire_points_to_adopt_which_finds_its_processors(
    receiver: OTLPReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    otel_globals: None,
) -> None:
    import logfire

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    logfire.configure(console=False, metrics=False, send_to_logfire=False)
    try:
        setup = otel_sched.configure(
            span_exporter=RecordingExporter(), log_exporter=RecordingExporter(), logging_handler=False
        )
        assert setup.is_global is False
        setup.shutdown()
        (warning,) = [r.getMessage() for r in caplog.records if r.name.startswith("otel_sched")]
        assert "logfire" in warning and "adopt()" in warning
        # adopt() with no arguments: the global proxies stand for logfire's SDK providers.
        assert sorted(r.signal for r in adopt()) == ["logs", "traces"]
        with logfire.span("through ours"):
            pass
        assert logfire.force_flush(30_000)
        assert receiver.wait_for_spans(1, timeout=30)
    finally:
        logfire.shutdown()


# -- distros: ours inert unless selected; the patch variable under another distro -------------------


class _EntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self._target = target

    def load(self) -> Any:
        return self._target


class VendorDistro(_distro.BaseDistro):  # type: ignore[misc]
    configured: list[dict[str, Any]] = []
    instrumented: list[str] = []

    def _configure(self, **kwargs: Any) -> None:
        VendorDistro.configured.append(kwargs)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        VendorDistro.instrumented.append(entry_point.name)


class VendorConfigurator:
    configured: list[dict[str, Any]] = []

    def configure(self, **kwargs: Any) -> None:
        VendorConfigurator.configured.append(kwargs)


@pytest.fixture
def vendor_installed(monkeypatch: pytest.MonkeyPatch, otel_globals: None) -> pytest.MonkeyPatch:
    """Ours found first, a vendor's distro and configurator second; no selection variables."""
    groups = {
        "opentelemetry_distro": [
            _EntryPoint("otel_sched", _distro.OtelSchedDistro),
            _EntryPoint("vendor", VendorDistro),
        ],
        "opentelemetry_configurator": [
            _EntryPoint("otel_sched", _distro.OtelSchedConfigurator),
            _EntryPoint("vendor", VendorConfigurator),
        ],
    }
    monkeypatch.setattr(_distro, "entry_points", lambda group: groups[group])
    for name in ("OTEL_PYTHON_DISTRO", "OTEL_PYTHON_CONFIGURATOR", "OTEL_TRACES_EXPORTER"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores what a distro sets
        monkeypatch.delenv(name)
    monkeypatch.setattr(_distro.OtelSchedDistro, "_vendor", None)
    VendorDistro.configured.clear()
    VendorDistro.instrumented.clear()
    VendorConfigurator.configured.clear()
    return monkeypatch


def test_unselected_ours_found_first_runs_the_vendors_distro_and_configurator(
    vendor_installed: pytest.MonkeyPatch,
) -> None:
    ours = _distro.OtelSchedDistro()
    ours.configure()
    ours.load_instrumentor(_EntryPoint("requests", object))
    _distro.OtelSchedConfigurator().configure(auto_instrumentation_version="1.0")
    assert VendorDistro.configured == [{}]
    assert VendorDistro.instrumented == ["requests"]
    assert VendorConfigurator.configured == [{"auto_instrumentation_version": "1.0"}]
    # None of ours happened: no defaults set, no configurator selected, no providers built.
    assert "OTEL_TRACES_EXPORTER" not in os.environ and "OTEL_PYTHON_CONFIGURATOR" not in os.environ
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_selected_ours_runs_ours_even_with_a_vendor_installed(vendor_installed: pytest.MonkeyPatch) -> None:
    vendor_installed.setenv("OTEL_PYTHON_DISTRO", "otel_sched")
    vendor_installed.setenv("OTEL_TRACES_EXPORTER", "console")
    vendor_installed.setenv("OTEL_LOGS_EXPORTER", "none")
    vendor_installed.setenv("OTEL_METRICS_EXPORTER", "none")
    _distro.OtelSchedDistro().configure()
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "otel_sched"
    _distro.OtelSchedConfigurator().configure()
    assert VendorDistro.configured == [] and VendorConfigurator.configured == []
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, ScheduledSpanProcessor)


class _VendorMarker(SimpleSpanProcessor):
    """A processor of the vendor's own (its response propagator, profiler, ...): must stay."""


@pytest.mark.parametrize(("value", "ours"), [("true", True), ("false", False), (None, False)])
def test_post_instrument_hook_adopts_what_a_vendor_built_only_when_asked(
    vendor_installed: pytest.MonkeyPatch, value: str | None, ours: bool
) -> None:
    if value is not None:
        vendor_installed.setenv("OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS", value)
    exporter = RecordingExporter()
    provider = TracerProvider()
    marker = _VendorMarker(RecordingExporter())  # type: ignore[arg-type]
    provider.add_span_processor(marker)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(RecordingExporter()))  # type: ignore[arg-type]
    _logs.set_logger_provider(logger_provider)

    _distro.adopt_after_instrumentation()

    first, second = provider._active_span_processor._span_processors
    assert first is marker
    assert isinstance(second, ScheduledSpanProcessor if ours else BatchSpanProcessor)
    (log_processor,) = logger_provider._multi_log_record_processor._log_record_processors
    assert isinstance(log_processor, ScheduledLogRecordProcessor if ours else BatchLogRecordProcessor)


# -- end to end: the community distro installed next to ours ----------------------------------------


def _community_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    from .test_distro import _env

    env = _env(receiver, **extra)
    del env["OTEL_PYTHON_DISTRO"], env["OTEL_PYTHON_CONFIGURATOR"]  # nothing selected
    return env


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Any]:
    from .test_distro import InstrumentedApp

    started: list[InstrumentedApp] = []

    def start(env: dict[str, str]) -> InstrumentedApp:
        app = InstrumentedApp(tmp_path, env)
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()


def _processor_names(report: dict[str, Any], key: str) -> Sequence[str]:
    return [p["processor"].rsplit(".", 1)[1] for p in report[key]]


@needs_community_distro
def test_two_distros_installed_and_none_selected_the_community_setup_runs_unchanged(
    receiver: OTLPReceiver, start_app: Any
) -> None:
    app = start_app(_community_env(receiver))
    assert [app.get(f"/orders/{i}") for i in range(3)] == [200, 200, 200]
    report = app.finish()
    assert _processor_names(report, "spans") == ["BatchSpanProcessor"]
    assert _processor_names(report, "logs") == ["BatchLogRecordProcessor"]
    assert receiver.wait_for_spans(3, timeout=30), receiver.span_count


@needs_community_distro
def test_patch_variable_under_the_community_distro_puts_our_processors_in_end_to_end(
    receiver: OTLPReceiver, start_app: Any
) -> None:
    app = start_app(
        _community_env(
            receiver,
            OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS="true",
            OTEL_PYTHON_SCHED_TENANT_KEY="tenant.id",
        )
    )
    paths = [f"/orders/{i}?tenant={'acme' if i % 2 else 'globex'}" for i in range(6)] + ["/fail?tenant=acme"]
    assert [app.get(path) for path in paths] == [200] * 6 + [500]
    report = app.finish()
    assert _processor_names(report, "spans") == ["ScheduledSpanProcessor"]
    assert _processor_names(report, "logs") == ["ScheduledLogRecordProcessor"]
    assert receiver.wait_for_spans(7, timeout=30), receiver.span_count
    assert receiver.wait_for_logs(7, timeout=30), receiver.log_count
    assert {s.resource["service.name"] for s in receiver.spans()} == {"checkout"}
    (span_stats,) = report["span_stats"]
    assert {"acme", "globex"} <= set(span_stats["by_tenant"])
    assert span_stats["by_priority"]["high"]["exported"] == 1
    assert span_stats["dropped_total"] == 0


# -- Splunk's distro: its own environment (it pins opentelemetry-api exactly) ----------------------

SPLUNK_APP = """
import json, logging
from opentelemetry import _logs, trace
tracer = trace.get_tracer("app")
for i in range(20):
    with tracer.start_as_current_span(f"span {i}"):
        logging.getLogger("app").warning("log %d", i)
tp, lp = trace.get_tracer_provider(), _logs.get_logger_provider()
report = {
    "spans": [type(p).__name__ for p in tp._active_span_processor._span_processors],
    "logs": [type(p).__name__ for p in lp._multi_log_record_processor._log_record_processors],
}
print("REPORT", json.dumps(report), flush=True)
"""


@pytest.mark.skipif(
    not os.environ.get("OTEL_SCHED_SPLUNK_VENV"),
    reason="set OTEL_SCHED_SPLUNK_VENV to a virtual environment with splunk-opentelemetry and "
    "otel-sched[instrument] installed (Splunk pins an opentelemetry-api other than this one's)",
)
@pytest.mark.parametrize(("value", "processors"), [("true", "Scheduled"), (None, "Batch")])
def test_patch_variable_under_splunks_distro(
    receiver: OTLPReceiver, tmp_path: Path, value: str | None, processors: str
) -> None:
    import subprocess

    venv = Path(os.environ["OTEL_SCHED_SPLUNK_VENV"])
    (tmp_path / "app.py").write_text(SPLUNK_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME="splunked",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
    )
    if value is not None:
        env["OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS"] = value
    done = subprocess.run(
        [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")]
    report = json.loads(line[len("REPORT ") :])
    assert [p.startswith(processors) for p in report["spans"] + report["logs"]] == [True, True]
    assert receiver.wait_for_spans(20, timeout=30), receiver.span_count
    assert receiver.wait_for_logs(20, timeout=30), receiver.log_count
    assert {s.resource["service.name"] for s in receiver.spans()} == {"splunked"}

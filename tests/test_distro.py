"""The ``otel_sched`` distro and configurator, in process and end to end under opentelemetry-instrument.

The end-to-end tests run a WSGI application in a subprocess under ``opentelemetry-instrument``
with real instrumentation (the WSGI middleware, ``logging`` and ``requests`` instrumentors),
pointed at the test's OTLP receiver over HTTP/protobuf.  The application reports which
processors its global providers hold and their ``stats()`` when its stdin closes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._configuration import _initialize_components
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.util._importlib_metadata import entry_points

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor, unpatch_batch_processors
from otel_sched._adopt import batch_processors_patched
from otel_sched._distro import OtelSchedConfigurator, OtelSchedDistro
from otel_sched.demo._receiver import OTLPReceiver

# -- in process: the configurator and the distro ----------------------------------------------------

_SDK_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_PYTHON_CONFIGURATOR",
    "OTEL_PYTHON_DISTRO",
    "OTEL_CONFIG_FILE",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED",
    "OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, otel_globals: None) -> pytest.MonkeyPatch:
    """No inherited OTEL_* settings; globals reset and restored (see conftest.otel_globals).

    Ours selected by name, as documented: another distro may be installed (the vendors extra).
    """
    for name in _SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_PYTHON_DISTRO", "otel_sched")
    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "otel_sched")
    return monkeypatch


def _span_processors() -> tuple[Any, ...]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    return provider._active_span_processor._span_processors  # type: ignore[attr-defined,no-any-return]


def _log_processors() -> tuple[Any, ...]:
    provider = _logs.get_logger_provider()
    assert isinstance(provider, LoggerProvider)
    return provider._multi_log_record_processor._log_record_processors  # type: ignore[no-any-return]


def test_entry_points_are_registered() -> None:
    (distro,) = entry_points(group="opentelemetry_distro", name="otel_sched")
    (configurator,) = entry_points(group="opentelemetry_configurator", name="otel_sched")
    assert distro.load() is OtelSchedDistro
    assert configurator.load() is OtelSchedConfigurator


def test_configurator_with_console_exporters_builds_the_stock_sdk_with_our_processors(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "console")
    clean_env.setenv("OTEL_SERVICE_NAME", "configured")
    clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments")
    clean_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    clean_env.setenv("OTEL_PYTHON_SCHED_POLICY", "fair")

    OtelSchedConfigurator().configure(auto_instrumentation_version="9.9")

    (span_processor,) = _span_processors()
    (log_processor,) = _log_processors()
    assert isinstance(span_processor, ScheduledSpanProcessor)
    assert isinstance(span_processor.span_exporter, ConsoleSpanExporter)
    assert isinstance(log_processor, ScheduledLogRecordProcessor)
    assert isinstance(log_processor.exporter, ConsoleLogRecordExporter)
    assert span_processor.stats()["policy"] == "fair"
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "configured" and attributes["team"] == "payments"
    assert attributes["telemetry.auto.version"] == "9.9"
    assert provider.sampler.get_description() == "AlwaysOffSampler"
    # No logging handler unless OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true, as in the SDK.
    assert not any(type(h).__name__ == "LoggingHandler" for h in logging.getLogger().handlers)


def test_configurator_with_exporters_none_builds_providers_without_processors(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "none")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "none")
    OtelSchedConfigurator().configure()
    assert _span_processors() == ()
    assert _log_processors() == ()


@pytest.mark.parametrize(
    ("protocol", "module"),
    [
        (None, "opentelemetry.exporter.otlp.proto.grpc"),  # the SDK's default for "otlp"
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc"),
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http"),
    ],
)
def test_configurator_with_otlp_picks_the_exporter_by_protocol(
    clean_env: pytest.MonkeyPatch, protocol: str | None, module: str
) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "otlp")
    if protocol is not None:
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    OtelSchedConfigurator().configure()
    (span_processor,) = _span_processors()
    (log_processor,) = _log_processors()
    assert isinstance(span_processor, ScheduledSpanProcessor)
    assert isinstance(log_processor, ScheduledLogRecordProcessor)
    assert type(span_processor.span_exporter).__module__.startswith(module)
    assert type(log_processor.exporter).__module__.startswith(module)


def test_configurator_sets_up_metrics_and_the_sdk_logging_handler_like_the_sdk(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "console")
    clean_env.setenv("OTEL_METRICS_EXPORTER", "console")
    clean_env.setenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")
    with pytest.warns(DeprecationWarning):  # the SDK's own warning about its handler
        OtelSchedConfigurator().configure()
    assert isinstance(metrics.get_meter_provider(), MeterProvider)
    handlers = [h for h in logging.getLogger().handlers if type(h).__name__ == "LoggingHandler"]
    assert len(handlers) == 1
    assert handlers[0]._logger_provider is _logs.get_logger_provider()  # type: ignore[attr-defined]


def test_configurator_on_an_sdk_without_processor_factories_swaps_processors_afterwards(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """SDK 1.39's _initialize_components has no export_*_processor parameters: adopt() afterwards."""
    from opentelemetry.sdk import _configuration

    def old_initialize_components(auto_instrumentation_version: str | None = None) -> None:
        _initialize_components(auto_instrumentation_version=auto_instrumentation_version)

    clean_env.setattr(_configuration, "_initialize_components", old_initialize_components)
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "console")
    clean_env.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "999")

    OtelSchedConfigurator().configure(auto_instrumentation_version="1.0")

    (span_processor,) = _span_processors()
    (log_processor,) = _log_processors()
    assert isinstance(span_processor, ScheduledSpanProcessor)
    assert isinstance(span_processor.span_exporter, ConsoleSpanExporter)
    assert span_processor.stats()["capacity"]["items"] == 999
    assert isinstance(log_processor, ScheduledLogRecordProcessor)


def test_configurator_with_otel_config_file_defers_to_declarative_config_then_swaps(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """OTEL_CONFIG_FILE: the SDK hands the file to opentelemetry-configuration; we swap afterwards.

    A stand-in for opentelemetry-configuration builds what its ``batch`` processors build.
    """
    config_file = tmp_path / "otel.yaml"
    config_file.write_text("file_format: '1.0'\n")
    span_exporter = ConsoleSpanExporter()
    loaded: list[str] = []

    def load_config_file(path: str) -> str:
        loaded.append(path)
        return path

    def configure_sdk(config: str) -> None:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=1234))
        trace.set_tracer_provider(tracer_provider)
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(ConsoleLogRecordExporter()))
        _logs.set_logger_provider(logger_provider)

    fake = types.ModuleType("opentelemetry.configuration")
    fake.load_config_file = load_config_file  # type: ignore[attr-defined]
    fake.configure_sdk = configure_sdk  # type: ignore[attr-defined]
    clean_env.setitem(sys.modules, "opentelemetry.configuration", fake)
    clean_env.setenv("OTEL_CONFIG_FILE", str(config_file))
    clean_env.setenv("OTEL_TRACES_EXPORTER", "none")  # the file wins over the variables

    OtelSchedConfigurator().configure()

    assert loaded == [str(config_file)]
    (span_processor,) = _span_processors()
    assert isinstance(span_processor, ScheduledSpanProcessor)
    assert span_processor.span_exporter is span_exporter
    assert isinstance(_log_processors()[0], ScheduledLogRecordProcessor)


def test_distro_sets_the_stock_distro_defaults_without_overriding(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("OTEL_METRICS_EXPORTER")
    clean_env.delenv("OTEL_PYTHON_CONFIGURATOR")
    clean_env.setenv("OTEL_LOGS_EXPORTER", "console")
    OtelSchedDistro().configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert os.environ["OTEL_METRICS_EXPORTER"] == "otlp"
    assert os.environ["OTEL_LOGS_EXPORTER"] == "console"
    assert os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "otel_sched"
    assert not batch_processors_patched()


@pytest.mark.parametrize(("value", "patched"), [("true", True), ("false", False), ("maybe", False)])
def test_distro_patches_batch_processors_when_asked(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, patched: bool
) -> None:
    clean_env.setenv("OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS", value)
    try:
        OtelSchedDistro().configure()
        assert batch_processors_patched() is patched
    finally:
        unpatch_batch_processors()
    if value == "maybe":
        assert "OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS" in caplog.text and "'maybe'" in caplog.text


# -- end to end: a real application under opentelemetry-instrument ----------------------------------

APP = textwrap.dedent(
    '''
    """A small WSGI shop, instrumented by opentelemetry-instrument plus the WSGI middleware."""
    import json
    import logging
    import sys
    import threading
    from socketserver import ThreadingMixIn
    from urllib.parse import parse_qs
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import requests
    from opentelemetry import _logs, trace
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    log = logging.getLogger("shop")
    log.setLevel(logging.INFO)
    port = 0


    def shop(environ, start_response):
        path = environ["PATH_INFO"]
        tenant = parse_qs(environ.get("QUERY_STRING", "")).get("tenant", [None])[0]
        if tenant:
            trace.get_current_span().set_attribute("tenant.id", tenant)
        if path == "/health":
            status, body = "200 OK", b"ok"
        elif path == "/fail":
            log.error("payment failed for %s", tenant)
            status, body = "500 Internal Server Error", b"failed"
        elif path == "/proxy":
            body = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).content
            status = "200 OK"
        else:
            log.info("served %s for %s", path, tenant)
            status, body = "200 OK", b"order"
        start_response(status, [("Content-Type", "text/plain")])
        return [body]


    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True


    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass


    def processors():
        tp = trace.get_tracer_provider()
        lp = _logs.get_logger_provider()
        spans = tp._active_span_processor._span_processors
        logs = lp._multi_log_record_processor._log_record_processors
        return spans, logs


    def describe(p):
        exporter = getattr(p, "span_exporter", None) or getattr(p, "exporter", None)
        return {
            "processor": f"{type(p).__module__}.{type(p).__qualname__}",
            "exporter": f"{type(exporter).__module__}.{type(exporter).__qualname__}",
        }


    server = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(shop), Server, QuietHandler)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", port, flush=True)
    sys.stdin.read()  # the test closes stdin when it is done sending requests
    server.shutdown()
    spans, logs = processors()
    trace.get_tracer_provider().force_flush(60_000)
    _logs.get_logger_provider().force_flush(60_000)
    report = {
        "spans": [describe(p) for p in spans],
        "logs": [describe(p) for p in logs],
        "span_stats": [p.stats() for p in spans if hasattr(p, "stats")],
        "log_stats": [p.stats() for p in logs if hasattr(p, "stats")],
    }
    print("REPORT", json.dumps(report, default=str), flush=True)
    '''
)


class InstrumentedApp:
    """The APP above, started under opentelemetry-instrument with the given environment."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        script = tmp_path / "shop.py"
        script.write_text(APP)
        self.stderr_path = tmp_path / "stderr.txt"
        self._stderr = self.stderr_path.open("w")
        instrument = Path(sys.executable).parent / "opentelemetry-instrument"
        self.proc = subprocess.Popen(
            [str(instrument), sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise AssertionError(f"the app did not start: {line!r}\n{self.stderr()}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def finish(self) -> dict[str, Any]:
        """Close stdin, wait for the report and the exit (which flushes and shuts down)."""
        out, _ = self.proc.communicate(input="", timeout=120)
        self._stderr.close()
        assert self.proc.returncode == 0, self.stderr()
        reports = [line for line in out.splitlines() if line.startswith("REPORT ")]
        assert reports, f"no report in {out!r}\n{self.stderr()}"
        report: dict[str, Any] = json.loads(reports[-1][len("REPORT ") :])
        return report

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


def _env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            # Another distro may be installed next to ours: select ours explicitly, as documented.
            "OTEL_PYTHON_DISTRO": "otel_sched",
            "OTEL_PYTHON_CONFIGURATOR": "otel_sched",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e,team=payments",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def start_app(tmp_path: Path) -> Any:
    started: list[InstrumentedApp] = []

    def start(env: dict[str, str]) -> InstrumentedApp:
        app = InstrumentedApp(tmp_path, env)
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()


def test_opentelemetry_instrument_uses_our_processors_end_to_end(
    receiver: OTLPReceiver, start_app: Any
) -> None:
    app = start_app(
        _env(
            receiver,
            OTEL_PYTHON_SCHED_TENANT_KEY="tenant.id",
            OTEL_PYTHON_SCHED_PRIORITY_RULES='name == "GET /health" -> low',
        )
    )
    paths = [f"/orders/{i}?tenant={'acme' if i % 2 else 'globex'}" for i in range(6)]
    paths += ["/health", "/fail?tenant=acme", "/proxy"]
    statuses = [app.get(path) for path in paths]
    assert statuses == [200] * 7 + [500, 200]
    report = app.finish()

    # The providers opentelemetry-instrument built hold our processors, around the OTLP/HTTP exporters.
    assert report["spans"] == [
        {
            "processor": "otel_sched._processors.ScheduledSpanProcessor",
            "exporter": "opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter",
        }
    ]
    assert report["logs"] == [
        {
            "processor": "otel_sched._processors.ScheduledLogRecordProcessor",
            "exporter": "opentelemetry.exporter.otlp.proto.http._log_exporter.OTLPLogExporter",
        }
    ]

    # 9 server spans, the proxied /health's server span and the requests client span.
    assert receiver.wait_for_spans(11, timeout=30), receiver.span_count
    spans = receiver.spans()
    assert len(spans) == 11
    for span in spans:
        assert span.resource["service.name"] == "checkout"
        assert span.resource["deployment.environment"] == "e2e"
        assert span.resource["team"] == "payments"
        assert span.resource["telemetry.auto.version"]
        assert span.transport == "http"
    names = sorted(s.name for s in spans)
    assert names.count("GET /health") == 2 and "GET /proxy" in names and "GET" in names
    assert [s.name for s in spans if s.status_code == 2] == ["GET /fail"]  # ERROR status
    # The exporter's own HTTP calls (requests is instrumented) produced no spans.
    assert not [s for s in spans if "/v1/" in json.dumps(s.attributes)]

    assert receiver.wait_for_logs(7, timeout=30), receiver.log_count
    logs = receiver.logs()
    assert sorted(r.name for r in logs if r.name.startswith("served")) == sorted(
        f"served /orders/{i} for {'acme' if i % 2 else 'globex'}" for i in range(6)
    )
    assert [r.name for r in logs if r.severity_number >= 17] == ["payment failed for acme"]
    assert all(r.resource["service.name"] == "checkout" for r in logs)

    # OTEL_PYTHON_SCHED_* took effect: tenants from tenant.id, /health classified low by the rule.
    (span_stats,) = report["span_stats"]
    assert {"acme", "globex"} <= set(span_stats["by_tenant"])
    assert span_stats["by_priority"]["low"]["exported"] == 2
    assert span_stats["by_priority"]["high"]["exported"] == 1
    assert span_stats["dropped_total"] == 0


def test_overload_under_opentelemetry_instrument_keeps_the_error_spans(
    receiver: OTLPReceiver, start_app: Any
) -> None:
    receiver.set_faults(latency_s=0.5)
    app = start_app(
        _env(
            receiver,
            OTEL_BSP_MAX_QUEUE_SIZE="32",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="8",
            OTEL_BSP_SCHEDULE_DELAY="20",
            OTEL_PYTHON_SCHED_MAX_CONCURRENT_EXPORTS="1",
            OTEL_PYTHON_SCHED_PRIORITY_RULES='name == "GET /health" -> low',
            OTEL_LOGS_EXPORTER="none",
        )
    )
    paths = []
    for i in range(400):
        if i % 20 == 7:
            paths.append("/fail")
        elif i % 10 == 3:
            paths.append("/health")
        else:
            paths.append(f"/orders/{i}")
    statuses = [app.get(path) for path in paths]
    n_fail, n_health = paths.count("/fail"), paths.count("/health")
    assert statuses.count(500) == n_fail == 20
    report = app.finish()

    (stats,) = report["span_stats"]
    assert stats["capacity"]["items"] == 32  # OTEL_BSP_MAX_QUEUE_SIZE reached our processor
    assert stats["dropped_total"] > 0, stats  # the overload really happened
    # Every ERROR span was kept and delivered, whatever was shed around them.
    errors = [s for s in receiver.spans() if s.status_code == 2]
    assert len(errors) == n_fail, (len(errors), stats["dropped"])
    assert stats["by_priority"]["high"]["dropped"] == 0
    # The health checks were classified low by the rule from the environment.
    low = stats["by_priority"]["low"]
    assert low["exported"] + low["dropped"] + low["queued"] == n_health


def test_bad_sched_variables_warn_and_the_application_still_starts(
    receiver: OTLPReceiver, start_app: Any
) -> None:
    app = start_app(
        _env(
            receiver,
            OTEL_PYTHON_SCHED_POLICY="round-robin",
            OTEL_PYTHON_SCHED_PRIORITY_RULES="status = error -> high",
            OTEL_PYTHON_SCHED_TENANT_KEY="customer.id",
        )
    )
    assert [app.get(f"/orders/{i}?tenant=acme") for i in range(3)] == [200, 200, 200]
    report = app.finish()

    stderr = app.stderr()
    assert "OTEL_PYTHON_SCHED_POLICY" in stderr and "'round-robin'" in stderr
    assert "OTEL_PYTHON_SCHED_PRIORITY_RULES" in stderr and "status = error -> high" in stderr
    assert receiver.wait_for_spans(3, timeout=30)
    (stats,) = report["span_stats"]
    assert stats["policy"] == "priority_fair"  # the default, in place of the bad value
    # tenant.id is set but the key names customer.id: every span counts as missing the key.
    assert stats["tenants"]["missing_key"] == 3
    assert list(stats["by_tenant"]) == ["default"]

"""otel_sched.stats() over every live pipeline, and our warnings reaching stderr."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

import otel_sched
from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor

from ._exporters import RecordingExporter


class OtherExporter(RecordingExporter):
    pass


def test_stats_lists_every_live_pipeline_by_signal_and_a_stable_name() -> None:
    spans = ScheduledSpanProcessor(RecordingExporter())
    spans_again = ScheduledSpanProcessor(RecordingExporter())
    other = ScheduledSpanProcessor(OtherExporter())
    logs = ScheduledLogRecordProcessor(RecordingExporter())
    try:
        first = otel_sched.stats()
        second = otel_sched.stats()
        assert set(first) == {"traces", "logs"}
        names = {name for name in first["traces"] if name.startswith(("RecordingExporter", "OtherExporter"))}
        assert spans._pipeline.name in names and spans_again._pipeline.name in names
        assert other._pipeline.name == "OtherExporter" or other._pipeline.name.startswith("OtherExporter#")
        assert len({spans._pipeline.name, spans_again._pipeline.name, other._pipeline.name}) == 3
        assert logs._pipeline.name in first["logs"]
        assert set(first["traces"]) == set(second["traces"])  # stable between calls
        snap = first["traces"][spans._pipeline.name]
        assert snap["name"] == spans._pipeline.name and snap["signal"] == "traces" and "received" in snap
    finally:
        for p in (spans, spans_again, other, logs):
            p.shutdown()
    after = otel_sched.stats()
    assert spans._pipeline.name not in after["traces"] and logs._pipeline.name not in after["logs"]


def test_stats_is_public() -> None:
    assert "stats" in otel_sched.__all__


_SCRIPT = textwrap.dedent(
    """
    import logging
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    import otel_sched  # installs the fallback

    provider = LoggerProvider()
    root = logging.getLogger()
    root.handlers[:] = [LoggingHandler(logger_provider=provider)]  # the only handler: OpenTelemetry's
    log = logging.getLogger("otel_sched.runtime._pipeline")
    for _ in range(3):
        log.warning("otel-sched traces pipeline: export mode is now %s", "degraded")
    log.warning("otel-sched traces pipeline: export mode is now %s", "normal")
    log.warning("otel-sched traces pipeline: export mode is now %s", "degraded")  # again: a new change
    log.info("not a warning")
    """
)


def test_warnings_reach_stderr_once_per_state_change_when_only_the_otel_handler_listens() -> None:
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "export mode" in line]
    assert lines == [
        "WARNING otel_sched.runtime._pipeline: otel-sched traces pipeline: export mode is now degraded",
        "WARNING otel_sched.runtime._pipeline: otel-sched traces pipeline: export mode is now normal",
        "WARNING otel_sched.runtime._pipeline: otel-sched traces pipeline: export mode is now degraded",
    ]
    assert "not a warning" not in result.stderr


def test_no_duplicate_when_a_real_handler_shows_the_warning(
    otel_globals: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    stream = logging.StreamHandler(sys.stdout)
    root.handlers[:] = [LoggingHandler(logger_provider=LoggerProvider()), stream]
    logging.getLogger("otel_sched.runtime._pipeline").warning("spool in use (test)")
    out, err = capsys.readouterr()
    assert "spool in use (test)" in out and "spool in use (test)" not in err
    root.handlers[:] = [LoggingHandler(logger_provider=LoggerProvider())]
    logging.getLogger("otel_sched.runtime._pipeline").warning("spool in use (test, otel only)")
    out, err = capsys.readouterr()
    assert "spool in use (test, otel only)" in err


_PIPELINE_SCRIPT = textwrap.dedent(
    """
    import logging, time
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import LogRecordExportResult
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult
    import otel_sched

    class Collector:  # the span collector: down, then back
        up = False
        def export(self, batch):
            return SpanExportResult.SUCCESS if Collector.up else SpanExportResult.FAILURE
        def shutdown(self):
            pass

    class DownLogs:  # the log collector stays down
        def export(self, batch):
            return LogRecordExportResult.FAILURE
        def shutdown(self):
            pass

    logger_provider = LoggerProvider()
    logs = otel_sched.ScheduledLogRecordProcessor(
        DownLogs(), schedule_delay_millis=10, shutdown_timeout_millis=1000
    )
    logger_provider.add_log_record_processor(logs)
    logging.getLogger().handlers[:] = [LoggingHandler(logger_provider=logger_provider)]
    spans = otel_sched.ScheduledSpanProcessor(Collector(), schedule_delay_millis=10)
    provider = TracerProvider()
    provider.add_span_processor(spans)
    tracer = provider.get_tracer("test")

    def until(mode):
        deadline = time.monotonic() + 30
        while spans.stats()["mode"] != mode:
            if time.monotonic() > deadline:
                raise SystemExit(f"the span pipeline never reached {mode}")
            tracer.start_span("work").end()
            time.sleep(0.02)

    until("degraded")
    Collector.up = True
    until("normal")
    print("log pipeline received", logs.stats()["received"])
    spans.shutdown()
    logs.shutdown()
    """
)


def test_a_real_degraded_episode_reaches_stderr_and_does_not_loop_through_the_log_pipeline() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PIPELINE_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    err = result.stderr
    assert err.count("traces pipeline: every export endpoint is failing; degraded mode") == 1, err
    assert "logs pipeline: every export endpoint is failing; degraded mode" in err, err
    assert err.count("traces pipeline: export mode is now recovering") == 1, err
    assert err.count("traces pipeline: export mode is now normal") == 1, err
    received = int(result.stdout.rsplit(" ", 1)[1])
    assert received < 50, result.stdout  # our warnings entered the log pipeline once each, no loop

"""Platforms without POSIX file locking (Windows): the package imports, the spool says why it is off."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# A child interpreter in which ``import fcntl`` fails as it does on Windows.
_NO_FCNTL = "import sys; sys.modules['fcntl'] = None\n"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _NO_FCNTL + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_package_imports_without_fcntl() -> None:
    done = _run(
        """
        import otel_sched
        from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
        print("imported", otel_sched.__version__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout


def test_spool_reports_itself_unavailable_without_fcntl(tmp_path: Path) -> None:
    done = _run(
        f"""
        from otel_sched.durability._spool import Spool
        from otel_sched.durability._spool_file import SpoolUnavailable
        try:
            Spool({str(tmp_path / "spool")!r})
        except SpoolUnavailable as exc:
            print("unavailable:", exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "unavailable:" in done.stdout
    assert "fcntl" in done.stdout and "spool" in done.stdout


def test_processor_with_a_spool_runs_in_memory_without_fcntl(tmp_path: Path) -> None:
    # The pipeline logs why the spool is off and still exports.
    done = _run(
        f"""
        import logging
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from otel_sched import ScheduledSpanProcessor

        logging.basicConfig(level=logging.ERROR)
        exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.5)
        processor = ScheduledSpanProcessor(exporter, spool_dir={str(tmp_path / "spool")!r})
        provider = TracerProvider()
        provider.add_span_processor(processor)
        provider.get_tracer("t").start_span("s").end()
        processor.shutdown()
        stats = processor.stats()
        print("received", stats["received"])
        """
    )
    assert done.returncode == 0, done.stderr
    assert "fcntl" in done.stderr
    assert "received 1" in done.stdout


def test_importing_the_package_does_not_import_the_demo() -> None:
    # The demo, its receiver and report are for `otel-sched demo` and the tests, never the export path.
    code = "import sys, otel_sched; print(sorted(m for m in sys.modules if m.startswith('otel_sched.demo')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

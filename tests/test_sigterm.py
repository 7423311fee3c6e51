"""SIGTERM with its default action ends a process without atexit: the pipelines drain first.

A child exports through the real OTLP/HTTP exporter to the embedded receiver, queues fewer spans
than a batch (so they would wait for the schedule delay) and is sent SIGTERM.  It must still
end of that signal, as it would have, after its spans were delivered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from otel_sched.demo._receiver import OTLPReceiver

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from otel_sched import ScheduledSpanProcessor

    if sys.argv[2] == "app-handler":  # the application's own handler: left alone
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
    provider = TracerProvider()
    provider.add_span_processor(ScheduledSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1])))
    tracer = provider.get_tracer("t")
    for i in range(300):
        tracer.start_span(f"s{i}").end()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # not reached: the signal ends the process
    """
)


def _run(receiver: OTLPReceiver, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, receiver.traces_url, mode],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )


def test_sigterm_drains_the_pipelines_then_ends_the_process_of_the_signal() -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, "default")
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert receiver.span_count == 300


def test_a_handler_of_the_application_is_left_alone() -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, "app-handler")
    # sys.exit in the application's handler: the interpreter exits normally, atexit drains.
    assert done.returncode == 7, done.stderr
    assert receiver.span_count == 300


def test_the_option_off_keeps_the_default_action() -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, "default", OTEL_PYTHON_SCHED_FLUSH_ON_SIGTERM="false")
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert receiver.span_count == 0  # killed with the spans still queued: what the option prevents

"""Interpreter exit with the collector gone: bounded by exit_timeout_millis, nothing lost silently.

A child process set up by ``otel_sched.configure()`` (traces and logs over OTLP/HTTP, the OTel
logging handler on the root logger) emits spans and logs and returns from its main module while
the collector refuses connections, answers 503, or accepts and never answers.  The exit time
itself is a benchmark figure (benchmarks/bench_exit.py); here the process must exit although
``shutdown_timeout_millis`` is ten minutes, and every item must be in a term of the balance.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from otel_sched.demo._receiver import OTLPReceiver

_CHILD = textwrap.dedent(
    """
    import atexit, json, logging, sys
    import otel_sched

    def report():  # registered first, so it runs after the providers' exit hooks
        print(json.dumps(setup.stats()), flush=True)

    atexit.register(report)
    spool = sys.argv[2] or None
    setup = otel_sched.configure(service_name="exit", endpoint=sys.argv[1], protocol="http/protobuf",
                                 spool_dir=spool)
    tracer = setup.tracer_provider.get_tracer("exit")
    log = logging.getLogger("app")
    for i in range(300):
        with tracer.start_as_current_span(f"s{i}"):
            log.warning("item %d", i)
    """
)


@contextmanager
def _collector(behaviour: str) -> Iterator[str]:
    """A loopback endpoint that refuses, answers 503, or accepts and never answers."""
    if behaviour == "refusing":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}"  # nothing listens there any more
    elif behaviour == "503":
        with OTLPReceiver(failure_rate=1.0, failure_status=503) as rx:
            yield rx.http_endpoint
    else:
        with socket.socket() as sock:  # the kernel completes handshakes; nobody reads or answers
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("spool", [False, True], ids=["spool off", "spool on"])
@pytest.mark.parametrize("behaviour", ["refusing", "503", "silent"])
def test_exit_with_the_collector_gone_is_bounded_and_accounts_for_everything(
    behaviour: str, spool: bool, tmp_path: Path
) -> None:
    env = dict(os.environ, OTEL_PYTHON_SCHED_SHUTDOWN_TIMEOUT_MILLIS="600000")
    env.pop("OTEL_PYTHON_SCHED_EXIT_TIMEOUT_MILLIS", None)
    with _collector(behaviour) as endpoint:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, endpoint, str(tmp_path / "spool") if spool else ""],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,  # a hang guard only: how fast it exits is benchmarks/bench_exit.py's figure
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    for signal in ("traces", "logs"):
        s = stats[signal]
        assert s["received"] >= 300
        held = s["queued"] + s["intake"] + s["in_flight"]
        spooled = s["spool"]["spooled_items"] - s["spool"]["replayed_items"]
        assert s["received"] == s["exported"] + s["dropped_total"] + spooled + held, (signal, s)
        if spool and behaviour != "silent":  # a silent collector holds a batch in flight past the exit
            # What the application offered is on disk; only the exporter's own failure messages,
            # logged after the log pipeline stopped, may be counted as already_shutdown.
            assert spooled >= 300 and set(s["dropped"]) <= {"already_shutdown"}, (signal, s)


def test_a_shutdown_with_every_endpoint_failing_ends_without_waiting_for_more_probes(
    receiver: OTLPReceiver,
) -> None:
    """Degraded (every endpoint failing) and no call running: a shutdown would only wait for the next
    probe, so it ends now and counts what is left, instead of probing through its budget."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    from otel_sched import ScheduledSpanProcessor

    from ._exporters import wait_until

    receiver.set_faults(down=True)  # every request answered 503
    processor = ScheduledSpanProcessor(
        OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2),
        schedule_delay_millis=10,
        shutdown_timeout_millis=60_000,  # probes every 0.5 s and more would fit many times in it
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("down")
    for _ in range(50):
        with tracer.start_as_current_span("op"):
            pass
    assert wait_until(lambda: processor.stats()["mode"] == "degraded")
    refused = receiver.refused_request_count
    processor.shutdown()
    stats = processor.stats()
    assert stats["balance"]["balanced"], stats["balance"]
    assert stats["exported"] == 0
    assert stats["dropped_total"] == 50
    # At most the probe that was running when the shutdown came: no probing through the budget.
    assert receiver.refused_request_count <= refused + 1

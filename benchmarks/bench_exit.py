"""Exit with the collector gone: seconds from the last span to the end of the process, stock vs ours.

    python benchmarks/bench_exit.py [--quick] [--json PATH]

A child process sets up traces and logs over OTLP/HTTP with the OTel logging handler on the
root logger -- stock: the SDK's TracerProvider + BatchSpanProcessor and LoggerProvider +
BatchLogRecordProcessor with the stock OTLP/HTTP exporters; otel-sched: ``otel_sched.configure()``
-- all settings default.  It emits 300 spans, each with a WARNING log inside, prints the wall
time of its last span and returns from its main module.  The collector is a loopback socket
that refuses connections, an OTLP receiver answering 503 to everything, or a listening
socket that accepts and never answers.  Figure: wall time from the last span to the moment
the parent sees the child exit (median of the rounds).  otel-sched also runs with the spool
on (``spool_dir``), where what it could not send goes to disk.  Target: otel-sched exits
within 5 s whatever the collector does (stock: ~11 s).  Runs in child processes one at a time
(a light load: the figure is wall time, not CPU); ``--quick``: one round, else three.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import _common as c

from otel_sched.demo._receiver import OTLPReceiver

TARGET_S = 5.0
SPANS = 300

_CHILD = textwrap.dedent(
    """
    import logging, sys, time
    kind, endpoint, spool = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "stock":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
        lp = LoggerProvider()
        lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint + "/v1/logs")))
        logging.getLogger().addHandler(LoggingHandler(logger_provider=lp))
    else:
        import otel_sched

        setup = otel_sched.configure(service_name="exit", endpoint=endpoint, protocol="http/protobuf",
                                     spool_dir=spool or None)
        tp = setup.tracer_provider
    tracer = tp.get_tracer("exit")
    log = logging.getLogger("app")
    for i in range(int(sys.argv[4])):
        with tracer.start_as_current_span(f"s{i}"):
            log.warning("item %d", i)
    print(time.time(), flush=True)
    """
)

CASES = (("stock", c.STOCK, False), ("otel-sched", c.OURS, False), ("otel-sched, spool on", c.OURS, True))
BEHAVIOURS = ("refusing", "503", "silent")


@contextmanager
def collector(behaviour: str) -> Iterator[str]:
    if behaviour == "refusing":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    elif behaviour == "503":
        with OTLPReceiver(failure_rate=1.0, failure_status=503, keep_items=False) as rx:
            yield rx.http_endpoint
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(256)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def exit_seconds(kind: str, spool: bool, behaviour: str) -> float | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHONFAULT"))}
    with collector(behaviour) as endpoint, tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
        spool_dir = os.path.join(tmp, "spool") if spool else ""
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, kind, endpoint, spool_dir, str(SPANS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        try:
            child.wait(120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
            return None
        ended = time.time()
    try:
        return ended - float(line)
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = c.parser("exit", __doc__)
    args = p.parse_args(argv)
    rounds = 1 if args.quick else 3
    params = {"spans": SPANS, "rounds": rounds, "target_s": TARGET_S}
    c.print_header("Exit with the collector gone: seconds from the last span to process exit", params)
    results: dict[str, dict[str, Any]] = {}
    for behaviour in BEHAVIOURS:
        for name, kind, spool in CASES:
            runs = [exit_seconds(kind, spool, behaviour) for _ in range(rounds)]
            ok = [r for r in runs if r is not None]
            results.setdefault(behaviour, {})[name] = {
                "runs_s": runs,
                "median_s": c.median(ok) if ok else None,
            }
    rows = []
    passed = True
    for behaviour in BEHAVIOURS:
        r = results[behaviour]
        stock = r["stock"]["median_s"]
        row: list[Any] = [behaviour]
        for name, kind, _ in CASES:
            m = r[name]["median_s"]
            row.append("hung (> 120 s)" if m is None else f"{m:.1f}")
            if kind == c.OURS:
                passed = passed and m is not None and m <= TARGET_S
        row.append(c.fmt_ratio(c.ratio(r["otel-sched"]["median_s"], stock)))
        rows.append(row)
    c.print_table(["collector", *[name for name, _, _ in CASES], "ours/stock"], rows)
    print(
        f"  acceptance, otel-sched exits within {TARGET_S:.0f} s of its last span, whatever the collector: "
        f"{'PASS' if passed else 'FAIL'}"
    )
    c.write_json(args.json, "exit", params, results, passed=passed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shutdown with the collector gone or the exporter hung: how long it takes, and what is left unaccounted.

    python benchmarks/bench_shutdown.py [--quick] [--json PATH] [--only down hung]

(a) *down*: 12,000 spans with a ~1 KB attribute (``--quick``: 3,000) are offered as fast as
the app thread can, then ``shutdown()`` is called at once, with the collector (the embedded
receiver) either refusing every request (503) or accepting and never answering.  otel-sched
runs with the spool on and ``shutdown_timeout_millis=1500``; the stock BatchSpanProcessor
beside it (no spool: what it does not deliver is lost), each against its own receiver.
Reported: the time shutdown() took, delivered, spooled, counted as dropped, and
*unaccounted* = offered - (delivered + spooled + dropped) -- for otel-sched from stats(),
which must be 0; for stock every undelivered span is unaccounted (it keeps no count).

(b) *hung*: ``export_timeout_millis=300`` and an exporter whose ``export`` blocks forever
(a user's exporter: one lane, nothing to replace it with), 2,000 spans offered, then
``shutdown()``.  otel-sched must end within about the export timeout (nothing can move)
and count what is left; the stock processor beside it.  A shutdown that has not returned
after the cap (35 s; quick 8 s) is reported as "> cap".

Both are single runs in one process: the figures are times of seconds and counts, not CPU,
and move little with machine load.  Run the same script against another checkout with
``PYTHONPATH=<checkout>/src`` to compare versions.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import _common as c
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_sched import ScheduledSpanProcessor

PAD = "x" * 1000


def _emit(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("bench-shutdown")
    for i in range(n):
        with tracer.start_as_current_span(f"op{i}", attributes={"pad": PAD, "seq": i}):
            pass


def _timed_shutdown(processor: Any, cap_s: float) -> float | None:
    """Seconds shutdown() took, or None if it had not returned after ``cap_s``."""
    done = threading.Event()
    started = time.monotonic()
    took: list[float] = []

    def run() -> None:
        processor.shutdown()
        took.append(time.monotonic() - started)
        done.set()

    threading.Thread(target=run, name="bench-shutdown", daemon=True).start()
    return took[0] if done.wait(cap_s) else None


def _ours_accounting(processor: Any, offered: int) -> dict[str, Any]:
    stats = processor.stats()
    spooled = stats["spool"]["spooled_items"]
    dropped = stats["dropped_total"]
    exported = stats["exported"]
    return {
        "delivered": exported,
        "spooled": spooled,
        "dropped": dropped,
        "dropped_by_reason": stats["dropped"],
        "unaccounted": offered - exported - spooled - dropped,
    }


def down_run(kind: str, collector: str, n: int, cap_s: float) -> dict[str, Any]:
    with c.receiver() as rx:
        if collector == "refusing":
            rx.set_faults(down=True)
        else:
            rx.set_faults(latency_s=60.0)
        exporter = OTLPSpanExporter(endpoint=rx.traces_url)
        with tempfile.TemporaryDirectory(prefix="bench-shutdown-") as spool:
            if kind == c.STOCK:
                processor: Any = BatchSpanProcessor(exporter)
            else:
                processor = ScheduledSpanProcessor(exporter, spool_dir=spool, shutdown_timeout_millis=1500)
            provider = TracerProvider(shutdown_on_exit=False)
            provider.add_span_processor(processor)
            _emit(provider, n)
            seconds = _timed_shutdown(processor, cap_s)
            if kind == c.STOCK:
                delivered = rx.span_count
                row = {"delivered": delivered, "spooled": 0, "dropped": None, "unaccounted": n - delivered}
            else:
                row = _ours_accounting(processor, n)
            rx.set_faults(latency_s=0.0, down=False)  # release what still waits on the receiver
    return {"kind": kind, "collector": collector, "offered": n, "shutdown_s": seconds, **row}


def down(quick: bool) -> dict[str, Any]:
    n = 3000 if quick else 12_000
    cap = 8.0 if quick else 35.0
    runs = [
        down_run(kind, collector, n, cap)
        for collector in ("refusing", "never_answering")
        for kind in (c.STOCK, c.OURS)
    ]
    ours = [r for r in runs if r["kind"] == c.OURS]
    return {
        "runs": runs,
        "cap_s": cap,
        "pass": all(r["unaccounted"] == 0 and r["shutdown_s"] is not None for r in ours),
    }


class HungExporter(SpanExporter):
    """export() blocks until shutdown (the stock OTLP exporters too return once shut down)."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.gate.wait()
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass  # blocked forever: shutdown does not release it

    def release(self) -> None:
        self.gate.set()


def hung(quick: bool) -> dict[str, Any]:
    n = 2000
    cap = 8.0 if quick else 35.0
    runs = []
    for kind in (c.STOCK, c.OURS):
        exporter = HungExporter()
        processor = c.span_processor(kind, exporter, export_timeout_millis=300)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        _emit(provider, n)
        if kind == c.OURS:  # the first batch is in the exporter: the lane hangs from here
            deadline = time.monotonic() + 10
            while processor.stats()["concurrency"]["in_flight"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        seconds = _timed_shutdown(processor, cap)
        row: dict[str, Any] = {"kind": kind, "offered": n, "shutdown_s": seconds}
        if kind == c.OURS:
            row.update(_ours_accounting(processor, n))
        exporter.release()
        runs.append(row)
    ours = runs[-1]
    return {
        "runs": runs,
        "cap_s": cap,
        "pass": ours["shutdown_s"] is not None and ours["shutdown_s"] < 3.0 and ours["unaccounted"] == 0,
    }


def _seconds(value: float | None, cap: float) -> str:
    return f"> {cap:.0f}" if value is None else f"{value:.2f}"


def report_down(r: dict[str, Any], quick: bool) -> None:
    print(
        "\n(a) shutdown right after the offers, collector gone (otel-sched: spool on, shutdown_timeout 1.5 s)"
    )
    rows = [
        [
            f"{c.LABELS[x['kind']]}, {x['collector'].replace('_', ' ')}",
            x["offered"],
            _seconds(x["shutdown_s"], r["cap_s"]),
            x["delivered"],
            x["spooled"],
            x["dropped"],
            x["unaccounted"],
        ]
        for x in r["runs"]
    ]
    c.print_table(["run", "offered", "shutdown s", "delivered", "spooled", "dropped", "unaccounted"], rows)
    print(f"  target: otel-sched leaves 0 unaccounted: {'PASS' if r['pass'] else 'FAIL'}")


def report_hung(r: dict[str, Any], quick: bool) -> None:
    print("\n(b) shutdown with the exporter blocked forever (export_timeout_millis=300)")
    rows = [
        [
            c.LABELS[x["kind"]],
            x["offered"],
            _seconds(x["shutdown_s"], r["cap_s"]),
            x.get("dropped_by_reason", "-"),
            x.get("unaccounted", "-"),
        ]
        for x in r["runs"]
    ]
    c.print_table(["run", "offered", "shutdown s", "dropped by reason", "unaccounted"], rows)
    print(
        "  target: otel-sched ends within a few export timeouts, 0 unaccounted: "
        + ("PASS" if r["pass"] else "FAIL")
    )


PARTS = {"down": (down, report_down), "hung": (hung, report_hung)}


def main(argv: list[str] | None = None) -> int:
    p = c.parser("shutdown", __doc__)
    p.add_argument("--only", nargs="+", choices=list(PARTS), metavar="PART", help="run only these parts")
    args = p.parse_args(argv)
    parts = args.only or list(PARTS)
    params = {"quick": args.quick, "parts": parts}
    c.print_header("Shutdown: collector gone, exporter hung", params)
    results: dict[str, Any] = {}
    for name in parts:
        started = time.monotonic()
        try:
            results[name] = PARTS[name][0](args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
        results[name]["elapsed_s"] = time.monotonic() - started
    for name in parts:
        if "error" in results[name]:
            print(f"\n({name}) failed: {results[name]['error']}")
        else:
            PARTS[name][1](results[name], args.quick)
    c.write_json(args.json, "shutdown", params, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

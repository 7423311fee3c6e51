"""Helpers the side-by-side benchmarks share: arguments, machine info, tables, JSON, receivers, spans.

Every benchmark runs the stock SDK processor and otel-sched in the same process run,
prints a table with ratios and writes JSON (``benchmarks/results/<name>.json`` unless
``--json`` says otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledSpanProcessor
from otel_sched.demo._measure import machine_info as demo_machine_info
from otel_sched.demo._received import ReceivedItem
from otel_sched.demo._receiver import OTLPReceiver

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The SDK warns "Queue full, dropping Span." and logs export retries: expected here, noise in a table.
logging.getLogger("opentelemetry").setLevel(logging.ERROR)
STOCK, OURS = "stock", "otel_sched"
LABELS = {STOCK: "stock", OURS: "otel-sched"}


# -- command line and output ------------------------------------------------------------------------


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"bench_{name}.py",
        description=(doc or "").strip().splitlines()[0] if doc else None,
    )
    p.add_argument("--quick", action="store_true", help="short run (< 20 s), for a smoke check")
    p.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help="where to write the results (default: %(default)s)",
    )
    return p


def machine_info() -> dict[str, Any]:
    """The demo's machine description, plus when the benchmark ran."""
    return {**demo_machine_info(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def print_header(title: str, params: dict[str, Any]) -> None:
    m = machine_info()
    print(f"== {title}")
    print(
        f"   {m['cpu_count']} CPUs, {m['python_implementation']} {m['python']}, "
        f"opentelemetry-sdk {m['opentelemetry_sdk']}, otel-sched {m['otel_sched']}"
    )
    if params:
        print("   " + ", ".join(f"{k}={v}" for k, v in params.items()))
    sys.stdout.flush()


def fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def write_json(path: Path, name: str, params: dict[str, Any], results: Any, **extra: Any) -> None:
    payload = {"benchmark": name, "machine": machine_info(), "params": params, "results": results, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- processes and memory ---------------------------------------------------------------------------


def trim_heap() -> None:
    """Collect garbage and hand freed memory back to the OS between runs (glibc only)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class RssSampler:
    """Peak RSS at ~20 Hz on a background thread; also the CPU of the embedded receiver's threads."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._proc = psutil.Process()
        self._interval = interval_s
        self._halt = threading.Event()
        self.baseline: int = self._proc.memory_info().rss
        self.peak: int = self.baseline
        self._receiver_start = self._receiver_cpu()
        self._receiver_seen = dict(self._receiver_start)
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)

    def _receiver_cpu(self) -> dict[int, float]:
        ids = {t.native_id for t in threading.enumerate() if t.name.startswith("otlp-receiver")}
        try:
            return {t.id: t.user_time + t.system_time for t in self._proc.threads() if t.id in ids}
        except psutil.Error:
            return {}

    def _note_receiver(self) -> None:
        for tid, seconds in self._receiver_cpu().items():
            self._receiver_seen[tid] = max(seconds, self._receiver_seen.get(tid, 0.0))

    def _run(self) -> None:
        n = 0
        while not self._halt.wait(self._interval):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.memory_info().rss)
            n += 1
            if n % 5 == 0:
                self._note_receiver()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._note_receiver()
        self._halt.set()
        self._thread.join(2.0)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / (1024 * 1024)

    @property
    def receiver_cpu_s(self) -> float:
        return sum(v - self._receiver_start.get(tid, 0.0) for tid, v in self._receiver_seen.items())


class Child:
    """``script --child SPEC`` in its own process; its last stdout line is its JSON result.

    A line ``load-done`` calls ``on_load_done`` (the parent notes what had arrived by then).
    """

    def __init__(
        self, script: Path, spec: dict[str, Any], on_load_done: Callable[[], None] | None = None
    ) -> None:
        self.spec = spec
        self._on_load_done = on_load_done
        self.result: dict[str, Any] | None = None
        self.error = ""
        self._proc = subprocess.Popen(
            [sys.executable, str(script), "--child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Drained as it comes, so that a chatty child never blocks on a full pipe.
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def _read(self) -> None:
        assert self._proc.stdout is not None
        last = ""
        for line in self._proc.stdout:
            if line.strip() == "load-done":
                if self._on_load_done is not None:
                    self._on_load_done()
                continue
            last = line
        try:
            self.result = json.loads(last)
        except ValueError:
            self.result = None

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        self._reader.join(10)
        self._err_reader.join(10)
        self.error = "".join(self._stderr)[-3000:]
        if self.result is None:
            raise RuntimeError(f"child {self.spec} failed:\n{self.error}")
        return self.result


# -- receivers, exporters, processors ---------------------------------------------------------------


@contextlib.contextmanager
def receiver(
    latency_ms: float = 0.0, item_hook: Callable[[ReceivedItem], None] | None = None, **kwargs: Any
) -> Iterator[OTLPReceiver]:
    """An embedded OTLP/HTTP receiver on 127.0.0.1 (ephemeral port) that keeps no items."""
    rx = OTLPReceiver(latency_s=latency_ms / 1000.0, keep_items=False, item_hook=item_hook, **kwargs)
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


class NoopSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def span_processor(kind: str, exporter: Any, **options: Any) -> Any:
    """The stock BatchSpanProcessor or ours, with the same standard options.

    Keyword options that only ours knows are passed to ours only.
    """
    stock_keys = {"max_queue_size", "schedule_delay_millis", "max_export_batch_size", "export_timeout_millis"}
    if kind == STOCK:
        return BatchSpanProcessor(exporter, **{k: v for k, v in options.items() if k in stock_keys})
    return ScheduledSpanProcessor(exporter, **options)


def otlp_span_exporter(rx: OTLPReceiver) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=rx.traces_url)


def shutdown_processor(processor: Any, timeout_s: float = 30.0) -> None:
    """Flush, then stop; the stock processor's shutdown() has no timeout, its inner batcher has."""
    processor.force_flush(int(timeout_s * 1000))
    inner = getattr(processor, "_batch_processor", None)
    if inner is not None and callable(getattr(inner, "shutdown", None)):
        inner.shutdown(timeout_millis=int(timeout_s * 1000))
    else:
        processor.shutdown()


def wait_settled(rx: OTLPReceiver, counted: Callable[[], int] | None = None, timeout_s: float = 3.0) -> None:
    """Wait (bounded) until the receiver has no request in progress and the hook has seen every item."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rx.in_flight == 0 and (counted is None or counted() >= rx.span_count + rx.log_count):
            return
        time.sleep(0.01)


RESOURCE = Resource.create(
    {"service.name": "bench", "service.version": "1.0.0", "deployment.environment": "bench"}
)


# -- a paced span generator -------------------------------------------------------------------------


class SpanFactory:
    """Creates one span per call with the given attribute builder; ERROR status for a share of them."""

    def __init__(
        self,
        provider: TracerProvider,
        attributes: Callable[[random.Random], dict[str, Any]],
        error_share: float = 0.0,
        seed: int = 1,
    ) -> None:
        self._tracer = provider.get_tracer("bench.app", "1.0.0")
        self._attributes = attributes
        self._error_share = error_share
        self.rng = random.Random(seed)

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        attrs = self._attributes(self.rng)
        error = self._error_share > 0 and self.rng.random() < self._error_share
        span = self._tracer.start_span("GET /api/v1/orders/{id}", attributes=attrs)
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        return error, attrs


def four_attributes(rng: random.Random) -> dict[str, Any]:
    return {
        "http.request.method": "GET",
        "http.route": "/api/v1/orders/{id}",
        "http.response.status_code": 200,
        "url.full": f"https://shop.example.com/api/v1/orders/{rng.randrange(10**7)}",
    }


def paced(
    make: Callable[[], Any],
    rate: float,
    duration_s: float,
    stop: threading.Event | None = None,
    max_lag_s: float = 0.25,
) -> tuple[int, int]:
    """Call ``make`` ``rate`` times a second for ``duration_s``; returns (made, skipped).

    Falling behind by more than ``max_lag_s`` skips ahead (counted) instead of bursting.
    """
    start = time.monotonic()
    made = skipped = 0
    while stop is None or not stop.is_set():
        elapsed = time.monotonic() - start
        if elapsed >= duration_s:
            break
        due = int(rate * elapsed) - made - skipped
        if due > rate * max_lag_s:
            skipped += due - int(rate * max_lag_s)
            due = int(rate * max_lag_s)
        if due <= 0:
            time.sleep(0.001)
            continue
        for _ in range(min(due, 256)):
            make()
            made += 1
    return made, skipped


def paced_threads(
    makers: Sequence[Callable[[], Any]], rate: float, duration_s: float
) -> tuple[int, int, float]:
    """Run ``paced`` on one thread per maker, splitting the rate; returns (made, skipped, seconds)."""
    results: list[tuple[int, int]] = [(0, 0)] * len(makers)

    def run(i: int) -> None:
        results[i] = paced(makers[i], rate / len(makers), duration_s)

    started = time.monotonic()
    threads = [
        threading.Thread(target=run, args=(i,), name=f"bench-producer-{i}") for i in range(len(makers))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r[0] for r in results), sum(r[1] for r in results), time.monotonic() - started

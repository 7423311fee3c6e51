"""What the demo measures: deliveries at the receiver, RSS and receiver CPU, the machine, warnings.

:class:`Delivery` is the receiver's ``item_hook``: it counts what arrived per signal, priority
and tenant with its end-to-receipt latency.  :class:`ResourceSampler` samples peak RSS and the
embedded receiver's thread CPU (the collector's work, not the pipeline's).  :func:`machine_info`
and the captured SDK warnings go into the report as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import math
import os
import platform
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import psutil

from ._received import ReceivedItem
from ._scenario import ERROR_SEVERITY, TENANT_KEY

__all__ = [
    "MIB",
    "Delivery",
    "ResourceSampler",
    "capture_warnings",
    "hist_percentiles",
    "machine_info",
    "trim_heap",
]

_RSS_EVERY_S = 0.05
_LATENCY_BUCKETS = 600_000  # 1 ms buckets: 10 minutes, far above any export timeout
MIB = 1024 * 1024


# -- delivery, counted at the receiver ----------------------------------------------------------------


class _SignalDelivery:
    __slots__ = ("by_priority", "by_tenant", "latency_hist", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_priority: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()
        self.latency_hist = array("Q", bytes(8 * (_LATENCY_BUCKETS + 1)))


class Delivery:
    """The receiver's item_hook: counts what arrived, per signal, priority and tenant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.signals = {"spans": _SignalDelivery(), "logs": _SignalDelivery()}

    def hook(self, item: ReceivedItem) -> None:
        latency_ms = (time.time_ns() - item.end_time_unix_nano) // 1_000_000
        if item.signal == "traces":
            counts = self.signals["spans"]
            priority = "high" if item.status_code == 2 else "normal"
        else:
            counts = self.signals["logs"]
            priority = "high" if item.severity_number >= ERROR_SEVERITY else "normal"
        tenant = item.attributes.get(TENANT_KEY)
        if tenant is None:
            tenant = item.resource.get(TENANT_KEY, "(none)")
        bucket = min(max(latency_ms, 0), _LATENCY_BUCKETS)
        with self._lock:
            counts.total += 1
            counts.by_priority[priority] += 1
            counts.by_tenant[str(tenant)] += 1
            counts.latency_hist[bucket] += 1

    def total(self) -> int:
        return self.signals["spans"].total + self.signals["logs"].total


def hist_percentiles(hist: array[int]) -> dict[str, float | int | None]:
    count = sum(hist)
    if not count:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    wanted = {"p50": math.ceil(0.50 * count), "p99": math.ceil(0.99 * count)}
    found: dict[str, float | int | None] = {"count": count}
    seen = 0
    top = 0
    for ms, n in enumerate(hist):
        if not n:
            continue
        seen += n
        top = ms
        for name, rank in wanted.items():
            if name not in found and seen >= rank:
                found[name] = float(ms)
    found["max"] = float(top)
    return found


# -- resources: CPU and memory -------------------------------------------------------------------------


def trim_heap() -> None:
    """Return freed memory to the OS so the next run's RSS baseline is not inflated by the previous one."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)


class ResourceSampler(threading.Thread):
    """Peak RSS at ~20 Hz, and the CPU time of the embedded receiver's threads.

    Thread CPU is read from the OS per thread id; a receiver thread's time is the
    largest value seen for it, so a thread that ends between two samples loses at
    most one sampling interval.
    """

    _CPU_EVERY = 5  # thread CPU is read every 5th RSS sample (~4 Hz): it costs more than RSS

    def __init__(self) -> None:
        super().__init__(name="otel-sched-demo-sampler", daemon=True)
        self._proc = psutil.Process()
        self._halted = threading.Event()
        self.baseline_rss = self._proc.memory_info().rss
        self.peak_rss = self.baseline_rss
        self._receiver_cpu: dict[int, float] = {}
        self._receiver_cpu_start = self._thread_cpu()
        for tid, seconds in self._receiver_cpu_start.items():
            self._receiver_cpu[tid] = seconds

    def _thread_cpu(self) -> dict[int, float]:
        ids = {t.native_id for t in threading.enumerate() if t.name.startswith("otlp-receiver")}
        try:
            return {t.id: t.user_time + t.system_time for t in self._proc.threads() if t.id in ids}
        except psutil.Error:
            return {}

    def sample_cpu(self) -> None:
        for tid, seconds in self._thread_cpu().items():
            if seconds > self._receiver_cpu.get(tid, 0.0):
                self._receiver_cpu[tid] = seconds

    def run(self) -> None:
        n = 0
        while not self._halted.wait(_RSS_EVERY_S):
            try:
                rss = self._proc.memory_info().rss
            except psutil.Error:
                continue
            if rss > self.peak_rss:
                self.peak_rss = rss
            n += 1
            if n % self._CPU_EVERY == 0:
                self.sample_cpu()

    def stop(self) -> None:
        self.sample_cpu()
        self._halted.set()
        self.join(2.0)

    @property
    def receiver_cpu_s(self) -> float:
        start = self._receiver_cpu_start
        return sum(v - start.get(tid, 0.0) for tid, v in self._receiver_cpu.items())


# -- the machine and the SDK's warnings ----------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    from .. import __version__

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "opentelemetry_sdk": _version("opentelemetry-sdk"),
        "opentelemetry_exporter_otlp_proto_http": _version("opentelemetry-exporter-otlp-proto-http"),
        "otel_sched": __version__,
        "memory_total_mib": round(psutil.virtual_memory().total / MIB),
    }


class _CapturedWarnings(logging.Handler):
    """Keeps the SDK's warnings (queue full, export retries) off the console during the runs; counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.counts[record.name, record.getMessage()[:200]] += 1


@contextlib.contextmanager
def capture_warnings() -> Iterator[_CapturedWarnings]:
    handler = _CapturedWarnings()
    loggers = [logging.getLogger(name) for name in ("opentelemetry", "otel_sched")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, (propagate, _) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate

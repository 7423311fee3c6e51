"""Test exporters with controllable behaviour (hang, fail, raise), and small waiting helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from opentelemetry.sdk.trace.export import SpanExportResult


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds or the (monotonic) deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class RecordingExporter:
    """Collects exported items; can be told to hang, fail, raise or return None.

    ``gate`` (when set) blocks every export until it is opened: deterministic overload.
    Tracks concurrent calls, and whether each call ran under suppress-instrumentation.
    """

    def __init__(self, result: Any = SpanExportResult.SUCCESS) -> None:
        self.result = result
        self.items: list[Any] = []
        self.batches: list[int] = []
        self.calls = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.suppressed: list[bool] = []
        self.raise_exc: Exception | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.shutdown_calls = 0
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Any]) -> Any:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.suppressed.append(bool(get_value(_SUPPRESS_INSTRUMENTATION_KEY)))
        self.entered.set()
        try:
            if self.gate is not None:
                self.gate.wait(30)
            if self.raise_exc is not None:
                raise self.raise_exc
            if self.result is SpanExportResult.SUCCESS or getattr(self.result, "name", "") == "SUCCESS":
                with self._lock:
                    self.items.extend(batch)
                    self.batches.append(len(batch))
            return self.result
        finally:
            with self._lock:
                self.concurrent -= 1

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        if self.gate is not None:
            self.gate.set()  # like the OTLP exporters: shutdown interrupts a pending export

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

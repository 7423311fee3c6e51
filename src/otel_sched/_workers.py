"""Workers: export lanes, and the thread registry behind recursion control.

A :class:`Lane` owns one exporter instance and one daemon thread.  The scheduler
hands it one batch at a time; the lane calls ``exporter.export`` under the
suppress-instrumentation context and reports the outcome through a callback.

Guarantees:
  * ``export`` is never called concurrently on a lane's exporter (one thread, one
    batch at a time), as the SDK specification requires;
  * a lane whose export overran its deadline is marked ``hung`` by the scheduler
    and gets no new batch until the call returns; its late result is reported
    with ``late=True``, never as a second outcome for the same batch;
  * the thread keeps no reference to the processor, so the processor can be
    garbage collected while a lane is idle or hung.

Recursion control: every thread this package starts is registered with the depth
of the work it is doing.  Telemetry produced on those threads (an exporter that
logs through the OTel ``LoggingHandler``) is tagged one level deeper, and items
deeper than the configured maximum are dropped and counted instead of feeding the
pipeline forever.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from ._task import Task

__all__ = ["Lane", "Outcome", "export_depth", "register_thread", "unregister_thread"]

_logger = logging.getLogger(__name__)

# thread ident -> a one-element list holding the depth of the work on that thread.
_THREADS: dict[int, list[int]] = {}


def register_thread(depth: int = 0) -> list[int]:
    cell = [depth]
    _THREADS[threading.get_ident()] = cell
    return cell


def unregister_thread() -> None:
    _THREADS.pop(threading.get_ident(), None)


def export_depth() -> int | None:
    """Depth of the pipeline work on the calling thread, or None for application threads."""
    cell = _THREADS.get(threading.get_ident())
    return None if cell is None else cell[0]


class Outcome(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # the exporter returned FAILURE
    ERROR = "error"  # the exporter raised
    INVALID = "invalid"  # the exporter returned something that is not an export result


class Lane:
    """One exporter instance driven by one thread.  See the module docstring for guarantees."""

    def __init__(
        self,
        index: int,
        exporter: Any,
        name: str,
        on_done: Callable[[Lane, list[Task], Outcome, float], None],
    ) -> None:
        self.index = index
        self.exporter = exporter
        self._on_done = on_done
        self._cond = threading.Condition(threading.Lock())
        self._batch: list[Task] | None = None  # guarded by _cond; set by submit, cleared by the thread
        self._stop = False
        # Written by the scheduler thread only:
        self.busy = False
        self.hung = False
        self.started_at = 0.0
        self.depth = 0
        self.current: list[Task] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, batch: list[Task], depth: int) -> None:
        if self.busy:
            raise RuntimeError(f"lane {self.index} is busy: a lane exports one batch at a time")
        self.busy = True
        self.current = batch
        self.depth = depth
        self.started_at = time.monotonic()
        with self._cond:
            self._batch = batch
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        cell = register_thread()
        try:
            while True:
                with self._cond:
                    while self._batch is None and not self._stop:
                        self._cond.wait()
                    if self._batch is None:
                        return
                    batch = self._batch
                    self._batch = None
                cell[0] = self.depth + 1
                outcome, seconds = self._export(batch)
                cell[0] = 0
                self._on_done(self, batch, outcome, seconds)
        finally:
            unregister_thread()

    def _export(self, batch: Sequence[Task]) -> tuple[Outcome, float]:
        items = [t.item for t in batch]
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        start = time.monotonic()
        try:
            result = self.exporter.export(items)
        except Exception:  # an exporter that raises must not kill the lane
            _logger.exception(
                "Exporter %s raised while exporting %d items", type(self.exporter).__name__, len(items)
            )
            outcome = Outcome.ERROR
        else:
            # By name: SpanExportResult, LogRecordExportResult and the deprecated LogExportResult all count.
            name = getattr(result, "name", None)
            if name == "SUCCESS":
                outcome = Outcome.SUCCESS
            elif name == "FAILURE":
                outcome = Outcome.FAILURE
            else:
                _logger.error(
                    "Exporter %s returned %r instead of an export result; counting the batch as failed",
                    type(self.exporter).__name__,
                    result,
                )
                outcome = Outcome.INVALID
        finally:
            detach(token)
        return outcome, time.monotonic() - start

"""Our own warnings reach stderr when the only handlers that would show them are OpenTelemetry's.

A service that routes all logging through the OTel ``LoggingHandler`` sees otel-sched's warnings
(degraded mode, spool in use, shedding) only in the log pipeline -- the one that fails when the
collector is down.  :class:`StderrFallback`, on the ``otel_sched`` logger, writes a WARNING or
above straight to ``sys.stderr`` (never through ``logging``, so nothing loops back into a log
pipeline) when no other handler would show it.  A message that repeats the last one written for
its logger is skipped for ``REPEAT_SECONDS``; a state change is a different message than the
one before it, so each is seen (degraded, recovering, degraded again...).  At most ``BUDGET``
lines per ``REPEAT_SECONDS`` in all, against a flood.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["StderrFallback", "install"]

REPEAT_SECONDS = 60.0
BUDGET = 60


def _is_opentelemetry(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("opentelemetry")


class StderrFallback(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._last: dict[str, tuple[str, float]] = {}  # logger name -> (last message written, when)
        self._window = (-REPEAT_SECONDS, 0)  # (start, lines written in it)

    def _shown_elsewhere(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self and record.levelno >= handler.level and not _is_opentelemetry(handler):
                    return True
            if not logger.propagate:
                break
            logger = logger.parent
        # No handler besides ours and OpenTelemetry's.  (With none at all, logging's lastResort
        # would have printed it -- but ours counts as a handler, so it no longer does: we do.)
        return False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._shown_elsewhere(record):
                return
            message = record.getMessage()
            now = time.monotonic()
            last = self._last.get(record.name)
            if last is not None and last[0] == message and now - last[1] < REPEAT_SECONDS:
                return
            start, written = self._window
            if now - start >= REPEAT_SECONDS:
                start, written = now, 0
            if written >= BUDGET:
                return
            self._window = (start, written + 1)
            self._last[record.name] = (message, now)  # our loggers: a few dozen names at most
            stream = sys.stderr
            if stream is not None:
                stream.write(f"{record.levelname} {record.name}: {message}\n")
                stream.flush()
        except Exception:  # noqa: BLE001 - reporting must never break the caller (often our scheduler)
            pass


def install() -> StderrFallback:
    """Add the fallback to the ``otel_sched`` logger once (idempotent)."""
    logger = logging.getLogger("otel_sched")
    for handler in logger.handlers:
        if isinstance(handler, StderrFallback):
            return handler
    handler = StderrFallback()
    logger.addHandler(handler)
    return handler

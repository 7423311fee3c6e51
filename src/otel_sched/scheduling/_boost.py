"""Dynamic priority: the application raises the priority of a trace while it runs.

``mark_trace_important()`` (the current trace) or ``mark_trace_important(trace_id)``
records the trace id with a priority class; every span or log record of that trace
that the pipeline classifies afterwards gets at least that class: all that end later,
and those that ended moments before and still wait in the intake.  Items already
queued keep their class.  Typical use: a request turns out to be
interesting (a payment, a VIP tenant, a slow path) after some of its children ran.

The registry is process-wide, shared by every processor, bounded (least recently
marked traces are forgotten first) and O(1) for the application thread: one dict
assignment, no lock (a dict store is atomic under the GIL).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

from opentelemetry import trace

from ._task import PriorityClass

__all__ = ["MAX_MARKED_TRACES", "mark_trace", "mark_trace_important", "marked_priority", "unmark_trace"]

MAX_MARKED_TRACES = 65536

# trace id -> class value.  Written by application threads, read by scheduler threads.
_MARKED: OrderedDict[int, int] = OrderedDict()


def mark_trace_important(
    trace_id: int | None = None, priority: PriorityClass | str | int = PriorityClass.HIGH
) -> int | None:
    """Give every later span / log record of a trace at least ``priority``.

    ``trace_id`` defaults to the current span's trace.  Returns the trace id marked, or
    None when there is no valid current trace.  Raises ``ValueError`` for an unknown class
    or a trace id that is not a positive 128-bit integer.
    """
    cls = PriorityClass.parse(priority)
    if trace_id is None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        trace_id = context.trace_id
    if isinstance(trace_id, bool) or not isinstance(trace_id, int) or not 0 < trace_id < 1 << 128:
        raise ValueError(f"trace_id={trace_id!r} is not a valid trace id: expected an int in 1..2**128-1")
    _store(trace_id, int(cls))
    return trace_id


def mark_trace(trace_id: int, priority: int) -> None:
    """Raise a trace to at least ``priority`` (scheduler side, for ``inherit_priority``)."""
    if _MARKED.get(trace_id, -1) < priority:
        _store(trace_id, priority)


def _store(trace_id: int, priority: int) -> None:
    _MARKED[trace_id] = priority
    if len(_MARKED) > MAX_MARKED_TRACES:
        with contextlib.suppress(KeyError):  # another thread emptied it meanwhile
            _MARKED.popitem(last=False)


def unmark_trace(trace_id: int) -> None:
    _MARKED.pop(trace_id, None)


def marked_priority(trace_id: int) -> int | None:
    """The class a trace was marked with, or None (scheduler side)."""
    return _MARKED.get(trace_id)

"""The registry of otel-sched's own threads, behind recursion control.

Every thread the package starts (lanes, the asyncio loop, the scheduler, the resource probe)
registers here with the depth of the work it is doing.  Telemetry produced on those threads (an
exporter logging through the OTel ``LoggingHandler``) is tagged one level deeper, and items deeper
than the configured maximum are dropped and counted instead of feeding the pipeline forever.

A leaf module: ``runtime`` and ``process`` both import it; it imports only the standard library.
"""

from __future__ import annotations

import os
import threading

__all__ = ["export_depth", "register_thread", "unregister_thread"]

# thread ident -> a one-element list holding the depth of the work on that thread.
_THREADS: dict[int, list[int]] = {}


def _forget_threads_after_fork() -> None:
    # Thread idents of the parent mean nothing in the child (and may be reused by its new threads).
    _THREADS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


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

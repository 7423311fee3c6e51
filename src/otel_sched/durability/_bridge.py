"""The spool's bridge to the pipeline: what goes to disk instead of being dropped, and what comes back.

Owns the pipeline's :class:`~._spool.Spool` (or None: spool off, unavailable, or given up after
a write failed) and the pacing of replays against live batches.  Spooled batches hold one
(class, tenant) each and never more than ``max_export_batch_bytes``.

Threads: the scheduler thread only (``stats()`` is read between two steps).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ..otlp._encoding import assemble_logs, assemble_traces
from ..otlp._exporters import assemble_tasks
from ..scheduling._task import Signal, Task
from ._spool import Spool
from ._spool_file import SpoolUnavailable

if TYPE_CHECKING:
    from .._config import Config

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")

_LIVE_PER_REPLAY = 3  # with a live backlog, one spooled batch is replayed per this many live batches
# Reasons for which a pre-encoded item goes to the spool (when there is one) instead of being lost.
_SPOOLABLE: frozenset[str] = frozenset(
    {
        "queue_full",
        "shed_priority",
        "shed_fair_share",
        "shed_trace",
        "export_failed",
        "export_error",
        "export_timeout",
        "shutdown_timeout",
        "memory_pressure",
    }
)


class SpoolBridge:
    """Spools what would be dropped for a spoolable reason; hands spooled batches back for replay."""

    def __init__(self, config: Config, stats: Any, fast: bool) -> None:
        self.config = config
        self.signal = config.signal
        self.stats = stats  # Stats: spooled_* and replayed_* are counted here
        # None once unusable: the pipeline then carries on in memory only (never back on).
        self.spool: Spool | None = None
        self.live_since_replay = 0  # live batches dispatched since the last replay
        self._open(fast)

    def _open(self, fast: bool) -> None:
        cfg = self.config
        if not cfg.spool_dir:
            return
        if not fast:
            _logger.warning(
                "otel-sched: OTEL_PYTHON_SCHED_SPOOL_DIR=%r is ignored for the %s pipeline: the spool stores "
                "pre-encoded OTLP and needs the fast path (a stock OTLP exporter, otlp_fast_path on)",
                cfg.spool_dir,
                self.signal.value,
            )
            return
        try:
            self.spool = Spool(
                cfg.spool_dir,
                signal_scope=self.signal.value,
                max_bytes=cfg.spool_max_bytes,
                max_age_s=cfg.spool_max_age_millis / 1000.0,
            )
        except SpoolUnavailable as exc:
            _logger.error(
                "otel-sched: the spool at %r cannot be used (%s); the %s pipeline continues in memory only",
                cfg.spool_dir,
                exc,
                self.signal.value,
            )
            return
        head, tail = os.path.split(cfg.spool_dir.rstrip(os.sep))
        if tail == "{pid}":  # one directory per worker: take over what dead workers left behind
            try:
                adopted = self.spool.adopt_orphans(head)
            except SpoolUnavailable:
                adopted = 0
            if adopted:
                _logger.info("otel-sched: adopted %d spooled batches left by earlier processes", adopted)

    def spool_instead(self, drops: list[tuple[Task, str]]) -> list[tuple[Task, str]]:
        """Put what can be spooled into the spool; returns the drops that remain."""
        keep: list[Task] = []
        rest: list[tuple[Task, str]] = []
        reasons: dict[int, str] = {}
        for task, reason in drops:
            if reason in _SPOOLABLE and task.encoded is not None:
                keep.append(task)
                reasons[id(task)] = reason
            else:
                rest.append((task, reason))
        if keep:
            rest.extend((task, reasons[id(task)]) for task in self._spool_tasks(keep))
        return rest

    def _spool_tasks(self, tasks: list[Task]) -> list[Task]:
        """Spool ``tasks`` as batches of one (class, tenant) each; returns those that could not be stored."""
        spool = self.spool
        assert spool is not None
        assemble = assemble_traces if self.signal is Signal.TRACES else assemble_logs
        groups: dict[tuple[int, str], list[Task]] = {}
        for task in tasks:
            groups.setdefault((task.priority, task.tenant), []).append(task)
        mono, wall = time.monotonic(), time.time()
        limit = self.config.max_export_batch_bytes
        failed: list[Task] = []
        for (priority, tenant), group in groups.items():
            chunk: list[Task] = []
            size = 0
            for nxt in [*group, None]:
                if nxt is not None and (not chunk or size + nxt.cost <= limit):
                    chunk.append(nxt)
                    size += nxt.cost
                    continue
                try:
                    stored = spool.put(
                        self.signal.value,
                        tenant,
                        priority,
                        size,
                        wall - (mono - min(t.enqueued for t in chunk)),
                        len(chunk),
                        assemble_tasks(assemble, chunk),
                    )
                except SpoolUnavailable as exc:
                    _logger.error(
                        "otel-sched: writing to the spool at %r failed (%s); the %s pipeline continues in "
                        "memory only",
                        self.config.spool_dir,
                        exc,
                        self.signal.value,
                    )
                    with contextlib.suppress(Exception):
                        spool.close()
                    self.spool = None
                    failed.extend(chunk)
                    failed.extend(t for t in tasks if t.encoded is not None and t not in failed)
                    return failed
                if stored is None:
                    failed.extend(chunk)
                else:
                    self.stats.spooled_batches += 1
                    self.stats.spooled_items += len(chunk)
                    for t in chunk:
                        t.encoded = t.envelope = t.item = None
                if nxt is not None:
                    chunk, size = [nxt], nxt.cost
        return failed

    def replay_due(self, closing: bool, backlogged: bool) -> bool:
        """A spooled batch should go next: some wait, no shutdown is under way (``closing``), and
        live batches (``backlogged``: a full batch queued) had their share of turns."""
        spool = self.spool
        if spool is None or not spool.pending()[0] or closing:
            return False
        return not backlogged or self.live_since_replay >= _LIVE_PER_REPLAY

    def take(self) -> Any:
        """The oldest spooled batch (a spool row), or None."""
        assert self.spool is not None
        try:
            rows = self.spool.take(1)
        except SpoolUnavailable:
            self.spool = None
            return None
        if not rows:
            return None
        return rows[0]

    def finish_replay(self, row: Any, ok: bool) -> None:
        """A replayed batch was delivered (its row goes) or not (it stays for a later replay)."""
        spool = self.spool
        if spool is None:
            return
        try:
            if ok:
                spool.ack([row.id])
                self.stats.record_replay(row.priority, row.tenant, row.items, row.cost)
            else:
                spool.nack([row.id])
        except SpoolUnavailable:
            self.spool = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def pending(self) -> bool:
        """Spooled batches wait to be replayed."""
        return self.spool is not None and bool(self.spool.pending()[0])

    def snapshot(self) -> dict[str, Any]:
        spool = self.spool
        out: dict[str, Any] = {
            "enabled": spool is not None,
            "directory": None if spool is None else str(spool.directory),
            "spooled_batches": self.stats.spooled_batches,
            "spooled_items": self.stats.spooled_items,
            "replayed_batches": self.stats.replayed_batches,
            "replayed_items": self.stats.replayed_items,
        }
        if spool is not None:
            out["pending_batches"], out["pending_bytes"] = spool.pending()
            out.update(spool.counts())
        return out

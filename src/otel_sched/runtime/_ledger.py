"""The ledger: where every item that leaves the pipeline without being exported is counted.

Owns the count of items taken from the intake (``taken``), the drop path (spooled instead when
the spool takes the item, else counted by reason in ``Stats`` and the self-metrics), the
reporting of the application threads' drops to the self-metrics, and the count of the items a
failed scheduler step lost.  The balance ``received = exported + dropped + spooled + held``
rests on it.

Threads: the scheduler thread only (``snapshot()`` reads ``taken`` under the step lock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._metrics import SelfMetrics, Stats, sdk_error_type

if TYPE_CHECKING:
    from ..durability._bridge import SpoolBridge
    from ..scheduling._task import Task


class Ledger:
    """Counts drops (or has them spooled) and keeps the terms that make the balance hold."""

    def __init__(self, stats: Stats, metrics: SelfMetrics, bridge: SpoolBridge) -> None:
        self.stats = stats
        self.metrics = metrics
        self.bridge = bridge
        # Items taken from the intake: each then ends in a queue, a job or a count.
        self.taken = 0
        # The balance's gap after the last failed step's items were counted (never counted twice).
        self.unaccounted = 0
        self._app_drops_reported: dict[str, int] = {}  # app-thread drops already recorded as metrics

    def drop(self, drops: list[tuple[Task, str]], submitted: bool = False) -> None:
        """Count ``drops`` (or spool them); ``submitted``: they were handed to the exporter before,
        so the SDK-named metric already counted them as processed."""
        if self.bridge.spool is not None:
            drops = self.bridge.spool_instead(drops)
            if not drops:
                return
        record = self.stats.record_drop
        sdk = self.stats.sdk_dropped
        for task, reason in drops:
            record(task, reason)
            task.item = None
            if not submitted:
                sdk[sdk_error_type(reason)] += 1
        if self.metrics.enabled:
            self.metrics.dropped((reason, t.priority, t.tenant) for t, reason in drops)

    def count_lost(self, queued: int, in_flight: int) -> None:
        """After a failed step: what was taken and is neither counted, queued nor in flight was
        lost with the step; count it as dropped (``internal_error``)."""
        stats = self.stats
        accounted = (
            stats.exported
            - stats.replayed_items
            + sum(stats.dropped.values())
            + stats.spooled_items
            + queued
            + in_flight
        )
        # Measured against the gap left after the previous failure (never counted twice).
        gap = self.taken - accounted
        lost = gap - self.unaccounted
        if lost > 0:
            stats.dropped["internal_error"] += lost
            stats.sdk_dropped["internal_error"] += lost
            gap -= lost
        self.unaccounted = gap

    def report_app_drops(self) -> None:
        """The application thread only counts its drops; the metrics are recorded from here."""
        for reason, count in self.stats.app_drop_counts().items():
            delta = count - self._app_drops_reported.get(reason, 0)
            if delta:
                self._app_drops_reported[reason] = count
                self.metrics.dropped_unclassified(reason, delta)

    def processed_counts(self) -> dict[str | None, int]:
        """``otel.sdk.processor.*.processed`` as the SDK counts it: items handed to the exporter
        (key None) and items dropped before that, by SDK ``error.type``."""
        counts: dict[str | None, int] = {None: self.stats.submitted}
        counts.update(self.stats.sdk_dropped)
        for reason, n in self.stats.app_drop_counts().items():
            if n:
                key = sdk_error_type(reason)
                counts[key] = counts.get(key, 0) + n
        return counts

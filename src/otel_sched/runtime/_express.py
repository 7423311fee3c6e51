"""Express: while nothing is scarce, full batches of spans go from the intake to a lane as they are.

Scheduling decisions matter only when something is scarce.  While no task is queued, a lane takes
the next batch (or it may wait a moment behind a busy lane, the exports being instant), no retry,
spooled batch, flush or shutdown goes first, the memory level is NORMAL and no trace is marked
important, what the queues would do with the intake's spans is send them in arrival order.  So
they go as they came, ``max_export_batch_size`` at a time (within ``max_export_batch_bytes``),
with no task, admission, queue or policy decision per span (``scheduling._express``): the
scheduler's per-span work is what the stock worker's is.  Counted the same way: exported per
class, dropped with a reason (their tasks are built then), in flight meanwhile.

Only for spans, off the pre-encoded path (that path encodes each span as it classifies it), with
the default priority rules, no tenant key and no ``inherit_priority``: there classification would
tell the spans apart by their status alone, which the express batch counts.

Armed while the queues are empty and an express batch may start: the scheduler is woken when the
intake holds a full batch; what waits for one longer than ``patience`` (at most a TICK, at most
the batch delay) is classified and queued as usual, its batch window opened when it was first
seen waiting.  A trickle therefore takes the usual path, a stream the express one.

Threads: the scheduler thread's only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..process._coordinator import TICK
from ..scheduling._boost import _MARKED

if TYPE_CHECKING:
    from ..scheduling._batching import BatchFormer
    from ..scheduling._classify import Classifier
    from ..scheduling._express import Taker
    from ..scheduling._queues import QueueSet
    from ._dispatch import Dispatcher
    from ._intake import Intake
    from ._ledger import Ledger
    from ._standing import Standing


class Express:
    """Takes full batches off the intake straight to the dispatcher while nothing is scarce."""

    def __init__(
        self,
        take: Taker,
        intake: Intake,
        queues: QueueSet,
        former: BatchFormer,
        classifier: Classifier,
        dispatcher: Dispatcher,
        standing: Standing,
        ledger: Ledger,
    ) -> None:
        self.take = take
        self.intake, self.queues, self.former = intake, queues, former
        self.classifier, self.dispatcher, self.standing, self.ledger = (
            classifier,
            dispatcher,
            standing,
            ledger,
        )
        # When the spans now in the intake were first seen waiting for a full batch; None: none wait.
        self.since: float | None = None

    @property
    def patience(self) -> float:
        return min(TICK, self.former.delay)  # the delay follows self-tuning

    def ample(self, now: float) -> bool:
        """Nothing is scarce (the queues apart): an express batch may start now."""
        return (
            not self.intake.closed
            and not _MARKED
            and self.standing.min_priority == 0
            and not self.standing.contended
            # A lane takes it (or it waits a moment behind a busy one); no retry or spooled batch first.
            and not self.dispatcher.retries
            and (self.dispatcher.may_dispatch(now) or self.dispatcher.may_wait_ahead(now))
            and not self.dispatcher.replay_due([])
        )

    def drain_limit(self, now: float, chunk: int) -> int:
        """The intake items the step classifies (``chunk``: as many as usual).  0: spans wait in the
        intake for a full express batch, or for the queued batches to go first.  With a partial batch
        queued, what completes it: that batch goes at once, and the spans after it may go express.
        (Ample: this step's dispatch sends at least one queued batch, so the queue shrinks.)"""
        if not self.intake.queue or not self.ample(now):
            self.since = None
            return chunk
        queued = self.queues.count
        if queued:
            return max(0, self.former.max_items - queued)
        return 0 if self._send(now) else chunk

    def after_dispatch(self, now: float, requests: bool) -> None:
        """The queues emptied by the step's dispatch: the intake's full batches go now.  While spans
        wait for a full batch, the scheduler is woken when there is one, or when they have waited
        ``patience``, and not by each lane's completion: nothing else waits on it then."""
        intake = self.intake
        if requests:
            self.since = None
        elif not self.queues.count and len(intake.queue) >= self.former.max_items and self.ample(now):
            self._send(now)
        intake.quiet = self.since is not None
        if intake.quiet:
            intake.wake_after = max(0, self.former.max_items - 1)

    def _send(self, now: float) -> bool:
        """Send the intake's full batches.  True: what is left (less than a batch) waits in the
        intake; False: classify it as usual (it waited ``patience``, or stopped the taker, or
        nothing is ample any more)."""
        intake, max_items = self.intake.queue, self.former.max_items
        while len(intake) >= max_items:
            items: list[Any] = []
            try:
                batch = self.take(intake, max_items, self.former.max_bytes, items)
            finally:  # taken, whatever happens: the loop's recovery counts what a failed step lost
                self.ledger.taken += len(items)
            n = len(items)
            if n:
                self.dispatcher.express(batch, self.classifier.reserve(n), now)
            if n < max_items or not self.ample(now):
                self.since = None
                return False
            self.since = now
        if not intake:
            self.since = None
            return True
        if self.since is None:
            self.since = now
        if now - self.since < self.patience:
            return True
        self.former.note_arrival(self.since)  # its window opened when it was first seen waiting
        self.since = None
        return False

    def next_deadline(self) -> float | None:
        return None if self.since is None else self.since + self.patience

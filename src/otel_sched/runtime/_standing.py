"""The pipeline's standing in the process: its memory, its CPU, and what the process-wide level says.

Owns what this pipeline reports to the process-wide coordinator (the bytes it holds, whether it
is backlogged) and what it applies from it: the memory level (a bounded intake, shorter batch
delays, classes refused and shed), the lane cap and the turns to send when contended, the CPU
batch factor, and self-tuning of the batch shape.

Threads: the scheduler thread only (``snapshot()`` reads it between two steps); the coordinator
calls the ``threads`` callable given to :meth:`Standing.join` from whichever pipeline's scheduler
reports.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..process._coordinator import Member, coordinator
from ..process._governors import BatchTuner, MemoryLevel, shape_batches
from ._intake import _intake_batch

if TYPE_CHECKING:
    from .._config import Config
    from ..scheduling._task import Task
    from ..scheduling._tenancy import Holder
    from ._builders import Lanes, Stages
    from ._dispatch import Dispatcher
    from ._intake import Intake
    from ._ledger import Ledger
    from ._metrics import Stats

# The pipeline's one logger (its name is what applications configure), whichever module logs.
_logger = logging.getLogger("otel_sched.runtime._pipeline")

_MIN_PRIORITY = {MemoryLevel.NORMAL: 0, MemoryLevel.SOFT: 1, MemoryLevel.HARD: 2}
_TUNE_EVERY = 8  # successful exports between self-tuning decisions
_COORDINATE_EVERY = 0.125  # seconds between reports to the process-wide level (its TICK is 0.25)
# ...or sooner, once the bytes held have grown this much (at least) since the last report: a rise
# towards the next memory level is reported at once, a steady state costs no locks per step.
_REPORT_STEP = 256 * 1024
_MEMBERS = itertools.count(1)  # names pipelines in the process-wide level


class Standing:
    """Reports the bytes held to the process-wide coordinator and applies its decisions."""

    dispatcher: Dispatcher  # wired by the pipeline once built (each reads the other)

    def __init__(
        self,
        owner: Any,
        config: Config,
        intake: Intake,
        holder: Holder | None,
        stages: Stages,
        lanes: Lanes,
        stats: Stats,
        ledger: Ledger,
    ) -> None:
        cfg = config
        self.owner = owner  # the pipeline: the coordinator's key for this member
        self.config = config
        self.signal = config.signal
        self.intake = intake
        self.holder = holder
        self.queues, self.former, self.cost_model = stages.queues, stages.former, stages.cost_model
        self.stats = stats
        self.ledger = ledger
        # Bytes a queued item holds beyond its encoded size (the Task, and before encoding the raw
        # SDK object), and an unclassified item beyond its payload: the budget is about RSS.
        self.task_overhead, self.raw_overhead = lanes.task_overhead, lanes.raw_overhead
        # The process-wide decisions, as of the last report.  level only changes in coordinate().
        self.level = MemoryLevel.NORMAL
        self.lane_cap = 1 << 30  # lanes this pipeline may keep busy
        self._share_bytes = 0
        self.contended = False  # another pipeline of the process is backlogged too
        self.turn_allowance = float(cfg.max_export_batch_bytes)  # bytes a turn to send allows
        self.coordinate_at = -math.inf  # next report, at the latest
        self.report_above = 0  # held bytes at which to report before coordinate_at
        self._tuner = (
            BatchTuner(
                max(1, cfg.max_export_batch_size // 8),
                cfg.max_export_batch_size,
                cfg.schedule_delay_millis / 10000.0,
                cfg.schedule_delay_millis / 1000.0,
            )
            if cfg.self_tuning
            else None
        )
        self._since_tune = 0
        # (items, delay) as self-tuning last chose them; the CPU governor's factor scales them.
        self.tuned = (cfg.max_export_batch_size, cfg.schedule_delay_millis / 1000.0)
        self._batch_factor = 1.0

    @property
    def min_priority(self) -> int:
        """The lowest class accepted at the current memory level."""
        return _MIN_PRIORITY[self.level]

    def join(self, threads: Callable[[], list[threading.Thread]], collectors: Any) -> None:
        cfg = self.config
        explicit = cfg.memory_limit_mib is not None
        # Derived: 1.5 x the memory the queue bounds let this pipeline hold, in held_bytes' terms.
        bound = (
            cfg.max_queue_bytes
            + cfg.max_queue_size * self.task_overhead
            + (self.intake.base_cap + (0 if self.holder is None else self.holder.cap)) * self.raw_overhead
        )
        budget = cfg.memory_limit_mib if explicit else 1.5 * bound / (1024 * 1024)
        coordinator().join(
            self.owner,
            Member(
                f"{self.signal.value}#{next(_MEMBERS)}",
                cfg.signal_weights.get(self.signal.value, 1.0),
                float(budget or 0.0),
                explicit,
                cfg.cpu_cap_cores,
                cfg.resource_aware,
                threads,
                collectors,
            ),
        )

    def held_bytes(self) -> int:
        """The memory this pipeline holds: queued, in flight, in the intake and held for a tenant.

        Encoded (or predicted) bytes plus the Python objects around them: a Task per queued or
        in-flight item, the raw SDK object of an item not yet encoded, and the request body a
        lane assembles from the bytes of a batch in flight (a second copy while it is sent, a
        third when the sender compresses it).
        """
        queues = self.queues
        dispatcher = self.dispatcher
        per_item = queues.mean_cost(dispatcher.flight_item)
        unclassified = len(self.intake.queue) + (0 if self.holder is None else self.holder.count)
        return int(
            queues.nbytes
            + queues.count * self.task_overhead
            + dispatcher.flight_bytes()
            + unclassified * (per_item + self.raw_overhead)
        )

    def due(self, now: float, requests: bool) -> bool:
        """Report now: its time came, a request waits, or the bytes held rose by a step."""
        return now >= self.coordinate_at or requests or self.held_bytes() >= self.report_above

    def coordinate(self, now: float) -> None:
        # The process-wide decisions change every TICK; reporting much more often only costs locks.
        self.coordinate_at = now + _COORDINATE_EVERY
        self.intake.batch = _intake_batch()  # the application may tune or stop the collector
        dispatcher = self.dispatcher
        active = self.queues.count >= self.former.max_items or dispatcher.jobs_in_flight > 0
        ready = self.former.due(self.queues, now) and dispatcher.may_dispatch(now, turns=False)
        held = self.held_bytes()
        coord = coordinator()
        member = coord.refresh(self.owner, held, active, now, ready, dispatcher.jobs_in_flight)
        if member is None:
            self.report_above = 1 << 62
            return
        self.report_above = held + max(_REPORT_STEP, member.share_bytes // 64)
        if not self.config.resource_aware:
            return
        self.contended = coord.contended(self.owner)
        self.lane_cap = coord.lane_cap(self.owner, dispatcher.pool.live_lanes())
        self._share_bytes = member.share_bytes
        if coord.batch_factor != self._batch_factor:
            self._batch_factor = coord.batch_factor
            self._shape_batches()
        level = member.level
        if level is self.level:
            return
        if level.value > self.level.value:
            _logger.warning(
                "otel-sched %s pipeline: memory level %s (%s): %s",
                self.signal.value,
                level.name,
                "budget" if member.bytes > 0 else "process",
                "only HIGH items are accepted" if level is MemoryLevel.HARD else "LOW items are refused",
            )
        self.level = level
        base_delay = self.config.schedule_delay_millis / 1000.0
        if level is MemoryLevel.NORMAL:
            self.intake.cap = self.intake.base_cap
            self._shape_batches()
        else:
            # Give memory back: an intake bounded by bytes (a quarter of the share), batches sent
            # sooner, and the classes now refused shed down to the soft level.
            per_item = self.queues.mean_cost(512.0)
            self.intake.cap = int(min(self.intake.base_cap, max(64, 0.25 * member.share_bytes / per_item)))
            self.former.delay = min(self.former.delay, base_delay / 2)
            self._shed_below(_MIN_PRIORITY[level], int(0.8 * member.share_bytes))

    def _shed_below(self, min_priority: int, target_bytes: int) -> None:
        """Shed queued items below ``min_priority``, lowest class and oldest first, to ``target_bytes``."""
        drops: list[tuple[Task, str]] = []
        held = self.held_bytes()
        for c in range(min_priority):
            for sq in self.queues:
                if sq.priority != c:
                    continue
                while sq.tasks and held > target_bytes:
                    task = self.queues.pop_head(sq)
                    held -= task.cost
                    drops.append((task, "memory_pressure"))
        if drops:
            self.ledger.drop(drops)

    def tune(self) -> None:
        """After a successful export: every few, let self-tuning choose the batch shape."""
        tuner = self._tuner
        if tuner is None or self.cost_model.samples < 3:
            return
        self._since_tune += 1
        if self._since_tune < _TUNE_EVERY:
            return
        self._since_tune = 0
        mean_item = self.stats.exported_bytes / self.stats.exported if self.stats.exported else 512.0
        self.tuned = tuner.tune(self.cost_model.base, self.cost_model.per_byte, mean_item)
        self._shape_batches()

    def _shape_batches(self) -> None:
        """Apply the tuned batch shape, scaled by the CPU factor; the delay only at the NORMAL level
        (the memory levels shorten it on their own)."""
        cfg = self.config
        items, delay = shape_batches(
            *self.tuned, self._batch_factor, cfg.max_export_batch_size, cfg.schedule_delay_millis / 1000.0
        )
        self.former.max_items = items
        if self.level is MemoryLevel.NORMAL:
            self.former.delay = delay

    def snapshot(self) -> dict[str, Any]:
        """The ``resources`` and ``tuning`` sections of ``stats()``."""
        lanes = self.dispatcher.pool.live_lanes()
        return {
            "resources": {
                "memory_level": self.level.name.lower(),
                "held_bytes": self.held_bytes(),
                "lane_cap": min(self.lane_cap, lanes),
                "intake_capacity": self.intake.cap,
                "process": coordinator().snapshot(),
            },
            "tuning": {
                "enabled": self._tuner is not None,
                "batch_items": self.former.max_items,
                "batch_delay_ms": self.former.delay * 1000.0,
                "cpu_batch_factor": self._batch_factor,
                "adjustments": 0 if self._tuner is None else self._tuner.adjustments,
            },
        }

"""The unit of work that flows through the pipeline.

A :class:`Task` wraps one span or log record once it has left the application
thread: the classify stage fills in its priority, tenant, cost and deadline,
the queues hold it, the policy orders it and the batch former hands it to a lane.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["PriorityClass", "Signal", "Task"]


class PriorityClass(enum.IntEnum):
    """Priority classes, highest value served first by priority-aware policies."""

    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: object) -> PriorityClass:
        """Accept a class, its name (any case) or its integer value."""
        if isinstance(value, PriorityClass):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(m.name.lower() for m in cls)
        raise ValueError(f"priority class {value!r} is not one of: {names}")


class Signal(str, enum.Enum):
    TRACES = "traces"
    LOGS = "logs"


class Task:
    """One queued item and what the scheduler knows about it.

    Invariants:
      * ``cost`` >= 1 (bytes, estimated or exact once encoded);
      * ``seq`` is unique and increasing per pipeline, so it orders arrival;
      * ``item`` is ``None`` once the task has left the pipeline, and from the start on the
        pre-encoded path, where ``encoded`` and ``envelope`` stand for it.
    """

    __slots__ = (
        "cost",
        "deadline",
        "depth",
        "encoded",
        "enqueued",
        "envelope",
        "item",
        "priority",
        "seq",
        "tenant",
        "trace_id",
    )

    def __init__(
        self,
        item: Any,
        priority: int,
        tenant: str,
        cost: int,
        trace_id: int,
        enqueued: float,
        deadline: float,
        seq: int,
        encoded: bytes | None = None,
        depth: int = 0,
        envelope: Any = None,
    ) -> None:
        self.item = item
        self.priority = priority
        self.tenant = tenant
        self.cost = cost
        self.trace_id = trace_id
        self.enqueued = enqueued
        self.deadline = deadline
        self.seq = seq
        self.encoded = encoded  # the item's own OTLP message bytes, on the pre-encoded fast path
        self.envelope: Any = envelope  # its (resource, scope) envelopes, on the fast path
        self.depth = depth  # > 0: produced while the pipeline was exporting (recursion control)

    def __repr__(self) -> str:
        return (
            f"Task(seq={self.seq}, priority={self.priority}, tenant={self.tenant!r}, "
            f"cost={self.cost}, enqueued={self.enqueued:.6f})"
        )

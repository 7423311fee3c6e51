"""Shared builders for the pure-object tests: tasks and queue sets without threads or clocks."""

from __future__ import annotations

from collections.abc import Callable

from otel_sched.scheduling._admission import Admission
from otel_sched.scheduling._batching import BatchFormer
from otel_sched.scheduling._policies import Policy, make_policy
from otel_sched.scheduling._queues import QueueSet
from otel_sched.scheduling._task import Task


class Rig:
    """A policy, its queue set and admission, driven with simulated time."""

    def __init__(
        self,
        policy: str,
        *,
        weights: dict[str, float] | None = None,
        max_count: int = 10_000,
        max_bytes: int = 10**9,
        aging: float = 1.0,
        quantum: int = 1000,
        predict: Callable[[int], float] | None = None,
    ) -> None:
        w = dict(weights or {})
        self.weight_of: Callable[[str], float] = lambda t: w.get(t, 1.0)
        self.policy: Policy = make_policy(
            policy, aging_seconds=aging, quantum=quantum, predict_seconds=predict
        )
        self.queues = QueueSet(
            self.weight_of,
            self.policy.activate,
            cost_buckets=self.policy.cost_buckets,
            on_compact=self.policy.compact,
        )
        self.admission = Admission(max_count, max_bytes, self.weight_of)
        self.seq = 0
        self.now = 0.0

    def task(
        self,
        priority: int = 1,
        tenant: str = "default",
        cost: int = 100,
        trace_id: int = 0,
        deadline: float | None = None,
        at: float | None = None,
    ) -> Task:
        self.seq += 1
        t = self.now if at is None else at
        return Task(
            item=f"item{self.seq}",
            priority=priority,
            tenant=tenant,
            cost=cost,
            trace_id=trace_id or self.seq,
            enqueued=t,
            deadline=t + 10.0 if deadline is None else deadline,
            seq=self.seq,
        )

    def push(self, *args: object, **kwargs: object) -> Task:
        task = self.task(*args, **kwargs)  # type: ignore[arg-type]
        self.queues.push(task)
        return task

    def admit(self, *args: object, **kwargs: object) -> tuple[Task, list[tuple[Task, str]]]:
        task = self.task(*args, **kwargs)  # type: ignore[arg-type]
        return task, self.admission.admit(task, self.queues)

    def pop(self) -> Task | None:
        sq = self.policy.select(self.now)
        if sq is None:
            return None
        task = self.queues.pop_head(sq)
        self.policy.served(sq, task, self.now)
        return task

    def drain(self, n: int | None = None, step: float = 0.0) -> list[Task]:
        out: list[Task] = []
        while n is None or len(out) < n:
            task = self.pop()
            if task is None:
                break
            out.append(task)
            self.now += step
        return out

    def former(self, max_items: int = 10, max_bytes: int = 10_000, delay: float = 1.0) -> BatchFormer:
        return BatchFormer(max_items, max_bytes, delay)

"""Express batches: a full batch of spans taken from the intake as it is, without queueing it.

When nothing is scarce -- no task queued, a lane ready, nothing pressing on memory -- every
decision the queues would make is moot: the next batch is whatever came in, in arrival order.
:func:`express_taker` builds the one call that takes such a batch: it reads each span's predicted
size (for ``max_export_batch_bytes``) and its status (for the per-class counts), and builds no
task.  :func:`express_tasks` builds the tasks afterwards, for the rare batch that is not
delivered and must be counted or spooled item by item.

Only where classification would give every span the same answer apart from the default status
rule (no tenant key, no ``inherit_priority``, the default priority rules): the taker knows that
rule and nothing else.  Pure functions; the caller (``runtime._express``) decides when.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from opentelemetry.trace import Status, StatusCode

from .._sdk_fields import FAST_SPANS
from ._task import PriorityClass, Task

__all__ = ["ExpressBatch", "Taker", "express_runs", "express_taker", "express_tasks"]

_ERROR = StatusCode.ERROR
_HIGH = int(PriorityClass.HIGH)
_NORMAL = int(PriorityClass.NORMAL)


class ExpressBatch(NamedTuple):
    items: list[Any]  # the spans, in arrival order
    nbytes: int  # their predicted size
    high: int  # how many have an ERROR status (HIGH under the default rule) ...
    high_bytes: int  # ... and their predicted size


Taker = Callable[[deque[Any], int, int, list[Any]], ExpressBatch]


def express_taker(estimate: Callable[[Any], int | None], fallback: Callable[[Any], int]) -> Taker:
    """``take(intake, max_items, max_bytes, into)``: pop up to ``max_items`` spans off the intake's
    left into the empty list ``into`` (the batch's ``items``: the caller counts what was taken even
    if something unforeseen raises half way).

    ``estimate`` is the compiled size estimate (None: ``fallback`` decides), as in classification.
    Stops before an item that is not a span of the SDK's own classes (a nested or released item,
    anything a classifier must look at), one whose estimate raises (the classifier will count it
    as malformed), and one that would take the batch past ``max_bytes`` (alone: the batch former
    sends it on its own); that item is put back where it was.  Never raises on account of an item.
    """

    def take(intake: deque[Any], max_items: int, max_bytes: int, items: list[Any]) -> ExpressBatch:
        append, popleft = items.append, intake.popleft
        nbytes = high = high_bytes = 0
        for _ in range(min(max_items, len(intake))):
            item = popleft()
            try:
                if item.__class__ not in FAST_SPANS:
                    raise LookupError  # not ours to read: the classifier's
                cost = estimate(item)
                if cost is None:
                    cost = fallback(item)
                if cost < 1:
                    cost = 1
                if nbytes + cost > max_bytes:
                    raise LookupError
                status = item._status
                code = status._status_code if status.__class__ is Status else status.status_code
            except Exception:  # noqa: BLE001 - left for the classifier, which counts what is malformed
                intake.appendleft(item)
                break
            if code is _ERROR:
                high += 1
                high_bytes += cost
            append(item)
            nbytes += cost
        return ExpressBatch(items, nbytes, high, high_bytes)

    return take


def express_runs(batch: ExpressBatch, tenant: str) -> list[tuple[int, str, int, int]]:
    """The batch as (priority, tenant, items, bytes) runs, as the batch former reports its own."""
    runs = []
    if batch.high:
        runs.append((_HIGH, tenant, batch.high, batch.high_bytes))
    normal = len(batch.items) - batch.high
    if normal:
        runs.append((_NORMAL, tenant, normal, batch.nbytes - batch.high_bytes))
    return runs


def express_tasks(
    items: Sequence[Any] | None,
    runs: Sequence[tuple[int, str, int, int]],
    classify: Callable[[Any, float], Task],
    first_seq: int,
    now: float,
) -> list[Task]:
    """The tasks of an express batch that was not delivered, to count or spool item by item.

    With the items: ``classify`` each, in order, numbered from ``first_seq`` (the numbers the batch
    was given when it left).  Without them (a lane let go of them, having delivered them after its
    call had been given up for timed out): one item-less task per item of each run.
    """
    if items is not None:
        tasks = [classify(item, now) for item in items]
        for seq, task in enumerate(tasks, first_seq):
            task.seq = seq
        return tasks
    tasks = []
    seq = first_seq
    for priority, tenant, n, nbytes in runs:
        cost = max(1, nbytes // n)
        for _ in range(n):
            tasks.append(Task(None, priority, tenant, cost, 0, now, now, seq))
            seq += 1
    return tasks

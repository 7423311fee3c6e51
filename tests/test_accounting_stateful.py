"""The accounting invariant, checked after every step of random interleavings (hypothesis stateful).

For each pipeline at every moment::

    received == exported + dropped + spooled + queued + intake + in_flight

and once shutdown() has returned, ``received == exported + dropped + spooled``.  A real pipeline
(span or log processor) runs against an exporter whose next call may succeed, return FAILURE,
raise, return None (success, as in the SDK), hang past ``export_timeout_millis`` or be slow --
or, with the spool on, against the local OTLP receiver answering, refusing (503), hanging, slow
or reporting a partial success.  Offers of several priorities and tenants interleave with
force_flush, shutdown and fork.  Besides the balance: no item is exported twice by the
pipeline, and every item an exporter saw was offered.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Status, StatusCode

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched.demo._receiver import OTLPReceiver

_IDS = itertools.count()  # item ids, unique across examples (the receiver outlives them)
_OFFERED: set[int] = set()  # every id offered before its pipeline's shutdown, in any example
_STEPS = ["ok", "failure", "raise", "none", "slow", "hang"]
_OPTIONS: dict[str, Any] = {
    "max_export_batch_size": 8,
    "schedule_delay_millis": 5,
    "export_timeout_millis": 250,
    "max_queue_size": 64,
    "tenant_key": "tenant",
}
_SETTINGS = settings(
    deadline=None,
    stateful_step_count=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=False,
)


def _id_of(item: Any) -> int:
    attributes = item.attributes if hasattr(item, "name") else item.log_record.attributes
    return int(attributes["id"])


class ScriptedExporter:
    """A SpanExporter / LogRecordExporter whose next calls follow a script (default: success)."""

    def __init__(self, signal_name: str) -> None:
        self.result = SpanExportResult if signal_name == "traces" else LogRecordExportResult
        self.script: deque[str] = deque()
        self.gate = threading.Event()  # what a "hang" waits for: past the export timeout, until released
        self.lock = threading.Lock()
        self.seen: list[int] = []  # ids of every item in every call
        self.accepted: list[int] = []  # ids in calls that returned success (None included)

    def export(self, batch: Sequence[Any]) -> Any:
        ids = [_id_of(item) for item in batch]
        with self.lock:
            self.seen.extend(ids)
            step = self.script.popleft() if self.script else "ok"
            gate = self.gate
        if step == "hang":
            gate.wait(60)
            return self.result.FAILURE  # late: the pipeline counted it as timed out already
        if step == "slow":
            time.sleep(0.02)
        if step == "raise":
            raise RuntimeError("scripted failure")
        if step == "failure":
            return self.result.FAILURE
        with self.lock:
            self.accepted.extend(ids)
        return None if step == "none" else self.result.SUCCESS

    def release(self) -> None:
        with self.lock:
            self.gate.set()
            self.gate = threading.Event()

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Accounting(RuleBasedStateMachine):
    """Spool off: a scripted exporter on the SDK exporter path."""

    receiver: ClassVar[OTLPReceiver | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.processor: Any = None
        self.provider: Any = None
        self.signal = "traces"
        self.offered: set[int] = set()
        self.emitted = 0
        self.shut = False
        self.forks = 0
        self.spool_dir: str | None = None
        self.exporter: ScriptedExporter | None = None

    # -- setup ----------------------------------------------------------------------------------------

    def make_exporter(self, signal_name: str) -> Any:
        self.exporter = ScriptedExporter(signal_name)
        return self.exporter

    # A shutdown timeout shorter than the export timeout gives up on a batch still in flight.
    # Without a tenant key, spans on the SDK exporter path may go in express batches (never queued).
    @initialize(
        signal_name=st.sampled_from(["traces", "logs"]),
        shutdown_millis=st.sampled_from([150, 1500]),
        tenants=st.booleans(),
    )
    def start(self, signal_name: str, shutdown_millis: int, tenants: bool) -> None:
        self.setup(signal_name, shutdown_millis, tenants)

    def setup(self, signal_name: str, shutdown_millis: int, tenants: bool) -> None:
        self.signal = signal_name
        exporter = self.make_exporter(signal_name)
        resource = Resource.create({"service.name": "accounting"})
        options = {**_OPTIONS, "shutdown_timeout_millis": shutdown_millis}
        if not tenants:
            del options["tenant_key"]
        if self.spool_dir is not None:  # small requests: what is spooled at once spans several
            options.update(spool_dir=self.spool_dir, max_export_batch_bytes=2048)
        if signal_name == "traces":
            self.processor = ScheduledSpanProcessor(exporter, **options)
            self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self.provider.add_span_processor(self.processor)
        else:
            self.processor = ScheduledLogRecordProcessor(exporter, **options)
            self.provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            self.provider.add_log_record_processor(self.processor)

    def emit(self, n: int, high: bool, tenant: str) -> list[int]:
        ids = [next(_IDS) for _ in range(n)]
        if self.signal == "traces":
            tracer = self.provider.get_tracer("accounting")
            for i in ids:
                with tracer.start_as_current_span(f"op{i}", attributes={"id": i, "tenant": tenant}) as span:
                    if high:
                        span.set_status(Status(StatusCode.ERROR))
        else:
            logger = self.provider.get_logger("accounting")
            severity = SeverityNumber.ERROR if high else SeverityNumber.INFO
            for i in ids:
                logger.emit(body=f"msg{i}", severity_number=severity, attributes={"id": i, "tenant": tenant})
        return ids

    # -- rules ------------------------------------------------------------------------------------------

    @rule(
        n=st.integers(1, 40),
        high=st.booleans(),
        tenant=st.sampled_from(["a", "b", "noisy"]),
        steps=st.lists(st.sampled_from(_STEPS), max_size=3),
    )
    def offer(self, n: int, high: bool, tenant: str, steps: list[str]) -> None:
        """Items of one priority and tenant, after scripting how the next export calls go."""
        self.script(steps)
        ids = self.emit(n, high, tenant)
        self.emitted += n
        if not self.shut:
            self.offered.update(ids)
            _OFFERED.update(ids)

    @rule(n=st.integers(8, 40), steps=st.lists(st.sampled_from(_STEPS), max_size=3))
    def burst(self, n: int, steps: list[str]) -> None:
        """Items offered while the scheduler is held between steps: its next step finds whole batches
        in the intake (spans without a tenant key go in express batches then)."""
        self.script(steps)
        with self.processor._pipeline.loop.step_lock:
            ids = self.emit(n, False, "a")
        self.emitted += n
        if not self.shut:
            self.offered.update(ids)
            _OFFERED.update(ids)

    def script(self, steps: list[str]) -> None:
        assert self.exporter is not None
        with self.exporter.lock:
            self.exporter.script.extend(steps)

    @rule()
    def release_hangs(self) -> None:
        assert self.exporter is not None
        self.exporter.release()

    @rule()
    def force_flush(self) -> None:
        self.processor.force_flush(1000)

    @precondition(lambda self: not self.shut and self.emitted > 0)  # offers after it are only rejected
    @rule()
    def shutdown(self) -> None:
        self.processor.shutdown()
        self.shut = True

    # Not with a spool: a forked child needs its own spool directory (test_durability covers that).
    @precondition(
        lambda self: hasattr(os, "fork") and not self.shut and self.forks < 1 and not self.spool_dir
    )
    @rule(n=st.integers(1, 10))
    def fork(self, n: int) -> None:
        """The child rebuilt its pipeline: its own items balance, and it exits within bounds."""
        self.forks += 1
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(20)  # a deadlocked child is killed, and the parent sees it
                self.emit(n, False, "child")
                self.processor.force_flush(1000)
                self.processor.shutdown()
                balance = self.processor.stats()["balance"]
                settled = balance["held"] == 0 and balance["received"] == n
                code = 0 if balance["balanced"] and settled else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    # -- the invariant ------------------------------------------------------------------------------------

    def seen(self) -> list[int]:
        assert self.exporter is not None
        with self.exporter.lock:
            return list(self.exporter.seen)

    @invariant()
    def balanced(self) -> None:
        if self.processor is None:
            return
        balance = self.processor.stats()["balance"]
        assert balance["balanced"], balance
        if self.shut:
            assert balance["held"] == 0, balance
        assert set(self.seen()) <= _OFFERED, "an exporter saw an item that was never offered"

    def exported_at_most_once(self, balance: dict[str, Any]) -> None:
        assert self.exporter is not None
        with self.exporter.lock:
            accepted = list(self.exporter.accepted)
        duplicates = [i for i, n in Counter(accepted).items() if n > 1]
        assert not duplicates, f"exported twice: {duplicates[:5]}"
        # A call that succeeded after its timeout was counted as dropped: never the other way round.
        assert balance["exported"] <= len(accepted)

    def teardown(self) -> None:
        if self.processor is None:
            return
        try:
            if self.exporter is not None:
                self.exporter.release()
            self.processor.shutdown()
            balance = self.processor.stats()["balance"]
            assert balance["balanced"] and balance["held"] == 0, balance
            assert balance["received"] == self.emitted, balance
            self.exported_at_most_once(balance)
        finally:
            if self.exporter is not None:
                self.exporter.release()
            if self.spool_dir is not None:
                shutil.rmtree(self.spool_dir, ignore_errors=True)


class SpooledAccounting(Accounting):
    """Spool on: the stock OTLP/HTTP exporter (pre-encoded path) against the local receiver."""

    def __init__(self) -> None:
        super().__init__()
        self.spool_dir = tempfile.mkdtemp(prefix="otel-sched-acct-")

    def make_exporter(self, signal_name: str) -> Any:
        rx = self.rx()
        rx.set_faults(latency_s=0.0, down=False, partial_rejected=0)
        if signal_name == "traces":
            return OTLPSpanExporter(endpoint=rx.traces_url, timeout=2)
        return OTLPLogExporter(endpoint=rx.logs_url, timeout=2)

    def rx(self) -> OTLPReceiver:
        assert self.receiver is not None
        return self.receiver

    def script(self, steps: list[str]) -> None:
        """The collector's behaviour for the next requests (the exporter itself is stock)."""
        for step in steps:
            if step == "ok" or step == "none":
                self.rx().set_faults(latency_s=0.0, down=False, partial_rejected=0)
            elif step in ("failure", "raise"):
                self.rx().set_faults(down=True)  # answered 503
            elif step == "slow":
                self.rx().set_faults(latency_s=0.02, down=False)
            else:
                self.rx().set_faults(latency_s=1.0, down=False)  # past export_timeout_millis
        if steps and steps[-1] == "none":
            self.rx().set_faults(partial_rejected=1)  # a partial success

    @rule()
    def release_hangs(self) -> None:
        self.rx().set_faults(latency_s=0.0, down=False, partial_rejected=0)

    def seen(self) -> list[int]:
        rx = self.rx()
        items = rx.spans() if self.signal == "traces" else rx.logs()
        return [int(item.attributes["id"]) for item in items]

    def exported_at_most_once(self, balance: dict[str, Any]) -> None:
        # At least once over the network (a retried or spooled batch may arrive twice), but every
        # item the collector got was offered (checked by the invariant) and counts once here.
        assert balance["exported"] + balance["dropped"] + balance["spooled"] == balance["received"]


class ExpressAccounting(Accounting):
    """Spans without a tenant key: what a step finds in whole batches in the intake goes express."""

    express_items: ClassVar[int] = 0  # over every example: proof that the machine drove express batches

    @initialize(shutdown_millis=st.sampled_from([150, 1500]))
    def start(self, shutdown_millis: int) -> None:  # type: ignore[override]  # spans only, no tenant key
        self.setup("traces", shutdown_millis, tenants=False)

    def teardown(self) -> None:
        if self.processor is not None:
            ExpressAccounting.express_items += self.processor.stats()["express_items"]
        super().teardown()


def test_the_balance_holds_under_any_interleaving() -> None:
    run_state_machine_as_test(Accounting, settings=settings(_SETTINGS, max_examples=40))


def test_the_balance_holds_with_express_batches() -> None:
    ExpressAccounting.express_items = 0
    run_state_machine_as_test(ExpressAccounting, settings=settings(_SETTINGS, max_examples=25))
    assert ExpressAccounting.express_items > 0


def test_the_balance_holds_with_the_spool_on(receiver: OTLPReceiver) -> None:
    Accounting.receiver = receiver
    try:
        run_state_machine_as_test(SpooledAccounting, settings=settings(_SETTINGS, max_examples=12))
    finally:
        Accounting.receiver = None
        receiver.set_faults(latency_s=0.0, down=False, partial_rejected=0)


@pytest.mark.parametrize("signal_name", ["traces", "logs"])
def test_the_scripted_exporter_follows_its_script(signal_name: str) -> None:
    exporter = ScriptedExporter(signal_name)
    exporter.script.extend(["failure", "none", "ok"])
    assert exporter.export([]).name == "FAILURE"
    assert exporter.export([]) is None
    assert exporter.export([]).name == "SUCCESS"

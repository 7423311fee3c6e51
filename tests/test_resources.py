"""Resource awareness: cgroup readers, the psutil probe, thread CPU clocks and the pure governors."""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from otel_sched.process import _probe as probe_module
from otel_sched.process._governors import (
    BatchTuner,
    CpuAdvice,
    CpuGovernor,
    CpuMeter,
    MemoryGovernor,
    MemoryLevel,
    cpu_saturated,
)
from otel_sched.process._probe import (
    ResourceProbe,
    ResourceSample,
    read_cgroup_cpu_limit,
    read_cgroup_memory_limit,
    read_cgroup_memory_usage,
    thread_cpu_seconds,
)

from ._exporters import wait_until

LOGGER = "otel_sched.process._probe"


def _tree(root: Path, files: dict[str, str]) -> str:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return str(root)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# -- cgroups ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "limit", "usage"),
    [
        pytest.param(
            {
                "memory.max": "536870912\n",
                "memory.current": "300000\n",
                "memory.stat": "anon 5\ninactive_file 100000\n",
            },
            536870912,
            200000,
            id="v2-limited-working-set",
        ),
        pytest.param({"memory.max": "max\n", "memory.current": "4096\n"}, None, 4096, id="v2-unlimited"),
        pytest.param(
            {
                "memory/memory.limit_in_bytes": "1073741824\n",
                "memory/memory.usage_in_bytes": "5000\n",
                "memory/memory.stat": "cache 9\ntotal_inactive_file 1000\n",
            },
            1073741824,
            4000,
            id="v1-limited",
        ),
        pytest.param(
            {"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "7\n"},
            None,
            7,
            id="v1-unlimited",
        ),
        pytest.param({}, None, None, id="no-cgroup"),
        # v2 wins over v1 leftovers in a hybrid tree
        pytest.param(
            {"memory.max": "1000", "memory.current": "10", "memory/memory.limit_in_bytes": "5"},
            1000,
            10,
            id="v2-before-v1",
        ),
    ],
)
def test_cgroup_memory(tmp_path: Path, files: dict[str, str], limit: int | None, usage: int | None) -> None:
    root = _tree(tmp_path, files)
    assert read_cgroup_memory_limit(root) == limit
    assert read_cgroup_memory_usage(root) == usage


@pytest.mark.parametrize(
    ("name", "content"),
    [("memory.max", "lots of memory"), ("memory/memory.limit_in_bytes", "-5"), ("memory.current", "12kB")],
)
def test_garbage_cgroup_file_warns_once_naming_it_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, content: str
) -> None:
    root = _tree(tmp_path, {name: content})
    read = read_cgroup_memory_usage if name == "memory.current" else read_cgroup_memory_limit
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert read(root) is None
        assert read(root) is None
    [message] = _warnings(caplog)
    assert str(tmp_path / name) in message
    assert content in message


def test_unparseable_memory_stat_falls_back_to_raw_usage(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"memory.current": "500", "memory.stat": "inactive_file lots\n"})
    assert read_cgroup_memory_usage(root) == 500


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_limit(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    assert read_cgroup_cpu_limit(_tree(tmp_path, files)) == cores


# -- the probe ----------------------------------------------------------------------------------------

SystemTimes = namedtuple("SystemTimes", "user system idle iowait guest")
ProcessTimes = namedtuple("ProcessTimes", "user system children_user children_system")
MemoryInfo = namedtuple("MemoryInfo", "rss vms")


class FakeError(Exception):
    """Plays psutil.Error."""


class FakeAccessDenied(FakeError):
    pass


class FakeProcess:
    def __init__(self, owner: FakePsutil) -> None:
        self._owner = owner
        self.pid = os.getpid()

    def memory_info(self) -> MemoryInfo:
        self._owner.maybe_fail("memory_info")
        return MemoryInfo(self._owner.rss, self._owner.rss * 2)

    def cpu_times(self) -> ProcessTimes:
        self._owner.maybe_fail("cpu_times")
        user = self._owner.process_cpu * 0.75
        return ProcessTimes(user, self._owner.process_cpu - user, 99.0, 99.0)


class FakePsutil:
    """The slice of psutil the probe uses; tests move its counters by hand."""

    Error = FakeError

    def __init__(self) -> None:
        self.rss = 50_000_000
        self.process_cpu = 10.0
        self.busy = 100.0
        self.idle = 300.0
        self.cpus = 4
        self.fail: BaseException | None = None
        self.fail_in = "memory_info"
        self.made_for: list[int] = []

    def maybe_fail(self, where: str) -> None:
        if self.fail is not None and where == self.fail_in:
            raise self.fail

    def Process(self) -> FakeProcess:
        self.made_for.append(os.getpid())
        return FakeProcess(self)

    def cpu_times(self) -> SystemTimes:
        self.maybe_fail("system_cpu_times")
        # guest time is already inside user on Linux; the probe must not count it twice
        return SystemTimes(self.busy * 0.5, self.busy * 0.5, self.idle * 0.9, self.idle * 0.1, 7.0)

    def cpu_count(self) -> int:
        return self.cpus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _probe(tmp_path: Path, fake: Any, **kwargs: Any) -> ResourceProbe:
    root = _tree(tmp_path, {"memory.max": "1000000000", "memory.current": "400000000"})
    return ResourceProbe(psutil_module=fake, cgroup_root=root, **kwargs)


def test_probe_samples_memory_and_cpu_deltas(tmp_path: Path) -> None:
    fake, clock = FakePsutil(), Clock()
    probe = _probe(tmp_path, fake, clock=clock)
    assert probe.enabled
    assert probe.latest() is None
    first = probe.sample_now()
    assert first == ResourceSample(
        rss=50_000_000,
        container_limit=1_000_000_000,
        container_usage=400_000_000,
        process_cpu=None,  # no interval yet
        system_cpu=None,
        cpu_count=4,
        at=1000.0,
    )
    clock.now += 2.0
    fake.process_cpu += 3.0  # 1.5 cores over 2 s
    fake.busy += 6.0
    fake.idle += 2.0  # 6 of 8 CPU-seconds busy
    fake.rss = 60_000_000
    second = probe.sample_now()
    assert second.process_cpu == pytest.approx(1.5)
    assert second.system_cpu == pytest.approx(0.75)
    assert second.rss == 60_000_000
    assert probe.latest() is second


def test_cpu_count_is_lowered_to_the_container_quota(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"cpu.max": "50000 100000"})
    probe = ResourceProbe(psutil_module=FakePsutil(), cgroup_root=root)
    assert probe.sample_now().cpu_count == 1


def test_without_psutil_the_probe_is_off_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        probe = _probe(tmp_path, None)
        probe.start()
        sample = probe.sample_now()
        probe.stop()
    assert not probe.enabled
    assert probe.latest() is None
    # cgroup figures need no psutil; the psutil ones are simply missing
    assert sample.container_limit == 1_000_000_000
    assert sample.rss is None and sample.process_cpu is None
    [message] = _warnings(caplog)
    assert "psutil_module=None" in message


def test_psutil_that_cannot_be_imported_turns_the_probe_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # makes `import psutil` raise ImportError
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        probe = ResourceProbe()
    assert not probe.enabled
    [message] = _warnings(caplog)
    assert "cannot be imported" in message


@pytest.mark.parametrize(
    ("error", "where"),
    [
        (FakeAccessDenied("pid 1"), "memory_info"),
        (NotImplementedError("no cpu_times here"), "cpu_times"),
        (OSError(13, "Permission denied"), "system_cpu_times"),
    ],
)
def test_psutil_that_raises_turns_the_probe_off_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: BaseException, where: str
) -> None:
    fake = FakePsutil()
    probe = _probe(tmp_path, fake)
    assert probe.sample_now().rss is not None
    assert probe.latest() is not None
    fake.fail, fake.fail_in = error, where
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            sample = probe.sample_now()
    assert sample.rss is None and sample.process_cpu is None
    assert not probe.enabled
    assert probe.latest() is None
    [message] = _warnings(caplog)
    assert type(error).__name__ in message and "disabled" in message


def _probe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "otel-sched-resource-probe"]


def test_probe_thread_starts_samples_and_stop_joins(tmp_path: Path) -> None:
    fake = FakePsutil()
    probe = _probe(tmp_path, fake, interval=0.01)
    before = set(_probe_threads())
    probe.start()
    probe.start()  # idempotent
    [thread] = [t for t in _probe_threads() if t not in before]
    assert thread.daemon
    assert wait_until(lambda: probe.latest() is not None)
    first = probe.latest()
    fake.rss += 1
    assert wait_until(lambda: probe.latest() is not first)  # keeps sampling
    probe.stop()
    assert not thread.is_alive()
    probe.stop()  # idempotent


def test_probe_thread_ends_when_psutil_starts_failing(tmp_path: Path) -> None:
    fake = FakePsutil()
    probe = _probe(tmp_path, fake, interval=0.01)
    before = set(_probe_threads())
    probe.start()
    [thread] = [t for t in _probe_threads() if t not in before]
    assert wait_until(lambda: probe.latest() is not None)
    fake.fail = FakeAccessDenied("gone")
    assert wait_until(lambda: not thread.is_alive())
    assert probe.latest() is None
    probe.stop()


def test_an_abandoned_probe_is_collected_and_its_thread_ends(tmp_path: Path) -> None:
    probe = _probe(tmp_path, FakePsutil(), interval=0.01)
    before = set(_probe_threads())
    probe.start()
    [thread] = [t for t in _probe_threads() if t not in before]
    del probe
    gc.collect()
    assert wait_until(lambda: not thread.is_alive())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork_the_child_restarts_the_probe_with_its_own_process(tmp_path: Path) -> None:
    fake = FakePsutil()
    probe = _probe(tmp_path, fake, interval=0.01)
    probe.start()
    assert wait_until(lambda: probe.latest() is not None)
    parent = os.getpid()
    assert fake.made_for == [parent]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # latest() restarts the thread; the psutil.Process used is made for the child's pid
            ok = wait_until(lambda: probe.latest() is not None, timeout=5.0)
            code = 0 if ok and fake.made_for[-1] == os.getpid() != parent else 2
            probe.stop()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fake.made_for == [parent]  # the parent is untouched
    probe.stop()


# -- thread CPU -------------------------------------------------------------------------------------

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread CPU clocks: Linux")


@linux_only
def test_thread_clock_id_is_the_one_glibc_builds() -> None:
    ours = probe_module._linux_thread_clock(threading.get_native_id())
    assert ours == time.pthread_getcpuclockid(threading.get_ident())


@linux_only
def test_thread_cpu_seconds_grows_while_a_thread_burns_and_skips_ended_threads() -> None:
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(1000))

    burner = threading.Thread(target=burn, daemon=True)
    never_started = threading.Thread(target=burn)
    burner.start()
    try:
        first = thread_cpu_seconds([burner, never_started])
        assert wait_until(lambda: thread_cpu_seconds([burner]) > first)
    finally:
        stop.set()
        burner.join()
    assert thread_cpu_seconds([burner, never_started]) == 0.0


def test_thread_cpu_seconds_where_unsupported_is_zero_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(probe_module, "_THREAD_CLOCKS", False)
    monkeypatch.setattr(probe_module, "_thread_cpu_noted", False)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert thread_cpu_seconds([threading.current_thread()]) == 0.0
        assert thread_cpu_seconds([threading.current_thread()]) == 0.0
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_cpu_meter() -> None:
    meter = CpuMeter(alpha=0.5)
    steps = [
        # (cpu seconds total, now) -> smoothed share
        ((10.0, 100.0), 0.0),  # baseline only
        ((10.5, 101.0), 0.5),  # first reading taken as is
        ((12.0, 102.0), 1.0),  # raw 1.5: 0.5 * 1.5 + 0.5 * 0.5
        ((12.0, 102.0), 1.0),  # no time passed: unchanged
        ((3.0, 103.0), 1.0),  # a thread ended, the total fell: rebase, no reading
        ((3.0, 104.0), 0.5),  # raw 0 from the rebased point
    ]
    for (cpu, now), share in steps:
        assert meter.update(cpu, now) == pytest.approx(share)
    assert meter.readings == 3
    with pytest.raises(ValueError, match="alpha"):
        CpuMeter(alpha=0.0)


# -- memory -------------------------------------------------------------------------------------------


def _sample(
    *,
    rss: int | None = None,
    limit: int | None = None,
    usage: int | None = None,
    pcpu: float | None = None,
    scpu: float | None = None,
    cpus: int = 4,
) -> ResourceSample:
    return ResourceSample(rss, limit, usage, pcpu, scpu, cpus, 0.0)


N, S, H = MemoryLevel.NORMAL, MemoryLevel.SOFT, MemoryLevel.HARD


def test_memory_levels_from_the_pipeline_bytes_with_hysteresis() -> None:
    governor = MemoryGovernor(1000)  # soft 800, hard 950; leave at 760 / 902.5
    steps = [
        (0, N),
        (799, N),
        (800, S),
        (949, S),
        (950, H),
        (903, H),
        (902, S),
        (761, S),
        (759, N),
        (1200, H),
    ]
    for pipeline_bytes, level in steps:
        assert governor.level(pipeline_bytes, None) is level, pipeline_bytes
    assert governor.reason == "pipeline"
    assert governor.transitions == 5


def test_memory_levels_from_container_pressure_with_hysteresis() -> None:
    governor = MemoryGovernor(10**9)  # the pipeline itself holds nothing
    # soft at 0.9 of the limit, hard at 0.95; leave at 0.855 / 0.9025
    steps = [
        (_sample(rss=899, limit=1000), N),
        (_sample(rss=900, limit=1000), S),
        (_sample(rss=100, usage=950, limit=1000), H),  # the container's working set counts too
        (_sample(rss=903, limit=1000), H),
        (_sample(rss=902, limit=1000), S),
        (_sample(rss=856, limit=1000), S),
        (_sample(rss=854, limit=1000), N),
        (_sample(rss=10**6), N),  # no container limit: nothing to compare with
        (_sample(rss=None, usage=None, limit=1000), N),
    ]
    for sample, level in steps:
        assert governor.level(0, sample) is level, sample
        if level is not N:
            assert governor.reason == "container"
    assert governor.reason is None


def test_container_pressure_and_pipeline_bytes_are_independent() -> None:
    governor = MemoryGovernor(1000)
    assert governor.level(850, _sample(rss=960, limit=1000)) is H
    assert governor.reason == "container"
    # the container recovers; the pipeline's own SOFT remains, its hysteresis is its own
    assert governor.level(850, _sample(rss=100, limit=1000)) is S
    assert governor.reason == "pipeline"
    # pipeline at 0.93 never entered HARD itself, so the container's HARD does not linger through it
    governor.level(0, _sample(rss=960, limit=1000))
    assert governor.level(930, _sample(rss=100, limit=1000)) is S


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget_bytes": 1000, "minimum_bytes": 4096}, "at least 4096 bytes, got 1000"),
        ({"budget_bytes": -1}, "at least 1 bytes, got -1"),
        ({"budget_bytes": 0}, "got 0"),
        ({"budget_bytes": 1000, "soft_fraction": 0.96}, "soft_fraction"),
        ({"budget_bytes": 1000, "hard_fraction": 1.5}, "hard_fraction"),
        ({"budget_bytes": 1000, "container_headroom": 1.0}, "container_headroom"),
    ],
)
def test_memory_governor_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryGovernor(**kwargs)


# -- CPU -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "saturated"),
    [
        (None, False),
        (_sample(pcpu=None, scpu=1.0), False),
        (_sample(pcpu=0.95, scpu=0.95), True),
        (_sample(pcpu=0.95, scpu=0.4), False),  # spare cores elsewhere on the machine
        (_sample(pcpu=0.5, scpu=1.0), False),  # the machine is busy, this process is not
        (_sample(pcpu=0.96, scpu=None, cpus=1), True),
        (_sample(pcpu=0.94, scpu=1.0, cpus=1), False),
    ],
)
def test_cpu_saturation_rule(sample: ResourceSample | None, saturated: bool) -> None:
    assert cpu_saturated(sample) is saturated


SAT = _sample(pcpu=1.0, scpu=0.95)
IDLE = _sample(pcpu=0.3, scpu=0.2)
MID = _sample(pcpu=0.7, scpu=0.7)
FULL = (1.0, 1.0)


def _factors(advice: CpuAdvice) -> tuple[float, float]:
    return (round(advice.max_lanes_factor, 6), round(advice.batch_factor, 6))


def test_cpu_governor_reduces_when_saturated_and_over_cap_then_releases_when_idle() -> None:
    governor = CpuGovernor(cap_cores=0.25)
    steps = [
        # (pipeline share, sample) -> (lanes factor, batch factor)
        ((0.5, SAT), FULL),  # one sample is not enough to change direction
        ((0.5, SAT), (0.5, 2.0)),  # confirmed: lanes x cap/share, batch x share/cap
        ((0.5, SAT), (0.25, 4.0)),  # still over the cap at the reduced rate: further
        ((1.0, SAT), (0.1, 4.0)),  # floors: min_lanes_factor, max_batch_factor
        ((0.2, SAT), (0.1, 4.0)),  # within the cap: hold
        ((0.2, MID), (0.1, 4.0)),  # neither saturated nor idle: hold
        ((0.2, IDLE), (0.1, 4.0)),
        ((0.2, IDLE), FULL),  # idle confirmed: full speed to drain backlogs
    ]
    for (share, sample), factors in steps:
        advice = governor.advise(share, sample)
        assert _factors(advice) == factors, (share, sample)


def test_cpu_governor_does_not_flap() -> None:
    governor = CpuGovernor(cap_cores=0.25)
    for sample in [SAT, IDLE] * 5 + [SAT, MID, SAT, None]:
        assert _factors(governor.advise(0.5, sample)) == FULL
    governor.advise(0.5, SAT)
    reduced = _factors(governor.advise(0.5, SAT))
    assert reduced == (0.5, 2.0)
    for sample in [IDLE, SAT] * 5:
        # saturated but within the cap: hold; the lone idle samples never release
        assert _factors(governor.advise(0.2, sample)) == reduced


def test_cpu_governor_without_samples_gives_full_speed() -> None:
    assert CpuGovernor().advise(3.0, None) == CpuAdvice(1.0, 1.0)
    with pytest.raises(ValueError, match="cap_cores"):
        CpuGovernor(cap_cores=0.0)


# -- batch tuning -----------------------------------------------------------------------------------


def test_batch_tuner_grows_to_max_when_overhead_dominates() -> None:
    tuner = BatchTuner(min_items=10, max_items=512, min_delay=0.001, max_delay=5.0, initial_items=10)
    sizes = [tuner.tune(base=0.05, per_byte=1e-8, mean_item_bytes=500)[0] for _ in range(8)]
    assert sizes == [20, 40, 80, 160, 320, 512, 512, 512]  # at most x2 per step, then the bound
    items, delay = tuner.items, tuner.delay
    assert delay == pytest.approx(0.05 + 5e-6 * 512)  # about one export of such a batch
    assert tuner.adjustments == 6
    assert tuner.last is not None
    assert (tuner.last.items, tuner.last.target_items) == (items, 512)
    assert tuner.last.overhead_share > 0.9


def test_batch_tuner_shrinks_when_bytes_dominate_and_respects_bounds() -> None:
    tuner = BatchTuner(min_items=1, max_items=512, min_delay=0.0005, max_delay=5.0)
    # 100 us per item, 100 us per request: overhead <= 10 % needs n >= 10
    sizes = [tuner.tune(base=1e-4, per_byte=1e-7, mean_item_bytes=1000)[0] for _ in range(8)]
    assert sizes == [256, 128, 64, 32, 16, 10, 10, 10]
    assert tuner.delay == pytest.approx(1e-4 + 1e-4 * 10)
    assert tuner.last is not None and tuner.last.overhead_share == pytest.approx(1 / 11)
    floored = BatchTuner(min_items=20, max_items=512, min_delay=0.002, max_delay=5.0)
    for _ in range(10):
        floored.tune(base=1e-4, per_byte=1e-7, mean_item_bytes=1000)
    assert floored.items == 20
    assert floored.delay == pytest.approx(0.0021)


@pytest.mark.parametrize(
    ("base", "per_byte", "item_bytes", "expected"),
    [
        (0.001, 0.0, 500, (64, 0.01)),  # no per-byte cost at all: the largest batch; delay floor
        (30.0, 1e-8, 500, (64, 1.0)),  # huge overhead: delay ceiling
        (math.nan, 1e-8, 500, (64, 0.5)),  # invalid fits leave the decision as it is
        (0.01, -1.0, 500, (64, 0.5)),
        (0.01, 1e-8, 0, (64, 0.5)),
    ],
)
def test_batch_tuner_edges(
    base: float, per_byte: float, item_bytes: float, expected: tuple[int, float]
) -> None:
    tuner = BatchTuner(min_items=8, max_items=64, min_delay=0.01, max_delay=1.0, initial_delay=0.5)
    assert tuner.tune(base, per_byte, item_bytes) == expected


def test_batch_tuner_ignores_small_changes() -> None:
    tuner = BatchTuner(min_items=1, max_items=1000, min_delay=0.0, max_delay=1.0, initial_items=100)
    per_item = 1e-4
    tuner.tune(base=per_item * 100 * 0.1, per_byte=per_item / 100, mean_item_bytes=100)  # target 100
    adjustments = tuner.adjustments
    for target in (95, 105, 108):  # within 10 %
        tuner.tune(base=per_item * target * 0.1, per_byte=per_item / 100, mean_item_bytes=100)
    assert tuner.items == 100
    assert tuner.adjustments == adjustments


@pytest.mark.parametrize(
    "args",
    [(0, 10, 0.0, 1.0), (20, 10, 0.0, 1.0), (1, 10, 2.0, 1.0), (1, 10, -1.0, 1.0)],
)
def test_batch_tuner_validation(args: tuple[int, int, float, float]) -> None:
    with pytest.raises(ValueError):
        BatchTuner(*args)

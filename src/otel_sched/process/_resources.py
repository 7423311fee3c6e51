"""Resource awareness: probes (cgroups, psutil, thread CPU clocks) and pure governors.

Two kinds of objects live here:

* **Probes** read the machine: :func:`read_cgroup_memory_limit` and friends,
  :func:`thread_cpu_seconds`, and :class:`ResourceProbe`, which samples process memory
  and CPU on its own daemon thread so that neither the application threads nor the
  scheduler ever wait on psutil.  Any failure turns a probe off with one warning;
  scheduling then continues without the information, never with an exception.
* **Governors** turn samples into decisions and are pure (no clock, thread or I/O; the
  caller passes the sample and ``now``), so they are tested with scenario tables:
  :class:`CpuMeter` (the pipeline's CPU share), :class:`MemoryGovernor` (NORMAL / SOFT /
  HARD, like the Collector's ``memory_limiter``), :class:`CpuGovernor` (fewer lanes,
  bigger batches when the process is CPU-bound) and :class:`BatchTuner` (batch size and
  delay from the cost model's fit).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..runtime._workers import register_thread, unregister_thread

__all__ = [
    "BatchDecision",
    "BatchTuner",
    "CpuAdvice",
    "CpuGovernor",
    "CpuMeter",
    "MemoryGovernor",
    "MemoryLevel",
    "ResourceProbe",
    "ResourceSample",
    "cpu_saturated",
    "read_cgroup_cpu_limit",
    "read_cgroup_memory_limit",
    "read_cgroup_memory_usage",
    "thread_cpu_seconds",
]

_logger = logging.getLogger(__name__)

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
_V1_UNLIMITED = 2**60  # v1 reports "no limit" as PAGE_COUNTER_MAX pages, about 2**63


# -- cgroups ------------------------------------------------------------------------------------------

# Paths already warned about: the probe re-reads every interval, a broken file must not flood the log.
_warned_files: set[str] = set()
_warned_lock = threading.Lock()
_WARNED_MAX = 256


def _warn_file_once(path: str, content: str) -> None:
    with _warned_lock:
        if path in _warned_files:
            return
        if len(_warned_files) >= _WARNED_MAX:
            _warned_files.clear()
        _warned_files.add(path)
    _logger.warning("otel-sched: cannot parse cgroup file %s (content %r); ignoring it", path, content[:200])


def _read_text(path: str) -> str | None:
    """The file's stripped text; None when it does not exist (not this cgroup version)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096).strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn_file_once(path, f"<unreadable: {exc}>")
        return None


def _parse_int(path: str, text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        _warn_file_once(path, text)
        return None
    if value < 0:
        _warn_file_once(path, text)
        return None
    return value


def read_cgroup_memory_limit(root: str = DEFAULT_CGROUP_ROOT) -> int | None:
    """The memory limit of the cgroup at ``root`` in bytes; None when unlimited or unknown.

    ``root`` must be the process's own cgroup directory, which it is inside a container
    with a cgroup namespace (the usual case).  v2 ``memory.max`` is read first, then v1
    ``memory/memory.limit_in_bytes``.
    """
    v2 = os.path.join(root, "memory.max")
    text = _read_text(v2)
    if text is not None:
        return None if text == "max" else _parse_int(v2, text)
    v1 = os.path.join(root, "memory", "memory.limit_in_bytes")
    text = _read_text(v1)
    if text is None:
        return None
    value = _parse_int(v1, text)
    return None if value is None or value >= _V1_UNLIMITED else value


def _inactive_file(path: str, key: str) -> int:
    text = _read_text(path)
    if text is None:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            parsed = _parse_int(path, value.strip())
            return parsed or 0
    return 0


def read_cgroup_memory_usage(root: str = DEFAULT_CGROUP_ROOT) -> int | None:
    """The cgroup's working set in bytes (usage minus inactive file cache); None when unknown.

    ``memory.current`` / ``memory.usage_in_bytes`` count page cache, which the kernel
    reclaims before it OOM-kills anything: a service that writes log files would look
    nearly full all the time.  Subtracting ``inactive_file`` gives the working set, the
    figure the kubelet evicts on.
    """
    v2 = os.path.join(root, "memory.current")
    text = _read_text(v2)
    if text is not None:
        usage = _parse_int(v2, text)
        stat, key = os.path.join(root, "memory.stat"), "inactive_file"
    else:
        v1 = os.path.join(root, "memory", "memory.usage_in_bytes")
        text = _read_text(v1)
        if text is None:
            return None
        usage = _parse_int(v1, text)
        stat, key = os.path.join(root, "memory", "memory.stat"), "total_inactive_file"
    if usage is None:
        return None
    return max(0, usage - _inactive_file(stat, key))


def read_cgroup_cpu_limit(root: str = DEFAULT_CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in cores (v2 ``cpu.max``, v1 CFS quota/period); None when unlimited."""
    v2 = os.path.join(root, "cpu.max")
    text = _read_text(v2)
    if text is not None:
        quota, _, period = text.partition(" ")
        if quota == "max":
            return None
        try:
            cores = int(quota) / int(period or "100000")
        except (ValueError, ZeroDivisionError):
            _warn_file_once(v2, text)
            return None
        return cores if cores > 0 else None
    for directory in ("cpu", "cpu,cpuacct"):
        quota_path = os.path.join(root, directory, "cpu.cfs_quota_us")
        quota_text = _read_text(quota_path)
        if quota_text is None:
            continue
        period_path = os.path.join(root, directory, "cpu.cfs_period_us")
        period_text = _read_text(period_path) or "100000"
        try:
            quota_us, period_us = int(quota_text), int(period_text)
        except ValueError:
            _warn_file_once(quota_path, f"{quota_text} / {period_text}")
            return None
        if quota_us <= 0 or period_us <= 0:  # -1 = unlimited
            return None
        return quota_us / period_us
    return None


# -- the probe ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One reading.  Fields psutil provides are None when the probe could not read them.

    ``process_cpu`` is in cores (1.0 = one full core) and ``system_cpu`` in 0..1 of all
    cores, both over the interval since the previous sample (None on the first one).
    ``cpu_count`` is the logical CPU count, lowered to the cgroup's CPU quota when there
    is one (``system_cpu`` stays host-wide).  ``at`` is the probe's clock (monotonic).
    """

    rss: int | None
    container_limit: int | None
    container_usage: int | None
    process_cpu: float | None
    system_cpu: float | None
    cpu_count: int
    at: float


@dataclass(frozen=True, slots=True)
class _CpuBaseline:
    at: float
    process: float
    busy: float
    total: float


def _busy_total(times: Any) -> tuple[float, float]:
    """(busy, total) seconds from ``psutil.cpu_times()``, counted as psutil's own cpu_percent does."""
    total = float(sum(times))
    # Linux counts guest time inside user/nice as well: don't count it twice.
    total -= float(getattr(times, "guest", 0.0)) + float(getattr(times, "guest_nice", 0.0))
    idle = float(getattr(times, "idle", 0.0)) + float(getattr(times, "iowait", 0.0))
    return max(0.0, total - idle), total


class _Auto:
    pass


def _import_psutil() -> tuple[Any, str]:
    try:
        import psutil
    except ImportError as exc:
        return None, f"psutil cannot be imported ({exc})"
    return psutil, ""


_AUTO: Any = _Auto()

# Every live probe, for the at-fork hook (weak: the hook must not keep probes alive).
_PROBES: weakref.WeakSet[ResourceProbe] = weakref.WeakSet()


def _probe_loop(ref: weakref.ReferenceType[ResourceProbe], stop: threading.Event, interval: float) -> None:
    # Holds the probe only while sampling, so an abandoned probe is collected and its thread ends.
    register_thread()
    try:
        while True:
            probe = ref()
            if probe is None or not probe.enabled:
                return
            probe.sample_now()
            del probe
            if stop.wait(interval):
                return
    finally:
        unregister_thread()


class ResourceProbe:
    """Samples process memory/CPU (psutil) and the container's cgroup on a daemon thread.

    :meth:`latest` is a plain attribute read, cheap enough for the scheduler loop.  When
    psutil is missing or fails (AccessDenied, NotImplementedError, OSError...) the probe
    turns itself off for good, logs one warning saying why, and :meth:`latest` returns
    None from then on.

    Fork: an at-fork hook drops the parent's thread, locks, CPU baselines and
    ``psutil.Process`` (which names the parent's pid); a started probe restarts its
    thread lazily on the child's first :meth:`latest` call.
    """

    def __init__(
        self,
        interval: float = 1.0,
        psutil_module: Any = _AUTO,
        cgroup_root: str = DEFAULT_CGROUP_ROOT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self._interval = interval
        self._cgroup_root = cgroup_root
        self._clock = clock
        self._disabled_reason: str | None = None
        why_missing = "psutil_module=None was given"
        if psutil_module is _AUTO:
            psutil_module, why_missing = _import_psutil()
        self._psutil: Any = psutil_module
        self._lock = threading.Lock()  # start/stop/restart; never taken by latest() in steady state
        self._sample_lock = threading.Lock()  # keeps CPU baselines consistent if tests sample too
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = False
        self._restart_pending = False
        self._proc: Any = None
        self._proc_pid = 0
        self._prev: _CpuBaseline | None = None
        self._latest: ResourceSample | None = None
        _PROBES.add(self)
        if psutil_module is None:
            self._disable(why_missing)

    @property
    def enabled(self) -> bool:
        return self._disabled_reason is None

    @property
    def disabled_reason(self) -> str | None:
        return self._disabled_reason

    def _disable(self, reason: str) -> None:
        if self._disabled_reason is not None:
            return
        self._disabled_reason = reason
        self._latest = None
        self._stop.set()
        _logger.warning(
            "otel-sched: resource probe disabled: %s; scheduling continues without process "
            "memory and CPU samples",
            reason,
        )

    def latest(self) -> ResourceSample | None:
        """The last sample, or None before the first one and when the probe is off."""
        if self._restart_pending:
            self._restart_after_fork()
        return self._latest

    def start(self) -> None:
        """Start sampling on a daemon thread (the first sample is taken at once); idempotent."""
        with self._lock:
            self._running = True
            self._start_thread_locked()

    def _start_thread_locked(self) -> None:
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_probe_loop,
            args=(weakref.ref(self), self._stop, self._interval),
            name="otel-sched-resource-probe",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it to end; idempotent."""
        with self._lock:
            self._running = False
            self._restart_pending = False
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def sample_now(self) -> ResourceSample:
        """Take one sample now on the calling thread (the probe thread, or a test) and publish it."""
        with self._sample_lock:
            now = self._clock()
            root = self._cgroup_root
            container_limit = read_cgroup_memory_limit(root)
            container_usage = read_cgroup_memory_usage(root)
            rss: int | None = None
            process_cpu: float | None = None
            system_cpu: float | None = None
            cpu_count = os.cpu_count() or 1
            if self.enabled:
                try:
                    ps = self._psutil
                    proc = self._process()
                    rss = int(proc.memory_info().rss)
                    times = proc.cpu_times()
                    process_total = float(times.user) + float(times.system)
                    busy, total = _busy_total(ps.cpu_times())
                    cpu_count = int(ps.cpu_count() or cpu_count)
                except Exception as exc:  # noqa: BLE001 - psutil.Error, OSError, NotImplementedError...
                    # Whatever it raised, its numbers can't be trusted: turn off, say why, go on.
                    self._disable(f"psutil failed: {type(exc).__name__}: {exc}")
                    rss = None
                else:
                    prev = self._prev
                    if prev is not None and now > prev.at:
                        process_cpu = max(0.0, (process_total - prev.process) / (now - prev.at))
                        if total > prev.total:
                            system_cpu = min(1.0, max(0.0, (busy - prev.busy) / (total - prev.total)))
                    self._prev = _CpuBaseline(now, process_total, busy, total)
            quota = read_cgroup_cpu_limit(root)
            if quota is not None:
                cpu_count = max(1, min(cpu_count, math.ceil(quota)))
            sample = ResourceSample(
                rss=rss,
                container_limit=container_limit,
                container_usage=container_usage,
                process_cpu=process_cpu,
                system_cpu=system_cpu,
                cpu_count=cpu_count,
                at=now,
            )
            if self.enabled:
                self._latest = sample
            return sample

    def _process(self) -> Any:
        pid = os.getpid()
        if self._proc is None or self._proc_pid != pid:  # a Process made before a fork names the parent
            self._proc = self._psutil.Process()
            self._proc_pid = pid
            self._prev = None
        return self._proc

    def _after_fork_in_child(self) -> None:
        # The parent's locks may have been held by a thread that does not exist here.
        self._lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._proc = None
        self._prev = None
        self._latest = None
        self._restart_pending = self._running

    def _restart_after_fork(self) -> None:
        with self._lock:
            if self._restart_pending:
                self._restart_pending = False
                self._start_thread_locked()


def _after_fork_in_child() -> None:
    for probe in list(_PROBES):
        probe._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- thread CPU ----------------------------------------------------------------------------------------

_THREAD_CLOCKS = sys.platform.startswith("linux") and hasattr(time, "clock_gettime")
_thread_cpu_noted = False


def _linux_thread_clock(native_id: int) -> int:
    # MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED), as glibc's pthread_getcpuclockid builds it.  Built
    # from the kernel tid rather than through pthread_getcpuclockid(ident): that reads the pthread
    # struct of a thread which may have exited (Python threads are detached) -- undefined behaviour --
    # while a stale tid just gets EINVAL (the kernel only resolves thread clocks of our own process).
    return ((~native_id) << 3) | 6


def _note_unsupported(reason: str) -> None:
    global _thread_cpu_noted
    if not _thread_cpu_noted:
        _thread_cpu_noted = True
        _logger.info("otel-sched: per-thread CPU time is unavailable (%s); pipeline CPU counts as 0", reason)


def thread_cpu_seconds(threads: Iterable[threading.Thread]) -> float:
    """Total CPU seconds consumed so far by the given threads that are still alive.

    Ended threads are skipped, so the total can go down when one ends; :class:`CpuMeter`
    allows for that.  Linux only; elsewhere returns 0.0 and says so once (INFO).
    """
    if not _THREAD_CLOCKS:
        _note_unsupported(f"no per-thread CPU clocks on {sys.platform}")
        return 0.0
    total = 0.0
    for thread in threads:
        native_id = thread.native_id
        if native_id is None or not thread.is_alive():
            continue
        try:
            total += time.clock_gettime(_linux_thread_clock(native_id))
        except OSError:
            continue  # it ended after is_alive(), or its tid is gone
    return total


class CpuMeter:
    """The pipeline's CPU use in cores, EWMA-smoothed, from successive CPU-seconds totals.

    Pure: the caller passes the total (e.g. :func:`thread_cpu_seconds` over the pipeline's
    threads) and ``now``.  A total that goes down (a thread ended and its time left the
    sum) rebases without a reading, rather than reporting a negative share.
    """

    __slots__ = ("_alpha", "_last_at", "_last_cpu", "readings", "share")

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self._alpha = alpha
        self._last_cpu: float | None = None
        self._last_at = 0.0
        self.readings = 0
        self.share = 0.0

    def update(self, pipeline_cpu_seconds: float, now: float) -> float:
        """Record the total at ``now``; returns the smoothed share in cores."""
        last_cpu = self._last_cpu
        if last_cpu is None or pipeline_cpu_seconds < last_cpu:
            self._last_cpu, self._last_at = pipeline_cpu_seconds, now
            return self.share
        elapsed = now - self._last_at
        if elapsed <= 0:
            return self.share
        raw = (pipeline_cpu_seconds - last_cpu) / elapsed
        # The first reading is taken as is: smoothing it from 0 would hide a busy start.
        self.share = raw if self.readings == 0 else self._alpha * raw + (1.0 - self._alpha) * self.share
        self.readings += 1
        self._last_cpu, self._last_at = pipeline_cpu_seconds, now
        return self.share


# -- memory --------------------------------------------------------------------------------------------


class MemoryLevel(enum.Enum):
    NORMAL = 0
    SOFT = 1  # stop growing: shed low priority, refuse what is not worth the memory
    HARD = 2  # give memory back: shed queued items until below the soft level


def _level_of(ratio: float | None, soft: float, hard: float, scale: float) -> int:
    if ratio is None:
        return 0
    if ratio >= hard * scale:
        return 2
    return 1 if ratio >= soft * scale else 0


_LEVELS = (MemoryLevel.NORMAL, MemoryLevel.SOFT, MemoryLevel.HARD)


class MemoryGovernor:
    """Memory pressure as NORMAL / SOFT / HARD, in the manner of the Collector's ``memory_limiter``.

    Two independent sources, the worse one wins:

    * the pipeline's own bytes against its budget: SOFT at ``soft_fraction``, HARD at
      ``hard_fraction``;
    * the whole process against its container: when the RSS or the container's working
      set reaches ``container_headroom`` of the container limit, at least SOFT; halfway
      from there to the limit, HARD -- the pipeline gives its memory back first, because
      the application's memory cannot be shed.

    Hysteresis: a level is left only once its source is ``hysteresis`` (5 %) below the
    threshold that entered it, so a queue hovering at a threshold does not flap.
    """

    def __init__(
        self,
        budget_bytes: int,
        soft_fraction: float = 0.8,
        hard_fraction: float = 0.95,
        container_headroom: float = 0.9,
        *,
        minimum_bytes: int = 1,
        hysteresis: float = 0.05,
    ) -> None:
        floor = max(1, minimum_bytes)
        if budget_bytes < floor:
            raise ValueError(f"memory budget must be at least {floor} bytes, got {budget_bytes}")
        if not 0.0 < soft_fraction < hard_fraction <= 1.0:
            raise ValueError(
                f"need 0 < soft_fraction < hard_fraction <= 1, got {soft_fraction!r} and {hard_fraction!r}"
            )
        if not 0.0 < container_headroom < 1.0:
            raise ValueError(f"container_headroom must be in (0, 1), got {container_headroom!r}")
        if not 0.0 <= hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        self.budget_bytes = budget_bytes
        self._soft = soft_fraction
        self._hard = hard_fraction
        self._c_soft = container_headroom
        self._c_hard = container_headroom + (1.0 - container_headroom) / 2.0
        self._stay = 1.0 - hysteresis
        self._own = self._proc = 0  # each source's level, for its own hysteresis
        self.current = MemoryLevel.NORMAL
        self.reason: str | None = None  # "pipeline" or "container": what set the current level
        self.transitions = 0

    def next_threshold_bytes(self) -> float:
        """Pipeline bytes at which the budget source enters the level above the current one."""
        if self._own >= 2:
            return math.inf
        return self.budget_bytes * (self._soft if self._own == 0 else self._hard)

    def level(self, pipeline_bytes: int, sample: ResourceSample | None) -> MemoryLevel:
        """The pressure level after this reading (see the class docstring for the rule)."""
        own = max(0, pipeline_bytes) / self.budget_bytes
        process = _container_ratio(sample)
        # Per source: rise at once, fall only as far as the lowered (hysteresis) thresholds allow.
        self._own = max(
            _level_of(own, self._soft, self._hard, 1.0),
            min(self._own, _level_of(own, self._soft, self._hard, self._stay)),
        )
        self._proc = max(
            _level_of(process, self._c_soft, self._c_hard, 1.0),
            min(self._proc, _level_of(process, self._c_soft, self._c_hard, self._stay)),
        )
        new = max(self._own, self._proc)
        if new != self.current.value:
            self.transitions += 1
            self.current = _LEVELS[new]
        if new == 0:
            self.reason = None
        else:
            self.reason = "pipeline" if self._own >= self._proc else "container"
        return self.current


def _container_ratio(sample: ResourceSample | None) -> float | None:
    if sample is None or not sample.container_limit:
        return None
    used = max((v for v in (sample.rss, sample.container_usage) if v is not None), default=None)
    return None if used is None else used / sample.container_limit


# -- CPU -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuAdvice:
    """Multipliers for the dispatcher: lanes ``x max_lanes_factor``, batch size ``x batch_factor``."""

    max_lanes_factor: float
    batch_factor: float


def cpu_saturated(sample: ResourceSample | None) -> bool:
    """Whether the process is CPU-bound, by the rule :class:`CpuGovernor` documents."""
    if sample is None or sample.process_cpu is None:
        return False
    if sample.cpu_count == 1:
        return sample.process_cpu >= 0.95
    # Only when the machine has no spare capacity: fewer lanes would not give a GIL-bound
    # process CPU that idle cores could, and they cost throughput against slow collectors.
    return sample.process_cpu >= 0.9 and sample.system_cpu is not None and sample.system_cpu >= 0.9


def shape_batches(
    items: int, delay: float, cpu_factor: float, max_items: int, max_delay: float
) -> tuple[int, float]:
    """Batch size and delay: the tuner's (``items``, ``delay``) scaled by the CPU governor's
    ``cpu_factor`` -- fewer, larger requests while the process is CPU-saturated -- and never past
    the configured ``max_items`` / ``max_delay``."""
    return min(max_items, max(1, int(items * cpu_factor))), min(max_delay, delay * cpu_factor)


class CpuGovernor:
    """Keeps the pipeline's CPU within ``cap_cores`` while the process is CPU-bound.

    Saturated means: the process uses at least 0.9 of a core -- about all one GIL-bound
    interpreter can -- and the machine has no spare capacity (``system_cpu >= 0.9``); on
    a single CPU (the count is lowered to a container's CPU quota), process CPU >= 0.95
    alone.  Then,
    when the pipeline's share exceeds the cap, each sample scales lanes by ``cap / share``
    (down to ``min_lanes_factor``) and batch size by ``share / cap`` (up to
    ``max_batch_factor``: fewer, bigger requests amortise per-request overhead).  When
    the machine has idle capacity (``system_cpu < 0.5``) the advice returns to 1.0 / 1.0
    so backlogs drain at full speed.  In between, the advice holds.

    No flapping: switching between reducing and full speed takes ``confirm`` (2)
    consecutive samples asking for it; a sample asking for neither resets the count.
    """

    _REDUCE, _FULL = "reduce", "full"

    def __init__(
        self,
        cap_cores: float = 0.25,
        *,
        min_lanes_factor: float = 0.1,
        max_batch_factor: float = 4.0,
        confirm: int = 2,
    ) -> None:
        if not (cap_cores > 0 and math.isfinite(cap_cores)):
            raise ValueError(f"cap_cores must be a positive number of cores, got {cap_cores!r}")
        if not 0.0 < min_lanes_factor <= 1.0:
            raise ValueError(f"min_lanes_factor must be in (0, 1], got {min_lanes_factor!r}")
        if max_batch_factor < 1.0:
            raise ValueError(f"max_batch_factor must be >= 1, got {max_batch_factor!r}")
        if confirm < 1:
            raise ValueError(f"confirm must be >= 1, got {confirm!r}")
        self.cap_cores = cap_cores
        self._min_lanes = min_lanes_factor
        self._max_batch = max_batch_factor
        self._confirm = confirm
        self._direction = self._FULL
        self._pending: str | None = None
        self._pending_count = 0
        self._lanes = 1.0
        self._batch = 1.0

    def advise(self, pipeline_share: float, sample: ResourceSample | None) -> CpuAdvice:
        want: str | None = None
        if cpu_saturated(sample) and pipeline_share > self.cap_cores:
            want = self._REDUCE
        elif sample is not None and sample.system_cpu is not None and sample.system_cpu < 0.5:
            want = self._FULL
        if want is None:
            self._pending, self._pending_count = None, 0
        elif want != self._direction:
            self._pending_count = self._pending_count + 1 if self._pending == want else 1
            self._pending = want
            if self._pending_count >= self._confirm:
                self._direction = want
                self._pending, self._pending_count = None, 0
                self._apply(want, pipeline_share)
        else:
            self._pending, self._pending_count = None, 0
            if want == self._REDUCE:
                self._apply(want, pipeline_share)  # still over the cap at the reduced rate: further
        return CpuAdvice(self._lanes, self._batch)

    def _apply(self, direction: str, share: float) -> None:
        if direction == self._FULL:
            self._lanes = self._batch = 1.0
            return
        ratio = self.cap_cores / share
        self._lanes = max(self._min_lanes, self._lanes * ratio)
        self._batch = min(self._max_batch, self._batch / ratio)


# -- batch tuning --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """One :meth:`BatchTuner.tune` outcome; ``target_items`` is the rule's size before step limits."""

    items: int
    delay: float
    target_items: int
    overhead_share: float  # per-request overhead / predicted export time at ``items``


class BatchTuner:
    """Batch size and delay from the cost model's fit ``seconds = base + per_byte * bytes``.

    Size: the smallest batch whose per-request overhead is at most ``overhead_target``
    (10 %) of its transfer time, ``n = base / (overhead_target * per_byte * item_bytes)``,
    clamped to ``[min_items, max_items]``: large batches when overhead (the round trip)
    dominates, small ones -- lower latency, more requests in parallel -- when bytes do.
    Delay: the predicted export time of such a batch, clamped to ``[min_delay,
    max_delay]``, so a lane's next batch fills while the previous one is in flight.

    Stability: each call moves the size at most ``x step`` (2) towards the target and
    ignores changes under 10 % (size or delay); ``adjustments`` counts actual changes.
    """

    __slots__ = (
        "_dead_band",
        "_max_delay",
        "_max_items",
        "_min_delay",
        "_min_items",
        "_step",
        "_target",
        "adjustments",
        "delay",
        "items",
        "last",
    )

    def __init__(
        self,
        min_items: int,
        max_items: int,
        min_delay: float,
        max_delay: float,
        *,
        overhead_target: float = 0.1,
        step: float = 2.0,
        initial_items: int | None = None,
        initial_delay: float | None = None,
    ) -> None:
        if not 1 <= min_items <= max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {min_items} and {max_items}")
        if not 0.0 <= min_delay <= max_delay:
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {min_delay!r} and {max_delay!r}")
        if not overhead_target > 0.0:
            raise ValueError(f"overhead_target must be > 0, got {overhead_target!r}")
        if step <= 1.0:
            raise ValueError(f"step must be > 1, got {step!r}")
        self._min_items, self._max_items = min_items, max_items
        self._min_delay, self._max_delay = min_delay, max_delay
        self._target = overhead_target
        self._step = step
        self._dead_band = 0.1
        self.items = min(max_items, max(min_items, max_items if initial_items is None else initial_items))
        self.delay = min(max_delay, max(min_delay, max_delay if initial_delay is None else initial_delay))
        self.adjustments = 0
        self.last: BatchDecision | None = None

    def tune(self, base: float, per_byte: float, mean_item_bytes: float) -> tuple[int, float]:
        """Returns (items, delay seconds); invalid inputs leave the current decision as it is."""
        if not (
            math.isfinite(base)
            and math.isfinite(per_byte)
            and math.isfinite(mean_item_bytes)
            and base >= 0
            and per_byte >= 0
            and mean_item_bytes > 0
        ):
            return self.items, self.delay
        per_item = per_byte * mean_item_bytes
        lo, hi = self._min_items, self._max_items
        if per_item <= 0:
            target = hi
        else:
            ideal = base / (self._target * per_item)
            # (the tolerance keeps float noise such as 10.000000000000002 from rounding up to 11)
            target = hi if ideal >= hi else max(lo, math.ceil(ideal * (1.0 - 1e-9)))
        items = self.items
        if abs(target - items) > self._dead_band * items:
            stepped = min(max(target, math.ceil(items / self._step)), math.floor(items * self._step))
            items = min(hi, max(lo, stepped))
        predicted = base + per_item * items
        delay = min(self._max_delay, max(self._min_delay, predicted))
        if abs(delay - self.delay) <= self._dead_band * self.delay and items == self.items:
            delay = self.delay
        if items != self.items or delay != self.delay:
            self.adjustments += 1
            self.items, self.delay = items, delay
        self.last = BatchDecision(
            items=self.items,
            delay=self.delay,
            target_items=target,
            overhead_share=base / predicted if predicted > 0 else 0.0,
        )
        return self.items, self.delay

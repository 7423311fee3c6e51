"""Probes: what the machine says, read off the hot path.

:func:`read_cgroup_memory_limit` and friends read the container's limits, :func:`thread_cpu_seconds`
the CPU clocks of our threads, and :class:`ResourceProbe` samples process memory and CPU (psutil)
on its own daemon thread so that neither the application threads nor the scheduler ever wait on
psutil.  Any failure turns a probe off with one warning; scheduling then continues without the
information, never with an exception.  The pure objects that turn these samples into decisions
live in :mod:`._governors`.
"""

from __future__ import annotations

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

from .._threads import register_thread, unregister_thread

__all__ = [
    "ResourceProbe",
    "ResourceSample",
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

"""Configuration: every option, its environment variable, default and validation.

Resolved once, when a processor is built, into a frozen :class:`Config`; nothing on
the hot path reads the environment again.

Precedence, per option: a keyword argument given in code, then the environment
variable, then the default.  A bad keyword argument raises ``ValueError`` /
``TypeError`` naming the argument, the value and what was expected; a bad
environment value logs a warning naming the variable and the value, and the default
is used -- exactly as the SDK treats ``OTEL_BSP_*``.

This module is the table of options (:data:`OPTIONS`) and their resolution into a
:class:`Config`; the parser of each kind of value is in :mod:`otel_sched._option_parsers`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ._option_parsers import (
    _DEFAULT_MAX_AGES,
    _bool,
    _endpoints,
    _int,
    _Invalid,
    _max_ages,
    _number,
    _optional_mib,
    _optional_str,
    _policy,
    _rules,
    _tenant_key,
    _weights,
)
from ._safe import safe_url
from .scheduling._task import PriorityClass, Signal

__all__ = ["OPTIONS", "Config", "Option", "resolve_config", "validate_options"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")

_UNSET: Final[Any] = object()


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting.  ``env`` is ``None`` only for code-only options (objects)."""

    name: str
    env: str | None
    default: Any  # a value, or a callable(signal) for signal-specific defaults
    parse: Callable[[object], Any]
    doc: str
    stock: bool = False  # the four BatchSpanProcessor / BatchLogRecordProcessor arguments

    def default_for(self, signal: Signal) -> Any:
        return self.default(signal) if callable(self.default) else self.default

    def env_for(self, signal: Signal) -> str | None:
        if self.env is None:
            return None
        return self.env.replace("{P}", "BSP" if signal is Signal.TRACES else "BLRP")


def _stock_delay(signal: Signal) -> int:
    return 5000 if signal is Signal.TRACES else 1000


OPTIONS: Final[tuple[Option[Any], ...]] = (
    Option(
        "max_queue_size",
        "OTEL_{P}_MAX_QUEUE_SIZE",
        2048,
        _int(1),
        "Most items held in the queues (all tenants and classes together).",
        stock=True,
    ),
    Option(
        "schedule_delay_millis",
        "OTEL_{P}_SCHEDULE_DELAY",
        _stock_delay,
        _number(0.0, exclusive=True),
        "Longest time an item waits for a batch to fill before it is exported "
        "(5000 for spans, 1000 for logs).",
        stock=True,
    ),
    Option(
        "max_export_batch_size",
        "OTEL_{P}_MAX_EXPORT_BATCH_SIZE",
        512,
        _int(1),
        "Most items in one export call.",
        stock=True,
    ),
    Option(
        "export_timeout_millis",
        "OTEL_{P}_EXPORT_TIMEOUT",
        30000,
        _number(0.0, exclusive=True),
        "Longest one export call may take; a later result is counted as late and the batch as "
        "dropped with reason export_timeout.",
        stock=True,
    ),
    Option(
        "policy",
        "OTEL_PYTHON_SCHED_POLICY",
        "priority_fair",
        _policy,
        "Scheduling policy: fifo, priority, fair, predictive, deadline or priority_fair.",
    ),
    Option(
        "tenant_key",
        "OTEL_PYTHON_SCHED_TENANT_KEY",
        None,
        _tenant_key,
        "Where the tenant comes from: an attribute (item attribute first, then resource attribute), "
        "`baggage:<key>` (W3C baggage), or a comma list tried in order, e.g. `tenant.id, baggage:tenant.id`. "
        "An item none names takes its in-process parent span's tenant. Unset: one tenant.",
    ),
    Option(
        "inherit_priority",
        "OTEL_PYTHON_SCHED_INHERIT_PRIORITY",
        False,
        _bool,
        "Hold each span until its local root span ends (at most 5 s) and give the whole local trace "
        "the highest class any of its spans has: an ERROR anywhere raises its siblings.",
    ),
    Option(
        "max_tenants",
        "OTEL_PYTHON_SCHED_MAX_TENANTS",
        1000,
        _int(1),
        "Most distinct tenants tracked (each its own queues and fair share); further values, and values "
        "while no tracked tenant has been idle for 30 s, share the __overflow__ tenant (counted): one fair "
        "share between them.  See docs/configuration.md#tenants.",
    ),
    Option(
        "tenant_weights",
        "OTEL_PYTHON_SCHED_TENANT_WEIGHTS",
        {},
        _weights,
        "Fair-share weights, e.g. acme=2,globex=0.5; unlisted tenants weigh 1.",
    ),
    Option(
        "priority_rules",
        "OTEL_PYTHON_SCHED_PRIORITY_RULES",
        None,
        _rules,
        "Priority rules evaluated before the defaults (ERROR status or severity -> high); "
        "see docs/scheduling.md for the syntax.",
    ),
    Option(
        "max_queue_bytes",
        "OTEL_PYTHON_SCHED_MAX_QUEUE_BYTES",
        32 * 1024 * 1024,
        _int(1024),
        "Most predicted encoded bytes held in the queues.",
    ),
    Option(
        "max_export_batch_bytes",
        "OTEL_PYTHON_SCHED_MAX_EXPORT_BATCH_BYTES",
        2 * 1024 * 1024,
        _int(1024),
        "Most predicted encoded bytes in one export call; a larger single item is exported alone.",
    ),
    Option(
        "aging_millis",
        "OTEL_PYTHON_SCHED_AGING_MILLIS",
        1000.0,
        _number(0.0, exclusive=True),
        "Waiting this long raises a class one priority level, so low priority never starves.",
    ),
    Option(
        "max_age_millis",
        "OTEL_PYTHON_SCHED_MAX_AGE_MILLIS",
        _DEFAULT_MAX_AGES,
        _max_ages,
        "Deadline per priority class (enqueue time + max age), used by the deadline policy "
        "and reported as deadline misses.",
    ),
    Option(
        "fair_quantum_bytes",
        "OTEL_PYTHON_SCHED_FAIR_QUANTUM_BYTES",
        16 * 1024,
        _int(1),
        "Bytes a weight-1 tenant may send per round of the fair (deficit round robin) policies.",
    ),
    Option(
        "max_concurrent_exports",
        "OTEL_PYTHON_SCHED_MAX_CONCURRENT_EXPORTS",
        16,
        _int(1),
        "Most export lanes (concurrent export calls, each on its own exporter instance); lanes beyond one "
        "need an exporter_factory or a stock OTLP exporter, which is cloned.",
    ),
    Option(
        "adaptive_concurrency",
        "OTEL_PYTHON_SCHED_ADAPTIVE_CONCURRENCY",
        True,
        _bool,
        "Adapt the number of concurrent exports to measured latency and errors (AIMD), starting at 1; "
        "false: always use every lane.",
    ),
    Option(
        "otlp_fast_path",
        "OTEL_PYTHON_SCHED_OTLP_FAST_PATH",
        True,
        _bool,
        "With a stock OTLP exporter (HTTP or gRPC), encode each item once on the scheduler thread and "
        "send pre-encoded batches; false: call the exporter's own export(items).",
    ),
    Option(
        "native_encoder",
        "OTEL_PYTHON_SCHED_NATIVE_ENCODER",
        True,
        _bool,
        "On the fast path, encode spans and log records with the compiled encoder where pip built it "
        "(it needs a C "
        "compiler at install time; without one the Python encoder is used); false: always the "
        "pure-Python encoder. Both write the same bytes.",
    ),
    Option(
        "endpoints",
        "OTEL_PYTHON_SCHED_ENDPOINTS",
        (),
        _endpoints,
        "Comma-separated collector URLs to spread exports over, with failover; unset: the exporter's "
        "own endpoint.",
    ),
    Option(
        "spool_dir",
        "OTEL_PYTHON_SCHED_SPOOL_DIR",
        None,
        _optional_str,
        "Directory of the on-disk spool (SQLite); unset: no spool.  {pid} is replaced by the process id "
        "(one directory per prefork worker).  Needs the OTLP fast path.",
    ),
    Option(
        "spool_max_bytes",
        "OTEL_PYTHON_SCHED_SPOOL_MAX_BYTES",
        256 * 1024 * 1024,
        _int(1024 * 1024),
        "Most payload bytes the spool holds; when full the lowest priority, oldest batches are evicted "
        "(counted as spool_full).",
    ),
    Option(
        "spool_max_age_millis",
        "OTEL_PYTHON_SCHED_SPOOL_MAX_AGE_MILLIS",
        24 * 3600 * 1000.0,
        _number(0.0, exclusive=True),
        "Spooled batches older than this are discarded instead of replayed (counted as spool_expired).",
    ),
    Option(
        "resource_aware",
        "OTEL_PYTHON_SCHED_RESOURCE_AWARE",
        True,
        _bool,
        "Join the process-wide level: one memory budget and one export budget shared by every "
        "pipeline, a psutil/cgroup probe, CPU-share capping.",
    ),
    Option(
        "memory_limit_mib",
        "OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB",
        None,
        _optional_mib,
        "Memory budget of all pipelines in the process (MiB); unset: each pipeline adds 1.5 x what "
        "its queue bounds let it hold (max_queue_bytes plus the objects of max_queue_size items and "
        "a full intake).  Above 80% low priority is refused, above 95% only high priority.",
    ),
    Option(
        "signal_weights",
        "OTEL_PYTHON_SCHED_SIGNAL_WEIGHTS",
        {},
        _weights,
        "Shares of the process-wide budgets per signal, e.g. traces=2,logs=1; unlisted signals weigh 1.",
    ),
    Option(
        "cpu_cap_cores",
        "OTEL_PYTHON_SCHED_CPU_CAP_CORES",
        0.25,
        _number(0.0, exclusive=True),
        "When the process is CPU-saturated, the pipelines' own threads are held to about this many "
        "cores (fewer export lanes).",
    ),
    Option(
        "self_tuning",
        "OTEL_PYTHON_SCHED_SELF_TUNING",
        True,
        _bool,
        "Adapt batch size and delay to the measured export cost, within max_export_batch_size and "
        "schedule_delay_millis (down to 1/8 and 1/10 of them).",
    ),
    Option(
        "shutdown_timeout_millis",
        "OTEL_PYTHON_SCHED_SHUTDOWN_TIMEOUT_MILLIS",
        30000.0,
        _number(0.0, exclusive=True),
        "Longest shutdown() waits to drain the queues before it gives up (and counts what is left).",
    ),
    Option(
        "exit_timeout_millis",
        "OTEL_PYTHON_SCHED_EXIT_TIMEOUT_MILLIS",
        3000.0,
        _number(0.0, exclusive=True),
        "At interpreter exit, every pipeline of the process drains at once within this one deadline "
        "(it replaces shutdown_timeout_millis there); what is left is spooled, or counted as "
        "shutdown_timeout.",
    ),
    Option(
        "flush_on_sigterm",
        "OTEL_PYTHON_SCHED_FLUSH_ON_SIGTERM",
        True,
        _bool,
        "Where SIGTERM still has its default action (which ends the process without running atexit, "
        "so without any flush), drain every pipeline within exit_timeout_millis first, then end of "
        "the signal as before. Never replaces a handler the application or its server set.",
    ),
    Option(
        "max_recursion_depth",
        "OTEL_PYTHON_SCHED_MAX_RECURSION_DEPTH",
        1,
        _int(0),
        "Items produced while exporting may nest this deep; deeper ones are dropped (reason recursion).",
    ),
)

_BY_NAME: Final = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    """The resolved settings of one processor.  Immutable; hot paths copy fields out."""

    signal: Signal
    max_queue_size: int
    schedule_delay_millis: float
    max_export_batch_size: int
    export_timeout_millis: float
    policy: str
    tenant_key: str | None
    inherit_priority: bool
    max_tenants: int
    tenant_weights: Mapping[str, float]
    priority_rules: Any
    max_queue_bytes: int
    max_export_batch_bytes: int
    aging_millis: float
    max_age_millis: Mapping[PriorityClass, float]
    fair_quantum_bytes: int
    max_concurrent_exports: int
    adaptive_concurrency: bool
    otlp_fast_path: bool
    native_encoder: bool
    endpoints: tuple[str, ...]
    spool_dir: str | None
    spool_max_bytes: int
    spool_max_age_millis: float
    resource_aware: bool
    memory_limit_mib: float | None
    signal_weights: Mapping[str, float]
    cpu_cap_cores: float
    self_tuning: bool
    shutdown_timeout_millis: float
    exit_timeout_millis: float
    flush_on_sigterm: bool
    max_recursion_depth: int
    sources: Mapping[str, str] = field(default_factory=dict)  # option -> "code" | "env" | "default"


_STOCK_MESSAGES: Final = {
    "max_queue_size": "max_queue_size must be a positive integer.",
    "schedule_delay_millis": "schedule_delay_millis must be positive.",
    "max_export_batch_size": "max_export_batch_size must be a positive integer.",
}


def _shown(option: Option[Any], value: object) -> str:
    """``repr(value)`` for messages; endpoint URLs without their userinfo (it may be a credential)."""
    if option.name != "endpoints":
        return repr(value)
    if isinstance(value, str):
        return repr(",".join(safe_url(part.strip()) for part in value.split(",")))
    if isinstance(value, list | tuple):
        return repr([safe_url(item) for item in value])
    return f"<{type(value).__name__}>"


def _from_code(option: Option[Any], value: object) -> Any:
    try:
        return option.parse(value)
    except _Invalid as exc:
        if option.name in _STOCK_MESSAGES and _is_number(value):
            # Same text as the SDK's BatchSpanProcessor, so code matching it keeps working.
            raise ValueError(_STOCK_MESSAGES[option.name]) from None
        raise ValueError(f"{option.name}={_shown(option, value)} is invalid: expected {exc}") from None
    except TypeError as exc:
        shown = _shown(option, value)
        raise TypeError(f"{option.name}={shown} has type {type(value).__name__}: expected {exc}") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _from_env(option: Option[Any], signal: Signal) -> tuple[Any, bool]:
    name = option.env_for(signal)
    if name is None:
        return None, False
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None, False
    try:
        return option.parse(raw), True
    except (TypeError, ValueError) as exc:
        _logger.warning(
            "Invalid value %s for %s: expected %s. Using the default %r.",
            _shown(option, raw),
            name,
            exc,
            option.default_for(signal),
        )
        return None, False


def validate_options(**given: Any) -> None:
    """Check only the values given in code (``None`` = not given), without reading the environment.

    Raises exactly what building a processor with them would raise.
    """
    unknown = set(given) - set(_BY_NAME)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    for name, value in given.items():
        if value is not None:
            _from_code(_BY_NAME[name], value)


def resolve_config(signal: Signal, **given: Any) -> Config:
    """Resolve every option for ``signal`` from code arguments (``None`` = not given), env and defaults."""
    unknown = set(given) - set(_BY_NAME)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        value = given.get(option.name, _UNSET)
        if value is not _UNSET and value is not None:
            values[option.name] = _from_code(option, value)
            sources[option.name] = "code"
            continue
        env_value, found = _from_env(option, signal)
        if found:
            values[option.name] = env_value
            sources[option.name] = "env"
        else:
            values[option.name] = option.default_for(signal)
            sources[option.name] = "default"

    # Cross-option rule, with the SDK's wording; from env a conflict falls back to the defaults.
    if values["max_export_batch_size"] > values["max_queue_size"]:
        if sources["max_export_batch_size"] == "code" or sources["max_queue_size"] == "code":
            raise ValueError("max_export_batch_size must be less than or equal to max_queue_size.")
        _logger.warning(
            "max_export_batch_size=%s is above max_queue_size=%s (from the environment): "
            "using max_export_batch_size=%s.",
            values["max_export_batch_size"],
            values["max_queue_size"],
            values["max_queue_size"],
        )
        values["max_export_batch_size"] = values["max_queue_size"]
    limit = values["memory_limit_mib"]
    floor_mib = 2 * values["max_export_batch_bytes"] / (1024 * 1024)
    if limit is not None and limit < floor_mib:
        message = (
            f"memory_limit_mib={limit:g} is below what two export batches need "
            f"({floor_mib:g} MiB at max_export_batch_bytes={values['max_export_batch_bytes']})"
        )
        if sources["memory_limit_mib"] == "code":
            raise ValueError(message)
        _logger.warning("%s (from the environment): using the default.", message)
        values["memory_limit_mib"] = None
    return Config(signal=signal, sources=sources, **values)


def _render_default(option: Option[Any]) -> str:
    if option.name == "schedule_delay_millis":
        return "5000 (spans), 1000 (logs)"
    value = option.default(Signal.TRACES) if callable(option.default) else option.default
    if option.name == "max_age_millis":
        return ", ".join(f"{c.name.lower()}={int(v)}" for c, v in sorted(value.items(), reverse=True))
    if value is None or value == {} or value == ():
        return "unset"
    if option.name == "spool_max_age_millis":
        return f"{int(value)} (24 h)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def options_table() -> str:
    """The configuration table of docs/configuration.md, generated from :data:`OPTIONS`."""
    rows = ["| option (keyword) | environment variable | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        env = option.env or ""
        if "{P}" in env:
            env = f"{env.replace('{P}', 'BSP')} / {env.replace('{P}', 'BLRP')}"
        rows.append(f"| `{option.name}` | `{env}` | {_render_default(option)} | {option.doc} |")
    return "\n".join(rows) + "\n"

"""The public processors: drop-in replacements for the SDK's batch processors.

``ScheduledSpanProcessor`` takes the same positional arguments as
``BatchSpanProcessor`` (exporter, max_queue_size, schedule_delay_millis,
max_export_batch_size, export_timeout_millis) and ``ScheduledLogRecordProcessor``
the same as ``BatchLogRecordProcessor`` (exporter, schedule_delay_millis,
max_export_batch_size, export_timeout_millis, max_queue_size); everything of our
own is keyword-only.  See ``_pipeline`` for what happens after ``on_end``.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context, get_current
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.environment_variables._internal import parse_boolean_environment_variable
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from typing_extensions import TypedDict, Unpack

from ._config import resolve_config
from ._safe import describe
from .runtime._pipeline import (
    Pipeline,
    install_sigterm_flush,
    shutdown_all,
    snapshot_log,
    snapshot_log_with_context,
)
from .scheduling._task import PriorityClass, Signal

__all__ = ["ScheduledLogRecordProcessor", "ScheduledSpanProcessor", "SchedulerOptions"]

atexit.register(shutdown_all)


def _check_exporter(exporter: object, argument: str) -> None:
    if exporter is None or not callable(getattr(exporter, "export", None)):
        raise TypeError(
            f"{argument}={describe(exporter)} is not an exporter: expected an object with export(batch) "
            "and shutdown() methods (a SpanExporter / LogRecordExporter)"
        )


def _stock_options(
    max_queue_size: int | None,
    schedule_delay_millis: float | None,
    max_export_batch_size: int | None,
    export_timeout_millis: float | None,
) -> dict[str, Any]:
    return {
        "max_queue_size": max_queue_size,
        "schedule_delay_millis": schedule_delay_millis,
        "max_export_batch_size": max_export_batch_size,
        "export_timeout_millis": export_timeout_millis,
    }


class _Scheduled:
    """What the span and log processors share: the pipeline, shutdown, flush and stats."""

    _pipeline: Pipeline
    _offer: Callable[[Any], None]

    def _start(
        self,
        signal: Signal,
        exporter: Any,
        argument: str,
        meter_provider: MeterProvider | None,
        exporter_factory: Callable[..., Any] | None,
        options: dict[str, Any],
    ) -> None:
        # The stock arguments first, with the SDK's ValueError messages, as the stock classes do.
        config = resolve_config(signal, **options)
        _check_exporter(exporter, argument)
        metrics = parse_boolean_environment_variable(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED)
        self._pipeline = pipeline = Pipeline(
            config,
            exporter,
            exporter_factory=exporter_factory,
            meter_provider=meter_provider,
            metrics_enabled=metrics,
        )
        # The pipeline holds no reference back: collecting the processor drains and stops it.
        # Not at exit: finalize's own exit hook would only *start* the drain; shutdown_all waits for it.
        weakref.finalize(self, pipeline.close_async).atexit = False
        if config.flush_on_sigterm:
            install_sigterm_flush()

    def shutdown(self) -> None:
        """Export what is queued (bounded by shutdown_timeout_millis), then stop.  Safe to call twice."""
        self._offer = self._pipeline.reject_shutdown
        self._pipeline.shutdown()

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export everything offered before this call; False if ``timeout_millis`` passes first.

        ``None`` waits up to ``export_timeout_millis``.
        """
        return self._pipeline.force_flush(None if timeout_millis is None else timeout_millis / 1000.0)

    async def aforce_flush(self, timeout_millis: int | None = None) -> bool:
        """``force_flush`` for asyncio applications: waits in a thread, never blocks the running loop."""
        import asyncio

        return await asyncio.to_thread(self.force_flush, timeout_millis)

    async def ashutdown(self) -> None:
        """``shutdown`` for asyncio applications: waits in a thread, never blocks the running loop."""
        import asyncio

        self._offer = self._pipeline.reject_shutdown
        await asyncio.to_thread(self._pipeline.shutdown)

    def stats(self) -> dict[str, Any]:
        """A snapshot: queued, exported, dropped by reason, per tenant and per priority, latency."""
        return self._pipeline.snapshot()


class SchedulerOptions(TypedDict, total=False):
    """The keyword-only options both processors take (see docs/configuration.md)."""

    policy: str
    tenant_key: str
    inherit_priority: bool
    max_tenants: int
    tenant_weights: Mapping[str, float] | str
    priority_rules: str | Sequence[Any]
    max_queue_bytes: int
    max_export_batch_bytes: int
    aging_millis: float
    max_age_millis: Mapping[str | PriorityClass, float] | str
    fair_quantum_bytes: int
    max_concurrent_exports: int
    adaptive_concurrency: bool
    endpoints: str | Sequence[str]
    otlp_fast_path: bool
    spool_dir: str
    spool_max_bytes: int
    spool_max_age_millis: float
    resource_aware: bool
    memory_limit_mib: float
    signal_weights: Mapping[str, float] | str
    cpu_cap_cores: float
    self_tuning: bool
    shutdown_timeout_millis: float
    exit_timeout_millis: float
    flush_on_sigterm: bool
    max_recursion_depth: int


class ScheduledSpanProcessor(_Scheduled, SpanProcessor):
    """Drop-in replacement for ``BatchSpanProcessor`` with a scheduled export pipeline.

    Positional arguments are the stock ones.  Keyword-only: ``meter_provider`` (as in the SDK),
    ``exporter_factory`` (a callable returning a new exporter, for more export lanes; called with
    the endpoint URL when it takes an argument and ``endpoints`` are set) and the options of
    :class:`SchedulerOptions`, each also an ``OTEL_PYTHON_SCHED_*`` variable (docs/configuration.md).
    """

    def __init__(
        self,
        span_exporter: Any,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        exporter_factory: Callable[..., Any] | None = None,
        **options: Unpack[SchedulerOptions],
    ) -> None:
        stock = _stock_options(
            max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis
        )
        self._start(
            Signal.TRACES,
            span_exporter,
            "span_exporter",
            meter_provider,
            exporter_factory,
            {**stock, **options},
        )
        self._offer = self._pipeline.offer
        # Tenants inherited within a trace and inherit_priority need each span's parent (and baggage).
        self._capture = self._pipeline.config.tenant_key is not None or self._pipeline.config.inherit_priority

    @property
    def span_exporter(self) -> Any:
        """The exporter, as ``BatchSpanProcessor.span_exporter`` offers it."""
        return self._pipeline._exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._capture:  # capture_origin(span, parent_context), inlined: this is the app thread
            context = get_current() if parent_context is None else parent_context
            try:
                attributes: Any = span._attributes
                attributes._otel_sched_origin = context
            except AttributeError:  # not an SDK span: it gets its own tenant sources only
                pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._offer(span)


class ScheduledLogRecordProcessor(_Scheduled, LogRecordProcessor):
    """Drop-in replacement for ``BatchLogRecordProcessor`` with a scheduled export pipeline.

    Positional arguments are the stock ones (note their order differs from the span processor's,
    as in the SDK); keyword-only options as :class:`ScheduledSpanProcessor`.  Log records produced
    while exporting (an exporter logging through the OTel ``LoggingHandler``) are accepted up to
    ``max_recursion_depth`` levels deep and dropped beyond (reason ``recursion``).
    """

    def __init__(
        self,
        exporter: Any,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        max_queue_size: int | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        exporter_factory: Callable[..., Any] | None = None,
        **options: Unpack[SchedulerOptions],
    ) -> None:
        stock = _stock_options(
            max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis
        )
        self._start(Signal.LOGS, exporter, "exporter", meter_provider, exporter_factory, {**stock, **options})
        self._offer = self._pipeline.offer_checked
        # A tenant key may name baggage or the record's span: their context stays until classified.
        self._snapshot = snapshot_log_with_context if self._pipeline.config.tenant_key else snapshot_log

    @property
    def exporter(self) -> Any:
        return self._pipeline._exporter

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # What a later processor or the application may change, fixed now (as the stock copy does);
        # the ReadableLogRecord is built from it on the scheduler thread.
        self._offer(self._snapshot(log_record))

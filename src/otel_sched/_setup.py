"""Programmatic setup: ``configure()`` builds the providers with our processors and exporters.

Three ways in, for three situations:

* :func:`configure` -- you own the setup: it builds a ``TracerProvider`` and a
  ``LoggerProvider`` with our processors and OTLP exporters and returns a :class:`Setup`.
* :func:`~otel_sched._adopt.adopt` -- someone else (a vendor distro, a framework) already built
  the providers with stock ``BatchSpanProcessor`` / ``BatchLogRecordProcessor``: each is
  replaced by ours around the *same* exporter instance.
* :func:`~otel_sched._adopt.patch_batch_processors` -- someone else *will* build them later:
  from then on ``BatchSpanProcessor(exporter, ...)`` / ``BatchLogRecordProcessor(exporter, ...)``
  return our processors (same exporter, same arguments) until ``unpatch_batch_processors``.

This module is the first; :mod:`otel_sched._adopt` the other two.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import _logs, trace
from opentelemetry._logs import _internal as _logs_api
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler

from ._config import validate_options
from ._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._safe import type_name
from .scheduling._task import Signal

__all__ = ["Setup", "configure", "is_api_default", "validate_processor_options"]

_logger = logging.getLogger(__name__)

_PROTOCOLS: Final = ("grpc", "http/protobuf")
# Defaults of the SDK's own configurator: "otlp" without a protocol means gRPC in Python.
_DEFAULT_PROTOCOL: Final = "grpc"
_SIGNAL_PATHS: Final = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs"}


# Keyword arguments of the processors that are objects, not OPTIONS entries.
_CODE_ONLY: Final = frozenset({"meter_provider", "exporter_factory"})


def validate_processor_options(options: Mapping[str, Any]) -> None:
    """Fail before anything changes, with the processors' own messages.

    Only the values given are checked: unset options come from the environment when the
    processors are built, which is where a bad variable is reported (once per processor).
    """
    validate_options(**{k: v for k, v in options.items() if k not in _CODE_ONLY})


# -- configure() ------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What :func:`configure` built.  ``shutdown()`` undoes it (flushes, stops, removes the handler)."""

    tracer_provider: TracerProvider | None
    logger_provider: LoggerProvider | None
    span_processor: ScheduledSpanProcessor | None
    log_processor: ScheduledLogRecordProcessor | None
    logging_handler: logging.Handler | None = None
    is_global: bool = False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush traces and logs concurrently, within one deadline; False if ``timeout_millis`` passes."""
        calls = [
            functools.partial(provider.force_flush, timeout_millis)
            for provider in (self.tracer_provider, self.logger_provider)
            if provider is not None
        ]
        return _concurrently(calls, timeout_millis / 1000.0)

    def shutdown(self) -> None:
        """Remove the logging handler, then shut both providers down concurrently (exporting what is
        queued, each pipeline within its ``shutdown_timeout_millis``)."""
        if self.logging_handler is not None:
            logging.getLogger().removeHandler(self.logging_handler)
            self.logging_handler = None
        _concurrently(
            [
                provider.shutdown
                for provider in (self.tracer_provider, self.logger_provider)
                if provider is not None
            ],
            None,
        )

    async def aforce_flush(self, timeout_millis: int = 30000) -> bool:
        """``force_flush`` for asyncio applications: waits in a thread, never blocks the loop."""
        return await asyncio.to_thread(self.force_flush, timeout_millis)

    async def ashutdown(self) -> None:
        """``shutdown`` for asyncio applications: waits in a thread, never blocks the loop."""
        await asyncio.to_thread(self.shutdown)

    def stats(self) -> dict[str, dict[str, Any]]:
        """``{"traces": ..., "logs": ...}``: each processor's ``stats()`` snapshot."""
        out: dict[str, dict[str, Any]] = {}
        if self.span_processor is not None:
            out["traces"] = self.span_processor.stats()
        if self.log_processor is not None:
            out["logs"] = self.log_processor.stats()
        return out


def _concurrently(calls: Sequence[Callable[[], Any]], timeout_s: float | None) -> bool:
    """Run ``calls`` at the same time; True if every one returned a true value (or None) before
    ``timeout_s`` (None: each call bounds itself).

    One deadline for all: flushing traces and logs takes the longer of the two, not the sum.
    """
    results: list[Any] = [False] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception:
            _logger.exception("otel-sched: %r raised", calls[i])

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    threads = [
        threading.Thread(target=run, args=(i,), name="otel-sched-flush", daemon=True)
        for i in range(len(calls))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    done = all(not thread.is_alive() for thread in threads)
    return done and all(result is None or bool(result) for result in results)


def _protocol_for(signal: Signal, protocol: str | None) -> str:
    if protocol is not None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol={protocol!r} is invalid: expected one of {', '.join(_PROTOCOLS)}")
        return protocol
    per_signal = "TRACES" if signal is Signal.TRACES else "LOGS"
    for name in (f"OTEL_EXPORTER_OTLP_{per_signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        if raw in _PROTOCOLS:
            return raw
        _logger.warning(
            "Invalid value %r for %s: expected one of %s. Using %r.",
            raw,
            name,
            ", ".join(_PROTOCOLS),
            _DEFAULT_PROTOCOL,
        )
        break
    return _DEFAULT_PROTOCOL


def _otlp_exporter(
    signal: Signal, endpoint: str | None, protocol: str | None, headers: Mapping[str, str] | None
) -> Any:
    """The stock OTLP exporter for ``signal``; unset arguments are left to its own env handling."""
    chosen = _protocol_for(signal, protocol)
    kwargs: dict[str, Any] = {}
    if headers is not None:
        kwargs["headers"] = dict(headers)
    if chosen == "grpc":
        if endpoint is not None:
            kwargs["endpoint"] = endpoint
        if signal is Signal.TRACES:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(**kwargs)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    if endpoint is not None:
        # Like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the signal's path appended.
        path = _SIGNAL_PATHS[signal]
        kwargs["endpoint"] = endpoint if endpoint.rstrip("/").endswith(path) else endpoint.rstrip("/") + path
    if signal is Signal.TRACES:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter

        return HTTPSpanExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter

    return HTTPLogExporter(**kwargs)


def _make_logging_handler(logger_provider: LoggerProvider) -> logging.Handler:
    """The instrumentation-logging handler when installed (the SDK's is deprecated), else the SDK's."""
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler as InstrumentationHandler
    except ImportError:
        pass
    else:
        handler: logging.Handler = InstrumentationHandler(logger_provider=logger_provider)
        return handler
    from opentelemetry.sdk._logs import LoggingHandler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(logger_provider=logger_provider)


def configure(
    *,
    service_name: str | None = None,
    resource: Resource | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    traces: bool = True,
    logs: bool = True,
    span_exporter: Any = None,
    log_exporter: Any = None,
    sampler: Sampler | None = None,
    logging_handler: bool = True,
    set_global: bool = True,
    **options: Any,
) -> Setup:
    """Build tracer and logger providers exporting through our processors; return a :class:`Setup`.

    * ``resource``: default ``Resource.create()``, which reads ``OTEL_SERVICE_NAME`` and
      ``OTEL_RESOURCE_ATTRIBUTES``; ``service_name`` overrides ``service.name``.
    * Exporters: ``span_exporter`` / ``log_exporter`` when given, otherwise the stock OTLP
      exporters.  ``protocol`` (``grpc`` | ``http/protobuf``) defaults to
      ``OTEL_EXPORTER_OTLP_{TRACES,LOGS}_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``, then ``grpc``
      as the SDK's configurator does.  ``endpoint`` is a base URL (``http://host:4318``; the
      ``/v1/traces`` path is appended for HTTP) and defaults to the exporters' own variables.
    * ``logging_handler``: attach a handler to the root logger sending stdlib ``logging``
      records to the logger provider (removed again by ``Setup.shutdown()``).
    * ``set_global``: make them the global providers.  Where a global provider is already set
      (an SDK provider, a vendor's proxy such as logfire's), it is left alone with one warning
      and ``Setup.is_global`` is False (see :func:`adopt` for that situation).
    * ``**options``: the processors' own options (``policy``, ``tenant_key``, ``priority_rules``,
      ``max_queue_size``, ...), applied to both; unset ones come from the environment.
    """
    validate_processor_options(options)
    if resource is None:
        resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    elif service_name:
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))

    tracer_provider = span_processor = None
    logger_provider = log_processor = None
    if traces:
        exporter = span_exporter or _otlp_exporter(Signal.TRACES, endpoint, protocol, headers)
        tracer_provider = TracerProvider(resource=resource, sampler=sampler)
        span_processor = ScheduledSpanProcessor(exporter, **options)
        tracer_provider.add_span_processor(span_processor)
    if logs:
        exporter = log_exporter or _otlp_exporter(Signal.LOGS, endpoint, protocol, headers)
        logger_provider = LoggerProvider(resource=resource)
        log_processor = ScheduledLogRecordProcessor(exporter, **options)
        logger_provider.add_log_record_processor(log_processor)

    is_global = set_global and _set_globals(tracer_provider, logger_provider)
    handler = None
    if logger_provider is not None and logging_handler:
        handler = _make_logging_handler(logger_provider)
        logging.getLogger().addHandler(handler)
    return Setup(tracer_provider, logger_provider, span_processor, log_processor, handler, is_global)


# What the API hands out before a global provider is set (ProxyLoggerProvider is not re-exported).
_API_DEFAULTS: Final = (
    trace.ProxyTracerProvider,
    trace.NoOpTracerProvider,
    _logs_api.ProxyLoggerProvider,
    _logs_api.NoOpLoggerProvider,
)


def is_api_default(provider: Any) -> bool:
    """Whether ``provider`` is what the API hands out while no global provider has been set."""
    return isinstance(provider, _API_DEFAULTS)


def _set_globals(tracer_provider: TracerProvider | None, logger_provider: LoggerProvider | None) -> bool:
    """Make ours the global providers; False (with one warning) where someone else's already is.

    The API sets each global once per process and refuses later calls with a warning of its own
    that says nothing about what to do, so a provider already set -- a vendor's proxy
    (logfire), a distro's SDK provider -- is detected first and left alone.
    """
    taken: list[str] = []
    if tracer_provider is not None:
        if is_api_default(trace.get_tracer_provider()):
            trace.set_tracer_provider(tracer_provider)
        if trace.get_tracer_provider() is not tracer_provider:
            taken.append(f"traces: {type_name(trace.get_tracer_provider())}")
    if logger_provider is not None:
        if is_api_default(_logs.get_logger_provider()):
            _logs.set_logger_provider(logger_provider)
        if _logs.get_logger_provider() is not logger_provider:
            taken.append(f"logs: {type_name(_logs.get_logger_provider())}")
    if taken:
        _logger.warning(
            "otel_sched.configure(): a global provider is already set (%s); it stays in place, so "
            "configure()'s provider for that signal is not global and gets nothing through the global "
            "API (Setup.is_global is False).  To schedule what that setup exports, call "
            "otel_sched.adopt() after it instead (see docs/getting-started.md).",
            "; ".join(taken),
        )
    return not taken

"""Taking over stock batch processors that someone else builds: ``adopt()`` and the patch.

* :func:`adopt` -- the providers are already built (a vendor distro, a framework) with stock
  ``BatchSpanProcessor`` / ``BatchLogRecordProcessor``: each is replaced by ours around the
  *same* exporter instance.
* :func:`patch_batch_processors` -- they *will* be built later: from then on
  ``BatchSpanProcessor(exporter, ...)`` / ``BatchLogRecordProcessor(exporter, ...)`` return
  our processors (same exporter, same arguments) until :func:`unpatch_batch_processors`.

What either leaves stock (a subclass, a processor a vendor builds to read its internals) is said
once per process.  :func:`otel_sched._setup.configure` is the way in when you own the setup.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._safe import type_name
from ._setup import is_api_default, validate_processor_options
from .scheduling._task import Signal

__all__ = [
    "PATCH_ENV",
    "Replacement",
    "adopt",
    "batch_processors_patched",
    "patch_batch_processors",
    "unpatch_batch_processors",
]

_logger = logging.getLogger(__name__)

PATCH_ENV: Final = "OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS"

# The stock processors' settings, as BatchProcessor stores them, mapped to our keyword names.
_STOCK_SETTINGS: Final = (
    ("_max_queue_size", "max_queue_size"),
    ("_schedule_delay_millis", "schedule_delay_millis"),
    ("_max_export_batch_size", "max_export_batch_size"),
    ("_export_timeout_millis", "export_timeout_millis"),
)
_STOCK_WORKER_ATTRS: Final = ("_exporter", "_shutdown", "_worker_awaken", "_worker_thread")


# -- adopt() ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replacement:
    """One stock processor that :func:`adopt` replaced.

    ``old`` is stopped (its queue exported, its worker ended) but its exporter -- now ``new``'s --
    was not shut down.  ``drained`` is False when the old worker's last export did not finish
    within ``drain_timeout_millis`` (it finishes in the background).
    """

    signal: str
    old: Any
    new: ScheduledSpanProcessor | ScheduledLogRecordProcessor
    drained: bool


@dataclass
class _Found:
    signal: Signal
    old: Any
    field: str  # "_span_processors" | "_log_record_processors"
    containers: list[Any]  # the (Synchronous|Concurrent)Multi*Processors holding it


_CONTAINERS: Final[dict[Signal, tuple[str, str, type, type]]] = {
    Signal.TRACES: ("_active_span_processor", "_span_processors", BatchSpanProcessor, SpanProcessor),
    Signal.LOGS: (
        "_multi_log_record_processor",
        "_log_record_processors",
        BatchLogRecordProcessor,
        LogRecordProcessor,
    ),
}
_SDK_PROVIDERS: Final = {Signal.TRACES: TracerProvider, Signal.LOGS: LoggerProvider}
# Where documented wrapper processors keep what they wrap: logfire's WrapperSpanProcessor /
# WrapperLogProcessor / PendingSpanProcessor (``processor``), its TailSamplingProcessor
# (``deferred_processor`` too).  Read from the instance's own attributes only: a property or a
# Mock() would answer any name.
_WRAPPER_ATTRS: Final = ("processor", "deferred_processor")
# A vendor proxy provider's SDK provider (logfire's ProxyTracerProvider / ProxyLoggerProvider).
_PROXY_ATTR: Final = "provider"
# Reported once per process: what adopt() or the patch left stock, and why.
_reported: set[str] = set()


def _own_attrs(obj: Any) -> dict[str, Any]:
    try:
        return dict(vars(obj))
    except TypeError:  # no __dict__ (slots)
        return {}


def _sdk_provider(signal: Signal, provider: Any) -> Any:
    """``provider`` itself when it is an SDK provider, else the SDK provider a vendor proxy holds."""
    for _ in range(3):  # a proxy of a proxy at most
        if isinstance(provider, _SDK_PROVIDERS[signal]):
            return provider
        provider = _own_attrs(provider).get(_PROXY_ATTR)
        if provider is None:
            return None
    return None


def _stock_internals_ok(processor: Any) -> bool:
    batch = getattr(processor, "_batch_processor", None)
    needed = _STOCK_WORKER_ATTRS + tuple(attr for attr, _ in _STOCK_SETTINGS)
    if batch is None or not all(hasattr(batch, attr) for attr in needed):
        return False
    return isinstance(batch._worker_awaken, threading.Event) and isinstance(
        batch._worker_thread, threading.Thread
    )


def _find(signal: Signal, provider: Any, held: list[str]) -> list[_Found] | None:
    """Stock processors in ``provider``'s processor tree, each with the multi processors holding it.

    The tree is walked through multi processors (at any depth) and documented wrapper shapes.
    A stock processor a wrapper holds directly (not in a multi processor) is not replaceable --
    the wrapper may read its internals, as logfire's ``DynamicBatchSpanProcessor`` does -- and is
    described in ``held``.  ``None`` when the provider's internals are not what this SDK version
    is known to have.
    """
    attr, field_name, stock, base = _CONTAINERS[signal]
    root = getattr(provider, attr, None)
    if not isinstance(getattr(root, field_name, None), tuple):
        return None
    found: list[_Found] = []
    pending = [root]
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:  # a processor registered twice, or inside itself
            continue
        seen.add(id(node))
        children = getattr(node, field_name, None) if isinstance(node, base) else None
        if not isinstance(children, tuple):
            attrs = _own_attrs(node)
            for name in _WRAPPER_ATTRS:
                child = attrs.get(name)
                if isinstance(child, stock):
                    held.append(f"{type_name(node)}.{name} = {type_name(child)}")
                elif isinstance(child, base):
                    pending.append(child)
            continue
        for processor in children:
            if type(processor) is stock:
                if not _stock_internals_ok(processor):
                    return None
                if processor._batch_processor._shutdown:  # type: ignore[attr-defined]
                    _logger.info(
                        "otel_sched.adopt(): skipping a %s that is already shut down", stock.__name__
                    )
                    continue
                same = [f for f in found if f.old is processor]
                if same:
                    same[0].containers.append(node)
                else:
                    found.append(_Found(signal, processor, field_name, [node]))
            elif isinstance(processor, stock):
                _logger.info(
                    "otel_sched.adopt(): leaving %s in place: a subclass of %s may rely on its own behaviour",
                    type_name(processor),
                    stock.__name__,
                )
            elif isinstance(processor, base):
                pending.append(processor)
    return found


_VENDOR_ROUTE: Final = (
    "To schedule those exports, hand the vendor our processor instead of letting it build a stock one "
    "(logfire: logfire.configure(send_to_logfire=False, additional_span_processors=[ScheduledSpanProcessor("
    "exporter)], advanced=logfire.AdvancedOptions(log_record_processors=[ScheduledLogRecordProcessor("
    "exporter)])); see docs/getting-started.md."
)


def _report_held(where: str, held: list[str]) -> None:
    new = [h for h in dict.fromkeys(held) if h not in _reported]
    if not new:
        return
    _reported.update(new)
    _logger.warning(
        "%s: left %d stock batch processor(s) in place: a vendor wrapper holds them directly and reads "
        "their internals, so replacing them would break it: %s.  %s",
        where,
        len(new),
        "; ".join(new),
        _VENDOR_ROUTE,
    )


def _replace_in(container: Any, field: str, old: Any, build: Callable[[], Any]) -> Any:
    """Under the container's own lock: if ``old`` is there, put ``build()`` in its place."""
    lock = getattr(container, "_lock", None)

    def replace() -> Any:
        current = getattr(container, field)
        if not any(p is old for p in current):
            return None
        new = build()
        setattr(container, field, tuple(new if p is old else p for p in current))
        return new

    if lock is not None and hasattr(lock, "__enter__"):
        with lock:
            return replace()
    return replace()


def _same(processor: Any) -> Any:
    return processor


def _swap(found: _Found, build: Callable[[], Any]) -> Any:
    """Build ours and put it wherever ``old`` is registered, one tuple assignment per container.

    Built under a container's lock, after checking ``old`` is still there: a processor built and
    then not used would shut the shared exporter down when garbage collected.  ``None`` if
    ``old`` is gone from every container.
    """
    new = None
    for container in found.containers:
        if new is None:
            new = _replace_in(container, found.field, found.old, build)
        else:
            _replace_in(container, found.field, found.old, functools.partial(_same, new))
    return new


def _retire(old: Any, timeout_s: float) -> bool:
    """Stop a stock processor's worker without shutting its (now shared) exporter down.

    ``BatchProcessor.shutdown()`` would call ``exporter.shutdown()``; instead its worker is told to
    stop the way shutdown tells it, and exports what is still queued on its way out.  A later
    ``old.shutdown()`` is then a no-op (it returns early once ``_shutdown`` is set).
    """
    batch = old._batch_processor
    batch._shutdown = True
    batch._worker_awaken.set()
    worker: threading.Thread = batch._worker_thread
    if worker is threading.current_thread():
        return False
    worker.join(timeout_s)
    return not worker.is_alive()


def adopt(
    tracer_provider: Any = None,
    logger_provider: Any = None,
    *,
    drain_timeout_millis: float = 30000,
    **options: Any,
) -> list[Replacement]:
    """Replace the stock batch processors on already-built providers with ours; return what changed.

    With no provider given, the global tracer and logger providers are used; with either given,
    only the ones given; a vendor's proxy provider (logfire's) stands for the SDK provider it holds.
    Every ``BatchSpanProcessor`` / ``BatchLogRecordProcessor`` in their processor trees (directly,
    in nested multi processors, or in multi processors inside wrappers such as logfire's;
    subclasses are left alone) is replaced, in place and in order, by ours built around the
    same exporter instance with the same
    ``max_queue_size`` / ``schedule_delay_millis`` / ``max_export_batch_size`` /
    ``export_timeout_millis`` unless ``options`` say otherwise.  The old processor's queue is
    exported and its worker stopped; the exporter is not shut down.  Its last export may overlap
    ours for a moment.

    A stock processor a wrapper holds directly (logfire's ``DynamicBatchSpanProcessor``) is left in
    place, with one warning naming the types and the supported route.  If a provider's internals
    are not what this SDK version is known to have, a warning is logged and nothing is changed.
    Bad ``options`` raise before anything changes.  Messages name objects by type only: a
    provider or exporter may carry credentials.
    """
    validate_processor_options(options)
    given: dict[Signal, Any] = {Signal.TRACES: tracer_provider, Signal.LOGS: logger_provider}
    given_none = tracer_provider is None and logger_provider is None
    if given_none:
        given = {Signal.TRACES: trace.get_tracer_provider(), Signal.LOGS: _logs.get_logger_provider()}

    everything: list[_Found] = []
    held: list[str] = []
    for signal, provider in given.items():
        if provider is None or (given_none and is_api_default(provider)):
            continue  # not given, or no global set: nothing to adopt there
        sdk = _sdk_provider(signal, provider)
        found = None if sdk is None else _find(signal, sdk, held)
        if found is None:
            _logger.warning(
                "otel_sched.adopt(): the %s provider, a %s, is not (and holds no) OpenTelemetry SDK provider "
                "this version knows; nothing was changed.",
                signal.value,
                type_name(provider),
            )
            return []
        everything.extend(found)
    if given_none and all(is_api_default(p) for p in given.values()):
        _logger.warning(
            "otel_sched.adopt(): no global tracer or logger provider is set yet, so there is nothing to "
            "adopt: call it after the setup that builds them."
        )
    _report_held("otel_sched.adopt()", held)

    replacements: list[Replacement] = []
    timeout_s = max(drain_timeout_millis, 0) / 1000.0
    for item in everything:
        batch = item.old._batch_processor
        kwargs: dict[str, Any] = {name: getattr(batch, attr) for attr, name in _STOCK_SETTINGS}
        kwargs.update(options)
        factory = ScheduledSpanProcessor if item.signal is Signal.TRACES else ScheduledLogRecordProcessor
        try:
            new = _swap(item, functools.partial(factory, batch._exporter, **kwargs))
        except (TypeError, ValueError) as exc:
            # e.g. a stock export_timeout_millis of 0, which the stock class never checked.
            _logger.warning("otel_sched.adopt(): leaving a %s in place: %s", type_name(item.old), exc)
            continue
        if new is None:
            continue
        drained = _retire(item.old, timeout_s)
        if not drained:
            _logger.warning(
                "otel_sched.adopt(): the replaced %s's last export is still running after %s ms; "
                "it will finish in the background.",
                type(item.old).__name__,
                drain_timeout_millis,
            )
        replacements.append(Replacement(item.signal.value, item.old, new, drained))
    return replacements


# -- patch_batch_processors() -----------------------------------------------------------------------

_patch_lock = threading.Lock()
# None while not patched; otherwise the options applied to the processors built in place of stock.
_patch_options: dict[str, Any] | None = None
_wrapped_classes: set[type] = set()


def _constructor_wrapper(
    stock: type, ours: Callable[..., Any]
) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cls = args[0]
        options = _patch_options
        # Subclasses keep their own class: they may depend on the stock behaviour.
        if options is not None and cls is stock and not _built_for_a_reader_of_internals(stock):
            try:
                return ours(*args[1:], **{**options, **kwargs})
            except (TypeError, ValueError) as exc:
                # The stock constructor then raises the SDK's own error, or works where ours refused.
                _logger.warning("otel_sched: building the stock %s instead: %s", stock.__name__, exc)
        # Returning an instance of cls makes type.__call__ run the stock __init__ as usual.
        return wrapped(cls)

    return wrapper


# Vendor modules that build a stock processor and then read its private internals: what they build
# stays stock under the patch.  logfire's DynamicBatchSpanProcessor reads ``processor._batch_processor``
# (and logfire decides from it whether its pending-span processor is needed).
_READS_STOCK_INTERNALS: Final = frozenset({"logfire._internal.exporters.dynamic_batch"})
_PASS_THROUGH_MODULES: Final = ("wrapt", __name__)


def _built_for_a_reader_of_internals(stock: type) -> bool:
    """Whether the code constructing ``stock`` right now is in ``_READS_STOCK_INTERNALS`` (said once)."""
    frame: Any = sys._getframe(2)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(_PASS_THROUGH_MODULES):
        frame = frame.f_back
    module = "" if frame is None else str(frame.f_globals.get("__name__", ""))
    if module not in _READS_STOCK_INTERNALS:
        return False
    built = f"{module} builds {stock.__module__}.{stock.__qualname__}"
    _report_held("otel_sched: the batch-processor patch", [built])
    return True


def _install_wrappers() -> None:
    """Wrap ``__new__`` of both stock classes, once per process.

    Returning another object from ``__new__`` is what makes *every* reference to the class --
    including ``from ... import BatchSpanProcessor`` bindings made before patching -- construct
    ours.  The wrapper stays installed after unpatching and passes through: CPython cannot
    restore the original ``object.__new__`` slot once ``__new__`` was assigned on a class.
    """
    import wrapt

    for stock, ours in (
        (BatchSpanProcessor, ScheduledSpanProcessor),
        (BatchLogRecordProcessor, ScheduledLogRecordProcessor),
    ):
        if stock in _wrapped_classes:
            continue
        wrapt.wrap_function_wrapper(stock, "__new__", _constructor_wrapper(stock, ours))
        _wrapped_classes.add(stock)


def patch_batch_processors(**options: Any) -> None:
    """From now on, ``BatchSpanProcessor(...)`` / ``BatchLogRecordProcessor(...)`` build ours.

    Same exporter and arguments; ``options`` (``policy``, ``tenant_key``, ...) are added to each.
    Subclasses of the stock classes and processors built before this call are not affected
    (see :func:`adopt` for those), nor are the ones a vendor wrapper builds to read their
    internals (logfire's ``DynamicBatchSpanProcessor``; said once, with the supported route).
    Calling it again replaces the options.  Reversed by :func:`unpatch_batch_processors`.
    Bad options raise here, not at construction.
    """
    global _patch_options
    validate_processor_options(options)
    with _patch_lock:
        _install_wrappers()
        _patch_options = dict(options)


def unpatch_batch_processors() -> None:
    """Stock classes build stock processors again.  Processors already built stay ours."""
    global _patch_options
    with _patch_lock:
        _patch_options = None


def batch_processors_patched() -> bool:
    """Whether :func:`patch_batch_processors` is in effect."""
    return _patch_options is not None

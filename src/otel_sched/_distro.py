"""``opentelemetry-instrument`` entry points: the ``otel_sched`` distro and configurator.

Installed with the ``instrument`` extra (``pip install 'otel-sched[instrument]'``).  Installing
it never changes which vendor setup runs: ``opentelemetry-instrument`` runs the *first* distro and
configurator entry points it finds when ``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` are
unset, in an order nobody chose, so ours act only when selected --
``OTEL_PYTHON_DISTRO=otel_sched`` (which also defaults ``OTEL_PYTHON_CONFIGURATOR=otel_sched``),
or when no other distro / configurator is installed.  Found first without being selected, ours
hand over to the first *other* one, exactly what would have run without otel-sched.

Under another distro (the community ``opentelemetry-distro``, Splunk's, ...) the
``opentelemetry_post_instrument`` hook :func:`adopt_after_instrumentation` runs after that
distro's configurator built the providers and the instrumentors were loaded; with
``OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS=true`` it swaps their stock batch processors for ours
(:func:`otel_sched.adopt`), keeping everything else the vendor set up.

The configurator builds the SDK exactly as the stock ``_OTelSDKConfigurator`` does -- same
resource, sampler, id generator, exporters from ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``, metric
readers, tracer/meter/logger configurators, OpAMP hooks and the
``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED`` logging handler -- by *calling* the SDK's
own ``_initialize_components``; only the exporter-to-processor step differs:

* SDK >= 1.40: ``_initialize_components`` takes ``export_span_processor`` /
  ``export_log_record_processor`` factories (called as ``factory(exporter)`` for each
  configured exporter).  We pass our processor classes, so no stock processor is ever built.
  This reuses every other line of the SDK's setup and keeps working as it evolves.
* Older SDKs (1.39): those parameters do not exist, so ``_initialize_components`` runs as is
  and :func:`otel_sched.adopt` then swaps each stock batch processor on the global providers
  for ours around the same exporter.
* ``OTEL_CONFIG_FILE`` set (declarative configuration, SDK >= 1.43): the SDK's configurator
  loads and applies the file (1.43 itself; from 1.44 through ``opentelemetry-configuration``,
  without which the SDK raises ``RuntimeError`` and auto-instrumentation does not start -- we
  keep that).  The file decides exporters, processors and their batch settings; afterwards
  every ``batch`` processor it created is swapped for ours with the same exporter and settings
  (:func:`otel_sched.adopt`); ``simple`` processors stay as they are.  On older SDKs the
  variable is ignored by the SDK: its environment path runs and the swap replaces its processors.

Wrapping the SDK's private ``_init_tracing`` / ``_init_logging`` instead would mean copying
their bodies (provider construction, logging handler, config-function overrides) and
following every change to them; the factory parameters are the SDK's own extension point.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator
from typing import Any, Final

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined, unused-ignore]
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR, OTEL_PYTHON_DISTRO
from opentelemetry.sdk import _configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL
from opentelemetry.util._importlib_metadata import EntryPoint, entry_points

from ._adopt import PATCH_ENV, adopt, patch_batch_processors
from ._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor

__all__ = ["OtelSchedConfigurator", "OtelSchedDistro", "adopt_after_instrumentation"]

_logger = logging.getLogger(__name__)

ENTRY_POINT_NAME: Final = "otel_sched"
# Not imported from the SDK: its constant only exists in versions with declarative config.
_OTEL_CONFIG_FILE: Final = "OTEL_CONFIG_FILE"


def _patch_requested() -> bool:
    raw = os.environ.get(PATCH_ENV, "").strip()
    if not raw:
        return False
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered not in ("false", "0", "no", "off"):
        _logger.warning("Invalid value %r for %s: expected true or false. Using false.", raw, PATCH_ENV)
    return False


def _maybe_patch() -> None:
    if _patch_requested():
        patch_batch_processors()


def _vendor_instead(variable: str, group: str) -> EntryPoint | None:
    """The entry point that runs in our place: None when ours is selected.

    Ours is selected by name in ``variable``, or by being the only one of ``group``.  Otherwise
    the first other entry point is what ``opentelemetry-instrument`` would have run had
    otel-sched not been installed.
    """
    chosen = os.environ.get(variable)
    if chosen == ENTRY_POINT_NAME:
        return None
    # opentelemetry-instrument loads ours only when unset; a direct call may name another.
    others = [ep for ep in entry_points(group=group) if ep.name != ENTRY_POINT_NAME]
    return next((ep for ep in others if chosen is None or ep.name == chosen), None)


@contextlib.contextmanager
def _visible_warnings() -> Iterator[None]:
    """Our warnings reach stderr too while root's only handlers are OpenTelemetry's.

    After the configurator, root may hold nothing but the SDK's logging handler: a warning about
    the setup would then only go to the collector it is about.
    """
    root = logging.getLogger()
    if any(type(h).__module__.split(".")[0] != "opentelemetry" for h in root.handlers) or not root.handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    ours = logging.getLogger("otel_sched")
    ours.addHandler(handler)
    try:
        yield
    finally:
        ours.removeHandler(handler)


def adopt_after_instrumentation() -> None:
    """``opentelemetry_post_instrument`` hook: with the patch variable, adopt what a vendor built.

    Runs after whichever distro and configurator ``opentelemetry-instrument`` selected, so the
    vendor's setup (resource, propagators, profiling, its own processors) stays; only its stock
    batch processors become ours.  Under our own configurator there is nothing left to swap.
    """
    with _visible_warnings():
        if _patch_requested():
            adopt()


def _initialize_components_takes_processor_factories() -> bool:
    parameters = inspect.signature(_configuration._initialize_components).parameters
    return "export_span_processor" in parameters and "export_log_record_processor" in parameters


class OtelSchedConfigurator(_OTelSDKConfigurator):
    """The stock SDK configurator, with our processors for traces and logs (see the module doc)."""

    def _configure(self, **kwargs: Any) -> None:
        vendor = _vendor_instead(OTEL_PYTHON_CONFIGURATOR, "opentelemetry_configurator")
        if vendor is not None:
            _logger.debug("otel_sched configurator not selected: running %s in its place", vendor.name)
            vendor.load()().configure(**kwargs)
            return
        _maybe_patch()
        if os.environ.get(_OTEL_CONFIG_FILE, "").strip():
            super()._configure(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]
            adopt()
            return
        if _initialize_components_takes_processor_factories():
            kwargs.setdefault("export_span_processor", ScheduledSpanProcessor)
            kwargs.setdefault("export_log_record_processor", ScheduledLogRecordProcessor)
            _configuration._initialize_components(**kwargs)
            return
        _configuration._initialize_components(**kwargs)
        adopt()


class OtelSchedDistro(BaseDistro):  # type: ignore[misc]
    """The defaults of the stock ``opentelemetry-distro``, and our configurator -- when selected.

    Not selected (see the module doc), it hands ``configure()`` and ``load_instrumentor()`` to
    the distro that would have run without otel-sched.  Selected, it sets (unless already set)
    ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` and ``OTEL_LOGS_EXPORTER`` to ``otlp``
    and ``OTEL_EXPORTER_OTLP_PROTOCOL`` to ``grpc``, exactly as ``opentelemetry-distro`` does;
    selected by name (``OTEL_PYTHON_DISTRO=otel_sched``), also ``OTEL_PYTHON_CONFIGURATOR=otel_sched``
    so that our configurator is the one loaded when other configurators are installed too.  With
    ``OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS=true`` it also applies
    :func:`otel_sched.patch_batch_processors`, for setups that build stock processors later.
    """

    _vendor: Any = None  # the distro acting in our place (BaseDistro instances are singletons)

    def _configure(self, **kwargs: Any) -> None:
        vendor = _vendor_instead(OTEL_PYTHON_DISTRO, "opentelemetry_distro")
        if vendor is not None:
            distro = vendor.load()()
            if isinstance(distro, BaseDistro):
                _logger.debug("otel_sched distro not selected: running %s in its place", vendor.name)
                type(self)._vendor = distro
                distro.configure(**kwargs)
                return
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
        if os.environ.get(OTEL_PYTHON_DISTRO) == ENTRY_POINT_NAME:
            os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, ENTRY_POINT_NAME)
        _maybe_patch()

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if self._vendor is not None:
            self._vendor.load_instrumentor(entry_point, **kwargs)
        else:
            super().load_instrumentor(entry_point, **kwargs)

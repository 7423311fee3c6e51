"""``opentelemetry-instrument`` entry points: the ``otel_sched`` distro and configurator.

Installed with the ``instrument`` extra (``pip install 'otel-sched[instrument]'``), selected
like any distro: automatically when it is the only one, otherwise with
``OTEL_PYTHON_DISTRO=otel_sched`` (our distro then also defaults
``OTEL_PYTHON_CONFIGURATOR=otel_sched``, so the configurator below is the one that runs).

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

import inspect
import logging
import os
from typing import Any, Final

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined, unused-ignore]
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.sdk import _configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL

from ._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._setup import PATCH_ENV, adopt, patch_batch_processors

__all__ = ["OtelSchedConfigurator", "OtelSchedDistro"]

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


def _initialize_components_takes_processor_factories() -> bool:
    parameters = inspect.signature(_configuration._initialize_components).parameters
    return "export_span_processor" in parameters and "export_log_record_processor" in parameters


class OtelSchedConfigurator(_OTelSDKConfigurator):
    """The stock SDK configurator, with our processors for traces and logs (see the module doc)."""

    def _configure(self, **kwargs: Any) -> None:
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
    """The defaults of the stock ``opentelemetry-distro``, and our configurator.

    Sets (unless already set) ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` and
    ``OTEL_LOGS_EXPORTER`` to ``otlp`` and ``OTEL_EXPORTER_OTLP_PROTOCOL`` to ``grpc``, exactly
    as ``opentelemetry-distro`` does, plus ``OTEL_PYTHON_CONFIGURATOR=otel_sched`` so that our
    configurator is the one loaded when other configurators are installed too.  With
    ``OTEL_PYTHON_SCHED_PATCH_BATCH_PROCESSORS=true`` it also applies
    :func:`otel_sched.patch_batch_processors`, for setups that build stock processors later.
    """

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "otlp")
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, ENTRY_POINT_NAME)
        _maybe_patch()

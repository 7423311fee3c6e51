"""Exporters: what a lane calls, and where more exporter instances come from.

Sync and async exporters
------------------------
A *sync* exporter is any ``SpanExporter`` / ``LogRecordExporter``: ``export(batch)``
returns an export result.  An *async* exporter is an object whose ``export`` is a
coroutine function, or which offers ``async def aexport(batch)``; either returns an
export result (``SUCCESS`` / ``FAILURE`` by name).  Its ``shutdown`` may be sync or a
coroutine function.  Async exporters run on one asyncio event loop owned by the
pipeline (a background thread), never on the application's loop.

More than one lane
------------------
The SDK forbids concurrent ``export`` calls on one exporter instance, so each lane
owns its own instance.  Instances come from, in order:

1. ``exporter_factory=`` -- a callable taking no argument (or, with several
   endpoints, the endpoint URL) and returning a new exporter;
2. a clone of a stock OTLP exporter (HTTP or gRPC, spans or logs): a new instance of
   the same class with the same endpoint, headers, timeout, compression and TLS
   settings -- these exporters hold a connection pool / channel per instance and
   nothing else that must be shared;
3. otherwise one lane: the single instance you passed.

No exporter is treated as safe for concurrent ``export`` on one instance: the stock
gRPC exporter rebuilds its channel on ``UNAVAILABLE`` (racing other calls) and
``requests.Session`` makes no thread-safety promise, so sharing would only trade a
clone for a risk.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any
from urllib.parse import urlparse

from .._safe import describe, safe_url, type_name
from . import _stock

__all__ = ["ExporterSpec", "FastPath", "assemble_tasks", "build_spec", "is_async", "parse_endpoints"]

_logger = logging.getLogger(__name__)


def is_async(exporter: Any) -> bool:
    """True for an exporter that follows the async protocol (see the module docstring)."""
    return inspect.iscoroutinefunction(getattr(exporter, "aexport", None)) or inspect.iscoroutinefunction(
        getattr(exporter, "export", None)
    )


def _signal_path(exporter: Any) -> str:
    kind = _stock.stock_kind(exporter)
    return "v1/logs" if kind is not None and kind[1] == "logs" else "v1/traces"


def _signal_url(exporter: Any, endpoint: str) -> str:
    """An HTTP endpoint given as a base URL gets the signal path, as OTEL_EXPORTER_OTLP_ENDPOINT does."""
    path = urlparse(endpoint).path
    if path in ("", "/"):
        return f"{endpoint.rstrip('/')}/{_signal_path(exporter)}"
    return endpoint


class ExporterSpec:
    """How to get exporter instances for lanes, per endpoint.

    Guarantees: ``make(endpoint)`` either returns a new instance with ``export`` or
    raises ``TypeError``/``ValueError`` naming what was wrong; ``first`` is the
    user's own instance and is used by the first lane of the first endpoint.
    """

    def __init__(
        self,
        first: Any,
        factory: Callable[..., Any] | None,
        cloneable: bool,
        takes_endpoint: bool,
        endpoints: list[str],
    ) -> None:
        self.first = first
        self._factory = factory
        self.cloneable = cloneable
        self._takes_endpoint = takes_endpoint
        self.endpoints = endpoints
        self.asynchronous = is_async(first)

    @property
    def can_multiply(self) -> bool:
        return self._factory is not None or self.cloneable

    def collectors(self) -> frozenset[str] | None:
        """``host:port`` of every collector this pipeline sends to; None when that is not known.

        Known for configured endpoints and for the stock OTLP exporters; another exporter may
        send anywhere.
        """
        urls = list(self.endpoints)
        if not urls and self.cloneable:
            first = _stock.endpoint(self.first)
            urls = [first] if first is not None else []
        netlocs = {urlparse(url if "://" in url else f"//{url}").netloc.lower() for url in urls}
        return frozenset(netlocs) if netlocs and "" not in netlocs else None

    def make(self, endpoint: str | None) -> Any:
        if self._factory is not None:
            try:
                made = self._factory(endpoint) if self._takes_endpoint and endpoint else self._factory()
            except Exception as exc:
                factory = type_name(self._factory)
                raise ValueError(f"exporter_factory {factory} raised {type_name(exc)}") from exc
            _check(made, f"exporter_factory {type_name(self._factory)} returned")
            return made
        kind = _stock.stock_kind(self.first)
        if kind is not None:
            url = _signal_url(self.first, endpoint) if endpoint and kind[0] == "http" else endpoint
            return _stock.clone(self.first, url)
        raise TypeError(f"{type(self.first).__name__} cannot be multiplied: pass exporter_factory=")


def _check(exporter: object, what: str) -> None:
    has_export = callable(getattr(exporter, "export", None)) or callable(getattr(exporter, "aexport", None))
    if exporter is None or not has_export:
        raise TypeError(
            f"{what} {describe(exporter)}, which is not an exporter: expected an object with export(batch)"
        )


def parse_endpoints(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``OTEL_PYTHON_SCHED_ENDPOINTS``: comma-separated URLs (http://host:port or https://...)."""
    if value is None:
        return []
    items = (
        [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    )
    out: list[str] = []
    for i, item in enumerate(items, 1):
        if not item:
            continue
        parsed = urlparse(item)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"endpoint #{i} {safe_url(item)!r} is not a collector URL: expected http://host:port or https://host:port"
            )
        out.append(item)
    return out


def build_spec(exporter: Any, factory: Callable[..., Any] | None, endpoints: list[str]) -> ExporterSpec:
    """Validate the factory at construction (it is called once) and decide how lanes get exporters."""
    takes_endpoint = False
    if factory is not None:
        if not callable(factory):
            raise TypeError(
                f"exporter_factory={describe(factory)} is not callable: "
                "expected a callable returning an exporter"
            )
        try:
            takes_endpoint = bool(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            takes_endpoint = False
    cloneable = False
    if factory is None and _stock.stock_kind(exporter) is not None:
        try:
            probe = _stock.clone(exporter, None)
            probe.shutdown()
            cloneable = True
        except Exception as exc:  # noqa: BLE001 - internals changed: fall back to one lane, and say why
            _logger.info(
                "otel-sched: cannot clone %s (%s); using one export lane", type_name(exporter), type_name(exc)
            )
    spec = ExporterSpec(exporter, factory, cloneable, takes_endpoint, endpoints)
    if factory is not None:  # fail at construction, not on the first export
        spec.make(endpoints[0] if endpoints else None).shutdown()
    if endpoints and not spec.can_multiply:
        raise ValueError(
            f"endpoints={[safe_url(e) for e in endpoints]} need exporters per endpoint: "
            "pass exporter_factory= "
            f"(a {type(exporter).__name__} cannot be re-targeted)"
        )
    return spec


class FastPath:
    """A lane's exporter on the pre-encoded path: assembles tasks' bytes and sends them.

    Replaces ``exporter.export(items)`` for stock OTLP exporters: the items were encoded
    once on the scheduler thread, so a batch is assembled under its resource/scope
    envelopes without re-encoding and sent by a :mod:`~otel_sched.otlp._sender` sender
    (one attempt; the pipeline owns retries).  ``exporter`` is the stock instance it
    stands in for: it is only shut down with the lane.
    """

    def __init__(self, sender: Any, exporter: Any, signal: str) -> None:
        from ._encoding import assemble_logs, assemble_traces

        self.sender = sender
        self.exporter = exporter
        self._assemble = assemble_traces if signal == "traces" else assemble_logs
        self.timeout = float(getattr(sender, "timeout", 10.0))

    def export_tasks(self, batch: Sequence[Any]) -> Any:
        return self.sender.send(self._body(batch), self.timeout)

    def _body(self, batch: Sequence[Any]) -> bytes:
        return assemble_tasks(self._assemble, batch)

    def send_body(self, body: bytes) -> Any:
        """Send an already assembled request (a spooled batch being replayed)."""
        return self.sender.send(body, self.timeout)

    def assemble(self, batch: Sequence[Any]) -> bytes:
        return self._body(batch)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        self.sender.shutdown()
        try:
            self.exporter.shutdown()
        except Exception:
            _logger.exception("Exporter %s raised in shutdown()", type(self.exporter).__name__)


_envelope_of = attrgetter("envelope")
_encoded_of = attrgetter("encoded")


def assemble_tasks(assemble: Callable[[Any], bytes], batch: Sequence[Any]) -> bytes:
    """One OTLP request from pre-encoded tasks, grouped under their resource/scope envelopes."""
    encoded = list(map(_encoded_of, batch))
    pairs = list(map(_envelope_of, batch))
    # The envelope pairs are cached objects: one pair for the whole batch (the usual case: one
    # resource, one scope) is a single group, found and filled without a Python-level loop.
    if pairs and pairs.count(pairs[0]) == len(pairs):
        renv, senv = pairs[0]
        return assemble([(renv, [(senv, encoded)])])
    resources: dict[Any, tuple[Any, dict[Any, tuple[Any, list[bytes]]]]] = {}
    last: Any = None
    bucket: list[bytes] = []
    for pair, data in zip(pairs, encoded, strict=True):
        if pair is not last:
            renv, senv = pair
            entry = resources.get(renv.key)
            if entry is None:
                entry = resources[renv.key] = (renv, {})
            scope = entry[1].get(senv.key)
            if scope is None:
                scope = entry[1][senv.key] = (senv, [])
            bucket = scope[1]
            last = pair
        bucket.append(data)
    return assemble([(renv, list(scopes.values())) for renv, scopes in resources.values()])


def fast_path_for(exporter: Any, signal: str) -> FastPath | None:
    """A FastPath standing in for ``exporter`` when it is a stock OTLP exporter, else None."""
    from ._sender import sender_for

    sender = sender_for(exporter)
    return None if sender is None else FastPath(sender, exporter, signal)

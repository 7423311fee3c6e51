"""The one module that knows the stock OTLP exporters' private attributes.

The stock ``opentelemetry-exporter-otlp-proto-http`` / ``-grpc`` span and log exporters keep
their effective settings (endpoint, headers, timeout, compression, TLS, the requests session
or gRPC credentials) in private attributes.  Two things need them: a sender standing in for an
exporter (:func:`http_settings`, :func:`grpc_settings`) and a clone for one more export lane
(:func:`clone`).  Both read them here, once per exporter instance, into a plain settings object.

Fallback: anything unexpected (another stock version, a subclass that may add behaviour) raises
``TypeError`` or ``AttributeError`` from these readers; callers then keep the user's exporter
itself (one lane, no fast path) and say so in the log.  Subclasses are never treated as stock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "GrpcSettings",
    "HttpSettings",
    "clone",
    "endpoint",
    "grpc_settings",
    "http_settings",
    "stock_kind",
]

# (module, class) of the stock exporters -> (protocol, signal).
_STOCK: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"): ("http", "traces"),
    ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"): ("http", "logs"),
    ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"): ("grpc", "traces"),
    ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"): ("grpc", "logs"),
}


def stock_kind(exporter: Any) -> tuple[str, str] | None:
    """``(protocol, signal)`` of a stock OTLP span/log exporter (exact class), else None."""
    return _STOCK.get((type(exporter).__module__, type(exporter).__qualname__))


def _require(exporter: Any, protocol: str) -> str:
    kind = stock_kind(exporter)
    if kind is None or kind[0] != protocol:
        what = "OTLP/HTTP" if protocol == "http" else "OTLP/gRPC"
        raise TypeError(f"{type(exporter).__qualname__} is not a stock {what} span or log exporter")
    return kind[1]


def endpoint(exporter: Any) -> str | None:
    """The endpoint of a stock exporter, None for any other exporter."""
    if stock_kind(exporter) is None:
        return None
    value = getattr(exporter, "_endpoint", None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What a stock OTLP/HTTP exporter sends with."""

    signal: str
    endpoint: str
    headers: Mapping[str, str]  # the exporter's own headers (its session may carry more)
    timeout: Any
    compression: Any  # an HTTP Compression enum
    session: Any  # the requests.Session it posts through
    verify: Any  # bool or CA bundle path
    cert: Any  # client certificate path, (certificate, key) or None


def http_settings(exporter: Any) -> HttpSettings:
    """The settings of a stock OTLP/HTTP exporter; ``TypeError``/``AttributeError`` when unknown."""
    signal = _require(exporter, "http")
    client = getattr(exporter, "_client", None)
    if client is not None and hasattr(client, "_transport"):
        # 1.4x: an _OTLPHTTPClient holding a transport; only the requests one has a session.
        session = getattr(client._transport, "_session", None)
        headers, timeout, compression = client._headers, client._timeout, client._compression
        verify, cert = getattr(session, "verify", True), getattr(session, "cert", None)
    else:
        # Older releases kept everything on the exporter; their session carries the headers.
        session = exporter._session
        headers, timeout, compression = exporter._headers or {}, exporter._timeout, exporter._compression
        verify, cert = exporter._certificate_file, exporter._client_cert
    where = exporter._endpoint
    if not isinstance(where, str) or not isinstance(headers, Mapping):
        raise TypeError(f"{type(exporter).__qualname__} has unexpected endpoint/headers attributes")
    return HttpSettings(signal, where, headers, timeout, compression, session, verify, cert)


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    """What a stock OTLP/gRPC exporter sends with."""

    signal: str
    endpoint: str
    insecure: bool
    credentials: Any  # grpc.ChannelCredentials or None
    headers: Any  # metadata as the exporter holds it
    timeout: Any
    compression: Any  # grpc.Compression or None
    channel_options: Any
    retryable_error_codes: Any


def grpc_settings(exporter: Any) -> GrpcSettings:
    """The settings of a stock OTLP/gRPC exporter; ``TypeError``/``AttributeError`` when unknown."""
    signal = _require(exporter, "grpc")
    where, insecure = exporter._endpoint, exporter._insecure
    if not isinstance(where, str) or not isinstance(insecure, bool):
        raise TypeError(f"{type(exporter).__qualname__} has unexpected endpoint/insecure attributes")
    return GrpcSettings(
        signal,
        where,
        insecure,
        exporter._credentials,
        exporter._headers,
        exporter._timeout,
        exporter._compression,
        exporter._channel_options,
        getattr(exporter, "_retryable_error_codes", None),
    )


def clone(exporter: Any, endpoint: str | None) -> Any:
    """A new instance of a stock exporter's class with the same settings (``endpoint`` if given)."""
    kind = stock_kind(exporter)
    if kind is None:
        raise TypeError(f"{type(exporter).__qualname__} is not a stock OTLP exporter")
    if kind[0] == "http":
        http = http_settings(exporter)
        made = type(exporter)(
            endpoint=endpoint or http.endpoint,
            headers={k: v for k, v in http.headers.items() if k.lower() != "content-encoding"},
            timeout=http.timeout,
            compression=exporter._compression,
        )
        session = made._client._transport._session
        session.verify = http.verify
        session.cert = http.cert
        return made
    grpc = grpc_settings(exporter)
    return type(exporter)(
        endpoint=endpoint or grpc.endpoint,
        insecure=grpc.insecure,
        credentials=grpc.credentials,
        headers=grpc.headers,
        timeout=grpc.timeout,
        compression=grpc.compression,
        channel_options=grpc.channel_options,
        retryable_error_codes=grpc.retryable_error_codes,
    )

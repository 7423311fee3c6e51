"""OTLP senders: one attempt to deliver pre-encoded request bytes.

The pipeline encodes every item once (:mod:`otel_sched._encoding`) and assembles each
batch into the bytes of an ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``;
a sender puts those bytes on the wire, over OTLP/HTTP (protobuf) or OTLP/gRPC.

Unlike the stock exporters a sender never retries and never sleeps: ``send()`` makes
exactly one attempt and classifies its outcome in a :class:`SendResult`.  The pipeline
re-queues a retryable batch itself, honouring ``retry_after``, so an export lane is
never parked in a backoff while other batches wait.

Outcomes (OTLP specification, "Failures" / "Throttling"):

* HTTP: 2xx succeeds, and the response's ``partial_success`` is read (rejected items
  are counted, never retried); 429, 502, 503, 504 are retryable, 429 and 503 are
  throttling; connection errors and timeouts are retryable (``"connection_error"`` /
  ``"timeout"``); any other status (3xx, 400, 401, 404, 413, 500, ...) is final.
  ``Retry-After`` is read as delay-seconds or an HTTP-date.
* gRPC: OK succeeds (``partial_success`` as for HTTP); CANCELLED, DEADLINE_EXCEEDED,
  ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED
  only when the server sent a ``google.rpc.RetryInfo`` (from the
  ``google.rpc.retryinfo-bin`` trailer the stock exporter reads, or the standard
  ``grpc-status-details-bin``); UNAVAILABLE and RESOURCE_EXHAUSTED are throttling.
  A connection that cannot be made is UNAVAILABLE (gRPC does not tell it apart).

``send()`` never raises for a network or server problem; it raises ``ValueError`` for
a non-positive timeout, and lets programming errors through.

Configuration
-------------
Settings that are not passed are resolved from the environment like the stock
``opentelemetry-exporter-otlp-proto-http`` / ``-grpc`` exporters (1.45) do: the
per-signal variable (``OTEL_EXPORTER_OTLP_TRACES_*`` / ``OTEL_EXPORTER_OTLP_LOGS_*``)
first, then ``OTEL_EXPORTER_OTLP_*``.  HTTP appends ``/v1/traces`` / ``/v1/logs`` to
the generic endpoint only; gRPC keeps ``host:port`` and lets the URL scheme decide
``insecure`` unless ``OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE`` says otherwise (an
``https`` URL is always secure).  Timeouts are in seconds, as in the Python SDK.
Deliberate differences from stock: an invalid timeout or compression in the
environment logs a warning naming the variable and falls back to the default (the
stock gRPC exporter raises), an empty variable counts as unset, and gRPC metadata keys
are lower-cased (gRPC refuses upper-case keys).  :meth:`HTTPSender.from_exporter` /
:meth:`GRPCSender.from_exporter` copy the effective settings of a stock exporter
instance instead; :func:`sender_for` does that when it can, and returns ``None``
otherwise.

Threading: a sender is used by one lane at a time (the pipeline guarantees it);
``send()`` must not be called concurrently on one instance.  ``shutdown()`` may come
from another thread while a ``send()`` is in flight: that call then returns its own
outcome or ``status="shutdown"``.
"""

from __future__ import annotations

import enum
import gzip
import http.client
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from importlib.metadata import entry_points
from typing import Any, Final, Protocol
from urllib.parse import urlparse

from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.util.re import parse_env_headers

__all__ = ["GRPCSender", "HTTPSender", "SendResult", "Sender", "sender_for"]

_logger = logging.getLogger(__name__)

_DEFAULT_TIMEOUT_S: Final = 10.0
_DEFAULT_HTTP_ENDPOINT: Final = "http://localhost:4318"
_DEFAULT_GRPC_ENDPOINT: Final = "http://localhost:4317"
_MAX_MESSAGE_CHARS: Final = 512
_HTTP_RETRYABLE: Final = frozenset({429, 502, 503, 504})
_HTTP_THROTTLED: Final = frozenset({429, 503})
_GRPC_RETRYABLE: Final = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
_GRPC_THROTTLED: Final = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
_RETRY_INFO_TRAILER: Final = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_TRAILER: Final = "grpc-status-details-bin"
_CREDENTIAL_PROVIDER_GROUP: Final = "opentelemetry_otlp_credential_provider"
_PARTIAL_WARNED_MAX: Final = 256

try:
    from opentelemetry.exporter.otlp.proto.http import _OTLP_HTTP_HEADERS
except ImportError:  # pragma: no cover - the HTTP exporter is a dependency
    _OTLP_HTTP_HEADERS = {"Content-Type": "application/x-protobuf"}
try:
    from opentelemetry.exporter.otlp.proto.grpc import _OTLP_GRPC_CHANNEL_OPTIONS
except ImportError:  # pragma: no cover - the gRPC exporter is a dependency
    _OTLP_GRPC_CHANNEL_OPTIONS = []


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one ``send()``."""

    ok: bool
    retryable: bool  # transient per the OTLP spec: the same bytes may be sent again later
    throttled: bool  # HTTP 429/503 or gRPC RESOURCE_EXHAUSTED/UNAVAILABLE: back-pressure
    retry_after: float | None  # seconds the server asked to wait (Retry-After / RetryInfo)
    status: str  # "200", "503", "OK", "UNAVAILABLE", "connection_error", "timeout", "shutdown", ...
    rejected: int  # partial success: items the server rejected (counted, never retried)
    message: str  # the server's error / partial-success message, at most 512 characters


class Sender(Protocol):
    """What a lane calls on the pre-encoded path."""

    signal: str  # "traces" | "logs"
    endpoint: str

    def send(self, body: bytes, timeout: float) -> SendResult: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Signal:
    env: str  # infix of the per-signal variables
    http_path: str
    grpc_method: str
    response: Any  # Export*ServiceResponse class
    rejected_field: str


_SIGNALS: Final[dict[str, _Signal]] = {
    "traces": _Signal(
        "TRACES",
        "v1/traces",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        ExportTraceServiceResponse,
        "rejected_spans",
    ),
    "logs": _Signal(
        "LOGS",
        "v1/logs",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        ExportLogsServiceResponse,
        "rejected_log_records",
    ),
}

# (module, class) of the stock exporters a sender can stand in for; subclasses are
# excluded on purpose, since they may add behaviour that a sender would bypass.
_STOCK: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"): ("http", "traces"),
    ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"): ("http", "logs"),
    ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"): ("grpc", "traces"),
    ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"): ("grpc", "logs"),
}

_SHUTDOWN_RESULT: Final = SendResult(False, False, False, None, "shutdown", 0, "sender is shut down")

_partial_warned: dict[tuple[str, str, str], None] = {}
_partial_warned_lock = threading.Lock()


# -- shared helpers ------------------------------------------------------------------------------


def _signal(signal: str) -> _Signal:
    try:
        return _SIGNALS[signal]
    except KeyError:
        raise ValueError(f"signal must be 'traces' or 'logs', got {signal!r}") from None


def _env_names(info: _Signal, key: str) -> tuple[str, str]:
    return f"OTEL_EXPORTER_OTLP_{info.env}_{key}", f"OTEL_EXPORTER_OTLP_{key}"


def _env_first(*names: str) -> tuple[str, str] | None:
    """(name, value) of the first variable that is set and not blank."""
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip():
            return name, value
    return None


def _env_value(*names: str) -> str | None:
    found = _env_first(*names)
    return None if found is None else found[1]


def _check_timeout(timeout: float, what: str) -> float:
    value = float(timeout)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a number of seconds > 0, got {timeout!r}")
    return value


def _resolve_timeout(info: _Signal, timeout: float | None) -> float:
    if timeout is not None:
        return _check_timeout(timeout, "timeout")
    found = _env_first(*_env_names(info, "TIMEOUT"))
    if found is None:
        return _DEFAULT_TIMEOUT_S
    name, raw = found
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    _logger.warning(
        "otel-sched: invalid %s=%r (expected seconds > 0); using the default of %g seconds",
        name,
        raw,
        _DEFAULT_TIMEOUT_S,
    )
    return _DEFAULT_TIMEOUT_S


def _compression_name(value: str | enum.Enum) -> str:
    if isinstance(value, enum.Enum):
        if isinstance(value.value, str):  # the HTTP exporters' Compression enums
            return value.value.strip().lower()
        # grpc.Compression: NoCompression / Deflate / Gzip, with int values
        name = value.name.lower()
        return "none" if name == "nocompression" else name
    return str(value).strip().lower()


def _resolve_compression(
    info: _Signal, compression: str | enum.Enum | None, allowed: tuple[str, ...], env_allowed: tuple[str, ...]
) -> str:
    if compression is not None:
        name = _compression_name(compression)
        if name not in allowed:
            raise ValueError(f"compression must be one of {', '.join(allowed)}; got {compression!r}")
        return name
    found = _env_first(*_env_names(info, "COMPRESSION"))
    if found is None:
        return "none"
    env_name, raw = found
    name = raw.strip().lower()
    if name in env_allowed:
        return name
    _logger.warning(
        "otel-sched: invalid %s=%r (expected one of %s); sending uncompressed",
        env_name,
        raw,
        ", ".join(env_allowed),
    )
    return "none"


def _env_headers(info: _Signal) -> dict[str, str]:
    raw = _env_value(*_env_names(info, "HEADERS"))
    return dict(parse_env_headers(raw, liberal=True)) if raw is not None else {}


def _load_credential_provider(name: str) -> Any:
    found = list(entry_points(group=_CREDENTIAL_PROVIDER_GROUP, name=name))
    if not found:
        raise RuntimeError(
            f"Requested component '{name}' not found in entry point '{_CREDENTIAL_PROVIDER_GROUP}'"
        )
    return found[0].load()()


def _truncate(message: str) -> str:
    return message[:_MAX_MESSAGE_CHARS]


def _partial_success(info: _Signal, response: Any) -> tuple[int, str]:
    if not response.HasField("partial_success"):
        return 0, ""
    partial = response.partial_success
    return int(getattr(partial, info.rejected_field)), _truncate(partial.error_message)


def _warn_partial(signal: str, endpoint: str, rejected: int, message: str) -> None:
    # A collector repeats the same partial-success message for every batch; once is enough.
    key = (signal, endpoint, message)
    with _partial_warned_lock:
        if key in _partial_warned:
            return
        if len(_partial_warned) >= _PARTIAL_WARNED_MAX:
            _partial_warned.clear()
        _partial_warned[key] = None
    _logger.warning(
        "otel-sched: %s endpoint %s accepted a batch partially, %d rejected: %s",
        signal,
        endpoint,
        rejected,
        message or "(no message)",
    )


def _ok(status: str, info: _Signal, signal: str, endpoint: str, response: Any) -> SendResult:
    rejected, message = _partial_success(info, response)
    if rejected or message:
        _warn_partial(signal, endpoint, rejected, message)
    return SendResult(True, False, False, None, status, rejected, message)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or HTTP-date, RFC 9110); None if unusable.

    Mirrors the stock exporter's parsing: decimals are accepted, negative delays and
    past dates become 0.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        retry_at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if retry_at.tzinfo is None:
        retry_at = retry_at.replace(tzinfo=timezone.utc)
    return max(retry_at.timestamp() - time.time(), 0.0)


# -- HTTP ------------------------------------------------------------------------------------------


_HTTP_COMPRESSIONS: Final = ("none", "gzip", "deflate")


def _compress(compression: str, body: bytes) -> bytes:
    if compression == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    if compression == "deflate":
        return zlib.compress(body)
    return body


def _http_error_message(response: Any) -> str:
    content: bytes = response.content or b""
    if content:
        content_type = str(response.headers.get("content-type", "")).lower()
        if "protobuf" in content_type:
            try:
                status = RpcStatus.FromString(content)
            except DecodeError:
                pass
            else:
                if status.message:
                    return _truncate(status.message)
        else:
            text = content[: _MAX_MESSAGE_CHARS * 4].decode("utf-8", "replace").strip()
            if text:
                return _truncate(text)
    return _truncate(str(response.reason or ""))


class HTTPSender:
    """OTLP/HTTP protobuf: POSTs the bytes over one pooled ``requests.Session``."""

    def __init__(
        self,
        signal: str,
        *,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: str | enum.Enum | None = None,
        certificate_file: str | None = None,
        client_key_file: str | None = None,
        client_certificate_file: str | None = None,
        session: Any = None,
    ) -> None:
        """Unset settings come from the environment (module docstring).

        ``session``: a ``requests.Session`` to use (and close on shutdown) instead of
        a new one, as the stock exporter's ``session=``; its TLS settings are replaced
        by the resolved ones, as stock does.
        """
        import requests  # type: ignore[import-untyped, unused-ignore]

        info = _signal(signal)
        # Argument errors first, so they cannot leak a session.
        resolved_timeout = _resolve_timeout(info, timeout)
        resolved_compression = _resolve_compression(info, compression, _HTTP_COMPRESSIONS, _HTTP_COMPRESSIONS)
        if endpoint is None:
            endpoint = _env_value(_env_names(info, "ENDPOINT")[0])
            if endpoint is None:
                base = _env_value(_env_names(info, "ENDPOINT")[1]) or _DEFAULT_HTTP_ENDPOINT
                endpoint = f"{base.removesuffix('/')}/{info.http_path}"
        resolved_headers = {key.lower(): value for key, value in _OTLP_HTTP_HEADERS.items()}
        resolved_headers.update(_env_headers(info))
        if headers:
            resolved_headers.update({key.lower(): value for key, value in headers.items()})
        cert_names = _env_names(info, "CERTIFICATE")
        key_names = _env_names(info, "CLIENT_KEY")
        chain_names = _env_names(info, "CLIENT_CERTIFICATE")
        verify: bool | str = certificate_file or _env_value(*cert_names) or True
        key = client_key_file or _env_value(*key_names)
        chain = client_certificate_file or _env_value(*chain_names)
        cert: str | tuple[str, str] | None = (chain, key) if chain and key else chain
        if session is None:
            provider = _env_value(
                "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{info.env}_CREDENTIAL_PROVIDER",
            )
            if provider is not None:
                session = _load_credential_provider(provider)
                if not isinstance(session, requests.Session):
                    raise RuntimeError(
                        f"Requested component '{provider}' is of type {type(session)}"
                        " must be of type `requests.Session`."
                    )
            else:
                session = requests.Session()
        session.verify = verify
        if cert is not None:
            session.cert = cert
        self._setup(
            signal,
            endpoint,
            resolved_headers,
            resolved_timeout,
            resolved_compression,
            session,
            owns_session=True,
        )

    def _setup(
        self,
        signal: str,
        endpoint: str,
        headers: dict[str, str],
        timeout: float,
        compression: str,
        session: Any,
        *,
        owns_session: bool,
    ) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self.timeout = timeout
        self.compression = compression
        self._info = _signal(signal)
        headers = {key: value for key, value in headers.items() if key.lower() != "content-encoding"}
        if compression != "none":
            headers["content-encoding"] = compression
        self._headers = headers
        self._session = session
        self._owns_session = owns_session
        self._closed = False

    @property
    def headers(self) -> dict[str, str]:
        """The request headers (a copy)."""
        return dict(self._headers)

    @property
    def verify(self) -> bool | str:
        """TLS server verification: ``True``, ``False`` or a CA bundle path."""
        return self._session.verify  # type: ignore[no-any-return]

    @property
    def cert(self) -> str | tuple[str, str] | None:
        """Client certificate (path, or (certificate, key) paths) for mutual TLS."""
        return self._session.cert  # type: ignore[no-any-return]

    @classmethod
    def from_exporter(cls, exporter: Any) -> HTTPSender:
        """A sender with the effective settings of a stock OTLP/HTTP span or log exporter.

        Raises ``TypeError`` when ``exporter`` is not one, or its internals are not
        those of a known stock version.
        """
        import requests  # type: ignore[import-untyped, unused-ignore]

        kind = _STOCK.get((type(exporter).__module__, type(exporter).__qualname__))
        if kind is None or kind[0] != "http":
            raise TypeError(f"{type(exporter).__qualname__} is not a stock OTLP/HTTP span or log exporter")
        client = getattr(exporter, "_client", None)
        if client is not None and hasattr(client, "_transport"):
            # 1.4x: an _OTLPHTTPClient holding a transport; only the requests one has a session.
            source = getattr(client._transport, "_session", None)
            headers, timeout, compression = client._headers, client._timeout, client._compression
            verify, cert = getattr(source, "verify", True), getattr(source, "cert", None)
        else:
            # Older releases kept everything on the exporter; their session carries the headers.
            source = exporter._session
            headers, timeout, compression = exporter._headers or {}, exporter._timeout, exporter._compression
            verify, cert = exporter._certificate_file, exporter._client_cert
        endpoint = exporter._endpoint
        if not isinstance(source, requests.Session):
            raise TypeError(f"{type(exporter).__qualname__} does not send with a requests.Session")
        if not isinstance(endpoint, str) or not isinstance(headers, Mapping):
            raise TypeError(f"{type(exporter).__qualname__} has unexpected endpoint/headers attributes")
        name = _compression_name(compression)
        if name not in _HTTP_COMPRESSIONS:
            raise TypeError(f"{type(exporter).__qualname__} has an unknown compression {compression!r}")
        sender = cls.__new__(cls)
        if type(source) is requests.Session:
            session = requests.Session()
            session.headers.clear()
            session.headers.update(
                {key: value for key, value in source.headers.items() if key.lower() != "content-encoding"}
            )
            session.auth = source.auth
            session.proxies = dict(source.proxies)
            session.trust_env = source.trust_env
            session.verify = verify
            session.cert = cert
            owns = True
        else:
            # A Session subclass (e.g. from a credential provider) carries behaviour that
            # cannot be copied: share it, and leave closing it to the exporter.
            session, owns = source, False
        sender._setup(
            kind[1],
            endpoint,
            {str(key).lower(): str(value) for key, value in headers.items()},
            _check_timeout(timeout, "exporter timeout"),
            name,
            session,
            owns_session=owns,
        )
        return sender

    def send(self, body: bytes, timeout: float) -> SendResult:
        """POST ``body`` (a serialized export request) once; see the module docstring for outcomes."""
        import requests  # type: ignore[import-untyped, unused-ignore]

        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if self._closed:
            return _SHUTDOWN_RESULT
        data = _compress(self.compression, body)
        try:
            response = self._session.post(
                self.endpoint, data=data, headers=self._headers, timeout=timeout, allow_redirects=False
            )
        except requests.exceptions.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            return self._failed("timeout", True, exc)
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            return self._failed("connection_error", True, exc)
        except (requests.exceptions.RequestException, OSError, http.client.HTTPException) as exc:
            # e.g. an invalid URL: sending the same request again cannot help.
            return self._failed("error", False, exc)
        code = int(response.status_code)
        if 200 <= code < 300:
            parsed = self._info.response()
            content_type = str(response.headers.get("content-type", "protobuf")).lower()
            if "protobuf" in content_type:  # a JSON or HTML body holds no partial success for us
                try:
                    parsed = self._info.response.FromString(response.content or b"")
                except DecodeError:
                    _logger.debug("otel-sched: undecodable %d response body from %s", code, self.endpoint)
            return _ok(str(code), self._info, self.signal, self.endpoint, parsed)
        return SendResult(
            ok=False,
            retryable=code in _HTTP_RETRYABLE,
            throttled=code in _HTTP_THROTTLED,
            retry_after=_parse_retry_after(response.headers.get("retry-after")),
            status=str(code),
            rejected=0,
            message=_http_error_message(response),
        )

    def _failed(self, status: str, retryable: bool, exc: BaseException) -> SendResult:
        if self._closed:  # the session was closed under this call
            return _SHUTDOWN_RESULT
        return SendResult(False, retryable, False, None, status, 0, _truncate(f"{type(exc).__name__}: {exc}"))

    def shutdown(self) -> None:
        """Close the session (a shared one is left to its owner). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session:
            self._session.close()

    def __repr__(self) -> str:
        return f"HTTPSender({self.signal!r}, endpoint={self.endpoint!r}, compression={self.compression!r})"


# -- gRPC ------------------------------------------------------------------------------------------


_GRPC_COMPRESSIONS: Final = ("none", "gzip", "deflate")
_GRPC_ENV_COMPRESSIONS: Final = ("none", "gzip")  # what the stock gRPC exporter reads from the env


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        # Stock logs and carries on without the file (default roots / no client cert).
        _logger.exception("otel-sched: cannot read the TLS file %s", path)
        return None


def _file_credentials(certificate_file: str | None, key_file: str | None, chain_file: str | None) -> Any:
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=_read_file(certificate_file) if certificate_file else None,
        private_key=_read_file(key_file) if key_file else None,
        certificate_chain=_read_file(chain_file) if chain_file else None,
    )


def _provider_credentials(variable: str) -> Any:
    import grpc

    name = _env_value(variable)
    if name is None:
        return None
    credentials = _load_credential_provider(name)
    if not isinstance(credentials, grpc.ChannelCredentials):
        raise RuntimeError(
            f"Requested component '{name}' is of type {type(credentials)}"
            " must be of type `grpc.ChannelCredentials`."
        )
    return credentials


def _env_credentials(info: _Signal) -> Any:
    """Channel credentials from the environment, in the stock exporters' order."""
    import grpc

    per_signal, generic = _env_names(info, "CERTIFICATE")
    if _env_value(per_signal) is not None:
        credentials = _provider_credentials(f"OTEL_PYTHON_EXPORTER_OTLP_GRPC_{info.env}_CREDENTIAL_PROVIDER")
        if credentials is not None:
            return credentials
        return _file_credentials(
            _env_value(per_signal),
            _env_value(_env_names(info, "CLIENT_KEY")[0]),
            _env_value(_env_names(info, "CLIENT_CERTIFICATE")[0]),
        )
    credentials = _provider_credentials("OTEL_PYTHON_EXPORTER_OTLP_GRPC_CREDENTIAL_PROVIDER")
    if credentials is not None:
        return credentials
    if _env_value(generic) is not None:
        return _file_credentials(
            _env_value(generic),
            _env_value(_env_names(info, "CLIENT_KEY")[1]),
            _env_value(_env_names(info, "CLIENT_CERTIFICATE")[1]),
        )
    return grpc.ssl_channel_credentials()


def _metadata(headers: Mapping[str, str] | Sequence[tuple[str, str]] | str) -> tuple[tuple[str, str], ...]:
    if isinstance(headers, str):
        headers = parse_env_headers(headers, liberal=True)
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(key).lower(), str(value)) for key, value in pairs)


def _merge_options(options: Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    given = tuple(options or ())
    overridden = {name for name, _ in given}
    defaults = tuple((name, value) for name, value in _OTLP_GRPC_CHANNEL_OPTIONS if name not in overridden)
    return defaults + given


def _grpc_retry_delay(trailers: Any) -> float | None:
    """Server-requested delay from RetryInfo, in the dedicated trailer or in the status details."""
    delay: Any = None
    for key, value in trailers or ():
        try:
            if key == _RETRY_INFO_TRAILER:
                delay = RetryInfo.FromString(value).retry_delay
                break
            if key == _STATUS_DETAILS_TRAILER and delay is None:
                for detail in RpcStatus.FromString(value).details:
                    if detail.Is(RetryInfo.DESCRIPTOR):
                        info = RetryInfo()
                        detail.Unpack(info)
                        delay = info.retry_delay
        except (DecodeError, TypeError):
            _logger.debug("otel-sched: undecodable %s trailer", key)
    if delay is None:
        return None
    return max(float(delay.seconds) + float(delay.nanos) / 1e9, 0.0)


class GRPCSender:
    """OTLP/gRPC: calls the Export method of one channel with the bytes as the request."""

    def __init__(
        self,
        signal: str,
        *,
        endpoint: str | None = None,
        insecure: bool | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | str | None = None,
        timeout: float | None = None,
        compression: str | enum.Enum | None = None,
        certificate_file: str | None = None,
        client_key_file: str | None = None,
        client_certificate_file: str | None = None,
        credentials: Any = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        """Unset settings come from the environment (module docstring).

        ``compression`` takes a ``grpc.Compression`` or its name; ``credentials`` (a
        ``grpc.ChannelCredentials``) wins over the certificate files, which win over
        the environment; ``channel_options`` are merged over the stock defaults (the
        exporter's User-Agent).
        """
        info = _signal(signal)
        raw_endpoint = endpoint or _env_value(*_env_names(info, "ENDPOINT")) or _DEFAULT_GRPC_ENDPOINT
        if insecure is None:
            per_signal = _env_value(_env_names(info, "INSECURE")[0])
            if per_signal is not None:
                insecure = per_signal.strip().lower() == "true"
        parsed = urlparse(raw_endpoint)
        if parsed.scheme == "https":
            insecure = False
        if insecure is None:
            generic = _env_value(_env_names(info, "INSECURE")[1])
            insecure = generic.strip().lower() == "true" if generic is not None else parsed.scheme == "http"
        if not insecure and credentials is None:
            if certificate_file or client_key_file or client_certificate_file:
                credentials = _file_credentials(certificate_file, client_key_file, client_certificate_file)
            else:
                credentials = _env_credentials(info)
        if headers is None:
            headers = _env_headers(info)
        self._setup(
            signal,
            parsed.netloc or raw_endpoint,
            bool(insecure),
            credentials,
            _metadata(headers),
            _resolve_timeout(info, timeout),
            _resolve_compression(info, compression, _GRPC_COMPRESSIONS, _GRPC_ENV_COMPRESSIONS),
            _merge_options(channel_options),
        )

    def _setup(
        self,
        signal: str,
        endpoint: str,
        insecure: bool,
        credentials: Any,
        metadata: tuple[tuple[str, str], ...],
        timeout: float,
        compression: str,
        options: tuple[tuple[str, Any], ...],
    ) -> None:
        import grpc

        self.signal = signal
        self.endpoint = endpoint
        self.insecure = insecure
        self.timeout = timeout
        self.compression = compression
        self._info = _signal(signal)
        self._credentials = (
            credentials if credentials is not None or insecure else grpc.ssl_channel_credentials()
        )
        self._metadata = metadata
        self._options = options
        self._grpc_compression = {
            "none": grpc.Compression.NoCompression,
            "gzip": grpc.Compression.Gzip,
            "deflate": grpc.Compression.Deflate,
        }[compression]
        # Guards the channel swap against a concurrent shutdown().
        self._lock = threading.Lock()
        self._closed = False
        self._channel, self._call = self._open()

    def _open(self) -> tuple[Any, Any]:
        import grpc

        if self.insecure:
            channel = grpc.insecure_channel(
                self.endpoint, options=self._options, compression=self._grpc_compression
            )
        else:
            channel = grpc.secure_channel(
                self.endpoint, self._credentials, options=self._options, compression=self._grpc_compression
            )
        call = channel.unary_unary(
            self._info.grpc_method,
            request_serializer=None,  # the body is already a serialized request
            response_deserializer=self._info.response.FromString,
        )
        return channel, call

    @property
    def headers(self) -> dict[str, str]:
        """The call metadata (a copy)."""
        return dict(self._metadata)

    @classmethod
    def from_exporter(cls, exporter: Any) -> GRPCSender:
        """A sender with the effective settings of a stock OTLP/gRPC span or log exporter.

        Raises ``TypeError`` when ``exporter`` is not one, or its internals are not
        those of a known stock version.
        """
        import grpc

        kind = _STOCK.get((type(exporter).__module__, type(exporter).__qualname__))
        if kind is None or kind[0] != "grpc":
            raise TypeError(f"{type(exporter).__qualname__} is not a stock OTLP/gRPC span or log exporter")
        endpoint = exporter._endpoint
        insecure = exporter._insecure
        credentials = exporter._credentials
        headers = exporter._headers or ()
        compression = exporter._compression or grpc.Compression.NoCompression
        if not isinstance(endpoint, str) or not isinstance(insecure, bool):
            raise TypeError(f"{type(exporter).__qualname__} has unexpected endpoint/insecure attributes")
        if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
            raise TypeError(f"{type(exporter).__qualname__} has unexpected credentials {credentials!r}")
        if not isinstance(compression, grpc.Compression):
            raise TypeError(f"{type(exporter).__qualname__} has an unknown compression {compression!r}")
        sender = cls.__new__(cls)
        sender._setup(
            kind[1],
            endpoint,
            insecure,
            credentials,
            _metadata(headers),
            _check_timeout(exporter._timeout, "exporter timeout"),
            {
                grpc.Compression.NoCompression: "none",
                grpc.Compression.Gzip: "gzip",
                grpc.Compression.Deflate: "deflate",
            }[compression],
            tuple(exporter._channel_options or ()),
        )
        return sender

    def send(self, body: bytes, timeout: float) -> SendResult:
        """Call Export once with ``body`` (a serialized export request); see the module docstring."""
        import grpc

        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        with self._lock:
            if self._closed:
                return _SHUTDOWN_RESULT
            call = self._call
        try:
            response = call(body, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            if self._closed:
                return _SHUTDOWN_RESULT
            result = self._failed(exc)
            if result.status == "UNAVAILABLE":
                # A channel that failed to connect waits out gRPC's reconnect backoff (up
                # to minutes) before trying again; a fresh one connects on the next send.
                # The stock exporter reconnects on UNAVAILABLE for the same reason.
                self._reconnect()
            return result
        except ValueError:
            if self._closed:  # "Cannot invoke RPC on closed channel!"
                return _SHUTDOWN_RESULT
            raise
        return _ok("OK", self._info, self.signal, self.endpoint, response)

    @staticmethod
    def _failed(exc: Any) -> SendResult:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        name = str(getattr(code, "name", "UNKNOWN"))
        details = exc.details() if callable(getattr(exc, "details", None)) else None
        trailers = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
        retry_after = _grpc_retry_delay(trailers)
        return SendResult(
            ok=False,
            retryable=name in _GRPC_RETRYABLE or (name == "RESOURCE_EXHAUSTED" and retry_after is not None),
            throttled=name in _GRPC_THROTTLED,
            retry_after=retry_after,
            status=name,
            rejected=0,
            message=_truncate(str(details or "")),
        )

    def _reconnect(self) -> None:
        with self._lock:
            if self._closed:
                return
            old = self._channel
            self._channel, self._call = self._open()
        old.close()

    def shutdown(self) -> None:
        """Close the channel. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channel = self._channel
        channel.close()

    def __repr__(self) -> str:
        return (
            f"GRPCSender({self.signal!r}, endpoint={self.endpoint!r}, insecure={self.insecure!r}, "
            f"compression={self.compression!r})"
        )


def sender_for(exporter: Any) -> HTTPSender | GRPCSender | None:
    """A sender standing in for a stock OTLP span/log exporter instance, else ``None``.

    ``None`` also when the exporter's internals are not as expected (another stock
    version): the caller then keeps using the exporter itself.
    """
    kind = _STOCK.get((type(exporter).__module__, type(exporter).__qualname__))
    if kind is None:
        return None
    try:
        if kind[0] == "http":
            return HTTPSender.from_exporter(exporter)
        return GRPCSender.from_exporter(exporter)
    except Exception as exc:  # noqa: BLE001 - unknown internals: fall back to the exporter, and say why
        _logger.debug("otel-sched: no OTLP sender for %s: %r", type(exporter).__qualname__, exc)
        return None

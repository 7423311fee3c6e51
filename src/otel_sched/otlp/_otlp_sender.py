"""OTLP senders: one attempt to deliver pre-encoded request bytes.

The pipeline encodes every item once (:mod:`otel_sched.otlp._encoding`) and assembles each
batch into the bytes of an ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``;
a sender puts those bytes on the wire, over OTLP/HTTP (protobuf) or OTLP/gRPC.

Unlike the stock exporters a sender never retries and never sleeps: ``send()`` makes
exactly one attempt and classifies its outcome in a :class:`SendResult`.  The pipeline
re-queues a retryable batch itself, honouring ``retry_after``, so an export lane is
never parked in a backoff while other batches wait.  (The one exception: a request that
fails on a reused HTTP keep-alive connection before any response byte arrived, i.e. one
the server closed while idle, is sent once more on a fresh connection.)

HTTP transport: :class:`HTTPSender` POSTs through a ``requests.Session`` as the stock
exporter does, or, wherever requests would do nothing but a plain POST, through
``_HTTPConnectionTransport``: one persistent connection whose responses ``http.client``
parses, the same request bytes and the same outcomes for a fraction of the CPU.
``HTTPSender.transport`` says which is in use.

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

import contextlib
import email.message
import enum
import errno
import gzip
import http.client
import io
import logging
import math
import os
import socket
import ssl
import threading
import time
import types
import warnings
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

from .._safe import safe_url, type_name

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
        safe_url(endpoint),
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


# -- the light HTTP transport ----------------------------------------------------------------------

_LIGHT_TRANSPORT: Final = "http.client"
_REQUESTS_TRANSPORT: Final = "requests"
# Stands for the Content-Length value while urllib3 renders the request head once.
_LENGTH_MARK: Final = "OtelSchedContentLength"
_BLOCKING_ERRNOS: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# urllib3 ignores these while sending, so that a response the server sent before closing is read.
_SEND_ERRNOS_IGNORED: Final = frozenset({errno.EPROTOTYPE, errno.ECONNRESET})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})  # requests.models.REDIRECT_STATI
_CONTENT_CHUNK_BYTES: Final = 10 * 1024  # requests.models.CONTENT_CHUNK_SIZE
# What one requests POST runs through, per package: the light transport stands in for it only
# while none of it is patched or wrapped (a mocking library, an instrumentation, a recorder).
_REQUESTS_CODE: Final = (
    (
        "requests",
        "requests.sessions",
        "Session",
        ("request", "post", "send", "prepare_request", "merge_environment_settings", "get_adapter"),
    ),
    (
        "requests",
        "requests.adapters",
        "HTTPAdapter",
        ("send", "get_connection_with_tls_context", "cert_verify", "build_response", "request_url"),
    ),
    ("urllib3", "urllib3.connectionpool", "HTTPConnectionPool", ("urlopen", "_make_request", "_get_conn")),
    ("urllib3", "urllib3.connectionpool", "HTTPSConnectionPool", ("_validate_conn", "_new_conn")),
    ("urllib3", "urllib3.connection", "HTTPConnection", ("connect", "request", "getresponse")),
    ("urllib3", "urllib3.connection", "HTTPSConnection", ("connect",)),
)


def _own_function(value: object, package: str) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and str(value.__module__).partition(".")[0] == package
        and not hasattr(value, "__wrapped__")
    )


class _RequestsCode:
    """Whether requests' and urllib3's code on the POST path is their own; cached on the objects seen."""

    def __init__(self) -> None:
        self._attributes: list[tuple[str, Any, str]] | None = None
        # (what was seen, verdict) in one tuple: lanes read and replace it without a lock
        self._cache: tuple[tuple[object, ...], str] = ((), "patched")

    def _load(self) -> list[tuple[str, Any, str]]:
        import importlib

        attributes: list[tuple[str, Any, str]] = []
        for package, module, name, methods in _REQUESTS_CODE:
            owner = getattr(importlib.import_module(module), name)
            attributes.extend((package, owner, method) for method in methods)
        self._attributes = attributes
        return attributes

    def verdict(self) -> str:
        """``"plain"``; ``"instrumented"`` (only the OpenTelemetry requests instrumentation wraps
        ``Session.send``); or ``"patched"``."""
        import urllib3.connectionpool

        attributes = self._attributes or self._load()
        pools = urllib3.connectionpool
        seen = (
            *(getattr(owner, method) for _, owner, method in attributes),
            pools.HTTPConnectionPool.ConnectionCls,
            pools.HTTPSConnectionPool.ConnectionCls,
        )
        cached, verdict = self._cache
        if seen != cached:  # tuple equality compares by identity first: ~3 µs when unchanged
            verdict = self._judge(attributes, seen)
            self._cache = (seen, verdict)
        return verdict

    @staticmethod
    def _judge(attributes: list[tuple[str, Any, str]], seen: tuple[object, ...]) -> str:
        verdict = "plain"
        for (package, owner, method), value in zip(attributes, seen, strict=False):
            if _own_function(value, package):
                continue
            if (
                owner.__name__ == "Session"
                and method == "send"
                and getattr(value, "opentelemetry_instrumentation_requests_applied", False)
                and _own_function(getattr(value, "__wrapped__", None), "requests")
            ):
                verdict = "instrumented"
                continue
            return "patched"
        for value in seen[len(attributes) :]:
            if not (isinstance(value, type) and value.__module__ == "urllib3.connection"):
                return "patched"
        return verdict


_requests_code = _RequestsCode()


def _requests_path_is_plain() -> bool:
    """True when a requests POST would run only requests' and urllib3's own code right now."""
    verdict = _requests_code.verdict()
    if verdict == "instrumented":
        # The instrumentation passes straight through while HTTP instrumentation is suppressed in
        # the current context, as on the export lanes; otherwise it records a span and injects
        # headers, which only the requests path does.
        try:
            from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
        except ImportError:  # pragma: no cover - the wrapper comes with that package
            return False
        return not is_http_instrumentation_enabled()
    return verdict == "plain"


class _TransportError(Exception):
    """A POST that failed, with the status and retryability the requests path gives the same failure."""

    def __init__(self, status: str, retryable: bool, cause: BaseException) -> None:
        super().__init__(f"{status}: {cause!r}")
        self.status = status
        self.retryable = retryable
        self.cause = cause


class _Headers:
    """Response headers as requests exposes them: case-insensitive, repeated fields joined by ", "."""

    __slots__ = ("_message",)

    def __init__(self, message: email.message.Message) -> None:
        self._message = message

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._message.get_all(name)
        return default if values is None else ", ".join(str(value) for value in values)


@dataclass(frozen=True, slots=True)
class _Response:
    """What classifying a response reads, named as on ``requests.Response``."""

    status_code: int
    reason: str
    headers: _Headers
    content: bytes


class _ResponseReader(socket.SocketIO):
    """The connection's read side for http.client, counting what arrived: a reused connection that
    fails before the first response byte was closed by the server, and is worth one more try."""

    received = 0

    def readinto(self, b: Any) -> int | None:
        count = super().readinto(b)
        if count:
            self.received += count
        return count


class _SocketFile:
    """Hands http.client's response parser our counting reader in place of ``socket.makefile()``."""

    __slots__ = ("_file",)

    def __init__(self, file: io.BufferedReader) -> None:
        self._file = file

    def makefile(self, *_args: object, **_kwargs: object) -> io.BufferedReader:
        return self._file


class _OriginalResponse:
    """The shape ``requests.cookies.extract_cookies_to_jar`` reads cookies from (urllib3's response)."""

    __slots__ = ("_original_response",)

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._original_response = response


def _head_failure(exc: BaseException) -> tuple[str, bool]:
    """A failure while the response head was awaited (urllib3's ``_raise_timeout``: timeouts only)."""
    if isinstance(exc, TimeoutError) or getattr(exc, "errno", None) in _BLOCKING_ERRNOS:
        return "timeout", True
    return "connection_error", True


def _key_file_encrypted(path: str) -> bool:
    # urllib3 refuses such a key (it would prompt for a passphrase) on every connection.
    with open(path) as file:
        return any("ENCRYPTED" in line for line in file)


def _render_head(connection: Any, target: str, headers: Any) -> tuple[bytes, bytes]:
    """The request head urllib3's own connection class writes, split around the Content-Length value."""
    sent: list[bytes] = []
    connection.send = sent.append  # captures what http.client would write; nothing connects
    marked = headers.copy()
    marked["Content-Length"] = _LENGTH_MARK
    connection.request("POST", target, body=None, headers=marked, chunked=False)
    prefix, mark, suffix = b"".join(sent).partition(_LENGTH_MARK.encode("ascii"))
    if not mark or _LENGTH_MARK.encode("ascii") in suffix:
        raise ValueError(f"the rendered request head must hold the Content-Length mark once, got {sent!r}")
    return prefix, suffix


def _tls_context(pool: Any) -> ssl.SSLContext:
    """The SSLContext urllib3 builds for each connection of ``pool`` (requests set its attributes)."""
    from urllib3.util import ssl_ as urllib3_ssl

    if (
        pool.assert_fingerprint
        or pool.assert_hostname is not None
        or urllib3_ssl.IS_PYOPENSSL
        or not urllib3_ssl.HAS_NEVER_CHECK_COMMON_NAME
        or pool.conn_kw.get("ssl_context") is not None
    ):
        raise ValueError("urllib3 would match the certificate itself here")
    cert_reqs = urllib3_ssl.resolve_cert_reqs(pool.cert_reqs)
    context = urllib3_ssl.create_urllib3_context(
        ssl_version=urllib3_ssl.resolve_ssl_version(pool.ssl_version),
        ssl_minimum_version=pool.ssl_minimum_version,
        ssl_maximum_version=pool.ssl_maximum_version,
        cert_reqs=cert_reqs,
    )
    context.verify_mode = cert_reqs
    if pool.ca_certs or pool.ca_cert_dir:
        context.load_verify_locations(pool.ca_certs, pool.ca_cert_dir)
    else:
        context.load_default_certs()
    if pool.key_file and pool.key_password is None and _key_file_encrypted(pool.key_file):
        raise ValueError(f"client key {pool.key_file!r} is encrypted and no password is given")
    if pool.cert_file:
        context.load_cert_chain(pool.cert_file, pool.key_file, pool.key_password)
    context.set_alpn_protocols(urllib3_ssl.ALPN_PROTOCOLS)
    return context


def _server_hostname(host: str) -> str:
    from urllib3.util.ssl_ import is_ipaddress

    # urllib3 passes an IP address bare: no brackets, no IPv6 zone.
    normalized = host.strip("[]")
    if "%" in normalized:
        normalized = normalized[: normalized.rfind("%")]
    return normalized if is_ipaddress(normalized) else host


def _expected_length(headers: _Headers, status: int, chunked: bool) -> int | None:
    """The body length urllib3 enforces (``HTTPResponse._init_length``), where it differs from http.client."""
    value = headers.get("content-length")
    if value is not None:
        if chunked:
            return None
        try:
            lengths = {int(part) for part in value.split(",")}
        except ValueError:
            length = None
        else:
            if len(lengths) > 1:
                # urllib3 raises InvalidHeader, which requests turns into a final error
                raise _TransportError(
                    "error",
                    False,
                    http.client.HTTPException(
                        f"Content-Length contained multiple unmatching values ({value})"
                    ),
                )
            length = lengths.pop()
            if length < 0:
                length = None
    else:
        length = None
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return length


def _decoded(raw: bytes, encoding: str) -> bytes:
    """The body as requests' ``Response.content`` decodes it: urllib3's decoders, the same chunking."""
    from urllib3.response import HTTPResponse as Urllib3Response

    response = Urllib3Response(
        body=io.BytesIO(raw),
        headers={"content-encoding": encoding},
        preload_content=False,
        decode_content=True,
    )
    return b"".join(response.stream(_CONTENT_CHUNK_BYTES, decode_content=True))


class _HTTPConnectionTransport:
    """POSTs over one persistent connection, parsed by ``http.client``, in place of a requests Session.

    When: :meth:`for_session` builds one only where ``session.post(endpoint, data=..., headers=...,
    timeout=..., allow_redirects=False)`` would do nothing but that POST: the exact
    ``requests.Session`` class, created by the sender itself; no auth (session, netrc or URL), cookies,
    hooks, params or stream; the two default adapters; no proxy (session or environment, NO_PROXY
    respected, decided when built); an http or https endpoint; no Content-Length or Transfer-Encoding
    header of the caller's; TLS settings that load.  Anything requests would refuse on every send keeps
    requests, so that it reports it.  :class:`HTTPSender` also checks, per send, that requests' and
    urllib3's code is their own (no mocking library or active instrumentation), and hands the session
    back to requests for good once a response sets a cookie.

    Guarantees, for the same server behaviour, what requests 2.x over urllib3 2.x does:

    * the same request bytes: the head is rendered once by urllib3's own connection class from the
      request requests prepares (its session headers, ours, Content-Length, in requests' order);
    * the same TLS: an ``ssl.SSLContext`` built once by urllib3's recipe from the verify/cert that
      requests resolves (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when trust_env, else the session's
      ``verify``, certifi by default; a CA file or directory; a client certificate and key), the
      hostname checked by OpenSSL as urllib3 has it, an ``InsecureRequestWarning`` per unverified send;
    * the same outcome: status, retryability and content of :class:`_Response` match (a connect or
      response-head timeout is ``"timeout"``; any other failure, including a timeout while sending or
      reading the body, is ``"connection_error"``; urllib3's Content-Length rules and response
      decoding apply); the message of a failure names the stdlib exception, not requests';
    * one keep-alive connection, opened on first use; closed after a failure, a timeout or
      ``Connection: close``.  A reused connection that the server closed while idle is replaced before
      sending (as urllib3 checks), and one that still fails before any response byte is retried once
      on a fresh connection; a fresh connection is never retried.

    ``post()`` is for one thread at a time; ``close()`` may come from any thread: it wakes a ``post()``
    in flight, which then fails.
    """

    def __init__(
        self,
        *,
        dns_host: str,
        port: int,
        socket_options: Any,
        source_address: tuple[str, int] | None,
        head: tuple[bytes, bytes],
        tls: ssl.SSLContext | None,
        server_hostname: str,
        unverified_host: str | None,
        cookie_jar: Any,
        prepared: Any,
    ) -> None:
        from urllib3.util import wait_for_read
        from urllib3.util.connection import create_connection

        self._address = (dns_host, port)
        self._socket_options = socket_options
        self._source_address = source_address
        self._head_prefix, self._head_suffix = head
        self._tls = tls
        self._server_hostname = server_hostname
        self._unverified_host = unverified_host
        self._cookie_jar = cookie_jar
        self._prepared = prepared
        self._wait_for_read = wait_for_read
        self._create_connection = create_connection
        # Guards _sock/_busy/_closed against close() from another thread.
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._busy = False
        self._closed = False
        self.cookies_set = False  # a response set a cookie: requests must take over

    @classmethod
    def for_session(
        cls, session: Any, endpoint: str, headers: Mapping[str, str]
    ) -> tuple[_HTTPConnectionTransport | None, str]:
        """The transport standing in for ``session`` POSTing to ``endpoint``, or None and why not."""
        import requests  # type: ignore[import-untyped, unused-ignore]
        from requests.adapters import HTTPAdapter  # type: ignore[import-untyped, unused-ignore]
        from requests.utils import select_proxy  # type: ignore[import-untyped, unused-ignore]
        from urllib3.util import parse_url

        if type(session) is not requests.Session:
            return None, f"the session is a {type(session).__qualname__}, not a plain requests.Session"
        if session.auth is not None or session.proxies:
            return None, "the session has auth or proxies"
        if session.params or session.stream or len(session.cookies) or any(session.hooks.values()):
            return None, "the session has params, stream, cookies or hooks"
        adapters = session.adapters
        if sorted(adapters) != ["http://", "https://"] or any(
            type(adapter) is not HTTPAdapter for adapter in adapters.values()
        ):
            mounted = sorted(type_name(a) for a in adapters.values())
            return None, f"the session mounts other adapters: {mounted}"
        given = [str(key).lower() for key in (*headers, *session.headers)]
        if "content-length" in given or "transfer-encoding" in given:
            return None, "a Content-Length or Transfer-Encoding header is set by hand"
        try:
            # What Session.request and HTTPAdapter.send compute before urlopen, by their own code.
            prepared: Any = session.prepare_request(
                requests.Request("POST", endpoint, headers=dict(headers), data=b"-")
            )
            url = str(prepared.url)
            scheme = urlparse(url).scheme
            if scheme not in ("http", "https"):
                return None, f"endpoint scheme {scheme!r} is neither http nor https"
            if (
                "authorization" in (str(key).lower() for key in prepared.headers)
                and "authorization" not in given
            ):
                return None, "requests adds credentials from netrc or the URL"
            settings = session.merge_environment_settings(url, {}, None, None, None)
            proxies, verify, cert = settings["proxies"], settings["verify"], settings["cert"]
            proxy = select_proxy(url, proxies)
            if proxy:
                return None, f"requests would go through proxy {safe_url(proxy)}"
            adapter: Any = session.get_adapter(url)
            pool = adapter.get_connection_with_tls_context(prepared, verify, proxies=proxies, cert=cert)
            adapter.cert_verify(pool, url, verify, cert)
            target = str(parse_url(adapter.request_url(prepared, proxies))._replace(fragment=None).url)
            connection = pool.ConnectionCls(host=pool.host, port=pool.port, **pool.conn_kw)
            head = _render_head(connection, target, prepared.headers)
            tls = _tls_context(pool) if scheme == "https" else None
        except Exception as exc:  # noqa: BLE001 - requests then reports the same problem on each send
            return None, f"requests would not send it as is: {type_name(exc)}"
        unverified = tls is not None and tls.verify_mode != ssl.CERT_REQUIRED
        return (
            cls(
                dns_host=pool.host,
                port=int(pool.port),
                socket_options=connection.socket_options,
                source_address=connection.source_address,
                head=head,
                tls=tls,
                server_hostname=_server_hostname(connection.host),
                unverified_host=connection.host if unverified else None,
                cookie_jar=session.cookies,
                prepared=prepared,
            ),
            "",
        )

    def post(self, body: bytes, timeout: float) -> _Response:
        """POST ``body`` once (plus the retry for a stale connection); raises :class:`_TransportError`."""
        with self._lock:
            if self._closed:
                raise _TransportError("connection_error", True, ConnectionAbortedError("transport closed"))
            self._busy = True
        try:
            return self._post(body, timeout)
        finally:
            with self._lock:
                self._busy = False
                orphan, self._sock = (self._sock, None) if self._closed else (None, self._sock)
            if orphan is not None:
                orphan.close()

    def _post(self, body: bytes, timeout: float) -> _Response:
        if self._unverified_host is not None:
            from urllib3.exceptions import InsecureRequestWarning

            warnings.warn(
                f"Unverified HTTPS request is being made to host '{self._unverified_host}'. "
                "Adding certificate verification is strongly advised. See: "
                "https://urllib3.readthedocs.io/en/latest/advanced-usage.html#tls-warnings",
                InsecureRequestWarning,
                stacklevel=1,
            )
        head = b"%b%d%b" % (self._head_prefix, len(body), self._head_suffix)
        for attempt in (1, 2):
            sock = self._sock
            if sock is not None and self._wait_for_read(sock, timeout=0.0):
                self._discard(sock)  # closed by the server while idle: urllib3 drops it too
                sock = None
            reused = sock is not None
            if sock is None:
                sock = self._connect(timeout)
            else:
                sock.settimeout(timeout)
            try:
                sock.sendall(head)
                if body:
                    sock.sendall(body)
            except BrokenPipeError:
                pass
            except OSError as exc:
                if exc.errno not in _SEND_ERRNOS_IGNORED:
                    self._discard(sock)
                    raise _TransportError("connection_error", True, exc) from exc
            reader = _ResponseReader(sock, "rb")
            response = http.client.HTTPResponse(_SocketFile(io.BufferedReader(reader)), method="POST")  # type: ignore[arg-type]
            try:
                response.begin()
            except (OSError, http.client.HTTPException) as exc:
                self._discard(sock)
                if (
                    attempt == 1
                    and reused
                    and reader.received == 0
                    and isinstance(exc, (BrokenPipeError, ConnectionResetError))  # incl. RemoteDisconnected
                    and not self._closed
                ):
                    continue
                raise _TransportError(*_head_failure(exc), exc) from exc
            return self._finish(sock, response)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _finish(self, sock: socket.socket, response: http.client.HTTPResponse) -> _Response:
        headers = _Headers(response.msg)
        encodings = headers.get("transfer-encoding", "") or ""
        if not response.chunked and "chunked" in (part.strip() for part in encodings.lower().split(",")):
            response.chunked = True  # urllib3 reads chunks on any "chunked" token, http.client on a lone one
            response.chunk_left = None
            response.length = None
        try:
            expected = _expected_length(headers, response.status, response.chunked)
        except _TransportError:
            self._discard(sock)
            raise
        if response.msg.get_all("Set-Cookie") or response.msg.get_all("Set-Cookie2"):
            from requests.cookies import extract_cookies_to_jar  # type: ignore[import-untyped, unused-ignore]

            extract_cookies_to_jar(self._cookie_jar, self._prepared, _OriginalResponse(response))
            self.cookies_set = len(self._cookie_jar) > 0
        try:
            raw = response.read()
            if expected is not None and len(raw) != expected:
                raise http.client.IncompleteRead(raw, expected - len(raw))
        except (OSError, http.client.HTTPException) as exc:
            # requests: ChunkedEncodingError, or ConnectionError for a timeout while reading the body
            self._discard(sock)
            raise _TransportError("connection_error", True, exc) from exc
        if response.will_close:
            self._discard(sock)
        content = raw
        encoding = headers.get("content-encoding")
        if encoding is not None:
            from urllib3.exceptions import DecodeError as ContentDecodeError

            try:
                content = _decoded(raw, encoding)
            except ContentDecodeError as exc:  # requests: ContentDecodingError, and the connection is dropped
                self._discard(sock)
                if not (response.status in _REDIRECT_STATUSES and headers.get("location") is not None):
                    raise _TransportError("connection_error", True, exc) from exc
                # requests prepares the (unfollowed) redirect, which swallows that error: no content
                content = b""
        return _Response(response.status, str(response.reason), headers, content)

    def _connect(self, timeout: float) -> socket.socket:
        try:
            raw = self._create_connection(
                self._address,
                timeout,
                source_address=self._source_address,
                socket_options=self._socket_options,
            )
        except TimeoutError as exc:  # requests: ConnectTimeout
            raise _TransportError("timeout", True, exc) from exc
        except OSError as exc:  # requests: ConnectionError (NewConnectionError, NameResolutionError)
            raise _TransportError("connection_error", True, exc) from exc
        self._register(raw)
        if self._tls is None:
            return raw
        try:
            # Handshake after registering, so that close() can interrupt it.
            sock = self._tls.wrap_socket(
                raw, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
        except OSError as exc:
            self._discard(raw)
            raise _TransportError("connection_error", True, exc) from exc
        self._register(sock)
        try:
            sock.do_handshake()
        except OSError as exc:  # requests: SSLError, or ReadTimeout for a timed-out handshake
            self._discard(sock)
            raise _TransportError(*_head_failure(exc), exc) from exc
        return sock

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._sock = sock
        if closed:
            sock.close()
            raise _TransportError("connection_error", True, ConnectionAbortedError("transport closed"))

    def _discard(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
        sock.close()

    def close(self) -> None:
        """Close the connection, waking a ``post()`` in flight. Idempotent; from any thread."""
        with self._lock:
            self._closed = True
            sock = self._sock
            if sock is None:
                return
            if self._busy:
                # The posting thread owns the descriptor (were it closed here, a new file could take
                # its number under that thread): waking it is enough, it closes the socket itself.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                return
            self._sock = None
        sock.close()


class HTTPSender:
    """OTLP/HTTP protobuf: POSTs the bytes over a ``requests.Session``, or a lighter transport.

    ``transport`` says which: ``"http.client"`` (:class:`_HTTPConnectionTransport`, one persistent
    connection, about half the CPU per send) wherever requests would do nothing but a plain POST,
    else ``"requests"``.
    """

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
        plain = session is None  # a user's or a credential provider's session may carry behaviour
        if session is None:
            provider = _env_value(
                "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{info.env}_CREDENTIAL_PROVIDER",
            )
            if provider is not None:
                plain = False
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
            plain_session=plain,
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
        plain_session: bool,
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
        self._transport: _HTTPConnectionTransport | None = None
        if plain_session:
            self._transport, why = _HTTPConnectionTransport.for_session(session, endpoint, headers)
        else:
            why = "the session is not one the sender created as a plain requests.Session"
        if self._transport is None:
            _logger.debug(
                "otel-sched: %s sender for %s sends with requests: %s", signal, safe_url(endpoint), why
            )

    @property
    def transport(self) -> str:
        """``"http.client"`` while the light transport stands in for requests, else ``"requests"``."""
        return _REQUESTS_TRANSPORT if self._transport is None else _LIGHT_TRANSPORT

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
            plain_session=owns,
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
        transport = self._transport
        if transport is not None and _requests_path_is_plain():
            return self._send_light(transport, data, timeout)
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
        return self._result(response)

    def _send_light(self, transport: _HTTPConnectionTransport, data: bytes, timeout: float) -> SendResult:
        try:
            response = transport.post(data, timeout)
        except _TransportError as exc:
            return self._failed(exc.status, exc.retryable, exc.cause)
        finally:
            if transport.cookies_set:
                # requests sends the session's cookies from now on: let it.
                self._transport = None
                transport.close()
                _logger.debug(
                    "otel-sched: %s set a cookie; sending with requests from now on", safe_url(self.endpoint)
                )
        return self._result(response)

    def _result(self, response: Any) -> SendResult:
        """Classify a response (a ``requests.Response`` or a :class:`_Response`)."""
        code = int(response.status_code)
        if 200 <= code < 300:
            parsed = self._info.response()
            content_type = str(response.headers.get("content-type", "protobuf")).lower()
            if "protobuf" in content_type:  # a JSON or HTML body holds no partial success for us
                try:
                    parsed = self._info.response.FromString(response.content or b"")
                except DecodeError:
                    _logger.debug(
                        "otel-sched: undecodable %d response body from %s", code, safe_url(self.endpoint)
                    )
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
        """Close the connection and the session (a shared one is left to its owner). Idempotent."""
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if transport is not None:
            transport.close()
        if self._owns_session:
            self._session.close()

    def __repr__(self) -> str:
        return (
            f"HTTPSender({self.signal!r}, endpoint={safe_url(self.endpoint)!r}, "
            f"compression={self.compression!r}, "
            f"transport={self.transport!r})"
        )


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
            what = type_name(credentials)
            raise TypeError(f"{type(exporter).__qualname__} has unexpected credentials {what}")
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
            f"GRPCSender({self.signal!r}, endpoint={safe_url(self.endpoint)!r}, insecure={self.insecure!r}, "
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

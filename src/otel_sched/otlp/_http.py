"""OTLP/HTTP (protobuf) sender: POSTs pre-encoded request bytes.

Two ways to POST, with the same request bytes and the same outcomes (outcomes and threading:
see :mod:`otel_sched.otlp._sender`):

* ``"http.client"``: a urllib3 connection pool of one keep-alive connection, used directly
  (``retries=False``: the pipeline owns retries).  urllib3's connections are ``http.client``
  connections; the name is kept for :attr:`HTTPSender.transport`.  Used wherever requests would
  do nothing but a plain POST (see :meth:`PoolTransport.for_session`);
* ``"requests"``: the ``requests.Session`` itself, as the stock exporter posts, wherever the
  session carries behaviour of its own (a subclass, auth, proxies, cookies, netrc credentials),
  and while requests' own code is patched or wrapped (a mocking library, an active
  instrumentation).
"""

from __future__ import annotations

import enum
import gzip
import http.client
import logging
import types
import zlib
from collections.abc import Mapping
from typing import Any, Final

import requests  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped, unused-ignore]
from requests.adapters import HTTPAdapter  # type: ignore[import-untyped, unused-ignore]

from .._safe import safe_url
from . import _stock
from ._pool import PoolTransport, TransportError
from ._sender import (
    _SHUTDOWN_RESULT,
    DEFAULT_TIMEOUT_S,
    MAX_MESSAGE_CHARS,
    SendResult,
    check_timeout,
    checked_compression,
    compression_name,
    ok_result,
    parse_retry_after,
    signal_info,
    truncate,
)

__all__ = ["HTTPSender"]

_logger = logging.getLogger(__name__)

_DEFAULT_ENDPOINT: Final = "http://localhost:4318"
_RETRYABLE: Final = frozenset({429, 502, 503, 504})
_THROTTLED: Final = frozenset({429, 503})
_COMPRESSIONS: Final = ("none", "gzip", "deflate")
_POOL_TRANSPORT: Final = "http.client"
_REQUESTS_TRANSPORT: Final = "requests"
# requests' code on the POST path: while any of it is patched or wrapped, requests sends.
_REQUESTS_POST_PATH: Final = (
    (requests.Session, ("request", "post", "send", "get_adapter", "merge_environment_settings")),
    (HTTPAdapter, ("send",)),
)

try:
    from opentelemetry.exporter.otlp.proto.http import _OTLP_HTTP_HEADERS
except ImportError:  # pragma: no cover - the HTTP exporter is a dependency
    _OTLP_HTTP_HEADERS = {"Content-Type": "application/x-protobuf"}


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
                    return truncate(status.message)
        else:
            text = content[: MAX_MESSAGE_CHARS * 4].decode("utf-8", "replace").strip()
            if text:
                return truncate(text)
    return truncate(str(response.reason or ""))


def _own_function(value: object) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and str(value.__module__).partition(".")[0] == "requests"
        and not hasattr(value, "__wrapped__")
    )


def _requests_path_is_plain() -> bool:
    """True when a requests POST would run only requests' own code right now.

    The pool path is urllib3 itself, so patches of urllib3 apply to both paths alike.  The
    OpenTelemetry requests instrumentation passes straight through while HTTP instrumentation
    is suppressed in the current context, as on the export lanes; otherwise it records a span
    and injects headers, which only the requests path does.
    """
    for owner, names in _REQUESTS_POST_PATH:
        for name in names:
            value = getattr(owner, name)
            if _own_function(value):
                continue
            if (
                name == "send"
                and owner is requests.Session
                and getattr(value, "opentelemetry_instrumentation_requests_applied", False)
                and _own_function(getattr(value, "__wrapped__", None))
            ):
                try:
                    from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
                except ImportError:  # pragma: no cover - the wrapper comes with that package
                    return False
                if not is_http_instrumentation_enabled():
                    continue
            return False
    return True


class HTTPSender:
    """OTLP/HTTP protobuf: POSTs the bytes over a urllib3 pool, or a ``requests.Session``.

    ``transport`` says which: ``"http.client"`` (:class:`PoolTransport`, one keep-alive
    connection) wherever requests would do nothing but a plain POST, else ``"requests"``.
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
        """Unset settings take the stock exporter's defaults (never the environment).

        ``session``: a ``requests.Session`` to use (and close on shutdown) instead of
        a new one, as the stock exporter's ``session=``; its TLS settings are replaced
        by the given ones, as stock does.
        """
        info = signal_info(signal)
        # Argument errors first, so they cannot leak a session.
        resolved_timeout = DEFAULT_TIMEOUT_S if timeout is None else check_timeout(timeout, "timeout")
        resolved_compression = checked_compression(compression, _COMPRESSIONS)
        endpoint = endpoint or f"{_DEFAULT_ENDPOINT}/{info.http_path}"
        resolved_headers = {key.lower(): value for key, value in _OTLP_HTTP_HEADERS.items()}
        if headers:
            resolved_headers.update({key.lower(): value for key, value in headers.items()})
        cert = (
            (client_certificate_file, client_key_file)
            if client_certificate_file and client_key_file
            else client_certificate_file
        )
        plain = session is None  # a user's session may carry behaviour
        if session is None:
            session = requests.Session()
        session.verify = certificate_file or True
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
        self._info = signal_info(signal)
        headers = {key: value for key, value in headers.items() if key.lower() != "content-encoding"}
        if compression != "none":
            headers["content-encoding"] = compression
        self._headers = headers
        self._session = session
        self._owns_session = owns_session
        self._closed = False
        self._transport: PoolTransport | None = None
        if plain_session:
            self._transport, why = PoolTransport.for_session(session, endpoint, headers)
        else:
            why = "the session is not one the sender created as a plain requests.Session"
        if self._transport is None:
            _logger.debug(
                "otel-sched: %s sender for %s sends with requests: %s", signal, safe_url(endpoint), why
            )

    @property
    def transport(self) -> str:
        """``"http.client"`` while the urllib3 pool stands in for requests, else ``"requests"``."""
        return _REQUESTS_TRANSPORT if self._transport is None else _POOL_TRANSPORT

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
        settings = _stock.http_settings(exporter)
        source = settings.session
        if not isinstance(source, requests.Session):
            raise TypeError(f"{type(exporter).__qualname__} does not send with a requests.Session")
        name = compression_name(settings.compression)
        if name not in _COMPRESSIONS:
            raise TypeError(
                f"{type(exporter).__qualname__} has an unknown compression {settings.compression!r}"
            )
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
            session.verify = settings.verify
            session.cert = settings.cert
            owns = True
        else:
            # A Session subclass (e.g. from a credential provider) carries behaviour that
            # cannot be copied: share it, and leave closing it to the exporter.
            session, owns = source, False
        sender._setup(
            settings.signal,
            settings.endpoint,
            {str(key).lower(): str(value) for key, value in settings.headers.items()},
            check_timeout(settings.timeout, "exporter timeout"),
            name,
            session,
            owns_session=owns,
            plain_session=owns,
        )
        return sender

    def send(self, body: bytes, timeout: float) -> SendResult:
        """POST ``body`` (a serialized export request) once; see the module docstring for outcomes."""
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if self._closed:
            return _SHUTDOWN_RESULT
        data = _compress(self.compression, body)
        transport = self._transport
        if transport is not None and _requests_path_is_plain():
            return self._send_pooled(transport, data, timeout)
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

    def _send_pooled(self, transport: PoolTransport, data: bytes, timeout: float) -> SendResult:
        try:
            response = transport.post(data, timeout)
        except TransportError as exc:
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
        """Classify a response (a ``requests.Response`` or a :class:`~._pool.Response`)."""
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
            return ok_result(str(code), self._info, self.signal, self.endpoint, parsed)
        return SendResult(
            ok=False,
            retryable=code in _RETRYABLE,
            throttled=code in _THROTTLED,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            status=str(code),
            rejected=0,
            message=_http_error_message(response),
        )

    def _failed(self, status: str, retryable: bool, exc: BaseException) -> SendResult:
        if self._closed:  # the session was closed under this call
            return _SHUTDOWN_RESULT
        return SendResult(False, retryable, False, None, status, 0, truncate(f"{type(exc).__name__}: {exc}"))

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

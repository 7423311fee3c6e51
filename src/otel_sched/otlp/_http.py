"""OTLP/HTTP (protobuf) sender: POSTs pre-encoded request bytes.

Two ways to POST, with the same request bytes and the same outcomes (outcomes and threading:
see :mod:`otel_sched.otlp._sender`):

* ``"http.client"``: a urllib3 connection pool of one keep-alive connection, used directly
  (``retries=False``: the pipeline owns retries).  urllib3's connections are ``http.client``
  connections; the name is kept for :attr:`HTTPSender.transport`.  Used wherever requests would
  do nothing but a plain POST (see :meth:`_PoolTransport.for_session`);
* ``"requests"``: the ``requests.Session`` itself, as the stock exporter posts, wherever the
  session carries behaviour of its own (a subclass, auth, proxies, cookies, netrc credentials),
  and while requests' own code is patched or wrapped (a mocking library, an active
  instrumentation).
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import http.client
import logging
import socket
import threading
import types
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

import requests  # type: ignore[import-untyped, unused-ignore]
import urllib3
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped, unused-ignore]
from requests.adapters import HTTPAdapter  # type: ignore[import-untyped, unused-ignore]
from requests.cookies import extract_cookies_to_jar  # type: ignore[import-untyped, unused-ignore]
from requests.utils import select_proxy  # type: ignore[import-untyped, unused-ignore]
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import DecodeError as ContentDecodeError
from urllib3.exceptions import HTTPError as Urllib3Error

from .._safe import safe_url, type_name
from . import _stock
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
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})  # requests.models.REDIRECT_STATI
_CONTENT_CHUNK_BYTES: Final = 10 * 1024  # requests.models.CONTENT_CHUNK_SIZE
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


@dataclass(frozen=True, slots=True)
class _Response:
    """What classifying a response reads, named as on ``requests.Response``."""

    status_code: int
    reason: str
    headers: Any  # case-insensitive; repeated fields joined by ", "
    content: bytes


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


class _TransportError(Exception):
    """A POST that failed, with the status and retryability the requests path gives the same failure."""

    def __init__(self, status: str, retryable: bool, cause: BaseException) -> None:
        super().__init__(f"{status}: {cause!r}")
        self.status = status
        self.retryable = retryable
        self.cause = cause


def _failure(exc: BaseException) -> tuple[str, bool]:
    """(status, retryable) for an error of ``urlopen``, as requests' adapter maps it."""
    if isinstance(exc, NewConnectionError):  # before ConnectTimeoutError: it is one
        return "connection_error", True
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return "timeout", True
    if isinstance(exc, InvalidHeader) or not isinstance(exc, (Urllib3Error, OSError)):
        return "error", False  # requests: InvalidHeader, or an error it does not wrap
    return "connection_error", True  # ProtocolError, SSLError, ProxyError, OSError


def _stale(exc: BaseException) -> bool:
    """A keep-alive connection the server closed: no response byte arrived."""
    return isinstance(exc, ProtocolError) and any(
        isinstance(arg, (BrokenPipeError, ConnectionResetError)) for arg in exc.args
    )  # incl. http.client.RemoteDisconnected


class _PoolTransport:
    """POSTs over a urllib3 pool of one keep-alive connection, in place of a requests Session.

    When: :meth:`for_session` builds one only where ``session.post(endpoint, data=..., headers=...,
    timeout=..., allow_redirects=False)`` would do nothing but that POST: the exact
    ``requests.Session`` class, created by the sender itself; no auth (session, netrc or URL),
    cookies, hooks, params or stream; the two default adapters; no proxy (session or environment,
    NO_PROXY respected, decided when built); an http or https endpoint; no Content-Length or
    Transfer-Encoding header of the caller's; TLS files that exist.  Anything requests would refuse
    on every send keeps requests, so that it reports it.  :class:`HTTPSender` hands the session back
    to requests for good once a response sets a cookie.

    Same as requests, because requests' own code decides it once: the request head (the headers
    ``Session.prepare_request`` gives, in its order, Content-Length last), the pool's TLS settings
    (``HTTPAdapter.build_connection_pool_key_attributes`` and ``cert_verify`` from the verify/cert
    ``merge_environment_settings`` resolves), and the outcome of each failure (:func:`_failure`;
    a timeout while sending or reading the body is a ``"connection_error"``).  A reused connection
    that still fails before any response byte is retried once on a fresh connection.

    ``post()`` is for one thread at a time; ``close()`` may come from any thread: it wakes a
    ``post()`` in flight, which then fails.
    """

    def __init__(self, pool: Any, target: str, headers: dict[str, str], cookie_jar: Any, prepared: Any):
        self._pool = pool
        self._target = target
        self._headers = headers
        self._cookie_jar = cookie_jar
        self._prepared = prepared
        # _connection and connects change on the posting thread; _lock orders them with close().
        self._lock = threading.Lock()
        self._connection: Any = None  # the pool's newest connection: the one a post() may be using
        self._connects = 0
        self.closed = False
        self.cookies_set = False  # a response set a cookie: requests must take over
        pool.ConnectionCls = self._new_connection

    @classmethod
    def for_session(
        cls, session: Any, endpoint: str, headers: Mapping[str, str]
    ) -> tuple[_PoolTransport | None, str]:
        """The transport standing in for ``session`` POSTing to ``endpoint``, or None and why not."""
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
            host, pool_kwargs = adapter.build_connection_pool_key_attributes(prepared, verify, cert)
            manager = urllib3.PoolManager(num_pools=1, maxsize=1, block=False)
            pool = manager.connection_from_host(**host, pool_kwargs=pool_kwargs)
            adapter.cert_verify(pool, url, verify, cert)  # raises for a missing CA or client file
            target = str(adapter.request_url(prepared, proxies))
        except Exception as exc:  # noqa: BLE001 - requests then reports the same problem on each send
            return None, f"requests would not send it as is: {type_name(exc)}"
        head = {str(k): str(v) for k, v in prepared.headers.items() if str(k).lower() != "content-length"}
        return cls(pool, target, head, session.cookies, prepared), ""

    def _new_connection(self, *args: Any, **kwargs: Any) -> Any:
        """The pool's ConnectionCls: its class's own, remembered so that close() can wake it."""
        connection = type(self._pool).ConnectionCls(*args, **kwargs)
        connect = connection.connect

        def guarded_connect() -> None:
            connect()
            with self._lock:
                self._connects += 1
                closed = self.closed
            if closed:  # shut down while connecting: send nothing
                connection.close()
                raise ConnectionAbortedError("sender shut down")

        connection.connect = guarded_connect
        with self._lock:
            self._connection = connection
        return connection

    def post(self, body: bytes, timeout: float) -> _Response:
        """POST ``body`` once (plus the retry for a stale connection); raises :class:`_TransportError`."""
        headers = self._headers.copy()
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            connects = self._connects
            try:
                response = self._pool.urlopen(
                    "POST",
                    self._target,
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=timeout,
                    preload_content=False,
                    decode_content=False,
                )
            except Exception as exc:
                if attempt == 1 and connects == self._connects and _stale(exc) and not self.closed:
                    continue  # a reused connection the server closed while idle
                raise _TransportError(*_failure(exc), exc) from exc
            return self._read(response)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _read(self, response: Any) -> _Response:
        headers = response.headers
        try:
            if "set-cookie" in headers or "set-cookie2" in headers:
                extract_cookies_to_jar(self._cookie_jar, self._prepared, response)
                self.cookies_set = len(self._cookie_jar) > 0
            try:
                content = b"".join(response.stream(_CONTENT_CHUNK_BYTES, decode_content=True))
            except ContentDecodeError:
                if not (response.status in _REDIRECT_STATUSES and "location" in headers):
                    raise
                content = b""  # requests prepares the (unfollowed) redirect, which swallows that error
        except (Urllib3Error, OSError, http.client.HTTPException) as exc:
            # requests: ChunkedEncodingError, ContentDecodingError, or ConnectionError for a timeout
            raise _TransportError("connection_error", True, exc) from exc
        finally:
            response.release_conn()
        return _Response(int(response.status), str(response.reason or ""), headers, content)

    def close(self) -> None:
        """Close the pool, waking a ``post()`` in flight. Idempotent; from any thread."""
        with self._lock:
            self.closed = True
            connection = self._connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            # A post() in flight owns the descriptor (were it closed here, a new file could take its
            # number under that thread): waking it is enough, urllib3 then closes the connection.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self._pool.close()  # closes the idle connection; a busy one is closed when it comes back


class HTTPSender:
    """OTLP/HTTP protobuf: POSTs the bytes over a urllib3 pool, or a ``requests.Session``.

    ``transport`` says which: ``"http.client"`` (:class:`_PoolTransport`, one keep-alive
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
        self._transport: _PoolTransport | None = None
        if plain_session:
            self._transport, why = _PoolTransport.for_session(session, endpoint, headers)
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

    def _send_pooled(self, transport: _PoolTransport, data: bytes, timeout: float) -> SendResult:
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

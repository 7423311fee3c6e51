"""The OTLP/HTTP sender's urllib3 transport: one keep-alive connection, used directly.

See :class:`PoolTransport`; :mod:`otel_sched.otlp._http` decides when it stands in for requests.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

import requests  # type: ignore[import-untyped, unused-ignore]
import urllib3
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

__all__ = ["PoolTransport", "Response", "TransportError"]

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})  # requests.models.REDIRECT_STATI
_CONTENT_CHUNK_BYTES: Final = 10 * 1024  # requests.models.CONTENT_CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class Response:
    """What classifying a response reads, named as on ``requests.Response``."""

    status_code: int
    reason: str
    headers: Any  # case-insensitive; repeated fields joined by ", "
    content: bytes


class TransportError(Exception):
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


class PoolTransport:
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

    Cost (measured on the shared 2-core VM): ~170 us of CPU per 100 KB POST to a loopback server,
    against ~90-160 us for the hand-written http.client transport this replaced and ~520-690 us
    through requests; one POST carries ~430-512 spans, so end to end the difference is within
    noise (bench_cpu_per_span, pipeline threads: 10.9 and 13.2 us per span after, 11.2 and 11.8
    before), under the 5 % that would justify hand-written HTTP code.
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
    ) -> tuple[PoolTransport | None, str]:
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

    def post(self, body: bytes, timeout: float) -> Response:
        """POST ``body`` once (plus the retry for a stale connection); raises :class:`TransportError`."""
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
                raise TransportError(*_failure(exc), exc) from exc
            return self._read(response)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _read(self, response: Any) -> Response:
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
            raise TransportError("connection_error", True, exc) from exc
        finally:
            response.release_conn()
        return Response(int(response.status), str(response.reason or ""), headers, content)

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

"""An embedded OTLP receiver (HTTP/protobuf and gRPC).

It is the collector the test suite's real exporters talk to, and the local
collector behind ``otel-sched demo`` and the benchmarks, where it injects
latency, failures and outages. It is built on ``opentelemetry-proto``'s
messages and gRPC service classes so that what the stock exporters send is
decoded exactly as a collector would decode it. Everything it keeps stays in
memory; it is not meant to be a production collector.

This module is the receiver itself: its lifecycle, endpoints and fault injection.  What it
received and the queries on it are in :mod:`._received`; the HTTP and gRPC transports in
:mod:`._receiver_transports`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import EllipsisType, TracebackType
from typing import Any, Final

import grpc

from ._received import ExportRequest, ReceivedItem, ReceiverRecord, count_items, decode_items
from ._receiver_transports import ReceiverHTTPServer, Verdict, bind_grpc, format_host, grpc_server, start_http

__all__ = ["OTLPReceiver"]

_logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S: Final = 5.0


class OTLPReceiver(ReceiverRecord):
    """A local OTLP collector with fault injection.

    Accepts ``POST /v1/traces`` and ``/v1/logs`` (``application/x-protobuf``,
    optionally gzip/deflate encoded) and, with ``grpc=True``, the OTLP gRPC
    trace and logs services. Each request waits ``latency_s`` on its own
    thread, so concurrent exports overlap like real round trips. A refused
    request (``failure_rate`` draw or ``down``) is answered ``failure_status``
    over HTTP or ``UNAVAILABLE``/``RESOURCE_EXHAUSTED`` over gRPC, with
    Retry-After / RetryInfo when ``retry_after_s`` is set; its items are not
    counted. With ``partial_rejected=N`` an accepted request is answered as a
    partial success (``rejected_spans`` / ``rejected_log_records`` = N,
    ``error_message`` "rejected by test"); its items are still kept and
    counted, since the receiver does not pick which ones it "rejected".
    ``request_count`` and ``request_times`` cover every OTLP request
    (accepted, refused or undecodable); requests to unknown paths are not
    counted. ``bytes_received`` sums the decompressed bodies of accepted
    requests.

    A receiver is started once; after ``stop()`` it keeps its counters and
    items but cannot be restarted.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc: bool = False,
        grpc_port: int = 0,
        latency_s: float = 0.0,
        failure_rate: float = 0.0,
        failure_status: int = 503,
        retry_after_s: float | None = None,
        seed: int | None = None,
        keep_items: bool = True,
        item_hook: Callable[[ReceivedItem], None] | None = None,
        max_concurrent_requests: int = 64,
        partial_rejected: int = 0,
    ) -> None:
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        _check_faults(latency_s, failure_rate, failure_status, retry_after_s, partial_rejected)
        self._host = host
        self._http_port_requested = http_port
        self._grpc_enabled = grpc
        self._grpc_port_requested = grpc_port
        super().__init__(keep_items=keep_items, item_hook=item_hook)
        self._max_concurrent = max_concurrent_requests

        # Fault settings, guarded by ReceiverRecord's condition.
        self._latency_s = latency_s
        self._failure_rate = failure_rate
        self._failure_status = failure_status
        self._retry_after_s = retry_after_s
        self._partial_rejected = partial_rejected
        self._down = False
        self._rng = random.Random(seed)

        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._stopping = threading.Event()
        self._http_slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._httpd: ReceiverHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._http_port: int | None = None
        self._grpc_server: Any = None
        self._grpc_executor: ThreadPoolExecutor | None = None
        self._grpc_port: int | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind and serve. Port 0 picks an ephemeral port; a busy fixed port raises OSError."""
        with self._lifecycle_lock:
            if self._started:
                raise RuntimeError("OTLPReceiver can only be started once")
            self._started = True
            try:
                self._start_http()
                if self._grpc_enabled:
                    self._start_grpc()
            except BaseException:
                self._stopped = True
                self._shutdown_servers(time.monotonic() + _STOP_TIMEOUT_S)
                raise
        return self

    def _start_http(self) -> None:
        self._httpd, self._http_thread, self._http_port = start_http(
            self, self._host, self._http_port_requested
        )

    def _start_grpc(self) -> None:
        self._grpc_server, self._grpc_executor = grpc_server(self, self._max_concurrent)
        self._grpc_port = bind_grpc(self._grpc_server, self._host, self._grpc_port_requested)
        self._grpc_server.start()

    def stop(self) -> None:
        """Stop serving and join the server threads. Idempotent and bounded in time.

        Requests still waiting out their injected latency are answered as refused.
        """
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        self._shutdown_servers(time.monotonic() + _STOP_TIMEOUT_S)

    def _shutdown_servers(self, deadline: float) -> None:
        self._stopping.set()
        httpd = self._httpd
        if httpd is not None:
            if self._http_thread is not None and self._http_thread.is_alive():
                httpd.shutdown()
            httpd.server_close()
            for thread in httpd.close_connections():
                thread.join(max(0.0, deadline - time.monotonic()))
            if self._http_thread is not None:
                self._http_thread.join(max(0.0, deadline - time.monotonic()))
        if self._grpc_server is not None:
            # A short grace lets handlers interrupted by _stopping send their answer.
            self._grpc_server.stop(0.5).wait(max(0.0, deadline - time.monotonic()))
        executor = self._grpc_executor
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            for thread in list(executor._threads):
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> OTLPReceiver:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- endpoints -----------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        if self._http_port is None:
            raise RuntimeError("OTLPReceiver is not started")
        return f"http://{format_host(self._host)}:{self._http_port}"

    @property
    def traces_url(self) -> str:
        return self.http_endpoint + "/v1/traces"

    @property
    def logs_url(self) -> str:
        return self.http_endpoint + "/v1/logs"

    @property
    def grpc_endpoint(self) -> str:
        if not self._grpc_enabled:
            raise RuntimeError("OTLPReceiver was created with grpc=False")
        if self._grpc_port is None:
            raise RuntimeError("OTLPReceiver is not started")
        return f"{format_host(self._host)}:{self._grpc_port}"

    # -- faults ----------------------------------------------------------------

    def set_faults(
        self,
        *,
        latency_s: float | None = None,
        failure_rate: float | None = None,
        failure_status: int | None = None,
        retry_after_s: float | EllipsisType | None = ...,
        down: bool | None = None,
        partial_rejected: int | None = None,
    ) -> None:
        """Change fault injection for the next requests; ``None`` (``...`` for retry_after_s) keeps a value.

        ``down=True`` refuses every request, simulating an outage; ``partial_rejected=N``
        answers accepted requests as partial successes rejecting N items (0 turns it off).
        """
        with self._cond:
            new_latency = self._latency_s if latency_s is None else latency_s
            new_rate = self._failure_rate if failure_rate is None else failure_rate
            new_status = self._failure_status if failure_status is None else failure_status
            new_retry = self._retry_after_s if isinstance(retry_after_s, EllipsisType) else retry_after_s
            new_rejected = self._partial_rejected if partial_rejected is None else partial_rejected
            _check_faults(new_latency, new_rate, new_status, new_retry, new_rejected)
            self._latency_s = new_latency
            self._failure_rate = new_rate
            self._failure_status = new_status
            self._retry_after_s = new_retry
            self._partial_rejected = new_rejected
            if down is not None:
                self._down = down
            self._cond.notify_all()

    # -- observations (the rest are ReceiverRecord's) -------------------------------

    def wait_until(self, predicate: Callable[[OTLPReceiver], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds; it is re-evaluated whenever the receiver's state changes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # -- request processing (shared by both transports) ------------------------

    def _process(self, signal: str, transport: str, request: ExportRequest, nbytes: int) -> Verdict:
        arrived = time.monotonic()
        with self._cond:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            latency = self._latency_s
            refused = self._down or (self._failure_rate > 0 and self._rng.random() < self._failure_rate)
            failure_status = self._failure_status
            retry_after = self._retry_after_s
            partial_rejected = self._partial_rejected
            self._cond.notify_all()

        items: list[ReceivedItem] = []
        count = 0
        try:
            if latency > 0 and self._stopping.wait(latency):
                refused, failure_status = True, 503
            if not refused:
                count = count_items(request)
                if self._keep_items or self._item_hook is not None:
                    items = decode_items(request, arrived, transport)
        except BaseException:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()
            raise

        grpc_code = (
            grpc.StatusCode.RESOURCE_EXHAUSTED if failure_status == 429 else grpc.StatusCode.UNAVAILABLE
        )
        if transport == "grpc":
            status = int(grpc_code.value[0]) if refused else int(grpc.StatusCode.OK.value[0])
        else:
            status = failure_status if refused else 200
        with self._cond:
            self._in_flight -= 1
            self._request_count += 1
            self._request_times.append((arrived, signal, status))
            if refused:
                self._refused_count += 1
            else:
                self._bytes_received += nbytes
                if signal == "traces":
                    self._span_count += count
                    if self._keep_items:
                        self._spans.extend(items)
                else:
                    self._log_count += count
                    if self._keep_items:
                        self._logs.extend(items)
            self._cond.notify_all()

        hook = self._item_hook
        if hook is not None:
            for item in items:
                try:
                    hook(item)
                except Exception:
                    _logger.exception("OTLPReceiver item_hook raised")
        if refused:
            return Verdict(False, status, retry_after, grpc_code)
        return Verdict(True, status, None, grpc_code, partial_rejected)


def _check_faults(
    latency_s: float,
    failure_rate: float,
    failure_status: int,
    retry_after_s: float | None,
    partial_rejected: int = 0,
) -> None:
    if not latency_s >= 0:
        raise ValueError(f"latency_s must be >= 0, got {latency_s!r}")
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be within [0, 1], got {failure_rate!r}")
    if not 400 <= failure_status <= 599:
        raise ValueError(f"failure_status must be an HTTP error status, got {failure_status!r}")
    if retry_after_s is not None and not retry_after_s >= 0:
        raise ValueError(f"retry_after_s must be >= 0 or None, got {retry_after_s!r}")
    if isinstance(partial_rejected, bool) or not isinstance(partial_rejected, int) or partial_rejected < 0:
        raise ValueError(f"partial_rejected must be an int >= 0, got {partial_rejected!r}")

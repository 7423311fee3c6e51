"""OTLP/gRPC sender: calls the Export method of one channel with the pre-encoded request bytes.

Outcomes and threading: see :mod:`otel_sched.otlp._sender`.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlparse

from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status as RpcStatus  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.util.re import parse_env_headers

from .._safe import safe_url, type_name
from . import _stock
from ._sender import (
    _SHUTDOWN_RESULT,
    DEFAULT_TIMEOUT_S,
    SendResult,
    check_timeout,
    checked_compression,
    ok_result,
    signal_info,
    truncate,
)

__all__ = ["GRPCSender"]

_logger = logging.getLogger(__name__)

_DEFAULT_ENDPOINT: Final = "http://localhost:4317"
_RETRYABLE: Final = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
_THROTTLED: Final = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
_RETRY_INFO_TRAILER: Final = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_TRAILER: Final = "grpc-status-details-bin"
_COMPRESSIONS: Final = ("none", "gzip", "deflate")

try:
    from opentelemetry.exporter.otlp.proto.grpc import _OTLP_GRPC_CHANNEL_OPTIONS
except ImportError:  # pragma: no cover - the gRPC exporter is a dependency
    _OTLP_GRPC_CHANNEL_OPTIONS = []


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
        """Unset settings take the stock exporter's defaults (never the environment).

        ``compression`` takes a ``grpc.Compression`` or its name; ``credentials`` (a
        ``grpc.ChannelCredentials``) wins over the certificate files, which win over
        the default roots; ``insecure`` unset follows the URL scheme (``http``: insecure),
        and an ``https`` URL is always secure; ``channel_options`` are merged over the
        stock defaults (the exporter's User-Agent).
        """
        signal_info(signal)
        resolved_timeout = DEFAULT_TIMEOUT_S if timeout is None else check_timeout(timeout, "timeout")
        resolved_compression = checked_compression(compression, _COMPRESSIONS)
        raw_endpoint = endpoint or _DEFAULT_ENDPOINT
        parsed = urlparse(raw_endpoint)
        if insecure is None or parsed.scheme == "https":
            insecure = parsed.scheme == "http"
        files = certificate_file or client_key_file or client_certificate_file
        if not insecure and credentials is None and files:
            credentials = _file_credentials(certificate_file, client_key_file, client_certificate_file)
        self._setup(
            signal,
            parsed.netloc or raw_endpoint,
            insecure,
            credentials,
            _metadata(headers or ()),
            resolved_timeout,
            resolved_compression,
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
        self._info = signal_info(signal)
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

        settings = _stock.grpc_settings(exporter)
        credentials = settings.credentials
        compression = settings.compression or grpc.Compression.NoCompression
        if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
            what = type_name(credentials)
            raise TypeError(f"{type(exporter).__qualname__} has unexpected credentials {what}")
        if not isinstance(compression, grpc.Compression):
            raise TypeError(f"{type(exporter).__qualname__} has an unknown compression {compression!r}")
        sender = cls.__new__(cls)
        sender._setup(
            settings.signal,
            settings.endpoint,
            settings.insecure,
            credentials,
            _metadata(settings.headers or ()),
            check_timeout(settings.timeout, "exporter timeout"),
            {
                grpc.Compression.NoCompression: "none",
                grpc.Compression.Gzip: "gzip",
                grpc.Compression.Deflate: "deflate",
            }[compression],
            tuple(settings.channel_options or ()),
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
        return ok_result("OK", self._info, self.signal, self.endpoint, response)

    @staticmethod
    def _failed(exc: Any) -> SendResult:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        name = str(getattr(code, "name", "UNKNOWN"))
        details = exc.details() if callable(getattr(exc, "details", None)) else None
        trailers = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
        retry_after = _grpc_retry_delay(trailers)
        return SendResult(
            ok=False,
            retryable=name in _RETRYABLE or (name == "RESOURCE_EXHAUSTED" and retry_after is not None),
            throttled=name in _THROTTLED,
            retry_after=retry_after,
            status=name,
            rejected=0,
            message=truncate(str(details or "")),
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

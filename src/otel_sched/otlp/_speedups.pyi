from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.trace import ReadableSpan

def configure(
    fallback: Callable[[ReadableSpan], bytes],
    trusted: dict[type, bool],
    readable_span: type,
    bounded_attributes: type,
    bounded_list: type,
    event: type,
    link: type,
    span_context: type,
    trace_state: type,
    status: type,
    span_kind: Any,
    /,
) -> None: ...
def encode_span(span: ReadableSpan, /) -> bytes: ...
def try_encode_span(span: ReadableSpan, /) -> bytes | None: ...
def configure_logs(
    fallback: Callable[[ReadableLogRecord], bytes],
    readable_log_record: type,
    log_record: type,
    severity_number: Any,
    trace_flags: type,
    /,
) -> None: ...
def encode_log(record: ReadableLogRecord, /) -> bytes: ...
def try_encode_log(record: ReadableLogRecord, /) -> bytes | None: ...
def configure_estimate(fast_spans: frozenset[type], /) -> None: ...
def estimate_span(span: Any, /) -> int | None: ...

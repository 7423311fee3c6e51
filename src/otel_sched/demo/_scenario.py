"""The demo's scenario: its configuration and the producers that offer its load.

:class:`DemoConfig` is the scenario (rates, collector latency and concurrency, tenants and how
noisy the first one is, error share, policy); :class:`Producer` threads create spans and logs
at its rates with its tenant and error mix, as an instrumented web service would, and count
what they offered.
"""

from __future__ import annotations

import math
import os
import platform
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from .._option_parsers import POLICY_NAMES

__all__ = [
    "ERROR_SEVERITY",
    "TENANT_KEY",
    "DemoConfig",
    "Producer",
    "Progress",
    "ProgressCallback",
    "demo_resource",
    "tenant_names",
]

TENANT_KEY = "tenant.id"
ERROR_SEVERITY = SeverityNumber.ERROR.value


# -- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """The scenario.  Rates are items per second over the whole process; duration is per pipeline."""

    duration_s: float = 15.0
    span_rate: float = 5000.0
    log_rate: float = 4000.0
    latency_ms: float = 300.0
    failure_rate: float = 0.0
    # Requests the collector serves at once (others wait their turn).  Four at 300 ms: the stock
    # processors (one export per signal) reach a third of the load, the concurrent lanes more, and
    # both are still overloaded, so what is compared is how many items get through and which.
    collector_concurrency: int = 4
    tenants: int = 5
    noisy_share: float = 0.7
    error_share: float = 0.05
    policy: str = "priority_fair"
    seed: int = 1
    producers: int = 2
    drain_timeout_s: float = 15.0  # force_flush + shutdown, per pipeline
    interrupt_timeout_s: float = 3.0  # how long a Ctrl-C waits for the processors to stop
    warmup_s: float = 2.0  # per pipeline, unmeasured, before the measured runs (see _warm_up)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{name}: {why}" for name, why in problems))

    def problems(self) -> list[tuple[str, str]]:
        """(field, reason) for every invalid field; empty when the configuration is usable."""
        out: list[tuple[str, str]] = []

        def finite(
            name: str, value: float, low: float, high: float = math.inf, *, open_low: bool = False
        ) -> None:
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                out.append((name, f"must be a finite number, got {value!r}"))
            elif value < low or (open_low and value == low) or value > high:
                bound = f"> {low}" if open_low else f">= {low}"
                rng = f"within {low}..{high}" if high != math.inf else bound
                out.append((name, f"must be {rng}, got {value!r}"))

        finite("duration_s", self.duration_s, 0.0, open_low=True)
        finite("span_rate", self.span_rate, 0.0)
        finite("log_rate", self.log_rate, 0.0)
        finite("latency_ms", self.latency_ms, 0.0)
        finite("failure_rate", self.failure_rate, 0.0, 1.0)
        finite("noisy_share", self.noisy_share, 0.0, 1.0)
        finite("error_share", self.error_share, 0.0, 1.0)
        finite("drain_timeout_s", self.drain_timeout_s, 0.0, open_low=True)
        finite("interrupt_timeout_s", self.interrupt_timeout_s, 0.0, open_low=True)
        finite("warmup_s", self.warmup_s, 0.0)
        if not isinstance(self.collector_concurrency, int) or self.collector_concurrency < 1:
            out.append(
                ("collector_concurrency", f"must be an integer >= 1, got {self.collector_concurrency!r}")
            )
        if not isinstance(self.tenants, int) or self.tenants < 1:
            out.append(("tenants", f"must be an integer >= 1, got {self.tenants!r}"))
        if not isinstance(self.producers, int) or self.producers < 1:
            out.append(("producers", f"must be an integer >= 1, got {self.producers!r}"))
        if self.policy not in POLICY_NAMES:
            out.append(("policy", f"must be one of {', '.join(POLICY_NAMES)}, got {self.policy!r}"))
        return out


@dataclass(frozen=True)
class Progress:
    """What the demo is doing right now; handed to the progress callback ~4 times a second."""

    pipeline: str  # "stock" | "otel_sched"
    step: str  # "load" | "drain" | "stopping"
    run_index: int  # 1-based
    runs: int
    elapsed_s: float  # since this pipeline's load started
    duration_s: float
    offered: int  # this pipeline, spans + logs
    delivered: int  # this pipeline, spans + logs


ProgressCallback = Callable[[Progress], None]


def tenant_names(n: int) -> list[str]:
    """Readable tenant ids; the first one is the noisy tenant."""
    if n <= 26:
        return [f"tenant-{chr(ord('a') + i)}" for i in range(n)]
    width = len(str(n - 1))
    return [f"tenant-{i:0{width}d}" for i in range(n)]


# -- the workload --------------------------------------------------------------------------------------

_ROUTES = (
    ("GET", "/api/v1/orders/{id}"),
    ("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/users/{id}"),
    ("PUT", "/api/v1/users/{id}"),
    ("GET", "/api/v1/catalog/search"),
    ("POST", "/api/v1/cart/items"),
    ("DELETE", "/api/v1/cart/items/{id}"),
    ("GET", "/healthz"),
)


_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    "curl/8.8.0",
)


_OK_STATUS = (200, 200, 200, 200, 200, 201, 204, 304, 400, 404)


_LOG_LEVELS = (
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.DEBUG, "DEBUG"),
    (SeverityNumber.WARN, "WARN"),
)


_LOG_MESSAGES = (
    "request handled",
    "cache miss for key",
    "order state changed",
    "payment authorised",
    "rate limit close to quota",
    "retrying upstream call",
)


_ERROR_MESSAGES = (
    "upstream timed out after 3 retries",
    "database deadlock detected; transaction rolled back",
    "payment provider returned 502",
)


def demo_resource() -> Resource:
    """The one resource both runs share."""
    return Resource.create(
        {
            "service.name": "checkout-api",
            "service.version": "4.2.0",
            "service.namespace": "shop",
            "deployment.environment": "demo",
            "host.name": platform.node() or "localhost",
            "process.pid": os.getpid(),
        }
    )


class _Offered:
    """Counts of what one producer offered; merged once the producers stop."""

    def __init__(self) -> None:
        self.spans = 0
        self.logs = 0
        self.skipped = 0  # items the producer could not create in time (it fell behind its rate)
        self.by_key: Counter[tuple[str, str, str]] = Counter()  # (signal, priority, tenant)


class Producer(threading.Thread):
    """Creates spans and logs at a fixed rate with the scenario's tenant and error mix."""

    _MAX_BURST = 64  # items per pacing step, so spans and logs interleave
    _MAX_LAG_S = 0.25  # behind by more than this: skip ahead instead of bursting (counted)

    def __init__(
        self,
        index: int,
        config: DemoConfig,
        tracer_provider: TracerProvider,
        logger_provider: LoggerProvider,
        stop: threading.Event,
        start_at: float,
    ) -> None:
        super().__init__(name=f"otel-sched-demo-producer-{index}", daemon=True)
        self.offered = _Offered()
        self._config = config
        self._tracer = tracer_provider.get_tracer("checkout.http", "4.2.0")
        self._logger = logger_provider.get_logger("checkout.app", "4.2.0")
        self._halt_event = stop
        self._start_at = start_at
        self._span_rate = config.span_rate / config.producers
        self._log_rate = config.log_rate / config.producers
        self._rng = random.Random(config.seed * 7919 + index)
        self._tenants = tenant_names(config.tenants)
        self._last_span: dict[str, Any] = {}  # tenant -> its latest span: a trace belongs to one tenant
        self.error: BaseException | None = None

    def _tenant(self) -> str:
        rng, tenants = self._rng, self._tenants
        if len(tenants) == 1 or rng.random() < self._config.noisy_share:
            return tenants[0]
        return tenants[1 + rng.randrange(len(tenants) - 1)]

    def _span(self) -> None:
        rng = self._rng
        tenant = self._tenant()
        error = rng.random() < self._config.error_share
        method, route = _ROUTES[rng.randrange(len(_ROUTES))]
        target = route.replace("{id}", str(rng.randrange(1, 10**7)))
        status = 500 if error else _OK_STATUS[rng.randrange(len(_OK_STATUS))]
        now = time.time_ns()
        span = self._tracer.start_span(
            f"{method} {route}",
            kind=SpanKind.SERVER,
            start_time=now - rng.randrange(200_000, 80_000_000),
            attributes={
                TENANT_KEY: tenant,
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "url.full": f"https://shop.example.com{target}?session={rng.getrandbits(40):x}",
                "url.scheme": "https",
                "user_agent.original": _AGENTS[rng.randrange(len(_AGENTS))],
                "client.address": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "server.address": "shop.example.com",
                "network.protocol.version": "1.1",
            },
        )
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        self._last_span[tenant] = span
        self.offered.spans += 1
        self.offered.by_key["spans", "high" if error else "normal", tenant] += 1

    def _log(self) -> None:
        rng = self._rng
        tenant = self._tenant()
        error = rng.random() < self._config.error_share
        if error:
            severity, text = SeverityNumber.ERROR, "ERROR"
            body = _ERROR_MESSAGES[rng.randrange(len(_ERROR_MESSAGES))]
        else:
            severity, text = _LOG_LEVELS[rng.randrange(len(_LOG_LEVELS))]
            body = _LOG_MESSAGES[rng.randrange(len(_LOG_MESSAGES))]
        # Logs carry the trace context of a recent request, as instrumented handlers' logs do.
        span = self._last_span.get(tenant)
        context = set_span_in_context(span) if span is not None else None
        self._logger.emit(
            timestamp=time.time_ns(),
            context=context,
            severity_number=severity,
            severity_text=text,
            body=body,
            attributes={
                TENANT_KEY: tenant,
                "code.function.name": "handle_request",
                "code.file.path": "/srv/checkout/app/handlers.py",
                "code.line.number": 100 + rng.randrange(400),
                "thread.name": "MainThread",
                "order.id": rng.randrange(10**8),
            },
        )
        self.offered.logs += 1
        self.offered.by_key["logs", "high" if severity.value >= ERROR_SEVERITY else "normal", tenant] += 1

    def run(self) -> None:
        try:
            self._pace()
        except Exception as exc:  # noqa: BLE001 - reported in the result; a producer must not die silently
            self.error = exc

    def _pace(self) -> None:
        duration = self._config.duration_s
        span_rate, log_rate = self._span_rate, self._log_rate
        offered = self.offered
        # Items the producer gave up on count against the schedule so it never bursts to catch up.
        skipped_spans = skipped_logs = 0
        while not self._halt_event.is_set():
            elapsed = time.monotonic() - self._start_at
            if elapsed >= duration:
                return
            due_spans = int(span_rate * elapsed) - offered.spans - skipped_spans
            due_logs = int(log_rate * elapsed) - offered.logs - skipped_logs
            if due_spans > span_rate * self._MAX_LAG_S:
                skip = due_spans - int(span_rate * self._MAX_LAG_S)
                skipped_spans += skip
                due_spans -= skip
            if due_logs > log_rate * self._MAX_LAG_S:
                skip = due_logs - int(log_rate * self._MAX_LAG_S)
                skipped_logs += skip
                due_logs -= skip
            offered.skipped = skipped_spans + skipped_logs
            if due_spans <= 0 and due_logs <= 0:
                self._halt_event.wait(0.002)
                continue
            for _ in range(min(due_spans, self._MAX_BURST)):
                self._span()
            for _ in range(min(due_logs, self._MAX_BURST)):
                self._log()

"""Builders of a pipeline's parts: the pure scheduling stages, and the lanes with what they imply.

Owns nothing after construction: each function returns fresh objects (at construction and again
in a forked child).  Threads: whichever thread builds the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .._config import Config
from .._safe import safe_url
from ..otlp._encoding import (
    encode_log,
    encode_log_python,
    encode_span,
    encode_span_python,
    estimate_span_native,
    log_envelopes,
    span_envelopes,
)
from ..otlp._exporters import ExporterSpec, fast_path_for
from ..scheduling._admission import Admission
from ..scheduling._batching import BatchFormer
from ..scheduling._classify import Classifier, TenantRegistry
from ..scheduling._cost_model import CostModel
from ..scheduling._policies import deadline_for, make_policy
from ..scheduling._queues import QueueSet
from ..scheduling._task import Signal
from ._concurrency import AIMDController, ModeMachine
from ._routing import Router
from ._workers import LanePool

_TASK_OVERHEAD = 256  # a Task, its bytes object's header and its queue slot
_RAW_OVERHEAD = {Signal.TRACES: 3072, Signal.LOGS: 1024}  # an SDK span / log record around its payload


class Stages(NamedTuple):
    """The pure stages of one pipeline (clock-injected, single-threaded: the scheduler's)."""

    weight_of: Callable[[str], float]  # a tenant's fair-share weight
    cost_model: CostModel
    policy: Any
    queues: QueueSet
    admission: Admission
    former: BatchFormer
    tenants: TenantRegistry
    classifier: Classifier
    encode: Callable[[Any], bytes]  # an item to OTLP bytes (native or Python encoder)
    envelopes: Callable[[Any], Any]


def build_stages(cfg: Config, priority: Callable[..., Any]) -> Stages:
    weights = dict(cfg.tenant_weights)

    def weight_of(tenant: str) -> float:
        return weights.get(tenant, 1.0)

    cost_model = CostModel()
    policy = make_policy(
        cfg.policy,
        aging_seconds=cfg.aging_millis / 1000.0,
        quantum=cfg.fair_quantum_bytes,
        predict_seconds=cost_model.item_seconds,
    )
    queues = QueueSet(weight_of, policy.activate, cost_buckets=policy.cost_buckets, on_compact=policy.compact)
    tenants = TenantRegistry(cfg.max_tenants, lambda t: t not in queues.tenant_count)
    classifier = Classifier(
        cfg.signal,
        priority,
        cfg.tenant_key,
        tenants,
        deadline_for(cfg.max_age_millis),
        cfg.inherit_priority,
        native_estimate=estimate_span_native if cfg.native_encoder else None,
    )
    encode: Callable[[Any], bytes]
    if cfg.signal is Signal.TRACES:
        encode = encode_span if cfg.native_encoder else encode_span_python
        envelopes: Callable[[Any], Any] = span_envelopes
    else:
        encode = encode_log if cfg.native_encoder else encode_log_python
        envelopes = log_envelopes
    return Stages(
        weight_of,
        cost_model,
        policy,
        queues,
        Admission(cfg.max_queue_size, cfg.max_queue_bytes, weight_of),
        BatchFormer(
            cfg.max_export_batch_size, cfg.max_export_batch_bytes, cfg.schedule_delay_millis / 1000.0
        ),
        tenants,
        classifier,
        encode,
        envelopes,
    )


class Lanes(NamedTuple):
    """The lanes that call the exporter, how they are routed and paced, and what their path costs."""

    pool: LanePool
    router: Router
    controller: AIMDController
    modes: ModeMachine
    fast: bool  # the pre-encoded path: lanes send OTLP bytes through our own senders
    copies_in_flight: int  # copies of a batch's bytes while it is sent
    raw_overhead: int  # bytes an unencoded item holds beyond its payload
    task_overhead: int  # bytes a queued item holds beyond its encoded (or predicted) size


def build_lanes(spec: ExporterSpec, cfg: Config, prefix: str, on_done: Callable[..., None]) -> Lanes:
    endpoints = spec.endpoints or [""]
    total = cfg.max_concurrent_exports if spec.can_multiply else 1
    per_endpoint = [
        total // len(endpoints) + (1 if i < total % len(endpoints) else 0) for i in range(len(endpoints))
    ]
    per_endpoint = [max(1, n) for n in per_endpoint]

    signal = cfg.signal.value
    probe = None if not cfg.otlp_fast_path or spec.asynchronous else fast_path_for(spec.first, signal)
    fast = probe is not None
    # Copies of a batch's bytes while it is sent: the tasks' own, the assembled request body,
    # and the compressed body when the sender compresses (gzip/deflate: a third buffer).
    compressed = probe is not None and getattr(probe.sender, "compression", "none") != "none"
    # Bytes an item holds beyond its encoded size (measured with tracemalloc on CPython 3.11 and
    # opentelemetry-sdk 1.45, rounded up): the memory budget is about RSS, not payload.
    raw_overhead = _RAW_OVERHEAD[cfg.signal]
    if probe is not None:
        probe.sender.shutdown()  # it only proved the path works; lanes get their own senders

    def make(endpoint: int) -> Any:
        exporter = spec.make(spec.endpoints[endpoint] if spec.endpoints else None)
        if not fast:
            return exporter
        lane = fast_path_for(exporter, signal)
        if lane is None:
            raise TypeError(f"{type(exporter).__name__} built for a lane has no pre-encoded path")
        return lane

    def first_lane() -> Any:
        if spec.endpoints:  # every lane is built for its endpoint; the user's instance is a template
            return make(0)
        if not fast:
            return spec.first
        return fast_path_for(spec.first, signal)

    pool = LanePool(prefix, make, first_lane(), spec.asynchronous, per_endpoint, on_done)
    return Lanes(
        pool,
        Router([safe_url(e) for e in spec.endpoints] or ["default"]),
        AIMDController(pool.live_lanes(), adaptive=cfg.adaptive_concurrency),
        ModeMachine(),
        fast,
        3 if compressed else 2,
        raw_overhead,
        _TASK_OVERHEAD + (0 if fast else raw_overhead),
    )

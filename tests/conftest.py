from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_sched._receiver import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A started local OTLP receiver with HTTP and gRPC endpoints."""
    rx = OTLPReceiver(grpc=True).start()
    try:
        yield rx
    finally:
        rx.stop()

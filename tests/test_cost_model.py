"""Cost model: learns latency = base + per_byte * bytes online."""

from __future__ import annotations

import math
import random

import pytest

from otel_sched.scheduling._cost_model import CostModel


def test_prior_before_any_sample() -> None:
    model = CostModel()
    assert model.samples == 0
    assert model.predict(0) == pytest.approx(1e-3)


def test_learns_overhead_and_per_byte_cost() -> None:
    rng = random.Random(1)
    model = CostModel()
    for _ in range(500):
        nbytes = rng.randint(1_000, 1_000_000)
        model.observe(nbytes, 100, 0.05 + 2e-8 * nbytes + rng.gauss(0, 1e-4))
    assert model.base == pytest.approx(0.05, rel=0.05)
    assert model.per_byte == pytest.approx(2e-8, rel=0.05)
    assert model.predict(500_000) == pytest.approx(0.06, rel=0.05)


def test_follows_a_change_of_latency() -> None:
    model = CostModel(half_life=16)
    rng = random.Random(2)
    for latency in (0.01, 0.2):
        for _ in range(300):
            nbytes = rng.randint(10_000, 100_000)
            model.observe(nbytes, 50, latency)
    assert model.predict(50_000) == pytest.approx(0.2, rel=0.1)


def test_identical_sizes_keep_a_sane_split() -> None:
    model = CostModel()
    for _ in range(50):
        model.observe(10_000, 10, 0.02)
    assert model.predict(10_000) == pytest.approx(0.02, rel=0.01)
    assert model.base >= 0 and model.per_byte >= 0


@pytest.mark.parametrize(
    "bad", [(0, 1, 0.1), (100, 0, 0.1), (100, 1, -1.0), (100, 1, math.nan), (100, 1, math.inf)]
)
def test_bad_samples_are_ignored(bad: tuple[int, int, float]) -> None:
    model = CostModel()
    model.observe(*bad)
    assert model.samples == 0


def test_item_seconds_spreads_the_overhead_over_the_batch() -> None:
    model = CostModel()
    for i in range(100):
        model.observe(10_000 + i * 1000, 100, 0.1 + 1e-7 * (10_000 + i * 1000))
    assert model.item_seconds(100) == pytest.approx(0.1 / 100 + 1e-5, rel=0.1)


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError, match="half_life"):
        CostModel(half_life=0)

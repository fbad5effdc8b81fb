"""The (R, S) replay: hand-checked timelines, and textbook calibration on known demand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.inventory import safety_stock
from engine.simulation import simulate_order_up_to

DEMAND = np.array([[10.0, 10.0, 20.0, 10.0, 10.0, 10.0]])
FLAT = np.full((1, 6), 10.0)


def _run(actual, forecast, ss, **kw):
    kw.setdefault("lead_time", np.array([1]))
    kw.setdefault("review_period", np.array([1]))
    return simulate_order_up_to(actual, forecast, np.array([ss], dtype=float), **kw)


def test_perfect_forecast_never_stocks_out() -> None:
    r = _run(FLAT, FLAT, 0.0)
    assert r.stockout_cycles[0] == 0 and r.cycles[0] == 5
    assert r.fill_rate[0] == 1.0


def test_hand_checked_backorder_timeline() -> None:
    # S = 2 periods x 10 + SS 5 = 25. A demand spike of 20 in period 2 leaves period 2 short
    # by 5 and, with the backlog, period 3 short too: 2 of the 5 evaluated cycles stock out.
    r = _run(DEMAND, FLAT, 5.0)
    assert (r.cycles[0], r.stockout_cycles[0]) == (5, 2)
    assert r.cycle_service_level[0] == pytest.approx(0.6)
    assert r.demand[0] == 60 and r.served[0] == 50
    assert r.fill_rate[0] == pytest.approx(50 / 60)


def test_hand_checked_lost_sales_timeline() -> None:
    # Lost sales: the 5 units short in period 2 are gone, so period 3 is served in full.
    r = _run(DEMAND, FLAT, 5.0, lost_sales=True)
    assert r.stockout_cycles[0] == 1
    assert r.served[0] == 55


def test_more_safety_stock_absorbs_the_spike() -> None:
    assert _run(DEMAND, FLAT, 10.0).stockout_cycles[0] == 0


def test_pack_rounding_raises_stock_and_service() -> None:
    plain = _run(DEMAND, FLAT, 0.0)
    packed = _run(DEMAND, FLAT, 0.0, multiple=np.array([24.0]))
    assert packed.mean_on_hand[0] > plain.mean_on_hand[0]
    assert packed.stockout_cycles[0] <= plain.stockout_cycles[0]


def _iid(n=3000, T=60, seed=1):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(20, 200, n)
    sd = mu * rng.uniform(0.1, 0.4, n)
    y = np.maximum(0.0, mu[:, None] + sd[:, None] * rng.standard_normal((n, T)))
    L = rng.integers(0, 5, n)
    R = rng.integers(1, 4, n)
    return mu, sd, y, np.repeat(mu[:, None], T, axis=1), L, R


@pytest.mark.parametrize("target", [0.90, 0.95, 0.98])
def test_textbook_safety_stock_achieves_its_cycle_service_level_on_normal_demand(target) -> None:
    mu, sd, y, f, L, R = _iid()
    ss = safety_stock(mu, sd, lead_time=L, review_period=R, service_level=target)
    r = simulate_order_up_to(y, f, ss, lead_time=L, review_period=R)
    achieved = 1 - r.stockout_cycles.sum() / r.cycles.sum()
    assert achieved == pytest.approx(target, abs=0.01)


def test_lead_time_variability_costs_service_unless_buffered() -> None:
    mu, sd, y, f, L, R = _iid(n=1500)
    L = L + 2
    sdl = np.full(len(mu), 1.0)
    ss = safety_stock(mu, sd, lead_time=L, review_period=R, service_level=0.95)
    steady = simulate_order_up_to(y, f, ss, lead_time=L, review_period=R, seed=3)
    shaky = simulate_order_up_to(y, f, ss, lead_time=L, review_period=R, sd_lead_time=sdl, seed=3)
    assert shaky.stockout_cycles.sum() > 1.5 * steady.stockout_cycles.sum()
    ss_lt = safety_stock(mu, sd, lead_time=L, review_period=R, sd_lead_time=sdl, service_level=0.95)
    buffered = simulate_order_up_to(y, f, ss_lt, lead_time=L, review_period=R, sd_lead_time=sdl, seed=3)
    assert 1 - buffered.stockout_cycles.sum() / buffered.cycles.sum() >= 0.94


def test_same_seed_same_lead_times() -> None:
    mu, sd, y, f, L, R = _iid(n=200)
    sdl = np.full(len(mu), 1.5)
    a = simulate_order_up_to(y, f, sd * 2, lead_time=L, review_period=R, sd_lead_time=sdl, seed=9)
    b = simulate_order_up_to(y, f, sd * 2, lead_time=L, review_period=R, sd_lead_time=sdl, seed=9)
    np.testing.assert_array_equal(a.stockout_cycles, b.stockout_cycles)

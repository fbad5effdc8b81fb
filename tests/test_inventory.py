"""Textbook inventory maths: worked examples, units, and monotonicity properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.inventory import (
    Duration, continuous_review_sq, continuous_review_ss, days_of_coverage, economic_order_quantity,
    expected_shortage, normal_loss, normal_loss_inverse, periodic_review_rs, projected_fill_rate,
    reorder_point, round_to_pack, safety_stock, stockout_risk, suggested_order, z_value,
)


# ---------------------------------------------------------------- worked examples


def test_textbook_example_weekly_demand_two_week_lead_time() -> None:
    # d = 2,500/week, sd 500, L = 2 weeks, CSL 90 %: SS = 1.2816 * 500 * sqrt(2) = 906
    ss = safety_stock(2500, 500, lead_time=2, service_level=0.90)
    assert ss == pytest.approx(906.2, abs=0.5)
    assert reorder_point(2500, 500, lead_time=2, service_level=0.90) == pytest.approx(5906.2, abs=0.5)


def test_textbook_example_with_lead_time_variability() -> None:
    # sqrt(7 * 500^2 + 2500^2 * 7^2) * 1.2816 = 22,491
    ss = safety_stock(2500, 500, lead_time=7, sd_lead_time=7, service_level=0.90)
    assert ss == pytest.approx(22491, abs=1)


def test_z_values_match_tables() -> None:
    assert z_value(0.90) == pytest.approx(1.2816, abs=1e-4)
    assert z_value(0.95) == pytest.approx(1.6449, abs=1e-4)
    assert z_value(0.98) == pytest.approx(2.0537, abs=1e-4)


def test_normal_loss_table_values_and_inverse() -> None:
    # Silver, Pyke & Thomas, table of G(k): G(0) = 0.3989, G(1) = 0.0833, G(2) = 0.0085
    assert normal_loss(0.0) == pytest.approx(0.3989, abs=1e-4)
    assert normal_loss(1.0) == pytest.approx(0.0833, abs=1e-4)
    assert normal_loss(2.0) == pytest.approx(0.0085, abs=1e-4)
    for k in (-1.5, 0.0, 0.7, 2.3):
        assert normal_loss_inverse(normal_loss(k)) == pytest.approx(k, abs=1e-9)


def test_fill_rate_target_uses_the_loss_function() -> None:
    # sigma_L = 30 * sqrt(4) = 60; Q = 200; beta = 0.99 -> G(k) = 0.01 * 200 / 60 = 0.0333 -> k = 1.45
    ss = safety_stock(100, 30, lead_time=4, service_level=0.99, target="fill_rate", order_qty=200)
    k = normal_loss_inverse(0.01 * 200 / 60)
    assert ss == pytest.approx(k * 60, rel=1e-9)
    assert 1.4 < k < 1.5
    # the policy it gives achieves the fill rate it promises
    assert projected_fill_rate(ss, 60, order_qty=200) == pytest.approx(0.99, abs=1e-9)


def test_negative_fill_rate_safety_stock_is_reported_and_reorder_point_floored() -> None:
    ss = safety_stock(100, 30, lead_time=2, service_level=0.98, target="fill_rate", order_qty=1000)
    assert ss < 0  # a big order quantity meets 98 % on its own
    pol = continuous_review_sq(100, 30, lead_time=2, order_qty=1000, service_level=0.98, target="fill_rate")
    assert pol.safety_stock_raw == pytest.approx(ss)
    assert pol.safety_stock == 0.0
    assert pol.reorder_point == pytest.approx(200.0)  # mean lead-time demand, never below it
    assert pol.flags and "negative" in pol.flags[0]
    assert reorder_point(100, 30, lead_time=2, service_level=0.98, target="fill_rate",
                         order_qty=1000) == pytest.approx(200.0)


def test_periodic_review_adds_the_review_period_to_the_protection_interval() -> None:
    rs = periodic_review_rs(100, 20, lead_time=2, review_period=1, service_level=0.95)
    assert rs.protection_periods == 3
    assert rs.safety_stock == pytest.approx(1.6449 * 20 * math.sqrt(3), rel=1e-4)
    assert rs.order_up_to == pytest.approx(300 + rs.safety_stock)
    sq = continuous_review_sq(100, 20, lead_time=2, order_qty=250, service_level=0.95)
    assert sq.safety_stock < rs.safety_stock
    ss_pol = continuous_review_ss(100, 20, lead_time=2, order_qty=250, service_level=0.95)
    assert ss_pol.order_up_to == pytest.approx(ss_pol.reorder_point + 250)


# ---------------------------------------------------------------- units


def test_durations_are_converted_never_mixed() -> None:
    weekly = safety_stock(2500, 500, lead_time=2, service_level=0.9)
    assert safety_stock(2500, 500, lead_time="14 days", service_level=0.9, period="W") == pytest.approx(weekly)
    assert safety_stock(2500, 500, lead_time=Duration(14, "D"), service_level=0.9, period="W") == \
        pytest.approx(weekly)
    daily = safety_stock(2500 / 7, 500 / math.sqrt(7), lead_time=Duration(2, "W"), service_level=0.9, period="D")
    assert daily == pytest.approx(weekly)
    assert Duration(1, "M").in_unit("D") == pytest.approx(30.4375)


@pytest.mark.parametrize("lead_time", ["14 days", Duration(2, "W"), "1 month"])
def test_a_duration_with_a_unit_but_no_demand_period_is_refused(lead_time) -> None:
    with pytest.raises(InputError) as err:
        safety_stock(2500, 500, lead_time=lead_time, service_level=0.9)
    assert err.value.code == "E110"
    assert "mixed units" in err.value.one_line()
    assert err.value.problems[0].column == "lead_time"


def test_mixed_units_between_lead_time_and_its_sd_are_refused_without_a_period() -> None:
    with pytest.raises(InputError, match="sd_lead_time"):
        safety_stock(100, 10, lead_time=2, sd_lead_time="3 days", service_level=0.9)


@pytest.mark.parametrize("bad", [0, 1, 1.2, -0.1, 95, float("nan"), "high"])
def test_service_level_outside_zero_one_is_refused_clearly(bad) -> None:
    with pytest.raises(InputError) as err:
        safety_stock(100, 10, lead_time=2, service_level=bad)
    line = err.value.one_line()
    assert line.startswith("PLANCELL-E110: service_level")
    assert "0.95" in line  # says how to fix it
    if bad == 95:
        assert "did you mean 0.95" in line


def test_negative_inputs_are_refused_with_the_argument_name() -> None:
    with pytest.raises(InputError, match="sd_demand is negative"):
        safety_stock(100, -1, lead_time=2)
    with pytest.raises(InputError, match="lead_time is negative"):
        safety_stock(100, 1, lead_time=-2)
    with pytest.raises(InputError, match="order_qty is needed"):
        safety_stock(100, 1, lead_time=2, target="fill_rate")
    with pytest.raises(InputError, match="target"):
        safety_stock(100, 1, lead_time=2, target="p90")


# ---------------------------------------------------------------- properties

_pos = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)
_lt = st.floats(min_value=0.0, max_value=52, allow_nan=False)
_sl = st.floats(min_value=0.5, max_value=0.999, allow_nan=False)
_target = st.sampled_from(["csl", "fill_rate"])


def _ss(d, sd, lt, sdl, sl, target, q):
    return safety_stock(d, sd, lead_time=lt, sd_lead_time=sdl, service_level=sl, target=target, order_qty=q)


@settings(max_examples=150, deadline=None)
@given(d=_pos, sd=_pos, lt=_lt, sdl=_lt, sl=_sl, target=_target, q=_pos,
       which=st.sampled_from(["service_level", "sd", "lt", "sdl"]),
       bump=st.floats(min_value=1e-3, max_value=10, allow_nan=False))
def test_safety_stock_never_decreases_when_risk_grows(d, sd, lt, sdl, sl, target, q, which, bump) -> None:
    if target == "fill_rate":
        # With no variability at all there is nothing to buffer (0 by definition); with some,
        # a large order quantity can make the fill-rate answer negative. Monotone from there on.
        lt = max(lt, 0.01)
    base = _ss(d, sd, lt, sdl, sl, target, q)
    if which == "service_level":
        more = _ss(d, sd, lt, sdl, min(sl + bump / 20, 0.9995), target, q)
    elif which == "sd":
        more = _ss(d, sd + bump, lt, sdl, sl, target, q)
    elif which == "lt":
        more = _ss(d, sd, lt + bump, sdl, sl, target, q)
    else:
        more = _ss(d, sd, lt, sdl + bump, sl, target, q)
    assert more >= base - 1e-7 * max(1.0, abs(base))


@settings(max_examples=60, deadline=None)
@given(d=_pos, lt=_lt, sl=_sl, target=_target, q=_pos)
def test_zero_variability_needs_zero_safety_stock(d, lt, sl, target, q) -> None:
    assert _ss(d, 0.0, lt, 0.0, sl, target, q) == 0.0


@settings(max_examples=60, deadline=None)
@given(sl=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, allow_nan=False)))
def test_any_service_level_outside_the_open_interval_is_refused(sl) -> None:
    with pytest.raises(InputError):
        safety_stock(10, 1, lead_time=1, service_level=sl)


def test_vectorised_over_a_catalogue() -> None:
    ss = safety_stock(np.array([2500.0, 100.0]), np.array([500.0, 0.0]), lead_time=np.array([2.0, 3.0]),
                      service_level=np.array([0.9, 0.95]))
    assert ss[0] == pytest.approx(906.19, abs=0.01) and ss[1] == 0.0


# ---------------------------------------------------------------- order quantities and KPIs


def test_eoq_and_pack_rounding() -> None:
    # D = 1,200/yr, K = 100, h = 25 % of 24 = 6/yr -> EOQ = sqrt(2*1200*100/6) = 200
    assert economic_order_quantity(1200, 100, holding_rate=0.25, unit_cost=24) == pytest.approx(200.0)
    assert math.isnan(economic_order_quantity(1200, 100, holding_rate=0.25, unit_cost=0))
    assert round_to_pack(0, moq=50, multiple=12) == 0
    assert round_to_pack(5, moq=50, multiple=12) == 60       # MOQ first, then whole cases
    assert round_to_pack(61, moq=50, multiple=12) == 72
    assert round_to_pack(36, moq=0, multiple=12) == 36        # exact multiples stay
    assert suggested_order(500, 420, moq=0, multiple=24) == 96
    assert suggested_order(500, 600, moq=100, multiple=1) == 0  # above the level: nothing


def test_kpis() -> None:
    assert days_of_coverage(140, 10) == 14
    assert days_of_coverage(5, 0) == math.inf
    assert stockout_risk(100, 100, 10) == pytest.approx(0.5)
    assert stockout_risk(120, 100, 0) == 0.0 and stockout_risk(80, 100, 0) == 1.0
    assert expected_shortage(100, 100, 10) == pytest.approx(10 * 0.39894, rel=1e-4)

"""Future driver values the planner did not give are filled sensibly and flagged."""

from __future__ import annotations

import numpy as np

from engine.contract import validate
from engine.drivers import fill_future_regressors
from engine.features import build_panel, default_spec, regressor_stats

from .conftest import with_plan_rows


def _panel(panel, horizon=12):
    hist = panel.drivers[panel.drivers["Date"] <= panel.sales["Date"].max()]
    sales = with_plan_rows(panel).drop(columns=["Promo"])
    d = validate(sales, hist, panel.items)
    p = build_panel(d.sales, d.drivers, d.items, freq=d.freq, anchor=d.week_anchor, regressors=d.sales_regressors,
                    driver_columns=d.driver_columns, horizon=horizon)
    return p


def test_weather_follows_its_season_cpi_its_drift(weekly_panel):
    p = _panel(weekly_panel)
    spec = default_spec("W")
    stats = regressor_stats(p)
    methods = fill_future_regressors(p, stats, spec, 12)
    assert methods["Temperature"] == "seasonal"
    assert methods["CPI"] == "drift"
    h = p.n_hist
    assert p.assumed["Temperature"][:, h:].all() and not p.assumed["Temperature"][:, :h].any()
    # CPI keeps rising at last year's pace
    cpi = p.regressors["CPI"]
    yearly = (cpi[:, h - 1] - cpi[:, h - 53]) / 52
    np.testing.assert_allclose(cpi[:, h + 11] - cpi[:, h - 1], 12 * yearly, rtol=1e-3)
    # temperature in the forecast weeks is close to last year's temperature in those weeks
    temp = p.regressors["Temperature"]
    assert np.abs(temp[:, h:].mean() - temp[:, h - 52: h - 40].mean()) < 4.0


def test_planned_values_are_kept_and_not_flagged(weekly_panel):
    p = _panel(weekly_panel)
    stats = regressor_stats(p)
    before = p.regressors["Price"][:, p.n_hist:].copy()
    fill_future_regressors(p, stats, default_spec("W"), 12)
    np.testing.assert_array_equal(p.regressors["Price"][:, p.n_hist:], before)
    assert not p.assumed["Price"].any()

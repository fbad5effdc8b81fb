"""The demand model finds the true effects of the synthetic panel and is calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from engine.contract import validate
from engine.errors import InputError
from engine.model import DemandForecaster, quantile_column
from engine.synthetic import expected_demand, generate_panel

from .conftest import with_plan_rows

KEYS = ["SKU", "Location"]


def _future_mask(panel) -> pd.Series:
    return panel.drivers["Date"] > panel.sales["Date"].max()


def _by_sensitivity(panel, frame: pd.DataFrame, col: str) -> pd.Series:
    f = frame.merge(panel.truth[KEYS + ["weather_sensitive"]], on=KEYS)
    return f.groupby("weather_sensitive")[col].sum()


def test_predict_shape_dates_and_ordering(weekly_model, weekly_panel):
    fc = weekly_model.predict(12)
    n_series = weekly_panel.sales.groupby(KEYS, observed=True).ngroups
    assert len(fc) == n_series * 12
    assert list(fc.columns[:6]) == ["SKU", "Location", "Date", "P10", "P50", "P90"]
    # the next 12 weeks after the history, on the data's weekday
    last = weekly_panel.sales["Date"].max()
    assert sorted(fc["Date"].unique()) == list(pd.date_range(last, periods=13, freq="7D")[1:])
    assert (fc["P10"] <= fc["P50"]).all() and (fc["P50"] <= fc["P90"]).all()
    assert (fc["P10"] >= 0).all()


def test_beats_seasonal_naive_on_the_true_future(weekly_model, weekly_panel):
    fc = weekly_model.predict(12).merge(weekly_panel.future[KEYS + ["Date", "Qty"]], on=KEYS + ["Date"])
    model_wape = (fc["Qty"] - fc["P50"]).abs().sum() / fc["Qty"].sum()
    hist = weekly_panel.sales
    last_year = hist[hist["Date"] > hist["Date"].max() - pd.Timedelta(weeks=52)].copy()
    last_year["Date"] = last_year["Date"] + pd.Timedelta(weeks=52)
    sn = fc.merge(last_year[KEYS + ["Date", "Qty"]].rename(columns={"Qty": "sn"}), on=KEYS + ["Date"])
    sn_wape = (sn["Qty"] - sn["sn"]).abs().sum() / sn["Qty"].sum()
    assert model_wape < 0.9 * sn_wape, (model_wape, sn_wape)


def test_heatwave_raises_weather_sensitive_skus_by_roughly_the_true_effect(weekly_model, weekly_panel):
    hot = weekly_panel.drivers.copy()
    hot.loc[_future_mask(weekly_panel), "Temperature"] += 5.0
    base = weekly_model.predict(12)
    heat = weekly_model.predict(12, drivers=hot)
    model = _by_sensitivity(weekly_panel, heat, "P50") / _by_sensitivity(weekly_panel, base, "P50")
    truth = (_by_sensitivity(weekly_panel, expected_demand(weekly_panel, drivers=hot), "Demand")
             / _by_sensitivity(weekly_panel, expected_demand(weekly_panel), "Demand"))
    true_uplift = truth[True] - 1.0
    assert true_uplift > 0.2  # the generator makes the effect big enough to matter
    # within +/- 35 % of the true uplift for sensitive SKUs ...
    assert abs((model[True] - 1.0) - true_uplift) < 0.35 * true_uplift, (model, truth)
    # ... and almost nothing for the others
    assert abs(model[False] - 1.0) < 0.05, model


def test_rising_inflation_lowers_demand(weekly_model, weekly_panel):
    infl = weekly_panel.drivers.copy()
    infl.loc[_future_mask(weekly_panel), "CPI"] *= 1.03  # about +3 pp year-over-year inflation
    base = weekly_model.predict(12)["P50"].sum()
    high = weekly_model.predict(12, drivers=infl)["P50"].sum()
    true = expected_demand(weekly_panel, drivers=infl)["Demand"].sum() / expected_demand(weekly_panel)["Demand"].sum()
    assert true < 1.0
    assert high < 0.995 * base, (high / base, true)


def test_promotion_lifts_the_promoted_week_and_dips_the_next(weekly_model, weekly_panel):
    fut = weekly_panel.future.drop(columns=["Qty"]).copy()
    weeks = sorted(fut["Date"].unique())
    promo_week, next_week = weeks[4], weeks[5]
    sel = (fut["Date"] == promo_week) & (fut["Promo"] == 0)
    fut = fut.merge(weekly_panel.truth[KEYS + ["promo_discount"]], on=KEYS)
    fut["Price"] = fut["Price"].astype(float)
    fut.loc[sel, "Promo"] = 1
    fut.loc[sel, "Price"] *= 1 - fut.loc[sel, "promo_discount"]
    fut = fut.drop(columns=["promo_discount"])
    base = weekly_model.predict(12)
    promo = weekly_model.predict(12, future=fut)
    t0, t1 = expected_demand(weekly_panel), expected_demand(weekly_panel, future=fut)

    def ratio(a, b, col, week):
        return a.loc[a["Date"] == week, col].sum() / b.loc[b["Date"] == week, col].sum()

    model_lift, true_lift = ratio(promo, base, "P50", promo_week), ratio(t1, t0, "Demand", promo_week)
    assert true_lift > 1.3
    assert abs(model_lift - true_lift) < 0.35 * (true_lift - 1.0), (model_lift, true_lift)
    assert ratio(promo, base, "P50", next_week) < 0.98  # post-promo dip


def test_p10_p90_calibration_on_held_out_future(weekly_model, weekly_panel):
    fc = weekly_model.predict(12).merge(weekly_panel.future[KEYS + ["Date", "Qty"]], on=KEYS + ["Date"])
    cover = ((fc["Qty"] >= fc["P10"]) & (fc["Qty"] <= fc["P90"])).mean()
    assert 0.65 <= cover <= 0.95, cover


def test_any_quantile_on_request(weekly_model):
    fc = weekly_model.predict(4, quantiles=(0.05, 0.5, 0.95, 0.975))
    cols = [quantile_column(q) for q in (0.05, 0.5, 0.95, 0.975)]
    assert cols == ["P5", "P50", "P95", "P97.5"]
    assert all(c in fc.columns for c in cols)
    assert (fc["P5"] <= fc["P50"]).all() and (fc["P95"] <= fc["P97.5"]).all()
    assert (fc["P95"] - fc["P5"]).mean() > (weekly_model.predict(4)["P90"] - weekly_model.predict(4)["P10"]).mean()


@pytest.mark.parametrize("bad", [(0.0, 0.5), (0.5, 1.0), (95,)])
def test_invalid_quantiles_are_refused(weekly_model, bad):
    with pytest.raises(InputError) as e:
        weekly_model.predict(4, quantiles=bad)
    assert "between 0 and 1" in e.value.one_line()


def test_missing_future_drivers_are_assumed_and_flagged(weekly_panel):
    hist_drivers = weekly_panel.drivers[~_future_mask(weekly_panel)]
    data = validate(with_plan_rows(weekly_panel), hist_drivers, weekly_panel.items)
    model = DemandForecaster(n_estimators=50, horizon=6).fit(data)
    fc = model.predict(6)
    assert fc["assumed"].str.contains("Temperature").all()
    assert fc["assumed"].str.contains("CPI").all()
    assert not fc["assumed"].str.contains("Promo").any()  # planned in the Sales plan rows


def test_same_seed_gives_identical_forecasts(weekly_data):
    a = DemandForecaster(n_estimators=40, horizon=4, random_state=3).fit(weekly_data).predict(4)
    b = DemandForecaster(n_estimators=40, horizon=4, random_state=3).fit(weekly_data).predict(4)
    pd.testing.assert_frame_equal(a, b)


def test_sklearn_conventions(weekly_data):
    m = DemandForecaster(n_estimators=10, num_leaves=15)
    assert m.get_params()["num_leaves"] == 15
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "boosters_")
    assert m.fit(weekly_data) is m
    with pytest.raises(InputError):
        DemandForecaster().predict(3)


def test_direct_strategy_forecasts_every_step():
    p = generate_panel("MS", n_skus=8, n_locations=1, seed=2)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    fc = DemandForecaster(strategy="direct", n_estimators=30, horizon=6).fit(data).predict(6)
    assert fc.groupby(KEYS).size().eq(6).all()
    assert np.isfinite(fc[["P10", "P50", "P90"]].to_numpy()).all()


def test_daily_model_forecasts_weekday_pattern():
    p = generate_panel("D", n_skus=6, n_locations=1, periods=500, horizon=14, seed=4)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    fc = DemandForecaster(n_estimators=80, horizon=14).fit(data).predict(14)
    by_dow = fc.groupby(fc["Date"].dt.dayofweek)["P50"].sum()
    true = expected_demand(p)
    true_dow = true.groupby(true["Date"].dt.dayofweek)["Demand"].sum()
    # the model's weekday profile follows the true one
    assert np.corrcoef(by_dow, true_dow)[0, 1] > 0.8


def test_longer_horizon_than_trained_is_a_clear_error(weekly_model):
    with pytest.raises(InputError) as e:
        weekly_model.predict(13)
    assert e.value.code == "E110" and "Horizon" in e.value.report()


def test_cli_and_engine_share_default_horizons():
    from addin.cli import DEFAULT_HORIZON as CLI_DEFAULT
    from engine.model import DEFAULT_HORIZON

    assert CLI_DEFAULT == DEFAULT_HORIZON


def test_a_driver_that_only_starts_moving_late_does_not_break_training(weekly_panel):
    # Walmart's markdowns are 0 until late 2011: the calibration fit, which sees a shorter
    # history, must keep the full fit's feature layout instead of calling them a flag.
    drivers = weekly_panel.drivers.copy()
    dates = np.sort(drivers["Date"].unique())
    start = dates[-20]
    rng = np.random.default_rng(0)
    drivers["MarkDown"] = np.where(drivers["Date"] >= start, rng.uniform(0, 5000, len(drivers)), 0.0)
    data = validate(with_plan_rows(weekly_panel), drivers, weekly_panel.items)
    model = DemandForecaster(horizon=8, n_estimators=30, random_state=0).fit(data)
    out = model.predict(8)
    assert np.isfinite(out["P50"]).all()
    assert any("MarkDown" in f for f in model.feature_names_)


def test_driver_contributions_add_up_to_the_forecast_and_show_the_promo(weekly_model, weekly_panel):
    c = weekly_model.contributions(12)
    total = c.groupby(["SKU", "Location", "Date"])["contribution"].sum().reset_index()
    m = total.merge(weekly_model.predict(12), on=["SKU", "Location", "Date"])
    np.testing.assert_allclose(m["contribution"], m["point"], rtol=1e-6, atol=1e-6)
    assert {"Temperature", "Promo", "Price", "Average level", "Holidays"} <= set(c["driver"])
    # promoted future weeks: the Promo group pushes the forecast up
    fut = weekly_panel.future
    promo = c[c["driver"] == "Promo"].merge(fut[["SKU", "Location", "Date", "Promo"]],
                                           on=["SKU", "Location", "Date"])
    assert promo.loc[promo["Promo"] == 1, "contribution"].mean() > 0
    assert promo.loc[promo["Promo"] == 1, "contribution"].mean() > promo.loc[promo["Promo"] == 0,
                                                                            "contribution"].mean()


def test_a_small_min_data_in_leaf_trains() -> None:
    """LightGBM refuses a min_data_in_leaf below the Dataset's pre-filter unless the Dataset
    keeps every feature: a planner's tuning must not end in a LightGBMError."""
    from engine.contract import validate
    from engine.synthetic import generate_panel

    p = generate_panel("W", n_skus=3, n_locations=1, periods=60, seed=2)
    data = validate(p.sales, p.drivers, p.items)
    fc = DemandForecaster(horizon=4, n_estimators=10, min_data_in_leaf=5).fit(data).predict(4)
    assert len(fc) == 3 * 4 and fc["P50"].notna().all()


def test_fitting_by_blocks_of_series_changes_no_forecast(weekly_data, monkeypatch):
    """The fit builds scaled histories, sums and feature rows block by block of series (memory):
    blocks of a few series, and LightGBM batches that cut through series, give the same model."""
    import engine.features as F
    import engine.model as M

    def fit() -> pd.DataFrame:
        return DemandForecaster(n_estimators=30, horizon=4, random_state=1).fit(weekly_data).predict(4)

    whole = fit()
    blocks = lambda n, width, cells=0: [(a, min(a + 5, n)) for a in range(0, n, 5)]  # noqa: E731
    monkeypatch.setattr(F, "_row_blocks", blocks)
    monkeypatch.setattr(M, "_row_blocks", blocks)
    monkeypatch.setattr(M, "_BATCH_ROWS", 997)
    pd.testing.assert_frame_equal(fit(), whole)


def test_calibration_window_shares_the_panel_drivers_and_never_changes_them(weekly_panel):
    from engine.drivers import fill_future_regressors
    from engine.features import build_panel, default_spec, regressor_stats
    from engine.model import _truncate

    hist_drivers = weekly_panel.drivers[~_future_mask(weekly_panel)]
    data = validate(with_plan_rows(weekly_panel), hist_drivers, weekly_panel.items)
    panel = build_panel(data.sales, data.drivers, data.items, freq=data.freq, anchor=data.week_anchor,
                        regressors=data.sales_regressors, driver_columns=data.driver_columns, horizon=6)
    before = {k: v.copy() for k, v in panel.regressors.items()}
    window = _truncate(panel, panel.n_hist)  # the same history; shares the driver matrices
    assert all(window.regressors[k] is panel.regressors[k] for k in before)
    methods = fill_future_regressors(window, regressor_stats(window), default_spec(panel.freq), 6)
    assert "Temperature" in methods
    assert not np.isnan(window.regressors["Temperature"][:, panel.n_hist:]).any()
    for k, m in before.items():
        np.testing.assert_array_equal(panel.regressors[k], m)

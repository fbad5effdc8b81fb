"""Rolling-origin backtest: honest cut-offs, baselines always scored, the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.backtest import backtest, gate
from engine.contract import validate
from engine.errors import InputError
from engine.synthetic import generate_panel

from .conftest import with_plan_rows

PARAMS = {"n_estimators": 60}


@pytest.fixture(scope="module")
def small():
    p = generate_panel("W", n_skus=8, n_locations=2, seed=11)
    return p, validate(p.sales, p.drivers, p.items)


@pytest.fixture(scope="module")
def result(small):
    return backtest(small[1], horizon=8, windows=3, model_params=PARAMS)


def test_windows_cutoffs_and_rows(small, result):
    p, _ = small
    last = p.sales["Date"].max()
    assert result.cutoffs == [last - pd.Timedelta(weeks=8 * k) for k in (3, 2, 1)]
    f = result.forecasts
    assert set(f["window"]) == {1, 2, 3}
    for w, cut in zip((1, 2, 3), result.cutoffs):
        dates = f.loc[f["window"] == w, "Date"]
        assert dates.min() == cut + pd.Timedelta(weeks=1) and dates.max() == cut + pd.Timedelta(weeks=8)
    for col in ("y", "P10", "P50", "P90", "sn_P50", "ma_P50"):
        assert f[col].notna().all(), col


def test_overall_has_model_and_baselines(result):
    o = result.overall
    for method in ("model", "seasonal_naive", "moving_average"):
        assert set(o[method]) >= {"wape", "mase", "bias", "pinball"}
    assert 0 <= o["coverage_p10_p90"] <= 1
    cal = o["calibration"]
    assert list(cal) == ["P10", "P50", "P90"] and cal["P10"] < cal["P50"] < cal["P90"]
    assert 0.0 < cal["P10"] < 0.3 and 0.7 < cal["P90"] < 1.0
    assert o["windows"] == 3 and o["horizon"] == 8 and o["n_series"] == 16
    assert o["model"]["wape"] < o["seasonal_naive"]["wape"]


def test_no_leakage_from_after_the_cutoff(small, result):
    p, data = small
    first_cut = result.cutoffs[0]
    sales = data.sales.copy()
    later = sales["Date"] > first_cut + pd.Timedelta(weeks=8)
    sales.loc[later, "Qty"] = sales.loc[later, "Qty"] * 10  # rewrite the future beyond window 1
    changed = validate(sales, p.drivers, p.items)
    again = backtest(changed, horizon=8, windows=3, model_params=PARAMS)
    w1 = lambda r: r.forecasts[r.forecasts["window"] == 1].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(w1(result)[["P10", "P50", "P90", "y"]], w1(again)[["P10", "P50", "P90", "y"]])
    assert not w1(result)[["P50"]].equals(again.forecasts[again.forecasts["window"] == 3][["P50"]].reset_index(drop=True))


def test_per_series_gate_is_explained(result):
    per = result.per_series
    assert set(per["model_used"]) <= {"lightgbm", "seasonal_naive"}
    assert per["reason"].str.startswith("backtest:").all()
    chosen_base = per["model_used"] != "lightgbm"
    assert (per.loc[chosen_base, "abs_error"] > per.loc[chosen_base, "sn_abs_error"]).all()
    assert (per.loc[~chosen_base, "abs_error"] <= per.loc[~chosen_base, "sn_abs_error"]).all()


def test_gate_falls_back_to_the_better_baseline_and_says_why():
    per = pd.DataFrame({
        "SKU": ["a", "b", "c"], "Location": "",
        "abs_error": [10.0, 50.0, 30.0], "sn_abs_error": [20.0, 40.0, 35.0], "ma_abs_error": [25.0, 45.0, 20.0],
        "wape": [0.1, 0.5, 0.3], "sn_wape": [0.2, 0.4, 0.35], "ma_wape": [0.25, 0.45, 0.2],
    })
    g = gate(per)  # default: seasonal naive is the baseline
    assert list(g["model_used"]) == ["lightgbm", "seasonal_naive", "lightgbm"]
    assert "seasonal naive beat the model (WAPE 40.0% vs 50.0%)" in g["reason"][1]
    both = gate(per, baselines=("seasonal_naive", "moving_average"))
    assert list(both["model_used"]) == ["lightgbm", "seasonal_naive", "moving_average"]


def test_too_short_history_is_a_clear_error():
    p = generate_panel("W", n_skus=2, n_locations=1, periods=20, horizon=4, seed=1)
    data = validate(p.sales, p.drivers, p.items)
    with pytest.raises(InputError) as e:
        backtest(data, horizon=8, windows=3, model_params=PARAMS)
    assert e.value.code == "E109"
    assert "--windows" in e.value.report()

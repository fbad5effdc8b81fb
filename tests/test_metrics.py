"""Accuracy metrics: hand-computed examples, then evaluate() against the scalar metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.metrics import (
    bias,
    coverage,
    evaluate,
    mase,
    pinball,
    scaled_pinball,
    seasonal_scale,
    seasonal_scales,
    wape,
)


# --- scalar metrics ---------------------------------------------------------------------

def test_wape_hand_computed() -> None:
    # |err| = 2 + 5 + 1 + 0 = 8 over volume 40
    assert wape([10, 20, 0, 10], [12, 15, 1, 10]) == pytest.approx(0.2)


def test_wape_skips_missing_pairs() -> None:
    assert wape([10, np.nan, 10], [12, 99, 8]) == pytest.approx(4 / 20)


def test_wape_and_bias_are_nan_without_volume_and_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(wape([0, 0, 0], [1, 2, 0]))
        assert np.isnan(bias([0, 0], [1, 1]))
        assert np.isnan(wape([], []))


def test_bias_is_positive_for_over_forecast() -> None:
    assert bias([10, 10], [12, 13]) == pytest.approx(0.25)
    assert bias([10, 10], [8, 7]) == pytest.approx(-0.25)


def test_seasonal_scale_uses_the_season() -> None:
    # lag-4 differences: |3-1|, |2-2|, |5-3|, |4-4| -> mean 1.0 (lag 1 would give 1.43)
    assert seasonal_scale(np.array([1, 2, 3, 4, 3, 2, 5, 4.0]), 4) == pytest.approx(1.0)


def test_seasonal_scale_short_flat_and_tiny_histories() -> None:
    # 3 points < m + 1: falls back to lag 1 -> mean(2, 1)
    assert seasonal_scale(np.array([1.0, 3.0, 2.0]), 4) == pytest.approx(1.5)
    assert np.isnan(seasonal_scale(np.array([5.0]), 7))
    assert np.isnan(seasonal_scale(np.array([]), 7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(seasonal_scale(np.full(20, 3.0), 7))  # flat: nan, not inf downstream


def test_seasonal_scale_rejects_bad_season() -> None:
    with pytest.raises(InputError) as exc:
        seasonal_scale(np.arange(10.0), 0)
    assert exc.value.code == "E110"


def test_mase_hand_computed() -> None:
    assert mase([5, 7], [4, 9], 1.0) == pytest.approx(1.5)
    assert mase([5, 7], [4, 9], 2.0) == pytest.approx(0.75)


def test_mase_with_seasonal_scale() -> None:
    history = np.array([1, 2, 3, 4, 3, 2, 5, 4.0])  # season-4 scale 1.0, lag-1 scale 10/7
    scale = seasonal_scale(history, 4)
    assert mase([3, 4], [5, 4], scale) == pytest.approx(1.0)


def test_mase_is_nan_for_unusable_scale() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(mase([1, 2], [1, 3], 0.0))
        assert np.isnan(mase([1, 2], [1, 3], float("nan")))


def test_pinball_is_asymmetric() -> None:
    # under-forecast by 2 (y=10, p=8): expensive for P90, cheap for P10
    assert pinball([10], [8], 0.9) == pytest.approx(1.8)
    assert pinball([10], [8], 0.1) == pytest.approx(0.2)
    # over-forecast by 2: the other way round
    assert pinball([10], [12], 0.9) == pytest.approx(0.2)
    assert pinball([10], [12], 0.1) == pytest.approx(1.8)
    # median: half the absolute error
    assert pinball([10, 10], [8, 13], 0.5) == pytest.approx(1.25)


def test_pinball_rejects_levels_outside_0_1() -> None:
    with pytest.raises(InputError):
        pinball([1], [1], 1.5)


def test_scaled_pinball() -> None:
    assert scaled_pinball([10], [8], 0.9, 2.0) == pytest.approx(0.9)
    assert np.isnan(scaled_pinball([10], [8], 0.9, 0.0))


def test_coverage_counts_bounds_as_inside() -> None:
    # 1 in [0,2]; 5 on the lower bound; 10 above; 3 below
    assert coverage([1, 5, 10, 3], [0, 5, 0, 4], [2, 6, 9, 8]) == pytest.approx(0.5)


def test_mismatched_lengths_are_an_input_error() -> None:
    with pytest.raises(InputError):
        wape([1, 2, 3], [1, 2])


# --- seasonal_scales --------------------------------------------------------------------

def _ragged_history(rng: np.random.Generator, n_series: int = 12) -> pd.DataFrame:
    frames = []
    for i in range(n_series):
        n = int(rng.integers(1, 25))
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 10)))
        qty = rng.poisson(4, n).astype(float)
        if i == 0:
            qty[:] = 3.0  # flat
        frames.append(pd.DataFrame({
            "SKU": f"S{i % 5}", "Location": f"L{i // 5}",
            "Date": pd.date_range(start, periods=n, freq="D"), "Qty": qty,
        }))
    return pd.concat(frames, ignore_index=True)


def test_seasonal_scales_match_the_single_series_scale() -> None:
    rng = np.random.default_rng(3)
    hist = _ragged_history(rng)
    shuffled = hist.sample(frac=1.0, random_state=1)  # row order must not matter
    got = seasonal_scales(shuffled, 7)
    assert list(got.columns) == ["SKU", "Location", "scale"]
    assert len(got) == hist.groupby(["SKU", "Location"]).ngroups
    for (sku, loc), g in hist.groupby(["SKU", "Location"]):
        expected = seasonal_scale(g.sort_values("Date")["Qty"].to_numpy(), 7)
        row = got[(got["SKU"] == sku) & (got["Location"] == loc)]["scale"].iloc[0]
        if np.isnan(expected):
            assert np.isnan(row)
        else:
            assert row == pytest.approx(expected)


# --- evaluate ---------------------------------------------------------------------------

@pytest.fixture()
def forecasts() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.DataFrame({
        "SKU":    ["A", "A", "B", "B", "C", "C"],
        "Location": ["", "", "", "", "", ""],
        "window": [1, 2, 1, 2, 1, 2],
        "y":      [10, 20, 0, 0, 5, 5],
        "P10":    [8, 15, 0, 0, 4, 6],
        "P50":    [12, 18, 1, 0, 5, 6],
        "P90":    [14, 25, 2, 1, 6, 7],
    })
    scales = pd.DataFrame({"SKU": ["A", "B", "C"], "Location": ["", "", ""],
                           "scale": [2.0, 0.25, np.nan]})
    return df, scales


def test_evaluate_overall_known_numbers(forecasts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, scales = forecasts
    res = evaluate(df, scales=scales)
    assert len(res) == 1
    r = res.iloc[0]
    assert r["wape"] == pytest.approx(6 / 40)
    assert r["bias"] == pytest.approx(2 / 40)
    # per-series MASE: A 2/2 = 1, B 0.5/0.25 = 2, C has no usable scale and is left out
    assert r["mase"] == pytest.approx(1.5)
    # mean pinball per quantile: P10 1.7/6, P50 3/6, P90 1.5/6
    assert r["pinball_mean"] == pytest.approx((1.7 / 6 + 0.5 + 0.25) / 3)
    assert r["coverage_p10_p90"] == pytest.approx(5 / 6)  # C's second actual is below P10
    assert r["n"] == 6
    assert r["sum_actual"] == pytest.approx(40)


def test_evaluate_per_series(forecasts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, scales = forecasts
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # B has no volume: nan WAPE, no warning spam
        res = evaluate(df, by=["SKU", "Location"], scales=scales)
    res = res.set_index("SKU")
    assert list(res.index) == ["A", "B", "C"]
    assert res.loc["A", "wape"] == pytest.approx(4 / 30)
    assert res.loc["A", "bias"] == pytest.approx(0.0)
    assert res.loc["A", "mase"] == pytest.approx(1.0)
    assert res.loc["A", "pinball_mean"] == pytest.approx((0.35 + 1.0 + 0.45) / 3)
    assert np.isnan(res.loc["B", "wape"]) and np.isnan(res.loc["B", "bias"])
    assert res.loc["B", "mase"] == pytest.approx(2.0)
    assert res.loc["C", "wape"] == pytest.approx(0.1)
    assert res.loc["C", "bias"] == pytest.approx(0.1)
    assert np.isnan(res.loc["C", "mase"])
    assert res.loc["C", "coverage_p10_p90"] == pytest.approx(0.5)
    assert res["n"].tolist() == [2, 2, 2]


def test_evaluate_per_window(forecasts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, scales = forecasts
    res = evaluate(df, by=["window"], scales=scales).set_index("window")
    assert res.loc[1, "wape"] == pytest.approx(3 / 15)
    assert res.loc[2, "wape"] == pytest.approx(3 / 25)
    assert res.loc[1, "mase"] == pytest.approx((1.0 + 4.0) / 2)
    assert res.loc[2, "mase"] == pytest.approx((1.0 + 0.0) / 2)


def test_evaluate_mase_averages_series_not_rows() -> None:
    # A: 4 rows with error 1, B: 1 row with error 3, both scale 1.
    df = pd.DataFrame({"SKU": ["A"] * 4 + ["B"], "y": [1.0] * 5, "P50": [2, 2, 2, 2, 4.0]})
    scales = pd.DataFrame({"SKU": ["A", "B"], "scale": [1.0, 1.0]})
    res = evaluate(df, scales=scales, quantile_cols={})
    assert res.loc[0, "mase"] == pytest.approx(2.0)  # rows pooled would give 1.4


def test_evaluate_quantile_columns_explicit_auto_and_none(
        forecasts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, _ = forecasts
    auto = evaluate(df)
    explicit = evaluate(df, quantile_cols={0.1: "P10", 0.5: "P50", 0.9: "P90"})
    assert auto["pinball_mean"].iloc[0] == pytest.approx(explicit["pinball_mean"].iloc[0])
    only_tails = evaluate(df, quantile_cols={0.1: "P10", 0.9: "P90"})
    assert only_tails["pinball_mean"].iloc[0] == pytest.approx((1.7 / 6 + 0.25) / 2)
    none = evaluate(df, quantile_cols={})
    assert np.isnan(none["pinball_mean"].iloc[0])
    assert "coverage_p10_p90" not in none.columns
    assert np.isnan(none["mase"].iloc[0])  # no scales given


def test_evaluate_other_point_column_and_missing_actuals() -> None:
    df = pd.DataFrame({"y": [10.0, np.nan, 10.0], "point": [12.0, 5.0, 9.0]})
    res = evaluate(df, point="point", quantile_cols={})
    assert res.loc[0, "wape"] == pytest.approx(3 / 20)
    assert res.loc[0, "n"] == 2


def test_evaluate_lists_every_missing_column(forecasts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, _ = forecasts
    with pytest.raises(InputError) as exc:
        evaluate(df.drop(columns=["y"]), by=["Region"], quantile_cols={0.1: "P10"})
    assert {p.column for p in exc.value.problems} == {"y", "Region"}
    assert exc.value.code == "E101"


def test_evaluate_empty_frame_gives_one_nan_row() -> None:
    df = pd.DataFrame({"y": pd.Series([], dtype=float), "P50": pd.Series([], dtype=float)})
    res = evaluate(df)
    assert len(res) == 1 and res.loc[0, "n"] == 0 and np.isnan(res.loc[0, "wape"])


def test_evaluate_agrees_with_scalar_metrics_on_random_data() -> None:
    rng = np.random.default_rng(7)
    hist = _ragged_history(rng, n_series=20)
    scales = seasonal_scales(hist, 7)
    keys = scales[["SKU", "Location"]]
    rows = keys.loc[keys.index.repeat(6)].reset_index(drop=True)
    rows["y"] = rng.poisson(3, len(rows)).astype(float)
    rows["P50"] = rows["y"] + rng.normal(0, 2, len(rows))
    rows["P10"] = rows["P50"] - 2
    rows["P90"] = rows["P50"] + 2
    per = evaluate(rows, by=["SKU", "Location"], scales=scales)
    expected_mase = []
    for (sku, loc), g in rows.groupby(["SKU", "Location"]):
        r = per[(per["SKU"] == sku) & (per["Location"] == loc)].iloc[0]
        s = scales[(scales["SKU"] == sku) & (scales["Location"] == loc)]["scale"].iloc[0]
        np.testing.assert_allclose(r["wape"], wape(g["y"], g["P50"]))
        np.testing.assert_allclose(r["bias"], bias(g["y"], g["P50"]))
        np.testing.assert_allclose(r["mase"], mase(g["y"], g["P50"], s))
        np.testing.assert_allclose(r["coverage_p10_p90"], coverage(g["y"], g["P10"], g["P90"]))
        np.testing.assert_allclose(
            r["pinball_mean"],
            np.mean([pinball(g["y"], g[c], q) for q, c in ((0.1, "P10"), (0.5, "P50"), (0.9, "P90"))]))
        expected_mase.append(mase(g["y"], g["P50"], s))
    overall = evaluate(rows, scales=scales).iloc[0]
    assert overall["mase"] == pytest.approx(np.nanmean(expected_mase))
    assert overall["wape"] == pytest.approx(wape(rows["y"], rows["P50"]))

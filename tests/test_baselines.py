"""Baseline forecasters: known values, fallbacks, quantile order, date grids, and a
per-series reference implementation to check the vectorised matrix code against."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.baselines import moving_average, quantile_column, seasonal_naive
from engine.errors import InputError


def _series(sku: str, start: str, qty: list[float] | np.ndarray, freq: str = "D",
            location: str = "") -> pd.DataFrame:
    return pd.DataFrame({"SKU": sku, "Location": location,
                         "Date": pd.date_range(start, periods=len(qty), freq=freq),
                         "Qty": np.asarray(qty, dtype=float)})


WEEK = [3.0, 5.0, 4.0, 6.0, 9.0, 12.0, 1.0]


def test_seasonal_naive_reproduces_a_perfect_weekly_pattern() -> None:
    hist = _series("A", "2024-01-01", WEEK * 5)  # 35 days, Mon..Sun
    out = seasonal_naive(hist, 14, season=7, freq="D")
    assert list(out.columns) == ["SKU", "Location", "Date", "P10", "P50", "P90", "point"]
    assert out["point"].tolist() == WEEK * 2
    # errors y_t - y_{t-7} are all zero, so the interval collapses onto the pattern
    for c in ("P10", "P50", "P90"):
        assert out[c].tolist() == WEEK * 2
    assert out["Date"].tolist() == list(pd.date_range("2024-02-05", periods=14, freq="D"))


def test_seasonal_naive_uses_each_series_own_last_date() -> None:
    a = _series("A", "2024-01-01", WEEK * 3)           # ends 2024-01-21
    b = _series("B", "2024-01-08", WEEK * 2, location="X")[:-2]  # new SKU, ends 2024-01-19
    out = seasonal_naive(pd.concat([b, a], ignore_index=True), 3, season=7, freq="D")
    a_out = out[out["SKU"] == "A"]
    b_out = out[out["SKU"] == "B"]
    assert a_out["Date"].min() == pd.Timestamp("2024-01-22")
    assert b_out["Date"].min() == pd.Timestamp("2024-01-20")
    assert b_out["Location"].tolist() == ["X"] * 3
    # B's last 7 days are WEEK shifted: its next 3 days repeat days 8..10 of its history
    assert b_out["point"].tolist() == [WEEK[5], WEEK[6], WEEK[0]]


def test_seasonal_naive_short_series_falls_back_to_last_value() -> None:
    hist = pd.concat([_series("NEW", "2024-03-01", [4.0, 8.0, 6.0]),
                      _series("OLD", "2024-01-01", WEEK * 9)], ignore_index=True)
    out = seasonal_naive(hist, 10, season=7, freq="D")
    new = out[out["SKU"] == "NEW"]
    assert new["point"].tolist() == [6.0] * 10
    # one-step errors +4, -2: P10 = 6 - 1.4, P90 = 6 + 3.4
    assert new["P10"].iloc[0] == pytest.approx(4.6)
    assert new["P90"].iloc[0] == pytest.approx(9.4)
    assert out[out["SKU"] == "OLD"]["point"].tolist() == WEEK + WEEK[:3]


def test_single_observation_series_has_a_flat_interval() -> None:
    out = seasonal_naive(_series("A", "2024-01-01", [5.0]), 2, season=7, freq="D")
    assert out["P10"].tolist() == out["P90"].tolist() == out["point"].tolist() == [5.0, 5.0]


def test_seasonal_naive_quantiles_from_seasonal_errors() -> None:
    # season 2; errors y_t - y_{t-2}: 1, -1, 3, -3, 0 -> sorted -3 -1 0 1 3
    hist = _series("A", "2024-01-01", [10, 20, 11, 19, 14, 16, 14])
    out = seasonal_naive(hist, 2, season=2, freq="D")
    assert out["point"].tolist() == [16.0, 14.0]
    assert out["P10"].tolist() == pytest.approx([16 - 2.2, 14 - 2.2])
    assert out["P50"].tolist() == pytest.approx([16.0, 14.0])
    assert out["P90"].tolist() == pytest.approx([16 + 2.2, 14 + 2.2])


def test_moving_average_value_and_interval() -> None:
    hist = _series("A", "2024-01-01", [5, 1, 5, 1, 5, 1])
    out = moving_average(hist, 4, window=2, freq="D")
    assert out["point"].tolist() == [3.0] * 4
    # one-step errors against the mean of the previous 2: +2, -2, +2, -2
    assert out["P10"].tolist() == pytest.approx([1.0] * 4)
    assert out["P50"].tolist() == pytest.approx([3.0] * 4)
    assert out["P90"].tolist() == pytest.approx([5.0] * 4)


def test_moving_average_uses_the_last_window_only_and_short_series_use_all() -> None:
    hist = pd.concat([_series("A", "2024-01-01", [100, 2, 4, 6]),
                      _series("B", "2024-01-01", [1, 2])], ignore_index=True)
    out = moving_average(hist, 1, window=3, freq="D").set_index("SKU")
    assert out.loc["A", "point"] == pytest.approx(4.0)
    assert out.loc["B", "point"] == pytest.approx(1.5)


def test_non_negative_series_are_clipped_at_zero_and_returns_are_not() -> None:
    spiky = [0, 0, 0, 50, 0, 0, 0, 0]
    returns = [-5, 3, -4, 2, -6, 1, -3, 2]
    hist = pd.concat([_series("S", "2024-01-01", spiky), _series("R", "2024-01-01", returns)],
                     ignore_index=True)
    for out in (seasonal_naive(hist, 4, season=2, freq="D"), moving_average(hist, 4, window=3, freq="D")):
        s = out[out["SKU"] == "S"]
        r = out[out["SKU"] == "R"]
        assert (s[["P10", "P50", "P90"]] >= 0).all().all()
        assert (r["P10"] < 0).any()


@pytest.mark.parametrize("method", ["seasonal_naive", "moving_average"])
def test_quantile_columns_are_ordered(method: str) -> None:
    rng = np.random.default_rng(11)
    hist = pd.concat(
        [_series(f"S{i}", "2024-01-01", rng.normal(5, 4, int(rng.integers(1, 40)))) for i in range(30)],
        ignore_index=True)
    if method == "seasonal_naive":
        out = seasonal_naive(hist, 9, season=7, freq="D", quantiles=(0.9, 0.05, 0.5, 0.1))
    else:
        out = moving_average(hist, 9, window=5, freq="D", quantiles=(0.9, 0.05, 0.5, 0.1))
    assert [c for c in out.columns if c.startswith("P")] == ["P5", "P10", "P50", "P90"]
    assert (out["P5"] <= out["P10"]).all()
    assert (out["P10"] <= out["P50"]).all()
    assert (out["P50"] <= out["P90"]).all()
    assert (out["P10"] < out["P90"]).any()


@pytest.mark.parametrize(
    ("freq", "start", "pandas_freq", "anchor"),
    [
        ("D", "2024-02-27", "D", None),
        ("W", "2024-01-05", "W-FRI", None),   # Friday weeks stay Fridays
        ("W", "2024-01-05", "W-FRI", 4),
        ("MS", "2023-01-01", "MS", None),
    ],
)
def test_output_dates_are_the_next_periods_on_the_grid(freq: str, start: str, pandas_freq: str,
                                                       anchor: int | None) -> None:
    hist = _series("A", start, np.arange(1.0, 15.0), freq=pandas_freq)
    horizon = 5
    expected = list(pd.date_range(hist["Date"].iloc[-1], periods=horizon + 1, freq=pandas_freq)[1:])
    for out in (seasonal_naive(hist, horizon, season=4, freq=freq, anchor=anchor),
                moving_average(hist, horizon, window=3, freq=freq, anchor=anchor)):
        assert out["Date"].tolist() == expected


def test_february_and_year_end_on_monthly_grid() -> None:
    hist = _series("A", "2024-09-01", [1.0, 2.0, 3.0, 4.0], freq="MS")
    out = seasonal_naive(hist, 3, season=12, freq="MS")
    assert out["Date"].tolist() == [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-02-01"),
                                    pd.Timestamp("2025-03-01")]
    assert out["point"].tolist() == [4.0] * 3  # shorter than a season: naive


def test_custom_column_names() -> None:
    hist = _series("A", "2024-01-01", WEEK * 2).rename(
        columns={"SKU": "item", "Location": "store", "Date": "day", "Qty": "units"})
    out = seasonal_naive(hist, 2, season=7, freq="D", keys=("item", "store"), date_col="day",
                         target="units")
    assert list(out.columns)[:3] == ["item", "store", "day"]
    assert out["point"].tolist() == WEEK[:2]


def test_empty_history_gives_an_empty_frame_with_the_columns() -> None:
    empty = _series("A", "2024-01-01", []).astype({"Qty": float})
    out = moving_average(empty, 3, window=2, freq="D")
    assert out.empty
    assert list(out.columns) == ["SKU", "Location", "Date", "P10", "P50", "P90", "point"]


def test_duplicate_rows_are_reported_with_row_numbers() -> None:
    hist = _series("A", "2024-01-01", [1.0, 2.0, 3.0])
    hist = pd.concat([hist, hist.iloc[[1]]], ignore_index=True)
    with pytest.raises(InputError) as exc:
        seasonal_naive(hist, 2, season=7, freq="D")
    assert exc.value.code == "E103"
    assert [p.row for p in exc.value.problems] == [5]  # 4th data row, header is row 1


def test_bad_arguments_are_input_errors() -> None:
    hist = _series("A", "2024-01-01", [1.0, 2.0, 3.0])
    with pytest.raises(InputError) as exc:
        seasonal_naive(hist, 0, season=7, freq="D")
    assert exc.value.code == "E110"
    with pytest.raises(InputError):
        moving_average(hist, 3, window=0, freq="D")
    with pytest.raises(InputError):
        seasonal_naive(hist, 3, season=7, freq="D", quantiles=(0.1, 1.2))
    with pytest.raises(InputError) as exc:
        seasonal_naive(hist.drop(columns=["Qty", "Location"]), 3, season=7, freq="D")
    assert {p.column for p in exc.value.problems} == {"Qty", "Location"}


def test_quantile_column_names() -> None:
    assert [quantile_column(q) for q in (0.1, 0.5, 0.9, 0.05, 0.95)] == ["P10", "P50", "P90", "P5", "P95"]


# --- reference implementation, one series at a time ---------------------------------------

def _ref_seasonal_naive(y: np.ndarray, horizon: int, season: int,
                        qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    if n < season:
        point = np.full(horizon, y[-1])
    else:
        point = np.array([y[n - 1 + h - season * math.ceil(h / season)] for h in range(1, horizon + 1)])
    resid = y[season:] - y[:-season] if n > season else np.diff(y)
    spread = np.quantile(resid, qs) if len(resid) else np.zeros(len(qs))
    bands = point[:, None] + spread[None, :]
    return point, np.maximum(bands, 0) if y.min() >= 0 else bands


def _ref_moving_average(y: np.ndarray, horizon: int, window: int,
                        qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    point = np.full(horizon, y[-window:].mean())
    need = window if len(y) > window else 1
    resid = np.array([y[t] - y[max(0, t - window):t].mean()
                      for t in range(len(y)) if min(t, window) >= need])
    spread = np.quantile(resid, qs) if len(resid) else np.zeros(len(qs))
    bands = point[:, None] + spread[None, :]
    return point, np.maximum(bands, 0) if y.min() >= 0 else bands


@pytest.mark.parametrize("method", ["seasonal_naive", "moving_average"])
def test_matches_a_per_series_reference(method: str) -> None:
    rng = np.random.default_rng(5)
    frames, ys = [], {}
    end = pd.Timestamp("2024-06-30")
    for i in range(25):
        n = int(rng.integers(1, 30))
        y = rng.poisson(6, n).astype(float) - (8 if i % 4 == 0 else 0)
        last = end - pd.Timedelta(days=int(rng.integers(0, 3)))
        frames.append(_series(f"S{i:02d}", str((last - pd.Timedelta(days=n - 1)).date()), y))
        ys[f"S{i:02d}"] = y
    hist = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=2)
    qs = (0.1, 0.5, 0.9)
    horizon = 10
    if method == "seasonal_naive":
        out = seasonal_naive(hist, horizon, season=7, freq="D", quantiles=qs)
    else:
        out = moving_average(hist, horizon, window=4, freq="D", quantiles=qs)
    assert out["SKU"].tolist() == sorted(out["SKU"].tolist())
    for sku, y in ys.items():
        got = out[out["SKU"] == sku]
        if method == "seasonal_naive":
            point, bands = _ref_seasonal_naive(y, horizon, 7, qs)
        else:
            point, bands = _ref_moving_average(y, horizon, 4, qs)
        np.testing.assert_allclose(got["point"].to_numpy(), point, err_msg=sku)
        np.testing.assert_allclose(got[["P10", "P50", "P90"]].to_numpy(), bands, err_msg=sku)

"""Features: correct lags, no look-ahead, holidays, regressor handling, censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.contract import validate
from engine.features import (
    build_panel,
    default_spec,
    feature_matrix,
    feature_names,
    holiday_table,
    regressor_stats,
)


def _weekly(n_weeks: int = 120, start: str = "2021-01-01") -> pd.DataFrame:
    dates = pd.date_range(start, periods=n_weeks, freq="W-FRI")
    rows = []
    for s, level in (("A", 10.0), ("B", 100.0)):
        q = level + np.arange(n_weeks, dtype=float)
        rows.append(pd.DataFrame({"Date": dates, "SKU": s, "Location": "", "Qty": q,
                                  "Promo": (np.arange(n_weeks) % 10 == 0).astype(float)}))
    return pd.concat(rows, ignore_index=True)


def _panel(sales: pd.DataFrame, **kw):
    d = validate(sales)
    return build_panel(d.sales, d.drivers, d.items, freq=d.freq, anchor=d.week_anchor,
                       regressors=d.sales_regressors, driver_columns=d.driver_columns, **kw), d


def test_lags_and_windows_are_exact():
    panel, _ = _panel(_weekly())
    spec = default_spec("W")
    stats = regressor_stats(panel)
    names = feature_names(panel, spec, stats)
    z = panel.y / 1.0
    i = np.array([0, 1])
    t = np.array([60, 80])
    X = feature_matrix(panel, z, i, t, spec, stats)
    col = dict(zip(names, range(len(names))))
    for k in spec.lags:
        np.testing.assert_allclose(X[:, col[f"lag_{k}"]], z[i, t - k])
    for w in spec.mean_windows:
        expect = [z[ii, tt - w: tt].mean() for ii, tt in zip(i, t)]
        np.testing.assert_allclose(X[:, col[f"mean_{w}"]], expect, rtol=1e-6)
    np.testing.assert_allclose(X[:, col["std_13"]], [z[ii, tt - 13: tt].std(ddof=1) for ii, tt in zip(i, t)],
                               rtol=1e-5)
    assert (X[:, col["Promo"]] == panel.regressors["Promo"][i, t]).all()


def test_features_never_look_ahead():
    panel, _ = _panel(_weekly())
    spec = default_spec("W")
    stats = regressor_stats(panel)
    names = feature_names(panel, spec, stats)
    i, t = np.array([0, 1]), np.array([70, 70])
    before = feature_matrix(panel, panel.y.copy(), i, t, spec, stats)
    z = panel.y.copy()
    z[:, 70:] = 1e6  # change the target and everything after it
    after = feature_matrix(panel, z, i, t, spec, stats)
    target_free = [k for k, n in enumerate(names)]
    np.testing.assert_array_equal(before[:, target_free], after[:, target_free])


def test_direct_shift_uses_only_values_known_at_the_origin():
    panel, _ = _panel(_weekly())
    spec = default_spec("W")
    stats = regressor_stats(panel)
    i, t, shift = np.array([0]), np.array([70]), 5  # origin is t - shift - 1 = 64
    before = feature_matrix(panel, panel.y.copy(), i, t, spec, stats, shift=shift)
    z = panel.y.copy()
    z[:, 65:] = -5.0
    after = feature_matrix(panel, z, i, t, spec, stats, shift=shift)
    np.testing.assert_array_equal(before, after)


def test_us_holidays_include_retail_events():
    hol = holiday_table("US", range(2022, 2023))
    names = dict(zip(hol["date"].dt.strftime("%Y-%m-%d"), hol["name"]))
    assert names["2022-11-24"] == "Thanksgiving Day"
    assert names["2022-11-25"] == "Black Friday"
    assert names["2022-12-24"] == "Christmas Eve"


def test_holiday_features_flag_the_thanksgiving_week():
    sales = _weekly(n_weeks=150, start="2021-01-01")
    panel, _ = _panel(sales)
    spec = default_spec("W")
    stats = regressor_stats(panel)
    names = feature_names(panel, spec, stats)
    dates = panel.dates()
    t = int(np.flatnonzero(dates == pd.Timestamp("2022-11-25"))[0])  # Friday after Thanksgiving
    X = feature_matrix(panel, panel.y, np.array([0, 0]), np.array([t, t - 3]), spec, stats)
    col = dict(zip(names, range(len(names))))
    assert X[0, col["hol_week_ending"]] >= 2  # Thanksgiving + Black Friday in the week ending that Friday
    assert X[1, col["hol_week_ending"]] == 0
    assert X[1, col["hol_next_dist"]] == 1  # 2022-11-04: Veterans Day (11-11) is one week ahead
    assert X[0, col["hol_next_id"]] > 0


def test_regressor_kinds(weekly_data):
    panel = build_panel(weekly_data.sales, weekly_data.drivers, weekly_data.items, freq="W",
                        anchor=weekly_data.week_anchor, regressors=weekly_data.sales_regressors,
                        driver_columns=weekly_data.driver_columns)
    kinds = regressor_stats(panel).kinds
    assert kinds["Promo"] == "binary"
    assert kinds["Price"] == "price"
    assert kinds["Temperature"] == "seasonal"  # weather: its level is the season
    assert kinds["FuelPrice"] != "price"  # a driver, not the SKU's own price
    assert kinds["CPI"] == "trend"  # inflation (its rate of change) matters, not the level


def test_weather_sensitivity_separates_sensitive_skus(weekly_data, weekly_panel):
    panel = build_panel(weekly_data.sales, weekly_data.drivers, weekly_data.items, freq="W",
                        anchor=weekly_data.week_anchor, regressors=weekly_data.sales_regressors,
                        driver_columns=weekly_data.driver_columns)
    sens = pd.Series(regressor_stats(panel).sensitivity["Temperature"],
                     index=pd.MultiIndex.from_frame(panel.keys[["SKU", "Location"]]))
    truth = weekly_panel.truth.set_index(["SKU", "Location"])["weather_sensitive"]
    s = sens.groupby(truth.reindex(sens.index).to_numpy()).mean()
    assert s[True] > s[False] + 0.1


def test_stock_out_periods_are_censored():
    sales = _weekly()
    sales["OnHand"] = 5.0
    sales.loc[(sales["SKU"] == "A") & (sales.index % 120 == 30), "OnHand"] = 0
    panel, _ = _panel(sales)
    assert panel.censored[0, 30] and not panel.censored[0, 31] and not panel.censored[1].any()


def test_drivers_by_location_are_broadcast_to_series():
    dates = pd.date_range("2022-01-07", periods=60, freq="W-FRI")
    sales = pd.concat([pd.DataFrame({"Date": dates, "SKU": "A", "Location": loc, "Qty": 5.0}) for loc in ("N", "S")])
    drivers = pd.concat([pd.DataFrame({"Date": dates, "Location": loc, "Temperature": temp})
                         for loc, temp in (("N", 5.0), ("S", 25.0))])
    d = validate(sales, drivers)
    panel = build_panel(d.sales, d.drivers, d.items, freq=d.freq, anchor=d.week_anchor,
                        driver_columns=d.driver_columns)
    north = int(np.flatnonzero(panel.keys["Location"] == "N")[0])
    assert np.all(panel.regressors["Temperature"][north] == 5.0)
    assert np.all(panel.regressors["Temperature"][1 - north] == 25.0)


def test_chunks_and_blocks_give_the_values_of_the_whole_panel(weekly_data, monkeypatch):
    """build_panel works in chunks of rows, the sums and driver statistics in blocks of series
    (memory on large panels): tiny chunks and blocks give exactly the values of one."""
    import engine.features as F

    def panel():
        return build_panel(weekly_data.sales, weekly_data.drivers, weekly_data.items, freq="W",
                           anchor=weekly_data.week_anchor, regressors=weekly_data.sales_regressors,
                           driver_columns=weekly_data.driver_columns, horizon=12)

    def state(p):
        spec = default_spec(p.freq)
        z = p.y[:, :p.n_hist] / F.series_scale(p, spec)[:, None]
        return regressor_stats(p), F._Cums(z), z, F.seasonal_mae_scale(p, 52)

    whole = panel()
    stats, cums, z, mase = state(whole)
    monkeypatch.setattr(F, "_CHUNK", 7)
    monkeypatch.setattr(F, "_row_blocks", lambda n, width, cells=0: [(a, min(a + 3, n)) for a in range(0, n, 3)])
    small = panel()
    for name in ("y", "censored", "start", "loc_codes", "cat_codes"):
        np.testing.assert_array_equal(getattr(small, name), getattr(whole, name))
    assert (small.p0, small.n_hist) == (whole.p0, whole.n_hist) and small.keys.equals(whole.keys)
    for k, m in whole.regressors.items():
        np.testing.assert_array_equal(small.regressors[k], m)
    stats2, cums2, _, mase2 = state(small)
    assert stats2.kinds == stats.kinds
    for part in ("normals", "price_ref", "sensitivity"):
        for k, v in getattr(stats, part).items():
            np.testing.assert_array_equal(getattr(stats2, part)[k], v)
    for acc in ("s", "q", "c", "nz"):
        np.testing.assert_array_equal(getattr(cums2, acc), getattr(cums, acc))
    assert cums.c.dtype.kind == "i" and cums.c[:, -1].max() <= z.shape[1]
    np.testing.assert_array_equal(mase2, mase)
    # features of series 4..9 from their own block of z and sums (row_offset) = from the whole panel
    spec = default_spec("W")
    i, t = np.repeat(np.arange(4, 10), 3), np.tile([60, 80, 100], 6)
    full = feature_matrix(whole, z, i, t, spec, stats, cums=cums)
    block = feature_matrix(whole, z[4:10], i, t, spec, stats, cums=F._Cums(z[4:10]), row_offset=4)
    np.testing.assert_array_equal(block, full)

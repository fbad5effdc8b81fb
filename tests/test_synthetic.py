"""Tests for the synthetic panel generator: grid, realism and known true effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.synthetic import SyntheticPanel, expected_demand, generate_panel


@pytest.fixture(scope="module")
def weekly() -> SyntheticPanel:
    return generate_panel("W", n_skus=20, n_locations=2, seed=0)


def _series_keys(panel: SyntheticPanel) -> pd.DataFrame:
    return panel.truth[["SKU", "Location"]]


# --------------------------------------------------------------------------- determinism and grid


def test_same_seed_gives_identical_frames_and_other_seed_differs() -> None:
    a = generate_panel("W", n_skus=6, n_locations=2, periods=60, seed=3)
    b = generate_panel("W", n_skus=6, n_locations=2, periods=60, seed=3)
    c = generate_panel("W", n_skus=6, n_locations=2, periods=60, seed=4)
    for name in ("sales", "drivers", "items", "future", "demand", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.sales["Qty"].equals(c.sales["Qty"])
    assert not a.drivers["Temperature"].equals(c.drivers["Temperature"])


@pytest.mark.parametrize(("freq", "periods", "horizon"), [("D", 400, 28), ("W", 104, 12), ("MS", 36, 6)])
def test_each_frequency_has_a_regular_grid_with_future_rows(freq: str, periods: int, horizon: int) -> None:
    p = generate_panel(freq, n_skus=8, n_locations=2, periods=periods, horizon=horizon, seed=1)
    hist = pd.DatetimeIndex(np.sort(p.sales["Date"].unique()))
    fut = pd.DatetimeIndex(np.sort(p.future["Date"].unique()))
    assert len(hist) == periods and len(fut) == horizon
    grid = hist.append(fut)
    if freq == "D":
        assert (np.diff(grid.values).astype("timedelta64[D]").astype(int) == 1).all()
    elif freq == "W":
        assert (np.diff(grid.values).astype("timedelta64[D]").astype(int) == 7).all()
        assert set(grid.weekday) == {pd.Timestamp("2022-01-03").weekday()}
    else:
        assert (grid.day == 1).all() and (np.diff(grid.year * 12 + grid.month) == 1).all()
    assert fut.min() > hist.max()
    # every series has every future period, with a plan price and promo flag
    assert len(p.future) == len(p.truth) * horizon
    assert p.future.groupby(["SKU", "Location"], observed=True).size().eq(horizon).all()
    assert (p.future["Price"] > 0).all() and p.future["Promo"].isin([0, 1]).all()
    # drivers cover history and future for every location
    for _, g in p.drivers.groupby("Location"):
        assert pd.DatetimeIndex(g["Date"]).equals(grid)
    assert p.drivers[["Temperature", "CPI", "FuelPrice"]].notna().all().all()
    # no duplicate (Date, SKU, Location) rows; counts are non-negative integers
    assert not p.sales.duplicated(["Date", "SKU", "Location"]).any()
    assert np.issubdtype(p.sales["Qty"].dtype, np.integer) and (p.sales["Qty"] >= 0).all()
    assert np.issubdtype(p.future["Qty"].dtype, np.integer) and (p.future["Qty"] >= 0).all()


def test_default_lengths() -> None:
    p = generate_panel("MS", n_skus=5, n_locations=1)
    assert p.sales["Date"].nunique() == 60 and p.future["Date"].nunique() == 6
    assert p.freq == "MS" and p.sales["Date"].min() == pd.Timestamp("2022-01-01")


# --------------------------------------------------------------------------- realism


def test_pattern_mix_intermittent_zeros_and_late_launches(weekly: SyntheticPanel) -> None:
    truth = weekly.truth
    assert set(truth["pattern"]) == {"smooth", "seasonal", "trending", "intermittent", "new"}
    assert set(truth["Category"]) >= {"Beverages", "IceCream"}
    d = weekly.demand.astype({"SKU": str, "Location": str}).merge(truth[["SKU", "Location", "pattern"]])
    zero_share = d.assign(zero=d["Demand"].eq(0)).groupby("pattern")["zero"].mean()
    assert zero_share["intermittent"] > 0.5
    assert zero_share["smooth"] < 0.05

    first = weekly.sales.groupby(["SKU", "Location"], observed=True)["Date"].min().rename("first").reset_index()
    first = first.astype({"SKU": str, "Location": str}).merge(truth)
    new = first[first["pattern"] == "new"]
    assert len(new) > 0
    start = weekly.sales["Date"].min()
    assert (new["first"] > start + pd.Timedelta(weeks=26)).all()
    assert (new["first"] == new["launch_date"]).all()
    assert (first.loc[first["pattern"] != "new", "first"] == start).all()
    assert truth.loc[truth["pattern"] != "new", "launch_date"].isna().all()


def test_stockouts_censor_sales_only_where_onhand_is_zero(weekly: SyntheticPanel) -> None:
    s, d = weekly.sales, weekly.demand
    assert s[["Date", "SKU", "Location"]].equals(d[["Date", "SKU", "Location"]])
    qty, dem, onhand = s["Qty"].to_numpy(), d["Demand"].to_numpy(), s["OnHand"].to_numpy()
    assert (qty <= dem).all()
    censored = qty < dem
    assert censored.sum() > 10
    assert (onhand[censored] == 0).all()
    assert (onhand[onhand != 0] > 0).all()
    assert 0.005 < (onhand == 0).mean() < 0.1


def test_promotions_are_occasional_and_discounted(weekly: SyntheticPanel) -> None:
    s = weekly.sales
    share = s.groupby(["SKU", "Location"], observed=True)["Promo"].mean()
    assert 0.03 < share.mean() < 0.12
    # a promoted period is priced below the neighbouring regular price of the same series
    prev_price = s.groupby(["SKU", "Location"], observed=True)["Price"].shift(1)
    promo_start = (s["Promo"] == 1) & (s.groupby(["SKU", "Location"], observed=True)["Promo"].shift(1) == 0)
    assert (s.loc[promo_start, "Price"] < prev_price[promo_start]).mean() > 0.9


def test_weather_sensitive_demand_follows_temperature_anomalies(weekly: SyntheticPanel) -> None:
    anomaly = weekly.drivers["Temperature"].to_numpy() - weekly.params["temp_normal"].ravel()
    drv = weekly.drivers[["Date", "Location"]].assign(anomaly=anomaly)
    # heat waves of +5 C or more exist in every location's history, and anomalies are not tiny
    hist = drv[drv["Date"] <= weekly.sales["Date"].max()]
    assert (hist.groupby("Location")["anomaly"].max() >= 5).all()
    assert (hist.groupby("Location")["anomaly"].std() > 1.5).all()

    d = (weekly.demand.astype({"SKU": str, "Location": str}).merge(drv)
         .merge(weekly.truth[["SKU", "Location", "pattern", "weather_sensitive"]]))
    d = d[d["pattern"].isin(["smooth", "seasonal", "trending"])]
    corr = {}
    for key, g in d.groupby(["SKU", "Location"]):
        log_d = np.log1p(g["Demand"].astype(float))
        detrended = log_d - log_d.rolling(13, center=True, min_periods=1).mean()
        corr[key] = (np.corrcoef(detrended, g["anomaly"])[0, 1], bool(g["weather_sensitive"].iloc[0]))
    c = pd.DataFrame(corr.values(), columns=["corr", "sensitive"])
    assert c["sensitive"].sum() >= 4 and (~c["sensitive"]).sum() >= 4
    assert c.loc[c["sensitive"], "corr"].mean() > 0.15
    assert abs(c.loc[~c["sensitive"], "corr"].mean()) < 0.07


def test_holiday_weeks_sell_more(weekly: SyntheticPanel) -> None:
    intensity = weekly.params["holiday_intensity"][: weekly.params["n_history"]]
    total = weekly.demand.groupby("Date")["Demand"].sum().to_numpy(dtype=float)
    isolated = [i for i in range(1, len(total) - 1) if intensity[i] == 1 and intensity[i - 1] == intensity[i + 1] == 0]
    assert len(isolated) >= 10
    lift = np.mean([total[i] / (0.5 * (total[i - 1] + total[i + 1])) for i in isolated])
    assert lift > 1.1


def test_daily_data_has_a_weekly_pattern() -> None:
    p = generate_panel("D", n_skus=10, n_locations=1, periods=140, seed=2)
    by_day = p.demand.groupby(p.demand["Date"].dt.weekday)["Demand"].sum()
    assert by_day[5] > 1.2 * by_day[1]  # Saturday beats Tuesday


def test_inflation_wanders_within_a_plausible_range(weekly: SyntheticPanel) -> None:
    lag = weekly.params["yoy_lag"]
    for _, g in weekly.drivers.groupby("Location"):
        cpi = g["CPI"].to_numpy()
        yoy = cpi[lag:] / cpi[:-lag] - 1
        assert 0.0 < yoy.min() and yoy.max() < 0.1
        assert yoy.max() - yoy.min() > 0.02
    fuel = weekly.drivers["FuelPrice"]
    assert (fuel > 0).all() and fuel.nunique() > 20
    assert (weekly.truth["fuel_beta"] == 0).all()


def test_items_master_data_is_plausible(weekly: SyntheticPanel) -> None:
    it = weekly.items
    assert it[["SKU", "Location"]].equals(_series_keys(weekly))
    assert it["LeadTimeDays"].between(3, 31).all() and (it["LeadTimeStdDays"] > 0).all()
    assert it["ServiceLevel"].between(0.9, 0.99).all() and it["ServiceLevel"].nunique() >= 3
    assert (it["MOQ"] % it["OrderMultiple"] == 0).all() and (it["UnitCost"] > 0).all()
    assert (it["OnHand"] >= 0).all() and (it["OnOrder"] >= 0).all()
    assert it["Strategic"].dtype == bool and it["Strategic"].any()
    # service level follows value: the strategic or highest-value items get the highest targets
    value = weekly.truth["base_level"] * weekly.truth["ref_price"]
    assert it.loc[value.idxmax(), "ServiceLevel"] >= 0.98


# --------------------------------------------------------------------------- expected demand and true effects


def test_sampled_demand_is_centred_on_expected_demand(weekly: SyntheticPanel) -> None:
    hist = expected_demand(weekly, future=weekly.sales)
    assert len(hist) == len(weekly.sales)
    ratio = weekly.demand["Demand"].sum() / hist["Demand"].sum()
    assert 0.97 < ratio < 1.03
    fut = expected_demand(weekly)
    assert 0.9 < weekly.future["Qty"].sum() / fut["Demand"].sum() < 1.1


def test_heatwave_scenario_scales_sensitive_skus_by_the_documented_multiplier(weekly: SyntheticPanel) -> None:
    hot = weekly.drivers.copy()
    future_rows = hot["Date"] > weekly.sales["Date"].max()
    hot.loc[future_rows, "Temperature"] += 5.0
    ratio = expected_demand(weekly, drivers=hot)["Demand"] / expected_demand(weekly)["Demand"]
    beta = (weekly.future[["SKU", "Location"]].astype(str)
            .merge(weekly.truth[["SKU", "Location", "temp_beta", "weather_sensitive"]], how="left"))
    np.testing.assert_allclose(ratio.to_numpy(), np.exp(5.0 * beta["temp_beta"].to_numpy()), rtol=1e-9)
    assert (ratio[beta["weather_sensitive"].to_numpy()] > 1.15).all()
    assert (ratio[~beta["weather_sensitive"].to_numpy()] == 1.0).all()


def test_future_promo_raises_demand_by_uplift_and_next_period_dips(weekly: SyntheticPanel) -> None:
    base = weekly.future.copy()
    base["Promo"] = 0
    promo = base.copy()
    step = np.tile(np.arange(weekly.params["horizon"]), len(weekly.truth))
    promo.loc[step == 3, "Promo"] = 1
    ratio = (expected_demand(weekly, future=promo)["Demand"] / expected_demand(weekly, future=base)["Demand"]).to_numpy()
    truth = np.repeat(np.arange(len(weekly.truth)), weekly.params["horizon"])
    uplift = weekly.truth["promo_uplift"].to_numpy()[truth]
    dip = weekly.truth["post_promo_dip"].to_numpy()[truth]
    np.testing.assert_allclose(ratio[step == 3], 1 + uplift[step == 3], rtol=1e-12)
    np.testing.assert_allclose(ratio[step == 4], 1 - dip[step == 4], rtol=1e-12)
    np.testing.assert_allclose(ratio[(step != 3) & (step != 4)], 1.0, rtol=1e-12)
    assert (uplift >= 0.3).all() and (uplift <= 1.0).all() and (dip >= 0.1).all() and (dip <= 0.25).all()


def test_lower_price_raises_demand_through_elasticity(weekly: SyntheticPanel) -> None:
    cheaper = weekly.future.assign(Price=weekly.future["Price"] * 0.9)
    ratio = expected_demand(weekly, future=cheaper)["Demand"] / expected_demand(weekly)["Demand"]
    elasticity = np.repeat(weekly.truth["elasticity"].to_numpy(), weekly.params["horizon"])
    np.testing.assert_allclose(ratio.to_numpy(), 0.9**elasticity, rtol=1e-5)
    assert (ratio > 1.1).all()


def test_higher_inflation_lowers_expected_demand(weekly: SyntheticPanel) -> None:
    lag = weekly.params["yoy_lag"]
    last = weekly.sales["Date"].max()
    hot_cpi = weekly.drivers.copy()
    fut = hot_cpi["Date"] > last
    hot_cpi.loc[fut, "CPI"] *= 1.03  # about +3 pp year-over-year inflation in every future period
    ratio = (expected_demand(weekly, drivers=hot_cpi)["Demand"] / expected_demand(weekly)["Demand"]).to_numpy()
    assert (ratio < 0.98).all()
    # exactly the documented purchasing-power multiplier exp(-inflation_beta * delta yoy)
    cpi = weekly.drivers.pivot(index="Date", columns="Location", values="CPI")
    extra = (0.03 * cpi / cpi.shift(lag)).loc[cpi.index > last]
    rows = weekly.future.astype({"SKU": str, "Location": str})
    delta = extra.stack().rename("delta").reset_index()
    rows = rows.merge(delta, on=["Date", "Location"], how="left").merge(
        weekly.truth[["SKU", "Location", "inflation_beta"]], how="left")
    np.testing.assert_allclose(ratio, np.exp(-rows["inflation_beta"] * rows["delta"]), rtol=1e-9)


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_are_reported_together() -> None:
    with pytest.raises(InputError) as err:
        generate_panel("W", n_skus=0, periods=3, horizon=0)
    cols = {p.column for p in err.value.problems}
    assert cols == {"n_skus", "periods", "horizon"}
    assert err.value.code == "E110"
    with pytest.raises(InputError) as err:
        generate_panel("hourly")
    assert err.value.code == "E108"
    with pytest.raises(InputError) as err:
        generate_panel("W", n_skus=2, holiday_country="XX")
    assert "holiday" in err.value.one_line().lower()


def test_expected_demand_reports_unknown_rows(weekly: SyntheticPanel) -> None:
    rows = weekly.future.head(3).astype({"SKU": str}).copy()
    rows.loc[rows.index[1], "SKU"] = "SKU-9999"
    rows.loc[rows.index[2], "Date"] = pd.Timestamp("1999-01-01")
    with pytest.raises(InputError) as err:
        expected_demand(weekly, future=rows)
    found = {(p.row, p.column) for p in err.value.problems}
    assert found == {(3, "SKU"), (4, "Date")}

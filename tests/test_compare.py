"""Plan comparison: what changed since the previous published version, and why."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.compare import CAUSES, compare_plans

MONTHS = pd.date_range("2025-02-01", periods=3, freq="MS")
ITEMS = pd.DataFrame({"SKU": ["A", "B", "C"], "Category": ["Drinks", "Drinks", "Food"]})
META = {"params": {"n_estimators": 300}, "features": ["lag_12"], "quantiles": [0.1, 0.5, 0.9],
        "plancell_version": "1.0", "freq": "MS"}


def version(stat: dict[str, float], extra: dict[str, float], skus=("A", "B")) -> pd.DataFrame:
    return pd.DataFrame([dict(SKU=s, Location="", Period=p, Statistical=stat[s], Consensus=stat[s] + extra.get(s, 0.0))
                         for s in skus for p in MONTHS])


def test_the_parts_add_up_and_overrides_are_the_layer_deltas():
    prev = version({"A": 100.0, "B": 50.0}, {"A": 20.0})
    cur = version({"A": 110.0, "B": 40.0}, {"A": 5.0, "B": 10.0})
    cmp = compare_plans(prev, cur, items=ITEMS, previous_meta={**META, "data_fingerprint": "x"},
                        current_meta={**META, "data_fingerprint": "y"})
    s = cmp.by_sku
    assert (s[list(CAUSES)].sum(axis=1) - s["Change"]).abs().max() < 1e-9
    a = s[(s["SKU"] == "A")].iloc[0]
    assert a["Overrides"] == pytest.approx(-15.0) and a["New data"] == pytest.approx(10.0)
    assert a["Model change"] == pytest.approx(0.0) and a["Change"] == pytest.approx(-5.0)
    assert "same" not in cmp.notes[0] and "new data" in cmp.notes[0]
    cat = cmp.by_category.set_index(["Category", "Month"])
    assert cat.loc[("Drinks", MONTHS[0]), "Change"] == pytest.approx(-5.0)   # A -5; B: -10 stat, +10 override
    total = cmp.summary.set_index("Cause").loc["Total change", "Units"]
    assert total == pytest.approx(3 * (-5.0 + 0.0))


def test_a_driver_counterfactual_separates_drivers_and_a_new_setup_is_model_change():
    prev = version({"A": 100.0, "B": 50.0}, {})
    cur = version({"A": 130.0, "B": 50.0}, {})
    cf = version({"A": 110.0, "B": 50.0}, {}).rename(columns={"Statistical": "P50"}).drop(columns="Consensus")
    cmp = compare_plans(prev, cur, driver_counterfactual=cf, previous_meta={**META, "data_fingerprint": "x"},
                        current_meta={**META, "features": ["lag_12", "price"], "data_fingerprint": "x"})
    a = cmp.by_sku[cmp.by_sku["SKU"] == "A"].iloc[0]
    assert a["Drivers"] == pytest.approx(20.0) and a["Model change"] == pytest.approx(10.0)
    assert a["New data"] == pytest.approx(0.0)
    assert a["Why"].startswith("Drivers +20")


def test_new_and_dropped_series_and_actual_evidence():
    prev = version({"A": 100.0, "B": 50.0}, {})
    cur = version({"A": 100.0, "C": 7.0}, {}, skus=("A", "C"))
    actuals = pd.DataFrame({"SKU": ["A"], "Location": [""], "Date": [MONTHS[0]], "Qty": [150.0]})
    cmp = compare_plans(prev, cur, items=ITEMS, actuals=actuals)
    status = dict(zip(cmp.series["SKU"], cmp.series["Status"]))
    assert status == {"C": "New series", "B": "Dropped series"}
    a = cmp.by_sku[cmp.by_sku["SKU"] == "A"].iloc[0]
    assert a["Actual vs previous plan"] == pytest.approx(0.5)
    assert a["Why"] == "no change"

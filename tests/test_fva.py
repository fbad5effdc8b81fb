"""Forecast value added on synthetic data where the truth is known: a Marketing layer that knows
the real promotions adds value, a Sales layer that adds noise destroys it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.fva import NAIVE, PlanVersion, forecast_value_added
from engine.overrides import apply_overrides


def synthetic_sop(seed: int = 0, n_sku: int = 20, hist: int = 36, horizon: int = 6):
    """Monthly seasonal demand; the statistical forecast is the true mean without promotions;
    up to 8 SKU-months get a real +60 % promotion. Marketing knows them (+60 %); Sales adds noise
    (sd 30 %) to half the forecasts. Returns sales (history + actuals), plan, items, overrides."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2022-01-01", periods=hist + horizon, freq="MS")
    skus = [f"S{i:02d}" for i in range(n_sku)]
    level = rng.uniform(50, 200, n_sku)
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(hist + horizon) / 12)
    mean = level[:, None] * season[None, :]
    promo = np.zeros(mean.shape, dtype=bool)
    k = min(8, n_sku)
    promo[rng.choice(n_sku, k, replace=False)[:, None], hist + rng.integers(0, horizon, (k, 1))] = True
    actual = mean * np.where(promo, 1.6, 1.0) * rng.normal(1, 0.05, mean.shape)
    sales = pd.DataFrame({"SKU": np.repeat(skus, hist + horizon), "Location": "", "Date": np.tile(dates, n_sku),
                          "Qty": actual.ravel()})
    future = dates[hist:]
    plan = pd.DataFrame({"SKU": np.repeat(skus, horizon), "Location": "", "Period": np.tile(future, n_sku)})
    m = mean[:, hist:].ravel()
    plan["P10"], plan["P50"], plan["P90"] = 0.85 * m, m, 1.15 * m
    items = pd.DataFrame({"SKU": skus, "Category": ["Drinks" if i % 2 else "Food" for i in range(n_sku)]})
    rows = [dict(SKU=skus[i], Period=future[j], Pct="+60%", Layer="Marketing", Reason="promotion", Author="mk")
            for i, j in zip(*np.nonzero(promo[:, hist:]))]
    rows += [dict(SKU=skus[i], Period=future[j], Pct=f"{rng.normal(0, 30):+.0f}%", Layer="Sales",
                  Reason="gut feel", Author="sl")
             for i in range(n_sku) for j in range(horizon) if rng.random() < 0.5]
    return sales, plan, items, pd.DataFrame(rows)


def known_truth():
    sales, plan, items, ov = synthetic_sop()
    cons = apply_overrides(plan, ov, freq="MS", items=items)
    version = PlanVersion("Plan 2025-01 v1", cons.plan, cons.effects)
    return forecast_value_added([version], sales, freq="MS", items=items)


def test_informed_layer_adds_value_and_noisy_layer_destroys_it():
    res = known_truth()
    wf = res.waterfall[res.waterfall["Version"] == "All versions"].set_index("Step")
    assert list(wf.index) == [NAIVE, "Statistical", "Sales", "Marketing", "Consensus"]
    assert wf.loc["Marketing", "FVA"] > 0 and wf.loc["Marketing", "Verdict"] == "value added"
    assert wf.loc["Sales", "FVA"] < 0 and wf.loc["Sales", "Verdict"] == "value destroyed"
    layers = res.by_layer.set_index("Layer")
    assert layers.loc["Marketing", "WAPE after"] < layers.loc["Marketing", "WAPE before"]
    assert layers.loc["Sales", "WAPE after"] > layers.loc["Sales", "WAPE before"]
    reasons = res.by_reason.set_index("Reason")
    assert reasons.loc["promotion", "Verdict"] == "value added"
    assert reasons.loc["gut feel", "Verdict"] == "value destroyed"
    assert any(v.startswith("Marketing added value") for v in res.verdicts)
    assert any(v.startswith("Sales destroyed value") for v in res.verdicts)
    # the waterfall's steps add up: naive WAPE - final WAPE = the sum of the steps' FVA
    assert wf["FVA"].iloc[1:].sum() == pytest.approx(wf.loc[NAIVE, "WAPE"] - wf.loc["Consensus", "WAPE"])


def test_wape_and_bias_follow_the_definitions():
    sales, plan, items, ov = synthetic_sop(n_sku=4)
    cons = apply_overrides(plan, ov, freq="MS", items=items)
    res = forecast_value_added([PlanVersion("v1", cons.plan)], sales, freq="MS", items=items)
    merged = cons.plan.merge(sales.rename(columns={"Date": "Period"}), on=["SKU", "Location", "Period"])
    a, f = merged["Qty"].to_numpy(), merged["Consensus"].to_numpy()
    row = res.waterfall[(res.waterfall["Version"] == "All versions") & (res.waterfall["Step"] == "Consensus")]
    assert row["WAPE"].iloc[0] == pytest.approx(np.abs(a - f).sum() / a.sum())
    assert row["Bias"].iloc[0] == pytest.approx((f - a).sum() / a.sum())
    assert len(res.by_reason) == 0   # no effects published with the version
    assert set(res.by_category["Category"]) <= {"Drinks", "Food"}


def test_seasonal_naive_is_made_at_the_version_origin():
    sales, plan, items, _ = synthetic_sop(n_sku=2)
    res = forecast_value_added([PlanVersion("v1", apply_overrides(plan, None, freq="MS").plan)], sales, freq="MS")
    first = plan["Period"].min()
    # the naive forecast repeats the last season before the origin, so its total is last year's
    last_year = sales[(sales["Date"] >= first - pd.DateOffset(months=12))
                      & (sales["Date"] < first - pd.DateOffset(months=6))]["Qty"].sum()
    naive = res.waterfall[(res.waterfall["Step"] == NAIVE)]["Forecast"].iloc[0]
    assert naive == pytest.approx(last_year)


def test_versions_without_actuals_yet_are_reported_not_failed():
    sales, plan, items, ov = synthetic_sop(n_sku=3)
    history = sales[sales["Date"] < plan["Period"].min()]
    cons = apply_overrides(plan, ov, freq="MS", items=items)
    res = forecast_value_added([PlanVersion("Plan 2025-01 v1", cons.plan, cons.effects)], history, freq="MS")
    assert len(res.waterfall) == 0
    assert "no published plan version has periods with actuals" in res.verdicts[0].lower()


def test_several_versions_are_pooled_and_scored_each():
    sales, plan, items, ov = synthetic_sop(n_sku=6)
    cons = apply_overrides(plan, ov, freq="MS", items=items)
    later = cons.plan[cons.plan["Period"] >= plan["Period"].min() + pd.DateOffset(months=2)]
    v1 = PlanVersion("Plan 2025-01 v1", cons.plan, cons.effects)
    v2 = PlanVersion("Plan 2025-03 v1", later.drop(columns=["Sales layer"]))   # a version without a Sales layer
    res = forecast_value_added([v1, v2], sales, freq="MS", items=items)
    assert set(res.waterfall["Version"]) == {"All versions", "Plan 2025-01 v1", "Plan 2025-03 v1"}
    v2_sales = res.waterfall[(res.waterfall["Version"] == "Plan 2025-03 v1") & (res.waterfall["Step"] == "Sales")]
    assert v2_sales["FVA"].iloc[0] == pytest.approx(0.0)
    assert res.versions["Cells"].tolist() == [36, 24]

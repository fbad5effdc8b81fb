"""build_plan: the pipeline behind demo/refresh, with the gate applied and provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.baselines import seasonal_naive
from engine.contract import validate
from engine.plan import build_plan
from engine.store import ModelStore
from engine.synthetic import generate_panel

from .conftest import with_plan_rows


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    p = generate_panel("W", n_skus=8, n_locations=2, seed=5)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    store = ModelStore(home=tmp_path_factory.mktemp("home"))
    return p, data, store, build_plan(data, horizon=8, windows=3, model_params={"n_estimators": 60},
                                      store=store, model_name="demo book")


def test_plan_rows_and_columns(planned):
    p, data, _, r = planned
    assert list(r.plan.columns) == ["SKU", "Location", "Period", "P10", "P50", "P90", "model_used", "reason",
                                    "assumed", "Statistical", "Consensus", "Locked"]
    # without overrides the consensus is the statistical forecast
    assert (r.plan["Consensus"] == r.plan["Statistical"]).all() and (r.plan["P50"] == r.plan["Consensus"]).all()
    assert len(r.plan) == data.sales.groupby(["SKU", "Location"]).ngroups * 8
    assert r.plan["Period"].min() > p.sales["Date"].max()
    assert (r.plan["P10"] <= r.plan["P50"]).all() and (r.plan["P50"] <= r.plan["P90"]).all()


def test_gated_series_are_planned_with_their_baseline(planned):
    _, data, _, r = planned
    gated = r.plan[r.plan["model_used"] == "seasonal_naive"]
    assert not gated.empty  # this seed has series where seasonal naive wins the backtest
    hist = data.sales[data.sales["Qty"].notna()]
    sn = seasonal_naive(hist, 8, season=52, freq="W", anchor=data.week_anchor).rename(columns={"Date": "Period"})
    m = gated.merge(sn, on=["SKU", "Location", "Period"], suffixes=("", "_sn"))
    np.testing.assert_allclose(m["P50"], m["P50_sn"])
    acc = r.accuracy.set_index(["SKU", "Location"])
    for key, row in gated.groupby(["SKU", "Location"]).first().iterrows():
        assert acc.loc[key, "model_used"] == "seasonal_naive"
        assert "beat the model" in row["reason"]


def test_metadata_and_store_round_trip(planned):
    _, data, store, r = planned
    m = r.metadata
    for key in ("model_name", "model_version", "trained_at", "data_fingerprint", "features", "params", "backtest"):
        assert key in m
    bundle, meta = store.load("demo book")
    assert meta["data_fingerprint"] == m["data_fingerprint"]
    pd.testing.assert_frame_equal(bundle.model.predict(8), r.model.predict(8))
    pd.testing.assert_frame_equal(bundle.policy, r.policy)   # the functions answer from the published plan
    pd.testing.assert_frame_equal(bundle.plan, r.plan)


def test_plan_carries_an_inventory_policy_per_series(planned):
    _, data, _, r = planned
    pol = r.policy
    n_series = data.sales.groupby(["SKU", "Location"]).ngroups
    assert len(pol) == n_series and not pol.duplicated(["SKU", "Location"]).any()
    assert (pol["SafetyStock"] >= 0).all()
    assert (pol["OrderUpTo"] >= pol["ReorderPoint"] - 1e-9).all()
    assert (pol["Method"] == "empirical").all()  # every series was backtested
    # order now respects the pack rules from Items
    ordered = pol[pol["SuggestedOrder"] > 0]
    assert len(ordered)
    assert ((ordered["SuggestedOrder"] % ordered["OrderMultiple"]).abs() < 1e-9).all()
    assert (ordered["SuggestedOrder"] >= ordered["MOQ"]).all()
    # the buffer follows the service level: 98 % series carry more safety stock per unit of
    # forecast than 90 % ones on average
    rel = pol["SafetyStock"] / pol["DemandOverProtection"].clip(lower=1e-9)
    assert rel[pol["ServiceLevel"] >= 0.98].median() > rel[pol["ServiceLevel"] <= 0.90].median()


def test_plan_ranks_purchases_most_urgent_first(planned):
    _, _, _, r = planned
    buy = r.purchases
    assert len(buy) and list(buy["Rank"]) == sorted(buy["Rank"])
    order = {"late": 0, "order now": 1, "planned": 2}
    assert list(buy["Urgency"].map(order)) == sorted(buy["Urgency"].map(order))
    assert buy["InBudget"].all()  # no budget given

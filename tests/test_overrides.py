"""Planner overrides: layer order, split-down, locks, quantiles, and every bad row named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.overrides import CONSENSUS, STATISTICAL, apply_overrides, read_overrides
from engine.policy import build_policy

MONTHS = pd.date_range("2025-01-01", periods=4, freq="MS")
ITEMS = pd.DataFrame({"SKU": ["A", "B", "C"], "Category": ["Drinks", "Drinks", "Food"], "UnitCost": [1.0, 2.0, 3.0],
                      "LeadTimeDays": [30.0, 30.0, 30.0]})


def make_plan(levels: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    levels = levels or {("A", "L1"): 100.0, ("A", "L2"): 300.0, ("B", "L1"): 50.0, ("C", "L1"): 0.0}
    rows = [dict(SKU=s, Location=loc, Period=p, P10=0.8 * v, P50=v, P90=1.3 * v, model_used="lightgbm")
            for (s, loc), v in levels.items() for p in MONTHS]
    return pd.DataFrame(rows)


def cell(plan: pd.DataFrame, sku: str, loc: str, month: int, col: str = CONSENSUS) -> float:
    m = (plan["SKU"] == sku) & (plan["Location"] == loc) & (plan["Period"] == MONTHS[month])
    return float(plan.loc[m, col].iloc[0])


def test_without_overrides_the_consensus_is_the_statistical_forecast():
    plan = make_plan()
    res = apply_overrides(plan, None, freq="MS", items=ITEMS)
    assert res.plan[CONSENSUS].tolist() == plan["P50"].tolist()
    assert res.plan[STATISTICAL].tolist() == plan["P50"].tolist()
    assert res.plan[["P10", "P90"]].equals(plan[["P10", "P90"]])
    assert res.layers == [] and len(res.audit) == 0


def test_sku_total_across_locations_is_split_in_proportion_to_the_forecast():
    ov = pd.DataFrame([dict(SKU="A", Period="2025-02-15", Qty=800, Layer="Sales", Reason="listing")])
    res = apply_overrides(make_plan(), ov, freq="MS", items=ITEMS)
    assert cell(res.plan, "A", "L1", 1) == pytest.approx(200.0)     # 100 : 300 of 800
    assert cell(res.plan, "A", "L2", 1) == pytest.approx(600.0)
    assert cell(res.plan, "A", "L1", 0) == 100.0                    # other months untouched
    assert res.audit.loc[0, "Cells"] == 2 and res.audit.loc[0, "After"] == pytest.approx(800.0)


def test_a_category_with_zero_forecast_is_split_evenly():
    plan = make_plan({("C", "L1"): 0.0, ("C", "L2"): 0.0, ("A", "L1"): 10.0})
    ov = pd.DataFrame([dict(Category="Food", Period="2025-01-01", Qty=10, Layer="Finance")])
    res = apply_overrides(plan, ov, freq="MS", items=ITEMS)
    assert cell(res.plan, "C", "L1", 0) == pytest.approx(5.0)
    assert cell(res.plan, "C", "L2", 0) == pytest.approx(5.0)
    # zero median: the band is shifted by the consensus, still ordered
    row = res.plan[(res.plan["SKU"] == "C") & (res.plan["Period"] == MONTHS[0])]
    assert (row["P10"] <= row["P50"]).all() and (row["P50"] <= row["P90"]).all()


def test_layers_apply_in_order_each_on_the_previous_result():
    ov = pd.DataFrame([
        dict(SKU="B", Location="L1", Period="2025-03-01", Pct="+10%", Layer="Finance"),
        dict(SKU="B", Location="L1", Period="2025-03-01", Qty=80, Layer="Sales"),
        dict(SKU="B", Location="L1", Period="2025-03-01", Pct=0.5, Layer="Marketing"),
    ])
    res = apply_overrides(make_plan(), ov, freq="MS", items=ITEMS)
    assert cell(res.plan, "B", "L1", 2, "Sales layer") == pytest.approx(80.0)
    assert cell(res.plan, "B", "L1", 2, "Marketing layer") == pytest.approx(120.0)
    assert cell(res.plan, "B", "L1", 2, "Finance layer") == pytest.approx(132.0)
    assert cell(res.plan, "B", "L1", 2) == pytest.approx(132.0)
    assert res.layers == ["Sales", "Marketing", "Finance"]


def test_within_a_layer_the_sku_row_wins_and_the_category_total_holds():
    ov = pd.DataFrame([
        dict(Category="Drinks", Period="2025-01-01", Qty=1000, Layer="Marketing"),
        dict(SKU="B", Location="L1", Period="2025-01-01", Qty=200, Layer="Marketing"),
    ])
    res = apply_overrides(make_plan(), ov, freq="MS", items=ITEMS)
    assert cell(res.plan, "B", "L1", 0) == pytest.approx(200.0)
    # the other 800 go to A's two locations, 1 : 3
    assert cell(res.plan, "A", "L1", 0) == pytest.approx(200.0)
    assert cell(res.plan, "A", "L2", 0) == pytest.approx(600.0)
    drinks = res.plan[(res.plan["SKU"].isin(["A", "B"])) & (res.plan["Period"] == MONTHS[0])][CONSENSUS].sum()
    assert drinks == pytest.approx(1000.0)


def test_a_locked_qty_survives_later_layers_and_the_next_refresh():
    ov = pd.DataFrame([
        dict(SKU="A", Location="L1", Period="2025-04-01", Qty=500, Layer="Sales", Locked="TRUE", Reason="tender"),
        dict(Category="Drinks", Period="2025-04-01", Pct="+20%", Layer="Finance"),
    ])
    first = apply_overrides(make_plan(), ov, freq="MS", items=ITEMS)
    assert cell(first.plan, "A", "L1", 3) == pytest.approx(500.0)
    assert cell(first.plan, "A", "L2", 3) == pytest.approx(360.0)        # the Finance +20 % still applies
    assert bool(first.plan.loc[(first.plan["SKU"] == "A") & (first.plan["Location"] == "L1")
                               & (first.plan["Period"] == MONTHS[3]), "Locked"].iloc[0])
    assert "lock of row 2" in first.audit.loc[1, "Status"]
    # next refresh: the statistical forecast moved, the locked cell did not
    refreshed = make_plan({("A", "L1"): 180.0, ("A", "L2"): 250.0, ("B", "L1"): 40.0, ("C", "L1"): 5.0})
    second = apply_overrides(refreshed, ov, freq="MS", items=ITEMS)
    assert cell(second.plan, "A", "L1", 3) == pytest.approx(500.0)
    assert cell(second.plan, "A", "L2", 3) == pytest.approx(300.0)


def test_quantiles_move_with_the_median_and_stay_ordered_and_non_negative():
    rng = np.random.default_rng(3)
    plan = make_plan({(s, loc): float(v) for s, loc, v in
                      [("A", "L1", 100), ("A", "L2", 0), ("B", "L1", 7), ("C", "L1", 40)]})
    rows = []
    for k in range(12):
        month = MONTHS[k % 4]
        layer = ("Sales", "Marketing", "Finance")[k % 3]
        if k % 2:
            rows.append(dict(SKU=("A", "B", "C")[k % 3], Period=month, Pct=f"{rng.uniform(-100, 200):.0f}%",
                             Layer=layer))
        else:
            rows.append(dict(Category=("Drinks", "Food")[(k // 2) % 2], Period=month,
                             Qty=float(rng.uniform(0, 400)), Layer=layer))
    res = apply_overrides(plan, pd.DataFrame(rows).drop_duplicates(["Period", "Layer"]), freq="MS", items=ITEMS)
    p = res.plan
    assert (p["P10"] <= p["P50"] + 1e-9).all() and (p["P50"] <= p["P90"] + 1e-9).all()
    assert (p[["P10", "P50", "P90"]] >= 0).all().all()
    assert np.allclose(p["P50"], p[CONSENSUS])
    moved = (p[STATISTICAL] > 0) & (p[CONSENSUS] != p[STATISTICAL])
    assert moved.any()
    ratio = p.loc[moved, CONSENSUS] / p.loc[moved, STATISTICAL]
    assert np.allclose(p.loc[moved, "P90"], 1.3 * p.loc[moved, STATISTICAL] * ratio)


def test_every_bad_row_is_named_with_its_excel_row_column_and_fix():
    bad = pd.DataFrame([
        dict(SKU="Z", Period="2025-02-01", Qty=1, Layer="Sales"),                         # row 5 unknown SKU
        dict(SKU="A", Category="Drinks", Period="2025-02-01", Qty=1, Layer="Sales"),     # 6 both
        dict(SKU="A", Period="2026-02-01", Qty=1, Layer="Sales"),                         # 7 after horizon
        dict(SKU="A", Period="2025-02-01", Qty="lots", Layer="Sales"),                    # 8 bad number
        dict(SKU="A", Period="2025-02-01", Qty=1, Pct=0.1, Layer="Sales"),                # 9 Qty and Pct
        dict(SKU="A", Period="2025-02-01", Layer="Sales"),                                # 10 neither
        dict(SKU="A", Period="2025-02-01", Qty=1, Layer="Ops"),                           # 11 unknown layer
        dict(SKU="A", Period="2025-03-01", Qty=1, Layer="Sales"),                         # 12 conflicts with 13
        dict(SKU="A", From="2025-01-01", To="2025-03-01", Pct=0.2, Layer="Sales"),        # 13
        dict(Category="Toys", Period="2025-03-01", Qty=1, Layer="Sales"),                 # 14 unknown category
        dict(SKU="B", Location="L9", Period="2025-03-01", Qty=1, Layer="Sales"),          # 15 unknown location
        dict(SKU="B", Period="2025-03-01", Pct="5%", Locked="yes", Layer="Sales"),       # 16 locked percent
    ])
    with pytest.raises(InputError) as err:
        read_overrides(bad, make_plan(), freq="MS", items=ITEMS, first_row=5)
    errors = [p for p in err.value.problems if p.severity == "error"]
    rows = sorted({p.row for p in errors})
    assert rows == [5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16]
    by_row = {p.row: p for p in errors}
    assert by_row[5].column == "SKU" and by_row[5].value == "Z"
    assert by_row[7].column == "Period" and "horizon" in by_row[7].message
    assert by_row[8].column == "Qty" and by_row[8].value == "lots"
    assert by_row[11].column == "Layer" and "Sales, Marketing, Finance, Consensus" in by_row[11].fix
    assert "row 12" in by_row[13].message and "12" in by_row[13].fix
    assert all(p.table == "Overrides" and p.fix for p in errors)
    assert "PLANCELL-E" in err.value.one_line()


def test_elapsed_periods_warn_instead_of_failing():
    ov = pd.DataFrame([dict(SKU="A", Period="2024-11-01", Qty=5, Layer="Sales", Reason="old promo"),
                       dict(SKU="B", Period="2025-01-01", Pct="-50%", Layer="Sales")])
    res = apply_overrides(make_plan(), ov, freq="MS", items=ITEMS)
    assert [w.row for w in res.warnings] == [2]
    assert res.audit.loc[0, "Status"].startswith("ignored") and res.audit.loc[1, "Cells"] == 1
    assert cell(res.plan, "B", "L1", 0) == pytest.approx(25.0)


def test_percent_points_without_the_sign_are_refused():
    with pytest.raises(InputError) as err:
        read_overrides(pd.DataFrame([dict(SKU="A", Period="2025-01-01", Pct=30, Layer="Sales")]), make_plan(),
                       freq="MS", items=ITEMS)
    assert '"30%"' in err.value.problems[0].fix


def test_the_policy_follows_the_consensus():
    plan = make_plan()
    hist = pd.DataFrame([dict(SKU=s, Location=loc, Date=d, Qty=100.0) for s, loc in
                         [("A", "L1"), ("A", "L2"), ("B", "L1"), ("C", "L1")]
                         for d in pd.date_range("2023-01-01", periods=24, freq="MS")])
    ov = pd.DataFrame([dict(SKU="B", Location="L1", From="2025-01-01", To="2025-04-01", Pct="+100%",
                            Layer="Consensus")])
    cons = apply_overrides(plan, ov, freq="MS", items=ITEMS).plan
    before = build_policy(plan, cube=None, history=hist, items=ITEMS, freq="MS").set_index(["SKU", "Location"])
    after = build_policy(cons, cube=None, history=hist, items=ITEMS, freq="MS").set_index(["SKU", "Location"])
    assert after.loc[("B", "L1"), "ReorderPoint"] > before.loc[("B", "L1"), "ReorderPoint"]
    assert after.loc[("A", "L1"), "ReorderPoint"] == pytest.approx(before.loc[("A", "L1"), "ReorderPoint"])

"""The financial view: units x price and cost by category and month, inventory value, scenarios in money."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.finance import financial_view, prices_from_sales, scenario_money

MONTHS = pd.date_range("2025-01-01", periods=3, freq="MS")
ITEMS = pd.DataFrame({"SKU": ["A", "B", "C"], "Category": ["Drinks", "Drinks", "Food"],
                      "UnitCost": [2.0, 5.0, np.nan]})


def plan() -> pd.DataFrame:
    rows = [dict(SKU=s, Location="", Period=p, Statistical=u, Consensus=u + extra, P50=u + extra)
            for s, u, extra in (("A", 10.0, 5.0), ("B", 4.0, 0.0), ("C", 1.0, 0.0)) for p in MONTHS]
    return pd.DataFrame(rows)


def sales() -> pd.DataFrame:
    return pd.DataFrame([
        dict(SKU="A", Location="", Date=pd.Timestamp("2024-12-01"), Qty=9.0, Price=3.0),
        dict(SKU="A", Location="", Date=MONTHS[1], Qty=None, Price=4.0),      # planned price rise
        dict(SKU="B", Location="", Date=pd.Timestamp("2024-11-01"), Qty=3.0, Price=9.0),
        dict(SKU="B", Location="", Date=pd.Timestamp("2024-12-01"), Qty=3.0, Price=10.0),
    ])


def test_revenue_margin_by_month_use_planned_then_latest_price():
    view = financial_view(plan(), items=ITEMS, prices=prices_from_sales(sales()))
    m = view.by_month.set_index("Month")
    # January: A 15 x 3 (latest) + B 4 x 10; February: A 15 x 4 (planned)
    assert m.loc[MONTHS[0], "Revenue"] == pytest.approx(15 * 3 + 4 * 10)
    assert m.loc[MONTHS[1], "Revenue"] == pytest.approx(15 * 4 + 4 * 10)
    assert m.loc[MONTHS[0], "Cost of goods"] == pytest.approx(15 * 2 + 4 * 5)
    assert m.loc[MONTHS[0], "Margin"] == pytest.approx(85 - 50)
    assert m.loc[MONTHS[0], "Margin %"] == pytest.approx(35 / 85)
    assert m.loc[MONTHS[0], "Revenue from overrides"] == pytest.approx(5 * 3)
    assert m.loc[MONTHS[0], "Units"] == pytest.approx(15 + 4 + 1)
    cat = view.by_category.set_index(["Category", "Month"])
    assert cat.loc[("Drinks", MONTHS[0]), "Revenue"] == pytest.approx(85)
    assert np.isnan(cat.loc[("Food", MONTHS[0]), "Revenue"])          # C has neither price nor cost
    assert any("no price" in a for a in view.assumptions)
    assert any("no UnitCost" in a for a in view.assumptions)


def test_inventory_value_is_average_stock_times_cost_each_month():
    policy = pd.DataFrame({"SKU": ["A", "B"], "Location": ["", ""], "SafetyStock": [6.0, 2.0],
                           "OrderQty": [20.0, 8.0]})
    view = financial_view(plan(), items=ITEMS, prices=prices_from_sales(sales()), policy=policy)
    expected = (6 + 10) * 2.0 + (2 + 4) * 5.0
    assert view.by_month["Inventory value"].tolist() == pytest.approx([expected] * 3)
    s = view.series.set_index("SKU")
    assert s.loc["A", "Average stock"] == pytest.approx(16.0)


def test_a_stock_projection_values_the_month_end_stock():
    stock = pd.DataFrame({"SKU": "A", "Location": "", "Period": MONTHS, "Units": [30.0, 20.0, 10.0]})
    view = financial_view(plan(), items=ITEMS, prices=prices_from_sales(sales()), stock=stock)
    assert view.by_month["Inventory value"].tolist() == pytest.approx([60.0, 40.0, 20.0])


def test_scenario_stock_outs_in_money():
    series = pd.DataFrame({"Scenario": ["Late", "Late"], "SKU": ["A", "B"], "Location": ["", ""],
                           "Stock-out units (baseline)": [0.0, 1.0], "Stock-out units (scenario)": [10.0, 2.0],
                           "Inventory value (baseline)": [100.0, 50.0], "Inventory value (scenario)": [80.0, 50.0]})
    money = scenario_money(series, plan=plan(), items=ITEMS, prices=prices_from_sales(sales()))
    row = money.iloc[0]
    price_a = np.mean([3.0, 4.0, 4.0])                 # January latest, then the planned rise
    assert row["Revenue lost (scenario)"] == pytest.approx(10 * price_a + 2 * 10.0)
    assert row["Revenue at risk"] == pytest.approx(10 * price_a + 10.0)
    assert row["Margin at risk"] == pytest.approx(10 * (price_a - 2.0) + (10.0 - 5.0))
    assert row["Inventory value change"] == pytest.approx(-20.0)

"""Projected inventory (stock-out dates a planner can check by hand), OpenOrders/Deliveries
validation, and the S&OE KPIs (OTIF on a hand-made Deliveries table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.projection import (PROJECTION_PERIOD_COLUMNS, PROJECTION_SERIES_COLUMNS, execution_kpis,
                               project_inventory, validate_deliveries, validate_open_orders)

WEEKS = pd.date_range("2024-01-01", periods=6, freq="7D")   # Mondays


def _policy(rows: list[dict]) -> pd.DataFrame:
    base = {"Location": "L1", "OnHand": 100.0, "OnOrder": 0.0, "LeadTimeDays": 14.0, "ReorderPoint": np.nan,
            "OrderUpTo": np.nan, "ReviewPeriodDays": 0.0, "UnitCost": 2.0, "OrderMultiple": 1.0, "MOQ": 0.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def _plan(skus: list[str], p50: float | list[float] = 10.0, loc: str = "L1") -> pd.DataFrame:
    vals = np.broadcast_to(np.asarray(p50, dtype=float), (len(WEEKS),))
    return pd.DataFrame({"SKU": np.repeat(skus, len(WEEKS)), "Location": loc,
                         "Period": np.tile(WEEKS, len(skus)), "P50": np.tile(vals, len(skus))})


def test_stockout_date_matches_a_hand_computed_example() -> None:
    # 25 on hand, 10 a week: 15 after week 1, 5 after week 2; week 3 (from Jan 15) starts
    # with 5 = half a week of demand, so the shelf is empty from day 3.5 -> Thursday Jan 18.
    # The open order of 40 is due Wednesday Jan 24: it lands in the week of Jan 22.
    pol = _policy([{"SKU": "A", "OnHand": 25.0}])
    oo = pd.DataFrame({"SKU": ["A"], "Location": ["L1"], "Qty": [40], "DueDate": ["2024-01-24"],
                       "Supplier": ["ACME"]})
    pr = project_inventory(pol, _plan(["A"]), open_orders=oo, freq="W")
    s = pr.series.iloc[0]
    assert s["StockoutDate"] == pd.Timestamp("2024-01-18")
    assert s["DaysToStockout"] == 17
    assert s["NextReceiptDate"] == pd.Timestamp("2024-01-24") and s["NextReceiptQty"] == 40
    assert bool(s["StockoutBeforeReceipt"]) and s["ShortBeforeReceipt"] == pytest.approx(5.0)
    per = pr.periods
    assert list(per["ProjectedOnHand"]) == [15, 5, 0, 30, 20, 10]
    assert list(per["Receipts"]) == [0, 0, 0, 40, 0, 0]
    assert list(pr.series.columns) == list(PROJECTION_SERIES_COLUMNS)
    assert list(per.columns) == list(PROJECTION_PERIOD_COLUMNS)


def test_receipt_in_time_means_no_stockout_before_receipt() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 25.0}])
    oo = pd.DataFrame({"SKU": ["A"], "Location": ["L1"], "Qty": [40], "DueDate": ["2024-01-15"]})
    s = project_inventory(pol, _plan(["A"]), open_orders=oo, freq="W").series.iloc[0]
    assert not s["StockoutBeforeReceipt"]
    assert pd.isna(s["StockoutDate"])          # 25 + 40 covers the six weeks' 60


def test_without_open_orders_items_on_order_arrives_after_the_lead_time_and_says_so() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 25.0, "OnOrder": 40.0, "LeadTimeDays": 21.0}])
    pr = project_inventory(pol, _plan(["A"]), freq="W")
    s = pr.series.iloc[0]
    assert s["NextReceiptDate"] == pd.Timestamp("2024-01-22")
    assert "after the lead time" in s["Notes"] and s["ReceiptSource"].startswith("Items OnOrder")
    assert any("No OpenOrders table" in a for a in pr.assumptions)
    assert list(pr.periods["Receipts"]) == [0, 0, 0, 40, 0, 0]


def test_overdue_order_arrives_in_the_first_period_and_is_flagged() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 5.0}])
    oo = pd.DataFrame({"SKU": ["A"], "Location": ["L1"], "Qty": [30], "DueDate": ["2023-12-20"]})
    pr = project_inventory(pol, _plan(["A"]), open_orders=oo, freq="W")
    assert pr.periods["Receipts"].iat[0] == 30
    assert "overdue" in pr.series["Notes"].iat[0]


def test_orders_for_unplanned_skus_are_ignored_with_a_warning_naming_the_row() -> None:
    pol = _policy([{"SKU": "A"}])
    oo = pd.DataFrame({"SKU": ["A", "ZZZ"], "Location": ["L1", "L1"], "Qty": [10, 10],
                       "DueDate": ["2024-01-10", "2024-01-10"]})
    pr = project_inventory(pol, _plan(["A"]), open_orders=oo, freq="W", first_row=4)
    assert pr.series["OnOrder"].iat[0] == 10
    assert [(p.row, p.severity, p.code) for p in pr.problems] == [(5, "warning", "E106")]


def test_planned_projection_reorders_at_the_reorder_point() -> None:
    # (s, S) with s = 30, S = 80, lead time 1 week: the committed projection runs dry in
    # week 5, the planned one orders when the position reaches 30 and never runs out.
    pol = _policy([{"SKU": "A", "OnHand": 45.0, "ReorderPoint": 30.0, "OrderUpTo": 80.0, "LeadTimeDays": 7.0}])
    pr = project_inventory(pol, _plan(["A"]), freq="W")
    s = pr.series.iloc[0]
    assert s["StockoutDate"] == pd.Timestamp("2024-01-29") + pd.Timedelta(days=3)
    assert s["PlannedShortUnits"] == 0 and s["PlannedFillRate"] == 1.0
    assert pr.periods["PlannedReceipts"].sum() > 0


def test_excess_is_stock_above_order_up_to_plus_one_pack() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 100.0, "OnOrder": 20.0, "OrderUpTo": 90.0, "OrderMultiple": 10.0,
                    "UnitCost": 3.0}])
    pr = project_inventory(pol, _plan(["A"]), freq="W")
    assert pr.series["MaxStock"].iat[0] == 100 and pr.series["ExcessUnits"].iat[0] == 20
    k = execution_kpis(pr).summary.set_index("KPI")["Value"]
    assert k["Excess units"] == 20 and k["Excess value"] == 60


def test_open_orders_problems_name_row_column_value_and_fix() -> None:
    oo = pd.DataFrame({"sku": ["A", "B", None, "D"], "location": ["L1"] * 4, "QTY": ["12", "abc", 5, -3],
                       "Due Date": ["2024-01-10", "2024-01-11", "2024-01-12", "soon"]})
    with pytest.raises(InputError) as e:
        validate_open_orders(oo, first_row=5)
    got = {(p.row, p.column) for p in e.value.problems}
    assert got == {(6, "Qty"), (7, "SKU"), (8, "Qty"), (8, "DueDate")}
    bad_qty = next(p for p in e.value.problems if p.row == 6)
    assert bad_qty.table == "OpenOrders" and bad_qty.value == "abc" and "number" in bad_qty.fix
    with pytest.raises(InputError) as e:
        validate_open_orders(pd.DataFrame({"SKU": ["A"], "Qty": [1]}))
    assert [(p.column, p.code, p.row) for p in e.value.problems] == [("DueDate", "E101", None)]


def test_otif_on_a_hand_made_deliveries_table() -> None:
    d = pd.DataFrame({
        "Order": ["O1", "O1", "O2", "O3", "O4", "O4", "O5", "O6"],
        "SKU": ["A", "B", "A", "A", "B", "B", "A", "B"],
        "PromisedDate": ["2024-01-10", "2024-01-10", "2024-01-10", "2024-01-12", "2024-01-15", "2024-01-15",
                         "2024-03-01", "2024-01-05"],
        "PromisedQty": [10, 5, 10, 10, 8, 8, 10, 4],
        "DeliveredDate": ["2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12", "2024-01-13", "2024-01-15",
                          None, None],
        "DeliveredQty": [10, 5, 10, 7, 3, 5, None, None],
    })
    pol = _policy([{"SKU": "A"}, {"SKU": "B"}])
    k = execution_kpis(project_inventory(pol, _plan(["A", "B"]), freq="W"), deliveries=d, as_of="2024-01-31")
    v = k.summary.set_index("KPI")["Value"]
    # O1 both lines fine; O2 a day late; O3 short; O4 split shipment, complete on the promised
    # day; O5 not due yet (left out); O6 overdue and not delivered.
    assert v["OTIF (orders)"] == pytest.approx(2 / 5)
    assert v["OTIF (lines)"] == pytest.approx(3 / 6)
    assert v["On time (lines)"] == pytest.approx(4 / 6)
    assert v["In full (lines)"] == pytest.approx(4 / 6)
    assert v["Delivery fill rate"] == pytest.approx((10 + 5 + 10 + 7 + 8 + 0) / (10 + 5 + 10 + 10 + 8 + 4))
    assert len(k.deliveries) == 7          # O4's two shipments are one line


def test_deliveries_problems() -> None:
    d = pd.DataFrame({"Order": ["O1", "O2"], "SKU": ["A", "A"], "PromisedDate": ["2024-01-10", "2024-01-10"],
                      "PromisedQty": [10, 10], "DeliveredDate": [None, "2024-01-10"], "DeliveredQty": [10, None]})
    with pytest.raises(InputError) as e:
        validate_deliveries(d)
    assert {(p.table, p.row, p.column) for p in e.value.problems} == {
        ("Deliveries", 2, "DeliveredDate"), ("Deliveries", 3, "DeliveredQty")}


def test_kpis_availability_coverage_and_fill_rate() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 25.0}, {"SKU": "B", "OnHand": 100.0}])
    k = execution_kpis(project_inventory(pol, _plan(["A", "B"]), freq="W"))
    v = k.summary.set_index("KPI")["Value"]
    # A is empty after week 3 and never reordered (no policy levels): 2 of 6 periods end with stock
    assert k.per_series["Availability"].tolist() == pytest.approx([2 / 6, 1.0])
    assert v["Fill rate (projected)"] == pytest.approx(1 - 35 / 120)
    assert k.per_series["DaysOfCoverage"].tolist() == pytest.approx([17.5, 70.0])
    assert v["Stock-outs before next receipt"] == 1

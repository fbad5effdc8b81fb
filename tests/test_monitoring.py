"""Execution monitoring: deviations and tracking signal by hand, and the alerts a planner
acts on (bias, outside the band, stock-out before the next receipt, excess), ranked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.monitoring import ALERT_COLUMNS, DEVIATION_COLUMNS, monitor

WEEKS = pd.date_range("2024-01-01", periods=12, freq="7D")


def _plan(skus: list[str], p50: float = 100.0, spread: float = 20.0, loc: str = "L1") -> pd.DataFrame:
    n = len(WEEKS)
    return pd.DataFrame({"SKU": np.repeat(skus, n), "Location": loc, "Period": np.tile(WEEKS, len(skus)),
                         "P10": p50 - spread, "P50": p50, "P90": p50 + spread})


def _actuals(series: dict[str, list[float]], loc: str = "L1") -> pd.DataFrame:
    rows = [{"SKU": s, "Location": loc, "Date": WEEKS[t], "Qty": q} for s, qs in series.items()
            for t, q in enumerate(qs)]
    return pd.DataFrame(rows)


def _policy(rows: list[dict]) -> pd.DataFrame:
    base = {"Location": "L1", "OnHand": 1000.0, "OnOrder": 0.0, "LeadTimeDays": 14.0, "ReorderPoint": 300.0,
            "OrderUpTo": 600.0, "SuggestedOrder": 0.0, "UnitCost": 2.0, "OrderMultiple": 1.0, "MOQ": 0.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_deviation_bias_and_tracking_signal_by_hand() -> None:
    m = monitor(_plan(["A"]), _actuals({"A": [110, 110, 95]}), freq="W")
    d = m.deviations
    assert list(d.columns) == list(DEVIATION_COLUMNS) and len(d) == 3
    assert d["Deviation"].tolist() == [10, 10, -5]
    assert d["CumDeviation"].tolist() == [10, 20, 15]
    assert d["MAD"].iat[-1] == pytest.approx(25 / 3)
    assert d["TrackingSignal"].iat[-1] == pytest.approx(15 / (25 / 3))
    assert d["Bias"].iat[-1] == pytest.approx(15 / 300)
    assert m.summary["WAPE"].iat[0] == pytest.approx(25 / 315)


def test_tracking_signal_alert_fires_on_a_biased_series_and_not_on_an_unbiased_one() -> None:
    biased = [112, 108, 115, 110, 118, 111, 109, 113]      # always above a plan of 100
    unbiased = [110, 90, 112, 88, 109, 91, 111, 89]         # same size of misses, both ways
    items = pd.DataFrame({"SKU": ["A", "B"], "UnitCost": [2.0, 2.0]})
    m = monitor(_plan(["A", "B"]), _actuals({"A": biased, "B": unbiased}), freq="W", items=items)
    bias = m.alerts[m.alerts["Alert"] == "Bias"]
    assert bias["SKU"].tolist() == ["A"]
    row = bias.iloc[0]
    assert row["Size"] == pytest.approx(8.0)                 # every error positive: TS = periods
    assert "above plan" in row["What happened"] and "12%" in row["What happened"]
    assert "Raise the forecast" in row["Suggested action"]
    # the mean excess (12 a week) over the 4 periods left in the plan
    assert row["ServiceImpact"] == pytest.approx(12 * 4)
    assert row["ValueImpact"] == pytest.approx(12 * 4 * 2.0)
    assert abs(m.summary.set_index("SKU").loc["B", "TrackingSignal"]) < 4


def test_demand_below_plan_gives_a_lower_the_forecast_alert() -> None:
    m = monitor(_plan(["A"]), _actuals({"A": [90, 85, 92, 88, 91]}), freq="W", items=pd.DataFrame(
        {"SKU": ["A"], "UnitCost": [3.0]}))
    row = m.alerts[m.alerts["Alert"] == "Bias"].iloc[0]
    assert row["Size"] < -4 and row["ServiceImpact"] == 0
    assert "Lower the forecast" in row["Suggested action"]
    assert row["ValueImpact"] == pytest.approx(10.8 * 7 * 3.0)   # 10.8 a week too much, 7 weeks left


def test_latest_actual_outside_p10_p90_raises_one_alert_each_way() -> None:
    m = monitor(_plan(["A", "B", "C"]), _actuals({"A": [100, 150], "B": [100, 60], "C": [100, 119]}), freq="W")
    a = m.alerts.set_index("SKU")
    assert a.loc["A", "Alert"] == "Above P90" and a.loc["A", "Size"] == 30
    assert a.loc["B", "Alert"] == "Below P10" and a.loc["B", "Size"] == 20
    assert "C" not in a.index
    assert "150" in a.loc["A", "What happened"] and "P90 of 120" in a.loc["A", "What happened"]
    assert "lost sales" in a.loc["B", "Suggested action"]


def test_daily_actuals_are_summed_into_the_weekly_plan() -> None:
    days = pd.date_range("2024-01-01", periods=14, freq="D")
    act = pd.DataFrame({"SKU": "A", "Location": "L1", "Date": days, "Qty": 100 / 7})
    d = monitor(_plan(["A"]), act, freq="W").deviations
    assert d["Actual"].tolist() == pytest.approx([100, 100])


def test_missing_sales_in_an_elapsed_period_count_as_zero() -> None:
    act = _actuals({"A": [100, 100, 100], "B": [100]})
    d = monitor(_plan(["A", "B"]), act, freq="W").deviations
    assert d[d["SKU"] == "B"]["Actual"].tolist() == [100, 0, 0]


def test_stockout_before_receipt_alert_suggests_expedite_transfer_or_order() -> None:
    plan = pd.concat([_plan(["A"]), _plan(["A"], loc="L2"), _plan(["X"])], ignore_index=True)
    act = pd.concat([_actuals({"A": [100] * 4}), _actuals({"A": [100] * 4}, loc="L2"),
                     _actuals({"X": [100] * 4})], ignore_index=True)
    pol = _policy([
        {"SKU": "A", "OnHand": 150.0, "SuggestedOrder": 500.0},   # runs out in the 2nd remaining week
        {"SKU": "A", "Location": "L2", "OnHand": 900.0, "ReorderPoint": 300.0},
        {"SKU": "X", "OnHand": 2000.0, "OnOrder": 0.0},           # far above max 601
    ])
    oo = pd.DataFrame({"SKU": ["A"], "Location": ["L1"], "Qty": [400], "DueDate": ["2024-02-21"]})
    m = monitor(plan, act, policy=pol, freq="W", open_orders=oo)
    assert list(m.alerts.columns) == list(ALERT_COLUMNS)
    so = m.alerts[m.alerts["Alert"] == "Stock-out before receipt"].iloc[0]
    assert (so["SKU"], so["Location"]) == ("A", "L1")
    # remaining plan starts Jan 29: 150 lasts to mid-week 2 (Feb 5 + 3.5 days), order due Feb 21
    assert so["Date"] == pd.Timestamp("2024-02-08")
    assert so["ServiceImpact"] == pytest.approx(50 + 100)      # weeks of Feb 5 and Feb 12, before the receipt
    assert "expedite the order due 2024-02-21" in so["Suggested action"].lower()
    assert "transfer 150 units from L2" in so["Suggested action"]
    assert "raise an order of 500 units" in so["Suggested action"]
    excess = m.alerts[m.alerts["Alert"] == "Excess"].set_index(["SKU", "Location"])
    # the other location of A holds too much: the action is to send it where A runs out
    assert "Transfer up to 299 units to L1" in excess.loc[("A", "L2"), "Suggested action"]
    ex = m.alerts[(m.alerts["Alert"] == "Excess") & (m.alerts["SKU"] == "X")].iloc[0]
    assert ex["Size"] == pytest.approx(2000 - 601)
    assert ex["ValueImpact"] == pytest.approx((2000 - 601) * 2.0)
    # service-threatening alerts rank above value-only ones
    assert so["Rank"] < ex["Rank"]
    assert m.alerts["Rank"].tolist() == list(range(1, len(m.alerts) + 1))
    assert m.projection is not None and m.kpis.set_index("KPI").loc["Alerts: Excess", "Value"] == 2


def test_missing_columns_and_no_overlap_are_input_errors() -> None:
    with pytest.raises(InputError) as e:
        monitor(_plan(["A"]), pd.DataFrame({"SKU": ["A"], "Qty": [1]}), freq="W")
    assert [p.column for p in e.value.problems] == ["Date"]
    old = pd.DataFrame({"SKU": ["A"], "Location": ["L1"], "Date": ["2020-01-06"], "Qty": [5]})
    with pytest.raises(InputError) as e:
        monitor(_plan(["A"]), old, freq="W")
    assert "nothing to compare" in str(e.value)

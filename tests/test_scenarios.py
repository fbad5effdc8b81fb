"""What-if scenarios: the Monte Carlo answers a planner's questions (a late supplier, a
promotion, a driver change, a new service target), names the SKUs that run out, ranks
mitigations by their simulated effect, and refuses bad Scenario rows clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.policy import build_policy
from engine.scenarios import (MITIGATION_COLUMNS, SERIES_COLUMNS, SUMMARY_COLUMNS, DriverChange,
                              demand_from_quantiles, model_driver_forecast, parse_scenarios, run_scenarios)
from engine.simulation import run_inventory
from engine.synthetic import generate_panel

PATHS = 200


@pytest.fixture(scope="module")
def world() -> dict:
    """A synthetic panel planned with the engine's own policy: plan = recent mean +/- spread,
    half the SKUs supplied by ACME, open orders for the Items' OnOrder due within a week."""
    panel = generate_panel("W", n_skus=12, n_locations=2, seed=5, periods=80, horizon=12)
    hist = panel.sales.astype({"SKU": str, "Location": str})[["SKU", "Location", "Date", "Qty"]]
    g = hist.groupby(["SKU", "Location"])["Qty"]
    st = pd.DataFrame({"mu": g.apply(lambda s: s.tail(13).mean()),
                       "sd": g.apply(lambda s: s.tail(26).std())}).reset_index()
    dates = pd.DatetimeIndex(sorted(panel.future["Date"].unique()))
    plan = st.merge(pd.DataFrame({"Period": dates}), how="cross")
    plan["P50"] = plan["mu"]
    plan["P10"] = np.maximum(plan["mu"] - 1.2816 * plan["sd"], 0.0)
    plan["P90"] = plan["mu"] + 1.2816 * plan["sd"]
    plan = plan[["SKU", "Location", "Period", "P10", "P50", "P90"]]
    items = panel.items.astype({"SKU": str, "Location": str})
    sku_no = items["SKU"].str[-2:].astype(int)
    items["Supplier"] = np.where(sku_no % 2 == 1, "ACME", "Globex")
    policy = build_policy(plan, cube=None, history=hist, items=items, freq="W")
    # Stock at the reorder point and a week's demand on order: the system depends on deliveries.
    policy["OnHand"] = np.round(policy["ReorderPoint"] * 0.6)
    oo = policy[["SKU", "Location"]].assign(Qty=np.round(policy["DailyDemand"] * 14) + 1,
                                           DueDate=dates[0] + pd.Timedelta(days=5))
    return {"plan": plan, "items": items, "policy": policy, "open_orders": oo, "dates": dates}


def _run(world: dict, rows: list[dict] | None, **kw) -> object:
    table = None if rows is None else pd.DataFrame(rows)
    kw.setdefault("paths", PATHS)
    return run_scenarios(table, policy=world["policy"], forecast=world["plan"], freq="W", items=world["items"],
                         open_orders=world["open_orders"], **kw)


def test_supplier_delay_lowers_fill_rate_and_names_the_skus_that_stock_out(world) -> None:
    res = _run(world, [{"Scenario": "ACME 3 weeks late", "Type": "Supplier delay", "Target": "Supplier",
                        "Name": "ACME", "Value": 21}])
    row = res.summary.iloc[0]
    assert row["Fill rate (scenario)"] < row["Fill rate (baseline)"] - 0.01
    assert row["Stock-out units (scenario)"] > row["Stock-out units (baseline)"]
    assert row["SKUs out of stock (scenario)"] > row["SKUs out of stock (baseline)"]
    named = [x.split("@")[0] for x in row["New stock-outs vs baseline"].split(", ") if x and "more" not in x]
    assert named, "the scenario must name the SKUs that newly stock out"
    acme = set(world["items"].loc[world["items"]["Supplier"] == "ACME", "SKU"])
    assert set(named) <= acme                       # only the late supplier's SKUs run out because of it
    per = res.series.set_index(["SKU", "Location"])
    assert per.loc[per["Affected"], "Fill rate (scenario)"].mean() < per.loc[per["Affected"],
                                                                               "Fill rate (baseline)"].mean()
    untouched = per[~per["Affected"]]
    # common random numbers: SKUs the scenario does not touch come out exactly as in the baseline
    assert (untouched["Fill rate (scenario)"] == untouched["Fill rate (baseline)"]).all()
    assert row["First stock-out (scenario)"] >= world["dates"][0]


def test_headers_name_baseline_and_fill_rate(world) -> None:
    res = _run(world, [{"Scenario": "Promo", "Type": "Promotion", "Value": "30%"}])
    assert list(res.summary.columns) == list(SUMMARY_COLUMNS)
    assert list(res.series.columns) == list(SERIES_COLUMNS)
    assert list(res.mitigations.columns) == list(MITIGATION_COLUMNS)
    heads = " ".join(res.summary.columns).lower()
    assert "baseline" in heads and "fill rate" in heads


def test_promotion_raises_expected_stockouts_and_the_dip_lowers_them_after(world) -> None:
    d = world["dates"]
    res = _run(world, [
        {"Scenario": "Promo +30 %", "Type": "Promotion", "Target": "All", "Value": 30},
        {"Scenario": "Short promo", "Type": "Promotion", "Value": 0.5, "Start": d[0], "End": d[1]},
        {"Scenario": "Short promo + dip", "Type": "Promotion", "Value": 0.5, "Start": d[0], "End": d[1],
         "Dip": "90%"},
    ])
    s = res.summary.set_index("Scenario")
    assert s.loc["Promo +30 %", "Stock-out units (scenario)"] > 1.5 * s.loc["Promo +30 %",
                                                                            "Stock-out units (baseline)"]
    assert s.loc["Promo +30 %", "Fill rate (scenario)"] < s.loc["Promo +30 %", "Fill rate (baseline)"]
    assert s.loc["Short promo + dip", "Stock-out units (scenario)"] < s.loc["Short promo",
                                                                            "Stock-out units (scenario)"]
    assert "demand +50%" in s.loc["Short promo + dip", "What changes"] and "dip" in s.loc["Short promo + dip",
                                                                                          "What changes"]


def test_same_seed_same_answer_and_a_null_scenario_is_the_baseline(world) -> None:
    rows = [{"Scenario": "Nothing", "Type": "Lead time", "Value": 0}]
    a = _run(world, rows, seed=3)
    b = _run(world, rows, seed=3)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    r = a.summary.iloc[0]
    assert r["Fill rate (scenario)"] == r["Fill rate (baseline)"]
    assert r["Stock-out units (scenario)"] == r["Stock-out units (baseline)"]
    c = _run(world, rows, seed=4)
    assert c.summary["Stock-out units (baseline)"].iat[0] != r["Stock-out units (baseline)"]


def test_supplier_delay_hits_open_orders_a_lead_time_change_does_not(world) -> None:
    res = _run(world, [
        {"Scenario": "Delay", "Type": "Supplier delay", "Value": 21},
        {"Scenario": "Longer lead time", "Type": "Lead time", "Value": 21},
    ])
    s = res.summary.set_index("Scenario")["Stock-out units (scenario)"]
    assert s["Delay"] > s["Longer lead time"] > res.summary["Stock-out units (baseline)"].iat[0]


def test_higher_service_target_buys_fill_rate_with_inventory(world) -> None:
    res = _run(world, [{"Scenario": "99 %", "Type": "Service level", "Value": "99%"}])
    r = res.summary.iloc[0]
    assert r["Fill rate (scenario)"] > r["Fill rate (baseline)"]
    assert r["Inventory value (scenario)"] > r["Inventory value (baseline)"]


def test_driver_scenario_goes_through_the_forecast_callback(world) -> None:
    plan = world["plan"]
    calls: list[list[DriverChange]] = []

    def fake_model(changes):
        calls.append(list(changes))
        out = plan.copy()
        for ch in changes:   # a heatwave lifts LOC-01's demand by 10 % per degree
            hot = out["Location"] == (ch.location or out["Location"])
            for q in ("P10", "P50", "P90"):
                out.loc[hot, q] *= 1 + 0.1 * ch.value
        return out

    rows = [{"Scenario": "Heatwave", "Type": "Driver", "Target": "Location", "Name": "LOC-01",
             "Driver": "Temperature", "Value": 3}]
    res = _run(world, rows, driver_forecast=fake_model, drivers=["Temperature", "CPI"])
    assert [c.driver for c in calls[-1]] == ["Temperature"] and calls[-1][0].location == "LOC-01"
    per = res.series
    assert per.loc[per["Location"] == "LOC-01", "Affected"].all()
    assert not per.loc[per["Location"] == "LOC-02", "Affected"].any()
    r = res.summary.iloc[0]
    assert r["Stock-out units (scenario)"] > r["Stock-out units (baseline)"]
    with pytest.raises(InputError) as e:
        _run(world, rows)                               # no model: refused, naming the row
    assert e.value.problems[0].row == 2 and e.value.problems[0].column == "Type"


def test_mitigations_are_ranked_by_simulated_effect(world) -> None:
    res = _run(world, [{"Scenario": "ACME 3 weeks late", "Type": "Supplier delay", "Target": "Supplier",
                        "Name": "ACME", "Value": 21}])
    m = res.mitigations
    assert len(m) and m["Rank"].tolist() == list(range(1, len(m) + 1))
    assert (m["Units saved"] > 0).all()
    assert m["Value saved"].is_monotonic_decreasing
    assert {"Expedite", "Order now"} <= set(m["Action"])
    assert (m["Fill rate (with action)"] >= m["Fill rate (scenario)"] - 1e-12).all()
    assert res.summary["Best mitigation"].iat[0].startswith(m["Detail"].iat[0])


def test_transfer_between_locations_of_the_same_sku() -> None:
    dates = pd.date_range("2024-01-01", periods=8, freq="7D")
    plan = pd.DataFrame({"SKU": "A", "Location": np.repeat(["L1", "L2"], 8), "Period": np.tile(dates, 2),
                         "P10": 8.0, "P50": 10.0, "P90": 12.0})
    policy = pd.DataFrame({"SKU": ["A", "A"], "Location": ["L1", "L2"], "OnHand": [5.0, 200.0],
                           "ReorderPoint": [25.0, 25.0], "OrderUpTo": [45.0, 45.0], "LeadTimeDays": [28.0, 28.0],
                           "UnitCost": [1.0, 1.0]})
    res = run_scenarios(pd.DataFrame([{"Scenario": "Late", "Type": "Supplier delay", "Value": 14}]), policy=policy,
                        forecast=plan, freq="W", paths=100)
    t = res.mitigations[res.mitigations["Action"] == "Transfer"]
    assert len(t) == 1 and t["Location"].iat[0] == "L1" and "from L2 to L1" in t["Detail"].iat[0]
    assert t["Units saved"].iat[0] > 5 and t["Fill rate (with action)"].iat[0] > t["Fill rate (scenario)"].iat[0]


def test_bad_scenario_rows_name_table_row_column_value_and_fix(world) -> None:
    table = pd.DataFrame({
        "Scenario": ["A", "B", "C", "D", "E", "", "G"],
        "Type": ["Earthquake", "Supplier delay", "Promotion", "Promotion", "Service level", "Lead time", "Driver"],
        "Target": [None, "Supplier", "SKU", "All", "All", "All", "All"],
        "Name": [None, "Initech", "SKU-0001", None, None, None, None],
        "Value": [1, 10, "lots", 20, "150%", 5, 2],
        "Start": [None, None, None, "2024-03-01", None, None, None],
        "End": [None, None, None, "2024-02-01", None, None, None],
        "Driver": [None, None, None, None, None, None, "Humidity"],
    })
    with pytest.raises(InputError) as e:
        parse_scenarios(table, policy=world["policy"], items=world["items"], drivers=["Temperature"], first_row=3)
    got = {(p.row, p.column): p for p in e.value.problems}
    assert {k for k in got} == {(3, "Type"), (4, "Name"), (5, "Value"), (6, "End"), (7, "Value"), (8, "Scenario"),
                                (9, "Driver")}
    assert all(p.table == "Scenario" for p in e.value.problems)
    assert got[(4, "Name")].value == "Initech" and "ACME" in got[(4, "Name")].fix
    assert got[(5, "Value")].value == "lots"
    assert "Supplier delay" in got[(3, "Type")].fix
    assert "Temperature" in got[(9, "Driver")].fix
    with pytest.raises(InputError) as e:
        parse_scenarios(pd.DataFrame({"Scenario": ["x"], "Type": ["Promotion"]}), policy=world["policy"])
    assert [(p.column, p.code) for p in e.value.problems] == [("Value", "E101")]


def test_scenario_names_are_matched_case_insensitively(world) -> None:
    ch = parse_scenarios(pd.DataFrame({"scenario": ["x"], "TYPE": ["promo"], "target": ["category"],
                                       "name": [world["items"]["Category"].iat[0].upper()], "value": ["+25 %"]}),
                         policy=world["policy"], items=world["items"])
    assert ch[0].kind == "demand change" and ch[0].value == pytest.approx(0.25)
    assert ch[0].name == world["items"]["Category"].iat[0]


def test_two_piece_demand_reproduces_p10_p50_p90() -> None:
    z = np.random.default_rng(0).standard_normal(400_000)
    for p10, p50, p90 in ((60.0, 100.0, 170.0), (0.0, 0.0, 4.0), (0.0, 2.0, 9.0)):
        d = demand_from_quantiles(z, np.float64(p10), np.float64(p50), np.float64(p90))
        assert d.min() >= 0
        got = np.quantile(d, [0.1, 0.5, 0.9])
        assert got == pytest.approx([p10, p50, p90], abs=0.02 * max(p90, 1))
    # skewed upwards: the mean of a right-skewed plan lies above its median
    d = demand_from_quantiles(z, 60.0, 100.0, 170.0)
    assert d.mean() > 100


def test_run_inventory_from_a_given_state_by_hand() -> None:
    # 12 on hand, an order of 20 arriving in period 2, demand 5 a period, (s, S) = (10, 30),
    # lead time 1: period 0 position 32 > 10; period 1 position 27; period 2 receipt, 22;
    # period 3 position 17, period 4 12, period 5 position 7 <= 10 -> order 23, arrives in period 6.
    y = np.full((1, 8), 5.0)
    arr = np.zeros((1, 10))
    arr[0, 2] = 20.0
    run = run_inventory(y, net=np.array([12.0]), arrivals=arr, pipeline=np.array([20.0]), level=np.array([30.0]),
                        reorder_point=np.array([10.0]), lead_time=np.array([1.0]), lost_sales=True)
    assert run.ordered[0] == 23 and arr[0, 6] == 23
    assert run.served[0] == 40 and run.first_stockout[0] == -1
    assert run.on_hand[0].tolist() == [7, 2, 17, 12, 7, 2, 20, 15]
    assert (run.cycles[0], run.stockout_cycles[0]) == (3, 0)


def test_model_driver_forecast_changes_only_future_rows() -> None:
    seen = []

    class Model:
        def predict(self, horizon, drivers=None):
            seen.append(drivers.copy())
            return pd.DataFrame({"SKU": "A", "Location": "L1", "Date": pd.date_range("2024-03-04", periods=horizon,
                                                                                   freq="7D"),
                                 "P10": 1.0, "P50": 2.0, "P90": 3.0})

    drivers = pd.DataFrame({"Date": pd.date_range("2024-02-12", periods=6, freq="7D"), "Location": "L1",
                            "Temperature": 10.0, "CPI": 100.0})
    f = model_driver_forecast(Model(), drivers, 3)
    f([DriverChange("Temperature", 3.0), DriverChange("CPI", 0.02, relative=True)])
    changed = seen[-1]
    assert changed["Temperature"].tolist() == [10, 10, 10, 13, 13, 13]
    assert changed["CPI"].tolist() == pytest.approx([100, 100, 100, 102, 102, 102])
    assert drivers["Temperature"].tolist() == [10.0] * 6            # the caller's frame is untouched

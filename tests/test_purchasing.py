"""Purchase priority: urgency ranking, budget walk with cuts, and the reasons a buyer reads."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.purchasing import PURCHASE_COLUMNS, purchase_priority


def _policy(rows: list[dict]) -> pd.DataFrame:
    """Policy rows with neutral defaults for whatever a test does not care about."""
    base = {"Location": "L1", "OnHand": 100.0, "OnOrder": 0.0, "SuggestedOrder": 10.0, "OrderMultiple": 1.0,
            "MOQ": 0.0, "UnitCost": 1.0, "DailyDemand": 1.0, "LeadTimeDays": 10.0, "Strategic": False,
            "ServiceLevel": 0.95, "StockoutRisk": 0.1, "ExpectedShortUnits": 0.0, "Class": "BX"}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["InventoryPosition"] = frame["OnHand"] + frame["OnOrder"]
    return frame


def _order(out: pd.DataFrame) -> list[str]:
    return list(out["SKU"])


# --- what gets listed and how urgent it is ------------------------------------------------

def test_only_suggested_orders_are_listed_with_all_columns() -> None:
    out = purchase_priority(_policy([{"SKU": "A"}, {"SKU": "B", "SuggestedOrder": 0},
                                     {"SKU": "C", "SuggestedOrder": np.nan}]))
    assert _order(out) == ["A"]
    assert list(out.columns) == list(PURCHASE_COLUMNS)
    empty = purchase_priority(_policy([{"SKU": "B", "SuggestedOrder": 0}]), budget=100)
    assert len(empty) == 0 and list(empty.columns) == list(PURCHASE_COLUMNS)


@pytest.mark.parametrize(("on_hand", "urgency"), [(9.9, "late"), (10.0, "order now"), (16.9, "order now"),
                                                   (17.0, "planned")])
def test_urgency_compares_days_of_stock_with_lead_time(on_hand: float, urgency: str) -> None:
    out = purchase_priority(_policy([{"SKU": "A", "OnHand": on_hand}]))  # 1 unit/day, lead time 10 days
    assert out["Urgency"].iat[0] == urgency
    assert out["SlackDays"].iat[0] == pytest.approx(on_hand - 10)


def test_open_orders_count_as_stock_and_the_order_now_window_is_configurable() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 2.0, "OnOrder": 20.0, "DailyDemand": 2.0}])
    out = purchase_priority(pol)
    assert out["DaysOfStock"].iat[0] == pytest.approx(1.0)   # on hand only
    assert out["SlackDays"].iat[0] == pytest.approx(1.0)     # 22 / 2 - 10
    assert out["Urgency"].iat[0] == "order now"
    assert "stock and open orders last 11.0 days" in out["Why"].iat[0]
    assert purchase_priority(pol, order_now_days=0.5)["Urgency"].iat[0] == "planned"


def test_why_reads_like_a_buyers_note() -> None:
    out = purchase_priority(_policy([{"SKU": "A", "OnHand": 3.0, "Strategic": True, "StockoutRisk": np.nan}]))
    assert out["Why"].iat[0] == "stock lasts 3.0 days, lead time 10 days: 7.0 days late; strategic"


def test_no_demand_and_unknown_lead_time_do_not_break_the_list() -> None:
    out = purchase_priority(_policy([
        {"SKU": "IDLE", "DailyDemand": 0.0, "OnHand": 0.0},
        {"SKU": "NOLT", "LeadTimeDays": np.nan, "OnHand": 5.0},
    ]))
    idle = out.set_index("SKU").loc["IDLE"]
    assert math.isinf(idle["DaysOfStock"]) and idle["Urgency"] == "planned"
    assert "no forecast demand" in idle["Why"]
    nolt = out.set_index("SKU").loc["NOLT"]
    assert nolt["Urgency"] == "order now" and "lead time unknown" in nolt["Why"]


# --- ranking ------------------------------------------------------------------------------

def test_ranking_urgency_then_strategic_then_impact_then_slack_then_location_then_sku() -> None:
    pol = _policy([
        {"SKU": "PLANNED_BIG", "OnHand": 500.0, "ExpectedShortUnits": 1000.0, "Strategic": True},
        {"SKU": "LATE_SMALL", "OnHand": 1.0},
        {"SKU": "LATE_STRAT", "OnHand": 8.0, "Strategic": True},
        {"SKU": "LATE_IMPACT", "OnHand": 5.0, "ExpectedShortUnits": 5.0, "UnitCost": 10.0},
        {"SKU": "LATE_IMPACT_LOW", "OnHand": 5.0, "ExpectedShortUnits": 5.0, "UnitCost": 2.0},
        {"SKU": "NOW_B", "OnHand": 12.0, "Location": "L2"},
        {"SKU": "NOW_A", "OnHand": 12.0, "Location": "L2"},
        {"SKU": "NOW_Z", "OnHand": 12.0, "Location": "L1"},
    ])
    expected = ["LATE_STRAT", "LATE_IMPACT", "LATE_IMPACT_LOW", "LATE_SMALL", "NOW_A", "NOW_B", "NOW_Z",
                "PLANNED_BIG"]
    assert _order(purchase_priority(pol)) == expected
    # A preferred location goes first among equals.
    ranked = purchase_priority(pol, location_priority={"L1": 1, "L2": 2})
    assert _order(ranked)[4:7] == ["NOW_Z", "NOW_A", "NOW_B"]
    assert list(ranked["Rank"]) == list(range(1, 9))
    # The same list whatever the order of the policy rows.
    shuffled = pol.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert _order(purchase_priority(shuffled)) == expected


def test_service_impact_is_money_when_cost_is_known_and_units_otherwise() -> None:
    out = purchase_priority(_policy([
        {"SKU": "COSTED", "OnHand": 5.0, "ExpectedShortUnits": 4.0, "UnitCost": 2.5},
        {"SKU": "NOCOST", "OnHand": 5.0, "ExpectedShortUnits": 3.0, "UnitCost": np.nan},
        {"SKU": "CHEAP", "OnHand": 5.0, "ExpectedShortUnits": 1.0, "UnitCost": 1.0},
    ])).set_index("SKU")
    assert (out.loc["COSTED", "ServiceImpact"], out.loc["COSTED", "ImpactBasis"]) == (10.0, "value")
    assert (out.loc["NOCOST", "ServiceImpact"], out.loc["NOCOST", "ImpactBasis"]) == (3.0, "units")
    # Without a cost, 3 short units rank as if at the median cost (1.75): between 10.0 and 1.0.
    assert list(out.index) == ["COSTED", "NOCOST", "CHEAP"]
    assert math.isnan(out.loc["NOCOST", "OrderValue"]) and "unit cost unknown" in out.loc["NOCOST", "Why"]


# --- budget -------------------------------------------------------------------------------

def test_budget_cuts_an_order_to_pack_rules_and_later_small_orders_still_fit() -> None:
    pol = _policy([
        {"SKU": "FIRST", "OnHand": 0.0, "SuggestedOrder": 100.0, "UnitCost": 10.0, "OrderMultiple": 10.0,
         "MOQ": 20.0},
        {"SKU": "SECOND", "OnHand": 1.0, "SuggestedOrder": 50.0, "UnitCost": 2.0, "MOQ": 50.0},
        {"SKU": "THIRD", "OnHand": 20.0, "SuggestedOrder": 5.0, "UnitCost": 10.0},
    ])
    out = purchase_priority(pol, budget=655)
    assert list(zip(out["Rank"], out["SKU"], out["OrderQty"], out["InBudget"])) == [
        (1, "FIRST", 60.0, True),     # 1,000 needed; 65 units fit, cut to 6 packs of 10
        (1, "FIRST", 40.0, False),    # the remainder stays visible
        (2, "SECOND", 50.0, False),   # 100 needed, only 55 left, and the MOQ forbids a cut
        (3, "THIRD", 5.0, True),      # 50 fits in the 55 left
    ]
    assert "cut from 100 to 60 units" in out["Why"].iat[0]
    assert out["Why"].iat[2].startswith("does not fit the budget: needs 100.00, 55.00 left after higher-priority")
    assert list(out["CumulativeValue"]) == [600.0, 600.0, 600.0, 650.0]
    assert out.attrs["budget_left"] == pytest.approx(5.0)


def test_an_order_is_not_cut_below_its_moq() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 0.0, "SuggestedOrder": 100.0, "UnitCost": 1.0, "MOQ": 50.0}])
    out = purchase_priority(pol, budget=40)
    assert list(out["OrderQty"]) == [100.0] and not out["InBudget"].iat[0]
    assert "needs 100.00, 40.00 left" in out["Why"].iat[0]


def test_orders_without_cost_are_never_in_a_budget_and_zero_budget_buys_nothing() -> None:
    pol = _policy([{"SKU": "A", "UnitCost": np.nan}, {"SKU": "B", "UnitCost": 3.0}])
    out = purchase_priority(pol, budget=1_000_000).set_index("SKU")
    assert not out.loc["A", "InBudget"] and "cannot be checked against the budget" in out.loc["A", "Why"]
    assert out.loc["B", "InBudget"]
    assert not purchase_priority(pol, budget=0)["InBudget"].any()
    assert purchase_priority(pol)["InBudget"].all()  # no budget: everything is to be ordered


def test_large_amounts_read_with_thousands_separators() -> None:
    pol = _policy([{"SKU": "A", "OnHand": 0.0, "SuggestedOrder": 1234.0, "UnitCost": 1.0, "MOQ": 1234.0}])
    out = purchase_priority(pol, budget=567)
    assert "needs 1,234.00, 567.00 left after higher-priority orders" in out["Why"].iat[0]


@pytest.mark.parametrize("budget", [-1, "lots", float("nan"), True, float("inf")])
def test_bad_budget_is_refused_with_a_fix(budget) -> None:
    with pytest.raises(InputError) as exc:
        purchase_priority(_policy([{"SKU": "A"}]), budget=budget)
    p = exc.value.problems[0]
    assert p.column == "Budget" and p.fix and exc.value.code == "E110"


def test_bad_policy_frames_are_refused() -> None:
    with pytest.raises(InputError) as exc:
        purchase_priority(_policy([{"SKU": "A"}]).drop(columns=["DailyDemand", "LeadTimeDays"]))
    assert {p.column for p in exc.value.problems} == {"DailyDemand", "LeadTimeDays"}
    with pytest.raises(InputError) as exc:
        purchase_priority(_policy([{"SKU": "A"}, {"SKU": "A"}]))
    assert exc.value.code == "E103"
    with pytest.raises(InputError):
        purchase_priority(_policy([{"SKU": "A"}]), location_priority={"L1": "first"})


def test_minimal_policy_without_optional_columns() -> None:
    pol = pd.DataFrame({"SKU": ["A", "B"], "SuggestedOrder": [5, 3], "OnHand": [0, 50],
                        "DailyDemand": [1.0, 1.0], "LeadTimeDays": [5, 5]})
    out = purchase_priority(pol, budget=10)
    assert _order(out) == ["A", "B"]
    assert list(out["Location"]) == ["", ""]
    assert not out["InBudget"].any()  # no UnitCost column: nothing can be budgeted


# --- properties ---------------------------------------------------------------------------

_rows = st.lists(
    st.fixed_dictionaries({
        "SuggestedOrder": st.integers(0, 200).map(float),
        "OrderMultiple": st.sampled_from([1.0, 5.0, 12.0]),
        "MOQ": st.sampled_from([0.0, 10.0, 24.0]),
        "UnitCost": st.one_of(st.just(np.nan), st.floats(0.0, 50.0)),
        "OnHand": st.floats(0.0, 100.0),
        "DailyDemand": st.floats(0.0, 10.0),
        "LeadTimeDays": st.floats(0.0, 30.0),
        "Strategic": st.booleans(),
        "ExpectedShortUnits": st.floats(0.0, 50.0),
        "Location": st.sampled_from(["L1", "L2"]),
    }),
    min_size=1, max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(rows=_rows, budget=st.floats(0.0, 5000.0))
def test_in_budget_orders_never_exceed_the_budget(rows: list[dict], budget: float) -> None:
    pol = _policy([{**r, "SKU": f"S{i:02d}"} for i, r in enumerate(rows)])
    out = purchase_priority(pol, budget=budget)
    inb = out[out["InBudget"]]
    assert inb["OrderValue"].sum() <= budget * (1 + 1e-9) + 1e-9
    assert not inb["OrderValue"].isna().any()
    # Cut rows respect the pack rules; the parts of every order add up to what was suggested.
    sugg = pol.set_index("SKU")
    for _, r in inb.iterrows():
        if r["OrderQty"] != r["SuggestedOrder"]:
            assert r["OrderQty"] >= sugg.loc[r["SKU"], "MOQ"]
            assert r["OrderQty"] % sugg.loc[r["SKU"], "OrderMultiple"] == 0
    totals = out.groupby("SKU")["OrderQty"].sum()
    assert (totals == sugg.loc[totals.index, "SuggestedOrder"]).all()
    # Nothing left out that would still fit in the money left at the end.
    whole = out[~out["InBudget"] & ~out["Rank"].duplicated(keep=False) & out["OrderValue"].notna()]
    assert (whole["OrderValue"] > out.attrs["budget_left"]).all()


@settings(max_examples=80, deadline=None)
@given(rows=_rows, seed=st.integers(0, 1000))
def test_urgency_buckets_are_ordered_and_input_order_does_not_matter(rows: list[dict], seed: int) -> None:
    pol = _policy([{**r, "SKU": f"S{i:02d}"} for i, r in enumerate(rows)])
    out = purchase_priority(pol, budget=1000.0)
    codes = out["Urgency"].map({"late": 0, "order now": 1, "planned": 2}).to_numpy()
    assert (np.diff(codes) >= 0).all()
    shuffled = purchase_priority(pol.sample(frac=1.0, random_state=seed), budget=1000.0)
    pd.testing.assert_frame_equal(out, shuffled)

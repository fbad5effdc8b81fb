"""Purchase priority: what to order now, most urgent first, optionally under a budget.

The S&OE buyer's question is not "what is the reorder point" but "which of these
orders do I place today, and which can wait or do not fit the money I have".
:func:`purchase_priority` turns the inventory policy (one row per SKU-location with a
suggested order) into a ranked purchase list that says, for every line, why it is where
it is and whether it fits the budget.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem

__all__ = ["purchase_priority", "ORDER_NOW_DAYS", "URGENCY_ORDER", "PURCHASE_COLUMNS"]

_log = logging.getLogger(__name__)

#: Slack (days) below which an order is "order now": about a week to raise and send a PO.
ORDER_NOW_DAYS = 7.0
#: Urgency buckets, most urgent first.
URGENCY_ORDER = ("late", "order now", "planned")
PURCHASE_COLUMNS = (
    "Rank", S.SKU, S.LOCATION, "Class", "Strategic", "OrderQty", "SuggestedOrder", "OrderValue",
    "DaysOfStock", "LeadTimeDays", "SlackDays", "Urgency", "StockoutRisk", "ServiceImpact",
    "ImpactBasis", "InBudget", "CumulativeValue", "Why",
)

_REQUIRED = (S.SKU, "SuggestedOrder", S.ONHAND, "DailyDemand", "LeadTimeDays")
# Relative slack on budget comparisons so 300.1 + 699.9 still fits a budget of 1,000.
_BUDGET_EPS = 1e-9


def purchase_priority(
    policy: pd.DataFrame,
    *,
    budget: float | None = None,
    location_priority: Mapping[str, int] | None = None,
    order_now_days: float = ORDER_NOW_DAYS,
) -> pd.DataFrame:
    """Rank the suggested orders of ``policy`` and check them against ``budget``.

    ``policy`` has one row per SKU-location (SKU, Location, OnHand, OnOrder,
    InventoryPosition, SuggestedOrder, OrderMultiple, MOQ, UnitCost, DailyDemand,
    LeadTimeDays, Strategic, ServiceLevel, StockoutRisk, ExpectedShortUnits, Class);
    only SKU, SuggestedOrder, OnHand, DailyDemand and LeadTimeDays are required. Missing
    OnOrder, MOQ and ExpectedShortUnits count as 0, OrderMultiple as 1, Strategic as False;
    InventoryPosition defaults to OnHand + OnOrder. Only rows with SuggestedOrder > 0 are
    returned.

    Urgency (days, from the inventory position, which counts open orders as available):
    ``SlackDays = InventoryPosition / DailyDemand - LeadTimeDays``. ``"late"`` when
    slack < 0 (a stock-out comes before an order placed today can arrive), ``"order now"``
    when slack < ``order_now_days`` (7: about the time to raise a purchase order),
    ``"planned"`` otherwise, including items with no forecast demand (infinite slack). An
    unknown lead time counts as 0 days and the Why says so.

    Ranking, each key breaking the ties of the previous one:

    1. urgency bucket: late, order now, planned;
    2. strategic before non-strategic;
    3. ``ServiceImpact`` = ExpectedShortUnits x UnitCost, higher first (a row without a
       UnitCost is ranked at the median UnitCost of the others; its ServiceImpact column
       stays in units, see ``ImpactBasis``);
    4. ``SlackDays``, lower first;
    5. ``location_priority`` (lower number first; unlisted locations after listed ones);
    6. SKU, then Location, so the list never depends on the input order.

    Budget: the ranked list is walked top-down. An order that fits the money left is
    ``InBudget``. One that does not is cut to the largest quantity that fits and still
    respects MOQ and OrderMultiple; the remainder follows as a second row with the same
    Rank, ``InBudget`` False. An order that cannot be cut stays in the list with
    ``InBudget`` False and the reason; the walk goes on, so smaller orders further down may
    still fit. An order without a UnitCost cannot be checked: not in budget, and the Why
    says so. Without a budget every order is ``InBudget``.

    ``CumulativeValue`` is the running total of the in-budget order value down to that row.
    ``attrs["budget"]`` and ``attrs["budget_left"]`` hold the budget and what is left.
    """
    money = _check_budget(budget)
    prio = _check_location_priority(location_priority)
    if isinstance(order_now_days, bool) or not isinstance(order_now_days, (int, float)) \
            or not math.isfinite(order_now_days) or order_now_days < 0:
        raise InputError(
            f"order_now_days must be a number of days, 0 or more (got {order_now_days!r}).",
            [Problem("Settings", "order-now window is not a number of days", "use e.g. 7",
                     column="OrderNowDays", value=order_now_days, code="E110")],
            code="E110",
        )
    missing = [c for c in _REQUIRED if c not in policy.columns]
    if missing:
        raise InputError(
            f"The inventory policy lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            [Problem("Policy", "missing column", f"add a {c} column", column=c, code="E101") for c in missing],
            code="E101",
        )

    qty_all = _num(policy, "SuggestedOrder", np.nan)
    p = policy.loc[qty_all > 0].reset_index(drop=True)
    if not len(p):
        return _empty(money)
    loc = (p[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in p.columns
           else pd.Series(S.NO_LOCATION, index=p.index))
    dup = pd.DataFrame({S.SKU: p[S.SKU], S.LOCATION: loc}).duplicated(keep=False)
    if dup.any():
        raise InputError(
            f"The inventory policy has {int(dup.sum())} rows for the same SKU-location.",
            [Problem("Policy", "SKU-location listed more than once", "keep one policy row per SKU-location",
                     column=S.SKU, value=f"{s} {l}".strip(), code="E103")
             for s, l in zip(p[S.SKU][dup], loc[dup])],
            code="E103",
        )

    qty = _num(p, "SuggestedOrder", np.nan)
    on_hand = _num(p, S.ONHAND, 0.0)
    on_order = _num(p, "OnOrder", 0.0)
    position = _num(p, "InventoryPosition", np.nan)
    position = np.where(np.isnan(position), on_hand + on_order, position)
    demand = _num(p, "DailyDemand", np.nan)
    lead = _num(p, "LeadTimeDays", np.nan)
    cost = _num(p, "UnitCost", np.nan)
    cost = np.where(cost >= 0, cost, np.nan)  # negative cost: a data error, never free money
    short = np.clip(np.nan_to_num(_num(p, "ExpectedShortUnits", 0.0)), 0.0, None)
    risk = _num(p, "StockoutRisk", np.nan)
    multiple = _num(p, "OrderMultiple", 1.0)
    multiple = np.where(multiple > 0, multiple, 1.0)
    moq = np.nan_to_num(_num(p, "MOQ", 0.0))
    strategic = (p["Strategic"].fillna(False).astype(bool).to_numpy() if "Strategic" in p.columns
                 else np.zeros(len(p), dtype=bool))
    cls = p["Class"].fillna("").astype(str).to_numpy() if "Class" in p.columns else np.full(len(p), "")

    has_demand = demand > 0
    safe_demand = np.where(has_demand, demand, 1.0)
    with np.errstate(over="ignore"):  # a vanishing demand gives infinite cover, which is right
        days_of_stock = np.where(has_demand, np.maximum(on_hand, 0.0) / safe_demand, np.inf)
        cover = np.where(has_demand, position / safe_demand, np.inf)
    slack = cover - np.nan_to_num(lead)
    bucket = np.where(slack < 0, 0, np.where(slack < order_now_days, 1, 2))

    known = ~np.isnan(cost)
    impact = np.where(known, short * np.nan_to_num(cost), short)
    rank_cost = np.where(known, cost, float(np.median(cost[known])) if known.any() else 1.0)
    loc_rank = loc.map(lambda x: prio.get(x, math.inf)).to_numpy(dtype=float)

    order = pd.DataFrame({
        "b": bucket, "s": ~strategic, "i": -(short * rank_cost), "sl": slack, "l": loc_rank,
        "k": p[S.SKU].astype(str).to_numpy(), "lo": loc.to_numpy(),
    }).sort_values(["b", "s", "i", "sl", "l", "k", "lo"], kind="stable").index.to_numpy()

    rows: list[dict[str, Any]] = []
    left = money
    spent = 0.0
    tol = _BUDGET_EPS * max(money or 0.0, 1.0)
    for rank, i in enumerate(order, start=1):
        base = {
            "Rank": rank, S.SKU: p[S.SKU].iat[i], S.LOCATION: loc.iat[i], "Class": cls[i],
            "Strategic": bool(strategic[i]), "SuggestedOrder": qty[i], "DaysOfStock": days_of_stock[i],
            "LeadTimeDays": lead[i], "SlackDays": slack[i], "Urgency": URGENCY_ORDER[bucket[i]],
            "StockoutRisk": risk[i], "ServiceImpact": impact[i],
            "ImpactBasis": "value" if known[i] else "units",
        }
        reason = _reason(cover[i], lead[i], slack[i], bucket[i], on_order[i] > 0, bool(has_demand[i]),
                         bool(strategic[i]), risk[i])
        value = qty[i] * cost[i]
        if left is None:
            spent += 0.0 if np.isnan(value) else value
            note = "" if known[i] else "; unit cost unknown, so the order value is blank"
            rows.append({**base, "OrderQty": qty[i], "OrderValue": value, "InBudget": True,
                         "CumulativeValue": spent, "Why": reason + note})
        elif not known[i]:
            rows.append({**base, "OrderQty": qty[i], "OrderValue": np.nan, "InBudget": False,
                         "CumulativeValue": spent,
                         "Why": "unit cost unknown, so it cannot be checked against the budget "
                                f"(add UnitCost to Items); {reason}"})
        elif value <= left + tol:
            left = max(left - value, 0.0)
            spent += value
            rows.append({**base, "OrderQty": qty[i], "OrderValue": value, "InBudget": True,
                         "CumulativeValue": spent, "Why": reason})
        else:
            cut = _largest_fit(qty[i], cost[i], left + tol, multiple[i], moq[i])
            if cut > 0:
                cut_value = cut * cost[i]
                rest = qty[i] - cut
                left = max(left - cut_value, 0.0)
                spent += cut_value
                rows.append({**base, "OrderQty": cut, "OrderValue": cut_value, "InBudget": True,
                             "CumulativeValue": spent,
                             "Why": f"{reason}; cut from {_units(qty[i])} to {_units(cut)} units to fit the "
                                    f"budget, the other {_units(rest)} units are in the next row"})
                rows.append({**base, "OrderQty": rest, "OrderValue": rest * cost[i], "InBudget": False,
                             "CumulativeValue": spent,
                             "Why": f"does not fit the budget: the other {_units(rest)} units of a cut order "
                                    f"need {rest * cost[i]:,.2f}, {left:,.2f} left after higher-priority "
                                    f"orders; {reason}"})
            else:
                needs = f"needs {value:,.2f}, {left:,.2f} left after higher-priority orders"
                rows.append({**base, "OrderQty": qty[i], "OrderValue": value, "InBudget": False,
                             "CumulativeValue": spent, "Why": f"does not fit the budget: {needs}; {reason}"})
    out = pd.DataFrame(rows, columns=list(PURCHASE_COLUMNS))
    out.attrs["budget"] = money
    out.attrs["budget_left"] = None if left is None else float(left)
    _log.debug("purchase list: %d rows, %d in budget", len(out), int(out["InBudget"].sum()))
    return out


def _reason(cover: float, lead: float, slack: float, bucket: int, has_open_orders: bool, has_demand: bool,
            strategic: bool, risk: float) -> str:
    """The readable part of Why that explains the urgency."""
    if not has_demand:
        text = "no forecast demand, so stock does not run out (order suggested by the policy)"
    else:
        stock = "stock and open orders last" if has_open_orders else "stock lasts"
        lt = "lead time unknown (taken as 0 days; add LeadTimeDays to Items)" if np.isnan(lead) \
            else f"lead time {lead:g} days"
        if bucket == 0:
            tail = f"{-slack:.1f} days late"
        elif bucket == 1:
            tail = f"order within {slack:.1f} days"
        else:
            tail = f"{slack:.1f} days to spare"
        text = f"{stock} {cover:.1f} days, {lt}: {tail}"
    if strategic:
        text += "; strategic"
    if not np.isnan(risk):
        text += f"; stock-out risk {risk:.0%}"
    return text


def _largest_fit(qty: float, cost: float, money: float, multiple: float, moq: float) -> float:
    """Largest quantity <= qty, a whole number of OrderMultiples, at least MOQ, costing <= money; 0 if none."""
    if cost <= 0:
        return qty
    limit = min(qty, money / cost)
    # The tiny nudge keeps 3 x 0.1 from flooring to 2 multiples.
    q = math.floor(limit / multiple + 1e-9) * multiple
    if q * cost > money:
        q -= multiple
    if q <= 0 or q < moq or q >= qty:
        return 0.0
    return float(q)


def _units(q: float) -> str:
    return f"{q:,.0f}" if float(q).is_integer() else f"{q:,.2f}"


def _num(frame: pd.DataFrame, column: str, default: float) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), default, dtype=float)
    v = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return v if np.isnan(default) else np.where(np.isnan(v), default, v)


_TEXT_COLUMNS = frozenset({S.SKU, S.LOCATION, "Class", "Urgency", "ImpactBasis", "Why"})


def _empty(money: float | None) -> pd.DataFrame:
    """The list with nothing to order, typed like a full one so filters on it still work."""
    dtypes = {"Rank": "int64", "Strategic": "bool", "InBudget": "bool"}
    out = pd.DataFrame({c: pd.Series(dtype=object if c in _TEXT_COLUMNS else dtypes.get(c, "float64"))
                        for c in PURCHASE_COLUMNS})
    out.attrs["budget"] = money
    out.attrs["budget_left"] = money
    return out


def _check_budget(budget: Any) -> float | None:
    if budget is None:
        return None
    x: float
    try:
        if isinstance(budget, bool):
            raise ValueError
        x = float(budget.strip()) if isinstance(budget, str) else float(budget)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or x < 0:
        raise InputError(
            f"The purchase budget must be a number, 0 or more (got {budget!r}).",
            [Problem("Settings", "budget is not a non-negative number",
                     "enter the budget as a plain number, e.g. 25000, or leave it blank for no budget",
                     column="Budget", value=budget, code="E110")],
            code="E110",
        )
    return x


def _check_location_priority(prio: Mapping[str, int] | None) -> dict[str, float]:
    if not prio:
        return {}
    out: dict[str, float] = {}
    bad: list[Problem] = []
    for loc, v in prio.items():
        try:
            if isinstance(v, bool):
                raise ValueError
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if math.isnan(x):
            bad.append(Problem("Settings", f"priority of location {loc!r} is not a number",
                               "give each location a number, 1 = most important", column="LocationPriority",
                               value=v, code="E110"))
        else:
            out[S.NO_LOCATION if loc is None else str(loc)] = x
    if bad:
        raise InputError(f"{len(bad)} location priorities are not numbers.", bad, code="E110")
    return out

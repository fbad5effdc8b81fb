"""The financial view of the plan, for the executive part of the S&OP meeting.

Units x price and units x unit cost, rolled up to category and month:

* **Revenue** = consensus units x price; **cost of goods** = units x UnitCost (Items);
  **margin** = revenue - cost of goods. ``Statistical revenue`` is the same for the
  statistical forecast, so the meeting sees what the overrides are worth in money.
* **Price** per SKU-location and period: the Sales table's price of that period (planned
  prices on the future rows) or the latest one before it, so a planned price rise holds from
  its period on; else the SKU's at any location; else its earliest known price
  (:func:`prices_from_sales`). Cells without any price are left out of revenue
  and margin, and the assumptions say how many.
* **Months**: a period counts in the calendar month of its date (weekly periods that straddle
  two months count in the month they start in).
* **Inventory value** by month, in order of preference: a stock projection when given
  (``stock``: units at the end of each period, e.g. :func:`engine.projection.project_inventory`;
  the month's last period counts), else the policy's planned average stock, safety stock +
  half an order quantity (the average of a replenishment cycle), the same every month
  (``policy``: :func:`engine.policy.build_policy` on the consensus plan), each x UnitCost.

:func:`scenario_money` expresses a scenario result (:func:`engine.scenarios.run_scenarios`)
in the same money terms: stock-out units x price = revenue lost, x (price - cost) = margin
lost, and the inventory value the scenario ties up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem
from .overrides import CONSENSUS, STATISTICAL, _categories
from .policy import _items_for

__all__ = ["FinancialView", "MONEY_COLUMNS", "financial_view", "prices_from_sales", "scenario_money"]

_log = logging.getLogger(__name__)

#: Columns of the monthly roll-ups, in order.
MONEY_COLUMNS: tuple[str, ...] = ("Units", "Revenue", "Cost of goods", "Margin", "Margin %", "Statistical revenue",
                                  "Revenue from overrides", "Inventory value")
_NO_CATEGORY = "(no category)"


@dataclass
class FinancialView:
    """``by_month``: Month + :data:`MONEY_COLUMNS`; ``by_category``: Category, Month + the
    same; ``series``: per SKU-location over the horizon (Units, Price, UnitCost, Revenue,
    Margin, Average stock, Inventory value); ``assumptions``: sentences to show with it."""

    by_month: pd.DataFrame
    by_category: pd.DataFrame
    series: pd.DataFrame
    assumptions: list[str] = field(default_factory=list)


def prices_from_sales(sales: pd.DataFrame) -> pd.DataFrame:
    """The prices the Sales table knows (history and planned future rows): SKU, Location,
    Period, Price."""
    if S.PRICE not in sales.columns:
        return pd.DataFrame(columns=[S.SKU, S.LOCATION, "Period", S.PRICE])
    p = sales[[c for c in (S.SKU, S.LOCATION, S.DATE, S.PRICE) if c in sales.columns]].copy()
    p[S.PRICE] = pd.to_numeric(p[S.PRICE], errors="coerce")
    p = p[p[S.PRICE].notna()]
    if S.LOCATION not in p.columns:
        p[S.LOCATION] = S.NO_LOCATION
    return p.rename(columns={S.DATE: "Period"})[[S.SKU, S.LOCATION, "Period", S.PRICE]].reset_index(drop=True)


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out[S.SKU] = out[S.SKU].astype(str)
    out[S.LOCATION] = out[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in out.columns \
        else S.NO_LOCATION
    return out


def _align_prices(cells: pd.DataFrame, prices: pd.DataFrame | None) -> np.ndarray:
    """Price per cell (SKU, Location, Period): the SKU-location's price of that period or the
    latest before it (a planned price rise holds from its period on), else the SKU's at any
    location, else the earliest known; NaN when none."""
    n = len(cells)
    if prices is None or not len(prices):
        return np.full(n, np.nan)
    p = _keys(prices.rename(columns={S.DATE: "Period"}))
    p[S.PRICE] = pd.to_numeric(p[S.PRICE], errors="coerce")
    p = p[p[S.PRICE].notna()]
    if "Period" not in p.columns:
        p["Period"] = pd.Timestamp.min.normalize() + pd.Timedelta(days=1)
    p["Period"] = pd.to_datetime(p["Period"]).dt.normalize()
    p = p.sort_values("Period", kind="stable").drop_duplicates([S.SKU, S.LOCATION, "Period"], keep="last")
    c = cells[[S.SKU, S.LOCATION, "Period"]].reset_index(drop=True).assign(_i=np.arange(n))
    c = c.sort_values("Period", kind="stable")
    out = np.full(n, np.nan)
    for by in ([S.SKU, S.LOCATION], [S.SKU]):
        src = p[[*by, "Period", S.PRICE]]
        if by == [S.SKU]:
            src = src.groupby([S.SKU, "Period"], as_index=False)[S.PRICE].mean().sort_values("Period", kind="stable")
        hit = pd.merge_asof(c, src, on="Period", by=by, direction="backward")
        vals = np.full(n, np.nan)
        vals[hit["_i"].to_numpy()] = hit[S.PRICE].to_numpy(dtype=float)
        out = np.where(np.isfinite(out), out, vals)
    first = p.drop_duplicates(S.SKU, keep="first")
    earliest = cells[[S.SKU]].merge(first[[S.SKU, S.PRICE]], on=S.SKU, how="left")[S.PRICE].to_numpy(dtype=float)
    return np.where(np.isfinite(out), out, earliest)


def _roll(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = cells.groupby(by, sort=True)
    out = pd.DataFrame({
        "Units": g["Units"].sum(),
        "Revenue": g["Revenue"].sum(min_count=1),
        "Cost of goods": g["Cost of goods"].sum(min_count=1),
        "Statistical revenue": g["Statistical revenue"].sum(min_count=1),
        "Inventory value": g["Inventory value"].sum(min_count=1),
    })
    out["Margin"] = out["Revenue"] - out["Cost of goods"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["Margin %"] = np.where(out["Revenue"] > 0, out["Margin"] / out["Revenue"], np.nan)
    out["Revenue from overrides"] = out["Revenue"] - out["Statistical revenue"]
    return out.reset_index()[[*by, *MONEY_COLUMNS]]


def financial_view(
    plan: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    prices: pd.DataFrame | None = None,
    policy: pd.DataFrame | None = None,
    stock: pd.DataFrame | None = None,
    point: str | None = None,
) -> FinancialView:
    """Revenue, cost of goods, margin and inventory value by month and by category and month.

    ``plan``: SKU, Location, Period and the units (``point``; default Consensus, else P50);
    ``items``: UnitCost and Category; ``prices``: SKU, [Location], [Period], Price (e.g.
    :func:`prices_from_sales`); ``policy``: SafetyStock, OrderQty per SKU-location;
    ``stock``: SKU, Location, Period, Units (projected end-of-period stock). See the module
    docstring for the rules.
    """
    point = point or (CONSENSUS if CONSENSUS in plan.columns else "P50")
    if point not in plan.columns:
        raise InputError(f"The plan has no column {point}.",
                         [Problem("Plan", f"column {point} missing", "refresh the plan", column=point, code="E101")],
                         code="E101")
    cells = _keys(plan.rename(columns={S.DATE: "Period"}))
    cells["Period"] = pd.to_datetime(cells["Period"]).dt.normalize()
    cells["Month"] = cells["Period"].dt.to_period("M").dt.to_timestamp()
    cells["Units"] = pd.to_numeric(cells[point], errors="coerce").fillna(0.0)
    stat_units = pd.to_numeric(cells[STATISTICAL], errors="coerce").fillna(0.0) if STATISTICAL in cells.columns \
        else cells["Units"]
    series = cells[[S.SKU, S.LOCATION]].drop_duplicates().reset_index(drop=True)
    series[S.CATEGORY] = _categories(series, items)
    series[S.CATEGORY] = series[S.CATEGORY].replace("", _NO_CATEGORY)
    it = _items_for(series[[S.SKU, S.LOCATION]], items)
    series["UnitCost"] = it["UnitCost"].to_numpy(dtype=float)
    cells = cells.merge(series, on=[S.SKU, S.LOCATION], how="left")
    price = _align_prices(cells, prices)
    cells["Price"] = price
    cells["Revenue"] = cells["Units"] * price
    cells["Statistical revenue"] = stat_units.to_numpy() * price
    cells["Cost of goods"] = cells["Units"] * cells["UnitCost"]
    notes: list[str] = []
    no_price = ~np.isfinite(price)
    if no_price.any():
        n = cells.loc[no_price, [S.SKU, S.LOCATION]].drop_duplicates().shape[0]
        notes.append(f"{n} SKU-location{'s have' if n != 1 else ' has'} no price in Sales: revenue and margin "
                     "leave them out")
    no_cost = ~np.isfinite(cells["UnitCost"].to_numpy(dtype=float))
    if no_cost.any():
        n = cells.loc[no_cost, [S.SKU, S.LOCATION]].drop_duplicates().shape[0]
        notes.append(f"{n} SKU-location{'s have' if n != 1 else ' has'} no UnitCost in Items: cost of goods, margin "
                     "and inventory value leave them out")
    cells.loc[no_cost | no_price, "Cost of goods"] = np.nan   # margin only where both are known
    cells.loc[no_cost & ~no_price, "Revenue"] = np.nan
    cells.loc[no_cost & ~no_price, "Statistical revenue"] = np.nan

    cells["Inventory value"] = np.nan
    avg = np.full(len(series), np.nan)
    last_of_month = cells.groupby([S.SKU, S.LOCATION, "Month"])["Period"].transform("max") == cells["Period"]
    if stock is not None and len(stock):
        st = _keys(stock.rename(columns={S.DATE: "Period"}))
        st["Period"] = pd.to_datetime(st["Period"]).dt.normalize()
        ucol = next((c for c in ("Units", "Stock", "ProjectedStock", "OnHand") if c in st.columns), None)
        if ucol is None:
            raise InputError("The stock projection needs a Units column.",
                             [Problem("Stock", "no Units column", "pass SKU, Location, Period, Units", code="E101")],
                             code="E101")
        units = cells[[S.SKU, S.LOCATION, "Period"]].merge(st[[S.SKU, S.LOCATION, "Period", ucol]],
                                                           on=[S.SKU, S.LOCATION, "Period"], how="left")[ucol]
        cells["Inventory value"] = np.where(last_of_month, units.to_numpy(dtype=float) * cells["UnitCost"], np.nan)
        notes.append("Inventory value: projected stock at the end of each month x UnitCost")
    elif policy is not None and len(policy):
        pol = _keys(policy)
        pol = series[[S.SKU, S.LOCATION]].merge(pol, on=[S.SKU, S.LOCATION], how="left")
        avg = (pd.to_numeric(pol["SafetyStock"], errors="coerce").fillna(0.0)
               + pd.to_numeric(pol["OrderQty"], errors="coerce").fillna(0.0) / 2.0).to_numpy()
        per_cell = cells[[S.SKU, S.LOCATION]].merge(series[[S.SKU, S.LOCATION]].assign(_avg=avg),
                                                    on=[S.SKU, S.LOCATION], how="left")["_avg"].to_numpy()
        cells["Inventory value"] = np.where(last_of_month, per_cell * cells["UnitCost"].to_numpy(), np.nan)
        notes.append("Inventory value: planned average stock (safety stock + half an order quantity) x UnitCost, "
                     "the same every month")
    else:
        notes.append("Inventory value needs the inventory policy (refresh the plan) or a stock projection")

    by_month = _roll(cells, ["Month"])
    by_category = _roll(cells, [S.CATEGORY, "Month"])
    g = cells.groupby([S.SKU, S.LOCATION], sort=False)
    ser = series.copy()
    agg = pd.DataFrame({"Units": g["Units"].sum(), "Revenue": g["Revenue"].sum(min_count=1),
                        "Cost of goods": g["Cost of goods"].sum(min_count=1),
                        "Price": g["Price"].mean()}).reset_index()
    ser = ser.merge(agg, on=[S.SKU, S.LOCATION], how="left")
    ser["Margin"] = ser["Revenue"] - ser["Cost of goods"]
    ser["Average stock"] = avg
    ser["Inventory value"] = avg * ser["UnitCost"]
    ser = ser[[S.SKU, S.LOCATION, S.CATEGORY, "Units", "Price", "UnitCost", "Revenue", "Cost of goods", "Margin",
               "Average stock", "Inventory value"]]
    return FinancialView(by_month, by_category, ser, notes)


def scenario_money(
    scenario: Any,
    *,
    plan: pd.DataFrame,
    items: pd.DataFrame | None = None,
    prices: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A scenario result (:class:`engine.scenarios.ScenarioResult` or its ``series`` frame) in
    money: per scenario, revenue and margin lost to stock-outs (baseline and scenario, units
    short x the SKU-location's mean planned price / price - UnitCost) and the inventory value,
    with the change the scenario brings."""
    series = getattr(scenario, "series", scenario)
    need = ("Scenario", S.SKU, "Stock-out units (baseline)", "Stock-out units (scenario)")
    missing = [c for c in need if c not in series.columns]
    if missing:
        raise InputError(f"The scenario result lacks the columns {', '.join(missing)}.",
                         [Problem("Scenario", f"column {c} missing", "run the scenario again", column=c, code="E101")
                          for c in missing], code="E101")
    s = _keys(series)
    cells = _keys(plan.rename(columns={S.DATE: "Period"}))
    cells["Period"] = pd.to_datetime(cells["Period"]).dt.normalize()
    cells["Price"] = _align_prices(cells, prices)
    price = cells.groupby([S.SKU, S.LOCATION])["Price"].mean().rename("Price").reset_index()
    keys = s[[S.SKU, S.LOCATION]].drop_duplicates().reset_index(drop=True)
    keys = keys.merge(price, on=[S.SKU, S.LOCATION], how="left")
    keys["UnitCost"] = _items_for(keys[[S.SKU, S.LOCATION]], items)["UnitCost"].to_numpy(dtype=float)
    s = s.merge(keys, on=[S.SKU, S.LOCATION], how="left")
    unit_margin = s["Price"] - s["UnitCost"]
    for w in ("baseline", "scenario"):
        short = pd.to_numeric(s[f"Stock-out units ({w})"], errors="coerce")
        s[f"Revenue lost ({w})"] = short * s["Price"]
        s[f"Margin lost ({w})"] = short * unit_margin
        col = f"Inventory value ({w})"
        s[col] = pd.to_numeric(s[col], errors="coerce") if col in s.columns else np.nan
    g = s.groupby("Scenario", sort=False)
    out = pd.DataFrame({c: g[c].sum(min_count=1) for c in (
        "Revenue lost (baseline)", "Revenue lost (scenario)", "Margin lost (baseline)", "Margin lost (scenario)",
        "Inventory value (baseline)", "Inventory value (scenario)")}).reset_index()
    out["Revenue at risk"] = out["Revenue lost (scenario)"] - out["Revenue lost (baseline)"]
    out["Margin at risk"] = out["Margin lost (scenario)"] - out["Margin lost (baseline)"]
    out["Inventory value change"] = out["Inventory value (scenario)"] - out["Inventory value (baseline)"]
    out["SKU-locations without price"] = g["Price"].apply(lambda x: int(x.isna().sum())).to_numpy()
    return out[["Scenario", "Revenue lost (baseline)", "Revenue lost (scenario)", "Revenue at risk",
                "Margin lost (baseline)", "Margin lost (scenario)", "Margin at risk", "Inventory value (baseline)",
                "Inventory value (scenario)", "Inventory value change", "SKU-locations without price"]]

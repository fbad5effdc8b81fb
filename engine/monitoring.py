"""S&OE execution monitoring: actuals against the published plan, and ranked alerts.

:func:`monitor` compares actual demand (SKU, Location, Date, Qty; finer dates are summed
into the plan's periods) with the published plan (SKU, Location, Period, P10, P50, P90)
for every elapsed period: the periods up to the latest one with any actuals. A planned
SKU-location without actuals in an elapsed period sold nothing (0), which is exactly what
a delisting or an empty shelf looks like.

Measures per SKU-location and period (errors are actual - P50, positive = demand above
plan): deviation, cumulative deviation, bias (cumulative deviation / cumulative plan), MAD
(mean absolute deviation to date) and Brown's tracking signal = cumulative deviation / MAD.
With ``n`` periods the tracking signal is at most ``n`` in size, so it needs at least
``ts_limit + 1`` periods to alert.

Alert rules, each evaluated at the latest elapsed period:

* **Bias**: tracking signal beyond +/- ``ts_limit`` (4, Brown's classic control limit).
* **Above P90 / Below P10**: the latest actual outside the plan's P10-P90 band.
* **Stock-out before receipt** (needs ``policy``): the committed projection (on hand + open
  orders - remaining plan P50, :func:`engine.projection.project_inventory`) runs out before
  the next receipt arrives. The remaining plan is not bias-corrected; a Bias alert on the
  same SKU says the risk is larger (or smaller) than shown.
* **Excess** (needs ``policy``): on hand + on order above max stock (OrderUpTo + one
  OrderMultiple, see :mod:`engine.projection`), unless the SKU-location is also projected
  to run out (then the open orders are late, not too many).

Impacts: ``ServiceImpact`` = units of demand at risk of not being served (stock-out:
P50 units short before the receipt; Bias above plan: the mean excess demand per period
times the remaining plan periods; Above P90: units above P90); ``ValueImpact`` = currency
at stake (service units x UnitCost, or for Bias below plan, Below P10 and Excess, the
value of the stock that is building up). Ranking: alerts that threaten service first,
by their value (units x UnitCost; a missing UnitCost counts as the median one), strategic
SKUs first among equals; then the others by ValueImpact.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem
from .frequency import normalize_freq
from .inventory import round_to_pack
from .projection import Projection, _grid, _period_index, _policy_arrays, project_inventory

__all__ = ["ALERT_COLUMNS", "DEVIATION_COLUMNS", "SUMMARY_COLUMNS", "TS_LIMIT", "Monitoring", "monitor"]

_log = logging.getLogger(__name__)

#: Brown's control limit for the tracking signal.
TS_LIMIT = 4.0
ALERT_COLUMNS: tuple[str, ...] = (
    "Rank", S.SKU, S.LOCATION, "Alert", "What happened", "Size", "Measure", "Suggested action", "ServiceImpact",
    "ValueImpact", "Date",
)
DEVIATION_COLUMNS: tuple[str, ...] = (
    S.SKU, S.LOCATION, "Period", "Actual", "P10", "P50", "P90", "Deviation", "CumDeviation", "CumPlan", "Bias",
    "MAD", "TrackingSignal", "Band",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    S.SKU, S.LOCATION, "Periods", "Actual", "Plan", "Deviation", "Bias", "WAPE", "MAD", "TrackingSignal",
    "InBand", "Alerts",
)


@dataclass
class Monitoring:
    """Result of :func:`monitor`: ``alerts`` (:data:`ALERT_COLUMNS`, ranked),
    ``deviations`` (:data:`DEVIATION_COLUMNS`, one row per SKU-location and elapsed period),
    ``summary`` (:data:`SUMMARY_COLUMNS`, one row per SKU-location), ``kpis`` (KPI, Value,
    Unit, Definition), the ``projection`` behind the stock alerts (None without a policy)
    and the ``assumptions`` to show with them."""

    alerts: pd.DataFrame
    deviations: pd.DataFrame
    summary: pd.DataFrame
    kpis: pd.DataFrame
    projection: Projection | None = None
    assumptions: list[str] = field(default_factory=list)


def monitor(
    plan: pd.DataFrame,
    actuals: pd.DataFrame,
    *,
    policy: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    freq: str,
    open_orders: pd.DataFrame | None = None,
    ts_limit: float = TS_LIMIT,
    first_row: int = 2,
) -> Monitoring:
    """Compare ``actuals`` with the published ``plan`` and raise ranked alerts.

    ``policy`` (the policy table, with OnHand, OnOrder, ReorderPoint, OrderUpTo, ...)
    enables the stock alerts; ``items`` gives UnitCost (and Strategic) when there is no
    policy; ``open_orders`` the OpenOrders table (``first_row``: its first Excel data
    row). See the module docstring for the rules.
    """
    freq = normalize_freq(freq)
    if isinstance(ts_limit, bool) or not isinstance(ts_limit, (int, float)) or not ts_limit > 0:
        raise InputError(f"The tracking-signal limit must be a positive number (got {ts_limit!r}).",
                         [Problem("Settings", "tracking-signal limit is not a positive number", "use e.g. 4",
                                  column="TrackingSignalLimit", value=ts_limit, code="E110")], code="E110")
    act = _actuals(actuals)
    keys = _plan_keys(plan)
    grid = _grid(plan, keys, freq, None)
    n, H = len(keys), len(grid.dates)
    a_idx = _period_index(act[S.DATE].to_numpy(dtype="datetime64[ns]"), grid.dates[0], freq)
    pos = pd.MultiIndex.from_frame(keys).get_indexer(pd.MultiIndex.from_frame(act[[S.SKU, S.LOCATION]]))
    inside = (a_idx >= 0) & (a_idx < H)
    assumptions: list[str] = []
    unplanned = (pos < 0) & inside
    if unplanned.any():
        assumptions.append(f"{act.loc[unplanned, [S.SKU, S.LOCATION]].drop_duplicates().shape[0]} SKU-locations "
                           "have actuals but no plan: not monitored.")
    use = inside & (pos >= 0)
    if not use.any():
        raise InputError(
            "No actuals fall inside the plan's periods, so there is nothing to compare yet.",
            [Problem("Sales", "no actuals within the plan horizon",
                     f"add sales from {grid.dates[0]:%Y-%m-%d} on, or compare with the plan that covers them",
                     column=S.DATE, code="E110")], code="E110")
    E = int(a_idx[use].max()) + 1                      # elapsed periods
    A = np.zeros((n, E))
    np.add.at(A, (pos[use], a_idx[use]), act[S.QTY].to_numpy(dtype=float)[use])
    P10, P50, P90 = (grid.quantiles[c][:, :E] for c in ("P10", "P50", "P90"))

    dev = A - P50
    cum = np.cumsum(dev, axis=1)
    cum_plan = np.cumsum(P50, axis=1)
    steps = np.arange(1, E + 1)[None, :]
    mad = np.cumsum(np.abs(dev), axis=1) / steps
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(mad > 0, cum / np.where(mad > 0, mad, 1.0), 0.0)
        bias = np.where(cum_plan > 0, cum / np.where(cum_plan > 0, cum_plan, 1.0), np.nan)
    band = np.where(A > P90 + 1e-9, "above P90", np.where(A < P10 - 1e-9, "below P10", "within"))
    if "P10" not in plan.columns or "P90" not in plan.columns:
        band[:] = "within"  # a point plan has no band to leave
        assumptions.append("The plan has no P10/P90: no band alerts.")
    deviations = pd.DataFrame({
        S.SKU: np.repeat(keys[S.SKU].to_numpy(), E), S.LOCATION: np.repeat(keys[S.LOCATION].to_numpy(), E),
        "Period": np.tile(grid.dates.values[:E], n), "Actual": A.ravel(), "P10": P10.ravel(), "P50": P50.ravel(),
        "P90": P90.ravel(), "Deviation": dev.ravel(), "CumDeviation": cum.ravel(), "CumPlan": cum_plan.ravel(),
        "Bias": bias.ravel(), "MAD": mad.ravel(), "TrackingSignal": ts.ravel(), "Band": band.ravel(),
    })

    info = _series_info(keys, policy, items)
    cost = info["UnitCost"].to_numpy(dtype=float)
    known = np.isfinite(cost)
    rank_cost = np.where(known, cost, float(np.median(cost[known])) if known.any() else 1.0)
    alerts: list[dict[str, Any]] = []
    last = E - 1
    remaining = H - E
    label = grid.dates[last]
    unit = {"D": "day", "W": "week", "MS": "month"}[freq]
    for i in range(n):
        sku, loc = keys[S.SKU].iat[i], keys[S.LOCATION].iat[i]
        where = _where(sku, loc)
        t_i = ts[i, last]
        if abs(t_i) > ts_limit:
            mean_dev = cum[i, last] / E
            pct = bias[i, last]
            ahead = max(remaining, 1)
            size_txt = f"{abs(pct):.0%} " if np.isfinite(pct) else ""
            if t_i > 0:
                service = mean_dev * ahead
                value = service * cost[i]
                what = (f"Demand for {where} ran {size_txt}above plan over the last {E} {unit}s "
                        f"({cum[i, last]:+,.0f} units), tracking signal {t_i:+.1f}.")
                action = (f"Raise the forecast by about {size_txt or 'the bias '}and re-check the safety stock; "
                          f"bring the next order forward if stock is short.")
            else:
                service = 0.0
                value = -mean_dev * ahead * cost[i]
                what = (f"Demand for {where} ran {size_txt}below plan over the last {E} {unit}s "
                        f"({cum[i, last]:+,.0f} units), tracking signal {t_i:+.1f}.")
                action = (f"Lower the forecast by about {size_txt or 'the bias '}and postpone open orders "
                          "so stock does not build up.")
            alerts.append(_alert(sku, loc, "Bias", what, round(float(t_i), 2), "tracking signal", action, service,
                                 value, label))
        a, lo, hi = A[i, last], P10[i, last], P90[i, last]
        if band[i, last] == "above P90":
            over = a - hi
            what = (f"Demand for {where} in the {unit} of {label:%Y-%m-%d} was {a:,.0f}, {over:,.0f} above the "
                    f"P90 of {hi:,.0f} (plan {P50[i, last]:,.0f}).")
            action = ("Check for an unplanned promotion, a one-off large order or a competitor's stock-out; "
                      "raise the forecast if it repeats.")
            alerts.append(_alert(sku, loc, "Above P90", what, over, "units above P90", action, over, over * cost[i],
                                 label))
        elif band[i, last] == "below P10":
            under = lo - a
            what = (f"Demand for {where} in the {unit} of {label:%Y-%m-%d} was {a:,.0f}, {under:,.0f} below the "
                    f"P10 of {lo:,.0f} (plan {P50[i, last]:,.0f}).")
            action = ("Check for lost sales (empty shelf, delisting, price or listing change) before lowering "
                      "the forecast.")
            alerts.append(_alert(sku, loc, "Below P10", what, under, "units below P10", action, 0.0,
                                 under * cost[i], label))

    projection = None
    if policy is not None and remaining > 0:
        rest = plan.copy()
        rest_period = "Period" if "Period" in rest.columns else S.DATE
        rest = rest[pd.to_datetime(rest[rest_period]).dt.normalize() >= grid.dates[E]]
        projection = project_inventory(policy, rest, open_orders=open_orders, freq=freq, start=grid.dates[E],
                                       first_row=first_row)
        alerts.extend(_stock_alerts(projection, policy, unit))
        assumptions.extend(projection.assumptions)
    elif policy is not None:
        assumptions.append("The plan has no periods left after the latest actuals: no stock projection.")

    out = _rank(alerts, keys, info, rank_cost)
    n_alerts = out.groupby([S.SKU, S.LOCATION]).size() if len(out) else pd.Series(dtype=int)
    with np.errstate(divide="ignore", invalid="ignore"):
        tot_a, tot_p = A.sum(axis=1), P50.sum(axis=1)
        wape = np.where(tot_a > 0, np.abs(dev).sum(axis=1) / np.where(tot_a > 0, tot_a, 1.0), np.nan)
    summary = keys.copy()
    summary["Periods"] = E
    summary["Actual"] = tot_a
    summary["Plan"] = tot_p
    summary["Deviation"] = cum[:, last]
    summary["Bias"] = bias[:, last]
    summary["WAPE"] = wape
    summary["MAD"] = mad[:, last]
    summary["TrackingSignal"] = ts[:, last]
    summary["InBand"] = (band == "within").mean(axis=1)
    summary["Alerts"] = pd.MultiIndex.from_frame(keys).map(lambda k: int(n_alerts.get(k, 0))).to_numpy() \
        if len(out) else 0
    kp = _kpis(A, P50, band, ts, ts_limit, out)
    _log.debug("monitor: %d series x %d periods, %d alerts", n, E, len(out))
    return Monitoring(out, deviations[list(DEVIATION_COLUMNS)], summary[list(SUMMARY_COLUMNS)], kp, projection,
                      assumptions)


def _where(sku: str, loc: str) -> str:
    return f"{sku} at {loc}" if loc else str(sku)


def _alert(sku: str, loc: str, kind: str, what: str, size: float, measure: str, action: str, service: float,
           value: float, date: Any) -> dict[str, Any]:
    return {S.SKU: sku, S.LOCATION: loc, "Alert": kind, "What happened": what, "Size": float(size),
            "Measure": measure, "Suggested action": action, "ServiceImpact": float(max(service, 0.0)),
            "ValueImpact": float(value) if np.isfinite(value) else np.nan, "Date": pd.Timestamp(date)}


def _actuals(actuals: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (S.SKU, S.DATE, S.QTY) if c not in actuals.columns]
    if missing:
        raise InputError(
            f"The actuals lack column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            [Problem("Sales", "missing column", f"add a {c} column", column=c, code="E101") for c in missing],
            code="E101")
    a = pd.DataFrame({
        S.SKU: actuals[S.SKU].astype(str).to_numpy(),
        S.LOCATION: actuals[S.LOCATION].fillna(S.NO_LOCATION).astype(str).to_numpy()
        if S.LOCATION in actuals.columns else S.NO_LOCATION,
        S.DATE: pd.to_datetime(actuals[S.DATE], errors="coerce").dt.normalize().to_numpy(),
        S.QTY: pd.to_numeric(actuals[S.QTY], errors="coerce").to_numpy(dtype=float),
    })
    return a[a[S.DATE].notna() & a[S.QTY].notna()].reset_index(drop=True)


def _plan_keys(plan: pd.DataFrame) -> pd.DataFrame:
    loc = plan[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in plan.columns \
        else pd.Series(S.NO_LOCATION, index=plan.index)
    k = pd.DataFrame({S.SKU: plan[S.SKU].astype(str).to_numpy(), S.LOCATION: loc.to_numpy()})
    return k.drop_duplicates().sort_values([S.SKU, S.LOCATION], kind="stable").reset_index(drop=True)


def _series_info(keys: pd.DataFrame, policy: pd.DataFrame | None, items: pd.DataFrame | None) -> pd.DataFrame:
    """UnitCost and Strategic per monitored series, from the policy, else Items (blank
    Location rows apply to every location)."""
    out = keys.copy()
    out["UnitCost"] = np.nan
    out["Strategic"] = False
    for src in (items, policy):
        if src is None or not len(src):
            continue
        s = src.copy()
        s[S.SKU] = s[S.SKU].astype(str)
        s[S.LOCATION] = s[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in s.columns \
            else S.NO_LOCATION
        for c in ("UnitCost", "Strategic"):
            if c not in s.columns:
                continue
            exact = keys.merge(s[[S.SKU, S.LOCATION, c]].drop_duplicates([S.SKU, S.LOCATION]), how="left",
                               on=[S.SKU, S.LOCATION])[c]
            generic = keys[[S.SKU]].merge(s.loc[s[S.LOCATION] == S.NO_LOCATION, [S.SKU, c]].drop_duplicates(S.SKU),
                                          how="left", on=S.SKU)[c]
            v = exact.where(exact.notna(), generic)
            if c == "UnitCost":
                v = pd.to_numeric(v, errors="coerce")
                out[c] = np.where(v.notna(), v, out[c])
            else:
                out[c] = np.where(v.notna(), v.fillna(False).astype(bool), out[c])
    return out


def _stock_alerts(pr: Projection, policy: pd.DataFrame, unit: str) -> list[dict[str, Any]]:
    """Stock-out-before-receipt and excess alerts from the committed projection."""
    s = pr.series
    p = _policy_arrays(policy)
    suggested = pd.to_numeric(policy["SuggestedOrder"], errors="coerce").to_numpy(dtype=float) \
        if "SuggestedOrder" in policy.columns else np.full(len(p), np.nan)
    spare = np.maximum(p["OnHand"].to_numpy() - np.where(np.isfinite(p["ReorderPoint"]), p["ReorderPoint"],
                                                         np.inf), 0.0)
    by_sku = p.groupby(S.SKU).indices
    out: list[dict[str, Any]] = []
    for i in range(len(s)):
        sku, loc = s[S.SKU].iat[i], s[S.LOCATION].iat[i]
        where = _where(sku, loc)
        cost = float(s["UnitCost"].iat[i])
        if bool(s["StockoutBeforeReceipt"].iat[i]):
            short = float(s["ShortBeforeReceipt"].iat[i])
            so = pd.Timestamp(s["StockoutDate"].iat[i])
            nxt = s["NextReceiptDate"].iat[i]
            lead = float(p["LeadTimeDays"].iat[i])
            if pd.isna(nxt):
                what = (f"{where} is projected to run out on {so:%Y-%m-%d} with {s['OnHand'].iat[i]:,.0f} on hand "
                        f"and no open order: {short:,.0f} units short in the plan horizon.")
            else:
                what = (f"{where} is projected to run out on {so:%Y-%m-%d}, before the next receipt of "
                        f"{s['NextReceiptQty'].iat[i]:,.0f} on {pd.Timestamp(nxt):%Y-%m-%d}: {short:,.0f} units "
                        "short.")
            actions = []
            if not pd.isna(nxt):
                actions.append(f"expedite the order due {pd.Timestamp(nxt):%Y-%m-%d} to arrive by {so:%Y-%m-%d}")
            donors = [j for j in by_sku.get(sku, []) if j != i and spare[j] > 0]
            if donors:
                j = max(donors, key=lambda k: spare[k])
                qty = min(spare[j], short)
                actions.append(f"transfer {qty:,.0f} units from {p[S.LOCATION].iat[j] or 'the other location'}")
            qty_now = suggested[i] if np.isfinite(suggested[i]) and suggested[i] > 0 else \
                float(round_to_pack(short, moq=p["MOQ"].iat[i], multiple=p["OrderMultiple"].iat[i]))
            actions.append(f"raise an order of {qty_now:,.0f} units now (lead time {lead:g} days)")
            action = _sentence(actions)
            out.append(_alert(sku, loc, "Stock-out before receipt", what, short, "units short", action, short,
                              short * cost, so))
        elif float(s["ExcessUnits"].iat[i]) > 0 and pd.isna(s["StockoutDate"].iat[i]):
            ex = float(s["ExcessUnits"].iat[i])
            what = (f"{where} has {s['OnHand'].iat[i] + s['OnOrder'].iat[i]:,.0f} units on hand and on order, "
                    f"{ex:,.0f} above the max stock of {s['MaxStock'].iat[i]:,.0f}.")
            takers = [j for j in by_sku.get(sku, []) if j != i and bool(s["StockoutBeforeReceipt"].iat[j])]
            if takers:
                action = (f"Transfer up to {ex:,.0f} units to {s[S.LOCATION].iat[takers[0]]}, which is running "
                          "out, and stop ordering until stock is back under max.")
            elif s["OnOrder"].iat[i] > 0:
                action = f"Postpone or cancel open orders of up to {min(ex, s['OnOrder'].iat[i]):,.0f} units."
            else:
                action = "Stop ordering until stock is back under max; consider a promotion or a transfer."
            out.append(_alert(sku, loc, "Excess", what, ex, "units above max", action, 0.0, ex * cost,
                              pr.dates[0]))
    return out


def _sentence(parts: list[str]) -> str:
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    return text[0].upper() + text[1:] + "."


def _rank(alerts: list[dict[str, Any]], keys: pd.DataFrame, info: pd.DataFrame, rank_cost: np.ndarray) -> pd.DataFrame:
    if not alerts:
        cols = {c: pd.Series(dtype=object) for c in ALERT_COLUMNS}
        for c in ("Size", "ServiceImpact", "ValueImpact"):
            cols[c] = pd.Series(dtype=float)
        cols["Rank"] = pd.Series(dtype="int64")
        cols["Date"] = pd.Series(dtype="datetime64[ns]")
        return pd.DataFrame(cols)
    a = pd.DataFrame(alerts)
    pos = pd.MultiIndex.from_frame(keys).get_indexer(pd.MultiIndex.from_frame(a[[S.SKU, S.LOCATION]]))
    rc = np.where(pos >= 0, rank_cost[np.maximum(pos, 0)], 1.0)
    strategic = np.where(pos >= 0, info["Strategic"].to_numpy(dtype=bool)[np.maximum(pos, 0)], False)
    service = a["ServiceImpact"].to_numpy(dtype=float)
    value = np.nan_to_num(a["ValueImpact"].to_numpy(dtype=float), nan=0.0)
    key = pd.DataFrame({"g": np.where(service > 0, 0, 1), "sv": -(service * rc), "st": ~strategic, "v": -value,
                        "k": a[S.SKU].astype(str), "l": a[S.LOCATION].astype(str), "t": a["Alert"]})
    order = key.sort_values(["g", "sv", "st", "v", "k", "l", "t"], kind="stable").index
    a = a.loc[order].reset_index(drop=True)
    a["Rank"] = np.arange(1, len(a) + 1)
    return a[list(ALERT_COLUMNS)]


def _kpis(A: np.ndarray, P50: np.ndarray, band: np.ndarray, ts: np.ndarray, limit: float,
          alerts: pd.DataFrame) -> pd.DataFrame:
    tot = A.sum()
    rows = [
        ("Periods compared", float(A.shape[1]), "periods", "elapsed plan periods with actuals"),
        ("WAPE", float(np.abs(A - P50).sum() / tot) if tot > 0 else math.nan, "share",
         "sum of |actual - P50| / sum of actuals"),
        ("Bias", float((A - P50).sum() / P50.sum()) if P50.sum() > 0 else math.nan, "share",
         "(actuals - plan) / plan; positive = demand above plan"),
        ("Within P10-P90", float((band == "within").mean()) if band.size else math.nan, "share",
         "share of SKU-location-periods inside the plan's P10-P90 band (80 % expected)"),
        ("Tracking signal out of control", float((np.abs(ts[:, -1]) > limit).sum()) if ts.size else 0.0,
         "SKU-locations", f"|cumulative error / MAD| above {limit:g}"),
    ]
    for kind in ("Stock-out before receipt", "Bias", "Above P90", "Below P10", "Excess"):
        rows.append((f"Alerts: {kind}", float((alerts["Alert"] == kind).sum()) if len(alerts) else 0.0, "alerts",
                     "alerts of this type"))
    return pd.DataFrame(rows, columns=["KPI", "Value", "Unit", "Definition"])

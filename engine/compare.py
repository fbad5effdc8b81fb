"""Plan comparison: the current plan against the previous published version, and why it moved.

For every SKU-location-period both plans cover, the change of the final plan (Consensus,
else P50) is split into four parts that add up exactly to it:

* **Overrides** = (Consensus - Statistical) now - (Consensus - Statistical) then: what the
  override layers add now compared with what they added then.
* **Drivers** = statistical now - the current model's forecast with the drivers the previous
  version assumed (``driver_counterfactual``); 0 when that forecast is not given.
* **New data** = the statistical change the actuals added since the previous version explain:
  the previous model's forecast from today's history (``data_counterfactual``) minus the
  previous statistical forecast. Without that forecast the remaining statistical change is
  attributed from the plans' provenance: to new data when the model setup (parameters,
  features, quantiles, Plancell version) is unchanged, to the model when the data
  fingerprint is unchanged; otherwise it stays with the model change.
* **Model change** = the rest of the statistical change.

Series in only one of the plans count as "New series" / "Dropped series". Periods in only
one plan (the horizon rolls forward) are left out: a month that left the horizon has no
current value, one that entered it no previous one. The ``Actual vs previous plan`` column
gives the evidence behind "new data": the actuals since the previous version against what
it planned for those periods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem
from .overrides import CONSENSUS, STATISTICAL, _categories

__all__ = ["PlanComparison", "CAUSES", "compare_plans"]

_log = logging.getLogger(__name__)

#: The parts a change is split into, in order.
CAUSES: tuple[str, ...] = ("New data", "Drivers", "Overrides", "Model change")
_SETUP_KEYS = ("params", "features", "quantiles", "plancell_version", "freq")
_NO_CATEGORY = "(no category)"


@dataclass
class PlanComparison:
    """``by_sku``: SKU, Location, Category, Month, Previous, Current, Change, Change %, the
    :data:`CAUSES` (units), Actual vs previous plan, Why; ``by_category``: Category, Month and
    the same numbers; ``summary``: Cause, Units, Share of the absolute change; ``series``:
    the new and dropped SKU-locations; ``notes``: how the remainder was attributed."""

    by_sku: pd.DataFrame
    by_category: pd.DataFrame
    summary: pd.DataFrame
    series: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _prep(plan: pd.DataFrame, name: str) -> pd.DataFrame:
    p = plan.rename(columns={S.DATE: "Period"}).copy()
    if S.SKU not in p.columns or "Period" not in p.columns:
        raise InputError(f"The {name} plan lacks SKU or Period.",
                         [Problem(name, "SKU or Period column missing", "refresh or republish the plan", code="E101")],
                         code="E101")
    p[S.SKU] = p[S.SKU].astype(str)
    p[S.LOCATION] = p[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in p.columns else S.NO_LOCATION
    p["Period"] = pd.to_datetime(p["Period"]).dt.normalize()
    final = CONSENSUS if CONSENSUS in p.columns else "P50"
    stat = STATISTICAL if STATISTICAL in p.columns else "P50"
    if final not in p.columns:
        raise InputError(f"The {name} plan has neither Consensus nor P50.",
                         [Problem(name, "no Consensus or P50 column", "refresh or republish the plan", code="E101")],
                         code="E101")
    out = p[[S.SKU, S.LOCATION, "Period"]].copy()
    out["final"] = pd.to_numeric(p[final], errors="coerce").fillna(0.0)
    out["stat"] = pd.to_numeric(p[stat], errors="coerce").fillna(0.0)
    return out.drop_duplicates([S.SKU, S.LOCATION, "Period"])


def _point(frame: pd.DataFrame | None, col_hint: str = "P50") -> pd.DataFrame | None:
    if frame is None:
        return None
    f = frame.rename(columns={S.DATE: "Period"}).copy()
    f[S.SKU] = f[S.SKU].astype(str)
    f[S.LOCATION] = f[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in f.columns else S.NO_LOCATION
    f["Period"] = pd.to_datetime(f["Period"]).dt.normalize()
    col = STATISTICAL if STATISTICAL in f.columns else col_hint
    return f[[S.SKU, S.LOCATION, "Period"]].assign(v=pd.to_numeric(f[col], errors="coerce").to_numpy())


def _same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, keys: tuple[str, ...]) -> bool | None:
    if not a or not b or not all(k in a and k in b for k in keys):
        return None
    return all(a[k] == b[k] for k in keys)


def compare_plans(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    actuals: pd.DataFrame | None = None,
    previous_meta: Mapping[str, Any] | None = None,
    current_meta: Mapping[str, Any] | None = None,
    driver_counterfactual: pd.DataFrame | None = None,
    data_counterfactual: pd.DataFrame | None = None,
) -> PlanComparison:
    """Compare ``current`` with ``previous`` (each SKU, Location, Period and Consensus /
    Statistical, or P50) by SKU-location and month, and by category and month, and split
    each change into :data:`CAUSES` (module docstring). ``actuals`` (SKU, Location, Date,
    Qty) give the "Actual vs previous plan" evidence; ``*_meta`` the plans' provenance
    (:attr:`engine.plan.PlanResult.metadata`); the counterfactuals are forecast frames
    (SKU, Location, Period, P50)."""
    prev, cur = _prep(previous, "previous"), _prep(current, "current")
    keys = [S.SKU, S.LOCATION, "Period"]
    both = prev.merge(cur, on=keys, how="inner", suffixes=("_prev", "_cur"))
    notes: list[str] = []
    d_final = both["final_cur"] - both["final_prev"]
    overrides = (both["final_cur"] - both["stat_cur"]) - (both["final_prev"] - both["stat_prev"])
    d_stat = both["stat_cur"] - both["stat_prev"]
    drivers = np.zeros(len(both))
    drv = _point(driver_counterfactual)
    if drv is not None:
        cf = both[keys].merge(drv, on=keys, how="left")["v"].to_numpy(dtype=float)
        drivers = np.where(np.isfinite(cf), both["stat_cur"].to_numpy() - cf, 0.0)
        notes.append("Drivers: the current model with the drivers the previous version assumed")
    rest = d_stat.to_numpy() - drivers
    data = np.zeros(len(both))
    dat = _point(data_counterfactual)
    if dat is not None:
        cf = both[keys].merge(dat, on=keys, how="left")["v"].to_numpy(dtype=float)
        data = np.where(np.isfinite(cf), cf - both["stat_prev"].to_numpy(), 0.0)
        notes.append("New data: the previous model's forecast from today's history")
    else:
        same_setup = _same(previous_meta, current_meta, tuple(k for k in _SETUP_KEYS
                                                              if previous_meta and k in previous_meta))
        same_data = _same(previous_meta, current_meta, ("data_fingerprint",))
        if same_setup:
            data = rest.copy()
            notes.append("The model setup is unchanged: the statistical change (beyond drivers) is new data")
        elif same_data:
            notes.append("The data are unchanged (same fingerprint): the statistical change is the model's")
        else:
            notes.append("Model change holds the statistical change that could not be split further (new data "
                         "and model changes together)")
    model = rest - data

    cells = both[keys].copy()
    cells["Previous"] = both["final_prev"].to_numpy()
    cells["Current"] = both["final_cur"].to_numpy()
    cells["Change"] = d_final.to_numpy()
    cells["New data"], cells["Drivers"], cells["Overrides"], cells["Model change"] = data, drivers, \
        overrides.to_numpy(), model
    ser = cells[[S.SKU, S.LOCATION]].drop_duplicates().reset_index(drop=True)
    ser[S.CATEGORY] = pd.Series(_categories(ser, items)).replace("", _NO_CATEGORY).to_numpy()
    cells = cells.merge(ser, on=[S.SKU, S.LOCATION], how="left")
    cells["Month"] = cells["Period"].dt.to_period("M").dt.to_timestamp()

    evidence = None
    if actuals is not None and len(actuals):
        a = actuals.rename(columns={"Period": S.DATE}).copy()
        a[S.SKU] = a[S.SKU].astype(str)
        a[S.LOCATION] = a[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in a.columns \
            else S.NO_LOCATION
        a = a[pd.to_numeric(a[S.QTY], errors="coerce").notna()]
        a["Period"] = pd.to_datetime(a[S.DATE]).dt.normalize()
        last = a["Period"].max()
        elapsed = prev[(prev["Period"] <= last)]
        if len(elapsed):
            since = a[a["Period"] >= elapsed["Period"].min()]
            act = since.groupby([S.SKU, S.LOCATION], sort=False)[S.QTY].sum().astype(float).rename(
                "actual").reset_index()
            planned = elapsed.groupby([S.SKU, S.LOCATION], sort=False)["final"].sum().rename("planned").reset_index()
            evidence = planned.merge(act, on=[S.SKU, S.LOCATION], how="left").fillna({"actual": 0.0})
            evidence["Actual vs previous plan"] = np.where(evidence["planned"] > 0,
                                                           evidence["actual"] / evidence["planned"].where(
                                                               evidence["planned"] > 0, 1.0) - 1.0, np.nan)

    by_sku = _roll(cells, [S.SKU, S.LOCATION, S.CATEGORY, "Month"])
    if evidence is not None:
        by_sku = by_sku.merge(evidence[[S.SKU, S.LOCATION, "Actual vs previous plan"]], on=[S.SKU, S.LOCATION],
                              how="left")
    else:
        by_sku["Actual vs previous plan"] = np.nan
    by_sku["Why"] = _why(by_sku)
    by_sku = by_sku.reindex(by_sku["Change"].abs().sort_values(ascending=False, kind="stable").index)
    by_category = _roll(cells, [S.CATEGORY, "Month"])
    by_category["Why"] = _why(by_category)

    total_abs = float(np.abs(cells["Change"]).sum())
    summary = pd.DataFrame({"Cause": list(CAUSES), "Units": [float(cells[c].sum()) for c in CAUSES],
                            "Absolute units": [float(np.abs(cells[c]).sum()) for c in CAUSES]})
    denom = float(summary["Absolute units"].sum())
    summary["Share"] = summary["Absolute units"] / denom if denom > 0 else np.nan
    summary = pd.concat([summary, pd.DataFrame([{"Cause": "Total change", "Units": float(cells["Change"].sum()),
                                                 "Absolute units": total_abs, "Share": np.nan}])], ignore_index=True)

    pk = prev[[S.SKU, S.LOCATION]].drop_duplicates()
    ck = cur[[S.SKU, S.LOCATION]].drop_duplicates()
    new = ck.merge(pk, how="left", indicator=True)
    new = new[new["_merge"] == "left_only"][[S.SKU, S.LOCATION]].assign(Status="New series")
    gone = pk.merge(ck, how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"][[S.SKU, S.LOCATION]].assign(Status="Dropped series")
    series = pd.concat([new, gone], ignore_index=True)
    if len(series):
        series = series.merge(cur.groupby([S.SKU, S.LOCATION])["final"].sum().rename("Current").reset_index(),
                              on=[S.SKU, S.LOCATION], how="left")
        series = series.merge(prev.groupby([S.SKU, S.LOCATION])["final"].sum().rename("Previous").reset_index(),
                              on=[S.SKU, S.LOCATION], how="left")
    else:
        series = pd.DataFrame(columns=[S.SKU, S.LOCATION, "Status", "Current", "Previous"])
    return PlanComparison(by_sku.reset_index(drop=True), by_category, summary, series.fillna({"Current": 0.0,
                                                                                            "Previous": 0.0}), notes)


def _roll(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    cols = ["Previous", "Current", "Change", *CAUSES]
    out = cells.groupby(by, sort=True)[cols].sum().reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["Change %"] = np.where(out["Previous"] > 0, out["Change"] / out["Previous"], np.nan)
    return out[[*by, "Previous", "Current", "Change", "Change %", *CAUSES]]


def _why(frame: pd.DataFrame) -> list[str]:
    """The largest causes of each row's change, in words ("Overrides +120, new data -30")."""
    parts = frame[list(CAUSES)].to_numpy(dtype=float)
    total = np.abs(parts).sum(axis=1)
    out: list[str] = []
    for row, tot in zip(parts, total):
        if tot < 1e-9:
            out.append("no change")
            continue
        order = np.argsort(-np.abs(row), kind="stable")
        words = [f"{CAUSES[k].lower() if i else CAUSES[k]} {row[k]:+,.0f}" for i, k in enumerate(order)
                 if abs(row[k]) >= 0.1 * tot]
        out.append(", ".join(words))
    return out

"""Forecast value added (FVA): did each step of the S&OP process make the forecast better?

For every published plan version whose periods now have actuals, the forecast of each step
is scored against what happened (Gilliland 2013, *FVA: a lean approach to improving
forecasting*): seasonal naive (the no-effort benchmark, made from the history known at the
version's origin, its first period), the statistical forecast, the forecast after each
override layer (cumulative, in application order: Sales -> Marketing -> Finance) and the
final consensus. A step's value added is the WAPE it removes: ``FVA = WAPE(previous step)
- WAPE(step)``, positive = the step made the forecast better, negative = worse.

Scoring rules:

* Periods count once they have actuals: every period up to the latest one with any actual
  (a planned SKU-location without an actual in such a period sold 0, as in
  :mod:`engine.monitoring`). Finer actuals are summed into the plan's periods.
* Every step is scored on the same cells. Cells of SKU-locations without history before the
  version's origin have no seasonal naive forecast and are left out (the assumptions say how
  many).
* "All versions" pools the cells of every version (several versions can cover one period
  at different lags; each counts).
* WAPE = sum |actual - forecast| / sum actual; bias = sum (forecast - actual) / sum actual
  (positive = over-forecast), as :mod:`engine.metrics`.
* By layer: the cells a layer actually changed, before and after it -- the value a layer
  adds where it acts, which the all-cells waterfall dilutes. By reason: the same for the
  cells each override row changed (the ``effects`` of :func:`engine.overrides.apply_overrides`,
  published with the version), grouped by layer and reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .baselines import seasonal_naive
from .errors import InputError, Problem
from .frequency import normalize_freq, season_length
from .overrides import CONSENSUS, LAYERS, STATISTICAL, _categories, layer_column
from .projection import _period_index

__all__ = ["PlanVersion", "FVAResult", "NAIVE", "forecast_value_added", "fva_steps", "published_plan", "TOLERANCE"]

_log = logging.getLogger(__name__)

NAIVE = "Seasonal naive"
#: A step changing WAPE by less than this (0.05 points) "made no difference".
TOLERANCE = 0.0005
_NO_CATEGORY = "(no category)"
_NO_REASON = "(no reason given)"


@dataclass
class PlanVersion:
    """One published plan: ``name`` (e.g. the snapshot sheet ``Plan 2025-03 v1``), ``plan``
    (SKU, Location, Period, Statistical, the layer columns, Consensus; an optional Category)
    and the cell-level override ``effects`` (:data:`engine.overrides.EFFECT_COLUMNS`) for FVA
    by reason."""

    name: str
    plan: pd.DataFrame
    effects: pd.DataFrame | None = None


@dataclass
class FVAResult:
    """``waterfall``: Version ("All versions" first), Step, Cells, Actual, Forecast, WAPE,
    Bias, FVA (WAPE points removed by the step, as a fraction), Cumulative FVA (vs seasonal
    naive), Verdict; ``by_category``: the same per Category over all versions; ``by_layer``
    and ``by_reason``: the cells a layer / an override reason changed (Layer, [Reason], Cells,
    Units changed, Actual, WAPE before, WAPE after, FVA, Bias before, Bias after, Verdict);
    ``versions``: what was scored per version; ``verdicts``: sentences for the meeting."""

    waterfall: pd.DataFrame
    by_category: pd.DataFrame
    by_layer: pd.DataFrame
    by_reason: pd.DataFrame
    versions: pd.DataFrame
    steps: list[str]
    verdicts: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)


def fva_steps(columns: Sequence[str], layers: Sequence[str] = LAYERS) -> list[tuple[str, str]]:
    """(step name, plan column) of the steps a plan with ``columns`` holds, in order:
    Statistical, each layer (``Sales layer`` ...), Consensus."""
    steps = [(STATISTICAL, STATISTICAL)]
    steps += [(ly, layer_column(ly)) for ly in layers if ly != CONSENSUS and layer_column(ly) in columns]
    steps.append((CONSENSUS, CONSENSUS))
    return steps


def _verdict(fva: float) -> str:
    if not np.isfinite(fva):
        return "not measurable"
    if abs(fva) < TOLERANCE:
        return "no difference"
    return "value added" if fva > 0 else "value destroyed"


def published_plan(table: pd.DataFrame) -> pd.DataFrame:
    """A published plan table (a snapshot sheet's or the server's rows) as a version's plan:
    ``Date`` read as ``Period``; a plan published without override layers held one forecast,
    which was both the statistical and the final one."""
    p = table.rename(columns={S.DATE: "Period"})
    if CONSENSUS not in p.columns and "P50" in p.columns:
        p = p.assign(**{STATISTICAL: p["P50"], CONSENSUS: p["P50"]})
    return p


def _norm_plan(plan: pd.DataFrame, name: str) -> pd.DataFrame:
    p = plan.rename(columns={S.DATE: "Period", "Statistical forecast": STATISTICAL})
    missing = [c for c in (S.SKU, "Period", STATISTICAL, CONSENSUS) if c not in p.columns]
    if missing:
        raise InputError(
            f"Plan version {name} lacks the columns {', '.join(missing)}; forecast value added needs the "
            "Statistical and Consensus columns.",
            [Problem(name, f"column {c} missing", "publish a plan refreshed with the consensus columns", column=c,
                     code="E101") for c in missing], code="E101")
    p = p.copy()
    p[S.SKU] = p[S.SKU].astype(str)
    p[S.LOCATION] = p[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in p.columns else S.NO_LOCATION
    p["Period"] = pd.to_datetime(p["Period"]).dt.normalize()
    return p


def _actual_cells(actuals: pd.DataFrame, first: pd.Timestamp, freq: str) -> pd.DataFrame:
    a = actuals[[S.SKU, S.LOCATION, S.DATE, S.QTY]].copy() if S.LOCATION in actuals.columns else \
        actuals[[S.SKU, S.DATE, S.QTY]].assign(**{S.LOCATION: S.NO_LOCATION})
    a = a[pd.to_numeric(a[S.QTY], errors="coerce").notna()]
    a[S.SKU] = a[S.SKU].astype(str)
    a[S.LOCATION] = a[S.LOCATION].fillna(S.NO_LOCATION).astype(str)
    a["pidx"] = _period_index(pd.to_datetime(a[S.DATE]).to_numpy(dtype="datetime64[ns]"), first, freq)
    a[S.QTY] = pd.to_numeric(a[S.QTY]).astype(float)
    return a.groupby([S.SKU, S.LOCATION, "pidx"], as_index=False, sort=False)[S.QTY].sum()


def _version_cells(v: PlanVersion, actuals: pd.DataFrame, history: pd.DataFrame, last_actual: pd.Timestamp,
                   freq: str, layers: Sequence[str], items: pd.DataFrame | None,
                   notes: list[str]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    p = _norm_plan(v.plan, v.name)
    first = p["Period"].min()
    p["pidx"] = _period_index(p["Period"].to_numpy(dtype="datetime64[ns]"), first, freq)
    last_idx = int(_period_index(np.array([np.datetime64(last_actual, "ns")]), first, freq)[0])
    p = p[p["pidx"] <= last_idx]
    steps = fva_steps(list(p.columns), layers)
    if not len(p):
        return pd.DataFrame(), steps
    act = _actual_cells(actuals, first, freq)
    p = p.merge(act, on=[S.SKU, S.LOCATION, "pidx"], how="left")
    p["Actual"] = p[S.QTY].fillna(0.0)
    # Seasonal naive from the history known at the version's origin
    hist = history[pd.to_datetime(history[S.DATE]) < first]
    hist = hist[[S.SKU, S.LOCATION, S.DATE, S.QTY]] if S.LOCATION in hist.columns else \
        hist[[S.SKU, S.DATE, S.QTY]].assign(**{S.LOCATION: S.NO_LOCATION})
    hist = hist.astype({S.SKU: str, S.LOCATION: str})
    hist = hist[pd.to_numeric(hist[S.QTY], errors="coerce").notna()]
    H = int(p["pidx"].max()) + 1
    if len(hist):
        sn = seasonal_naive(hist, H, season=season_length(freq), freq=freq, quantiles=(0.5,))
        sn["pidx"] = _period_index(pd.to_datetime(sn[S.DATE]).to_numpy(dtype="datetime64[ns]"), first, freq)
        p = p.merge(sn[[S.SKU, S.LOCATION, "pidx", "point"]].rename(columns={"point": NAIVE}),
                    on=[S.SKU, S.LOCATION, "pidx"], how="left")
    else:
        p[NAIVE] = np.nan
    no_naive = p[NAIVE].isna()
    if no_naive.any():
        notes.append(f"{v.name}: {int(no_naive.sum())} cells of SKU-locations without history before "
                     f"{first:%Y-%m-%d} have no seasonal naive forecast and are left out")
        p = p[~no_naive]
    if S.CATEGORY not in p.columns or p[S.CATEGORY].isna().all():
        keys = p[[S.SKU, S.LOCATION]].drop_duplicates().reset_index(drop=True)
        keys[S.CATEGORY] = _categories(keys, items)
        p = p.drop(columns=[S.CATEGORY], errors="ignore").merge(keys, on=[S.SKU, S.LOCATION], how="left")
    p[S.CATEGORY] = p[S.CATEGORY].fillna("").astype(str).replace("", _NO_CATEGORY)
    out = p[[S.SKU, S.LOCATION, "Period", S.CATEGORY, "Actual", NAIVE]].copy()
    for step, col in steps:
        out[step] = pd.to_numeric(p[col], errors="coerce").to_numpy(dtype=float)
    out.insert(0, "Version", v.name)
    return out.reset_index(drop=True), steps


def _scores(cells: pd.DataFrame, by: list[str], steps: list[str]) -> pd.DataFrame:
    """WAPE, bias and FVA per group and step (groups of ``by``), steps in order."""
    rows: list[dict[str, Any]] = []
    grouped = cells.groupby(by, sort=False) if by else [((), cells)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        a = g["Actual"].to_numpy()
        den = np.abs(a).sum()
        prev = np.nan
        base = np.nan
        for k, step in enumerate(steps):
            f = g[step].to_numpy()
            ok = np.isfinite(f)
            w = float(np.abs(a[ok] - f[ok]).sum() / den) if den > 0 else np.nan
            b = float((f[ok] - a[ok]).sum() / den) if den > 0 else np.nan
            fva = prev - w if k else np.nan
            if k == 0:
                base = w
            rows.append({**dict(zip(by, key)), "Step": step, "Cells": int(len(g)), "Actual": float(a.sum()),
                         "Forecast": float(f[ok].sum()), "WAPE": w, "Bias": b, "FVA": fva,
                         "Cumulative FVA": base - w if k else np.nan,
                         "Verdict": _verdict(fva) if k else "benchmark"})
            prev = w
    return pd.DataFrame(rows)


def _touched(cells: pd.DataFrame, before: np.ndarray, after: np.ndarray, keys: dict[str, Any]) -> dict[str, Any]:
    a = cells["Actual"].to_numpy()
    den = np.abs(a).sum()
    wb = float(np.abs(a - before).sum() / den) if den > 0 else np.nan
    wa = float(np.abs(a - after).sum() / den) if den > 0 else np.nan
    fva = wb - wa
    return {**keys, "Cells": int(len(a)), "Units changed": float((after - before).sum()), "Actual": float(a.sum()),
            "WAPE before": wb, "WAPE after": wa, "FVA": fva,
            "Bias before": float((before - a).sum() / den) if den > 0 else np.nan,
            "Bias after": float((after - a).sum() / den) if den > 0 else np.nan, "Verdict": _verdict(fva)}


def forecast_value_added(
    versions: Sequence[PlanVersion],
    actuals: pd.DataFrame,
    *,
    freq: str,
    history: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    layers: Sequence[str] = LAYERS,
) -> FVAResult:
    """Forecast value added of every step, for every version in ``versions`` with actuals.

    ``actuals``: SKU, Location, Date, Qty (the Sales table; finer dates are summed into the
    plan's periods); ``history``: what the seasonal naive is made from (default: ``actuals``,
    cut at each version's origin); ``items``: Category per SKU when the versions lack one.
    See the module docstring for the rules.
    """
    freq = normalize_freq(freq)
    history = actuals if history is None else history
    notes: list[str] = []
    act = actuals[pd.to_numeric(actuals[S.QTY], errors="coerce").notna()]
    if not len(act):
        raise InputError("There are no actuals to score the plan versions against.",
                         [Problem("Sales", "no Qty values", "add the actual sales", column=S.QTY, code="E109")],
                         code="E109")
    last_actual = pd.to_datetime(act[S.DATE]).max()
    parts: list[pd.DataFrame] = []
    all_steps: list[str] = [NAIVE]
    vrows: list[dict[str, Any]] = []
    effects: list[pd.DataFrame] = []
    for v in versions:
        cells, steps = _version_cells(v, act, history, last_actual, freq, layers, items, notes)
        for s, _ in steps:
            if s not in all_steps:
                all_steps.append(s)
        if not len(cells):
            notes.append(f"{v.name}: no period has actuals yet")
            continue
        parts.append(cells)
        vrows.append({"Version": v.name, "First period": cells["Period"].min(), "Last period": cells["Period"].max(),
                      "Periods with actuals": int(cells["Period"].nunique()), "Cells": int(len(cells)),
                      "Actual": float(cells["Actual"].sum())})
        if v.effects is not None and len(v.effects):
            e = v.effects.copy()
            e["Period"] = pd.to_datetime(e["Period"]).dt.normalize()
            e[S.SKU] = e[S.SKU].astype(str)
            e[S.LOCATION] = e[S.LOCATION].fillna(S.NO_LOCATION).astype(str)
            effects.append(e.merge(cells[[S.SKU, S.LOCATION, "Period", "Actual"]],
                                   on=[S.SKU, S.LOCATION, "Period"], how="inner"))
    # steps in application order across versions (a layer absent from a version changes nothing there)
    order = [NAIVE, STATISTICAL] + [ly for ly in layers if ly != CONSENSUS and ly in all_steps] + [CONSENSUS]
    if not parts:
        empty = pd.DataFrame()
        return FVAResult(empty, empty, empty, empty, pd.DataFrame(vrows), order,
                         ["No published plan version has periods with actuals yet: forecast value added appears "
                          "once the first published month has passed."], notes)
    cells = pd.concat(parts, ignore_index=True)
    for k, step in enumerate(order):
        if step not in cells.columns:
            cells[step] = np.nan
        # a version without this layer: the forecast after it is the previous step's
        cells[step] = cells[step].fillna(cells[order[k - 1]]) if k > 1 else cells[step]

    overall = _scores(cells, [], order).assign(Version="All versions")
    per_version = _scores(cells, ["Version"], order) if len(parts) > 1 else pd.DataFrame()
    waterfall = pd.concat([overall, per_version], ignore_index=True)
    waterfall = waterfall[["Version", "Step", "Cells", "Actual", "Forecast", "WAPE", "Bias", "FVA", "Cumulative FVA",
                           "Verdict"]]
    by_category = _scores(cells, [S.CATEGORY], order)[[S.CATEGORY, "Step", "Cells", "Actual", "WAPE", "Bias", "FVA",
                                                       "Verdict"]]

    layer_rows = []
    for k, step in enumerate(order[2:], start=2):
        before, after = cells[order[k - 1]].to_numpy(), cells[step].to_numpy()
        changed = np.abs(after - before) > 1e-9
        if changed.any():
            layer_rows.append(_touched(cells[changed], before[changed], after[changed], {"Layer": step}))
    by_layer = pd.DataFrame(layer_rows)

    reason_rows = []
    if effects:
        e = pd.concat(effects, ignore_index=True)
        e["Reason"] = e["Reason"].fillna("").astype(str).replace("", _NO_REASON)
        for (layer, reason), g in e.groupby(["Layer", "Reason"], sort=False):
            reason_rows.append(_touched(g, g["Before"].to_numpy(dtype=float), g["After"].to_numpy(dtype=float),
                                        {"Layer": layer, "Reason": reason}))
        rank = {ly: i for i, ly in enumerate(layers)}
        by_reason = pd.DataFrame(reason_rows)
        by_reason = by_reason.sort_values(["Layer", "FVA"], key=lambda s: s.map(rank) if s.name == "Layer" else -s,
                                          kind="stable").reset_index(drop=True)
    else:
        by_reason = pd.DataFrame()
        if any(s not in (NAIVE, STATISTICAL) for s in order if (cells[s] != cells[STATISTICAL]).any()):
            notes.append("FVA by reason needs the override effects published with each version")

    verdicts = _sentences(overall, by_layer, vrows)
    return FVAResult(waterfall.reset_index(drop=True), by_category.reset_index(drop=True), by_layer, by_reason,
                     pd.DataFrame(vrows), order, verdicts, notes)


def _sentences(overall: pd.DataFrame, by_layer: pd.DataFrame, vrows: list[dict[str, Any]]) -> list[str]:
    n_v = len(vrows)
    periods = sum(r["Periods with actuals"] for r in vrows)
    out = [f"Scored {n_v} published version{'s' if n_v != 1 else ''} on {periods} period"
           f"{'s' if periods != 1 else ''} with actuals."]
    touched = {r["Layer"]: r for r in by_layer.to_dict("records")} if len(by_layer) else {}
    prev = None
    for r in overall.to_dict("records"):
        if prev is None:
            prev = r
            continue
        step, fva = r["Step"], r["FVA"]
        verdict = _verdict(fva)
        head = {"value added": "added value", "value destroyed": "destroyed value",
                "no difference": "made no difference", "not measurable": "could not be measured"}[verdict]
        change = "" if verdict in ("no difference", "not measurable") else \
            f", {abs(fva) * 100:.1f} points {'better' if fva > 0 else 'worse'}"
        text = f"{step} {head}: WAPE {prev['WAPE']:.1%} -> {r['WAPE']:.1%} against {prev['Step'].lower()}{change}"
        if step in touched and step != STATISTICAL:
            t = touched[step]
            text += (f"; on the {t['Cells']} forecasts it changed, WAPE {t['WAPE before']:.1%} -> "
                     f"{t['WAPE after']:.1%}")
        elif step not in (STATISTICAL,):
            text += "; it changed no forecast with actuals yet"
        out.append(text + ".")
        prev = r
    return out

"""S&OP meeting sheets: forecast value added, the financial view, plan changes, and the
consensus columns of the Plan sheet.

Built on the :mod:`addin.sheets` content model, so every writer (XlsxWriter, openpyxl,
live Excel) draws them the same way. Fractions the sheets' number formats know by header
(``WAPE``, ``Bias``) stay fractions; other percentages are shown in percent points, rounded
(``FVA (points)``, ``WAPE before (%)``), and money and units rounded, because a table
column is formatted by its header and these headers are new.

The FVA chart is a native line chart (:class:`addin.sheets.BandChart`, the one chart kind
every writer draws): WAPE after each step, solid, between two dashed reference lines, the
seasonal naive and the statistical WAPE. A step whose point rises above the statistical line
destroyed value. A waterfall or column chart needs a chart kind the writers do not have yet.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from engine.compare import CAUSES, PlanComparison
from engine.finance import MONEY_COLUMNS, FinancialView
from engine.fva import NAIVE, FVAResult
from engine.overrides import CONSENSUS, LAYERS, STATISTICAL, layer_column, quantile_columns

from .sheets import BandChart, ChartData, Note, Pairs, Sheet, TableBlock, Title

__all__ = ["consensus_columns", "consensus_table", "fva_sheet", "finance_sheet", "comparison_sheet",
           "overrides_audit_sheet"]

_PLAN_TAIL = {"model_used": "Model used", "reason": "Reason", "assumed": "Assumed drivers"}


def _points(x: Any) -> Any:
    """A fraction as percent points, 1 decimal (0.1234 -> 12.3)."""
    return np.round(pd.to_numeric(x, errors="coerce") * 100.0, 1)


def _round(x: Any, digits: int = 0) -> Any:
    return np.round(pd.to_numeric(x, errors="coerce"), digits)


# --------------------------------------------------------------------------- the Plan sheet


def consensus_columns(plan: pd.DataFrame, layers: Sequence[str] = LAYERS) -> list[str]:
    """The consensus columns of the Plan sheet, in order, for a plan from
    :func:`engine.overrides.apply_overrides`: Statistical, each layer present
    (``Sales layer`` ...), Consensus."""
    cols = [STATISTICAL]
    cols += [layer_column(ly) for ly in layers if ly != CONSENSUS and layer_column(ly) in plan.columns]
    return cols + [CONSENSUS]


def consensus_table(plan: pd.DataFrame, layers: Sequence[str] = LAYERS) -> pd.DataFrame:
    """The Plan table with the consensus side by side: SKU, Location, Period, Statistical,
    the layers, Consensus, the P-columns (moved with the consensus), Locked, Model used,
    Reason, Assumed drivers -- sheet headers, ready for a :class:`TableBlock`."""
    p = plan.rename(columns={"Date": "Period", **_PLAN_TAIL})
    cols = ["SKU", "Location", "Period", *consensus_columns(p, layers), *quantile_columns(p)]
    cols += [c for c in ("Locked", *_PLAN_TAIL.values()) if c in p.columns]
    return p.loc[:, [c for c in cols if c in p.columns]]


def overrides_audit_sheet(audit: pd.DataFrame, *, name: str = "Overrides log") -> Sheet:
    """What each override row did (the audit of :func:`engine.overrides.apply_overrides`)."""
    a = audit.copy()
    for c in ("Statistical", "Before", "After", "Change"):
        if c in a.columns:
            a[c] = _round(a[c], 1)
    if "Pct" in a.columns:
        a["Pct"] = _points(a["Pct"])
        a = a.rename(columns={"Pct": "Pct (%)"})
    note = ("Layers apply in order (Sales, Marketing, Finance, Consensus), each on the result of the ones before; "
            "within a layer SKU-location beats SKU beats category. Before/After: the forecast of the cells the row "
            "changed, summed, entering and leaving it.")
    return Sheet(name, [Title("Overrides applied"), Note(note), TableBlock("OverridesLog", a, freeze=True)],
                 widths={0: 10})


# --------------------------------------------------------------------------- FVA


def _wf_table(wf: pd.DataFrame) -> pd.DataFrame:
    out = wf.copy()
    out["Actual"] = _round(out["Actual"])
    out["Forecast"] = _round(out["Forecast"])
    out["FVA (points)"] = _points(out["FVA"])
    out["Cumulative vs naive (points)"] = _points(out["Cumulative FVA"])
    return out[["Version", "Step", "Cells", "Actual", "Forecast", "WAPE", "Bias", "FVA (points)",
                "Cumulative vs naive (points)", "Verdict"]]


def _touched_table(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in ("WAPE before", "WAPE after", "Bias before", "Bias after"):
        out[f"{c} (%)"] = _points(out[c])
    out["FVA (points)"] = _points(out["FVA"])
    out["Units changed"] = _round(out["Units changed"])
    out["Actual"] = _round(out["Actual"])
    return out[[*keys, "Cells", "Units changed", "Actual", "WAPE before (%)", "WAPE after (%)", "FVA (points)",
                "Bias before (%)", "Bias after (%)", "Verdict"]]


def fva_sheet(result: FVAResult, *, name: str = "FVA") -> Sheet:
    """The FVA sheet the S&OP meeting reviews: the verdicts in words, the waterfall (all
    versions, then each), a native chart, and the value added by layer, reason and category."""
    blocks: list[Any] = [Title("Forecast value added: did each step make the forecast better?")]
    blocks += [Note(v) for v in result.verdicts]
    if result.waterfall is None or not len(result.waterfall):
        blocks += [Note(a) for a in result.assumptions]
        return Sheet(name, blocks, widths={0: 18})
    vs = result.versions
    blocks.append(Pairs([("Versions scored", len(vs)), ("Periods with actuals", int(vs["Periods with actuals"].sum())),
                         ("Forecasts scored", int(vs["Cells"].sum())), ("Actual units", float(vs["Actual"].sum()))],
                        kinds={"Actual units": "quantity"}))
    blocks.append(Note("FVA = WAPE of the previous step - WAPE of this step: positive = the step made the forecast "
                       "better (value added), negative = worse. WAPE: total absolute error / total actuals. Bias above "
                       "0 = over-forecast."))
    blocks += [Title("Waterfall: seasonal naive -> statistical -> each layer -> consensus"),
               TableBlock("FVA", _wf_table(result.waterfall), freeze=True)]
    overall = result.waterfall[result.waterfall["Version"] == "All versions"]
    naive = float(overall.loc[overall["Step"] == NAIVE, "WAPE"].iloc[0])
    stat = float(overall.loc[overall["Step"] == STATISTICAL, "WAPE"].iloc[0])
    chart = pd.DataFrame({"Step": overall["Step"].to_numpy(), "WAPE (%)": _points(overall["WAPE"]).to_numpy(),
                          "Seasonal naive WAPE (%)": round(naive * 100, 1),
                          "Statistical WAPE (%)": round(stat * 100, 1)})
    blocks.append(ChartData(chart, [BandChart("WAPE after each step (%), lower is better", x=0, lo=2, hi=3,
                                              lines=[(1, "WAPE (%)")])]))
    if len(result.by_layer):
        blocks += [Title("Where each layer changed the forecast"),
                   Note("Only the forecasts the layer changed, before and after it: the value it adds where it acts."),
                   TableBlock("FVAByLayer", _touched_table(result.by_layer, ["Layer"]))]
    if len(result.by_reason):
        blocks += [Title("By reason"), TableBlock("FVAByReason", _touched_table(result.by_reason, ["Layer", "Reason"]))]
    if len(result.by_category):
        cat = result.by_category.copy()
        cat["Actual"] = _round(cat["Actual"])
        cat["FVA (points)"] = _points(cat["FVA"])
        blocks += [Title("By category"), TableBlock("FVAByCategory", cat[["Category", "Step", "Cells", "Actual", "WAPE",
                                                                          "Bias", "FVA (points)", "Verdict"]])]
    v = vs.copy()
    v["Actual"] = _round(v["Actual"])
    blocks += [Title("Versions scored"), TableBlock("FVAVersions", v)]
    if result.assumptions:
        blocks.append(Note("Assumed: " + "; ".join(result.assumptions)))
    return Sheet(name, blocks, widths={0: 18, 1: 18})


# --------------------------------------------------------------------------- finance


def _money(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if c == "Margin %":
            out["Margin (%)"] = _points(out[c])
        elif c in MONEY_COLUMNS or c in ("Price", "UnitCost", "Average stock", "Cost of goods", "Margin") or \
                str(c).startswith(("Revenue", "Margin", "Inventory value")):
            out[c] = _round(out[c], 2 if c in ("Price", "UnitCost") else 0)
    if "Margin %" in out.columns:
        cols = [("Margin (%)" if c == "Margin %" else c) for c in frame.columns]
        out = out[cols]
    return out


def finance_sheet(view: FinancialView, *, scenarios: pd.DataFrame | None = None, name: str = "Finance") -> Sheet:
    """The financial view: revenue, cost of goods, margin and inventory value by month, by
    category and month, per SKU-location; scenarios in money when given
    (:func:`engine.finance.scenario_money`)."""
    total = view.by_month
    rev = float(total["Revenue"].sum()) if len(total) else 0.0
    mar = float(total["Margin"].sum()) if len(total) else 0.0
    over = float(total["Revenue from overrides"].sum()) if len(total) else 0.0
    blocks: list[Any] = [
        Title("Financial view of the consensus plan"),
        Pairs([("Revenue over the horizon", rev), ("Margin over the horizon", mar),
               ("Margin %", mar / rev if rev else None), ("Revenue the overrides add", over)],
              kinds={"Revenue over the horizon": "money", "Margin over the horizon": "money", "Margin %": "percent",
                     "Revenue the overrides add": "money"}),
    ]
    if view.assumptions:
        blocks.append(Note("Assumed: " + "; ".join(view.assumptions)))
    blocks += [Title("By month"), TableBlock("FinanceByMonth", _money(total), freeze=True),
               Title("By category and month"), TableBlock("FinanceByCategory", _money(view.by_category))]
    if scenarios is not None and len(scenarios):
        blocks += [Title("Scenarios in money"),
                   Note("Revenue lost = stock-out units x price; margin lost = units x (price - unit cost)."),
                   TableBlock("ScenarioMoney", _money(scenarios))]
    blocks += [Title("Per SKU-location"), TableBlock("FinanceSeries", _money(view.series))]
    return Sheet(name, blocks, widths={0: 22, 1: 16})


# --------------------------------------------------------------------------- plan changes


def _changes(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in ("Previous", "Current", "Change", *CAUSES):
        out[c] = _round(out[c], 1)
    out["Change (%)"] = _points(out["Change %"])
    if "Actual vs previous plan" in out.columns:
        out["Actual vs previous plan (%)"] = _points(out["Actual vs previous plan"])
    keep = [c for c in out.columns if c not in ("Change %", "Actual vs previous plan")]
    order = [c for c in keep if c not in ("Change (%)",)]
    i = order.index("Change") + 1
    return out[order[:i] + ["Change (%)"] + order[i:]]


def comparison_sheet(cmp: PlanComparison, *, previous: str, current: str = "current plan",
                     name: str = "Plan changes") -> Sheet:
    """What changed between the previous published version and the current plan, by
    category and month and by SKU-location, and why (new data, drivers, overrides, model)."""
    s = cmp.summary.copy()
    s["Units"] = _round(s["Units"], 1)
    s["Absolute units"] = _round(s["Absolute units"], 1)
    s["Share (%)"] = _points(s["Share"])
    s = s.drop(columns=["Share"])
    blocks: list[Any] = [
        Title(f"Plan changes: {current} against {previous}"),
        Note("Each change is split into new data (actuals since the previous version), drivers, overrides (what the "
             "layers add now vs then) and model change (the rest); the parts add up to the change."),
    ]
    if cmp.notes:
        blocks.append(Note("; ".join(cmp.notes)))
    blocks += [TableBlock("ChangeSummary", s), Title("By category and month"),
               TableBlock("ChangeByCategory", _changes(cmp.by_category), freeze=True),
               Title("By SKU-location and month, largest changes first"),
               TableBlock("ChangeBySKU", _changes(cmp.by_sku))]
    if len(cmp.series):
        ser = cmp.series.copy()
        ser["Current"] = _round(ser["Current"], 1)
        ser["Previous"] = _round(ser["Previous"], 1)
        blocks += [Title("New and dropped SKU-locations"), TableBlock("ChangeSeries", ser)]
    return Sheet(name, blocks, widths={0: 22, 1: 16})

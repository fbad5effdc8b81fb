"""Planner overrides on top of the statistical forecast: the S&OP consensus plan.

The ``Overrides`` table (one change per row; headers matched case- and space-insensitively):

==========  =================================================================================
SKU         the SKU changed, or blank when the row is at Category level
Category    the Items category changed (Items must have a Category column); one of SKU or
            Category per row, never both
Location    optional; blank = every location of the SKU / category
Period      one plan period (any date inside it: months are calendar months; days and weeks
            are the 1 or 7 days starting on the date the Plan's Period column shows); or
From, To    a range of periods (either end may be blank: from the horizon start / to its end)
Qty         the new forecast, absolute units *per period* for the whole target (a category at
            all locations, say); or
Pct         a change in percent: "+10%" or "-5 %" as text, or a number as Excel's % format
            stores it (0.1 = +10 %, 1.5 = +150 %); -100 % sets the forecast to 0. A plain
            number above 10 (1000 %) is refused as percent points typed without the sign.
Layer       Sales, Marketing, Finance or Consensus (``layers`` may give another list)
Reason      free text (promotion, listing, price rise ...): forecast value added is
            reported by reason
Author      who made the change
Locked      optional TRUE/yes/x: the row's Qty is kept whatever happens after it (needs Qty)
==========  =================================================================================

Order of application. Layers apply in the order of ``layers`` (Sales -> Marketing ->
Finance -> Consensus), each working on the result of the ones before it, so the plan
shows the forecast after every layer and forecast value added can credit each step.
Within a layer the most specific row wins: SKU-location, then SKU (all locations), then
Category-location, then Category. Two rows of the same layer and the same level that touch
the same SKU-location-period conflict; they are refused, with both rows named.

Splitting down. A Qty at SKU (all locations) or Category level is the target's total per
period. Cells already set by a more specific row of the same layer, or locked by an earlier
one, keep their values and count towards that total; the rest of the total is split over
the remaining SKU-locations in proportion to their forecast entering the layer (evenly when
that forecast is 0 everywhere in the group). When the fixed cells already exceed the total,
the others get 0 and the audit says so. A Pct multiplies every free cell of the target.

Locks. A locked row's cells keep its Qty: later layers and less specific rows leave them
alone (a later row that targets them is reported in the audit, not applied). As the Qty is
absolute, the cell keeps it when the next refresh changes the statistical forecast.

Quantiles (P10, P50, P90 and any other P-column) move with the median: where the
statistical P50 is above 0 each is multiplied by consensus / statistical, so the band keeps
its width relative to the median (an absolute Qty is a multiplicative change at the cell);
where it is 0 each is shifted by the consensus. Both keep P10 <= P50 <= P90 and non-negative
values (given non-negative input); cells no override touched are returned unchanged.

Periods that have already elapsed (before the plan's first period) are no error: an
override stays in the table after its month passed, for the record and for forecast value
added. Such rows are ignored with a warning; a row entirely after the horizon is an error
(the plan cannot show it), a range reaching past the horizon is cut at its end.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem, ProblemCollector
from .frequency import normalize_freq
from .projection import _blank, _date, _norm_header, _number, _period_index

__all__ = [
    "LAYERS", "LEVELS", "STATISTICAL", "CONSENSUS", "OVERRIDE_COLUMNS", "AUDIT_COLUMNS", "EFFECT_COLUMNS",
    "Overrides", "ConsensusPlan", "layer_column", "read_overrides", "apply_overrides", "quantile_columns",
]

_log = logging.getLogger(__name__)

#: Default layers, in order of application.
LAYERS: tuple[str, ...] = ("Sales", "Marketing", "Finance", "Consensus")
#: Override levels, most specific first (within a layer the first wins).
LEVELS: tuple[str, ...] = ("SKU-location", "SKU", "Category-location", "Category")
STATISTICAL = "Statistical"
CONSENSUS = "Consensus"
TABLE = "Overrides"
#: Canonical columns of the Overrides table.
OVERRIDE_COLUMNS: tuple[str, ...] = (S.SKU, S.CATEGORY, S.LOCATION, "Period", "From", "To", "Qty", "Pct", "Layer",
                                     "Reason", "Author", "Locked")
_ALIASES: dict[str, tuple[str, ...]] = {
    "Period": ("period", "date", "month", "week", "day"),
    "From": ("from", "start", "fromperiod", "startperiod"),
    "To": ("to", "end", "toperiod", "endperiod"),
    "Qty": ("qty", "units", "quantity", "overrideqty"),
    "Pct": ("pct", "percent", "%", "change%", "pctchange", "percentchange", "change"),
    "Locked": ("locked", "lock"),
}
#: Audit frame columns: what each override row did.
AUDIT_COLUMNS: tuple[str, ...] = (
    "Row", "Layer", "Level", S.SKU, S.CATEGORY, S.LOCATION, "From", "To", "Qty", "Pct", "Locked", "Reason", "Author",
    "Cells", "Statistical", "Before", "After", "Change", "Status",
)
#: Cell-level effects: one row per SKU-location-period an override row changed.
EFFECT_COLUMNS: tuple[str, ...] = (S.SKU, S.LOCATION, "Period", "Layer", "Row", "Reason", "Before", "After")
_TRUE = frozenset({"true", "yes", "y", "x", "1", "locked", "lock"})
_FALSE = frozenset({"false", "no", "n", "0", "", "-"})
_PCOL = re.compile(r"^P\d+(\.\d+)?$")
_MAX_PCT = 10.0    # a plain number above 1000 % is percent points typed without the % sign


def layer_column(layer: str) -> str:
    """The plan column holding the forecast after ``layer``: ``Sales layer``; the last
    step's column is always ``Consensus`` (the final plan)."""
    return CONSENSUS if layer == CONSENSUS else f"{layer} layer"


def quantile_columns(frame: pd.DataFrame) -> list[str]:
    """The P-columns of a plan frame (P10, P50, P90, P97.5 ...), in frame order."""
    return [c for c in frame.columns if isinstance(c, str) and _PCOL.match(c)]


@dataclass
class Overrides:
    """The validated Overrides table: one row per usable table row (``rows``: Row (Excel
    row), Layer, Level, SKU, Category, Location (blank = all), From, To (the first and last
    plan period it touches), lo, hi (their 0-based horizon index), Qty, Pct, Locked, Reason,
    Author, Status) and the ``warnings`` (rows ignored or cut)."""

    rows: pd.DataFrame
    layers: tuple[str, ...]
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class ConsensusPlan:
    """Result of :func:`apply_overrides`.

    ``plan``: the plan frame with ``Statistical`` (its P50 before overrides), one column
    per layer present (:func:`layer_column`: the forecast after that layer), ``Consensus``
    (the final P50), the P-columns moved with it (P50 = Consensus) and ``Locked``;
    ``audit``: :data:`AUDIT_COLUMNS`, one row per override row; ``effects``:
    :data:`EFFECT_COLUMNS`, every cell each row changed (forecast value added by reason
    reads it); ``layers``: the layers present, in order.
    """

    plan: pd.DataFrame
    audit: pd.DataFrame
    effects: pd.DataFrame
    layers: list[str]
    warnings: list[Problem] = field(default_factory=list)


# --------------------------------------------------------------------------- the plan grid


@dataclass
class _Grid:
    series: pd.DataFrame          # SKU, Location, Category; row = series id
    dates: pd.DatetimeIndex       # plan period labels, contiguous
    sid: np.ndarray               # per plan row
    pidx: np.ndarray              # per plan row
    present: np.ndarray           # [n, H] the plan has this cell
    freq: str

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.series), len(self.dates)


def _grid(plan: pd.DataFrame, freq: str, items: pd.DataFrame | None) -> _Grid:
    period_col = "Period" if "Period" in plan.columns else S.DATE
    missing = [c for c in (S.SKU, period_col, "P50") if c not in plan.columns]
    if missing:
        raise InputError(f"The plan lacks the columns {', '.join(missing)}.",
                         [Problem("Plan", f"column {c} missing", "refresh the plan", column=c, code="E101")
                          for c in missing], code="E101")
    sku = plan[S.SKU].astype(str).to_numpy()
    loc = (plan[S.LOCATION].fillna(S.NO_LOCATION).astype(str).to_numpy() if S.LOCATION in plan.columns
           else np.full(len(plan), S.NO_LOCATION, dtype=object))
    # factorize each key then the pair: much faster than a MultiIndex on 100,000s of rows
    sc, su = pd.factorize(sku, sort=True)
    lc, lu = pd.factorize(loc, sort=True)
    codes, combos = pd.factorize(sc.astype(np.int64) * len(lu) + lc, sort=True)
    series = pd.DataFrame({S.SKU: np.asarray(su, dtype=object)[combos // len(lu)].astype(str),
                           S.LOCATION: np.asarray(lu, dtype=object)[combos % len(lu)].astype(str)})
    series[S.CATEGORY] = _categories(series, items)
    dates = pd.to_datetime(plan[period_col]).dt.normalize()
    first = dates.min()
    pidx = _period_index(dates.to_numpy(dtype="datetime64[ns]"), first, freq)
    H = int(pidx.max()) + 1 if len(pidx) else 0
    from .projection import _period_starts

    labels = _period_starts(first, H, freq)[:-1] if H else pd.DatetimeIndex([])
    present = np.zeros((len(series), H), dtype=bool)
    present[codes, pidx] = True
    return _Grid(series, labels, codes.astype(np.int64), pidx, present, freq)


def _categories(series: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
    """Category per series: the Items row of the SKU-location, else the SKU's blank-location row,
    else any row of the SKU; "" when unknown."""
    n = len(series)
    if items is None or S.CATEGORY not in items.columns or not len(items):
        return np.full(n, "", dtype=object)
    it = items[[c for c in (S.SKU, S.LOCATION, S.CATEGORY) if c in items.columns]].copy()
    it[S.SKU] = it[S.SKU].astype(str)
    it[S.CATEGORY] = it[S.CATEGORY].where(it[S.CATEGORY].notna(), "").astype(str).str.strip()
    out = pd.Series("", index=series.index, dtype=object)
    if S.LOCATION in it.columns:
        it[S.LOCATION] = it[S.LOCATION].fillna(S.NO_LOCATION).astype(str)
        exact = series[[S.SKU, S.LOCATION]].merge(it.drop_duplicates([S.SKU, S.LOCATION]), on=[S.SKU, S.LOCATION],
                                                  how="left")[S.CATEGORY]
        out = exact.fillna("").astype(str)
        generic = it[it[S.LOCATION] == S.NO_LOCATION]
        order = pd.concat([generic, it]).drop_duplicates(S.SKU)
    else:
        order = it.drop_duplicates(S.SKU)
    by_sku = series[[S.SKU]].merge(order[[S.SKU, S.CATEGORY]], on=S.SKU, how="left")[S.CATEGORY].fillna("")
    return np.where(out.to_numpy() != "", out.to_numpy(), by_sku.to_numpy()).astype(object)


# --------------------------------------------------------------------------- reading the table


def _find_columns(table: pd.DataFrame, col: ProblemCollector) -> dict[str, Any]:
    have = {_norm_header(c): c for c in table.columns}
    found: dict[str, Any] = {}
    for name in OVERRIDE_COLUMNS:
        for alias in (_norm_header(name), *_ALIASES.get(name, ())):
            if alias in have:
                found[name] = have[alias]
                break
    need = [("Layer",), (S.SKU, S.CATEGORY), ("Qty", "Pct"), ("Period", "From", "To")]
    for options in need:
        if not any(o in found for o in options):
            names = " or ".join(options)
            col.add(table=TABLE, message=f"column {names} is missing",
                    fix=f"add a {names} column to the Overrides table (see the Plancell Planner template)",
                    column=options[0], code="E101")
    return found


def _suggest(value: str, known: Sequence[str]) -> str:
    folded = {k.casefold(): k for k in known}
    if value.casefold() in folded:
        return f" (did you mean {folded[value.casefold()]!r}? names are case-sensitive)"
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.8) if len(known) < 50_000 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _pct(v: Any) -> tuple[float | None, bool]:
    """A percent cell as a fraction, and whether it was a plain number above 100 %."""
    if isinstance(v, str):
        # "'+10%": text Plancell wrote neutralised against formula injection (a published snapshot)
        v = v.strip().removeprefix("'")
    if isinstance(v, str) and v.strip().endswith("%"):
        x = _number(v.strip()[:-1].strip())
        return (None if x is None else x / 100.0), False
    x = _number(v)
    return x, x is not None and abs(x) > 1.0


def _flag(v: Any) -> bool | None:
    if _blank(v):
        return False
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return bool(v) if float(v) in (0.0, 1.0) else None
    t = str(v).strip().lower()
    return True if t in _TRUE else False if t in _FALSE else None


def read_overrides(
    table: pd.DataFrame,
    plan: pd.DataFrame,
    *,
    freq: str,
    items: pd.DataFrame | None = None,
    layers: Sequence[str] = LAYERS,
    first_row: int = 2,
) -> Overrides:
    """Validate the Overrides table against ``plan`` (SKU, Location, Period, P50 ...) and
    ``items`` (for Category). Every problem is collected: an InputError lists each bad row
    with its Excel row (``first_row`` = the first data row), column, value and fix -- unknown
    SKU, category, location or layer, a period after the horizon, an unreadable number or date,
    both or neither of SKU/Category, of Qty/Pct, of Period/From-To, a Locked Pct, and rows
    that conflict (same layer and level, same SKU-location-period). Blank rows are skipped."""
    freq = normalize_freq(freq)
    grid = _grid(plan, freq, items)
    return _read(table, grid, tuple(layers), first_row)


def _read(table: pd.DataFrame, grid: _Grid, layers: tuple[str, ...], first_row: int) -> Overrides:
    col = ProblemCollector()
    found = _find_columns(table, col)
    col.raise_if_errors("The Overrides table cannot be read")
    n = len(table)
    rows = np.arange(first_row, first_row + n)

    def values(name: str) -> list[Any]:
        return table[found[name]].tolist() if name in found else [None] * n

    def problem(i: int, column: str, value: Any, message: str, fix: str, code: str = "E100",
                severity: str = "error") -> None:
        col.add(table=TABLE, row=int(rows[i]), column=column, value=None if _blank(value) else value,
                message=message, fix=fix, code=code, severity=severity)

    raw = {name: values(name) for name in OVERRIDE_COLUMNS}
    blank_row = np.array([all(_blank(raw[c][i]) for c in OVERRIDE_COLUMNS if c in found) for i in range(n)],
                         dtype=bool) if n else np.zeros(0, dtype=bool)
    layer_of = {ly.casefold(): ly for ly in layers}
    skus = set(grid.series[S.SKU])
    locs = set(grid.series[S.LOCATION])
    cats = set(c for c in grid.series[S.CATEGORY] if c)
    sku_locs = set(zip(grid.series[S.SKU], grid.series[S.LOCATION]))
    cat_locs = set(zip(grid.series[S.CATEGORY], grid.series[S.LOCATION]))
    H = len(grid.dates)
    first, last = grid.dates[0], grid.dates[-1]
    date_cache: dict[Any, Any] = {}

    def period(v: Any) -> tuple[int | None, pd.Timestamp | None]:
        try:
            key = (type(v).__name__, v)
            hash(key)
        except TypeError:
            key = (type(v).__name__, str(v))
        if key not in date_cache:
            d = _date(v)
            date_cache[key] = (None, None) if d is None else (
                int(_period_index(np.array([d.to_datetime64()]), first, grid.freq)[0]), d)
        return date_cache[key]

    out: dict[str, list[Any]] = {k: [] for k in ("i", "Layer", "Level", S.SKU, S.CATEGORY, S.LOCATION, "lo", "hi",
                                                 "Qty", "Pct", "Locked", "Reason", "Author", "Status")}
    for i in range(n):
        if blank_row[i]:
            continue
        ok = True
        # Layer
        lv = raw["Layer"][i]
        layer = layer_of.get(str(lv).strip().casefold()) if not _blank(lv) else None
        if layer is None:
            ok = False
            problem(i, "Layer", lv, "Layer is blank" if _blank(lv) else f"unknown layer {str(lv).strip()!r}",
                    f"write one of {', '.join(layers)}", code="E102")
        # Target
        sv, cv, lv2 = raw[S.SKU][i], raw[S.CATEGORY][i], raw[S.LOCATION][i]
        sku = None if _blank(sv) else str(sv).strip()
        cat = None if _blank(cv) else str(cv).strip()
        loc = S.NO_LOCATION if _blank(lv2) else str(lv2).strip()
        level = None
        if sku is not None and cat is not None:
            ok = False
            problem(i, S.CATEGORY, cv, "both SKU and Category are filled",
                    "keep the SKU for one product, or the Category (blank SKU) for the whole category")
        elif sku is None and cat is None:
            ok = False
            problem(i, S.SKU, None, "neither SKU nor Category is filled", "enter the SKU, or a Category", code="E102")
        elif sku is not None:
            if sku not in skus:
                ok = False
                problem(i, S.SKU, sv, f"unknown SKU {sku!r}: not in the plan" + _suggest(sku, sorted(skus)),
                        "use a SKU of the Plan sheet, or delete the row", code="E106")
            elif loc and (sku, loc) not in sku_locs:
                ok = False
                known = loc in locs
                problem(i, S.LOCATION, lv2, f"SKU {sku} is not planned at location {loc!r}" if known else
                        f"unknown location {loc!r}" + _suggest(loc, sorted(locs)),
                        "use a location the Plan sheet shows for this SKU, or leave Location blank for all",
                        code="E106")
            level = "SKU-location" if loc else "SKU"
        else:
            if not cats:
                ok = False
                problem(i, S.CATEGORY, cv, "Category overrides need the Items table with a Category column",
                        "add Category to the Items table, or override by SKU", code="E101")
            elif cat not in cats:
                ok = False
                problem(i, S.CATEGORY, cv, f"unknown category {cat!r}" + _suggest(cat, sorted(cats)),
                        "use a category of the Items table, or delete the row", code="E106")
            elif loc and (cat, loc) not in cat_locs:
                ok = False
                known = loc in locs
                problem(i, S.LOCATION, lv2, f"no SKU of category {cat} is planned at location {loc!r}" if known
                        else f"unknown location {loc!r}" + _suggest(loc, sorted(locs)),
                        "use a location of the Plan sheet, or leave Location blank for all", code="E106")
            level = "Category-location" if loc else "Category"
        # Periods
        pv, fv, tv = raw["Period"][i], raw["From"][i], raw["To"][i]
        lo = hi = None
        status = "applied"
        if not _blank(pv) and not (_blank(fv) and _blank(tv)):
            ok = False
            problem(i, "Period", pv, "both Period and From/To are filled",
                    "give one Period, or a From/To range, not both")
        elif _blank(pv) and _blank(fv) and _blank(tv):
            ok = False
            problem(i, "Period", None, "no Period and no From/To", "enter the Period (or a From/To range) the "
                    "override is for", code="E102")
        else:
            ends: list[int] = []
            given = [("Period", pv, None)] if not _blank(pv) else [("From", fv, 0), ("To", tv, H - 1)]
            for name, v, default in given:
                if _blank(v):
                    ends.append(default)
                    continue
                p, _ = period(v)
                if p is None:
                    ok = False
                    problem(i, name, v, f"{name} cannot be read as a date",
                            "write a date such as 2025-03-01 (any day inside the period)", code="E105")
                    continue
                ends.append(p)
            if len(ends) == len(given):
                lo, hi = (ends[0], ends[0]) if len(ends) == 1 else (ends[0], ends[1])
                where = "Period" if not _blank(pv) else "From"
                if lo > hi:
                    ok = False
                    problem(i, "To", tv, "To is before From", "swap From and To")
                elif lo > H - 1:
                    ok = False
                    problem(i, where, pv if where == "Period" else fv,
                            f"after the plan horizon (last period {last:%Y-%m-%d})",
                            "extend Horizon in the Settings table and refresh, or delete the row", code="E110")
                elif hi < 0:
                    status = "ignored: periods already elapsed"
                    problem(i, where, pv if where == "Period" else fv,
                            f"periods before the plan's first period {first:%Y-%m-%d}: the row is ignored",
                            "keep it for the record, or delete it", severity="warning")
                else:
                    if lo < 0:
                        status = "applied from the plan's first period (earlier periods elapsed)"
                    if hi > H - 1:
                        status = "applied up to the horizon end (later periods are beyond it)"
                    lo, hi = max(lo, 0), min(hi, H - 1)
        # Qty / Pct
        qv, cv2 = raw["Qty"][i], raw["Pct"][i]
        qty = pct = None
        if not _blank(qv) and not _blank(cv2):
            ok = False
            problem(i, "Pct", cv2, "both Qty and Pct are filled", "keep the units (Qty) or the percent (Pct), not both")
        elif _blank(qv) and _blank(cv2):
            ok = False
            problem(i, "Qty", None, "neither Qty nor Pct is filled",
                    "enter the new forecast in units per period (Qty) or a change in percent (Pct)", code="E102")
        elif not _blank(qv):
            qty = _number(qv)
            if qty is None or qty < 0:
                ok = False
                problem(i, "Qty", qv, "Qty is not a number" if qty is None else "Qty is negative",
                        "enter units per period, 0 or more, without thousands separators", code="E102")
        else:
            pct, plain_big = _pct(cv2)
            if pct is None:
                ok = False
                problem(i, "Pct", cv2, "Pct is not a percent", 'write e.g. "+10%", "-5%" or 0.1', code="E102")
            elif plain_big and abs(pct) > _MAX_PCT:
                ok = False
                problem(i, "Pct", cv2, f"Pct {pct:g} reads as {pct * 100:,.0f} %",
                        f'write "{pct:g}%" for {pct:g} percent (or format the cell as %)', code="E102")
            elif pct < -1.0:
                ok = False
                problem(i, "Pct", cv2, f"a change of {pct * 100:,.0f} % would make the forecast negative",
                        "use -100% at most (forecast 0)", code="E102")
            elif plain_big:
                problem(i, "Pct", cv2, f"the number {pct:g} is read as {pct * 100:+,.0f} %",
                        f'if you meant {pct:g} percent write "{pct:g}%"', severity="warning", code="E102")
        # Locked
        lk = _flag(raw["Locked"][i])
        if lk is None:
            ok = False
            problem(i, "Locked", raw["Locked"][i], "Locked is not yes/no", "write TRUE (or yes, x) or leave blank",
                    code="E102")
        elif lk and pct is not None:
            ok = False
            problem(i, "Locked", raw["Locked"][i], "a percent cannot be locked: it moves with the forecast",
                    "write the units to keep in Qty, or clear Locked")
        if not ok:
            continue
        out["i"].append(i)
        out["Layer"].append(layer)
        out["Level"].append(level)
        out[S.SKU].append(sku or "")
        out[S.CATEGORY].append(cat or "")
        out[S.LOCATION].append(loc)
        out["lo"].append(lo)
        out["hi"].append(hi)
        out["Qty"].append(np.nan if qty is None else qty)
        out["Pct"].append(np.nan if pct is None else pct)
        out["Locked"].append(bool(lk))
        out["Reason"].append("" if _blank(raw["Reason"][i]) else str(raw["Reason"][i]).strip())
        out["Author"].append("" if _blank(raw["Author"][i]) else str(raw["Author"][i]).strip())
        out["Status"].append(status)
    frame = pd.DataFrame(out)
    frame["Row"] = rows[frame["i"].to_numpy(dtype=np.int64)] if len(frame) else np.zeros(0, dtype=np.int64)
    frame = frame.astype({"lo": "Int64", "hi": "Int64"}) if len(frame) else frame
    active = frame[frame["Status"].str.startswith("applied")] if len(frame) else frame
    if len(active):
        cells = _expand(active, grid, layers)
        _conflicts(cells, active, grid, layers, col)
    col.raise_if_errors("The Overrides table has problems")
    lo = frame["lo"].fillna(0).to_numpy(dtype=np.int64) if len(frame) else np.zeros(0, dtype=np.int64)
    hi = frame["hi"].fillna(0).to_numpy(dtype=np.int64) if len(frame) else np.zeros(0, dtype=np.int64)
    frame["From"] = grid.dates[np.clip(lo, 0, max(H - 1, 0))] if len(frame) else pd.Series(dtype="datetime64[ns]")
    frame["To"] = grid.dates[np.clip(hi, 0, max(H - 1, 0))] if len(frame) else pd.Series(dtype="datetime64[ns]")
    ignored = frame["Status"].str.startswith("ignored") if len(frame) else np.zeros(0, dtype=bool)
    frame.loc[ignored, ["From", "To"]] = pd.NaT
    cols = ["Row", "Layer", "Level", S.SKU, S.CATEGORY, S.LOCATION, "From", "To", "lo", "hi", "Qty", "Pct", "Locked",
            "Reason", "Author", "Status"]
    return Overrides(frame.reindex(columns=cols).reset_index(drop=True), layers, col.warnings)


@dataclass
class _Cells:
    row: np.ndarray        # index into the Overrides rows frame
    sid: np.ndarray
    p: np.ndarray


def _expand(rows: pd.DataFrame, grid: _Grid, layers: tuple[str, ...]) -> _Cells:
    """Every (row, series, period) the rows touch, vectorised: one merge per level, then the
    period ranges unrolled with repeat/arange."""
    ser = grid.series.assign(sid=np.arange(len(grid.series)))
    r = rows.assign(ri=np.arange(len(rows)))
    parts: list[pd.DataFrame] = []
    for level, on in (("SKU-location", [S.SKU, S.LOCATION]), ("SKU", [S.SKU]),
                      ("Category-location", [S.CATEGORY, S.LOCATION]), ("Category", [S.CATEGORY])):
        sub = r.loc[r["Level"] == level, ["ri", *on]]
        if len(sub):
            parts.append(sub.merge(ser[[*on, "sid"]], on=on, how="inner")[["ri", "sid"]])
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return _Cells(z, z, z)
    pairs = pd.concat(parts, ignore_index=True)
    ri = pairs["ri"].to_numpy(dtype=np.int64)
    sid = pairs["sid"].to_numpy(dtype=np.int64)
    lo = rows["lo"].to_numpy(dtype=np.int64)[ri]
    hi = rows["hi"].to_numpy(dtype=np.int64)[ri]
    count = hi - lo + 1
    rep = np.repeat(np.arange(len(ri)), count)
    start = np.cumsum(count) - count
    p = lo[rep] + (np.arange(rep.size) - start[rep])
    ri, sid = ri[rep], sid[rep]
    keep = grid.present[sid, p]
    return _Cells(ri[keep], sid[keep], p[keep])


def _conflicts(cells: _Cells, rows: pd.DataFrame, grid: _Grid, layers: tuple[str, ...],
               col: ProblemCollector) -> None:
    """Two rows of one layer and level touching one SKU-location-period: report each pair once."""
    if not cells.row.size:
        return
    n, H = grid.shape
    layer_code = pd.Categorical(rows["Layer"], categories=list(layers)).codes.astype(np.int64)
    level_code = pd.Categorical(rows["Level"], categories=list(LEVELS)).codes.astype(np.int64)
    group = layer_code[cells.row] * len(LEVELS) + level_code[cells.row]
    key = (group * n + cells.sid) * H + cells.p
    order = np.lexsort((cells.row, key))
    k, rr = key[order], cells.row[order]
    dup = np.flatnonzero(k[1:] == k[:-1]) + 1
    if not dup.size:
        return
    # the first row holding each duplicated key
    first_of = np.searchsorted(k, k[dup], side="left")
    pairs = pd.DataFrame({"a": rr[first_of], "b": rr[dup], "sid": cells.sid[order][dup], "p": cells.p[order][dup]})
    pairs = pairs[pairs["a"] != pairs["b"]].drop_duplicates(["a", "b"])
    excel = rows["Row"].to_numpy()
    for a, b, s, p in pairs.itertuples(index=False, name=None):
        sku, loc = grid.series[S.SKU].iat[s], grid.series[S.LOCATION].iat[s]
        where = f"{sku} at {loc}" if loc else str(sku)
        layer, level = rows["Layer"].iat[b], rows["Level"].iat[b]
        col.add(table=TABLE, row=int(excel[b]), column="Layer", value=layer, code="E103",
                message=f"conflicts with row {excel[a]}: both are {layer} overrides at {level} level for {where} in "
                        f"{grid.dates[p]:%Y-%m-%d}",
                fix=f"keep one of rows {excel[a]} and {excel[b]}, or make one more specific (add a Location or a "
                    "SKU) so it wins")


# --------------------------------------------------------------------------- applying


def apply_overrides(
    plan: pd.DataFrame,
    overrides: Overrides | pd.DataFrame | None,
    *,
    freq: str,
    items: pd.DataFrame | None = None,
    layers: Sequence[str] = LAYERS,
    first_row: int = 2,
) -> ConsensusPlan:
    """The consensus plan: ``overrides`` (the raw Overrides table, or :func:`read_overrides`'
    result; None = none) applied to ``plan``'s P50 layer by layer (module docstring).

    ``plan`` is the statistical plan (SKU, Location, Period, P10, P50, P90, ...); the
    result keeps its rows and order. Feed ``result.plan`` to :func:`engine.policy.build_policy`
    (``point="P50"``, which now holds the consensus) so safety stock, reorder points and
    purchases follow the consensus.
    """
    freq = normalize_freq(freq)
    grid = _grid(plan, freq, items)
    if overrides is None:
        ov = Overrides(pd.DataFrame(columns=["Row", "Layer", "Level", S.SKU, S.CATEGORY, S.LOCATION, "From", "To",
                                             "lo", "hi", "Qty", "Pct", "Locked", "Reason", "Author", "Status"]),
                       tuple(layers))
    elif isinstance(overrides, Overrides):
        ov = overrides
    else:
        ov = _read(overrides, grid, tuple(layers), first_row)
    n, H = grid.shape
    stat = np.zeros((n, H))
    p50 = pd.to_numeric(plan["P50"], errors="coerce").to_numpy(dtype=float)
    stat[grid.sid, grid.pidx] = np.nan_to_num(p50)
    rows = ov.rows
    active_mask = rows["Status"].astype(str).str.startswith("applied").to_numpy() if len(rows) else np.zeros(0, bool)
    active = rows[active_mask].reset_index(drop=True)
    cells = _expand(active, grid, ov.layers) if len(active) else _Cells(*(np.zeros(0, dtype=np.int64),) * 3)

    cur = stat.copy()
    locked_by = np.full((n, H), -1, dtype=np.int64)
    after: dict[str, np.ndarray] = {}
    m = len(active)
    before_sum, after_sum, stat_sum = np.zeros(m), np.zeros(m), np.zeros(m)
    n_cells, n_blocked = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
    blocker = np.full(m, -1, dtype=np.int64)
    short = np.zeros(m, dtype=bool)
    eff: list[tuple[np.ndarray, ...]] = []
    layer_of_row = active["Layer"].to_numpy(dtype=object) if m else np.zeros(0, dtype=object)
    level_of_row = active["Level"].to_numpy(dtype=object) if m else np.zeros(0, dtype=object)
    qty = active["Qty"].to_numpy(dtype=float) if m else np.zeros(0)
    pct = active["Pct"].to_numpy(dtype=float) if m else np.zeros(0)
    lock = active["Locked"].to_numpy(dtype=bool) if m else np.zeros(0, dtype=bool)
    present_layers = [ly for ly in ov.layers if m and (layer_of_row == ly).any()]
    for layer in present_layers:
        fixed = np.zeros((n, H), dtype=bool)
        for level in LEVELS:
            sel = (layer_of_row[cells.row] == layer) & (level_of_row[cells.row] == level)
            if not sel.any():
                continue
            r, s, p = cells.row[sel], cells.sid[sel], cells.p[sel]
            lk = locked_by[s, p]
            excluded = fixed[s, p] | (lk >= 0)
            blocked = (lk >= 0) & ~fixed[s, p]
            np.add.at(n_blocked, r[blocked], 1)
            blocker[r[blocked]] = np.maximum(blocker[r[blocked]], lk[blocked])
            new_vals = np.full(r.size, np.nan)
            is_pct = np.isfinite(pct[r])
            fr = ~excluded
            sp = fr & is_pct
            new_vals[sp] = cur[s[sp], p[sp]] * (1.0 + pct[r[sp]])
            sq = ~is_pct
            if sq.any():
                # group = (row, period): the Qty is the target's total per period
                g, gi = np.unique(r[sq] * H + p[sq], return_inverse=True)
                gr = g // H
                cq = cur[s[sq], p[sq]]
                frq = fr[sq]
                fixed_sum = np.bincount(gi, weights=np.where(frq, 0.0, cq), minlength=g.size)
                w_sum = np.bincount(gi, weights=np.where(frq, cq, 0.0), minlength=g.size)
                free_n = np.bincount(gi, weights=frq.astype(float), minlength=g.size)
                target = qty[gr] - fixed_sum
                short[gr[target < -1e-9]] = True
                rest = np.maximum(target, 0.0)
                share = np.where(w_sum[gi] > 0, cq / np.where(w_sum[gi] > 0, w_sum[gi], 1.0),
                                 1.0 / np.maximum(free_n[gi], 1.0))
                v = rest[gi] * share
                idx = np.flatnonzero(sq)
                new_vals[idx[frq]] = v[frq]
            r2, s2, p2, nv = r[fr], s[fr], p[fr], new_vals[fr]
            old = cur[s2, p2]
            st = stat[s2, p2]
            cur[s2, p2] = nv
            fixed[s2, p2] = True
            lr = lock[r2]
            locked_by[s2[lr], p2[lr]] = r2[lr]
            np.add.at(n_cells, r2, 1)
            np.add.at(before_sum, r2, old)
            np.add.at(after_sum, r2, nv)
            np.add.at(stat_sum, r2, st)
            eff.append((r2, s2, p2, old, nv))
        after[layer] = cur.copy()

    out = plan.copy()
    out[STATISTICAL] = stat[grid.sid, grid.pidx]
    for layer in present_layers:
        if layer != CONSENSUS:
            out[layer_column(layer)] = after[layer][grid.sid, grid.pidx]
    final = cur[grid.sid, grid.pidx]
    out[CONSENSUS] = final
    st_row = out[STATISTICAL].to_numpy()
    changed = final != st_row
    for c in quantile_columns(plan):
        q = pd.to_numeric(plan[c], errors="coerce").to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.where(st_row > 0, q * (final / np.where(st_row > 0, st_row, 1.0)), q + (final - st_row))
        out[c] = np.where(changed, moved, q)
    out["P50"] = np.where(changed, final, pd.to_numeric(plan["P50"], errors="coerce").to_numpy(dtype=float))
    out["Locked"] = locked_by[grid.sid, grid.pidx] >= 0

    audit = _audit(rows, active_mask, n_cells, stat_sum, before_sum, after_sum, n_blocked, blocker, short, active)
    effects = _effects(eff, active, grid)
    return ConsensusPlan(out, audit, effects, present_layers, list(ov.warnings))


def _audit(rows: pd.DataFrame, active_mask: np.ndarray, n_cells: np.ndarray, stat_sum: np.ndarray,
           before: np.ndarray, after: np.ndarray, n_blocked: np.ndarray, blocker: np.ndarray, short: np.ndarray,
           active: pd.DataFrame) -> pd.DataFrame:
    a = rows.copy()
    for c in ("Cells", "Statistical", "Before", "After"):
        a[c] = 0 if c == "Cells" else np.nan
    idx = np.flatnonzero(active_mask)
    a.loc[idx, "Cells"] = n_cells
    a.loc[idx, "Statistical"] = stat_sum
    a.loc[idx, "Before"] = before
    a.loc[idx, "After"] = after
    a["Change"] = a["After"] - a["Before"]
    status = a["Status"].to_numpy(dtype=object).copy()
    excel = active["Row"].to_numpy() if len(active) else np.zeros(0)
    for k, i in enumerate(idx):
        notes = []
        if n_blocked[k]:
            notes.append(f"{n_blocked[k]} cell{'s' if n_blocked[k] > 1 else ''} kept by the lock of row "
                         f"{excel[blocker[k]]}")
        if short[k]:
            notes.append("more specific overrides already exceed this total: the other SKU-locations set to 0")
        if n_cells[k] == 0:
            status[i] = "not applied: every cell is set by a more specific row or locked"
        if notes:
            status[i] = f"{status[i]}; " + "; ".join(notes)
    a["Status"] = status
    return a.reindex(columns=list(AUDIT_COLUMNS)).reset_index(drop=True)


def _effects(eff: list[tuple[np.ndarray, ...]], active: pd.DataFrame, grid: _Grid) -> pd.DataFrame:
    if not eff:
        return pd.DataFrame({c: pd.Series(dtype=object if c in (S.SKU, S.LOCATION, "Layer", "Reason") else float)
                             for c in EFFECT_COLUMNS})
    r, s, p, b, a = (np.concatenate(x) for x in zip(*eff))
    return pd.DataFrame({
        S.SKU: grid.series[S.SKU].to_numpy()[s], S.LOCATION: grid.series[S.LOCATION].to_numpy()[s],
        "Period": grid.dates[p], "Layer": active["Layer"].to_numpy(dtype=object)[r],
        "Row": active["Row"].to_numpy()[r], "Reason": active["Reason"].to_numpy(dtype=object)[r],
        "Before": b, "After": a,
    })

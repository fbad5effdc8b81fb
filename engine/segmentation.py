"""Segmentation: ABC by value, XYZ by forecastability, demand pattern, default service levels.

An inventory planner sets service levels by class rather than SKU by SKU:

* **ABC** (Pareto analysis, Silver, Pyke & Thomas 2017, *Inventory and Production
  Management in Supply Chains*, ch. 2): items sorted by annual value; ``A`` holds the
  first 80 % of the cumulative value, ``B`` up to 95 %, ``C`` the rest.
* **XYZ** by forecast-error variability: the coefficient of variation of the backtest
  errors, ``ErrorCV = RMSE(P50 - actual) / mean(actual)``. ``X`` is easy to forecast
  (CV <= 0.5), ``Y`` harder (<= 1.0), ``Z`` hard. Using the *error* rather than the
  demand CV means a seasonal but well-forecast item is still ``X``.
* **Demand pattern** (Syntetos, Boylan & Croston 2005, "On the categorization of demand
  patterns", JORS 56): ADI (average inter-demand interval, periods) against CV2
  (squared coefficient of variation of the non-zero demand sizes), cut at 1.32 and 0.49.

Default service levels per class come from :data:`DEFAULT_SERVICE_LEVELS`, overridden by
``ServiceLevel.<class>`` keys of the Settings table (a two-letter class such as ``AX``
beats its ABC letter); a ``ServiceLevel`` in Items beats both.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem, ProblemCollector

__all__ = [
    "DEFAULT_SERVICE_LEVELS",
    "DEFAULT_ABC_CUTOFFS",
    "DEFAULT_XYZ_CUTOFFS",
    "UNKNOWN_XYZ",
    "SegmentationSettings",
    "abc_classes",
    "xyz_classes",
    "demand_pattern",
    "pattern_stats",
    "segment",
    "service_levels_from_settings",
    "segmentation_settings",
]

_log = logging.getLogger(__name__)

#: Cycle service level per ABC class when neither Settings nor Items give one.
DEFAULT_SERVICE_LEVELS: Mapping[str, float] = MappingProxyType({"A": 0.98, "B": 0.95, "C": 0.90})
DEFAULT_ABC_CUTOFFS: tuple[float, float] = (0.80, 0.95)
DEFAULT_XYZ_CUTOFFS: tuple[float, float] = (0.5, 1.0)
#: XYZ class of an item without backtest errors (new items). Not "Z": we do not know that
#: it is hard to forecast, and a "Z" label would wrongly suggest so in the S&OP meeting.
UNKNOWN_XYZ = "?"

_ABC = ("A", "B", "C")
_XYZ = ("X", "Y", "Z")
_VALID_CLASSES = frozenset(_ABC) | frozenset(a + x for a in _ABC for x in _XYZ)
_NO_DEMAND = "no demand"
# Relative tolerance on cumulative shares: sums of floats such as 0.1 + 0.7 must still
# count as reaching 80 %.
_SHARE_EPS = 1e-9
# A CV cut-off above 10 (1,000 %) is surely a typo (50 meant as 50 %).
_MAX_XYZ_CUTOFF = 10.0
_PERCENT_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))\s*%")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class SegmentationSettings:
    """Segmentation settings read from the Settings table.

    ``service_levels`` holds only the classes the Settings table sets (read-only);
    :func:`segment` falls back to :data:`DEFAULT_SERVICE_LEVELS` for the others.
    """

    abc_cutoffs: tuple[float, float] = DEFAULT_ABC_CUTOFFS
    xyz_cutoffs: tuple[float, float] = DEFAULT_XYZ_CUTOFFS
    service_levels: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


# --------------------------------------------------------------------------------------
# Classifiers on arrays
# --------------------------------------------------------------------------------------


def abc_classes(value: Any, *, cutoffs: tuple[float, float] = DEFAULT_ABC_CUTOFFS) -> np.ndarray:
    """ABC class per item from its (annual) value.

    Items are sorted by value, highest first (ties keep their input order). An item is
    ``A`` while the cumulative value *before* it is below ``cutoffs[0]`` of the total, so
    the item that straddles the cut-off is ``A``; likewise ``B`` up to ``cutoffs[1]``;
    the rest are ``C``. Items worth zero (or NaN, infinite, negative) are always ``C``.
    Returns an object array of ``"A"``/``"B"``/``"C"`` in the input order.
    """
    a, b = _check_abc_cutoffs(cutoffs)
    v = np.asarray(value, dtype=float).ravel()
    v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
    out = np.full(v.shape, "C", dtype=object)
    total = v.sum()
    if total <= 0:
        return out
    order = np.argsort(-v, kind="stable")
    sv = v[order]
    before = (np.cumsum(sv) - sv) / total
    cls = np.where(before < a - _SHARE_EPS, "A", np.where(before < b - _SHARE_EPS, "B", "C"))
    cls[sv <= 0] = "C"
    out[order] = cls
    return out


def xyz_classes(error_cv: Any, *, cutoffs: tuple[float, float] = DEFAULT_XYZ_CUTOFFS) -> np.ndarray:
    """XYZ class per item from the coefficient of variation of its forecast errors.

    ``X`` when ``CV <= cutoffs[0]``, ``Y`` when ``CV <= cutoffs[1]``, ``Z`` above (and for an
    infinite CV: errors on an item that sold nothing). NaN (no backtest, e.g. a new item)
    gives :data:`UNKNOWN_XYZ` (``"?"``), not ``Z``: the item's forecastability is unknown,
    not proven bad. Returns an object array in the input order.
    """
    x, y = _check_xyz_cutoffs(cutoffs)
    cv = np.asarray(error_cv, dtype=float).ravel()
    out = np.select([cv <= x, cv <= y, cv > y], ["X", "Y", "Z"], default=UNKNOWN_XYZ).astype(object)
    return out


def demand_pattern(adi: Any, cv2: Any, *, adi_cut: float = 1.32, cv2_cut: float = 0.49) -> np.ndarray:
    """Demand pattern per item (Syntetos, Boylan & Croston 2005).

    ============  ==============  ==============
    pattern       ADI             CV2
    ============  ==============  ==============
    smooth        < ``adi_cut``   < ``cv2_cut``
    erratic       < ``adi_cut``   >= ``cv2_cut``
    intermittent  >= ``adi_cut``  < ``cv2_cut``
    lumpy         >= ``adi_cut``  >= ``cv2_cut``
    ============  ==============  ==============

    ADI is in periods (1 = demand every period). A NaN ADI means the item never sold:
    ``"no demand"``. A NaN CV2 with a known ADI counts as no size variability (below the cut).
    """
    if not (math.isfinite(adi_cut) and adi_cut > 0 and math.isfinite(cv2_cut) and cv2_cut >= 0):
        raise InputError(
            f"Demand-pattern cut-offs must be positive numbers (got ADI {adi_cut!r}, CV2 {cv2_cut!r}).",
            [Problem("Settings", "invalid demand-pattern cut-off", "use ADI 1.32 and CV2 0.49 (the defaults)",
                     value=f"{adi_cut!r}, {cv2_cut!r}", code="E110")],
            code="E110",
        )
    a = np.asarray(adi, dtype=float).ravel()
    c = np.asarray(cv2, dtype=float).ravel()
    if a.shape != c.shape:
        raise ValueError(f"adi and cv2 differ in length ({a.size} and {c.size})")
    frequent = a < adi_cut
    variable = np.nan_to_num(c, nan=0.0) >= cv2_cut
    out = np.select(
        [np.isnan(a), frequent & ~variable, frequent & variable, ~variable],
        [_NO_DEMAND, "smooth", "erratic", "intermittent"],
        default="lumpy",
    ).astype(object)
    return out


# --------------------------------------------------------------------------------------
# Statistics per series
# --------------------------------------------------------------------------------------


def pattern_stats(history: pd.DataFrame) -> pd.DataFrame:
    """Demand statistics per SKU-location, vectorised over all series.

    ``history`` has SKU, Date, Qty and optionally Location (``""`` when absent), one row per
    period with zeros included. Rows with a blank Qty (plan rows) are ignored. Returns one
    row per (SKU, Location), sorted, with:

    * ``n_periods`` -- periods with a Qty; ``n_nonzero`` -- periods with Qty > 0 (returns,
      Qty < 0, are not demand occurrences).
    * ``ADI`` = periods from the first sale to the end of history / ``n_nonzero``. This is
      the mean interval between sales, counting the silence after the last one (a product
      that stopped selling becomes intermittent) but not the periods before the first sale
      (a launch is not intermittency). 1.0 = a sale every period; one sale in 20 periods
      gives 20. NaN when the series never sold.
    * ``CV2`` = (population sd / mean)^2 of the non-zero sizes: 0 with a single sale (no
      variability observed), NaN when it never sold.
    * ``mean_demand``, ``sd_demand`` -- per period over all periods (zeros included); sample
      sd (ddof 1), NaN with fewer than two periods.
    """
    _require(history, (S.SKU, S.DATE, S.QTY), "Sales")
    qty_all = pd.to_numeric(history[S.QTY], errors="coerce").to_numpy(dtype=float)
    keep = ~np.isnan(qty_all)
    sku = history[S.SKU].to_numpy()[keep]
    loc = _location(history)[keep]
    qty = qty_all[keep]
    dates = pd.to_datetime(history[S.DATE]).to_numpy()[keep].astype("datetime64[ns]").view(np.int64)
    keys = pd.DataFrame({S.SKU: sku, S.LOCATION: loc})
    codes = keys.groupby([S.SKU, S.LOCATION], sort=True).ngroup().to_numpy()
    first = ~keys.duplicated().to_numpy()
    out = keys[first].iloc[np.argsort(codes[first])].reset_index(drop=True)
    n_groups = len(out)

    order = np.lexsort((dates, codes))
    codes, qty = codes[order], qty[order]
    n = np.bincount(codes, minlength=n_groups).astype(float)
    start = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    pos = np.arange(codes.size) - start[codes]

    nz = qty > 0
    n_nz = np.bincount(codes, weights=nz, minlength=n_groups)
    nz_codes, nz_first = np.unique(codes[nz], return_index=True)
    first_pos = np.full(n_groups, np.nan)
    first_pos[nz_codes] = pos[nz][nz_first]
    with np.errstate(invalid="ignore", divide="ignore"):
        adi = np.where(n_nz > 0, (n - first_pos) / n_nz, np.nan)
        size_mean = np.bincount(codes, weights=np.where(nz, qty, 0.0), minlength=n_groups) / n_nz
        # Two-pass variance: sum of squares minus square of sums cancels badly on big sizes.
        dev = np.where(nz, qty - size_mean[codes], 0.0)
        size_var = np.bincount(codes, weights=dev * dev, minlength=n_groups) / n_nz
        cv2 = np.where(n_nz > 0, size_var / size_mean**2, np.nan)
        mean = np.bincount(codes, weights=qty, minlength=n_groups) / n
        dev = qty - mean[codes]
        sd = np.sqrt(np.bincount(codes, weights=dev * dev, minlength=n_groups) / (n - 1))
    sd = np.where(n >= 2, sd, np.nan)
    out["n_periods"] = n.astype(np.int64)
    out["n_nonzero"] = n_nz.astype(np.int64)
    out["ADI"] = adi
    out["CV2"] = cv2
    out["mean_demand"] = mean
    out["sd_demand"] = sd
    return out


def _error_cv(errors: pd.DataFrame) -> pd.DataFrame:
    """ErrorCV per SKU-location: RMSE of P50 against the actual y, over mean y."""
    _require(errors, (S.SKU, "y", "P50"), "Backtest")
    y = pd.to_numeric(errors["y"], errors="coerce")
    f = pd.to_numeric(errors["P50"], errors="coerce")
    ok = (y.notna() & f.notna()).to_numpy()
    d = pd.DataFrame({S.SKU: errors[S.SKU].to_numpy()[ok], S.LOCATION: _location(errors)[ok],
                      "_se": ((f - y) ** 2).to_numpy()[ok], "_y": y.to_numpy()[ok]})
    g = d.groupby([S.SKU, S.LOCATION], sort=False).mean().reset_index()
    rmse, my = np.sqrt(g["_se"].to_numpy()), g["_y"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        # Zero actuals forecast as zero are perfectly forecast (0); errors on zero actuals: inf.
        cv = np.where(my > 0, rmse / np.where(my > 0, my, 1.0), np.where(rmse > 0, np.inf, 0.0))
    return pd.DataFrame({S.SKU: g[S.SKU], S.LOCATION: g[S.LOCATION], "ErrorCV": cv})


# --------------------------------------------------------------------------------------
# Segmentation table
# --------------------------------------------------------------------------------------


def segment(
    history: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
    abc_cutoffs: tuple[float, float] = DEFAULT_ABC_CUTOFFS,
    xyz_cutoffs: tuple[float, float] = DEFAULT_XYZ_CUTOFFS,
    service_levels: Mapping[str, float] | None = None,
    periods_per_year: float = 52.0,
) -> pd.DataFrame:
    """Classify every SKU-location of ``history`` and give it a service level.

    ``AnnualValue`` = mean demand per period x ``periods_per_year`` x UnitCost (Items).
    ``ValueBasis`` says what it is: ``"cost"``; ``"median cost"`` for a row without a
    UnitCost when other rows have one (valued at their median so it is ranked neither last
    nor first by accident); ``"units"`` when no row has a UnitCost (ABC by annual units).
    The frame's ``attrs["value_basis"]`` is ``"cost"``, ``"units"`` or ``"mixed"``.

    ``errors`` are backtest forecasts (SKU, Location, y, P50) for ``ErrorCV``; series without
    any get XYZ ``"?"``. ``Class`` joins both letters (``"AX"``, ``"B?"``).

    ``ServiceLevel``: the Items value when given (``ServiceLevelSource`` ``"Items"``), else
    ``service_levels`` (Settings) for the two-letter class, then its ABC letter
    (``"Settings ServiceLevel.AX"``), else :data:`DEFAULT_SERVICE_LEVELS`
    (``"default for class A"``). Items rows with a blank Location apply to all locations
    of their SKU unless a row names the location.

    The demand statistics of :func:`pattern_stats` (``n_periods``, ``n_nonzero``,
    ``mean_demand``, ``sd_demand``) follow, so callers need not compute them again.
    """
    _check_abc_cutoffs(abc_cutoffs)
    _check_xyz_cutoffs(xyz_cutoffs)
    user_levels = _check_service_levels(service_levels or {})
    if isinstance(periods_per_year, bool) or not (
        isinstance(periods_per_year, (int, float, np.number)) and math.isfinite(periods_per_year)
        and periods_per_year > 0
    ):
        raise InputError(
            f"periods_per_year must be a positive number (got {periods_per_year!r}).",
            [Problem("Settings", "periods per year is not a positive number", "use 365, 52 or 12",
                     column="Frequency", value=periods_per_year, code="E110")],
            code="E110",
        )

    stats = pattern_stats(history)
    keys = stats[[S.SKU, S.LOCATION]]
    out = keys.copy()

    cost = _item_values(keys, items, "UnitCost")
    units = stats["mean_demand"].to_numpy() * float(periods_per_year)
    known = np.isfinite(cost) & (cost >= 0)
    if known.all():
        basis = np.full(len(out), "cost", dtype=object)
        value, value_basis = units * cost, "cost"
    elif known.any():
        median = float(np.median(cost[known]))
        basis = np.where(known, "cost", "median cost").astype(object)
        value, value_basis = units * np.where(known, cost, median), "mixed"
        _log.warning("%d of %d SKU-locations have no UnitCost; valued at the median cost %.4g for ABC",
                     int((~known).sum()), len(out), median)
    else:
        basis = np.full(len(out), "units", dtype=object)
        value, value_basis = units, "units"
    out["AnnualValue"] = value
    out["ValueBasis"] = basis
    out["ABC"] = abc_classes(value, cutoffs=abc_cutoffs)

    if errors is not None and len(errors):
        ecv = keys.merge(_error_cv(errors), on=[S.SKU, S.LOCATION], how="left")["ErrorCV"].to_numpy()
    else:
        ecv = np.full(len(out), np.nan)
    out["XYZ"] = xyz_classes(ecv, cutoffs=xyz_cutoffs)
    out["Class"] = out["ABC"] + out["XYZ"]
    out["Pattern"] = demand_pattern(stats["ADI"], stats["CV2"])
    out["ADI"] = stats["ADI"].to_numpy()
    out["CV2"] = stats["CV2"].to_numpy()
    out["ErrorCV"] = ecv

    level, source = _class_levels(out["Class"].to_numpy(), user_levels)
    item_level = _item_values(keys, items, "ServiceLevel")
    bad = np.isfinite(item_level) & ~((item_level > 0) & (item_level < 1))
    if bad.any():
        raise InputError(
            f"Items: {int(bad.sum())} service level{'s' if bad.sum() > 1 else ''} outside (0, 1).",
            [Problem("Items", f"service level of {sku} {loc} outside (0, 1)".replace("  ", " "),
                     "write a fraction such as 0.95", column="ServiceLevel", value=float(v), code="E110")
             for sku, loc, v in zip(keys[S.SKU][bad], keys[S.LOCATION][bad], item_level[bad])],
            code="E110",
        )
    from_items = np.isfinite(item_level)
    out["ServiceLevel"] = np.where(from_items, item_level, level)
    out["ServiceLevelSource"] = np.where(from_items, "Items", source).astype(object)
    for c in ("n_periods", "n_nonzero", "mean_demand", "sd_demand"):
        out[c] = stats[c].to_numpy()
    out.attrs["value_basis"] = value_basis
    return out


def _class_levels(classes: np.ndarray, user: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Service level and its source per class string, looked up once per distinct class."""
    uniq, inv = np.unique(classes.astype(str), return_inverse=True)
    lv, src = np.empty(len(uniq)), np.empty(len(uniq), dtype=object)
    for i, cls in enumerate(uniq):
        abc = cls[:1]
        if cls in user:
            lv[i], src[i] = user[cls], f"Settings ServiceLevel.{cls}"
        elif abc in user:
            lv[i], src[i] = user[abc], f"Settings ServiceLevel.{abc}"
        else:
            lv[i], src[i] = DEFAULT_SERVICE_LEVELS[abc], f"default for class {abc}"
    return lv[inv], src[inv]


def _item_values(keys: pd.DataFrame, items: pd.DataFrame | None, column: str) -> np.ndarray:
    """``items[column]`` per row of ``keys``: the exact SKU-location row, else the SKU's blank-Location row."""
    nan = np.full(len(keys), np.nan)
    if items is None or column not in items.columns or S.SKU not in items.columns or not len(items):
        return nan
    it = pd.DataFrame({S.SKU: items[S.SKU].to_numpy(), S.LOCATION: _location(items),
                       "_v": pd.to_numeric(items[column], errors="coerce").to_numpy(dtype=float)})
    dup = it.duplicated([S.SKU, S.LOCATION])
    if dup.any():
        # Validated Items has no duplicates; a hand-built frame keeps its first row.
        _log.warning("Items has %d duplicate SKU-location rows; the first is used", int(dup.sum()))
        it = it[~dup]
    exact = keys.merge(it, on=[S.SKU, S.LOCATION], how="left")["_v"].to_numpy()
    wide = it[it[S.LOCATION] == S.NO_LOCATION].drop(columns=S.LOCATION)
    fallback = keys[[S.SKU]].merge(wide, on=S.SKU, how="left")["_v"].to_numpy()
    return np.where(np.isnan(exact), fallback, exact)


def _location(frame: pd.DataFrame) -> np.ndarray:
    if S.LOCATION not in frame.columns:
        return np.full(len(frame), S.NO_LOCATION, dtype=object)
    return frame[S.LOCATION].fillna(S.NO_LOCATION).to_numpy(dtype=object)


def _require(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"Table {table} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            [Problem(table, "missing column", f"add a {c} column", column=c, code="E101") for c in missing],
            code="E101",
        )


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------


def _check_abc_cutoffs(cutoffs: Sequence[float]) -> tuple[float, float]:
    a, b = _pair(cutoffs, "ABC")
    if not (0 < a < b <= 1):
        raise InputError(
            f"ABC cut-offs must satisfy 0 < A < B <= 1 (got {a!r}, {b!r}).",
            [Problem("Settings", "ABC cut-offs out of order or outside (0, 1]",
                     "use cumulative value shares such as ABC.A = 80% and ABC.B = 95%",
                     column="ABC.A/ABC.B", value=f"{a!r}, {b!r}", code="E110")],
            code="E110",
        )
    return a, b


def _check_xyz_cutoffs(cutoffs: Sequence[float]) -> tuple[float, float]:
    x, y = _pair(cutoffs, "XYZ")
    if not (0 < x < y <= _MAX_XYZ_CUTOFF):
        raise InputError(
            f"XYZ cut-offs must satisfy 0 < X < Y <= {_MAX_XYZ_CUTOFF:g} (got {x!r}, {y!r}).",
            [Problem("Settings", "XYZ cut-offs out of order or not positive",
                     "use error CVs such as XYZ.X = 0.5 and XYZ.Y = 1.0",
                     column="XYZ.X/XYZ.Y", value=f"{x!r}, {y!r}", code="E110")],
            code="E110",
        )
    return x, y


def _pair(cutoffs: Sequence[float], name: str) -> tuple[float, float]:
    try:
        a, b = (float(c) for c in cutoffs)
    except (TypeError, ValueError):
        raise InputError(
            f"{name} cut-offs must be two numbers (got {cutoffs!r}).",
            [Problem("Settings", f"{name} cut-offs are not two numbers", "give two numbers, e.g. (0.8, 0.95)",
                     value=repr(cutoffs), code="E110")],
            code="E110",
        ) from None
    return a, b


def _check_service_levels(levels: Mapping[str, float]) -> dict[str, float]:
    col = ProblemCollector()
    out: dict[str, float] = {}
    for key, v in levels.items():
        cls = str(key).strip().upper()
        if cls not in _VALID_CLASSES:
            col.add(table="Settings", message=f"unknown class {key!r}", fix=_CLASS_FIX,
                    column="Key", value=key, code="E110")
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if isinstance(v, bool) or not 0 < x < 1:
            col.add(table="Settings", message=f"service level of class {cls} outside (0, 1)",
                    fix="use a fraction such as 0.95", column="Value", value=v, code="E110")
            continue
        out[cls] = x
    col.raise_if_errors("Service levels")
    return out


# --------------------------------------------------------------------------------------
# Settings table
# --------------------------------------------------------------------------------------

_CLASS_FIX = "use ServiceLevel.A, .B or .C, or a two-letter class such as ServiceLevel.AX"


def service_levels_from_settings(rows: Sequence[tuple[str, Any]], *, first_row: int = 2) -> dict[str, float]:
    """Service levels per class from Settings rows ``(Key, Value)``.

    Keys ``ServiceLevel.A`` ... ``ServiceLevel.CZ`` (case and spaces ignored); other keys are
    not ours and are skipped. Values: ``0.95``, ``"95%"`` or ``95`` (read as percent when
    above 1). ``rows[0]`` is Excel row ``first_row``. Every problem (unreadable value, level
    outside (0, 1), unknown class, key given twice) is collected into one InputError.
    """
    col = ProblemCollector()
    _, _, levels = _read_settings(col, rows, first_row, frozenset({"SERVICELEVEL"}))
    col.raise_if_errors("Settings")
    return levels


def segmentation_settings(rows: Sequence[tuple[str, Any]], *, first_row: int = 2) -> SegmentationSettings:
    """ABC/XYZ cut-offs and class service levels from Settings rows ``(Key, Value)``.

    Keys (case and spaces ignored): ``ABC.A``, ``ABC.B`` -- cumulative value shares
    (``80%``, ``0.8`` or ``80``); ``XYZ.X``, ``XYZ.Y`` -- forecast-error CVs (``0.5`` or
    ``50%``; a plain number is the CV itself); ``ServiceLevel.<class>`` as in
    :func:`service_levels_from_settings`. Cut-offs not given keep their defaults. All
    problems are reported at once, each naming the Excel row of the Settings table.
    """
    col = ProblemCollector()
    abc, xyz, levels = _read_settings(col, rows, first_row, frozenset({"SERVICELEVEL", "ABC", "XYZ"}))
    abc_cut = _ordered_pair(col, abc, ("A", "B"), DEFAULT_ABC_CUTOFFS, "ABC")
    xyz_cut = _ordered_pair(col, xyz, ("X", "Y"), DEFAULT_XYZ_CUTOFFS, "XYZ")
    col.raise_if_errors("Settings")
    return SegmentationSettings(abc_cut, xyz_cut, MappingProxyType(levels))


_Cut = dict[str, tuple[float, int]]


def _read_settings(col: ProblemCollector, rows: Sequence[tuple[str, Any]], first_row: int,
                   prefixes: frozenset[str]) -> tuple[_Cut, _Cut, dict[str, float]]:
    """Parse the rows whose key starts with one of ``prefixes``; problems go to ``col``."""
    seen: dict[str, int] = {}
    abc: _Cut = {}
    xyz: _Cut = {}
    levels: dict[str, float] = {}
    for i, row in enumerate(rows):
        excel_row = first_row + i
        key_raw, value = (tuple(row) + (None, None))[:2]
        if key_raw is None:
            continue
        key = re.sub(r"\s+", "", str(key_raw)).upper()
        prefix, dot, suffix = key.partition(".")
        if prefix not in prefixes or not dot:
            continue
        if key in seen:
            col.add(table="Settings", row=excel_row, column="Key", value=key_raw,
                    message=f"{key_raw} is set twice (rows {seen[key]} and {excel_row})",
                    fix="keep one of the two rows", code="E103")
            continue
        seen[key] = excel_row
        if prefix == "SERVICELEVEL":
            if suffix not in _VALID_CLASSES:
                col.add(table="Settings", row=excel_row, column="Key", value=key_raw,
                        message=f"unknown class {suffix!r}", fix=_CLASS_FIX, code="E110")
                continue
            x = _read_setting(col, excel_row, value, percent_above_one=True, what="service level",
                              example="0.95 or 95%")
            if x is None:
                continue
            if not 0 < x < 1:
                col.add(table="Settings", row=excel_row, column="Value", value=value,
                        message=f"service level {value!r} of class {suffix} must be above 0 % and below "
                                "100 % (100 % would need infinite safety stock)",
                        fix="use a level between 50% and 99.9%, e.g. 95%", code="E110")
                continue
            levels[suffix] = x
        elif prefix == "ABC":
            if suffix not in ("A", "B"):
                col.add(table="Settings", row=excel_row, column="Key", value=key_raw,
                        message=f"unknown ABC cut-off {key_raw!r}", fix="use ABC.A or ABC.B", code="E110")
                continue
            x = _read_setting(col, excel_row, value, percent_above_one=True, what="ABC cut-off",
                              example="80%")
            if x is None:
                continue
            if not 0 < x <= 1:
                col.add(table="Settings", row=excel_row, column="Value", value=value,
                        message=f"ABC cut-off {value!r} is not a share of value between 0 and 100 %",
                        fix="use a cumulative share such as 80% (A) or 95% (B)", code="E110")
                continue
            abc[suffix] = (x, excel_row)
        else:
            if suffix not in ("X", "Y"):
                col.add(table="Settings", row=excel_row, column="Key", value=key_raw,
                        message=f"unknown XYZ cut-off {key_raw!r}", fix="use XYZ.X or XYZ.Y", code="E110")
                continue
            x = _read_setting(col, excel_row, value, percent_above_one=False, what="XYZ cut-off",
                              example="0.5 or 50%")
            if x is None:
                continue
            if not 0 < x <= _MAX_XYZ_CUTOFF:
                col.add(table="Settings", row=excel_row, column="Value", value=value,
                        message=f"XYZ cut-off {value!r} is not a forecast-error CV between 0 and 10",
                        fix="write the CV as a fraction (0.5) or a percentage (50%)", code="E110")
                continue
            xyz[suffix] = (x, excel_row)
    return abc, xyz, levels


def _ordered_pair(col: ProblemCollector, given: dict[str, tuple[float, int]], names: tuple[str, str],
                  default: tuple[float, float], prefix: str) -> tuple[float, float]:
    lo_name, hi_name = names
    lo = given.get(lo_name, (default[0], None))
    hi = given.get(hi_name, (default[1], None))
    if lo[0] < hi[0]:
        return lo[0], hi[0]
    # Point at a row the planner wrote; when only one was written the default is the other side.
    row = hi[1] if hi[1] is not None else lo[1]
    col.add(table="Settings", row=row, column="Value", value=hi[0] if row == hi[1] else lo[0],
            message=f"{prefix}.{lo_name} ({lo[0]:g}) must be below {prefix}.{hi_name} ({hi[0]:g})",
            fix=f"make {prefix}.{lo_name} smaller than {prefix}.{hi_name}", code="E110")
    return default


def _read_setting(col: ProblemCollector, row: int, value: Any, *, percent_above_one: bool, what: str,
                  example: str) -> float | None:
    """A Settings number: 0.95, 95 (percent when allowed and above 1) or "95%"; None after a problem."""
    fix = f"enter the {what} as {example}"
    if isinstance(value, bool):
        col.add(table="Settings", row=row, column="Value", value=value, message=f"{what} is TRUE/FALSE",
                fix=fix, code="E102")
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        col.add(table="Settings", row=row, column="Value", value=None, message=f"{what} is blank",
                fix=fix, code="E102")
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
        percent = False
    else:
        t = str(value).strip()
        m = _PERCENT_RE.fullmatch(t)
        if m:
            x, percent = float(m.group(1)) / 100, True
        elif _NUMBER_RE.fullmatch(t):
            x, percent = float(t), False
        else:
            msg = (f"{what} {t!r} has a comma (decimal comma?)" if "," in t
                   else f"{what} {t!r} is not a number")
            col.add(table="Settings", row=row, column="Value", value=value, message=msg, fix=fix, code="E102")
            return None
    if not math.isfinite(x):
        col.add(table="Settings", row=row, column="Value", value=value, message=f"{what} is not finite",
                fix=fix, code="E102")
        return None
    if percent_above_one and not percent and x > 1:
        x /= 100
    return x

"""Future values of drivers the planner did not provide.

A forecast needs every regressor for every future period. Where the workbook has
no planned or forecast value, the engine fills one and flags it as *assumed*, so
the Plan sheet can say "Temperature assumed (seasonal normal)":

* **seasonal profile** for drivers with a strong yearly cycle (weather): the
  series' seasonal normal for that week/month, shifted by the mean anomaly of the
  last year (a warm year stays warm);
* **drift** for trending drivers (CPI, fuel): random walk with drift, i.e. the last
  value plus the average change per period over the last year
  (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., 5.2);
* **none** for promotion-like 0/1 flags: no promotion unless one is planned;
* **last value** for prices.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .features import FeatureSpec, Panel, RegressorStats, column_calendar, seasonal_r2

__all__ = ["fill_future_regressors", "choose_method"]

_log = logging.getLogger(__name__)


def choose_method(panel: Panel, name: str, stats: RegressorStats, spec: FeatureSpec) -> str:
    """``seasonal``, ``drift``, ``zero`` or ``last`` for regressor ``name``."""
    kind = stats.kinds[name]
    if kind == "binary":
        return "zero"
    if kind == "price":
        return "last"
    if kind == "seasonal":
        return "seasonal"
    h = panel.n_hist
    hist = panel.regressors[name][:, :h].astype(np.float64)
    if h < spec.year + 2:
        return "drift"
    pos = column_calendar(panel, spec)["_pos"][:h]
    normal = stats.normals[name][:, pos].astype(np.float64)
    ok = ~np.isnan(hist)
    if ok.sum() < 10:
        return "last"
    resid = np.where(ok, hist - normal, np.nan)
    return "seasonal" if seasonal_r2(hist, resid) >= 0.5 else "drift"


def fill_future_regressors(
    panel: Panel, stats: RegressorStats, spec: FeatureSpec, horizon: int
) -> dict[str, str]:
    """Fill missing future regressor values; mark them in ``panel.assumed``.

    A regressor that needs filling is replaced in ``panel.regressors`` by a filled copy
    (its original matrix may be shared with another panel and is left as it was).

    Returns the method used per regressor that needed filling.
    """
    h = panel.n_hist
    end = min(panel.T, h + horizon)
    if end <= h:
        return {}
    methods: dict[str, str] = {}
    cal = column_calendar(panel, spec)
    for name, m in panel.regressors.items():
        fut = m[:, h:end]
        missing = np.isnan(fut)
        if not missing.any():
            panel.assumed[name] = np.zeros(m.shape, dtype=bool)
            continue
        method = choose_method(panel, name, stats, spec)
        methods[name] = method
        steps = np.arange(1, end - h + 1, dtype=np.float64)
        hist = m[:, :h].astype(np.float64)
        last_idx = _last_valid_index(hist)
        last = hist[np.arange(panel.n), np.maximum(last_idx, 0)]
        last = np.where(last_idx >= 0, last, np.nan)
        if method == "zero":
            fill = np.zeros_like(fut, dtype=np.float64)
        elif method == "last":
            fill = np.repeat(last[:, None], end - h, axis=1)
        elif method == "seasonal":
            pos = cal["_pos"]
            normal = stats.normals[name].astype(np.float64)
            recent = slice(max(0, h - spec.year), h)
            anom = hist[:, recent] - normal[:, pos[recent]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                shift = np.nanmean(anom, axis=1) if anom.size else 0.0
            shift = np.nan_to_num(shift)
            fill = normal[:, pos[h:end]] + shift[:, None]
        else:  # drift
            back = np.clip(last_idx - spec.year, 0, None)
            first = hist[np.arange(panel.n), back]
            span = np.maximum(last_idx - back, 1)
            slope = np.where(np.isfinite(first), (last - first) / span, 0.0)
            # steps counted from the last known value, which may lie before the horizon
            gap = (h - 1 - last_idx)[:, None]
            fill = last[:, None] + slope[:, None] * (steps[None, :] + gap)
        # Into a copy, never into the matrix itself: panels share regressor matrices (a
        # calibration window shares the full panel's), and a fill must not leak into them.
        m = m.copy()
        fut = m[:, h:end]
        fut[missing] = fill[missing].astype(fut.dtype)
        panel.regressors[name] = m
        flag = np.zeros(m.shape, dtype=bool)
        flag[:, h:end] = missing
        panel.assumed[name] = flag
        _log.info("regressor %s: %d future values assumed (%s)", name, int(missing.sum()), method)
    return methods


def _last_valid_index(a: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(a)
    rev = ok[:, ::-1].argmax(axis=1)
    idx = a.shape[1] - 1 - rev
    return np.where(ok.any(axis=1), idx, -1)

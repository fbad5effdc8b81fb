"""Forecast accuracy metrics: point (WAPE, bias, MASE) and probabilistic (pinball, coverage).

Every metric is a pure function over arrays. Pairs where the actual or the forecast is
missing (NaN/inf) are left out, so a backtest window with a hole in the actuals is scored
on the periods that have them. Undefined values (no volume, a flat history) come back as
``nan``, never ``inf``, and without numpy warnings.

:func:`evaluate` scores a long frame of forecasts per group with one vectorised pass
(``groupby`` sums), fast enough for 10,000 series x 28 periods x 3 backtest windows.

References
----------
* Hyndman, R. J. & Koehler, A. B. (2006). Another look at measures of forecast accuracy.
  International Journal of Forecasting 22(4), 679-688. (MASE)
* Koenker, R. & Bassett, G. (1978). Regression quantiles. Econometrica 46(1), 33-50;
  Koenker, R. (2005). Quantile Regression. Cambridge University Press. (pinball loss)
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import InputError, Problem
from .schema import DATE, KEYS, QTY

__all__ = [
    "wape",
    "bias",
    "mase",
    "seasonal_scale",
    "seasonal_scales",
    "pinball",
    "scaled_pinball",
    "coverage",
    "evaluate",
]

_log = logging.getLogger(__name__)

ArrayLike = np.ndarray | pd.Series | Iterable[float]


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two float arrays of equal length restricted to positions where both are finite."""
    x = np.asarray(a, dtype=float).ravel()
    z = np.asarray(b, dtype=float).ravel()
    if x.shape != z.shape:
        raise InputError(
            f"Actuals and forecasts have different lengths ({x.size} and {z.size}).",
            [Problem("forecasts", "actuals and forecasts have different lengths",
                     "pass one forecast per actual", code="E110")],
            code="E110",
        )
    ok = np.isfinite(x) & np.isfinite(z)
    return x[ok], z[ok]


def _ratio(num: float, den: float) -> float:
    """``num / den``, or nan when ``den`` is zero or not finite (no inf, no warning)."""
    if not np.isfinite(den) or den == 0:
        return float("nan")
    return float(num / den)


def wape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Weighted absolute percentage error: ``sum|y - yhat| / sum|y|``.

    A volume-weighted MAPE (Kolassa & Schuetz 2007, "Advantages of the MAD/Mean ratio over
    the MAPE"): robust to periods with zero sales. ``nan`` when ``sum|y| == 0``.
    """
    a, f = _pair(y, yhat)
    return _ratio(np.abs(a - f).sum(), np.abs(a).sum())


def bias(y: ArrayLike, yhat: ArrayLike) -> float:
    """Relative bias: ``sum(yhat - y) / sum|y|``.

    Sign: **positive = over-forecast** (the forecast exceeds the actuals: excess stock),
    negative = under-forecast (stock-out risk). ``nan`` when ``sum|y| == 0``.
    """
    a, f = _pair(y, yhat)
    return _ratio((f - a).sum(), np.abs(a).sum())


def mase(y: ArrayLike, yhat: ArrayLike, insample_mae_scale: float) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006):
    ``mean|y - yhat| / scale``, with ``scale`` the in-sample MAE of the seasonal naive
    forecast on the training history (see :func:`seasonal_scale`).

    Below 1 the forecast beats the in-sample seasonal naive. ``nan`` when the scale is not
    a finite positive number or there is no pair to score.
    """
    a, f = _pair(y, yhat)
    s = float(insample_mae_scale)
    if a.size == 0 or not np.isfinite(s) or s <= 0:
        return float("nan")
    return float(np.abs(a - f).mean() / s)


def seasonal_scale(history: ArrayLike, m: int) -> float:
    """The MASE denominator for one series: ``mean_t |y_t - y_{t-m}|`` over the training
    history (Hyndman & Koehler 2006, seasonal variant).

    Falls back to ``m = 1`` (naive) when the history is shorter than ``m + 1`` points.
    ``nan`` when the history has fewer than 2 points or the scale is 0 (a flat history):
    a MASE against a perfect in-sample naive is undefined, and ``nan`` keeps it out of
    averages where ``inf`` would swamp them. Missing values drop the differences they touch.
    """
    m = _check_season(m)
    h = np.asarray(history, dtype=float).ravel()
    if h.size < 2:
        return float("nan")
    if h.size < m + 1:
        m = 1
    d = np.abs(h[m:] - h[:-m])
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    s = float(d.mean())
    return s if s > 0 else float("nan")


def seasonal_scales(
    history: pd.DataFrame,
    m: int,
    *,
    keys: Iterable[str] = KEYS,
    date_col: str = DATE,
    target: str = QTY,
) -> pd.DataFrame:
    """:func:`seasonal_scale` for every series of a long history frame, vectorised.

    ``history`` is complete (one row per period, no gaps within a series, as validated Sales
    are). Returns the key columns plus ``scale``, one row per series, ready for
    ``evaluate(..., scales=...)``.
    """
    m = _check_season(m)
    keys = list(keys)
    _require_columns(history, [*keys, date_col, target], "history")
    if history.empty:
        return pd.DataFrame({**{k: history[k].iloc[:0] for k in keys}, "scale": np.array([], float)})
    grouped = history.groupby(keys, sort=True, observed=True, dropna=False)
    gid = grouped.ngroup().to_numpy()
    out = grouped.size().index.to_frame(index=False)
    n_groups = len(out)
    days = pd.DatetimeIndex(history[date_col]).values.astype("datetime64[D]").astype(np.int64)
    days -= days.min()
    # One int64 sort key; a stable sort is near O(n) on the usual already-sorted input.
    order = np.argsort(gid.astype(np.int64) * (int(days.max()) + 1) + days, kind="stable")
    g = gid[order]
    y = history[target].to_numpy(dtype=float)[order]
    length = np.bincount(g, minlength=n_groups)

    def lag_mae(lag: int) -> tuple[np.ndarray, np.ndarray]:
        if y.size <= lag:
            return np.zeros(n_groups), np.zeros(n_groups)
        d = np.abs(y[lag:] - y[:-lag])
        ok = (g[lag:] == g[:-lag]) & np.isfinite(d)  # same series, both values present
        d[~ok] = 0.0
        gl = g[lag:]
        return (np.bincount(gl, weights=d, minlength=n_groups),
                np.bincount(gl, weights=ok, minlength=n_groups))

    s_m, c_m = lag_mae(m)
    s_1, c_1 = (s_m, c_m) if m == 1 else lag_mae(1)
    short = length < m + 1
    tot = np.where(short, s_1, s_m)
    cnt = np.where(short, c_1, c_m)
    scale = np.full(n_groups, np.nan)
    np.divide(tot, cnt, out=scale, where=cnt > 0)
    scale[~(scale > 0)] = np.nan  # flat histories and fewer than 2 points
    out["scale"] = scale
    return out


def pinball(y: ArrayLike, q_pred: ArrayLike, q: float) -> float:
    """Pinball (quantile) loss of quantile ``q`` (Koenker & Bassett 1978):
    ``mean max(q * (y - p), (q - 1) * (y - p))``.

    Asymmetric: for ``q = 0.9`` an actual above the prediction costs 9x more than one
    below it, so the loss is minimised by the true 90th percentile.
    """
    q = _check_quantile(q)
    a, p = _pair(y, q_pred)
    if a.size == 0:
        return float("nan")
    d = a - p
    return float(np.maximum(q * d, (q - 1.0) * d).mean())


def scaled_pinball(y: ArrayLike, q_pred: ArrayLike, q: float, scale: float) -> float:
    """Scaled pinball loss (as in the M5 uncertainty competition): ``pinball / scale``
    with the same seasonal naive in-sample scale as MASE, so it can be averaged across
    series of different volume. ``nan`` when the scale is not finite positive."""
    s = float(scale)
    if not np.isfinite(s) or s <= 0:
        return float("nan")
    return pinball(y, q_pred, q) / s


def coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share of actuals inside the closed interval ``[lo, hi]``.

    For a P10-P90 interval a well calibrated forecast covers about 0.8. ``nan`` when no
    row has an actual and both bounds.
    """
    a = np.asarray(y, dtype=float).ravel()
    lo_ = np.asarray(lo, dtype=float).ravel()
    hi_ = np.asarray(hi, dtype=float).ravel()
    if not a.shape == lo_.shape == hi_.shape:
        raise InputError(
            "Actuals and interval bounds have different lengths.",
            [Problem("forecasts", "actuals and interval bounds have different lengths",
                     "pass one lower and one upper bound per actual", code="E110")],
            code="E110",
        )
    ok = np.isfinite(a) & np.isfinite(lo_) & np.isfinite(hi_)
    if not ok.any():
        return float("nan")
    return float(((a[ok] >= lo_[ok]) & (a[ok] <= hi_[ok])).mean())


def evaluate(
    df: pd.DataFrame,
    *,
    by: list[str] | None = None,
    scales: pd.DataFrame | None = None,
    point: str = "P50",
    quantile_cols: Mapping[float, str] | None = None,
    actual: str = "y",
) -> pd.DataFrame:
    """Score forecasts per group (or overall), vectorised.

    ``df`` holds one row per (series, period[, window]) with the actual (``actual``,
    default ``"y"``), the point forecast column ``point``, optional quantile columns and
    key columns. ``quantile_cols`` maps quantile level to column, e.g.
    ``{0.1: "P10", 0.5: "P50", 0.9: "P90"}``; ``None`` picks up every column named
    ``P<nn>`` (P10, P50, ...); ``{}`` scores no quantiles.

    Returns one row per group of ``by`` (sorted; no key columns when ``by`` is ``None``):

    * ``wape``, ``bias`` -- pooled over the group's rows, see :func:`wape` / :func:`bias`
      (bias > 0 = over-forecast).
    * ``mase`` -- per series, ``mean|y - yhat|`` over the series' rows in the group divided
      by that series' scale; the group's MASE is the **unweighted mean of the per-series
      MASE** over series with a finite positive scale (series with a flat or too short
      history are left out, not counted as inf). Series are identified by the key columns
      of ``scales`` (every column but ``"scale"``, e.g. SKU, Location; build it with
      :func:`seasonal_scales`). ``nan`` when ``scales`` is ``None``.
    * ``pinball_mean`` -- mean pinball loss of each quantile column, averaged over the
      quantiles (in the units of ``y``); ``nan`` when there are none.
    * ``coverage_p10_p90`` -- share of actuals in [P10, P90]; one ``coverage_pLO_pHI``
      column for each symmetric pair of quantile levels present.
    * ``n`` -- rows scored (with both an actual and a point forecast); ``sum_actual`` --
      sum of their actuals.
    """
    by = list(by) if by else []
    if quantile_cols is None:
        quantile_cols = _detect_quantile_cols(df.columns)
    qcols = {_check_quantile(q): c for q, c in sorted(quantile_cols.items())}
    series_keys = [c for c in scales.columns if c != "scale"] if scales is not None else []

    problems: list[Problem] = []
    for c in dict.fromkeys([actual, point, *qcols.values(), *by, *series_keys]):
        if c not in df.columns:
            problems.append(Problem("forecasts", f"column {c!r} is missing",
                                    "pass a frame with this column", column=c, code="E101"))
    if scales is not None and ("scale" not in scales.columns or not series_keys):
        problems.append(Problem("scales", "scales needs key columns and a 'scale' column",
                                "build it with engine.metrics.seasonal_scales", column="scale",
                                code="E101"))
    elif scales is not None and scales.duplicated(series_keys).any():
        problems.append(Problem("scales", "a series has more than one scale",
                                "pass one row per series", code="E103"))
    if problems:
        raise InputError(f"Cannot evaluate forecasts: {problems[0].message}.", problems)

    y = df[actual].to_numpy(dtype=float)
    f = df[point].to_numpy(dtype=float)
    ok = np.isfinite(y) & np.isfinite(f)
    y0 = np.where(ok, y, 0.0)
    f0 = np.where(ok, f, 0.0)
    abs_err = np.abs(y0 - f0)
    cols: dict[str, np.ndarray] = {
        "_abs_err": abs_err,
        "_err": f0 - y0,
        "_abs_y": np.abs(y0),
        "n": ok.astype(np.int64),
        "sum_actual": y0,
    }
    q_names: list[str] = []
    for i, (q, c) in enumerate(qcols.items()):
        d = y - df[c].to_numpy(dtype=float)  # nan where either side is missing
        cols[f"_pin{i}"] = np.maximum(q * d, (q - 1.0) * d)
        q_names.append(f"_pin{i}")
    cov_names: list[str] = []
    for q, c in qcols.items():
        # Pair each lower level with its mirror, tolerating float noise (0.1 vs 1-0.9).
        hi = next((c2 for q2, c2 in qcols.items() if q < 0.5 and abs(q2 - (1 - q)) < 1e-9), None)
        if hi is None:
            continue
        lo_v, hi_v = df[c].to_numpy(dtype=float), df[hi].to_numpy(dtype=float)
        cov_ok = np.isfinite(y) & np.isfinite(lo_v) & np.isfinite(hi_v)
        name = f"coverage_p{_pct(q)}_p{_pct(1 - q)}"
        cols[name] = np.where(cov_ok, ((y >= lo_v) & (y <= hi_v)).astype(float), np.nan)
        cov_names.append(name)

    group_cols = by if by else ["_all"]
    keycols = ({k: df[k].reset_index(drop=True) for k in by} if by
               else {"_all": np.zeros(len(df), np.int8)})
    work = pd.DataFrame({**keycols, **cols})
    grouped = work.groupby(group_cols, sort=True, observed=True, dropna=False)
    sums = grouped[["_abs_err", "_err", "_abs_y", "n", "sum_actual"]].sum()
    # Means skip nan: rows without an actual or that quantile do not count.
    means = grouped[q_names + cov_names].mean() if q_names or cov_names else None

    res = pd.DataFrame(index=sums.index)
    den = sums["_abs_y"].to_numpy()
    res["wape"] = _safe_div(sums["_abs_err"].to_numpy(), den)
    res["bias"] = _safe_div(sums["_err"].to_numpy(), den)
    res["mase"] = _group_mase(df, work, ok, abs_err, group_cols, series_keys, scales, sums.index)
    res["pinball_mean"] = means[q_names].mean(axis=1, skipna=False) if q_names else np.nan
    for name in cov_names:
        res[name] = means[name]
    res["n"] = sums["n"].astype(np.int64)
    res["sum_actual"] = sums["sum_actual"]

    if not by:
        if res.empty:  # empty input: still one overall row
            res = pd.DataFrame({c: [np.nan] for c in res.columns})
            res["n"] = np.int64(0)
            res["sum_actual"] = 0.0
        return res.reset_index(drop=True)
    return res.reset_index()


def _group_mase(
    df: pd.DataFrame,
    work: pd.DataFrame,
    ok: np.ndarray,
    abs_err: np.ndarray,
    group_cols: list[str],
    series_keys: list[str],
    scales: pd.DataFrame | None,
    index: pd.Index,
) -> np.ndarray:
    """Mean over series of (series MAE in the group / series scale), aligned to ``index``."""
    if scales is None or len(df) == 0:
        return np.full(len(index), np.nan)
    extra = [k for k in series_keys if k not in group_cols]
    frame = work[group_cols].copy()
    for k in extra:
        frame[k] = df[k].reset_index(drop=True)
    frame["_abs_err"] = abs_err
    frame["_n"] = ok.astype(np.int64)
    per_series = frame.groupby(group_cols + extra, sort=False, observed=True, dropna=False)[
        ["_abs_err", "_n"]].sum().reset_index()
    per_series = per_series.merge(scales[[*series_keys, "scale"]], on=series_keys, how="left")
    scale = per_series["scale"].to_numpy(dtype=float)
    usable = np.isfinite(scale) & (scale > 0) & (per_series["_n"].to_numpy() > 0)
    mae = _safe_div(per_series["_abs_err"].to_numpy(), per_series["_n"].to_numpy(dtype=float))
    per_series["_mase"] = np.where(usable, _safe_div(mae, np.where(usable, scale, 1.0)), np.nan)
    out = per_series.groupby(group_cols, sort=False, observed=True, dropna=False)["_mase"].mean()
    return out.reindex(index).to_numpy()


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` with nan where ``den`` is 0 (no warnings, no inf)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _pct(q: float) -> int:
    return int(round(q * 100))


def _detect_quantile_cols(columns: Iterable[object]) -> dict[float, str]:
    found: dict[float, str] = {}
    for c in columns:
        s = str(c)
        if len(s) in (2, 3) and s[0] == "P" and s[1:].isdigit() and 0 < int(s[1:]) < 100:
            found[int(s[1:]) / 100] = s
    return found


def _check_quantile(q: float) -> float:
    qf = float(q)
    if not 0 < qf < 1:
        raise InputError(
            f"Quantile {q!r} is not between 0 and 1.",
            [Problem("Settings", f"quantile {q!r} is not between 0 and 1",
                     "use levels such as 0.1, 0.5, 0.9", column="Quantiles", value=q, code="E110")],
            code="E110",
        )
    return qf


def _check_season(m: int) -> int:
    if isinstance(m, bool) or int(m) != m or int(m) < 1:
        raise InputError(
            f"Season length {m!r} must be a whole number of periods, at least 1.",
            [Problem("Settings", f"season length {m!r} is not a positive whole number",
                     "use 7 (daily), 52 (weekly) or 12 (monthly)", value=m, code="E110")],
            code="E110",
        )
    return int(m)


def _require_columns(df: pd.DataFrame, cols: Iterable[str], table: str) -> None:
    missing = [c for c in dict.fromkeys(cols) if c not in df.columns]
    if missing:
        raise InputError(
            f"Table {table} is missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}.",
            [Problem(table, f"column {c!r} is missing", f"add a {c} column", column=c, code="E101")
             for c in missing],
            code="E101",
        )

"""Baseline forecasters computed next to every model: seasonal naive and moving average.

A model is only worth its complexity if it beats these (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, 3rd ed., section 5.2). Both are pure functions:
a long history frame in, a long forecast frame out, in the model's output shape
(keys, Date, P10/P50/P90, plus ``point``), so the backtest scores them with the same code.

Implementation: the history is laid out as one (series x time) matrix, right-aligned on
each series' own last period and left-padded with NaN, so series that start late (new
SKUs) or stop early share one vectorised computation -- no Python loop over series.
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, Problem
from .frequency import from_period, normalize_freq, to_period, week_anchor
from .schema import DATE, KEYS, QTY, quantile_column

__all__ = ["seasonal_naive", "moving_average", "quantile_column"]

_log = logging.getLogger(__name__)


def seasonal_naive(
    history: pd.DataFrame,
    horizon: int,
    *,
    season: int,
    freq: str,
    keys: Sequence[str] = KEYS,
    date_col: str = DATE,
    target: str = QTY,
    quantiles: Iterable[float] = (0.1, 0.5, 0.9),
    anchor: int | None = None,
) -> pd.DataFrame:
    """Seasonal naive forecast: ``yhat(T+h) = y(T + h - season*k)``, ``k = ceil(h/season)``,
    i.e. the series' last full season repeated. ``T`` is each series' own last period.

    * Series shorter than one season fall back to the naive forecast (their last value).
    * Quantiles: the point forecast plus the empirical quantiles (linear interpolation) of
      the series' in-sample seasonal naive errors ``y_t - y_{t-season}``; a series with no
      such error uses its one-step naive errors ``y_t - y_{t-1}``, and one with a single
      observation gets ``P.. = point``. The same spread is used at every horizon step
      rather than widening it with ``k``: retail demand is closer to stationary noise
      around a seasonal profile than to a seasonal random walk, for which the errors
      ``y_t - y_{t-2*season}`` are no wider than ``y_t - y_{t-season}``.
    * Series that never go below 0 in the history get quantiles clipped at 0 (demand
      cannot be negative); series with returns (negative values) are left unclipped.
    * Missing values (NaN) in the history propagate to the forecasts that copy them.

    ``history`` is long format (``keys``, ``date_col`` on the ``freq`` grid, ``target``).
    Returns ``keys``, ``date_col`` (the next ``horizon`` periods; weekly dates keep the
    history's weekday unless ``anchor`` (0=Mon) is given), one ``P<nn>`` column per
    quantile (ascending), and ``point``.
    """
    season = _check_positive(season, "season", "use 7 (daily), 52 (weekly) or 12 (monthly)")
    grid = _Grid.build(history, horizon, freq, keys, date_col, target, quantiles, anchor)
    if grid.values.shape[0] == 0:
        return grid.output(np.empty((0, grid.horizon)), np.empty((0, len(grid.quantiles))))
    m, n = grid.values, grid.length
    width = m.shape[1]
    h_idx = np.arange(grid.horizon)
    if width >= season:
        # Column of the last-season value each step copies; short series are overwritten below.
        point = m[:, width - season + (h_idx % season)]
    else:
        point = np.empty((m.shape[0], grid.horizon))
    short = n < season
    point[short] = m[short, width - 1][:, None]

    resid = m[:, season:] - m[:, :-season] if width > season else np.empty((m.shape[0], 0))
    spread = _row_quantiles(resid, grid.quantiles)
    # Series without a single seasonal error (history <= one season) use one-step errors.
    need = n <= season
    if need.any():
        rows = np.flatnonzero(need)
        sub = m[rows]
        spread[rows] = _row_quantiles(sub[:, 1:] - sub[:, :-1], grid.quantiles)
    return grid.output(point, spread)


def moving_average(
    history: pd.DataFrame,
    horizon: int,
    *,
    window: int,
    freq: str,
    keys: Sequence[str] = KEYS,
    date_col: str = DATE,
    target: str = QTY,
    quantiles: Iterable[float] = (0.1, 0.5, 0.9),
    anchor: int | None = None,
) -> pd.DataFrame:
    """Flat moving-average forecast: the mean of each series' last ``window`` observations
    (all of them when the series is shorter), repeated over the horizon.

    * Quantiles: the point forecast plus the empirical quantiles of the in-sample one-step
      errors ``y_t - mean(y_{t-window}, ..., y_{t-1})``, counted only where a full window
      precedes ``t``; a series no longer than ``window`` uses the mean of all earlier
      observations instead. One observation: ``P.. = point``.
    * Clipped at 0 for series that never go below 0 (as :func:`seasonal_naive`).
    * Missing values (NaN) in the history are skipped by the means.

    Same input and output shape as :func:`seasonal_naive`.
    """
    window = _check_positive(window, "window", "use a window such as 4, 7 or 28 periods")
    grid = _Grid.build(history, horizon, freq, keys, date_col, target, quantiles, anchor)
    if grid.values.shape[0] == 0:
        return grid.output(np.empty((0, grid.horizon)), np.empty((0, len(grid.quantiles))))
    m = grid.values
    n_rows, width = m.shape
    obs = ~np.isnan(m)
    # Prefix sums with a leading zero column: sum of columns [a, b) = cs[:, b] - cs[:, a].
    cs = np.zeros((n_rows, width + 1))
    np.cumsum(np.where(obs, m, 0.0), axis=1, out=cs[:, 1:])
    cc = np.zeros((n_rows, width + 1), dtype=np.int32)
    np.cumsum(obs, axis=1, out=cc[:, 1:])
    lo = max(width - window, 0)
    last_sum = cs[:, width] - cs[:, lo]
    last_cnt = cc[:, width] - cc[:, lo]
    point_1 = np.full(n_rows, np.nan)
    np.divide(last_sum, last_cnt, out=point_1, where=last_cnt > 0)
    point = np.repeat(point_1[:, None], grid.horizon, axis=1)

    # Sum and count of the (up to) `window` observations before column t; cs[:, 0] == 0,
    # so columns t < window need no subtraction. Slices, not fancy indexing: no extra copy.
    resid = cs[:, :width].copy()
    resid[:, window:] -= cs[:, : max(width - window, 0)]
    del cs
    prev_cnt = cc[:, :width].copy()
    prev_cnt[:, window:] -= cc[:, : max(width - window, 0)]
    n_obs = cc[:, width].copy()
    del cc
    need = np.where(n_obs > window, window, 1)[:, None]
    ok = obs & (prev_cnt >= need)
    np.divide(resid, prev_cnt, out=resid, where=ok)   # trailing mean
    np.subtract(m, resid, out=resid, where=ok)        # one-step error
    resid[~ok] = np.nan
    del prev_cnt, ok, obs
    spread = _row_quantiles(resid, grid.quantiles)
    return grid.output(point, spread)


class _Grid:
    """A history frame as a right-aligned (series x time) matrix, plus what the output needs."""

    def __init__(self, *, values: np.ndarray, length: np.ndarray, last: np.ndarray,
                 key_frame: pd.DataFrame, horizon: int, quantiles: list[float], freq: str,
                 anchor: int | None, keys: list[str], date_col: str) -> None:
        self.values = values          # (series, width), NaN-padded on the left
        self.length = length          # periods from each series' first to last date
        self.last = last              # last period number of each series
        self.key_frame = key_frame    # one row of key values per series
        self.horizon = horizon
        self.quantiles = quantiles
        self.freq = freq
        self.anchor = anchor
        self.keys = keys
        self.date_col = date_col

    @classmethod
    def build(cls, history: pd.DataFrame, horizon: int, freq: str, keys: Sequence[str],
              date_col: str, target: str, quantiles: Iterable[float],
              anchor: int | None) -> "_Grid":
        keys = list(keys)
        horizon = _check_positive(horizon, "horizon", "ask for at least one period")
        freq = normalize_freq(freq)
        qs = _check_quantiles(quantiles)
        missing = [c for c in dict.fromkeys([*keys, date_col, target]) if c not in history.columns]
        if missing:
            raise InputError(
                f"History is missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
                [Problem("Sales", f"column {c!r} is missing", f"add a {c} column", column=c,
                         code="E101") for c in missing],
                code="E101",
            )
        if freq == "W" and anchor is None and len(history):
            anchor = week_anchor(history[date_col])
        if history.empty:
            return cls(values=np.empty((0, 0)), length=np.empty(0, np.int64),
                       last=np.empty(0, np.int64), key_frame=history[keys].iloc[:0],
                       horizon=horizon, quantiles=qs, freq=freq, anchor=anchor, keys=keys,
                       date_col=date_col)

        grouped = history.groupby(keys, sort=True, observed=True, dropna=False)
        gid = grouped.ngroup().to_numpy()
        key_frame = grouped.size().index.to_frame(index=False)
        n_series = len(key_frame)
        per = to_period(history[date_col], freq)
        first = np.full(n_series, np.iinfo(np.int64).max)
        last = np.full(n_series, np.iinfo(np.int64).min)
        np.minimum.at(first, gid, per)
        np.maximum.at(last, gid, per)
        length = last - first + 1
        width = int(length.max())
        col = width - 1 - (last[gid] - per)
        values = np.full((n_series, width), np.nan)
        values[gid, col] = history[target].to_numpy(dtype=float)
        filled = np.zeros((n_series, width), dtype=bool)
        filled[gid, col] = True
        if int(filled.sum()) != len(history):
            _raise_duplicates(history, keys, date_col, per)
        return cls(values=values, length=length, last=last, key_frame=key_frame,
                   horizon=horizon, quantiles=qs, freq=freq, anchor=anchor, keys=keys,
                   date_col=date_col)

    def output(self, point: np.ndarray, spread: np.ndarray) -> pd.DataFrame:
        """Long forecast frame from (series x horizon) points and (series x quantile) spread."""
        n_series, h = len(self.key_frame), self.horizon
        rows = np.repeat(np.arange(n_series), h)
        out = self.key_frame.iloc[rows].reset_index(drop=True)
        periods = (self.last[:, None] + np.arange(1, h + 1)).ravel()
        out[self.date_col] = from_period(periods, self.freq, self.anchor)
        spread = np.where(np.isnan(spread), 0.0, spread)  # no errors to learn from: no spread
        nonneg = _never_negative(self.values)
        for j, q in enumerate(self.quantiles):
            vals = point + spread[:, j][:, None]
            vals = np.where(nonneg[:, None], np.maximum(vals, 0.0), vals)
            out[quantile_column(q)] = vals.ravel()
        out["point"] = point.ravel()
        return out


def _row_quantiles(r: np.ndarray, qs: list[float]) -> np.ndarray:
    """Per-row empirical quantiles (numpy's default linear method) ignoring NaN.

    Vectorised over rows with different numbers of valid values: sort each row (NaN sorts
    last), then interpolate at ``q * (n_valid - 1)``. Rows without a valid value give NaN.
    """
    n_rows = r.shape[0]
    out = np.full((n_rows, len(qs)), np.nan)
    if r.size == 0:
        return out
    s = np.sort(r, axis=1)
    n = (~np.isnan(s)).sum(axis=1)
    has = n > 0
    if not has.any():
        return out
    if not has.all():
        s, n = s[has], n[has]
    rows = np.arange(s.shape[0])
    for j, q in enumerate(qs):
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        frac = pos - lo
        a, b = s[rows, lo], s[rows, hi]
        out[has, j] = a + frac * (b - a)
    return out


def _never_negative(values: np.ndarray) -> np.ndarray:
    """Series whose observed history has no value below 0."""
    return ~np.any(values < 0, axis=1)  # NaN < 0 is False: padding does not count


def _check_positive(v: int, name: str, fix: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise InputError(
            f"{name.capitalize()} must be a whole number of periods, at least 1 (got {v!r}).",
            [Problem("Settings", f"{name} {v!r} is not a positive whole number", fix,
                     column=name.capitalize(), value=v, code="E110")],
            code="E110",
        )
    return int(v)


def _check_quantiles(quantiles: Iterable[float]) -> list[float]:
    qs = sorted(float(q) for q in quantiles)
    bad = [q for q in qs if not 0 < q < 1]
    names = [quantile_column(q) for q in qs]
    if bad or len(set(names)) != len(names):
        raise InputError(
            f"Quantiles {qs} must be distinct levels between 0 and 1 (whole percents).",
            [Problem("Settings", f"quantile {q!r} is not between 0 and 1",
                     "use levels such as 0.1, 0.5, 0.9", column="Quantiles", value=q, code="E110")
             for q in bad]
            or [Problem("Settings", "two quantiles round to the same percent",
                        "use distinct whole-percent levels", column="Quantiles", code="E110")],
            code="E110",
        )
    return qs


def _raise_duplicates(history: pd.DataFrame, keys: list[str], date_col: str,
                      per: np.ndarray) -> None:
    frame = history[keys].reset_index(drop=True).assign(_p=per)
    dup = frame.duplicated(keep="first").to_numpy()
    problems = [
        Problem("Sales", "a second row for the same series and period",
                "keep one row per series and period (sum duplicates first)",
                row=int(i) + 2, column=date_col, value=str(history[date_col].iloc[i]), code="E103")
        for i in np.flatnonzero(dup)
    ]
    raise InputError(
        f"History has {len(problems)} duplicate row{'s' if len(problems) > 1 else ''} "
        "(the same series and period twice).",
        problems,
        code="E103",
    )

"""Feature engineering for the global demand model.

The panel is held as dense ``(series x periods)`` float matrices, so every feature
is a vectorised gather: lag ``k`` of row ``(i, t)`` is ``y[i, t - k]``; rolling
statistics come from cumulative sums. The same code computes features for all
training rows at once and, during recursive forecasting, for one column at a time,
which rules out train/serve skew by construction.

Targets and lags are divided by a per-series scale (mean demand over the last year
of training history), so one model learns relative patterns shared by slow and
fast movers; predictions are multiplied back.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import holidays as _holidays
import numpy as np
import pandas as pd

from . import schema as S
from .frequency import from_period, normalize_freq, season_length, to_period

__all__ = [
    "FeatureSpec",
    "Panel",
    "build_panel",
    "default_spec",
    "feature_matrix",
    "feature_names",
    "holiday_table",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSpec:
    """Which lags and windows to use; defaults per frequency via :func:`default_spec`."""

    lags: tuple[int, ...]
    mean_windows: tuple[int, ...]
    std_windows: tuple[int, ...]
    nonzero_window: int
    same_season_lags: tuple[int, ...] = ()  # e.g. 7,14,21,28 for "same weekday" mean on daily data
    year: int = 52  # periods per year, for year-over-year driver changes and seasonal normals
    holiday_horizon: int = 8  # periods to look ahead/back for holiday distance
    year_lag: int = 52  # same period last year (364 days keeps the weekday)
    level_window: int = 4  # recent window compared with the same window last year

    @property
    def max_lookback(self) -> int:
        return max(
            max(self.lags, default=1),
            max(self.mean_windows, default=1) + 1,
            max(self.std_windows, default=1) + 1,
            self.nonzero_window + 1,
            max(self.same_season_lags, default=1),
            self.year_lag + self.level_window + 1,
        )


def default_spec(freq: str) -> FeatureSpec:
    """Lags and windows suited to the frequency (weekly and yearly cycles)."""
    f = normalize_freq(freq)
    if f == "D":
        return FeatureSpec(
            lags=(1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 35, 364),
            mean_windows=(7, 28, 91),
            std_windows=(28,),
            nonzero_window=28,
            same_season_lags=(7, 14, 21, 28),
            year=365,
            holiday_horizon=30,
            year_lag=364,
            level_window=28,
        )
    if f == "W":
        return FeatureSpec(
            lags=(1, 2, 3, 4, 5, 6, 8, 13, 26, 51, 52, 53),
            mean_windows=(4, 13, 52),
            std_windows=(13,),
            nonzero_window=13,
            year=52,
            holiday_horizon=8,
            year_lag=52,
            level_window=4,
        )
    return FeatureSpec(
        lags=(1, 2, 3, 4, 6, 12),
        mean_windows=(3, 6, 12),
        std_windows=(6,),
        nonzero_window=6,
        year=12,
        holiday_horizon=3,
        year_lag=12,
        level_window=3,
    )


@dataclass
class Panel:
    """Dense representation of a validated data set.

    Columns ``0..T-1`` are consecutive periods starting at period number ``p0``;
    ``n_hist`` columns carry history, the rest (if any) are future periods.
    """

    freq: str
    anchor: int | None
    p0: int
    n_hist: int
    keys: pd.DataFrame  # one row per series: SKU, Location, Category
    y: np.ndarray  # float64 [n, T], raw quantities, NaN where unknown
    censored: np.ndarray  # bool [n, T], stock-out periods (OnHand == 0): sales understate demand
    regressors: dict[str, np.ndarray]  # float32 [n, T], per-series view of every regressor (drivers broadcast)
    assumed: dict[str, np.ndarray] = field(default_factory=dict)  # bool [n, T]: future values filled by the engine
    start: np.ndarray | None = None  # int [n]: first column with data per series
    loc_codes: np.ndarray | None = None
    cat_codes: np.ndarray | None = None
    holiday_country: str | None = "US"
    driver_names: tuple[str, ...] = ()  # regressors that came from the Drivers table

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def T(self) -> int:
        return self.y.shape[1]

    def dates(self) -> pd.DatetimeIndex:
        return from_period(np.arange(self.p0, self.p0 + self.T), self.freq, self.anchor)

    def extend(self, horizon: int) -> "Panel":
        """A copy with room for ``horizon`` future columns after the history."""
        need = self.n_hist + horizon - self.T
        if need <= 0:
            return self
        pad = lambda a, v: np.concatenate([a, np.full((a.shape[0], need), v, dtype=a.dtype)], axis=1)  # noqa: E731
        return Panel(
            freq=self.freq, anchor=self.anchor, p0=self.p0, n_hist=self.n_hist, keys=self.keys,
            y=pad(self.y, np.nan), censored=pad(self.censored, False),
            regressors={k: pad(v, np.nan) for k, v in self.regressors.items()},
            assumed={k: pad(v, False) for k, v in self.assumed.items()},
            start=self.start, loc_codes=self.loc_codes, cat_codes=self.cat_codes,
            holiday_country=self.holiday_country, driver_names=self.driver_names,
        )


#: Rows of a long table handled at once by the chunked loops (1M rows: 8 MB per int64 column).
_CHUNK = 1 << 20


def _row_blocks(n: int, width: int, cells: int = 1 << 21) -> list[tuple[int, int]]:
    """Blocks of whole rows of an ``n x width`` matrix, about ``cells`` values each.

    Per-series statistics computed block by block are identical to the whole-matrix ones
    (every row is reduced on its own) while their temporaries stay a few MB instead of
    several copies of the panel.
    """
    step = max(1, cells // max(width, 1))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _scaled_history(panel: Panel, scale: np.ndarray, a: int, b: int) -> np.ndarray:
    """History of series ``a..b-1`` divided by their scale, NaN where censored (stock-outs
    understate demand: not a target, not a lag)."""
    h = panel.n_hist
    z = panel.y[a:b, :h] / scale[a:b, None]
    z[panel.censored[a:b, :h]] = np.nan
    return z


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    cat = pd.Categorical(values.astype(str))
    return cat.codes.astype(np.int32), list(cat.categories)


def build_panel(
    sales: pd.DataFrame,
    drivers: pd.DataFrame | None,
    items: pd.DataFrame | None,
    *,
    freq: str,
    anchor: int | None,
    regressors: list[str] | tuple[str, ...] = (),
    driver_columns: list[str] | tuple[str, ...] = (),
    holiday_country: str | None = "US",
    series: pd.DataFrame | None = None,
    horizon: int = 0,
) -> Panel:
    """Pivot long tables into a :class:`Panel`.

    ``sales`` may contain future "plan rows" (Qty NaN) carrying planned regressor
    values. ``series`` fixes the series order (used when predicting with a fitted
    model); otherwise series are sorted by SKU, Location.
    """
    f = normalize_freq(freq)
    sales = sales if S.LOCATION in sales.columns else sales.assign(**{S.LOCATION: S.NO_LOCATION})
    n_rows = len(sales)
    # Per-row work runs in chunks of rows: at 10k series x 5 years daily (18M rows) each
    # full-length int64 temporary is 150 MB, and the unchunked code held about eight.
    chunks = [(a, min(a + _CHUNK, n_rows)) for a in range(0, n_rows, _CHUNK)]
    dates = sales[S.DATE]
    per = np.empty(n_rows, dtype=np.int64)
    for a, b in chunks:
        per[a:b] = to_period(dates.iloc[a:b], f)
    has_qty = sales[S.QTY].notna().to_numpy()
    if not has_qty.any():
        raise ValueError("sales has no quantities")
    last_hist = int(np.max(per, where=has_qty, initial=np.iinfo(np.int64).min))

    # Integer keys via factorisation: a MultiIndex lookup over millions of rows would
    # build millions of tuples (seconds and gigabytes at 10k series x 3 years daily).
    sku_codes, sku_names = pd.factorize(sales[S.SKU].astype(str) if sales[S.SKU].dtype != object
                                        else sales[S.SKU])
    sku_codes = sku_codes.astype(np.int32)
    loc_codes_r, loc_names = pd.factorize(sales[S.LOCATION].astype(str) if sales[S.LOCATION].dtype != object
                                          else sales[S.LOCATION])
    loc_codes_r = loc_codes_r.astype(np.int32)
    base = len(loc_names) + 1

    def row_key(a: int, b: int) -> np.ndarray:
        return sku_codes[a:b].astype(np.int64) * base + loc_codes_r[a:b]

    if series is None:
        uniq = np.unique(np.concatenate([np.unique(row_key(a, b)[has_qty[a:b]]) for a, b in chunks]))
        keys = pd.DataFrame({S.SKU: np.asarray(sku_names)[uniq // base],
                             S.LOCATION: np.asarray(loc_names)[uniq % base]})
        order = np.lexsort((keys[S.LOCATION].to_numpy(), keys[S.SKU].to_numpy()))
        keys = keys.iloc[order].reset_index(drop=True)
        uniq = uniq[order]
    else:
        keys = series[[S.SKU, S.LOCATION]].reset_index(drop=True)
        sk = pd.Index(sku_names).get_indexer(keys[S.SKU].astype(str))
        lk = pd.Index(loc_names).get_indexer(keys[S.LOCATION].astype(str))
        uniq = np.where((sk >= 0) & (lk >= 0), sk.astype(np.int64) * base + lk, -1)
    missing = uniq < 0  # requested series absent from the data: give them unmatchable keys
    uniq = np.where(missing, -(1 << 40) - np.arange(len(uniq)), uniq)
    lookup = pd.Index(uniq)  # its hash table is built once and reused by every chunk
    sid = np.empty(n_rows, dtype=np.int32 if len(uniq) < np.iinfo(np.int32).max else np.int64)
    for a, b in chunks:
        sid[a:b] = lookup.get_indexer(row_key(a, b))  # -1: a row of a series not in `keys`
    del sku_codes, loc_codes_r, lookup
    keep = sid >= 0
    p0 = (int(np.min(per, where=keep & has_qty, initial=np.iinfo(np.int64).max)) if (keep & has_qty).any()
          else last_hist)
    n_hist = last_hist - p0 + 1
    T = n_hist + horizon
    n = len(keys)
    tid = per
    tid -= p0  # in place: the periods are not needed any more
    keep &= (tid >= 0) & (tid < T)

    y = np.full((n, T), np.nan)
    censored = np.zeros((n, T), dtype=bool)
    regs: dict[str, np.ndarray] = {col: np.full((n, T), np.nan, dtype=np.float32) for col in regressors}
    qty = sales[S.QTY]
    onhand = sales[S.ONHAND] if S.ONHAND in sales.columns else None
    for a, b in chunks:
        k = keep[a:b]
        if not k.any():
            continue
        sid_k, tid_k = sid[a:b][k], tid[a:b][k]
        y[sid_k, tid_k] = qty.iloc[a:b].to_numpy(dtype=np.float64)[k]
        if onhand is not None:
            oh = onhand.iloc[a:b].to_numpy(dtype=np.float64)[k]
            censored[sid_k, tid_k] = np.nan_to_num(oh, nan=1.0) <= 0
        for col in regressors:
            regs[col][sid_k, tid_k] = sales[col].iloc[a:b].to_numpy(dtype=np.float32)[k]
    del sid, tid, keep
    y[:, n_hist:] = np.nan  # plan rows never carry quantities into the future

    # Categoricals: location and category.
    loc_codes, _ = _codes(keys[S.LOCATION])
    cat_series = pd.Series(["" for _ in range(n)])
    if items is not None and S.CATEGORY in items.columns:
        if S.LOCATION in items.columns and (items[S.LOCATION].astype(str) != "").any():
            m = keys.merge(items[[S.SKU, S.LOCATION, S.CATEGORY]].drop_duplicates([S.SKU, S.LOCATION]),
                           on=[S.SKU, S.LOCATION], how="left")
        else:
            m = keys.merge(items[[S.SKU, S.CATEGORY]].drop_duplicates(S.SKU), on=S.SKU, how="left")
        cat_series = m[S.CATEGORY].fillna("").astype(str)
    cat_codes, _ = _codes(cat_series)
    keys = keys.assign(**{S.CATEGORY: cat_series.to_numpy()})

    if drivers is not None and len(driver_columns):
        regs.update(_driver_matrices(drivers, keys, list(driver_columns), f, p0, T))

    observed = ~np.isnan(y[:, :n_hist])
    start = np.where(observed.any(axis=1), observed.argmax(axis=1), n_hist)
    return Panel(
        freq=f, anchor=anchor, p0=p0, n_hist=n_hist, keys=keys, y=y, censored=censored,
        regressors=regs, start=start.astype(np.int64), loc_codes=loc_codes, cat_codes=cat_codes,
        holiday_country=holiday_country, driver_names=tuple(driver_columns) if drivers is not None else (),
    )


def _driver_matrices(
    drivers: pd.DataFrame, keys: pd.DataFrame, cols: list[str], freq: str, p0: int, T: int
) -> dict[str, np.ndarray]:
    """Drivers keyed by Date (+ Location, + SKU) broadcast to a per-series view."""
    d = drivers.copy()
    tid = to_period(d[S.DATE], freq) - p0
    d = d.assign(_t=tid)
    d = d[(d["_t"] >= 0) & (d["_t"] < T)]
    n = len(keys)
    out: dict[str, np.ndarray] = {}
    by_loc = S.LOCATION in d.columns and (d[S.LOCATION].astype(str) != "").any()
    by_sku = S.SKU in d.columns and (d[S.SKU].astype(str) != "").any()
    if by_sku:
        level = [S.SKU, S.LOCATION] if by_loc else [S.SKU]
    elif by_loc:
        level = [S.LOCATION]
        known = set(keys[S.LOCATION])
        if not known & set(d[S.LOCATION].astype(str)):
            # Drivers per location but sales without matching locations: average them.
            by_loc, level = False, []
    else:
        level = []
    if level:
        groups = keys[level].drop_duplicates().reset_index(drop=True)
        gidx = pd.MultiIndex.from_frame(groups).get_indexer(pd.MultiIndex.from_frame(d[level].astype(str)))
        d = d.assign(_g=gidx)
        d = d[d["_g"] >= 0]
        series_g = pd.MultiIndex.from_frame(groups).get_indexer(pd.MultiIndex.from_frame(keys[level]))
        G = len(groups)
    else:
        d = d.assign(_g=0)
        series_g = np.zeros(n, dtype=np.int64)
        G = 1
    agg = d.groupby(["_g", "_t"], sort=False)[cols].mean()
    g = agg.index.get_level_values(0).to_numpy()
    t = agg.index.get_level_values(1).to_numpy()
    for c in cols:
        m = np.full((G, T), np.nan, dtype=np.float32)
        m[g, t] = agg[c].to_numpy(dtype=np.float32)
        out[c] = m[series_g]  # fancy index copies; fine at n x T float32
    return out


# ---------------------------------------------------------------- holidays

def holiday_table(country: str | None, years: range) -> pd.DataFrame:
    """Public holidays (``holidays`` package) plus retail events derived from them
    (Black Friday after US Thanksgiving, Christmas Eve). Columns: date, name."""
    return _holiday_table(country, years.start, years.stop).copy()


@lru_cache(maxsize=32)
def _holiday_table(country: str | None, first: int, stop: int) -> pd.DataFrame:
    years = range(first, stop)
    if not country:
        return pd.DataFrame({"date": pd.to_datetime([]), "name": []})
    try:
        cal = _holidays.country_holidays(country, years=list(years))
    except NotImplementedError:
        from .errors import InputError, Problem

        raise InputError(
            f"HolidayCountry {country!r} is not known to the holidays package; use an ISO code such as US, GB, DE.",
            [Problem("Settings", f"unknown holiday country {country!r}", "use an ISO 3166 country code (US, GB, DE, FR ...)",
                     column="HolidayCountry", value=country, code="E110")],
            code="E110",
        ) from None
    rows = [(pd.Timestamp(d), n.replace(" (observed)", "").split(";")[0].strip()) for d, n in cal.items()]
    extra = []
    for d, n in rows:
        if n == "Thanksgiving Day" or n == "Thanksgiving":
            extra.append((d + pd.Timedelta(days=1), "Black Friday"))
        if n == "Christmas Day" and d.month == 12 and d.day == 25:
            extra.append((d - pd.Timedelta(days=1), "Christmas Eve"))
    return pd.DataFrame(rows + extra, columns=["date", "name"]).drop_duplicates("date").sort_values("date")


def _holiday_features(dates: pd.DatetimeIndex, freq: str, country: str | None, horizon: int) -> dict[str, np.ndarray]:
    """Per-column holiday features: in-period flags, distance to the next holiday
    and which holiday it is (a stable code by name)."""
    T = len(dates)
    if not country or T == 0:
        return {}
    years = range(dates.min().year - 1, dates.max().year + 2)
    hol = holiday_table(country, years)
    names = sorted(hol["name"].unique())
    code = {n: i + 1 for i, n in enumerate(names)}
    hdays = hol["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    hcode = hol["name"].map(code).to_numpy()
    d = dates.to_numpy().astype("datetime64[D]").astype(np.int64)
    if freq == "D":
        lo, hi = d, d
        step = 1
    elif freq == "W":
        # A weekly date may label the week ending or starting on it: flag both.
        lo, hi = d - 6, d + 6
        step = 7
    else:
        ends = (dates + pd.offsets.MonthEnd(0)).to_numpy().astype("datetime64[D]").astype(np.int64)
        lo, hi = d, ends
        step = 30
    out: dict[str, np.ndarray] = {}
    if freq == "W":
        a = np.searchsorted(hdays, d - 6, side="left")
        b = np.searchsorted(hdays, d, side="right")
        c = np.searchsorted(hdays, d + 6, side="right")
        out["hol_week_ending"] = (b - a).astype(np.float32)
        out["hol_week_starting"] = (c - np.searchsorted(hdays, d, side="left")).astype(np.float32)
        first = np.where(c > a, hcode[np.minimum(a, len(hcode) - 1)], 0)
        out["hol_id"] = first.astype(np.float32)
    else:
        a = np.searchsorted(hdays, lo, side="left")
        b = np.searchsorted(hdays, hi, side="right")
        out["hol_count"] = (b - a).astype(np.float32)
        out["hol_id"] = np.where(b > a, hcode[np.minimum(a, len(hcode) - 1)], 0).astype(np.float32)
    nxt = np.searchsorted(hdays, d, side="left")
    nxt_c = np.minimum(nxt, len(hdays) - 1)
    dist = np.where(nxt < len(hdays), (hdays[nxt_c] - d) / step, horizon)
    out["hol_next_dist"] = np.minimum(np.floor(dist), horizon).astype(np.float32)
    out["hol_next_id"] = np.where(dist <= horizon, hcode[nxt_c], 0).astype(np.float32)
    prv = np.searchsorted(hdays, d, side="right") - 1
    pdist = np.where(prv >= 0, (d - hdays[np.maximum(prv, 0)]) / step, horizon)
    out["hol_prev_dist"] = np.minimum(np.floor(pdist), horizon).astype(np.float32)
    return out


def _calendar_features(dates: pd.DatetimeIndex, freq: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    out["month"] = dates.month.to_numpy(np.float32)
    if freq == "W":
        out["week_of_year"] = dates.isocalendar().week.to_numpy(np.float32)
    if freq == "D":
        out["day_of_year"] = dates.dayofyear.to_numpy(np.float32)
    if freq == "D":
        out["day_of_week"] = dates.dayofweek.to_numpy(np.float32)
        out["day_of_month"] = dates.day.to_numpy(np.float32)
    return out


# ---------------------------------------------------------------- regressors

def _season_pos(dates: pd.DatetimeIndex, freq: str) -> np.ndarray:
    if freq == "MS":
        return dates.month.to_numpy() - 1
    return np.minimum(dates.isocalendar().week.to_numpy().astype(np.int64), 52) - 1


def _is_binary(m: np.ndarray) -> bool:
    v = m[~np.isnan(m)]
    return v.size > 0 and bool(np.all((v == 0) | (v == 1)))


def regressor_kinds(panel: Panel) -> dict[str, str]:
    """``binary`` (promo-like flags), ``price`` or ``numeric`` for each regressor
    (:func:`regressor_stats` refines ``numeric`` into ``seasonal`` for weather-like drivers)."""
    kinds = {}
    for name, m in panel.regressors.items():
        if _is_binary(m[:, : panel.n_hist]):
            kinds[name] = "binary"
        elif "price" in name.lower() and name not in panel.driver_names:  # a SKU's own price
            kinds[name] = "price"
        else:
            kinds[name] = "numeric"
    return kinds


@dataclass
class RegressorStats:
    """Per-series statistics of regressors learned at fit time (reused at predict)."""

    normals: dict[str, np.ndarray]  # [n, n_pos] seasonal normal per series
    price_ref: dict[str, np.ndarray]  # [n] reference price per series
    kinds: dict[str, str]
    # [n] correlation of each series' demand with the regressor's anomaly: tells the
    # global model *which* series react to a driver (ice cream to heat, not detergent)
    sensitivity: dict[str, np.ndarray] = field(default_factory=dict)


def regressor_stats(panel: Panel, kinds: dict[str, str] | None = None) -> RegressorStats:
    """Seasonal normals, reference prices and per-series sensitivities of the regressors.

    ``kinds`` fixes each regressor's kind (the layout of a model fitted on more data): a
    truncated history can look different -- Walmart's markdowns are all 0 before late 2011,
    so a short calibration panel would call them binary and skip the statistics the
    model's features need.
    """
    fixed = kinds is not None
    kinds = dict(kinds) if fixed else regressor_kinds(panel)
    dates = panel.dates()
    pos = _season_pos(dates, panel.freq)
    n_pos = 12 if panel.freq == "MS" else 52
    normals, price_ref, sens = {}, {}, {}
    h = panel.n_hist
    n = panel.n
    spec = default_spec(panel.freq)
    scale = series_scale(panel, spec)
    year = spec.year
    cols = pos[:h]
    # Every statistic but the seasonal R^2 is per series: computed on blocks of series, the
    # temporaries (several float64 copies of the history) stay small; results are unchanged.
    blocks = _row_blocks(n, h)
    for name, m in panel.regressors.items():
        if kinds.get(name, "numeric") == "binary":
            continue
        normal32 = np.empty((n, n_pos), dtype=np.float32)
        sens32 = np.empty(n, dtype=np.float32)
        check_season = not fixed and kinds[name] == "numeric" and h >= 2 * n_pos
        tot = res = 0.0
        for a, b in blocks:
            hist = m[a:b, :h].astype(np.float64)
            ok = ~np.isnan(hist)
            sums = np.zeros((b - a, n_pos))
            cnts = np.zeros((b - a, n_pos))
            for p in range(n_pos):  # 12 or 52 iterations, each vectorised over series
                sel = cols == p
                if sel.any():
                    sums[:, p] = np.where(ok[:, sel], hist[:, sel], 0).sum(axis=1)
                    cnts[:, p] = ok[:, sel].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                normal = sums / cnts
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                overall = np.nanmean(np.where(ok, hist, np.nan), axis=1)
            normal = np.where(np.isnan(normal), overall[:, None], normal)
            normal32[a:b] = normal
            resid = hist - normal[:, cols]
            sens32[a:b] = _row_corr(_scaled_history(panel, scale, a, b), resid)
            if check_season:
                t_, r_ = _r2_sums(hist, resid)
                tot, res = tot + t_, res + r_
        normals[name] = normal32
        sens[name] = sens32
        if check_season and (1.0 - res / tot if tot > 0 else 0.0) >= 0.5:
            # Weather-like: the level is mostly the season, which lags and the calendar
            # already carry; a level feature would let the model read heat as "summer".
            kinds[name] = "seasonal"
        elif not fixed and kinds[name] == "numeric" and _trend_strength(m, h) >= 0.8:
            # CPI-like: what moves demand is the rate of change (inflation), not the level.
            kinds[name] = "trend"
        if kinds[name] == "trend":
            if h > year + 8:
                for a, b in blocks:
                    hist = m[a:b, :h].astype(np.float64)
                    # broadcast (rows, 1) x (1, h) indices: the whole block without index copies
                    yoy = _yoy(hist, np.arange(b - a)[:, None], np.arange(h)[None, :], year)
                    # Year-over-year *changes* of demand against changes of the driver's rate: a
                    # growing SKU is not "inflation-loving" just because CPI also grew.
                    z = _scaled_history(panel, scale, a, b)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        dz = np.log1p(np.clip(z[:, year:], 0, None)) - np.log1p(np.clip(z[:, :-year], 0, None))
                    dyoy = yoy[:, year:] - yoy[:, :-year]
                    sens32[a:b] = _row_corr(dz, dyoy)
            else:
                sens32[:] = 0.0
        if kinds[name] == "price":
            ref = np.empty(n)
            for a, b in blocks:
                hist = m[a:b, :h].astype(np.float64)
                with np.errstate(all="ignore"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        ref[a:b] = np.nanmedian(hist[:, -max(1, min(h, 2 * n_pos)):], axis=1)
            price_ref[name] = np.where(np.isfinite(ref) & (ref > 0), ref, np.nan).astype(np.float32)
    return RegressorStats(normals=normals, price_ref=price_ref, kinds=kinds, sensitivity=sens)


def _trend_strength(m: np.ndarray, h: int) -> float:
    """Median over series of |corr(value, time)| over the first ``h`` columns of ``m``:
    near 1 for CPI-like drivers."""
    parts = []
    for a, b in _row_blocks(m.shape[0], h):
        hist = m[a:b, :h].astype(np.float64)
        parts.append(_row_corr(hist, np.broadcast_to(np.arange(h, dtype=np.float64), hist.shape)))
    r = np.concatenate(parts) if parts else np.zeros(0)
    r = r[r != 0]
    return float(np.median(np.abs(r))) if r.size else 0.0


def seasonal_r2(hist: np.ndarray, resid: np.ndarray) -> float:
    """Share of a regressor's variance explained by its seasonal normal."""
    tot, res = _r2_sums(hist, resid)
    return 1.0 - res / tot if tot > 0 else 0.0


def _r2_sums(hist: np.ndarray, resid: np.ndarray) -> tuple[float, float]:
    """Total and residual sums of squares of :func:`seasonal_r2` (additive over series)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-blank rows: no contribution
        centred = hist - np.nanmean(hist, axis=1, keepdims=True)
    return float(np.nansum(centred**2)), float(np.nansum(resid**2))


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per row over the cells where both are finite (0 if undefined)."""
    ok = np.isfinite(a) & np.isfinite(b)
    cnt = ok.sum(axis=1)
    a0 = np.where(ok, a, 0.0)
    b0 = np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = a0.sum(axis=1) / cnt
        mb = b0.sum(axis=1) / cnt
        da = np.where(ok, a - ma[:, None], 0.0)
        db = np.where(ok, b - mb[:, None], 0.0)
        r = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    return np.where(np.isfinite(r) & (cnt >= 8), r, 0.0)


# ---------------------------------------------------------------- feature matrix

def feature_names(panel: Panel, spec: FeatureSpec, stats: RegressorStats, *, direct: bool = False) -> list[str]:
    names = [f"lag_{k}" for k in spec.lags]
    names += [f"mean_{w}" for w in spec.mean_windows]
    names += [f"std_{w}" for w in spec.std_windows]
    names += [f"nonzero_{spec.nonzero_window}"]
    if spec.same_season_lags:
        names += ["same_weekday_mean"]
    names += ["last_year_mean3", "last_year_level_adjusted", "level_vs_last_year"]
    names += ["age", "location", "category"]
    names += list(_calendar_features(panel.dates()[:1], panel.freq))
    names += list(_holiday_features(panel.dates()[:1], panel.freq, panel.holiday_country, spec.holiday_horizon))
    for name, kind in stats.kinds.items():
        names += [name if suffix == "" else f"{name}_{suffix}" for suffix in _REGRESSOR_FEATURES[kind]]
    if direct:
        names.append("horizon")
    return names


#: Features per regressor kind ("" is the value itself). Trending and seasonal drivers
#: leave out their level: a trend level lies outside the training range in the future
#: (trees cannot extrapolate) and a seasonal level is a proxy for the season.
_REGRESSOR_FEATURES: dict[str, tuple[str, ...]] = {
    "binary": ("", "prev", "next"),
    "price": ("", "ratio", "effect"),
    "seasonal": ("anomaly", "effect"),
    "trend": ("yoy", "effect"),
    "numeric": ("", "anomaly", "effect"),
}


CATEGORICAL = ("location", "category", "hol_id", "hol_next_id")


def _window_sum(cs: np.ndarray, i: np.ndarray, t: np.ndarray, w: int) -> np.ndarray:
    """Sum of values in columns [t-w, t) from a cumulative sum with a leading zero column."""
    lo = np.clip(t - w, 0, None)
    hi = np.clip(t, 0, None)
    return cs[i, hi] - cs[i, lo]


class _Cums:
    """Cumulative sums over a (scaled) matrix: values, squares, counts, non-zeros."""

    def __init__(self, z: np.ndarray) -> None:
        # Filled block by block into preallocated arrays (no full-size temporaries); the
        # counts are exact integers, int32 halves their size against float64.
        n, T = z.shape
        self.s = np.empty((n, T + 1))
        self.q = np.empty((n, T + 1))
        self.c = np.empty((n, T + 1), dtype=np.int32)
        self.nz = np.empty((n, T + 1), dtype=np.int32)
        for acc in (self.s, self.q, self.c, self.nz):
            acc[:, 0] = 0
        for a, b in _row_blocks(n, T):
            ok = ~np.isnan(z[a:b])
            zz = np.where(ok, z[a:b], 0.0)
            np.cumsum(zz, axis=1, dtype=np.float64, out=self.s[a:b, 1:])
            np.cumsum(zz * zz, axis=1, dtype=np.float64, out=self.q[a:b, 1:])
            np.cumsum(ok, axis=1, dtype=np.int32, out=self.c[a:b, 1:])
            np.cumsum(zz > 0, axis=1, dtype=np.int32, out=self.nz[a:b, 1:])

    def update(self, z: np.ndarray, col: int) -> None:
        """Recompute the sums after column ``col`` of ``z`` changed (cheap near the end):
        recursive forecasting writes one new column per step."""
        tail = z[:, col:]
        ok = ~np.isnan(tail)
        zz = np.where(ok, tail, 0.0)
        for acc, v in ((self.s, zz), (self.q, zz * zz), (self.c, ok), (self.nz, zz > 0)):
            acc[:, col + 1:] = acc[:, col: col + 1] + np.cumsum(v, axis=1, dtype=acc.dtype)


def feature_matrix(
    panel: Panel,
    z: np.ndarray,
    i: np.ndarray,
    t: np.ndarray,
    spec: FeatureSpec,
    stats: RegressorStats,
    *,
    cums: _Cums | None = None,
    col_offset: int = 0,
    shift: int | np.ndarray = 0,
    calendar: dict[str, np.ndarray] | None = None,
    direct: bool = False,
    row_offset: int = 0,
) -> np.ndarray:
    """Features (float32, ``len(i) x n_features``) for target cells ``(i, t)``.

    ``z`` is the scaled target matrix whose column 0 is panel column ``col_offset``
    (a window is passed during recursive prediction to keep cumsums small) and whose
    row 0 is panel series ``row_offset`` (a block of series: ``z`` and ``cums`` of all
    series at once are gigabytes on large panels). ``i`` and ``t`` are panel indices.
    ``shift`` > 0 (a scalar or one value per row) builds
    direct-strategy features: only values at least ``shift + 1`` periods before the
    target are used; with ``direct`` the last column is the horizon ``shift + 1``.
    """
    n_rows = len(i)
    names = feature_names(panel, spec, stats, direct=direct)
    X = np.empty((n_rows, len(names)), dtype=np.float32)
    tz = t - col_offset  # column index inside z
    zi = i - row_offset if row_offset else i  # row index inside z and cums
    if cums is None:
        cums = _Cums(z)
    col = 0
    for k in spec.lags:
        src = tz - k - shift
        ok = src >= 0
        X[:, col] = np.where(ok, z[zi, np.clip(src, 0, None)], np.nan)
        col += 1
    end = tz - shift  # windows end just before the target (exclusive)
    for w in spec.mean_windows:
        s = _window_sum(cums.s, zi, end, w)
        c = _window_sum(cums.c, zi, end, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            X[:, col] = np.where(c > 0, s / c, np.nan)
        col += 1
    for w in spec.std_windows:
        s = _window_sum(cums.s, zi, end, w)
        q = _window_sum(cums.q, zi, end, w)
        c = _window_sum(cums.c, zi, end, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(c > 1, (q - s * s / np.maximum(c, 1)) / np.maximum(c - 1, 1), np.nan)
        X[:, col] = np.sqrt(np.clip(var, 0, None))
        col += 1
    w = spec.nonzero_window
    nz = _window_sum(cums.nz, zi, end, w)
    c = _window_sum(cums.c, zi, end, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        X[:, col] = np.where(c > 0, nz / c, np.nan)
    col += 1
    if spec.same_season_lags:
        acc = np.zeros(n_rows)
        cnt = np.zeros(n_rows)
        for k in spec.same_season_lags:
            # With a direct-strategy shift, step back whole seasons so weekdays stay aligned.
            src = tz - k - spec.same_season_lags[0] * np.ceil(np.asarray(shift) / spec.same_season_lags[0]).astype(np.int64)
            ok = src >= 0
            v = np.where(ok, z[zi, np.clip(src, 0, None)], np.nan)
            good = ~np.isnan(v)
            acc += np.where(good, v, 0)
            cnt += good
        with np.errstate(invalid="ignore", divide="ignore"):
            X[:, col] = np.where(cnt > 0, acc / cnt, np.nan)
        col += 1
    # Last year's demand around the target period, and the same value scaled by how the
    # recent level compares with the same weeks last year: a growth-adjusted seasonal
    # naive forecast, which trees cannot build themselves (they do not multiply).
    Y, w = spec.year_lag, spec.level_window
    acc = np.zeros(n_rows)
    cnt = np.zeros(n_rows)
    for d in (-1, 0, 1):
        src = tz - Y + d
        ok = (src >= 0) & (src < end)
        v = np.where(ok, z[zi, np.clip(src, 0, z.shape[1] - 1)], np.nan)
        good = ~np.isnan(v)
        acc += np.where(good, v, 0)
        cnt += good
    with np.errstate(invalid="ignore", divide="ignore"):
        X[:, col] = np.where(cnt > 0, acc / cnt, np.nan)
        col += 1
        recent = _window_sum(cums.s, zi, end, w) / _window_sum(cums.c, zi, end, w)
        before = _window_sum(cums.s, zi, end - Y, w) / _window_sum(cums.c, zi, end - Y, w)
        ratio = np.where((end - Y - w >= 0) & (before > 0), recent / before, np.nan)
        ratio = np.clip(ratio, 0.0, 10.0)
        src = tz - Y
        ly = np.where((src >= 0) & (src < end), z[zi, np.clip(src, 0, z.shape[1] - 1)], np.nan)
        X[:, col] = ly * ratio
        col += 1
        X[:, col] = ratio
        col += 1
    X[:, col] = np.minimum(t - panel.start[i], 3 * spec.year).astype(np.float32)
    col += 1
    X[:, col] = panel.loc_codes[i]
    col += 1
    X[:, col] = panel.cat_codes[i]
    col += 1
    if calendar is None:
        calendar = column_calendar(panel, spec)
    for name in _calendar_names(panel, spec):
        X[:, col] = calendar[name][t]
        col += 1
    T = panel.T
    pos = calendar["_pos"][t]
    for name, kind in stats.kinds.items():
        for suffix in _REGRESSOR_FEATURES[kind]:
            X[:, col] = _regressor_feature(panel, stats, spec, name, kind, suffix, i, t, pos, T)
            col += 1
    if direct:
        X[:, col] = np.asarray(shift) + 1
        col += 1
    assert col == len(names), (col, len(names))
    return X


def _yoy(m: np.ndarray, i: np.ndarray, t: np.ndarray, year: int) -> np.ndarray:
    """Relative change over a year for positive series (CPI -> inflation), else the difference."""
    back = t - year
    prev = np.where(back >= 0, m[i, np.clip(back, 0, None)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(prev > 0, m[i, t] / prev - 1.0, m[i, t] - prev)


def _regressor_feature(
    panel: Panel, stats: RegressorStats, spec: FeatureSpec, name: str, kind: str, suffix: str,
    i: np.ndarray, t: np.ndarray, pos: np.ndarray, T: int,
) -> np.ndarray:
    m = panel.regressors[name]
    if suffix == "":
        return m[i, t]
    if suffix == "prev":
        return np.where(t >= 1, m[i, np.clip(t - 1, 0, None)], np.nan)
    if suffix == "next":
        return np.where(t + 1 < T, m[i, np.clip(t + 1, None, T - 1)], np.nan)
    if suffix == "ratio":
        return m[i, t] / stats.price_ref[name][i]
    if suffix == "sensitivity":
        return np.broadcast_to(stats.sensitivity[name][i], i.shape)
    # The driver's signal the sensitivity was measured on: yoy change for trends,
    # deviation from the seasonal normal otherwise.
    signal = _yoy(m, i, t, spec.year) if kind == "trend" else m[i, t] - stats.normals[name][i, pos]
    if suffix == "anomaly":
        return signal
    if suffix == "yoy":
        return _yoy(m, i, t, spec.year)
    if suffix == "effect":
        return signal * stats.sensitivity[name][i]
    raise ValueError(suffix)


def _calendar_names(panel: Panel, spec: FeatureSpec) -> list[str]:
    d = panel.dates()[:1]
    return list(_calendar_features(d, panel.freq)) + list(
        _holiday_features(d, panel.freq, panel.holiday_country, spec.holiday_horizon)
    )


def column_calendar(panel: Panel, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Calendar and holiday features for every panel column (computed once)."""
    dates = panel.dates()
    cal = _calendar_features(dates, panel.freq)
    cal.update(_holiday_features(dates, panel.freq, panel.holiday_country, spec.holiday_horizon))
    cal["_pos"] = _season_pos(dates, panel.freq)
    return cal


def series_scale(panel: Panel, spec: FeatureSpec) -> np.ndarray:
    """Mean absolute demand over the last year of history (>= a small floor)."""
    h = panel.n_hist
    s = np.empty(panel.n)
    s_all = np.empty(panel.n)
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for a, b in _row_blocks(panel.n, h):  # per series: blocks keep the temporaries small
                s[a:b] = np.nanmean(np.abs(panel.y[a:b, max(0, h - spec.year): h]), axis=1)
                s_all[a:b] = np.nanmean(np.abs(panel.y[a:b, :h]), axis=1)
    s = np.where(np.isfinite(s) & (s > 0), s, s_all)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    return np.maximum(s, 0.05)


def seasonal_mae_scale(panel: Panel, m: int) -> np.ndarray:
    """In-sample MAE of the seasonal naive forecast per series (the MASE scale)."""
    h = panel.n_hist
    out = np.full(panel.n, np.nan)
    for a, b in _row_blocks(panel.n, h):  # per series: blocks keep the temporaries small
        y = panel.y[a:b, :h]
        part = np.full(b - a, np.nan)
        if h > m:
            d = np.abs(y[:, m:] - y[:, :-m])
            with np.errstate(invalid="ignore"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    part = np.nanmean(d, axis=1)
        if h > 1:
            d1 = np.abs(np.diff(y, axis=1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                naive = np.nanmean(d1, axis=1)
            part = np.where(np.isfinite(part) & (part > 0), part, naive)
        out[a:b] = part
    return out

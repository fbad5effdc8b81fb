"""Synthetic retail panels whose true effects are known.

The project's tests, demo and benchmarks use :func:`generate_panel` instead of real
data: the same arguments always give identical frames, and :func:`expected_demand`
recomputes the noise-free demand for any (possibly modified) prices, promotions and
drivers, so a test can compare what a model learned with the truth.

Demand model
------------
Series ``i`` is one (SKU, Location) pair, ``t`` a period on the frequency grid. The
expected demand is a product of multipliers, each equal to 1 at "reference conditions"::

    mu[i, t] = base_level[i]                                   # per-period level (intermittent: p * size)
             * exp(trend[i] * years[t])                        # years since the first history period
             * (1 + season_amp[i] * cos(2 pi (year_frac[t] - season_peak[i])))
             * dow_profile[i, weekday[t]]                      # daily data only (mean 1 over a week)
             * (1 + holiday_uplift[i] * holiday_intensity[t])
             * ramp[i, t]                                      # new SKUs: 0 before launch, then 1 - exp(-(age+1)/tau)
             * exp(temp_beta[i] * (Temperature[l, t] - temp_ref[l]))
             * (Price[i, t] / ref_price[i]) ** elasticity[i]
             * exp(-inflation_beta[i] * (yoy_inflation[l, t] - 0.02))
             * (1 + promo_uplift[i] * Promo[i, t])
             * (1 - post_promo_dip[i] * Promo[i, t-1] * (1 - Promo[i, t]))

* **Temperature** enters in absolute terms against a fixed per-location reference
  ``temp_ref`` (the location's annual mean temperature): a +5 C heatwave multiplies
  demand by exactly ``exp(5 * temp_beta)``. Temperature = a yearly cycle + AR(1)
  anomalies + a few multi-period summer heat waves (+5..+8 C) in history, so it is not
  collinear with the season. ``params["temp_normal"]`` holds the seasonal normal, so
  ``Temperature - temp_normal`` is the anomaly. Only weather-sensitive categories
  (Beverages, IceCream; about a third of the SKUs) have ``temp_beta`` > 0 (0.035..0.08/C).
* **Price**: ``ref_price`` is the regular price at the first history period.
  Shelf prices follow ``ref_price * (CPI/CPI_0)**passthrough * step changes * (1 - discount * Promo)``
  (rounded to cents), so demand reacts to pass-through of inflation, occasional regular
  price changes and promotional discounts, each through the elasticity (-1.0..-2.5).
* **Inflation**: ``yoy_inflation = CPI[t] / CPI[t - one year] - 1`` (365 days, 52 weeks or
  12 months earlier; a year of CPI before the history is kept in ``params["cpi"]``). It is
  a purchasing-power effect separate from prices. :func:`expected_demand` takes prices as
  given, so a CPI scenario changes demand only through this term.
* **Promotions**: ``Promo`` is 0/1; a promoted period gets ``(1 + promo_uplift)`` on top of the
  price effect of its discount; the first non-promoted period after a promotion loses
  ``post_promo_dip``.
* **Holidays** (``holidays.country_holidays``): daily data has intensity 1 on a holiday and
  0.5 on the day before; a week containing a holiday has intensity 1; a month has
  ``7 * holidays / days_in_month`` (each holiday lifts about a week).
* **FuelPrice** is a random walk with **no** effect on demand (``fuel_beta`` = 0): a distractor.

Counts are gamma-Poisson (negative binomial, shape ``dispersion``) around ``mu``;
intermittent series are Croston-like: demand occurs with probability ``intermittency``
and is then Poisson with mean ``mu / intermittency``. Random stock-out episodes censor
sales in history: there ``OnHand`` is 0 and ``Qty`` is a fraction of demand; ``demand``
keeps the uncensored truth. ``OnHand`` is positive in every other period.

Weekly dates label the 7 days starting on that date (the weekday of ``start``); monthly
dates are month starts (``start`` is floored to its month).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .errors import InputError, Problem
from .frequency import days_per_period, normalize_freq, periods_per_year

__all__ = [
    "SyntheticPanel",
    "generate_panel",
    "expected_demand",
    "PATTERNS",
    "CATEGORIES",
    "WEATHER_CATEGORIES",
    "INFLATION_REF",
]

_log = logging.getLogger(__name__)

PATTERNS = ("smooth", "seasonal", "trending", "intermittent", "new")
_PATTERN_SHARE = (0.30, 0.25, 0.15, 0.20, 0.10)
WEATHER_CATEGORIES = ("Beverages", "IceCream")
CATEGORIES = WEATHER_CATEGORIES + ("Grocery", "Snacks", "Household", "PersonalCare")
_WEATHER_SHARE = 0.35
#: Year-over-year inflation at which the purchasing-power multiplier is 1.
INFLATION_REF = 0.02

_DEFAULT_PERIODS = {"D": 3 * 365, "W": 156, "MS": 60}
_DEFAULT_HORIZON = {"D": 28, "W": 12, "MS": 6}
_YOY_LAG = {"D": 365, "W": 52, "MS": 12}
# AR(1) temperature anomalies: (phi, stationary sd in C); coarser periods average more days.
_ANOMALY = {"D": (0.75, 3.0), "W": (0.5, 2.2), "MS": (0.3, 1.5)}
_HEATWAVE_LEN = {"D": (4, 10), "W": (2, 3), "MS": (2, 2)}
_PROMO_LEN = {"D": (3, 7), "W": (1, 2), "MS": (1, 1)}
_STOCKOUT_LEN = {"D": (2, 7), "W": (1, 2), "MS": (1, 1)}
_RAMP_PERIODS = {"D": 21.0, "W": 4.0, "MS": 1.5}
_REVIEW_DAYS = {"D": (1, 2, 7), "W": (7, 14), "MS": (7, 14, 30)}
_WEEKDAY_PROFILE = np.array([0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.0])  # Mon..Sun
_NOT_NEW = -(10**9)  # launch period of series that exist from the start: ramp is 1


@dataclass
class SyntheticPanel:
    """A generated panel: the data a planner would have, plus the truth behind it.

    * ``sales``: history rows Date, SKU, Location, Qty (censored by stock-outs), Price, Promo, OnHand;
      SKU-major, dates ascending; new SKUs have no rows before launch. Compact dtypes.
    * ``drivers``: Date, Location, Temperature, CPI, FuelPrice for history and the future.
    * ``items``: master data per (SKU, Location) in the data-contract columns.
    * ``future``: the ``horizon`` future periods per series: true uncensored Qty, planned Price/Promo.
    * ``demand``: uncensored sampled demand for the rows of ``sales`` (same order).
    * ``truth``: the true parameters per (SKU, Location) (see the module docstring).
    * ``params``: arrays needed by :func:`expected_demand` (grid, drivers, per-series effects).
    """

    sales: pd.DataFrame
    drivers: pd.DataFrame
    items: pd.DataFrame
    future: pd.DataFrame
    demand: pd.DataFrame
    truth: pd.DataFrame
    freq: str
    params: dict[str, Any] = field(repr=False)


# --------------------------------------------------------------------------- grid


def _grid(freq: str, start: pd.Timestamp, n: int) -> pd.DatetimeIndex:
    if freq == "D":
        return pd.date_range(start, periods=n, freq="D")
    if freq == "W":
        return pd.date_range(start, periods=n, freq="7D")
    return pd.date_range(start.to_period("M").to_timestamp(), periods=n, freq="MS")


def _period_days(dates: pd.DatetimeIndex, freq: str) -> np.ndarray:
    if freq == "D":
        return np.ones(len(dates))
    if freq == "W":
        return np.full(len(dates), 7.0)
    return np.asarray(dates.days_in_month, dtype=float)


def _time_features(dates: pd.DatetimeIndex, freq: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Years since the first period, fraction of the year and weekday, at mid-period."""
    days = dates.values.astype("datetime64[D]").astype(np.int64).astype(float)
    mid = days + (_period_days(dates, freq) - 1.0) / 2.0
    years = (mid - mid[0]) / 365.25
    doy = mid - dates.year.values.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    year_frac = doy / 365.25
    return years, year_frac, np.asarray(dates.weekday, dtype=np.int64)


def _holiday_intensity(dates: pd.DatetimeIndex, freq: str, country: str) -> np.ndarray:
    import holidays

    years = range(dates[0].year - 1, dates[-1].year + 2)
    try:
        cal = holidays.country_holidays(country, years=years)
    except (NotImplementedError, KeyError) as exc:
        raise InputError(
            f"Holiday country {country!r} is not known to the holidays package.",
            [Problem("Settings", f"unknown holiday country {country!r}",
                     "use an ISO country code such as US, GB or DE",
                     column="HolidayCountry", value=country, code="E110")],
            code="E110",
        ) from exc
    hd = np.array(sorted(cal.keys()), dtype="datetime64[D]")
    d = dates.values.astype("datetime64[D]")
    if freq == "D":
        on = np.isin(d, hd)
        eve = np.isin(d + np.timedelta64(1, "D"), hd)
        return np.where(on, 1.0, np.where(eve, 0.5, 0.0))
    ends = d + _period_days(dates, freq).astype(np.int64).astype("timedelta64[D]")
    counts = np.searchsorted(hd, ends) - np.searchsorted(hd, d)
    if freq == "W":
        return (counts > 0).astype(float)
    return np.minimum(1.0, counts * 7.0 / _period_days(dates, freq))


# --------------------------------------------------------------------------- random pieces


def _pattern_counts(n: int) -> np.ndarray:
    """Largest-remainder split of n SKUs over PATTERNS; each pattern at least once if n >= 5."""
    share = np.asarray(_PATTERN_SHARE)
    raw = share * n
    counts = np.floor(raw).astype(int)
    if n >= len(share):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    k = 0
    while counts.sum() < n:
        counts[order[k % len(order)]] += 1
        k += 1
    return counts


def _episodes(rng: np.random.Generator, share: np.ndarray, lengths: np.ndarray, n_periods: int) -> np.ndarray:
    """Boolean (series x periods) mask of episodes of per-series ``lengths`` covering about ``share``."""
    p_start = (share / lengths).astype(np.float32)
    starts = rng.random((len(share), n_periods), dtype=np.float32) < p_start[:, None]
    out = starts.copy()
    for k in range(1, int(lengths.max())):
        longer = (lengths > k)[:, None]
        out[:, k:] |= starts[:, :-k] & longer
    return out


def _ar1(rng: np.random.Generator, n: int, n_periods: int, phi: float, sd: float) -> np.ndarray:
    eps = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), size=(n, n_periods))
    eps[:, 0] /= np.sqrt(1.0 - phi**2)  # start in the stationary distribution
    return lfilter([1.0], [1.0, -phi], eps, axis=1)


# --------------------------------------------------------------------------- the model


def _expected(p: dict[str, Any], s: np.ndarray, t: np.ndarray, temp: np.ndarray, yoy: np.ndarray,
              price: np.ndarray, promo: np.ndarray, prev_promo: np.ndarray) -> np.ndarray:
    """Noise-free demand for series ``s`` at grid periods ``t`` (broadcastable index arrays).

    One code path serves both the (series x periods) matrix of the generator and the
    rows of :func:`expected_demand`, so the two can never disagree.
    """
    m = p["base_level"][s] * np.exp(p["trend"][s] * p["years"][t])
    m = m * (1.0 + p["season_amp"][s] * np.cos(2.0 * np.pi * (p["year_frac"][t] - p["season_peak"][s])))
    if p["freq"] == "D":
        m *= p["dow_profile"][s, p["weekday"][t]]
    m *= 1.0 + p["holiday_uplift"][s] * p["holiday_intensity"][t]
    age = (t - p["launch_period"][s]).astype(np.float64)
    m *= np.where(age >= 0, -np.expm1(-(np.maximum(age, 0.0) + 1.0) / p["ramp_periods"]), 0.0)
    m *= np.exp(p["temp_beta"][s] * (temp - p["temp_ref"][p["series_loc"][s]]))
    m *= (price / p["ref_price"][s]) ** p["elasticity"][s]
    m *= np.exp(-p["inflation_beta"][s] * (yoy - INFLATION_REF))
    promo = promo.astype(np.float64)
    m *= 1.0 + p["promo_uplift"][s] * promo
    m *= 1.0 - p["post_promo_dip"][s] * (prev_promo * (1.0 - promo))
    return m


def _yoy(cpi_ext: np.ndarray, lag: int) -> np.ndarray:
    """Year-over-year inflation on the history+future grid from CPI with a year of burn-in."""
    return cpi_ext[:, lag:] / cpi_ext[:, :-lag] - 1.0


# --------------------------------------------------------------------------- generator


def _check_args(n_skus: int, n_locations: int, periods: int, horizon: int, start: str) -> pd.Timestamp:
    """Validate the arguments, reporting every problem at once; returns the start date."""
    problems: list[Problem] = []

    def bad(name: str, value: object, msg: str, fix: str) -> None:
        problems.append(Problem("arguments", msg, fix, column=name, value=value, code="E110"))

    if not isinstance(n_skus, (int, np.integer)) or n_skus < 1:
        bad("n_skus", n_skus, "n_skus must be a positive whole number", "pass n_skus >= 1")
    if not isinstance(n_locations, (int, np.integer)) or not 1 <= n_locations <= 999:
        bad("n_locations", n_locations, "n_locations must be between 1 and 999", "pass 1..999 locations")
    if not isinstance(periods, (int, np.integer)) or periods < 8:
        bad("periods", periods, "periods must be a whole number of at least 8", "pass periods >= 8")
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        bad("horizon", horizon, "horizon must be a positive whole number", "pass horizon >= 1")
    ts = pd.Timestamp("2022-01-03")
    try:
        ts = pd.Timestamp(start)
        if pd.isna(ts):
            raise ValueError(start)
        ts = ts.normalize()
    except (ValueError, TypeError):
        bad("start", start, "start is not a date", "pass a date such as '2022-01-03'")
    if problems:
        raise InputError(f"generate_panel: {len(problems)} invalid argument(s); first: {problems[0].message}.",
                         problems, code="E110")
    return ts


def generate_panel(freq: str = "W", *, n_skus: int = 20, n_locations: int = 2, periods: int | None = None,
                   horizon: int | None = None, start: str = "2022-01-03", seed: int = 0,
                   holiday_country: str = "US") -> SyntheticPanel:
    """Generate a deterministic synthetic retail panel (see the module docstring for the model).

    Every SKU is sold in every location: ``n_skus * n_locations`` series with ``periods``
    history periods (defaults: D 1095, W 156, MS 60) and ``horizon`` future periods
    (D 28, W 12, MS 6). New SKUs have no sales rows before their launch.
    """
    tic = time.perf_counter()
    freq = normalize_freq(freq)
    P = _DEFAULT_PERIODS[freq] if periods is None else periods
    H = _DEFAULT_HORIZON[freq] if horizon is None else horizon
    start_ts = _check_args(n_skus, n_locations, P, H, start)
    P, H, n_skus, n_locations = int(P), int(H), int(n_skus), int(n_locations)
    rng = np.random.default_rng(seed)
    lag = _YOY_LAG[freq]
    ppy = periods_per_year(freq)
    dpp = days_per_period(freq)
    T = P + H

    # Grid: a year of burn-in before the history keeps year-over-year inflation defined.
    first = _grid(freq, start_ts, 1)[0]
    burn_start = {"D": first - pd.Timedelta(days=lag), "W": first - pd.Timedelta(weeks=lag),
                  "MS": first - pd.DateOffset(months=lag)}[freq]
    dates_ext = _grid(freq, burn_start, lag + T)
    dates = dates_ext[lag:]
    years, year_frac, weekday = _time_features(dates, freq)
    holiday_intensity = _holiday_intensity(dates, freq, holiday_country)

    # ---- locations: temperature, CPI, fuel
    L = n_locations
    locations = [f"LOC-{k + 1:0{max(2, len(str(L)))}d}" for k in range(L)]
    t_mean = rng.uniform(6.0, 20.0, L)
    t_amp = rng.uniform(7.0, 13.0, L)
    t_peak = (200.0 + rng.uniform(-8.0, 8.0, L)) / 365.25
    temp_normal = t_mean[:, None] + t_amp[:, None] * np.cos(2 * np.pi * (year_frac[None, :] - t_peak[:, None]))
    phi, sd = _ANOMALY[freq]
    anomaly = _ar1(rng, L, T, phi, sd)
    heat = np.zeros((L, T))
    lo, hi = _HEATWAVE_LEN[freq]
    summer = np.flatnonzero((year_frac[:P] > 0.42) & (year_frac[:P] < 0.68) & (np.arange(P) + lo <= P))
    n_waves = max(2, int(round(1.2 * P / ppy)))
    heat_waves: list[dict[str, Any]] = []
    if len(summer):
        for loc in range(L):  # a handful of events per location, not a per-row loop
            for s0 in rng.choice(summer, size=min(n_waves, len(summer)), replace=False):
                length = int(rng.integers(lo, hi + 1))
                deg = float(rng.uniform(5.0, 8.0))
                sl = slice(int(s0), min(int(s0) + length, P))
                heat[loc, sl] = np.maximum(heat[loc, sl], deg)
                heat_waves.append({"Location": locations[loc], "start": dates[int(s0)],
                                   "periods": sl.stop - sl.start, "degrees": round(deg, 1)})
    temperature = np.round(temp_normal + anomaly + heat, 1)

    # Inflation wanders smoothly between about 1 % and 8 % a year; regions differ slightly.
    y_ext = np.arange(lag + T) / ppy
    rate = (0.045 + 0.035 * np.sin(2 * np.pi * y_ext / rng.uniform(3.0, 4.5) + rng.uniform(0, 2 * np.pi))
            + 0.008 * np.sin(2 * np.pi * y_ext / rng.uniform(0.8, 1.5) + rng.uniform(0, 2 * np.pi)))
    rate = np.clip(rate, 0.008, 0.085)
    regional = rate[None, :] + rng.uniform(-0.004, 0.004, L)[:, None]
    log_cpi = np.cumsum(np.log1p(regional) / ppy, axis=1)
    cpi_ext = np.round(100.0 * rng.uniform(0.97, 1.03, L)[:, None] * np.exp(log_cpi - log_cpi[:, [lag]]), 3)
    yoy = _yoy(cpi_ext, lag)
    fuel_steps = rng.normal(0.0, 0.04 * np.sqrt(dpp / 7.0), T)
    fuel = np.round(np.maximum(1.5, rng.uniform(2.8, 3.4) + np.cumsum(fuel_steps)[None, :]
                               + rng.uniform(-0.15, 0.15, L)[:, None]), 3)

    # ---- SKUs
    width = max(4, len(str(n_skus)))
    skus = [f"SKU-{k + 1:0{width}d}" for k in range(n_skus)]
    pattern = np.repeat(np.arange(len(PATTERNS)), _pattern_counts(n_skus))[rng.permutation(n_skus)]
    n_weather = int(round(_WEATHER_SHARE * n_skus))
    weather = np.zeros(n_skus, dtype=bool)
    weather[rng.permutation(n_skus)[:n_weather]] = True
    category = np.where(weather, rng.integers(0, len(WEATHER_CATEGORIES), n_skus),
                        rng.integers(len(WEATHER_CATEGORIES), len(CATEGORIES), n_skus))
    sku_temp_beta = np.where(weather, rng.uniform(0.035, 0.08, n_skus), 0.0)
    sku_elasticity = rng.uniform(-2.5, -1.0, n_skus)
    sku_infl_beta = np.where(np.isin(category, [2]), rng.uniform(0.5, 2.0, n_skus), rng.uniform(1.5, 5.0, n_skus))
    sku_price = np.round(np.exp(rng.uniform(np.log(0.8), np.log(30.0), n_skus)), 2)
    sku_is = {name: pattern == k for k, name in enumerate(PATTERNS)}
    sku_trend = np.where(sku_is["trending"], rng.choice([-1.0, 1.0], n_skus, p=[0.25, 0.75])
                         * rng.uniform(0.12, 0.30, n_skus), rng.normal(0.0, 0.02, n_skus))
    sku_season_amp = np.where(sku_is["seasonal"], rng.uniform(0.25, 0.5, n_skus), rng.uniform(0.0, 0.06, n_skus))
    peaks = np.array([100.0, 190.0, 240.0, 350.0]) / 365.25  # spring, summer, back to school, Christmas
    sku_season_peak = np.where(sku_is["seasonal"], rng.choice(peaks, n_skus), rng.uniform(0, 1, n_skus))
    sku_launch = np.where(sku_is["new"], rng.integers(int(0.35 * P), max(int(0.75 * P), int(0.35 * P) + 1),
                                                      n_skus), _NOT_NEW)
    sku_intermittency = np.where(sku_is["intermittent"], rng.uniform(0.08, 0.35, n_skus), 1.0)
    sku_lead = rng.choice([3, 5, 7, 10, 14, 21, 28], n_skus)

    # ---- series = SKU-major (SKU, Location) pairs
    n = n_skus * L
    series_sku = np.repeat(np.arange(n_skus), L)
    series_loc = np.tile(np.arange(L), n_skus)
    loc_size = rng.uniform(0.6, 1.4, L)
    daily_level = np.exp(rng.uniform(np.log(3.0), np.log(80.0), n)) * loc_size[series_loc]
    size = rng.uniform(2.0, 8.0, n) * dpp ** 0.5  # intermittent: units per occurrence
    inter = sku_is["intermittent"][series_sku]
    intermittency = sku_intermittency[series_sku]
    base_level = np.where(inter, intermittency * size, daily_level * dpp)
    dow = _WEEKDAY_PROFILE[None, :] * np.exp(rng.normal(0.0, 0.05, (n, 7)))
    dow /= dow.mean(axis=1, keepdims=True)
    ref_price = np.round(sku_price[series_sku] * rng.uniform(0.95, 1.05, n), 2)
    passthrough = rng.uniform(0.6, 1.0, n)
    discount = np.round(rng.uniform(0.05, 0.20, n), 2)
    params: dict[str, Any] = {
        "freq": freq, "n_history": P, "horizon": H, "dates": dates, "yoy_lag": lag,
        "skus": skus, "locations": locations, "series_sku": series_sku, "series_loc": series_loc,
        "years": years, "year_frac": year_frac, "weekday": weekday, "holiday_intensity": holiday_intensity,
        "holiday_country": holiday_country, "seed": seed,
        "base_level": base_level, "trend": sku_trend[series_sku],
        "season_amp": sku_season_amp[series_sku], "season_peak": sku_season_peak[series_sku],
        "dow_profile": dow, "holiday_uplift": rng.uniform(0.1, 0.5, n),
        "launch_period": sku_launch[series_sku].astype(np.int64), "ramp_periods": _RAMP_PERIODS[freq],
        "temp_beta": sku_temp_beta[series_sku], "temp_ref": t_mean, "temp_normal": temp_normal,
        "temperature": temperature, "heat_waves": heat_waves,
        "ref_price": ref_price, "elasticity": sku_elasticity[series_sku], "price_passthrough": passthrough,
        "promo_discount": discount,
        "inflation_beta": sku_infl_beta[series_sku], "inflation_ref": INFLATION_REF, "inflation_rate": rate,
        "cpi": cpi_ext, "fuel_price": fuel, "fuel_beta": 0.0,
        "promo_uplift": rng.uniform(0.3, 1.0, n), "post_promo_dip": rng.uniform(0.10, 0.25, n),
        "intermittency": intermittency, "dispersion": rng.uniform(8.0, 30.0, n),
    }
    launch = params["launch_period"]

    # ---- promotions and prices over history + future (future = the plan)
    promo_lo, promo_hi = _PROMO_LEN[freq]
    promo = _episodes(rng, rng.uniform(0.05, 0.10, n), rng.integers(promo_lo, promo_hi + 1, n), T)
    promo &= np.arange(T)[None, :] >= launch[:, None]
    promo = promo.astype(np.int8)
    change = rng.random((n, T), dtype=np.float32) < np.float32(dpp / 120.0)  # a regular price change every ~4 months
    steps = np.ones((n, T), dtype=np.float32)
    idx = np.flatnonzero(change)
    steps.flat[idx] = rng.uniform(0.96, 1.07, len(idx)).astype(np.float32)
    del change, idx
    np.cumprod(steps, axis=1, out=steps)
    cpi_ratio = (cpi_ext[:, lag:] / cpi_ext[:, [lag]]).astype(np.float32)
    price = np.power(cpi_ratio[series_loc], passthrough[:, None].astype(np.float32))
    price *= steps
    del steps
    price *= ref_price[:, None].astype(np.float32)
    price *= 1.0 - discount[:, None].astype(np.float32) * promo
    price = np.maximum(np.round(price, 2), 0.01).astype(np.float32)
    params["promo"] = promo
    params["price"] = price

    # ---- expected and sampled demand
    prev = np.zeros((n, T), dtype=np.float32)
    prev[:, 1:] = promo[:, :-1]
    s_ix = np.arange(n)[:, None]
    t_ix = np.arange(T)[None, :]
    mu = _expected(params, s_ix, t_ix, temperature.astype(np.float32)[series_loc],
                   yoy.astype(np.float32)[series_loc], price, promo, prev)
    del prev
    mu = mu.astype(np.float32)
    lam = np.empty((n, T), dtype=np.float32)
    if (~inter).any():
        k = params["dispersion"][~inter].astype(np.float32)[:, None]
        lam[~inter] = rng.standard_gamma(np.broadcast_to(k, (int((~inter).sum()), T)), dtype=np.float32) / k
    if inter.any():
        q = intermittency[inter].astype(np.float32)[:, None]
        lam[inter] = (rng.random((int(inter.sum()), T), dtype=np.float32) < q) / q
    lam *= mu
    demand_mat = rng.poisson(lam).astype(np.int32)
    del lam

    # ---- stock-outs (history only) and on-hand
    slo, shi = _STOCKOUT_LEN[freq]
    oos = _episodes(rng, rng.uniform(0.01, 0.05, n), rng.integers(slo, shi + 1, n), P)
    avail = np.floor(rng.random((n, P), dtype=np.float32) * np.float32(0.6) * demand_mat[:, :P]).astype(np.int32)
    qty = np.where(oos, np.minimum(demand_mat[:, :P], avail), demand_mat[:, :P])
    del avail
    cycle = np.maximum(1, np.round(rng.uniform(7.0, 21.0, n) / dpp)).astype(np.int64)
    phase = (np.arange(P)[None, :] + rng.integers(0, 1000, n)[:, None]) % cycle[:, None]
    cover = (rng.uniform(0.5, 1.5, n)[:, None] + (cycle[:, None] - phase)).astype(np.float32)
    del phase
    cover *= rng.uniform(0.8, 1.2, (n, P)).astype(np.float32)
    onhand = (np.ceil(mu[:, :P] * cover) + 1).astype(np.int32)
    del cover
    onhand[oos] = 0

    # ---- frames
    sku_cat = pd.CategoricalDtype(skus)
    loc_cat = pd.CategoricalDtype(locations)
    keep = (np.arange(P)[None, :] >= launch[:, None]).ravel()
    d_hist = dates[:P].values
    date_col = np.tile(d_hist, n)[keep]
    sku_col = pd.Categorical.from_codes(np.repeat(series_sku.astype(np.int32), P)[keep], dtype=sku_cat)
    loc_col = pd.Categorical.from_codes(np.repeat(series_loc.astype(np.int32), P)[keep], dtype=loc_cat)
    sales = pd.DataFrame({
        "Date": date_col, "SKU": sku_col, "Location": loc_col,
        "Qty": qty.ravel()[keep], "Price": price[:, :P].ravel()[keep],
        "Promo": promo[:, :P].ravel()[keep], "OnHand": onhand.ravel()[keep],
    })
    demand = pd.DataFrame({"Date": date_col, "SKU": sku_col, "Location": loc_col,
                           "Demand": demand_mat[:, :P].ravel()[keep]})
    del date_col, qty
    future = pd.DataFrame({
        "Date": np.tile(dates[P:].values, n),
        "SKU": pd.Categorical.from_codes(np.repeat(series_sku.astype(np.int32), H), dtype=sku_cat),
        "Location": pd.Categorical.from_codes(np.repeat(series_loc.astype(np.int32), H), dtype=loc_cat),
        "Qty": demand_mat[:, P:].ravel(), "Price": price[:, P:].ravel(), "Promo": promo[:, P:].ravel(),
    })
    drivers = pd.DataFrame({
        "Date": np.tile(dates.values, L),
        "Location": np.repeat(np.asarray(locations, dtype=object), T),
        "Temperature": temperature.ravel(), "CPI": cpi_ext[:, lag:].ravel(), "FuelPrice": fuel.ravel(),
    })

    launch_date = np.where(launch >= 0, dates.values[np.clip(launch, 0, T - 1)], np.datetime64("NaT"))
    sku_names = np.asarray(skus, dtype=object)[series_sku]
    loc_names = np.asarray(locations, dtype=object)[series_loc]
    truth = pd.DataFrame({
        "SKU": sku_names, "Location": loc_names, "Category": np.asarray(CATEGORIES)[category][series_sku],
        "pattern": np.asarray(PATTERNS)[pattern][series_sku], "base_level": base_level,
        "temp_beta": params["temp_beta"], "temp_ref": t_mean[series_loc], "elasticity": params["elasticity"],
        "ref_price": ref_price, "price_passthrough": passthrough, "promo_discount": discount,
        "inflation_beta": params["inflation_beta"], "promo_uplift": params["promo_uplift"],
        "post_promo_dip": params["post_promo_dip"], "holiday_uplift": params["holiday_uplift"],
        "trend": params["trend"], "season_amp": params["season_amp"],
        "season_peak_doy": np.round(params["season_peak"] * 365.25, 1),
        "intermittency": intermittency, "dispersion": params["dispersion"], "fuel_beta": 0.0,
        "launch_date": pd.to_datetime(launch_date), "weather_sensitive": weather[series_sku],
    })
    items = _items(rng, freq, truth, sku_lead[series_sku], base_level, ref_price, onhand[:, -1], dpp)

    _log.debug("generate_panel %s: %d series x %d periods in %.2fs", freq, n, T, time.perf_counter() - tic)
    return SyntheticPanel(sales=sales, drivers=drivers, items=items, future=future, demand=demand,
                          truth=truth, freq=freq, params=params)


def _items(rng: np.random.Generator, freq: str, truth: pd.DataFrame, lead: np.ndarray, base_level: np.ndarray,
           ref_price: np.ndarray, onhand: np.ndarray, dpp: float) -> pd.DataFrame:
    """Plausible master data: service level by ABC value class, case packs, lead times."""
    n = len(truth)
    value = base_level * ref_price
    rank = np.empty(n)
    rank[np.argsort(-value, kind="stable")] = np.arange(n) / max(n, 1)
    abc = np.where(rank < 0.2, 0, np.where(rank < 0.5, 1, 2))
    strategic = rng.random(n) < np.array([0.3, 0.1, 0.03])[abc]
    service = np.where(strategic, 0.99, np.array([0.98, 0.95, 0.90])[abc])
    lead_days = lead + rng.integers(0, 4, n)
    multiple = rng.choice([1, 6, 12, 24], n)
    daily = base_level / dpp
    on_order = np.where(rng.random(n) < 0.4, np.round(daily * lead_days * rng.uniform(0.5, 1.5, n)), 0.0)
    return pd.DataFrame({
        "SKU": truth["SKU"].to_numpy(), "Location": truth["Location"].to_numpy(),
        "Category": truth["Category"].to_numpy(),
        "LeadTimeDays": lead_days.astype(np.int64),
        "LeadTimeStdDays": np.round(lead_days * rng.uniform(0.1, 0.35, n), 1),
        "ServiceLevel": service,
        "UnitCost": np.round(ref_price * rng.uniform(0.45, 0.75, n), 2),
        "MOQ": (multiple * rng.choice([1, 2, 4], n)).astype(np.int64),
        "OrderMultiple": multiple.astype(np.int64),
        "ReviewPeriodDays": rng.choice(_REVIEW_DAYS[freq], n).astype(np.int64),
        "OnHand": onhand.astype(np.int64),
        "OnOrder": on_order.astype(np.int64),
        "Strategic": strategic,
        # one supplier per SKU (the same at every location): what a supplier-delay scenario targets
        "Supplier": np.asarray(SUPPLIERS)[_supplier_of(truth["SKU"].to_numpy())],
    })


SUPPLIERS = ("Supplier A", "Supplier B", "Supplier C")


def _supplier_of(skus: np.ndarray) -> np.ndarray:
    """A fixed supplier per SKU code (SKU-0001 -> A, SKU-0002 -> B, ...)."""
    num = np.array([int("".join(ch for ch in str(s) if ch.isdigit()) or 0) for s in skus])
    return (num - 1) % len(SUPPLIERS)


# --------------------------------------------------------------------------- expected demand


def _codes(col: pd.Series, names: list[str]) -> np.ndarray:
    """Positions of ``col``'s values in ``names`` (-1 if unknown), cheap for categoricals."""
    ix = pd.Index(names)
    if isinstance(col.dtype, pd.CategoricalDtype):
        cat_pos = ix.get_indexer(col.cat.categories.astype(str))
        codes = col.cat.codes.to_numpy()
        return np.where(codes >= 0, cat_pos[np.maximum(codes, 0)], -1)
    return ix.get_indexer(col.astype(str))


def _bad_rows(problems: list[Problem], table: str, frame: pd.DataFrame, bad: np.ndarray, column: str,
              message: str, fix: str, code: str) -> None:
    for pos in np.flatnonzero(bad):
        problems.append(Problem(table, message, fix, row=int(pos) + 2, column=column,
                                value=frame[column].iloc[pos] if column in frame else None, code=code))


def expected_demand(panel: SyntheticPanel, future: pd.DataFrame | None = None,
                    drivers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Noise-free expected demand (Date, SKU, Location, Demand) for the rows of ``future``.

    ``future`` defaults to ``panel.future``; any rows on the panel's grid work (history too).
    Its Price and Promo columns, when present, replace the panel's plan (a promoted row also
    changes the post-promo dip of the next period); prices are taken as given, not derived
    from CPI. ``drivers`` rows (Date, Location, Temperature and/or CPI) replace the panel's
    driver values at those dates, e.g. a +5 C heatwave or a faster-rising CPI.
    """
    p = panel.params
    rows = panel.future if future is None else future
    dates = p["dates"]
    problems: list[Problem] = []
    for col in ("Date", "SKU", "Location"):
        if col not in rows.columns:
            problems.append(Problem("Future", f"column {col} is missing", f"add a {col} column",
                                    column=col, code="E101"))
    if problems:
        raise InputError("expected_demand: the future rows lack key columns.", problems, code="E101")

    t = dates.get_indexer(pd.DatetimeIndex(rows["Date"]))
    sku_i = _codes(rows["SKU"], p["skus"])
    loc_i = _codes(rows["Location"], p["locations"])
    _bad_rows(problems, "Future", rows, t < 0, "Date", "date is not on the panel's grid",
              "use dates from panel.sales or panel.future", "E110")
    _bad_rows(problems, "Future", rows, sku_i < 0, "SKU", "unknown SKU", "use a SKU of the panel", "E106")
    _bad_rows(problems, "Future", rows, loc_i < 0, "Location", "unknown location",
              "use a location of the panel", "E106")
    promo_col = rows["Promo"].to_numpy() if "Promo" in rows else None
    price_col = rows["Price"].to_numpy(dtype=np.float64) if "Price" in rows else None
    if promo_col is not None:
        _bad_rows(problems, "Future", rows, ~np.isin(promo_col, [0, 1]), "Promo", "Promo must be 0 or 1",
                  "write 1 for promoted periods and 0 otherwise", "E102")
    if price_col is not None:
        _bad_rows(problems, "Future", rows, ~(price_col > 0), "Price", "Price must be a positive number",
                  "enter the planned shelf price", "E102")

    temp = p["temperature"]
    cpi = p["cpi"]
    if drivers is not None:
        temp, cpi = temp.copy(), cpi.copy()
        dt = dates.get_indexer(pd.DatetimeIndex(drivers["Date"]))
        dl = _codes(drivers["Location"], p["locations"])
        _bad_rows(problems, "Drivers", drivers, dt < 0, "Date", "date is not on the panel's grid",
                  "use dates from panel.drivers", "E110")
        _bad_rows(problems, "Drivers", drivers, dl < 0, "Location", "unknown location",
                  "use a location of the panel", "E106")
        ok = (dt >= 0) & (dl >= 0)
        for col, target, offset in (("Temperature", temp, 0), ("CPI", cpi, p["yoy_lag"])):
            if col not in drivers:
                continue
            vals = pd.to_numeric(drivers[col], errors="coerce").to_numpy(dtype=np.float64)
            _bad_rows(problems, "Drivers", drivers, np.isnan(vals), col, f"{col} is missing or not a number",
                      f"enter a number for {col}", "E107")
            good = ok & ~np.isnan(vals)
            target[dl[good], dt[good] + offset] = vals[good]
    if problems:
        raise InputError(f"expected_demand: {len(problems)} problem(s) in the rows given; "
                         f"first: {problems[0].where()}: {problems[0].message}.", problems)

    n_loc = len(p["locations"])
    s = sku_i * n_loc + loc_i
    promo_mat = p["promo"]
    if promo_col is not None:
        promo_mat = promo_mat.copy()
        promo_mat[s, t] = promo_col.astype(np.int8)
    promo = promo_mat[s, t]
    prev = np.where(t > 0, promo_mat[s, np.maximum(t - 1, 0)], 0).astype(np.float64)
    price = price_col if price_col is not None else p["price"][s, t].astype(np.float64)
    loc = p["series_loc"][s]
    yoy = _yoy(cpi, p["yoy_lag"])
    mu = _expected(p, s, t, temp[loc, t], yoy[loc, t], price, promo, prev)
    return pd.DataFrame({"Date": rows["Date"].to_numpy(), "SKU": rows["SKU"].to_numpy(),
                         "Location": rows["Location"].to_numpy(), "Demand": mu}, index=rows.index)

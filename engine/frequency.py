"""Planning frequencies: daily ``D``, weekly ``W`` and month-start ``MS``.

Dates are mapped to an integer *period number* so lags and horizons are plain
integer arithmetic. Weekly periods keep the weekday of the data (a week ending on
Friday stays a Friday: pandas ``W-FRI``); monthly data is normalised to the first
day of the month.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError, Problem

__all__ = [
    "FREQS",
    "infer_freq",
    "normalize_freq",
    "season_length",
    "to_period",
    "from_period",
    "period_alias",
    "periods_per_year",
    "days_per_period",
]

FREQS = ("D", "W", "MS")
_EPOCH = np.datetime64("1970-01-01", "D")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def normalize_freq(freq: str) -> str:
    """Map user spellings (``'daily'``, ``'W-FRI'``, ``'M'``, ``'month'``) to D/W/MS."""
    f = str(freq).strip().upper()
    if f in ("D", "DAY", "DAILY", "B"):
        return "D"
    if f in ("W", "WEEK", "WEEKLY") or f.startswith("W-"):
        return "W"
    if f in ("MS", "M", "ME", "MONTH", "MONTHLY") or f.startswith("MS"):
        return "MS"
    raise InputError(
        f"Frequency {freq!r} is not supported; use D (daily), W (weekly) or MS (monthly).",
        [Problem("Settings", f"unsupported frequency {freq!r}", "set Frequency to D, W or MS",
                 column="Frequency", value=freq, code="E108")],
        code="E108",
    )


def infer_freq(dates: pd.Series | pd.DatetimeIndex, table: str = "Sales") -> str:
    """Infer D, W or MS from the distinct dates (median spacing; robust to gaps)."""
    uniq = np.unique(pd.DatetimeIndex(dates).dropna().values.astype("datetime64[D]"))
    if len(uniq) < 2:
        raise InputError(
            f"Cannot infer the frequency of table {table}: it has fewer than two distinct dates.",
            [Problem(table, "fewer than two distinct dates", "add more history or set Frequency in Settings",
                     column="Date", code="E108")],
            code="E108",
        )
    step = float(np.median(np.diff(uniq).astype(np.int64)))
    if step <= 1.5:
        return "D"
    if 6 <= step <= 8:
        return "W"
    if 27 <= step <= 32:
        return "MS"
    raise InputError(
        f"Cannot infer the frequency of table {table}: dates are typically {step:g} days apart. "
        "Plancell plans daily, weekly or monthly.",
        [Problem(table, f"dates are typically {step:g} days apart", "use daily, weekly or monthly dates, "
                 "or set Frequency in Settings", column="Date", code="E108")],
        code="E108",
    )


def season_length(freq: str) -> int:
    """The main seasonal period used by seasonal naive and MASE: 7, 52 or 12."""
    return {"D": 7, "W": 52, "MS": 12}[normalize_freq(freq)]


def periods_per_year(freq: str) -> float:
    return {"D": 365.25, "W": 365.25 / 7, "MS": 12.0}[normalize_freq(freq)]


def days_per_period(freq: str) -> float:
    """Average number of days in one period (for lead-time conversions)."""
    return {"D": 1.0, "W": 7.0, "MS": 365.25 / 12}[normalize_freq(freq)]


def week_anchor(dates: pd.Series | pd.DatetimeIndex) -> int:
    """Most common weekday (0=Mon) of weekly dates."""
    wd = pd.DatetimeIndex(dates).dropna().weekday
    return int(np.bincount(np.asarray(wd), minlength=7).argmax()) if len(wd) else 6


def period_alias(freq: str, anchor: int | None = None) -> str:
    """The pandas alias for date ranges: ``D``, ``W-FRI``, ``MS``."""
    f = normalize_freq(freq)
    if f == "W":
        return f"W-{_WEEKDAYS[6 if anchor is None else anchor]}"
    return f


def to_period(dates: pd.Series | pd.DatetimeIndex | np.ndarray, freq: str) -> np.ndarray:
    """Integer period numbers. Weekly: dates are floored to their 7-day slot, so any
    weekday anchor works as long as the data uses one anchor consistently."""
    f = normalize_freq(freq)
    d = pd.DatetimeIndex(dates).values.astype("datetime64[D]")
    days = (d - _EPOCH).astype(np.int64)
    if f == "D":
        return days
    if f == "W":
        return np.floor_divide(days, 7)
    ym = d.astype("datetime64[M]").astype(np.int64)
    return ym


def from_period(periods: np.ndarray, freq: str, anchor: int | None = None) -> pd.DatetimeIndex:
    """Inverse of :func:`to_period`. ``anchor`` is the weekday (0=Mon) weekly dates fall on."""
    f = normalize_freq(freq)
    p = np.asarray(periods, dtype=np.int64)
    if f == "D":
        return pd.DatetimeIndex((_EPOCH + p.astype("timedelta64[D]")).astype("datetime64[ns]"))
    if f == "W":
        start = _EPOCH + (p * 7).astype("timedelta64[D]")  # 1970-01-01 is a Thursday (weekday 3)
        a = 6 if anchor is None else anchor
        shift = (a - 3) % 7
        return pd.DatetimeIndex((start + np.int64(shift).astype("timedelta64[D]")).astype("datetime64[ns]"))
    return pd.DatetimeIndex(p.astype("datetime64[M]").astype("datetime64[ns]"))

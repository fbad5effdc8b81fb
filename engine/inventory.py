"""Inventory maths: safety stock, reorder points, order-up-to levels, order quantities, KPIs.

Pure functions over numbers or numpy arrays (they broadcast), so one call prices a whole
catalogue. Units are explicit:

* demand figures (``mean_demand``, ``sd_demand``) are *units per period*;
* durations (``lead_time``, ``sd_lead_time``, ``review_period``) are in *the same period*
  when given as plain numbers. A duration with a unit (``Duration(14, "D")`` or the text
  ``"14 days"``) is converted to the demand period, which must then be stated with
  ``period="D"|"W"|"M"``: units are converted, never mixed silently.

References: Silver, Pyke & Thomas, *Inventory and Production Management in Supply Chains*
(4th ed., 2017), ch. 6-7 (safety stock, normal loss function, (s, Q), (s, S), (R, S));
Chopra & Meindl, *Supply Chain Management* (6th ed.), ch. 12 (safety stock with
lead-time variability); Harris (1913) for the EOQ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .errors import InputError, Problem

__all__ = [
    "PERIOD_DAYS",
    "Duration",
    "PolicyLevels",
    "period_unit",
    "to_periods",
    "z_value",
    "normal_loss",
    "normal_loss_inverse",
    "safety_stock",
    "reorder_point",
    "continuous_review_sq",
    "continuous_review_ss",
    "periodic_review_rs",
    "economic_order_quantity",
    "round_to_pack",
    "suggested_order",
    "days_of_coverage",
    "inventory_turnover",
    "projected_fill_rate",
    "stockout_risk",
    "expected_shortage",
    "excess_stock",
    "inventory_value",
]

#: Days per period unit. A month is an average Gregorian month (365.25 / 12 days).
PERIOD_DAYS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 365.25 / 12}

_UNIT_WORDS = {
    "d": "D", "day": "D", "days": "D", "daily": "D",
    "w": "W", "wk": "W", "wks": "W", "week": "W", "weeks": "W", "weekly": "W",
    "m": "M", "ms": "M", "mo": "M", "mon": "M", "month": "M", "months": "M", "monthly": "M",
}
_DURATION_TEXT = re.compile(r"^\s*([0-9]*[.,]?[0-9]+)\s*([A-Za-z]+)\s*$")

Number = float | np.ndarray


def _arg_problem(name: str, value: Any, message: str, fix: str) -> InputError:
    shown = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return InputError(
        f"{name} {message}. Fix: {fix}",
        [Problem("arguments", message, fix, column=name, value=shown, code="E110")],
        code="E110",
    )


def period_unit(unit: str) -> str:
    """Normalise a period unit: ``'D'``, ``'W'``, ``'M'`` (``'MS'``, ``'weeks'`` ... accepted)."""
    key = str(unit).strip().lower()
    if key.upper() in PERIOD_DAYS:
        return key.upper()
    if key in _UNIT_WORDS:
        return _UNIT_WORDS[key]
    raise _arg_problem("period", unit, f"{unit!r} is not a period unit",
                       "use D (days), W (weeks) or M (months)")


@dataclass(frozen=True)
class Duration:
    """A length of time with its unit, e.g. ``Duration(14, "D")``."""

    value: float
    unit: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", period_unit(self.unit))

    def days(self) -> float:
        return float(self.value) * PERIOD_DAYS[self.unit]

    def in_unit(self, unit: str) -> float:
        """This duration expressed in ``unit`` periods (14 days -> 2.0 weeks)."""
        return self.days() / PERIOD_DAYS[period_unit(unit)]

    @classmethod
    def parse(cls, text: str) -> "Duration":
        """``"14 days"``, ``"2w"``, ``"1.5 weeks"``, ``"3 months"`` -> Duration."""
        m = _DURATION_TEXT.match(str(text))
        if not m or m.group(2).lower() not in _UNIT_WORDS:
            raise _arg_problem("duration", text, f"{text!r} is not a duration",
                               "write a number, or a number and a unit such as '14 days' or '2 weeks'")
        return cls(float(m.group(1).replace(",", ".")), _UNIT_WORDS[m.group(2).lower()])


def to_periods(value: Any, *, name: str, period: str | None) -> Number:
    """A duration argument in demand periods.

    Plain numbers are already in the demand period. A :class:`Duration` or a text such as
    ``"14 days"`` is converted to ``period``; when ``period`` is not given the units would
    be mixed silently, so that is refused.
    """
    if isinstance(value, str):
        value = Duration.parse(value)
    if isinstance(value, Duration):
        if period is None:
            raise _arg_problem(
                name, f"{value.value:g} {value.unit}",
                f"is given in {_UNIT_NAME[value.unit]} but the demand period is not stated (mixed units)",
                "give it as a plain number in the same period as the demand, or state the demand "
                "period (period='D', 'W' or 'M')")
        return value.in_unit(period)
    arr = np.asarray(value, dtype=float)
    if np.any(np.isnan(arr)):
        raise _arg_problem(name, value, "is blank or not a number", "enter a number of periods (0 or more)")
    if np.any(arr < 0):
        raise _arg_problem(name, _first(arr[arr < 0]), "is negative", "enter 0 or more periods")
    return float(arr) if arr.ndim == 0 else arr


_UNIT_NAME = {"D": "days", "W": "weeks", "M": "months"}


def _first(arr: np.ndarray) -> float:
    return float(np.ravel(arr)[0])


def _nonneg(value: Any, name: str) -> Number:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _arg_problem(name, value, "is not a number", "enter a number (0 or more)") from None
    if np.any(np.isnan(arr)):
        raise _arg_problem(name, value, "is blank or not a number", "enter a number (0 or more)")
    if np.any(arr < 0):
        raise _arg_problem(name, _first(arr[arr < 0]), "is negative", "enter 0 or more")
    return float(arr) if arr.ndim == 0 else arr


def _service(value: Any, name: str = "service_level") -> Number:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _arg_problem(name, value, "is not a number",
                           "give a probability between 0 and 1, e.g. 0.95 for 95%") from None
    bad = ~((arr > 0) & (arr < 1))  # also catches NaN
    if np.any(bad):
        v = _first(arr[bad]) if arr.ndim else float(arr)
        hint = f" (did you mean {v / 100:g}?)" if 50 <= v < 100 else ""
        raise _arg_problem(name, v, f"must be strictly between 0 and 1{hint}",
                           "give a probability such as 0.95 for 95%")
    return float(arr) if arr.ndim == 0 else arr


# --------------------------------------------------------------------------- normal helpers


def z_value(service_level: Any) -> Number:
    """Safety factor z = Phi^-1(CSL): 0.90 -> 1.2816, 0.95 -> 1.6449, 0.98 -> 2.0537."""
    return stats.norm.ppf(_service(service_level))


def normal_loss(k: Any) -> Number:
    """Standard normal loss function G(k) = phi(k) - k * (1 - Phi(k)) = E[(Z - k)+].

    Expected units short per replenishment cycle are ``sigma * G(k)`` (Silver, Pyke &
    Thomas 2017, eq. 6.13 / appendix on the unit normal loss integral).
    """
    k = np.asarray(k, dtype=float)
    out = stats.norm.pdf(k) - k * stats.norm.sf(k)
    return float(out) if out.ndim == 0 else out


def normal_loss_inverse(g: Any) -> Number:
    """k with G(k) = g (g > 0), by bisection on the strictly decreasing G.

    Vectorised bisection on [-g - 1, 40], to float precision for every element.
    """
    g = np.asarray(g, dtype=float)
    # G(k) > -k, so k > -g; and G(40) is below any float we meet.
    lo = -np.maximum(g, 0.0) - 1.0
    hi = np.full(g.shape, 40.0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = normal_loss(mid) > g  # G too big -> k must grow
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    out = 0.5 * (lo + hi)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- safety stock


def _sigma_protection(sd_demand: Number, mean_demand: Number, t: Number, sd_t: Number) -> Number:
    """sigma over a protection interval of ``t`` periods with sd ``sd_t``:
    sqrt(t * sd_d^2 + d^2 * sd_t^2) (Chopra & Meindl, eq. 12.9)."""
    return np.sqrt(t * np.square(sd_demand) + np.square(mean_demand) * np.square(sd_t))


def safety_stock(
    mean_demand: Any,
    sd_demand: Any,
    *,
    lead_time: Any,
    sd_lead_time: Any = 0.0,
    service_level: Any = 0.95,
    target: str = "csl",
    order_qty: Any = None,
    review_period: Any = 0.0,
    period: str | None = None,
) -> Number:
    """Safety stock in units.

    Cycle service level (``target="csl"``)::

        SS = z * sqrt(T * sd_d^2 + d^2 * sd_L^2),   z = Phi^-1(CSL),  T = L + R

    Fill rate (``target="fill_rate"``, beta = ``service_level``): the k that makes the
    expected shortage per cycle equal to the allowed one, sigma_T * G(k) = (1 - beta) * Q,
    then SS = k * sigma_T. ``Q`` is ``order_qty`` or, for periodic review, the mean demand
    per review period d * R. The result can be negative (the order quantity alone already
    gives the fill rate): it is returned as is; :func:`reorder_point` floors it at zero.

    Units: ``mean_demand``, ``sd_demand`` in units per period; ``lead_time``,
    ``sd_lead_time``, ``review_period`` in periods (or durations with units, converted to
    ``period``). The review period R is added to the protection interval (periodic review).
    With no variability at all (sigma = 0) the safety stock is 0 for either target; the
    fill-rate answer is continuous and non-decreasing in the risk for any sigma > 0.
    Worked example: d = 2,500/week, sd 500, L = 2 weeks, CSL 90 % -> 906 units.
    References: Silver, Pyke & Thomas (2017) sections 6.7-6.9, 7.2; Chopra & Meindl ch. 12.
    """
    d = _nonneg(mean_demand, "mean_demand")
    sd = _nonneg(sd_demand, "sd_demand")
    lt = to_periods(lead_time, name="lead_time", period=period)
    sd_lt = to_periods(sd_lead_time, name="sd_lead_time", period=period)
    r = to_periods(review_period, name="review_period", period=period)
    p = _service(service_level)
    sigma = _sigma_protection(sd, d, np.asarray(lt) + np.asarray(r), sd_lt)
    kind = _target(target)
    if kind == "csl":
        out = stats.norm.ppf(p) * sigma
    else:
        q = _cycle_qty(order_qty, d, r)
        allowed = (1.0 - p) * q
        with np.errstate(divide="ignore", invalid="ignore"):
            k = normal_loss_inverse(np.where(sigma > 0, allowed / np.where(sigma > 0, sigma, 1.0), 1.0))
        out = np.where(sigma > 0, k * sigma, 0.0)
    out = np.asarray(out, dtype=float)
    return float(out) if out.ndim == 0 else out


def _target(target: str) -> str:
    t = str(target).strip().lower().replace("-", "_").replace(" ", "_")
    if t in ("csl", "cycle_service_level", "cycle", "alpha", "type1"):
        return "csl"
    if t in ("fill_rate", "fillrate", "fill", "beta", "type2"):
        return "fill_rate"
    raise _arg_problem("target", target, "is not a service target", 'use "csl" or "fill_rate"')


def _cycle_qty(order_qty: Any, d: Number, r: Number) -> Number:
    if order_qty is None or (np.ndim(order_qty) == 0 and _is_blank(order_qty)):
        rq = np.asarray(d) * np.asarray(r)
        if np.all(rq > 0):
            return rq
        raise _arg_problem("order_qty", order_qty, "is needed for a fill-rate target",
                           "give the order quantity in units (the fill rate depends on it), "
                           "or a review period so the quantity per review can be used")
    q = _nonneg(order_qty, "order_qty")
    if np.any(np.asarray(q) <= 0):
        raise _arg_problem("order_qty", order_qty, "must be more than 0 for a fill-rate target",
                           "give the order quantity in units")
    return q


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def reorder_point(
    mean_demand: Any,
    sd_demand: Any,
    *,
    lead_time: Any,
    sd_lead_time: Any = 0.0,
    service_level: Any = 0.95,
    target: str = "csl",
    order_qty: Any = None,
    review_period: Any = 0.0,
    period: str | None = None,
) -> Number:
    """Reorder point s = d * T + max(SS, 0) in units, T = L + R periods.

    A negative fill-rate safety stock is floored at zero here: ordering below the mean
    demand over the protection interval would plan stock-outs; :func:`continuous_review_sq`
    and friends report the floor as a flag. Example: d = 2,500/week, sd 500, L = 2 weeks,
    CSL 90 % -> 5,906 units. Reference: Silver, Pyke & Thomas (2017) section 6.7.
    """
    ss = safety_stock(mean_demand, sd_demand, lead_time=lead_time, sd_lead_time=sd_lead_time,
                      service_level=service_level, target=target, order_qty=order_qty,
                      review_period=review_period, period=period)
    t = np.asarray(to_periods(lead_time, name="lead_time", period=period)) + np.asarray(
        to_periods(review_period, name="review_period", period=period))
    out = np.asarray(mean_demand, dtype=float) * t + np.maximum(ss, 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class PolicyLevels:
    """An inventory policy's levels, in units, with how they were obtained."""

    policy: str                     # "(s, Q)", "(s, S)" or "(R, S)"
    safety_stock: float             # used in the levels (>= 0)
    safety_stock_raw: float         # as computed; negative for some fill-rate targets
    reorder_point: float | None     # s
    order_up_to: float | None       # S
    order_qty: float | None         # Q
    protection_periods: float       # L (+ R)
    demand_over_protection: float   # d * (L + R)
    sd_over_protection: float       # sigma over L (+ R)
    flags: tuple[str, ...] = field(default_factory=tuple)


def _levels(policy: str, mean_demand: float, sd_demand: float, *, lead_time: Any, sd_lead_time: Any,
            service_level: Any, target: str, order_qty: Any, review_period: Any,
            period: str | None) -> tuple[float, float, float, float, tuple[str, ...]]:
    lt = float(to_periods(lead_time, name="lead_time", period=period))
    r = float(to_periods(review_period, name="review_period", period=period))
    sd_lt = float(to_periods(sd_lead_time, name="sd_lead_time", period=period))
    raw = float(safety_stock(mean_demand, sd_demand, lead_time=lt, sd_lead_time=sd_lt,
                             service_level=service_level, target=target, order_qty=order_qty,
                             review_period=r))
    flags: tuple[str, ...] = ()
    if raw < 0:
        flags = (f"fill-rate safety stock is negative ({raw:,.0f}): the order quantity alone meets the "
                 "target, safety stock set to 0",)
    sigma = float(_sigma_protection(float(sd_demand), float(mean_demand), lt + r, sd_lt))
    return max(raw, 0.0), raw, (lt + r), sigma, flags


def continuous_review_sq(
    mean_demand: float,
    sd_demand: float,
    *,
    lead_time: Any,
    order_qty: float,
    sd_lead_time: Any = 0.0,
    service_level: float = 0.95,
    target: str = "csl",
    period: str | None = None,
) -> PolicyLevels:
    """Continuous review (s, Q): when the inventory position falls to s, order Q.

    s = d * L + SS(L); Q given (e.g. the EOQ rounded to pack rules). For a fill-rate target
    the expected shortage per cycle sigma_L * G(k) equals (1 - beta) * Q.
    Units: demand per period, lead time in periods (or durations converted to ``period``).
    Reference: Silver, Pyke & Thomas (2017) section 6.7 (B1, P2 criteria).
    """
    q = float(_nonneg(order_qty, "order_qty"))
    ss, raw, t, sigma, flags = _levels("(s, Q)", mean_demand, sd_demand, lead_time=lead_time,
                                       sd_lead_time=sd_lead_time, service_level=service_level,
                                       target=target, order_qty=q, review_period=0.0, period=period)
    s = float(mean_demand) * t + ss
    return PolicyLevels("(s, Q)", ss, raw, s, None, q, t, float(mean_demand) * t, sigma, flags)


def continuous_review_ss(
    mean_demand: float,
    sd_demand: float,
    *,
    lead_time: Any,
    order_qty: float,
    sd_lead_time: Any = 0.0,
    service_level: float = 0.95,
    target: str = "csl",
    period: str | None = None,
) -> PolicyLevels:
    """Continuous review (s, S): when the position falls to s, order up to S = s + Q.

    s as in (s, Q); S - s is the order quantity (EOQ-like). Undershoot of s is ignored
    (unit-sized demand), the usual approximation. Reference: Silver, Pyke & Thomas (2017)
    section 7.4.
    """
    sq = continuous_review_sq(mean_demand, sd_demand, lead_time=lead_time, order_qty=order_qty,
                              sd_lead_time=sd_lead_time, service_level=service_level, target=target,
                              period=period)
    return PolicyLevels("(s, S)", sq.safety_stock, sq.safety_stock_raw, sq.reorder_point,
                        sq.reorder_point + sq.order_qty, sq.order_qty, sq.protection_periods,
                        sq.demand_over_protection, sq.sd_over_protection, sq.flags)


def periodic_review_rs(
    mean_demand: float,
    sd_demand: float,
    *,
    lead_time: Any,
    review_period: Any,
    sd_lead_time: Any = 0.0,
    service_level: float = 0.95,
    target: str = "csl",
    period: str | None = None,
) -> PolicyLevels:
    """Periodic review (R, S): every R periods order up to S = d * (R + L) + SS(R + L).

    The protection interval is the review period plus the lead time. For a fill-rate target
    the quantity per cycle is the mean demand per review period d * R.
    Reference: Silver, Pyke & Thomas (2017) section 7.2 (eq. 7.5).
    """
    ss, raw, t, sigma, flags = _levels("(R, S)", mean_demand, sd_demand, lead_time=lead_time,
                                       sd_lead_time=sd_lead_time, service_level=service_level,
                                       target=target, order_qty=None, review_period=review_period,
                                       period=period)
    big_s = float(mean_demand) * t + ss
    r = float(to_periods(review_period, name="review_period", period=period))
    return PolicyLevels("(R, S)", ss, raw, None, big_s, float(mean_demand) * r, t, float(mean_demand) * t,
                        sigma, flags)


# --------------------------------------------------------------------------- order quantities


def economic_order_quantity(
    annual_demand: Any,
    order_cost: Any,
    *,
    holding_rate: Any,
    unit_cost: Any,
) -> Number:
    """EOQ = sqrt(2 * D * K / (h * c)) in units (Harris 1913).

    D: demand in units per year; K: cost per order (currency); h: holding cost rate per
    year (fraction of unit value, e.g. 0.25); c: unit cost (currency per unit). Zero demand
    gives 0; a missing or zero holding cost makes the EOQ undefined (NaN).
    """
    d = np.asarray(_nonneg(annual_demand, "annual_demand"), dtype=float)
    k = np.asarray(_nonneg(order_cost, "order_cost"), dtype=float)
    h = np.asarray(holding_rate, dtype=float) * np.asarray(unit_cost, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(h > 0, np.sqrt(2.0 * d * k / np.where(h > 0, h, 1.0)), np.nan)
    return float(out) if out.ndim == 0 else out


def round_to_pack(qty: Any, *, moq: Any = 0, multiple: Any = 1) -> Number:
    """An order quantity that respects the pack rules: 0 stays 0; otherwise at least the
    MOQ, rounded up to a whole number of order multiples (units)."""
    q = np.asarray(qty, dtype=float)
    moq_a = np.nan_to_num(np.asarray(moq, dtype=float), nan=0.0)
    mult = np.nan_to_num(np.asarray(multiple, dtype=float), nan=1.0)
    mult = np.where(mult > 0, mult, 1.0)
    q = np.where(q > 0, np.maximum(q, moq_a), 0.0)
    # round tiny float noise down before ceiling (6.0000000001 cases -> 6)
    out = np.ceil(np.round(q / mult, 9)) * mult
    return float(out) if out.ndim == 0 else out


def suggested_order(order_up_to: Any, inventory_position: Any, *, moq: Any = 0, multiple: Any = 1) -> Number:
    """Units to order now = max(0, S - inventory position), rounded to the pack rules.

    Inventory position = on hand + on order - backorders (units).
    """
    need = np.maximum(np.asarray(order_up_to, dtype=float) - np.asarray(inventory_position, dtype=float), 0.0)
    return round_to_pack(need, moq=moq, multiple=multiple)


# --------------------------------------------------------------------------- KPIs


def days_of_coverage(on_hand: Any, daily_demand: Any) -> Number:
    """Days the stock on hand lasts at the forecast rate: on_hand / daily demand (days).
    Infinite when there is no demand."""
    oh = np.asarray(on_hand, dtype=float)
    dd = np.asarray(daily_demand, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(dd > 0, np.maximum(oh, 0.0) / np.where(dd > 0, dd, 1.0), np.inf)
    return float(out) if out.ndim == 0 else out


def inventory_turnover(annual_demand: Any, average_inventory: Any) -> Number:
    """Turns per year = annual demand / average inventory (both in units, or both in value)."""
    a = np.asarray(annual_demand, dtype=float)
    inv = np.asarray(average_inventory, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(inv > 0, a / np.where(inv > 0, inv, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def expected_shortage(available: Any, mean_demand: Any, sd_demand: Any) -> Number:
    """Expected units short when ``available`` units face demand ~ N(mean, sd):
    E[(D - available)+] = sd * G((available - mean) / sd) (units)."""
    a = np.asarray(available, dtype=float)
    m = np.asarray(mean_demand, dtype=float)
    s = np.asarray(sd_demand, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s > 0, s * normal_loss((a - m) / np.where(s > 0, s, 1.0)), np.maximum(m - a, 0.0))
    return float(out) if out.ndim == 0 else out


def stockout_risk(available: Any, mean_demand: Any, sd_demand: Any) -> Number:
    """P(demand > available) for demand ~ N(mean, sd): the chance of running out before
    the next receipt when ``available`` units must cover it."""
    a = np.asarray(available, dtype=float)
    m = np.asarray(mean_demand, dtype=float)
    s = np.asarray(sd_demand, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s > 0, stats.norm.sf((a - m) / np.where(s > 0, s, 1.0)), (m > a).astype(float))
    return float(out) if out.ndim == 0 else out


def projected_fill_rate(safety_stock: Any, sd_protection: Any, *, order_qty: Any) -> Number:
    """Fill rate of a policy: 1 - sigma * G(SS / sigma) / Q (fraction of demand served
    from stock). Reference: Silver, Pyke & Thomas (2017) eq. 6.17."""
    ss = np.asarray(safety_stock, dtype=float)
    s = np.asarray(sd_protection, dtype=float)
    q = np.asarray(order_qty, dtype=float)
    short = expected_shortage(ss, 0.0, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(q > 0, np.clip(1.0 - np.asarray(short) / np.where(q > 0, q, 1.0), 0.0, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def excess_stock(inventory_position: Any, max_level: Any) -> Number:
    """Units above the policy's maximum (order-up-to level): max(0, position - max)."""
    out = np.maximum(np.asarray(inventory_position, dtype=float) - np.asarray(max_level, dtype=float), 0.0)
    return float(out) if out.ndim == 0 else out


def inventory_value(units: Any, unit_cost: Any) -> Number:
    """Stock value = units x unit cost (currency)."""
    out = np.asarray(units, dtype=float) * np.asarray(unit_cost, dtype=float)
    return float(out) if out.ndim == 0 else out

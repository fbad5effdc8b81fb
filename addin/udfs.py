"""Excel worksheet functions (xlwings UDFs). Names and argument order are product surface
(DESIGN.md, "Excel functions").

UDFs are thin: convert what Excel passes (floats for integers, ``None`` for blank cells,
text), call the engine, and return a value. Errors come back as one line
``PLANCELL-E<nnn>: ...`` in the cell, never a traceback. Each function is also a plain
Python function with the same keyword names, e.g.
``SAFETY_STOCK_CALC(2500, 500, 2, service_level=0.9)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import xlwings as xw

from engine.errors import InputError, PlancellError, Problem

__all__ = [
    "FORECAST_SKU", "FORECAST_TABLE", "SAFETY_STOCK", "REORDER_POINT", "ORDER_QTY", "FORECAST_ACCURACY",
    "FORECAST_DRIVERS", "SKU_CLASS", "PLAN_INFO", "SAFETY_STOCK_CALC",
]

_log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _cell_errors(fn: F) -> F:
    """Turn every failure into the one-line cell text; log bugs with their traceback.

    The line is at most 255 characters: very long values quoted in a message are shortened
    first, so the "Fix:" part survives; Python object reprs never reach the cell. An
    infinite or NaN result becomes an error line, never ``#NUM!``."""
    import re

    def cell_line(text: str) -> str:
        text = " ".join(str(text).split())
        text = re.sub(r"<(?:[^<>]* at 0x[0-9a-fA-F]+|(?:class|function|built-in|bound method|module) [^<>]*)>",
                      "a value of the wrong type", text)
        if len(text) > 255:
            # head and tail of each long word: a file path keeps its file name
            text = re.sub(r"\S{41,}", lambda m: m.group(0)[:12] + "\u2026" + m.group(0)[-27:], text)
        return text if len(text) <= 255 else text[:254] + "\u2026"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except PlancellError as exc:
            return cell_line(exc.one_line())
        except Exception:  # a bug: the cell gets a short line, the log gets the traceback
            _log.exception("%s failed", fn.__name__)
            return "PLANCELL-E900: internal error in Plancell; see the log and report it."
        if isinstance(out, (float, np.floating)) and not np.isfinite(out):
            return ("PLANCELL-E110: the result is not a finite number: an input is out of range. "
                    "Fix: check the arguments.")
        return out

    return wrapper  # type: ignore[return-value]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _number(v: Any, name: str, default: Any = None) -> Any:
    """A cell value as a float; text such as '95%' or '2,500' is read as a number;
    a duration text ('14 days') is passed through for the engine to convert or refuse."""
    if _blank(v):
        return default
    if isinstance(v, (bool, np.bool_)):
        raise InputError(f"{name} is TRUE/FALSE, not a number. Fix: enter a number.",
                         [Problem("arguments", "is TRUE/FALSE, not a number", "enter a number",
                                  column=name, value=bool(v), code="E110")], code="E110")
    if isinstance(v, (int, float, np.integer, np.floating)):
        try:
            f = float(v)
        except OverflowError:  # an int beyond float range
            f = float("inf")
    elif isinstance(v, str):
        text = v.strip()
        try:
            f = float(text[:-1].replace(",", "")) / 100.0 if text.endswith("%") else float(text.replace(",", ""))
        except ValueError:
            return text  # e.g. "14 days": the engine converts it or explains why it cannot
    else:  # a range, a date, anything else a cell or a caller can pass
        kind = "a range of cells" if isinstance(v, (list, tuple, np.ndarray)) else f"a {type(v).__name__} value"
        raise InputError(f"{name} must be a single number, not {kind}. Fix: enter a number or point to one cell.",
                         [Problem("arguments", f"is {kind}, not a number", "enter a number",
                                  column=name, code="E110")], code="E110")
    if not np.isfinite(f):
        raise InputError(f"{name} must be a finite number (got {f}). Fix: enter a number.",
                         [Problem("arguments", "is not a finite number", "enter a number", column=name,
                                  value=str(v)[:40], code="E110")], code="E110")
    # Durations in days feed period arithmetic in integers: refuse what no supply chain has.
    if name.endswith("_days") and abs(f) > 36_500:
        raise InputError(f"{name} of {f:g} days is more than 100 years. Fix: enter the lead time in days.",
                         [Problem("arguments", "is more than 100 years", "enter the lead time in days",
                                  column=name, value=f, code="E110")], code="E110")
    return f


@xw.func
@xw.arg("mean_demand", doc="mean demand per period (units)")
@xw.arg("sd_demand", doc="standard deviation of demand per period (units)")
@xw.arg("lead_time", doc="lead time in the same period as the demand")
@xw.arg("sd_lead_time", doc="standard deviation of the lead time (periods), default 0")
@xw.arg("service_level", doc="target, e.g. 0.95 (default)")
@xw.arg("target", doc='"csl" (cycle service level, default) or "fill_rate"')
@xw.arg("order_qty", doc="order quantity in units (needed for a fill-rate target)")
@_cell_errors
def SAFETY_STOCK_CALC(
    mean_demand: Any,
    sd_demand: Any,
    lead_time: Any,
    sd_lead_time: Any = 0.0,
    service_level: Any = 0.95,
    target: Any = "csl",
    order_qty: Any = None,
) -> Any:
    """Textbook safety stock in units, no model needed:
    z * sqrt(L * sd^2 + d^2 * sd_L^2) for a cycle service level, or the normal-loss
    solution for a fill rate. ``SAFETY_STOCK_CALC(2500, 500, 2, service_level=0.9)`` -> 906."""
    from engine.inventory import safety_stock

    for name, v in (("mean_demand", mean_demand), ("sd_demand", sd_demand), ("lead_time", lead_time)):
        if _blank(v):
            raise InputError(f"{name} is blank. Fix: enter a number.",
                             [Problem("arguments", "is blank", "enter a number", column=name, code="E110")],
                             code="E110")
    return float(safety_stock(
        _number(mean_demand, "mean_demand"),
        _number(sd_demand, "sd_demand"),
        lead_time=_number(lead_time, "lead_time"),
        sd_lead_time=_number(sd_lead_time, "sd_lead_time", 0.0),
        service_level=_number(service_level, "service_level", 0.95),
        target="csl" if _blank(target) else str(target),
        order_qty=_number(order_qty, "order_qty"),
    ))


# --------------------------------------------------------------------------- plan functions


_SERVING: contextvars.ContextVar[Any] = contextvars.ContextVar("plancell_serving", default=None)


@contextlib.contextmanager
def serving(entry: Any) -> Iterator[None]:
    """Evaluate functions on ``entry`` (the calculation server answering a cell for the add-in)."""
    token = _SERVING.set(entry)
    try:
        yield
    finally:
        _SERVING.reset(token)


def _entry(caller: Any = None) -> Any:
    served = _SERVING.get()
    if served is not None:
        return served
    from .cache import plan_for, remote_plan_for

    name, server = _book_target(caller)
    if server:
        return remote_plan_for(server, name)
    return plan_for(name)


def _model_name(caller: Any) -> str | None:
    """The calling workbook's model (Settings ``Model`` or the file name); None outside Excel."""
    return _book_target(caller)[0]


def _book_target(caller: Any) -> tuple[str | None, str | None]:
    """(model name, Settings ``Server`` URL or None) of the calling workbook; outside Excel the
    model is the default one and ``$PLANCELL_SERVER`` the server, if set."""
    import os

    if caller is None:
        return None, os.environ.get("PLANCELL_SERVER") or None
    try:
        book = caller.sheet.book
    except AttributeError:
        return None, os.environ.get("PLANCELL_SERVER") or None
    return _BOOK_MODELS.get(book.name) or _book_model(book)


_BOOK_MODELS: dict[str, tuple[str, str | None]] = {}


def _book_model(book: Any) -> tuple[str, str | None]:
    from .actions import model_name_for, read_plan_settings
    from .port import XlwingsBook

    try:
        settings = read_plan_settings({k: v for k, v in XlwingsBook(book).tables().items() if k == "Settings"})
    except PlancellError:
        settings = None
    target = (model_name_for(book.name, settings), getattr(settings, "server", None) or None)
    _BOOK_MODELS[book.name] = target
    return target


def _periods(v: Any, default: int, horizon: int) -> int:
    n = _number(v, "periods", float(default))
    if not isinstance(n, float) or not n.is_integer() or n < 1:
        raise InputError(f"periods must be a whole number of 1 or more (got {v!r}).", code="E110")
    if n > horizon:
        raise InputError(f"periods {n:g} is beyond the plan's horizon of {horizon}. Fix: ask for at most "
                         f"{horizon}, or set a longer Horizon in Settings and refresh.", code="E110")
    return int(n)


def _quantile_values(entry: Any, key: tuple[str, str], q: float) -> Any:
    from engine.schema import quantile_column

    col = quantile_column(q)
    fc = entry.forecast[key]
    if col in fc:
        return fc[col]
    cache = entry.extra.setdefault(("quantile", col), {})
    if key not in cache and entry.remote is not None:
        row = entry.remote.cell("FORECAST_SKU", key[0], len(entry.periods), key[1], q)
        cache[key] = np.asarray(row[0], dtype=float)
    if not cache:
        pred = entry.bundle.model.predict(len(entry.periods), quantiles=(q,))
        for (sku, loc), g in pred.groupby(["SKU", "Location"], sort=False):
            cache[(str(sku), str(loc))] = g[col].to_numpy(dtype=float)
    return cache[key]


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("periods", doc="how many periods ahead (default 1)")
@xw.arg("location", doc="location (needed when the SKU is planned at several)")
@xw.arg("quantile", doc="0.5 = P50 (default), 0.1 = P10, 0.9 = P90 ...")
@xw.ret(expand="table")
@_cell_errors
def FORECAST_SKU(sku: Any, periods: Any = 1, location: Any = None, quantile: Any = 0.5, caller: Any = None) -> Any:
    """The next ``periods`` forecasts of a SKU, spilled as a row (units per period)."""
    entry = _entry(caller)
    n = _periods(periods, 1, len(entry.periods))
    q = _number(quantile, "quantile", 0.5)
    if not isinstance(q, float) or not 0 < q < 1:
        raise InputError(f"quantile must be between 0 and 1, e.g. 0.9 for P90 (got {quantile!r}).", code="E110")
    if _blank(location) and q == 0.5 and len(entry.locations.get(str(sku).strip(), [])) > 1:
        # all locations: the P50s add up to the SKU's median-ish total; other quantiles do not add
        s = str(sku).strip()
        total = sum(entry.forecast[(s, loc)]["P50"][:n] for loc in entry.locations[s])
        return [[float(v) for v in total]]
    key = entry.key(sku, location, what="a quantile other than P50")
    values = _quantile_values(entry, key, q)[:n]
    return [[float(v) for v in values]]


@xw.func
@xw.arg("skus", doc="one SKU, a range of SKUs, or blank for all")
@xw.arg("periods", doc="periods ahead (default: the whole horizon)")
@xw.ret(expand="table")
@_cell_errors
def FORECAST_TABLE(skus: Any = None, periods: Any = None, caller: Any = None) -> Any:
    """A spilled table with headers SKU, Location, Period, P10, P50, P90."""
    entry = _entry(caller)
    n = _periods(periods, len(entry.periods), len(entry.periods))
    if _blank(skus) or (isinstance(skus, list) and not any(not _blank(x) for x in _flat(skus))):
        wanted = list(entry.locations)
    else:
        wanted = [str(x).strip() for x in (_flat(skus) if isinstance(skus, list) else [skus]) if not _blank(x)]
    rows: list[list[Any]] = [["SKU", "Location", "Period", "P10", "P50", "P90"]]
    for s in wanted:
        for loc in entry.locations.get(s) or [entry.key(s, None, what="")[1]]:
            fc = entry.forecast[(s, loc)]
            for k in range(n):
                rows.append([s, loc, pd_ts(entry.periods[k])] +
                            [float(fc[c][k]) if c in fc else None for c in ("P10", "P50", "P90")])
    return rows


def pd_ts(v: Any) -> Any:
    import pandas as pd

    return pd.Timestamp(v).to_pydatetime()


def _flat(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in v:
        out.extend(_flat(x) if isinstance(x, list) else [x])
    return out


def _policy_row(entry: Any, sku: Any, location: Any) -> tuple[tuple[str, str], dict[str, Any]]:
    key = entry.key(sku, location, what="inventory figures")
    row = entry.policy.get(key)
    if row is None:
        raise InputError(f"No inventory policy for {key[0]} {key[1]}. Fix: refresh the plan.", code="E201")
    return key, row


def _recomputed(entry: Any, key: tuple[str, str], service_level: Any, lead_time_days: Any) -> dict[str, float]:
    """Safety stock and reorder point of one SKU-location for another service level or
    lead time, by the plan's own method (its backtest errors, pooled as in the plan)."""
    from engine.frequency import days_per_period
    from engine.inventory import _service
    from engine.policy import fit_safety_stock, forecast_over

    if entry.remote is not None:
        ss, rop = entry.remote.cells([("SAFETY_STOCK", key[0], key[1], service_level, lead_time_days),
                                      ("REORDER_POINT", key[0], key[1], service_level, lead_time_days)])
        return {"SafetyStock": ss, "ReorderPoint": rop}
    row = entry.policy[key]
    alpha = row["ServiceLevel"] if _blank(service_level) else _service(_number(service_level, "service_level"))
    lt_days = float(row["LeadTimeDays"]) if _blank(lead_time_days) else _number(lead_time_days, "lead_time_days")
    if not isinstance(lt_days, float) or not lt_days >= 0:
        raise InputError(f"lead_time_days must be 0 or more days (got {lead_time_days!r}).", code="E110")
    cube = getattr(entry.bundle, "cube", None)
    inputs = entry.extra.get("ss_inputs")
    if inputs is None:
        if cube is None:
            raise InputError("This plan has no backtest errors stored. Fix: refresh the plan.", code="E201")
        pol = cube.keys.astype(str).merge(entry.bundle.policy.astype({"SKU": str, "Location": str}),
                                          on=["SKU", "Location"], how="left")
        dpp = days_per_period(entry.metadata.get("freq", "W"))
        P = (pol["LeadTimeDays"].fillna(dpp) + pol["ReviewPeriodDays"].fillna(0)).to_numpy(float) / dpp
        rate = np.where(P > 0, pol["DemandOverProtection"].fillna(0).to_numpy(float) / np.where(P > 0, P, 1), 0.0)
        inputs = {"P": P, "rate": rate, "dpp": dpp, "sdl": pol["LeadTimeStdDays"].fillna(0).to_numpy(float) / dpp,
                  "alpha": pol["ServiceLevel"].fillna(0.95).to_numpy(float),
                  "pattern": pol["Pattern"].fillna("smooth").to_numpy(object),
                  "pos": {k: i for i, k in enumerate(zip(pol["SKU"], pol["Location"]))}}
        entry.extra["ss_inputs"] = inputs
    i = inputs["pos"].get(key)
    if i is None:
        raise InputError(f"{key[0]} {key[1]} was not backtested yet: only the plan's own values are available. "
                         "Fix: leave service_level and lead_time_days blank.", code="E201")
    P, alpha_v = inputs["P"].copy(), inputs["alpha"].copy()
    P[i] = (lt_days + float(row.get("ReviewPeriodDays") or 0.0)) / inputs["dpp"]
    alpha_v[i] = alpha
    only = np.zeros(len(P), dtype=bool)
    only[i] = True
    fit = fit_safety_stock(cube, protection=P, mean_demand=inputs["rate"], sd_lead_time=inputs["sdl"],
                           service_level=alpha_v, pattern=inputs["pattern"], only=only)
    ss = max(float(fit.safety_stock[i]), 0.0)
    demand = float(forecast_over(entry.forecast[key]["P50"][None, :], P[i:i + 1])[0])
    return {"SafetyStock": ss, "ReorderPoint": demand + ss}


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@xw.arg("service_level", doc="e.g. 0.95 (default: the plan's)")
@xw.arg("lead_time_days", doc="lead time in days (default: Items)")
@_cell_errors
def SAFETY_STOCK(sku: Any, location: Any = None, service_level: Any = None, lead_time_days: Any = None,
                 caller: Any = None) -> Any:
    """Safety stock in units (the plan's, or recomputed for another service level / lead time)."""
    return _buffer("SafetyStock", sku, location, service_level, lead_time_days, caller)


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@xw.arg("service_level", doc="e.g. 0.95 (default: the plan's)")
@xw.arg("lead_time_days", doc="lead time in days (default: Items)")
@_cell_errors
def REORDER_POINT(sku: Any, location: Any = None, service_level: Any = None, lead_time_days: Any = None,
                  caller: Any = None) -> Any:
    """Reorder point in units: forecast over lead time (+ review period) + safety stock."""
    return _buffer("ReorderPoint", sku, location, service_level, lead_time_days, caller)


def _buffer(field: str, sku: Any, location: Any, service_level: Any, lead_time_days: Any, caller: Any) -> float:
    """The plan's value of ``field``, or recomputed when a service level or lead time is given."""
    entry = _entry(caller)
    key, row = _policy_row(entry, sku, location)
    if _blank(service_level) and _blank(lead_time_days):
        return float(row[field])
    return _recomputed(entry, key, service_level, lead_time_days)[field]


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@xw.arg("on_hand", doc="units on hand (default: Items)")
@xw.arg("on_order", doc="units on order (default: Items)")
@_cell_errors
def ORDER_QTY(sku: Any, location: Any = None, on_hand: Any = None, on_order: Any = None, caller: Any = None) -> Any:
    """Units to order now (0 if none), rounded to MOQ and order multiple."""
    from engine.policy import order_now

    entry = _entry(caller)
    _, row = _policy_row(entry, sku, location)
    oh = float(row["OnHand"]) if _blank(on_hand) else _number(on_hand, "on_hand")
    oo = float(row["OnOrder"]) if _blank(on_order) else _number(on_order, "on_order")
    if not isinstance(oh, float) or not isinstance(oo, float):
        raise InputError("on_hand and on_order must be numbers of units.", code="E110")
    return order_now(row, oh + oo)


_METRICS = {"WAPE": "WAPE", "MASE": "MASE", "BIAS": "Bias", "COVERAGE": "Coverage P10-P90"}


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@xw.arg("metric", doc='"WAPE" (default), "MASE", "Bias" or "Coverage"')
@_cell_errors
def FORECAST_ACCURACY(sku: Any, location: Any = None, metric: Any = "WAPE", caller: Any = None) -> Any:
    """Backtest accuracy of this SKU (WAPE as a fraction: 0.12 = 12 %)."""
    entry = _entry(caller)
    key = entry.key(sku, location, what="accuracy")
    m = "WAPE" if _blank(metric) else str(metric).strip().upper().replace(" ", "")
    m = "COVERAGE" if m.startswith("COVERAGE") else m
    if m not in _METRICS:
        raise InputError(f"metric {metric!r} is not known. Fix: use WAPE, MASE, Bias or Coverage.", code="E110")
    row = entry.accuracy.get(key)
    if row is None:
        return "not backtested yet"
    v = row.get(_METRICS[m])
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@xw.arg("period", doc="which future period (default 1)")
@xw.ret(expand="table")
@_cell_errors
def FORECAST_DRIVERS(sku: Any, location: Any = None, period: Any = 1, caller: Any = None) -> Any:
    """What drives this forecast: a spilled table Driver, Units, Effect (e.g. Temperature,
    +3.2, +12.0 %), largest first; the units add up to the model's forecast."""
    entry = _entry(caller)
    key = entry.key(sku, location, what="drivers")
    k = _periods(period, 1, len(entry.periods))
    if entry.remote is not None:
        return entry.remote.cell("FORECAST_DRIVERS", key[0], key[1], k)
    contrib = entry.extra.get("contributions")
    if contrib is None:
        c = entry.bundle.model.contributions(len(entry.periods))
        contrib = {(str(s), str(lo), int(p)): g for (s, lo, p), g in c.groupby(["SKU", "Location", "period"])}
        entry.extra["contributions"] = contrib
    g = contrib[(key[0], key[1], k)]
    total = float(g["contribution"].sum())
    base = float(g.loc[g["driver"] == "Average level", "contribution"].sum())
    rows: list[list[Any]] = [["Driver", "Units", "Effect"]]
    rest = g[g["driver"] != "Average level"].assign(a=lambda d: d["contribution"].abs()).sort_values("a", ascending=False)
    rows.append(["Average level", base, ""])
    for d, u in zip(rest["driver"], rest["contribution"]):
        rows.append([str(d), float(u), f"{100 * u / total:+.1f}%" if total else ""])
    rows.append(["Forecast", total, ""])
    used = entry.forecast[key]
    point = entry.bundle.plan
    model_used = point.loc[(point["SKU"].astype(str) == key[0]) & (point["Location"].astype(str) == key[1]),
                           "model_used"]
    if len(model_used) and str(model_used.iloc[0]) != "lightgbm":
        rows.append([f"Note: the plan uses {model_used.iloc[0]} for this SKU", float(used["P50"][k - 1]), ""])
    return rows


@xw.func
@xw.arg("sku", doc="SKU code")
@xw.arg("location", doc="location")
@_cell_errors
def SKU_CLASS(sku: Any, location: Any = None, caller: Any = None) -> Any:
    """ABC/XYZ class, e.g. AX (A = top value, X = most predictable)."""
    entry = _entry(caller)
    _, row = _policy_row(entry, sku, location)
    return str(row["Class"])


@xw.func
@xw.ret(expand="table")
@_cell_errors
def PLAN_INFO(caller: Any = None) -> Any:
    """Model id, version, trained at, data fingerprint of the plan the cells read."""
    entry = _entry(caller)
    m = entry.metadata
    return [["Model", entry.name], ["Version", entry.version], ["Trained at", m.get("trained_at")],
            ["Data fingerprint", m.get("data_fingerprint")], ["Series", m.get("n_series")],
            ["Horizon", m.get("horizon")]]

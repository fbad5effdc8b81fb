"""Excel worksheet functions (xlwings UDFs). Names and argument order are product surface
(DESIGN.md, "Excel functions").

UDFs are thin: convert what Excel passes (floats for integers, ``None`` for blank cells,
text), call the engine, and return a value. Errors come back as one line
``PLANCELL-E<nnn>: ...`` in the cell, never a traceback. Each function is also a plain
Python function with the same keyword names, e.g.
``SAFETY_STOCK_CALC(2500, 500, 2, service_level=0.9)``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import xlwings as xw

from engine.errors import InputError, PlancellError, Problem

__all__ = ["SAFETY_STOCK_CALC"]

_log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _cell_errors(fn: F) -> F:
    """Turn every failure into the one-line cell text; log bugs with their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PlancellError as exc:
            return exc.one_line()
        except Exception:  # a bug: the cell gets a short line, the log gets the traceback
            _log.exception("%s failed", fn.__name__)
            return "PLANCELL-E900: internal error in Plancell; see the log and report it."

    return wrapper  # type: ignore[return-value]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _number(v: Any, name: str, default: Any = None) -> Any:
    """A cell value as a float; text such as '95%' or '2,500' is read as a number;
    a duration text ('14 days') is passed through for the engine to convert or refuse."""
    if _blank(v):
        return default
    if isinstance(v, bool):
        raise InputError(f"{name} is TRUE/FALSE, not a number. Fix: enter a number.",
                         [Problem("arguments", "is TRUE/FALSE, not a number", "enter a number",
                                  column=name, value=v, code="E110")], code="E110")
    if isinstance(v, (int, float)):
        return float(v)
    text = str(v).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1].replace(",", "")) / 100.0
        return float(text.replace(",", ""))
    except ValueError:
        return text  # e.g. "14 days": the engine converts it or explains why it cannot


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

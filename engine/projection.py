"""Projected inventory per SKU-location over the plan horizon, and the S&OE KPIs.

:func:`project_inventory` rolls today's stock forward period by period with the plan's
P50 and the receipts already on order, two ways:

* **committed** ("if nothing else is ordered"): on hand + open purchase orders - forecast.
  Its first shortage is the *stock-out date* an S&OE planner acts on, and comparing it
  with the next receipt says whether the open orders come in time.
* **planned**: the same, plus the orders the inventory policy would place on the way
  ((s, S): when the inventory position falls to the reorder point; (R, S): at every
  review), each arriving after its lead time. This is the projection the KPIs (fill rate,
  availability, turnover) describe. It runs on :func:`engine.simulation.run_inventory`,
  the same engine as the Monte Carlo in :mod:`engine.scenarios`.

Conventions (stated on the sheet too):

* A period labelled D covers [D, D + one period): weekly labels start their week (as
  :mod:`engine.synthetic` writes them). Receipts arrive at the start of the period their
  due date falls in, before that period's demand; a due date before the first period
  (overdue) arrives in the first period and the Notes say so.
* Lost sales (retail): demand that finds no stock is lost, stock never goes negative.
  ``lost_sales=False`` carries it as a backlog instead.
* Within a period demand is spread evenly over its days, so the stock-out date is the day
  the stock at the start of that period runs out.
* Open orders come from the optional ``OpenOrders`` table (SKU, Location, Qty, DueDate,
  Supplier). Without it, each SKU-location's Items ``OnOrder`` is assumed to arrive one
  lead time (``LeadTimeDays``) after the start, and the Notes say so.
* Max stock is ``OrderUpTo`` + one ``OrderMultiple`` (pack rounding can overshoot the
  order-up-to level by up to one pack); stock above it is excess. The position compared
  with it is on hand + on order, as in the policy table's ``ExcessUnits``.

:func:`execution_kpis` turns a projection (and an optional ``Deliveries`` table) into the
S&OE KPIs: fill rate, OTIF, availability, coverage, turnover, stock-outs and excess.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, Problem, ProblemCollector
from .frequency import days_per_period, normalize_freq, periods_per_year
from .simulation import run_inventory

__all__ = [
    "OPEN_ORDERS_COLUMNS", "DELIVERIES_COLUMNS", "PROJECTION_SERIES_COLUMNS", "PROJECTION_PERIOD_COLUMNS",
    "Projection", "project_inventory", "validate_open_orders", "validate_deliveries", "KPIs", "execution_kpis",
]

_log = logging.getLogger(__name__)

#: OpenOrders table: required SKU, Qty, DueDate; optional Location, Supplier, Order.
OPEN_ORDERS_COLUMNS: tuple[str, ...] = (S.SKU, S.LOCATION, "Qty", "DueDate", "Supplier", "Order")
#: Deliveries table: one row per order line (or per shipment of a line); Location optional;
#: a blank DeliveredDate means not delivered yet (DeliveredQty then counts as 0).
DELIVERIES_COLUMNS: tuple[str, ...] = (
    "Order", S.SKU, S.LOCATION, "PromisedDate", "PromisedQty", "DeliveredDate", "DeliveredQty",
)
PROJECTION_SERIES_COLUMNS: tuple[str, ...] = (
    S.SKU, S.LOCATION, "OnHand", "OnOrder", "DailyDemand", "DaysOfCoverage", "NextReceiptDate", "NextReceiptQty",
    "StockoutDate", "DaysToStockout", "StockoutBeforeReceipt", "ShortBeforeReceipt", "ShortUnits",
    "PlannedStockoutDate", "PlannedShortUnits", "PlannedFillRate", "MaxStock", "ExcessUnits", "UnitCost",
    "ReceiptSource", "Notes",
)
PROJECTION_PERIOD_COLUMNS: tuple[str, ...] = (
    S.SKU, S.LOCATION, "Period", "Demand", "Receipts", "ProjectedOnHand", "ShortUnits", "PlannedReceipts",
    "PlannedOnHand", "PlannedShortUnits",
)

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass
class Projection:
    """Projected inventory: per SKU-location (``series``) and per period (``periods``).

    ``series`` has :data:`PROJECTION_SERIES_COLUMNS`, ``periods``
    :data:`PROJECTION_PERIOD_COLUMNS`; ``orders`` the open orders used (SKU, Location,
    Qty, DueDate, Supplier, Order, Period: 0-based period index, Source); ``dates`` the
    period labels; ``assumptions`` sentences to show next to the numbers; ``problems``
    warnings about the inputs (e.g. open orders for unplanned SKUs, ignored).
    """

    series: pd.DataFrame
    periods: pd.DataFrame
    orders: pd.DataFrame
    dates: pd.DatetimeIndex
    freq: str
    lost_sales: bool
    assumptions: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# --------------------------------------------------------------------------- table validation


def _norm_header(h: Any) -> str:
    return re.sub(r"[\s_]+", "", str(h)).lower()


def _columns(frame: pd.DataFrame, table: str, wanted: Sequence[str], required: Sequence[str],
             col: ProblemCollector) -> dict[str, Any]:
    """Map canonical names to the frame's headers (case- and space-insensitive)."""
    have = {_norm_header(c): c for c in frame.columns}
    found = {name: have[_norm_header(name)] for name in wanted if _norm_header(name) in have}
    for name in required:
        if name not in found:
            col.add(table=table, message=f"column {name} is missing", fix=f"add a {name} column to table {table}",
                    column=name, code="E101")
    return found


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or \
        (isinstance(v, str) and not v.strip())


def _number(v: Any) -> float | None:
    """A cell as a number (None if unreadable); text like "1,200" with a thousands comma is refused."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
        return x if math.isfinite(x) else None
    t = str(v).strip()
    return float(t) if _NUMBER_RE.fullmatch(t) else None


def _date(v: Any) -> pd.Timestamp | None:
    """A cell as a date: a datetime, an Excel serial number or an ISO-like text; None if unreadable."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "year"):
        ts = pd.Timestamp(v)
        return None if pd.isna(ts) else (ts.tz_localize(None) if ts.tzinfo is not None else ts).normalize()
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
        return _EXCEL_EPOCH + pd.Timedelta(days=int(x)) if 1 <= x < 2_958_466 else None
    ts = pd.to_datetime(str(v).strip(), errors="coerce")
    return None if pd.isna(ts) else (ts.tz_localize(None) if ts.tzinfo is not None else ts).normalize()


def _read(frame: pd.DataFrame, table: str, spec: Sequence[tuple[str, str, bool]], first_row: int,
          col: ProblemCollector) -> pd.DataFrame:
    """Validate ``frame`` cell by cell against ``spec`` (name, kind, required) and return it
    with canonical columns. Kinds: text, key (text, blank not allowed), qty (number >= 0),
    date; a required column must be present, a required cell filled."""
    found = _columns(frame, table, [s[0] for s in spec], [s[0] for s in spec if s[2]], col)
    n = len(frame)
    # An already validated table keeps its own row numbers.
    row_of = (pd.to_numeric(frame["Row"], errors="coerce").fillna(-1).astype(np.int64).tolist()
              if "Row" in frame.columns else list(range(first_row, first_row + n)))
    out: dict[str, list[Any]] = {}
    for name, kind, required in spec:
        if name not in found:
            out[name] = [S.NO_LOCATION if name == S.LOCATION else (np.nan if kind in ("qty",) else None)] * n
            continue
        values = frame[found[name]].tolist()
        res: list[Any] = []
        for i, v in enumerate(values):
            row = row_of[i]
            if _blank(v):
                if required and kind != "text":
                    col.add(table=table, row=row, column=name, value=None, message=f"{name} is blank",
                            fix=_fix(name, kind), code="E102")
                res.append(S.NO_LOCATION if name == S.LOCATION else (np.nan if kind == "qty" else None))
                continue
            if kind in ("text", "key"):
                res.append(str(v).strip())
            elif kind == "qty":
                x = _number(v)
                if x is None or x < 0:
                    msg = f"{name} is not a number" if x is None else f"{name} is negative"
                    col.add(table=table, row=row, column=name, value=v, message=msg, fix=_fix(name, kind),
                            code="E102")
                    res.append(np.nan)
                else:
                    res.append(x)
            else:
                d = _date(v)
                if d is None:
                    col.add(table=table, row=row, column=name, value=v, message=f"{name} cannot be read as a date",
                            fix=_fix(name, kind), code="E105")
                res.append(d)
        out[name] = res
    result = pd.DataFrame(out, index=range(n))
    result["Row"] = row_of
    return result


def _fix(name: str, kind: str) -> str:
    if kind == "qty":
        return f"enter {name} as a plain number of units, 0 or more (e.g. 120)"
    if kind == "date":
        return f"enter {name} as a date, e.g. 2024-03-15"
    return f"fill in the {name}"


def validate_open_orders(frame: pd.DataFrame, *, first_row: int = 2, table: str = "OpenOrders") -> pd.DataFrame:
    """The OpenOrders table with canonical columns (:data:`OPEN_ORDERS_COLUMNS` + ``Row``).

    Every bad cell is reported (InputError with one Problem each): missing SKU, Qty or
    DueDate columns; blank SKU or DueDate; Qty not a number, negative or blank; DueDate
    not a date. ``first_row`` is the Excel row of the first data row (header = row 1).
    """
    col = ProblemCollector()
    spec = [(S.SKU, "key", True), (S.LOCATION, "text", False), ("Qty", "qty", True), ("DueDate", "date", True),
            ("Supplier", "text", False), ("Order", "text", False)]
    out = _read(frame, table, spec, first_row, col)
    col.raise_if_errors(f"Table {table} cannot be used")
    out[S.LOCATION] = out[S.LOCATION].fillna(S.NO_LOCATION).astype(str)
    out["Supplier"] = out["Supplier"].fillna("").astype(str)
    out["Order"] = out["Order"].fillna("").astype(str)
    out["DueDate"] = pd.to_datetime(out["DueDate"])
    return out


def validate_deliveries(frame: pd.DataFrame, *, first_row: int = 2, table: str = "Deliveries") -> pd.DataFrame:
    """The Deliveries table with canonical columns (:data:`DELIVERIES_COLUMNS` + ``Row``).

    Required: Order, SKU, PromisedDate, PromisedQty, DeliveredDate and DeliveredQty
    columns. A blank DeliveredDate means "not delivered yet"; a DeliveredQty without a
    DeliveredDate, or a DeliveredDate without a DeliveredQty, is a problem.
    """
    col = ProblemCollector()
    spec = [("Order", "key", True), (S.SKU, "key", True), (S.LOCATION, "text", False),
            ("PromisedDate", "date", True), ("PromisedQty", "qty", True), ("DeliveredDate", "date", False),
            ("DeliveredQty", "qty", False)]
    for name in ("DeliveredDate", "DeliveredQty"):
        if _norm_header(name) not in {_norm_header(c) for c in frame.columns}:
            col.add(table=table, message=f"column {name} is missing", fix=f"add a {name} column to table {table}",
                    column=name, code="E101")
    out = _read(frame, table, spec, first_row, col)
    if not col.errors:
        has_date = out["DeliveredDate"].notna()
        has_qty = out["DeliveredQty"].notna()
        for i in np.flatnonzero((has_qty & ~has_date & (out["DeliveredQty"] > 0)).to_numpy()):
            col.add(table=table, row=int(out["Row"].iat[i]), column="DeliveredDate", value=None,
                    message="units delivered but no delivery date", fix="enter the date the units were delivered",
                    code="E102")
        for i in np.flatnonzero((has_date & ~has_qty).to_numpy()):
            col.add(table=table, row=int(out["Row"].iat[i]), column="DeliveredQty", value=None,
                    message="a delivery date but no quantity", fix="enter the units delivered (0 if none)",
                    code="E102")
    col.raise_if_errors(f"Table {table} cannot be used")
    out[S.LOCATION] = out[S.LOCATION].fillna(S.NO_LOCATION).astype(str)
    out["PromisedDate"] = pd.to_datetime(out["PromisedDate"])
    out["DeliveredDate"] = pd.to_datetime(out["DeliveredDate"])
    out["DeliveredQty"] = out["DeliveredQty"].astype(float).fillna(0.0)
    return out


# --------------------------------------------------------------------------- the horizon grid


@dataclass
class _Grid:
    """The plan horizon: series keys, period labels and the P-quantile matrices [n, H]."""

    keys: pd.DataFrame
    dates: pd.DatetimeIndex       # label (start) of each period
    days: np.ndarray              # days in each period
    quantiles: dict[str, np.ndarray]
    freq: str


def _period_starts(first: pd.Timestamp, H: int, freq: str) -> pd.DatetimeIndex:
    if freq == "MS":
        return pd.DatetimeIndex([first + pd.DateOffset(months=k) for k in range(H + 1)])
    step = 1 if freq == "D" else 7
    return pd.DatetimeIndex([first + pd.Timedelta(days=step * k) for k in range(H + 1)])


def _grid(forecast: pd.DataFrame, keys: pd.DataFrame, freq: str, start: Any,
          columns: Sequence[str] = ("P10", "P50", "P90")) -> _Grid:
    """Arrange ``forecast`` (SKU, Location, Period or Date, quantile columns) on a
    contiguous period grid for the series in ``keys``; periods before ``start`` are dropped
    and missing cells are 0 (no forecast, no demand)."""
    period_col = "Period" if "Period" in forecast.columns else S.DATE
    missing = [c for c in (S.SKU, period_col, "P50") if c not in forecast.columns]
    if missing:
        raise InputError(
            f"The forecast lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            [Problem("Plan", "missing column", f"add a {c} column", column=c, code="E101") for c in missing],
            code="E101")
    fc = forecast
    loc = fc[S.LOCATION].fillna(S.NO_LOCATION).astype(str) if S.LOCATION in fc.columns \
        else pd.Series(S.NO_LOCATION, index=fc.index)
    dates = pd.to_datetime(fc[period_col]).dt.normalize()
    labels = pd.DatetimeIndex(dates.dropna().unique()).sort_values()
    if not len(labels):
        raise InputError(
            "The forecast has no periods.",
            [Problem("Plan", "no forecast periods", "refresh the plan", column=period_col, code="E110")], code="E110")
    first_label = labels[0]
    if start is not None:
        # The period containing the start (labels start their period), else the first after it.
        s0 = pd.Timestamp(start).normalize()
        earlier = labels[labels <= s0]
        first_label = earlier[-1] if len(earlier) else labels[0]
    idx = _period_index(dates.to_numpy(dtype="datetime64[ns]"), first_label, freq)
    keep = idx >= 0
    H = int(idx[keep].max()) + 1
    starts = _period_starts(first_label, H, freq)
    n = len(keys)
    pos = pd.MultiIndex.from_frame(keys[[S.SKU, S.LOCATION]].astype(str)).get_indexer(
        pd.MultiIndex.from_arrays([fc[S.SKU].astype(str), loc]))
    keep &= pos >= 0
    q: dict[str, np.ndarray] = {}
    for c in columns:
        m = np.zeros((n, H))
        if c in fc.columns:
            m[pos[keep], idx[keep]] = np.nan_to_num(pd.to_numeric(fc[c], errors="coerce").to_numpy(dtype=float)[keep])
        q[c] = np.maximum(m, 0.0)
    if "P50" in q:
        # P10/P90 absent (a point plan): the band collapses onto the point.
        for c in columns:
            if c not in fc.columns:
                q[c] = q["P50"].copy()
    days = np.diff(starts.values).astype("timedelta64[D]").astype(float)
    return _Grid(keys, starts[:-1], days, q, freq)


def _period_index(dates: np.ndarray, first: pd.Timestamp, freq: str) -> np.ndarray:
    """0-based period of each date on the grid starting at ``first`` (negative: before it)."""
    d = pd.DatetimeIndex(dates)
    if freq == "MS":
        return ((d.year - first.year) * 12 + (d.month - first.month)).to_numpy(dtype=np.int64)
    delta = (d - first).days.to_numpy(dtype=np.int64)
    return np.floor_divide(delta, 1 if freq == "D" else 7)


# --------------------------------------------------------------------------- policy and orders


def _policy_arrays(policy: pd.DataFrame) -> pd.DataFrame:
    """Policy columns the projection needs, with documented defaults for missing ones."""
    need = [S.SKU, S.ONHAND]
    missing = [c for c in need if c not in policy.columns]
    if missing:
        raise InputError(
            f"The inventory policy lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            [Problem("Policy", "missing column", f"add a {c} column", column=c, code="E101") for c in missing],
            code="E101")
    p = pd.DataFrame({S.SKU: policy[S.SKU].astype(str).to_numpy()})
    p[S.LOCATION] = policy[S.LOCATION].fillna(S.NO_LOCATION).astype(str).to_numpy() \
        if S.LOCATION in policy.columns else S.NO_LOCATION
    defaults = {"OnHand": 0.0, "OnOrder": 0.0, "LeadTimeDays": 0.0, "LeadTimeStdDays": 0.0, "ReviewPeriodDays": 0.0,
                "ReorderPoint": np.nan, "OrderUpTo": np.nan, "OrderQty": np.nan, "SafetyStock": 0.0,
                "UnitCost": np.nan, "MOQ": 0.0, "OrderMultiple": 1.0, "ServiceLevel": np.nan}
    for c, d in defaults.items():
        v = pd.to_numeric(policy[c], errors="coerce").to_numpy(dtype=float) if c in policy.columns \
            else np.full(len(p), np.nan)
        p[c] = v if np.isnan(d) else np.where(np.isfinite(v), v, d)
    p["OrderMultiple"] = np.where(p["OrderMultiple"] > 0, p["OrderMultiple"], 1.0)
    p["OnHand"] = np.maximum(p["OnHand"], 0.0)
    pol = policy["Policy"].astype(str).to_numpy() if "Policy" in policy.columns else np.full(len(p), "")
    p["Periodic"] = np.where(pol == "(R, S)", True, np.where(pol == "(s, S)", False, p["ReviewPeriodDays"] > 0))
    p["Strategic"] = policy["Strategic"].fillna(False).astype(bool).to_numpy() if "Strategic" in policy.columns \
        else False
    for c in ("Class", "Category", "Supplier"):
        if c in policy.columns:
            p[c] = policy[c].fillna("").astype(str).to_numpy()
    dup = p.duplicated([S.SKU, S.LOCATION], keep=False)
    if dup.any():
        raise InputError(
            f"The inventory policy has {int(dup.sum())} rows for the same SKU-location.",
            [Problem("Policy", "SKU-location listed more than once", "keep one policy row per SKU-location",
                     column=S.SKU, value=f"{s} {l}".strip(), code="E103")
             for s, l in zip(p[S.SKU][dup], p[S.LOCATION][dup])], code="E103")
    return p


def _orders(p: pd.DataFrame, open_orders: pd.DataFrame | None, grid: _Grid, day0: pd.Timestamp,
            first_row: int, notes: list[list[str]], problems: list[Problem]) -> pd.DataFrame:
    """One row per open order on the grid: series index ``i``, Qty, DueDate, Supplier, Period."""
    keys = pd.MultiIndex.from_frame(p[[S.SKU, S.LOCATION]])
    if open_orders is not None:
        oo = validate_open_orders(open_orders, first_row=first_row)
        i = keys.get_indexer(pd.MultiIndex.from_arrays([oo[S.SKU].astype(str), oo[S.LOCATION].astype(str)]))
        # An order without a Location is for the SKU's only location, when it has one.
        blank = (i < 0) & (oo[S.LOCATION].to_numpy() == S.NO_LOCATION)
        if blank.any():
            by_sku = p.groupby(S.SKU).indices
            for k in np.flatnonzero(blank):
                cand = by_sku.get(str(oo[S.SKU].iat[k]))
                if cand is not None and len(cand) == 1:
                    i[k] = int(cand[0])
        for k in np.flatnonzero(i < 0):
            where = f"{oo[S.SKU].iat[k]} {oo[S.LOCATION].iat[k]}".strip()
            problems.append(Problem("OpenOrders", f"no plan for {where}: order ignored",
                                    "check the SKU and Location, or add the SKU to the plan", row=int(oo["Row"].iat[k]),
                                    column=S.SKU, value=where, severity="warning", code="E106"))
        oo = oo[i >= 0].assign(i=i[i >= 0], Source="OpenOrders")
    else:
        lt = p["LeadTimeDays"].to_numpy()
        qty = p["OnOrder"].to_numpy()
        has = qty > 0
        oo = pd.DataFrame({
            "i": np.flatnonzero(has), S.SKU: p[S.SKU][has].to_numpy(), S.LOCATION: p[S.LOCATION][has].to_numpy(),
            "Qty": qty[has], "DueDate": [day0 + pd.Timedelta(days=float(x)) for x in lt[has]],
            "Supplier": p["Supplier"][has].to_numpy() if "Supplier" in p.columns else "", "Order": "",
            "Row": np.nan, "Source": "Items OnOrder after the lead time",
        })
        for k in np.flatnonzero(has):
            notes[k].append(f"OnOrder {qty[k]:,.0f} assumed to arrive after the lead time ({lt[k]:g} days): "
                            "no OpenOrders table")
    per = _period_index(pd.to_datetime(oo["DueDate"]).to_numpy(dtype="datetime64[ns]"), grid.dates[0], grid.freq) \
        if len(oo) else np.zeros(0, dtype=np.int64)
    overdue = per < 0
    for k in np.flatnonzero(overdue):
        notes[int(oo["i"].iat[k])].append(f"order of {oo['Qty'].iat[k]:,.0f} due "
                                          f"{pd.Timestamp(oo['DueDate'].iat[k]):%Y-%m-%d} is overdue: "
                                          "assumed to arrive in the first period")
    oo = oo.assign(Period=np.maximum(per, 0))
    cols = ["i", S.SKU, S.LOCATION, "Qty", "DueDate", "Supplier", "Order", "Row", "Source", "Period"]
    return oo[cols].reset_index(drop=True)


def _schedule(orders: pd.DataFrame, n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Receipts per series and period [n, width] and the total on order per series (incl. beyond)."""
    arr = np.zeros((n, width))
    total = np.zeros(n)
    if len(orders):
        i = orders["i"].to_numpy(dtype=np.int64)
        per = orders["Period"].to_numpy(dtype=np.int64)
        q = orders["Qty"].to_numpy(dtype=float)
        np.add.at(total, i, q)
        inside = per < width
        np.add.at(arr, (i[inside], per[inside]), q[inside])
    return arr, total


# --------------------------------------------------------------------------- projection


def project_inventory(
    policy: pd.DataFrame,
    forecast: pd.DataFrame,
    *,
    open_orders: pd.DataFrame | None = None,
    freq: str,
    start: Any = None,
    lost_sales: bool = True,
    first_row: int = 2,
) -> Projection:
    """Project on hand per SKU-location of ``policy`` over ``forecast``'s horizon.

    ``policy``: the policy table (:data:`engine.policy.POLICY_COLUMNS`; SKU and OnHand
    required, the rest default to no lead time, no open orders, no ordering); ``forecast``:
    SKU, Location, Period (or Date), P50 (P10/P90 optional); ``open_orders``: the raw or
    validated OpenOrders table (``first_row``: its first data row in Excel); ``start``:
    the first day to project (default: the first forecast period; forecast periods
    before the one containing it are dropped, that one counts in full). See the module
    docstring for the conventions.
    """
    freq = normalize_freq(freq)
    p = _policy_arrays(policy)
    grid = _grid(forecast, p, freq, start)
    n, H = len(p), len(grid.dates)
    day0 = grid.dates[0] if start is None else max(pd.Timestamp(start).normalize(), grid.dates[0])
    notes: list[list[str]] = [[] for _ in range(n)]
    problems: list[Problem] = []
    orders = _orders(p, open_orders, grid, day0, first_row, notes, problems)
    width = H + 1
    receipts, on_order = _schedule(orders, n, width)
    F = grid.quantiles["P50"]

    # Committed: no new orders.
    stock = p["OnHand"].to_numpy().copy()
    proj = np.zeros((n, H))
    short = np.zeros((n, H))
    begin = np.zeros((n, H))
    for t in range(H):
        stock = stock + receipts[:, t]
        begin[:, t] = stock
        avail = np.maximum(stock, 0.0)
        short[:, t] = np.maximum(F[:, t] - avail, 0.0)
        stock = stock - (np.minimum(F[:, t], avail) if lost_sales else F[:, t])
        proj[:, t] = np.maximum(stock, 0.0) if lost_sales else stock
    so = short > 1e-9
    has_so = so.any(axis=1)
    t_so = np.where(has_so, so.argmax(axis=1), -1)
    rows = np.arange(n)
    t_safe = np.maximum(t_so, 0)
    start_stock = np.maximum(begin[rows, t_safe], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(F[rows, t_safe] > 0, start_stock / F[rows, t_safe], 0.0)
    # First day with unmet demand: the stock at the period start lasts frac x days.
    so_day = np.floor(np.clip(frac, 0, 1) * grid.days[t_safe] + 1e-9)
    so_date = pd.DatetimeIndex(np.where(has_so, (grid.dates.values[t_safe] + so_day.astype("timedelta64[D]")),
                                        np.datetime64("NaT")))
    so_date = pd.DatetimeIndex([max(d, day0) if not pd.isna(d) else d for d in so_date])

    rec_any = receipts[:, :H] > 0
    has_rec = rec_any.any(axis=1)
    t_rec = np.where(has_rec, rec_any.argmax(axis=1), H)
    next_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    next_qty = np.full(n, np.nan)
    if len(orders):
        o = orders.sort_values(["i", "DueDate"], kind="stable").drop_duplicates("i")
        next_date[o["i"].to_numpy()] = pd.to_datetime(o["DueDate"]).to_numpy(dtype="datetime64[ns]")
        next_qty[o["i"].to_numpy()] = receipts[o["i"].to_numpy(), np.minimum(o["Period"].to_numpy(), width - 1)]
        next_date = np.where(np.isnat(next_date), next_date, np.maximum(next_date, np.datetime64(day0, "ns")))
    before = has_so & (t_so < t_rec)
    upto = np.arange(H)[None, :] < t_rec[:, None]
    short_before = np.where(upto, short, 0.0).sum(axis=1)

    # Planned: the policy's own orders on top, deterministic P50 demand and lead times.
    dpp = days_per_period(freq)
    arrivals = receipts.copy()
    pad = H + int(np.ceil(p["LeadTimeDays"].to_numpy().max(initial=0.0) / dpp)) + 2
    arrivals = np.concatenate([arrivals, np.zeros((n, max(pad - width, 0)))], axis=1)
    committed = arrivals.copy()
    lvl, s_pt, review = _levels(p, H, dpp)
    run = run_inventory(F, net=p["OnHand"].to_numpy(), arrivals=arrivals, pipeline=on_order, level=lvl,
                        reorder_point=s_pt, review=review, lead_time=p["LeadTimeDays"].to_numpy() / dpp,
                        lost_sales=lost_sales, moq=p["MOQ"].to_numpy(), multiple=p["OrderMultiple"].to_numpy())
    planned_rec = (arrivals - committed)[:, :H]
    p_short = run.unmet
    p_so = p_short > 1e-9
    p_has = p_so.any(axis=1)
    p_t = np.where(p_has, p_so.argmax(axis=1), 0)
    p_date = pd.DatetimeIndex(np.where(p_has, grid.dates.values[p_t], np.datetime64("NaT")))
    demand_tot = F.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_fill = np.where(demand_tot > 0, 1.0 - p_short.sum(axis=1) / demand_tot, np.nan)

    horizon_days = grid.days.sum()
    daily = demand_tot / horizon_days if horizon_days > 0 else np.zeros(n)
    on_hand = p["OnHand"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(daily > 0, on_hand / np.where(daily > 0, daily, 1.0), np.inf)
    max_stock = p["OrderUpTo"].to_numpy() + p["OrderMultiple"].to_numpy()
    excess = np.maximum(on_hand + on_order - max_stock, 0.0)
    excess = np.where(np.isfinite(max_stock), excess, 0.0)
    days_to = np.where(has_so, (so_date - day0).days.to_numpy(dtype=float), np.nan)
    source = np.where(on_order > 0, "OpenOrders" if open_orders is not None else "Items OnOrder after the lead time",
                      "none")

    series = pd.DataFrame({
        S.SKU: p[S.SKU], S.LOCATION: p[S.LOCATION], "OnHand": on_hand, "OnOrder": on_order, "DailyDemand": daily,
        "DaysOfCoverage": cover, "NextReceiptDate": pd.DatetimeIndex(next_date), "NextReceiptQty": next_qty,
        "StockoutDate": so_date, "DaysToStockout": days_to, "StockoutBeforeReceipt": before,
        "ShortBeforeReceipt": short_before, "ShortUnits": short.sum(axis=1), "PlannedStockoutDate": p_date,
        "PlannedShortUnits": p_short.sum(axis=1), "PlannedFillRate": p_fill, "MaxStock": max_stock,
        "ExcessUnits": excess, "UnitCost": p["UnitCost"], "ReceiptSource": source,
        "Notes": ["; ".join(x) for x in notes],
    })
    periods = pd.DataFrame({
        S.SKU: np.repeat(p[S.SKU].to_numpy(), H), S.LOCATION: np.repeat(p[S.LOCATION].to_numpy(), H),
        "Period": np.tile(grid.dates.values, n), "Demand": F.ravel(), "Receipts": receipts[:, :H].ravel(),
        "ProjectedOnHand": proj.ravel(), "ShortUnits": short.ravel(), "PlannedReceipts": planned_rec.ravel(),
        "PlannedOnHand": run.on_hand.ravel(), "PlannedShortUnits": p_short.ravel(),
    })
    assumptions = [
        f"Projection from {day0:%Y-%m-%d} over {H} periods with the plan's P50; "
        + ("unmet demand is lost (lost sales)." if lost_sales else "unmet demand is backlogged."),
        "Receipts arrive at the start of the period they are due in; a stock-out date assumes demand spread "
        "evenly over the days of its period.",
        "Max stock = OrderUpTo + one OrderMultiple; on hand + on order above it is excess.",
    ]
    if open_orders is None:
        assumptions.append("No OpenOrders table: each SKU-location's Items OnOrder is assumed to arrive one lead "
                           "time (LeadTimeDays) after the start.")
    return Projection(series[list(PROJECTION_SERIES_COLUMNS)], periods[list(PROJECTION_PERIOD_COLUMNS)], orders,
                      grid.dates, freq, lost_sales, assumptions, problems)


def _levels(p: pd.DataFrame, H: int, dpp: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Order-up-to level, reorder point ((s, S) rows; +inf for (R, S)) and review mask [n, H].

    A series without an OrderUpTo never orders (level -inf)."""
    n = len(p)
    big_s = p["OrderUpTo"].to_numpy()
    s = p["ReorderPoint"].to_numpy()
    periodic = p["Periodic"].to_numpy(dtype=bool)
    level = np.where(np.isfinite(big_s), big_s, -np.inf)
    s_pt = np.where(periodic, np.inf, np.where(np.isfinite(s), s, -np.inf))
    R = np.maximum(np.rint(p["ReviewPeriodDays"].to_numpy() / dpp), 1).astype(np.int64)
    review = (np.arange(H)[None, :] % np.where(periodic, R, 1)[:, None]) == 0
    return level, s_pt, review


# --------------------------------------------------------------------------- KPIs


@dataclass
class KPIs:
    """S&OE KPIs: ``summary`` (KPI, Value, Unit, Definition), ``per_series`` (one row per
    SKU-location) and ``deliveries`` (one row per order line with OnTime/InFull/OTIF; empty
    without a Deliveries table)."""

    summary: pd.DataFrame
    per_series: pd.DataFrame
    deliveries: pd.DataFrame


def execution_kpis(
    projection: Projection,
    *,
    deliveries: pd.DataFrame | None = None,
    as_of: Any = None,
    first_row: int = 2,
) -> KPIs:
    """Fill rate, OTIF, availability, coverage, turnover, stock-outs and excess.

    From the projection (planned: with the policy's own orders): fill rate = P50 demand
    served / demand; availability = share of SKU-location-periods ending with stock;
    coverage = on hand / daily demand (days); turnover = annualised demand / average
    planned on hand (in value where unit costs are known, else units); stock-outs =
    SKU-locations whose committed projection runs out before the next receipt; excess =
    units and value above max stock. From ``deliveries`` (raw or validated Deliveries
    table): shipments of the same Order, SKU and Location are one line (quantities summed,
    the last date counts); a line is on time when delivered on or before the promised date,
    in full when the delivered quantity reaches the promised one; an order is OTIF when all
    its lines are. Lines promised after ``as_of`` (default: the latest date in the table)
    and not yet delivered are still open and left out; promised earlier and not delivered
    count as late and short.
    """
    s = projection.series
    per = projection.periods
    n = len(s)
    H = len(projection.dates)
    demand = per["Demand"].to_numpy().reshape(n, H) if n else np.zeros((0, H))
    p_short = per["PlannedShortUnits"].to_numpy().reshape(n, H) if n else np.zeros((0, H))
    p_oh = per["PlannedOnHand"].to_numpy().reshape(n, H) if n else np.zeros((0, H))
    cost = s["UnitCost"].to_numpy(dtype=float)
    known = np.isfinite(cost)
    dem_tot = demand.sum(axis=1)
    avail = (p_oh > 1e-9).mean(axis=1) if H else np.full(n, np.nan)
    ppy = periods_per_year(projection.freq)
    avg_oh = p_oh.mean(axis=1) if H else np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        turnover = np.where(avg_oh > 0, dem_tot / max(H, 1) * ppy / avg_oh, np.nan)
    per_series = pd.DataFrame({
        S.SKU: s[S.SKU], S.LOCATION: s[S.LOCATION], "FillRate": s["PlannedFillRate"], "Availability": avail,
        "DaysOfCoverage": s["DaysOfCoverage"], "Turnover": turnover, "StockoutDate": s["StockoutDate"],
        "StockoutBeforeReceipt": s["StockoutBeforeReceipt"], "ExcessUnits": s["ExcessUnits"],
        "ExcessValue": s["ExcessUnits"].to_numpy() * cost,
    })
    dsum = dem_tot.sum()
    w = np.where(known, cost, 0.0)
    value_turn = (dem_tot * w).sum() / max(H, 1) * ppy / (avg_oh * w).sum() if (avg_oh * w).sum() > 0 else np.nan
    unit_turn = dsum / max(H, 1) * ppy / avg_oh.sum() if avg_oh.sum() > 0 else np.nan
    cover = s["DaysOfCoverage"].to_numpy(dtype=float)
    finite_cover = cover[np.isfinite(cover)]
    rows: list[tuple[str, float, str, str]] = [
        ("Fill rate (projected)", 1.0 - p_short.sum() / dsum if dsum > 0 else np.nan, "share",
         "P50 demand served from stock over the horizon, with the policy's planned orders"),
        ("Availability (projected)", float(avail.mean()) if n else np.nan, "share",
         "share of SKU-location-periods ending with stock on hand"),
        ("In stock now", float((s["OnHand"] > 0).mean()) if n else np.nan, "share",
         "share of SKU-locations with stock on hand today"),
        ("Coverage (median)", float(np.median(finite_cover)) if len(finite_cover) else np.nan, "days",
         "on hand / daily P50 demand, median over SKU-locations with demand"),
        ("Turnover (projected)", value_turn if np.isfinite(value_turn) else unit_turn, "turns per year",
         "annualised demand / average planned on hand" + (" (value)" if np.isfinite(value_turn) else " (units)")),
        ("Stock-outs before next receipt", float(s["StockoutBeforeReceipt"].sum()), "SKU-locations",
         "committed projection (no new orders) runs out before the next open order arrives"),
        ("Units short before next receipt", float(s["ShortBeforeReceipt"].sum()), "units",
         "P50 demand not served before the next receipt"),
        ("Excess units", float(s["ExcessUnits"].sum()), "units", "on hand + on order above max stock"),
        ("Excess value", float(np.nansum(s["ExcessUnits"].to_numpy() * cost)), "currency",
         "excess units x unit cost (SKU-locations with a UnitCost)"),
    ]
    lines = pd.DataFrame(columns=["Order", S.SKU, S.LOCATION, "PromisedDate", "PromisedQty", "DeliveredDate",
                                  "DeliveredQty", "OnTime", "InFull", "OTIF"])
    if deliveries is not None:
        lines, d_rows = _otif(deliveries, as_of, first_row)
        rows.extend(d_rows)
    summary = pd.DataFrame(rows, columns=["KPI", "Value", "Unit", "Definition"])
    return KPIs(summary, per_series, lines)


def _otif(deliveries: pd.DataFrame, as_of: Any, first_row: int) -> tuple[pd.DataFrame, list[tuple]]:
    d = validate_deliveries(deliveries, first_row=first_row)
    keys = ["Order", S.SKU, S.LOCATION]
    g = d.groupby(keys, sort=False, as_index=False).agg(
        PromisedDate=("PromisedDate", "min"), PromisedQty=("PromisedQty", "max"),
        DeliveredDate=("DeliveredDate", "max"), DeliveredQty=("DeliveredQty", "sum"))
    ref = pd.Timestamp(as_of).normalize() if as_of is not None else \
        pd.concat([d["PromisedDate"], d["DeliveredDate"]]).max()
    delivered = g["DeliveredQty"] > 0
    due = g["PromisedDate"] <= ref
    evaluated = (delivered | due).to_numpy()
    on_time = (delivered & (g["DeliveredDate"] <= g["PromisedDate"])).to_numpy()
    in_full = (g["DeliveredQty"] >= g["PromisedQty"] - 1e-9).to_numpy()
    g["OnTime"] = on_time
    g["InFull"] = in_full
    g["OTIF"] = on_time & in_full
    g["Evaluated"] = evaluated
    e = g[evaluated]
    orders_ok = e.groupby("Order", sort=False)["OTIF"].all()
    promised = e["PromisedQty"].sum()
    rows = [
        ("OTIF (orders)", float(orders_ok.mean()) if len(orders_ok) else np.nan, "share",
         "orders whose every line arrived on or before the promised date and in full"),
        ("OTIF (lines)", float(e["OTIF"].mean()) if len(e) else np.nan, "share",
         "order lines delivered on time and in full"),
        ("On time (lines)", float(e["OnTime"].mean()) if len(e) else np.nan, "share",
         "order lines delivered on or before the promised date"),
        ("In full (lines)", float(e["InFull"].mean()) if len(e) else np.nan, "share",
         "order lines delivered with at least the promised quantity"),
        ("Delivery fill rate", float(np.minimum(e["DeliveredQty"], e["PromisedQty"]).sum() / promised)
         if promised > 0 else np.nan, "share", "units delivered (up to the promised quantity) / units promised"),
    ]
    return g, rows

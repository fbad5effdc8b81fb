"""What-if scenarios: Monte Carlo simulation of the inventory system over the plan horizon.

Each SKU-location is simulated ``paths`` times from today's state (on hand, open orders,
see :mod:`engine.projection`) under its current policy ((s, S) or (R, S) from the policy
table, pack rules included), with random demand and random lead times, on
:func:`engine.simulation.run_inventory`. A scenario changes the inputs, never the policy
(except a service-level change): it answers "what happens to service if ...", and the
mitigations then show what acting would win back.

Demand distribution, per SKU and period, from the plan's P10/P50/P90: a two-piece fit that
reproduces all three published quantiles exactly. Below the median a normal piece with
sd (P50 - P10) / 1.2816, floored at 0 (intermittent SKUs keep their mass at zero); above
it a lognormal piece P50 * exp(s * z), s = ln(P90 / P50) / 1.2816, because demand
spikes are right-skewed and a normal tail understates them (a normal piece when P50 is 0).
Over time the standard-normal scores follow an AR(1) with lag-1 correlation
``autocorrelation`` (default 0.3): forecast errors of consecutive periods are positively
correlated in practice (a level that is off stays off for a while), which widens demand
over a lead time compared with independent periods; 0 gives independent periods.

Lead times: each order placed in the simulation takes LeadTimeDays + N(0, LeadTimeStdDays)
days (whole periods, rounded, at least 0). Open orders arrive on their due date.

Randomness is drawn per SKU-location from a generator seeded with ``seed`` and a hash of
the SKU-location, so the baseline, every scenario and every mitigation meet exactly the
same demand scores and lead-time draws (common random numbers: differences come from the
scenario, not from noise), and adding a SKU does not change the others' draws.

The ``Scenario`` table (one change per row; rows with the same Scenario name form one
scenario; header names are matched case-insensitively):

=========  ==========================================================================
Scenario   name, e.g. "ACME 10 days late"
Type       Supplier delay | Demand change (aliases: Promotion, Promo, Demand shock,
           Uplift) | Driver | Service level | Lead time
Target     All (default) | SKU | Category | Supplier | Location
Name       which SKU, category, supplier or location (blank for All)
Value      Supplier delay, Lead time: days (+10, -3); Demand change: percent (30, "30%"
           or 0.3 = +30 %; -20 = a drop); Driver: change in the driver's units (+3 for
           a 3-degree heatwave) or a percent ("2%": multiply by 1.02, so CPI "2%" over a
           year is about +2 pp of inflation); Service level: the new target (0.98 or 98)
Start, End optional dates limiting the change (orders due / placed, periods affected)
Dip        optional, Demand change only: percent lost in the period after End
           (post-promotion dip)
Driver     Driver type only: the driver column (Temperature, CPI, ...)
=========  ==========================================================================

Semantics: *Supplier delay* delays the open orders (due between Start and End) of the
targeted supplier/SKUs by Value days, and new orders placed between Start and End too.
*Lead time* changes the lead time of new orders only (open orders keep their dates).
*Demand change* scales P10/P50/P90 in the targeted periods. *Driver* pushes the changed
driver values through the demand model via ``driver_forecast`` and adds the model's change
per quantile to the published plan (so a plan gated to a baseline keeps its level).
*Service level* re-sizes the safety stock as SS x z(new) / z(old) (the normal scaling) and
moves the reorder point and order-up-to level by the difference.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.signal import lfilter

from . import schema as S
from .errors import InputError, Problem, ProblemCollector
from .frequency import days_per_period, normalize_freq
from .inventory import round_to_pack
from .progress import ProgressCallback, emit
from .projection import (_blank, _columns, _date, _Grid, _grid, _levels, _number, _orders, _period_index,
                         _policy_arrays, _schedule)
from .simulation import run_inventory

__all__ = [
    "SCENARIO_COLUMNS", "SCENARIO_TYPES", "SCENARIO_TARGETS", "SUMMARY_COLUMNS", "SERIES_COLUMNS",
    "MITIGATION_COLUMNS", "ScenarioChange", "DriverChange", "DriverForecast", "ScenarioResult",
    "parse_scenarios", "run_scenarios", "model_driver_forecast", "demand_from_quantiles",
]

_log = logging.getLogger(__name__)

SCENARIO_COLUMNS: tuple[str, ...] = ("Scenario", "Type", "Target", "Name", "Value", "Start", "End", "Dip", "Driver")
SCENARIO_TYPES: tuple[str, ...] = ("supplier delay", "demand change", "driver", "service level", "lead time")
SCENARIO_TARGETS: tuple[str, ...] = ("All", "SKU", "Category", "Supplier", "Location")
_TYPE_ALIASES = {
    "supplierdelay": "supplier delay", "delay": "supplier delay", "demandchange": "demand change",
    "promotion": "demand change", "promo": "demand change", "demandshock": "demand change",
    "uplift": "demand change", "shock": "demand change", "driver": "driver", "driverscenario": "driver",
    "servicelevel": "service level", "servicelevelchange": "service level", "leadtime": "lead time",
    "leadtimechange": "lead time",
}
_ALLOWED_TARGETS = {
    "supplier delay": ("All", "SKU", "Category", "Supplier", "Location"),
    "lead time": ("All", "SKU", "Category", "Supplier", "Location"),
    "demand change": ("All", "SKU", "Category", "Location"),
    "service level": ("All", "SKU", "Category", "Location"),
    "driver": ("All", "Location"),
}
SUMMARY_COLUMNS: tuple[str, ...] = (
    "Scenario", "What changes", "Fill rate (baseline)", "Fill rate (scenario)", "Fill rate change (pp)",
    "Cycle service level (baseline)", "Cycle service level (scenario)", "Stock-out units (baseline)",
    "Stock-out units (scenario)", "First stock-out (baseline)", "First stock-out (scenario)",
    "Inventory value (baseline)", "Inventory value (scenario)", "SKUs out of stock (baseline)",
    "SKUs out of stock (scenario)", "SKUs that stock out (scenario)", "New stock-outs vs baseline",
    "Best mitigation",
)
SERIES_COLUMNS: tuple[str, ...] = (
    "Scenario", S.SKU, S.LOCATION, "Affected", "Fill rate (baseline)", "Fill rate (scenario)",
    "Stock-out probability (baseline)", "Stock-out probability (scenario)", "Stock-out units (baseline)",
    "Stock-out units (scenario)", "First stock-out (baseline)", "First stock-out (scenario)",
    "Inventory value (baseline)", "Inventory value (scenario)",
)
MITIGATION_COLUMNS: tuple[str, ...] = (
    "Scenario", "Rank", S.SKU, S.LOCATION, "Action", "Detail", "Qty", "Fill rate (scenario)",
    "Fill rate (with action)", "Stock-out units (scenario)", "Stock-out units (with action)", "Units saved",
    "Value saved", "Effect",
)
_Z90 = float(stats.norm.ppf(0.9))
_CHUNK_ROWS = 1 << 16       # series x paths simulated at once: ~0.5 MB per float column
_MAX_LISTED = 10            # SKUs named in one summary cell


@dataclass(frozen=True)
class ScenarioChange:
    """One validated row of the Scenario table (``kind`` one of :data:`SCENARIO_TYPES`;
    ``value`` a fraction for demand changes and service levels, days for delays and lead
    times, driver units or a fraction when ``relative``)."""

    scenario: str
    kind: str
    target: str
    name: str
    value: float
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    dip: float = 0.0
    driver: str = ""
    relative: bool = False
    row: int = 0

    def describe(self) -> str:
        who = "all SKUs" if self.target == "All" else f"{self.target} {self.name}"
        when = ""
        if self.start is not None or self.end is not None:
            a = f"{self.start:%Y-%m-%d}" if self.start is not None else "now"
            b = f"{self.end:%Y-%m-%d}" if self.end is not None else "the horizon end"
            when = f" from {a} to {b}"
        if self.kind == "supplier delay":
            return f"{who}: deliveries {self.value:+g} days late{when}"
        if self.kind == "lead time":
            return f"{who}: lead time {self.value:+g} days for new orders{when}"
        if self.kind == "demand change":
            dip = f", then -{self.dip:.0%} dip" if self.dip else ""
            return f"{who}: demand {self.value:+.0%}{when}{dip}"
        if self.kind == "service level":
            return f"{who}: service level {self.value:.1%}"
        v = f"{self.value:+.1%}" if self.relative else f"{self.value:+g}"
        return f"{self.driver} {v} ({'all locations' if self.target == 'All' else self.name}){when}"


@dataclass(frozen=True)
class DriverChange:
    """A change of one driver for :data:`DriverForecast`: add ``value`` (or multiply by
    1 + value when ``relative``) for ``location`` (None: all) between ``start`` and ``end``."""

    driver: str
    value: float
    relative: bool = False
    location: str | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


#: Forecast under changed drivers: given the changes (empty = as planned), a frame with
#: SKU, Location, Period (or Date), P10, P50, P90, e.g. :func:`model_driver_forecast`.
DriverForecast = Callable[[Sequence[DriverChange]], pd.DataFrame]


@dataclass
class ScenarioResult:
    """``summary`` (:data:`SUMMARY_COLUMNS`, one row per scenario next to the baseline),
    ``series`` (:data:`SERIES_COLUMNS`, per scenario and SKU-location), ``mitigations``
    (:data:`MITIGATION_COLUMNS`, ranked per scenario), ``baseline`` (per SKU-location),
    ``changes`` (the validated rows) and ``assumptions`` to show next to the numbers."""

    summary: pd.DataFrame
    series: pd.DataFrame
    mitigations: pd.DataFrame
    baseline: pd.DataFrame
    changes: list[ScenarioChange]
    assumptions: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- demand draws


def demand_from_quantiles(z: np.ndarray, p10: np.ndarray, p50: np.ndarray, p90: np.ndarray) -> np.ndarray:
    """Demand at standard-normal scores ``z`` for the two-piece fit of P10/P50/P90 (module
    docstring): z = -1.2816 gives P10, 0 gives P50, +1.2816 gives P90; never negative."""
    lo_sd = np.maximum(p50 - p10, 0) / _Z90
    with np.errstate(divide="ignore", invalid="ignore"):
        s_up = np.where(p50 > 0, np.log(np.maximum(p90, p50) / np.where(p50 > 0, p50, 1)) / _Z90, 0)
    up_lin = np.where(p50 > 0, 0, np.maximum(p90 - p50, 0) / _Z90)
    zp = np.maximum(z, 0)
    # p50 > 0: lognormal piece (up_lin is 0); p50 = 0: exp(0) = 1 leaves the linear piece.
    up = p50 * np.exp(s_up * zp) + up_lin * zp
    return np.where(z >= 0, up, np.maximum(p50 + lo_sd * z, 0))


def _series_seed(seed: int, sku: str, loc: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(f"{sku}\x1f{loc}".encode())])


# --------------------------------------------------------------------------- the Scenario table


def _kind(v: Any) -> str | None:
    return _TYPE_ALIASES.get(re.sub(r"[\s_\-]+", "", str(v)).lower())


def _percent(v: Any) -> tuple[float | None, bool]:
    """A percent cell: "30%" -> 0.30; 30 -> 0.30; 0.3 -> 0.30 (Excel's % format); None if unreadable.
    The flag says whether a % sign was written."""
    if isinstance(v, str) and v.strip().endswith("%"):
        x = _number(v.strip()[:-1].strip())
        return (None if x is None else x / 100.0), True
    x = _number(v)
    if x is None:
        return None, False
    return (x if abs(x) <= 1 else x / 100.0), False


def parse_scenarios(
    table: pd.DataFrame,
    *,
    policy: pd.DataFrame,
    items: pd.DataFrame | None = None,
    open_orders: pd.DataFrame | None = None,
    drivers: Sequence[str] | None = None,
    driver_model: bool = True,
    first_row: int = 2,
) -> list[ScenarioChange]:
    """Validate the Scenario table (:data:`SCENARIO_COLUMNS`; see the module docstring).

    Every problem is collected and raised as one InputError naming table "Scenario", the
    Excel row (``first_row`` = row of the first data row), the column, the value and the
    fix: unknown Type or Target, a Name that is not in the plan (SKU, Location), Items
    (Category, Supplier) or OpenOrders (Supplier), an unreadable Value, Start or End, End
    before Start, a service level outside (0, 1), a Driver row without a Driver (or a
    driver the data does not have, when ``drivers`` lists them) or without a demand model
    (``driver_model`` False).
    """
    table_name = "Scenario"
    col = ProblemCollector()
    found = _columns(table, table_name, SCENARIO_COLUMNS, ("Scenario", "Type", "Value"), col)
    col.raise_if_errors(f"Table {table_name} cannot be used")
    names = _target_names(policy, items, open_orders)
    known_drivers = {str(d).lower(): str(d) for d in drivers} if drivers is not None else None
    out: list[ScenarioChange] = []
    cell = {c: (table[found[c]].tolist() if c in found else [None] * len(table)) for c in SCENARIO_COLUMNS}
    row_of = (pd.to_numeric(table["Row"], errors="coerce").fillna(-1).astype(int).tolist()
              if "Row" in table.columns else list(range(first_row, first_row + len(table))))
    for i in range(len(table)):
        row = row_of[i]
        vals = {c: cell[c][i] for c in SCENARIO_COLUMNS}
        if all(_blank(v) for v in vals.values()):
            continue  # an empty row in the middle of a table is not a mistake worth refusing

        def bad(column: str, message: str, fix: str, code: str = "E102") -> None:
            col.add(table=table_name, row=row, column=column, value=None if _blank(vals[column]) else vals[column],
                    message=message, fix=fix, code=code)

        scen = "" if _blank(vals["Scenario"]) else str(vals["Scenario"]).strip()
        if not scen:
            bad("Scenario", "the scenario has no name", "name it, e.g. \"ACME 10 days late\"; rows with the same "
                "name form one scenario")
        kind = None if _blank(vals["Type"]) else _kind(vals["Type"])
        if kind is None:
            bad("Type", "unknown scenario type" if not _blank(vals["Type"]) else "Type is blank",
                "use one of: Supplier delay, Demand change (or Promotion), Driver, Service level, Lead time")
        target = "All" if _blank(vals["Target"]) else str(vals["Target"]).strip()
        target = next((t for t in SCENARIO_TARGETS if t.lower() == target.lower()), target)
        name = "" if _blank(vals["Name"]) else str(vals["Name"]).strip()
        if target not in SCENARIO_TARGETS:
            bad("Target", "unknown target", "use All, SKU, Category, Supplier or Location")
        elif kind is not None and target not in _ALLOWED_TARGETS[kind]:
            bad("Target", f"a {kind} scenario cannot target a {target}",
                f"use {', '.join(_ALLOWED_TARGETS[kind])}")
        elif target != "All":
            pool = names[target]
            match = next((x for x in pool if x.lower() == name.lower()), None)
            if not name:
                bad("Name", f"no {target} named", f"enter the {target} this row applies to, or set Target to All")
            elif match is None:
                where = {"SKU": "the plan", "Location": "the plan", "Category": "the Items table",
                         "Supplier": "the Items or OpenOrders table"}[target]
                fix = (f"use a {target} from {where}" + (f", e.g. {sorted(pool)[0]}" if pool else
                       f" (it has no {target} column)"))
                col.add(table=table_name, row=row, column="Name", value=name, message=f"{target} {name!r} not found "
                        f"in {where}", fix=fix, code="E106")
            else:
                name = match
        value = math.nan
        relative = False
        if kind == "demand change":
            x, _ = _percent(vals["Value"])
            if x is None or x <= -1:
                bad("Value", "demand change is not a percent above -100 %" if x is not None else
                    "demand change is not a number", "enter the change in percent, e.g. 30 or 30% for +30 %")
            else:
                value = x
        elif kind == "service level":
            x, _ = _percent(vals["Value"])
            if x is None or not 0 < x < 1:
                bad("Value", "service level must be between 0 and 100 %", "enter the new target, e.g. 98% or 0.98")
            else:
                value = x
        elif kind in ("supplier delay", "lead time"):
            v = vals["Value"]
            x = None if _blank(v) else _number(re.sub(r"\s*(days?|d)\s*$", "", v, flags=re.I)
                                               if isinstance(v, str) else v)
            if x is None:
                bad("Value", "number of days is not a number", "enter days, e.g. 10 (or -3 for earlier)")
            else:
                value = x
        elif kind == "driver":
            v = vals["Value"]
            if isinstance(v, str) and v.strip().endswith("%"):
                x, relative = _percent(v)
            else:
                x = None if _blank(v) else _number(v)
            if x is None:
                bad("Value", "driver change is not a number", "enter the change in the driver's units, e.g. 3, "
                    "or a percent, e.g. 2%")
            else:
                value = x
        dip = 0.0
        if not _blank(vals["Dip"]):
            x, _ = _percent(vals["Dip"])
            if kind != "demand change":
                bad("Dip", "a dip only applies to a demand change", "clear the Dip cell")
            elif x is None or not 0 <= x < 1:
                bad("Dip", "dip is not a percent between 0 and 100", "enter the post-promotion dip, e.g. 15%")
            else:
                dip = x
        start = end = None
        for c in ("Start", "End"):
            if not _blank(vals[c]):
                d = _date(vals[c])
                if d is None:
                    bad(c, f"{c} cannot be read as a date", f"enter {c} as a date, e.g. 2024-03-15", code="E105")
                elif c == "Start":
                    start = d
                else:
                    end = d
        if start is not None and end is not None and end < start:
            bad("End", "End is before Start", "swap the dates or correct End", code="E110")
        driver = "" if _blank(vals["Driver"]) else str(vals["Driver"]).strip()
        if kind == "driver":
            if not driver:
                bad("Driver", "no driver named", "enter the driver column to change, e.g. Temperature")
            elif known_drivers is not None and driver.lower() not in known_drivers:
                col.add(table=table_name, row=row, column="Driver", value=driver, message="driver not in the data",
                        fix=f"use one of: {', '.join(sorted(known_drivers.values())) or '(no drivers in the data)'}",
                        code="E106")
            elif known_drivers is not None:
                driver = known_drivers[driver.lower()]
            if not driver_model:
                bad("Type", "driver scenarios need the trained demand model", "refresh the plan first, or use a "
                    "Demand change instead", code="E201")
        elif driver:
            bad("Driver", f"a Driver only applies to a Driver scenario", "clear the Driver cell")
        if scen and kind is not None and math.isfinite(value):
            out.append(ScenarioChange(scen, kind, target, name, float(value), start, end, dip, driver, relative, row))
    col.raise_if_errors(f"Table {table_name} cannot be used")
    return out


def _target_names(policy: pd.DataFrame, items: pd.DataFrame | None,
                  open_orders: pd.DataFrame | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {
        "SKU": set(policy[S.SKU].astype(str)),
        "Location": set(policy[S.LOCATION].fillna("").astype(str)) - {""} if S.LOCATION in policy.columns else set(),
        "Category": set(), "Supplier": set(),
    }
    for frame in (policy, items, open_orders):
        if frame is None:
            continue
        for c in ("Category", "Supplier"):
            hit = next((h for h in frame.columns if str(h).strip().lower() == c.lower()), None)
            if hit is not None:
                out[c] |= {str(v).strip() for v in frame[hit] if not _blank(v)}
    return out


# --------------------------------------------------------------------------- simulation state


@dataclass
class _State:
    """Everything one simulation run needs, per series [n] or series x period [n, H]."""

    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    on_hand: np.ndarray
    orders: pd.DataFrame           # open orders with Period (0-based)
    level: np.ndarray
    reorder: np.ndarray | None
    review: np.ndarray
    lead: np.ndarray               # periods
    sd_lead: np.ndarray            # periods
    extra: np.ndarray              # [n, H] periods added to orders placed then
    moq: np.ndarray
    multiple: np.ndarray


@dataclass
class _Stats:
    """Per-series Monte Carlo outcome (means over paths)."""

    demand: np.ndarray
    served: np.ndarray
    short: np.ndarray
    p_stockout: np.ndarray
    first: np.ndarray              # median first stock-out period among paths that stock out (NaN: none)
    on_hand: np.ndarray            # mean on hand over periods and paths
    cycles: np.ndarray
    so_cycles: np.ndarray

    @property
    def fill_rate(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.demand > 0, self.served / self.demand, 1.0)


def _simulate(st: _State, keys: pd.DataFrame, idx: np.ndarray, *, paths: int, seed: int, phi: float,
              lost_sales: bool, extra_receipts: np.ndarray | None = None, extra_on_hand: np.ndarray | None = None
              ) -> _Stats:
    """Monte Carlo of the series ``idx``; ``extra_receipts`` [len(idx), H] and ``extra_on_hand``
    [len(idx)] add a mitigation's units."""
    H = st.p50.shape[1]
    m = len(idx)
    pad = H + int(np.ceil(np.max(st.lead[idx] + st.extra[idx].max(axis=1, initial=0.0) + 4 * st.sd_lead[idx],
                                 initial=0.0))) + 2
    arr_all, pipe_all = _schedule(st.orders[st.orders["i"].isin(idx)].assign(
        i=lambda f: pd.Index(idx).get_indexer(f["i"])), m, pad)
    if extra_receipts is not None:
        arr_all[:, :H] += extra_receipts
        pipe_all += extra_receipts.sum(axis=1)
    oh_all = st.on_hand[idx] + (0.0 if extra_on_hand is None else extra_on_hand)
    res = {k: np.zeros(m) for k in ("demand", "served", "short", "p", "first", "oh", "cyc", "socyc")}
    per_chunk = max(1, _CHUNK_ROWS // max(paths, 1))
    c = math.sqrt(1.0 - phi * phi)
    for lo in range(0, m, per_chunk):
        sl = slice(lo, min(lo + per_chunk, m))
        sub = idx[sl]
        k = len(sub)
        rows = k * paths
        # Period-major [H, series, path] in float32: the layout run_inventory steps through,
        # at half the memory traffic (demand needs no more than 7 digits).
        e = np.empty((H, k, paths), dtype=np.float32)
        ln = np.empty((H, k, paths), dtype=np.float32)
        for j, i in enumerate(sub):
            g = _series_seed(seed, keys[S.SKU].iat[i], keys[S.LOCATION].iat[i])
            e[:, j, :] = g.standard_normal((H, paths), dtype=np.float32)
            ln[:, j, :] = g.standard_normal((H, paths), dtype=np.float32)
        if phi:
            e[0] /= c  # so the AR(1) starts in its stationary N(0, 1)
            e = lfilter(np.float32([c]), np.float32([1.0, -phi]), e, axis=0).astype(np.float32, copy=False)
        q = [a[sub].T[:, :, None].astype(np.float32) for a in (st.p10, st.p50, st.p90)]
        y = demand_from_quantiles(e, *q).reshape(H, rows)
        del e
        def rep(a: np.ndarray) -> np.ndarray:   # per-series values to per-path rows
            return np.repeat(a, paths, axis=0)

        def rep_t(a: np.ndarray) -> np.ndarray:  # [series, X] to period-major [X, rows]
            return np.repeat(a.T, paths, axis=1)

        run = run_inventory(
            y, net=rep(oh_all[sl]), arrivals=rep_t(arr_all[sl]), pipeline=rep(pipe_all[sl]),
            level=rep(st.level[sub]), reorder_point=None if st.reorder is None else rep(st.reorder[sub]),
            review=rep_t(st.review[sub]), lead_time=rep(st.lead[sub]), lead_noise=ln.reshape(H, rows),
            sd_lead_time=rep(st.sd_lead[sub]), extra_lead=rep_t(st.extra[sub]) if st.extra[sub].any() else None,
            lost_sales=lost_sales, moq=rep(st.moq[sub]), multiple=rep(st.multiple[sub]), record=False,
            period_major=True,
        )
        shape = (k, paths)
        res["demand"][sl] = run.demand.reshape(shape).mean(axis=1)
        res["served"][sl] = run.served.reshape(shape).mean(axis=1)
        res["short"][sl] = (run.demand - run.served).reshape(shape).mean(axis=1)
        first = run.first_stockout.reshape(shape).astype(float)
        hit = first >= 0
        res["p"][sl] = hit.mean(axis=1)
        med = np.full(k, np.nan)
        any_hit = hit.any(axis=1)
        if any_hit.any():
            med[any_hit] = np.nanmedian(np.where(hit, first, np.nan)[any_hit], axis=1)
        res["first"][sl] = med
        res["oh"][sl] = run.mean_on_hand.reshape(shape).mean(axis=1)
        res["cyc"][sl] = run.cycles.reshape(shape).sum(axis=1)
        res["socyc"][sl] = run.stockout_cycles.reshape(shape).sum(axis=1)
    return _Stats(res["demand"], res["served"], res["short"], res["p"], res["first"], res["oh"], res["cyc"],
                  res["socyc"])


# --------------------------------------------------------------------------- applying scenarios


def _attribute(keys: pd.DataFrame, frames: Sequence[pd.DataFrame | None], column: str) -> np.ndarray:
    """``column`` per series from the first frame that has it (exact SKU-location, else a
    blank-Location row of the SKU); "" when none."""
    out = np.full(len(keys), "", dtype=object)
    for f in frames:
        if f is None or not len(f):
            continue
        hit = next((h for h in f.columns if str(h).strip().lower() == column.lower()), None)
        if hit is None:
            continue
        g = pd.DataFrame({S.SKU: f[S.SKU].astype(str),
                          S.LOCATION: f[S.LOCATION].fillna("").astype(str) if S.LOCATION in f.columns else "",
                          "v": f[hit].where(f[hit].notna(), "").astype(str).str.strip()})
        g = g[g["v"] != ""]
        exact = keys.merge(g.drop_duplicates([S.SKU, S.LOCATION]), on=[S.SKU, S.LOCATION], how="left")["v"]
        generic = keys[[S.SKU]].merge(g.drop_duplicates(S.SKU)[[S.SKU, "v"]], on=S.SKU, how="left")["v"]
        v = exact.where(exact.notna(), generic).fillna("").to_numpy(dtype=object)
        out = np.where(out == "", v, out)
    return out


def _series_mask(ch: ScenarioChange, keys: pd.DataFrame, category: np.ndarray, supplier: np.ndarray) -> np.ndarray:
    if ch.target == "All":
        return np.ones(len(keys), dtype=bool)
    col = {"SKU": keys[S.SKU].to_numpy(dtype=object), "Location": keys[S.LOCATION].to_numpy(dtype=object),
           "Category": category, "Supplier": supplier}[ch.target]
    return np.array([str(x).lower() == ch.name.lower() for x in col], dtype=bool)


def _period_mask(ch: ScenarioChange, grid: _Grid) -> np.ndarray:
    starts = grid.dates
    ends = starts + pd.to_timedelta(grid.days, unit="D")
    m = np.ones(len(starts), dtype=bool)
    if ch.start is not None:
        m &= np.asarray(ends > ch.start)
    if ch.end is not None:
        m &= np.asarray(starts <= ch.end)
    return m


def _apply(base: _State, changes: Sequence[ScenarioChange], *, grid: _Grid, keys: pd.DataFrame, p: pd.DataFrame,
           category: np.ndarray, supplier: np.ndarray, dpp: float, driver_delta: dict[str, np.ndarray] | None
           ) -> tuple[_State, np.ndarray]:
    """The scenario's state and the series it touches."""
    st = replace(base, p10=base.p10.copy(), p50=base.p50.copy(), p90=base.p90.copy(), orders=base.orders.copy(),
                 level=base.level.copy(), reorder=None if base.reorder is None else base.reorder.copy(),
                 extra=base.extra.copy(), lead=base.lead.copy())
    touched = np.zeros(len(keys), dtype=bool)
    H = st.p50.shape[1]
    for ch in changes:
        sm = _series_mask(ch, keys, category, supplier)
        pm = _period_mask(ch, grid)
        if ch.kind == "demand change":
            f = np.where(sm[:, None] & pm[None, :], 1.0 + ch.value, 1.0)
            if ch.dip and pm.any():
                after = int(np.flatnonzero(pm)[-1]) + 1
                if after < H:
                    f[sm, after] *= 1.0 - ch.dip
            for a in (st.p10, st.p50, st.p90):
                a *= f
            touched |= sm & pm.any()
        elif ch.kind == "service level":
            ss = p["SafetyStock"].to_numpy()
            old = p["ServiceLevel"].to_numpy()
            ok = sm & np.isfinite(old) & (old > 0.5) & (old < 1) & (ss > 0)
            z_old = stats.norm.ppf(np.where(ok, old, 0.75))
            shift = np.where(ok, ss * stats.norm.ppf(ch.value) / z_old - ss, 0.0)
            st.level = st.level + shift
            if st.reorder is not None:
                st.reorder = np.where(np.isfinite(st.reorder), st.reorder + shift, st.reorder)
            touched |= ok
        elif ch.kind in ("supplier delay", "lead time"):
            # New orders placed in the window take longer (or shorter).
            st.extra[np.ix_(sm, pm)] += ch.value / dpp
            touched |= sm & pm.any()
            if ch.kind == "supplier delay" and len(st.orders):
                o = st.orders
                hit = sm[o["i"].to_numpy()]
                if ch.target == "Supplier":
                    own = o["Supplier"].astype(str).str.lower().to_numpy()
                    # an order's own supplier wins over the SKU's usual one
                    hit = np.where(own != "", own == ch.name.lower(), hit)
                due = pd.to_datetime(o["DueDate"])
                if ch.start is not None:
                    hit &= (due >= ch.start).to_numpy()
                if ch.end is not None:
                    hit &= (due <= ch.end).to_numpy()
                new_due = due + pd.to_timedelta(np.where(hit, ch.value, 0.0), unit="D")
                per = _period_of(new_due, grid)
                st.orders = o.assign(DueDate=new_due, Period=np.where(hit, np.maximum(per, 0), o["Period"]))
                touched[o["i"].to_numpy()[hit]] = True
    if driver_delta is not None:  # all Driver rows of the scenario went through the model at once
        for name, a in (("P10", st.p10), ("P50", st.p50), ("P90", st.p90)):
            a += driver_delta[name]
            np.maximum(a, 0.0, out=a)
        touched |= np.abs(driver_delta["P50"]).sum(axis=1) > 1e-9
    # keep the quantiles ordered after the changes
    st.p10 = np.minimum(st.p10, st.p50)
    st.p90 = np.maximum(st.p90, st.p50)
    return st, touched


def _period_of(dates: pd.Series, grid: _Grid) -> np.ndarray:
    return _period_index(pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]"), grid.dates[0], grid.freq)


def _driver_delta(changes: Sequence[ScenarioChange], driver_forecast: DriverForecast, base_fc: pd.DataFrame,
                  keys: pd.DataFrame, freq: str, grid: _Grid) -> dict[str, np.ndarray]:
    req = [DriverChange(c.driver, c.value, c.relative, None if c.target == "All" else c.name, c.start, c.end)
           for c in changes if c.kind == "driver"]
    mod = driver_forecast(req)
    a = _grid(base_fc, keys, freq, grid.dates[0])
    b = _grid(mod, keys, freq, grid.dates[0])
    H = len(grid.dates)
    out = {}
    for q in ("P10", "P50", "P90"):
        d = np.zeros((len(keys), H))
        w = min(H, a.quantiles[q].shape[1], b.quantiles[q].shape[1])
        d[:, :w] = b.quantiles[q][:, :w] - a.quantiles[q][:, :w]
        out[q] = d
    return out


def model_driver_forecast(model: Any, drivers: pd.DataFrame, horizon: int) -> DriverForecast:
    """A :data:`DriverForecast` backed by a trained model (``model.predict(horizon,
    drivers=...)``, e.g. :class:`engine.model.DemandForecaster`): applies the changes to the
    future rows of ``drivers`` (Date, Location, driver columns) and forecasts again."""
    cache: dict[str, pd.DataFrame] = {}

    def forecast(changes: Sequence[DriverChange]) -> pd.DataFrame:
        if "base" not in cache:
            cache["base"] = model.predict(horizon, drivers=drivers)
        base = cache["base"]
        if not changes:
            return base
        first = pd.to_datetime(base[S.DATE] if S.DATE in base.columns else base["Period"]).min()
        d = drivers.copy()
        dates = pd.to_datetime(d[S.DATE])
        for ch in changes:
            m = (dates >= (first if ch.start is None else max(first, ch.start))).to_numpy()
            if ch.end is not None:
                m &= (dates <= ch.end).to_numpy()
            if ch.location is not None and S.LOCATION in d.columns:
                m &= (d[S.LOCATION].astype(str) == ch.location).to_numpy()
            v = pd.to_numeric(d[ch.driver], errors="coerce")
            d[ch.driver] = np.where(m, v * (1.0 + ch.value) if ch.relative else v + ch.value, v)
        return model.predict(horizon, drivers=d)

    return forecast


# --------------------------------------------------------------------------- running scenarios


def run_scenarios(
    scenarios: pd.DataFrame | Sequence[ScenarioChange] | None,
    *,
    policy: pd.DataFrame,
    forecast: pd.DataFrame,
    freq: str,
    items: pd.DataFrame | None = None,
    open_orders: pd.DataFrame | None = None,
    driver_forecast: DriverForecast | None = None,
    drivers: Sequence[str] | None = None,
    paths: int = 1000,
    seed: int = 0,
    start: Any = None,
    autocorrelation: float = 0.3,
    lost_sales: bool = True,
    stockout_probability: float = 0.5,
    max_mitigations: int = 10,
    max_expedite_days: float = 14.0,
    first_row: int = 2,
    progress: ProgressCallback = None,
) -> ScenarioResult:
    """Simulate the baseline and every scenario of the Scenario table, side by side.

    ``policy``: the policy table; ``forecast``: SKU, Location, Period (or Date), P10, P50,
    P90 (the published plan); ``items``: Category and Supplier per SKU(-location);
    ``open_orders``: the OpenOrders table (absent: Items OnOrder arrives after the lead
    time); ``driver_forecast``: forecasts under changed drivers (needed for Driver rows,
    e.g. :func:`model_driver_forecast`); ``drivers``: the driver columns the data has (to
    check Driver names). A SKU-location "stocks out" when the chance of at least one
    stock-out over the horizon is at least ``stockout_probability``. Mitigations are
    simulated for the ``max_mitigations`` SKU-locations with the most value short.
    """
    freq = normalize_freq(freq)
    _check_args(paths, autocorrelation, stockout_probability)
    if scenarios is None:
        changes: list[ScenarioChange] = []
    elif isinstance(scenarios, pd.DataFrame):
        changes = parse_scenarios(scenarios, policy=policy, items=items, open_orders=open_orders, drivers=drivers,
                                  driver_model=driver_forecast is not None, first_row=first_row)
    else:
        changes = list(scenarios)
    p = _policy_arrays(policy)
    keys = p[[S.SKU, S.LOCATION]]
    grid = _grid(forecast, keys, freq, start)
    n, H = len(p), len(grid.dates)
    dpp = days_per_period(freq)
    day0 = grid.dates[0] if start is None else max(pd.Timestamp(start).normalize(), grid.dates[0])
    notes: list[list[str]] = [[] for _ in range(n)]
    problems: list[Problem] = []
    orders = _orders(p, open_orders, grid, day0, first_row, notes, problems)
    level, s_pt, review = _levels(p, H, dpp)
    base = _State(grid.quantiles["P10"], grid.quantiles["P50"], grid.quantiles["P90"], p["OnHand"].to_numpy(),
                  orders, level, s_pt, review, p["LeadTimeDays"].to_numpy() / dpp,
                  p["LeadTimeStdDays"].to_numpy() / dpp, np.zeros((n, H)), p["MOQ"].to_numpy(),
                  p["OrderMultiple"].to_numpy())
    category = _attribute(keys, [items, policy], "Category")
    supplier = _attribute(keys, [items, policy, orders], "Supplier")
    cost = p["UnitCost"].to_numpy()
    cost_rank = np.where(np.isfinite(cost), cost, float(np.nanmedian(cost)) if np.isfinite(cost).any() else 1.0)
    sim = dict(paths=paths, seed=seed, phi=float(autocorrelation), lost_sales=lost_sales)
    everyone = np.arange(n)
    names = list(dict.fromkeys(c.scenario for c in changes))
    total = 1 + len(names)
    emit(progress, "scenario", 0, total, "simulating the baseline")
    b = _simulate(base, keys, everyone, **sim)
    baseline = _series_frame("Baseline", keys, b, b, cost, grid, np.zeros(n, dtype=bool))
    summary_rows, series_frames, mitigation_frames = [], [], []
    for k, name in enumerate(names, start=1):
        mine = [c for c in changes if c.scenario == name]
        delta = None
        if any(c.kind == "driver" for c in mine):
            if driver_forecast is None:
                raise InputError("Driver scenarios need the trained demand model.",
                                 [Problem("Scenario", "driver scenario without a demand model",
                                          "refresh the plan first, or use a Demand change instead", row=c.row,
                                          column="Type", value="Driver", code="E201")
                                  for c in mine if c.kind == "driver"], code="E201")
            delta = _driver_delta(mine, driver_forecast, driver_forecast([]), keys, freq, grid)
        st, touched = _apply(base, mine, grid=grid, keys=keys, p=p, category=category, supplier=supplier, dpp=dpp,
                             driver_delta=delta)
        emit(progress, "scenario", k, total, f"simulating {name}")
        s = _simulate(st, keys, everyone, **sim)
        frame = _series_frame(name, keys, b, s, cost, grid, touched)
        series_frames.append(frame)
        mit = _mitigations(name, st, s, b, keys, p, grid, cost, cost_rank, stockout_probability, max_mitigations,
                           max_expedite_days, dpp, sim)
        mitigation_frames.append(mit)
        summary_rows.append(_summary_row(name, "; ".join(c.describe() for c in mine), b, s, keys, cost, grid,
                                         stockout_probability, mit))
    emit(progress, "scenario", total, total, "scenarios done")
    summary = pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS))
    series = pd.concat(series_frames, ignore_index=True) if series_frames else \
        pd.DataFrame(columns=list(SERIES_COLUMNS))
    mitigation_frames = [f for f in mitigation_frames if len(f)]
    mitigations = pd.concat(mitigation_frames, ignore_index=True) if mitigation_frames else \
        pd.DataFrame(columns=list(MITIGATION_COLUMNS))
    assumptions = [
        f"{paths:,} simulated paths per SKU-location over {H} periods from {day0:%Y-%m-%d}, seed {seed}; the "
        "baseline and every scenario use the same random draws.",
        "Demand per period from the plan's P10/P50/P90 (normal below P50, lognormal above, never negative); "
        f"period-to-period correlation {autocorrelation:g}.",
        "Each new order's lead time is LeadTimeDays + N(0, LeadTimeStdDays) days; open orders arrive when due.",
        "Unmet demand is lost (lost sales)." if lost_sales else "Unmet demand is backlogged.",
        f"A SKU-location 'stocks out' when the chance of a stock-out in the horizon is at least "
        f"{stockout_probability:.0%}.",
    ]
    if open_orders is None:
        assumptions.append("No OpenOrders table: Items OnOrder is assumed to arrive one lead time after the start.")
    return ScenarioResult(summary, series, mitigations, baseline.drop(columns=["Scenario"]), changes, assumptions)


def _check_args(paths: Any, phi: Any, prob: Any) -> None:
    problems = []
    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)) or not 1 <= paths <= 100_000:
        problems.append(Problem("Settings", "number of simulation paths must be a whole number from 1 to 100,000",
                                "use e.g. 1000", column="Paths", value=paths, code="E110"))
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not -1 < phi < 1:
        problems.append(Problem("Settings", "demand autocorrelation must be between -1 and 1", "use e.g. 0.3",
                                column="Autocorrelation", value=phi, code="E110"))
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 < prob <= 1:
        problems.append(Problem("Settings", "stock-out probability must be above 0 and at most 1", "use e.g. 0.5",
                                column="StockoutProbability", value=prob, code="E110"))
    if problems:
        raise InputError(f"{len(problems)} scenario settings are invalid.", problems, code="E110")


def _first_date(grid: _Grid, first: np.ndarray) -> pd.DatetimeIndex:
    ok = np.isfinite(first)
    t = np.clip(np.nan_to_num(first), 0, len(grid.dates) - 1).astype(np.int64)
    return pd.DatetimeIndex(np.where(ok, grid.dates.values[t], np.datetime64("NaT")))


def _series_frame(name: str, keys: pd.DataFrame, b: _Stats, s: _Stats, cost: np.ndarray, grid: _Grid,
                  touched: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "Scenario": name, S.SKU: keys[S.SKU].to_numpy(), S.LOCATION: keys[S.LOCATION].to_numpy(),
        "Affected": touched, "Fill rate (baseline)": b.fill_rate, "Fill rate (scenario)": s.fill_rate,
        "Stock-out probability (baseline)": b.p_stockout, "Stock-out probability (scenario)": s.p_stockout,
        "Stock-out units (baseline)": b.short, "Stock-out units (scenario)": s.short,
        "First stock-out (baseline)": _first_date(grid, b.first),
        "First stock-out (scenario)": _first_date(grid, s.first),
        "Inventory value (baseline)": b.on_hand * cost, "Inventory value (scenario)": s.on_hand * cost,
    })[list(SERIES_COLUMNS)]


def _label(keys: pd.DataFrame, i: int) -> str:
    loc = keys[S.LOCATION].iat[i]
    return f"{keys[S.SKU].iat[i]}@{loc}" if loc else str(keys[S.SKU].iat[i])


def _listing(keys: pd.DataFrame, idx: np.ndarray, order_by: np.ndarray) -> str:
    if not len(idx):
        return ""
    idx = idx[np.argsort(-order_by[idx], kind="stable")]
    text = ", ".join(_label(keys, int(i)) for i in idx[:_MAX_LISTED])
    return text + (f" (+{len(idx) - _MAX_LISTED} more)" if len(idx) > _MAX_LISTED else "")


def _aggregate(x: _Stats, cost: np.ndarray) -> tuple[float, float, float, float]:
    dem = x.demand.sum()
    fill = float(x.served.sum() / dem) if dem > 0 else 1.0
    csl = float(1.0 - x.so_cycles.sum() / x.cycles.sum()) if x.cycles.sum() > 0 else 1.0
    return fill, csl, float(x.short.sum()), float(np.nansum(x.on_hand * cost))


def _summary_row(name: str, what: str, b: _Stats, s: _Stats, keys: pd.DataFrame, cost: np.ndarray, grid: _Grid,
                 prob: float, mit: pd.DataFrame) -> list[Any]:
    fb, cb, ub, vb = _aggregate(b, cost)
    fs, cs, us, vs = _aggregate(s, cost)
    out_b = np.flatnonzero(b.p_stockout >= prob)
    out_s = np.flatnonzero(s.p_stockout >= prob)
    value_short = s.short * np.nan_to_num(cost, nan=1.0)
    new = np.setdiff1d(out_s, out_b)
    first_b = _first_date(grid, b.first)[out_b].min() if len(out_b) else pd.NaT
    first_s = _first_date(grid, s.first)[out_s].min() if len(out_s) else pd.NaT
    best = "" if not len(mit) else f"{mit['Detail'].iat[0]}: {mit['Effect'].iat[0]}"
    return [name, what, fb, fs, 100.0 * (fs - fb), cb, cs, ub, us, first_b, first_s, vb, vs, len(out_b), len(out_s),
            _listing(keys, out_s, value_short), _listing(keys, new, value_short), best]


def _mitigations(name: str, st: _State, s: _Stats, b: _Stats, keys: pd.DataFrame, p: pd.DataFrame, grid: _Grid,
                 cost: np.ndarray, cost_rank: np.ndarray, prob: float, limit: int, max_expedite_days: float,
                 dpp: float, sim: dict[str, Any]) -> pd.DataFrame:
    """Expedite, transfer and order-now actions for the SKU-locations with the most value short,
    each simulated on the scenario with the same random draws."""
    H = len(grid.dates)
    at_risk = np.flatnonzero((s.p_stockout >= prob) | (s.short > b.short + 1e-6))
    at_risk = at_risk[s.short[at_risk] > 1e-6]
    at_risk = at_risk[np.argsort(-(s.short[at_risk] * cost_rank[at_risk]), kind="stable")][:max(limit, 0)]
    by_sku = p.groupby(S.SKU).indices
    rows: list[dict[str, Any]] = []
    for i in at_risk:
        i = int(i)
        where = _label(keys, i)
        first_t = int(s.first[i]) if np.isfinite(s.first[i]) else 0
        # 1. expedite the first open order that lands after the typical first stock-out
        o = st.orders[(st.orders["i"] == i) & (st.orders["Period"] > first_t - 1) & (st.orders["Period"] < H)]
        if len(o):
            o = o.sort_values("Period", kind="stable").iloc[0]
            shift_days = min(max_expedite_days, float((o["Period"] - max(first_t - 1, 0)) * dpp))
            new_due = pd.Timestamp(o["DueDate"]) - pd.Timedelta(days=shift_days)
            new_t = max(int(_period_of(pd.Series([new_due]), grid)[0]), 0)
            if new_t < int(o["Period"]):
                moved = st.orders.copy()
                moved.loc[o.name, "Period"] = new_t
                r = _simulate(replace(st, orders=moved), keys, np.array([i]), **sim)
                rows.append(_mit_row(name, i, keys, "Expedite", f"Expedite the {o['Qty']:,.0f} units due "
                                     f"{pd.Timestamp(o['DueDate']):%Y-%m-%d} to {new_due:%Y-%m-%d} for {where}",
                                     float(o["Qty"]), _subset(s, [i]), r, cost[[i]]))
        # 2. transfer from the same SKU's location with the most stock above its reorder point
        spare = np.array([p["OnHand"].iat[j] - (p["ReorderPoint"].iat[j] if np.isfinite(p["ReorderPoint"].iat[j])
                                                else np.inf) for j in by_sku.get(keys[S.SKU].iat[i], [])])
        donors = [j for j, sp in zip(by_sku.get(keys[S.SKU].iat[i], []), spare) if j != i and sp > 0]
        if donors:
            j = int(max(donors, key=lambda d: p["OnHand"].iat[d] - p["ReorderPoint"].iat[d]))
            qty = float(min(p["OnHand"].iat[j] - p["ReorderPoint"].iat[j], math.ceil(s.short[i])))
            if qty > 0:
                pair = np.array([i, j])
                r = _simulate(st, keys, pair, extra_on_hand=np.array([qty, -qty]), **sim)
                rows.append(_mit_row(name, i, keys, "Transfer", f"Transfer {qty:,.0f} units of {keys[S.SKU].iat[i]} "
                                     f"from {keys[S.LOCATION].iat[j] or 'the other location'} to "
                                     f"{keys[S.LOCATION].iat[i]}", qty, _subset(s, pair), r, cost[pair]))
        # 3. raise an order now, arriving after the (scenario) lead time
        qty = float(round_to_pack(math.ceil(s.short[i]), moq=st.moq[i], multiple=st.multiple[i]))
        lt = int(max(0, round(st.lead[i] + st.extra[i, 0])))
        if qty > 0 and lt < H:
            extra = np.zeros((1, H))
            extra[0, lt] = qty
            r = _simulate(st, keys, np.array([i]), extra_receipts=extra, **sim)
            rows.append(_mit_row(name, i, keys, "Order now", f"Raise an order of {qty:,.0f} units of {where} now "
                                 f"(arrives {grid.dates[lt]:%Y-%m-%d})", qty, _subset(s, [i]), r, cost[[i]]))
    if not rows:
        return pd.DataFrame(columns=list(MITIGATION_COLUMNS))
    out = pd.DataFrame(rows)
    order = {"Expedite": 0, "Transfer": 1, "Order now": 2}
    out = out.assign(_v=-np.nan_to_num(out["Value saved"].to_numpy(dtype=float)), _u=-out["Units saved"],
                     _a=out["Action"].map(order))
    out = out.sort_values(["_v", "_u", "_a", S.SKU, S.LOCATION], kind="stable").drop(columns=["_v", "_u", "_a"])
    out = out[out["Units saved"] >= 0.5].reset_index(drop=True)   # less than a unit: noise, not an action
    out["Rank"] = np.arange(1, len(out) + 1)
    return out[list(MITIGATION_COLUMNS)]


def _subset(x: _Stats, idx: Sequence[int]) -> _Stats:
    ix = np.asarray(idx)
    return _Stats(*(getattr(x, f)[ix] for f in ("demand", "served", "short", "p_stockout", "first", "on_hand",
                                                 "cycles", "so_cycles")))


def _mit_row(name: str, i: int, keys: pd.DataFrame, action: str, detail: str, qty: float, before: _Stats,
             after: _Stats, cost: np.ndarray) -> dict[str, Any]:
    """One mitigation. ``before``/``after`` hold the series involved, the short one first
    (a transfer also involves its donor: units saved are net of what the donor loses)."""
    c = np.nan_to_num(cost, nan=0.0)
    saved = float(before.short.sum() - after.short.sum())
    fr_b, fr_a = float(before.fill_rate[0]), float(after.fill_rate[0])
    effect = (f"fill rate {fr_b:.0%} -> {fr_a:.0%}, {saved:,.0f} fewer units short"
              + (" (net of the donor location)" if len(before.short) > 1 else ""))
    return {"Scenario": name, "Rank": 0, S.SKU: keys[S.SKU].iat[i], S.LOCATION: keys[S.LOCATION].iat[i],
            "Action": action, "Detail": detail, "Qty": qty, "Fill rate (scenario)": fr_b,
            "Fill rate (with action)": fr_a, "Stock-out units (scenario)": float(before.short[0]),
            "Stock-out units (with action)": float(after.short[0]), "Units saved": saved,
            "Value saved": float((before.short * c).sum() - (after.short * c).sum()), "Effect": effect}

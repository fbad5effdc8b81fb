"""Replay an inventory policy against what actually happened: does the promised service hold?

:func:`simulate_order_up_to` runs a periodic-review order-up-to (R, S) policy period by
period for many series at once (numpy over series, a loop over periods): receipts,
review, order, random lead time, demand, backorders or lost sales. The order-up-to level
at each review is the plan's forecast over the protection interval plus the safety stock,
as the planner would set it.

:func:`replay_backtest` uses it to validate the forecast-driven safety stock honestly: for
each backtest window, the safety stock is estimated from the *other* windows' errors
(leave-one-window-out), then the window is replayed with the forecasts made at its
cut-off and the actual demand. It reports the achieved cycle service level (share of
replenishment cycles without a stock-out) and fill rate (share of demand served from
stock) per series, per method and per target.

Timing convention (per period t): receipts due at t arrive; at a review, the inventory
position (net stock + pipeline) is raised to S_t; an order placed at t with lead time L
arrives at the start of t + L; then demand of period t is served. The replenishment cycle
of the order placed at review t is the R periods [t + L, t + L + R): a stock-out in those
periods is charged to it (Silver, Pyke & Thomas 2017, section 7.2).

:func:`run_inventory` is the period loop itself, from any starting state (on hand, orders
in transit), for (R, S) and (s, S) policies: the replay above starts it in steady state,
the S&OE projection (:mod:`engine.projection`) and the scenario Monte Carlo
(:mod:`engine.scenarios`) start it from today's stock and open orders.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import schema as S
from .policy import ErrorCube, fit_safety_stock

__all__ = ["SimulationResult", "simulate_order_up_to", "InventoryRun", "run_inventory", "ReplayResult",
           "replay_backtest"]

_log = logging.getLogger(__name__)


@dataclass
class SimulationResult:
    """Per-series outcome of one simulation (arrays of length n)."""

    cycles: np.ndarray           # replenishment cycles evaluated
    stockout_cycles: np.ndarray  # of which with a stock-out
    demand: np.ndarray           # units demanded in the evaluated periods
    served: np.ndarray           # units served from stock in those periods
    mean_on_hand: np.ndarray     # average physical stock at period end (units)

    @property
    def cycle_service_level(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - self.stockout_cycles / self.cycles

    @property
    def fill_rate(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.served / self.demand


def simulate_order_up_to(
    actual: np.ndarray,
    forecast: np.ndarray,
    safety_stock: np.ndarray,
    *,
    lead_time: np.ndarray,
    review_period: np.ndarray,
    sd_lead_time: np.ndarray | None = None,
    lost_sales: bool = False,
    moq: np.ndarray | None = None,
    multiple: np.ndarray | None = None,
    seed: int = 0,
) -> SimulationResult:
    """Simulate an (R, S) policy over ``T`` periods for ``n`` series.

    ``actual``, ``forecast``: demand and the plan's forecast [n, T] (units per period);
    ``safety_stock`` [n] units; ``lead_time``, ``review_period`` whole periods [n]
    (review >= 1); ``sd_lead_time`` periods: each order's lead time is
    max(0, round(L + sd * N(0, 1))), drawn with ``seed``. The run starts in steady state:
    the inventory position equals S_0 and the pipeline holds the next L periods' forecast.
    Only cycles whose order-up-to level could be computed from the forecast horizon
    (t + L + R <= T) are evaluated.
    """
    y = np.nan_to_num(np.asarray(actual, dtype=float), nan=0.0)
    f = np.nan_to_num(np.asarray(forecast, dtype=float), nan=0.0)
    n, T = y.shape
    L = np.asarray(lead_time, dtype=np.int64).reshape(n)
    R = np.maximum(np.asarray(review_period, dtype=np.int64).reshape(n), 1)
    ss = np.asarray(safety_stock, dtype=float).reshape(n)
    sdl = np.zeros(n) if sd_lead_time is None else np.asarray(sd_lead_time, dtype=float).reshape(n)
    P = L + R
    # Common random numbers: every policy simulated with the same seed meets the same
    # lead-time draws, so methods are compared on equal terms.
    lt_noise = np.random.default_rng(seed).standard_normal((n, T))
    rows = np.arange(n)

    # Order-up-to level at every period: forecast over [t, t + P) + SS. Near the end of
    # the horizon the sum is scaled up from the periods that are left (those cycles are
    # not evaluated; the orders still need a level).
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(f, axis=1)], axis=1)
    t_idx = np.arange(T)[None, :]
    end = np.minimum(t_idx + P[:, None], T)
    avail = end - t_idx
    fsum = csum[rows[:, None], end] - csum[:, :T]
    level = fsum * (P[:, None] / np.maximum(avail, 1)) + ss[:, None]

    horizon_pad = T + int(L.max(initial=0)) + int(np.ceil(4 * sdl.max(initial=0.0))) + 2
    arrivals = np.zeros((n, horizon_pad))
    # steady state: the last L periods' orders are in transit, one period of forecast each
    for j in range(int(L.max(initial=0))):
        arrivals[:, j] = np.where(j < L, f[:, j], 0.0)
    pipeline = arrivals.sum(axis=1)
    run = run_inventory(
        y, net=level[:, 0] - pipeline, arrivals=arrivals, pipeline=pipeline, level=level,
        review=(np.arange(T)[None, :] % R[:, None]) == 0, lead_time=L,
        lead_noise=lt_noise if sdl.any() else None, sd_lead_time=sdl, lost_sales=lost_sales, moq=moq,
        multiple=multiple,
    )
    net_end, unmet, on_hand = run.net_end, run.unmet, run.on_hand

    # Cycle of the review at t: periods [t + L, t + L + R); evaluated when t + P <= T.
    stockout = (unmet > 0) if lost_sales else (net_end < -1e-9)
    rel = t_idx - L[:, None]
    block = np.where(rel >= 0, rel // R[:, None], -1)
    block_start_review = block * R[:, None]
    evaluated = (block >= 0) & (block_start_review + P[:, None] <= T)
    n_blocks = np.where(T - P >= 0, (T - P) // R + 1, 0)
    bad = np.zeros((n, T), dtype=bool)
    r_i, c_i = np.nonzero(evaluated & stockout)
    bad[r_i, block[r_i, c_i]] = True
    stockout_cycles = bad.sum(axis=1)
    demand = np.where(evaluated, y, 0.0).sum(axis=1)
    served_total = demand - np.where(evaluated, unmet, 0.0).sum(axis=1)
    mean_on_hand = np.where(evaluated, on_hand, 0.0).sum(axis=1) / np.maximum(evaluated.sum(axis=1), 1)
    return SimulationResult(n_blocks.astype(np.int64), stockout_cycles.astype(np.int64), demand,
                            served_total, mean_on_hand)


@dataclass
class InventoryRun:
    """Per-row outcome of :func:`run_inventory` (arrays of length n; the [n, T] arrays only when recorded)."""

    demand: np.ndarray           # units demanded over the run
    served: np.ndarray           # units served from stock
    first_stockout: np.ndarray   # first period with unmet demand (lost sales) or a backlog; -1 if none
    stockout_periods: np.ndarray  # periods with a stock-out
    mean_on_hand: np.ndarray     # average physical stock at period end (units)
    end_on_hand: np.ndarray      # physical stock after the last period
    ordered: np.ndarray          # units ordered during the run
    cycles: np.ndarray           # receipt cycles: stretches between two receipts (first from the start)
    stockout_cycles: np.ndarray  # of which with a stock-out
    net_end: np.ndarray | None = None   # [n, T] net stock at period end (negative = backlog)
    unmet: np.ndarray | None = None     # [n, T] demand not served from stock in the period
    on_hand: np.ndarray | None = None   # [n, T] physical stock at period end


def run_inventory(
    demand: np.ndarray,
    *,
    net: np.ndarray,
    arrivals: np.ndarray,
    pipeline: np.ndarray,
    level: np.ndarray,
    lead_time: np.ndarray,
    review: np.ndarray | None = None,
    reorder_point: np.ndarray | None = None,
    lead_noise: np.ndarray | None = None,
    sd_lead_time: np.ndarray | None = None,
    extra_lead: np.ndarray | None = None,
    lost_sales: bool = False,
    moq: np.ndarray | None = None,
    multiple: np.ndarray | None = None,
    record: bool = True,
    period_major: bool = False,
) -> InventoryRun:
    """Run ``n`` inventory systems for ``T`` periods from a given state (the shared engine of
    :func:`simulate_order_up_to` and the scenario Monte Carlo, :mod:`engine.scenarios`).

    ``demand`` [n, T]; ``net`` starting net stock [n]; ``arrivals`` [n, W >= T] receipts
    already scheduled per period (changed in place: the run's own orders are added);
    ``pipeline`` [n] units on order, including receipts due after W; ``level`` the
    order-up-to level, [n] or [n, T]; ``lead_time`` periods [n] (may be fractional);
    ``review`` [n, T] periods with a review (default every period); ``reorder_point`` [n]:
    order only when the inventory position is at or below it (an (s, S) policy; None for
    (R, S)); ``lead_noise`` [n, T] standard normal draws and ``sd_lead_time`` [n] periods
    give each order the lead time max(0, round(L + extra + sd * noise)); ``extra_lead``
    [n, T] periods added to orders placed in that period (a supplier delay). Orders that
    would arrive after W are kept in the pipeline but never arrive. ``period_major``: the
    [n, .] inputs (and the recorded outputs) are given transposed, [T, n] and [W, n], which
    saves a copy of each when the caller can build them that way.
    """
    def pm(a: Any) -> np.ndarray:
        """Period-major and contiguous: each step then reads one row, not a strided column."""
        return np.ascontiguousarray(a if period_major else np.asarray(a).T)

    yT = pm(demand) if np.asarray(demand).dtype.kind == "f" else pm(np.asarray(demand, dtype=float))
    T, n = yT.shape
    arrT = arrivals if period_major else np.ascontiguousarray(arrivals.T)
    W = arrT.shape[0]
    reviewT = None if review is None else pm(np.broadcast_to(review, (T, n) if period_major else (n, T)))
    noiseT = None if lead_noise is None or sd_lead_time is None else pm(lead_noise)
    extraT = None if extra_lead is None else pm(np.broadcast_to(extra_lead, (T, n) if period_major else (n, T)))
    net = np.array(net, dtype=float).reshape(n)
    pipeline = np.array(pipeline, dtype=float).reshape(n)
    L = np.asarray(lead_time, dtype=float).reshape(n)
    sdl = None if sd_lead_time is None else np.asarray(sd_lead_time, dtype=float).reshape(n)
    lvl = np.asarray(level, dtype=float)
    lvlT = pm(lvl) if lvl.ndim == 2 else None
    s_pt = None if reorder_point is None else np.asarray(reorder_point, dtype=float).reshape(n)
    pack = moq is not None or multiple is not None
    if pack:
        # round_to_pack's rules, with its argument cleaning done once instead of every period
        moq_a = np.broadcast_to(np.nan_to_num(np.asarray(0 if moq is None else moq, dtype=float), nan=0.0), (n,))
        mult_a = np.nan_to_num(np.asarray(1 if multiple is None else multiple, dtype=float), nan=1.0)
        mult_a = np.broadcast_to(np.where(mult_a > 0, mult_a, 1.0), (n,))
    rows = np.arange(n)
    served_tot = np.zeros(n)
    ordered = np.zeros(n)
    on_hand_sum = np.zeros(n)
    first = np.full(n, -1, dtype=np.int64)
    so_periods = np.zeros(n, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.int64)
    so_cycles = np.zeros(n, dtype=np.int64)
    in_cycle_so = np.zeros(n, dtype=bool)
    if record:
        net_end, unmet_all, on_hand_all = np.empty((T, n)), np.empty((T, n)), np.empty((T, n))
    for t in range(T):
        got = arrT[t]
        net += got
        pipeline -= got
        ip = net + pipeline
        want = (lvlT[t] if lvlT is not None else lvl) - ip
        np.maximum(want, 0.0, out=want)
        if reviewT is not None:
            want[~reviewT[t]] = 0.0
        if s_pt is not None:
            want[ip > s_pt] = 0.0
        if pack:
            q = np.where(want > 0, np.maximum(want, moq_a), 0.0)
            want = np.ceil(np.round(q / mult_a, 9)) * mult_a
        received = got > 0
        placed = want > 0
        if placed.any():
            lt_f = L if extraT is None else L + extraT[t]
            if noiseT is not None:
                lt_f = lt_f + sdl * noiseT[t]
            lt = np.maximum(0, np.rint(lt_f)).astype(np.int64)
            ordered += want
            now = (lt == 0) & placed
            net += np.where(now, want, 0.0)
            received |= now
            later = (lt > 0) & placed
            fits = later & (t + lt < W)
            arrT[t + lt[fits], rows[fits]] += want[fits]
            pipeline += np.where(later, want, 0.0)
        # A receipt closes the running cycle; the first cycle starts at period 0.
        if t > 0:
            cycles += received
            so_cycles += received & in_cycle_so
            in_cycle_so &= ~received
        d = yT[t]
        served = np.minimum(d, np.maximum(net, 0.0))
        net -= served if lost_sales else d
        out = (served < d) if lost_sales else (net < -1e-9)
        first[(first < 0) & out] = t
        so_periods += out
        in_cycle_so |= out
        served_tot += served
        oh = np.maximum(net, 0.0)
        on_hand_sum += oh
        if record:
            net_end[t], unmet_all[t], on_hand_all[t] = net, d - served, oh
    cycles += 1
    so_cycles += in_cycle_so
    if not period_major:
        arrivals[:] = arrT.T
    run = InventoryRun(yT.sum(axis=0, dtype=float), served_tot, first, so_periods, on_hand_sum / max(T, 1),
                       np.maximum(net, 0.0), ordered, cycles, so_cycles)
    if record:
        run.net_end, run.unmet, run.on_hand = (net_end, unmet_all, on_hand_all) if period_major else \
            (net_end.T, unmet_all.T, on_hand_all.T)
    return run


@dataclass
class ReplayResult:
    """Leave-one-window-out replay of the backtest, per series and summarised."""

    per_series: pd.DataFrame   # SKU, Location, method, target, window, cycles, stockouts, demand, served, ...
    summary: pd.DataFrame      # method x target: achieved CSL, fill rate, mean safety stock, ...


def replay_backtest(
    cube: ErrorCube,
    *,
    lead_time: np.ndarray,
    review_period: np.ndarray,
    sd_lead_time: np.ndarray | None = None,
    pattern: np.ndarray | None = None,
    service_levels: Sequence[float] = (0.90, 0.95, 0.98),
    methods: Sequence[str] = ("normal", "empirical"),
    target: str = "csl",
    lost_sales: bool = False,
    unit_cost: np.ndarray | None = None,
    seed: int = 0,
) -> ReplayResult:
    """Validate the forecast-driven safety stock by simulation on the backtest windows.

    ``lead_time``, ``review_period`` (whole periods) and ``sd_lead_time`` (periods) per
    series of ``cube``. Needs at least two windows: each window is replayed with safety
    stock estimated from the others.
    """
    n, W, H = cube.actual.shape
    if W < 2:
        raise ValueError("replay_backtest needs at least two backtest windows")
    L = np.asarray(lead_time, dtype=np.int64)
    R = np.maximum(np.asarray(review_period, dtype=np.int64), 1)
    sdl = np.zeros(n) if sd_lead_time is None else np.asarray(sd_lead_time, dtype=float)
    pattern = np.asarray(pattern if pattern is not None else np.full(n, "smooth"), dtype=object)
    cost = np.ones(n) if unit_cost is None else np.nan_to_num(np.asarray(unit_cost, dtype=float), nan=1.0)
    # The replay draws whole-period lead times (round(L + sd * z)); size the buffers for the
    # lead-time spread the replay actually produces, so the check measures the safety-stock
    # method and not the rounding (sub-period spread mostly rounds away).
    lt_dev = _rounded_deviation(L, sdl)
    frames = []
    for w in range(W):
        others = np.array([k for k in range(W) if k != w])
        act, fc = cube.actual[:, w, :], cube.forecast[:, w, :]
        present = np.isfinite(act).all(axis=1) & np.isfinite(fc).all(axis=1)
        with warnings.catch_warnings():  # a series absent from this window: no rate, left out below
            warnings.simplefilter("ignore", RuntimeWarning)
            rate = np.nanmean(fc, axis=1)
        for method in methods:
            for a in service_levels:
                fit = fit_safety_stock(cube, protection=L + R, mean_demand=np.nan_to_num(rate), sd_lead_time=sdl,
                                       lead_time_deviation=lt_dev,
                                       service_level=np.full(n, a), target=target, cycle_qty=np.nan_to_num(rate) * R,
                                       pattern=pattern, method=method, windows=others)
                ss = np.maximum(fit.safety_stock, 0.0)
                sim = simulate_order_up_to(act, fc, ss, lead_time=L, review_period=R, sd_lead_time=sdl,
                                           lost_sales=lost_sales, seed=seed + 7919 * w)
                frames.append(pd.DataFrame({
                    S.SKU: cube.keys[S.SKU].to_numpy(), S.LOCATION: cube.keys[S.LOCATION].to_numpy(),
                    "pattern": pattern, "method": method, "target": a, "window": w + 1,
                    "safety_stock": ss, "safety_stock_value": ss * cost,
                    "cycles": sim.cycles, "stockout_cycles": sim.stockout_cycles,
                    "demand": sim.demand, "served": sim.served, "mean_on_hand": sim.mean_on_hand,
                })[present])
    per = pd.concat(frames, ignore_index=True)
    return ReplayResult(per, summarize_replay(per))


def _rounded_deviation(L: np.ndarray, sd: np.ndarray, nodes: int = 25) -> np.ndarray:
    """Equally likely deviations max(0, round(L + sd * z)) - L of the replay's lead times
    [n, nodes]: mostly 0 with an occasional whole period, not a normal spread."""
    z = stats.norm.ppf((np.arange(nodes) + 0.5) / nodes)
    L = np.asarray(L, dtype=float)[:, None]
    return np.maximum(0, np.rint(L + np.asarray(sd, dtype=float)[:, None] * z)) - L


def summarize_replay(per: pd.DataFrame, by: Sequence[str] = ("method", "target")) -> pd.DataFrame:
    """Pooled achieved CSL (stock-out-free cycles / cycles), mean per-series CSL, fill rate,
    and the stock it took, per ``by`` group."""
    g = per.groupby(list(by), sort=True)
    out = g.agg(series=("SKU", "size"), cycles=("cycles", "sum"), stockout_cycles=("stockout_cycles", "sum"),
                demand=("demand", "sum"), served=("served", "sum"),
                mean_safety_stock=("safety_stock", "mean"), safety_stock_value=("safety_stock_value", "sum"),
                mean_on_hand=("mean_on_hand", "mean"))
    out["achieved_csl"] = 1.0 - out["stockout_cycles"] / out["cycles"].where(out["cycles"] > 0)
    per_csl = (1.0 - per["stockout_cycles"] / per["cycles"].where(per["cycles"] > 0))
    out["mean_series_csl"] = per_csl.groupby([per[c] for c in by]).mean()
    out["fill_rate"] = out["served"] / out["demand"].where(out["demand"] > 0)
    out = out.reset_index()
    if "target" in out.columns:
        out["gap_pp"] = 100.0 * (out["achieved_csl"] - out["target"])
    return out

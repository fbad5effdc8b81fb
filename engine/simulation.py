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
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .inventory import round_to_pack
from .policy import ErrorCube, fit_safety_stock

__all__ = ["SimulationResult", "simulate_order_up_to", "ReplayResult", "replay_backtest"]

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
    net = level[:, 0] - pipeline
    net_end = np.empty((n, T))
    unmet = np.empty((n, T))
    on_hand = np.empty((n, T))
    for t in range(T):
        got = arrivals[:, t]
        net = net + got
        pipeline = pipeline - got
        review = (t % R) == 0
        ip = net + pipeline
        want = np.where(review, np.maximum(level[:, t] - ip, 0.0), 0.0)
        if moq is not None or multiple is not None:
            want = round_to_pack(want, moq=0 if moq is None else moq, multiple=1 if multiple is None else multiple)
        if want.any():
            lt = L if not sdl.any() else np.maximum(0, np.rint(L + sdl * lt_noise[:, t])).astype(np.int64)
            lt = np.minimum(lt, horizon_pad - 1 - t)
            now = (lt == 0) & (want > 0)
            net = net + np.where(now, want, 0.0)
            later = (lt > 0) & (want > 0)
            arrivals[rows[later], t + lt[later]] += want[later]
            pipeline = pipeline + np.where(later, want, 0.0)
        d = y[:, t]
        avail_stock = np.maximum(net, 0.0)
        served = np.minimum(d, avail_stock)
        unmet[:, t] = d - served
        net = net - (served if lost_sales else d)
        net_end[:, t] = net
        on_hand[:, t] = np.maximum(net, 0.0)

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

"""Build a plan: backtest, train, forecast, gate, and record provenance.

This is the one pipeline behind ``plancell demo``, ``plancell refresh`` and the
Refresh Plan button, so every entry point publishes the same numbers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from . import schema as S
from .backtest import MA_WINDOW, MODEL_NAME, BacktestResult, backtest
from .baselines import moving_average, seasonal_naive
from .frequency import season_length
from .model import DemandForecaster, quantile_column
from .policy import InventorySettings, build_policy, error_cube
from .purchasing import purchase_priority
from .progress import ProgressCallback, emit
from .store import ModelStore, data_fingerprint

__all__ = ["PlanResult", "PlanBundle", "build_plan"]

_log = logging.getLogger(__name__)


@dataclass
class PlanBundle:
    """What the model store keeps for a plan: the trained model and the published numbers,
    so the Excel functions answer from the plan the workbook shows, without retraining."""

    model: DemandForecaster
    plan: pd.DataFrame
    policy: pd.DataFrame | None
    accuracy: pd.DataFrame
    purchases: pd.DataFrame | None = None
    cube: Any = None   # backtest errors (engine.policy.ErrorCube): safety stock what-ifs from a cell


@dataclass
class PlanResult:
    plan: pd.DataFrame
    accuracy: pd.DataFrame
    backtest: BacktestResult
    model: DemandForecaster
    metadata: dict[str, Any]
    policy: pd.DataFrame | None = None       # one row per SKU-location: safety stock, reorder point, ...
    purchases: pd.DataFrame | None = None    # what to order now, ranked
    consensus: Any = None                    # engine.overrides.ConsensusPlan: audit and effects of the overrides


def build_plan(
    data: Any,
    *,
    horizon: int,
    windows: int = 3,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    model_params: dict[str, Any] | None = None,
    progress: ProgressCallback = None,
    store: ModelStore | None = None,
    model_name: str | None = None,
    inventory: InventorySettings | None = None,
    budget: float | None = None,
    overrides: tuple[pd.DataFrame, int] | None = None,
    cluster: Any = None,
) -> PlanResult:
    """Backtest the model against the baselines, train on all history, forecast
    ``horizon`` periods and plan each series with the model or, where the backtest
    says a baseline was better, with that baseline. Then set each series' inventory
    policy from its backtest errors (:func:`engine.policy.build_policy`) and rank what to
    order now (:func:`engine.purchasing.purchase_priority`, within ``budget`` if given).

    ``overrides`` (the Overrides table and the Excel row of its first data row) are applied
    on top of the statistical forecast (:func:`engine.overrides.apply_overrides`); the plan
    then has Statistical, one column per layer and Consensus, P50 is the consensus, and the
    inventory policy and purchases follow it. Bad override rows are refused, every row
    named, and nothing is saved.

    ``cluster`` (a ``distributed.Client``, :func:`engine.distributed.connect`) trains the
    backtest's and the final model on a Dask cluster; the plan is the same kind of object."""
    from .overrides import apply_overrides

    t0 = time.perf_counter()
    ov_table, ov_row = overrides if overrides is not None else (None, 2)
    qs = tuple(sorted(quantiles))
    qcols = [quantile_column(q) for q in qs]
    params = dict(model_params or {})
    params.setdefault("horizon", horizon)
    model_kw = {k: v for k, v in params.items() if k != "quantiles"}
    if cluster is None:
        bt = backtest(data, horizon=horizon, windows=windows, model_params=params, quantiles=qs, progress=progress)
        emit(progress, "train", 0, 1, "training the final model on all history")
        model = DemandForecaster(freq=data.freq, quantiles=qs, **model_kw)
        model.fit(data, progress=progress)
        emit(progress, "forecast", 0, 1, "forecasting")
        fc = model.predict(horizon)
    else:
        from . import distributed

        bt = distributed.backtest(cluster, data, horizon=horizon, windows=windows, model_params=params, quantiles=qs,
                                  progress=progress)
        emit(progress, "train", 0, 1, "training the final model on all history (Dask cluster)")
        model = distributed.fit(cluster, data, freq=data.freq, quantiles=qs, progress=progress, **model_kw)
        emit(progress, "forecast", 0, 1, "forecasting")
        fc = distributed.predict(cluster, model, horizon)

    hist = data.sales[data.sales[S.QTY].notna()][[S.SKU, S.LOCATION, S.DATE, S.QTY]]
    anchor = getattr(data, "week_anchor", None)
    base = {
        "seasonal_naive": seasonal_naive(hist, horizon, season=season_length(data.freq), freq=data.freq,
                                         quantiles=qs, anchor=anchor),
        "moving_average": moving_average(hist, horizon, window=MA_WINDOW[data.freq], freq=data.freq,
                                         quantiles=qs, anchor=anchor),
    }
    gate = bt.per_series[[S.SKU, S.LOCATION, "model_used", "reason"]]
    plan = fc.merge(gate, on=[S.SKU, S.LOCATION], how="left")
    # Series too new to be backtested keep the model, and the reason says why.
    no_bt = plan["model_used"].isna()
    plan.loc[no_bt, "model_used"] = MODEL_NAME
    plan.loc[no_bt, "reason"] = "not enough history to backtest; model used"
    keys = [S.SKU, S.LOCATION, S.DATE]
    for name, frame in base.items():
        sel = plan["model_used"] == name
        if not sel.any():
            continue
        b = plan.loc[sel, keys].merge(frame[keys + qcols], on=keys, how="left")
        plan.loc[sel, qcols] = b[qcols].to_numpy()
    plan = plan.rename(columns={S.DATE: "Period"})
    plan = plan[[S.SKU, S.LOCATION, "Period", *qcols, "model_used", "reason", "assumed"]]
    consensus = apply_overrides(plan, ov_table if ov_table is not None and len(ov_table) else None,
                                freq=data.freq, items=data.items, first_row=ov_row)
    plan = consensus.plan

    acc = bt.per_series.rename(columns={
        "wape": "WAPE", "mase": "MASE", "bias": "Bias", "coverage_p10_p90": "Coverage P10-P90",
        "sn_wape": "Seasonal naive WAPE", "ma_wape": "Moving average WAPE",
    })
    acc_cols = [S.SKU, S.LOCATION, "WAPE", "MASE", "Bias", "Coverage P10-P90", "Seasonal naive WAPE",
                "Moving average WAPE", "model_used", "reason"]
    acc = acc[[c for c in acc_cols if c in acc.columns]]

    emit(progress, "inventory", 0, 1, "safety stock and reorder points")
    cube = error_cube(bt.forecasts, freq=data.freq, per_series=bt.per_series)
    policy = build_policy(plan, cube=cube, history=hist, items=data.items, freq=data.freq, settings=inventory,
                          point=quantile_column(0.5) if 0.5 in qs else qcols[len(qcols) // 2])
    purchases = purchase_priority(policy, budget=budget)

    fingerprint = data_fingerprint(data.sales, data.drivers, data.items)
    meta: dict[str, Any] = {
        "model_name": model_name or "plancell",
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_fingerprint": fingerprint,
        "plancell_version": __version__,
        "freq": data.freq,
        "horizon": int(horizon),
        "quantiles": list(qs),
        "n_series": int(model.n_series_),
        "features": list(model.feature_names_),
        "params": {k: v for k, v in model.get_params().items() if _jsonable(v)},
        "backtest": bt.overall,
        "assumed_drivers": sorted({a for s in plan["assumed"] if s for a in s.split(", ")}),
        "n_series_baseline": int((plan.drop_duplicates([S.SKU, S.LOCATION])["model_used"] != MODEL_NAME).sum()),
        "override_layers": list(consensus.layers),
        "overrides_applied": int(len(consensus.audit)),
    }
    if store is not None:
        version = store.save(meta["model_name"], PlanBundle(model, plan, policy, acc, purchases, cube), meta)
        meta["model_version"] = version.version
    meta["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
    emit(progress, "forecast", 1, 1, "plan ready")
    return PlanResult(plan=plan, accuracy=acc, backtest=bt, model=model, metadata=meta, policy=policy,
                      purchases=purchases, consensus=consensus)


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, list, tuple, dict)) and not isinstance(v, np.ndarray)

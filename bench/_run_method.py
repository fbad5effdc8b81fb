"""Run one method on a saved benchmark data set, in this (fresh) process.

``python -m bench._run_method --method plancell|mlforecast|snaive --workdir DIR``

Reads ``DIR/spec.json``, ``DIR/panel.parquet`` and ``DIR/drivers.parquet``; for every window
times ``prepare`` (input conversion), ``fit`` and ``predict`` separately; writes
``DIR/<method>.parquet`` (window, unique_id, ds, P10, P50, P90) and ``DIR/<method>.json``
(timings, peak RSS of this process, settings, versions). Started by the parent in
``bench._common`` so that each method's peak memory is its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import DS, ID, LGBM_PARAMS, LOC, SKU, Y, Spec, Window, make_window, peak_rss_mb

_OUT_COLS = ["window", ID, DS, "P10", "P50", "P90"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


class _Method:
    #: Whether fit/predict still read ``win.train`` after ``prepare``; when not, the runner
    #: drops it so the benchmark harness's own copy of the training rows is not counted in
    #: the method's peak RSS (same rule for every method).
    reads_train_after_prepare = False
    """``prepare`` -> ``fit`` -> ``predict`` for one window; each step timed by the caller."""

    name = ""

    def __init__(self, spec: Spec, drivers: pd.DataFrame | None) -> None:
        self.spec = spec
        self.drivers = drivers

    def config(self) -> str:
        return ""

    def versions(self) -> dict[str, str]:
        return {}

    def prepare(self, win: Window) -> Any:
        return None

    def fit(self, win: Window, prepared: Any) -> Any:
        return None

    def predict(self, win: Window, prepared: Any, fitted: Any) -> pd.DataFrame:
        raise NotImplementedError

    def train_rows(self, fitted: Any) -> int | None:
        """Rows the final model of a window was trained on (calibration fit not counted)."""
        return None

    def n_features(self, fitted: Any) -> int | None:
        return None


class _SeasonalNaive(_Method):
    reads_train_after_prepare = True
    name = "snaive"

    def config(self) -> str:
        return (f"`engine.baselines.seasonal_naive(season={self.spec.season})`; P50 = the classic "
                "seasonal naive point (last season repeated); P10/P90 = point + empirical quantiles "
                "of the in-sample seasonal errors. No fit step.")

    def predict(self, win: Window, prepared: Any, fitted: Any) -> pd.DataFrame:
        from engine.baselines import seasonal_naive

        fc = seasonal_naive(win.train[[ID, DS, Y]], self.spec.horizon, season=self.spec.season,
                            freq=self.spec.freq, keys=[ID], date_col=DS, target=Y)
        fc["P50"] = fc["point"]
        return fc


class _Plancell(_Method):
    name = "plancell"
    assumed_rows = 0

    def config(self) -> str:
        from engine.model import DemandForecaster

        spec = self.spec
        params = DemandForecaster(freq=spec.freq, horizon=spec.horizon, n_jobs=spec.threads,
                                  **spec.plancell_params).get_params()
        cal = int(params.get("calibration_windows", 1))
        # Without refit the last calibration model is the final model (engine.model).
        fits = max(cal, 1) + (1 if cal and params.get("refit", True) else 0)
        extra = "".join(f", {k}={v!r}" for k, v in spec.plancell_params.items())
        shown = ("n_estimators", "learning_rate", "num_leaves", "strategy", "calibration_windows", "refit")
        defaults = ", ".join(f"{k}={params[k]!r}" for k in shown if k in params)
        given = (["per-SKU regressors as `future=`"] if spec.sales_regressors else []) + (
            ["drivers as `drivers=` (and in the training Drivers table)"] if spec.drivers else [])
        return (f"{fits} LightGBM fit(s) per window; `DemandForecaster(freq={spec.freq!r}, "
                f"horizon={spec.horizon}, n_jobs={spec.threads}{extra})`, other parameters at their "
                f"defaults ({defaults}); data built with `engine.contract.validate(sales, drivers, "
                f"freq=...)`; actual horizon values of {' and '.join(given) or 'no regressors'} "
                "passed to `predict`.")

    def versions(self) -> dict[str, str]:
        import engine
        import lightgbm

        return {"plancell engine": f"{engine.__version__} (source sha256 {_engine_digest()})",
                "lightgbm": lightgbm.__version__}

    def prepare(self, win: Window) -> Any:
        from engine.contract import validate

        spec = self.spec
        sales = win.train[[SKU, LOC, DS, Y, *spec.sales_regressors]].rename(
            columns={DS: "Date", Y: "Qty"})
        sales[SKU] = sales[SKU].astype(str)
        sales[LOC] = sales[LOC].astype(str)
        drivers = future_drivers = None
        if self.drivers is not None:
            d = self.drivers[self.drivers[DS] <= win.dates[-1]].rename(columns={DS: "Date"})
            d[LOC] = d[LOC].astype(str)
            drivers = d
            future_drivers = d[d["Date"] > win.cutoff].reset_index(drop=True)
        data = validate(sales, drivers, freq=spec.freq)
        future = None
        if spec.sales_regressors:
            future = win.future[[SKU, LOC, DS, *spec.sales_regressors]].rename(columns={DS: "Date"})
            future[SKU] = future[SKU].astype(str)
            future[LOC] = future[LOC].astype(str)
        return data, future, future_drivers

    def fit(self, win: Window, prepared: Any) -> Any:
        from engine.model import DemandForecaster

        data, _, _ = prepared
        return DemandForecaster(freq=self.spec.freq, horizon=self.spec.horizon,
                                n_jobs=self.spec.threads, **self.spec.plancell_params).fit(data)

    def train_rows(self, fitted: Any) -> int | None:
        return _booster_rows(fitted.boosters_[0], fitted.bagging_fraction)

    def n_features(self, fitted: Any) -> int | None:
        return len(fitted.feature_names_)

    def predict(self, win: Window, prepared: Any, fitted: Any) -> pd.DataFrame:
        _, future, future_drivers = prepared
        fc = fitted.predict(self.spec.horizon, future=future, drivers=future_drivers)
        # Every regressor's actual horizon values were given: none should be assumed.
        self.assumed_rows += int((fc["assumed"].astype(str) != "").sum()) if "assumed" in fc else 0
        keys = win.future.drop_duplicates(ID)[[ID, SKU, LOC]].astype(str)
        fc = fc.rename(columns={"Date": DS}).astype({SKU: str, LOC: str})
        return fc.merge(keys, on=[SKU, LOC], how="inner")


# Module-level functions so mlforecast names the features after them.
_HOLIDAYS: np.ndarray | None = None


def _holiday_days() -> np.ndarray:
    global _HOLIDAYS
    if _HOLIDAYS is None:
        import holidays

        cal = holidays.country_holidays("US", years=range(2000, 2040))
        _HOLIDAYS = np.array(sorted(cal), dtype="datetime64[D]")
    return _HOLIDAYS


def us_holiday(dates: pd.DatetimeIndex) -> np.ndarray:
    """1 on US public holidays (``holidays`` package, as Plancell's default calendar)."""
    return np.isin(dates.values.astype("datetime64[D]"), _holiday_days()).astype(np.float32)


def us_holiday_in_week(dates: pd.DatetimeIndex) -> np.ndarray:
    """Number of US public holidays in the 7 days ending on the (weekly) date."""
    d = dates.values.astype("datetime64[D]")
    h = _holiday_days()
    return (np.searchsorted(h, d, side="right") - np.searchsorted(h, d - 6, side="left")).astype(np.float32)


class _MLForecast(_Method):
    name = "mlforecast"

    def _features(self) -> tuple[list[int], dict[int, list[Any]], list[Any]]:
        """Mirrors engine.features.default_spec as far as mlforecast's transforms allow."""
        from mlforecast.lag_transforms import RollingMean, RollingStd, SeasonalRollingMean

        if self.spec.freq == "D":
            lags = [1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 35, 364]
            tfms: dict[int, list[Any]] = {
                1: [RollingMean(7), RollingMean(28), RollingMean(91), RollingStd(28)],
                7: [SeasonalRollingMean(season_length=7, window_size=4)],  # same weekday, 4 weeks
            }
            dates: list[Any] = ["dayofweek", "day", "month", "week", "dayofyear", us_holiday]
        else:
            lags = [1, 2, 3, 4, 5, 6, 8, 13, 26, 51, 52, 53]
            tfms = {1: [RollingMean(4), RollingMean(13), RollingMean(52), RollingStd(13)]}
            dates = ["month", "week", "dayofyear", us_holiday_in_week]
        return lags, tfms, dates

    def config(self) -> str:
        spec = self.spec
        lags, tfms, dates = self._features()
        tf = "; ".join(f"lag {k}: " + ", ".join(f"{type(t).__name__}({_tfm_args(t)})" for t in v)
                       for k, v in tfms.items())
        dn = ", ".join(d if isinstance(d, str) else d.__name__ for d in dates)
        lgbm = ", ".join(f"{k}={v}" for k, v in LGBM_PARAMS.items())
        scaler = "LocalStandardScaler()" if spec.ml_scaler == "standard" else "none"
        dropna = (" (mlforecast's default: rows whose lags or rolling windows are incomplete are "
                  "not trained on)") if spec.ml_dropna else ""
        return (f"2 LightGBM fits per window; `LGBMRegressor({lgbm}, n_jobs={spec.threads}, "
                f"verbosity=-1, random_state=0)`; lags {lags}; lag_transforms {tf}; date_features {dn}; "
                f"target_transforms {scaler}; static categorical features SKU, Location; regressors "
                f"{', '.join(spec.sales_regressors + spec.drivers)} as dynamic exogenous features "
                "(actual values in X_df for the horizon); intervals "
                f"`PredictionIntervals(n_windows=2, h={spec.horizon})` with level=[80] (lo-80 = P10, "
                "hi-80 = P90): mlforecast refuses n_windows=1; its 2 calibration windows are forecast "
                "by one extra model (refit=False), the closest setting to Plancell's "
                f"calibration_windows=1; num_threads={spec.threads}; fit(dropna={spec.ml_dropna}){dropna}.")

    def versions(self) -> dict[str, str]:
        return {"mlforecast": _version("mlforecast"), "lightgbm": _version("lightgbm")}

    def _regressor_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.drivers is None:
            return frame
        # Same categories on both sides keep the join key categorical (fast, no object copy).
        cats = frame[LOC].cat.categories
        drv = self.drivers[self.drivers[LOC].isin(cats)]
        drv = drv.assign(**{LOC: pd.Categorical(drv[LOC].astype(str), categories=cats)})
        return frame.merge(drv, on=[LOC, DS], how="left")

    def prepare(self, win: Window) -> Any:
        spec = self.spec
        regs = [*spec.sales_regressors, *spec.drivers]
        train = self._regressor_frame(win.train[[ID, DS, Y, SKU, LOC, *spec.sales_regressors]])
        train = train[[ID, DS, Y, SKU, LOC, *regs]]
        x_df = self._regressor_frame(win.future[[ID, DS, LOC, *spec.sales_regressors]])[[ID, DS, *regs]]
        return train, x_df

    def fit(self, win: Window, prepared: Any) -> Any:
        from lightgbm import LGBMRegressor
        from mlforecast import MLForecast
        from mlforecast.target_transforms import LocalStandardScaler
        from mlforecast.utils import PredictionIntervals

        from engine.frequency import period_alias, week_anchor

        train, _ = prepared
        lags, tfms, dates = self._features()
        anchor = week_anchor(train[DS]) if self.spec.freq == "W" else None
        model = MLForecast(
            models={"lgbm": LGBMRegressor(**LGBM_PARAMS, n_jobs=self.spec.threads, verbosity=-1,
                                          random_state=0)},
            freq=period_alias(self.spec.freq, anchor),
            lags=lags, lag_transforms=tfms, date_features=dates, num_threads=self.spec.threads,
            target_transforms=[LocalStandardScaler()] if self.spec.ml_scaler == "standard" else None,
        )
        model.fit(train, static_features=[SKU, LOC], dropna=self.spec.ml_dropna,
                  prediction_intervals=PredictionIntervals(n_windows=2, h=self.spec.horizon))
        return model

    def train_rows(self, fitted: Any) -> int | None:
        return _booster_rows(fitted.models_["lgbm"].booster_, 1.0)

    def n_features(self, fitted: Any) -> int | None:
        return len(fitted.ts.features_order_)

    def predict(self, win: Window, prepared: Any, fitted: Any) -> pd.DataFrame:
        _, x_df = prepared
        fc = fitted.predict(self.spec.horizon, X_df=x_df, level=[80])
        return fc.rename(columns={"lgbm": "P50", "lgbm-lo-80": "P10", "lgbm-hi-80": "P90"})


def _engine_digest() -> str:
    """Short hash of engine/*.py: identifies the code measured while there are no commits."""
    import hashlib

    from bench._common import REPO

    h = hashlib.sha256()
    for f in sorted((REPO / "engine").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _booster_rows(booster: Any, bagging_fraction: float) -> int:
    """Training rows of a booster: the row count at the root of its first tree (LightGBM keeps
    no dataset size after training), undone for row bagging, which draws fraction * rows."""
    root = booster.dump_model(num_iteration=1)["tree_info"][0]["tree_structure"]
    count = root.get("internal_count", root.get("leaf_count", 0))
    return int(round(count / bagging_fraction)) if bagging_fraction < 1 else int(count)


def _tfm_args(t: Any) -> str:
    params = {k: v for k, v in t.get_params().items() if k in ("window_size", "season_length")}
    return ", ".join(f"{k}={v}" for k, v in params.items())


_METHODS: dict[str, type[_Method]] = {m.name: m for m in (_Plancell, _MLForecast, _SeasonalNaive)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", required=True, choices=sorted(_METHODS))
    ap.add_argument("--workdir", required=True, type=Path)
    args = ap.parse_args(argv)
    # mlforecast warns on every recursive step about NaN lags of short series: expected here.
    warnings.filterwarnings("ignore", category=UserWarning, module="mlforecast")
    t_start = time.perf_counter()
    spec = Spec.load(args.workdir)
    panel = pd.read_parquet(args.workdir / "panel.parquet")
    drv_path = args.workdir / "drivers.parquet"
    drivers = pd.read_parquet(drv_path) if drv_path.exists() else None
    rss_loaded = peak_rss_mb()
    method = _METHODS[args.method](spec, drivers)

    prep_s, fit_s, predict_s, parts, rows = [], [], [], [], []
    n_features: int | None = None
    for w in range(len(spec.cutoffs)):
        win = make_window(panel, spec, w)
        if w == len(spec.cutoffs) - 1:
            # No window left to cut: the full panel is garbage for every method alike.
            del panel
            gc.collect()
        t0 = time.perf_counter()
        prepared = method.prepare(win)
        t1 = time.perf_counter()
        n_series = win.n_series
        if not method.reads_train_after_prepare:
            win = dataclasses.replace(win, train=win.train.iloc[:0].copy())  # a copy: an empty slice still holds the data
            gc.collect()
        fitted = method.fit(win, prepared)
        t2 = time.perf_counter()
        fc = method.predict(win, prepared, fitted)
        t3 = time.perf_counter()
        prep_s.append(t1 - t0)
        fit_s.append(t2 - t1)
        predict_s.append(t3 - t2)
        rows.append(method.train_rows(fitted))
        n_features = method.n_features(fitted)
        fc = fc.assign(window=w)
        fc[ID] = fc[ID].astype(str)
        parts.append(fc[_OUT_COLS])
        print(f"[{args.method}] window {w} cut-off {win.cutoff.date()}: {n_series} series, "
              f"prep {t1 - t0:.1f}s fit {t2 - t1:.1f}s predict {t3 - t2:.1f}s", file=sys.stderr, flush=True)
        del prepared, fitted, win

    pd.concat(parts, ignore_index=True).to_parquet(args.workdir / f"{args.method}.parquet", index=False)
    info = {
        "method": args.method,
        "prep_s": float(sum(prep_s)), "fit_s": float(sum(fit_s)), "predict_s": float(sum(predict_s)),
        "prep_s_windows": prep_s, "fit_s_windows": fit_s, "predict_s_windows": predict_s,
        "train_rows": rows[-1], "n_features": n_features,
        "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": rss_loaded,
        "child_s": time.perf_counter() - t_start,
        "config": method.config(), "versions": method.versions(),
        "assumed_rows": getattr(method, "assumed_rows", 0),
    }
    (args.workdir / f"{args.method}.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Walmart store-department weekly sales: Plancell vs mlforecast vs seasonal naive.

``python -m bench.walmart [--data DIR] [--windows 3] [--horizon 8] [--max-series N]``

Series = (Store, Dept): SKU = Dept, Location = Store. Weekly, Friday-anchored. The last
``horizon * windows`` weeks are held out in ``windows`` rolling windows (step = horizon).
Regressors (per store and week, known for the held-out weeks): Temperature, Fuel_Price,
CPI, Unemployment, MarkDown1-5, IsHoliday.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench._common import DS, ID, LOC, REPO, SKU, Y, Spec, add_common_args, rolling_cutoffs, run_benchmark

DRIVERS = ["Temperature", "Fuel_Price", "CPI", "Unemployment",
           "MarkDown1", "MarkDown2", "MarkDown3", "MarkDown4", "MarkDown5", "IsHoliday"]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _data_dir(path: Path) -> Path:
    """Accept the shared data folder or the Walmart folder inside it."""
    for d in (path, path / "walmart-recruiting-store-sales"):
        if (d / "train.csv.gz").exists() or (d / "train.csv").exists():
            return d
    raise SystemExit(f"no train.csv.gz under {path} (or {path / 'walmart-recruiting-store-sales'}); "
                     "pass --data DIR")


def _read(d: Path, stem: str) -> pd.DataFrame:
    f = d / f"{stem}.csv.gz"
    return pd.read_csv(f if f.exists() else d / f"{stem}.csv", parse_dates=["Date"])


def load(data: Path, max_series: int | None = None,
         seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Long panel (gap-filled) and per-store driver frame, plus notes for the report."""
    d = _data_dir(data)
    train = _read(d, "train")
    feats = _read(d, "features")
    notes: list[str] = []

    pairs = train[["Store", "Dept"]].drop_duplicates().sort_values(["Store", "Dept"])
    if max_series and max_series < len(pairs):
        pairs = pairs.sample(n=max_series, random_state=seed).sort_values(["Store", "Dept"])
        train = train.merge(pairs, on=["Store", "Dept"])
        notes.append(f"Random sample of {max_series} store-department series (seed {seed}).")

    # Fill missing weeks inside each series (between its first and last week) with 0 sales.
    grid_dates = pd.DatetimeIndex(np.sort(train["Date"].unique()))
    span = train.groupby(["Store", "Dept"])["Date"].agg(["min", "max"]).reset_index()
    first = grid_dates.searchsorted(span["min"])
    last = grid_dates.searchsorted(span["max"])
    n = last - first + 1
    rows = np.repeat(np.arange(len(span)), n)
    offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    full = pd.DataFrame({"Store": span["Store"].to_numpy()[rows], "Dept": span["Dept"].to_numpy()[rows],
                         "Date": grid_dates[np.repeat(first, n) + offs]})
    full = full.merge(train[["Store", "Dept", "Date", "Weekly_Sales"]], on=["Store", "Dept", "Date"],
                      how="left")
    filled = int(full["Weekly_Sales"].isna().sum())
    full["Weekly_Sales"] = full["Weekly_Sales"].fillna(0.0)
    notes.append(f"{filled:,} missing weeks inside series (between a series' first and last week) "
                 "filled with 0 sales, for all methods alike; nothing is added before a series' "
                 "first or after its last week.")
    notes.append("Negative weekly sales (returns) are kept as they are.")

    store = full["Store"].astype(str)
    dept = full["Dept"].astype(str)
    panel = pd.DataFrame({
        ID: pd.Categorical(store + "_" + dept),
        SKU: pd.Categorical(dept),
        LOC: pd.Categorical(store),
        DS: full["Date"].to_numpy(),
        Y: full["Weekly_Sales"].to_numpy(dtype=float),
    })

    feats = feats[feats["Store"].isin(pairs["Store"]) & (feats["Date"] <= grid_dates[-1])]
    drivers = feats[["Store", "Date", *DRIVERS]].copy()
    md = [c for c in DRIVERS if c.startswith("MarkDown")]
    drivers[md] = drivers[md].fillna(0.0)
    drivers["IsHoliday"] = drivers["IsHoliday"].astype(float)
    drivers = drivers.rename(columns={"Store": LOC, "Date": DS})
    drivers[LOC] = pd.Categorical(drivers[LOC].astype(str), categories=panel[LOC].cat.categories)
    if drivers[DRIVERS].isna().any().any():
        raise SystemExit("unexpected missing driver values in features.csv")
    notes.append("MarkDown1-5 missing (no markdown recorded, e.g. before Nov 2011) set to 0; "
                 "IsHoliday as 0/1. Drivers are per store and week, their actual values are given "
                 "for the held-out weeks (known-future covariates) to both models.")
    return panel, drivers, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="the shared data folder or the walmart-recruiting-store-sales folder "
                         f"(default {DEFAULT_DATA})")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--max-series", type=int, default=None,
                    help="random sample of this many series (for quick checks)")
    add_common_args(ap)
    args = ap.parse_args(argv)

    panel, drivers, notes = load(args.data, args.max_series)
    last = panel[DS].max()
    cutoffs = rolling_cutoffs(last, args.horizon, args.windows, pd.Timedelta(weeks=1))
    min_train = 2 * args.horizon + 1
    notes.insert(0, f"A series is scored in a window when it has at least {min_train} weeks up to the "
                    "cut-off (mlforecast's conformal intervals need 2*horizon+1) and an actual in the "
                    "horizon; other series are left out of that window for every method.")
    n_series = panel[ID].nunique()
    name = "walmart" if not args.max_series else f"walmart-{n_series}series"
    spec = Spec(
        name=name,
        title=f"Walmart store-department weekly sales ({n_series:,} series)",
        freq="W", horizon=args.horizon, cutoffs=cutoffs, season=52, drivers=DRIVERS,
        sales_regressors=[], min_train=min_train, threads=args.threads, ml_scaler=args.ml_scaler,
        ml_dropna=not args.ml_keep_na, plancell_params=args.plancell_params, notes=notes,
        command=shlex.join(["python", "-m", "bench.walmart", *(sys.argv[1:] if argv is None else argv)]),
    )
    run_benchmark(panel, drivers, spec, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

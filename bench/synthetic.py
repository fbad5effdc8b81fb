"""Synthetic daily panels: Plancell vs mlforecast vs seasonal naive at 1k / 10k series.

``python -m bench.synthetic --series 1000|10000 [--horizon 28] [--windows 1] [--days 1095]``

Data: ``engine.synthetic.generate_panel("D", ...)``, 3 years of daily history per series
(new SKUs start later), drivers Temperature / CPI / FuelPrice per location and per-series
Price / Promo. The last ``horizon * windows`` days of that history are held out.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import pandas as pd

from bench._common import DS, ID, LOC, SKU, Y, Spec, add_common_args, rolling_cutoffs, run_benchmark

DRIVERS = ["Temperature", "CPI", "FuelPrice"]
SALES_REGRESSORS = ["Price", "Promo"]


def _shape(series: int) -> tuple[int, int]:
    """(SKUs, locations) giving ``series`` series: 10 locations when it divides evenly."""
    return (series // 10, 10) if series >= 10 and series % 10 == 0 else (series, 1)


def load(series: int, days: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Long panel and per-location driver frame of a generated panel, plus notes for the report."""
    from engine.synthetic import generate_panel

    n_skus, n_locations = _shape(series)
    p = generate_panel("D", n_skus=n_skus, n_locations=n_locations, periods=days, seed=seed)
    s = p.sales
    sku = s[SKU].astype(str)
    loc = s[LOC].astype(str)
    panel = pd.DataFrame({
        ID: pd.Categorical(sku + "@" + loc),
        SKU: pd.Categorical(sku),
        LOC: pd.Categorical(loc),
        DS: s["Date"].to_numpy(),
        Y: s["Qty"].to_numpy(dtype=float),
        "Price": s["Price"].to_numpy(dtype=float),
        "Promo": s["Promo"].to_numpy(dtype=float),
    })
    last = panel[DS].max()
    d = p.drivers[p.drivers["Date"] <= last].rename(columns={"Date": DS})
    drivers = pd.DataFrame({
        LOC: pd.Categorical(d[LOC].astype(str), categories=panel[LOC].cat.categories),
        DS: d[DS].to_numpy(),
        **{c: d[c].to_numpy(dtype=float) for c in DRIVERS},
    })
    notes = [
        f"`engine.synthetic.generate_panel('D', n_skus={n_skus}, n_locations={n_locations}, "
        f"periods={days}, seed={seed})`: {panel[ID].nunique():,} series, {len(panel):,} rows "
        "(new SKUs have no rows before launch).",
        "Regressors: Price and Promo per series, Temperature, CPI and FuelPrice per location "
        "(FuelPrice has no effect by construction); their actual values are given for the held-out "
        "days to both models. OnHand (stock-out censoring) is not given to any method, so both "
        "models see the same columns; the actuals scored are the recorded (possibly censored) sales.",
    ]
    return panel, drivers, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=1000, help="number of series (1000 or 10000)")
    ap.add_argument("--horizon", type=int, default=28)
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--days", type=int, default=1095, help="days of history per series")
    ap.add_argument("--seed", type=int, default=0)
    add_common_args(ap)
    args = ap.parse_args(argv)

    panel, drivers, notes = load(args.series, args.days, args.seed)
    cutoffs = rolling_cutoffs(panel[DS].max(), args.horizon, args.windows, pd.Timedelta(days=1))
    min_train = 2 * args.horizon + 1
    notes.insert(0, f"A series is scored in a window when it has at least {min_train} days up to the "
                    "cut-off (mlforecast's conformal intervals need 2*horizon+1) and an actual in the "
                    "horizon; other series are left out of that window for every method.")
    spec = Spec(
        name=f"synthetic-{args.series}",
        title=f"Synthetic daily panel ({args.series:,} series x {args.days} days)",
        freq="D", horizon=args.horizon, cutoffs=cutoffs, season=7, drivers=DRIVERS,
        sales_regressors=SALES_REGRESSORS, min_train=min_train, threads=args.threads,
        ml_scaler=args.ml_scaler, ml_dropna=not args.ml_keep_na, plancell_params=args.plancell_params,
        notes=notes,
        command=shlex.join(["python", "-m", "bench.synthetic", *(sys.argv[1:] if argv is None else argv)]),
    )
    run_benchmark(panel, drivers, spec, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

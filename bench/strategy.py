"""Which multi-step strategy and calibration should be the default? Measure, don't guess.

Runs Plancell's own rolling-origin backtest (``engine.backtest.backtest``) with each
candidate setting on the same data and prints one row per (panel, setting):

    python -m bench.strategy                       # synthetic D / W / MS panels + Walmart if found
    python -m bench.strategy --no-walmart --seeds 1,2,3

Synthetic panels come from ``engine.synthetic``; Walmart is read from ../shared/data
(store x department series, regressors merged per store, gaps inside a series = 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.backtest import backtest
from engine.contract import validate
from engine.synthetic import generate_panel

SETTINGS = {
    "direct": {},  # the default
    "recursive": {"strategy": "recursive"},
    "direct-no-refit": {"refit": False},
}
HORIZON = {"D": 28, "W": 12, "MS": 6}
WALMART_REGS = ["Temperature", "Fuel_Price", "CPI", "Unemployment", "MarkDown1", "MarkDown2", "MarkDown3",
                "MarkDown4", "MarkDown5", "IsHoliday"]


def _walmart(folder: Path):
    tr = pd.read_csv(folder / "train.csv.gz", parse_dates=["Date"])
    fe = pd.read_csv(folder / "features.csv.gz", parse_dates=["Date"]).drop(columns=["IsHoliday"])
    tr["SKU"] = tr["Store"].astype(str) + "/" + tr["Dept"].astype(str)
    dates = np.sort(tr["Date"].unique())
    span = tr.groupby("SKU")["Date"].agg(["min", "max"])
    grid = pd.concat([pd.DataFrame({"SKU": k, "Date": dates[(dates >= a) & (dates <= b)]})
                      for k, (a, b) in span.iterrows()])
    df = grid.merge(tr[["SKU", "Date", "Weekly_Sales"]], on=["SKU", "Date"], how="left")
    df["Qty"] = df["Weekly_Sales"].fillna(0.0)
    df["Store"] = df["SKU"].str.split("/").str[0].astype(int)
    df = df.merge(fe, on=["Store", "Date"], how="left")
    df["IsHoliday"] = df["Date"].isin(tr.loc[tr["IsHoliday"], "Date"]).astype(float)
    for c in ("MarkDown1", "MarkDown2", "MarkDown3", "MarkDown4", "MarkDown5"):
        df[c] = df[c].fillna(0.0)
    return validate(df[["Date", "SKU", "Qty", *WALMART_REGS]], freq="W")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--no-walmart", action="store_true")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    args = ap.parse_args(argv)
    chosen = {k: SETTINGS[k] for k in args.settings.split(",")}
    panels = []
    for freq in ("W", "D", "MS"):
        for seed in (int(s) for s in args.seeds.split(",")):
            kw = {"periods": 730} if freq == "D" else {}
            p = generate_panel(freq, n_skus=20, n_locations=2, seed=seed, **kw)
            panels.append((f"synthetic {freq} seed {seed}", validate(p.sales, p.drivers, p.items), HORIZON[freq]))
    folder = Path(args.data) / "walmart-recruiting-store-sales"
    if not args.no_walmart and folder.exists():
        panels.append(("Walmart", _walmart(folder), 8))
    rows = []
    for name, data, h in panels:
        for label, params in chosen.items():
            t0 = time.perf_counter()
            o = backtest(data, horizon=h, windows=3, model_params=params).overall
            rows.append({"panel": name, "setting": label, "horizon": h, "model WAPE": o["model"]["wape"],
                         "seasonal naive WAPE": o["seasonal_naive"]["wape"], "coverage": o["coverage_p10_p90"],
                         "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else table.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())

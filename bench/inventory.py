"""Safety-stock calibration: is the promised cycle service level achieved?

``python -m bench.inventory --dataset walmart|synthetic [--horizon 13] [--windows 4] [--max-series N]``

Runs Plancell's rolling-origin backtest, then replays every window with an (R, S)
policy whose safety stock was estimated from the *other* windows' errors
(:func:`engine.simulation.replay_backtest`), for targets 90 %, 95 % and 98 %, with the
textbook normal method and the pooled empirical method side by side. Reported: achieved
cycle service level (stock-out-free cycles / cycles, pooled over all SKUs, and the mean
per SKU), fill rate, and the safety stock it took, overall and per demand pattern.

Lead times: synthetic data uses its Items table (days -> whole weeks). Walmart has no
lead times, so each series gets a fixed pseudo-random one (1-4 weeks, sd 0-25 % of it,
review every week), the same for both methods.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench._common import DS, LOC, RESULTS_DIR, SKU, Y

SERVICE_LEVELS = (0.90, 0.95, 0.98)


def _walmart(data: Path, max_series: int | None):
    from bench.walmart import load

    from engine.contract import validate

    panel, drivers, _ = load(data, max_series)
    sales = pd.DataFrame({"Date": panel[DS], "SKU": panel[SKU].astype(str), "Location": panel[LOC].astype(str),
                          "Qty": np.maximum(panel[Y].to_numpy(), 0.0)})
    drv = drivers.rename(columns={DS: "Date"})
    drv[LOC] = drv[LOC].astype(str)
    data = validate(sales, drv, None, freq="W")
    keys = sales[["SKU", "Location"]].drop_duplicates().sort_values(["SKU", "Location"]).reset_index(drop=True)
    rng = np.random.default_rng(11)
    n = len(keys)
    lead = rng.integers(1, 5, n)
    items = keys.assign(LeadTimeWeeks=lead, LeadTimeStdWeeks=np.round(lead * rng.uniform(0, 0.25, n), 2),
                        ReviewWeeks=1)
    return data, items


def _synthetic(n_skus: int, seed: int):
    from engine.contract import validate
    from engine.synthetic import generate_panel

    panel = generate_panel("W", n_skus=n_skus, n_locations=2, seed=seed, horizon=13)
    data = validate(panel.sales, panel.drivers, panel.items, freq="W")
    it = panel.items.astype({"SKU": str, "Location": str})
    items = it[["SKU", "Location"]].assign(
        LeadTimeWeeks=np.maximum(np.rint(it["LeadTimeDays"] / 7), 0).astype(int),
        LeadTimeStdWeeks=it["LeadTimeStdDays"] / 7,
        ReviewWeeks=np.maximum(np.rint(it["ReviewPeriodDays"] / 7), 1).astype(int))
    return data, items


def _save_cube(path: Path, cube) -> None:
    np.savez_compressed(path, actual=cube.actual, forecast=cube.forecast, sku=cube.keys["SKU"].to_numpy(str),
                        loc=cube.keys["Location"].to_numpy(str),
                        cutoffs=np.array([str(c) for c in cube.cutoffs]))


def _load_cube(path: Path):
    from engine.policy import ErrorCube

    z = np.load(path)  # plain arrays only (allow_pickle stays False)
    keys = pd.DataFrame({"SKU": z["sku"], "Location": z["loc"]})
    cutoffs = list(pd.to_datetime(z["cutoffs"]))
    return ErrorCube(keys, z["actual"], z["forecast"], cutoffs), cutoffs


def _table(df: pd.DataFrame, cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c in ("target", "achieved_csl", "mean_series_csl", "fill_rate"):
                cells.append(f"{100 * v:.1f}%")
            elif c == "gap_pp":
                cells.append(f"{v:+.2f}")
            elif isinstance(v, float):
                cells.append(f"{v:,.1f}")
            else:
                cells.append(str(v))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def main(argv: list[str] | None = None) -> int:
    from bench.walmart import DEFAULT_DATA

    from engine.backtest import backtest
    from engine.policy import error_cube
    from engine.segmentation import segment
    from engine.simulation import replay_backtest, summarize_replay

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("walmart", "synthetic"), default="walmart")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-series", type=int, default=None)
    ap.add_argument("--skus", type=int, default=500, help="synthetic: SKUs (x 2 locations)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=13)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--lost-sales", action="store_true")
    ap.add_argument("--cube", help="cache the backtest errors in this .npz (re-runs skip the backtest)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data, items = (_walmart(args.data, args.max_series) if args.dataset == "walmart"
                   else _synthetic(args.skus, args.seed))
    cached = bool(args.cube and Path(args.cube).exists())
    if cached:
        cube, cutoffs = _load_cube(Path(args.cube))
    else:
        bt = backtest(data, horizon=args.horizon, windows=args.windows)
        cube = error_cube(bt.forecasts, freq="W", per_series=bt.per_series)
        cutoffs = bt.cutoffs
        if args.cube:
            _save_cube(Path(args.cube), cube)
    t_bt = time.perf_counter() - t0
    hist = data.sales[data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]]
    first_cut = cutoffs[0]
    seg = segment(hist[hist["Date"] <= first_cut], periods_per_year=52.0)
    keyed = cube.keys.merge(seg[["SKU", "Location", "Pattern"]], on=["SKU", "Location"], how="left")
    keyed = keyed.merge(items, on=["SKU", "Location"], how="left")
    pattern = keyed["Pattern"].fillna("no demand").to_numpy(dtype=object)
    t1 = time.perf_counter()
    rr = replay_backtest(cube, lead_time=keyed["LeadTimeWeeks"].fillna(1).to_numpy(),
                         review_period=keyed["ReviewWeeks"].fillna(1).to_numpy(),
                         sd_lead_time=keyed["LeadTimeStdWeeks"].fillna(0).to_numpy(), pattern=pattern,
                         service_levels=SERVICE_LEVELS, lost_sales=args.lost_sales)
    t_sim = time.perf_counter() - t1
    per = rr.per_series
    overall = rr.summary
    by_pat = summarize_replay(per, by=("pattern", "method", "target"))
    nonnormal = summarize_replay(per[per["pattern"].isin(["intermittent", "lumpy"])], by=("method", "target")) \
        if per["pattern"].isin(["intermittent", "lumpy"]).any() else None

    cols = ["method", "target", "series", "cycles", "achieved_csl", "gap_pp", "mean_series_csl", "fill_rate",
            "mean_safety_stock"]
    bt_text = ("Backtest errors loaded from the cache (the backtest itself takes about 9 minutes here)" if cached
               else f"Backtest {t_bt:.0f} s")
    name = f"inventory-{args.dataset}" + (f"-{args.max_series}" if args.max_series else "")
    lines = [
        f"# Safety-stock calibration: {args.dataset}",
        "",
        f"Command: `{shlex.join(['python', '-m', 'bench.inventory', *(sys.argv[1:] if argv is None else argv)])}`",
        "",
        f"{cube.actual.shape[0]:,} series, weekly, backtest horizon {args.horizon}, {args.windows} windows "
        f"(cut-offs {', '.join(str(c.date()) for c in cutoffs)}); (R, S) policy, "
        f"{'lost sales' if args.lost_sales else 'backorders'}; safety stock for each window estimated from the "
        f"other windows only. {bt_text}, replay of 2 methods x 3 targets {t_sim:.1f} s.",
        "",
        "## All series",
        "",
        _table(overall, cols),
        "",
    ]
    if nonnormal is not None:
        lines += ["## Intermittent and lumpy series", "", _table(nonnormal, cols), ""]
    lines += ["## By demand pattern", "", _table(by_pat, ["pattern", *cols]), ""]
    text = "\n".join(lines)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenario Monte Carlo speed: 1,000 SKUs x 1,000 paths x 26 weeks (target: under 10 s).

``python -m bench.scenarios [--skus 1000] [--paths 1000] [--weeks 26] [--scenarios 1] [--no-write]``

The plan and policy are built from a synthetic panel's true future demand (P50 = the
series' mean, P10/P90 from its spread), an (s, S) or (R, S) policy per the Items table,
so the benchmark measures the simulation, not model training. Timed: the whole
:func:`engine.scenarios.run_scenarios` call (table validation, baseline, each scenario,
mitigations for the 10 SKU-locations with most value short). Reported: wall time, time
per simulated run (baseline or scenario) and peak RSS of the process.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import pandas as pd

from bench._common import RESULTS_DIR, peak_rss_mb


def _inputs(n_skus: int, weeks: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from engine.synthetic import generate_panel

    panel = generate_panel("W", n_skus=n_skus, n_locations=1, seed=seed, periods=60, horizon=weeks)
    fut = panel.future.astype({"SKU": str, "Location": str})
    g = fut.groupby(["SKU", "Location"], sort=True)["Qty"]
    stats = pd.DataFrame({"mu": g.mean(), "sd": g.std()}).reset_index()
    stats["sd"] = stats["sd"].fillna(0.0)
    plan = fut[["SKU", "Location", "Date"]].rename(columns={"Date": "Period"}).merge(stats, on=["SKU", "Location"])
    plan["P50"] = plan["mu"]
    plan["P10"] = np.maximum(plan["mu"] - 1.2816 * plan["sd"], 0.0)
    plan["P90"] = plan["mu"] + 1.2816 * plan["sd"]
    items = panel.items.astype({"SKU": str, "Location": str})
    items["Supplier"] = np.where(np.arange(len(items)) % 4 == 0, "ACME", "Globex")
    pol = items.merge(stats, on=["SKU", "Location"])
    L, R = pol["LeadTimeDays"] / 7.0, pol["ReviewPeriodDays"] / 7.0
    pol["ServiceLevel"] = 0.95
    pol["SafetyStock"] = 1.645 * np.sqrt((L + R) * pol["sd"] ** 2 + (pol["mu"] * pol["LeadTimeStdDays"] / 7) ** 2)
    pol["Policy"] = np.where(R >= 1, "(R, S)", "(s, S)")
    pol["ReorderPoint"] = pol["mu"] * (L + R) + pol["SafetyStock"]
    pol["OrderUpTo"] = pol["ReorderPoint"] + pol["mu"] * np.maximum(R, 1.0)
    pol["OnHand"] = np.round(pol["ReorderPoint"])
    orders = pol.loc[pol["OnOrder"] > 0, ["SKU", "Location", "OnOrder", "LeadTimeDays", "Supplier"]]
    start = pd.Timestamp(plan["Period"].min())
    open_orders = pd.DataFrame({
        "SKU": orders["SKU"], "Location": orders["Location"], "Qty": orders["OnOrder"],
        "DueDate": start + pd.to_timedelta(np.ceil(orders["LeadTimeDays"] / 2), unit="D"),
        "Supplier": orders["Supplier"],
    })
    return plan[["SKU", "Location", "Period", "P10", "P50", "P90"]], pol, items, open_orders


def main(argv: list[str] | None = None) -> int:
    from engine.scenarios import run_scenarios

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=1000)
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--scenarios", type=int, default=1, help="1: supplier delay; 2: + a +30 %% promotion")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    plan, policy, items, open_orders = _inputs(args.skus, args.weeks, args.seed)
    t_data = time.perf_counter() - t0
    rows = [{"Scenario": "ACME 10 days late", "Type": "Supplier delay", "Target": "Supplier", "Name": "ACME",
             "Value": 10}]
    if args.scenarios >= 2:
        rows.append({"Scenario": "Promo +30 %", "Type": "Promotion", "Target": "All", "Value": "30%",
                     "Start": plan["Period"].min(), "End": plan["Period"].min() + pd.Timedelta(weeks=3), "Dip": 0.15})
    table = pd.DataFrame(rows)
    t1 = time.perf_counter()
    res = run_scenarios(table, policy=policy, forecast=plan, freq="W", items=items, open_orders=open_orders,
                        paths=args.paths, seed=args.seed)
    wall = time.perf_counter() - t1
    rss = peak_rss_mb()
    runs = 1 + len(res.summary)
    cmd = "python -m bench.scenarios " + shlex.join(sys.argv[1:] if argv is None else argv)
    s = res.summary
    lines = [
        "# Scenario Monte Carlo: speed",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"{args.skus:,} SKU-locations x {args.paths:,} paths x {args.weeks} weeks = "
        f"{args.skus * args.paths * args.weeks / 1e6:,.0f} M simulated SKU-weeks per run; baseline + "
        f"{len(s)} scenario(s) = {runs} runs, plus mitigations for the 10 SKU-locations with most value short. "
        f"Input building (synthetic panel, not timed): {t_data:.1f} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| run_scenarios wall time | {wall:.2f} s |",
        f"| per run (baseline or scenario, incl. mitigations) | {wall / runs:.2f} s |",
        f"| target | under 10 s |",
        f"| peak RSS (process) | {rss:,.0f} MB |",
        "",
        "| scenario | fill rate (baseline) | fill rate (scenario) | stock-out units (baseline) | "
        "stock-out units (scenario) | SKUs out of stock (scenario) |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in s.iterrows():
        lines.append(f"| {r['Scenario']} | {r['Fill rate (baseline)']:.1%} | {r['Fill rate (scenario)']:.1%} | "
                     f"{r['Stock-out units (baseline)']:,.0f} | {r['Stock-out units (scenario)']:,.0f} | "
                     f"{r['SKUs out of stock (scenario)']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        name = "scenarios" if (args.skus, args.paths, args.weeks, args.scenarios) == (1000, 1000, 26, 1) else \
            f"scenarios-{args.skus}x{args.paths}x{args.weeks}-s{args.scenarios}"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{name}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Overrides speed: 10,000 override rows on 5,000 SKUs (target: under 5 s added to a refresh).

``python -m bench.overrides [--skus 5000] [--locations 2] [--rows 10000] [--months 12] [--no-write]``

A monthly plan of ``skus`` x ``locations`` SKU-locations over ``months`` periods, 50
categories, and an Overrides table of ``rows`` conflict-free rows over the four layers:
60 % SKU-location rows, 30 % SKU rows (split over the locations), 9 % category-location and
1 % category rows (split over ~100-200 SKU-locations each); half Qty, half Pct ("+12%"
text), 5 % locked, single periods and 1-3 month ranges.

Timed: the workbook side of a refresh through :class:`addin.port.FileBook`, as ``plancell
refresh`` runs it, on a month's second refresh (the file holds the previous refresh's output
sheets), once without overrides and once with the Overrides table: opening the file (size
guard, reading every table, loading it for writing), validating and applying the overrides
(:func:`engine.overrides.read_overrides`, :func:`engine.overrides.apply_overrides`), writing
the Plan sheet (with the consensus columns) and the Overrides log, saving. What the overrides
add is the difference. Training and the backtest do not depend on the overrides; the
inventory policy is computed by every refresh anyway (on the consensus instead of the
statistical forecast) and is timed on its own.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import RESULTS_DIR, peak_rss_mb

LAYERS = ("Sales", "Marketing", "Finance", "Consensus")


def _plan(n_skus: int, n_locs: int, months: int, seed: int):
    from engine.policy import ErrorCube

    rng = np.random.default_rng(seed)
    skus = np.array([f"SKU-{i:05d}" for i in range(n_skus)])
    locs = np.array([f"L{j}" for j in range(n_locs)])
    periods = pd.date_range("2026-01-01", periods=months, freq="MS")
    n = n_skus * n_locs
    level = rng.gamma(2.0, 40.0, n)
    p50 = level[:, None] * (1 + 0.2 * np.sin(np.arange(months) / 2.0))[None, :]
    plan = pd.DataFrame({"SKU": np.repeat(np.repeat(skus, n_locs), months),
                         "Location": np.tile(np.repeat(locs, months), n_skus),
                         "Period": np.tile(periods, n), "P50": p50.ravel()})
    plan["P10"], plan["P90"] = 0.7 * plan["P50"], 1.4 * plan["P50"]
    plan = plan[["SKU", "Location", "Period", "P10", "P50", "P90"]]
    plan["model_used"] = "lightgbm"
    items = pd.DataFrame({"SKU": skus, "Category": [f"Cat-{i % 50:02d}" for i in range(n_skus)],
                          "UnitCost": rng.uniform(1, 20, n_skus), "LeadTimeDays": 30.0, "LeadTimeStdDays": 5.0})
    hist_dates = pd.date_range("2024-01-01", periods=24, freq="MS")
    hist = pd.DataFrame({"SKU": np.repeat(np.repeat(skus, n_locs), 24), "Location": np.tile(np.repeat(locs, 24), n_skus),
                         "Date": np.tile(hist_dates, n),
                         "Qty": np.maximum(rng.normal(np.repeat(level, 24), np.repeat(level, 24) * 0.3), 0)})
    keys = plan[["SKU", "Location"]].drop_duplicates().reset_index(drop=True)
    W, H = 3, min(months, 6)
    actual = np.maximum(rng.normal(level[:, None, None], 0.3 * level[:, None, None], (n, W, H)), 0)
    cube = ErrorCube(keys, actual, actual + rng.normal(0, 0.25 * level[:, None, None], (n, W, H)),
                     list(pd.date_range("2025-01-01", periods=W, freq="3MS")))
    return plan, items, hist, cube, skus, locs, periods


def _overrides(n_rows: int, skus: np.ndarray, locs: np.ndarray, periods: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """Conflict-free rows: each (target, layer) is drawn once, so no two rows of one layer and
    level overlap."""
    rng = np.random.default_rng(seed + 1)
    M = len(periods)
    n_sl, n_s, n_cl = int(0.6 * n_rows), int(0.3 * n_rows), int(0.09 * n_rows)
    n_c = n_rows - n_sl - n_s - n_cl
    cats = np.array([f"Cat-{i:02d}" for i in range(50)])

    def unique(n: int, sizes: list[int]) -> np.ndarray:
        total = int(np.prod(sizes))
        pick = rng.choice(total, size=min(n, total), replace=False)
        return np.stack(np.unravel_index(pick, sizes), axis=1)

    parts = []
    sl = unique(n_sl, [len(skus), len(locs), len(LAYERS)])
    parts.append(pd.DataFrame({"SKU": skus[sl[:, 0]], "Location": locs[sl[:, 1]], "Layer": np.array(LAYERS)[sl[:, 2]]}))
    s = unique(n_s, [len(skus), len(LAYERS)])
    parts.append(pd.DataFrame({"SKU": skus[s[:, 0]], "Layer": np.array(LAYERS)[s[:, 1]]}))
    cl = unique(n_cl, [len(cats), len(locs), len(LAYERS), M])
    parts.append(pd.DataFrame({"Category": cats[cl[:, 0]], "Location": locs[cl[:, 1]],
                               "Layer": np.array(LAYERS)[cl[:, 2]], "_p": cl[:, 3]}))
    c = unique(n_c, [len(cats), len(LAYERS), M])
    parts.append(pd.DataFrame({"Category": cats[c[:, 0]], "Layer": np.array(LAYERS)[c[:, 1]], "_p": c[:, 2]}))
    t = pd.concat(parts, ignore_index=True)
    n = len(t)
    start = rng.integers(0, M, n)
    start = np.where(t["_p"].notna(), t["_p"].fillna(0).to_numpy(dtype=int), start)
    length = np.where(t["_p"].notna(), 1, rng.integers(1, 4, n))
    single = length == 1
    t["Period"] = np.where(single, periods[start].to_numpy(), np.datetime64("NaT"))
    t["From"] = np.where(~single, periods[start].to_numpy(), np.datetime64("NaT"))
    t["To"] = np.where(~single, periods[np.minimum(start + length - 1, M - 1)].to_numpy(), np.datetime64("NaT"))
    is_qty = rng.random(n) < 0.5
    group = t["Category"].notna().to_numpy()
    t["Qty"] = np.where(is_qty, np.round(rng.uniform(10, 400, n) * np.where(group, 50, 1)), np.nan)
    t["Pct"] = np.where(is_qty, None, [f"{v:+.0f}%" for v in rng.normal(0, 15, n)])
    t["Reason"] = rng.choice(["promotion", "listing", "price rise", "tender", "gut feel"], n)
    t["Author"] = rng.choice(["ann", "bob", "cy"], n)
    t["Locked"] = np.where(is_qty & (rng.random(n) < 0.1), "TRUE", None)
    t = t.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return t[["SKU", "Category", "Location", "Period", "From", "To", "Qty", "Pct", "Layer", "Reason", "Author",
              "Locked"]].astype(object).where(t.notna(), None)


def _write_table(path: Path, table: pd.DataFrame) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    ws = wb.add_worksheet("Overrides")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    for r, row in enumerate(table.itertuples(index=False, name=None), start=1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if isinstance(v, (pd.Timestamp, np.datetime64)):
                ws.write_datetime(r, c, pd.Timestamp(v).to_pydatetime(), date_fmt)
            elif isinstance(v, str):
                ws.write_string(r, c, v)
            else:
                ws.write_number(r, c, float(v))
    ws.add_table(0, 0, len(table), len(table.columns) - 1,
                 {"name": "Overrides", "columns": [{"header": h} for h in table.columns]})
    wb.close()


def _book(path: Path, sheets: list[Any], overrides: pd.DataFrame | None) -> None:
    """A workbook as a refresh finds it: the previous refresh's output sheets, and the
    planner's Overrides table when there is one."""
    import openpyxl

    from addin.port import FileBook

    if overrides is not None:
        _write_table(path, overrides)
    else:
        openpyxl.Workbook().save(path)
    book = FileBook(path)
    for sh in sheets:
        book.write_sheet(sh)
    book.save()


def _refresh_io(path: Path, plan: pd.DataFrame, items: pd.DataFrame, consensus: bool) -> dict[str, float]:
    """The workbook side of a refresh, timed by step, as `plancell refresh` runs it: open the
    file (size guard, read the tables, load it for writing), read the Overrides table and
    apply it, write the Plan sheet (and the Overrides log), save atomically."""
    from addin.actions import overrides_log_sheet
    from addin.port import FileBook
    from addin.sheets import plan_sheet
    from engine.overrides import apply_overrides, read_overrides

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    book = FileBook(path)
    tables = book.tables()
    t["open"] = time.perf_counter() - t0
    out = plan
    cons = None
    t["validate"] = t["apply"] = 0.0
    if consensus:
        raw, first = tables["Overrides"]
        t0 = time.perf_counter()
        ov = read_overrides(raw, plan, freq="MS", items=items, first_row=first)
        t["validate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cons = apply_overrides(plan, ov, freq="MS", items=items)
        out = cons.plan
        t["apply"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    book.write_sheet(plan_sheet(out.assign(reason="", assumed=""), {"model_name": "bench", "freq": "MS"}))
    if cons is not None:
        book.write_sheet(overrides_log_sheet(cons), after="Plan")
    t["write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    book.save()
    t["save"] = time.perf_counter() - t0
    t["total"] = sum(v for k, v in t.items())
    return t


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each step's median over the runs; the total is the median of the runs' totals."""
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    from addin.actions import overrides_log_sheet
    from addin.sheets import plan_sheet
    from engine.overrides import apply_overrides, read_overrides
    from engine.policy import build_policy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=5000)
    ap.add_argument("--locations", type=int, default=2)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each refresh; medians are reported")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    plan, items, hist, cube, skus, locs, periods = _plan(args.skus, args.locations, args.months, args.seed)
    table = _overrides(args.rows, skus, locs, periods, args.seed)
    meta = {"model_name": "bench", "freq": "MS"}
    tail = {"reason": "", "assumed": ""}   # the columns a real plan carries (this bench's plan lacks them)
    with tempfile.TemporaryDirectory() as tmp:
        base_path, ov_path = Path(tmp) / "statistical.xlsx", Path(tmp) / "overrides.xlsx"
        # the second refresh of a month: last refresh's sheets are in the file
        _book(base_path, [plan_sheet(plan.assign(**tail), meta)], None)
        prev = apply_overrides(plan, read_overrides(table, plan, freq="MS", items=items), freq="MS", items=items)
        _book(ov_path, [plan_sheet(prev.plan.assign(**tail), meta), overrides_log_sheet(prev)], table)
        sizes = (base_path.stat().st_size / 1e6, ov_path.stat().st_size / 1e6)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.repeat):   # alternated, each on a fresh copy of the file
            for consensus, src in ((False, base_path), (True, ov_path)):
                work = Path(tmp) / "refresh.xlsx"
                shutil.copyfile(src, work)
                runs[consensus].append(_refresh_io(work, plan, items, consensus=consensus))
        base, with_ov = (_median(runs[False]), _median(runs[True]))
    cons = prev
    t0 = time.perf_counter()
    build_policy(cons.plan, cube=cube, history=hist, items=items, freq="MS")
    t_policy = time.perf_counter() - t0
    added = with_ov["total"] - base["total"]
    cells = int(cons.audit["Cells"].sum())
    changed = int((cons.plan["Consensus"] != cons.plan["Statistical"]).sum())
    steps = " ".join(f"{k} {base[k]:.2f}/{with_ov[k]:.2f}" for k in ("open", "validate", "apply", "write", "save"))
    print(f"overrides: {args.rows:,} rows on {args.skus:,} SKUs x {args.locations} locations x {args.months} months; "
          f"workbook side of a refresh without/with overrides (s): {steps}; total {base['total']:.2f}/"
          f"{with_ov['total']:.2f}: added {added:.2f} s; policy on the consensus {t_policy:.2f} s")
    if args.no_write:
        return 0
    cmd = "python -m bench.overrides" + ("" if argv is None and len(sys.argv) == 1 else
                                         " " + shlex.join(argv if argv is not None else sys.argv[1:]))
    label = {"open": "open the workbook (size guard, read every table, load it for writing)",
             "validate": "validate the Overrides table (read_overrides)",
             "apply": "apply it (apply_overrides: layers, split-down, locks, quantiles, audit)",
             "write": "write the Plan sheet (with the Statistical, layer and Consensus columns) and the Overrides log",
             "save": "save the workbook (atomic)"}
    rows = "\n".join(f"| {label[k]} | {base[k]:.2f} | {with_ov[k]:.2f} | {with_ov[k] - base[k]:+.2f} |"
                     for k in ("open", "validate", "apply", "write", "save"))
    text = f"""# Overrides: speed

Command: `{cmd}`

{args.skus:,} SKUs x {args.locations} locations x {args.months} monthly periods ({len(plan):,} plan rows), 50 categories; an Overrides table of {len(table):,} conflict-free rows over 4 layers (60 % SKU-location, 30 % SKU, 9 % category-location, 1 % category; half Qty, half Pct; some locked). Applying them sets {cells:,} SKU-location-periods ({changed:,} plan cells end up different from the statistical forecast).

The workbook side of a refresh, timed step by step through `addin.port.FileBook` as `plancell refresh` runs it, on the month's second refresh (the file holds the previous refresh's Plan sheet, and its Overrides log when there are overrides): the same plan without overrides, then with the Overrides table. Files: {sizes[0]:.1f} MB and {sizes[1]:.1f} MB. Each refresh ran {args.repeat} times, alternating, each on a fresh copy of its file: medians (the total is the median of the runs' totals; its spread over the runs: without {min(r['total'] for r in runs[False]):.2f}-{max(r['total'] for r in runs[False]):.2f} s, with {min(r['total'] for r in runs[True]):.2f}-{max(r['total'] for r in runs[True]):.2f} s). Training, the backtest and the other sheets do not depend on the overrides.

| step | without overrides (s) | with overrides (s) | added (s) |
|---|---|---|---|
{rows}
| **total** | **{base['total']:.2f}** | **{with_ov['total']:.2f}** | **{added:+.2f}** |
| target (added) | | | under 5 s |

The inventory policy on the consensus (build_policy with a 3-window error cube, which every refresh runs anyway, on the consensus instead of the statistical forecast): {t_policy:.2f} s. Peak RSS (process): {peak_rss_mb():.0f} MB.

Timings on a shared 2-core machine; they vary up to 2x between runs.
"""
    out = RESULTS_DIR / "overrides.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

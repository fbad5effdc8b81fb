"""Overrides speed: 10,000 override rows on 5,000 SKUs (target: under 5 s added to a refresh).

``python -m bench.overrides [--skus 5000] [--locations 2] [--rows 10000] [--months 12] [--no-write]``

A monthly plan of ``skus`` x ``locations`` SKU-locations over ``months`` periods, 50
categories, and an Overrides table of ``rows`` conflict-free rows over the four layers:
60 % SKU-location rows, 30 % SKU rows (split over the locations), 9 % category-location and
1 % category rows (split over ~100-200 SKU-locations each); half Qty, half Pct ("+12%"
text), 5 % locked, single periods and 1-3 month ranges. Timed, as a refresh would run them:
reading the table from an .xlsx file (:func:`addin.workbook.read_tables`), validating it
(:func:`engine.overrides.read_overrides`), applying it (:func:`engine.overrides.apply_overrides`)
and recomputing the inventory policy on the consensus (:func:`engine.policy.build_policy`
with a 3-window backtest error cube, empirical method). The policy is computed by every
refresh anyway, so the time overrides *add* is reading + validating + applying; the total
with the policy is reported too.
"""

from __future__ import annotations

import argparse
import shlex
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


def _write_cost(plan: pd.DataFrame, cons: Any) -> float:
    """Seconds the overrides add to writing the workbook: the Plan sheet with its consensus
    columns and the Overrides log, against the Plan sheet of the statistical forecast alone."""
    import openpyxl

    from addin.actions import overrides_log_sheet
    from addin.port import OpenpyxlSink
    from addin.sheets import plan_sheet, render

    def write(sheets: list[Any]) -> float:
        t0 = time.perf_counter()
        wb = openpyxl.Workbook()
        for sh in sheets:
            render(sh, OpenpyxlSink(wb.create_sheet(sh.name)))
        with tempfile.TemporaryDirectory() as tmp:
            wb.save(Path(tmp) / "book.xlsx")
        return time.perf_counter() - t0

    meta = {"model_name": "bench", "freq": "MS"}
    tail = {"reason": "", "assumed": ""}   # the columns a real plan carries (this bench's plan lacks them)
    base = write([plan_sheet(plan.assign(**tail), meta)])
    with_overrides = write([plan_sheet(cons.plan.assign(**tail), meta), overrides_log_sheet(cons)])
    return max(0.0, with_overrides - base)


def main(argv: list[str] | None = None) -> int:
    from addin.workbook import read_tables
    from engine.overrides import apply_overrides, read_overrides
    from engine.policy import build_policy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=5000)
    ap.add_argument("--locations", type=int, default=2)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    plan, items, hist, cube, skus, locs, periods = _plan(args.skus, args.locations, args.months, args.seed)
    table = _overrides(args.rows, skus, locs, periods, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overrides.xlsx"
        _write_table(path, table)
        t0 = time.perf_counter()
        raw, first = read_tables(path)["Overrides"]
        t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    ov = read_overrides(raw, plan, freq="MS", items=items, first_row=first)
    t_valid = time.perf_counter() - t0
    t0 = time.perf_counter()
    cons = apply_overrides(plan, ov, freq="MS", items=items)
    t_apply = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_policy(cons.plan, cube=cube, history=hist, items=items, freq="MS")
    t_policy = time.perf_counter() - t0
    t_write = _write_cost(plan, cons)
    added = t_read + t_valid + t_apply + t_write
    total = added + t_policy
    cells = int(cons.audit["Cells"].sum())
    changed = int((cons.plan["Consensus"] != cons.plan["Statistical"]).sum())
    print(f"overrides: {len(ov.rows):,} rows on {args.skus:,} SKUs x {args.locations} locations x {args.months} months: "
          f"read {t_read:.2f} s, validate {t_valid:.2f} s, apply {t_apply:.2f} s, write {t_write:.2f} s "
          f"(added {added:.2f} s); "
          f"policy on the consensus {t_policy:.2f} s; total {total:.2f} s")
    if args.no_write:
        return 0
    cmd = "python -m bench.overrides" + ("" if argv is None and len(sys.argv) == 1 else
                                         " " + shlex.join(argv if argv is not None else sys.argv[1:]))
    text = f"""# Overrides: speed

Command: `{cmd}`

{args.skus:,} SKUs x {args.locations} locations x {args.months} monthly periods ({len(plan):,} plan rows), 50 categories; an Overrides table of {len(ov.rows):,} conflict-free rows over 4 layers (60 % SKU-location, 30 % SKU, 9 % category-location, 1 % category; half Qty, half Pct; some locked). Applying them sets {cells:,} SKU-location-periods ({changed:,} plan cells end up different from the statistical forecast).

| step | seconds |
|---|---|
| read the Overrides table from the .xlsx (openpyxl) | {t_read:.2f} |
| validate (read_overrides) | {t_valid:.2f} |
| apply (apply_overrides: layers, split-down, locks, quantiles, audit) | {t_apply:.2f} |
| write what the overrides add to the workbook (the Plan table's Statistical, layer and Consensus columns; the Overrides log), openpyxl + lxml as `plancell refresh` does | {t_write:.2f} |
| **added to a refresh** (read + validate + apply + write) | **{added:.2f}** |
| inventory policy on the consensus (build_policy, which every refresh runs anyway) | {t_policy:.2f} |
| total including the policy | {total:.2f} |
| target (added) | under 5 s |
| peak RSS (process) | {peak_rss_mb():.0f} MB |

Timings on a shared 2-core machine; they vary up to 2x between runs.
"""
    out = RESULTS_DIR / "overrides.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared machinery of the benchmarks: one long frame per run, windows, subprocesses, scoring.

Every method sees exactly the same data: the parent writes one long frame (``panel``:
``unique_id, SKU, Location, ds, y`` plus per-series regressors) and one driver frame
(``Location, ds`` plus drivers, known for the held-out periods too) to a temp directory,
and every method derives its training rows, future rows and the scored rows with
:func:`make_window`. Each method runs in a fresh subprocess (``bench._run_method``) so its
peak RSS is its own; the parent scores all forecasts on the identical rows with
:mod:`engine.metrics` and prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.metrics import evaluate, seasonal_scales

__all__ = [
    "ID", "DS", "Y", "SKU", "LOC", "METHODS", "LABELS", "REPO", "RESULTS_DIR",
    "LGBM_PARAMS", "Spec", "Window", "make_window", "rolling_cutoffs", "peak_rss_mb",
    "add_common_args", "run_benchmark",
]

ID, DS, Y = "unique_id", "ds", "y"
SKU, LOC = "SKU", "Location"
METHODS = ("plancell", "mlforecast", "snaive")
LABELS = {"plancell": "Plancell", "mlforecast": "mlforecast", "snaive": "seasonal naive"}
REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: LightGBM settings shared by Plancell's DemandForecaster and the mlforecast peer.
LGBM_PARAMS = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63}


@dataclass
class Spec:
    """Everything a method needs besides the data; saved next to it as ``spec.json``."""

    name: str                      # results file stem, e.g. "walmart"
    title: str                     # one line describing the data set
    freq: str                      # "D" or "W"
    horizon: int
    cutoffs: list[str]             # last training date of each window (ISO)
    season: int                    # seasonal naive and MASE season
    drivers: list[str]             # columns of the driver frame (per Location and date)
    sales_regressors: list[str]    # regressor columns of the panel (per series and date)
    min_train: int                 # periods of history a series needs to be scored in a window
    threads: int
    ml_scaler: str = "standard"    # mlforecast target transform: "standard" or "none"
    ml_dropna: bool = True         # mlforecast fit(dropna=...)
    plancell_params: dict = field(default_factory=dict)  # extra DemandForecaster parameters
    notes: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(days=1) if self.freq == "D" else pd.Timedelta(weeks=1)

    def save(self, workdir: Path) -> None:
        (workdir / "spec.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, workdir: Path) -> "Spec":
        return cls(**json.loads((workdir / "spec.json").read_text()))


@dataclass
class Window:
    """One evaluation window: the rows a method trains on, predicts for, and is scored on."""

    index: int
    cutoff: pd.Timestamp
    dates: pd.DatetimeIndex   # the horizon's dates
    train: pd.DataFrame       # panel rows of the scored series up to the cut-off
    future: pd.DataFrame      # one row per (series, horizon date): ID, SKU, LOC, DS, sales regressors
    actual: pd.DataFrame      # ID, DS, Y: the held-out rows that exist in the data

    @property
    def n_series(self) -> int:
        return int(self.train[ID].nunique())


def rolling_cutoffs(last: pd.Timestamp, horizon: int, windows: int, step: pd.Timedelta) -> list[str]:
    """Cut-offs ``last - k*horizon`` for k = windows..1 (non-overlapping horizons, step = horizon)."""
    return [(last - step * horizon * k).strftime("%Y-%m-%d") for k in range(windows, 0, -1)]


def make_window(panel: pd.DataFrame, spec: Spec, w: int) -> Window:
    """The rows of window ``w``; identical for every method (deterministic).

    A series is scored in a window when it has at least ``spec.min_train`` periods up to the
    cut-off and at least one actual in the horizon. Other series are left out of training
    and scoring for all methods alike.
    """
    cutoff = pd.Timestamp(spec.cutoffs[w])
    dates = pd.DatetimeIndex([cutoff + spec.step * k for k in range(1, spec.horizon + 1)])
    ds = panel[DS]
    hist = (ds <= cutoff).to_numpy()
    fut = ((ds > cutoff) & (ds <= dates[-1])).to_numpy()
    n_hist = panel.loc[hist, ID].value_counts()
    long_enough = set(n_hist.index[n_hist >= spec.min_train])
    with_actuals = set(panel.loc[fut, ID].unique())
    ids = sorted(long_enough & with_actuals)
    keep = panel[ID].isin(ids).to_numpy()

    train = _drop_unused(panel.loc[keep & hist])
    actual = _drop_unused(panel.loc[keep & fut, [ID, DS, Y]]).reset_index(drop=True)
    keys = train.drop_duplicates(ID)[[ID, SKU, LOC]].reset_index(drop=True)
    future = keys.loc[keys.index.repeat(len(dates))].reset_index(drop=True)
    future[DS] = np.tile(dates.to_numpy(), len(keys))
    if spec.sales_regressors:
        regs = panel.loc[keep & fut, [ID, DS, *spec.sales_regressors]]
        future = future.merge(_drop_unused(regs), on=[ID, DS], how="left")
    return Window(index=w, cutoff=cutoff, dates=dates, train=train.reset_index(drop=True),
                  future=future, actual=actual)


def _drop_unused(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical id columns without the categories of series not in ``df``."""
    df = df.copy()
    for c in (ID, SKU, LOC):
        if c in df.columns and isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].cat.remove_unused_categories()
    return df


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


# ---------------------------------------------------------------- the parent side

def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated subset of plancell,mlforecast,snaive")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for LightGBM and feature building, the same for both models "
                         "(default 1: on a busy shared machine OpenMP threads spin and distort timings)")
    ap.add_argument("--ml-scaler", choices=("standard", "none"), default="standard",
                    help="mlforecast target transform (Plancell scales every series by its mean)")
    ap.add_argument("--ml-keep-na", action="store_true",
                    help="mlforecast fit(dropna=False): also train on rows with incomplete lags, as "
                         "Plancell does (default: mlforecast's own default, dropna=True)")
    ap.add_argument("--plancell-params", type=_params, default={}, metavar="K=V[,K=V]",
                    help="extra DemandForecaster parameters, e.g. refit=true,calibration_windows=2")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory with the forecasts")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/<name>.md")


def run_benchmark(panel: pd.DataFrame, drivers: pd.DataFrame | None, spec: Spec,
                  args: argparse.Namespace) -> str:
    """Save the data, run every method in its own subprocess, score, print and write the table."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    workdir = Path(tempfile.mkdtemp(prefix=f"plancell-bench-{spec.name}-"))
    try:
        t0 = time.perf_counter()
        panel.to_parquet(workdir / "panel.parquet", index=False)
        if drivers is not None:
            drivers.to_parquet(workdir / "drivers.parquet", index=False)
        spec.save(workdir)
        _say(f"data saved to {workdir} in {time.perf_counter() - t0:.1f}s "
             f"({panel[ID].nunique()} series, {len(panel):,} rows)")
        results: dict[str, dict] = {}
        for m in methods:
            results[m] = _run_child(m, workdir)
        table = _score(panel, spec, workdir, results)
        text = _report(spec, table, results)
        print(text)
        if not args.no_write:
            RESULTS_DIR.mkdir(exist_ok=True)
            out = RESULTS_DIR / f"{spec.name}{_variant(args, methods)}.md"
            out.write_text(text + "\n")
            _say(f"wrote {out}")
        return text
    finally:
        if args.keep:
            _say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _params(text: str) -> dict:
    """``"refit=true,num_leaves=31"`` -> ``{"refit": True, "num_leaves": 31}`` (JSON values, else text)."""
    out: dict = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _variant(args: argparse.Namespace, methods: list[str]) -> str:
    """File-name suffix for non-default settings, so variant runs keep the main results."""
    parts = []
    if args.threads != 1:
        parts.append(f"t{args.threads}")
    if args.ml_scaler != "standard":
        parts.append(f"mlscaler-{args.ml_scaler}")
    if args.ml_keep_na:
        parts.append("ml-keep-na")
    parts += [f"pc-{k}-{json.dumps(v)}" for k, v in sorted(args.plancell_params.items())]
    if set(methods) != set(METHODS):
        parts.append("only-" + "-".join(methods))
    return "".join("-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in p) for p in parts)


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _run_child(method: str, workdir: Path) -> dict:
    cmd = [sys.executable, "-m", "bench._run_method", "--method", method, "--workdir", str(workdir)]
    _say(f"running {method}: {shlex.join(cmd)}")
    t0 = time.perf_counter()
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:  # relay the child's progress lines, keep the tail for errors
            tail.append(line.rstrip())
            if line.startswith(f"[{method}]"):
                print(line, end="", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        _say(f"{method} FAILED after {wall:.1f}s:\n  " + "\n  ".join(tail))
        return {"error": tail[-1] if tail else f"exit code {proc.returncode}", "wall_s": wall}
    info = json.loads((workdir / f"{method}.json").read_text())
    info["wall_s"] = wall
    _say(f"{method} done in {wall:.1f}s (fit {info['fit_s']:.1f}s, predict {info['predict_s']:.1f}s, "
         f"peak RSS {info['peak_rss_mb']:.0f} MB)")
    return info


def _score(panel: pd.DataFrame, spec: Spec, workdir: Path, results: dict[str, dict]) -> pd.DataFrame:
    """One row of metrics per method, all on the same actual rows."""
    actuals, scales = [], []
    for w in range(len(spec.cutoffs)):
        win = make_window(panel, spec, w)
        actuals.append(win.actual.assign(window=w))
        sc = seasonal_scales(win.train[[ID, DS, Y]], spec.season, keys=[ID], date_col=DS, target=Y)
        scales.append(sc.assign(window=w))
    actual = pd.concat(actuals, ignore_index=True)
    actual[ID] = actual[ID].astype(str)
    scale = pd.concat(scales, ignore_index=True)
    scale[ID] = scale[ID].astype(str)
    scale = scale[["window", ID, "scale"]]

    rows = []
    for m, info in results.items():
        row = {"method": m, "rows": len(actual), "series": int(actual[[ID]].drop_duplicates().shape[0])}
        if "error" not in info:
            fc = pd.read_parquet(workdir / f"{m}.parquet")
            fc[ID] = fc[ID].astype(str)
            fc[DS] = pd.to_datetime(fc[DS])
            if fc.duplicated(["window", ID, DS]).any():
                raise SystemExit(f"{m} returned duplicate forecasts")
            scored = actual.merge(fc[["window", ID, DS, "P10", "P50", "P90"]],
                                  on=["window", ID, DS], how="left")
            row["missing"] = int(scored["P50"].isna().sum())
            ev = evaluate(scored, scales=scale, point="P50",
                          quantile_cols={0.1: "P10", 0.5: "P50", 0.9: "P90"}, actual=Y).iloc[0]
            row.update(wape=ev["wape"], mase=ev["mase"], bias=ev["bias"],
                       coverage=ev.get("coverage_p10_p90", np.nan), pinball=ev["pinball_mean"])
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: object, spec: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def _ratio(a: object, b: object) -> str:
    try:
        a, b = float(a), float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _report(spec: Spec, table: pd.DataFrame, results: dict[str, dict]) -> str:
    by = {r["method"]: r for r in table.to_dict("records")}
    header = ("| method | prep s | fit s | predict s | peak RSS MB | WAPE | MASE | bias "
              "| P10-P90 coverage | train rows | missing |")
    lines = [header, "|---" * 11 + "|"]
    for m in results:
        info, r = results[m], by[m]
        if "error" in info:
            lines.append(f"| {LABELS[m]} | failed: {info['error'][:80]} |" + " |" * 9)
            continue
        lines.append(
            f"| {LABELS[m]} | {info['prep_s']:.1f} | {info['fit_s']:.1f} | {info['predict_s']:.1f} "
            f"| {info['peak_rss_mb']:.0f} | {_fmt(r.get('wape'), '.4f')} | {_fmt(r.get('mase'), '.3f')} "
            f"| {_fmt(r.get('bias'), '+.4f')} | {_fmt(r.get('coverage'), '.3f')} "
            f"| {_fmt(info.get('train_rows'), ',')} | {int(r.get('missing', 0))} |")
    p, q = results.get("plancell", {}), results.get("mlforecast", {})
    if p and q and "error" not in p and "error" not in q:
        lines.append(
            f"| **Plancell / mlforecast** | {_ratio(p['prep_s'], q['prep_s'])} "
            f"| {_ratio(p['fit_s'], q['fit_s'])} | {_ratio(p['predict_s'], q['predict_s'])} "
            f"| {_ratio(p['peak_rss_mb'], q['peak_rss_mb'])} "
            f"| {_ratio(by['plancell'].get('wape'), by['mlforecast'].get('wape'))} "
            f"| {_ratio(by['plancell'].get('mase'), by['mlforecast'].get('mase'))} | | "
            f"| {_ratio(p.get('train_rows'), q.get('train_rows'))} | |")

    first = table.iloc[0]
    out = [
        f"## {spec.title}",
        "",
        f"Command: `{spec.command}`",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} cores "
        f"(shared), Python {platform.python_version()}, {spec.threads} thread(s) for every model.",
        "",
        f"Horizon {spec.horizon} ({spec.freq}), {len(spec.cutoffs)} window(s), cut-offs "
        f"{', '.join(spec.cutoffs)}; scored: {first['rows']:,} actuals of {first['series']:,} series "
        "(identical rows for every method).",
        "",
        *lines,
        "",
        "fit s / predict s: summed over the windows (one fit and one predict call per window; "
        "a fit call includes the model's calibration fit for the P10-P90 interval, see the "
        "fits per window under Method settings). prep s: turning the "
        "window's long frame into the method's input (Plancell: `engine.contract.validate`; "
        "mlforecast: joining the drivers). Peak RSS: `ru_maxrss` of the method's own subprocess "
        "(includes Python, imports and the loaded data). WAPE = sum|y-P50|/sum|y| over all scored "
        "rows; MASE = mean over (series, window) of MAE / in-sample seasonal-naive MAE; "
        "bias = sum(P50-y)/sum|y| (+ = over-forecast); coverage = share of actuals in [P10, P90] "
        "(target 0.80). train rows: rows the final model of the last window was trained on. "
        "Timings on shared machines vary up to 2.5x between runs: read the ratios.",
        "",
        "Method settings:",
        "",
    ]
    for m, info in results.items():
        if "config" in info:
            nf = f" {info['n_features']} features." if info.get("n_features") else ""
            out.append(f"- **{LABELS[m]}**: {info['config']}{nf}")
    notes = list(spec.notes)
    for m, info in results.items():
        if info.get("assumed_rows"):
            notes.append(f"WARNING: {LABELS[m]} flagged {info['assumed_rows']:,} forecast rows as using "
                         "assumed (engine-filled) regressor values although actual values were given.")
    out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    versions: dict[str, str] = {}
    for info in results.values():
        versions.update(info.get("versions", {}))
    if versions:
        out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    walls = ", ".join(f"{LABELS[m]} {info['wall_s']:.0f}s" for m, info in results.items())
    out += ["", f"Subprocess wall time (imports, data loading, all windows): {walls}."]
    return "\n".join(out)


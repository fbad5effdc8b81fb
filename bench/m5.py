"""M5-scale benchmark: the local engine, the Dask path and mlforecast on one synthetic panel.

``python -m bench.m5 [--series 30490] [--days 1941] [--horizon 28] [--workers 2] [--mem-limit-gb 20]``
(needs ``pip install -e '.[bench,dask]'``; about 1-2 hours of CPU at full size on 2 cores)

Data: :func:`bench.synthetic.load` (``engine.synthetic.generate_panel("D", ...)``) at the
shape of the M5 competition: 30,490 series (3,049 SKUs x 10 stores) x 1,941 days, horizon
28, with Price/Promo per series and Temperature/CPI/FuelPrice per store. Methods, each in
its own subprocess on the same saved data, scored on the same rows (bench._common):

* ``plancell``: the local engine (``DemandForecaster``), 1 thread;
* ``plancell-dask``: the same model through :mod:`engine.distributed` on a LocalCluster of
  ``--workers`` worker processes with 1 thread each (client + workers in one process tree);
* ``snaive``: seasonal naive;
* ``mlforecast``: the peer, same LightGBM features as in bench.synthetic, 1 thread.

Peak RSS: ``ru_maxrss`` of each method's process, for the Dask path the client's plus
each worker's. Linux carries a process's peak RSS over fork and exec, so the data are
generated in a child process of their own and the Dask workers start before the client
loads data: every figure is the process's own. Arrow allocates from malloc in every
method (``_child_env``), so the freed parquet buffers are returned. Besides, the parent
samples the RSS of every method's whole process tree every second and stops a method
whose tree exceeds ``--mem-limit-gb`` (so a peer that cannot fit never pushes the shared
machine into the OOM killer). After every method the results file is rewritten with the
figures so far.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import _common as C
from bench._common import DS, ID, LOC, REPO, RESULTS_DIR, SKU, Y, Spec, rolling_cutoffs
from bench.synthetic import DRIVERS, SALES_REGRESSORS, load

M5_SERIES, M5_DAYS, M5_HORIZON = 30_490, 1_941, 28
#: SKUs generated at once: the generator peaks near 320 bytes per (series, day) cell, about
#: 19 GB for the whole M5 shape in one call; blocks of 800 SKUs x 10 stores stay near 5 GB.
BLOCK_SKUS = 800
DASK = "plancell-dask"
ORDER = ("plancell", DASK, "snaive", "mlforecast")  # the peer last: the longest, and it may not fit


def load_blocks(series: int, days: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """:func:`bench.synthetic.load` in blocks of SKUs (same frames, bounded generator memory).

    Every block uses the same seed, so the stores' drivers (drawn before any SKU) are
    identical in every block, and a different number of SKUs, so the SKUs differ; SKU
    names are renumbered to stay unique. One block gives exactly ``load(series, days, seed)``.
    """
    n_skus = series // 10 if series >= 10 and series % 10 == 0 else None
    if n_skus is None or n_skus <= BLOCK_SKUS:
        return load(series, days, seed)
    nb = -(-n_skus // BLOCK_SKUS)
    base = (n_skus - nb * (nb - 1) // 2) // nb
    sizes = [base + k for k in range(nb)]  # all different: the same size would repeat a block
    sizes[-1] += n_skus - sum(sizes)
    panels, drivers, offset = [], None, 0
    for k, size in enumerate(sizes):
        panel, drv, _ = load(size * 10, days, seed)
        if drivers is None:
            drivers = drv
        elif not drv.equals(drivers):
            raise SystemExit("blocks generated different store drivers: the generator changed, fix load_blocks")
        old = panel[SKU].cat.categories
        new = [f"SKU-{offset + int(c.rsplit('-', 1)[1]):05d}" for c in old]
        panel[SKU] = panel[SKU].cat.rename_categories(new)
        panels.append(panel)
        offset += size
        C._say(f"block {k + 1}/{nb}: {size} SKUs x 10 stores, {len(panel):,} rows (peak RSS {C.peak_rss_mb():.0f} MB)")
    skus = pd.Index([c for p in panels for c in p[SKU].cat.categories])
    locs = panels[0][LOC].cat.categories
    for p in panels:  # by codes: no per-row strings (59M rows at M5 scale)
        p[SKU] = p[SKU].cat.set_categories(skus)
        p[LOC] = p[LOC].cat.set_categories(locs)
    out = pd.concat(panels, ignore_index=True)
    del panels
    codes = out[SKU].cat.codes.to_numpy(np.int64) * len(locs) + out[LOC].cat.codes.to_numpy(np.int64)
    names = [f"{s}@{loc}" for s in skus for loc in locs]  # sorted like the strings: SKU-major
    out[ID] = pd.Categorical.from_codes(codes, categories=names).remove_unused_categories()
    notes = [
        f"`engine.synthetic.generate_panel('D', n_skus=..., n_locations=10, periods={days}, seed={seed})` in "
        f"{nb} blocks of {', '.join(map(str, sizes))} SKUs (SKUs renumbered; the same seed gives every block the "
        f"same stores and drivers): {out[ID].nunique():,} series, {len(out):,} rows (new SKUs have no rows "
        "before launch).",
        "Regressors: Price and Promo per series, Temperature, CPI and FuelPrice per store (FuelPrice has no "
        "effect by construction); their actual values are given for the held-out days to every model. OnHand is "
        "not given to any method.",
    ]
    return out, drivers, notes


# ---------------------------------------------------------------- the Dask method (child side)

def _peak_rss_mb() -> float:
    """Runs on a worker: its own peak RSS."""
    return C.peak_rss_mb()


def _methods(workers: int) -> tuple[type, type]:
    """The two Plancell methods of this benchmark: ``bench._run_method``'s, with a leaner
    input conversion, run locally and through engine.distributed."""
    from bench._run_method import _Plancell

    class _LeanPlancell(_Plancell):
        """Keeps the SKU and Location keys categorical for ``validate`` (which reads the
        codes): the parent class turns them into one Python string per row, which at M5
        scale needs about three times the memory of everything the engine does. Hands
        ``validate`` the window's columns without a copy and drops the long frame once the
        validated data exist. Records the peak RSS so far after each step, to tell which
        step sets the peak."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.phases: dict[str, float] = {"loaded": C.peak_rss_mb()}
            _INSTANCES.append(self)

        def prepare(self, win: Any) -> Any:
            out = self._prepare(win)
            self.phases["prepared"] = C.peak_rss_mb()
            return out

        def fit(self, win: Any, prepared: Any) -> Any:
            out = super().fit(win, prepared)
            self.phases["fitted"] = C.peak_rss_mb()
            return out

        def _prepare(self, win: Any) -> Any:
            from engine.contract import validate

            spec = self.spec
            names = {SKU: SKU, LOC: LOC, DS: "Date", Y: "Qty", **{c: c for c in spec.sales_regressors}}
            # The window's own columns under the contract's names, not a copy (600 MB at 10k series).
            sales = pd.DataFrame({new: win.train[old] for old, new in names.items()}, copy=False)
            d = self.drivers[self.drivers[DS] <= win.dates[-1]].rename(columns={DS: "Date"})
            future_drivers = d[d["Date"] > win.cutoff].reset_index(drop=True)
            data = validate(sales, d, freq=spec.freq)
            del sales
            # The long frame is not read again: drop it here, before the future frames are
            # built, keeping one row per series (all the runner still reads).
            win.train = win.train.loc[~win.train[ID].duplicated().to_numpy(), [ID]].reset_index(drop=True)
            future = win.future[[SKU, LOC, DS, *spec.sales_regressors]].rename(columns={DS: "Date"})
            return data, future, future_drivers

        def config(self) -> str:
            return super().config().replace(
                "data built with `engine.contract.validate(sales, drivers, freq=...)`",
                "data built with `engine.contract.validate(sales, drivers, freq=...)` on the window's rows with "
                "categorical SKU/Location keys (bench.m5 `_LeanPlancell.prepare`)")

    class _OnCluster:
        """A fitted model whose ``predict`` runs by series chunk on the cluster."""

        def __init__(self, client: Any, model: Any) -> None:
            self._client, self._model = client, model

        def __getattr__(self, name: str) -> Any:
            return getattr(self._model, name)

        def predict(self, horizon: int, **kw: Any) -> pd.DataFrame:
            from engine import distributed

            return distributed.predict(self._client, self._model, horizon, **kw)

    class _PlancellDask(_LeanPlancell):
        name = DASK

        def __init__(self, spec: Spec, drivers: pd.DataFrame | None, *, client: Any) -> None:
            super().__init__(spec, drivers)
            self.client = client

        def config(self) -> str:
            base = super().config().replace("DemandForecaster(", "engine.distributed.fit(client, data, ", 1)
            return (f"{base} Cluster: `engine.distributed.connect('local:{workers}')`, a LocalCluster of {workers} "
                    "worker processes x 1 thread on this machine; features built on the workers by series chunk, "
                    "`lightgbm.dask.DaskLGBMRegressor` (data-parallel) trains, forecasts by series chunk on the "
                    "workers; validation and the dense panel on the client.")

        def fit(self, win: Any, prepared: Any) -> Any:
            from engine import distributed

            data, _, _ = prepared
            model = distributed.fit(self.client, data, freq=self.spec.freq, horizon=self.spec.horizon,
                                    **self.spec.plancell_params)
            self.phases["fitted"] = C.peak_rss_mb()
            return _OnCluster(self.client, model)

        def versions(self) -> dict[str, str]:
            import dask
            import distributed

            return {**super().versions(), "dask": dask.__version__, "distributed": distributed.__version__}

    return _LeanPlancell, _PlancellDask


def _child(method: str, workdir: Path, workers: int) -> int:
    """Run a Plancell method with bench._run_method's loop (for the Dask path, then add the
    workers' peak RSS).

    The cluster starts before any data is loaded: Linux carries a process's peak RSS over
    fork and exec, so workers started later would report the client's size as theirs."""
    import bench._run_method as rm

    lean, on_dask = _methods(workers)
    if method != DASK:
        rm._METHODS[method] = lean
        code = rm.main(["--method", method, "--workdir", str(workdir)])
        _add_phases(workdir / f"{method}.json")
        return code
    from engine.distributed import connect

    client = connect(f"local:{workers}", timeout=120)
    rm._METHODS[DASK] = functools.partial(on_dask, client=client)
    code = rm.main(["--method", DASK, "--workdir", str(workdir)])
    workers_mb = client.run(_peak_rss_mb)
    path = workdir / f"{DASK}.json"
    info = json.loads(path.read_text())
    info["peak_rss_client_mb"] = info["peak_rss_mb"]
    info["peak_rss_workers_mb"] = sorted(workers_mb.values())
    info["peak_rss_mb"] = info["peak_rss_mb"] + sum(workers_mb.values())
    path.write_text(json.dumps(info, indent=1))
    _add_phases(path)
    client.close()
    return code


_INSTANCES: list[Any] = []


def _add_phases(path: Path) -> None:
    """The client's peak RSS so far after loading, preparing and (Dask path) fitting."""
    if _INSTANCES:
        info = json.loads(path.read_text())
        info["rss_phases_mb"] = _INSTANCES[-1].phases
        path.write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------- the parent side

def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _child_env() -> dict[str, str]:
    """Every method's environment: Arrow's buffers (the panel read from parquet) from the
    system allocator. Arrow's default, mimalloc, keeps the pages of freed buffers: at 10k
    series the process stayed 1.5 GB above its live data after the panel was dropped, in
    every method alike; malloc returns them."""
    return {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system")}


def _generate(workdir: Path, series: int, days: int, seed: int) -> int:
    """Child: write the panel and drivers (the generator's peak memory dies with this process,
    so the methods, forked later from a lean parent, report their own peaks)."""
    t0 = time.perf_counter()
    panel, drivers, notes = load_blocks(series, days, seed)
    panel.to_parquet(workdir / "panel.parquet", index=False)
    drivers.to_parquet(workdir / "drivers.parquet", index=False)
    meta = {"last": str(panel[DS].max().date()), "series": int(panel[ID].nunique()), "rows": len(panel),
            "notes": notes, "seconds": time.perf_counter() - t0, "peak_rss_mb": C.peak_rss_mb()}
    (workdir / "generated.json").write_text(json.dumps(meta, indent=1))
    return 0


def _run(method: str, workdir: Path, workers: int, limit_mb: float) -> dict:
    """One method in its own process tree: bench._common's child protocol plus a memory guard."""
    import psutil

    if method in (DASK, "plancell"):
        cmd = [sys.executable, "-m", "bench.m5", "--child", method, "--workdir", str(workdir),
               "--workers", str(workers)]
    else:
        cmd = [sys.executable, "-m", "bench._run_method", "--method", method, "--workdir", str(workdir)]
    C._say(f"running {method}: {shlex.join(cmd)}")
    t0 = time.perf_counter()
    tail: deque[str] = deque(maxlen=15)
    state = {"max_tree_mb": 0.0, "killed": None}
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=_child_env()) as proc:
        def guard() -> None:
            while proc.poll() is None:
                mb = _tree_rss_mb(proc.pid)
                state["max_tree_mb"] = max(state["max_tree_mb"], mb)
                if mb > limit_mb:
                    state["killed"] = mb
                    root = psutil.Process(proc.pid)
                    for p in [*root.children(recursive=True), root]:
                        try:
                            p.kill()
                        except psutil.NoSuchProcess:
                            pass
                    return
                time.sleep(1.0)

        watcher = threading.Thread(target=guard, daemon=True)
        watcher.start()
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip())
            if line.startswith(f"[{method}]"):
                print(line, end="", file=sys.stderr, flush=True)
        watcher.join(timeout=5)
    wall = time.perf_counter() - t0
    if state["killed"] is not None:
        msg = f"stopped at {state['killed'] / 1024:.1f} GB RSS (limit {limit_mb / 1024:.0f} GB) after {wall:.0f}s"
        C._say(f"{method} {msg}")
        return {"error": msg, "wall_s": wall, "max_tree_mb": state["max_tree_mb"]}
    if proc.returncode != 0:
        C._say(f"{method} FAILED after {wall:.1f}s:\n  " + "\n  ".join(tail))
        return {"error": tail[-1] if tail else f"exit code {proc.returncode}", "wall_s": wall,
                "max_tree_mb": state["max_tree_mb"]}
    info = json.loads((workdir / f"{method}.json").read_text())
    info["wall_s"] = wall
    info["max_tree_mb"] = state["max_tree_mb"]
    C._say(f"{method} done in {wall:.1f}s (fit {info['fit_s']:.1f}s, predict {info['predict_s']:.1f}s, "
           f"peak RSS {info['peak_rss_mb']:.0f} MB, sampled tree max {state['max_tree_mb']:.0f} MB)")
    return info


def _total(info: dict) -> float | None:
    if "error" in info:
        return None
    return float(info["prep_s"] + info["fit_s"] + info["predict_s"])


def _ratios(results: dict[str, dict], table: pd.DataFrame | None) -> list[str]:
    """Time, memory and accuracy ratios between the methods that finished."""
    wape = {} if table is None else {r["method"]: r.get("wape") for r in table.to_dict("records")}
    pairs = [(DASK, "mlforecast"), ("plancell", "mlforecast"), (DASK, "plancell")]
    lines = ["| ratio | prep+fit+predict time | fit time | peak RSS | sampled tree RSS | WAPE |",
             "|---|---|---|---|---|---|"]
    for a, b in pairs:
        ia, ib = results.get(a), results.get(b)
        if not ia or not ib or "error" in ia or "error" in ib:
            continue
        lines.append(f"| {C.LABELS[a]} / {C.LABELS[b]} | {C._ratio(_total(ia), _total(ib))} "
                     f"| {C._ratio(ia['fit_s'], ib['fit_s'])} | {C._ratio(ia['peak_rss_mb'], ib['peak_rss_mb'])} "
                     f"| {C._ratio(ia.get('max_tree_mb'), ib.get('max_tree_mb'))} "
                     f"| {C._ratio(wape.get(a), wape.get(b))} |")
    return lines if len(lines) > 2 else ["(no pair of methods finished)"]


def _targets(results: dict[str, dict]) -> list[str]:
    """The issue's targets: peak RSS under 12 GB; at least 1.5x faster than mlforecast."""
    out = []
    ml = results.get("mlforecast", {})
    for m in ("plancell", DASK):
        info = results.get(m)
        if not info or "error" in info:
            out.append(f"- {C.LABELS[m]}: did not finish ({(info or {}).get('error', 'not run')}).")
            continue
        if m == DASK and "peak_rss_client_mb" in info:
            # the sum of per-process peaks overstates a tree whose processes peak at different times
            rss = info.get("max_tree_mb", info["peak_rss_mb"]) / 1024
            line = (f"- {C.LABELS[m]}: peak RSS {rss:.1f} GB for client + workers, sampled "
                    f"({'under' if rss < 12 else 'OVER'} 12 GB; client alone {info['peak_rss_client_mb'] / 1024:.1f} "
                    f"GB, sum of the processes' own peaks {info['peak_rss_mb'] / 1024:.1f} GB)")
        else:
            rss = max(info["peak_rss_mb"], info.get("max_tree_mb", 0.0)) / 1024
            line = f"- {C.LABELS[m]}: peak RSS {rss:.1f} GB ({'under' if rss < 12 else 'OVER'} 12 GB)"
        if ml and "error" not in ml:
            speed = _total(ml) / _total(info)
            line += (f"; {speed:.2f}x the speed of mlforecast on prep+fit+predict "
                     f"({'meets' if speed >= 1.5 else 'MISSES'} the 1.5x target)")
        else:
            line += f"; mlforecast did not finish ({ml.get('error', 'not run')}), no speed ratio"
        out.append(line + ".")
    return out


def _timings(spec: Spec, results: dict[str, dict], pending: list[str]) -> str:
    """The figures so far, before scoring (written after every method)."""
    lines = [f"## {spec.title}: PARTIAL (still to run: {', '.join(pending) or 'scoring'})", "",
             f"Command: `{spec.command}`", "", "| method | prep s | fit s | predict s | peak RSS MB "
             "| sampled tree RSS MB | wall s |", "|---|---|---|---|---|---|---|"]
    for m, info in results.items():
        if "error" in info:
            lines.append(f"| {C.LABELS[m]} | failed: {info['error'][:100]} | | | | "
                         f"{info.get('max_tree_mb', 0):.0f} | {info['wall_s']:.0f} |")
        else:
            lines.append(f"| {C.LABELS[m]} | {info['prep_s']:.1f} | {info['fit_s']:.1f} | {info['predict_s']:.1f} "
                         f"| {info['peak_rss_mb']:.0f} | {info.get('max_tree_mb', 0):.0f} | {info['wall_s']:.0f} |")
    return "\n".join(lines + ["", *_ratios(results, None)])


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        path.write_text(text + "\n")
        C._say(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=M5_SERIES, help=f"number of series (default {M5_SERIES:,})")
    ap.add_argument("--days", type=int, default=M5_DAYS, help=f"days of history per series (default {M5_DAYS:,})")
    ap.add_argument("--horizon", type=int, default=M5_HORIZON)
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the Dask path (1 thread each)")
    ap.add_argument("--methods", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--mem-limit-gb", type=float, default=20.0,
                    help="stop a method whose process tree exceeds this RSS (default 20 GB)")
    ap.add_argument("--plancell-params", type=C._params, default={}, metavar="K=V[,K=V]",
                    help="extra DemandForecaster parameters for both Plancell paths")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/m5*.md")
    ap.add_argument("--child", choices=("plancell", DASK), help=argparse.SUPPRESS)
    ap.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child, args.workdir, args.workers)
    if args.generate:
        return _generate(args.workdir, args.series, args.days, args.seed)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ORDER]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(ORDER)}")
    methods = [m for m in ORDER if m in methods]
    C.LABELS[DASK] = f"Plancell on Dask ({args.workers} local workers)"
    full = (args.series, args.days) == (M5_SERIES, M5_DAYS)
    name = "m5" if full else f"m5-{args.series}x{args.days}"
    if set(methods) != set(ORDER):
        name += "-only-" + "-".join(methods)
    out = None if args.no_write else RESULTS_DIR / f"{name}.md"

    workdir = Path(tempfile.mkdtemp(prefix=f"plancell-bench-{name}-"))
    try:
        gen = [sys.executable, "-m", "bench.m5", "--generate", "--workdir", str(workdir), "--series", str(args.series),
               "--days", str(args.days), "--seed", str(args.seed)]
        C._say(f"generating: {shlex.join(gen)}")
        subprocess.run(gen, cwd=REPO, check=True)
        meta = json.loads((workdir / "generated.json").read_text())
        notes = meta["notes"]
        C._say(f"generated {meta['series']:,} series, {meta['rows']:,} rows in {meta['seconds']:.0f}s "
               f"(generator peak RSS {meta['peak_rss_mb']:.0f} MB)")
        cutoffs = rolling_cutoffs(pd.Timestamp(meta["last"]), args.horizon, args.windows, pd.Timedelta(days=1))
        min_train = 2 * args.horizon + 1
        notes.insert(0, f"A series is scored in a window when it has at least {min_train} days up to the cut-off "
                        "(mlforecast's conformal intervals need 2*horizon+1) and an actual in the horizon.")
        notes.append(f"Dask path: a LocalCluster of {args.workers} worker processes x 1 thread on the same 2-core "
                     "machine as the other methods, so it shows the overhead and the memory split of the distributed "
                     "path, not the speed of a real cluster. Its peak RSS is the client's plus every worker's "
                     "ru_maxrss (an upper bound: the peaks need not coincide); the workers start before the "
                     "client loads any data, since Linux carries a process's peak RSS over fork and exec.")
        notes.append("Every method's process reads the data with Arrow's system allocator "
                     "(ARROW_DEFAULT_MEMORY_POOL=system): Arrow's default (mimalloc) kept the pages of the freed "
                     "parquet buffers, about 1.5 GB at 10k series, in every method's peak.")
        notes.append(f"Sampled tree RSS: the RSS of a method's whole process tree sampled every second by the parent; "
                     f"a method above {args.mem_limit_gb:g} GB is stopped and reported as failed.")
        spec = Spec(
            name=name, title=f"M5-scale synthetic daily panel ({args.series:,} series x {args.days:,} days)",
            freq="D", horizon=args.horizon, cutoffs=cutoffs, season=7, drivers=DRIVERS,
            sales_regressors=SALES_REGRESSORS, min_train=min_train, threads=1, ml_scaler="standard", ml_dropna=True,
            plancell_params=args.plancell_params, notes=notes,
            command=shlex.join(["python", "-m", "bench.m5", *(sys.argv[1:] if argv is None else argv)]),
        )
        spec.save(workdir)
        results: dict[str, dict] = {}
        for k, m in enumerate(methods):
            results[m] = _run(m, workdir, args.workers, args.mem_limit_gb * 1024)
            _write(out, _timings(spec, results, methods[k + 1:]))
        panel = pd.read_parquet(workdir / "panel.parquet")
        table = C._score(panel, spec, workdir, results)
        del panel
        text = C._report(spec, table, results)
        extra = ["", "### Ratios (this run)", "", *_ratios(results, table), "",
                 "### Targets (issue 7)", "", *_targets(results)]
        dask = results.get(DASK, {})
        if "peak_rss_workers_mb" in dask:
            extra += ["", f"Dask path peak RSS: client {dask['peak_rss_client_mb']:.0f} MB + workers "
                          f"{', '.join(f'{w:.0f}' for w in dask['peak_rss_workers_mb'])} MB."]
        for m, info in results.items():
            if info.get("rss_phases_mb"):
                extra += ["", f"{C.LABELS[m]}, peak RSS of the {'client ' if m == DASK else ''}process so far (MB): "
                              + ", ".join(f"after {k} {v:.0f}" for k, v in info["rss_phases_mb"].items())
                              + f", at the end {info.get('peak_rss_client_mb', info['peak_rss_mb']):.0f}."]
        extra += ["", "Sampled tree RSS max (MB): " + ", ".join(
            f"{C.LABELS[m]} {info.get('max_tree_mb', 0):.0f}" for m, info in results.items()) + "."]
        text = text + "\n" + "\n".join(extra)
        print(text)
        _write(out, text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

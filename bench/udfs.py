"""Excel functions from a warm process: 10,000 FORECAST_SKU calls (target: under 0.5 s in total).

``python -m bench.udfs [--calls 10000] [--skus 200]``

Trains a small plan into a temporary model store, warms the plan cache with one call, then
times ``--calls`` calls of FORECAST_SKU (random SKU, location, 1-12 periods, P50 or P90) and
of SAFETY_STOCK / SKU_CLASS, as the xlwings UDF server would make them: plain Python calls
into addin.udfs (Excel's own COM marshalling is not included -- it cannot run here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--skus", type=int, default=200)
    args = ap.parse_args(argv)
    home = tempfile.mkdtemp(prefix="plancell-udf-bench-")
    os.environ["PLANCELL_HOME"] = home
    os.environ["PLANCELL_MODEL"] = "bench"

    from addin.udfs import FORECAST_SKU, SAFETY_STOCK, SKU_CLASS
    from engine.contract import validate
    from engine.plan import build_plan
    from engine.store import ModelStore
    from engine.synthetic import generate_panel

    p = generate_panel("W", n_skus=args.skus, n_locations=2, seed=1, horizon=12)
    data = validate(p.sales, p.drivers, p.items, freq="W")
    build_plan(data, horizon=12, windows=2, model_params={"n_estimators": 50}, store=ModelStore(), model_name="bench")
    keys = p.items[["SKU", "Location"]].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    pick = keys[rng.integers(0, len(keys), args.calls)]
    periods = rng.integers(1, 13, args.calls).astype(float)      # Excel passes numbers as floats
    quant = np.where(rng.random(args.calls) < 0.8, 0.5, 0.9)
    first = FORECAST_SKU(pick[0][0], 1.0, pick[0][1])               # warm: loads and indexes the plan
    assert not isinstance(first, str), first
    lines = [f"# Excel functions, warm process ({len(keys)} SKU-locations, horizon 12)", "",
             f"Command: `python -m bench.udfs --calls {args.calls} --skus {args.skus}`", "",
             "| function | calls | total s | per call us |", "|---|---|---|---|"]
    for name, fn in (("FORECAST_SKU", lambda i: FORECAST_SKU(pick[i][0], periods[i], pick[i][1], quant[i])),
                     ("SAFETY_STOCK", lambda i: SAFETY_STOCK(pick[i][0], pick[i][1])),
                     ("SKU_CLASS", lambda i: SKU_CLASS(pick[i][0], pick[i][1]))):
        t0 = time.perf_counter()
        for i in range(args.calls):
            out = fn(i)
        dt = time.perf_counter() - t0
        assert not isinstance(out, str) or not out.startswith("PLANCELL"), out
        lines.append(f"| {name} | {args.calls:,} | {dt:.3f} | {1e6 * dt / args.calls:.1f} |")
    text = "\n".join(lines)
    print(text)
    from bench._common import RESULTS_DIR

    (RESULTS_DIR / "udfs.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of Plancell's own pipeline, without a benchmark harness around it.

    python -m bench.memory --series 10000 [--days 1095] [--horizon 28]

Generates the synthetic daily panel in-process, then validates, fits (with the
calibration fit and the refit) and predicts, printing the process's current and
peak RSS after each stage. Inside ``fit`` the model's progress events split the
stages further (panel and driver statistics built; calibration fit and forecast;
refit), each with the highest RSS sampled during it (every 20 ms), so the step that
sets the peak is named. The harness of ``bench.synthetic`` keeps its own copies
of the data (its seasonal-naive child alone peaks at about 3.5 GB at 10k series),
so this is the number to read for the engine's footprint.
"""

from __future__ import annotations

import argparse
import gc
import resource
import threading
import time

import pandas as pd

from engine.contract import validate
from engine.model import DemandForecaster
from engine.progress import ProgressEvent
from engine.synthetic import generate_panel


def _current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sampler:
    """The highest current RSS since the last :meth:`reset`, sampled in a thread."""

    def __init__(self, every: float = 0.02) -> None:
        self.high = _current_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.high = max(self.high, _current_mb())

    def reset(self) -> float:
        high, self.high = max(self.high, _current_mb()), _current_mb()
        return high

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--horizon", type=int, default=28)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sampler = _Sampler()

    def mark(stage: str) -> None:
        print(f"{stage:<40} current {_current_mb():7.0f} MB   stage max {sampler.reset():7.0f} MB   "
              f"peak {_peak_mb():7.0f} MB   {time.perf_counter() - t0:7.1f} s", flush=True)

    def fit_step(event: ProgressEvent) -> None:
        mark(f"  fit: {event.message}")

    p = generate_panel("D", n_skus=args.series // 10, n_locations=10, periods=args.days, horizon=args.horizon,
                       seed=0)
    sales = pd.concat([p.sales, p.future.drop(columns=["Qty"])], ignore_index=True)
    drivers, items = p.drivers, p.items
    del p
    gc.collect()
    mark("data in memory")
    data = validate(sales, drivers, items)
    del sales
    gc.collect()
    mark("validated")
    model = DemandForecaster(horizon=args.horizon, n_jobs=args.threads).fit(data, progress=fit_step)
    mark("fitted (calibration + refit)")
    model.predict(args.horizon)
    mark("predicted")
    sampler.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

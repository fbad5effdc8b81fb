"""Scale-out on a Dask cluster: training, forecasts, backtests and simulations by series.

The local engine (:mod:`engine.model`, :mod:`engine.backtest`) stays the default. This
module runs the same model on a ``dask.distributed`` cluster when one is asked for:
``plancell backtest --dask ADDRESS|local[:N]``, the workbook's ``Cluster`` setting, or
``plancell serve --dask ADDRESS``.

What runs where. The client validates the data, builds the dense panel (series x
periods) and picks the training rows exactly as the local engine does (same rows, same
random horizons: :meth:`DemandForecaster._training_rows`). Series are cut into
contiguous chunks; each chunk (its panel rows and its training rows) goes to one worker,
which builds that chunk's features; LightGBM's own Dask estimator
(``lightgbm.dask.DaskLGBMRegressor``, data-parallel) trains one global model over all
workers' rows. The full feature matrix never exists on the client; each worker holds
the rows of its own chunks only. Forecasts are computed by series chunk on the workers too. The fitted model is a
plain :class:`DemandForecaster`: it predicts, saves and loads without a cluster.

Same results, within a tolerance. The features are bit-identical to the local engine's,
and so are the forecasts when one worker trains (``partitions=1``). With several workers
the trees differ as with another random seed: distributed LightGBM finds bin boundaries
per worker and bags each worker's rows separately. Tested on 2 workers
(tests/test_distributed.py, docs/dask.md): total forecast within 3 %, median per-row P50
difference below 15 %, WAPE within 0.02 (backtest: 0.03) of the local engine's.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from . import __version__
from . import schema as S
from .drivers import fill_future_regressors
from .errors import InputError, Problem, TransientError
from .features import CATEGORICAL, FeatureSpec, Panel, RegressorStats, _Cums, column_calendar, feature_matrix
from .model import DemandForecaster
from .progress import ProgressCallback

if TYPE_CHECKING:  # dask is an optional dependency (pip install plancell[dask])
    from distributed import Client

    from .backtest import BacktestResult

__all__ = [
    "connect",
    "check_address",
    "cluster_from_settings",
    "fit",
    "predict",
    "backtest",
    "map_by_series",
    "DEFAULT_PORT",
]

_log = logging.getLogger(__name__)

#: Port of a Dask scheduler when an address gives none (Dask's own default).
DEFAULT_PORT = 8786
_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_LOCAL = re.compile(r"local(?::(?P<n>.*))?", re.IGNORECASE)
_OFF = {"", "none", "off", "no", "false", "local engine"}
#: Training rows per series chunk: ~90 MB of float32 features per chunk at 46 features.
_ROWS_PER_CHUNK = 500_000
_FIX = ("give a scheduler address such as tcp://10.0.0.5:8786, or local / local:N to start N "
        "worker processes on this machine")


# ---------------------------------------------------------------- addresses and clients

def _bad_address(text: str, why: str, source: str) -> InputError:
    if source == "Settings":
        where = {"table": "Settings", "column": "Cluster"}
        fix = f"{_FIX} in the Settings table (Key Cluster), or clear it to use this machine only"
    else:
        where = {"table": "command line", "column": source}
        fix = _FIX
    return InputError(
        f"Dask cluster address {text!r} cannot be used: {why}. Fix: {fix}.",
        [Problem(message=why, fix=fix, value=text, code="E110", **where)],
        code="E110",
    )


def check_address(address: str, *, source: str = "--dask") -> str:
    """The normalised cluster address: ``local``, ``local:N`` or ``scheme://host:port``.

    Raises :class:`InputError` (E110) naming the address and the fix; ``source`` says
    where it was typed (``"--dask"`` or ``"Settings"``). Nothing is contacted here.
    """
    text = str(address if address is not None else "").strip()
    if not text:
        raise _bad_address(text, "the address is empty", source)
    m = _LOCAL.fullmatch(text)
    if m:
        n = m.group("n")
        if n is None:
            return "local"
        if not n.strip().isdigit() or not 1 <= int(n) <= 512:
            raise _bad_address(text, f"local:N needs a number of worker processes from 1 to 512, got {n!r}",
                               source)
        return f"local:{int(n)}"
    if any(c.isspace() for c in text):
        raise _bad_address(text, "an address has no spaces", source)
    scheme, sep, _ = text.partition("://")
    url = text if sep else f"tcp://{text}"
    scheme = scheme if sep else "tcp"
    if scheme.lower() not in _SCHEMES:
        raise _bad_address(text, f"unknown protocol {scheme!r} (use {', '.join(_SCHEMES)})", source)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise _bad_address(text, "the port must be a number from 1 to 65535", source) from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _bad_address(text, "expected [protocol://]host[:port], the host is missing", source)
    if port == 0:
        raise _bad_address(text, "the port must be a number from 1 to 65535", source)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme.lower()}://{host}:{port or DEFAULT_PORT}"


def cluster_from_settings(settings: Mapping[str, Any]) -> str | None:
    """The workbook's ``Cluster`` setting, checked, or ``None`` for the local engine.

    Keys match case-insensitively; a blank value, ``none`` or ``off`` means no cluster.
    """
    for key, value in settings.items():
        if str(key).strip().lower() == "cluster":
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
            if text.lower() in _OFF:
                return None
            return check_address(text, source="Settings")
    return None


def connect(address: str, *, timeout: float = 30.0, source: str = "--dask") -> "Client":
    """A ``distributed.Client`` for ``address`` (see :func:`check_address`).

    ``local`` starts one worker process per CPU core, ``local:N`` N of them, each with one
    thread, listening on 127.0.0.1 only; closing the client stops them. Any other address
    is an existing scheduler. Checks that the workers run this Plancell version.
    Raises :class:`InputError` for a malformed address or unusable workers and
    :class:`TransientError` when the scheduler cannot be reached or has no workers.
    """
    addr = check_address(address, source=source)
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "Dask is not installed: run pip install 'plancell[dask]' to use a cluster, or leave out the "
            "cluster address to run on this machine.", code="E110",
        ) from None
    try:
        if addr.startswith("local"):
            n = int(addr.partition(":")[2] or (os.cpu_count() or 1))
            # The scheduler always serves HTTP (health checks, a dashboard if bokeh is installed):
            # on loopback and a free port, so two local clusters never collide on 8787.
            client = Client(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address="127.0.0.1:0", set_as_default=False, timeout=timeout)
        else:
            client = Client(addr, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise TransientError(
            f"Cannot reach the Dask scheduler at {addr} ({type(exc).__name__}: {_short(exc)}). Fix: check "
            "that the scheduler is running and that this machine may connect to that host and port "
            "(firewall, VPN), or use local / local:N to run on this machine.",
        ) from None
    except ValueError as exc:
        raise _bad_address(addr, _short(exc), source) from None
    try:
        _check_workers(client, addr, timeout)
        if addr.startswith("local"):
            client.run(_quiet_stdout)
    except BaseException:
        client.close()
        raise
    _log.info("connected to %s: %d workers, %d threads", addr, len(client.nthreads()),
              sum(client.nthreads().values()))
    return client


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _worker_version() -> str:
    """Runs on every worker: the engine version it imports."""
    import engine

    return engine.__version__


def _quiet_stdout() -> None:
    """Runs on the workers of a local cluster, which inherit the client's terminal:
    LightGBM's network code prints ``[LightGBM] [Info] ...`` lines from C++ whatever the
    verbosity, and the CLI's stdout must carry its results only (``--json``). Workers
    report through logging (stderr), which stays."""
    import sys

    sys.stdout.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def _check_workers(client: "Client", addr: str, timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        raise TransientError(
            f"The Dask scheduler at {addr} has no workers after {timeout:.0f} s. Fix: start workers "
            f"(dask worker {addr}) or scale the cluster up, then try again.",
        ) from None
    try:
        versions = client.run(_worker_version)
    except ImportError as exc:
        raise InputError(
            f"The workers of {addr} cannot import Plancell's engine ({_short(exc)}). Fix: install "
            f"plancell[dask]=={__version__} in the workers' environment (image, conda env).",
            code="E110",
        ) from None
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        raise InputError(
            f"Workers of {addr} run Plancell {sorted(set(wrong.values()))}, this client {__version__}. "
            f"Fix: install plancell[dask]=={__version__} on every worker.",
            code="E110",
        )


def _workers(client: "Client") -> list[str]:
    workers = sorted(client.nthreads())
    if not workers:
        raise TransientError("The Dask cluster has no workers left. Fix: restart or scale up the cluster.")
    return workers


@contextlib.contextmanager
def _cluster_faults() -> Iterator[None]:
    """Lost workers and broken connections are worth a retry, not a bug report."""
    from distributed import CancelledError, KilledWorker
    from distributed.comm.core import CommClosedError

    try:
        yield
    except (KilledWorker, CancelledError, CommClosedError) as exc:
        raise TransientError(
            f"The Dask cluster failed during the run ({type(exc).__name__}: {_short(exc)}). Fix: check the "
            "workers' memory (docs/dask.md, 'Memory') and try again.",
        ) from None


class _PrintsToLog(io.TextIOBase):
    """lightgbm.dask reports progress with print(); library code never prints."""

    def write(self, text: str) -> int:
        if text.strip():
            _log.debug("lightgbm: %s", text.strip())
        return len(text)


# ---------------------------------------------------------------- series chunks

def _panel_rows(panel: Panel, a: int, b: int) -> Panel:
    """Series ``a..b-1`` of ``panel``; codes (location, category) keep their global values."""
    return Panel(
        freq=panel.freq, anchor=panel.anchor, p0=panel.p0, n_hist=panel.n_hist,
        keys=panel.keys.iloc[a:b].reset_index(drop=True), y=panel.y[a:b], censored=panel.censored[a:b],
        regressors={k: v[a:b] for k, v in panel.regressors.items()},
        assumed={k: v[a:b] for k, v in panel.assumed.items()},
        start=None if panel.start is None else panel.start[a:b],
        loc_codes=None if panel.loc_codes is None else panel.loc_codes[a:b],
        cat_codes=None if panel.cat_codes is None else panel.cat_codes[a:b],
        holiday_country=panel.holiday_country, driver_names=panel.driver_names,
    )


def _stats_rows(stats: RegressorStats, a: int, b: int) -> RegressorStats:
    return RegressorStats(
        normals={k: v[a:b] for k, v in stats.normals.items()},
        price_ref={k: v[a:b] for k, v in stats.price_ref.items()},
        kinds=dict(stats.kinds),
        sensitivity={k: v[a:b] for k, v in stats.sensitivity.items()},
    )


def _even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    cuts = np.unique(np.linspace(0, n, max(1, min(parts, n)) + 1).round().astype(int))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def _row_bounds(i: np.ndarray, n: int, parts: int) -> list[tuple[int, int, int, int]]:
    """Contiguous series ranges ``(a, b)`` holding about equal numbers of training rows,
    with their row ranges ``(lo, hi)`` in the (series-sorted) row arrays."""
    if parts <= 1 or len(i) == 0:
        cuts = np.array([0, n])
    else:
        at = (np.arange(1, parts) * len(i)) // parts
        cuts = np.unique(np.concatenate([[0], i[at], [n]]))
    rows = np.searchsorted(i, cuts)
    return [(int(cuts[k]), int(cuts[k + 1]), int(rows[k]), int(rows[k + 1])) for k in range(len(cuts) - 1)
            if rows[k + 1] > rows[k]]


@dataclass
class _TrainChunk:
    """What one worker needs to build the features of one series chunk (``i`` local)."""

    panel: Panel
    z: np.ndarray  # scaled history [series, n_hist]
    stats: RegressorStats
    spec: FeatureSpec
    i: np.ndarray
    t: np.ndarray
    shift: np.ndarray | int
    direct: bool
    target: np.ndarray
    weight: np.ndarray | None


def _chunk_features(chunk: _TrainChunk) -> np.ndarray:
    """Runs on a worker: the chunk's feature rows, exactly as the local fit streams them."""
    cal = column_calendar(chunk.panel, chunk.spec)
    return feature_matrix(chunk.panel, chunk.z, chunk.i, chunk.t, chunk.spec, chunk.stats,
                          cums=_Cums(chunk.z), shift=chunk.shift, calendar=cal, direct=chunk.direct)


def _chunk_target(chunk: _TrainChunk) -> np.ndarray:
    return chunk.target


def _chunk_weight(chunk: _TrainChunk) -> np.ndarray:
    return chunk.weight if chunk.weight is not None else np.ones(len(chunk.i))


@dataclass
class _ForecastChunk:
    panel: Panel  # extended to the horizon, future regressors filled on the client
    scale: np.ndarray
    stats: RegressorStats
    spec: FeatureSpec
    strategy: str
    nonneg: np.ndarray


def _chunk_forecast(chunk: _ForecastChunk, boosters: list[Any], horizon: int) -> np.ndarray:
    """Runs on a worker: point forecasts ``[series, horizon]`` of one chunk."""
    model = DemandForecaster(strategy=chunk.strategy)
    model.spec_, model.nonneg_ = chunk.spec, chunk.nonneg
    return model._forecast(chunk.panel, boosters, chunk.scale, chunk.stats, horizon, fill=False)


_PARAM_NAMES = tuple(p for p in inspect.signature(DemandForecaster.__init__).parameters if p != "self")
_SKLEARN_NAMES = {"min_data_in_leaf": "min_child_samples", "feature_fraction": "colsample_bytree",
                  "bagging_fraction": "subsample", "bagging_freq": "subsample_freq", "seed": "random_state"}


class _ClusterForecaster(DemandForecaster):
    """:class:`DemandForecaster` whose boosters train, and whose forecasts run, on a cluster."""

    def __init__(self, client: "Client", partitions: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._client = client
        self._partitions = partitions

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        # the model's parameters, not this constructor's (client, partitions)
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    def _parts(self, rows: int, workers: int) -> int:
        if self._partitions:
            return int(self._partitions)
        # at least one chunk per worker; more on big data so one chunk's features stay small
        return max(workers, math.ceil(rows / _ROWS_PER_CHUNK))

    def _dask_params(self, n_rows: int) -> dict[str, Any]:
        p = self._lgb_params(n_rows)
        p.pop("num_threads", None)  # lightgbm.dask uses each worker's own thread count
        out = {_SKLEARN_NAMES.get(k, k): v for k, v in p.items()}
        out["n_estimators"] = self.n_estimators
        return out

    def _train(self, panel: Panel, stats: RegressorStats | None = None) -> tuple[list[Any], np.ndarray,
                                                                                     RegressorStats]:
        import dask
        import dask.array as da
        from lightgbm.dask import DaskLGBMRegressor

        client = self._client
        stats, scale, z, i, t, shift, target, w = self._training_rows(panel, stats)
        h, direct, n_rows = panel.n_hist, self.strategy == "direct", len(i)
        workers = _workers(client)
        bounds = _row_bounds(i, panel.n, self._parts(n_rows, len(workers)))
        n_features = len(self.feature_names_)
        X, y, wt = [], [], []
        with _cluster_faults():
            for k, (a, b, lo, hi) in enumerate(bounds):
                chunk = _TrainChunk(
                    panel=_panel_rows(panel, a, b), z=z[a:b, :h], stats=_stats_rows(stats, a, b), spec=self.spec_,
                    i=i[lo:hi] - a, t=t[lo:hi], shift=shift[lo:hi] if direct else 0, direct=direct,
                    target=target[lo:hi], weight=None if w is None else w[lo:hi],
                )
                # Chunks are pinned round-robin: the same data gives the same partition layout,
                # hence the same distributed model, on every run.
                where = [workers[k % len(workers)]]
                [remote] = client.scatter([chunk], workers=where, hash=False)
                del chunk
                n_k = hi - lo
                for out, fn, shape, dtype in ((X, _chunk_features, (n_k, n_features), np.float32),
                                              (y, _chunk_target, (n_k,), np.float32),
                                              (wt, _chunk_weight, (n_k,), np.float64)):
                    fut = client.submit(fn, remote, workers=where, allow_other_workers=False, pure=False)
                    out.append(da.from_delayed(dask.delayed(fut), shape=shape, dtype=dtype))
            # The client's copies are no longer needed once the workers hold their chunks.
            del z, i, t, shift, target, w
            _log.info("training on %d workers: %d rows in %d series chunks", len(workers), n_rows, len(bounds))
            est = DaskLGBMRegressor(client=client, **self._dask_params(n_rows))
            cat_idx = [k for k, nme in enumerate(self.feature_names_) if nme in CATEGORICAL]
            with client.as_current(), warnings.catch_warnings(), contextlib.redirect_stdout(_PrintsToLog()):
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                est.fit(da.concatenate(X), da.concatenate(y), sample_weight=da.concatenate(wt),
                        feature_name=list(self.feature_names_), categorical_feature=cat_idx)
        return [est.booster_], scale, stats

    def _forecast(self, panel: Panel, boosters: list[Any], scale: np.ndarray, stats: RegressorStats,
                  H: int, *, fill: bool = True) -> np.ndarray:
        client = self._client
        panel = panel.extend(H)
        if fill:
            # On the whole panel, as the local engine does: the fill method is chosen per regressor
            # over all series, so a chunk must not choose again.
            fill_future_regressors(panel, stats, self.spec_, H)
        nonneg = self.nonneg_ if self.nonneg_.shape[0] == panel.n else np.ones(panel.n, dtype=bool)
        workers = _workers(client)
        parts = int(self._partitions or 2 * len(workers))
        futures = []
        with _cluster_faults():
            [remote_boosters] = client.scatter([boosters], broadcast=True, hash=False)
            for k, (a, b) in enumerate(_even_bounds(panel.n, parts)):
                where = [workers[k % len(workers)]]
                # the assumed-value flags stay on the client: forecasts do not read them
                chunk = _ForecastChunk(panel=replace(_panel_rows(panel, a, b), assumed={}), scale=scale[a:b],
                                       stats=_stats_rows(stats, a, b), spec=self.spec_, strategy=self.strategy,
                                       nonneg=nonneg[a:b])
                [remote] = client.scatter([chunk], workers=where, hash=False)
                futures.append(client.submit(_chunk_forecast, remote, remote_boosters, H, workers=where,
                                             pure=False))
            return np.concatenate(client.gather(futures), axis=0)


def _with_state(cls: type, model: DemandForecaster, **extra: Any) -> Any:
    """A ``cls`` instance sharing ``model``'s parameters and fitted state."""
    out = cls.__new__(cls)
    out.__dict__.update({k: v for k, v in model.__dict__.items() if k not in ("_client", "_partitions")})
    out.__dict__.update(extra)
    return out


# ---------------------------------------------------------------- public entry points

def fit(
    client: "Client",
    data: Any,
    *,
    partitions: int | None = None,
    progress: ProgressCallback = None,
    **params: Any,
) -> DemandForecaster:
    """Train a :class:`DemandForecaster` (``params`` as its constructor's) on the cluster.

    ``partitions``: series chunks for training and forecasting (default: enough for about
    500k training rows per chunk, at least one per worker). The result is a plain
    ``DemandForecaster``, usable and storable without the cluster.
    """
    model = _ClusterForecaster(client, partitions, **params).fit(data, progress=progress)
    return _with_state(DemandForecaster, model)


def predict(
    client: "Client",
    model: DemandForecaster,
    horizon: int | None = None,
    *,
    future: pd.DataFrame | None = None,
    drivers: pd.DataFrame | None = None,
    quantiles: Sequence[float] | None = None,
    partitions: int | None = None,
) -> pd.DataFrame:
    """``model.predict(...)`` with the forecasts computed on the cluster by series chunk."""
    model._check_fitted()
    view = _with_state(_ClusterForecaster, model, _client=client, _partitions=partitions)
    return view.predict(horizon, future=future, drivers=drivers, quantiles=quantiles)


def backtest(
    client: "Client",
    data: Any,
    *,
    horizon: int,
    windows: int = 3,
    step: int | None = None,
    model_params: dict[str, Any] | None = None,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    partitions: int | None = None,
    progress: ProgressCallback = None,
) -> "BacktestResult":
    """:func:`engine.backtest.backtest` with every window's model trained and forecast on the
    cluster; the same :class:`BacktestResult` (``overall["cluster"]`` says where it ran)."""
    from .backtest import backtest as local_backtest

    make = functools.partial(_ClusterForecaster, client, partitions)
    result = local_backtest(data, horizon=horizon, windows=windows, step=step, model_params=model_params,
                            quantiles=quantiles, progress=progress, forecaster=make)
    threads = client.nthreads()
    result.overall["cluster"] = {"workers": len(threads), "threads": int(sum(threads.values()))}
    return result


def map_by_series(
    client: "Client",
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    frame: pd.DataFrame,
    *,
    keys: Sequence[str] = (S.SKU, S.LOCATION),
    partitions: int | None = None,
) -> pd.DataFrame:
    """``fn(part)`` on the workers for partitions of ``frame`` that never split a series.

    Series (rows sharing ``keys``; a missing Location column counts as one location) are
    assigned to ``partitions`` contiguous groups in key order (default: two per worker);
    the results, DataFrames or Series, are concatenated in partition order. Used for Monte
    Carlo simulation by SKU; ``fn`` must be picklable (a module-level function or a lambda).
    """
    present = [k for k in keys if k in frame.columns]
    missing = [k for k in keys if k not in frame.columns and k != S.LOCATION]
    if missing or not present:
        cols = missing or list(keys)
        raise InputError(
            f"Cannot split the data by series: column(s) {', '.join(cols)} missing.",
            [Problem("data", "series key column missing", f"add a {c} column", column=c, code="E101")
             for c in cols],
            code="E101",
        )
    if frame.empty:
        return fn(frame)
    workers = _workers(client)
    codes = frame.groupby(present, sort=True, observed=True, dropna=False).ngroup().to_numpy()
    n_series = int(codes.max()) + 1
    parts = max(1, min(int(partitions or 2 * len(workers)), n_series))
    part_of = codes * parts // n_series
    futures = []
    with _cluster_faults():
        for p in range(parts):
            rows = np.flatnonzero(part_of == p)
            if not len(rows):
                continue
            where = [workers[p % len(workers)]]
            [remote] = client.scatter([frame.iloc[rows]], workers=where, hash=False)
            futures.append(client.submit(fn, remote, workers=where, pure=False))
        results = client.gather(futures)
    bad = [type(r).__name__ for r in results if not isinstance(r, (pd.DataFrame, pd.Series))]
    if bad:
        raise TypeError(f"map_by_series: fn must return a DataFrame or Series, got {bad[0]}")
    return pd.concat(results, ignore_index=True)

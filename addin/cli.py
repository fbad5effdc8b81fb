"""The ``plancell`` command: the ribbon's actions, headless, on files.

Exit codes: 0 success; 2 the user's input or arguments need fixing (the problems are
listed on stderr, never a traceback); 1 anything else (one line; ``--traceback`` shows
the details). Only results go to stdout, so ``--json`` output can be piped; progress
bars, warnings and errors go to stderr.

Engine modules are imported inside the commands: ``plancell --help`` should not wait
for LightGBM to load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from engine import __version__
from engine.errors import InputError, PlancellBug, PlancellError, Problem

__all__ = ["main", "DEFAULT_HORIZON", "DEFAULT_WINDOWS"]

_log = logging.getLogger(__name__)

#: Default forecast horizon per frequency: four weeks daily, two months weekly, half a year monthly.
DEFAULT_HORIZON: dict[str, int] = {"D": 28, "W": 12, "MS": 6}  # keep equal to engine.model.DEFAULT_HORIZON
DEFAULT_WINDOWS = 3
_FREQ_WORDS = {"D": "daily", "W": "weekly", "MS": "monthly"}
_EXIT_OK, _EXIT_FAIL, _EXIT_INPUT = 0, 1, 2
_DEMO_FILE = "plancell-demo.xlsx"


# --------------------------------------------------------------------------- helpers


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _budget(text: str) -> float:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount (write e.g. 25000)") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the budget must be 0 or more")
    return value


def _columns(text: str) -> list[str]:
    """``"store, item"`` -> ``["store", "item"]``."""
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise argparse.ArgumentTypeError(f"expected one or more column names separated by commas, got {text!r}")
    return cols


def _freq(text: str) -> str:
    f = text.strip().upper()
    if f not in DEFAULT_HORIZON:
        raise argparse.ArgumentTypeError(f"expected D (daily), W (weekly) or MS (monthly), got {text!r}")
    return f


def _pct(x: Any, signed: bool = False) -> str:
    if not _finite(x):
        return "n/a"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def _num(x: Any) -> str:
    return f"{x:.2f}" if _finite(x) else "n/a"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars become numbers, NaN/inf become null."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return str(obj)


def _metrics(block: Any) -> dict[str, Any]:
    block = block if isinstance(block, Mapping) else {}
    return {k: block.get(k) for k in ("wape", "mase", "bias")}


def _improvement(model: Any, baseline: Any) -> str:
    """``"22% better"`` / ``"5% worse"`` relative to the baseline's WAPE."""
    if not (_finite(model) and _finite(baseline)) or baseline == 0:
        return "no comparison"
    change = (baseline - model) / baseline
    return f"{abs(change):.0%} {'better' if change >= 0 else 'worse'}"


def _n_baseline(per_series: Any) -> int | None:
    """Series whose plan comes from a baseline instead of the model."""
    if per_series is None or "model_used" not in getattr(per_series, "columns", ()):
        return None
    return int((per_series["model_used"].astype(str) != "lightgbm").sum())


class _ProgressBars:
    """Renders engine progress events as one tqdm bar on stderr, replaced when the stage
    changes (the engine's stages run one after another: backtest, train, forecast)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        total = max(int(event.total), 0)
        if event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=total, desc=event.stage, file=sys.stderr, leave=False, dynamic_ncols=True)
        elif event.done < self._bar.n or self._bar.total != total:  # the stage started over
            self._bar.reset(total=total)
        self._bar.n = min(int(event.done), total) if total else int(event.done)
        if event.message:
            self._bar.set_postfix_str(str(event.message)[:40], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None


@contextlib.contextmanager
def _progress(args: argparse.Namespace) -> Iterator[_ProgressBars]:
    bars = _ProgressBars(enabled=not getattr(args, "quiet", False) and sys.stderr.isatty())
    try:
        yield bars
    finally:
        bars.close()


@contextlib.contextmanager
def _results_only_on_stdout(active: bool) -> Iterator[None]:
    """With ``--json``, stray prints from libraries (LightGBM logs through Python's
    stdout) go to stderr so stdout carries exactly one JSON object."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_warnings(warnings: Sequence[Problem]) -> None:
    for p in warnings[:20]:
        print(f"warning: {p}", file=sys.stderr)
    if len(warnings) > 20:
        print(f"warning: ... and {len(warnings) - 20} more", file=sys.stderr)


# --------------------------------------------------------------------------- demo


def _with_plan_rows(sales: Any, future: Any) -> Any:
    """History plus the planned future Price/Promo rows with a blank Qty: how a planner
    tells the engine about next month's promotions in the Sales table."""
    import pandas as pd

    plan_cols = [c for c in sales.columns if c in future.columns and c != "Qty"]
    rows = future.loc[:, plan_cols].copy()
    rows["Qty"] = float("nan")
    out = pd.concat([_plain(sales), _plain(rows)], ignore_index=True)[list(sales.columns)]
    return out.sort_values(["SKU", "Location", "Date"], kind="stable", ignore_index=True)


def _plain(df: Any) -> Any:
    """Categorical keys as plain text: concatenating categoricals with different categories
    would silently give object columns anyway, and Excel has no categories."""
    out = df.copy()
    for c in out.columns:
        if str(out[c].dtype) == "category":
            out[c] = out[c].astype(str)
    return out


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine.contract import validate
    from engine.plan import build_plan
    from engine.store import ModelStore
    from engine.synthetic import generate_panel

    from .workbook import write_plan_workbook

    tic = time.perf_counter()
    freq = args.freq
    horizon = args.horizon or DEFAULT_HORIZON[freq]
    out_dir = Path(args.out)
    model_params = {"n_estimators": args.rounds} if args.rounds else None

    with _progress(args) as progress:
        panel = generate_panel(freq, n_skus=args.skus, n_locations=args.locations, horizon=horizon,
                               seed=args.seed)
        sales = _with_plan_rows(panel.sales, panel.future)
        drivers, items = _plain(panel.drivers), _plain(panel.items)
        data = validate(sales, drivers, items, freq=freq)
        _print_warnings(getattr(data, "warnings", []))
        store = ModelStore()
        result = build_plan(data, horizon=horizon, windows=args.windows, model_params=model_params,
                            progress=progress, store=store, model_name="plancell-demo", budget=args.budget)
        path = write_plan_workbook(
            out_dir / _DEMO_FILE, sales=sales, drivers=drivers, items=items, plan=result.plan,
            accuracy=result.accuracy, metadata=result.metadata, summary=result.backtest.overall,
            policy=result.policy, purchases=result.purchases, budget=args.budget,
            history=data.sales[data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]],
            extra_sheets=[_what_if_sheet(items), _published_last_month(result),
                          *_sop_demo_sheets(result, data, sales, items)],
            settings=_demo_settings(freq, horizon, args.windows),
        )
        # The S&OE buttons on the file just written, exactly as Check Execution / Run Scenario would.
        from .actions import check, scenario
        from .port import FileBook

        checked = check(FileBook(path), store=store)
        scen = scenario(FileBook(path), store=store, paths=500)
    elapsed = time.perf_counter() - tic

    overall = result.backtest.overall
    model, naive = _metrics(overall.get("model")), _metrics(overall.get("seasonal_naive"))
    meta = result.metadata
    n_series = meta.get("n_series") or overall.get("n_series")
    n_periods = int(panel.sales["Date"].nunique())
    n_base = meta.get("n_series_baseline", overall.get("n_series_baseline"))
    lines = [
        f"Wrote {path.resolve()}",
        f"  series            {n_series} ({args.skus} SKUs x {args.locations} locations), "
        f"{n_periods} {_FREQ_WORDS[freq]} periods of history",
        f"  horizon           {horizon} periods, backtested over {overall.get('windows', args.windows)} windows",
        f"  WAPE              model {_pct(model['wape'])} vs seasonal naive {_pct(naive['wape'])} "
        f"({_improvement(model['wape'], naive['wape'])})",
        f"  P10-P90 coverage  {_pct(overall.get('coverage_p10_p90'))} (target 80%)",
        f"  baseline series   {'n/a' if n_base is None else n_base} of {n_series} use a baseline forecast",
        f"  inventory         {_inventory_line(result.policy, result.purchases)}",
        f"  alerts            {len(checked['alerts'])} (Alerts sheet)",
        *(f"  scenario          {r['Scenario']}: fill rate {_pct(r['Fill rate (baseline)'])} baseline -> "
          f"{_pct(r['Fill rate (scenario)'])}" for r in scen["summary"].to_dict("records")),
        f"  model saved       {meta.get('model_name')} v{meta.get('model_version')} in {store.root}",
        f"  elapsed           {elapsed:.1f} s",
        "Open it in Excel: sheets Plan (inventory policy + forecast), Accuracy, Alerts, Purchases, Charts, "
        "Scenario, FVA, Finance, Sales, Drivers, Items, What-if, Overrides.",
    ]
    print("\n".join(lines))
    return _EXIT_OK


def _published_last_month(result: Any) -> Any:
    """The demo's S&OE story: the plan published at the last backtest cut-off (what the
    model forecast then for the periods that have since happened), so Check Execution has
    actuals to compare with. Labelled as reconstructed, not as a real publication."""
    from engine.backtest import MODEL_NAME

    from .sheets import PLAN_HEADERS, snapshot_name, snapshot_sheet

    bt = result.backtest
    last = bt.forecasts[bt.forecasts["window"] == bt.forecasts["window"].max()].copy()
    used = last.merge(bt.per_series[["SKU", "Location", "model_used"]], on=["SKU", "Location"], how="left")
    for q in ("P10", "P50", "P90"):
        base = used[f"sn_{q}"] if f"sn_{q}" in used.columns else used[q]
        used[q] = used[q].where(used["model_used"].fillna(MODEL_NAME) == MODEL_NAME, base)
    cutoff = bt.cutoffs[-1]
    plan = used.rename(columns={"Date": "Period", "model_used": "Model used"})
    plan["Reason"], plan["Assumed drivers"] = "published at the cut-off", None
    plan = plan[[h for h in PLAN_HEADERS if h in plan.columns]]
    name, tag = snapshot_name(cutoff, 1)
    meta = result.metadata
    items = [("Model", meta.get("model_name")), ("Frequency", meta.get("freq")),
             ("Published at", str(pd_date(cutoff))),
             ("Note", "demo: the plan as forecast at this cut-off (the last backtest window), for Check Execution")]
    return snapshot_sheet(name, f"Plancell plan snapshot {cutoff:%Y-%m} v1", tag, items, plan)


def _sop_demo_sheets(result: Any, data: Any, sales: Any, items: Any) -> list[Any]:
    """The demo's S&OP sheets: forecast value added of the plan published at the cut-off
    (seasonal naive vs the statistical forecast, on the periods that have happened since), the
    financial view of the current plan, and an empty Overrides table to start from."""
    import pandas as pd

    from engine.finance import financial_view, prices_from_sales
    from engine.fva import PlanVersion, forecast_value_added, published_plan

    from .sop import finance_sheet, fva_sheet
    from .templates import TEMPLATE_TABLES

    snap = _published_last_month(result)
    name = snap.name
    plan = next(b.frame for b in snap.blocks if getattr(b, "name", "").startswith("Plan_"))
    history = data.sales[data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]]
    fva = forecast_value_added([PlanVersion(name, published_plan(plan))], history, freq=data.freq, items=data.items)
    view = financial_view(result.plan, items=data.items, prices=prices_from_sales(data.sales), policy=result.policy)
    headers = [h for h, _, _ in TEMPLATE_TABLES["Overrides"][1]]
    from .sheets import Note, Sheet, TableBlock, Title

    overrides = Sheet("Overrides", [Title("Overrides (S&OP)"),
                                    Note("Sales, Marketing, Finance and the consensus meeting enter their changes "
                                         "here (one row each); Refresh Plan applies them on top of the statistical "
                                         "forecast. See the notes in the Plancell Planner template."),
                                    TableBlock("Overrides", pd.DataFrame(columns=headers))])
    return [fva_sheet(fva), finance_sheet(view), overrides]


def _demo_settings(freq: str, horizon: int, windows: int) -> Any:
    """The demo's Settings table: the model the workbook's cells read, and the plan's shape."""
    import pandas as pd

    return pd.DataFrame({
        "Key": ["Model", "Frequency", "Horizon", "Windows", "ServiceTarget", "HolidayCountry"],
        "Value": ["plancell-demo", freq, horizon, windows, "csl", "US"],
    })


def pd_date(ts: Any) -> Any:
    return ts.date() if hasattr(ts, "date") else ts


def _what_if_sheet(items: Any) -> Any:
    """The demo's Scenario table: a late supplier, a promotion and a heatwave."""
    import pandas as pd

    from .sheets import Note, Sheet, TableBlock, Title

    suppliers = sorted(items["Supplier"].dropna().unique()) if "Supplier" in items.columns else []
    late = suppliers[1] if len(suppliers) > 1 else (suppliers[0] if suppliers else None)
    first_sku = str(items["SKU"].iloc[0])
    rows = [
        {"Scenario": f"{late} 10 days late", "Type": "Supplier delay", "Target": "Supplier", "Name": late,
         "Value": 10, "Driver": None} if late else None,
        {"Scenario": f"Promotion +30% on {first_sku}", "Type": "Demand change", "Target": "SKU", "Name": first_sku,
         "Value": 30, "Driver": None},
        {"Scenario": "Heatwave +3 C", "Type": "Driver", "Target": "All", "Name": None, "Value": 3,
         "Driver": "Temperature"},
    ]
    table = pd.DataFrame([r for r in rows if r is not None])
    return Sheet("What-if", [Title("What-if scenarios"),
                             Note("Run Scenario simulates every row of the Scenario table below against the "
                                  "baseline; edit or add rows (Type: Supplier delay, Demand change, Driver, "
                                  "Service level, Lead time)."),
                             TableBlock("Scenario", table)], widths={0: 30})


def _inventory_line(policy: Any, purchases: Any) -> str:
    if policy is None or not len(policy):
        return "n/a"
    n_orders = int((policy["SuggestedOrder"] > 0).sum())
    late = int((purchases["Urgency"] == "late").sum()) if purchases is not None and len(purchases) else 0
    value = float((policy["SafetyStock"] * policy["UnitCost"]).sum(skipna=True))
    return (f"safety stock worth {value:,.0f} across {len(policy)} SKU-locations; "
            f"{n_orders} to order now ({late} late)")


# --------------------------------------------------------------------------- backtest


def _backtest_report(result: Any, data: Any, horizon: int, windows: int, elapsed: float) -> dict[str, Any]:
    overall = result.overall
    model = overall.get("model") or {}
    report: dict[str, Any] = {
        "n_series": overall.get("n_series"),
        "horizon": overall.get("horizon", horizon),
        "windows": overall.get("windows", windows),
        "model": _metrics(model),
        "seasonal_naive": _metrics(overall.get("seasonal_naive")),
        "coverage_p10_p90": overall.get("coverage_p10_p90"),
        "calibration": overall.get("calibration"),
        "moving_average": _metrics(overall.get("moving_average")),
        "pinball": model.get("pinball") if isinstance(model, Mapping) else None,
        "fit_seconds": overall.get("fit_seconds"),
        "predict_seconds": overall.get("predict_seconds"),
        "elapsed_seconds": round(elapsed, 3),
        "n_series_baseline": overall.get("n_series_baseline", _n_baseline(result.per_series)),
        "freq": overall.get("freq", getattr(data, "freq", None)),
        "cutoffs": overall.get("cutoffs"),
        "warnings": [str(p) for p in getattr(data, "warnings", [])],
    }
    return _jsonable(report)


def _backtest_table(report: Mapping[str, Any], source: str) -> str:
    freq = report.get("freq")
    lines = [
        f"Backtest of {source}: {report['n_series']} series, {_FREQ_WORDS.get(freq, freq)}, "
        f"horizon {report['horizon']}, {report['windows']} windows",
        "",
        f"  {'method':<16}{'WAPE':>8}{'MASE':>8}{'Bias':>9}",
    ]
    for label, key in (("model", "model"), ("seasonal naive", "seasonal_naive"),
                       ("moving average", "moving_average")):
        m = report.get(key) or {}
        lines.append(f"  {label:<16}{_pct(m.get('wape')):>8}{_num(m.get('mase')):>8}"
                     f"{_pct(m.get('bias'), signed=True):>9}")
    wape, naive = (report.get("model") or {}).get("wape"), (report.get("seasonal_naive") or {}).get("wape")
    base = report.get("n_series_baseline")
    lines += [
        "",
        f"  model vs seasonal naive WAPE: {_improvement(wape, naive)}",
        f"  P10-P90 coverage: {_pct(report.get('coverage_p10_p90'))} (target 80%)",
        "  actuals at or below: " + ", ".join(f"{k} {_pct(v)}" for k, v in (report.get("calibration") or {}).items()),
        f"  series on a baseline: {'n/a' if base is None else base} of {report['n_series']}",
        f"  fit {report['fit_seconds'] or 0:.1f} s, total {report['elapsed_seconds']:.1f} s",
        "  (WAPE: lower is better; MASE below 1 beats the in-sample seasonal naive; bias above 0 = over-forecast)",
    ]
    return "\n".join(lines)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from engine.backtest import backtest
    from engine.contract import read_long_csv

    cluster = None
    if args.dask:
        from engine.distributed import check_address

        cluster = check_address(args.dask, source="--dask")  # a typo fails before minutes of reading

    tic = time.perf_counter()
    data = read_long_csv(args.file, date=args.date, ids=args.id, target=args.target,
                         regressors=args.regressors or (), freq=args.freq, dayfirst=args.dayfirst)
    _print_warnings(getattr(data, "warnings", []))
    horizon = args.horizon or DEFAULT_HORIZON[data.freq]
    model_params = {"n_estimators": args.rounds} if args.rounds else None
    with _progress(args) as progress, _results_only_on_stdout(args.json):
        if cluster is None:
            result = backtest(data, horizon=horizon, windows=args.windows, progress=progress,
                              model_params=model_params)
        else:
            from engine import distributed

            if not args.verbose:  # Dask logs every scheduler and worker event at INFO
                logging.getLogger("distributed").setLevel(logging.WARNING)
            with distributed.connect(cluster, source="--dask") as client:
                result = distributed.backtest(client, data, horizon=horizon, windows=args.windows,
                                              progress=progress, model_params=model_params)
    report = _backtest_report(result, data, horizon, args.windows, time.perf_counter() - tic)
    if cluster is not None:
        report["cluster"] = {"address": cluster, **_jsonable(result.overall.get("cluster") or {})}
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        print(_backtest_table(report, Path(args.file).name))
    return _EXIT_OK


# --------------------------------------------------------------------------- addin


def _cmd_addin(args: argparse.Namespace) -> int:
    from .xlam import build_addin, install_addin

    if args.addin_command == "install":
        target = install_addin(echo=lambda msg: print(msg, file=sys.stderr))
        print(f"Installed the Plancell add-in: {target}\nStart Excel: the Plancell tab is on the ribbon.")
        return _EXIT_OK
    build = build_addin(args.out)
    print("\n".join([
        f"Wrote {build.xlam.resolve()}",
        f"  VBA modules   {build.vba_dir.resolve()} ({', '.join(p.name for p in build.modules)})",
        f"  functions     {', '.join(f.name for f in build.functions)}",
        f"  interpreter   {build.interpreter}",
        "The ribbon and functions need the VBA modules: on Windows with Excel run "
        "plancell addin install, which builds, imports them through Excel and installs the add-in.",
    ]))
    return _EXIT_OK


# --------------------------------------------------------------------------- not yet


def _file_port(args: argparse.Namespace, progress: Any) -> Any:
    from .port import FileBook

    book = Path(args.book)
    port = FileBook(book, progress=None)
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() != book.suffix.lower():
            raise InputError(f"--out {out.name} must keep the workbook's type ({book.suffix}).", code="E110")
        save = port.save
        port.save = lambda: save(out)  # type: ignore[method-assign]
    return port


def _cmd_refresh(args: argparse.Namespace) -> int:
    from .actions import refresh

    tic = time.perf_counter()
    with _progress(args) as progress:
        port = _file_port(args, progress)
        summary = refresh(port, progress=progress,
                          model_params={"n_estimators": args.rounds} if args.rounds else None)
    _print_warnings(summary["warnings"])
    result = summary["result"]
    if result is None:   # Settings Server: the calculation server did the work
        s = summary["summary"]
        overall = s.get("backtest") or {}
        model, naive = _metrics(overall.get("model")), _metrics(overall.get("seasonal_naive"))
        print("\n".join([
            f"Refreshed {Path(args.out or args.book).resolve()} on the Plancell server {summary['server']}",
            f"  model             {summary['model']} v{summary['version']}, {s.get('n_series')} series",
            f"  WAPE              model {_pct(model['wape'])} vs seasonal naive {_pct(naive['wape'])}",
            f"  elapsed           {time.perf_counter() - tic:.1f} s",
        ]))
        return _EXIT_OK
    overall = result.backtest.overall
    model, naive = _metrics(overall.get("model")), _metrics(overall.get("seasonal_naive"))
    print("\n".join([
        f"Refreshed {Path(args.out or args.book).resolve()}",
        f"  model             {summary['model']} v{summary['version']}, {result.metadata.get('n_series')} series",
        f"  WAPE              model {_pct(model['wape'])} vs seasonal naive {_pct(naive['wape'])}",
        f"  inventory         {_inventory_line(result.policy, result.purchases)}",
        f"  elapsed           {time.perf_counter() - tic:.1f} s",
        "Sheets written: Plan (inventory policy + forecast), Accuracy, Purchases, Charts, Data quality, and the "
        "S&OP sheets that apply (Overrides log, FVA, Plan changes, Finance); everything else kept.",
    ]))
    return _EXIT_OK


def _cmd_publish(args: argparse.Namespace) -> int:
    from .actions import publish

    with _progress(args) as progress:
        port = _file_port(args, progress)
        name = publish(port)
    print(f"Published '{name}' in {Path(args.out or args.book).resolve()}")
    return _EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from .actions import check

    with _progress(args) as progress:
        out = check(_file_port(args, progress))
    alerts = out["alerts"]
    kinds = alerts["Alert"].value_counts().to_dict() if len(alerts) else {}
    lines = [f"Checked {Path(args.out or args.book).resolve()} against the {out['compared_with']}",
             f"  alerts            {len(alerts)}" + (f" ({', '.join(f'{v} {k}' for k, v in kinds.items())})"
                                                   if kinds else ""),
             f"  to order now      {int((out['purchases']['InBudget']).sum()) if len(out['purchases']) else 0} "
             f"lines, ranked on the Purchases sheet"]
    for rec in alerts.head(5).to_dict("records"):
        lines.append(f"  #{rec['Rank']:<3} {rec['SKU']} {rec['Location']}: {rec['What happened']}")
    print("\n".join(lines))
    return _EXIT_OK


def _cmd_scenario(args: argparse.Namespace) -> int:
    from .actions import scenario

    with _progress(args) as progress:
        out = scenario(_file_port(args, progress), paths=args.paths, seed=args.seed)
    lines = [f"Simulated {len(out['summary'])} scenario(s) x {args.paths} paths in "
             f"{Path(args.out or args.book).resolve()} (sheet Scenario)"]
    for rec in out["summary"].to_dict("records"):
        lines.append(f"  {rec['Scenario']}: fill rate {_pct(rec['Fill rate (baseline)'])} baseline -> "
                     f"{_pct(rec['Fill rate (scenario)'])}; SKUs that stock out: "
                     f"{rec.get('SKUs that stock out (scenario)') or 'none'}")
    print("\n".join(lines))
    return _EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import server_config, serve

    config, dev_token = server_config(tokens_file=args.tokens, dev=args.dev, host=args.host, db_url=args.db,
                                      max_body_mb=args.max_body_mb, cors_origins=args.cors_origin, dask=args.dask)
    if dev_token:
        print(f"plancell serve --dev: no PLANCELL_TOKEN set; this run's token is {dev_token}", file=sys.stderr)
    print(f"Plancell server on http://{args.host}:{args.port} (API docs at /docs; data in {config.data_dir})",
          file=sys.stderr)
    serve(config, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    return _EXIT_OK


# --------------------------------------------------------------------------- parser


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command. On subcommands the defaults are
    SUPPRESS so they do not overwrite a value given before the command."""
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=d(0),
                   help="more log output on stderr (-v info, -vv debug)")
    p.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress bar")
    p.add_argument("--traceback", action="store_true", default=d(False),
                   help="show the Python traceback of an internal error")
    return p


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plancell",
        description="Demand planning with LightGBM forecasts (P10/P50/P90), backtests and "
                    "Excel workbooks, from the command line.",
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"plancell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options(top=False)

    demo = sub.add_parser(
        "demo", parents=[common], help="generate demo data, plan it and write plancell-demo.xlsx",
        description="Generate a synthetic retail panel, backtest and plan it, and write a demo "
                    f"workbook ({_DEMO_FILE}) with Sales, Drivers, Items, Plan and Accuracy.",
    )
    demo.add_argument("--out", default="plancell-demo", metavar="DIR",
                      help="folder for the workbook (default: ./plancell-demo)")
    demo.add_argument("--freq", type=_freq, default="W", metavar="D|W|MS",
                      help="planning frequency (default W)")
    demo.add_argument("--skus", type=_positive_int, default=20, metavar="N", help="number of SKUs (default 20)")
    demo.add_argument("--locations", type=_positive_int, default=2, metavar="N",
                      help="number of locations (default 2)")
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    demo.add_argument("--horizon", type=_positive_int, metavar="N",
                      help="periods to plan (default: D 28, W 8, MS 6)")
    demo.add_argument("--windows", type=_positive_int, default=DEFAULT_WINDOWS, metavar="K",
                      help=f"backtest windows (default {DEFAULT_WINDOWS})")
    demo.add_argument("--rounds", type=_positive_int, metavar="N",
                      help="LightGBM boosting rounds (default: the engine's)")
    demo.add_argument("--budget", type=_budget, metavar="AMOUNT",
                      help="purchase budget: the Purchases sheet marks what fits, in priority order")
    demo.set_defaults(handler=_cmd_demo)

    bt = sub.add_parser(
        "backtest", parents=[common], help="backtest any long-format CSV export",
        description="Backtest the Plancell model against seasonal naive and moving average on "
                    "a long-format CSV (one row per series and period).",
    )
    bt.add_argument("file", metavar="FILE.csv", help="long-format CSV file")
    bt.add_argument("--date", required=True, metavar="COL", help="date column")
    bt.add_argument("--id", required=True, type=_columns, metavar="COL[,COL..]",
                    help="series key column(s): SKU, or SKU,Location")
    bt.add_argument("--target", required=True, metavar="COL", help="quantity column to forecast")
    bt.add_argument("--regressors", type=_columns, metavar="COL,..", help="numeric driver columns")
    bt.add_argument("--freq", type=_freq, metavar="D|W|MS", help="D, W or MS (default: inferred from the dates)")
    bt.add_argument("--horizon", type=_positive_int, metavar="N", help="periods ahead (default: D 28, W 8, MS 6)")
    bt.add_argument("--windows", type=_positive_int, default=DEFAULT_WINDOWS, metavar="K",
                    help=f"backtest windows (default {DEFAULT_WINDOWS})")
    bt.add_argument("--rounds", type=_positive_int, metavar="N",
                    help="LightGBM boosting rounds (default: the engine's)")
    bt.add_argument("--dayfirst", action="store_true", help="dates are day first (31/12/2024)")
    bt.add_argument("--dask", metavar="ADDRESS|local[:N]",
                    help="train and forecast on a Dask cluster: a scheduler address (tcp://host:8786) or "
                         "local[:N] for N worker processes on this machine (needs plancell[dask])")
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bt.set_defaults(handler=_cmd_backtest)

    addin = sub.add_parser(
        "addin", parents=[common], help="build or install the Excel add-in (plancell.xlam)",
        description="Build plancell.xlam and its VBA modules (any OS), or install the add-in into "
                    "Excel for this user (Windows with desktop Excel).",
    )
    addin_sub = addin.add_subparsers(dest="addin_command", metavar="build|install", required=True)
    addin_build = addin_sub.add_parser(
        "build", parents=[common], help="write plancell.xlam and its VBA modules",
        description="Write plancell.xlam (ribbon, settings sheet) and, beside it in plancell-vba/, "
                    "the VBA modules that plancell addin install imports through Excel.",
    )
    addin_build.add_argument("--out", metavar="PATH",
                             help="a folder, or a file name ending in .xlam (default: ./plancell-addin)")
    addin_build.set_defaults(handler=_cmd_addin)
    addin_sub.add_parser(
        "install", parents=[common], help="install the add-in into Excel (Windows with Excel)",
        description="Build the add-in for this Python, import its VBA through Excel (needs 'Trust "
                    "access to the VBA project object model') and install it for the current user. "
                    "Close Excel first.",
    ).set_defaults(handler=_cmd_addin)

    ref = sub.add_parser(
        "refresh", parents=[common], help="backtest, train and write the Plan, Accuracy and Purchases sheets",
        description="Refresh Plan on a workbook file: read its Sales / Drivers / Items / Settings tables, "
                    "backtest, train, forecast, set the inventory policy, and write the Plan, Accuracy and "
                    "Purchases sheets. Everything else in the workbook is kept.")
    ref.add_argument("book", metavar="BOOK", help="the workbook (.xlsx or .xlsm)")
    ref.add_argument("--out", metavar="PATH", help="write to PATH instead of updating BOOK")
    ref.add_argument("--rounds", type=_positive_int, metavar="N", help="boosting rounds (default: the model's)")
    ref.set_defaults(handler=_cmd_refresh)
    pub = sub.add_parser(
        "publish", parents=[common], help="publish a values-only snapshot 'Plan YYYY-MM vN' of the plan",
        description="Publish Snapshot: copy the Plan sheet into a values-only sheet 'Plan YYYY-MM vN' with "
                    "its provenance, readable without the add-in.")
    pub.add_argument("book", metavar="BOOK", help="the workbook (.xlsx or .xlsm)")
    pub.add_argument("--out", metavar="PATH", help="write to PATH instead of updating BOOK")
    pub.set_defaults(handler=_cmd_publish)

    chk = sub.add_parser(
        "check", parents=[common], help="S&OE: actuals vs the published plan; write Alerts and Purchases",
        description="Check Execution on a workbook file: compare actuals with the latest published plan, "
                    "project stock with open orders, rank alerts and what to buy; writes Alerts and Purchases.")
    chk.add_argument("book", metavar="BOOK", help="the workbook (.xlsx or .xlsm)")
    chk.add_argument("--out", metavar="PATH", help="write to PATH instead of updating BOOK")
    chk.set_defaults(handler=_cmd_check)
    scn = sub.add_parser(
        "scenario", parents=[common], help="simulate the Scenario table's what-ifs against the baseline",
        description="Run Scenario on a workbook file: Monte Carlo of every row of its Scenario table next to "
                    "the baseline (fill rate, service, stock-outs, inventory value, mitigations).")
    scn.add_argument("book", metavar="BOOK", help="the workbook (.xlsx or .xlsm)")
    scn.add_argument("--out", metavar="PATH", help="write to PATH instead of updating BOOK")
    scn.add_argument("--paths", type=_positive_int, default=1000, metavar="N", help="simulated paths (default 1000)")
    scn.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    scn.set_defaults(handler=_cmd_scenario)

    srv = sub.add_parser(
        "serve", parents=[common], help="run the calculation server the add-in talks to",
        description="Run the Plancell calculation server (HTTP API under /v1, docs at /docs). Every /v1 route "
                    "needs 'Authorization: Bearer <token>': the token comes from PLANCELL_TOKEN, or --tokens "
                    "maps tokens to team workspaces. --dev runs without a configured token, on this machine only.")
    srv.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=_positive_int, default=8765, metavar="N", help="port (default 8765)")
    srv.add_argument("--tokens", metavar="FILE", help="JSON or TOML file mapping tokens to workspaces "
                                                      "(see docs/server.md)")
    srv.add_argument("--dev", action="store_true", help="development mode: loopback only; a token is made up "
                                                        "when PLANCELL_TOKEN is not set")
    srv.add_argument("--db", metavar="URL", help="database URL (default: SQLite in the server's data folder; "
                                                 "postgresql+psycopg://... for a team)")
    srv.add_argument("--max-body-mb", type=_positive_int, default=50, metavar="N",
                     help="largest request body accepted, in MB (default 50)")
    srv.add_argument("--cors-origin", action="append", default=[], metavar="URL",
                     help="allow browser pages from this origin (repeatable; default: none)")
    srv.add_argument("--dask", metavar="ADDRESS|local[:N]",
                     help="train on this Dask cluster: tcp://scheduler:8786, or local[:N] worker processes "
                          "(needs plancell[dask]; docs/dask.md)")
    srv.set_defaults(handler=_cmd_serve)

    return parser


# --------------------------------------------------------------------------- main


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    # basicConfig leaves an embedding application's (or pytest's) logging alone.
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``plancell`` command; returns the process exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return exc.code if isinstance(exc.code, int) else (_EXIT_OK if exc.code is None else _EXIT_INPUT)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return _EXIT_INPUT

    try:
        return handler(args)
    except InputError as exc:
        if args.traceback:
            traceback.print_exc(file=sys.stderr)
        print(exc.report(), file=sys.stderr)
        return _EXIT_INPUT
    except PlancellBug as exc:
        _log.debug("internal error", exc_info=True)
        if args.traceback:
            traceback.print_exc(file=sys.stderr)
        print(f"{exc.one_line()} (a bug in Plancell: run with --traceback for details and report it)",
              file=sys.stderr)
        return _EXIT_FAIL
    except PlancellError as exc:
        if args.traceback:
            traceback.print_exc(file=sys.stderr)
        print(exc.one_line(), file=sys.stderr)
        return _EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the edge: never show a raw traceback unless asked
        _log.debug("internal error", exc_info=True)
        if args.traceback:
            traceback.print_exc(file=sys.stderr)
        print(_one_line(f"PLANCELL-E900: internal error ({type(exc).__name__}: {exc}); "
                        "run with --traceback for details"), file=sys.stderr)
        return _EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover - `python -m addin.cli`
    sys.exit(main())

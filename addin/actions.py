"""Ribbon actions, written once against :class:`addin.port.WorkbookPort`.

The same functions run behind the Plancell ribbon (live workbook, :func:`dispatch`) and the
command line on files (``plancell refresh BOOK``, ``plancell publish BOOK``). The ribbon's
one VBA callback passes the button id to :func:`dispatch`, which only runs the ids in
:data:`ACTIONS`: nothing else in Python is reachable from a button.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from engine.errors import InputError, PlancellError, Problem
from engine.schema import INPUT_TABLES, PLAN_TABLES

from .port import WorkbookPort
from .sheets import (
    PLAN_HEADERS, Note, Pairs, Sheet, TableBlock, Title, accuracy_sheet, charts_sheet, plan_sheet, purchases_sheet,
    snapshot_sheet,
)

__all__ = ["ACTIONS", "dispatch", "refresh", "check", "scenario", "publish", "status", "read_plan_settings",
           "model_name_for"]

_log = logging.getLogger(__name__)

#: Output sheets refresh writes, in order.
OUTPUT_SHEETS = ("Plan", "Overrides log", "Accuracy", "Purchases", "Charts", "FVA", "Plan changes", "Finance")
_SNAPSHOT = re.compile(r"^Plan (\d{4})-(\d{2}) v(\d+)$")


def read_plan_settings(tables: dict[str, tuple[pd.DataFrame, int]]) -> Any:
    """The workbook's Settings table (optional) as :class:`engine.settings.PlanSettings`."""
    from engine.settings import PlanSettings, read_settings

    if "Settings" not in tables:
        return PlanSettings()
    df, first = tables["Settings"]
    cols = {str(c).strip().lower(): c for c in df.columns}
    if "key" not in cols or "value" not in cols:
        raise InputError(
            "The Settings table needs the columns Key and Value.",
            [Problem("Settings", f"columns Key and Value not found (has {', '.join(map(str, df.columns))})",
                     "name the two columns of the Settings table Key and Value", row=first - 1, code="E101")],
            code="E101")
    rows = list(zip(df[cols["key"]], df[cols["value"]]))
    return read_settings(rows, first_row=first)


def model_name_for(book_name: str, settings: Any = None) -> str:
    """The model's name in the store: Settings ``Model``, else the workbook's file name."""
    name = getattr(settings, "model", None)
    return name or Path(book_name).stem


def refresh(port: WorkbookPort, *, progress: Callable[[Any], None] | None = None,
            model_params: dict[str, Any] | None = None, store: Any = None, client: Any = None,
            cluster: str | None = None) -> dict[str, Any]:
    """Refresh Plan: validate the tables, backtest, train, forecast, set the inventory policy,
    and write the Plan, Accuracy and Purchases sheets. Returns a short summary.

    With a Settings ``Server`` (or ``client``) the work runs on the calculation server and its
    sheets are written here; ``client=False`` always runs locally (the server itself).
    Training runs on the Dask cluster ``cluster`` (an address, ``plancell serve --dask``),
    else on the workbook's Settings ``Cluster`` if it names one, else on this machine."""
    from engine.contract import validate
    from engine.model import DEFAULT_HORIZON
    from engine.plan import build_plan
    from engine.store import ModelStore

    port.status("Plancell: reading tables ...")
    tables = port.tables()
    if "Sales" not in tables:
        found = f"tables found: {', '.join(sorted(tables))}" if tables else "the workbook has no Excel tables"
        raise InputError(
            f"{port.name} has no table named Sales ({found}).",
            [Problem("Sales", f"no Excel table named Sales in the workbook ({found})",
                     "select your sales data, Insert > Table, then name it Sales (Table Design > Table Name)",
                     code="E101")], code="E101")
    try:
        settings = read_plan_settings(tables)
    except InputError as exc:  # name the Settings cells (sheet, column letter) like every other problem
        from engine.contract import locate_problems

        exc.problems = locate_problems(exc.problems, tables)
        raise
    srv = _server(settings, client)
    if srv is not None:
        rounds = (model_params or {}).get("n_estimators")
        done = _on_server("refresh", port, srv, _pick(tables, PLAN_TABLES), progress=progress, rounds=rounds)
        s = done["summary"]
        return {"model": s.get("model"), "version": s.get("version"), "result": None, "server": srv.url,
                "summary": s, "warnings": list(s.get("warnings") or []) + list(settings.warnings)}
    sales, s_row = tables["Sales"]
    drivers, d_row = tables.get("Drivers", (None, 2))
    items, i_row = tables.get("Items", (None, 2))
    data = validate(sales, drivers, items, freq=settings.freq, column_map=settings.column_map or None,
                    gaps="zero", row_offsets={"Sales": s_row, "Drivers": d_row, "Items": i_row})
    horizon = settings.horizon or DEFAULT_HORIZON[data.freq]
    params = dict(model_params or {})
    if settings.holiday_country:
        params.setdefault("holiday_country", settings.holiday_country)

    def relay(event: Any) -> None:
        port.status(f"Plancell: {event.stage} {event.done}/{event.total} {event.message}".rstrip())
        if progress is not None:
            progress(event)

    name = model_name_for(port.name, settings)
    address = cluster or settings.cluster
    with _cluster(address) as dask_client:
        if dask_client is not None:
            port.status(f"Plancell: training on the Dask cluster {address} ...")
        result = build_plan(data, horizon=horizon, windows=settings.windows, quantiles=settings.quantiles,
                            model_params=params or None, progress=relay, store=store or ModelStore(),
                            model_name=name, inventory=settings.inventory, budget=settings.budget,
                            overrides=tables.get("Overrides"), cluster=dask_client)
    port.status("Plancell: writing the plan ...")
    port.write_sheet(plan_sheet(result.plan, result.metadata, policy=result.policy))
    last = "Plan"
    cons = result.consensus
    if cons is not None and len(cons.audit):
        log = overrides_log_sheet(cons)
        port.write_sheet(log, after=last)
        last = log.name
    port.write_sheet(accuracy_sheet(result.backtest.overall, result.accuracy), after=last)
    if result.purchases is not None:
        port.write_sheet(purchases_sheet(result.purchases, settings.budget), after="Accuracy")
    history = data.sales[data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]]
    port.write_sheet(charts_sheet(history, result.plan), after="Purchases")
    from .sheets import data_quality_sheet

    port.write_sheet(data_quality_sheet(data.changes, list(data.warnings) + list(settings.warnings)), after="Charts")
    notes = _sop_sheets(port, tables, data, result, history, after="Data quality")
    port.save()
    port.status(None)
    return {"model": name, "version": result.metadata.get("model_version"), "result": result,
            "warnings": list(getattr(data, "warnings", [])) + list(settings.warnings) +
            list(cons.warnings if cons is not None else []) + notes}


@contextlib.contextmanager
def _cluster(address: str | None) -> Iterator[Any]:
    """A Dask client for ``address`` while training runs (None: train here)."""
    if not address:
        yield None
        return
    from engine import distributed

    logging.getLogger("distributed").setLevel(logging.WARNING)   # Dask logs every worker event at INFO
    with distributed.connect(address, source="Settings Cluster") as client:
        yield client


def overrides_log_sheet(cons: Any) -> Sheet:
    """The Overrides log: what each override row did (one row per override row; the cells it
    changed are recomputed from the published Overrides table when value added is scored)."""
    from .sop import overrides_audit_sheet

    return overrides_audit_sheet(cons.audit)


def _snapshots(port: WorkbookPort, tables: dict[str, tuple[pd.DataFrame, int]]) -> list[tuple[str, str]]:
    """Published snapshots in the workbook, oldest first: (sheet name, tag of its tables)."""
    found = sorted(((int(m.group(1)), int(m.group(2)), int(m.group(3))), n) for n in port.sheet_names()
                   if (m := _SNAPSHOT.match(n)))
    out = []
    for (y, mo, v), sheet in found:
        tag = f"{y:04d}_{mo:02d}_v{v}"
        if f"Plan_{tag}" in tables:
            out.append((sheet, tag))
    return out


def _published_effects(plan: pd.DataFrame, overrides: tuple[pd.DataFrame, int] | None, data: Any,
                       notes: list[str], sheet: str) -> pd.DataFrame | None:
    """The cells each override of a published version changed, recomputed from the Overrides
    table published with it on that version's statistical forecast (the rules are
    deterministic, so this is what the planner saw), for value added by reason."""
    from engine.overrides import apply_overrides

    if overrides is None or not len(overrides[0]) or "Statistical" not in plan.columns:
        return None
    base = plan.rename(columns={"Model used": "model_used", "Reason": "reason", "Assumed drivers": "assumed"})
    qcols = [c for c in base.columns if re.fullmatch(r"P\d+(\.\d+)?", str(c))]
    base = base[["SKU", "Location", "Period", *qcols]].copy()
    # the published P-columns follow the consensus: back to the statistical forecast's scale
    ratio = (plan["Statistical"] / plan["P50"].where(plan["P50"] != 0)).fillna(1.0).to_numpy(dtype=float)
    for c in qcols:
        base[c] = base[c].to_numpy(dtype=float) * ratio
    base["P50"] = plan["Statistical"].to_numpy(dtype=float)
    try:
        return apply_overrides(base, overrides[0], freq=data.freq, items=data.items, first_row=overrides[1]).effects
    except InputError as exc:
        notes.append(f"FVA by reason leaves out {sheet}: its Overrides table no longer applies ({exc.one_line()})")
        return None


def _sop_sheets(port: WorkbookPort, tables: dict[str, tuple[pd.DataFrame, int]], data: Any, result: Any,
                history: pd.DataFrame, *, after: str = "Charts") -> list[str]:
    """The S&OP meeting's sheets: forecast value added of every published version that now
    has actuals (FVA), the plan against the last published one (Plan changes), and the
    money view (Finance). Returns notes for the caller (never fails the refresh)."""
    from engine.compare import compare_plans
    from engine.finance import financial_view, prices_from_sales
    from engine.fva import PlanVersion, forecast_value_added, published_plan

    from .sop import comparison_sheet, finance_sheet, fva_sheet

    notes: list[str] = []
    snaps = _snapshots(port, tables)
    last = after
    if snaps:
        versions = []
        for sheet, tag in snaps:
            plan_v = published_plan(tables[f"Plan_{tag}"][0])
            versions.append(PlanVersion(sheet, plan_v, _published_effects(plan_v, tables.get(f"Overrides_{tag}"),
                                                                          data, notes, sheet)))
        try:
            fva = forecast_value_added(versions, history, freq=data.freq, items=data.items)
            if len(fva.waterfall):
                port.write_sheet(fva_sheet(fva), after=last)
                last = "FVA"
            else:
                notes.append("FVA: no published plan has actuals yet")
        except InputError as exc:
            notes.append(f"FVA not written: {exc.one_line()}")
        try:
            cmp = compare_plans(versions[-1].plan, result.plan, items=data.items,
                                actuals=history, current_meta=result.metadata)
            out = comparison_sheet(cmp, previous=versions[-1].name)
            port.write_sheet(out, after=last)
            last = out.name
        except InputError as exc:
            notes.append(f"Plan changes not written: {exc.one_line()}")
    try:
        view = financial_view(result.plan, items=data.items, prices=prices_from_sales(data.sales),
                              policy=result.policy)
        port.write_sheet(finance_sheet(view), after=last)
    except InputError as exc:
        notes.append(f"Finance not written: {exc.one_line()}")
    return notes


def publish(port: WorkbookPort, *, now: _dt.datetime | None = None, client: Any = None) -> str:
    """Publish Snapshot: copy the current Plan sheet into a values-only sheet
    ``Plan YYYY-MM vN`` with its provenance, for the S&OP meeting. Returns the sheet name.

    With a Settings ``Server`` the plan is also published there as an immutable version
    (the team's record, compared with actuals later); the sheet names that version."""
    now = now or _dt.datetime.now().astimezone()
    tables = port.tables()
    if "Plan" not in tables:
        raise InputError(f"{port.name} has no plan to publish yet.",
                         [Problem("Plan", "no Plan table", "press Refresh Plan (or run plancell refresh) first",
                                  code="E101")], code="E101")
    month = now.strftime("%Y-%m")
    versions = [int(m.group(3)) for n in port.sheet_names() if (m := _SNAPSHOT.match(n)) and
                f"{m.group(1)}-{m.group(2)}" == month]
    version = max(versions, default=0) + 1
    name = f"Plan {month} v{version}"
    tag = f"{now:%Y_%m}_v{version}"
    prov = port.read_pairs("Plan")
    keep = ("Model", "Model version", "Trained at", "Data fingerprint", "Plancell version", "Frequency",
            "Horizon (periods)", "Series")
    items: list[tuple[str, Any]] = [(k, prov.get(k)) for k in keep if k in prov]
    policy = tables.get("Policy", (None, 0))[0]
    if policy is not None and "Service level" in policy.columns and len(policy):
        levels = pd.to_numeric(policy["Service level"], errors="coerce").dropna()
        if len(levels):
            target = str(policy["Service target"].iloc[0]) if "Service target" in policy.columns else "service level"
            items.append(("Service targets", f"{target} {100 * levels.min():.0f}%-{100 * levels.max():.0f}% "
                                             f"(mean {100 * levels.mean():.1f}%)"))
    srv = _server(read_plan_settings(tables), client)
    if srv is not None:
        items.append(("Server plan version", _publish_on_server(srv, port, prov, name)))
    items += [("Published at", now.isoformat(timespec="seconds")), ("Published from", port.name)]
    plan_df = tables["Plan"][0]
    missing = [h for h in PLAN_HEADERS[:6] if h not in plan_df.columns]
    if missing:
        raise InputError(f"The Plan table lacks the columns {', '.join(missing)}.",
                         [Problem("Plan", f"columns {', '.join(missing)} missing", "press Refresh Plan to rewrite it",
                                  code="E101")], code="E101")
    overrides = tables.get("Overrides", (None, 0))[0]
    sheet = snapshot_sheet(name, f"Plancell plan snapshot {month} v{version}", tag, items, plan_df, policy, overrides)
    port.write_sheet(sheet, after=port.sheet_names()[-1])
    port.save()
    return name


def status(port: WorkbookPort, *, store: Any = None, client: Any = None) -> str:
    """Status: which model answers this workbook, when it was trained, and whether the data
    changed since (the Sales/Drivers/Items fingerprint)."""
    from engine.errors import InputError as _IE
    from engine.store import ModelStore, data_fingerprint

    tables = port.tables()
    settings = read_plan_settings(tables)
    name = model_name_for(port.name, settings)
    srv = _server(settings, client)
    try:
        if srv is not None:
            info = srv.model_info(name)
            meta = {"version": info.get("version"), "trained_at": info.get("trained_at"),
                    "n_series": info.get("n_series"), "data_fingerprint": info.get("data_fingerprint")}
        else:
            meta = (store or ModelStore()).metadata(name)
    except _IE:
        text = f"Plancell: no model named {name!r} yet: press Refresh Plan."
        port.status(text)
        return text
    text = (f"Plancell: model {name} v{meta.get('version')} trained {meta.get('trained_at')}, "
            f"{meta.get('n_series')} series" + (f" on {srv.url}" if srv is not None else ""))
    if "Sales" in tables:
        try:
            from engine.contract import validate

            data = validate(tables["Sales"][0], tables.get("Drivers", (None, 2))[0], tables.get("Items", (None, 2))[0],
                            freq=settings.freq, column_map=settings.column_map or None, gaps="zero")
            same = data_fingerprint(data.sales, data.drivers, data.items) == meta.get("data_fingerprint")
            text += "; data unchanged since" if same else "; the data changed since: refresh to update"
        except PlancellError:
            text += "; the tables have problems: refresh to see them"
    port.status(text)
    return text


@dataclass
class _Context:
    """What Check Execution and Run Scenario work from: the workbook's current tables, the
    plan its cells read (the model store), and the plan that was published."""

    data: Any
    settings: Any
    bundle: Any
    meta: dict[str, Any]
    policy: pd.DataFrame
    published: pd.DataFrame
    published_from: str
    tables: dict[str, tuple[pd.DataFrame, int]]


def _context(port: WorkbookPort, store: Any) -> _Context:
    from engine.contract import validate
    from engine.store import ModelStore

    tables = port.tables()
    settings = read_plan_settings(tables)
    if "Sales" not in tables:
        raise InputError(f"{port.name} has no table named Sales.", code="E101")
    data = validate(tables["Sales"][0], tables.get("Drivers", (None, 2))[0], tables.get("Items", (None, 2))[0],
                    freq=settings.freq, column_map=settings.column_map or None, gaps="zero",
                    row_offsets={k: tables[k][1] for k in ("Sales", "Drivers", "Items") if k in tables})
    name = model_name_for(port.name, settings)
    bundle, meta = (store or ModelStore()).load(name)
    policy = _current_stock(bundle.policy, data.items)
    # the latest published snapshot is the plan S&OE holds the business to; else the current plan
    snaps = sorted(((int(m.group(1)), int(m.group(2)), int(m.group(3))), n) for n in port.sheet_names()
                   if (m := _SNAPSHOT.match(n)))
    published, source = bundle.plan, f"current plan (model {name} v{meta.get('version')})"
    if snaps:
        (y, mo, v), sheet = snaps[-1]
        key = f"Plan_{y:04d}_{mo:02d}_v{v}"
        if key in tables:
            published, source = tables[key][0], f"published snapshot '{sheet}'"
    published = published.rename(columns={"Date": "Period"})
    published["Period"] = pd.to_datetime(published["Period"])
    return _Context(data, settings, bundle, meta, policy, published, source, tables)


def _current_stock(policy: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    """The plan's policy with today's OnHand / OnOrder from Items and the order now redone."""
    from engine.policy import order_now

    pol = policy.copy()
    if items is not None and len(items):
        it = items.drop_duplicates(["SKU", "Location"]) if "Location" in items.columns else items
        on = ["SKU", "Location"] if "Location" in it.columns else ["SKU"]
        cur = pol[on].merge(it, on=on, how="left")
        for c in ("OnHand", "OnOrder"):
            if c in cur.columns:
                pol[c] = pd.to_numeric(cur[c], errors="coerce").fillna(pol[c]).to_numpy()
    pol["InventoryPosition"] = pol["OnHand"] + pol["OnOrder"]
    pol["SuggestedOrder"] = order_now(pol, pol["InventoryPosition"])
    return pol


def _optional(tables: dict[str, tuple[pd.DataFrame, int]], name: str) -> tuple[pd.DataFrame | None, int]:
    return tables.get(name, (None, 2))


def check(port: WorkbookPort, *, store: Any = None, now: _dt.datetime | None = None,
          client: Any = None) -> dict[str, Any]:
    """Check Execution (S&OE): actuals against the published plan, projected stock with open
    orders, ranked alerts and purchase list; writes the Alerts and Purchases sheets."""
    from engine.monitoring import monitor
    from engine.projection import execution_kpis
    from engine.purchasing import purchase_priority

    srv = _server(read_plan_settings(port.tables()), client)
    if srv is not None:
        s = _on_server("check", port, srv, _pick(port.tables(), INPUT_TABLES))["summary"]
        return {"alerts": pd.DataFrame(s["alerts"]), "purchases": pd.DataFrame(s["purchases"]),
                "kpis": pd.DataFrame(s["kpis"]), "compared_with": s["compared_with"], "server": srv.url}
    port.status("Plancell: checking execution ...")
    ctx = _context(port, store)
    actuals = ctx.data.sales[ctx.data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]]
    oo, oo_row = _optional(ctx.tables, "OpenOrders")
    # The published plan is the yardstick for the periods that happened; the stock projection
    # looks ahead with the latest plan where the published one has no periods left.
    last = pd.Timestamp(actuals["Date"].max())
    cols = ["SKU", "Location", "Period", "P10", "P50", "P90"]
    ahead = ctx.bundle.plan.rename(columns={"Date": "Period"})
    ahead = ahead[pd.to_datetime(ahead["Period"]) > max(last, ctx.published["Period"].max())][cols]
    yardstick = pd.concat([ctx.published[cols], ahead], ignore_index=True)
    mon = monitor(yardstick, actuals, policy=ctx.policy, items=ctx.data.items, freq=ctx.data.freq,
                  open_orders=oo, first_row=oo_row)
    kpis = mon.kpis
    dl, dl_row = _optional(ctx.tables, "Deliveries")
    if mon.projection is not None and dl is not None:
        kpis = execution_kpis(mon.projection, deliveries=dl, first_row=dl_row).summary
    buy = purchase_priority(ctx.policy, budget=ctx.settings.budget)
    stamp = (now or _dt.datetime.now().astimezone()).isoformat(timespec="seconds")
    blocks: list[Any] = [
        Title("Execution check (S&OE)"),
        Pairs([("Compared with", ctx.published_from), ("Checked at", stamp), ("Alerts", len(mon.alerts))]),
        Note("Alerts are ranked by service and value impact. Each says what happened, how big, and what to do."),
        TableBlock("Alerts", mon.alerts, freeze=True),
        Title("Execution KPIs"), TableBlock("ExecutionKPIs", kpis),
        Title("Actual vs plan by SKU-location"), TableBlock("Deviations", mon.summary),
    ]
    if mon.projection is not None:
        blocks += [Title("Projected stock (on hand + open orders - forecast) and stock-out dates"),
                   TableBlock("Projection", mon.projection.series)]
    if mon.assumptions:
        blocks.insert(3, Note("Assumed: " + "; ".join(mon.assumptions)))
    port.write_sheet(Sheet("Alerts", blocks, widths={0: 18, 1: 28}), after="Plan")
    port.write_sheet(purchases_sheet(buy, ctx.settings.budget), after="Alerts")
    port.save()
    port.status(None)
    return {"alerts": mon.alerts, "purchases": buy, "kpis": kpis, "compared_with": ctx.published_from}


def scenario(port: WorkbookPort, *, store: Any = None, paths: int = 1000, seed: int = 0,
             client: Any = None) -> dict[str, Any]:
    """Run Scenario: Monte Carlo of the Scenario table's what-ifs next to the baseline;
    writes the Scenario sheet (fill rate, service, stock-outs, value, mitigations)."""
    from engine.scenarios import model_driver_forecast, run_scenarios

    srv = _server(read_plan_settings(port.tables()), client)
    if srv is not None and "Scenario" in port.tables():
        s = _on_server("scenario", port, srv, _pick(port.tables(), INPUT_TABLES), paths=paths, seed=seed)["summary"]
        return {"summary": pd.DataFrame(s["summary"]), "mitigations": pd.DataFrame(s["mitigations"]),
                "server": srv.url}

    port.status("Plancell: simulating scenarios ...")
    if "Scenario" not in port.tables():
        raise InputError(f"{port.name} has no table named Scenario.",
                         [Problem("Scenario", "no Excel table named Scenario",
                                  "add a table named Scenario with columns Scenario, Type, Target, Name, Value "
                                  "(see the Plancell Planner template)", code="E101")], code="E101")
    ctx = _context(port, store)
    table, first = ctx.tables["Scenario"]
    oo, _ = _optional(ctx.tables, "OpenOrders")
    drivers = ctx.data.drivers
    model = ctx.bundle.model
    horizon = int(ctx.meta.get("horizon") or len(ctx.bundle.plan["Period"].unique()))
    driver_fc = model_driver_forecast(model, drivers, horizon) if drivers is not None else None
    res = run_scenarios(table, policy=ctx.policy, forecast=ctx.bundle.plan, freq=ctx.data.freq,
                        items=ctx.data.items, open_orders=oo, driver_forecast=driver_fc,
                        drivers=list(getattr(ctx.data, "driver_columns", []) or []), paths=paths, seed=seed,
                        first_row=first)
    blocks: list[Any] = [
        Title("Scenarios against the baseline"),
        Pairs([("Plan", f"model {ctx.meta.get('name')} v{ctx.meta.get('version')}"), ("Simulated paths", paths),
               ("Seed", seed)]),
        Note("Monte Carlo over the horizon with the forecast distribution (P10/P50/P90) and lead-time spread; "
             "baseline and scenarios meet the same random draws."),
        TableBlock("ScenarioSummary", res.summary, freeze=True),
        Title("Mitigations, ranked"), TableBlock("Mitigations", res.mitigations),
        Title("Per SKU-location"), TableBlock("ScenarioSeries", res.series),
    ]
    money = _scenario_money(res, ctx)
    if money is not None:
        blocks[4:4] = [Title("In money (units short x planned price; margin = price - unit cost)"),
                       TableBlock("ScenarioMoney", money)]
    if res.assumptions:
        blocks.insert(3, Note("Assumed: " + "; ".join(res.assumptions)))
    # The results go to the Scenario sheet, unless the planner keeps the Scenario table there.
    out = "Scenario" if "Scenario" not in port.tables_on("Scenario") else "Scenario results"
    port.write_sheet(Sheet(out, blocks, widths={0: 18, 1: 28}),
                     after=None if out in port.sheet_names() else port.sheet_names()[-1])
    port.save()
    port.status(None)
    return {"summary": res.summary, "mitigations": res.mitigations}


# --------------------------------------------------------------------------- on the calculation server

_SNAPSHOT_TABLE = re.compile(r"^Plan_\d{4}_\d{2}_v\d+$")


def _server(settings: Any, client: Any) -> Any:
    """The calculation server to use: ``client`` if given, none if ``client is False``, else
    the workbook's Settings ``Server`` (None: run here)."""
    if client is False:
        return None
    if client is not None:
        return client
    from .client import client_for

    return client_for(settings)


def _pick(tables: dict[str, tuple[pd.DataFrame, int]], names: tuple[str, ...]) -> dict[str, tuple[pd.DataFrame, int]]:
    return {k: tables[k] for k in tables if k in names or _SNAPSHOT_TABLE.match(k)}   # the others are never read


def _on_server(kind: str, port: WorkbookPort, srv: Any, tables: dict[str, tuple[pd.DataFrame, int]], *,
               progress: Callable[[Any], None] | None = None, **params: Any) -> dict[str, Any]:
    """Run ``kind`` on the server with the workbook's tables, relay its progress to the status
    bar while it runs, then write the sheets it produced here. Nothing is written unless the
    job succeeded and every sheet arrived."""
    layout = {name: port.tables_on(name) for name in port.sheet_names()}
    port.status(f"Plancell: sending {port.name} to {srv.url} ...")
    job_id = srv.start_workbook_action(kind, tables, book=port.name, sheets=layout,
                                       **{k: v for k, v in params.items() if v is not None})

    def relay(event: Any) -> None:
        port.status(f"Plancell (server): {event.stage} {event.done}/{event.total} {event.message}".rstrip())
        if progress is not None:
            progress(event)

    job = srv.wait(job_id, progress=relay)
    sheets = srv.sheets(job_id)
    port.status("Plancell: writing the results ...")
    for sheet, after in sheets:
        port.write_sheet(sheet, after=after)
    port.save()
    port.status(None)
    return job


def _publish_on_server(srv: Any, port: WorkbookPort, prov: dict[str, Any], sheet: str) -> str:
    """Publish the server's plan of this workbook's model, after checking it is the plan the
    Plan sheet shows (else the record would not match the snapshot)."""
    model = prov.get("Model")
    if not model:
        raise InputError("The Plan sheet has no Model in its provenance block. Fix: press Refresh Plan.",
                         code="E101")
    info = srv.model_info(str(model))
    shown = prov.get("Model version")
    if shown is not None and str(shown) != str(info.get("version")):
        raise InputError(f"The Plan sheet shows model {model} v{shown}, but the server serves v{info.get('version')}."
                         " Fix: press Refresh Plan, then publish.", code="E201")
    out = srv.publish(str(model), note=f"{sheet} from {port.name}")
    return f"{out['model']} v{out['version']} on {srv.url}"


def _scenario_money(res: Any, ctx: _Context) -> pd.DataFrame | None:
    """The scenarios in the S&OP meeting's money terms (revenue and margin at risk, inventory
    value), when the Sales table has prices; None otherwise."""
    from engine.finance import prices_from_sales, scenario_money

    if "Price" not in ctx.data.sales.columns:
        return None
    try:
        return scenario_money(res, plan=ctx.bundle.plan, items=ctx.data.items, prices=prices_from_sales(ctx.data.sales))
    except InputError:
        return None


#: The allow-list of button ids the ribbon may run.
ACTIONS: dict[str, Callable[..., Any]] = {
    "refresh": refresh,
    "check": check,
    "scenario": scenario,
    "publish": publish,
    "status": status,
}


def dispatch(button_id: str, book: Any = None) -> Any:
    """Run the ribbon action ``button_id`` on the calling workbook (or ``book``, a port).

    Errors reach the planner as one line in the status bar and a message box, never as a
    traceback; bugs are logged with theirs.
    """
    if button_id not in ACTIONS:
        raise InputError(f"Unknown Plancell button {button_id!r}.", code="E110")
    if book is None:
        import xlwings as xw

        from .port import XlwingsBook

        port: Any = XlwingsBook(xw.Book.caller())
    else:
        port = book
    try:
        return ACTIONS[button_id](port)
    except PlancellError as exc:
        _alert(port, exc.one_line())
    except Exception:
        _log.exception("ribbon action %s failed", button_id)
        _alert(port, "PLANCELL-E900: internal error in Plancell; see the log and report it.")
    return None


def _alert(port: Any, text: str) -> None:
    port.status(text)
    app = getattr(getattr(port, "book", None), "app", None)
    if app is not None and hasattr(app, "alert"):
        app.alert(text, title="Plancell")

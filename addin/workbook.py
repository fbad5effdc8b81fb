"""Workbook files without Excel: write the plan workbook, read the planner's tables.

The written workbook is meant to be shared: values only (no live formulas, no UDFs), so a
meeting participant without the add-in sees numbers and their provenance, never
``#NAME?``. Every input table is a real Excel Table named as in the data contract
(``Sales``, ``Drivers``, ``Items``), because Plancell finds tables by name, not by sheet.

Pure Python on files (xlsxwriter to write, openpyxl to read): no xlwings, no Excel.
"""

from __future__ import annotations

import datetime as _dt
import logging
import numbers
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from engine import __version__ as _ENGINE_VERSION
from engine.errors import InputError, PlancellBug, Problem, TransientError

from .safe import safe_text

__all__ = ["write_plan_workbook", "read_tables", "PLAN_HEADERS", "ACCURACY_HEADERS", "POLICY_HEADERS",
           "PURCHASE_HEADERS"]

_log = logging.getLogger(__name__)

#: Plan table headers, in order, as the planner sees them.
PLAN_HEADERS: tuple[str, ...] = (
    "SKU", "Location", "Period", "P10", "P50", "P90", "Model used", "Reason", "Assumed drivers",
)
#: Accuracy table headers, in order. The baseline columns are those the engine provides
#: (at least one): ``Seasonal naive WAPE`` / ``Moving average WAPE``, or one ``Baseline WAPE``.
ACCURACY_HEADERS: tuple[str, ...] = (
    "SKU", "Location", "WAPE", "MASE", "Bias", "Coverage P10-P90",
    "Seasonal naive WAPE", "Moving average WAPE", "Baseline WAPE", "Model used", "Reason",
)
#: Inventory policy table (one row per SKU-location) on the Plan sheet: engine name -> header.
POLICY_HEADERS: dict[str, str] = {
    "SKU": "SKU", "Location": "Location", "Class": "Class", "Pattern": "Demand pattern", "Policy": "Policy",
    "ServiceTarget": "Service target", "ServiceLevel": "Service level", "ServiceLevelSource": "Service level from",
    "Method": "Safety stock method", "LeadTimeDays": "Lead time (days)", "LeadTimeStdDays": "Lead time sd (days)",
    "ReviewPeriodDays": "Review period (days)", "DemandOverProtection": "Forecast over lead time + review",
    "SafetyStock": "Safety stock", "ReorderPoint": "Reorder point", "OrderUpTo": "Order-up-to level",
    "EOQ": "EOQ", "OrderQty": "Order qty", "OnHand": "On hand", "OnOrder": "On order",
    "InventoryPosition": "Inventory position", "SuggestedOrder": "Order now", "DailyDemand": "Daily demand",
    "DaysOfCoverage": "Days of coverage", "Turnover": "Turns per year", "ProjectedFillRate": "Projected fill rate",
    "StockoutRisk": "Stock-out risk before receipt", "ExpectedShortUnits": "Expected units short",
    "ExcessUnits": "Excess units", "InventoryValue": "Inventory value", "ExcessValue": "Excess value",
    "UnitCost": "Unit cost", "MOQ": "MOQ", "OrderMultiple": "Order multiple", "Strategic": "Strategic",
    "Notes": "Notes",
}
#: Purchases table (ranked orders): engine name -> header.
PURCHASE_HEADERS: dict[str, str] = {
    "Rank": "Rank", "SKU": "SKU", "Location": "Location", "Class": "Class", "Strategic": "Strategic",
    "OrderQty": "Order qty", "SuggestedOrder": "Suggested qty", "OrderValue": "Order value",
    "DaysOfStock": "Days of stock", "LeadTimeDays": "Lead time (days)", "SlackDays": "Slack (days)",
    "Urgency": "Urgency", "StockoutRisk": "Stock-out risk before receipt", "ServiceImpact": "Service impact",
    "ImpactBasis": "Impact in", "InBudget": "In budget", "CumulativeValue": "Cumulative value", "Why": "Why",
}
_ACCURACY_BASELINES = ("Seasonal naive WAPE", "Moving average WAPE", "Baseline WAPE")
# Engine frames use snake_case for a few columns; the sheet uses words.
_ENGINE_NAMES = {"model_used": "Model used", "reason": "Reason", "assumed": "Assumed drivers", "Date": "Period"}

_PERCENT_COLUMNS = frozenset({"WAPE", "Bias", "Coverage P10-P90", *_ACCURACY_BASELINES, "Service level",
                              "Projected fill rate", "Stock-out risk before receipt"})
_RATIO_COLUMNS = frozenset({"MASE", "Turns per year", "Days of coverage", "Days of stock", "Slack (days)",
                            "Daily demand"})
_QUANTITY_COLUMNS = frozenset({"P10", "P50", "P90", "Forecast over lead time + review", "Safety stock",
                               "Reorder point", "Order-up-to level", "EOQ", "Expected units short", "Excess units"})
_MONEY_COLUMNS = frozenset({"Inventory value", "Excess value", "Unit cost", "Order value", "Cumulative value",
                            "Service impact"})
_FREQ_WORDS = {"D": "D (daily)", "W": "W (weekly)", "MS": "MS (monthly)"}

_DATE_FORMAT = "yyyy-mm-dd"  # ISO: unambiguous whatever the reader's locale
_TABLE_STYLE = "Table Style Medium 2"
_MIN_WIDTH, _MAX_WIDTH = 8, 50


# --------------------------------------------------------------------------- writing


class _Formats:
    """The few cell formats the workbook uses, created once per workbook."""

    def __init__(self, wb: Any) -> None:
        self.date = wb.add_format({"num_format": _DATE_FORMAT})
        self.percent = wb.add_format({"num_format": "0.0%"})
        self.ratio = wb.add_format({"num_format": "0.00"})
        self.quantity = wb.add_format({"num_format": "#,##0.0"})
        self.money = wb.add_format({"num_format": "#,##0.00"})
        self.title = wb.add_format({"bold": True, "font_size": 14})
        self.label = wb.add_format({"bold": True})
        self.header = wb.add_format({"bold": True, "bottom": 1})
        self.note = wb.add_format({"italic": True, "font_color": "#595959"})

    def for_column(self, header: str) -> Any:
        if header in _PERCENT_COLUMNS:
            return self.percent
        if header in _RATIO_COLUMNS:
            return self.ratio
        if header in _QUANTITY_COLUMNS:
            return self.quantity
        if header in _MONEY_COLUMNS:
            return self.money
        return None


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return not np.isfinite(value)  # inf has no honest cell value either
    return False


def _write_cell(ws: Any, row: int, col: int, value: Any, fmt: _Formats, num_fmt: Any = None) -> int:
    """Write one value with its real type; return its display width (for column sizing)."""
    if _is_missing(value):
        return 0  # blank cell
    if isinstance(value, (bool, np.bool_)):
        ws.write_boolean(row, col, bool(value))
        return 5
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        if isinstance(value, _dt.datetime) and value.tzinfo is not None:
            value = value.replace(tzinfo=None)  # Excel has no time zones
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        ws.write_datetime(row, col, value, fmt.date)
        return 10
    if isinstance(value, numbers.Number):
        ws.write_number(row, col, float(value), num_fmt)
        return min(len(f"{float(value):,.2f}"), 15)
    text = safe_text(value if isinstance(value, str) else str(value))
    if not text:
        return 0  # a blank cell, not an empty string (ISBLANK stays TRUE in Excel)
    ws.write_string(row, col, text)
    return len(text)


def _write_table(
    wb: Any, ws: Any, fmt: _Formats, name: str, df: pd.DataFrame, first_row: int,
    *, formats_by_header: bool = False,
) -> tuple[int, int]:
    """Write ``df`` as the Excel Table ``name`` with its header at ``first_row``.

    Returns ``(header_row, last_row)`` (0-based). An empty frame still gets a table with
    one blank row: Excel tables need a data row, and the planner can type into it.
    """
    headers = [safe_text(str(c)) for c in df.columns]
    if not headers:
        raise PlancellBug(f"table {name} has no columns")
    widths = [len(h) + 3 for h in headers]  # +3: room for the filter button
    col_formats = [fmt.for_column(str(c)) if formats_by_header else None for c in df.columns]
    df = _widen_float32(df)
    for i, values in enumerate(df.itertuples(index=False, name=None)):
        r = first_row + 1 + i
        for c, v in enumerate(values):
            w = _write_cell(ws, r, c, v, fmt, col_formats[c])
            if w > widths[c]:
                widths[c] = w
    last_row = first_row + max(len(df), 1)
    ws.add_table(first_row, 0, last_row, len(headers) - 1, {
        "name": name,
        "style": _TABLE_STYLE,
        "columns": [{"header": h, **({"format": f} if f is not None else {})}
                    for h, f in zip(headers, col_formats)],
    })
    for c, w in enumerate(widths):
        ws.set_column(c, c, min(max(w + 1, _MIN_WIDTH), _MAX_WIDTH))
    return first_row, last_row


def _widen_float32(df: pd.DataFrame) -> pd.DataFrame:
    """float32 -> float64 through the shortest decimal repr: a price stored as float32 2.62
    must reach Excel as 2.62, not 2.619999885559082."""
    cols = [c for c in df.columns if df[c].dtype == np.float32]
    if not cols:
        return df
    out = df.copy(deep=False)
    for c in cols:
        out[c] = df[c].to_numpy().astype(str).astype(np.float64)
    return out


def _select(df: pd.DataFrame, headers: Sequence[str], what: str,
            optional: Sequence[str] = ()) -> pd.DataFrame:
    """Rename engine columns to sheet headers and keep ``headers`` in order.

    ``optional`` headers are kept when present, but at least one of them must be.
    """
    out = df.rename(columns={k: v for k, v in _ENGINE_NAMES.items() if k in df.columns and v not in df.columns})
    missing = [h for h in headers if h not in out.columns and h not in optional]
    if optional and not any(h in out.columns for h in optional):
        missing.append(" or ".join(optional))
    if missing:
        raise PlancellBug(f"{what} frame lacks columns {missing}; it has {list(df.columns)}")
    return out.loc[:, [h for h in headers if h in out.columns]]


def _text(value: Any) -> Any:
    """A provenance value as something a cell can hold (numbers stay numbers)."""
    if _is_missing(value):
        return None
    if isinstance(value, (_dt.datetime, pd.Timestamp)):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (numbers.Number, str)):
        return value
    return str(value)


def _write_provenance(ws: Any, fmt: _Formats, metadata: Mapping[str, Any], n_series: int) -> int:
    """The provenance block at the top of the Plan sheet; returns the next free row."""
    freq = str(metadata.get("freq", "") or "")
    rows: list[tuple[str, Any]] = [
        ("Model", metadata.get("model_name")),
        ("Model version", metadata.get("model_version", "not saved")),
        ("Trained at", metadata.get("trained_at")),
        ("Data fingerprint", metadata.get("data_fingerprint")),
        ("Plancell version", metadata.get("plancell_version") or _ENGINE_VERSION),
        ("Frequency", _FREQ_WORDS.get(freq, freq)),
        ("Horizon (periods)", metadata.get("horizon")),
        ("Series", metadata.get("n_series", n_series)),
        ("Written at", _dt.datetime.now().astimezone().isoformat(timespec="seconds")),
    ]
    ws.write_string(0, 0, "Plancell plan", fmt.title)
    r = 1
    for label, value in rows:
        ws.write_string(r, 0, label, fmt.label)
        _write_cell(ws, r, 1, _text(value), fmt)
        r += 1
    ws.write_string(r, 0, safe_text(
        "Values only: this sheet needs no add-in. P50 is the median forecast; "
        "8 in 10 outcomes are expected between P10 and P90."), fmt.note)
    return r + 2


def _metric(block: Any, key: str) -> Any:
    return block.get(key) if isinstance(block, Mapping) else None


def _write_accuracy_summary(
    ws: Any, fmt: _Formats, summary: Mapping[str, Any], accuracy: pd.DataFrame,
) -> int:
    """The overall backtest block above the Accuracy table; returns the next free row."""
    ws.write_string(0, 0, "Backtest accuracy, all series", fmt.title)
    for c, h in enumerate(("Method", "WAPE", "MASE", "Bias")):
        ws.write_string(1, c, h, fmt.header)
    methods = (("Plancell model", "model"), ("Seasonal naive", "seasonal_naive"),
               ("Moving average", "moving_average"))
    r = 2
    for label, key in methods:
        block = summary.get(key)
        ws.write_string(r, 0, label, fmt.label)
        _write_cell(ws, r, 1, _metric(block, "wape"), fmt, fmt.percent)
        _write_cell(ws, r, 2, _metric(block, "mase"), fmt, fmt.ratio)
        _write_cell(ws, r, 3, _metric(block, "bias"), fmt, fmt.percent)
        r += 1
    used = accuracy["Model used"] if "Model used" in accuracy.columns else pd.Series(dtype=object)
    n_baseline = int((used.astype(str) != "lightgbm").sum()) if len(used) else 0
    facts: list[tuple[str, Any, Any]] = [
        ("Coverage P10-P90", summary.get("coverage_p10_p90"), fmt.percent),
        ("Backtest windows", summary.get("windows"), None),
        ("Horizon (periods)", summary.get("horizon"), None),
        ("Series", summary.get("n_series", len(accuracy)), None),
        ("Series on a baseline", n_baseline, None),
    ]
    r += 1
    for label, value, num_fmt in facts:
        ws.write_string(r, 0, label, fmt.label)
        _write_cell(ws, r, 1, _text(value), fmt, num_fmt)
        r += 1
    ws.write_string(r, 0, safe_text(
        "WAPE: total absolute error / total actuals (lower is better). MASE below 1 beats "
        "the seasonal naive forecast. Bias above 0 means over-forecast. Coverage P10-P90 "
        "should be near 80%."), fmt.note)
    return r + 2


def _temp_path(path: Path) -> Path:
    # Same directory so os.replace is an atomic rename; a dot name keeps it out of sight.
    return path.with_name(f".~{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{path.suffix or '.xlsx'}")


def write_plan_workbook(
    path: str | os.PathLike[str],
    *,
    sales: pd.DataFrame,
    drivers: pd.DataFrame | None,
    items: pd.DataFrame | None,
    plan: pd.DataFrame,
    accuracy: pd.DataFrame,
    metadata: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    policy: pd.DataFrame | None = None,
    purchases: pd.DataFrame | None = None,
    budget: float | None = None,
) -> Path:
    """Write the plan workbook (sheets Plan, Accuracy, Purchases, Sales, Drivers, Items) atomically.

    With ``policy`` (:func:`engine.policy.build_policy`), the Plan sheet shows the inventory
    policy table ``Policy`` (one row per SKU-location) above the forecast table ``Plan``;
    with ``purchases`` (:func:`engine.purchasing.purchase_priority`) a Purchases sheet
    lists what to order now, ranked.

    ``plan`` and ``accuracy`` are :class:`engine.plan.PlanResult` frames (engine or sheet
    column names); ``summary`` is the backtest's ``overall`` dict (taken from
    ``metadata["overall"]`` when omitted). The file appears complete or not at all: it is
    written next to ``path`` and renamed over it.
    """
    import xlsxwriter  # lazy: only writers pay the import
    from xlsxwriter.exceptions import FileCreateError

    path = Path(path)
    if summary is None:
        summary = metadata.get("backtest") or metadata.get("overall") or {}
    plan_df = _select(plan, PLAN_HEADERS, "plan")
    acc_df = _select(accuracy, ACCURACY_HEADERS, "accuracy", optional=_ACCURACY_BASELINES)
    n_series = int(plan_df[["SKU", "Location"]].drop_duplicates().shape[0])
    sku_width = int(plan_df["SKU"].astype(str).str.len().max()) if len(plan_df) else 0

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    tmp = _temp_path(path)
    try:
        wb = xlsxwriter.Workbook(str(tmp), {
            # Belt and braces: we only call write_string, which never makes formulas or links.
            "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        })
        fmt = _Formats(wb)

        ws = wb.add_worksheet("Plan")
        header_row = _write_provenance(ws, fmt, metadata, n_series)
        freeze = header_row + 1
        if policy is not None:
            ws.write_string(header_row, 0, "Inventory policy", fmt.title)
            ws.write_string(header_row + 1, 0, safe_text(_POLICY_NOTE), fmt.note)
            _, last = _write_table(wb, ws, fmt, "Policy", _display(policy, POLICY_HEADERS), header_row + 2,
                                   formats_by_header=True)
            freeze = header_row + 3
            ws.write_string(last + 2, 0, "Forecast", fmt.title)
            header_row = last + 3
        _write_table(wb, ws, fmt, "Plan", plan_df, header_row, formats_by_header=True)
        ws.set_column(0, 0, max(18, min(_MAX_WIDTH, sku_width + 2)))
        ws.set_column(1, 1, 28)  # provenance values (fingerprint, timestamps) live in column B
        ws.freeze_panes(freeze, 0)

        ws = wb.add_worksheet("Accuracy")
        header_row = _write_accuracy_summary(ws, fmt, summary, acc_df)
        _write_table(wb, ws, fmt, "Accuracy", acc_df, header_row, formats_by_header=True)
        ws.set_column(0, 0, 22)
        ws.freeze_panes(header_row + 1, 0)

        if purchases is not None:
            ws = wb.add_worksheet("Purchases")
            ws.write_string(0, 0, "Purchase priority: what to order now", fmt.title)
            ws.write_string(1, 0, safe_text(_purchases_note(purchases, budget)), fmt.note)
            _write_table(wb, ws, fmt, "Purchases", _display(purchases, PURCHASE_HEADERS), 3,
                         formats_by_header=True)
            ws.freeze_panes(4, 0)

        for name, df in (("Sales", sales), ("Drivers", drivers), ("Items", items)):
            if df is None:
                continue
            ws = wb.add_worksheet(name)
            _write_table(wb, ws, fmt, name, df, 0)
            ws.freeze_panes(1, 0)

        wb.worksheets()[0].activate()
        wb.close()
        try:
            os.replace(tmp, path)
        except PermissionError as exc:  # Windows: the old file is open in Excel
            raise TransientError(
                f"Cannot replace {path}: it is open in another program (Excel?). "
                "Close it and run again.") from exc
    except (FileCreateError, OSError) as exc:
        raise _cannot_write(path, exc) from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    _log.info("wrote %s (%d plan rows, %d series)", path, len(plan_df), n_series)
    return path


_POLICY_NOTE = (
    "Safety stock covers the forecast error over lead time + review period at the service level shown "
    "(sized on this plan's backtest errors). (R, S): every review, order up to the order-up-to level. "
    "(s, S): when the inventory position falls to the reorder point, order up to the order-up-to level. "
    "Order now = order-up-to level - inventory position, rounded up to MOQ and order multiple."
)


def _display(df: pd.DataFrame, headers: Mapping[str, str]) -> pd.DataFrame:
    """Engine columns -> sheet headers, in ``headers`` order (columns the frame lacks are skipped)."""
    cols = [c for c in headers if c in df.columns]
    out = df.loc[:, cols].rename(columns={c: headers[c] for c in cols})
    for c in out.columns:
        if out[c].dtype == object:
            continue
        if np.issubdtype(out[c].dtype, np.floating):
            out[c] = out[c].where(np.isfinite(out[c].to_numpy(dtype=float)))
    return out


def _purchases_note(purchases: pd.DataFrame, budget: float | None) -> str:
    n = len(purchases)
    if budget is None:
        return (f"{n} order{'s' if n != 1 else ''} suggested, most urgent first: late (stock runs out before an "
                "order placed today arrives), then order now, then planned; strategic items first within each.")
    inb = int(purchases["InBudget"].sum()) if "InBudget" in purchases.columns and n else 0
    return (f"{n} orders suggested; {inb} fit the budget of {budget:,.2f} in priority order. "
            "The Why column says what does not fit and why.")


def _cannot_write(path: Path, exc: BaseException) -> InputError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return InputError(
        f"Cannot write {path}: {reason}. Choose a folder you can write to.",
        [Problem(path.name, f"cannot write the file: {reason}", "choose a folder you can write to",
                 code="E110")],
        code="E110",
    )


# --------------------------------------------------------------------------- reading


def _unreadable(path: Path, why: str, fix: str, code: str = "E100") -> InputError:
    return InputError(
        f"Cannot read {path}: {why}. {fix[0].upper() + fix[1:]}.",
        [Problem(path.name, why, fix, code=code)],
        code=code,
    )


def read_tables(path: str | os.PathLike[str]) -> dict[str, tuple[pd.DataFrame, int]]:
    """Every Excel Table in the workbook, on any sheet, by table name.

    Each value is ``(frame, first_data_row)``: frame row ``i`` is Excel row
    ``first_data_row + i``, so validation can point at the row the planner sees. Cell
    values are the ones Excel last saved (formulas are not recalculated). Trailing blank
    rows of a table are dropped; blank rows inside are kept so row numbers stay true.
    """
    import openpyxl  # lazy: the CLI's --help should not pay for it
    from openpyxl.utils.cell import range_boundaries
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    if not path.exists():
        raise _unreadable(path, "the file does not exist", "check the path and the file name", code="E110")
    if path.is_dir():
        raise _unreadable(path, "it is a folder, not a workbook", "give the path of an .xlsx file", code="E110")
    try:
        with warnings.catch_warnings():
            # openpyxl warns about Excel features it ignores (data validation, slicers...):
            # noise for the planner, irrelevant to the tables.
            warnings.simplefilter("ignore")
            # Not read_only: tables are only parsed in the normal mode.
            wb = openpyxl.load_workbook(path, data_only=True)
    except PermissionError as exc:
        raise TransientError(f"Cannot open {path}: it is locked by another program. Close it and retry.") from exc
    except InvalidFileException as exc:
        raise _unreadable(path, f"not an Excel workbook ({exc})",
                          "save it from Excel as .xlsx (Excel Workbook) and try again") from exc
    except Exception as exc:  # any parser failure on the user's file is a file problem, not ours
        _log.debug("openpyxl failed on %s", path, exc_info=True)
        raise _unreadable(path, f"the file is not a valid .xlsx workbook ({type(exc).__name__})",
                          "open it in Excel, save it as .xlsx (Excel Workbook) and try again") from exc

    tables: dict[str, tuple[pd.DataFrame, int]] = {}
    try:
        for ws in wb.worksheets:
            for table in ws.tables.values():
                name = table.displayName or table.name
                tables[name] = _read_table(ws, table, range_boundaries)
    finally:
        wb.close()
    _log.info("read %d tables from %s: %s", len(tables), path, ", ".join(tables))
    return tables


def _read_table(ws: Any, table: Any, range_boundaries: Any) -> tuple[pd.DataFrame, int]:
    min_col, min_row, max_col, max_row = range_boundaries(table.ref)
    n_header = int(table.headerRowCount if table.headerRowCount is not None else 1)
    n_totals = int(table.totalsRowCount or 0)
    first = min_row + n_header
    last = max_row - n_totals
    names = [c.name for c in table.tableColumns] if table.tableColumns else []
    if len(names) != max_col - min_col + 1:  # damaged table XML: fall back to the header cells
        names = [str(ws.cell(min_row, c).value) for c in range(min_col, max_col + 1)]
    rows: list[tuple[Any, ...]] = []
    if last >= first:
        rows = list(ws.iter_rows(min_row=first, max_row=last, min_col=min_col, max_col=max_col,
                                 values_only=True))
    while rows and all(v is None or (isinstance(v, str) and not v.strip()) for v in rows[-1]):
        rows.pop()
    return pd.DataFrame(rows, columns=names), first

"""Workbook files without Excel: write the plan workbook, read the planner's tables.

The written workbook is meant to be shared: values only (no live formulas, no UDFs), so a
meeting participant without the add-in sees numbers and their provenance, never
``#NAME?``. Every input table is a real Excel Table named as in the data contract
(``Sales``, ``Drivers``, ``Items``), because Plancell finds tables by name, not by sheet.

Pure Python on files (xlsxwriter to write, openpyxl to read): no xlwings, no Excel.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from engine.errors import InputError, Problem, TransientError
from engine.schema import INPUT_TABLES

from .files import commit_file, temp_path
from .sheetxml import load_workbook, raw_sheets
from .sheets import (
    ACCURACY_HEADERS, FORMATS, PLAN_HEADERS, POLICY_HEADERS, PURCHASE_HEADERS, accuracy_sheet, charts_sheet,
    plan_sheet, purchases_sheet, render, table_sheet,
)

__all__ = ["write_plan_workbook", "read_tables", "Tables", "PLAN_HEADERS", "ACCURACY_HEADERS", "POLICY_HEADERS",
           "PURCHASE_HEADERS", "XlsxWriterSink"]

_log = logging.getLogger(__name__)


class XlsxWriterSink:
    """Renders :mod:`addin.sheets` cells into an XlsxWriter worksheet (new files)."""

    def __init__(self, wb: Any, ws: Any) -> None:
        self.wb, self.ws = wb, ws
        self._formats: dict[tuple[str | None, str | None], Any] = {}

    def _format(self, kind: str | None, style: str | None) -> Any:
        key = (kind, style)
        if key not in self._formats:
            props: dict[str, Any] = {}
            if kind:
                props["num_format"] = FORMATS[kind]
            if style == "title":
                props.update(bold=True, font_size=14)
            elif style in ("label", "header"):
                props["bold"] = True
                if style == "header":
                    props["bottom"] = 1
            elif style == "note":
                props.update(italic=True, font_color="#595959")
            self._formats[key] = self.wb.add_format(props) if props else None
        return self._formats[key]

    def cell(self, row: int, col: int, value: Any, kind: str | None = None, style: str | None = None) -> None:
        if value is None:
            return
        if isinstance(value, _dt.datetime) and kind is None:
            kind = "date"
        fmt = self._format(kind, style)
        if isinstance(value, bool):
            self.ws.write_boolean(row, col, value, fmt)
        elif isinstance(value, _dt.datetime):
            self.ws.write_datetime(row, col, value, fmt)
        elif isinstance(value, float):
            self.ws.write_number(row, col, value, fmt)
        else:
            self.ws.write_string(row, col, value, fmt)  # write_string never makes a formula or link

    def table(self, name: str, top: int, left: int, bottom: int, right: int, headers: list[str],
              kinds: list[str | None]) -> None:
        self.ws.add_table(top, left, bottom, right, {
            "name": name, "style": "Table Style Medium 2",
            "columns": [{"header": h, **({"format": self._format(k, None)} if k else {})}
                        for h, k in zip(headers, kinds)],
        })

    def width(self, col: int, width: float) -> None:
        self.ws.set_column(col, col, width)

    def freeze(self, row: int) -> None:
        self.ws.freeze_panes(row, 0)

    def chart(self, chart: Any, *, first: int, last: int, anchor: tuple[int, int]) -> None:
        name = self.ws.get_name()
        x = [name, first, chart.x, last, chart.x]
        ch = self.wb.add_chart({"type": "line"})
        # The dashed lines are named by their header cell, as the openpyxl writer does: P10 / P90
        # on a forecast chart, the reference steps on the FVA chart.
        header = lambda col: [name, first - 1, col]  # noqa: E731
        for col, label, line in ((chart.lo, header(chart.lo), {"color": "#5B9BD5", "dash_type": "dash", "width": 1}),
                                 (chart.hi, header(chart.hi), {"color": "#5B9BD5", "dash_type": "dash", "width": 1}),
                                 *((c, lab, {"color": ("#404040", "#C00000")[k % 2], "width": 2})
                                   for k, (c, lab) in enumerate(chart.lines))):
            ch.add_series({"name": label, "categories": x, "values": [name, first, col, last, col], "line": line,
                           "marker": {"type": "none"}})
        title = chart.title
        if re.match(r"^=?[^!]+!\$?[A-Z]+\$?\d+", title):
            # XlsxWriter reads such a title as a cell reference (a formula in the chart): break it
            title = title.replace("!", "!\u200b", 1)
        ch.set_title({"name": title, "name_font": {"size": 11}})
        ch.set_legend({"position": "bottom"})
        ch.set_x_axis({"num_format": "yyyy-mm", "date_axis": True})
        ch.set_size({"width": 560, "height": 300})
        self.ws.insert_chart(anchor[0], anchor[1], ch)


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
    settings: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    extra_sheets: list[Any] | None = None,
) -> Path:
    """Write the plan workbook (sheets Plan, Accuracy, Purchases, Sales, Drivers, Items,
    Settings) atomically.

    ``plan`` and ``accuracy`` are :class:`engine.plan.PlanResult` frames (engine or sheet
    column names); ``summary`` is the backtest's ``overall`` dict (taken from
    ``metadata["backtest"]`` when omitted). With ``policy`` the Plan sheet shows the
    inventory policy table ``Policy`` above the forecast table ``Plan``; with ``purchases``
    a Purchases sheet ranks what to order now. The file appears complete or not at all:
    it is written next to ``path`` and renamed over it.
    """
    import xlsxwriter  # lazy: only writers pay the import
    from xlsxwriter.exceptions import FileCreateError

    path = Path(path)
    if summary is None:
        summary = metadata.get("backtest") or metadata.get("overall") or {}
    sheets = [plan_sheet(plan, metadata, policy=policy), accuracy_sheet(summary, accuracy)]
    if purchases is not None:
        sheets.append(purchases_sheet(purchases, budget))
    sheets.extend(extra_sheets or [])
    if history is not None:
        sheets.append(charts_sheet(history, plan))
    for name, df in (("Sales", sales), ("Drivers", drivers), ("Items", items), ("Settings", settings)):
        if df is not None:
            sheets.append(table_sheet(name, df))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    tmp = temp_path(path)
    try:
        wb = xlsxwriter.Workbook(str(tmp), {
            # Belt and braces: cells go through write_string, which never makes formulas or links.
            "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        })
        for sheet in sheets:
            render(sheet, XlsxWriterSink(wb, wb.add_worksheet(sheet.name)))
        wb.worksheets()[0].activate()
        wb.close()
        try:
            commit_file(tmp, path)
        except PermissionError as exc:  # Windows: the old file is open in Excel
            raise TransientError(
                f"Cannot replace {path}: it is open in another program (Excel?). "
                "Close it and run again.") from exc
    except (FileCreateError, OSError) as exc:
        raise _cannot_write(path, exc) from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    _log.info("wrote %s (%d sheets)", path, len(sheets))
    return path


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


def read_tables(path: str | os.PathLike[str], *, guard: bool = True) -> "Tables":
    """Every Excel Table in the workbook, on any sheet, by table name.

    Each value is ``(frame, first_data_row)``: frame row ``i`` is Excel row
    ``first_data_row + i``, so validation can point at the row the planner sees. Cell
    values are the ones Excel last saved (formulas are not recalculated); error cells
    (``#N/A`` ...) arrive as their error text, never as blank. Trailing blank rows of a
    table are dropped; blank rows inside are kept so row numbers stay true.

    The data-contract tables are found whatever the case of their name (``sales`` is
    ``Sales``, as in Excel). Each frame's ``attrs`` say where it sits (sheet, first
    column) and carry what the reader noticed (merged or hidden cells), so validation
    can name the cell ``'Sheet'!C5`` and report everything at once
    (:func:`engine.contract.validate`). With ``guard`` (the default) the file is first
    checked by :func:`addin.guard.check_workbook` (size, cells, zip and entity bombs).
    """
    from openpyxl.utils.cell import range_boundaries  # lazy: the CLI's --help should not pay for it
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    if not path.exists():
        raise _unreadable(path, "the file does not exist", "check the path and the file name", code="E110")
    if path.is_dir():
        raise _unreadable(path, "it is a folder, not a workbook", "give the path of an .xlsx file", code="E110")
    if guard:
        from .guard import check_workbook

        check_workbook(path)
    try:
        with warnings.catch_warnings():
            # openpyxl warns about Excel features it ignores (data validation, slicers...):
            # noise for the planner, irrelevant to the tables.
            warnings.simplefilter("ignore")
            # Not read_only: tables are only parsed in the normal mode. Sheets without the
            # planner's tables (Plancell's own output, snapshots) keep their cells as raw XML
            # and their tables are read by python-calamine: a 120,000-row Plan in about a second.
            wb = load_workbook(path, data_only=True, parse=_holds_planner_table)
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
    later: dict[str, Any] = {}
    order: list[str] = []
    damaged: list[Problem] = []
    raw = set(raw_sheets(wb))
    cache: dict[str, list[list[Any]]] = {}
    calamine: list[Any] = []

    def book() -> Any:
        if not calamine:
            from python_calamine import CalamineWorkbook

            calamine.append(CalamineWorkbook.from_filelike(io.BytesIO(content)))
        return calamine[0]

    content = path.read_bytes() if raw else b""
    try:
        for ws in wb.worksheets:
            for table in ws.tables.values():
                name = _canonical_table_name(table.displayName or table.name or "")
                if name in tables or name in later:
                    damaged.append(Problem(name, f"two tables are named {name} (Excel ignores upper/lower case)",
                                           "rename or delete one of them (Table Design > Table Name)",
                                           sheet=ws.title, value=table.displayName or table.name, code="E101"))
                    continue
                order.append(name)
                if ws.title in raw:
                    later[name] = functools.partial(_read_raw_table, book, ws, table, range_boundaries, cache)
                    continue
                try:
                    tables[name] = _read_table(ws, table, range_boundaries, name)
                except Exception as exc:  # a broken table definition is the file's problem, not ours
                    _log.debug("table %s on %s unreadable", name, ws.title, exc_info=True)
                    damaged.append(Problem(name, f"the table definition is damaged ({type(exc).__name__})",
                                           "open the workbook in Excel, check the table (Table Design), save "
                                           "and run again", sheet=ws.title, value=getattr(table, "ref", None),
                                           code="E100"))
    finally:
        wb.close()
    if damaged and any(p.table in _CONTRACT_TABLES for p in damaged):
        raise InputError(f"Cannot read {path.name}: {damaged[0].where()}: {damaged[0].message}. "
                         f"Fix: {damaged[0].fix}.", damaged, code="E100")
    _log.info("read %d tables from %s: %s", len(order), path, ", ".join(order))
    return Tables(tables, later, order)


#: The tables of the data contract: found whatever the case of their name, like Excel does.
_CONTRACT_TABLES = INPUT_TABLES
_CONTRACT_FOLDED = {t.casefold(): t for t in _CONTRACT_TABLES}
#: Hidden rows listed per table before the rest are only counted.
_MAX_NOTED_ROWS = 1000


def _canonical_table_name(name: str) -> str:
    return _CONTRACT_FOLDED.get(name.strip().casefold(), name)


def _read_table(ws: Any, table: Any, range_boundaries: Any, name: str = "") -> tuple[pd.DataFrame, int]:
    from engine.contract import (
        ATTR_EXCEL, ATTR_FIRST_COLUMN, ATTR_HIDDEN_ROWS, ATTR_PROBLEMS, ATTR_SHEET,
    )
    from engine.errors import column_letter

    min_col, min_row, max_col, first, last = _data_span(table, range_boundaries)
    names = [c.name for c in table.tableColumns] if table.tableColumns else []
    if len(names) != max_col - min_col + 1:  # damaged table XML: fall back to the header cells
        names = [str(ws.cell(min_row, c).value) for c in range(min_col, max_col + 1)]
    rows: list[tuple[Any, ...]] = []
    if last >= first:
        # ws.iter_rows would create a cell object for every blank cell of the range
        get = ws._cells.get
        cols = range(min_col, max_col + 1)
        rows = [tuple(None if (c := get((r, j))) is None else c.value for j in cols) for r in range(first, last + 1)]
    while rows and all(map(_blank, rows[-1])):
        rows.pop()
    df = pd.DataFrame(rows, columns=names)
    end = first + len(rows) - 1
    problems: list[Problem] = []
    if name in _CONTRACT_TABLES:
        # Merged cells inside a table hide values in every cell but the first: refuse, never guess.
        for rng in ws.merged_cells.ranges:
            if rng.max_row < first or rng.min_row > end or rng.max_col < min_col or rng.min_col > max_col:
                continue
            c0 = max(rng.min_col, min_col)
            r0 = max(rng.min_row, first)
            problems.append(Problem(
                name, f"cells {rng.coord} are merged inside the table, so rows below the first have no value",
                "unmerge them (Home > Merge & Center) and fill in every row's value", row=r0,
                column=str(names[c0 - min_col]), value=_cell_text(ws.cell(rng.min_row, rng.min_col).value),
                sheet=ws.title, letter=column_letter(c0), code="E102"))
    hidden = [r for r, dim in ws.row_dimensions.items() if dim.hidden and first <= r <= end][:_MAX_NOTED_ROWS]
    df.attrs.update({ATTR_SHEET: ws.title, ATTR_FIRST_COLUMN: int(min_col), ATTR_EXCEL: True})
    if hidden:
        df.attrs[ATTR_HIDDEN_ROWS] = sorted(hidden)
    if problems:
        df.attrs[ATTR_PROBLEMS] = problems
    return df, first


def _data_span(table: Any, range_boundaries: Any) -> tuple[int, int, int, int, int]:
    """``(min_col, header row, max_col, first data row, last data row)`` of an Excel table."""
    min_col, min_row, max_col, max_row = range_boundaries(table.ref)
    first = min_row + int(table.headerRowCount if table.headerRowCount is not None else 1)
    return min_col, min_row, max_col, first, max_row - int(table.totalsRowCount or 0)


def _blank(v: Any) -> bool:
    """An empty cell: None (openpyxl), "" (python-calamine) or only spaces."""
    return v is None or (isinstance(v, str) and not v.strip())


def _holds_planner_table(names: list[str]) -> bool:
    """A sheet whose cells are read one by one (hidden rows, merged cells, error cells noted)."""
    return any(n.strip().casefold() in _PLANNER_TABLES for n in names)


_PLANNER_TABLES = frozenset(t.casefold() for t in (*_CONTRACT_TABLES, "Overrides"))


def _from_calamine(col: pd.Series) -> pd.Series:
    """A column of python-calamine values as openpyxl's data-only reader would give it:
    blank cells ("" in calamine) are None, dates are datetimes, a column of whole numbers
    reads as integers ("5" in the file)."""
    if col.dtype == object:
        col = col.where(col != "", None)
        kinds = set(map(type, col[col.notna()]))
        if _dt.date in kinds:
            col = col.map(lambda v: _dt.datetime(v.year, v.month, v.day) if type(v) is _dt.date else v)
        col = col.infer_objects()
    if col.dtype.kind == "f" and len(col) and col.notna().all():
        v = col.to_numpy()
        if (np.abs(v) < 1e15).all() and (v == np.round(v)).all():
            col = col.astype(np.int64)
    return col


def _read_raw_table(book: Any, ws: Any, table: Any, range_boundaries: Any,
                    cache: dict[str, list[list[Any]]]) -> tuple[pd.DataFrame, int]:
    """A table on a sheet kept as raw XML (Plancell's own output), its values read by
    python-calamine: no hidden-row, merge or error-cell notes, which only the planner's
    input tables get."""
    from engine.contract import ATTR_EXCEL, ATTR_FIRST_COLUMN, ATTR_SHEET

    if ws.title not in cache:
        cache[ws.title] = book().get_sheet_by_name(ws.title).to_python(skip_empty_area=False)
    grid = cache[ws.title]
    min_col, min_row, max_col, first, last = _data_span(table, range_boundaries)
    last = min(last, len(grid))
    width = max_col - min_col + 1
    names = [c.name for c in table.tableColumns] if table.tableColumns else []
    if len(names) != width:
        head = grid[min_row - 1] if min_row - 1 < len(grid) else []
        names = [str(head[c - 1] if c - 1 < len(head) and head[c - 1] != "" else None)
                 for c in range(min_col, max_col + 1)]
    while last >= first and all(map(_blank, grid[last - 1][min_col - 1:max_col])):
        last -= 1   # trailing blank rows are not part of the data
    rows = [r[min_col - 1:max_col] for r in grid[first - 1:last]]
    df = pd.DataFrame(rows, columns=range(len(rows[0])) if rows else range(0)).reindex(columns=range(width))
    df = pd.DataFrame({j: _from_calamine(df[j]) for j in range(width)}) if len(df) else df
    df.columns = names
    df.attrs.update({ATTR_SHEET: ws.title, ATTR_FIRST_COLUMN: int(min_col), ATTR_EXCEL: True})
    return df, first


class Tables(Mapping[str, tuple[pd.DataFrame, int]]):
    """Every Excel table of a workbook by name: ``(frame, first data row)``.

    The planner's tables are read at once; tables on sheets Plancell wrote (the previous
    refresh's Plan, published snapshots) are read the first time they are asked for, from a
    copy of the file taken when it was opened.
    """

    def __init__(self, read: dict[str, tuple[pd.DataFrame, int]], later: dict[str, Any], order: list[str]) -> None:
        self._read = read
        self._later = later
        self._order = order

    def __getitem__(self, name: str) -> tuple[pd.DataFrame, int]:
        if name not in self._read:
            if name not in self._later:
                raise KeyError(name)
            self._read[name] = self._later.pop(name)()
        return self._read[name]

    def __iter__(self) -> Any:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._read or name in self._later


def _cell_text(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)

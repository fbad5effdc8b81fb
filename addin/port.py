"""The workbook port: what a ribbon action needs from a workbook, with two adapters.

Ribbon actions (:mod:`addin.actions`) are written once against :class:`WorkbookPort`:

* :class:`FileBook` -- an .xlsx/.xlsm file on disk (``plancell refresh BOOK``), through
  openpyxl. Only Plancell's output sheets are replaced; every other sheet, formula, format,
  chart, defined name and the VBA project of an .xlsm are kept. Saving is atomic.
* :class:`XlwingsBook` -- the live workbook in Excel (``xw.Book.caller()``), for the
  ribbon. Status messages go to Excel's status bar.

Both render the same :class:`addin.sheets.Sheet` descriptions, so a refreshed file and a
refreshed live workbook show the same cells.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import pandas as pd

from engine.errors import InputError, Problem, TransientError
from engine.schema import INPUT_TABLES as _INPUT_TABLES

from .files import commit_file, temp_path
from .sheetxml import head_rows, load_workbook, save_workbook
from .sheets import FORMATS, Sheet, render

__all__ = ["WorkbookPort", "FileBook", "XlwingsBook", "OpenpyxlSink"]

_log = logging.getLogger(__name__)


class WorkbookPort(Protocol):
    """The few things an action does with a workbook."""

    name: str

    def tables(self) -> dict[str, tuple[pd.DataFrame, int]]: ...
    def sheet_names(self) -> list[str]: ...
    def tables_on(self, sheet: str) -> list[str]: ...
    def read_pairs(self, sheet: str, max_rows: int = 40) -> dict[str, Any]: ...
    def write_sheet(self, sheet: Sheet, *, after: str | None = None) -> None: ...
    def status(self, message: str | None) -> None: ...
    def save(self) -> None: ...


#: Tables the planner owns; an output sheet is never written over a sheet holding one.
INPUT_TABLES = frozenset(_INPUT_TABLES)


def _refuse_input_tables(sheet: Sheet, present: list[str]) -> None:
    mine = [t for t in present if t in INPUT_TABLES]
    if mine:
        raise InputError(
            f"Plancell writes its results to the sheet '{sheet.name}', which holds your table "
            f"{', '.join(mine)}. Move the table to another sheet (or rename the sheet) and run again.",
            [Problem(sheet.name, f"sheet holds the input table {', '.join(mine)}",
                     "move the table to another sheet, or rename this sheet", code="E110")], code="E110")


# --------------------------------------------------------------------------- files


class OpenpyxlSink:
    """Renders :mod:`addin.sheets` cells into an openpyxl worksheet."""

    def __init__(self, ws: Any) -> None:
        from openpyxl.styles import Font

        self.ws = ws
        self._fonts = {"title": Font(bold=True, size=14), "label": Font(bold=True), "header": Font(bold=True),
                       "note": Font(italic=True, color="595959")}

    def cell(self, row: int, col: int, value: Any, kind: str | None = None, style: str | None = None) -> None:
        if value is None:
            return
        c = self.ws.cell(row + 1, col + 1, value)
        if isinstance(value, str):
            c.data_type = "s"  # never a formula, whatever the text starts with
        elif kind is None and isinstance(value, _dt.datetime):
            kind = "date"
        if kind:
            c.number_format = FORMATS[kind]
        if style is not None and style in self._fonts:
            c.font = self._fonts[style]

    def rows(self, top: int, columns: list[list[Any]], kinds: list[str | None]) -> None:
        """A table's data rows, from row ``top`` down: streamed when the book is saved with
        :func:`addin.sheetxml.save_workbook` (a cell object each would cost ~15 µs a cell)."""
        from .sheetxml import defer_rows

        defer_rows(self.ws, top + 1, columns, [FORMATS[k] if k else None for k in kinds],
                   date_format=FORMATS["date"])

    def table(self, name: str, top: int, left: int, bottom: int, right: int, headers: list[str],
              kinds: list[str | None]) -> None:
        from openpyxl.utils import get_column_letter
        from openpyxl.worksheet.table import Table, TableStyleInfo

        for j, h in enumerate(headers):
            c = self.ws.cell(top + 1, left + j + 1)
            c.value = h
            c.data_type = "s"
        ref = f"{get_column_letter(left + 1)}{top + 1}:{get_column_letter(right + 1)}{bottom + 1}"
        t = Table(displayName=name, ref=ref)
        t._initialise_columns()
        for col, h in zip(t.tableColumns, headers):
            # named here: openpyxl would otherwise read the header row through ws[ref],
            # creating a cell object for every cell of the table
            col.name = h
        t.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        self.ws.add_table(t)

    def width(self, col: int, width: float) -> None:
        from openpyxl.utils import get_column_letter

        self.ws.column_dimensions[get_column_letter(col + 1)].width = width

    def freeze(self, row: int) -> None:
        self.ws.freeze_panes = f"A{row + 1}"

    def chart(self, chart: Any, *, first: int, last: int, anchor: tuple[int, int]) -> None:
        from openpyxl.chart import LineChart, Reference
        from openpyxl.utils import get_column_letter

        def ref(col: int, *, title: bool) -> Any:
            return Reference(self.ws, min_col=col + 1, max_col=col + 1, min_row=first if title else first + 1,
                             max_row=last + 1)

        ch = LineChart()
        for col in (chart.lo, chart.hi, *(c for c, _ in chart.lines)):
            ch.add_data(ref(col, title=True), titles_from_data=True)
        ch.set_categories(ref(chart.x, title=False))
        for k, srs in enumerate(ch.series):
            srs.smooth = False
            if k < 2:
                srs.graphicalProperties.line.dashStyle = "dash"
                srs.graphicalProperties.line.solidFill = "5B9BD5"
            else:
                srs.graphicalProperties.line.solidFill = ("404040", "C00000")[(k - 2) % 2]
                srs.graphicalProperties.line.width = 25400   # 2 pt in EMU
        ch.title = chart.title
        ch.y_axis.delete = False
        ch.x_axis.delete = False
        ch.x_axis.number_format = "yyyy-mm"
        ch.width, ch.height = 15, 8
        self.ws.add_chart(ch, f"{get_column_letter(anchor[1] + 1)}{anchor[0] + 1}")


class FileBook:
    """A workbook file. Reads tables with their cached values; writes output sheets in place.

    The workbook is opened twice: once with cached values (what the planner's formulas
    last computed) to read tables, once as formulas to write, so the planner's formulas are
    saved back as formulas. ``.xlsm`` files keep their VBA project.
    """

    def __init__(self, path: str | os.PathLike[str], *, progress: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._progress = progress
        self._wb: Any = None
        self._tables: Mapping[str, tuple[pd.DataFrame, int]] | None = None

    def _book(self) -> Any:
        if self._wb is None:
            from .guard import check_workbook
            from .workbook import read_tables

            if self.path.is_file():
                check_workbook(self.path)  # size, cells, zip/entity bombs: before any parser sees the file
            self._tables = read_tables(self.path, guard=False)  # validates the file with a planner-readable error
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # cells of sheets that can be are kept as raw XML: written back verbatim, or
                # never parsed at all when the sheet is replaced (addin.sheetxml)
                self._wb = load_workbook(self.path, keep_vba=self.path.suffix.lower() == ".xlsm", keep_links=True)
        return self._wb

    def tables(self) -> Mapping[str, tuple[pd.DataFrame, int]]:
        """Every table by name (addin.workbook.Tables: Plancell's own read on first use)."""
        self._book()
        assert self._tables is not None
        return self._tables

    def sheet_names(self) -> list[str]:
        return list(self._book().sheetnames)

    def tables_on(self, sheet: str) -> list[str]:
        wb = self._book()
        return list(wb[sheet].tables) if sheet in wb.sheetnames else []

    def read_pairs(self, sheet: str, max_rows: int = 40) -> dict[str, Any]:
        """Label / value pairs in columns A:B at the top of ``sheet`` (a provenance block)."""
        wb = self._book()
        if sheet not in wb.sheetnames:
            return {}
        out: dict[str, Any] = {}
        for row in head_rows(wb[sheet], max_rows):
            if len(row) > 1 and row[0] is not None and row[1] is not None:
                out.setdefault(str(row[0]), row[1])
        return out

    def write_sheet(self, sheet: Sheet, *, after: str | None = None) -> None:
        """Replace (or create) ``sheet.name``; an existing sheet keeps its position."""
        wb = self._book()
        _refuse_input_tables(sheet, self.tables_on(sheet.name))
        if sheet.name in wb.sheetnames:
            old = wb[sheet.name]
            index = wb.sheetnames.index(sheet.name)
            wb.remove(old)
        elif after is not None and after in wb.sheetnames:
            index = wb.sheetnames.index(after) + 1
        else:
            index = len(wb.sheetnames)
        ws = wb.create_sheet(sheet.name, index)
        render(sheet, OpenpyxlSink(ws))

    def status(self, message: str | None) -> None:
        if message:
            _log.info("%s: %s", self.name, message)
            if self._progress is not None:
                self._progress(message)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write atomically (a temp file in the same folder, renamed over the target)."""
        wb = self._book()
        target = Path(path) if path is not None else self.path
        tmp = temp_path(target)
        try:
            save_workbook(wb, tmp)
            try:
                commit_file(tmp, target)
            except PermissionError as exc:
                raise TransientError(f"Cannot replace {target}: it is open in another program (Excel?). "
                                     "Close it and run again.") from exc
        except OSError as exc:
            raise InputError(f"Cannot write {target}: {exc.strerror or exc}. Choose a folder you can write to.",
                             [Problem(target.name, "cannot write the file", "choose a folder you can write to",
                                      code="E110")], code="E110") from exc
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)
        return target


# --------------------------------------------------------------------------- live Excel


class _BufferSink:
    """Collects rendered cells so a live sheet is written in a few COM calls, not one per cell."""

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], Any] = {}
        self.kinds: dict[tuple[int, int], str] = {}
        self.styles: dict[tuple[int, int], str] = {}
        self.tables: list[tuple[str, int, int, int, int, list[str]]] = []
        self.widths: dict[int, float] = {}
        self.freeze_row: int | None = None
        self.charts: list[tuple[Any, int, int, tuple[int, int]]] = []

    def cell(self, row: int, col: int, value: Any, kind: str | None = None, style: str | None = None) -> None:
        if value is None:
            return
        self.cells[(row, col)] = value
        if kind:
            self.kinds[(row, col)] = kind
        if style:
            self.styles[(row, col)] = style

    def table(self, name: str, top: int, left: int, bottom: int, right: int, headers: list[str],
              kinds: list[str | None]) -> None:
        for j, h in enumerate(headers):
            self.cells[(top, left + j)] = h
        for j, k in enumerate(kinds):
            if k:
                for r in range(top + 1, bottom + 1):
                    self.kinds[(r, left + j)] = k
        self.tables.append((name, top, left, bottom, right, headers))

    def width(self, col: int, width: float) -> None:
        self.widths[col] = width

    def freeze(self, row: int) -> None:
        self.freeze_row = row

    def chart(self, chart: Any, *, first: int, last: int, anchor: tuple[int, int]) -> None:
        self.charts.append((chart, first, last, anchor))

    def matrix(self) -> list[list[Any]]:
        if not self.cells:
            return [[None]]
        nr = max(r for r, _ in self.cells) + 1
        nc = max(c for _, c in self.cells) + 1
        grid: list[list[Any]] = [[None] * nc for _ in range(nr)]
        for (r, c), v in self.cells.items():
            # A leading apostrophe is how Excel itself stores text that looks like a formula.
            grid[r][c] = v
        return grid


def _runs(kinds: dict[tuple[int, int], str]) -> list[tuple[tuple[int, str], tuple[int, int]]]:
    """Consecutive rows of one column with one number format: one COM call per run."""
    out: list[tuple[tuple[int, str], tuple[int, int]]] = []
    for (r, c), k in sorted(kinds.items(), key=lambda x: (x[0][1], x[0][0])):
        if out and out[-1][0] == (c, k) and out[-1][1][1] == r - 1:
            out[-1] = ((c, k), (out[-1][1][0], r))
        else:
            out.append(((c, k), (r, r)))
    return out


class XlwingsBook:
    """The live workbook in Excel, through xlwings (Windows desktop Excel)."""

    def __init__(self, book: Any) -> None:
        self.book = book
        self.name = book.name

    def tables(self) -> dict[str, tuple[pd.DataFrame, int]]:
        from engine.contract import ATTR_EXCEL, ATTR_FIRST_COLUMN, ATTR_SHEET

        from .workbook import _canonical_table_name

        out: dict[str, tuple[pd.DataFrame, int]] = {}
        for sh in self.book.sheets:
            for t in sh.tables:
                rng = t.range
                # err_to_str: an error cell arrives as "#N/A", never as a blank
                values = rng.options(ndim=2, err_to_str=True).value or []
                if not values:
                    continue
                header, rows = values[0], values[1:]
                df = pd.DataFrame(rows, columns=[str(h) for h in header])
                while len(df) and df.iloc[-1].isna().all():
                    df = df.iloc[:-1]
                df.attrs.update({ATTR_SHEET: sh.name, ATTR_FIRST_COLUMN: int(getattr(rng, "column", 1)),
                                 ATTR_EXCEL: True})
                out[_canonical_table_name(t.name)] = (df, rng.row + 1)
        return out

    def sheet_names(self) -> list[str]:
        return [s.name for s in self.book.sheets]

    def tables_on(self, sheet: str) -> list[str]:
        return [t.name for t in self.book.sheets[sheet].tables] if sheet in self.sheet_names() else []

    def read_pairs(self, sheet: str, max_rows: int = 40) -> dict[str, Any]:
        if sheet not in self.sheet_names():
            return {}
        values = self.book.sheets[sheet].range((1, 1), (max_rows, 2)).options(ndim=2).value
        return {str(a): b for a, b in values if a is not None and b is not None}

    def write_sheet(self, sheet: Sheet, *, after: str | None = None) -> None:
        names = self.sheet_names()
        _refuse_input_tables(sheet, self.tables_on(sheet.name))
        if sheet.name in names:
            ws = self.book.sheets[sheet.name]
            for t in list(ws.tables):
                t.delete()
            ws.clear()
        else:
            anchor = self.book.sheets[after] if after in names else self.book.sheets[-1]
            ws = self.book.sheets.add(sheet.name, after=anchor)
        buf = _BufferSink()
        render(sheet, buf)
        grid = buf.matrix()
        ws.range("A1").value = grid
        for (c, kind), (r0, r1) in _runs(buf.kinds):
            ws.range((r0 + 1, c + 1), (r1 + 1, c + 1)).number_format = FORMATS[kind]
        for (r, c), style in buf.styles.items():
            rng = ws.range((r + 1, c + 1))
            rng.font.bold = style in ("title", "label", "header")
            if style == "title":
                rng.font.size = 14
            elif style == "note":
                rng.font.italic = True
        for name, top, left, bottom, right, _ in buf.tables:
            ws.tables.add(source=ws.range((top + 1, left + 1), (bottom + 1, right + 1)), name=name,
                          table_style_name="TableStyleMedium2", has_headers=True)
        for col, w in buf.widths.items():
            ws.range((1, col + 1)).column_width = w
        for chart, first, last, anchor in buf.charts:
            # Live Excel gets a plain line chart of the series' block (actual, P10, band, P50);
            # the shaded band is drawn in files (openpyxl / XlsxWriter), checked only there.
            cols = [chart.lo, chart.hi] + [c for c, _ in chart.lines]
            top_left = ws.range((anchor[0] + 1, anchor[1] + 1))
            ch = ws.charts.add(left=top_left.left, top=top_left.top, width=640, height=300)
            ch.chart_type = "line"
            ch.set_source_data(ws.range((first, min(cols) + 1), (last + 1, max(cols) + 1)))

    def status(self, message: str | None) -> None:
        # False hands the status bar back to Excel
        self.book.app.status_bar = message if message else False

    def save(self) -> None:
        """The planner saves the live workbook; nothing to do."""

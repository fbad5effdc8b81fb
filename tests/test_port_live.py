"""The live-Excel adapter (XlwingsBook) against a small stand-in for xlwings' Book API:
the same Sheet lands in the same cells as in a file, tables are created and read back,
and status messages go to Excel's status bar. (Real Excel: docs/windows-smoke-test.md.)"""

from __future__ import annotations

import datetime as dt

import openpyxl
import pandas as pd

from addin.port import FileBook, XlwingsBook
from addin.sheets import plan_sheet


class _Font:
    bold = italic = None
    size = None


class _Range:
    def __init__(self, sheet, a, b=None):
        self.sheet = sheet
        (self.r0, self.c0) = a if isinstance(a, tuple) else _cell(a)
        (self.r1, self.c1) = b if b is not None else (self.r0, self.c0)
        self.font = _Font()
        self.left = self.top = 0.0

    @property
    def row(self):
        return self.r0

    def options(self, **_):
        return self

    @property
    def value(self):
        return [[self.sheet.cells.get((r, c)) for c in range(self.c0, self.c1 + 1)]
                for r in range(self.r0, self.r1 + 1)]

    @value.setter
    def value(self, grid):
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v is not None:
                    self.sheet.cells[(self.r0 + i, self.c0 + j)] = v

    @property
    def number_format(self):
        return self.sheet.formats.get((self.r0, self.c0))

    @number_format.setter
    def number_format(self, fmt):
        for r in range(self.r0, self.r1 + 1):
            for c in range(self.c0, self.c1 + 1):
                self.sheet.formats[(r, c)] = fmt

    column_width = None


def _cell(a1):
    col = ord(a1[0]) - 64
    return int(a1[1:]), col


class _Table:
    def __init__(self, sheet, source, name):
        self.sheet, self.range, self.name = sheet, source, name

    def delete(self):
        self.sheet.tables.remove(self)


class _Tables(list):
    def __init__(self, sheet):
        super().__init__()
        self.sheet = sheet

    def add(self, source, name, **_):
        t = _Table(self.sheet, source, name)
        self.append(t)
        return t


class _Chart:
    chart_type = name = None

    def set_source_data(self, rng):
        self.source = rng


class _Charts(list):
    def add(self, **_):
        c = _Chart()
        self.append(c)
        return c


class _Sheet:
    def __init__(self, name):
        self.name, self.cells, self.formats = name, {}, {}
        self.tables, self.charts = _Tables(self), _Charts()

    def range(self, a, b=None):
        return _Range(self, a, b)

    def clear(self):
        self.cells.clear()
        self.formats.clear()


class _Sheets(list):
    def __getitem__(self, key):
        if isinstance(key, str):
            return next(s for s in self if s.name == key)
        return list.__getitem__(self, key)

    def add(self, name, after=None):
        s = _Sheet(name)
        self.insert(self.index(after) + 1 if after is not None else len(self), s)
        return s


class _App:
    status_bar = None
    alerts: list = []

    def alert(self, text, title=None):
        self.alerts.append(text)


class _Book:
    def __init__(self, name="Planner.xlsm"):
        self.name, self.app, self.sheets = name, _App(), _Sheets([_Sheet("Sheet1")])


def _sheet():
    plan = pd.DataFrame({"SKU": ["A", "A"], "Location": ["", ""], "Period": pd.to_datetime(["2026-01-04", "2026-01-11"]),
                         "P10": [1.0, 2.0], "P50": [3.0, 4.0], "P90": [5.0, 6.0], "model_used": "lightgbm",
                         "reason": "", "assumed": ""})
    meta = {"model_name": "m", "model_version": 2, "trained_at": "2026-01-01T00:00:00", "data_fingerprint": "abc",
            "freq": "W", "horizon": 2, "n_series": 1}
    return plan_sheet(plan, meta)


def test_live_sheet_has_the_same_cells_as_the_file(tmp_path) -> None:
    book = _Book()
    live = XlwingsBook(book)
    live.write_sheet(_sheet())
    ws_live = book.sheets["Plan"]

    path = tmp_path / "f.xlsx"
    openpyxl.Workbook().save(path)
    fb = FileBook(path)
    fb.write_sheet(_sheet())
    fb.save()
    ws_file = openpyxl.load_workbook(path)["Plan"]
    for r in range(1, 16):
        for c in range(1, 10):
            a, b = ws_live.cells.get((r, c)), ws_file.cell(r, c).value
            if isinstance(b, dt.datetime) or (r, c) in ((10, 2),):   # "Written at" differs by the clock
                continue
            if a is not None and b is not None and isinstance(a, float):
                b = float(b)
            assert a == b, (r, c, a, b)
    assert [t.name for t in ws_live.tables] == ["Plan"]
    assert ws_live.range((14, 5)).number_format == "#,##0.0"    # P50 cells formatted as quantities


def test_live_tables_read_back_and_rewrite_in_place() -> None:
    book = _Book()
    live = XlwingsBook(book)
    live.write_sheet(_sheet())
    live.write_sheet(_sheet())                                   # refresh again: same sheet, one table
    assert [s.name for s in book.sheets] == ["Sheet1", "Plan"]
    assert [t.name for t in book.sheets["Plan"].tables] == ["Plan"]
    tables = live.tables()
    df, first = tables["Plan"]
    assert list(df["P50"]) == [3.0, 4.0] and first == 14
    assert live.read_pairs("Plan")["Model"] == "m"


def test_status_goes_to_the_status_bar_and_is_handed_back() -> None:
    book = _Book()
    live = XlwingsBook(book)
    live.status("Plancell: backtest 1/3")
    assert book.app.status_bar == "Plancell: backtest 1/3"
    live.status(None)
    assert book.app.status_bar is False

"""No silent coercion: every value the reader changes is listed on the Data quality sheet,
and blank, zero, error and value stay four distinct states."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from openpyxl.worksheet.table import Table

from addin.actions import refresh
from addin.port import FileBook
from addin.sheets import NOTHING_CHANGED, data_quality_sheet
from addin.workbook import read_tables
from engine.contract import ATTR_EXCEL, ATTR_FIRST_COLUMN, ATTR_SHEET, Change, locate_problems, validate
from engine.errors import InputError, Problem

WEEKS = [dt.datetime(2023, 1, 1) + dt.timedelta(weeks=i) for i in range(34)]


def _sales(qty: list[object] | None = None) -> pd.DataFrame:
    rows = [[d, sku, float(10 + (i % 5) + k)] for k, sku in enumerate(("A", "B")) for i, d in enumerate(WEEKS)]
    df = pd.DataFrame(rows, columns=["Date", "SKU", "Qty"], dtype=object)
    if qty is not None:
        df.loc[: len(qty) - 1, "Qty"] = pd.Series(qty, dtype=object)
    return df


def _from_sheet(df: pd.DataFrame, sheet: str = "Data", first_column: int = 3) -> pd.DataFrame:
    df.attrs.update({ATTR_SHEET: sheet, ATTR_FIRST_COLUMN: first_column, ATTR_EXCEL: True})
    return df


def test_text_numbers_are_read_and_each_change_is_recorded_with_its_cell() -> None:
    df = _from_sheet(_sales([" 12 ", "13", 14.0, "TRUE"]))
    data = validate(df, row_offsets={"Sales": 5})
    got = {(c.row, c.letter, c.column): (c.original, c.used, c.action) for c in data.changes}
    assert got[(5, "E", "Qty")] == (" 12 ", 12.0, "text to number (spaces trimmed)")
    assert got[(6, "E", "Qty")] == ("13", 13.0, "text to number")
    assert got[(8, "E", "Qty")] == ("TRUE", 1.0, "TRUE/FALSE read as 1/0")
    assert (7, "E", "Qty") not in got                     # a real number is used as it is
    assert all(c.sheet == "Data" for c in data.changes)
    assert data.sales.loc[0, "Qty"] == 12.0


def test_blank_zero_error_and_value_stay_distinct() -> None:
    df = _sales([0, "#N/A", None, 5])
    with pytest.raises(InputError) as exc:
        validate(_from_sheet(df), row_offsets={"Sales": 2})
    by_row = {p.row: p for p in exc.value.problems if p.severity == "error"}
    assert "Excel error #N/A" in by_row[3].message and by_row[3].value == "#N/A"     # an error, not a blank
    assert "blank" in by_row[4].message and by_row[4].value is None                 # a blank, not a zero
    assert 2 not in by_row and 5 not in by_row                                       # zero and 5 are values
    assert str(by_row[4]).endswith("(blank cell). Fix: " + by_row[4].fix)


def test_na_text_in_a_driver_is_a_listed_blank_never_a_zero() -> None:
    drivers = pd.DataFrame({"Date": WEEKS, "Temperature": ["n/a"] + [float(i) for i in range(1, 34)]}, dtype=object)
    data = validate(_sales(), _from_sheet(drivers, "Weather", 1))
    ch = [c for c in data.changes if c.table == "Drivers"]
    assert [(c.row, c.letter, c.original, c.used, c.action) for c in ch] == [(2, "B", "n/a", None, "text read as blank")]
    assert pd.isna(data.drivers.loc[0, "Temperature"])


def test_excel_serials_become_dates_only_when_the_cells_come_from_excel() -> None:
    serial = [(d - dt.datetime(1899, 12, 30)).days for d in WEEKS] * 2
    df = _sales()
    df["Date"] = pd.Series(serial, dtype=object)
    with pytest.raises(InputError, match="Excel date serial"):
        validate(df.copy())                                  # a CSV column of numbers: not guessed
    data = validate(_from_sheet(df))
    assert data.sales["Date"].min() == pd.Timestamp(WEEKS[0])
    first = data.changes[0]
    assert (first.original, first.used, first.action) == (serial[0], "2023-01-01", "Excel date serial number to date")


def test_problems_name_the_sheet_and_the_column_letter() -> None:
    df = _from_sheet(_sales(["twelve"]), "Sales data", 2)
    with pytest.raises(InputError) as exc:
        validate(df, row_offsets={"Sales": 4})
    p = next(p for p in exc.value.problems if p.severity == "error")
    assert (p.sheet, p.row, p.letter, p.column, p.value) == ("Sales data", 4, "D", "Qty", "twelve")
    assert p.cell == "'Sales data'!D4"
    assert "table Sales (sheet 'Sales data'), row 4, column D 'Qty'" in str(p)
    settings = pd.DataFrame({"Key": ["Horizon"], "Value": ["abc"]})
    settings.attrs.update({ATTR_SHEET: "Setup", ATTR_FIRST_COLUMN: 5})
    located = locate_problems([Problem("Settings", "cannot be read", "write a number", row=2, column="Value")],
                              {"Settings": (settings, 2)})
    assert (located[0].sheet, located[0].letter) == ("Setup", "F")


def test_the_sheet_says_when_nothing_was_changed() -> None:
    sheet = data_quality_sheet([], [])
    texts = [getattr(b, "text", None) for b in sheet.blocks]
    assert NOTHING_CHANGED in texts and sheet.name == "Data quality"
    sheet = data_quality_sheet([Change("Sales", 5, "Qty", " 12 ", 12.0, "text to number (spaces trimmed)", "E", "Data")])
    table = next(b for b in sheet.blocks if getattr(b, "name", None) == "DataQuality")
    assert table.frame.iloc[0].tolist() == ["Sales", "Data", 5, "E", "Qty", " 12 ", 12.0,
                                            "text to number (spaces trimmed)"]


def _workbook(path: Path) -> Path:
    """Sales on a sheet at C3 with a text number, a hidden row and a blank row; Settings for a tiny plan."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    head = ["Date", "SKU", "Qty"]
    rows = [[d, sku, 10 + (i % 5) + k] for k, sku in enumerate(("A", "B")) for i, d in enumerate(WEEKS)]
    rows[3][2] = " 12 "
    rows.insert(10, [None, None, None])
    for j, h in enumerate(head):
        ws.cell(3, 3 + j, h)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if v is not None:
                ws.cell(4 + i, 3 + j, v)
    ws.row_dimensions[8].hidden = True
    ws.add_table(Table(displayName="Sales", ref=f"C3:E{3 + len(rows)}"))
    st = wb.create_sheet("Settings")
    for i, (k, v) in enumerate([("Key", "Value"), ("Horizon", 4), ("Windows", 1)], start=1):
        st.cell(i, 1, k)
        st.cell(i, 2, v)
    st.add_table(Table(displayName="Settings", ref="A1:B3"))
    wb.save(path)
    return path


def test_refresh_writes_the_data_quality_sheet(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "planner.xlsx")
    refresh(FileBook(book), model_params={"n_estimators": 5, "n_jobs": 1})
    ws = openpyxl.load_workbook(book)["Data quality"]
    t = ws.tables["DataQuality"]
    cells = [[c.value for c in r] for r in ws[t.ref]]
    head, rows = cells[0], [dict(zip(cells[0], r)) for r in cells[1:]]
    assert head == ["Table", "Sheet", "Row", "Column", "Header", "Original value", "Value used", "What was done"]
    trimmed = next(r for r in rows if r["What was done"] == "text to number (spaces trimmed)")
    assert (trimmed["Sheet"], trimmed["Row"], trimmed["Column"], trimmed["Header"]) == ("Data", 7, "E", "Qty")
    assert (trimmed["Original value"], trimmed["Value used"]) == (" 12 ", 12)
    actions = {(r["Row"], r["What was done"]) for r in rows}
    assert (14, "blank row skipped (every cell empty)") in actions
    assert (8, "row is hidden in Excel; used like any other") in actions
    assert read_tables(book)["Sales"][0].attrs[ATTR_SHEET] == "Data"

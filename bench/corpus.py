"""Malformed-workbook corpus: planners' messy workbooks must never crash Plancell.

A deterministic generator of small but otherwise valid planning workbooks (Sales, Drivers,
Items and Settings as Excel tables, like ``workbooks/Plancell Planner.xlsx``), each with one
hazard injected: missing or renamed tables and headers, merged cells, hidden and blank rows,
text numbers, Excel error values, dates as serials and text, mixed frequencies, duplicate
keys, absurd numbers, odd SKUs, and files that are not workbooks at all (encrypted, corrupt,
CSV, zip and entity bombs). Every case declares what must happen:

* ``plan``: ``plancell refresh`` produces a plan. With ``same_as_clean`` the data it read is
  the clean twin's, cell for cell (same data fingerprint: ' 12 ' was read as 12), and the
  ``Data quality`` sheet lists the expected changes.
* ``error``: a clear :class:`~engine.errors.InputError`: every problem names the table, and
  every problem about a cell names its sheet, Excel row, column letter and header, value and
  fix, and the cell it names is really in that table, under that header.

``python -m bench.corpus [--out DIR] [--full] [--cli N] [--only HAZARD,...]`` runs every case
through the code path of ``plancell refresh BOOK`` (:func:`addin.actions.refresh` on
:class:`addin.port.FileBook`, a tiny model) and ``N`` of them through the CLI in a
subprocess (``--full``: all of them) to prove no traceback reaches stderr, then prints and
writes ``bench/results/corpus.md``. ``tests/test_corpus.py`` runs the same cases (reading and
validation for all, the full refresh for one per hazard class).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

__all__ = ["Case", "Placed", "Outcome", "cases", "hazard_classes", "build", "run_case", "run_cli", "run_corpus",
           "problem_gaps", "main", "FAST_MODEL"]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "corpus.md"
#: A tiny model: the corpus tests the reading, not the forecast.
FAST_MODEL: dict[str, Any] = {"n_estimators": 5, "n_jobs": 1}
_CLI_TRACEBACK = "Traceback (most recent call last)"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Placed:
    """Where a table was written: its sheet, header row and first column (1-based)."""

    name: str
    sheet: str
    top: int
    left: int
    headers: tuple[str, ...]
    n_rows: int


@dataclass(frozen=True)
class Case:
    """One workbook of the corpus and what Plancell must do with it."""

    name: str
    hazard: str
    expect: str  # "plan" or "error"
    description: str
    writer: Callable[[Path], dict[str, Placed]] = field(repr=False)
    same_as_clean: bool = False
    twin: tuple[str, int, int] = ("W", 0, 1)  # (freq, seed, locations) of the clean twin
    changes: tuple[str, ...] = ()  # substrings the Data quality sheet must show (what was done, warnings)
    codes: tuple[str, ...] = ()  # for errors: one of these codes
    env: tuple[tuple[str, str], ...] = ()
    suffix: str = ".xlsx"
    expect_read: str | None = None  # outcome of reading + validation alone, when not ``expect``


def build(case: Case, folder: Path) -> tuple[Path, dict[str, Placed]]:
    """Write ``case``'s workbook into ``folder``; returns its path and where its tables are."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.name}{case.suffix}"
    placed = case.writer(path)
    return path, placed


# --------------------------------------------------------------------------- clean data


@lru_cache(maxsize=32)
def _panel(freq: str, seed: int, n_loc: int, periods: int | None = None) -> Any:
    from engine.synthetic import generate_panel

    periods = periods or {"W": 32, "D": 28, "MS": 14}[freq]  # a little over what a 1-window backtest needs
    horizon = {"W": 4, "D": 7, "MS": 3}[freq]
    return generate_panel(freq, n_skus=2, n_locations=n_loc, periods=periods, horizon=horizon, seed=seed)


def _obj(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with plain Python values (datetime, int, float, str, None)."""
    out = pd.DataFrame(index=range(len(df)))
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            vals = [None if pd.isna(v) else pd.Timestamp(v).to_pydatetime() for v in col]
        elif isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
            vals = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in col]
        elif pd.api.types.is_integer_dtype(col):
            vals = [int(v) for v in col]
        else:
            vals = [None if pd.isna(v) else float(v) for v in col]
        out[c] = pd.Series(vals, dtype=object)
    return out


def clean_tables(freq: str = "W", seed: int = 0, n_loc: int = 1, periods: int | None = None
                 ) -> dict[str, pd.DataFrame]:
    """The clean planning tables every hazard starts from (2 SKUs, history + plan rows): a fresh copy."""
    return {k: v.copy() for k, v in _clean_tables(freq, seed, n_loc, periods).items()}


@lru_cache(maxsize=64)
def _clean_tables(freq: str, seed: int, n_loc: int, periods: int | None) -> dict[str, pd.DataFrame]:
    p = _panel(freq, seed, n_loc, periods)
    hist = p.sales[["Date", "SKU", "Location", "Qty", "Price", "Promo"]]
    fut = p.future[["Date", "SKU", "Location", "Price", "Promo"]]
    sales = pd.concat([hist, fut], ignore_index=True)
    sales["SKU"] = sales["SKU"].astype(str)
    sales["Location"] = sales["Location"].astype(str)
    sales = sales.sort_values(["SKU", "Location", "Date"], kind="stable").reset_index(drop=True)
    sales["Price"] = sales["Price"].astype(float).round(2)
    items = p.items[["SKU", "Location", "Category", "LeadTimeDays", "UnitCost", "ServiceLevel", "OnHand"]].copy()
    drivers = p.drivers[["Date", "Location", "Temperature", "CPI"]].copy()
    if n_loc == 1:
        sales = sales.drop(columns="Location")
        items = items.drop(columns="Location")
        drivers = drivers.drop(columns="Location")
    horizon = {"W": 4, "D": 7, "MS": 3}[freq]
    settings = pd.DataFrame({"Key": ["Horizon", "Windows", "HolidayCountry"], "Value": [horizon, 1, "US"]})
    out = {"Sales": _obj(sales), "Drivers": _obj(drivers), "Items": _obj(items), "Settings": _obj(settings)}
    out["Settings"]["Value"] = pd.Series([horizon, 1, "US"], dtype=object)
    return out


# --------------------------------------------------------------------------- writing workbooks


class Err(str):
    """An Excel error value (``#N/A`` ...), written as an error cell, not as text."""


@dataclass
class Book:
    """A planning workbook to write: tables, their layout, and changes made after writing."""

    tables: dict[str, pd.DataFrame]
    layout: str = "sheets"  # sheets: one sheet per table at A1; offset: each shifted; shared: side by side
    names: dict[str, str] = field(default_factory=dict)  # table -> name written in the file
    plain: set[str] = field(default_factory=set)  # written as plain cells, without an Excel table
    totals: set[str] = field(default_factory=set)  # tables with a totals row
    sheets: dict[str, str] = field(default_factory=dict)  # table -> sheet name override
    hooks: list[Callable[[Any, dict[str, Placed]], None]] = field(default_factory=list)
    date_format: str = "yyyy-mm-dd"


def _put(ws: Any, row: int, col: int, v: Any, date_format: str) -> None:
    if v is None:
        return
    c = ws.cell(row, col)
    if isinstance(v, Err):
        c.value = str(v)
        c.data_type = "e"
        return
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    c.value = v
    if isinstance(v, str):
        c.data_type = "s"  # never a formula: "=SKU" stays text, as Excel stores a typed "'=SKU"
    elif isinstance(v, (dt.datetime, dt.date)):
        c.number_format = date_format


def write_book(book: Book, path: Path) -> dict[str, Placed]:
    """Write ``book`` with openpyxl; returns where each table went."""
    import openpyxl
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.table import Table, TableStyleInfo

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    wb.create_sheet("Start here").cell(1, 1, "Planner workbook")
    placed: dict[str, Placed] = {}
    col_cursor = 1
    for k, (name, df) in enumerate(book.tables.items()):
        if book.layout == "shared":
            sheet, top, left = "Data", 3, col_cursor
            col_cursor += len(df.columns) + 2
        elif book.layout == "offset":
            sheet, top, left = name, 4 + k, 2 + k
        else:
            sheet, top, left = name, 1, 1
        sheet = book.sheets.get(name, sheet)
        ws = wb[sheet] if sheet in wb.sheetnames else wb.create_sheet(sheet)
        headers = [str(h) for h in df.columns]
        for j, h in enumerate(headers):
            ws.cell(top, left + j).value = h
            ws.cell(top, left + j).data_type = "s"
        rows = df.itertuples(index=False, name=None)
        n = 0
        for i, values in enumerate(rows):
            for j, v in enumerate(values):
                _put(ws, top + 1 + i, left + j, v, book.date_format)
            n = i + 1
        bottom = top + max(n, 1)
        if name in book.totals:
            bottom += 1
            ws.cell(bottom, left).value = "Total"
        placed[name] = Placed(book.names.get(name, name), sheet, top, left, tuple(headers), n)
        if name in book.plain:
            continue
        ref = f"{get_column_letter(left)}{top}:{get_column_letter(left + len(headers) - 1)}{bottom}"
        t = Table(displayName=book.names.get(name, name), ref=ref)
        if name in book.totals:
            t.totalsRowCount = 1
        t.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        ws.add_table(t)
    for hook in book.hooks:
        hook(wb, placed)
    wb.save(path)
    return placed


def _writer(book: Book) -> Callable[[Path], dict[str, Placed]]:
    return lambda path: write_book(book, path)


def _raw(data: bytes | Callable[[], bytes]) -> Callable[[Path], dict[str, Placed]]:
    def write(path: Path) -> dict[str, Placed]:
        path.write_bytes(data() if callable(data) else data)
        return {}
    return write


# --------------------------------------------------------------------------- hazards

_REGISTRY: dict[str, Callable[[int], Case]] = {}
_VARIANTS: dict[str, int] = {}
_LAYOUTS = ("sheets", "offset", "shared")


def _hazard(name: str, n: int) -> Callable[[Callable[[int], Case]], Callable[[int], Case]]:
    def deco(fn: Callable[[int], Case]) -> Callable[[int], Case]:
        _REGISTRY[name] = fn
        _VARIANTS[name] = n
        return fn
    return deco


def _rng(name: str, k: int) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{name}-{k}".encode()))


def _base(k: int, *, freq: str = "W", n_loc: int | None = None) -> tuple[dict[str, pd.DataFrame], tuple[str, int, int]]:
    loc = (1 if k % 4 else 2) if n_loc is None else n_loc
    seed = k % 4
    return clean_tables(freq, seed, loc), (freq, seed, loc)


def _hist_rows(df: pd.DataFrame, rng: np.random.Generator, m: int = 1) -> list[int]:
    """``m`` distinct history rows (rows with a Qty), sorted."""
    idx = np.flatnonzero(df["Qty"].notna().to_numpy()) if "Qty" in df.columns else np.arange(len(df))
    idx = idx[(idx > 0) & (idx < len(df) - 1)] if len(idx) > 3 else idx
    return sorted(int(i) for i in rng.choice(idx, size=min(m, len(idx)), replace=False))


def _future_rows(df: pd.DataFrame) -> list[int]:
    return [int(i) for i in np.flatnonzero(df["Qty"].isna().to_numpy())]


def _case(name: str, k: int, expect: str, description: str, book: Book | Callable[[Path], dict[str, Placed]],
          **kw: Any) -> Case:
    writer = _writer(book) if isinstance(book, Book) else book
    return Case(f"{name}-{k:02d}", name, expect, description, writer, **kw)


def _set(df: pd.DataFrame, rows: Sequence[int], col: str, values: Any) -> None:
    vals = values if isinstance(values, (list, tuple)) else [values] * len(rows)
    for r, v in zip(rows, vals):
        df.at[r, col] = v


def _num_targets(t: dict[str, pd.DataFrame]) -> list[tuple[str, str]]:
    return [("Sales", "Qty"), ("Sales", "Price"), ("Drivers", "Temperature"), ("Items", "LeadTimeDays"),
            ("Items", "UnitCost"), ("Drivers", "CPI")]


def _target_rows(t: dict[str, pd.DataFrame], table: str, rng: np.random.Generator, m: int) -> list[int]:
    df = t[table]
    if table == "Sales":
        return _hist_rows(df, rng, m)
    return sorted(int(i) for i in rng.choice(len(df), size=min(m, len(df)), replace=False))


@_hazard("clean", 9)
def _clean(k: int) -> Case:
    freq = ("W", "D", "MS")[k % 3]
    t, twin = _base(k, freq=freq)
    return _case("clean", k, "plan", f"clean {freq} workbook, layout {_LAYOUTS[k // 3 % 3]}",
                 Book(t, layout=_LAYOUTS[k // 3 % 3]), same_as_clean=True, twin=twin)


@_hazard("missing_table", 9)
def _missing_table(k: int) -> Case:
    t, twin = _base(k)
    if k in (4, 8):  # without Settings the defaults apply: 3 backtest windows of 12 weeks need more history
        t = clean_tables("W", twin[1], twin[2], periods=70)
    what = ("no Sales", "Sales as plain cells", "no Items", "no Drivers", "no Settings", "no Items and no Drivers",
            "every table as plain cells", "Sales as plain cells, others tables", "only Sales")[k]
    book = Book(t, layout=_LAYOUTS[k % 3])
    expect = "plan"
    if k == 0:
        del t["Sales"]
        expect = "error"
    elif k in (1, 7):
        book.plain = {"Sales"}
        expect = "error"
    elif k == 2:
        del t["Items"]
    elif k == 3:
        del t["Drivers"]
    elif k == 4:
        del t["Settings"]
    elif k == 5:
        del t["Items"], t["Drivers"]
    elif k == 6:
        book.plain = set(t)
        expect = "error"
    else:
        for n in ("Items", "Drivers", "Settings"):
            del t[n]
    return _case("missing_table", k, expect, what, book, codes=("E101",) if expect == "error" else (), twin=twin)


@_hazard("renamed_table", 9)
def _renamed_table(k: int) -> Case:
    t, twin = _base(k)
    renames = [("Sales", "sales", True), ("Sales", "SALES", True), ("Items", "items", True),
               ("Drivers", "DRIVERS", True), ("Settings", "settings", True), ("Sales", "SalesData", False),
               ("Sales", "Table1", False), ("Sales", "Sales_2024", False), ("Items", "ItemMaster", None)]
    table, new, ok = renames[k]
    expect = "plan" if ok is not False else "error"
    return _case("renamed_table", k, expect, f"table {table} named {new!r}",
                 Book(t, layout=_LAYOUTS[k % 3], names={table: new}), same_as_clean=bool(ok), twin=twin,
                 codes=("E101",) if expect == "error" else ())


@_hazard("missing_header", 8)
def _missing_header(k: int) -> Case:
    t, twin = _base(k)
    table, col = [("Sales", "Qty"), ("Sales", "Date"), ("Sales", "SKU"), ("Items", "SKU"), ("Drivers", "Date"),
                  ("Sales", "Qty"), ("Sales", "SKU"), ("Items", "SKU")][k]
    t[table] = t[table].drop(columns=col)
    return _case("missing_header", k, "error", f"{table} without its {col} column",
                 Book(t, layout=_LAYOUTS[k % 3]), codes=("E101",), twin=twin)


@_hazard("renamed_header", 10)
def _renamed_header(k: int) -> Case:
    t, twin = _base(k)
    spec = [("Sales", "Qty", "Units", False), ("Sales", "Qty", "Quantity", False), ("Sales", "Qty", "qty", True),
            ("Sales", "Qty", " QTY ", True), ("Sales", "Date", "date", True), ("Items", "SKU", "sku", True),
            ("Sales", "Qty", "Units sold", "map"), ("Sales", "SKU", "Item", False),
            ("Sales", "Qty", "Units", "badmap"), ("Drivers", "Date", "Week", False)][k]
    table, old, new, ok = spec
    t[table] = t[table].rename(columns={old: new})
    if ok == "map":
        t["Settings"] = pd.concat([t["Settings"], pd.DataFrame({"Key": ["column.Qty"], "Value": [new]})],
                                  ignore_index=True)
    if ok == "badmap":
        t["Settings"] = pd.concat([t["Settings"], pd.DataFrame({"Key": ["column.Qty"], "Value": ["Sold units"]})],
                                  ignore_index=True)
    expect = "plan" if ok in (True, "map") else "error"
    return _case("renamed_header", k, expect, f"{table}.{old} headed {new!r}" + (" (mapped in Settings)" if ok == "map"
                                                                               else ""),
                 Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=expect == "plan", twin=twin,
                 codes=("E101",) if expect == "error" else ())


@_hazard("duplicate_header", 8)
def _duplicate_header(k: int) -> Case:
    t, twin = _base(k)
    table, col, dup = [("Sales", "Qty", "Qty"), ("Sales", "Qty", "qty"), ("Items", "LeadTimeDays", "LeadTimeDays"),
                       ("Drivers", "Temperature", "Temperature"), ("Sales", "SKU", "SKU"), ("Sales", "Date", "DATE"),
                       ("Items", "SKU", "Sku"), ("Sales", "Price", "Price")][k]
    df = t[table]
    cols = list(df.columns)
    df = df.copy()
    df.insert(len(cols), "__dup__", df[col])
    df.columns = cols + [dup]
    t[table] = df
    return _case("duplicate_header", k, "error", f"{table} has two columns headed {col!r} / {dup!r}",
                 Book(t, layout=_LAYOUTS[k % 3]), codes=("E101",), twin=twin)


def _merge(table: str, col: str, rows: tuple[int, int], cols: int = 1) -> Callable[[Any, dict[str, Placed]], None]:
    def hook(wb: Any, placed: dict[str, Placed]) -> None:
        p = placed[table]
        j = p.left + p.headers.index(col)
        r0 = p.top + 1 + rows[0]
        wb[p.sheet].merge_cells(start_row=r0, start_column=j, end_row=p.top + 1 + rows[1], end_column=j + cols - 1)
    return hook


@_hazard("merged_cells", 8)
def _merged_cells(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("merged_cells", k)
    book = Book(t, layout=_LAYOUTS[k % 3])
    if k < 5:
        table, col = [("Sales", "SKU"), ("Sales", "Qty"), ("Items", "Category"), ("Drivers", "Temperature"),
                      ("Sales", "Date")][k]
        r = _target_rows(t, table, rng, 1)[0]
        r = min(r, len(t[table]) - 3)
        book.hooks.append(_merge(table, col, (r, r + 2)))
        return _case("merged_cells", k, "error", f"cells of {table}.{col} merged over 3 rows", book,
                     codes=("E102", "E100"), twin=twin)

    def title(wb: Any, placed: dict[str, Placed]) -> None:
        ws = wb.create_sheet("Dashboard") if k == 5 else wb["Start here"]
        ws.cell(1, 1).value = "S&OP dashboard"
        ws.merge_cells("A1:F2")
    book.hooks.append(title)
    if k == 7:
        book.layout = "offset"

        def above(wb: Any, placed: dict[str, Placed]) -> None:
            p = placed["Sales"]
            wb[p.sheet].cell(1, p.left).value = "Sales history"
            wb[p.sheet].merge_cells(start_row=1, start_column=p.left, end_row=2, end_column=p.left + 3)
        book.hooks.append(above)
    return _case("merged_cells", k, "plan", "merged cells outside the tables (titles)", book, same_as_clean=True,
                 twin=twin)


@_hazard("hidden_rows", 8)
def _hidden_rows(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("hidden_rows", k)
    table = ("Sales", "Items", "Drivers", "Sales", "Sales", "Drivers", "Sales", "Items")[k]
    book = Book(t, layout=_LAYOUTS[k % 3])
    rows = _target_rows(t, table, rng, 1 + k % 4)

    def hide(wb: Any, placed: dict[str, Placed]) -> None:
        p = placed[table]
        ws = wb[p.sheet]
        if k == 6:
            from openpyxl.utils import get_column_letter
            ws.column_dimensions[get_column_letter(p.left + 1)].hidden = True
        elif k == 7:
            ws.sheet_state = "hidden"
        else:
            for r in rows:
                ws.row_dimensions[p.top + 1 + r].hidden = True
    book.hooks.append(hide)
    what = {6: "a hidden column", 7: "the sheet hidden"}.get(k, f"{len(rows)} hidden rows")
    changes = ("hidden in Excel",) if k < 6 else ()
    return _case("hidden_rows", k, "plan", f"{table} with {what}", book, same_as_clean=True, twin=twin,
                 changes=changes)


def _insert_blank(df: pd.DataFrame, at: Sequence[int], blank: Any = None) -> pd.DataFrame:
    parts = []
    prev = 0
    for a in sorted(at):
        parts.append(df.iloc[prev:a])
        parts.append(pd.DataFrame([[blank] * len(df.columns)], columns=df.columns, dtype=object))
        prev = a
    parts.append(df.iloc[prev:])
    return pd.concat(parts, ignore_index=True).astype(object)


@_hazard("blank_rows", 8)
def _blank_rows(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("blank_rows", k)
    table = ("Sales", "Sales", "Items", "Drivers", "Sales", "Drivers", "Sales", "Items")[k]
    n = len(t[table])
    at = sorted({int(i) for i in rng.choice(np.arange(1, max(n, 2)), size=1 + k % 3, replace=True)})
    t[table] = _insert_blank(t[table], at, "  " if k in (4, 5) else None)
    return _case("blank_rows", k, "plan", f"{len(at)} blank rows inside {table}" + (" (spaces only)" if k in (4, 5)
                                                                                     else ""),
                 Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=True, twin=twin, changes=("blank row",))


def _numbers_as_text(name: str, k: int, fmt: Callable[[Any], str], action: str) -> Case:
    t, twin = _base(k)
    rng = _rng(name, k)
    table, col = _num_targets(t)[k % 6]
    rows = _target_rows(t, table, rng, 1 + k % 3)
    _set(t[table], rows, col, [fmt(t[table].at[r, col]) for r in rows])
    return _case(name, k, "plan", f"{table}.{col}: {len(rows)} numbers stored as text like "
                 f"{t[table].at[rows[0], col]!r}", Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=True, twin=twin,
                 changes=(action,))


def _num_text(v: Any) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@_hazard("text_numbers_spaces", 9)
def _text_spaces(k: int) -> Case:
    pads = (" {} ", "{} ", "  {}", "\t{}", "\u00a0{}\u00a0", " {}  ")
    return _numbers_as_text("text_numbers_spaces", k, lambda v: pads[k % len(pads)].format(_num_text(v)),
                            "spaces trimmed")


@_hazard("text_numbers_plain", 8)
def _text_plain(k: int) -> Case:
    return _numbers_as_text("text_numbers_plain", k, _num_text, "text to number")


@_hazard("decimal_comma", 9)
def _decimal_comma(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("decimal_comma", k)
    table, col = _num_targets(t)[k % 6]
    rows = _target_rows(t, table, rng, 1 + k % 2)
    styles = ("{a},{b}", "1.234,5", "{a},0", "1,234", "{a},{b}", "1.234.567,89", "{a},{b}", "0,5", "12,5")
    _set(t[table], rows, col, [styles[k].format(a=int(abs(float(t[table].at[r, col]))), b=5) for r in rows])
    return _case("decimal_comma", k, "error", f"{table}.{col} written with a decimal comma ({t[table].at[rows[0], col]})",
                 Book(t, layout=_LAYOUTS[k % 3]), codes=("E102",), twin=twin)


_ERRORS = ("#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NUM!", "#NAME?", "#NULL!", "#N/A", "#DIV/0!")


@_hazard("excel_errors_numbers", 9)
def _excel_errors_numbers(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("excel_errors_numbers", k)
    table, col = _num_targets(t)[k % 6]
    rows = _target_rows(t, table, rng, 1 + k % 3)
    err = _ERRORS[k]
    _set(t[table], rows, col, Err(err) if k != 8 else err)  # k 8: the error typed as text
    return _case("excel_errors_numbers", k, "error", f"{table}.{col} holds {err} in {len(rows)} cells",
                 Book(t, layout=_LAYOUTS[k % 3]), codes=("E102",), twin=twin)


@_hazard("excel_errors_keys", 8)
def _excel_errors_keys(k: int) -> Case:
    t, twin = _base(k, n_loc=2 if k % 2 else 1)
    rng = _rng("excel_errors_keys", k)
    table, col = [("Sales", "SKU"), ("Sales", "Location"), ("Items", "SKU"), ("Items", "Location"),
                  ("Sales", "SKU"), ("Drivers", "Location"), ("Items", "Category"), ("Sales", "Location")][k]
    if col not in t[table].columns:
        t, twin = _base(k, n_loc=2)
    rows = _target_rows(t, table, rng, 1 + k % 2)
    _set(t[table], rows, col, Err(_ERRORS[k]))
    return _case("excel_errors_keys", k, "error", f"{table}.{col} holds {_ERRORS[k]}", Book(t, layout=_LAYOUTS[k % 3]),
                 twin=twin)


def _serial(v: dt.datetime) -> int:
    return (v - dt.datetime(1899, 12, 30)).days


@_hazard("serial_dates", 9)
def _serial_dates(k: int) -> Case:
    freq = ("W", "W", "D", "MS", "W", "W", "D", "W", "MS")[k]
    t, twin = _base(k, freq=freq)
    table = ("Sales", "Drivers", "Sales", "Sales", "Sales", "Sales", "Drivers", "Sales", "Drivers")[k]
    df = t[table]
    rng = _rng("serial_dates", k)
    rows = list(range(len(df))) if k not in (4, 5) else _target_rows(t, table, rng, 5)
    as_text = k == 5
    _set(df, rows, "Date", [str(_serial(df.at[r, "Date"])) if as_text else _serial(df.at[r, "Date"]) for r in rows])
    return _case("serial_dates", k, "plan", f"{table}.Date as Excel serial numbers ({len(rows)} cells"
                 + (", as text" if as_text else "") + ")", Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=True,
                 twin=twin, changes=("serial",))


_TEXT_DATES = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%b-%Y", "%b %d, %Y", "%Y-%m-%dT00:00:00",
               "%d %B %Y")


@_hazard("text_dates", 9)
def _text_dates(k: int) -> Case:
    t, twin = _base(k)
    table = ("Sales", "Drivers")[k % 2]
    df = t[table]
    fmt = _TEXT_DATES[k]
    _set(df, list(range(len(df))), "Date", [df.at[r, "Date"].strftime(fmt) for r in range(len(df))])
    return _case("text_dates", k, "plan", f"{table}.Date as text {fmt}", Book(t, layout=_LAYOUTS[k % 3]),
                 same_as_clean=True, twin=twin, changes=("text to date",))


@_hazard("bad_dates", 8)
def _bad_dates(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("bad_dates", k)
    table = ("Sales", "Sales", "Drivers", "Sales", "Sales", "Drivers", "Sales", "Sales")[k]
    bad = ("yesterday", "2024-13-45", "31/02/2024", "TBD", None, "Q3 2023", "45", True)[k]
    rows = _target_rows(t, table, rng, 1)
    _set(t[table], rows, "Date", bad)
    return _case("bad_dates", k, "error", f"{table}.Date holds {bad!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 codes=("E105",), twin=twin)


@_hazard("dates_with_time", 8)
def _dates_with_time(k: int) -> Case:
    t, twin = _base(k, freq="D" if k % 4 == 3 else "W")
    table = ("Sales", "Drivers")[k % 2]
    df = t[table]
    hours = (10, 23, 0, 6, 12, 18, 1, 9)[k]
    rows = list(range(len(df))) if k < 4 else list(range(0, len(df), 3))
    _set(df, rows, "Date", [df.at[r, "Date"] + dt.timedelta(hours=hours, minutes=30) for r in rows])
    return _case("dates_with_time", k, "plan", f"{table}.Date with a time of day ({hours}:30)",
                 Book(t, layout=_LAYOUTS[k % 3], date_format="yyyy-mm-dd hh:mm"), same_as_clean=True, twin=twin,
                 changes=("time of day dropped",))


@_hazard("mixed_frequencies", 8)
def _mixed_frequencies(k: int) -> Case:
    if k in (2, 5):  # monthly dated on month ends: read as their month
        t, twin = _base(k, freq="MS")
        for name in ("Sales", "Drivers"):
            df = t[name]
            _set(df, list(range(len(df))), "Date",
                 [(pd.Timestamp(v) + pd.offsets.MonthEnd(0)).to_pydatetime() for v in df["Date"]])
        return _case("mixed_frequencies", k, "plan", "monthly data dated on month ends",
                     Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=True, twin=twin, changes=("month-end",))
    t, twin = _base(k)
    df = t["Sales"]
    rng = _rng("mixed_frequencies", k)
    if k in (0, 3, 6):  # one SKU has daily rows amid weekly ones
        r = _hist_rows(df, rng, 1)[0]
        extra = df.iloc[[r] * 3].copy()
        extra["Date"] = [df.at[r, "Date"] + dt.timedelta(days=d) for d in (1, 2, 3)]
        t["Sales"] = pd.concat([df, extra], ignore_index=True).astype(object)
        what = "daily rows inside weekly Sales"
    elif k in (1, 4):  # one row on another weekday
        r = _hist_rows(df, rng, 1)[0]
        df.at[r, "Date"] = df.at[r, "Date"] + dt.timedelta(days=2)
        what = "a weekly date on another weekday"
    else:  # a monthly SKU among weekly ones: read as a weekly series with missing weeks, and said so
        sku = df["SKU"].iloc[0]
        keep = [i for i in range(len(df)) if df.at[i, "SKU"] != sku or df.at[i, "Date"].day <= 7]
        t["Sales"] = df.iloc[keep].reset_index(drop=True)
        return _case("mixed_frequencies", k, "plan", "one SKU monthly, the others weekly (missing weeks filled with 0, "
                     "with a warning)", Book(t, layout=_LAYOUTS[k % 3]), twin=twin, changes=("missing periods",))
    return _case("mixed_frequencies", k, "error", what, Book(t, layout=_LAYOUTS[k % 3]), twin=twin,
                 codes=("E105", "E103", "E104", "E108"))


@_hazard("duplicate_keys", 8)
def _duplicate_keys(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("duplicate_keys", k)
    table = ("Sales", "Items", "Drivers", "Sales", "Items", "Drivers", "Sales", "Sales")[k]
    df = t[table]
    r = _target_rows(t, table, rng, 1)[0]
    row = df.iloc[[r]].copy()
    if k == 7 and "Qty" in row:  # same key, another quantity
        row["Qty"] = [(row["Qty"].iloc[0] or 0) + 1]
    t[table] = pd.concat([df, row], ignore_index=True).astype(object) if k % 2 else \
        pd.concat([df.iloc[:r + 1], row, df.iloc[r + 1:]], ignore_index=True).astype(object)
    return _case("duplicate_keys", k, "error", f"a duplicated {table} row", Book(t, layout=_LAYOUTS[k % 3]),
                 codes=("E103",), twin=twin)


@_hazard("negative_qty", 9)
def _negative_qty(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("negative_qty", k)
    if k == 8:  # nothing but returns: no demand to plan
        s = t["Sales"]
        _set(s, list(range(len(s))), "Qty", [None if v is None else -abs(v) - 1 for v in s["Qty"]])
        # a plan: the forecast is negative and the policy orders nothing ("counted as no demand")
        return _case("negative_qty", k, "plan", "every quantity negative (only returns)",
                     Book(t, layout=_LAYOUTS[k % 3]), twin=twin)
    rows = _hist_rows(t["Sales"], rng, 1 + k % 4)
    _set(t["Sales"], rows, "Qty", [-int(abs(t["Sales"].at[r, "Qty"]) or 1) for r in rows])
    return _case("negative_qty", k, "plan", f"{len(rows)} negative quantities (returns)",
                 Book(t, layout=_LAYOUTS[k % 3]), twin=twin)


@_hazard("huge_numbers", 10)
def _huge_numbers(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("huge_numbers", k)
    spec = [("Sales", "Qty", 1e9, "plan"), ("Sales", "Qty", 5e13, "plan"), ("Sales", "Qty", 1e16, "error"),
            ("Sales", "Qty", 1e300, "error"), ("Sales", "Qty", "1e309", "error"), ("Sales", "Price", 1e20, "error"),
            ("Drivers", "Temperature", 1e200, "error"), ("Items", "UnitCost", 1e18, "error"),
            ("Drivers", "CPI", "-1e400", "error"), ("Sales", "Qty", 123456789, "plan")][k]
    table, col, value, expect = spec
    rows = _target_rows(t, table, rng, 1)
    _set(t[table], rows, col, value)
    return _case("huge_numbers", k, expect, f"{table}.{col} = {value!r}", Book(t, layout=_LAYOUTS[k % 3]), twin=twin,
                 codes=("E102",) if expect == "error" else ())


@_hazard("nan_inf_drivers", 9)
def _nan_inf_drivers(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("nan_inf_drivers", k)
    col = ("Temperature", "CPI")[k % 2]
    value, expect, change = [("NaN", "plan", "read as blank"), ("nan", "plan", "read as blank"),
                             ("inf", "error", None), ("-inf", "error", None), ("Infinity", "error", None),
                             (Err("#NUM!"), "error", None), ("NULL", "plan", "read as blank"),
                             ("#DIV/0!", "error", None), ("N/A", "plan", "read as blank")][k]
    rows = _target_rows(t, "Drivers", rng, 1 + k % 2)
    _set(t["Drivers"], rows, col, value)
    return _case("nan_inf_drivers", k, expect, f"Drivers.{col} = {value!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 twin=twin, changes=(change,) if change else (), codes=("E102",) if expect == "error" else ())


@_hazard("future_without_drivers", 8)
def _future_without_drivers(k: int) -> Case:
    t, twin = _base(k)
    last = max(v for v, q in zip(t["Sales"]["Date"], t["Sales"]["Qty"]) if q is not None)
    d = t["Drivers"]
    fut = [i for i in range(len(d)) if d.at[i, "Date"] > last]
    if k in (0, 4):
        t["Drivers"] = d.drop(index=fut).reset_index(drop=True)
        what = "no future Drivers rows"
    elif k in (1, 5):
        _set(d, fut, "Temperature", None)
        what = "future Temperature blank"
    elif k in (2, 6):
        s = t["Sales"]
        t["Sales"] = s[s["Qty"].notna()].reset_index(drop=True)
        what = "no future Sales (plan) rows"
    else:
        s = t["Sales"]
        _set(s, _future_rows(s), "Price", None)
        _set(d, fut, "CPI", None)
        what = "future Price and CPI blank"
    return _case("future_without_drivers", k, "plan", what, Book(t, layout=_LAYOUTS[k % 3]), twin=twin)


@_hazard("sku_missing_from_items", 8)
def _sku_missing(k: int) -> Case:
    t, twin = _base(k)
    s, it = t["Sales"], t["Items"]
    sku = s["SKU"].iloc[0]
    if k in (0, 3, 6):
        t["Items"] = it[it["SKU"] != sku].reset_index(drop=True)
        what = f"{sku} not in Items"
    elif k in (1, 4):
        _set(s, [i for i in range(len(s)) if s.at[i, "SKU"] == sku], "SKU", sku.lower())
        what = "Sales SKU in another case than Items"
    elif k == 7 and "Location" in it.columns:
        t["Items"] = it.iloc[1:].reset_index(drop=True)
        what = "one SKU-location not in Items"
    else:
        extra = s.iloc[:5].copy()
        extra["SKU"] = "SKU-NEW"
        t["Sales"] = pd.concat([s, extra], ignore_index=True).astype(object)
        what = "a Sales SKU missing from Items"
    return _case("sku_missing_from_items", k, "error", what, Book(t, layout=_LAYOUTS[k % 3]), codes=("E106",), twin=twin)


def _rename_skus(t: dict[str, pd.DataFrame], new: Callable[[str, int], str]) -> None:
    skus = sorted({str(v) for v in t["Sales"]["SKU"]})
    mapping = {s: new(s, i) for i, s in enumerate(skus)}
    for name in ("Sales", "Items"):
        t[name]["SKU"] = pd.Series([mapping.get(v, v) for v in t[name]["SKU"]], dtype=object)


@_hazard("unicode_skus", 8)
def _unicode_skus(k: int) -> Case:
    t, twin = _base(k)
    names = ("Ärger-Öl-{i}", "商品-{i}", "😀-pack-{i}", "שלום-{i}", "naïve café {i}", "Ω≈ç√-{i}", "e\u0301-{i}",
             "ＳＫＵ－{i}")
    _rename_skus(t, lambda s, i: names[k].format(i=i))
    return _case("unicode_skus", k, "plan", f"SKUs like {names[k].format(i=0)!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 twin=twin)


@_hazard("long_skus", 8)
def _long_skus(k: int) -> Case:
    t, twin = _base(k)
    n = (100, 255, 256, 1000, 5000, 300, 32000, 2000)[k]
    _rename_skus(t, lambda s, i: (f"{i}-" + "LONG-NAME-" * (n // 10 + 1))[:n])
    return _case("long_skus", k, "plan", f"SKU names of {n} characters", Book(t, layout=_LAYOUTS[k % 3]), twin=twin)


@_hazard("formula_like_strings", 9)
def _formula_like(k: int) -> Case:
    t, twin = _base(k)
    pre = ("=", "+", "-", "@", "=HYPERLINK(\"http://x\",\"", "=cmd|' /C calc'!A", "+1-", "-2+", "\t=")[k]
    _rename_skus(t, lambda s, i: f"{pre}{s}")
    if "Category" in t["Items"].columns:
        t["Items"]["Category"] = pd.Series([f"={c}" for c in t["Items"]["Category"]], dtype=object)
    return _case("formula_like_strings", k, "plan", f"SKUs starting with {pre!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 twin=twin)


def _empty_workbook(path: Path, k: int) -> dict[str, Placed]:
    import openpyxl

    wb = openpyxl.Workbook()
    if k == 1:
        wb.create_sheet("Sales")
        wb.create_sheet("Items")
    wb.save(path)
    return {}


@_hazard("empty_workbook", 8)
def _empty(k: int) -> Case:
    if k < 2:
        return _case("empty_workbook", k, "error", "a workbook without tables" + (" (empty sheets)" if k else ""),
                     lambda p, k=k: _empty_workbook(p, k), codes=("E101",))
    t, twin = _base(k)
    if k in (2, 5):
        t["Sales"] = t["Sales"].iloc[:0]
        what, codes = "Sales with headers only", ("E109",)
    elif k == 3:
        t = {n: df.iloc[:0] for n, df in t.items()}
        what, codes = "every table with headers only", ("E109",)
    elif k in (4, 7):
        t["Sales"] = pd.DataFrame([[None] * len(t["Sales"].columns)] * 5, columns=t["Sales"].columns, dtype=object)
        what, codes = "Sales with blank rows only", ("E109",)
    else:
        t["Sales"] = t["Sales"].iloc[:1]
        what, codes = "Sales with one row", ("E108", "E109")
    return _case("empty_workbook", k, "error", what, Book(t, layout=_LAYOUTS[k % 3]), codes=codes, twin=twin)


def _cfb(streams: Sequence[str], seed: int, size: int) -> bytes:
    """A compound (OLE) file with the named streams, as Excel writes an encrypted workbook
    (streams EncryptionInfo / EncryptedPackage) or an old .xls (stream Workbook).

    Header, one FAT sector, one directory sector and random stream data: enough structure
    for anything that sniffs the format; the payload is noise (nothing decrypts it)."""
    rng = np.random.default_rng(seed)
    sector = 512
    n_data = max(1, size // sector)
    header = bytearray(sector)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)
    struct.pack_into("<I", header, 44, 1)  # FAT sectors
    struct.pack_into("<I", header, 48, 1)  # first directory sector
    struct.pack_into("<I", header, 56, 4096)  # mini stream cutoff
    struct.pack_into("<II", header, 60, 0xFFFFFFFE, 0)
    struct.pack_into("<II", header, 68, 0xFFFFFFFE, 0)
    struct.pack_into("<I", header, 76, 0)  # DIFAT[0]: FAT in sector 0
    for i in range(1, 109):
        struct.pack_into("<I", header, 76 + 4 * i, 0xFFFFFFFF)
    fat = [0xFFFFFFFD, 0xFFFFFFFE] + [2 + i + 1 for i in range(n_data - 1)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))
    fat_bytes = struct.pack("<128I", *fat[:128])
    entries = bytearray()
    for j, name in enumerate(["Root Entry", *streams]):
        e = bytearray(128)
        raw = name.encode("utf-16-le") + b"\x00\x00"
        e[0:len(raw)] = raw
        struct.pack_into("<H", e, 64, len(raw))
        e[66] = 5 if j == 0 else 2
        struct.pack_into("<III", e, 68, 0xFFFFFFFF, 0xFFFFFFFF, 1 if j == 0 and streams else 0xFFFFFFFF)
        struct.pack_into("<I", e, 116, 2 if j == len(streams) else 0xFFFFFFFE)
        struct.pack_into("<I", e, 120, n_data * sector if j == len(streams) else 0)
        entries += e
    entries += bytes(sector - len(entries) % sector) if len(entries) % sector else b""
    data = rng.integers(0, 256, n_data * sector, dtype=np.uint8).tobytes()
    return bytes(header) + fat_bytes + bytes(entries[:sector]) + data


@_hazard("encrypted", 8)
def _encrypted(k: int) -> Case:
    size = (4096, 20_000, 65_536, 8192, 100_000, 2048, 30_000, 12_000)[k]
    return _case("encrypted", k, "error", f"a password-protected workbook ({size} bytes)",
                 _raw(lambda: _cfb(["\x06DataSpaces", "EncryptionInfo", "EncryptedPackage"], k, size)),
                 suffix=(".xlsx", ".xlsm")[k % 2], codes=("E100",))


def _valid_bytes(k: int) -> bytes:
    t, _ = _base(k)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "b.xlsx"
        write_book(Book(t), p)
        return p.read_bytes()


def _rezip(data: bytes, edit: Callable[[str, bytes], bytes | None]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = edit(info.filename, zin.read(info))
            if body is not None:
                zout.writestr(info.filename, body)
    return out.getvalue()


@_hazard("corrupt", 9)
def _corrupt(k: int) -> Case:
    def make() -> bytes:
        good = _valid_bytes(k)
        rng = np.random.default_rng(k)
        if k < 3:
            return good[: int(len(good) * (0.3, 0.6, 0.95)[k])]
        if k == 3:
            return b"PK\x03\x04" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
        if k == 4:
            return _rezip(good, lambda n, b: None if n == "[Content_Types].xml" else b)
        if k == 5:
            return _rezip(good, lambda n, b: b[: len(b) // 2] if n.startswith("xl/worksheets/sheet2") else b)
        if k == 6:
            return _rezip(good, lambda n, b: None if n == "xl/workbook.xml" else b)
        if k == 7:
            buf = bytearray(good)
            at = len(buf) // 3
            buf[at:at + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
            return bytes(buf)
        return _rezip(good, lambda n, b: b.replace(b'ref="', b'ref="ZZZ') if "/tables/" in n else b)
    what = ("truncated at 30%", "truncated at 60%", "truncated at 95%", "zip header and noise",
            "no [Content_Types].xml", "half a sheet's XML", "no workbook part", "200 bytes overwritten",
            "a table with a broken range")[k]
    return _case("corrupt", k, "error", f"damaged file: {what}", _raw(make), codes=("E100",))


def _csv_bytes(k: int, sep: str = ",", enc: str = "utf-8") -> bytes:
    t, _ = _base(k)
    return t["Sales"].to_csv(index=False, sep=sep).encode(enc)


@_hazard("wrong_format", 9)
def _wrong_format(k: int) -> Case:
    def make() -> bytes:
        if k == 0:
            return _cfb(["Workbook", "\x05SummaryInformation"], k, 8192)
        if k == 1:
            return _csv_bytes(k)
        if k == 2:
            return _csv_bytes(k, ";")
        if k == 3:
            return _csv_bytes(k, "\t", "utf-16")
        if k == 4:
            return b"<html><body><table><tr><td>Date</td><td>SKU</td></tr></table></body></html>"
        if k == 5:
            return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
        if k == 6:
            return b""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            if k == 7:
                z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
                z.writestr("content.xml", "<office:document-content/>")
            else:
                z.writestr("[Content_Types].xml", "<Types/>")
                z.writestr("word/document.xml", "<w:document/>")
        return out.getvalue()
    what = (".xls (Excel 97-2003) named .xlsx", "CSV named .xlsx", "semicolon CSV named .xlsx", "UTF-16 text named .xlsx",
            "HTML named .xlsx", "PDF named .xlsx", "an empty file (0 bytes)", "OpenDocument .ods named .xlsx",
            "Word .docx named .xlsx")[k]
    return _case("wrong_format", k, "error", what, _raw(make), codes=("E100",))


def _zip_bomb(k: int) -> bytes:
    """A workbook whose sheet unpacks to gigabytes: built from one repeated full-flush deflate block."""
    good = _valid_bytes(k)
    block = 1 << 20
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = comp.compress(b"\x00" * block) + comp.flush(zlib.Z_FULL_FLUSH)
    n = 2048 if k % 2 else 512  # 2 GB or 512 MB of zeros
    body = chunk * n + comp.flush(zlib.Z_FINISH)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zin:
        members = [(i, zin.read(i)) for i in zin.infolist()]
    # Write by hand: zipfile would compress the body itself; here the compressed bytes are given.
    offsets = []
    for info, data in members:
        offsets.append(out.tell())
        name = info.filename.encode()
        if info.filename.startswith("xl/worksheets/sheet2"):
            payload, size, crc = body, n * block, 0
        else:
            payload = zlib.compress(data, 6)[2:-4]
            size, crc = len(data), zlib.crc32(data)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(payload), size, len(name), 0))
        out.write(name)
        out.write(payload)
        offsets[-1] = (offsets[-1], name, crc, len(payload), size)
    cd_start = out.tell()
    for off, name, crc, csize, size in offsets:
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, csize, size, len(name), 0, 0, 0,
                              0, 0, off))
        out.write(name)
    cd_end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(offsets), len(offsets), cd_end - cd_start, cd_start, 0))
    return out.getvalue()


_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
           + "]>\n")


def _entity_bomb(k: int) -> bytes:
    good = _valid_bytes(k)
    target = ("xl/worksheets/sheet2.xml", "xl/styles.xml", "[Content_Types].xml", "xl/workbook.xml",
              "xl/tables/table1.xml")[k % 5]

    def edit(name: str, body: bytes) -> bytes:
        if name != target:
            return body
        text = body.decode("utf-8")
        text = text.split("?>", 1)[1] if text.startswith("<?xml") else text
        out = _LAUGHS + text.replace("<v>", "<v>&lol9;", 1) if "<v>" in text else _LAUGHS + text
        return out.encode("utf-16") if k >= 4 else out.encode()
    return _rezip(good, edit)


@_hazard("size_limits", 10)
def _size_limits(k: int) -> Case:
    if k < 2:
        return _case("size_limits", k, "error", "a zip bomb (" + ("2 GB" if k % 2 else "512 MB") + " of zeros in a sheet)",
                     _raw(lambda: _zip_bomb(k)), codes=("E111",))
    if k < 7:
        return _case("size_limits", k, "error", "an XML entity bomb (billion laughs)"
                     + (" in UTF-16" if k >= 4 else ""), _raw(lambda: _entity_bomb(k)), codes=("E111",))
    t, twin = _base(k)
    env = {7: (("PLANCELL_MAX_FILE_MB", "0.01"),), 8: (("PLANCELL_MAX_CELLS", "500"),),
           9: (("PLANCELL_MAX_EXPANDED_MB", "0.01"),)}[k]
    what = {7: "a file over the size limit (10 KB)", 8: "more cells than the limit (500)",
            9: "more unpacked XML than the limit (10 KB)"}[k]
    return _case("size_limits", k, "error", what, Book(t), env=env, codes=("E111",), twin=twin)


@_hazard("settings_errors", 9)
def _settings_errors(k: int) -> Case:
    t, twin = _base(k)
    st = t["Settings"]
    key, value = [("Horizon", "abc"), ("Frequency", "fortnightly"), ("Quantiles", "0.1, 2"), ("Windows", 0),
                  ("Horizon", -3), ("ServiceTarget", "always"), ("Budget", "-5"), ("ServiceLevel.A", "150%"),
                  ("Quantiles", "0.05, 0.5, 0.95")][k]
    # Quantiles without 0.1 / 0.9: P10/P50/P90 are always planned, P5/P95 shown after them.
    if k == 8:
        return _case("settings_errors", k, "plan", f"Settings {key} = {value!r}", Book(t, layout=_LAYOUTS[k % 3]),
                     twin=twin)
    read = None
    if key in list(st["Key"]):
        st.loc[st["Key"] == key, "Value"] = value
    else:
        t["Settings"] = pd.concat([st, pd.DataFrame({"Key": [key], "Value": [value]}, dtype=object)], ignore_index=True)
    return _case("settings_errors", k, "error", f"Settings {key} = {value!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 codes=("E110",), twin=twin, expect_read=read)


@_hazard("items_bad_values", 8)
def _items_bad(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("items_bad_values", k)
    col, value = [("ServiceLevel", 95), ("ServiceLevel", 1.5), ("LeadTimeDays", -7), ("UnitCost", "abc"),
                  ("OnHand", "12 units"), ("ServiceLevel", "95%"), ("LeadTimeDays", Err("#REF!")), ("UnitCost", -1)][k]
    rows = _target_rows(t, "Items", rng, 1)
    _set(t["Items"], rows, col, value)
    return _case("items_bad_values", k, "error", f"Items.{col} = {value!r}", Book(t, layout=_LAYOUTS[k % 3]),
                 codes=("E102",), twin=twin)


@_hazard("booleans", 8)
def _booleans(k: int) -> Case:
    t, twin = _base(k)
    s = t["Sales"]
    if k in (0, 3, 6):
        _set(s, list(range(len(s))), "Promo", [bool(v) if v is not None else None for v in s["Promo"]])
        change, same = "TRUE/FALSE", True
    elif k in (1, 4):
        _set(s, list(range(len(s))), "Promo", [("yes" if v else "no") if v is not None else None for v in s["Promo"]])
        change, same = "yes/no", True
    elif k == 2:
        _set(s, list(range(len(s))), "Promo", [("TRUE" if v else "FALSE") if v is not None else None
                                                for v in s["Promo"]])
        change, same = "TRUE/FALSE", True
    else:
        t["Items"]["Strategic"] = pd.Series([bool(i % 2) for i in range(len(t["Items"]))], dtype=object)
        change, same = "", False
    return _case("booleans", k, "plan", "Promo / Strategic as booleans or yes/no", Book(t, layout=_LAYOUTS[k % 3]),
                 same_as_clean=same, twin=twin, changes=(change,) if change else ())


@_hazard("blank_vs_zero", 8)
def _blank_vs_zero(k: int) -> Case:
    t, twin = _base(k)
    rng = _rng("blank_vs_zero", k)
    rows = _hist_rows(t["Sales"], rng, 1 + k % 2)
    value, expect = [(None, "error"), (0, "plan"), ("n/a", "error"), ("   ", "error"), (0.0, "plan"), (None, "error"),
                     ("-", "error"), ("", "error")][k]
    _set(t["Sales"], rows, "Qty", value)
    return _case("blank_vs_zero", k, expect, f"Sales.Qty = {value!r} in history", Book(t, layout=_LAYOUTS[k % 3]),
                 twin=twin, codes=("E102",) if expect == "error" else ())


@_hazard("table_positions", 8)
def _table_positions(k: int) -> Case:
    t, twin = _base(k)
    book = Book(t, layout=("offset", "shared")[k % 2])
    if k in (2, 3):
        book.totals = {"Sales", "Items"}
    if k in (4, 5):
        book.sheets = {"Items": "Sales", "Drivers": "Sales"}
        book.layout = "shared"
    if k >= 6:  # an error deep inside a shifted table: the letter must be the real one
        rng = _rng("table_positions", k)
        r = _hist_rows(t["Sales"], rng, 1)
        _set(t["Sales"], r, "Qty", "twelve")
        return _case("table_positions", k, "error", f"a bad Qty in a table placed at {book.layout}", book,
                     codes=("E102",), twin=twin)
    return _case("table_positions", k, "plan", f"tables {book.layout}" + (" with totals rows" if book.totals else ""),
                 book, same_as_clean=True, twin=twin)


@_hazard("extra_columns", 8)
def _extra_columns(k: int) -> Case:
    t, twin = _base(k)
    s = t["Sales"]
    n = len(s)
    kind = k % 4
    if kind == 0:
        s["Comment"] = pd.Series(["checked" if i % 3 else "promo week?" for i in range(n)], dtype=object)
    elif kind == 1:
        s["Footfall"] = pd.Series([float(100 + i % 7) for i in range(n)], dtype=object)
    elif kind == 2:
        s["Notes"] = pd.Series([None] * n, dtype=object)
    else:
        t["Items"]["Description"] = pd.Series([f"item {i}" for i in range(len(t["Items"]))], dtype=object)
    return _case("extra_columns", k, "plan", "an extra column (" + ("text", "numeric", "empty", "Items text")[kind]
                 + ")", Book(t, layout=_LAYOUTS[k % 3]), twin=twin, same_as_clean=kind in (0, 2))


@_hazard("whitespace_keys", 8)
def _whitespace_keys(k: int) -> Case:
    t, twin = _base(k, n_loc=2 if k % 2 else 1)
    table, col = [("Sales", "SKU"), ("Sales", "Location"), ("Items", "SKU"), ("Items", "Location"), ("Sales", "SKU"),
                  ("Drivers", "Location"), ("Items", "Category"), ("Sales", "Location")][k]
    if col not in t[table].columns:
        t, twin = _base(k, n_loc=2)
    df = t[table]
    _set(df, list(range(len(df))), col, [f" {v}  " if i % 2 else f"{v} " for i, v in enumerate(df[col])])
    return _case("whitespace_keys", k, "plan", f"{table}.{col} with leading/trailing spaces",
                 Book(t, layout=_LAYOUTS[k % 3]), same_as_clean=True, twin=twin, changes=("spaces trimmed",))


@_hazard("numeric_skus", 8)
def _numeric_skus(k: int) -> Case:
    t, twin = _base(k)
    skus = sorted({str(v) for v in t["Sales"]["SKU"]})
    code = {s: 1001 + i for i, s in enumerate(skus)}
    for name in ("Sales", "Items"):
        as_text = (k % 3 == 1 and name == "Items") or (k % 3 == 2 and name == "Sales")
        t[name]["SKU"] = pd.Series([str(code[v]) if as_text else (float(code[v]) if k >= 4 else code[v])
                                    for v in t[name]["SKU"]], dtype=object)
    return _case("numeric_skus", k, "plan", "numeric SKU codes" + ("", " (text in Items)", " (text in Sales)")[k % 3],
                 Book(t, layout=_LAYOUTS[k % 3]), twin=twin)


@_hazard("output_sheet_conflict", 8)
def _output_conflict(k: int) -> Case:
    t, twin = _base(k)
    table = ("Sales", "Items", "Drivers", "Settings", "Sales", "Items", "Drivers", "Settings")[k]
    sheet = ("Plan", "Accuracy", "Purchases", "Charts", "Data quality", "Plan", "Charts", "Accuracy")[k]
    return _case("output_sheet_conflict", k, "error", f"{table} kept on a sheet named {sheet!r}",
                 Book(t, sheets={table: sheet}), codes=("E110",), twin=twin, expect_read="plan")


def hazard_classes() -> list[str]:
    """The hazard classes, in corpus order."""
    return list(_REGISTRY)


def cases(hazards: Sequence[str] | None = None) -> list[Case]:
    """Every case of the corpus (or of ``hazards``), deterministic."""
    return [c for c in _all_cases() if hazards is None or c.hazard in hazards]


@lru_cache(maxsize=1)
def _all_cases() -> tuple[Case, ...]:
    return tuple(fn(k) for name, fn in _REGISTRY.items() for k in range(_VARIANTS[name]))


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What happened to one case."""

    case: Case
    status: str  # "plan", "error" (a PlancellError) or "unhandled"
    seconds: float
    code: str | None = None
    message: str = ""
    problems: list[Any] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # why a problem is not a clear one
    mismatch: str | None = None  # why the outcome is not the expected one
    traceback: str | None = None
    actions: list[str] = field(default_factory=list)  # "What was done" lines of the Data quality report
    cli: str | None = None  # "ok" or what went wrong when run through the CLI

    @property
    def clear(self) -> bool:
        return self.status == "error" and not self.gaps and bool(self.problems)


@contextlib.contextmanager
def _env(pairs: Sequence[tuple[str, str]]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k, _ in pairs}
    os.environ.update(dict(pairs))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fold(x: Any) -> str:
    return " ".join(str(x).split()).casefold()


#: Tables a problem may name although the workbook lacks them (a missing table, an output sheet).
_PLANNER_NAMES = frozenset({"Sales", "Drivers", "Items", "Settings", "Plan", "Accuracy", "Purchases", "Charts",
                            "Data quality"})


def problem_gaps(p: Any, placed: dict[str, Placed]) -> list[str]:
    """Why ``p`` is not a clear problem (empty: it is).

    Every problem needs its table, message and fix. A problem about a cell (it has a row and
    a column that is one of the table's headers) needs the sheet, the column letter and the
    header, a value (or a message saying the cell is blank), and must point at a cell that
    really is in that table under that header, as the workbook was written (``placed``).
    """
    gaps: list[str] = []
    if not p.table or not p.message or not p.fix:
        gaps.append("no table, message or fix")
    spec = next((s for s in placed.values() if s.name.casefold() == str(p.table).casefold()), None)
    if spec is None and str(p.table) not in _PLANNER_NAMES and not str(p.table).endswith((".xlsx", ".xlsm")):
        gaps.append(f"'{p.table}' is neither a table of the workbook nor the file")  # e.g. an internal argument name
    if spec is None or p.row is None:
        return gaps
    headers = {_fold(h): j for j, h in enumerate(spec.headers)}
    if p.column is None or _fold(p.column) not in headers:
        if p.row is not None and p.row != spec.top and p.letter is None:
            gaps.append(f"row {p.row} without a column")
        return gaps
    from engine.errors import column_letter

    if p.letter is None or p.sheet is None:
        gaps.append("a cell problem without sheet or column letter")
        return gaps
    if p.sheet != spec.sheet:
        gaps.append(f"sheet {p.sheet!r}, but the table is on {spec.sheet!r}")
    if not (spec.top <= p.row <= spec.top + max(spec.n_rows, 1)):
        gaps.append(f"row {p.row} is outside the table (rows {spec.top}-{spec.top + spec.n_rows})")
    letters = {column_letter(spec.left + i) for i, h in enumerate(spec.headers) if _fold(h) == _fold(p.column)}
    if p.letter not in letters:
        gaps.append(f"column {p.letter} is not the column of '{p.column}' ({', '.join(sorted(letters))})")
    if p.value is None and "blank" not in p.message and p.row != spec.top:
        gaps.append("no value and not a blank cell")
    return gaps


def _validate_only(path: Path) -> Any:
    """Reading and validation exactly as ``refresh`` does them, without the model."""
    from addin.actions import read_plan_settings
    from addin.workbook import read_tables
    from engine.contract import locate_problems, validate
    from engine.errors import InputError, Problem

    tables = read_tables(path)  # what FileBook.tables() reads, without its second (formula) load
    if "Sales" not in tables:
        raise InputError("no table named Sales", [Problem("Sales", "no Excel table named Sales in the workbook",
                                                          "name the table Sales", code="E101")], code="E101")
    try:
        settings = read_plan_settings(tables)
    except InputError as exc:
        exc.problems = locate_problems(exc.problems, tables)
        raise
    sales, s_row = tables["Sales"]
    drivers, d_row = tables.get("Drivers", (None, 2))
    items, i_row = tables.get("Items", (None, 2))
    return validate(sales, drivers, items, freq=settings.freq, column_map=settings.column_map or None, gaps="zero",
                    row_offsets={"Sales": s_row, "Drivers": d_row, "Items": i_row})


@lru_cache(maxsize=64)
def _clean_fingerprint(freq: str, seed: int, n_loc: int) -> str:
    from engine.store import data_fingerprint

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "clean.xlsx"
        write_book(Book(clean_tables(freq, seed, n_loc)), p)
        data = _validate_only(p)
    return data_fingerprint(data.sales, data.drivers, data.items)


def _read_actions(path: Path) -> list[str] | None:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        if "Data quality" not in wb.sheetnames:
            return None
        rows = list(wb["Data quality"].iter_rows(values_only=True))
    finally:
        wb.close()
    return [str(v) for r in rows for v in (r or ()) if isinstance(v, str) and v]


def run_case(case: Case, folder: Path, *, refresh: bool = True, model_params: dict[str, Any] | None = None,
             store: Any = None) -> Outcome:
    """Build ``case`` in ``folder`` and run it: the full ``refresh`` (default) or reading and
    validation only. Never raises: anything unexpected is an ``unhandled`` outcome."""
    from addin.actions import refresh as refresh_action
    from addin.port import FileBook
    from engine.errors import PlancellBug, PlancellError
    from engine.store import data_fingerprint

    path, placed = build(case, folder)
    tic = time.perf_counter()
    out = Outcome(case, "unhandled", 0.0)
    fingerprint: str | None = None
    try:
        with _env(case.env):
            if refresh:
                summary = refresh_action(FileBook(path), model_params=model_params or FAST_MODEL, store=store)
                fingerprint = summary["result"].metadata.get("data_fingerprint")
                out.actions = _read_actions(path) or []
                if not out.actions:
                    out.mismatch = "no Data quality sheet"
            else:
                data = _validate_only(path)
                fingerprint = data_fingerprint(data.sales, data.drivers, data.items)
                out.actions = [c.action for c in data.changes] + [w.message for w in data.warnings]
        out.status = "plan"
    except PlancellBug as exc:
        out.traceback = traceback.format_exc()
        out.message = exc.one_line()
    except PlancellError as exc:
        out.status = "error"
        out.code = exc.code
        out.message = exc.one_line()
        out.problems = [p for p in getattr(exc, "problems", []) if p.severity == "error"]
        if not out.problems:
            out.gaps.append("no problem listed")
        for p in out.problems:
            out.gaps += [f"{p.where()}: {g}" for g in problem_gaps(p, placed)]
    except Exception as exc:  # the whole point: count, never crash the run
        out.traceback = traceback.format_exc()
        out.message = f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - tic
    expect = case.expect if refresh or case.expect_read is None else case.expect_read
    if out.status != expect:
        out.mismatch = f"expected {expect}, got {out.status}" + (f" ({out.message[:200]})" if out.message else "")
    elif expect == "plan":
        if case.same_as_clean and fingerprint != _clean_fingerprint(*case.twin):
            out.mismatch = "the data read differs from the clean twin's"
        missing = [c for c in case.changes if not any(c in a for a in out.actions)]
        if missing:
            out.mismatch = f"Data quality lacks {missing}"
    elif expect == "error" and case.codes and out.code not in case.codes:
        out.mismatch = f"code {out.code}, expected one of {case.codes}"
    return out


def run_cli(case: Case, folder: Path, home: Path) -> str:
    """Run ``python -m addin.cli refresh BOOK`` on a fresh copy; 'ok' or what went wrong."""
    path, _ = build(case, folder / "cli")
    env = {**os.environ, "PLANCELL_HOME": str(home), **dict(case.env)}
    proc = subprocess.run([sys.executable, "-m", "addin.cli", "refresh", str(path), "--rounds", "5", "-q"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    if _CLI_TRACEBACK in proc.stderr or _CLI_TRACEBACK in proc.stdout:
        return "traceback shown"
    if "PLANCELL-E900" in proc.stderr:
        return "internal error shown"
    want = 0 if case.expect == "plan" else None
    if want == 0 and proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.strip()[:200]}"
    if case.expect == "error" and (proc.returncode == 0 or "PLANCELL-E" not in proc.stderr):
        return f"exit {proc.returncode} without a PLANCELL error line"
    return "ok"


def run_corpus(folder: Path, *, refresh: bool = True, cli: int = 0, hazards: Sequence[str] | None = None,
               progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every case; ``cli`` cases (spread over the hazard classes) also through the CLI."""
    from engine.store import ModelStore

    home = folder / "plancell-home"
    store = ModelStore(home / "models") if refresh else None
    outcomes: list[Outcome] = []
    all_cases = cases(hazards)
    picks: set[str] = set()
    if cli:
        by_class: dict[str, list[Case]] = {}
        for c in all_cases:
            by_class.setdefault(c.hazard, []).append(c)
        k = 0
        while len(picks) < min(cli, len(all_cases)):
            for lst in by_class.values():
                if k < len(lst) and len(picks) < cli:
                    picks.add(lst[k].name)
            k += 1
    with _env((("PLANCELL_HOME", str(home)),)):
        for c in all_cases:
            o = run_case(c, folder / c.hazard, refresh=refresh, store=store)
            if c.name in picks:
                o.cli = run_cli(c, folder, home)
            outcomes.append(o)
            if progress is not None:
                progress(o)
    return outcomes


# --------------------------------------------------------------------------- report


def summarize(outcomes: Sequence[Outcome]) -> dict[str, int]:
    cli = [o for o in outcomes if o.cli is not None]
    return {
        "cases": len(outcomes),
        "hazard classes": len({o.case.hazard for o in outcomes}),
        "plans produced": sum(o.status == "plan" for o in outcomes),
        "clear errors": sum(o.clear for o in outcomes),
        "errors not clear": sum(o.status == "error" and not o.clear for o in outcomes),
        "unhandled exceptions": sum(o.status == "unhandled" for o in outcomes),
        "mismatches with the expected outcome": sum(o.mismatch is not None for o in outcomes),
        "CLI runs": len(cli),
        "tracebacks shown to the user (CLI)": sum(o.cli in ("traceback shown", "internal error shown") for o in cli),
        "CLI runs not as expected": sum(o.cli != "ok" for o in cli),
    }


def report(outcomes: Sequence[Outcome], *, command: str, seconds: float, refresh: bool) -> str:
    s = summarize(outcomes)
    lines = [
        "# Malformed-workbook corpus",
        "",
        f"Command: `{command}`  ",
        f"Run: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {seconds:.0f} s, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs. Path: {'plancell refresh (addin.actions.refresh on FileBook, 5 boosting rounds)' if refresh else 'reading + validation only'}.",
        "",
        "| figure | count |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in s.items()],
        "",
        "A *clear error* is a PlancellError whose every problem names its table, message and fix, and whose "
        "every problem about a cell names the sheet, Excel row, column letter and header, the value (or says the "
        "cell is blank), pointing at a cell that is really in that table under that header.",
        "",
        "## By hazard class",
        "",
        "| hazard | cases | plan | clear error | other | mismatches | example |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.case.hazard, []).append(o)
    for name, os_ in by.items():
        ex = next((o for o in os_ if o.status == "error" and o.problems), None)
        example = str(ex.problems[0])[:160].replace("|", "/") if ex else os_[0].case.description
        lines.append(f"| {name} | {len(os_)} | {sum(o.status == 'plan' for o in os_)} | {sum(o.clear for o in os_)} | "
                     f"{sum(o.status == 'unhandled' or (o.status == 'error' and not o.clear) for o in os_)} | "
                     f"{sum(o.mismatch is not None for o in os_)} | {example} |")
    bad = [o for o in outcomes if o.mismatch or o.status == "unhandled" or (o.status == "error" and not o.clear)
           or (o.cli not in (None, "ok"))]
    if bad:
        lines += ["", "## Cases to look at", ""]
        for o in bad:
            lines.append(f"* `{o.case.name}` ({o.case.description}): {o.mismatch or ''} {'; '.join(o.gaps[:3])} "
                         f"{'CLI: ' + o.cli if o.cli not in (None, 'ok') else ''} {o.message[:200]}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="keep the workbooks in DIR (default: a temp folder)")
    ap.add_argument("--full", action="store_true", help="run every case through the CLI subprocess too")
    ap.add_argument("--cli", type=int, default=40, metavar="N", help="cases run through the CLI (default 40)")
    ap.add_argument("--validate-only", action="store_true", help="reading and validation only (no model)")
    ap.add_argument("--only", help="comma-separated hazard classes")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(REPO)}")
    args = ap.parse_args(argv)
    hazards = [h.strip() for h in args.only.split(",")] if args.only else None
    tic = time.perf_counter()
    with contextlib.ExitStack() as stack:
        folder = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plancell-corpus-")))
        total = len(cases(hazards))
        done = [0]

        def progress(o: Outcome) -> None:
            done[0] += 1
            flag = "" if not (o.mismatch or o.status == "unhandled" or (o.status == "error" and not o.clear)) else \
                f"  <-- {o.mismatch or o.message[:120] or '; '.join(o.gaps[:2])}"
            print(f"[{done[0]:3d}/{total}] {o.case.name:32s} {o.status:9s} {o.seconds:5.1f}s{flag}", file=sys.stderr)

        outcomes = run_corpus(folder, refresh=not args.validate_only, cli=total if args.full else args.cli,
                              hazards=hazards, progress=progress)
    command = "python -m bench.corpus" + (" --full" if args.full else "") + (" --validate-only" if args.validate_only
                                                                             else "") + (f" --only {args.only}"
                                                                                         if args.only else "")
    text = report(outcomes, command=command, seconds=time.perf_counter() - tic, refresh=not args.validate_only)
    print(text)
    if not args.no_write and not hazards:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    s = summarize(outcomes)
    return 0 if not (s["unhandled exceptions"] or s["tracebacks shown to the user (CLI)"]) else 1


if __name__ == "__main__":
    sys.exit(main())

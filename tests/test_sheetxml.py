"""Streamed table rows (addin.sheetxml) give the same workbook as openpyxl's cell-by-cell writer."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.cell.cell import IllegalCharacterError

from addin.port import FileBook, OpenpyxlSink
from addin.sheets import Pairs, Sheet, TableBlock, Title, render
from addin.sheetxml import deferred_rows, raw_sheets, save_workbook


class _CellByCell(OpenpyxlSink):
    """The sink without its bulk path: every cell through openpyxl."""

    rows = None  # type: ignore[assignment]


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" padded ", "a & b < c > d", "=1+2", "line\r\nbreak", "naïve — 東京", "", "#N/A", "TRUE"]
    return pd.DataFrame({
        "SKU": [f"SKU-{i:05d}" for i in range(n)],
        "Period": pd.date_range("1899-12-25", periods=n, freq="D"),   # across Excel's 1900 leap-year quirk
        "P50": rng.normal(0, 1e3, n) * rng.choice([1e-12, 1.0, 1e15], n),
        "P90": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        "Locked": rng.random(n) < 0.5,
        "Reason": [texts[i % len(texts)] if i % 5 else None for i in range(n)],
        "Count": np.arange(n, dtype=np.int64) - n // 2,
        "When": [dt.date(2026, 1, 1 + i % 28) for i in range(n)],
        "Mixed": [[1.5, "x", True, None, dt.datetime(2026, 5, 1, 12, 30)][i % 5] for i in range(n)],
    })


def _sheet(n: int) -> Sheet:
    df = _frame(n)
    return Sheet("Plan", [Title("Plancell plan"), Pairs([("Model", "m"), ("Series", 3.0)]),
                          TableBlock("Policy", df.head(7), freeze=True), Title("Forecast"), TableBlock("Plan", df),
                          Title("After"), TableBlock("Tail", df.tail(3))])


def _save(sheet: Sheet, sink: type, path: Path, *, streamed: bool) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active["A1"] = "planner's note"
    render(sheet, sink(wb.create_sheet(sheet.name)))
    if streamed:
        save_workbook(wb, path)
    else:
        wb.save(path)


def _cells(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    wb = openpyxl.load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        out[ws.title] = [(c.coordinate, c.value, c.data_type, c.number_format, c.font.b, c.font.i, c.font.sz)
                         for row in ws.iter_rows() for c in row if c.value is not None]
        out[ws.title + " tables"] = [(t.displayName, t.ref, [c.name for c in t.tableColumns])
                                     for t in ws.tables.values()]
        out[ws.title + " layout"] = [(ws.dimensions, ws.freeze_panes)]
    return out


def test_streamed_rows_equal_openpyxl_cells(tmp_path: Path) -> None:
    sheet = _sheet(3000)
    _save(sheet, _CellByCell, tmp_path / "cells.xlsx", streamed=False)
    _save(sheet, OpenpyxlSink, tmp_path / "streamed.xlsx", streamed=True)
    slow, fast = _cells(tmp_path / "cells.xlsx"), _cells(tmp_path / "streamed.xlsx")
    assert slow.keys() == fast.keys()
    for key in slow:
        assert fast[key] == slow[key], key
    assert len(fast["Plan"]) > 20_000
    # The same sheet XML, but for the order styles were registered in (style ids) and
    # lxml's ASCII character references where the stream writes UTF-8.
    def normal(xml: bytes) -> str:
        text = re.sub(r"&#(\d+);", lambda m: chr(int(m.group(1))) if m.group(1) != "13" else m.group(0),
                      xml.decode("utf-8"))
        return re.sub(r' s="\d+"', " s", text)

    with zipfile.ZipFile(tmp_path / "cells.xlsx") as a, zipfile.ZipFile(tmp_path / "streamed.xlsx") as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert normal(b.read("xl/worksheets/sheet2.xml")) == normal(a.read("xl/worksheets/sheet2.xml"))


def test_values_round_trip_exactly(tmp_path: Path) -> None:
    df = _frame(500)
    _save(Sheet("T", [TableBlock("T", df)]), OpenpyxlSink, tmp_path / "t.xlsx", streamed=True)
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["T"]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(rows) == 500
    p50 = np.array([r[2] for r in rows], dtype=float)
    np.testing.assert_allclose(p50, df["P50"].to_numpy(), rtol=1e-15)   # 16 significant digits, as openpyxl
    assert [r[1] for r in rows[:3]] == [dt.datetime(1899, 12, 25), dt.datetime(1899, 12, 26), dt.datetime(1899, 12, 27)]
    assert [r[4] for r in rows[:4]] == df["Locked"].head(4).tolist()
    reasons = [r[5] for r in rows]
    assert reasons[:5] == [None, "a & b < c > d", "'=1+2", "line\r\nbreak", "naïve — 東京"]
    assert (reasons[6], reasons[8], reasons[13]) == ("#N/A", " padded ", None)   # "" is a blank cell
    assert ws["F8"].value == "#N/A" and ws["F8"].data_type == "s" and ws["E2"].data_type == "b"
    assert rows[0][6] == -250


def test_illegal_characters_refused_like_openpyxl(tmp_path: Path) -> None:
    bad = Sheet("T", [TableBlock("T", pd.DataFrame({"SKU": ["ok", "bell\x07"]}))])
    for sink, streamed in ((_CellByCell, False), (OpenpyxlSink, True)):
        with pytest.raises(IllegalCharacterError):
            _save(bad, sink, tmp_path / "bad.xlsx", streamed=streamed)


def test_filebook_streams_big_tables_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    openpyxl.Workbook().save(path)
    book = FileBook(path)
    book.write_sheet(_sheet(2000))
    assert deferred_rows(book._book()["Plan"]) == 2000 + 7 + 3
    book.save()
    again = FileBook(path)
    assert again.tables()["Plan"][0].shape == (2000, 9)
    assert again.read_pairs("Plan")["Model"] == "m"
    book2 = FileBook(path)   # a second refresh replaces the sheet, still one Plan table
    book2.write_sheet(_sheet(10))
    book2.save()
    assert FileBook(path).tables()["Plan"][0].shape == (10, 9)


def test_shared_strings_read_as_openpyxl_reads_them() -> None:
    import io

    from openpyxl.reader.strings import read_string_table

    from addin.sheetxml import shared_strings

    xml = ('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="7" uniqueCount="7">'
           '<si><t>plain</t></si><si><t xml:space="preserve"> padded </t></si><si><t/></si>'
           '<si><r><rPr><b/></rPr><t>bold</t></r><r><t xml:space="preserve"> and plain</t></r></si>'
           '<si><t>ruby</t><rPh sb="0" eb="1"><t>phonetic</t></rPh><phoneticPr fontId="1"/></si>'
           '<si><t>a_x005F_x000D_b &amp; &lt;c&gt;</t></si><si><t>東京 — naïve</t></si></sst>').encode()
    ours = shared_strings(io.BytesIO(xml))
    assert ours == list(read_string_table(io.BytesIO(xml)))
    assert ours[3] == "bold and plain" and ours[4] == "ruby" and ours[2] == ""


def test_raw_sheets_are_written_back_verbatim(tmp_path: Path) -> None:
    """A sheet FileBook does not replace (a snapshot, the planner's own sheet saved by Excel
    with shared strings and styles) keeps every cell, format and formula through a refresh."""
    import xlsxwriter

    path = tmp_path / "excel.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Notes")
    bold, pct = wb.add_format({"bold": True}), wb.add_format({"num_format": "0.0%"})
    ws.write_string(0, 0, "Region", bold)
    ws.write_string(1, 0, " North ")
    ws.write_number(1, 1, 0.125, pct)
    ws.write_formula(1, 2, "=B2*2", None, 0.25)
    ws.write_datetime(2, 1, dt.datetime(2026, 3, 1), wb.add_format({"num_format": "yyyy-mm-dd"}))
    ws.set_row(3, 30)
    wb.add_worksheet("Plan").write_string(0, 0, "old plan")
    wb.close()
    book = FileBook(path)
    assert set(raw_sheets(book._book())) == {"Notes", "Plan"}
    book.write_sheet(_sheet(50))          # replaces Plan; Notes is carried as raw XML
    book.save()
    out = openpyxl.load_workbook(path)["Notes"]
    assert [out["A1"].value, out["A1"].font.b, out["A2"].value] == ["Region", True, " North "]
    assert (out["B2"].value, out["B2"].number_format) == (0.125, "0.0%")
    assert out["C2"].value == "=B2*2" and out["B3"].value == dt.datetime(2026, 3, 1)
    assert out.row_dimensions[4].height == 30
    cached = openpyxl.load_workbook(path, data_only=True)["Notes"]
    assert cached["C2"].value == 0.25   # the formula's last value stays for readers without Excel
    assert FileBook(path).read_pairs("Notes") == {" North ": 0.125}

"""The workbook port on files: refresh and publish a planner's own workbook and leave
everything that is not Plancell's intact (sheets, formulas, formats, charts, names, VBA)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import xlsxwriter
import xlwings

from addin.actions import dispatch, publish, refresh, status
from addin.port import FileBook
from engine.errors import InputError
from engine.store import ModelStore
from engine.synthetic import generate_panel

FAST = {"n_estimators": 40}
XLWINGS_XLSM = Path(xlwings.__file__).parent / "quickstart.xlsm"


def _vba_bin(tmp: Path) -> Path:
    """A real VBA project (xlwings' own quickstart workbook ships one)."""
    out = tmp / "vbaProject.bin"
    out.write_bytes(zipfile.ZipFile(XLWINGS_XLSM).read("xl/vbaProject.bin"))
    return out


def _planner_book(path: Path, *, vba: Path | None = None) -> Path:
    """A planner's workbook: their dashboard with formulas, formats, a chart, defined names,
    validation and conditional formats, plus the Sales / Items / Settings tables."""
    p = generate_panel("W", n_skus=4, n_locations=1, seed=11)
    sales = p.sales[["Date", "SKU", "Location", "Qty", "Price", "Promo"]].copy()
    items = p.items[["SKU", "Location", "LeadTimeDays", "LeadTimeStdDays", "ReviewPeriodDays", "UnitCost", "MOQ",
                     "OrderMultiple", "OnHand", "OnOrder", "ServiceLevel"]]
    wb = xlsxwriter.Workbook(str(path))
    if vba is not None:
        wb.add_vba_project(str(vba))
    money = wb.add_format({"num_format": "#,##0.00 [$EUR]", "bold": True, "bg_color": "#FFF2CC"})
    dash = wb.add_worksheet("Dashboard")
    dash.write("A1", "My S&OP dashboard", wb.add_format({"bold": True, "font_size": 16}))
    dash.write("A3", "Total units")
    dash.write_formula("B3", "=SUM(Sales[Qty])", money)
    dash.write("A4", "Budget")
    dash.write_number("B4", 25000, money)
    dash.write_formula("B5", "=B4*1.1")
    dash.set_column("A:A", 31)
    dash.data_validation("D3", {"validate": "list", "source": ["Base", "Upside", "Downside"]})
    dash.conditional_format("B3:B5", {"type": "cell", "criteria": ">", "value": 1000, "format": money})
    wb.define_name("BudgetCell", "=Dashboard!$B$4")
    hist = wb.add_worksheet("History")
    hist.write_row(0, 0, ["Month", "Units"])
    for i in range(6):
        hist.write_row(i + 1, 0, [f"M{i + 1}", 100 + 10 * i])
    chart = wb.add_chart({"type": "line"})
    chart.add_series({"name": "Units", "categories": "=History!$A$2:$A$7", "values": "=History!$B$2:$B$7"})
    chart.set_title({"name": "Units by month"})
    hist.insert_chart("D2", chart)
    for name, df in (("Sales", sales), ("Items", items),
                     ("Settings", pd.DataFrame({"Key": ["Horizon", "ServiceLevel.A", "OrderCost"],
                                                "Value": [6, "99%", 40]}))):
        ws = wb.add_worksheet(name)
        df = df.copy()
        for c in df.columns:
            if str(df[c].dtype) == "category":
                df[c] = df[c].astype(str)
        rows = df.astype(object).where(df.notna(), None).values.tolist()
        date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
        for r, row in enumerate(rows, start=1):
            for c, v in enumerate(row):
                if isinstance(v, pd.Timestamp):
                    ws.write_datetime(r, c, v.to_pydatetime(), date_fmt)
                elif v is not None:
                    ws.write(r, c, v)
        ws.add_table(0, 0, len(rows), len(df.columns) - 1,
                     {"name": name, "columns": [{"header": h} for h in df.columns]})
    wb.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ModelStore(home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory, store):
    tmp = tmp_path_factory.mktemp("books")
    src = _planner_book(tmp / "planner.xlsm", vba=_vba_bin(tmp))
    before = src.read_bytes()
    book = tmp / "refreshed.xlsm"
    book.write_bytes(before)
    summary = refresh(FileBook(book), model_params=FAST, store=store)
    return src, book, summary


def test_refresh_writes_the_plan_sheets(refreshed) -> None:
    _, book, summary = refreshed
    wb = openpyxl.load_workbook(book)
    assert {"Plan", "Accuracy", "Purchases"} <= set(wb.sheetnames)
    assert {"Policy", "Plan"} == set(wb["Plan"].tables)
    assert summary["model"] == "refreshed" and summary["version"] == 1   # model named after the workbook
    # Settings were applied: horizon 6, class A at 99 %
    plan = pd.DataFrame(openpyxl.load_workbook(book)["Plan"][wb["Plan"].tables["Plan"].ref].__iter__())
    assert len(plan) - 1 == 4 * 6
    result = summary["result"]
    a_rows = result.policy[result.policy["Class"].str.startswith("A")]
    assert (a_rows["ServiceLevel"] == 0.99).all() or (a_rows["ServiceLevelSource"] == "Items").all()


def test_everything_else_in_the_workbook_is_kept(refreshed) -> None:
    src, book, _ = refreshed
    old = openpyxl.load_workbook(src)
    new = openpyxl.load_workbook(book)
    assert new.sheetnames[:len(old.sheetnames)] == old.sheetnames     # their sheets, in their order
    d_old, d_new = old["Dashboard"], new["Dashboard"]
    assert d_new["B3"].value == "=SUM(Sales[Qty])" and d_new["B5"].value == "=B4*1.1"   # formulas stay formulas
    assert d_new["B4"].number_format == d_old["B4"].number_format == "#,##0.00 [$EUR]"
    assert d_new["B4"].font.b and d_new["B4"].fill.fgColor.rgb == d_old["B4"].fill.fgColor.rgb
    assert d_new.column_dimensions["A"].width == d_old.column_dimensions["A"].width
    assert d_new["A1"].font.sz == 16
    assert new.defined_names["BudgetCell"].attr_text == "Dashboard!$B$4"
    assert [dv.sqref for dv in d_new.data_validations.dataValidation] == \
        [dv.sqref for dv in d_old.data_validations.dataValidation]
    assert len(d_new.conditional_formatting) == len(d_old.conditional_formatting) == 1
    chart = new["History"]._charts
    assert len(chart) == 1
    xml = zipfile.ZipFile(book).read("xl/charts/chart1.xml").decode()
    assert "Units by month" in xml and "History!$B$2:$B$7" in xml
    # the VBA project is carried over byte for byte, and the file stays macro-enabled
    assert zipfile.ZipFile(book).read("xl/vbaProject.bin") == zipfile.ZipFile(src).read("xl/vbaProject.bin")
    assert "macroEnabled" in zipfile.ZipFile(book).read("[Content_Types].xml").decode()
    # the input tables are untouched
    for t in ("Sales", "Items", "Settings"):
        ws_old = next(ws for ws in old.worksheets if t in ws.tables)
        ws_new = next(ws for ws in new.worksheets if t in ws.tables)
        assert ws_old.tables[t].ref == ws_new.tables[t].ref
        cells_old = [[c.value for c in row] for row in ws_old[ws_old.tables[t].ref]]
        cells_new = [[c.value for c in row] for row in ws_new[ws_new.tables[t].ref]]
        assert cells_old == cells_new


def test_refreshing_again_replaces_the_plan_in_place(refreshed, tmp_path, store) -> None:
    _, book, _ = refreshed
    again = tmp_path / "again.xlsm"
    again.write_bytes(book.read_bytes())
    refresh(FileBook(again), model_params=FAST, store=store)
    wb = openpyxl.load_workbook(again)
    assert wb.sheetnames == openpyxl.load_workbook(book).sheetnames   # no duplicate sheets
    names = [t for ws in wb.worksheets for t in ws.tables]
    assert len(names) == len(set(names))


def test_publish_freezes_a_values_only_snapshot(refreshed, tmp_path) -> None:
    _, book, _ = refreshed
    pub = tmp_path / "pub.xlsm"
    pub.write_bytes(book.read_bytes())
    when = dt.datetime(2026, 11, 22, 9, 30)
    assert publish(FileBook(pub), now=when) == "Plan 2026-11 v1"
    assert publish(FileBook(pub), now=when) == "Plan 2026-11 v2"
    wb = openpyxl.load_workbook(pub)
    snap = wb["Plan 2026-11 v1"]
    block = {snap.cell(r, 1).value: snap.cell(r, 2).value for r in range(1, 16)}
    assert block["Model"] == "refreshed" and len(block["Data fingerprint"]) >= 32
    assert block["Published at"].startswith("2026-11-22T09:30")
    assert "Service targets" in block
    assert set(snap.tables) == {"Policy_2026_11_v1", "Plan_2026_11_v1"}
    assert all(c.data_type != "f" for row in snap.iter_rows() for c in row)   # values only
    plan_new = [[c.value for c in r] for r in snap[snap.tables["Plan_2026_11_v1"].ref]]
    plan_old = [[c.value for c in r] for r in wb["Plan"][wb["Plan"].tables["Plan"].ref]]
    assert plan_new == plan_old


def test_status_says_whether_the_data_changed(refreshed, tmp_path, store) -> None:
    _, book, _ = refreshed
    assert "data unchanged since" in status(FileBook(book), store=store)
    changed = tmp_path / "changed.xlsm"
    changed.write_bytes(book.read_bytes())
    wb = openpyxl.load_workbook(changed, keep_vba=True)
    ws = next(w for w in wb.worksheets if "Sales" in w.tables)
    ws.cell(2, 4).value = (ws.cell(2, 4).value or 0) + 1000
    wb.save(changed)
    ctx = FileBook(changed)
    ctx.name = "refreshed.xlsm"   # same model name, different numbers
    assert "changed since" in status(ctx, store=store)


def test_a_workbook_without_sales_is_told_how_to_fix_it(tmp_path) -> None:
    path = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(path)
    with pytest.raises(InputError) as err:
        refresh(FileBook(path))
    assert "no table named Sales" in err.value.one_line()
    assert "Insert > Table" in err.value.problems[0].fix


def test_dispatch_runs_only_allow_listed_buttons(tmp_path) -> None:
    with pytest.raises(InputError, match="Unknown Plancell button"):
        dispatch("os.system", book=FileBook(tmp_path / "x.xlsx"))


def test_dispatch_turns_errors_into_one_line_status(tmp_path) -> None:
    path = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(path)
    seen: list[str] = []
    port = FileBook(path, progress=seen.append)
    assert dispatch("refresh", book=port) is None
    assert seen and seen[-1].startswith("PLANCELL-E101: ") and "\n" not in seen[-1]

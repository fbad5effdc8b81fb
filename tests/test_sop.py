"""S&OP sheets rendered to .xlsx through the project's writer: the FVA sheet says in words which
layer added value and which destroyed it, and carries a native chart."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from addin.sheets import Sheet, render
from addin.sop import comparison_sheet, consensus_columns, consensus_table, finance_sheet, fva_sheet, \
    overrides_audit_sheet
from addin.workbook import XlsxWriterSink
from engine.compare import compare_plans
from engine.finance import financial_view, prices_from_sales
from engine.fva import PlanVersion, forecast_value_added
from engine.overrides import apply_overrides
from tests.test_fva import synthetic_sop


def write(path: Path, *sheets: Sheet) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    for sheet in sheets:
        render(sheet, XlsxWriterSink(wb, wb.add_worksheet(sheet.name)))
    wb.close()
    return path


def texts(path: Path, sheet: str) -> list[str]:
    ws = openpyxl.load_workbook(path)[sheet]
    return [str(v) for row in ws.iter_rows(values_only=True) for v in row if isinstance(v, str)]


def consensus():
    sales, plan, items, ov = synthetic_sop()
    return sales, items, apply_overrides(plan, ov, freq="MS", items=items)


def test_fva_sheet_says_which_layer_added_value_and_has_a_native_chart(tmp_path):
    sales, items, cons = consensus()
    res = forecast_value_added([PlanVersion("Plan 2025-01 v1", cons.plan, cons.effects)], sales, freq="MS",
                               items=items)
    path = write(tmp_path / "fva.xlsx", fva_sheet(res))
    cells = texts(path, "FVA")
    assert any(c.startswith("Marketing added value") for c in cells)
    assert any(c.startswith("Sales destroyed value") for c in cells)
    wb = openpyxl.load_workbook(path)
    assert {"FVA", "FVAByLayer", "FVAByReason", "FVAByCategory", "FVAVersions"} <= set(wb["FVA"].tables)
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert charts and b"lineChart" in z.read(charts[0])


def test_fva_sheet_before_any_actuals_explains_itself(tmp_path):
    sales, items, cons = consensus()
    history = sales[sales["Date"] < cons.plan["Period"].min()]
    res = forecast_value_added([PlanVersion("v1", cons.plan)], history, freq="MS")
    cells = texts(write(tmp_path / "empty.xlsx", fva_sheet(res)), "FVA")
    assert any("once the first published month has passed" in c for c in cells)


def test_consensus_columns_sit_side_by_side_in_layer_order():
    _, _, cons = consensus()
    assert consensus_columns(cons.plan) == ["Statistical", "Sales layer", "Marketing layer", "Consensus"]
    table = consensus_table(cons.plan)
    assert list(table.columns[:9]) == ["SKU", "Location", "Period", "Statistical", "Sales layer", "Marketing layer",
                                       "Consensus", "P10", "P50"]
    assert (table["P50"] == table["Consensus"]).all()


def test_finance_changes_and_audit_sheets_render(tmp_path):
    sales, items, cons = consensus()
    sales = sales.assign(Price=2.5)
    view = financial_view(cons.plan, items=items.assign(UnitCost=1.0), prices=prices_from_sales(sales))
    prev = cons.plan.assign(Consensus=cons.plan["Statistical"])
    cmp = compare_plans(prev, cons.plan, items=items)
    path = write(tmp_path / "sop.xlsx", finance_sheet(view), comparison_sheet(cmp, previous="Plan 2024-12 v1"),
                 overrides_audit_sheet(cons.audit))
    wb = openpyxl.load_workbook(path)
    assert {"FinanceByMonth", "FinanceByCategory", "FinanceSeries"} <= set(wb["Finance"].tables)
    assert {"ChangeSummary", "ChangeByCategory", "ChangeBySKU"} <= set(wb["Plan changes"].tables)
    assert "OverridesLog" in wb["Overrides log"].tables
    summary = dict((r[0], r[1]) for r in wb["Finance"].iter_rows(min_row=2, max_row=5, values_only=True))
    assert summary["Revenue over the horizon"] == pytest.approx(2.5 * cons.plan["Consensus"].sum(), abs=0.01)
    # the whole change of this comparison comes from the override layers
    rows = {r[0]: r[1] for r in wb["Plan changes"].iter_rows(values_only=True) if r and r[0] in
            ("Overrides", "Total change")}
    assert rows["Overrides"] == pytest.approx(rows["Total change"], abs=0.2)


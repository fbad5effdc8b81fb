"""The workbooks planners start from: the empty template and the shipped demo workbook."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from addin.actions import refresh
from addin.port import FileBook
from addin.templates import TEMPLATE_TABLES, write_template
from engine import schema as S
from engine.errors import InputError

WORKBOOKS = Path(__file__).resolve().parent.parent / "workbooks"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return write_template(tmp_path_factory.mktemp("tpl") / "Plancell Planner.xlsx")


def test_template_has_every_contract_table_with_notes_and_validation(template) -> None:
    wb = openpyxl.load_workbook(template)
    found = {name: ws for ws in wb.worksheets for name in ws.tables}
    assert set(TEMPLATE_TABLES) | {"Settings"} <= set(found)
    items = [c.value for c in found["Items"][found["Items"].tables["Items"].ref][0]]
    assert set(S.ITEMS_OPTIONAL) <= set(items) and items[0] == "SKU"
    sales = [c.value for c in found["Sales"][found["Sales"].tables["Sales"].ref][0]]
    assert set(S.SALES_REQUIRED) <= set(sales)
    for name, (sheet, cols) in TEMPLATE_TABLES.items():
        ws = wb[sheet]
        assert all(ws.cell(1, j + 1).comment is not None for j in range(len(cols)))   # a note on every header
    assert wb["Items"].data_validations.dataValidation            # e.g. ServiceLevel between 0.5 and 0.9999
    settings = {ws.cell(r, 1).value: ws.cell(r, 2).value for ws in [wb["Settings"]] for r in range(2, 20)}
    assert settings["Frequency"] == "W" and settings["ServiceTarget"] == "csl"


def test_refresh_on_the_empty_template_says_what_to_fill_in(template) -> None:
    with pytest.raises(InputError) as err:
        refresh(FileBook(template))
    assert "Sales has no data rows" in err.value.one_line()


def test_shipped_workbooks_are_there_and_readable() -> None:
    tpl = openpyxl.load_workbook(WORKBOOKS / "Plancell Planner.xlsx")
    assert {t for ws in tpl.worksheets for t in ws.tables} >= set(TEMPLATE_TABLES)
    demo = openpyxl.load_workbook(WORKBOOKS / "Plancell Demo.xlsx")
    assert {"Plan", "Accuracy", "Alerts", "Purchases", "Charts", "Scenario"} <= set(demo.sheetnames)
    assert len(demo["Charts"]._charts) >= 1

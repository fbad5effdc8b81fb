"""S&OE actions on the demo workbook: Check Execution and Run Scenario, as the buttons and
`plancell check` / `plancell scenario` run them."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from addin.actions import scenario
from addin.cli import main
from addin.port import FileBook
from addin.sheets import Sheet, TableBlock
from engine.errors import InputError


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:   # the store the autouse fixture points every test at
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        assert main(["demo", "--out", str(out), "--skus", "6", "--locations", "1", "--horizon", "6",
                     "--windows", "2", "--rounds", "30", "-q"]) == 0
    return out / "plancell-demo.xlsx"


def _table(ws, name):
    rows = [[c.value for c in r] for r in ws[ws.tables[name].ref]]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def test_demo_has_alerts_against_the_published_plan(demo) -> None:
    wb = openpyxl.load_workbook(demo)
    assert {"Plan", "Accuracy", "Alerts", "Purchases", "Charts", "Scenario", "What-if"} <= set(wb.sheetnames)
    ws = wb["Alerts"]
    block = {ws.cell(r, 1).value: ws.cell(r, 2).value for r in range(1, 6)}
    assert block["Compared with"].startswith("published snapshot 'Plan 20")
    alerts = _table(ws, "Alerts")
    assert alerts and {"Alert", "What happened", "Suggested action"} <= set(alerts[0])
    assert [a["Rank"] for a in alerts] == sorted(a["Rank"] for a in alerts)
    assert all(a["What happened"] and a["Suggested action"] for a in alerts)
    proj = _table(ws, "Projection")
    assert proj and {"StockoutDate", "NextReceiptDate", "DaysOfCoverage"} <= set(proj[0])


def test_supplier_delay_lowers_fill_rate_and_names_the_skus(demo) -> None:
    ws = openpyxl.load_workbook(demo)["Scenario"]
    summary = _table(ws, "ScenarioSummary")
    headers = " ".join(summary[0]).lower()
    assert "baseline" in headers and "fill rate" in headers
    late = next(r for r in summary if "days late" in r["Scenario"])
    assert late["Fill rate (scenario)"] < late["Fill rate (baseline)"]
    assert late["SKUs that stock out (scenario)"]           # names them
    items = openpyxl.load_workbook(demo)["Items"]
    it = _table(items, "Items")
    late_supplier = late["Scenario"].replace(" 10 days late", "")
    delayed = {r["SKU"] for r in it if r["Supplier"] == late_supplier}
    named = {s.strip().split("@")[0] for s in str(late["SKUs that stock out (scenario)"]).split(",")}
    assert named & delayed


def test_cli_check_and_scenario_on_a_copy(demo, tmp_path, capsys) -> None:
    copy = tmp_path / "copy.xlsx"
    copy.write_bytes(demo.read_bytes())
    assert main(["check", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "alerts" in out and "published snapshot" in out
    assert main(["scenario", str(copy), "--paths", "200", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "fill rate" in out and "baseline" in out


def test_results_never_overwrite_the_planners_scenario_table(demo, tmp_path) -> None:
    copy = tmp_path / "own.xlsx"
    wb = openpyxl.load_workbook(demo)
    wb["What-if"].title = "Scenario results tmp"      # keep their table where it is ...
    del wb["Scenario"]
    wb["Scenario results tmp"].title = "Scenario"      # ... on a sheet named like our output
    wb.save(copy)
    scenario(FileBook(copy), paths=100)
    after = openpyxl.load_workbook(copy)
    assert "Scenario" in after["Scenario"].tables          # their table survived
    assert "ScenarioSummary" in after["Scenario results"].tables
    port = FileBook(copy)
    with pytest.raises(InputError, match="holds your table Scenario"):
        port.write_sheet(Sheet("Scenario", [TableBlock("X", _table_frame())]))


def _table_frame():
    import pandas as pd

    return pd.DataFrame({"a": [1]})


def test_scenario_without_a_scenario_table_says_how_to_add_one(demo, tmp_path) -> None:
    copy = tmp_path / "none.xlsx"
    wb = openpyxl.load_workbook(demo)
    del wb["What-if"]
    wb.save(copy)
    with pytest.raises(InputError) as err:
        scenario(FileBook(copy), paths=50)
    assert "no table named Scenario" in err.value.one_line()

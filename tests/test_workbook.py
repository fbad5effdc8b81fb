"""The plan workbook: real named tables, typed cells, provenance, no formulas, atomic writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.worksheet.table import Table, TableStyleInfo

import addin.workbook as workbook
from addin.workbook import ACCURACY_HEADERS, PLAN_HEADERS, read_tables, write_plan_workbook
from engine.errors import InputError, PlancellBug

EVIL_SKU = '=HYPERLINK("http://evil.example","click")'


def _frames() -> dict:
    dates = pd.date_range("2024-01-07", periods=3, freq="W-SUN")
    sales = pd.DataFrame({
        "Date": list(dates) * 2,
        "SKU": ["A-1"] * 3 + [EVIL_SKU] * 3,
        "Location": ["North"] * 3 + [""] * 3,
        "Qty": [5.0, -3.0, 7.5, 1.0, 0.0, 2.0],  # -3: a return stays a number
        "Price": np.full(6, 9.99, dtype=np.float32),  # as the engine stores prices
        "Promo": [0, 1, 0, 0, 0, 1],
    })
    drivers = pd.DataFrame({"Date": dates, "Temperature": [3.5, np.nan, 4.0]})
    items = pd.DataFrame({"SKU": ["A-1", EVIL_SKU], "Category": ["Food", "Toys"], "LeadTimeDays": [7, 14]})
    periods = pd.date_range("2024-01-28", periods=2, freq="W-SUN")
    plan = pd.DataFrame({
        "SKU": ["A-1", "A-1", EVIL_SKU, EVIL_SKU],
        "Location": ["North", "North", "", ""],
        "Period": list(periods) * 2,
        "P10": [3.0, 3.5, 0.0, 0.0], "P50": [5.0, 5.5, 1.0, 1.0], "P90": [8.0, 8.5, 2.5, 2.5],
        "model_used": ["lightgbm", "lightgbm", "seasonal_naive", "seasonal_naive"],
        "reason": ["", "", "too little history", "too little history"],
        "assumed": ["Temperature", "", "", ""],
    })
    accuracy = pd.DataFrame({
        "SKU": ["A-1", EVIL_SKU], "Location": ["North", ""],
        "WAPE": [0.2, 0.5], "MASE": [0.8, 1.2], "Bias": [-0.05, 0.1],
        "Coverage P10-P90": [0.75, np.nan], "Seasonal naive WAPE": [0.3, 0.5], "Moving average WAPE": [0.4, 0.6],
        "model_used": ["lightgbm", "seasonal_naive"], "reason": ["", "too little history"],
    })
    metadata = {
        "model_name": "demo-model", "model_version": 3, "trained_at": "2024-01-21T10:00:00+00:00",
        "data_fingerprint": "sha256:abc123", "freq": "W", "horizon": 2, "n_series": 2,
    }
    summary = {  # engine.backtest.BacktestResult.overall
        "n_series": 2, "horizon": 2, "windows": 3, "coverage_p10_p90": 0.78,
        "model": {"wape": 0.21, "mase": 0.85, "bias": -0.02},
        "seasonal_naive": {"wape": 0.30, "mase": 1.00, "bias": 0.01},
        "moving_average": {"wape": 0.33, "mase": 1.10, "bias": 0.05},
    }
    return dict(sales=sales, drivers=drivers, items=items, plan=plan, accuracy=accuracy,
                metadata=metadata, summary=summary)


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    return write_plan_workbook(tmp_path / "plan.xlsx", **_frames())


def _table_cells(ws, table) -> list[list]:
    return [[c.value for c in row] for row in ws[table.ref]]


def _all_cells(wb):
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            yield from row


def test_tables_exist_by_name_with_headers_and_values(book: Path) -> None:
    wb = openpyxl.load_workbook(book)
    found = {name: ws for ws in wb.worksheets for name in ws.tables}
    assert set(found) == {"Sales", "Drivers", "Items", "Plan", "Accuracy"}
    assert {n: ws.title for n, ws in found.items()} == {n: n for n in found}

    sales = _table_cells(found["Sales"], found["Sales"].tables["Sales"])
    assert sales[0] == ["Date", "SKU", "Location", "Qty", "Price", "Promo"]
    assert sales[1][1:] == ["A-1", "North", 5, 9.99, 0]
    assert sales[2][3] == -3  # a negative number is a number, not neutralised text

    plan_ws = found["Plan"]
    plan = _table_cells(plan_ws, plan_ws.tables["Plan"])
    assert tuple(plan[0]) == PLAN_HEADERS
    assert plan[1][:6] == ["A-1", "North", dt.datetime(2024, 1, 28), 3, 5, 8]
    assert plan[1][6:] == ["lightgbm", None, "Temperature"]
    acc_ws = found["Accuracy"]
    acc = _table_cells(acc_ws, acc_ws.tables["Accuracy"])
    assert tuple(acc[0]) == tuple(h for h in ACCURACY_HEADERS if h != "Baseline WAPE")
    assert acc[1][6:8] == [0.3, 0.4]
    assert acc[1][2:5] == [0.2, 0.8, -0.05]
    assert acc[2][5] is None  # NaN coverage is a blank cell, not an error value


def test_cells_are_typed_dates_numbers_and_percentages(book: Path) -> None:
    wb = openpyxl.load_workbook(book)
    date_cell = wb["Sales"]["A2"]
    assert date_cell.is_date and date_cell.value == dt.datetime(2024, 1, 7)
    assert "yy" in date_cell.number_format
    assert wb["Sales"]["D2"].data_type == "n"
    acc_ws = wb["Accuracy"]
    first = int(acc_ws.tables["Accuracy"].ref.split(":")[0][1:]) + 1
    assert acc_ws[f"C{first}"].number_format.endswith("%")  # WAPE
    assert acc_ws[f"E{first}"].number_format.endswith("%")  # Bias
    assert not acc_ws[f"D{first}"].number_format.endswith("%")  # MASE is a ratio
    assert acc_ws[f"G{first}"].number_format.endswith("%")  # seasonal naive WAPE
    assert wb["Drivers"]["B3"].value is None  # NaN temperature left blank


def test_formula_injection_is_neutralised_and_no_formulas_anywhere(book: Path) -> None:
    wb = openpyxl.load_workbook(book)
    skus = [c.value for c in wb["Sales"]["B"][1:]]
    assert "'" + EVIL_SKU in skus and EVIL_SKU not in skus
    assert all(c.data_type != "f" for c in _all_cells(wb))
    # Excel would evaluate any string starting with "=" typed into a cell: none here.
    assert not any(isinstance(c.value, str) and c.value.startswith("=") for c in _all_cells(wb))


def test_provenance_block_above_the_plan(book: Path) -> None:
    ws = openpyxl.load_workbook(book)["Plan"]
    header_row = int(ws.tables["Plan"].ref.split(":")[0][1:])
    block = {ws.cell(r, 1).value: ws.cell(r, 2).value for r in range(1, header_row)}
    assert block["Model"] == "demo-model"
    assert block["Model version"] == 3
    assert block["Trained at"] == "2024-01-21T10:00:00+00:00"
    assert block["Data fingerprint"] == "sha256:abc123"
    assert block["Plancell version"]
    assert block["Frequency"].startswith("W")
    assert block["Horizon (periods)"] == 2
    assert ws.freeze_panes == f"A{header_row + 1}"  # headers stay visible when scrolling


def test_accuracy_summary_compares_model_with_baselines(book: Path) -> None:
    ws = openpyxl.load_workbook(book)["Accuracy"]
    header_row = int(ws.tables["Accuracy"].ref.split(":")[0][1:])
    rows = {ws.cell(r, 1).value: [ws.cell(r, c).value for c in (2, 3, 4)] for r in range(1, header_row)}
    assert rows["Plancell model"] == [0.21, 0.85, -0.02]
    assert rows["Seasonal naive"] == [0.30, 1.00, 0.01]
    assert rows["Moving average"] == [0.33, 1.10, 0.05]
    assert rows["Coverage P10-P90"][0] == 0.78
    assert rows["Backtest windows"][0] == 3
    assert rows["Horizon (periods)"][0] == 2
    assert rows["Series on a baseline"][0] == 1


def test_summary_defaults_to_the_backtest_in_metadata(tmp_path: Path) -> None:
    frames = _frames()
    frames["metadata"] = {**frames["metadata"], "backtest": frames.pop("summary")}  # as engine.plan stores it
    ws = openpyxl.load_workbook(write_plan_workbook(tmp_path / "p.xlsx", **frames))["Accuracy"]
    assert [ws.cell(3, c).value for c in (1, 2)] == ["Plancell model", 0.21]


def test_accuracy_baseline_columns_follow_the_engine(tmp_path: Path) -> None:
    frames = _frames()
    acc = frames["accuracy"].drop(columns=["Moving average WAPE"])
    frames["accuracy"] = acc.rename(columns={"Seasonal naive WAPE": "Baseline WAPE"})
    tables = read_tables(write_plan_workbook(tmp_path / "p.xlsx", **frames))
    assert list(tables["Accuracy"][0].columns) == [
        "SKU", "Location", "WAPE", "MASE", "Bias", "Coverage P10-P90", "Baseline WAPE", "Model used", "Reason"]

    frames["accuracy"] = acc.drop(columns=["Seasonal naive WAPE"])
    with pytest.raises(PlancellBug, match="Baseline WAPE"):
        write_plan_workbook(tmp_path / "q.xlsx", **frames)
    assert not (tmp_path / "q.xlsx").exists()


def test_read_tables_round_trips_sales_with_excel_row_numbers(book: Path) -> None:
    tables = read_tables(book)
    assert set(tables) == {"Sales", "Drivers", "Items", "Plan", "Accuracy"}
    sales, first_row = tables["Sales"]
    assert first_row == 2
    expected = _frames()["sales"].copy()
    expected.loc[expected["SKU"] == EVIL_SKU, "SKU"] = "'" + EVIL_SKU
    expected["Location"] = expected["Location"].replace("", None)  # Excel has no empty strings
    pd.testing.assert_frame_equal(sales, expected, check_dtype=False)
    assert pd.api.types.is_datetime64_any_dtype(sales["Date"])

    plan, plan_first = tables["Plan"]
    ws = openpyxl.load_workbook(book)["Plan"]
    assert ws.cell(plan_first, 1).value == plan.iloc[0]["SKU"] == "A-1"
    assert ws.cell(plan_first - 1, 1).value == "SKU"


def test_read_tables_any_sheet_offset_header_and_totals_row(tmp_path: Path) -> None:
    path = tmp_path / "planner.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Notes"
    other = wb.create_sheet("My data")
    other["C5"], other["D5"] = "SKU", "Units sold"
    other.append([])  # keep row numbers explicit below
    for r, (sku, qty) in enumerate([("X", 1), ("Y", 2)], start=6):
        other.cell(r, 3, sku)
        other.cell(r, 4, qty)
    other.cell(8, 3, "Total")
    other.cell(8, 4, 3)
    t = Table(displayName="Sales", ref="C5:D8", totalsRowCount=1)
    t.tableStyleInfo = TableStyleInfo(name="TableStyleMedium9")
    other.add_table(t)
    wb.save(path)

    df, first = read_tables(path)["Sales"]
    assert first == 6
    assert list(df.columns) == ["SKU", "Units sold"]
    assert df.to_dict("list") == {"SKU": ["X", "Y"], "Units sold": [1, 2]}  # totals row left out


def test_empty_table_is_still_a_table(tmp_path: Path) -> None:
    frames = _frames()
    frames["items"] = frames["items"].iloc[0:0]
    path = write_plan_workbook(tmp_path / "plan.xlsx", **frames)
    items, first = read_tables(path)["Items"]
    assert list(items.columns) == ["SKU", "Category", "LeadTimeDays"]
    assert items.empty and first == 2


@pytest.mark.parametrize("content, name", [
    (b"Date,SKU,Qty\n2024-01-01,A,1\n", "sales.xlsx"),
    (b"PK\x03\x04 not really a zip", "broken.xlsx"),
    (b"Date,SKU,Qty\n", "sales.csv"),
])
def test_read_tables_refuses_non_workbooks_with_a_fix(tmp_path: Path, content: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_tables(path)
    msg = err.value.report()
    assert name in msg and ".xlsx" in msg
    assert err.value.problems and err.value.problems[0].fix


def test_read_tables_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        read_tables(tmp_path / "nope.xlsx")
    assert "nope.xlsx" in err.value.one_line() and "does not exist" in err.value.one_line()


def test_write_is_atomic_a_crash_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_plan_workbook(tmp_path / "plan.xlsx", **_frames())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(workbook, "accuracy_sheet", boom)
    with pytest.raises(RuntimeError):
        write_plan_workbook(path, **_frames())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["plan.xlsx"]  # no temp file left behind


def test_overwrite_replaces_the_workbook(tmp_path: Path) -> None:
    frames = _frames()
    path = write_plan_workbook(tmp_path / "sub" / "plan.xlsx", **frames)
    frames["metadata"] = {**frames["metadata"], "model_name": "second"}
    write_plan_workbook(path, **frames)
    ws = openpyxl.load_workbook(path)["Plan"]
    assert ws["B2"].value == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["plan.xlsx"]


def _policy_frames() -> dict:
    from engine.policy import POLICY_COLUMNS

    f = _frames()
    pol = pd.DataFrame({c: [np.nan, np.nan] for c in POLICY_COLUMNS})
    pol["SKU"], pol["Location"] = ["A-1", EVIL_SKU], ["North", ""]
    pol["Class"], pol["Pattern"], pol["Policy"] = ["AX", "C?"], ["smooth", "intermittent"], ["(R, S)", "(s, S)"]
    pol["ServiceLevel"], pol["SafetyStock"], pol["SuggestedOrder"] = [0.95, 0.9], [12.5, 3.0], [24.0, 0.0]
    pol["DaysOfCoverage"] = [12.0, np.inf]   # no demand: infinite coverage is a blank, not an error
    pol["InventoryValue"], pol["Strategic"], pol["Notes"] = [1234.5, 0.0], [True, False], ["", "=cmd|' /C calc'!A0"]
    buy = pd.DataFrame({"Rank": [1], "SKU": ["A-1"], "Location": ["North"], "OrderQty": [24.0],
                        "OrderValue": [48.0], "Urgency": ["late"], "InBudget": [True], "Why": ["stock lasts 2 days"]})
    f.update(policy=pol, purchases=buy, budget=100.0)
    return f


def test_policy_table_sits_between_provenance_and_forecast(tmp_path: Path) -> None:
    book = write_plan_workbook(tmp_path / "p.xlsx", **_policy_frames())
    wb = openpyxl.load_workbook(book)
    ws = wb["Plan"]
    pol_top = int(ws.tables["Policy"].ref.split(":")[0][1:])
    plan_top = int(ws.tables["Plan"].ref.split(":")[0][1:])
    assert pol_top < plan_top
    block = {ws.cell(r, 1).value: ws.cell(r, 2).value for r in range(1, pol_top)}
    assert block["Model"] == "demo-model"        # provenance still on top
    rows = _table_cells(ws, ws.tables["Policy"])
    head = rows[0]
    assert head[:5] == ["SKU", "Location", "Class", "Demand pattern", "Policy"]
    assert {"Safety stock", "Reorder point", "Order-up-to level", "Order now", "Stock-out risk before receipt",
            "Days of coverage", "Inventory value", "Notes"} <= set(head)
    first = dict(zip(head, rows[1]))
    assert first["Safety stock"] == 12.5 and first["Order now"] == 24 and first["Strategic"] is True
    second = dict(zip(head, rows[2]))
    assert second["Days of coverage"] is None
    assert second["Notes"].startswith("'=")        # formula injection neutralised
    col = head.index("Service level") + 1
    assert ws.cell(pol_top + 1, col).number_format.endswith("%")
    assert ws.freeze_panes == f"A{pol_top + 1}"


def test_purchases_sheet_lists_the_ranked_orders(tmp_path: Path) -> None:
    book = write_plan_workbook(tmp_path / "p.xlsx", **_policy_frames())
    ws = openpyxl.load_workbook(book)["Purchases"]
    rows = _table_cells(ws, ws.tables["Purchases"])
    assert rows[0][:3] == ["Rank", "SKU", "Location"] and "In budget" in rows[0] and "Why" in rows[0]
    assert rows[1][:3] == [1, "A-1", "North"]
    assert "budget of 100.00" in ws["A2"].value

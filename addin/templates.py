"""The workbooks planners start from (``workbooks/``).

``python -m addin.templates [DIR]`` writes ``Plancell Planner.xlsx`` (the empty template:
every data-contract table with a note on each header and data validation) and
``Plancell Demo.xlsx`` (the demo workbook: synthetic retail data, planned, checked and
simulated, as ``plancell demo`` writes it).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["TEMPLATE_TABLES", "write_template", "main"]

_log = logging.getLogger(__name__)

#: Table -> (sheet, [(header, note, validation)]). Validation is an xlsxwriter
#: data_validation dict (applied to the first 5,000 rows) or None.
_DATE = {"validate": "date", "criteria": ">", "value": "1990-01-01T00:00:00",
         "error_message": "Enter a date (yyyy-mm-dd)."}
_NONNEG = {"validate": "decimal", "criteria": ">=", "value": 0, "error_message": "Enter 0 or more."}
_FLAG = {"validate": "list", "source": ["0", "1"], "error_message": "Enter 1 (yes) or 0 (no)."}
_BOOL = {"validate": "list", "source": ["TRUE", "FALSE"], "error_message": "Enter TRUE or FALSE."}
_PROB = {"validate": "decimal", "criteria": "between", "minimum": 0.5, "maximum": 0.9999,
         "error_message": "Enter a probability such as 0.95 (95 %)."}

TEMPLATE_TABLES: dict[str, tuple[str, list[tuple[str, str, dict[str, Any] | None]]]] = {
    "Sales": ("Sales", [
        ("Date", "Period date: one row per SKU, location and period (day, week or month start).", _DATE),
        ("SKU", "Item code, as in Items.", None),
        ("Location", "Store or warehouse (optional).", None),
        ("Qty", "Units sold in the period. Leave blank on future rows that only plan Price/Promo.", None),
        ("Price", "Selling price (optional; future rows = planned price).", _NONNEG),
        ("Promo", "1 if on promotion in the period, else 0 (optional; future rows = planned).", _FLAG),
        ("OnHand", "Stock at the end of the period (optional): 0 marks a stock-out, whose sales understate "
                   "demand.", _NONNEG),
    ]),
    "Drivers": ("Drivers", [
        ("Date", "Period date. Future rows carry planned or forecast values.", _DATE),
        ("Location", "Location the driver applies to (blank = all).", None),
        ("Temperature", "Any numeric driver; rename or add columns (CPI, FuelPrice ...).", None),
        ("CPI", "Consumer price index (or any other driver).", None),
    ]),
    "Items": ("Items", [
        ("SKU", "Item code.", None),
        ("Location", "Blank = every location of the SKU.", None),
        ("Category", "Product group (optional).", None),
        ("Supplier", "Supplier name (for supplier-delay scenarios).", None),
        ("LeadTimeDays", "Days from order to receipt.", _NONNEG),
        ("LeadTimeStdDays", "Standard deviation of the lead time, days.", _NONNEG),
        ("ReviewPeriodDays", "Days between order reviews (blank: continuous review).", _NONNEG),
        ("ServiceLevel", "Target cycle service level, e.g. 0.95 (blank: the class default).", _PROB),
        ("FillRateTarget", "Target fill rate when Settings ServiceTarget = fill_rate.", _PROB),
        ("UnitCost", "Cost per unit (values, ABC, budget).", _NONNEG),
        ("MOQ", "Minimum order quantity, units.", _NONNEG),
        ("OrderMultiple", "Order in multiples of (case pack), units.", _NONNEG),
        ("OnHand", "Units on hand now.", _NONNEG),
        ("OnOrder", "Units ordered, not yet received.", _NONNEG),
        ("Strategic", "TRUE for strategic items (bought first).", _BOOL),
    ]),
    "OpenOrders": ("Open orders", [
        ("SKU", "Item code.", None), ("Location", "Receiving location.", None),
        ("Qty", "Units on the order.", _NONNEG), ("DueDate", "Promised receipt date.", _DATE),
        ("Supplier", "Supplier (optional).", None),
    ]),
    "Deliveries": ("Deliveries", [
        ("Order", "Order number.", None), ("SKU", "Item code.", None), ("Location", "Location.", None),
        ("PromisedDate", "Promised date.", _DATE), ("PromisedQty", "Promised units.", _NONNEG),
        ("DeliveredDate", "Actual delivery date.", _DATE), ("DeliveredQty", "Delivered units.", _NONNEG),
    ]),
    "Overrides": ("Overrides", [
        ("SKU", "The SKU to change; blank when the row changes a whole Category.", None),
        ("Category", "The Items category to change (instead of a SKU); split down in proportion to the forecast.",
         None),
        ("Location", "Blank = every location.", None),
        ("From", "First period changed (blank: the start of the horizon).", _DATE),
        ("To", "Last period changed (blank: the end of the horizon).", _DATE),
        ("Qty", "New forecast in units per period for the whole target (or use Pct).", _NONNEG),
        ("Pct", "Change in percent, e.g. +10% or -5% (or use Qty).", None),
        ("Layer", "Sales, Marketing, Finance or Consensus: applied in this order, each on the one before.",
         {"validate": "list", "source": ["Sales", "Marketing", "Finance", "Consensus"]}),
        ("Reason", "Why (promotion, new listing, price rise ...): the FVA sheet reports value added by reason.",
         None),
        ("Author", "Who made the change.", None),
        ("Locked", "TRUE: keep this Qty whatever later layers or the next refresh do.", _BOOL),
    ]),
    "Scenario": ("What-if", [
        ("Scenario", "Name of the scenario; rows with the same name form one scenario.", None),
        ("Type", "Supplier delay, Demand change, Driver, Service level or Lead time.",
         {"validate": "list", "source": ["Supplier delay", "Demand change", "Driver", "Service level", "Lead time"]}),
        ("Target", "All, SKU, Category, Supplier or Location.",
         {"validate": "list", "source": ["All", "SKU", "Category", "Supplier", "Location"]}),
        ("Name", "Which SKU, category, supplier or location.", None),
        ("Value", "Days (delay, lead time), percent (demand), units of the driver, or the new service level.",
         None),
        ("Start", "Optional first date affected.", _DATE), ("End", "Optional last date affected.", _DATE),
        ("Dip", "Demand change only: percent lost in the period after End.", None),
        ("Driver", "Driver type only: the driver column, e.g. Temperature.", None),
    ]),
}

_SETTINGS = [
    ("Frequency", "W", "D (daily), W (weekly) or MS (monthly); blank: inferred from Sales.", ["D", "W", "MS"]),
    ("Horizon", 12, "Periods to forecast.", None),
    ("Windows", 3, "Backtest windows (rolling origins).", None),
    ("Quantiles", "0.1, 0.5, 0.9", "Forecast quantiles written to the Plan.", None),
    ("HolidayCountry", "US", "Country code for public holidays (US, GB, DE, FR ...).", None),
    ("ServiceTarget", "csl", "csl (cycle service level) or fill_rate.", ["csl", "fill_rate"]),
    ("Model", None, "Name of the model in the store; blank: this file's name.", None),
    ("OrderCost", None, "Cost of placing one order (for the EOQ); blank: no EOQ.", None),
    ("HoldingRate", 0.25, "Yearly holding cost as a fraction of unit cost.", None),
    ("Budget", None, "Purchase budget for the Purchases sheet (optional).", None),
    ("ServiceLevel.A", "98%", "Default service level of class A items (also .B, .C, .AX ...).", None),
    ("ServiceLevel.B", "95%", "Default service level of class B items.", None),
    ("ServiceLevel.C", "90%", "Default service level of class C items.", None),
]

_START = [
    "1. Paste your sales history into the Sales table (one row per SKU, location and period).",
    "2. Fill Items (lead times, costs, stock) and, if you have them, Drivers (weather, CPI ...).",
    "3. Check Settings, then press Plancell > Refresh Plan (or run: plancell refresh \"this file.xlsx\").",
    "4. Read the Plan, Accuracy and Purchases sheets; publish with Plancell > Publish Snapshot.",
    "5. Weekly (S&OE): update Sales, Items stock and Open orders, then Plancell > Check Execution.",
    "6. Monthly (S&OP): sales, marketing and finance enter their changes in the Overrides table; Refresh Plan "
    "shows statistical, each layer and the consensus side by side, and the FVA sheet shows which changes helped.",
    "Cells can ask the plan directly: =FORECAST_SKU(\"SKU-001\", 12), =SAFETY_STOCK(\"SKU-001\"), "
    "=REORDER_POINT(...), =ORDER_QTY(...), =FORECAST_DRIVERS(...), =SKU_CLASS(...), =PLAN_INFO().",
    "Tables are found by name (Table Design > Table Name), not by sheet: you can move them anywhere.",
]


def write_template(path: str | Path) -> Path:
    """Write the empty planner template (every contract table, notes, validation)."""
    import xlsxwriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False})
    title = wb.add_format({"bold": True, "font_size": 14})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws = wb.add_worksheet("Start here")
    ws.write_string(0, 0, "Plancell planner", title)
    for i, line in enumerate(_START, start=2):
        ws.write_string(i, 0, line, wrap)
    ws.set_column(0, 0, 110)
    for table, (sheet, cols) in TEMPLATE_TABLES.items():
        ws = wb.add_worksheet(sheet)
        headers = [c for c, _, _ in cols]
        ws.add_table(0, 0, 1, len(headers) - 1, {"name": table, "style": "Table Style Medium 2",
                                                  "columns": [{"header": h} for h in headers]})
        for j, (h, note, valid) in enumerate(cols):
            ws.write_comment(0, j, note, {"x_scale": 2, "y_scale": 1.2})
            if valid is not None:
                ws.data_validation(1, j, 5000, j, dict(valid))
            if valid is _DATE:
                ws.set_column(j, j, 12, date_fmt)
            else:
                ws.set_column(j, j, max(10, len(h) + 4))
        ws.freeze_panes(1, 0)
    ws = wb.add_worksheet("Settings")
    ws.add_table(0, 0, len(_SETTINGS), 2, {"name": "Settings", "style": "Table Style Medium 2",
                                           "columns": [{"header": "Key"}, {"header": "Value"}, {"header": "Notes"}]})
    for i, (key, value, note, choices) in enumerate(_SETTINGS, start=1):
        ws.write_string(i, 0, key)
        if isinstance(value, (int, float)):
            ws.write_number(i, 1, value)
        elif value is not None:
            ws.write_string(i, 1, value)
        ws.write_string(i, 2, note)
        if choices:
            ws.data_validation(i, 1, i, 1, {"validate": "list", "source": choices})
    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 2, 70)
    wb.close()
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the template and the demo workbook into DIR (default ``workbooks``)."""
    import shutil
    import tempfile

    from .cli import main as cli_main

    out = Path((argv if argv is not None else sys.argv[1:])[0] if (argv or sys.argv[1:]) else "workbooks")
    write_template(out / "Plancell Planner.xlsx")
    with tempfile.TemporaryDirectory() as tmp:
        code = cli_main(["demo", "--out", tmp, "-q"])
        if code:
            return code
        shutil.copyfile(Path(tmp) / "plancell-demo.xlsx", out / "Plancell Demo.xlsx")
    print(f"wrote {out / 'Plancell Planner.xlsx'} and {out / 'Plancell Demo.xlsx'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Canonical column names of the data contract (see DESIGN.md, "Data contract").

Validated tables use exactly these names, whatever the user's headers were.
A series is one (SKU, Location) pair; ``Location`` is ``""`` when the data has none.
"""

from __future__ import annotations

__all__ = [
    "quantile_column",
    "DATE", "SKU", "LOCATION", "QTY", "PRICE", "PROMO", "ONHAND", "CATEGORY",
    "KEYS", "SALES_REQUIRED", "SALES_OPTIONAL", "ITEMS_OPTIONAL", "NO_LOCATION", "PLAN_TABLES", "INPUT_TABLES",
]

#: The tables a plan is trained from (DESIGN.md, "Data contract").
PLAN_TABLES: tuple[str, ...] = ("Sales", "Drivers", "Items", "Settings")
#: Every table the planner keeps in a workbook for Plancell to read (S&OE and scenarios too).
INPUT_TABLES: tuple[str, ...] = PLAN_TABLES + ("OpenOrders", "Deliveries", "Scenario")

DATE = "Date"
SKU = "SKU"
LOCATION = "Location"
QTY = "Qty"
PRICE = "Price"
PROMO = "Promo"
ONHAND = "OnHand"
CATEGORY = "Category"

NO_LOCATION = ""
KEYS = (SKU, LOCATION)

SALES_REQUIRED = (DATE, SKU, QTY)
SALES_OPTIONAL = (LOCATION, PRICE, PROMO, ONHAND)
DRIVERS_REQUIRED = (DATE,)
ITEMS_REQUIRED = (SKU,)
ITEMS_OPTIONAL = (
    LOCATION, CATEGORY, "LeadTimeDays", "LeadTimeStdDays", "ServiceLevel", "FillRateTarget",
    "UnitCost", "MOQ", "OrderMultiple", "ReviewPeriodDays", "OnHand", "OnOrder", "Strategic", "Supplier",
)


def quantile_column(q: float) -> str:
    """Column name of a quantile: 0.1 -> ``P10``, 0.975 -> ``P97.5``."""
    v = round(float(q) * 100, 6)
    return f"P{int(v)}" if float(v).is_integer() else f"P{v:g}"

"""What Plancell writes on its output sheets, independent of how it gets there.

An output sheet (Plan, Accuracy, Purchases, a published snapshot) is described once as a
:class:`Sheet`: a column of blocks (titles, notes, label/value pairs, small grids, Excel
tables). :func:`render` lays the blocks out row by row and hands every cell to a *sink*:
XlsxWriter for new files, openpyxl for a planner's existing workbook
(:mod:`addin.port`), or a live Excel workbook through xlwings. So the demo, ``plancell
refresh BOOK`` and the Refresh Plan button produce the same sheet, cell for cell.

Everything written is a value (numbers as numbers, dates as dates, text neutralised
against formula injection): the workbook reads correctly without the add-in.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from .safe import safe_text

__all__ = [
    "Sheet", "Title", "Note", "Pairs", "Grid", "TableBlock", "ChartData", "BandChart", "Sink", "render",
    "number_format", "charts_sheet", "snapshot_sheet", "snapshot_name",
    "FORMATS", "plan_sheet", "accuracy_sheet", "purchases_sheet", "table_sheet", "display", "data_quality_sheet",
    "DATA_QUALITY_HEADERS",
    "PLAN_HEADERS", "ACCURACY_HEADERS", "POLICY_HEADERS", "PURCHASE_HEADERS",
]

#: Excel number formats by kind.
FORMATS: dict[str, str] = {
    "date": "yyyy-mm-dd",   # ISO: unambiguous whatever the reader's locale
    "percent": "0.0%",
    "ratio": "0.00",
    "quantity": "#,##0.0",
    "money": "#,##0.00",
}
TABLE_STYLE = "TableStyleMedium2"
MIN_WIDTH, MAX_WIDTH = 8, 50

#: Plan table headers, in order, as the planner sees them.
PLAN_HEADERS: tuple[str, ...] = (
    "SKU", "Location", "Period", "P10", "P50", "P90", "Model used", "Reason", "Assumed drivers",
)
#: Accuracy table headers, in order. The baseline columns are those the engine provides
#: (at least one): ``Seasonal naive WAPE`` / ``Moving average WAPE``, or one ``Baseline WAPE``.
ACCURACY_HEADERS: tuple[str, ...] = (
    "SKU", "Location", "WAPE", "MASE", "Bias", "Coverage P10-P90",
    "Seasonal naive WAPE", "Moving average WAPE", "Baseline WAPE", "Model used", "Reason",
)
ACCURACY_BASELINES = ("Seasonal naive WAPE", "Moving average WAPE", "Baseline WAPE")
#: Inventory policy table (one row per SKU-location) on the Plan sheet: engine name -> header.
POLICY_HEADERS: dict[str, str] = {
    "SKU": "SKU", "Location": "Location", "Class": "Class", "Pattern": "Demand pattern", "Policy": "Policy",
    "ServiceTarget": "Service target", "ServiceLevel": "Service level", "ServiceLevelSource": "Service level from",
    "Method": "Safety stock method", "LeadTimeDays": "Lead time (days)", "LeadTimeStdDays": "Lead time sd (days)",
    "ReviewPeriodDays": "Review period (days)", "DemandOverProtection": "Forecast over lead time + review",
    "SafetyStock": "Safety stock", "ReorderPoint": "Reorder point", "OrderUpTo": "Order-up-to level",
    "EOQ": "EOQ", "OrderQty": "Order qty", "OnHand": "On hand", "OnOrder": "On order",
    "InventoryPosition": "Inventory position", "SuggestedOrder": "Order now", "DailyDemand": "Daily demand",
    "DaysOfCoverage": "Days of coverage", "Turnover": "Turns per year", "ProjectedFillRate": "Projected fill rate",
    "StockoutRisk": "Stock-out risk before receipt", "ExpectedShortUnits": "Expected units short",
    "ExcessUnits": "Excess units", "InventoryValue": "Inventory value", "ExcessValue": "Excess value",
    "UnitCost": "Unit cost", "MOQ": "MOQ", "OrderMultiple": "Order multiple", "Strategic": "Strategic",
    "Notes": "Notes",
}
#: Purchases table (ranked orders): engine name -> header.
PURCHASE_HEADERS: dict[str, str] = {
    "Rank": "Rank", "SKU": "SKU", "Location": "Location", "Class": "Class", "Strategic": "Strategic",
    "OrderQty": "Order qty", "SuggestedOrder": "Suggested qty", "OrderValue": "Order value",
    "DaysOfStock": "Days of stock", "LeadTimeDays": "Lead time (days)", "SlackDays": "Slack (days)",
    "Urgency": "Urgency", "StockoutRisk": "Stock-out risk before receipt", "ServiceImpact": "Service impact",
    "ImpactBasis": "Impact in", "InBudget": "In budget", "CumulativeValue": "Cumulative value", "Why": "Why",
}
# Engine frames use snake_case for a few columns; the sheet uses words.
ENGINE_NAMES = {"model_used": "Model used", "reason": "Reason", "assumed": "Assumed drivers", "Date": "Period"}

_KIND_OF_HEADER: dict[str, str] = {
    **{h: "percent" for h in ("WAPE", "Bias", "Coverage P10-P90", *ACCURACY_BASELINES, "Service level",
                              "Projected fill rate", "Stock-out risk before receipt")},
    **{h: "ratio" for h in ("MASE", "Turns per year", "Days of coverage", "Days of stock", "Slack (days)",
                            "Daily demand")},
    **{h: "quantity" for h in ("P10", "P50", "P90", "Statistical", "Sales layer", "Marketing layer", "Finance layer",
                               "Consensus", "Forecast over lead time + review", "Safety stock",
                               "Reorder point", "Order-up-to level", "EOQ", "Expected units short",
                               "Excess units")},
    **{h: "money" for h in ("Inventory value", "Excess value", "Unit cost", "Order value", "Cumulative value",
                            "Service impact")},
}
_FREQ_WORDS = {"D": "D (daily)", "W": "W (weekly)", "MS": "MS (monthly)"}


def number_format(header: str) -> str | None:
    """The number-format kind of a column, by its header (None: General)."""
    return _KIND_OF_HEADER.get(header)


# --------------------------------------------------------------------------- the content model


@dataclass
class Title:
    text: str


@dataclass
class Note:
    text: str


@dataclass
class Pairs:
    """Label / value rows (a provenance block); ``kinds`` gives a number format per label."""

    items: list[tuple[str, Any]]
    kinds: dict[str, str] = field(default_factory=dict)


@dataclass
class Grid:
    """A small bold-headed grid (not an Excel table), e.g. the accuracy summary."""

    header: list[str]
    rows: list[list[Any]]
    kinds: list[str | None] = field(default_factory=list)


@dataclass
class TableBlock:
    """An Excel Table named ``name``; columns formatted by header (:func:`number_format`)."""

    name: str
    frame: pd.DataFrame
    freeze: bool = False   # freeze the panes under this table's header


@dataclass
class BandChart:
    """A native line chart: actuals and the P50 forecast as solid lines between dashed P10
    and P90 lines (the band). Plain line series render the same in Excel and LibreOffice,
    where stacked-area bands drew a second value axis.

    Columns are positions in the :class:`ChartData` frame: ``x`` the periods; ``lo``, ``hi``
    the P10 and P90; ``lines`` (column, name) pairs drawn solid."""

    title: str
    x: int
    lo: int
    hi: int
    lines: list[tuple[int, str]]


@dataclass
class ChartData:
    """A block of chart data (written as plain cells) and the charts drawn from it, placed
    to the right of the data."""

    frame: pd.DataFrame
    charts: list[BandChart]


@dataclass
class Sheet:
    name: str
    blocks: list[Any]
    widths: dict[int, float] = field(default_factory=dict)   # fixed column widths (0-based)


class Sink(Protocol):
    """Where rendered cells go (0-based rows and columns)."""

    def cell(self, row: int, col: int, value: Any, kind: str | None = None, style: str | None = None) -> None: ...
    def table(self, name: str, top: int, left: int, bottom: int, right: int, headers: list[str],
              kinds: list[str | None]) -> None: ...
    def width(self, col: int, width: float) -> None: ...
    def freeze(self, row: int) -> None: ...
    def chart(self, chart: BandChart, *, first: int, last: int, anchor: tuple[int, int]) -> None: ...
    # Optional: ``rows(top, columns, kinds)`` takes a table's data rows at once (one list of
    # cell values per column, from row ``top`` down) instead of a ``cell`` call per cell.


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return not np.isfinite(value)  # inf has no honest cell value either
    return False


def cell_value(value: Any) -> Any:
    """A Python value a cell can hold: None (blank), bool, float, datetime or safe text."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, _dt.datetime):
        return value.replace(tzinfo=None) if value.tzinfo is not None else value  # Excel has no time zones
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, numbers.Number):
        return float(value)
    text = safe_text(value if isinstance(value, str) else str(value))
    return text or None  # a blank cell, not an empty string (ISBLANK stays TRUE in Excel)


def _display_width(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 5
    if isinstance(value, _dt.datetime):
        return 10
    if isinstance(value, float):
        return min(len(f"{value:,.2f}"), 15)
    return len(str(value))


def _widen_float32(df: pd.DataFrame) -> pd.DataFrame:
    """float32 -> float64 through the shortest decimal repr: a price stored as float32 2.62
    must reach Excel as 2.62, not 2.619999885559082."""
    cols = [c for c in df.columns if df[c].dtype == np.float32]
    if not cols:
        return df
    out = df.copy(deep=False)
    for c in cols:
        out[c] = df[c].to_numpy().astype(str).astype(np.float64)
    return out


def _column_values(col: pd.Series) -> tuple[list[Any], int]:
    """The cell values of a table column (exactly :func:`cell_value` of each) and the widest
    one's display width, converted a column at a time: a plan of 100,000 rows renders
    without a Python call per cell for the conversion."""
    arr = col.to_numpy()
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        vals = [float(x) if ok else None for x, ok in zip(arr.tolist(), finite.tolist())]
        if not finite.any():
            return vals, 0
        # ",.2f" text grows with the magnitude, so the widest is the largest or the smallest
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        return vals, max(_display_width(lo), _display_width(hi))
    if arr.dtype.kind in "iu":
        vals = [float(x) for x in arr.tolist()]
        if not vals:
            return vals, 0
        return vals, max(_display_width(float(arr.min())), _display_width(float(arr.max())))
    if arr.dtype.kind == "b":
        return [bool(x) for x in arr.tolist()], 5 if len(arr) else 0
    if arr.dtype.kind == "M":
        # dates: one conversion per distinct value (a plan has a dozen periods in 100,000 rows)
        codes, uniques = pd.factorize(col)
        conv = [cell_value(u) for u in uniques]
        vals = [conv[k] if k >= 0 else None for k in codes.tolist()]
        return vals, max((_display_width(v) for v in conv if v is not None), default=0)
    # text and anything mixed: one conversion per distinct value
    memo: dict[Any, Any] = {}
    vals = []
    width = 0
    for v in col.tolist() if arr.dtype.kind != "M" else list(col):
        key = (type(v), v)   # by type too: True == 1 == 1.0 are different cells
        try:
            out = memo[key]
        except (KeyError, TypeError):
            out = cell_value(v)
            try:
                memo[key] = out
            except TypeError:   # unhashable: converted every time
                pass
        vals.append(out)
    for out in set(x for x in vals if x is not None and not isinstance(x, float)) if vals else ():
        width = max(width, _display_width(out))
    floats = [x for x in vals if isinstance(x, float)]
    if floats:
        width = max(width, _display_width(min(floats)), _display_width(max(floats)))
    return vals, width


def render(sheet: Sheet, sink: Sink, *, first_row: int = 0) -> dict[str, tuple[int, int]]:
    """Write ``sheet`` through ``sink``; returns each table's (header row, last row), 0-based."""
    r = first_row
    widths: dict[int, int] = {}
    placed: dict[str, tuple[int, int]] = {}
    freeze_at: int | None = None

    def grow(c: int, w: int) -> None:
        if w > widths.get(c, 0):
            widths[c] = w

    for block in sheet.blocks:
        if isinstance(block, Title):
            sink.cell(r, 0, safe_text(block.text), style="title")
            r += 1
        elif isinstance(block, Note):
            sink.cell(r, 0, safe_text(block.text), style="note")
            r += 2
        elif isinstance(block, Pairs):
            for label, value in block.items:
                sink.cell(r, 0, safe_text(label), style="label")
                sink.cell(r, 1, cell_value(value), kind=block.kinds.get(label))
                r += 1
        elif isinstance(block, Grid):
            for c, h in enumerate(block.header):
                sink.cell(r, c, safe_text(h), style="header")
            r += 1
            for row in block.rows:
                for c, v in enumerate(row):
                    kind = block.kinds[c] if c < len(block.kinds) else None
                    sink.cell(r, c, cell_value(v), kind=kind, style="label" if c == 0 else None)
                r += 1
            r += 1
        elif isinstance(block, TableBlock):
            df = _widen_float32(block.frame)
            headers = [safe_text(str(c)) for c in df.columns]
            kinds = [number_format(h) for h in headers]
            for c, h in enumerate(headers):
                grow(c, len(h) + 3)  # +3: room for the filter button
            top = r
            columns = [_column_values(df.iloc[:, c]) for c in range(df.shape[1])]
            for c, (_, width) in enumerate(columns):
                grow(c, width)
            cells = [vals for vals, _ in columns]
            bulk = getattr(sink, "rows", None)
            if bulk is not None:
                bulk(top + 1, cells, kinds)
            else:
                cell = sink.cell
                for i, values in enumerate(zip(*cells)):
                    row = top + 1 + i
                    for c, val in enumerate(values):
                        if val is not None:
                            cell(row, c, val, kind=kinds[c])
            bottom = top + max(len(df), 1)  # Excel tables need a data row, even an empty one
            sink.table(block.name, top, 0, bottom, len(headers) - 1, headers, kinds)
            placed[block.name] = (top, bottom)
            if block.freeze and freeze_at is None:
                freeze_at = top + 1
            r = bottom + 2
        elif isinstance(block, ChartData):
            # Charts first (one under the other, 16 rows each), their data underneath: the
            # planner sees the pictures without scrolling sideways.
            top = r + 16 * len(block.charts) + 1
            df = block.frame
            headers = [safe_text(str(c)) for c in df.columns]
            sink.cell(top - 1, 0, "Chart data", style="label")
            for c, h in enumerate(headers):
                sink.cell(top, c, h, style="header")
                grow(c, min(len(h) + 1, 24))
            for i, values in enumerate(df.itertuples(index=False, name=None)):
                for c, v in enumerate(values):
                    val = cell_value(v)
                    if val is not None:
                        sink.cell(top + 1 + i, c, val, kind="quantity" if isinstance(val, float) else None)
                        grow(c, _display_width(val))
            first, last = top + 1, top + len(df)
            for k, chart in enumerate(block.charts):
                sink.chart(chart, first=first, last=last, anchor=(r + 16 * k, 0))
            r = last + 2
        else:
            raise TypeError(f"unknown block {block!r}")
    for c, w in widths.items():
        sink.width(c, min(max(w + 1, MIN_WIDTH), MAX_WIDTH))
    for c, w in sheet.widths.items():
        sink.width(c, w)
    if freeze_at is not None:
        sink.freeze(freeze_at)
    return placed


# --------------------------------------------------------------------------- the sheets


def display(df: pd.DataFrame, headers: Mapping[str, str]) -> pd.DataFrame:
    """Engine columns -> sheet headers, in ``headers`` order (columns the frame lacks are skipped)."""
    cols = [c for c in headers if c in df.columns]
    return df.loc[:, cols].rename(columns={c: headers[c] for c in cols})


def select(df: pd.DataFrame, headers: Sequence[str], what: str, optional: Sequence[str] = ()) -> pd.DataFrame:
    """Rename engine columns to sheet headers and keep ``headers`` in order.

    ``optional`` headers are kept when present, but at least one of them must be.
    """
    from engine.errors import PlancellBug

    out = df.rename(columns={k: v for k, v in ENGINE_NAMES.items() if k in df.columns and v not in df.columns})
    missing = [h for h in headers if h not in out.columns and h not in optional]
    if optional and not any(h in out.columns for h in optional):
        missing.append(" or ".join(optional))
    if missing:
        raise PlancellBug(f"{what} frame lacks columns {missing}; it has {list(df.columns)}")
    return out.loc[:, [h for h in headers if h in out.columns]]


def _text(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, (_dt.datetime, pd.Timestamp)):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (numbers.Number, str)):
        return value
    return str(value)


def provenance(metadata: Mapping[str, Any], n_series: int, *, extra: Sequence[tuple[str, Any]] = ()) -> Pairs:
    from engine import __version__

    freq = str(metadata.get("freq", "") or "")
    items: list[tuple[str, Any]] = [
        ("Model", metadata.get("model_name")),
        ("Model version", metadata.get("model_version", "not saved")),
        ("Trained at", metadata.get("trained_at")),
        ("Data fingerprint", metadata.get("data_fingerprint")),
        ("Plancell version", metadata.get("plancell_version") or __version__),
        ("Frequency", _FREQ_WORDS.get(freq, freq)),
        ("Horizon (periods)", metadata.get("horizon")),
        ("Series", metadata.get("n_series", n_series)),
        *extra,
        ("Written at", _dt.datetime.now().astimezone().isoformat(timespec="seconds")),
    ]
    return Pairs([(k, _text(v)) for k, v in items])


_POLICY_NOTE = (
    "Safety stock covers the forecast error over lead time + review period at the service level shown "
    "(sized on this plan's backtest errors). (R, S): every review, order up to the order-up-to level. "
    "(s, S): when the inventory position falls to the reorder point, order up to the order-up-to level. "
    "Order now = order-up-to level - inventory position, rounded up to MOQ and order multiple."
)
_PLAN_NOTE = ("Values only: this sheet needs no add-in. P50 is the median forecast; "
              "8 in 10 outcomes are expected between P10 and P90.")


def plan_sheet(plan: pd.DataFrame, metadata: Mapping[str, Any], *, policy: pd.DataFrame | None = None,
               name: str = "Plan", title: str = "Plancell plan", table_prefix: str = "",
               extra: Sequence[tuple[str, Any]] = ()) -> Sheet:
    """The Plan sheet: provenance, the inventory policy (one row per SKU-location), the forecast."""
    plan_df = select(plan, PLAN_HEADERS, "plan")
    more = [c for c in plan.columns if re.fullmatch(r"P\d+(\.\d+)?", str(c)) and c not in plan_df.columns]
    if more:   # quantiles asked for in Settings beyond P10/P50/P90, after P90
        more.sort(key=lambda c: float(c[1:]))
        plan_df = pd.concat([plan_df.iloc[:, :6], plan[more].set_axis(plan_df.index), plan_df.iloc[:, 6:]], axis=1)
    if "Consensus" in plan.columns and (plan["Consensus"] != plan["Statistical"]).any():
        # S&OP: the statistical forecast, each override layer and the consensus side by side,
        # after P10/P50/P90 (which now follow the consensus) so the planner's layout stays put
        from .sop import consensus_columns

        cons_cols = [c for c in consensus_columns(plan) if c in plan.columns]
        if "Locked" in plan.columns and plan["Locked"].astype(bool).any():
            cons_cols.append("Locked")
        cons = plan[cons_cols].reset_index(drop=True).set_axis(plan_df.index)
        # A layer's cell is blank where that layer left the forecast as it was: the planner sees
        # at a glance who changed what (and a big plan writes a third of the cells).
        before = cons["Statistical"]
        for c in cons_cols[1:]:
            if c.endswith(" layer"):
                after = cons[c]
                cons[c] = after.where(after != before)
                before = after
        at = 6 + len(more)
        plan_df = pd.concat([plan_df.iloc[:, :at], cons, plan_df.iloc[:, at:]], axis=1)
    n_series = int(plan_df[["SKU", "Location"]].drop_duplicates().shape[0])
    blocks: list[Any] = [Title(title), provenance(metadata, n_series, extra=extra), Note(_PLAN_NOTE)]
    if policy is not None:
        blocks += [Title("Inventory policy"), Note(_POLICY_NOTE),
                   TableBlock(table_prefix + "Policy", display(policy, POLICY_HEADERS), freeze=True),
                   Title("Forecast")]
    blocks.append(TableBlock(table_prefix + "Plan", plan_df, freeze=policy is None))
    sku_width = int(plan_df["SKU"].astype(str).str.len().max()) if len(plan_df) else 0
    return Sheet(name, blocks, widths={0: max(18, min(MAX_WIDTH, sku_width + 2)), 1: 28})


def _metric(block: Any, key: str) -> Any:
    return block.get(key) if isinstance(block, Mapping) else None


def accuracy_sheet(summary: Mapping[str, Any], accuracy: pd.DataFrame) -> Sheet:
    """The Accuracy sheet: overall backtest scores vs the baselines, then per series."""
    acc_df = select(accuracy, ACCURACY_HEADERS, "accuracy", optional=ACCURACY_BASELINES)
    methods = (("Plancell model", "model"), ("Seasonal naive", "seasonal_naive"), ("Moving average", "moving_average"))
    grid = Grid(["Method", "WAPE", "MASE", "Bias"],
                [[label, _metric(summary.get(key), "wape"), _metric(summary.get(key), "mase"),
                  _metric(summary.get(key), "bias")] for label, key in methods],
                kinds=[None, "percent", "ratio", "percent"])
    used = acc_df["Model used"] if "Model used" in acc_df.columns else pd.Series(dtype=object)
    n_baseline = int((used.astype(str) != "lightgbm").sum()) if len(used) else 0
    facts = Pairs([
        ("Coverage P10-P90", _text(summary.get("coverage_p10_p90"))),
        ("Backtest windows", _text(summary.get("windows"))),
        ("Horizon (periods)", _text(summary.get("horizon"))),
        ("Series", _text(summary.get("n_series", len(acc_df)))),
        ("Series on a baseline", n_baseline),
    ], kinds={"Coverage P10-P90": "percent"})
    note = Note("WAPE: total absolute error / total actuals (lower is better). MASE below 1 beats the seasonal "
                "naive forecast. Bias above 0 means over-forecast. Coverage P10-P90 should be near 80%.")
    return Sheet("Accuracy", [Title("Backtest accuracy, all series"), grid, facts, note,
                              TableBlock("Accuracy", acc_df, freeze=True)], widths={0: 22})


def purchases_sheet(purchases: pd.DataFrame, budget: float | None) -> Sheet:
    n = len(purchases)
    if budget is None:
        text = (f"{n} order{'s' if n != 1 else ''} suggested, most urgent first: late (stock runs out before an "
                "order placed today arrives), then order now, then planned; strategic items first within each.")
    else:
        inb = int(purchases["InBudget"].sum()) if "InBudget" in purchases.columns and n else 0
        text = (f"{n} orders suggested; {inb} fit the budget of {budget:,.2f} in priority order. "
                "The Why column says what does not fit and why.")
    return Sheet("Purchases", [Title("Purchase priority: what to order now"), Note(text),
                               TableBlock("Purchases", display(purchases, PURCHASE_HEADERS), freeze=True)])


#: Columns of the DataQuality table (one row per value read differently from its cell).
DATA_QUALITY_HEADERS: tuple[str, ...] = (
    "Table", "Sheet", "Row", "Column", "Header", "Original value", "Value used", "What was done",
)
_WARNING_HEADERS: tuple[str, ...] = ("Table", "Sheet", "Row", "Column", "Header", "Value", "Problem", "Fix")
NOTHING_CHANGED = "Nothing was changed: every value was used exactly as the cells hold it."


def data_quality_sheet(changes: Sequence[Any], warnings: Sequence[Any] = (), *,
                       name: str = "Data quality") -> Sheet:
    """The Data quality sheet: every value the reader used differently from how its cell holds
    it (:class:`engine.contract.Change`: trimmed, text to number, serial to date, ...), then
    the warnings the data was accepted with. Says so in one line when nothing was changed.

    Blank stays blank here: an empty cell shows as an empty Original / Value used cell, never 0.
    """
    n_rows = sum(1 for c in changes if getattr(c, "row", None) is not None)
    facts = Pairs([("Values changed", n_rows), ("Warnings", len(warnings))])
    blocks: list[Any] = [Title("Data quality: what Plancell changed while reading your tables"), facts]
    if not changes:
        blocks.append(Note(NOTHING_CHANGED))
    else:
        blocks.append(Note("Each row is a cell Plancell read differently from how the cell holds it, or a row it "
                           "skipped. Fix the cell to make the row go away; the plan used the 'Value used'."))
        rows = [[c.table, getattr(c, "sheet", None), c.row, getattr(c, "letter", None), c.column, c.original,
                 c.used, c.action] for c in changes]
        blocks.append(TableBlock("DataQuality", pd.DataFrame(rows, columns=list(DATA_QUALITY_HEADERS), dtype=object),
                                 freeze=True))
    if warnings:
        rows = [[w.table, getattr(w, "sheet", None), w.row, getattr(w, "letter", None), w.column, w.value,
                 w.message, w.fix] for w in warnings]
        blocks += [Title("Warnings (the data was accepted; check these)"),
                   TableBlock("DataWarnings", pd.DataFrame(rows, columns=list(_WARNING_HEADERS), dtype=object))]
    return Sheet(name, blocks, widths={0: 16, 1: 16})


def table_sheet(name: str, frame: pd.DataFrame) -> Sheet:
    """A sheet holding one Excel table named like the sheet (Sales, Drivers, Items ...)."""
    return Sheet(name, [TableBlock(name, frame, freeze=True)])


def charts_sheet(history: pd.DataFrame, plan: pd.DataFrame, *, n_series: int = 4, n_history: int = 52,
                 point: str = "P50") -> Sheet:
    """History plus forecast band of the ``n_series`` largest SKU-locations (by forecast volume):
    one native chart each, drawn from a data block on the same sheet."""
    plan_df = plan.rename(columns={"Date": "Period"})
    top = (plan_df.groupby(["SKU", "Location"], sort=False)[point].sum().sort_values(ascending=False)
           .head(n_series).index.tolist())
    periods = sorted(plan_df["Period"].unique())
    hist = history.rename(columns={"Period": "Date"})
    last_dates = sorted(hist["Date"].unique())[-n_history:]
    axis = list(last_dates) + [p for p in periods if p not in set(last_dates)]
    frame = pd.DataFrame({"Period": pd.to_datetime(axis)})
    charts: list[BandChart] = []
    for sku, loc in top:
        label = f"{sku} {loc}".strip()
        h = hist[(hist["SKU"] == sku) & (hist["Location"] == loc)].set_index("Date")["Qty"]
        f = plan_df[(plan_df["SKU"] == sku) & (plan_df["Location"] == loc)].set_index("Period")
        c0 = len(frame.columns)
        frame[f"{label} actual"] = frame["Period"].map(h).astype(float)
        frame[f"{label} P10"] = frame["Period"].map(f["P10"]).astype(float) if "P10" in f else np.nan
        frame[f"{label} P90"] = frame["Period"].map(f["P90"]).astype(float) if "P90" in f else np.nan
        frame[f"{label} P50"] = frame["Period"].map(f[point]).astype(float)
        charts.append(BandChart(f"{label}: history and forecast (P10-P90 band)", x=0, lo=c0 + 1, hi=c0 + 2,
                                lines=[(c0, "Actual"), (c0 + 3, "Forecast P50")]))
    return Sheet("Charts", [Title("History and forecast, largest SKU-locations"),
                            Note("Dashed lines: P10 and P90 (8 in 10 outcomes expected between them). Values only; "
                                 "the charts need no add-in."),
                            ChartData(frame, charts)])


def snapshot_name(when: Any, version: int) -> tuple[str, str]:
    """Sheet name ``Plan YYYY-MM vN`` and the matching table-name tag ``YYYY_MM_vN``."""
    return f"Plan {when:%Y-%m} v{version}", f"{when:%Y_%m}_v{version}"


def snapshot_sheet(name: str, title: str, tag: str, provenance_items: Sequence[tuple[str, Any]],
                   plan: pd.DataFrame, policy: pd.DataFrame | None = None,
                   overrides: pd.DataFrame | None = None) -> Sheet:
    """A published plan: values only, frozen, with its provenance (tables ``Plan_<tag>``,
    ``Policy_<tag>`` and, when the plan had overrides, ``Overrides_<tag>``: the Overrides table
    as it was, from which value added by reason recomputes the cells each row changed; sheet headers as on the Plan sheet)."""
    blocks: list[Any] = [Title(title), Pairs([(k, _text(v)) for k, v in provenance_items]),
                         Note("Published snapshot: values only, frozen at publication. It needs no add-in and is "
                              "not changed by later refreshes.")]
    if policy is not None:
        blocks += [Title("Inventory policy"), TableBlock(f"Policy_{tag}", policy, freeze=True)]
    blocks += [Title("Forecast"), TableBlock(f"Plan_{tag}", plan, freeze=policy is None)]
    if overrides is not None and len(overrides):
        blocks += [Title("Overrides (as published)"), TableBlock(f"Overrides_{tag}", overrides)]
    return Sheet(name, blocks, widths={0: 18, 1: 28})

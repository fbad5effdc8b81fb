"""The workbook's ``Settings`` table (Key, Value) read into typed planning settings.

Keys are matched case-insensitively (DESIGN.md, "Data contract"): Frequency, Horizon,
Quantiles, HolidayCountry, ServiceTarget, Model, Server, Cluster, Windows, column
mappings (``column.Qty = Units sold``), and the inventory keys ServiceLevel.<class>,
ABC.A / ABC.B, XYZ.X / XYZ.Y, OrderCost, HoldingRate, LeadTimeDays, Budget. Every bad
value is reported with its Excel row; unknown keys are warnings, not errors, so a planner's
own notes in the table do not stop a refresh.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import InputError, Problem
from .frequency import normalize_freq
from .policy import InventorySettings
from .segmentation import segmentation_settings

__all__ = ["PlanSettings", "read_settings"]

_log = logging.getLogger(__name__)

_SEGMENT_PREFIXES = ("servicelevel.", "abc.", "xyz.")
_KNOWN = {"frequency", "horizon", "quantiles", "holidaycountry", "servicetarget", "model", "server", "cluster",
          "windows", "ordercost", "holdingrate", "leadtimedays", "budget"}


@dataclass
class PlanSettings:
    freq: str | None = None
    horizon: int | None = None
    windows: int = 3
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    holiday_country: str | None = None
    model: str | None = None
    server: str | None = None
    cluster: str | None = None
    budget: float | None = None
    column_map: dict[str, str] = field(default_factory=dict)
    inventory: InventorySettings = field(default_factory=InventorySettings)
    warnings: list[Problem] = field(default_factory=list)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, (int, float)):
        return float(v)
    text = str(v).strip().replace(",", "")
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    return float(text)


def read_settings(rows: Sequence[tuple[Any, Any]], *, first_row: int = 2) -> PlanSettings:
    """Parse (Key, Value) rows; row ``i`` is Excel row ``first_row + i``."""
    out = PlanSettings()
    problems: list[Problem] = []
    inv: dict[str, Any] = {}
    has_segments = False

    def bad(i: int, key: str, value: Any, message: str, fix: str) -> None:
        problems.append(Problem("Settings", f"{key}: {message}", fix, row=first_row + i, column="Value",
                                value=value if isinstance(value, (int, float, str, bool)) else str(value),
                                code="E110"))

    for i, (key, value) in enumerate(rows):
        if _blank(key):
            continue
        k = str(key).strip()
        low = k.lower().replace(" ", "")
        if low.startswith(_SEGMENT_PREFIXES):
            has_segments = True  # parsed below, with every row so Excel row numbers stay true
            continue
        if low.startswith("column."):
            if _blank(value):
                bad(i, k, value, "no header given", "write the header your table uses, e.g. Units sold")
            else:
                out.column_map[k.split(".", 1)[1].strip()] = str(value).strip()
            continue
        if low not in _KNOWN:
            out.warnings.append(Problem("Settings", f"unknown key {k!r} ignored", "check the spelling (see the "
                                        "README, Settings keys)", row=first_row + i, column="Key", value=k,
                                        severity="warning", code="E110"))
            continue
        if _blank(value):
            continue
        try:
            if low == "frequency":
                out.freq = normalize_freq(str(value))
            elif low in ("horizon", "windows"):
                n = _number(value)
                if n < 1 or n != int(n):
                    raise ValueError(value)
                setattr(out, low, int(n))
            elif low == "quantiles":
                qs = tuple(sorted({_number(x) for x in str(value).replace(";", ",").split(",") if x.strip()}))
                if not qs or any(not 0 < q < 1 for q in qs):
                    raise ValueError(value)
                # P10/P50/P90 are always planned: the Plan sheet, alerts and scenarios read them
                out.quantiles = tuple(sorted(set(qs) | {0.1, 0.5, 0.9}))
            elif low == "holidaycountry":
                out.holiday_country = str(value).strip().upper()
            elif low == "servicetarget":
                t = str(value).strip().lower().replace(" ", "_").replace("-", "_")
                if t not in ("csl", "fill_rate", "cycle_service_level", "fillrate"):
                    raise ValueError(value)
                inv["service_target"] = "fill_rate" if "fill" in t else "csl"
            elif low in ("model", "server", "cluster"):
                setattr(out, low, str(value).strip())
            elif low == "ordercost":
                inv["order_cost"] = _nonneg(value)
            elif low == "holdingrate":
                inv["holding_rate"] = _nonneg(value)
            elif low == "leadtimedays":
                inv["default_lead_time_days"] = _nonneg(value)
            elif low == "budget":
                out.budget = _nonneg(value)
        except (ValueError, TypeError, InputError):
            bad(i, k, value, "cannot be read", _FIXES.get(low, "see the README, Settings keys"))
    if has_segments:
        try:
            seg = segmentation_settings(list(rows), first_row=first_row)
            inv.update(abc_cutoffs=seg.abc_cutoffs, xyz_cutoffs=seg.xyz_cutoffs,
                       service_levels=dict(seg.service_levels))
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        first = problems[0]
        raise InputError(f"Settings: {len(problems)} value{'s' if len(problems) > 1 else ''} to fix; first: "
                         f"{first.where()}: {first.message}. Fix: {first.fix}", problems + out.warnings,
                         code="E110")
    out.inventory = InventorySettings(**inv)
    return out


def _nonneg(v: Any) -> float:
    x = _number(v)
    if not x >= 0 or math.isinf(x):
        raise ValueError(v)
    return x


_FIXES = {
    "frequency": "write D (daily), W (weekly) or MS (monthly)",
    "horizon": "write a whole number of periods, e.g. 12",
    "windows": "write a whole number of backtest windows, e.g. 3",
    "quantiles": "write probabilities separated by commas, e.g. 0.1, 0.5, 0.9",
    "servicetarget": "write csl (cycle service level) or fill_rate",
    "ordercost": "write the cost of placing one order, e.g. 50",
    "holdingrate": "write the yearly holding cost as a fraction of unit cost, e.g. 0.25",
    "leadtimedays": "write a number of days, e.g. 14",
    "budget": "write an amount, e.g. 25000",
}

"""The data contract: validate the Sales, Drivers and Items tables (DESIGN.md, "Data contract").

Input is a pandas DataFrame as read from an Excel table (numbers, dates, text, booleans
mixed in object columns) or from a CSV (all text). Output is a :class:`PlanningData`
with canonical column names (:mod:`engine.schema`), typed columns and dates on one
D / W / MS grid.

Every problem is collected before anything is refused: a planner fixes the whole sheet
in one pass instead of one error per refresh. Each :class:`~engine.errors.Problem` names
the table, the row number the planner sees (the Excel row or CSV line), the column as
the planner wrote it, the value, what is wrong and how to fix it. Errors refuse the input
with one :class:`~engine.errors.InputError`; warnings are accepted and returned in
:attr:`PlanningData.warnings`.

Conventions worth knowing:

* Rows that are blank in every column the contract reads are skipped (Excel tables often
  have empty rows); like every value read differently from its cell (trimmed text, text
  to number, text or serial to date, ...), they are listed in :attr:`PlanningData.changes`
  (the workbook's Data quality sheet). Blank, zero, an Excel error and a value stay four
  states: an error cell (``#N/A``) is an error, never a blank or a zero.
* A number in a Date column is an Excel date serial only when the frame comes from a
  workbook (``attrs[ATTR_EXCEL]``, set by the readers) and lies in 1990-2100; from a CSV it
  is refused (showing the date it would be).
* Numbers beyond ``MAX_ABS_NUMBER`` (1e15), infinities and "1e309" are refused.
* A header problem in a table (missing required column, duplicate header) stops the
  row checks of that table; the other tables are still checked.
* Blank Qty is allowed only in *plan rows*: rows dated after the series' last row with a
  Qty, which carry planned Price/Promo for the forecast horizon.
* ``Items`` rows with a blank Location apply to every location of their SKU.
* Extra Sales / Drivers columns are drivers when mostly numeric; mostly-text columns
  (comments, descriptions) are ignored with a warning. Extra Items columns are kept as-is.
* TRUE/FALSE (Excel booleans or text) is read as 1/0 in any number column; yes/no as
  well in flag columns (Promo, Strategic, read_long_csv regressors).
* Performance: the happy path is vectorised; text columns are parsed per *distinct*
  value (factorize), and Python loops only run over distinct values or bad rows.
  Memory: numeric input columns are not copied to float64 until the output is built,
  key codes are int32, Sales is ordered by an argsort of int codes (the rows themselves
  are gathered once, into the output), and large conversions run in chunks, so the peak
  stays near the size of the output frame (about 1 GB for 10 million Sales rows).
"""

from __future__ import annotations

import bz2
import difflib
import gzip
import logging
import lzma
import math
import re
import warnings
from dataclasses import dataclass, field, replace
from datetime import date as _date, datetime as _datetime
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from . import schema as S
from .errors import InputError, PlancellBug, Problem, ProblemCollector, column_letter
from .frequency import from_period, infer_freq, normalize_freq, to_period

__all__ = [
    "PlanningData",
    "Change",
    "validate",
    "locate_problems",
    "read_csv_table",
    "read_long_csv",
    "TABLES",
    "MAX_PROBLEMS_PER_COLUMN",
    "MAX_CHANGES_PER_COLUMN",
    "ATTR_SHEET",
    "ATTR_FIRST_COLUMN",
    "ATTR_EXCEL",
    "ATTR_HIDDEN_ROWS",
    "ATTR_PROBLEMS",
]

log = logging.getLogger(__name__)

TABLES = ("Sales", "Drivers", "Items")
#: Problems listed per column and severity before a summary problem says how many more.
MAX_PROBLEMS_PER_COLUMN = 200
#: Changed values listed per (table, column, what was done) before one line counts the rest.
MAX_CHANGES_PER_COLUMN = 50

# Where a frame came from, set in ``DataFrame.attrs`` by the workbook readers (addin.workbook,
# addin.port), so problems and changes can name the sheet and the column letter.
ATTR_SHEET = "plancell_sheet"  # the worksheet's name
ATTR_FIRST_COLUMN = "plancell_first_column"  # 1-based column of the table's first column
ATTR_EXCEL = "plancell_excel"  # True: cells come from Excel, so a number in a Date column is a date serial
ATTR_HIDDEN_ROWS = "plancell_hidden_rows"  # Excel rows hidden in the table (they are used all the same)
ATTR_PROBLEMS = "plancell_problems"  # Problems the reader found (e.g. merged cells), reported with the rest

#: Numbers beyond this are refused: no quantity, price or driver is that large, and sums of
#: them overflow the model's float arithmetic.
MAX_ABS_NUMBER = 1e15
#: Excel date serials read as dates (1990-01-01 .. 2100-01-01); others are refused.
_SERIAL_MIN, _SERIAL_MAX = 32874, 73051

_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAY_ALIASES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")  # serial 1 = 1900-01-01 (after Excel's leap-year bug)
_EXCEL_MAX_SERIAL = 2958465  # 9999-12-31
_NUM_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+(?:[.,]\d+)*,\d+")
_PERCENT_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))\s*%")
_NUMBER_IN_TEXT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_DMY_RE = re.compile(
    r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_NA_TOKENS = frozenset({"na", "n/a", "nan", "null", "none"})
_EXCEL_ERRORS = frozenset(
    {"#n/a", "#value!", "#ref!", "#div/0!", "#num!", "#name?", "#null!", "#spill!", "#calc!", "#getting_data"}
)
_TRUE_WORDS = frozenset({"true"})
_FALSE_WORDS = frozenset({"false"})
_FLAG_TRUE_WORDS = frozenset({"true", "yes", "y"})
_FLAG_FALSE_WORDS = frozenset({"false", "no", "n"})

_OK, _BLANK, _BAD = 0, 1, 2

_SALES_NUMERIC = (S.QTY, S.PRICE, S.PROMO, S.ONHAND)
_ITEMS_TEXT = (S.LOCATION, S.CATEGORY, "Supplier")
_ITEMS_NUMERIC = tuple(c for c in S.ITEMS_OPTIONAL if c not in _ITEMS_TEXT)
_ITEMS_FRACTIONS = ("ServiceLevel", "FillRateTarget")
_ITEMS_NON_NEGATIVE = (
    "LeadTimeDays", "LeadTimeStdDays", "UnitCost", "MOQ", "OrderMultiple", "ReviewPeriodDays", "OnOrder",
)
_FLAG_COLUMNS = frozenset({S.PROMO, "Strategic"})

#: Header names planners commonly use instead of the canonical ones; used only to suggest a fix.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    S.DATE: ("day", "week", "month", "period", "datetime", "ds", "order date", "sales date", "time"),
    S.SKU: ("item", "item id", "item_id", "product", "product id", "product_id", "article", "material",
            "unique_id", "item code", "product code", "code"),
    S.QTY: ("quantity", "units", "units sold", "unit sales", "sales", "demand", "volume", "sold", "y",
            "weekly_sales", "qty sold"),
    S.LOCATION: ("store", "site", "warehouse", "dc", "branch", "shop", "plant"),
}


# --------------------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A value the reader used differently from how the cell holds it, or a row it skipped.

    ``row`` is the row number the planner sees (``None`` on a line that counts further
    rows); ``column`` the planner's header; ``letter`` / ``sheet`` where the cell is, when
    the table came from a workbook. ``original`` is the cell as read, ``used`` what the
    plan uses, ``action`` what was done, in words (e.g. "text to number (spaces trimmed)").
    """

    table: str
    row: int | None
    column: str
    original: Any
    used: Any
    action: str
    letter: str | None = None
    sheet: str | None = None


@dataclass
class PlanningData:
    """Validated planning data with canonical columns (see the module docstring)."""

    sales: pd.DataFrame
    drivers: pd.DataFrame | None
    items: pd.DataFrame | None
    freq: str
    week_anchor: int | None
    warnings: list[Problem] = field(default_factory=list)
    sales_regressors: list[str] = field(default_factory=list)
    driver_columns: list[str] = field(default_factory=list)
    #: Last Sales date that has a Qty (the end of history; plan rows come after it).
    last_date: pd.Timestamp | None = None
    #: Every value read differently from how the cell holds it (see :class:`Change`).
    changes: list[Change] = field(default_factory=list)

    @property
    def n_series(self) -> int:
        """Number of (SKU, Location) series in Sales."""
        return int(self.sales[[S.SKU, S.LOCATION]].drop_duplicates().shape[0])


# --------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def _py(v: Any) -> Any:
    """A plain Python value for a Problem (JSON-friendly, readable in a report)."""
    if v is None:
        return None
    if isinstance(v, (pd.Timestamp, _datetime, np.datetime64)):
        ts = pd.Timestamp(v)
        if pd.isna(ts):
            return None
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat(sep=" ")
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _day_str(d: Any) -> str:
    return str(np.datetime64(d, "D"))


def _is_blank_scalar(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, np.floating) and np.isnan(v):
        return True
    if isinstance(v, np.datetime64) and np.isnat(v):
        return True
    return isinstance(v, str) and not v.strip()


def _serial_to_date(x: float) -> np.datetime64:
    return _EXCEL_EPOCH + np.timedelta64(int(math.floor(x)), "D")


#: Rows per step of the chunked loops: large enough to stay vectorised, small enough that
#: the temporaries of a step are a few MB instead of a copy of a 10-million-row column.
_CHUNK = 1 << 20


def _index_dtype(n: int) -> type[np.signedinteger]:
    """int32 for positions and codes below 2**31 (half the memory of int64)."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _take(values: np.ndarray, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``values[idx]`` into ``out`` (converted to its dtype), in chunks.

    A single ``values[idx]`` with int32 positions first makes an intp copy of ``idx``, and
    a dtype change makes another full-size array; chunks keep both small.
    """
    if out is None:
        out = np.empty(len(idx), dtype=values.dtype)
    same = out.dtype == values.dtype
    for a in range(0, len(idx), _CHUNK):
        part = idx[a:a + _CHUNK]
        if same:
            np.take(values, part, out=out[a:a + _CHUNK], mode="clip")  # "raise" would buffer a copy
        else:
            out[a:a + _CHUNK] = values[part]
    return out


# --------------------------------------------------------------------------------------
# Problem reporting with a per-column cap
# --------------------------------------------------------------------------------------


class _RowLookup(Protocol):
    """The planner's row number of each position: an int64 array, or computed on demand."""

    def __getitem__(self, i: Any) -> Any: ...


class _RowNumbers:
    """Row numbers ``offset + position``, computed on demand instead of held as an array."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __getitem__(self, i: Any) -> Any:
        return np.asarray(i, dtype=np.int64) + self.offset


class _RowsOf:
    """``rows[src[i]]`` on demand: the row numbers of reordered rows, without a reordered copy."""

    def __init__(self, rows: _RowLookup, src: np.ndarray) -> None:
        self.rows = rows
        self.src = src

    def __getitem__(self, i: Any) -> Any:
        return self.rows[self.src[i]]


class _Where:
    """Where a table sits in its workbook (from the frame's ``attrs``), when it came from one."""

    def __init__(self, df: pd.DataFrame | None) -> None:
        attrs = getattr(df, "attrs", None) or {}
        self.sheet: str | None = attrs.get(ATTR_SHEET)
        first = attrs.get(ATTR_FIRST_COLUMN)
        self.first: int | None = int(first) if first is not None else None
        self.excel = bool(attrs.get(ATTR_EXCEL))

    def letter(self, pos: int | None) -> str | None:
        if pos is None or self.first is None:
            return None
        return column_letter(self.first + pos)

    def name(self, pos: int) -> str:
        """How a message names the column at ``pos``: its letter, else its number."""
        letter = self.letter(pos)
        return letter if letter is not None else str(pos + 1)


class _Reporter:
    """Adds problems to a collector, at most ``cap`` per (table, column, severity).

    Beyond the cap one summary problem per rule says how many more rows have it, so a
    sheet with 100 000 decimal commas gives a readable report, not 100 000 lines. It also
    keeps the log of changed values (:class:`Change`), capped the same way.
    """

    def __init__(self, pc: ProblemCollector, cap: int = MAX_PROBLEMS_PER_COLUMN) -> None:
        self.pc = pc
        self.cap = cap
        self._used: dict[tuple[str, str | None, str], int] = {}
        self.where: dict[str, _Where] = {}
        self.first_rows: dict[str, int] = {}
        self.changes: list[Change] = []
        self._changed: dict[tuple[str, str, str], int] = {}

    def add(self, **kw: Any) -> None:
        self.pc.add(**kw)

    def change(
        self,
        idx: np.ndarray,
        *,
        table: str,
        col: _Col | None,
        rows: _RowLookup,
        act: np.ndarray | None,
        names: Sequence[str],
        original_of: Callable[[int], Any],
        used_of: Callable[[int], Any],
    ) -> None:
        """One :class:`Change` per position in ``idx``; ``names[act[i]]`` (``names[0]`` when
        ``act`` is None) says what was done."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return
        w = self.where.get(table) or _Where(None)
        letter = w.letter(col.pos) if col is not None else None
        header = col.header if col is not None else "(whole row)"
        codes = np.zeros(len(idx), dtype=np.int8) if act is None else np.asarray(act)[idx]
        for code in np.unique(codes):
            sub = idx[codes == code]
            sub = sub[np.argsort(rows[sub], kind="stable")]
            action = names[int(code)]
            key = (table, header, action)
            used = self._changed.get(key, 0)
            room = max(MAX_CHANGES_PER_COLUMN - used, 0)
            for i in sub[:room]:
                self.changes.append(Change(table, int(rows[i]), header, _py(original_of(int(i))),
                                           _py(used_of(int(i))), action, letter, w.sheet))
            self._changed[key] = used + min(room, len(sub))
            if len(sub) > room:
                rest = rows[sub[room:]]
                self.changes.append(Change(
                    table, None, header, None, None,
                    f"{action}: {len(sub) - room} more rows like this (rows {int(rest.min())} to {int(rest.max())}; "
                    f"only the first {MAX_CHANGES_PER_COLUMN} are listed)", letter, w.sheet))

    def rows(
        self,
        idx: np.ndarray,
        *,
        table: str,
        column: str | None,
        rows: _RowLookup,
        value_of: Callable[[int], Any],
        describe: Callable[[Any, int], tuple[str, str]],
        code: str,
        severity: str = "error",
    ) -> None:
        """One problem per position in ``idx`` (positions into ``rows``), capped."""
        idx = np.asarray(idx, dtype=np.int64)
        n = len(idx)
        if n == 0:
            return
        idx = idx[np.argsort(rows[idx], kind="stable")]  # in the order the planner reads the sheet
        key = (table, column, severity)
        used = self._used.get(key, 0)
        room = max(self.cap - used, 0)
        for i in idx[:room]:
            v = value_of(int(i))
            msg, fix = describe(v, int(i))
            self.pc.add(table=table, row=int(rows[i]), column=column, value=_py(v), message=msg, fix=fix,
                        code=code, severity=severity)
        self._used[key] = used + min(room, n)
        if n > room:
            first = int(idx[room])
            msg, fix = describe(value_of(first), first)
            hidden_rows = rows[idx[room:]]
            self.pc.add(
                table=table, row=None, column=column, value=None, code=code, severity=severity,
                message=(f"{n - room} more rows have this problem (rows {int(hidden_rows.min())} to "
                         f"{int(hidden_rows.max())}; only the first {self.cap} problems of a column are "
                         f"listed), e.g. row {int(rows[first])}: {msg}"),
                fix=fix,
            )


# --------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------


@dataclass
class _Col:
    name: str  # canonical name, or the stripped header for other columns
    header: str  # the planner's header text (shown in problems)
    pos: int


def _suggest(required: str, headers: Sequence[str]) -> str | None:
    folded = {_fold(h): h for h in headers if h}
    for syn in _SYNONYMS.get(required, ()):
        if syn in folded:
            return folded[syn]
    hit = difflib.get_close_matches(_fold(required), list(folded), n=1, cutoff=0.5)
    return folded[hit[0]] if hit else None


def _header_text(h: Any) -> str:
    if h is None or (isinstance(h, float) and math.isnan(h)):
        return ""
    text = str(h).strip()
    # pandas names blank CSV/Excel headers "Unnamed: 3"
    return "" if re.fullmatch(r"Unnamed: \d+(_level_\d+)?", text) else text


def _match_headers(
    df: pd.DataFrame,
    table: str,
    required: Sequence[str],
    known: Sequence[str],
    column_map: Mapping[str, str] | None,
    rep: _Reporter,
) -> dict[str, _Col] | None:
    """Map the planner's headers to canonical names. ``None`` if the table cannot be read."""
    w = rep.where.get(table) or _Where(df)
    known_fold = {_fold(k): k for k in known}
    user_to_canon: dict[str, str] = {}
    for canon, user in (column_map or {}).items():
        user_to_canon[_fold(user)] = known_fold.get(_fold(canon), str(canon).strip())
    out: dict[str, _Col] = {}
    seen: dict[str, _Col] = {}
    ok = True
    headers: list[str] = []
    for pos, h in enumerate(df.columns):
        text = _header_text(h)
        headers.append(text)
        if not text:
            if _blank_mask(df.iloc[:, pos]).all():
                continue
            rep.add(table=table, message=f"column {w.name(pos)} has no header and is ignored",
                    fix="give the column a header, or delete it", column=None, severity="warning",
                    code="E101", letter=w.letter(pos), sheet=w.sheet)
            continue
        f = _fold(text)
        name = user_to_canon.get(f) or known_fold.get(f) or text
        fname = _fold(name)
        if fname in seen:
            other = seen[fname]
            via = "" if _fold(other.header) == _fold(text) else f" (both are read as {name})"
            rep.add(table=table, column=text, code="E101", row=_header_row(rep, table), value=text,
                    letter=w.letter(pos), sheet=w.sheet,
                    message=(f"duplicate column: '{other.header}' (column {w.name(other.pos)}) and '{text}' "
                             f"(column {w.name(pos)}){via}"),
                    fix="rename or delete one of the two columns")
            ok = False
            continue
        col = _Col(name, text, pos)
        seen[fname] = col
        out[name] = col
    found = ", ".join(h for h in headers if h) or "none"
    mapped = {known_fold.get(_fold(c), c): u for c, u in (column_map or {}).items()}
    for req in required:
        if req in out:
            continue
        ok = False
        if req in mapped:
            message = (f"Settings maps {req} to '{mapped[req]}', but {table} has no column "
                       f"'{mapped[req]}' (columns found: {found})")
        else:
            message = f"{table} has no {req} column (columns found: {found})"
        hint = _suggest(req, headers)
        if hint:
            fix = f"rename column '{hint}' to '{req}', or map it in Settings: column.{req} = {hint}"
        else:
            fix = f"add a {req} column to {table}, or map your column in Settings: column.{req} = <your header>"
        rep.add(table=table, column=req, message=message, fix=fix, code="E101", row=_header_row(rep, table),
                sheet=w.sheet)
    return out if ok else None


def _header_row(rep: _Reporter, table: str) -> int | None:
    """The row of a table's headers (the row above its first data row), when known."""
    first = rep.first_rows.get(table)
    return None if first is None else first - 1


# --------------------------------------------------------------------------------------
# Column parsers (vectorised; loops only over distinct values)
# --------------------------------------------------------------------------------------


@dataclass
class _Num:
    values: np.ndarray  # float64, NaN where blank or bad (or the input's own numeric dtype, see below)
    blank: np.ndarray  # bool
    bad: np.ndarray  # bool
    act: np.ndarray | None = None  # int8 per row: index into _NUM_ACTIONS (-1: used as it is); None: none


#: What reading a number cell did to it (Change.action).
_NUM_ACTIONS = ("text to number", "text to number (spaces trimmed)", "TRUE/FALSE read as 1/0",
                "yes/no read as 1/0", "text read as blank")
_A_TEXT, _A_TRIM, _A_BOOL, _A_YESNO, _A_NA = range(len(_NUM_ACTIONS))


def _finite(x: float) -> bool:
    return math.isfinite(x) and abs(x) <= MAX_ABS_NUMBER


def _scalar_number(v: Any, flag: bool) -> tuple[float, int, int]:
    """(value, status, action) of one cell; action -1 when the cell is used as it is."""
    if _is_blank_scalar(v):
        return math.nan, _BLANK, -1
    if isinstance(v, (bool, np.bool_)):
        return float(v), _OK, _A_BOOL
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
        return (x, _OK, -1) if _finite(x) else (math.nan, _BAD, -1)
    if isinstance(v, str):
        t = v.strip()
        if _NUM_RE.fullmatch(t):
            x = float(t)
            return (x, _OK, _A_TEXT if t == v else _A_TRIM) if _finite(x) else (math.nan, _BAD, -1)
        low = t.casefold()
        if low in _NA_TOKENS:
            return math.nan, _BLANK, _A_NA
        if low in (_FLAG_TRUE_WORDS if flag else _TRUE_WORDS):
            return 1.0, _OK, _A_BOOL if low in _TRUE_WORDS else _A_YESNO
        if low in (_FLAG_FALSE_WORDS if flag else _FALSE_WORDS):
            return 0.0, _OK, _A_BOOL if low in _FALSE_WORDS else _A_YESNO
    return math.nan, _BAD, -1


def _parse_numbers(s: pd.Series, flag: bool = False, as_float: bool = True) -> _Num:
    """Read a number column. Numeric dtypes are taken as they are; text is checked per cell.

    With ``as_float=False`` a plain numpy bool/int/float column without infinities is
    returned as is (a view, not a float64 copy); the caller converts when it gathers rows.
    """
    dt = s.dtype
    if not as_float and isinstance(dt, np.dtype) and dt.kind in "biuf":
        raw = s.to_numpy()
        if dt.kind == "b":
            return _Num(raw, np.zeros(len(raw), bool), np.zeros(len(raw), bool), np.full(len(raw), _A_BOOL, np.int8))
        if dt.kind in "iu":
            if not len(raw) or max(abs(int(raw.min())), abs(int(raw.max()))) <= MAX_ABS_NUMBER:
                return _Num(raw, np.zeros(len(raw), bool), np.zeros(len(raw), bool))
        else:
            with np.errstate(invalid="ignore"):  # two comparisons: no float copy of a 10-million-row column
                bad = raw > MAX_ABS_NUMBER
                bad |= raw < -MAX_ABS_NUMBER  # infinities included
            if not bad.any():
                return _Num(raw, np.isnan(raw), bad)
    numeric = pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_complex_dtype(dt)
    if pd.api.types.is_bool_dtype(dt) or numeric:
        vals = s.to_numpy(dtype="float64", na_value=np.nan)
        blank = np.isnan(vals)
        with np.errstate(invalid="ignore"):
            bad = vals > MAX_ABS_NUMBER
            bad |= vals < -MAX_ABS_NUMBER  # infinities included
        if bad.any():
            vals = np.where(bad, np.nan, vals)
        act = np.where(blank, -1, _A_BOOL).astype(np.int8) if pd.api.types.is_bool_dtype(dt) else None
        return _Num(vals, blank, bad, act)
    if pd.api.types.is_datetime64_any_dtype(dt) or isinstance(dt, pd.PeriodDtype):
        blank = s.isna().to_numpy()
        return _Num(np.full(len(s), np.nan), blank, ~blank)
    codes, uniques = pd.factorize(s.astype(object) if isinstance(dt, pd.CategoricalDtype) else s)
    u = np.asarray(uniques, dtype=object)
    uvals = np.full(len(u), np.nan)
    ustat = np.full(len(u), _BAD, dtype=np.int8)
    uact = np.full(len(u), -1, dtype=np.int8)
    is_str = np.fromiter((type(x) is str for x in u), dtype=bool, count=len(u))
    rest = np.flatnonzero(~is_str)
    if is_str.any():
        # Clean numeric text ("12", " 12 ") in bulk; only the odd ones go through Python.
        sidx = np.flatnonzero(is_str)
        orig = pd.Series(u[sidx], dtype=object)
        st = orig.str.strip()
        ok = st.str.fullmatch(_NUM_RE.pattern).to_numpy(dtype=bool)
        conv = st[ok].astype("float64").to_numpy()
        with np.errstate(invalid="ignore"):
            fin = np.isfinite(conv) & (np.abs(conv) <= MAX_ABS_NUMBER)  # "1e309" is text, not infinity
        good = sidx[ok][fin]
        uvals[good] = conv[fin]
        ustat[good] = _OK
        uact[good] = np.where((st[ok] == orig[ok]).to_numpy(dtype=bool)[fin], _A_TEXT, _A_TRIM)
        rest = np.concatenate([rest, sidx[~ok]])
    for k in rest:
        uvals[k], ustat[k], uact[k] = _scalar_number(u[k], flag)
    # Code -1 (missing) picks the appended last entry: one gather per array, no temporaries.
    codes = np.asarray(codes)
    vals = np.append(uvals, np.nan)[codes]
    blank = np.append(ustat == _BLANK, True)[codes]
    bad = np.append(ustat == _BAD, False)[codes]
    act = np.append(uact, np.int8(-1))[codes] if (uact >= 0).any() else None
    return _Num(vals, blank, bad, act)


def _number_issue(v: Any, header: str) -> tuple[str, str]:
    """What is wrong with a cell that is not a number, and how to fix it."""
    if isinstance(v, (_datetime, _date, pd.Timestamp, np.datetime64)):
        return f"{header} holds a date, not a number", f"enter a number, or format the {header} cells as numbers"
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        if math.isfinite(float(v)):
            return (f"{header} {float(v):g} is too large to be real (more than {MAX_ABS_NUMBER:g})",
                    "check the value and enter the real number")
        return f"{header} is not a finite number", "enter a finite number"
    t = str(v).strip()
    if _NUM_RE.fullmatch(t):
        return (f"{header} '{t}' is too large to be real (more than {MAX_ABS_NUMBER:g})",
                "check the value and enter the real number")
    low = t.casefold()
    if low in _EXCEL_ERRORS:
        return f"{header} holds the Excel error {t}", "fix the formula that gives this error, or clear the cell"
    if _DECIMAL_COMMA_RE.fullmatch(t):
        example = t.replace(",", ".") if t.count(",") == 1 and "." not in t else "1.5"
        return (f"{header} '{t}' has a comma, so it cannot be read safely (decimal comma or thousands "
                f"separator?)", f"use a decimal point ({example}) or format the cells as numbers")
    m = _PERCENT_RE.fullmatch(t)
    if m:
        x = float(m.group(1)) / 100
        return f"{header} '{t}' is written as a percentage", f"write {x:g} (a fraction, not a percentage)"
    m = _NUMBER_IN_TEXT_RE.search(t)
    if m:
        return (f"{header} '{t}' mixes a number with text",
                f"keep only the number ({m.group(0)}) in the cell; put units or notes elsewhere")
    return f"{header} '{t}' is not a number", "enter a number, or leave the cell blank"


@dataclass
class _Keys:
    codes: np.ndarray  # int32 (int64 if huge) into ``uniques``; -1 where blank
    uniques: np.ndarray  # sorted distinct non-blank strings (object)
    blank: np.ndarray  # bool
    act: np.ndarray | None = None  # int8 per row: index into _KEY_ACTIONS (-1: used as it is)
    error: np.ndarray | None = None  # bool per row: an Excel error value (#N/A ...), not a key

    def strings(self, idx: np.ndarray | None = None) -> np.ndarray:
        c = self.codes if idx is None else self.codes[idx]
        table = np.append(self.uniques, "").astype(object)
        return table[np.where(c < 0, len(self.uniques), c)]


#: What reading a key cell (SKU, Location, Category) did to it.
_KEY_ACTIONS = ("spaces trimmed", "date read as text", "TRUE/FALSE read as text", "number read as text")


def _key_action(v: Any) -> int:
    if isinstance(v, str):
        t = v.strip()
        return 0 if t and t != v else -1
    if isinstance(v, (bool, np.bool_)):
        return 2
    if isinstance(v, (_datetime, _date, pd.Timestamp, np.datetime64)):
        return 1
    if isinstance(v, (float, np.floating)) and math.isfinite(float(v)) and not float(v).is_integer():
        return 3
    return -1


def _key_str(v: Any) -> str:
    if _is_blank_scalar(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (float, np.floating)):
        x = float(v)
        # Excel stores SKU 1001 as 1001.0: keep "1001"
        return str(int(x)) if x.is_integer() else repr(x)
    if isinstance(v, (_datetime, pd.Timestamp, np.datetime64)):
        return str(_py(v))
    return str(v).strip()


def _parse_keys(s: pd.Series) -> _Keys:
    """Text keys (SKU, Location): stripped strings; 1001.0 becomes '1001'."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy()
        uniques = np.asarray(s.cat.categories, dtype=object)
    else:
        codes, uniques = pd.factorize(s)
        codes = np.asarray(codes)
        uniques = np.asarray(uniques, dtype=object)
    mapped = np.array([_key_str(u) for u in uniques], dtype=object)
    uact = np.fromiter((_key_action(u) for u in uniques), dtype=np.int8, count=len(uniques))
    uerr = np.fromiter((isinstance(u, str) and u.strip().casefold() in _EXCEL_ERRORS for u in uniques),
                       dtype=bool, count=len(uniques))
    # Merge distinct raw values that read the same (1001 and "1001", "A" and "A ").
    m_codes, m_uniques = pd.factorize(mapped, sort=True)
    m_uniques = np.asarray(m_uniques, dtype=object)
    if len(m_uniques) and m_uniques[0] == "":
        m_codes = m_codes - 1  # "" sorts first: it becomes -1, i.e. blank
        m_uniques = m_uniques[1:]
    # Raw code -1 (missing) picks the appended -1 (np.append would upcast to int64).
    itype = _index_dtype(len(m_uniques))
    table = np.concatenate([np.asarray(m_codes, dtype=itype), np.array([-1], dtype=itype)])
    final = table[codes]
    act = np.append(uact, np.int8(-1))[codes] if (uact >= 0).any() else None
    err = np.append(uerr, False)[codes] if uerr.any() else None
    return _Keys(final, m_uniques, final < 0, act, err)


@dataclass
class _Dates:
    values: np.ndarray  # datetime64[ns], floored to the day; NaT where blank or bad
    blank: np.ndarray
    bad: np.ndarray
    serial: np.ndarray | None  # float: the Excel serial number where a cell holds one, else NaN; None: none
    dayfirst_used: bool | None = None  # set when d/m/y text was read
    dayfirst_example: str | None = None
    act: np.ndarray | None = None  # int8 per row: index into _DATE_ACTIONS (-1: used as it is)


#: What reading a date cell did to it.
_DATE_ACTIONS = ("text to date", "text to date (read as day/month/year)", "text to date (read as month/day/year)",
                 "Excel date serial number to date", "number yyyymmdd to date", "time of day dropped")
_D_TEXT, _D_DMY, _D_MDY, _D_SERIAL, _D_YMD, _D_TIME = range(len(_DATE_ACTIONS))
_MONTH_START_ACTION = "month-end date read as its month (first day)"


def _number_as_date(x: float, serials: bool = False) -> tuple[Any, int, float, int]:
    """A number in a Date column: yyyymmdd is read; an Excel serial is read only from a
    workbook (``serials``) and within 1990-2100, else refused (but shown).

    Returns (date, status, serial shown in the problem, action)."""
    if not math.isfinite(x):
        return pd.NaT, _BAD, math.nan, -1
    if x.is_integer() and 19000101 <= x <= 29991231:
        ts = pd.to_datetime(str(int(x)), format="%Y%m%d", errors="coerce")
        if not pd.isna(ts):
            return ts, _OK, math.nan, _D_YMD
    if serials and _SERIAL_MIN <= x <= _SERIAL_MAX:
        return pd.Timestamp(_serial_to_date(x)), _OK, math.nan, _D_SERIAL
    if 1 <= x <= _EXCEL_MAX_SERIAL:
        return pd.NaT, _BAD, x, -1
    return pd.NaT, _BAD, math.nan, -1


def _parse_dmy(texts: list[str], dayfirst: bool) -> tuple[np.ndarray, bool, str | None]:
    """Parse numeric day/month/year text with ONE order for the whole column.

    The planner's ``dayfirst`` is preferred; if some dates only make sense the other way
    round (13/02/2024) and all of them fit it, the other order is used. Never mixed per
    cell, which would silently swap days and months.
    """
    parts = pd.Series(texts, dtype=object).str.extract(_DMY_RE.pattern)
    a = parts[0].astype(int).to_numpy()
    b = parts[2].astype(int).to_numpy()
    ytxt = parts[3]
    y = ytxt.astype(int).to_numpy()
    two = (ytxt.str.len() == 2).to_numpy()
    y = np.where(two, np.where(y < 69, 2000 + y, 1900 + y), y)
    fits_df = bool(((b >= 1) & (b <= 12) & (a >= 1) & (a <= 31)).all())
    fits_mf = bool(((a >= 1) & (a <= 12) & (b >= 1) & (b <= 31)).all())
    use_df = dayfirst
    example = None
    if dayfirst and not fits_df and fits_mf:
        use_df = False
        example = texts[int(np.argmax(b > 12))]
    elif not dayfirst and not fits_mf and fits_df:
        use_df = True
        example = texts[int(np.argmax(a > 12))]
    day, month = (a, b) if use_df else (b, a)
    out = pd.to_datetime(pd.DataFrame({"year": y, "month": month, "day": day}), errors="coerce")
    return out.to_numpy(dtype="datetime64[ns]"), use_df, example


def _one_text_date(text: str, kw: dict[str, Any]) -> np.datetime64:
    try:
        ts = pd.Timestamp(pd.to_datetime(text, errors="coerce", **kw))
    except (ValueError, TypeError, OverflowError):
        return np.datetime64("NaT")
    if pd.isna(ts):
        return np.datetime64("NaT")
    return (ts.tz_localize(None) if ts.tzinfo is not None else ts).to_datetime64()


def _text_to_dt64(texts: np.ndarray, **kw: Any) -> np.ndarray:
    """pd.to_datetime on text, NaT where unreadable; time zones are dropped (local dates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when it falls back to dateutil
        try:
            out = pd.to_datetime(pd.Series(texts, dtype=object), errors="coerce", **kw)
        except (ValueError, TypeError, OverflowError):  # e.g. mixed time-zone offsets: one by one
            return np.array([_one_text_date(t, kw) for t in texts], dtype="datetime64[ns]")
    if getattr(out.dtype, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return np.asarray(out.to_numpy(dtype="datetime64[ns]"))


def _parse_dates(s: pd.Series, dayfirst: bool, serials: bool = False) -> _Dates:
    """Read a date column: datetimes, ISO and common text formats; serial numbers are
    refused unless ``serials`` (cells from Excel, where a date is a serial number)."""
    n = len(s)
    dt = s.dtype
    if pd.api.types.is_datetime64_any_dtype(dt):
        if getattr(dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)
        raw = s.to_numpy(dtype="datetime64[ns]")
        vals = np.empty(n, dtype="datetime64[ns]")
        timed = False
        for a in range(0, n, _CHUNK):
            vals[a:a + _CHUNK] = raw[a:a + _CHUNK].astype("datetime64[D]")  # times of day are dropped
            timed = timed or bool((vals[a:a + _CHUNK] != raw[a:a + _CHUNK]).any())
        act = None
        if timed:
            act = np.where((vals != raw) & ~np.isnat(raw), _D_TIME, -1).astype(np.int8)
        return _Dates(vals, np.isnat(vals), np.zeros(n, bool), None, act=act)
    codes, uniques = pd.factorize(s.astype(object) if not pd.api.types.is_numeric_dtype(dt) else s)
    u = np.asarray(uniques, dtype=object)
    uvals = np.full(len(u), np.datetime64("NaT"), dtype="datetime64[ns]")
    ustat = np.full(len(u), _BAD, dtype=np.int8)
    userial = np.full(len(u), np.nan)
    uact = np.full(len(u), -1, dtype=np.int8)
    iso_idx: list[int] = []
    iso_txt: list[str] = []
    for k, v in enumerate(u):
        if _is_blank_scalar(v):
            ustat[k] = _BLANK
        elif isinstance(v, (pd.Timestamp, _datetime, _date, np.datetime64)):
            ts = pd.Timestamp(v)
            if pd.isna(ts):
                ustat[k] = _BLANK
                continue
            uvals[k] = (ts.tz_localize(None) if ts.tzinfo is not None else ts).to_datetime64()
            ustat[k] = _OK
            if ts != ts.normalize():
                uact[k] = _D_TIME
        elif isinstance(v, (bool, np.bool_)):
            continue
        elif isinstance(v, (int, float, np.integer, np.floating)):
            ts, ustat[k], userial[k], uact[k] = _number_as_date(float(v), serials)
            if ustat[k] == _OK:
                uvals[k] = ts.to_datetime64()
        elif isinstance(v, str):
            t = v.strip()
            if _NUM_RE.fullmatch(t):
                ts, ustat[k], userial[k], uact[k] = _number_as_date(float(t), serials)
                if ustat[k] == _OK:
                    uvals[k] = ts.to_datetime64()
            else:
                iso_idx.append(k)
                iso_txt.append(t)
    dayfirst_used: bool | None = None
    example: str | None = None
    if iso_idx:
        idx = np.asarray(iso_idx)
        txt = np.asarray(iso_txt, dtype=object)
        dmy = np.fromiter((_DMY_RE.fullmatch(t) is not None for t in iso_txt), dtype=bool, count=len(iso_txt))
        parsed = np.full(len(idx), np.datetime64("NaT"), dtype="datetime64[ns]")
        if dmy.any():
            parsed[dmy], dayfirst_used, example = _parse_dmy(list(txt[dmy]), dayfirst)
        other = ~dmy
        if other.any():
            ot = txt[other]
            got = _text_to_dt64(ot, format="ISO8601")
            fail = np.isnat(got)
            if fail.any():
                got[fail] = _text_to_dt64(ot[fail], format="mixed", dayfirst=dayfirst)
            parsed[other] = got
        good = ~np.isnat(parsed)
        uvals[idx[good]] = parsed[good]
        ustat[idx[good]] = _OK
        how = np.where(dmy, _D_DMY if dayfirst_used else _D_MDY, _D_TEXT).astype(np.int8)
        uact[idx[good]] = how[good]
    uvals = uvals.astype("datetime64[D]").astype("datetime64[ns]")  # times of day are dropped
    # Code -1 (missing) picks the appended last entry: one gather per array, no temporaries.
    codes = np.asarray(codes)
    vals = np.append(uvals, np.datetime64("NaT", "ns"))[codes]
    blank = np.append(ustat == _BLANK, True)[codes]
    bad = np.append(ustat == _BAD, False)[codes]
    serial = np.append(userial, np.nan)[codes] if not np.isnan(userial).all() else None
    act = np.append(uact, np.int8(-1))[codes] if (uact >= 0).any() else None
    return _Dates(vals, blank, bad, serial, dayfirst_used, example, act)


def _date_issue(v: Any, serial: float, header: str) -> tuple[str, str]:
    if not math.isnan(serial):
        shown = int(serial) if float(serial).is_integer() else serial
        return (f"{header} holds the number {shown}, not a date (as an Excel date serial {shown} = "
                f"{_day_str(_serial_to_date(serial))})",
                f"format the {header} column as dates (select the column, Format Cells > Date)")
    t = str(v).strip()
    if _DMY_RE.fullmatch(t):
        return (f"{header} '{t}' cannot be read with the day/month order of the other dates",
                "write all dates in one format, best 2024-01-31 (year-month-day), or format the cells as dates")
    return (f"{header} '{t}' is not a date",
            "write dates like 2024-01-31 (year-month-day), or format the cells as dates")


# --------------------------------------------------------------------------------------
# Frequency grid
# --------------------------------------------------------------------------------------


def _days(values: np.ndarray) -> np.ndarray:
    return values.astype("datetime64[D]").astype(np.int64)


def _weekday(values: np.ndarray) -> np.ndarray:
    return (_days(values) + 3) % 7  # 1970-01-01 was a Thursday


def _to_grid(
    values: np.ndarray, valid: np.ndarray, freq: str, anchor: int | None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Align dates to the grid: month ends become month starts. Returns (dates, off_grid, anchor)."""
    off = np.zeros(len(values), dtype=bool)
    if freq == "D":
        return values, off, None
    v = values[valid]
    if freq == "W":
        wd = _weekday(v)
        if anchor is None:
            anchor = int(np.bincount(wd, minlength=7).argmax()) if len(wd) else 6
        off[valid] = wd != anchor
        return values, off, anchor
    d = v.astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    first = d == month.astype("datetime64[D]")
    last = (d + np.timedelta64(1, "D")).astype("datetime64[M]") != month
    out = values.copy()
    out[valid] = month.astype("datetime64[ns]")
    off[valid] = ~(first | last)
    return out, off, None


def _grid_issue(v: Any, freq: str, anchor: int | None, header: str, table: str) -> tuple[str, str]:
    d = pd.Timestamp(v)
    if freq == "W":
        a = 6 if anchor is None else anchor
        name = _WEEKDAY_NAMES[a]
        return (f"{header} {d:%Y-%m-%d} is a {_WEEKDAY_NAMES[d.weekday()]}, but the weekly dates of "
                f"{table} are {name}s",
                f"date every week on the same weekday ({name}), one row per week")
    return (f"{header} {d:%Y-%m-%d} is not the first (or last) day of a month, as monthly dates must be",
            f"date each month on its first day (e.g. {d:%Y-%m}-01)")


# --------------------------------------------------------------------------------------
# Shared table helpers
# --------------------------------------------------------------------------------------


def _first_pairs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of repeated keys and the position of their first occurrence."""
    if len(codes) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    _, first_idx, inv = np.unique(codes, return_index=True, return_inverse=True)
    pos = np.arange(len(codes))
    first_of = first_idx[inv]
    dup = pos != first_of
    return pos[dup], first_of[dup]


def _group_codes(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One int code per distinct combination of the given int arrays."""
    if len(arrays) == 1:
        return np.asarray(arrays[0], dtype=np.int64)
    if len(arrays[0]) == 0:  # an empty table: MultiIndex cannot infer its levels from nothing
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays(list(arrays)))
    return np.asarray(codes, dtype=np.int64)


def _numeric_or_text(num: _Num, keep: np.ndarray) -> str:
    """'numeric', 'text' or 'empty' for an extra column (mostly text means comments)."""
    filled = keep & ~num.blank
    n = int(filled.sum())
    if n == 0:
        return "empty"
    return "text" if int((num.bad & keep).sum()) * 2 > n else "numeric"


def _report_number_cells(rep: _Reporter, table: str, col: _Col, num: _Num, keep: np.ndarray,
                         rows: _RowLookup, raw: pd.Series) -> None:
    rep.rows(np.flatnonzero(num.bad & keep), table=table, column=col.header, rows=rows,
             value_of=lambda i: raw.iloc[i], describe=lambda v, i: _number_issue(v, col.header),
             code="E102")


def _report_date_cells(rep: _Reporter, table: str, col: _Col, d: _Dates, keep: np.ndarray,
                       rows: _RowLookup, raw: pd.Series) -> None:
    rep.rows(np.flatnonzero(d.bad & keep), table=table, column=col.header, rows=rows,
             value_of=lambda i: raw.iloc[i],
             describe=lambda v, i: _date_issue(v, math.nan if d.serial is None else d.serial[i], col.header),
             code="E105")
    rep.rows(np.flatnonzero(d.blank & keep), table=table, column=col.header, rows=rows,
             value_of=lambda i: None,
             describe=lambda v, i: (f"{col.header} is blank", "enter the date, or delete the row"),
             code="E105")
    if d.dayfirst_example is not None:
        order = "day/month/year" if d.dayfirst_used else "month/day/year"
        rep.add(table=table, column=col.header, value=d.dayfirst_example, code="E105", severity="warning",
                message=f"dates were read as {order} because of dates like {d.dayfirst_example}",
                fix="check a few dates; write dates as 2024-01-31 (year-month-day) to avoid any doubt")


def _record_number_changes(rep: _Reporter, table: str, col: _Col, num: _Num, keep: np.ndarray,
                           rows: _RowLookup, raw: pd.Series) -> None:
    if num.act is None:
        return
    rep.change(np.flatnonzero((num.act >= 0) & keep & ~num.bad), table=table, col=col, rows=rows, act=num.act,
               names=_NUM_ACTIONS, original_of=lambda i: raw.iloc[i],
               used_of=lambda i: None if num.blank[i] else num.values[i])


def _record_key_changes(rep: _Reporter, table: str, col: _Col, keys: _Keys, keep: np.ndarray,
                        rows: _RowLookup, raw: pd.Series) -> None:
    if keys.act is None:
        return
    rep.change(np.flatnonzero((keys.act >= 0) & keep), table=table, col=col, rows=rows, act=keys.act,
               names=_KEY_ACTIONS, original_of=lambda i: raw.iloc[i],
               used_of=lambda i: keys.uniques[keys.codes[i]] if keys.codes[i] >= 0 else None)


def _report_key_errors(rep: _Reporter, table: str, col: _Col, keys: _Keys, keep: np.ndarray,
                       rows: _RowLookup, raw: pd.Series) -> None:
    """An Excel error (#N/A ...) in a key column is an error, never a SKU named '#N/A'."""
    if keys.error is None:
        return
    rep.rows(np.flatnonzero(keys.error & keep), table=table, column=col.header, rows=rows,
             value_of=lambda i: raw.iloc[i],
             describe=lambda v, i: (f"{col.header} holds the Excel error {str(v).strip()}",
                                    "fix the formula that gives this error, or type the value"),
             code="E102")


def _keys_checked(rep: _Reporter, table: str, col: _Col, keys: _Keys, keep: np.ndarray, rows: _RowLookup,
                  raw: pd.Series, bad: np.ndarray | None = None) -> np.ndarray | None:
    """Report error values and record changes of a key column; returns ``bad`` or-ed with
    the rows whose key is an Excel error, which the caller leaves out of the later checks
    (duplicates, unknown SKUs), so nothing downstream reports a SKU named '#N/A'."""
    _report_key_errors(rep, table, col, keys, keep, rows, raw)
    _record_key_changes(rep, table, col, keys, keep, rows, raw)
    if keys.error is None:
        return bad
    return keys.error if bad is None else bad | keys.error


def _record_date_changes(rep: _Reporter, table: str, col: _Col, d: _Dates, keep: np.ndarray,
                         rows: _RowLookup, raw: pd.Series) -> None:
    if d.act is None:
        return
    rep.change(np.flatnonzero((d.act >= 0) & keep & ~d.bad & ~d.blank), table=table, col=col, rows=rows,
               act=d.act, names=_DATE_ACTIONS, original_of=lambda i: raw.iloc[i], used_of=lambda i: d.values[i])


def _record_month_starts(rep: _Reporter, table: str, col: _Col, before: np.ndarray, after: np.ndarray,
                         valid: np.ndarray, rows: _RowLookup, raw: pd.Series) -> None:
    """Monthly dates on a month's last day are read as that month: say so."""
    moved = np.flatnonzero(valid & (before != after))
    rep.change(moved, table=table, col=col, rows=rows, act=None, names=(_MONTH_START_ACTION,),
               original_of=lambda i: raw.iloc[i], used_of=lambda i: after[i])


def _record_blank_rows(rep: _Reporter, table: str, keep: np.ndarray, rows: _RowLookup) -> None:
    rep.change(np.flatnonzero(~keep), table=table, col=None, rows=rows, act=None,
               names=("blank row skipped (every cell empty)",), original_of=lambda i: None, used_of=lambda i: None)


def _extra_columns(
    table: str, df: pd.DataFrame, cols: Mapping[str, _Col], nums: Mapping[str, _Num], keep: np.ndarray,
    rows: _RowLookup, rep: _Reporter, *, always_numeric: Iterable[str],
) -> dict[str, tuple[_Col, _Num]]:
    """Keep the numeric extra columns (bad cells reported); drop mostly-text ones with a warning."""
    always = {_fold(c) for c in always_numeric}
    where = "Items" if table == "Sales" else "a separate sheet"
    out: dict[str, tuple[_Col, _Num]] = {}
    for name, num in nums.items():
        col = cols[name]
        if _fold(name) not in always and _fold(col.header) not in always:
            kind = _numeric_or_text(num, keep)
            if kind == "empty":
                rep.add(table=table, column=col.header, severity="warning", code="E102",
                        message=f"column {col.header} is empty and is ignored",
                        fix="fill it in, or delete the column")
                continue
            if kind == "text":
                rep.add(table=table, column=col.header, severity="warning", code="E102",
                        message=f"column {col.header} is not numeric (mostly text) and is ignored as a driver",
                        fix=f"keep drivers numeric (e.g. 1/0 for yes/no); put text attributes in {where}")
                continue
        _report_number_cells(rep, table, col, num, keep, rows, df.iloc[:, col.pos])
        _record_number_changes(rep, table, col, num, keep, rows, df.iloc[:, col.pos])
        out[name] = (col, num)
    return out


def _blank_mask(s: pd.Series) -> np.ndarray:
    """Cells that are empty (NaN, None, whitespace-only text), computed per distinct value."""
    if s.dtype != object:
        return s.isna().to_numpy()
    codes, uniques = pd.factorize(s)
    ub = np.fromiter((_is_blank_scalar(u) for u in uniques), dtype=bool, count=len(uniques))
    return np.append(ub, True)[np.asarray(codes)]  # code -1 (missing) picks the appended True


def _all_blank(masks: Iterable[np.ndarray], n: int) -> np.ndarray:
    out = np.ones(n, dtype=bool)
    for m in masks:
        out &= m
    return out


# --------------------------------------------------------------------------------------
# Sales
# --------------------------------------------------------------------------------------


@dataclass
class _SalesState:
    """Sales after the checks: the valid rows in SKU, Location, Date order.

    Rows are not copied here: ``src`` gives each sorted row's position in the input and
    ``qty`` / ``numeric`` are the parsed input columns (input order), so the rows are
    gathered once, straight into the output frame, by :func:`_build_sales`.
    """

    freq: str
    anchor: int | None
    src: np.ndarray  # per sorted row: its position in the input
    sid: np.ndarray  # per sorted row: series code
    period: np.ndarray  # per sorted row: period number
    qty: np.ndarray  # per input row: Qty as parsed (NaN where blank or bad)
    numeric: dict[str, np.ndarray]  # per input row: the numeric extra columns as parsed
    hist_last: np.ndarray  # per series: last period with a Qty (INT64_MIN if none)
    series_first_row: np.ndarray  # per series: smallest row number
    series_sku: np.ndarray
    series_loc: np.ndarray
    has_location: bool
    gap_prev: np.ndarray  # sorted positions just before a history gap
    regressors: list[str]
    sku_header: str


_NO_PERIOD = np.iinfo(np.int64).min


def _distinct_days(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The distinct valid dates, per chunk first (frequency inference only needs the distinct ones)."""
    parts = [pd.unique(values[a:a + _CHUNK][valid[a:a + _CHUNK]]) for a in range(0, len(values), _CHUNK)]
    return pd.unique(np.concatenate(parts)) if parts else values[:0]


def _series_codes(combo: np.ndarray, n_combos: int) -> tuple[np.ndarray, np.ndarray]:
    """Series code per row (rank of its SKU/Location combination) and the sorted combinations."""
    if n_combos <= max(len(combo), 1 << 16):
        # Few possible combinations: a presence table instead of hashing 10 million values.
        seen = np.zeros(n_combos, dtype=bool)
        seen[combo] = True
        rank = np.cumsum(seen, dtype=_index_dtype(n_combos)) - 1
        return rank[combo], np.flatnonzero(seen)
    codes, uniques = pd.factorize(combo, sort=True)
    return np.asarray(codes).astype(_index_dtype(len(uniques))), np.asarray(uniques, dtype=np.int64)


def _check_sales(
    df: pd.DataFrame, rows: _RowLookup, rep: _Reporter, *, freq: str | None, column_map: Mapping[str, str] | None,
    gaps: str, dayfirst: bool, forced: Sequence[str],
) -> _SalesState | None:
    table = "Sales"
    known = (*S.SALES_REQUIRED, *S.SALES_OPTIONAL, S.CATEGORY)
    cols = _match_headers(df, table, S.SALES_REQUIRED, known, column_map, rep)
    if cols is None:
        return None
    n = len(df)
    c_date, c_sku, c_qty = cols[S.DATE], cols[S.SKU], cols[S.QTY]
    raw_date, raw_sku, raw_qty = (df.iloc[:, c.pos] for c in (c_date, c_sku, c_qty))
    sku = _parse_keys(raw_sku)
    loc = _parse_keys(df.iloc[:, cols[S.LOCATION].pos]) if S.LOCATION in cols else None
    dates = _parse_dates(raw_date, dayfirst, serials=(rep.where.get(table) or _Where(df)).excel)
    qty = _parse_numbers(raw_qty, as_float=False)
    ignored_text = {S.CATEGORY} & set(cols)
    for name in ignored_text:
        rep.add(table=table, column=cols[name].header, severity="warning", code="E102",
                message=f"column {cols[name].header} is not used from Sales",
                fix="put item attributes such as Category in the Items table")
    # Extras are parsed before deciding which rows are blank; their bad cells are reported after.
    forced_f = {_fold(c) for c in forced}
    extra_nums = {
        k: _parse_numbers(df.iloc[:, c.pos], flag=k in _FLAG_COLUMNS or _fold(c.header) in forced_f,
                          as_float=False)
        for k, c in cols.items() if k not in (S.DATE, S.SKU, S.LOCATION, S.QTY) and k not in ignored_text
    }
    blank_masks = [sku.blank, dates.blank, qty.blank] + [m.blank for m in extra_nums.values()]
    if loc is not None:
        blank_masks.append(loc.blank)
    keep = ~_all_blank(blank_masks, n)
    del blank_masks
    if not keep.any():
        rep.add(table=table, message="Sales has no data rows", fix="add one row per SKU, Location and period",
                code="E109")
        return None

    # Cell checks ------------------------------------------------------------------
    rep.rows(np.flatnonzero(sku.blank & keep), table=table, column=c_sku.header, rows=rows,
             value_of=lambda i: None,
             describe=lambda v, i: (f"{c_sku.header} is blank", "enter the SKU, or delete the row"), code="E102")
    _record_blank_rows(rep, table, keep, rows)
    key_err = _keys_checked(rep, table, c_sku, sku, keep, rows, raw_sku)
    if loc is not None:
        key_err = _keys_checked(rep, table, cols[S.LOCATION], loc, keep, rows, df.iloc[:, cols[S.LOCATION].pos],
                                key_err)
    _report_date_cells(rep, table, c_date, dates, keep, rows, raw_date)
    _record_date_changes(rep, table, c_date, dates, keep, rows, raw_date)
    _report_number_cells(rep, table, c_qty, qty, keep, rows, raw_qty)
    _record_number_changes(rep, table, c_qty, qty, keep, rows, raw_qty)
    numeric = _extra_columns(table, df, cols, extra_nums, keep, rows, rep,
                             always_numeric=(*_SALES_NUMERIC, *forced))
    del extra_nums

    # Frequency and grid -------------------------------------------------------------
    valid = keep & ~sku.blank & ~dates.blank & ~dates.bad
    if key_err is not None:
        valid &= ~key_err
    anchor: int | None = None
    try:
        if freq is not None:
            f = normalize_freq(freq)
            fu = str(freq).strip().upper()
            if f == "W" and fu.startswith("W-") and fu[2:5] in _WEEKDAY_ALIASES:
                anchor = _WEEKDAY_ALIASES.index(fu[2:5])
        else:
            if not valid.any():
                return None
            f = infer_freq(pd.DatetimeIndex(_distinct_days(dates.values, valid)), table)
    except InputError as e:
        # With unreadable dates, a failed inference is a consequence, not news.
        if freq is not None or not (dates.bad & keep).any():
            rep.pc.problems.extend(e.problems)
        return None
    aligned, off, anchor = _to_grid(dates.values, valid, f, anchor)
    rep.rows(np.flatnonzero(off), table=table, column=c_date.header, rows=rows,
             value_of=lambda i: dates.values[i],
             describe=lambda v, i: _grid_issue(v, f, anchor, c_date.header, table), code="E105")
    valid &= ~off
    if f == "MS":
        _record_month_starts(rep, table, c_date, dates.values, aligned, valid, rows, raw_date)
    del off
    n_valid = int(valid.sum())
    if n_valid == 0:
        return None
    ix = _index_dtype(n)
    vidx = None if n_valid == n else np.flatnonzero(valid).astype(ix)  # None: every row

    # Series and sort order ------------------------------------------------------------
    period = np.empty(n_valid, dtype=np.int64)
    for a in range(0, n_valid, _CHUNK):
        part = aligned[a:a + _CHUNK] if vidx is None else aligned[vidx[a:a + _CHUNK]]
        period[a:a + _CHUNK] = to_period(part, f)
    del aligned, dates  # the datetime column is the largest array of the checks
    has_location = loc is not None
    if loc is not None:
        n_loc = len(loc.uniques) + 1
        loc_table = np.append(np.array([""], dtype=object), loc.uniques).astype(object)
    else:
        n_loc = 1
        loc_table = np.array([""], dtype=object)
    # Combination code sku * n_loc + location + 1 (blank Location, -1, is its own value, sorting first)
    combo = (sku.codes if vidx is None else _take(sku.codes, vidx)).astype(np.int64)
    if loc is not None:
        combo *= n_loc
        combo += loc.codes if vidx is None else _take(loc.codes, vidx)
        combo += 1
    sid, combos = _series_codes(combo, len(sku.uniques) * n_loc)
    del combo
    n_series = len(combos)
    series_sku = sku.uniques[combos // n_loc]
    series_loc = loc_table[combos % n_loc]
    # Series with a row left out (unreadable or off-grid date): their gaps are not news (below).
    left_out = np.flatnonzero(keep & ~sku.blank & ~valid)
    left_out_combos = sku.codes[left_out].astype(np.int64) * n_loc
    if loc is not None:
        left_out_combos += loc.codes[left_out].astype(np.int64) + 1
    del left_out, keep, valid, sku, loc  # key codes per input row are no longer needed

    pmin = int(period.min())
    span = int(period.max()) - pmin + 1
    key = sid.astype(np.int64)
    key *= span
    key += period
    key -= pmin
    del period
    if n_valid > 1 and not bool((key[1:] >= key[:-1]).all()):
        order = np.argsort(key, kind="stable")
        key = key[order]
        sid = _take(sid, order)
        src = order.astype(ix) if vidx is None else _take(vidx, order)
        del order
    else:
        src = np.arange(n, dtype=ix) if vidx is None else vidx
    del vidx
    sid_s = sid
    dup = np.flatnonzero(key[1:] == key[:-1]) + 1
    per_s = key  # key -> period number, in place: key % span == period - pmin
    np.remainder(per_s, span, out=per_s)
    per_s += pmin
    del key
    rows_s = _RowsOf(rows, src)

    def _day_of(i: int) -> np.datetime64:
        return from_period(np.array([per_s[i]]), f, anchor).values[0]

    # Duplicates
    if len(dup):
        def _dup_issue(v: Any, i: int) -> tuple[str, str]:
            where = f"SKU {series_sku[sid_s[i]]}"
            if has_location and series_loc[sid_s[i]]:
                where += f" at {series_loc[sid_s[i]]}"
            return (f"duplicate row: {where} on {_day_str(v)} is also on row {int(rows_s[i - 1])}",
                    "keep one row per SKU, Location and period (add the quantities up if both are real)")
        rep.rows(dup, table=table, column=c_date.header, rows=rows_s, value_of=_day_of,
                 describe=_dup_issue, code="E103")

    # History end per series and plan rows
    present_s = ~_take(qty.blank, src)  # a bad Qty is still a row with a quantity (reported above)
    group_start = np.flatnonzero(np.append(True, sid_s[1:] != sid_s[:-1]))  # every series has rows
    hist_last = np.maximum.reduceat(np.where(present_s, per_s, _NO_PERIOD), group_start)
    row_hist_last = np.repeat(hist_last, np.diff(np.append(group_start, len(sid_s))))
    blank_hist = np.flatnonzero(~present_s & (per_s <= row_hist_last))
    rep.rows(blank_hist, table=table, column=c_qty.header, rows=rows_s, value_of=lambda i: None,
             describe=lambda v, i: (f"{c_qty.header} is blank in a past period (before the series' last sale)",
                                    "enter 0 if nothing sold; blank quantities are only allowed in future "
                                    "plan rows after a series' last sale"),
             code="E102")
    series_first_row = np.minimum.reduceat(rows[src], group_start)

    def _series_name(k: int) -> str:
        name = f"SKU {series_sku[k]}"
        return name + (f" at {series_loc[k]}" if series_loc[k] else "")

    no_hist = np.flatnonzero(hist_last == _NO_PERIOD)
    if len(no_hist) == n_series:
        rep.add(table=table, column=c_qty.header, code="E109",
                message=f"Sales has no quantities: every {c_qty.header} is blank",
                fix="enter the quantities sold per period (0 if nothing sold)")
    else:
        rep.rows(no_hist, table=table, column=c_qty.header, rows=series_first_row, value_of=lambda k: None,
                 describe=lambda v, k: (f"{_series_name(k)} has no sales history (all {c_qty.header} blank); "
                                        "it can only be forecast from similar items",
                                        "enter past quantities (0 if nothing sold) if it has any history"),
                 code="E109", severity="warning")
        global_last = int(hist_last.max())
        early = ~present_s & (per_s > row_hist_last) & (per_s <= global_last) & (row_hist_last != _NO_PERIOD)
        early_pos = np.flatnonzero(early)
        del early
        if len(early_pos):
            # one warning per series: its first early plan row
            e_sid = sid_s[early_pos]
            first_early = early_pos[np.flatnonzero(np.append(True, e_sid[1:] != e_sid[:-1]))]
            last_day = _day_str(from_period(np.array([global_last]), f, anchor)[0])
            rep.rows(first_early, table=table, column=c_qty.header, rows=rows_s,
                     value_of=lambda i: None,
                     describe=lambda v, i: (
                         f"{_series_name(int(sid_s[i]))} has blank {c_qty.header} from "
                         f"{_day_str(_day_of(i))} while other series have sales until {last_day}; "
                         "these rows are treated as future plan rows",
                         "enter 0 for past periods without sales"),
                     code="E102", severity="warning")
    del present_s

    # Gaps inside each series' history
    gap_prev = np.empty(0, dtype=np.int64)
    if len(per_s) > 1:
        same = sid_s[1:] == sid_s[:-1]
        same &= per_s[1:] - per_s[:-1] > 1
        same &= per_s[1:] <= row_hist_last[1:]
        gap_prev = np.flatnonzero(same)
        del same
    del row_hist_last
    if len(gap_prev) and len(left_out_combos):
        # A series with a row left out (unreadable or off-grid date) has a gap because of it:
        # that row is already reported, so no gap problem for the series.
        hit = np.isin(combos, left_out_combos)
        gap_prev = gap_prev[~hit[sid_s[gap_prev]]]
    if len(gap_prev):
        missing = (per_s[gap_prev + 1] - per_s[gap_prev] - 1).astype(np.int64)
        g_sid = sid_s[gap_prev]
        per_series = np.bincount(g_sid, weights=missing, minlength=n_series).astype(np.int64)
        first_gap = gap_prev[np.flatnonzero(np.append(True, g_sid[1:] != g_sid[:-1]))]
        if gaps == "error":
            rep.rows(first_gap, table=table, column=c_date.header, rows=rows_s,
                     value_of=lambda i: from_period(np.array([per_s[i] + 1]), f, anchor)[0],
                     describe=lambda v, i: (
                         f"{_series_name(int(sid_s[i]))} has {per_series[sid_s[i]]} missing "
                         f"period{'s' if per_series[sid_s[i]] > 1 else ''} between its first and last sale; "
                         f"the first missing is {_day_str(v)} (after this row)",
                         "add rows with Qty 0 for periods without sales"),
                     code="E104")
        else:
            k = int(first_gap[0])
            first_missing = _day_str(from_period(np.array([per_s[k] + 1]), f, anchor)[0])
            rep.add(table=table, column=c_date.header, severity="warning", code="E104",
                    message=(f"{int(missing.sum())} missing periods in {len(first_gap)} series were filled "
                             f"with {c_qty.header} 0 (first: {_series_name(int(sid_s[k]))} on {first_missing})"),
                    fix="nothing to do if no sales were recorded then; otherwise add the missing rows")

    # Negative quantities are returns: accepted, but shown
    neg = np.flatnonzero(_take(qty.values < 0, src))
    rep.rows(neg, table=table, column=c_qty.header, rows=rows_s,
             value_of=lambda i: np.float64(qty.values[src[i]]),
             describe=lambda v, i: (f"negative {c_qty.header} (a return?)",
                                    "nothing to do if these are returns; otherwise correct the quantity"),
             code="E102", severity="warning")

    regressors = [k for k in (S.PRICE, S.PROMO) if k in numeric]
    regressors += [k for k in numeric if k not in (S.PRICE, S.PROMO, S.ONHAND)]
    return _SalesState(
        freq=f, anchor=anchor, src=src, sid=sid_s, period=per_s,
        qty=qty.values, numeric={k: num.values for k, (_, num) in numeric.items()},
        hist_last=hist_last, series_first_row=series_first_row, series_sku=series_sku,
        series_loc=series_loc, has_location=has_location, gap_prev=gap_prev,
        regressors=regressors, sku_header=c_sku.header,
    )


def _build_sales(st: _SalesState, fill_gaps: bool) -> pd.DataFrame:
    """The canonical Sales frame, one block per dtype, filled in place (no whole-frame copies).

    Takes the per-row arrays out of ``st`` and frees each once its columns are built, so the
    peak is about the output frame plus one index array.
    """
    src, sid, per = st.src, st.sid, st.period
    st.src = st.sid = st.period = np.empty(0, dtype=np.int64)  # released: the frame holds the data now
    filled = None
    if fill_gaps and len(st.gap_prev):
        g = st.gap_prev
        starts = per[g] + 1
        lens = per[g + 1] - per[g] - 1
        total = int(lens.sum())
        offs = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        # New rows go between the rows around each gap, which keeps the SKU, Location, Date order.
        at = np.repeat(g + 1, lens)
        per = np.insert(per, at, np.repeat(starts, lens) + offs)
        sid = np.insert(sid, at, np.repeat(sid[g], lens))
        src = np.insert(src, at, 0)  # a placeholder: the values of new rows are set below
        filled = at + np.arange(total)
    n = len(per)
    dates = np.empty(n, dtype="datetime64[ns]")
    for a in range(0, n, _CHUNK):
        dates[a:a + _CHUNK] = from_period(per[a:a + _CHUNK], st.freq, st.anchor).values
    del per
    keys = np.empty((2, n), dtype=object)  # SKU and Location share the strings of the series names
    for a in range(0, n, _CHUNK):
        part = sid[a:a + _CHUNK]
        keys[0, a:a + _CHUNK] = st.series_sku[part]
        keys[1, a:a + _CHUNK] = st.series_loc[part]
    del sid
    names = [S.QTY, *st.numeric]
    nums = np.empty((len(names), n), dtype="float64")
    for j, values in enumerate([st.qty, *st.numeric.values()]):
        _take(values, src, out=nums[j])
        if filled is not None:
            nums[j, filled] = 0.0 if j == 0 else np.nan  # Qty 0, unknown drivers
    del src
    return pd.concat(
        [pd.DataFrame({S.DATE: dates}, copy=False),
         pd.DataFrame(keys.T, columns=[S.SKU, S.LOCATION], dtype=object, copy=False),
         pd.DataFrame(nums.T, columns=names, copy=False)],
        axis=1, copy=False,
    )


# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------


@dataclass
class _ItemsState:
    frame: pd.DataFrame
    keys: set[tuple[str, str]]  # (SKU, Location); Location "" = every location
    skus_folded: dict[str, str]
    has_location: bool


def _check_items(df: pd.DataFrame, rows: _RowLookup, rep: _Reporter,
                 column_map: Mapping[str, str] | None) -> _ItemsState | None:
    table = "Items"
    cols = _match_headers(df, table, S.ITEMS_REQUIRED, (S.SKU, *S.ITEMS_OPTIONAL), column_map, rep)
    if cols is None:
        return None
    n = len(df)
    c_sku = cols[S.SKU]
    sku = _parse_keys(df.iloc[:, c_sku.pos])
    loc = _parse_keys(df.iloc[:, cols[S.LOCATION].pos]) if S.LOCATION in cols else None
    cat = _parse_keys(df.iloc[:, cols[S.CATEGORY].pos]) if S.CATEGORY in cols else None
    nums = {k: _parse_numbers(df.iloc[:, cols[k].pos], flag=k in _FLAG_COLUMNS)
            for k in _ITEMS_NUMERIC if k in cols}
    masks = [sku.blank] + [m.blank for m in nums.values()]
    masks += [k.blank for k in (loc, cat) if k is not None]
    keep = ~_all_blank(masks, n)
    rep.rows(np.flatnonzero(sku.blank & keep), table=table, column=c_sku.header, rows=rows,
             value_of=lambda i: None,
             describe=lambda v, i: (f"{c_sku.header} is blank", "enter the SKU, or delete the row"), code="E102")
    _record_blank_rows(rep, table, keep, rows)
    key_err = None
    for name, keys in ((S.SKU, sku), (S.LOCATION, loc), (S.CATEGORY, cat)):
        if keys is not None:
            key_err = _keys_checked(rep, table, cols[name], keys, keep, rows, df.iloc[:, cols[name].pos], key_err)
    for k, num in nums.items():
        col = cols[k]
        raw = df.iloc[:, col.pos]
        _report_number_cells(rep, table, col, num, keep, rows, raw)
        _record_number_changes(rep, table, col, num, keep, rows, raw)
        ok = keep & ~num.blank & ~num.bad
        if k in _ITEMS_FRACTIONS:
            out_of = np.flatnonzero(ok & ((num.values <= 0) | (num.values >= 1)))

            def _frac_issue(v: Any, i: int, header: str = col.header) -> tuple[str, str]:
                x = float(v)
                if 1 < x <= 100:
                    return (f"{header} {x:g} looks like a percentage; it must be a fraction between 0 and 1",
                            f"write {x / 100:g}")
                return (f"{header} must be between 0 and 1 (exclusive)",
                        "write a fraction such as 0.95 (0.99 at most for a normal distribution)")
            rep.rows(out_of, table=table, column=col.header, rows=rows, value_of=lambda i, r=raw: r.iloc[i],
                     describe=lambda v, i, n=num, f=_frac_issue: f(n.values[i], i), code="E102")
        elif k in _ITEMS_NON_NEGATIVE:
            rep.rows(np.flatnonzero(ok & (num.values < 0)), table=table, column=col.header, rows=rows,
                     value_of=lambda i, r=raw: r.iloc[i],
                     describe=lambda v, i, h=col.header: (f"{h} is negative", f"enter 0 or more for {h}"),
                     code="E102")
    good = keep & ~sku.blank
    if key_err is not None:
        good &= ~key_err
    pos = np.flatnonzero(good)
    key_arrays = [sku.codes[pos]] + ([loc.codes[pos]] if loc is not None else [])
    dup, first = _first_pairs(_group_codes(key_arrays))
    if len(dup):
        label = "SKU and Location" if loc is not None else "SKU"
        first_row = dict(zip(pos[dup].tolist(), rows[pos[first]].tolist()))

        def _dup_item(v: Any, i: int) -> tuple[str, str]:
            what = f"{v} at {loc.uniques[loc.codes[i]]}" if loc is not None and loc.codes[i] >= 0 else f"{v}"
            return f"duplicate {label}: {what} is also on row {first_row[i]}", f"keep one row per {label}"
        rep.rows(pos[dup], table=table, column=c_sku.header, rows=rows,
                 value_of=lambda i: sku.uniques[sku.codes[i]], describe=_dup_item, code="E103")
    # Output frame
    data: dict[str, Any] = {S.SKU: sku.strings(pos)}
    if loc is not None:
        data[S.LOCATION] = loc.strings(pos)
    for name, col in cols.items():
        if name in (S.SKU, S.LOCATION):
            continue
        if name in nums:
            data[name] = nums[name].values[pos]
        elif cat is not None and name == S.CATEGORY:
            data[name] = cat.strings(pos)
        else:
            raw = df.iloc[pos, col.pos].to_numpy(dtype=object)
            data[name] = np.array([v.strip() if isinstance(v, str) else v for v in raw], dtype=object)
            trimmed = np.fromiter((isinstance(v, str) and v.strip() != v and bool(v.strip()) for v in raw),
                                  dtype=bool, count=len(raw))
            rep.change(pos[trimmed], table=table, col=col, rows=rows, act=None, names=("spaces trimmed",),
                       original_of=lambda i, c=col.pos: df.iloc[i, c],
                       used_of=lambda i, c=col.pos: str(df.iloc[i, c]).strip())
    frame = pd.DataFrame(data)
    locs = data.get(S.LOCATION, np.full(len(pos), "", dtype=object))
    keys = set(zip(data[S.SKU].tolist(), list(locs)))
    folded = {s.casefold(): s for s in sku.uniques}
    return _ItemsState(frame, keys, folded, loc is not None)


def _check_sales_in_items(st: _SalesState, items: _ItemsState, rep: _Reporter) -> None:
    """Every Sales SKU (and Location, when both tables have one) must be in Items."""
    by_location = items.has_location and st.has_location
    if by_location:
        known = np.fromiter(((s, l) in items.keys or (s, "") in items.keys
                             for s, l in zip(st.series_sku.tolist(), st.series_loc.tolist())),
                            dtype=bool, count=len(st.series_sku))
        unknown = np.flatnonzero(~known)
        names = [f"{st.series_sku[k]}" + (f" at {st.series_loc[k]}" if st.series_loc[k] else "")
                 for k in range(len(st.series_sku))]
        first_rows = st.series_first_row
        subject = "SKU and Location"
    else:
        skus, inv = np.unique(st.series_sku, return_inverse=True)
        first_rows = np.full(len(skus), np.iinfo(np.int64).max)
        np.minimum.at(first_rows, inv, st.series_first_row)
        item_skus = {s for s, _ in items.keys}
        unknown = np.flatnonzero(~np.fromiter((s in item_skus for s in skus.tolist()), bool, len(skus)))
        names = [str(s) for s in skus]
        subject = "SKU"
    skus_of = st.series_sku if by_location else names

    def _issue(v: Any, k: int) -> tuple[str, str]:
        near = items.skus_folded.get(str(skus_of[k]).casefold())
        hint = f" (Items has '{near}': check upper/lower case)" if near and near != skus_of[k] else ""
        return (f"{subject} {names[k]} is not in the Items table{hint} (first Sales row shown)",
                f"add {names[k]} to the Items table, or correct the SKU in Sales")

    rep.rows(unknown, table="Sales", column=st.sku_header, rows=first_rows, value_of=lambda k: names[k],
             describe=_issue, code="E106")


# --------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------


def _check_drivers(
    df: pd.DataFrame, rows: _RowLookup, rep: _Reporter, *, st: _SalesState | None, sales_columns: set[str],
    column_map: Mapping[str, str] | None, dayfirst: bool,
) -> tuple[pd.DataFrame | None, list[str]]:
    table = "Drivers"
    cols = _match_headers(df, table, S.DRIVERS_REQUIRED, (S.DATE, S.LOCATION, S.SKU), column_map, rep)
    if cols is None:
        return None, []
    n = len(df)
    c_date = cols[S.DATE]
    raw_date = df.iloc[:, c_date.pos]
    dates = _parse_dates(raw_date, dayfirst, serials=(rep.where.get(table) or _Where(df)).excel)
    loc = _parse_keys(df.iloc[:, cols[S.LOCATION].pos]) if S.LOCATION in cols else None
    sku = _parse_keys(df.iloc[:, cols[S.SKU].pos]) if S.SKU in cols else None
    pre = {k: _parse_numbers(df.iloc[:, c.pos]) for k, c in cols.items() if k not in (S.DATE, S.LOCATION, S.SKU)}
    masks = [dates.blank] + [m.blank for m in pre.values()] + [k.blank for k in (loc, sku) if k is not None]
    keep = ~_all_blank(masks, n)
    _record_blank_rows(rep, table, keep, rows)
    _report_date_cells(rep, table, c_date, dates, keep, rows, raw_date)
    _record_date_changes(rep, table, c_date, dates, keep, rows, raw_date)
    key_err = None
    for name, keys in ((S.LOCATION, loc), (S.SKU, sku)):
        if keys is not None:
            key_err = _keys_checked(rep, table, cols[name], keys, keep, rows, df.iloc[:, cols[name].pos], key_err)
    numeric = _extra_columns(table, df, cols, pre, keep, rows, rep, always_numeric=())
    # A driver that is also a Sales column would be ambiguous when joined: Sales wins.
    for name in [k for k in numeric if _fold(k) in {_fold(c) for c in sales_columns}]:
        rep.add(table=table, column=numeric[name][0].header, severity="warning", code="E100",
                message=f"{name} is a column of both Sales and Drivers; the Sales values are used",
                fix=f"keep {name} in one table only")
        del numeric[name]
    if not numeric:
        rep.add(table=table, severity="warning", code="E107", message="Drivers has no numeric driver columns",
                fix="add numeric columns such as Temperature or CPI, or remove the Drivers table")
    valid = keep & ~dates.blank & ~dates.bad
    if key_err is not None:
        valid &= ~key_err
    values = dates.values
    if st is not None:
        values, off, _ = _to_grid(dates.values, valid, st.freq, st.anchor)
        rep.rows(np.flatnonzero(off), table=table, column=c_date.header, rows=rows,
                 value_of=lambda i: dates.values[i],
                 describe=lambda v, i: _grid_issue(v, st.freq, st.anchor, c_date.header, "Sales"), code="E105")
        valid &= ~off
        if st.freq == "MS":
            _record_month_starts(rep, table, c_date, dates.values, values, valid, rows, raw_date)
    pos = np.flatnonzero(valid)
    # Duplicates
    day_codes = _days(values[pos])
    key_arrays = [day_codes] + [k.codes[pos] for k in (loc, sku) if k is not None]
    dup, first = _first_pairs(_group_codes(key_arrays))
    if len(dup):
        label = "Date" + (", Location" if loc is not None else "") + (", SKU" if sku is not None else "")
        first_row = dict(zip(pos[dup].tolist(), rows[pos[first]].tolist()))
        rep.rows(pos[dup], table=table, column=c_date.header, rows=rows, value_of=lambda i: values[i],
                 describe=lambda v, i: (f"duplicate row: same {label} as row {first_row[i]}",
                                        f"keep one row per {label}"),
                 code="E103")
    # Keys not in Sales
    if st is not None:
        for keys, header, known, what in (
            (loc, cols.get(S.LOCATION), set(st.series_loc.tolist()), "location"),
            (sku, cols.get(S.SKU), set(st.series_sku.tolist()), "SKU"),
        ):
            if keys is None or header is None:
                continue
            used, first_at = np.unique(keys.codes[pos], return_index=True)
            unknown = [int(pos[j]) for c, j in zip(used.tolist(), first_at.tolist())
                       if c >= 0 and keys.uniques[c] not in known]
            rep.rows(np.sort(np.asarray(unknown, dtype=np.int64)), table=table, column=header.header, rows=rows,
                     value_of=lambda i, k=keys: k.uniques[k.codes[i]],
                     describe=lambda v, i, w=what: (f"{w} {v} is not in Sales; its driver rows are not used",
                                                    f"check the spelling of the {w}, or remove its rows"),
                     code="E106", severity="warning")
    # Blank values: in history they stay missing; in the future the engine assumes them.
    last = None
    if st is not None and (st.hist_last != _NO_PERIOD).any():
        last = from_period(np.array([int(st.hist_last.max())]), st.freq, st.anchor)[0].to_datetime64()
    for name, (col, num) in numeric.items():
        blank = num.blank[pos]
        if last is None:
            continue
        hist = values[pos] <= last
        hb = np.flatnonzero(blank & hist)
        if len(hb):
            rep.add(table=table, column=col.header, severity="warning", code="E107", row=int(rows[pos[hb[0]]]),
                    message=(f"{col.header} is blank in {len(hb)} row{'s' if len(hb) > 1 else ''} of history "
                             f"(first shown); the model treats them as unknown"),
                    fix=f"fill in {col.header} where it is known")
        fut = ~hist
        if not fut.any():
            rep.add(table=table, column=col.header, severity="warning", code="E107",
                    message=(f"{col.header} has no values after the last sales date {_day_str(last)}: the engine "
                             "will forecast it for future periods and flag it as assumed"),
                    fix=f"add future rows with planned or forecast {col.header} values, if you have them")
        else:
            fb = np.flatnonzero(blank & fut)
            if len(fb):
                rep.add(table=table, column=col.header, severity="warning", code="E107",
                        row=int(rows[pos[fb[0]]]),
                        message=(f"{col.header} is blank in {len(fb)} future row{'s' if len(fb) > 1 else ''} "
                                 "(first shown): the engine will forecast these values and flag them as assumed"),
                        fix=f"fill in planned or forecast {col.header} values, if you have them")
    # Output frame, sorted by keys and Date
    data: dict[str, Any] = {S.DATE: values[pos]}
    if loc is not None:
        data[S.LOCATION] = loc.strings(pos)
    if sku is not None:
        data[S.SKU] = sku.strings(pos)
    for name, (_, num) in numeric.items():
        data[name] = num.values[pos]
    frame = pd.DataFrame(data)
    by = [c for c in (S.LOCATION, S.SKU) if c in frame] + [S.DATE]
    frame = frame.sort_values(by, kind="stable").reset_index(drop=True)
    return frame, list(numeric)


# --------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------


def _row_numbers(table: str, row_offsets: Mapping[str, int] | None) -> _RowNumbers:
    return _RowNumbers(int((row_offsets or {}).get(table, 2)))


def validate(
    sales: pd.DataFrame,
    drivers: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    *,
    freq: str | None = None,
    column_map: dict[str, str] | None = None,
    gaps: str = "error",
    row_offsets: dict[str, int] | None = None,
    dayfirst: bool = False,
) -> PlanningData:
    """Validate the planner's tables; return canonical :class:`PlanningData` or raise InputError.

    ``freq``: D, W (or W-FRI ...), MS, inferred from Sales when ``None``.
    ``column_map``: canonical name -> the planner's header (Settings ``column.Qty = Units sold``).
    ``gaps``: ``"error"`` refuses missing periods inside a series' history; ``"zero"`` fills
    them with Qty 0 and warns. ``row_offsets``: per table, the row number of the first data
    row (default 2: header on row 1). ``dayfirst``: read 01/02/2024 as 1 February.
    """
    return _validate(sales, drivers, items, freq=freq, column_map=column_map, gaps=gaps,
                     row_offsets=row_offsets, dayfirst=dayfirst)


def _validate(
    sales: pd.DataFrame,
    drivers: pd.DataFrame | None,
    items: pd.DataFrame | None,
    *,
    freq: str | None,
    column_map: Mapping[str, str] | None,
    gaps: str,
    row_offsets: Mapping[str, int] | None,
    dayfirst: bool,
    sales_rows: np.ndarray | None = None,
    forced_numeric: Sequence[str] = (),
    pre_problems: Sequence[Problem] = (),
) -> PlanningData:
    if gaps not in ("error", "zero"):
        raise InputError(f"gaps must be 'error' or 'zero', not {gaps!r}.",
                         [Problem("Settings", f"unsupported gaps option {gaps!r}", "use 'error' or 'zero'",
                                  column="gaps", value=gaps, code="E110")], code="E110")
    for name, t in (("Sales", sales), ("Drivers", drivers), ("Items", items)):
        if t is not None and not isinstance(t, pd.DataFrame):
            raise InputError(f"Table {name} must be a table (DataFrame), not {type(t).__name__}.",
                             [Problem(name, "not a table", f"pass the {name} table as a DataFrame", code="E110")],
                             code="E110")
    pc = ProblemCollector(list(pre_problems))
    rep = _Reporter(pc)
    frames = {"Sales": sales, "Drivers": drivers, "Items": items}
    for name, t in frames.items():
        if t is not None:
            rep.where[name] = _Where(t)
            rep.first_rows[name] = int(_row_numbers(name, row_offsets).offset)
            pc.problems.extend(t.attrs.get(ATTR_PROBLEMS, ()) if t.attrs else ())  # found by the reader
    if sales_rows is not None:
        rep.first_rows.pop("Sales", None)  # rows are given one by one: no single header row
    if sales is None:
        pc.add(table="Sales", message="the Sales table is missing", code="E101",
               fix="add a table named Sales with columns Date, SKU and Qty")
        pc.raise_if_errors("Cannot read the planning data")
    rows = sales_rows if sales_rows is not None else _row_numbers("Sales", row_offsets)
    st = _check_sales(sales, rows, rep, freq=freq, column_map=column_map, gaps=gaps, dayfirst=dayfirst,
                      forced=forced_numeric)
    items_st = None
    if items is not None:
        items_st = _check_items(items, _row_numbers("Items", row_offsets), rep, column_map)
    if st is not None and items_st is not None:
        _check_sales_in_items(st, items_st, rep)
    drivers_frame, driver_columns = None, []
    if drivers is not None:
        sales_cols = {S.DATE, S.SKU, S.LOCATION, S.QTY, S.ONHAND}
        if st is not None:
            sales_cols |= set(st.regressors)
        drivers_frame, driver_columns = _check_drivers(
            drivers, _row_numbers("Drivers", row_offsets), rep, st=st, sales_columns=sales_cols,
            column_map=column_map, dayfirst=dayfirst)
    if st is None and not pc.errors:
        # Sales could not be read but no error says why (e.g. no valid dates at all).
        pc.add(table="Sales", message="no row of Sales has a valid Date and SKU", code="E109",
               fix="check the Date and SKU columns")
    pc.problems[:] = locate_problems(pc.problems, frames)
    pc.raise_if_errors("The planning data has problems")
    if st is None:  # every path that leaves st None adds an error first
        raise PlancellBug("Sales validation ended without data and without a problem")
    sales_frame = _build_sales(st, fill_gaps=gaps == "zero")
    last = None
    if (st.hist_last != _NO_PERIOD).any():
        last = pd.Timestamp(from_period(np.array([int(st.hist_last.max())]), st.freq, st.anchor)[0])
    log.info("validated %d Sales rows, %d series, freq %s, %d warnings, %d values changed", len(sales_frame),
             len(st.series_sku), st.freq, len(pc.warnings), len(rep.changes))
    return PlanningData(
        sales=sales_frame,
        drivers=drivers_frame,
        items=items_st.frame if items_st is not None else None,
        freq=st.freq,
        week_anchor=st.anchor if st.freq == "W" else None,
        warnings=pc.warnings,
        sales_regressors=list(st.regressors),
        driver_columns=driver_columns,
        last_date=last,
        changes=_sorted_changes(rep.changes + _hidden_row_notes(frames, row_offsets)),
    )


def _hidden_row_notes(frames: Mapping[str, pd.DataFrame | None], row_offsets: Mapping[str, int] | None) -> list[Change]:
    """Rows hidden in Excel (filtered or hidden by hand) are used like the others: say so."""
    out: list[Change] = []
    for name, df in frames.items():
        hidden = (df.attrs.get(ATTR_HIDDEN_ROWS) or []) if df is not None and df.attrs else []
        sheet = _Where(df).sheet
        for r in list(hidden)[:MAX_CHANGES_PER_COLUMN]:
            out.append(Change(name, int(r), "(whole row)", None, None, "row is hidden in Excel; used like any other",
                              None, sheet))
        if len(hidden) > MAX_CHANGES_PER_COLUMN:
            out.append(Change(name, None, "(whole row)", None, None,
                              f"row is hidden in Excel; used like any other: {len(hidden) - MAX_CHANGES_PER_COLUMN} "
                              "more rows like this", None, sheet))
    return out


def _sorted_changes(changes: list[Change]) -> list[Change]:
    order = {t: k for k, t in enumerate(TABLES)}
    big = np.iinfo(np.int64).max
    return sorted(changes, key=lambda c: (order.get(c.table, len(order)), c.row if c.row is not None else big,
                                          len(c.letter or ""), c.letter or ""))


def locate_problems(problems: Iterable[Problem],
                    tables: Mapping[str, pd.DataFrame | tuple[pd.DataFrame, int] | None]) -> list[Problem]:
    """``problems`` with the sheet and the column letter filled in where the table knows them.

    ``tables`` maps a table name to its frame (or ``(frame, first_row)``, as the workbook
    readers return) whose ``attrs`` say where it sits (:data:`ATTR_SHEET`,
    :data:`ATTR_FIRST_COLUMN`). A problem's ``column`` (the planner's header) is matched
    to the table's headers like validation matches them; a column the table lacks gets no letter.
    """
    out: list[Problem] = []
    headers: dict[str, dict[str, int]] = {}
    for p in problems:
        entry = tables.get(p.table)
        df = entry[0] if isinstance(entry, tuple) else entry
        if not isinstance(df, pd.DataFrame) or (p.sheet is not None and p.letter is not None):
            out.append(p)
            continue
        w = _Where(df)
        letter = p.letter
        if letter is None and p.column is not None and w.first is not None:
            if p.table not in headers:
                folded: dict[str, int] = {}
                for pos, h in enumerate(df.columns):
                    folded.setdefault(_fold(_header_text(h)), pos)
                headers[p.table] = folded
            pos = headers[p.table].get(_fold(str(p.column)))
            letter = w.letter(pos) if pos is not None else None
        sheet = p.sheet if p.sheet is not None else w.sheet
        out.append(p if (sheet, letter) == (p.sheet, p.letter) else replace(p, sheet=sheet, letter=letter))
    return out


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def _file_error(path: Path, table: str, message: str, fix: str, code: str = "E101") -> InputError:
    return InputError(f"Cannot read {table} from {path}: {message}. {fix[:1].upper()}{fix[1:]}.",
                      [Problem(table, f"{message} ({path})", fix, code=code)], code=code)


_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _sniff_sep(path: Path) -> str:
    """``,`` ``;`` or tab, from the header line (Excel writes ``;`` in decimal-comma locales)."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ","
    opener = _OPENERS.get(suffix, open)
    with opener(path, "rb") as fh:
        head = fh.readline(65536).decode("utf-8", errors="replace")
    counts = {sep: head.count(sep) for sep in (",", ";", "\t")}
    sep = max(counts, key=lambda k: counts[k])
    return sep if counts[sep] else ","


def _read_csv(path: str | PathLike[str], table: str, **kw: Any) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise _file_error(p, table, "the file does not exist", "check the path and the file name")
    if not p.is_file():
        raise _file_error(p, table, "this is not a file", "give the path of a .csv file")
    kw.setdefault("sep", None)
    if kw["sep"] is None:
        try:
            kw["sep"] = _sniff_sep(p)
        except (OSError, EOFError) as e:
            raise _file_error(p, table, f"the file cannot be opened ({getattr(e, 'strerror', None) or e})",
                              "close it in other programs and check that you may read it") from None
    encodings = [kw.pop("encoding")] if "encoding" in kw else ["utf-8-sig", "cp1252"]
    last_err: Exception | None = None
    for enc in encodings:
        try:
            return pd.read_csv(p, encoding=enc, **kw)
        except UnicodeDecodeError as e:
            last_err = e
            continue
        except pd.errors.EmptyDataError:
            raise _file_error(p, table, "the file is empty", "export the table again, with its header row") from None
        except pd.errors.ParserError as e:
            raise _file_error(p, table, f"the file is not a valid CSV ({str(e).strip()})",
                              "check that line for an extra separator or a stray quote; quote values that "
                              "contain the separator", code="E102") from None
        except (OSError, ValueError) as e:
            raise _file_error(p, table, f"the file cannot be read ({e})",
                              "close it in other programs and check the file") from None
    raise _file_error(p, table, f"the file's text encoding cannot be read ({last_err})",
                      "save the file as CSV UTF-8", code="E102")


def read_csv_table(path: str | PathLike[str], table: str, **kw: Any) -> pd.DataFrame:
    """Read one table from a CSV file, keeping every cell as text.

    Row numbers stay line numbers (header on line 1; blank lines are kept as blank rows,
    which :func:`validate` skips) and duplicate headers are kept, so validation can report
    them. The separator (``,`` ``;`` or tab) is sniffed unless ``sep`` is given; extra
    keyword arguments go to :func:`pandas.read_csv`.
    """
    opts: dict[str, Any] = dict(dtype=str, keep_default_na=False, header=None, skip_blank_lines=False)
    opts.update(kw)
    raw = _read_csv(path, table, **opts)
    if raw.empty:
        raise _file_error(Path(path), table, "the file is empty", "export the table again, with its header row")
    header = ["" if (isinstance(h, float) and math.isnan(h)) or h is None else str(h) for h in raw.iloc[0]]
    data = raw.iloc[1:].reset_index(drop=True)
    data.columns = header
    return data


def _resolve_names(wanted: Sequence[tuple[str, str]], available: Sequence[str], path: Path) -> dict[str, str]:
    """Match the user's column names (exactly, else case-insensitively); list all unknown ones."""
    by_fold: dict[str, str] = {}
    for a in available:
        by_fold.setdefault(_fold(a), a)
    out: dict[str, str] = {}
    problems: list[Problem] = []
    for option, name in wanted:
        if name in available:
            out[name] = name
        elif _fold(name) in by_fold:
            out[name] = by_fold[_fold(name)]
        else:
            close = difflib.get_close_matches(name, list(available), n=1, cutoff=0.5) or \
                difflib.get_close_matches(_fold(name), list(by_fold), n=1, cutoff=0.5)
            hint = close[0] if close and close[0] in available else (by_fold[close[0]] if close else None)
            cols = ", ".join(available)
            problems.append(Problem(
                "Sales", f"{option} column '{name}' is not in the file (columns: {cols})",
                f"did you mean '{hint}'? use {option} {hint}" if hint else f"use one of: {cols}",
                column=name, value=name, code="E101"))
    if problems:
        first = problems[0]
        raise InputError(f"{path.name}: {first.message}. Fix: {first.fix}", problems, code="E101")
    return out


def read_long_csv(
    path: str | PathLike[str],
    *,
    date: str,
    ids: Sequence[str],
    target: str,
    regressors: Sequence[str] = (),
    freq: str | None = None,
    dayfirst: bool = False,
    gaps: str = "zero",
) -> PlanningData:
    """Read any long-format export (one row per series and period) as Sales.

    Column names are the user's own (matched exactly, else case-insensitively). With one
    id column it becomes SKU; with several, SKU is the ids joined with "/" in the given
    order (``--id Store,Dept`` gives SKU "1/12") and Location is "" -- a neutral choice:
    the ids only name series, and no id is guessed to be a location. Regressors become
    numeric per-series columns of Sales (known-future covariates; TRUE/FALSE and yes/no
    become 1/0). Rows with a blank target are dropped with a warning. Row numbers in
    problems are the file's line numbers.
    """
    p = Path(path)
    ids = [ids] if isinstance(ids, str) else list(ids)
    regressors = [regressors] if isinstance(regressors, str) else list(regressors)
    if not ids:
        raise InputError("At least one id column is needed (--id).",
                         [Problem("Sales", "no id column given", "give --id COL[,COL..]", code="E110")],
                         code="E110")
    wanted = [("--date", date)] + [("--id", i) for i in ids] + [("--target", target)]
    wanted += [("--regressors", r) for r in regressors]
    header = _read_csv(p, "Sales", nrows=0, sep=None)
    available = [str(c) for c in header.columns]
    names = _resolve_names(wanted, available, p)
    c_date, c_target = names[date], names[target]
    c_ids = [names[i] for i in ids]
    c_regs = [names[r] for r in regressors]
    used = [c_date, *c_ids, c_target, *c_regs]
    if len(set(used)) != len(used):
        dupes = sorted({c for c in used if used.count(c) > 1})
        raise InputError(f"Column(s) {', '.join(dupes)} given for more than one role.",
                         [Problem("Sales", f"column {c} is given for more than one role (date, id, target, "
                                  "regressors)", "give each column one role", column=c, code="E110")
                          for c in dupes], code="E110")
    reserved = {_fold(S.DATE), _fold(S.SKU), _fold(S.LOCATION), _fold(S.QTY)}
    clash = [c for c in c_regs if _fold(c) in reserved]
    if clash:
        raise InputError(f"Regressor column(s) {', '.join(clash)} use a reserved name.",
                         [Problem("Sales", f"regressor column {c} has a name Plancell reserves "
                                  "(Date, SKU, Location, Qty)", "rename the column in the file", column=c,
                                  code="E110") for c in clash], code="E110")
    df = _read_csv(p, "Sales", usecols=used, dtype={c: str for c in [c_date, *c_ids]}, keep_default_na=False,
                   na_values=[""], skip_blank_lines=False)
    df = df[used]
    n = len(df)
    rows_all = np.arange(n, dtype=np.int64) + 2

    # Series id: the ids joined with "/" (built per distinct combination, not per row).
    id_keys = [_parse_keys(df[c]) for c in c_ids]
    any_blank = np.zeros(n, dtype=bool)
    all_blank = np.ones(n, dtype=bool)
    for k in id_keys:
        any_blank |= k.blank
        all_blank &= k.blank
    if len(id_keys) == 1:
        sku = id_keys[0].strings()
    else:
        combo = _group_codes([k.codes for k in id_keys])
        _, first = np.unique(combo, return_index=True)
        labels = np.array(["/".join(str(k.strings(np.array([i]))[0]) for k in id_keys) for i in first],
                          dtype=object)
        lookup = np.empty(int(combo.max()) + 1 if n else 0, dtype=object)
        lookup[combo[first]] = labels
        sku = lookup[combo] if n else np.empty(0, dtype=object)
    sku = np.where(any_blank, "", sku).astype(object)
    sku_name = "/".join(c_ids)

    target_num = _parse_numbers(df[c_target])
    blank_row = all_blank & target_num.blank  # blank lines are skipped silently
    for c in [c_date, *c_regs]:
        blank_row &= _blank_mask(df[c])
    drop = target_num.blank & ~blank_row
    pre: list[Problem] = []
    if drop.any():
        k = np.flatnonzero(drop)
        pre.append(Problem("Sales", f"{len(k)} row{'s' if len(k) > 1 else ''} with a blank {c_target} "
                           f"{'were' if len(k) > 1 else 'was'} skipped (first: line {int(rows_all[k[0]])})",
                           f"fill in {c_target} if those periods are past; ignore this if they are future rows",
                           row=int(rows_all[k[0]]), column=c_target, severity="warning", code="E102"))
    keep = ~(drop | blank_row)
    frame = pd.DataFrame({c_date: df[c_date].to_numpy()[keep], sku_name: sku[keep],
                          c_target: df[c_target].to_numpy()[keep]})
    for c in c_regs:
        frame[c] = df[c].to_numpy()[keep]
    column_map = {S.DATE: c_date, S.SKU: sku_name, S.QTY: c_target}
    return _validate(frame, None, None, freq=freq, column_map=column_map, gaps=gaps, row_offsets=None,
                     dayfirst=dayfirst, sales_rows=rows_all[keep], forced_numeric=c_regs, pre_problems=pre)

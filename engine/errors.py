"""One error hierarchy for Plancell.

Three kinds of failure, handled differently at the edges (CLI, Excel cells, HTTP):

* :class:`InputError` -- the user's to fix (a wrong column, text in a number, a
  tampered model file). Shown as one short line ``PLANCELL-E<nnn>: ...`` plus, when
  there are several, the list of :class:`Problem` records. Never a traceback.
* :class:`TransientError` -- worth retrying (a file locked by Excel, a busy server).
* :class:`PlancellBug` -- our fault. The edge logs the traceback and shows a short
  line asking the user to report it.

Error codes are stable product surface: planners search for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

__all__ = [
    "PlancellError",
    "InputError",
    "TransientError",
    "PlancellBug",
    "Problem",
    "ERROR_CODES",
    "column_letter",
]

#: Stable error codes. Add new ones at the end; never renumber.
ERROR_CODES: dict[str, str] = {
    "E100": "invalid input data",
    "E101": "missing table or column",
    "E102": "value cannot be read",
    "E103": "duplicate rows",
    "E104": "gaps in a series",
    "E105": "dates cannot be read",
    "E106": "unknown SKU",
    "E107": "missing driver values",
    "E108": "frequency cannot be inferred",
    "E109": "not enough history",
    "E110": "invalid argument",
    "E200": "model file refused",
    "E201": "model not found",
    "E300": "temporary failure, try again",
    "E900": "internal error",
    "E111": "file too large or unsafe to open",
}


def column_letter(index: int) -> str:
    """Excel's letter for the 1-based column ``index``: 1 -> A, 27 -> AA, 16384 -> XFD."""
    if index < 1:
        raise ValueError(f"column index must be 1 or more, not {index}")
    out = ""
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


@dataclass(frozen=True)
class Problem:
    """One problem found in the user's data.

    ``row`` is the row number a person sees: the Excel row in a workbook, the
    line number in a CSV (header = line 1). ``None`` when the problem is about a
    whole table or column.
    """

    table: str
    message: str
    fix: str
    row: int | None = None
    column: str | None = None
    value: Any = None
    severity: str = "error"  # "error" refuses the input; "warning" is reported only
    code: str = "E100"
    #: The worksheet holding the table, when it was read from a workbook.
    sheet: str | None = None
    #: The column's letter on that sheet (``column`` stays the planner's header text).
    letter: str | None = None

    def where(self) -> str:
        parts = [f"table {self.table}" + (f" (sheet '{self.sheet}')" if self.sheet and self.sheet != self.table
                                          else "")]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.letter} '{self.column}'" if self.letter else f"column {self.column}")
        elif self.letter:
            parts.append(f"column {self.letter}")
        return ", ".join(parts)

    @property
    def cell(self) -> str | None:
        """The cell reference a planner can type into the Name Box (``'Data'!C5``), if known."""
        if self.sheet is None or self.letter is None or self.row is None:
            return None
        return f"'{self.sheet}'!{self.letter}{self.row}"

    def __str__(self) -> str:
        if self.value is not None:
            val = f" (value {self.value!r})"
        elif self.row is not None and self.letter is not None:
            val = " (blank cell)"  # a located cell without a value is an empty cell, never a zero
        else:
            val = ""
        return f"{self.where()}: {self.message}{val}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["value"] is not None and not isinstance(d["value"], (int, float, str, bool)):
            d["value"] = str(d["value"])
        return d


class PlancellError(Exception):
    """Base of every error Plancell raises on purpose."""

    code = "E900"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def one_line(self) -> str:
        """The single line shown in an Excel cell or a CLI error."""
        text = " ".join(str(self.message).split())
        return f"PLANCELL-{self.code}: {text}"


class InputError(PlancellError):
    """Bad input: the user can fix it. Carries every problem found, not just the first."""

    code = "E100"

    def __init__(
        self,
        message: str,
        problems: Iterable[Problem] = (),
        *,
        code: str | None = None,
    ) -> None:
        self.problems: list[Problem] = list(problems)
        if code is None and self.problems:
            codes = {p.code for p in self.problems if p.severity == "error"}
            code = codes.pop() if len(codes) == 1 else "E100"
        super().__init__(message, code=code)

    def report(self, limit: int = 50) -> str:
        """Multi-line report: headline plus one line per problem (errors first)."""
        lines = [self.one_line()]
        ordered = sorted(self.problems, key=lambda p: p.severity != "error")
        for p in ordered[:limit]:
            lines.append(f"  - [{p.severity}] {p}")
        if len(ordered) > limit:
            lines.append(f"  ... and {len(ordered) - limit} more problems")
        return "\n".join(lines)


class TransientError(PlancellError):
    """A fault that may go away on retry (locked file, busy server)."""

    code = "E300"


class PlancellBug(PlancellError):
    """An internal error: a bug in Plancell, not the user's fault."""

    code = "E900"


@dataclass
class ProblemCollector:
    """Accumulates problems while validating, so all are reported at once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, **kw: Any) -> None:
        self.problems.append(Problem(**kw))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    def raise_if_errors(self, what: str) -> None:
        errs = self.errors
        if errs:
            n = len(errs)
            first = errs[0]
            msg = (
                f"{what}: {n} problem{'s' if n > 1 else ''} to fix; "
                f"first: {first.where()}: {first.message}. Fix: {first.fix}"
            )
            raise InputError(msg, self.problems)

"""Neutralise text that Excel (or a CSV import) would read as a formula.

A SKU such as ``=HYPERLINK("http://evil", "click")`` typed into a source system must
reach the planner's workbook as text, never as a live formula (OWASP "CSV/formula
injection"). The usual defence is a leading apostrophe: Excel shows the text and never
evaluates it. Only strings go through here; numbers are written as numbers, so a
negative quantity stays a number.
"""

from __future__ import annotations

__all__ = ["FORMULA_TRIGGERS", "safe_text"]

#: Leading characters that make Excel, LibreOffice or a CSV import start a formula.
#: Tab and CR are included because some importers strip them and then see the "=".
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """Return ``value`` with a leading apostrophe if it could start a formula.

    Idempotent: an already neutralised string starts with ``'`` and is returned as is,
    so a SKU keeps the same spelling across repeated refreshes of one workbook.
    """
    if not isinstance(value, str):
        raise TypeError(f"safe_text expects str, got {type(value).__name__}; write numbers as numbers")
    if value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value

"""Neutralise text that Excel (or a CSV import) would read as a formula.

A SKU such as ``=HYPERLINK("http://evil", "click")`` typed into a source system must
reach the planner's workbook as text, never as a live formula (OWASP "CSV/formula
injection"). The usual defence is a leading apostrophe: Excel shows the text and never
evaluates it. Only strings go through here; numbers are written as numbers, so a
negative quantity stays a number.

Besides the plain triggers, text is quoted when the trigger hides behind characters an
importer may drop first (spaces, tabs, line breaks, a byte-order mark or other invisible
characters) or is a compatibility form that NFKC folds to a trigger (full-width ``＝``,
small ``﹢``, ...), which East Asian input methods turn into a formula.
"""

from __future__ import annotations

import unicodedata

__all__ = ["FORMULA_TRIGGERS", "is_formula_like", "safe_text"]

#: Leading characters that make Excel, LibreOffice or a CSV import start a formula.
#: Tab and CR are included because some importers strip them and then see the "=".
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_CHARS = frozenset("=+-@")
# Characters an importer may trim or never show before the first visible one: controls,
# format characters (BOM, zero-width space) and separators, besides str.isspace().
_SKIPPABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def is_formula_like(value: str) -> bool:
    """True if ``value`` could start a formula in Excel, LibreOffice or a CSV import."""
    if value.startswith(FORMULA_TRIGGERS):
        return True
    for ch in value:
        if ch.isspace() or unicodedata.category(ch) in _SKIPPABLE_CATEGORIES:
            continue
        return unicodedata.normalize("NFKC", ch)[:1] in _TRIGGER_CHARS
    return False


def safe_text(value: str) -> str:
    """Return ``value`` with a leading apostrophe if it could start a formula.

    Idempotent: an already neutralised string starts with ``'`` and is returned as is,
    so a SKU keeps the same spelling across repeated refreshes of one workbook.
    """
    if not isinstance(value, str):
        raise TypeError(f"safe_text expects str, got {type(value).__name__}; write numbers as numbers")
    if is_formula_like(value):
        return "'" + value
    return value

"""Formula-injection defence: text that Excel would evaluate gets a leading apostrophe."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from addin.safe import FORMULA_TRIGGERS, is_formula_like, safe_text


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_no_output_starts_a_formula(value: str) -> None:
    out = safe_text(value)
    assert not out.startswith(FORMULA_TRIGGERS)
    # Nothing is lost: the original text is still there, after at most one apostrophe.
    assert out in (value, "'" + value)


@settings(max_examples=2000, deadline=None)
@given(st.text().filter(lambda s: not is_formula_like(s)))
def test_safe_strings_are_unchanged(value: str) -> None:
    assert safe_text(value) == value


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(FORMULA_TRIGGERS), st.text())
def test_dangerous_strings_get_one_apostrophe_and_stay_stable(trigger: str, rest: str) -> None:
    once = safe_text(trigger + rest)
    assert once == "'" + trigger + rest
    assert safe_text(once) == once  # a refreshed workbook keeps the same SKU spelling


@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("SKU-001", "SKU-001"),  # a dash inside is harmless
        ("", ""),
    ],
)
def test_known_payloads(value: str, expected: str) -> None:
    assert safe_text(value) == expected


def test_numbers_are_refused_so_they_stay_numbers() -> None:
    with pytest.raises(TypeError):
        safe_text(-5)  # type: ignore[arg-type]

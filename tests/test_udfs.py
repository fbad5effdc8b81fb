"""Excel functions called from Python: same names, same keywords, one-line errors in cells."""

from __future__ import annotations

import inspect

import pytest

from addin.udfs import SAFETY_STOCK_CALC


def test_signature_is_the_product_surface() -> None:
    params = list(inspect.signature(SAFETY_STOCK_CALC).parameters)
    assert params == ["mean_demand", "sd_demand", "lead_time", "sd_lead_time", "service_level", "target",
                      "order_qty"]


def test_worked_examples() -> None:
    assert SAFETY_STOCK_CALC(2500, 500, 2, service_level=0.9) == pytest.approx(906.2, abs=0.5)
    assert SAFETY_STOCK_CALC(2500, 500, 7, 7, 0.9) == pytest.approx(22491, abs=1)


def test_excel_style_arguments() -> None:
    # blanks arrive as None, integers as floats, text as typed
    assert SAFETY_STOCK_CALC(2500.0, 500.0, 2.0, None, None, None, None) == pytest.approx(
        SAFETY_STOCK_CALC(2500, 500, 2, service_level=0.95))
    assert SAFETY_STOCK_CALC("2,500", "500", 2, 0, "90%") == pytest.approx(906.2, abs=0.5)
    fr = SAFETY_STOCK_CALC(100, 30, 4, 0, 0.99, "fill_rate", 200)
    assert isinstance(fr, float) and fr > 0


@pytest.mark.parametrize("args, kwargs, needle", [
    ((2500, 500, 2), {"service_level": 1.5}, "service_level must be strictly between 0 and 1"),
    ((2500, 500, 2), {"service_level": 95}, "did you mean 0.95"),
    ((2500, 500, "14 days"), {}, "mixed units"),
    ((2500, "lots", 2), {}, "sd_demand is not a number"),
    ((2500, 500, None), {}, "lead_time is blank"),
    ((100, 30, 2), {"target": "fill_rate"}, "order_qty is needed"),
    ((100, 30, 2), {"target": "p95"}, "target"),
])
def test_errors_are_one_line_in_the_cell(args, kwargs, needle) -> None:
    out = SAFETY_STOCK_CALC(*args, **kwargs)
    assert isinstance(out, str) and out.startswith("PLANCELL-E110: ")
    assert needle in out
    assert "\n" not in out and "Traceback" not in out

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


# ------------------------------------------------------------------ functions reading the plan

import numpy as np  # noqa: E402

from addin import cache  # noqa: E402
from addin.udfs import (  # noqa: E402
    FORECAST_ACCURACY, FORECAST_DRIVERS, FORECAST_SKU, FORECAST_TABLE, ORDER_QTY, PLAN_INFO, REORDER_POINT,
    SAFETY_STOCK, SKU_CLASS,
)
from engine.contract import validate  # noqa: E402
from engine.plan import build_plan  # noqa: E402
from engine.store import ModelStore  # noqa: E402
from engine.synthetic import generate_panel  # noqa: E402

from .conftest import with_plan_rows  # noqa: E402


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    # the same store the autouse PLANCELL_HOME points the functions at
    store = ModelStore(home=tmp_path_factory.getbasetemp() / "plancell-home")
    p = generate_panel("W", n_skus=5, n_locations=2, seed=4)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    return build_plan(data, horizon=6, windows=2, model_params={"n_estimators": 40}, store=store,
                      model_name="udf-test")


@pytest.fixture(autouse=True)
def _model(monkeypatch):
    monkeypatch.setenv("PLANCELL_MODEL", "udf-test")
    cache.clear()


def test_forecast_sku_reads_the_published_plan(planned) -> None:
    plan = planned.plan
    first = plan[(plan["SKU"] == "SKU-0001") & (plan["Location"] == "LOC-01")]
    row = FORECAST_SKU("SKU-0001", 3, "LOC-01")
    assert np.allclose(row[0], first["P50"].to_numpy()[:3])
    p90 = FORECAST_SKU("SKU-0001", 2, "LOC-01", 0.9)[0]
    assert all(a >= b for a, b in zip(p90, row[0][:2]))
    # no location, P50: the total over the SKU's locations
    both = plan[plan["SKU"] == "SKU-0001"].groupby("Period")["P50"].sum().to_numpy()
    assert np.allclose(FORECAST_SKU("SKU-0001", 2)[0], both[:2])
    # a quantile other than those published is computed on request
    assert len(FORECAST_SKU("SKU-0001", 6, "LOC-01", 0.95)[0]) == 6


def test_forecast_table_spills_with_headers(planned) -> None:
    t = FORECAST_TABLE([["SKU-0002"], [None]], 2)
    assert t[0] == ["SKU", "Location", "Period", "P10", "P50", "P90"]
    assert len(t) == 1 + 2 * 2 and {r[1] for r in t[1:]} == {"LOC-01", "LOC-02"}
    assert len(FORECAST_TABLE()) == 1 + 10 * 6


def test_inventory_functions_match_the_policy_table(planned) -> None:
    pol = planned.policy.set_index(["SKU", "Location"]).loc[("SKU-0003", "LOC-02")]
    assert SAFETY_STOCK("SKU-0003", "LOC-02") == pytest.approx(pol["SafetyStock"])
    assert REORDER_POINT("SKU-0003", "LOC-02") == pytest.approx(pol["ReorderPoint"])
    assert ORDER_QTY("SKU-0003", "LOC-02") == pytest.approx(pol["SuggestedOrder"])
    assert ORDER_QTY("SKU-0003", "LOC-02", 1e9, 0) == 0          # plenty on hand: nothing to order
    assert SKU_CLASS("SKU-0003", "LOC-02") == pol["Class"]
    # what-ifs: a higher service level or a longer lead time needs more stock
    assert SAFETY_STOCK("SKU-0003", "LOC-02", 0.995) > SAFETY_STOCK("SKU-0003", "LOC-02", 0.80)
    longer = REORDER_POINT("SKU-0003", "LOC-02", None, pol["LeadTimeDays"] + 21)
    assert longer > REORDER_POINT("SKU-0003", "LOC-02")


def test_accuracy_drivers_and_plan_info(planned) -> None:
    acc = planned.accuracy.set_index(["SKU", "Location"]).loc[("SKU-0001", "LOC-01")]
    assert FORECAST_ACCURACY("SKU-0001", "LOC-01") == pytest.approx(acc["WAPE"])
    assert FORECAST_ACCURACY("SKU-0001", "LOC-01", "mase") == pytest.approx(acc["MASE"])
    d = FORECAST_DRIVERS("SKU-0001", "LOC-01", 1)
    assert d[0] == ["Driver", "Units", "Effect"] and d[1][0] == "Average level"
    units = sum(r[1] for r in d[1:-1] if not str(r[0]).startswith("Note"))
    assert units == pytest.approx(d[-1][1] if d[-1][0] == "Forecast" else d[-2][1])
    info = dict((r[0], r[1]) for r in PLAN_INFO())
    assert info["Model"] == "udf-test" and info["Data fingerprint"] == planned.metadata["data_fingerprint"]


@pytest.mark.parametrize("call, needle", [
    (lambda: FORECAST_SKU("NOPE"), "PLANCELL-E106: SKU 'NOPE' is not in the plan"),
    (lambda: FORECAST_SKU("sku-0001", 1, "LOC-01"), "did you mean 'SKU-0001'"),
    (lambda: FORECAST_SKU("SKU-0001", 1, None, 0.9), "planned at 2 locations"),
    (lambda: FORECAST_SKU("SKU-0001", 99, "LOC-01"), "beyond the plan's horizon of 6"),
    (lambda: FORECAST_SKU("SKU-0001", 0, "LOC-01"), "whole number of 1 or more"),
    (lambda: SAFETY_STOCK("SKU-0001", "LOC-01", 1.2), "service_level must be strictly between 0 and 1"),
    (lambda: FORECAST_ACCURACY("SKU-0001", "LOC-01", "R2"), "metric 'R2' is not known"),
])
def test_plan_function_errors_are_one_line(planned, call, needle) -> None:
    out = call()
    assert isinstance(out, str) and out.startswith("PLANCELL-E") and needle in out and "\n" not in out


def test_a_newer_model_is_picked_up_without_restarting(planned, tmp_path_factory, monkeypatch) -> None:
    before = PLAN_INFO()
    store = ModelStore(home=tmp_path_factory.getbasetemp() / "plancell-home")
    bundle, meta = store.load("udf-test")
    store.save("udf-test", bundle, {**meta, "trained_at": "later"})
    monkeypatch.setattr(cache, "CHECK_EVERY_S", 0.0)
    after = dict((r[0], r[1]) for r in PLAN_INFO())
    assert after["Version"] == dict((r[0], r[1]) for r in before)["Version"] + 1
    assert after["Trained at"] == "later"


def test_no_plan_yet_says_refresh(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("PLANCELL_MODEL")
    out = FORECAST_SKU("SKU-0001")
    assert out.startswith("PLANCELL-E201") and "Refresh Plan" in out

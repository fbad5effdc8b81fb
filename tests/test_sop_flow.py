"""The S&OP month on the demo workbook: overrides in an Overrides table, Refresh Plan writes
the consensus side by side with the statistical forecast (and the inventory policy follows
it), Publish Snapshot keeps the layers, and the next refresh scores every published version
(FVA), compares the plan with the last published one and shows the money view."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.worksheet.table import Table

from addin.actions import publish, refresh
from addin.cli import main
from addin.port import FileBook
from engine.errors import InputError

ROUNDS = 30


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sop-demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        assert main(["demo", "--out", str(out), "--skus", "6", "--locations", "1", "--horizon", "6",
                     "--windows", "2", "--rounds", str(ROUNDS), "-q"]) == 0
    return out / "plancell-demo.xlsx"


def _table(path: Path, name: str) -> list[dict[str, Any]]:
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        if name in ws.tables:
            rows = [[c.value for c in r] for r in ws[ws.tables[name].ref]]
            return [dict(zip(rows[0], r)) for r in rows[1:]]
    raise KeyError(name)


def _with_overrides(src: Path, dst: Path, rows: list[list[Any]]) -> Path:
    wb = openpyxl.load_workbook(src)
    if "Overrides" in wb.sheetnames:   # the demo ships an empty Overrides table: fill in ours instead
        del wb["Overrides"]
    ws = wb.create_sheet("Overrides")
    header = ["SKU", "Location", "From", "To", "Pct", "Qty", "Layer", "Reason", "Author"]
    ws.append(header)
    for r in rows:
        ws.append(r)
    ws.add_table(Table(displayName="Overrides", ref=f"A1:I{len(rows) + 1}"))
    wb.save(dst)
    return dst


@pytest.fixture(scope="module")
def month(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Refresh with a Marketing +50 % on one SKU and a Sales quantity on another."""
    root = tmp_path_factory.mktemp("sop")
    plan = _table(demo, "Plan")
    skus = sorted({r["SKU"] for r in plan})
    periods = sorted({r["Period"] for r in plan})
    book = _with_overrides(demo, root / "sop.xlsx", [
        [skus[0], None, periods[0], periods[-1], "+50%", None, "Marketing", "TV campaign", "Ann"],
        [skus[1], None, periods[1], periods[1], None, 500, "Sales", "key account order", "Bob"],
    ])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        out = refresh(FileBook(book), model_params={"n_estimators": ROUNDS})
    return {"book": book, "skus": skus, "periods": periods, "out": out}


def test_plan_shows_statistical_each_layer_and_consensus(month: dict[str, Any]) -> None:
    rows = _table(month["book"], "Plan")
    assert {"Statistical", "Sales layer", "Marketing layer", "Consensus", "P10", "P50", "P90"} <= set(rows[0])
    a, b = month["skus"][0], month["skus"][1]
    for r in rows:
        if r["SKU"] == a:
            assert r["Consensus"] == pytest.approx(1.5 * r["Statistical"])
            assert r["P50"] == pytest.approx(r["Consensus"]) and r["P10"] <= r["P50"] <= r["P90"]
        elif r["SKU"] == b and r["Period"] == month["periods"][1]:
            assert r["Sales layer"] == pytest.approx(500) and r["Consensus"] == pytest.approx(500)
        else:
            assert r["Consensus"] == pytest.approx(r["Statistical"])
    log = _table(month["book"], "OverridesLog")
    assert [r["Layer"] for r in log] == ["Sales", "Marketing"] or {r["Layer"] for r in log} == {"Sales", "Marketing"}


def test_inventory_policy_follows_the_consensus(month: dict[str, Any]) -> None:
    policy = {r["SKU"]: r for r in _table(month["book"], "Policy")}
    plan = _table(month["book"], "Plan")
    a = month["skus"][0]
    stat = sum(r["Statistical"] for r in plan if r["SKU"] == a)
    cons = sum(r["Consensus"] for r in plan if r["SKU"] == a)
    assert cons > stat
    # the forecast over lead time + review comes from the consensus (x1.5 on every period)
    lt = policy[a]["Forecast over lead time + review"]
    assert lt > 0 and policy[a]["Reorder point"] > lt


def test_publish_keeps_the_layers_and_the_next_refresh_scores_it(month: dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
    book = tmp_path / "sop.xlsx"
    shutil.copy(month["book"], book)
    name = publish(FileBook(book))
    wb = openpyxl.load_workbook(book)
    tables = wb[name].tables
    snap = next(n for n in tables if n.startswith("Plan_") and n != "Plan_2024_11_v1")
    rows = _table(book, snap)
    assert {"Statistical", "Marketing layer", "Consensus"} <= set(rows[0])
    assert any(n.startswith("Overrides_") for n in tables)       # the Overrides table as published
    refresh(FileBook(book), model_params={"n_estimators": ROUNDS})
    wb = openpyxl.load_workbook(book)
    assert {"FVA", "Plan changes", "Finance"} <= set(wb.sheetnames)
    # the demo's older snapshot has actuals since: it is scored against seasonal naive
    fva = [[c for c in r] for r in wb["FVA"].iter_rows(values_only=True)]
    text = " ".join(str(c) for r in fva for c in r if c is not None)
    assert "Seasonal naive" in text and "Statistical" in text
    assert wb["FVA"]._charts, "the FVA sheet has a native chart"
    changes = " ".join(str(c) for r in wb["Plan changes"].iter_rows(values_only=True) for c in r if c is not None)
    assert "Overrides" in changes or "overrides" in changes
    money = " ".join(str(c) for r in wb["Finance"].iter_rows(values_only=True) for c in r if c is not None)
    assert "Revenue" in money and "Inventory value" in money


def test_a_bad_override_row_is_named_and_nothing_is_written(demo: Path, tmp_path: Path) -> None:
    book = _with_overrides(demo, tmp_path / "bad.xlsx", [
        ["NO-SUCH-SKU", None, None, None, "+10%", None, "Marketing", "typo", "Ann"],
        ["SKU-0001", None, None, None, "+10%", 5, "Sales", "both", "Bob"],
    ])
    before = book.read_bytes()
    with pytest.raises(InputError) as err:
        refresh(FileBook(book), model_params={"n_estimators": ROUNDS})
    rows = {p.row for p in err.value.problems if p.table == "Overrides"}
    assert {2, 3} <= rows
    assert book.read_bytes() == before


def test_scenarios_are_shown_in_money(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    from addin.actions import scenario

    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
    book = tmp_path / "plancell-demo.xlsx"
    shutil.copy(demo, book)
    scenario(FileBook(book), paths=200, seed=1)
    money = {r["Scenario"]: r for r in _table(book, "ScenarioMoney")}
    late = next(v for k, v in money.items() if "days late" in k)
    assert late["Revenue lost (scenario)"] > late["Revenue lost (baseline)"] >= 0
    assert late["Revenue at risk"] == pytest.approx(late["Revenue lost (scenario)"] - late["Revenue lost (baseline)"])


def test_value_added_by_reason_recomputes_the_cells_from_the_published_overrides(
        month: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A snapshot keeps the Overrides table, not every cell it changed: re-applying it to the
    snapshot's statistical forecast gives back exactly the cells the refresh changed."""
    from types import SimpleNamespace

    from addin.actions import _published_effects
    from engine.fva import published_plan

    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
    book = tmp_path / "sop.xlsx"
    shutil.copy(month["book"], book)
    name = publish(FileBook(book))
    tables = FileBook(book).tables()
    tag = name.replace("Plan ", "").replace("-", "_").replace(" ", "_")
    plan = published_plan(tables[f"Plan_{tag}"][0])
    items = tables["Items"][0]
    notes: list[str] = []
    got = _published_effects(plan, tables[f"Overrides_{tag}"], SimpleNamespace(freq="W", items=items), notes, name)
    want = month["out"]["result"].consensus.effects
    assert notes == [] and got is not None and len(got) == len(want) > 0
    key = ["SKU", "Location", "Layer", "Reason"]   # Row: the row of the snapshot's own Overrides table
    g = got.sort_values(key + ["Period"]).reset_index(drop=True)
    w = want.sort_values(key + ["Period"]).reset_index(drop=True)
    assert g[key].astype(str).equals(w[key].astype(str))
    assert g["After"].to_numpy() == pytest.approx(w["After"].to_numpy(), rel=1e-9)

"""The add-in with a Settings ``Server``: the ribbon actions and the Excel functions run on the
calculation server and give the same numbers as the local engine, on the demo workbook.

A real server (uvicorn on loopback, token auth, training in spawned processes) answers; the
workbook only differs from the local copy by its Settings Server row.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import openpyxl
import pytest

from addin import cache, udfs
from addin.actions import check, publish, refresh, scenario, status
from addin.cli import main
from addin.client import PlancellClient
from addin.port import FileBook
from addin.server import ServerConfig, create_app, token_digest

from .conftest import with_setting

TOKEN = "server-mode-token-0123456789abcdef"
ROUNDS = 30
# Provenance lines that are times or say where the work ran; every other cell must be equal.
_VARIES = {"Trained at", "Written at", "Checked at", "Model version", "Plan"}   # Plan: "model X vN"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        assert main(["demo", "--out", str(out), "--skus", "6", "--locations", "2", "--horizon", "6",
                     "--windows", "2", "--rounds", str(ROUNDS), "-q"]) == 0
    return out / "plancell-demo.xlsx"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    config = ServerConfig(tokens={token_digest(TOKEN): "team"}, data_dir=tmp_path_factory.mktemp("server"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


def _cells(path: Path, sheet: str) -> list[list[Any]]:
    ws = openpyxl.load_workbook(path)[sheet]
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    return [r for r in rows if not (r and r[0] in _VARIES)]


@pytest.fixture(scope="module")
def books(demo: Path, server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same workbook refreshed here and on the server (same file name: same model name)."""
    root = tmp_path_factory.mktemp("books")
    local = root / "local" / "plan.xlsx"
    local.parent.mkdir()
    shutil.copy(demo, local)
    remote = with_setting(demo, root / "server" / "plan.xlsx", "Server", server)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        mp.setenv("PLANCELL_TOKEN", TOKEN)
        events: list[Any] = []
        out_local = refresh(FileBook(local), model_params={"n_estimators": ROUNDS})
        out_remote = refresh(FileBook(remote), model_params={"n_estimators": ROUNDS}, progress=events.append)
    assert "server" not in out_local and out_local["result"] is not None     # ran here
    assert out_remote["server"] == server and out_remote["result"] is None
    assert events, "the server's progress reaches the caller (the status bar)"
    return {"local": local, "remote": remote}


def test_refresh_on_the_server_writes_the_same_sheets_as_local(books: dict[str, Path]) -> None:
    for sheet in ("Plan", "Accuracy", "Purchases", "Charts"):
        assert _cells(books["remote"], sheet) == _cells(books["local"], sheet), sheet
    plan = _cells(books["remote"], "Plan")
    assert any(r[0] == "Data fingerprint" and r[1] for r in plan)
    # the planner's own sheets and the Settings row are kept
    wb = openpyxl.load_workbook(books["remote"])
    settings = next(ws for ws in wb.worksheets if "Settings" in ws.tables)
    keys = [r[0].value for r in settings[settings.tables["Settings"].ref]]
    assert "Server" in keys
    assert set(openpyxl.load_workbook(books["local"]).sheetnames) <= set(wb.sheetnames)


def _caller(name: str) -> Any:
    return SimpleNamespace(sheet=SimpleNamespace(book=SimpleNamespace(name=name)))


def _calls(skus: list[tuple[str, str]]) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = [("FORECAST_TABLE", ()), ("FORECAST_TABLE", (None, 2.0)),
                                                ("FORECAST_SKU", ("NOPE-1",)), ("SAFETY_STOCK", ("", None)),
                                                ("FORECAST_SKU", (skus[0][0], 99.0, skus[0][1]))]
    for sku, loc in skus:
        calls += [
            ("FORECAST_SKU", (sku, 6.0, loc)), ("FORECAST_SKU", (sku, 3.0, loc, 0.9)),
            ("FORECAST_SKU", (sku, 2.0, loc, 0.75)),                 # not stored: the model answers
            ("FORECAST_SKU", (sku, 1.0)),                            # all locations
            ("SAFETY_STOCK", (sku, loc)), ("SAFETY_STOCK", (sku, loc, 0.99)),
            ("REORDER_POINT", (sku, loc)), ("REORDER_POINT", (sku, loc, None, 21.0)),
            ("ORDER_QTY", (sku, loc)), ("ORDER_QTY", (sku, loc, 0.0, 0.0)),
            ("FORECAST_ACCURACY", (sku, loc)), ("FORECAST_ACCURACY", (sku, loc, "MASE")),
            ("FORECAST_ACCURACY", (sku, loc, "Bias")), ("FORECAST_ACCURACY", (sku, loc, "Coverage")),
            ("FORECAST_DRIVERS", (sku, loc, 2.0)), ("SKU_CLASS", (sku, loc)),
        ]
    return calls


def test_excel_functions_read_the_same_numbers_through_the_server(
        books: dict[str, Path], server: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
    monkeypatch.setenv("PLANCELL_TOKEN", TOKEN)
    plan = openpyxl.load_workbook(books["local"])["Plan"]
    model = next(r[1] for r in plan.iter_rows(max_row=12, values_only=True) if r[0] == "Model")
    monkeypatch.setitem(udfs._BOOK_MODELS, "local.xlsx", (model, None))
    monkeypatch.setitem(udfs._BOOK_MODELS, "server.xlsx", (model, server))
    cache.clear()
    skus = sorted({(r[0], r[1]) for r in plan.iter_rows(values_only=True)
                   if isinstance(r[0], str) and r[0].startswith("SKU-") and r[2] is not None})
    assert len(skus) >= 6
    calls = _calls(skus)
    here = [getattr(udfs, f)(*args, caller=_caller("local.xlsx")) for f, args in calls]
    there = [getattr(udfs, f)(*args, caller=_caller("server.xlsx")) for f, args in calls]
    for (f, args), a, b in zip(calls, here, there):
        assert a == b, (f, args, a, b)
    errors = [a for a in here if isinstance(a, str) and a.startswith("PLANCELL-E")]
    assert len(errors) == 3, errors     # the unknown SKU, the blank SKU, periods beyond the horizon
    info_here = dict((r[0], r[1]) for r in udfs.PLAN_INFO(caller=_caller("local.xlsx")))
    info_there = dict((r[0], r[1]) for r in udfs.PLAN_INFO(caller=_caller("server.xlsx")))
    assert info_there["Data fingerprint"] == info_here["Data fingerprint"]
    assert info_there["Model"] == model
    entry = cache.remote_plan_for(server, model)
    assert entry.remote is not None and entry.forecast


def test_check_and_scenario_on_the_server_write_the_same_sheets(books: dict[str, Path], server: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
    monkeypatch.setenv("PLANCELL_TOKEN", TOKEN)
    here = check(FileBook(books["local"]))
    there = check(FileBook(books["remote"]))
    assert there["server"] == server
    assert there["compared_with"] == here["compared_with"]
    assert len(there["alerts"]) == len(here["alerts"]) > 0
    for sheet in ("Alerts", "Purchases"):
        assert _cells(books["remote"], sheet) == _cells(books["local"], sheet), sheet
    s_here = scenario(FileBook(books["local"]), paths=200, seed=5)
    s_there = scenario(FileBook(books["remote"]), paths=200, seed=5)
    assert _cells(books["remote"], "Scenario") == _cells(books["local"], "Scenario")   # exact, cell for cell
    # the returned summary (for the command line) travels as the job's JSON record
    assert list(s_there["summary"]["Scenario"]) == list(s_here["summary"]["Scenario"])
    assert s_there["summary"]["Fill rate (scenario)"].tolist() == pytest.approx(
        s_here["summary"]["Fill rate (scenario)"].tolist(), rel=1e-9)


def test_publish_records_an_immutable_version_on_the_server(books: dict[str, Path], server: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANCELL_TOKEN", TOKEN)
    name = publish(FileBook(books["remote"]))
    ws = openpyxl.load_workbook(books["remote"])[name]
    pairs = {r[0]: r[1] for r in ws.iter_rows(max_row=20, values_only=True) if r[0]}
    model = pairs["Model"]
    assert str(pairs["Server plan version"]).startswith(f"{model} v1 on http://127.0.0.1")
    with PlancellClient(server, TOKEN) as c:
        versions = c.plans(model)
        assert [v["version"] for v in versions] == [1]
        rows = c.plan(model, 1)["rows"]
    ref = next(ref for n, ref in ws.tables.items() if n.startswith("Plan_"))
    assert len(rows) == len(ws[ref]) - 1 > 0     # the server's record has every row of the snapshot
    text = status(FileBook(books["remote"]))
    assert "on http://127.0.0.1" in text and "v1" in text


def test_a_wrong_token_is_a_clear_error_and_nothing_is_written(books: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import InputError

    monkeypatch.setenv("PLANCELL_TOKEN", "not-the-token-0123456789")
    copy = tmp_path / "plan.xlsx"
    shutil.copy(books["remote"], copy)
    before = copy.read_bytes()
    with pytest.raises(InputError, match="refused the token"):
        refresh(FileBook(copy))
    assert copy.read_bytes() == before


def test_plancell_refresh_on_a_server_workbook_says_where_it_ran(books: dict[str, Path], server: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PLANCELL_TOKEN", TOKEN)
    copy = tmp_path / "plan.xlsx"
    shutil.copy(books["remote"], copy)
    assert main(["refresh", str(copy), "--rounds", str(ROUNDS)]) == 0
    out = capsys.readouterr().out
    assert f"on the Plancell server {server}" in out and "v2" in out and "WAPE" in out

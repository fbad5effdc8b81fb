"""The add-in's client for the calculation server: the same errors and numbers as local work."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from addin.client import PlancellClient, client_for
from addin.server import ServerConfig, create_app, token_digest
from engine.errors import InputError, PlancellBug, TransientError
from engine.progress import ProgressEvent
from engine.settings import PlanSettings
from tests.test_server import NORTH, SOUTH, workbook_tables


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = ServerConfig(tokens={token_digest(NORTH): "north", token_digest(SOUTH): "south"},
                          data_dir=tmp_path_factory.mktemp("client-server"))
    with TestClient(create_app(config), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def trained(http: TestClient) -> dict[str, Any]:
    """Train through the client, from DataFrames, as the ribbon would."""
    tables = {k: pd.DataFrame(v) for k, v in workbook_tables().items()}
    tables["Sales"]["Date"] = pd.to_datetime(tables["Sales"]["Date"])   # real dates, as read from a workbook
    events: list[ProgressEvent] = []
    client = PlancellClient("http://testserver", NORTH, http=http)
    job_id = client.train(tables, book="Client Book.xlsx", rounds=10)
    job = client.wait(job_id, progress=events.append, poll=0.1, timeout=120)
    return {"job": job, "events": events}


def test_train_and_wait_relay_progress_for_the_status_bar(trained: dict[str, Any]) -> None:
    job, events = trained["job"], trained["events"]
    assert job["state"] == "succeeded" and job["summary"]["model"] == "Client Book"
    assert all(isinstance(e, ProgressEvent) for e in events)
    assert [e.stage for e in events][-1] == "forecast" and events[-1].fraction == 1.0
    assert {"backtest", "train", "inventory"} <= {e.stage for e in events}


def test_lookup_and_models_through_the_client(http: TestClient, trained: dict[str, Any]) -> None:
    client = PlancellClient("http://testserver", NORTH, http=http)
    assert [m["name"] for m in client.models()] == ["Client Book"]
    res = client.lookup([("SKU-0001", "LOC-01"), {"sku": "SKU-0003", "location": "LOC-02"}], periods=3)
    assert res["model"] == "Client Book" and len(res["periods"]) == 3
    assert [len(r["forecast"]["P90"]) for r in res["results"]] == [3, 3]
    assert all(r["forecast"]["P10"][k] <= r["forecast"]["P90"][k] for r in res["results"] for k in range(3))
    pub = client.publish("Client Book", note="via client")
    assert client.plan("Client Book", pub["version"])["provenance"]["note"] == "via client"
    assert [p["version"] for p in client.plans("Client Book")] == [pub["version"]]


def test_scenario_on_a_workbook_file_through_the_client(http: TestClient, trained: dict[str, Any],
                                                        tmp_path: Path) -> None:
    import io

    import openpyxl

    from tests.test_server import write_xlsx

    tables = {k: pd.DataFrame(v) for k, v in workbook_tables().items()}
    tables["Scenario"] = pd.DataFrame([{"Scenario": "Supplier late", "Type": "Lead time", "Target": "All",
                                        "Name": None, "Value": 14, "Driver": None}])
    book = write_xlsx(tmp_path / "Client Book.xlsx", tables)
    client = PlancellClient("http://testserver", NORTH, http=http)
    job = client.wait(client.start_action("scenario", book, paths=50), poll=0.1, timeout=120)
    assert [r["Scenario"] for r in job["summary"]["summary"]] == ["Supplier late"]
    sheets = openpyxl.load_workbook(io.BytesIO(client.workbook(job["id"]))).sheetnames
    assert "Scenario results" in sheets and "Sales" in sheets   # the planner's Scenario table stays put
    with pytest.raises(InputError, match="not a workbook action"):
        client.start_action("refresh", book)
    job_id = client.train_file(book, rounds=5)   # the upload is accepted; this test needs no second model
    assert client.job(job_id)["model"] == "Client Book"
    assert client.cancel(job_id)["state"] == "cancelled"


def test_server_errors_come_back_as_the_engines_errors(http: TestClient, trained: dict[str, Any]) -> None:
    client = PlancellClient("http://testserver", NORTH, http=http)
    bad = {"Sales": pd.DataFrame({"Date": ["2024-01-01", "nope"], "SKU": ["A", "A"], "Qty": [1, 2]})}
    with pytest.raises(InputError) as exc:
        client.train(bad)
    assert exc.value.code == "E105"
    assert [(p.table, p.row, p.column) for p in exc.value.problems] == [("Sales", 3, "Date")]
    with pytest.raises(InputError) as exc:
        client.lookup([("SKU-0001", "LOC-01")], model="no such model")
    assert exc.value.code == "E201"
    with pytest.raises(InputError, match="refused the token"):
        PlancellClient("http://testserver", "not-the-token-0123456789", http=http).models()
    south = PlancellClient("http://testserver", SOUTH, http=http)
    assert south.models() == []
    with pytest.raises(InputError):
        south.job(trained["job"]["id"])


def test_error_mapping_by_status() -> None:
    from addin.client import _error

    def resp(status: int, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(status, json=body)

    assert isinstance(_error(resp(503, {"code": "PLANCELL-E300", "message": "busy"})), TransientError)
    bug = _error(resp(500, {"code": "PLANCELL-E900", "message": "internal error (ref 1)"}))
    assert isinstance(bug, PlancellBug) and bug.one_line() == "PLANCELL-E900: internal error (ref 1)"
    err = _error(resp(400, {"code": "PLANCELL-E102", "message": "m", "problems": [
        {"table": "Sales", "message": "Qty 'x' is not a number", "fix": "enter a number", "row": 7,
         "column": "Qty", "value": "x", "severity": "error", "code": "E102", "future_field": 1}]}))
    assert isinstance(err, InputError) and err.problems[0].row == 7 and err.one_line() == "PLANCELL-E102: m"


def test_unreachable_server_is_a_transient_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed again below: nothing listens there
    client = PlancellClient(f"http://127.0.0.1:{port}", NORTH, timeout=2)
    with pytest.raises(TransientError, match="cannot reach the Plancell server"):
        client.models()
    client.close()


def test_client_only_when_settings_name_a_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert client_for(PlanSettings()) is None
    with pytest.raises(InputError, match="not a URL"):
        client_for(PlanSettings(server="planning-server:8765"), token=NORTH)
    monkeypatch.delenv("PLANCELL_TOKEN", raising=False)
    with pytest.raises(InputError, match="PLANCELL_TOKEN"):
        client_for(PlanSettings(server="http://planning-server:8765"))
    monkeypatch.setenv("PLANCELL_TOKEN", NORTH)
    c = client_for(PlanSettings(server="http://planning-server:8765/"))
    assert c is not None and c.url == "http://planning-server:8765"
    c.close()

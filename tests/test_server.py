"""The calculation server (`plancell serve`): auth, workspaces, training jobs, lookups,
cancel, limits and error shapes, on loopback with a tiny synthetic workbook."""

from __future__ import annotations

import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from addin import cache, udfs
from addin.cli import main
from addin.server import ServerConfig, create_app, load_tokens, server_config, token_digest
from engine.errors import InputError, TransientError
from engine.store import ModelStore
from engine.synthetic import generate_panel

NORTH, SOUTH = "north-token-0123456789abcdef", "south-token-0123456789abcdef"
BOOK = "shop.xlsx"


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def workbook_tables(seed: int = 1, *, actuals_ahead: bool = False) -> dict[str, list[dict[str, Any]]]:
    """A tiny workbook (3 SKUs x 2 locations, weekly) as the add-in sends it; with
    ``actuals_ahead`` the planned periods have happened (their actual Qty is filled in)."""
    p = generate_panel("W", n_skus=3, n_locations=2, periods=80, horizon=4, seed=seed)
    future = p.future if actuals_ahead else p.future.drop(columns=["Qty"])
    sales = pd.concat([p.sales, future], ignore_index=True)
    return {"Sales": _rows(sales), "Drivers": _rows(p.drivers), "Items": _rows(p.items),
            "Settings": [{"Key": "Horizon", "Value": 4}, {"Key": "Windows", "Value": 2}]}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(client: TestClient, job_id: str, token: str = NORTH, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Any:
    config = ServerConfig(tokens={token_digest(NORTH): "north", token_digest(SOUTH): "south"}, data_dir=data_dir)
    with TestClient(create_app(config), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def trained(client: TestClient) -> dict[str, Any]:
    """North trains `shop` once (v1); the other tests read it."""
    r = client.post("/v1/jobs/train", json={"book": BOOK, "tables": workbook_tables(), "rounds": 10},
                    headers=auth(NORTH))
    assert r.status_code == 202, r.text
    assert r.json()["model"] == "shop"
    job = wait_for(client, r.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    return job


def north_store(data_dir: Path) -> ModelStore:
    return ModelStore(data_dir / "workspaces" / "north" / "models", home=data_dir)


# --------------------------------------------------------------------------- auth


def test_healthz_is_open_and_every_v1_route_needs_the_token(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/lookup"), ("GET", "/v1/jobs/abc"),
                         ("DELETE", "/v1/jobs/abc"), ("POST", "/v1/jobs/train"), ("GET", "/v1/plans")]:
        for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": f"Basic {NORTH}"},
                        {"Authorization": "Bearer "}):
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["code"] == "PLANCELL-E110"
            assert r.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/v1/models", headers=auth(NORTH)).status_code == 200


def test_openapi_documents_the_v1_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/jobs/train", "/v1/jobs/{job_id}", "/v1/models", "/v1/lookup"} <= set(paths)


# --------------------------------------------------------------------------- training


def test_train_job_reports_progress_logs_and_result(client: TestClient, trained: dict[str, Any]) -> None:
    stages = {e["stage"] for e in trained["events"] if e["kind"] == "progress"}
    assert {"backtest", "train", "forecast"} <= stages
    assert any(e["kind"] == "log" and "validated" in e["message"] for e in trained["events"])
    s = trained["summary"]
    assert (s["model"], s["version"], s["n_series"], s["horizon"]) == ("shop", 1, 6, 4)
    assert trained["model_version"] == 1 and trained["started_at"] and trained["finished_at"]
    models = client.get("/v1/models", headers=auth(NORTH)).json()
    assert [(m["name"], m["versions"], m["latest"]) for m in models] == [("shop", [1], 1)]
    assert models[0]["data_fingerprint"] == s["data_fingerprint"]
    listed = client.get("/v1/jobs", headers=auth(NORTH)).json()
    assert trained["id"] in [j["id"] for j in listed]


def test_lookup_gives_the_same_numbers_as_the_excel_functions(
    client: TestClient, trained: dict[str, Any], data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = north_store(data_dir)
    monkeypatch.setattr(cache, "_default_store", lambda: store)   # the UDFs read the same store locally
    monkeypatch.setenv("PLANCELL_MODEL", "shop")
    pairs = [(f"SKU-000{i}", f"LOC-0{j}") for i in (1, 2, 3) for j in (1, 2)]
    r = client.post("/v1/lookup", headers=auth(NORTH),
                    json={"model": "shop", "items": [{"sku": s, "location": lo} for s, lo in pairs]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"], len(body["periods"])) == ("shop", 1, 4)
    assert len(body["results"]) == len(pairs)
    for (sku, loc), res in zip(pairs, body["results"]):
        assert "error" not in res
        for q in ("P10", "P50", "P90"):
            assert res["forecast"][q] == udfs.FORECAST_SKU(sku, 4, loc, int(q[1:]) / 100)[0]
        assert res["safety_stock"] == udfs.SAFETY_STOCK(sku, loc)
        assert res["reorder_point"] == udfs.REORDER_POINT(sku, loc)
        assert res["order_qty"] == udfs.ORDER_QTY(sku, loc)
        assert res["class"] == udfs.SKU_CLASS(sku, loc)
    assert any(res["order_qty"] > 0 for res in body["results"])   # the comparison covers real orders


def test_lookup_answers_the_good_items_and_flags_the_bad_ones(client: TestClient, trained: dict[str, Any]) -> None:
    r = client.post("/v1/lookup", headers=auth(NORTH), json={"periods": 2, "items": [
        {"sku": "SKU-0001", "location": "LOC-02"}, {"sku": "SKU-9999"}, {"sku": "SKU-0002"}]})
    assert r.status_code == 200   # the model defaults to the workspace's latest
    ok, unknown, ambiguous = r.json()["results"]
    assert len(ok["forecast"]["P50"]) == 2 and "error" not in ok
    assert unknown["error"].startswith("PLANCELL-E106")
    assert ambiguous["error"].startswith("PLANCELL-E110") and "LOC-01" in ambiguous["error"]
    r = client.post("/v1/lookup", headers=auth(NORTH), json={"periods": 9, "items": [{"sku": "SKU-0001"}]})
    assert r.status_code == 400
    assert r.json()["problems"][0]["column"] == "periods"


def test_a_bad_workbook_is_a_400_with_every_problem(client: TestClient) -> None:
    tables = {"Sales": [{"Date": "2024-01-01", "SKU": "A", "Qty": 1}, {"Date": "2024-01-08", "SKU": "A", "Qty": "x"},
                        {"Date": "banana", "SKU": "A", "Qty": 3}]}
    r = client.post("/v1/jobs/train", json={"book": BOOK, "tables": tables}, headers=auth(NORTH))
    assert r.status_code == 400
    body = r.json()
    assert body["code"].startswith("PLANCELL-E1")
    found = {(p["table"], p["row"], p["column"]) for p in body["problems"]}
    assert {("Sales", 3, "Qty"), ("Sales", 4, "Date")} <= found   # Excel rows: header = row 1
    r = client.post("/v1/jobs/train", json={"tables": {"Sales": [[1, 2]], "Salez": []}}, headers=auth(NORTH))
    assert r.status_code == 400
    assert {(p["table"], p["row"]) for p in r.json()["problems"]} == {("Sales", 2), ("Salez", None)}
    r = client.post("/v1/jobs/train", json={"book": BOOK}, headers=auth(NORTH))   # no tables at all
    assert r.status_code == 400 and r.json()["problems"][0]["column"] == "tables"


# --------------------------------------------------------------------------- workspaces


def test_one_workspace_never_sees_or_changes_anothers_models_jobs_or_plans(
    client: TestClient, trained: dict[str, Any],
) -> None:
    south = auth(SOUTH)
    assert client.get("/v1/models", headers=south).json() == []
    r = client.post("/v1/lookup", headers=south, json={"model": "shop", "items": [{"sku": "SKU-0001"}]})
    assert r.status_code == 404 and r.json()["code"] == "PLANCELL-E201"
    assert client.get(f"/v1/jobs/{trained['id']}", headers=south).status_code == 404
    assert client.delete(f"/v1/jobs/{trained['id']}", headers=south).status_code == 404
    assert trained["id"] not in [j["id"] for j in client.get("/v1/jobs", headers=south).json()]
    assert client.post("/v1/plans/shop/publish", headers=south, json={}).status_code == 404
    pub = client.post("/v1/plans/shop/publish", headers=auth(NORTH), json={"note": "north only"})
    assert pub.status_code == 201
    assert client.get("/v1/plans", headers=south).json() == []
    assert client.get(f"/v1/plans/shop/{pub.json()['version']}", headers=south).status_code == 404
    # north is untouched by everything south tried
    assert [m["versions"] for m in client.get("/v1/models", headers=auth(NORTH)).json()] == [[1]]


def test_tokens_file_maps_tokens_to_workspaces_and_reports_every_problem(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"workspaces": {"north": [NORTH], "south": ["sha256:" + token_digest(SOUTH)]}}))
    assert load_tokens(f) == {token_digest(NORTH): "north", token_digest(SOUTH): "south"}
    t = tmp_path / "tokens.toml"
    t.write_text(f'[workspaces]\nnorth = ["{NORTH}"]\n')
    assert load_tokens(t) == {token_digest(NORTH): "north"}
    f.write_text(json.dumps({"workspaces": {"../etc": [NORTH], "a": ["short"], "b": [NORTH], "c": [NORTH],
                                            "d": ["sha256:xyz"]}}))
    with pytest.raises(InputError) as exc:
        load_tokens(f)
    messages = " | ".join(p.message for p in exc.value.problems)
    assert len(exc.value.problems) == 4, messages
    assert "not allowed" in messages and "shorter than 16" in messages and "also a token of workspace" in messages
    assert "64 hex" in messages


def test_server_refuses_to_start_without_a_token_or_dev_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="needs a token"):
        server_config(env={})
    with pytest.raises(InputError, match="shorter than 16"):
        server_config(env={"PLANCELL_TOKEN": "1234"})
    with pytest.raises(InputError, match="loopback"):
        server_config(dev=True, host="0.0.0.0", env={})
    config, made_up = server_config(dev=True, host="::1", env={})
    assert made_up and config.tokens == {token_digest(made_up): "default"}
    config, made_up = server_config(env={"PLANCELL_TOKEN": NORTH})
    assert made_up is None and config.tokens == {token_digest(NORTH): "default"}
    env = {k: v for k, v in os.environ.items() if k != "PLANCELL_TOKEN"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env)
        assert main(["serve"]) == 2
        assert main(["serve", "--dev", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "PLANCELL-E110" in err and "needs a token" in err and "loopback" in err and "Traceback" not in err



def test_a_bad_database_url_is_an_input_error_not_a_traceback(tmp_path: Path) -> None:
    for url, says in [("notaurl", "not a database URL"), ("postgresql+nosuchdriver://u:pw@h/db", "no database driver")]:
        with pytest.raises(InputError, match=says) as exc:
            create_app(ServerConfig(tokens={token_digest(NORTH): "north"}, data_dir=tmp_path, db_url=url))
        assert exc.value.code == "E110" and "pw" not in str(exc.value)   # no password in the message


# --------------------------------------------------------------------------- cancel


def test_cancel_mid_training_leaves_the_previous_version_serving(
    client: TestClient, trained: dict[str, Any], data_dir: Path,
) -> None:
    before = client.post("/v1/lookup", headers=auth(NORTH), json={"model": "shop", "items": [{"sku": "SKU-0001",
                                                                                               "location": "LOC-01"}]})
    r = client.post("/v1/jobs/train", json={"book": BOOK, "tables": workbook_tables(seed=2), "rounds": 3000},
                    headers=auth(NORTH))
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:   # cancel once training has really started (its first progress event arrived)
        job = client.get(f"/v1/jobs/{job_id}", headers=auth(NORTH)).json()
        if job["state"] == "running" and job["progress"] is not None:
            break
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    during = client.post("/v1/lookup", headers=auth(NORTH), json={"model": "shop", "items": [
        {"sku": "SKU-0001", "location": "LOC-01"}]})
    assert during.json() == before.json()   # lookups answer while the training runs
    r = client.delete(f"/v1/jobs/{job_id}", headers=auth(NORTH))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert client.app.state.runner._running == {}            # the training process is gone
    assert [m["versions"] for m in client.get("/v1/models", headers=auth(NORTH)).json()] == [[1]]
    model_dir = data_dir / "workspaces" / "north" / "models" / "shop"
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith("v")) == ["v0001"]
    after = client.post("/v1/lookup", headers=auth(NORTH), json={"model": "shop", "items": [{"sku": "SKU-0001",
                                                                                              "location": "LOC-01"}]})
    assert after.json() == before.json()
    again = client.delete(f"/v1/jobs/{job_id}", headers=auth(NORTH))
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]


# --------------------------------------------------------------------------- uploads, limits, errors


def test_uploaded_workbook_is_read_with_openpyxl_and_a_pickle_is_refused(
    client: TestClient, tmp_path: Path, trained: dict[str, Any],
) -> None:
    book = write_xlsx(tmp_path / "Upload Test.xlsx", {"Sales": pd.DataFrame(workbook_tables()["Sales"])})
    with open(book, "rb") as fh:
        r = client.post("/v1/jobs/train/xlsx", files={"file": (book.name, fh)}, params={"rounds": 5},
                        headers=auth(NORTH))
    assert r.status_code == 202, r.text
    assert r.json()["model"] == "Upload Test"
    client.delete(f"/v1/jobs/{r.json()['id']}", headers=auth(NORTH))   # accepted is what this test needs

    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    r = client.post("/v1/jobs/train/xlsx", files={"file": ("evil.xlsx", pickle.dumps(Trap()))}, headers=auth(NORTH))
    assert r.status_code == 400 and r.json()["problems"][0]["table"] == "evil.xlsx"
    assert not marker.exists()


def write_xlsx(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """A workbook with one Excel table per sheet, as a planner's file has them."""
    import xlsxwriter

    with xlsxwriter.Workbook(str(path)) as wb:
        for name, df in tables.items():
            cols = list(df.columns)
            data = df.astype(object).where(df.notna(), None).values.tolist()
            wb.add_worksheet(name).add_table(0, 0, len(data), len(cols) - 1, {
                "name": name, "data": data, "columns": [{"header": c} for c in cols]})
    return path


def test_check_and_scenario_run_on_an_uploaded_workbook(
    client: TestClient, trained: dict[str, Any], tmp_path: Path,
) -> None:
    import io

    import openpyxl

    tables = {k: pd.DataFrame(v) for k, v in workbook_tables(actuals_ahead=True).items()}
    tables["Scenario"] = pd.DataFrame([{"Scenario": "Promo +30%", "Type": "Demand change", "Target": "SKU",
                                        "Name": "SKU-0001", "Value": 30, "Driver": None}])
    book = write_xlsx(tmp_path / BOOK, tables)
    jobs = {}
    for kind, params in (("check", None), ("scenario", {"paths": 50})):
        with open(book, "rb") as fh:
            r = client.post(f"/v1/jobs/{kind}", files={"file": (BOOK, fh)}, params=params, headers=auth(NORTH))
        assert r.status_code == 202, r.text
        jobs[kind] = r.json()["id"]
    check, scen = (wait_for(client, jobs[k]) for k in ("check", "scenario"))
    assert check["state"] == "succeeded", check["error"]
    assert check["summary"]["compared_with"].startswith("current plan (model shop v1")
    assert {p["SKU"] for p in check["summary"]["purchases"]} <= {"SKU-0001", "SKU-0002", "SKU-0003"}
    assert scen["state"] == "succeeded", scen["error"]
    assert [r["Scenario"] for r in scen["summary"]["summary"]] == ["Promo +30%"]
    out = client.get(f"/v1/jobs/{jobs['check']}/workbook", headers=auth(NORTH))
    assert out.status_code == 200
    sheets = openpyxl.load_workbook(io.BytesIO(out.content)).sheetnames
    assert {"Alerts", "Purchases", "Sales", "Scenario"} <= set(sheets)
    assert client.get(f"/v1/jobs/{jobs['check']}/workbook", headers=auth(SOUTH)).status_code == 404
    assert client.get(f"/v1/jobs/{trained['id']}/workbook", headers=auth(NORTH)).status_code == 404
    (tmp_path / "early").mkdir()
    early = write_xlsx(tmp_path / "early" / BOOK, {k: pd.DataFrame(v) for k, v in workbook_tables().items()})
    with open(early, "rb") as fh:   # nothing happened yet in the planned periods: a failed job that says why
        failed = wait_for(client, client.post("/v1/jobs/check", files={"file": (BOOK, fh)},
                                              headers=auth(NORTH)).json()["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "PLANCELL-E110"
    assert failed["error"]["problems"][0]["fix"] and "Traceback" not in json.dumps(failed)
    assert client.get(f"/v1/jobs/{failed['id']}/workbook", headers=auth(NORTH)).status_code == 409
    with open(book, "rb") as fh:   # a workbook whose model this workspace does not have
        r = client.post("/v1/jobs/check", files={"file": ("other.xlsx", fh)}, headers=auth(NORTH))
    assert r.status_code == 404 and r.json()["code"] == "PLANCELL-E201"


def test_request_body_over_the_limit_is_a_413(data_dir: Path) -> None:
    config = ServerConfig(tokens={token_digest(NORTH): "north"}, data_dir=data_dir / "small", max_body=2000)
    with TestClient(create_app(config)) as c:
        big = {"items": [{"sku": f"SKU-{i:05d}"} for i in range(200)]}
        r = c.post("/v1/lookup", json=big, headers=auth(NORTH))
        assert r.status_code == 413
        assert r.json()["code"] == "PLANCELL-E110" and "limit" in r.json()["message"]

        def chunks() -> Any:   # no Content-Length: the server counts what arrives
            for _ in range(10):
                yield b" " * 500

        r = c.post("/v1/lookup", content=chunks(), headers={**auth(NORTH), "Content-Type": "application/json"})
        assert r.status_code == 413
        small = c.post("/v1/lookup", json={"items": [{"sku": "A"}]}, headers=auth(NORTH))
        assert small.status_code == 404   # under the limit it reaches the API (no model yet)


def test_internal_errors_are_a_500_without_traceback_and_transient_ones_a_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import addin.server as server

    def boom(*_a: Any) -> Any:
        return 1 / 0

    monkeypatch.setattr(server, "_lookup", boom)
    r = client.post("/v1/lookup", headers=auth(NORTH), json={"items": []})
    assert r.status_code == 500
    assert r.json()["code"] == "PLANCELL-E900"
    assert "Traceback" not in r.text and "ZeroDivision" not in r.text and "server.py" not in r.text

    def busy(*_a: Any) -> Any:
        raise TransientError("the model store is busy; try again")

    monkeypatch.setattr(server, "_lookup", busy)
    r = client.post("/v1/lookup", headers=auth(NORTH), json={"items": []})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json() == {"code": "PLANCELL-E300", "message": "the model store is busy; try again", "problems": []}


def test_published_plans_are_immutable_versions(client: TestClient, trained: dict[str, Any], data_dir: Path) -> None:
    first = client.post("/v1/plans/shop/publish", headers=auth(NORTH), json={"note": "S&OP May"}).json()
    second = client.post("/v1/plans/shop/publish", headers=auth(NORTH), json={}).json()
    assert second["version"] == first["version"] + 1
    listed = client.get("/v1/plans", params={"model": "shop"}, headers=auth(NORTH)).json()
    assert [p["version"] for p in listed][:2] == [second["version"], first["version"]]
    got = client.get(f"/v1/plans/shop/{first['version']}", headers=auth(NORTH)).json()
    assert got["provenance"]["note"] == "S&OP May" and got["model_version"] == 1
    assert got["provenance"]["data_fingerprint"] == trained["summary"]["data_fingerprint"]
    assert len(got["rows"]) == 6 * 4 and {"SKU", "Location", "Period", "P10", "P50", "P90"} <= set(got["rows"][0])
    assert len(got["policy"]) == 6
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:   # concurrent publishers get distinct, consecutive versions
        got_versions = list(pool.map(lambda _: client.post("/v1/plans/shop/publish", headers=auth(NORTH),
                                                           json={}).json()["version"], range(4)))
    assert sorted(got_versions) == list(range(second["version"] + 1, second["version"] + 5))
    with sqlite3.connect(data_dir / "plancell.db") as db:   # not even a direct SQL client can change one
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            db.execute("UPDATE published_plans SET rows = '[]'")
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            db.execute("DELETE FROM published_plans")


# --------------------------------------------------------------------------- the real command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plancell_serve_runs_on_loopback_with_token_auth(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PLANCELL_TOKEN": NORTH, "PLANCELL_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "addin.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers=auth(SOUTH)).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers=auth(NORTH)).json() == []
        assert (tmp_path / "server" / "plancell.db").exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PLANCELL_TOKEN": NORTH, "PLANCELL_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "addin.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def test_server_killed_during_training_keeps_the_previous_version_serving(tmp_path: Path) -> None:
    port = _free_port()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth(NORTH), timeout=60)
    proc = _serve(tmp_path, port)
    try:
        first = http.post("/v1/jobs/train", json={"book": BOOK, "tables": workbook_tables(), "rounds": 5}).json()
        while (job := http.get(f"/v1/jobs/{first['id']}").json())["state"] in ("queued", "running"):
            time.sleep(0.2)
        assert job["state"] == "succeeded", job
        item = {"model": "shop", "items": [{"sku": "SKU-0002", "location": "LOC-02"}]}
        before = http.post("/v1/lookup", json=item).json()
        second = http.post("/v1/jobs/train", json={"book": BOOK, "tables": workbook_tables(seed=3),
                                                   "rounds": 3000}).json()
        while http.get(f"/v1/jobs/{second['id']}").json()["progress"] is None:
            time.sleep(0.05)
        trainers = _children(proc.pid)
        assert trainers, "training runs in a child process"
        proc.kill()                                  # kill -9 in the middle of training
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                  for pid in trainers):
            assert time.monotonic() < deadline, "the orphaned training process did not stop"
            time.sleep(0.2)
        proc = _serve(tmp_path, port)
        job = http.get(f"/v1/jobs/{second['id']}").json()
        assert job["state"] == "failed" and job["error"]["code"] == "PLANCELL-E300"
        assert [m["versions"] for m in http.get("/v1/models").json()] == [[1]]
        assert http.post("/v1/lookup", json=item).json() == before
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        http.close()


def test_forecast_value_added_of_published_versions(client: TestClient, trained: dict[str, Any]) -> None:
    """Once the published periods have actuals, the server scores each version against
    seasonal naive: the S&OP meeting's FVA without the workbook."""
    if not client.get("/v1/plans", params={"model": "shop"}, headers=auth(NORTH)).json():
        assert client.post("/v1/plans/shop/publish", headers=auth(NORTH), json={}).status_code == 201
    actuals = workbook_tables(actuals_ahead=True)["Sales"]
    r = client.post("/v1/fva", headers=auth(NORTH), json={"model": "shop", "actuals": actuals})
    assert r.status_code == 200, r.text
    body = r.json()
    steps = {row["Step"] for row in body["waterfall"]}
    assert {"Seasonal naive", "Statistical"} <= steps
    assert body["verdicts"] and all(isinstance(v, str) for v in body["verdicts"])
    assert client.post("/v1/fva", headers=auth(SOUTH), json={"model": "shop", "actuals": actuals}).status_code == 404
    bad = client.post("/v1/fva", headers=auth(NORTH), json={"model": "shop", "actuals": [{"SKU": "A"}]})
    assert bad.status_code == 400 and "Date" in bad.json()["message"]


def test_messy_workbooks_uploaded_to_the_server_get_a_clear_answer(client: TestClient, tmp_path: Path) -> None:
    """One workbook per hazard class of the malformed-workbook corpus (bench.corpus), uploaded
    for training: accepted (202) or refused with every problem (400/413), never a 500, never
    a traceback in the body."""
    from bench import corpus as C

    seen: set[str] = set()
    answers: dict[str, int] = {}
    for case in C.cases():
        if case.hazard in seen:
            continue
        seen.add(case.hazard)
        path, _ = C.build(case, tmp_path / case.hazard)
        with open(path, "rb") as fh:
            r = client.post("/v1/jobs/train/xlsx", params={"rounds": 3}, headers=auth(NORTH),
                            files={"file": (path.name, fh)})
        answers[case.name] = r.status_code
        assert r.status_code in (202, 400, 413), (case.name, r.status_code, r.text[:300])
        assert "Traceback" not in r.text and 'File "' not in r.text, case.name
        body = r.json()
        if r.status_code == 202:
            client.delete(f"/v1/jobs/{body['id']}", headers=auth(NORTH))   # accepted is enough here
        else:
            assert body["code"].startswith("PLANCELL-E") and body["message"], case.name
    assert len(answers) >= 30
    assert {202, 400} <= set(answers.values())

"""The server's database on SQLite (the default) and on a real PostgreSQL server (a team's
deployment): jobs, progress, workspaces, immutable published plans, clean-up.

CI (.ci/run) installs PostgreSQL and sets PLANCELL_REQUIRE_POSTGRES=1, so there the
PostgreSQL half cannot skip."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from addin.server import ServerConfig, create_app, token_digest
from addin.server_db import Database, plan_checksum

from ._postgres import postgres_bin, start_postgres

TOKEN = "db-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if postgres_bin() is None:
        if os.environ.get("PLANCELL_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required here (PLANCELL_REQUIRE_POSTGRES=1) but not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'plancell.db'}")
    else:
        url = request.getfixturevalue("pg_url")
        database = Database(url)
        with database.engine.begin() as conn:   # a clean slate per test on the shared server
            conn.exec_driver_sql("DROP TABLE IF EXISTS job_events, jobs, published_plans CASCADE")
        database.close()
        database = Database(url)
    try:
        yield database
    finally:
        database.close()


def _rows(n: int, bump: float = 0.0) -> list[dict[str, Any]]:
    return [{"SKU": f"SKU-{i:03d}", "Location": "", "Period": "2026-01-05", "P10": 1.0 + bump, "P50": 2.5 + bump,
             "P90": float("nan") if i == 0 else 4.0} for i in range(n)]


def test_jobs_progress_and_workspaces(db: Database) -> None:
    a = db.create_job("north", kind="train", book="shop.xlsx", model="shop", params={"rounds": 5})
    assert db.job("south", a) is None                       # another team cannot see it
    assert db.start_job(a) and not db.start_job(a)
    db.add_events(a, [{"kind": "progress", "stage": "backtest", "done": i, "total": 3, "message": ""}
                      for i in range(3)] + [{"kind": "log", "message": "x" * 5000}])
    job = db.job("north", a, events_since=2)
    assert [e["seq"] for e in job["events"]] == [3, 4] and len(job["events"][1]["message"]) == 2000
    assert db.finish_job(a, "succeeded", summary={"wape": float("inf")}, model="shop", model_version=1)
    assert not db.finish_job(a, "cancelled")               # the first final state wins
    job = db.job("north", a)
    assert job["state"] == "succeeded" and job["summary"] == {"wape": None} and job["model_version"] == 1
    b = db.create_job("north", kind="check", book="shop.xlsx", model="shop", params={})
    assert db.abandon_unfinished() == 1 and db.state(b) == "failed"
    assert [j["id"] for j in db.jobs("north")] == [b, a] and db.jobs("south") == []


def test_published_plans_are_append_only_and_verifiable(db: Database) -> None:
    v1 = db.publish_plan("north", "shop", model_version=3, data_fingerprint="f" * 16, provenance={"note": "S&OP"},
                         rows=_rows(5), policy=[{"SKU": "SKU-000", "SafetyStock": 7.5}])
    v2 = db.publish_plan("north", "shop", model_version=4, data_fingerprint="e" * 16, provenance={},
                         rows=_rows(5, 1.0))
    assert (v1, v2) == (1, 2)
    assert db.publish_plan("south", "shop", model_version=1, data_fingerprint=None, provenance={}, rows=[]) == 1
    got = db.plan("north", "shop", 1)
    assert got["n_rows"] == 5 and got["rows"][0]["P90"] is None          # NaN stored as null, not lost
    assert got["checksum"] == plan_checksum(got["rows"], got["policy"])
    assert [p["version"] for p in db.plans("north", "shop")] == [2, 1]
    assert db.plan("south", "shop", 2) is None
    for stmt in ("UPDATE published_plans SET rows = '[]'", "DELETE FROM published_plans"):
        with pytest.raises(sa.exc.DatabaseError, match="immutable"):
            with db.engine.begin() as conn:
                conn.exec_driver_sql(stmt)
    assert db.plan("north", "shop", 1)["rows"] == got["rows"]


def test_concurrent_publishers_get_distinct_consecutive_versions(db: Database) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def publish() -> None:
        for _ in range(4):
            v = db.publish_plan("north", "race", model_version=1, data_fingerprint=None, provenance={},
                                rows=_rows(3))
            with lock:
                got.append(v)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 25))


def test_old_finished_jobs_are_pruned_plans_and_running_jobs_stay(db: Database) -> None:
    old = db.create_job("north", kind="train", book="a.xlsx", model="a", params={})
    db.add_events(old, [{"kind": "log", "message": "hello"}])
    db.finish_job(old, "failed")
    running = db.create_job("north", kind="train", book="a.xlsx", model="a", params={})
    db.start_job(running)
    db.publish_plan("north", "a", model_version=1, data_fingerprint=None, provenance={}, rows=_rows(2))
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert db.prune_jobs(future) == [("north", old)]
    assert db.job("north", old) is None and db.state(running) == "running"
    assert [p["version"] for p in db.plans("north", "a")] == [1]


def test_the_server_runs_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from .test_server import wait_for, workbook_tables

    config = ServerConfig(tokens={token_digest(TOKEN): "team"}, data_dir=tmp_path, db_url=pg_url)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(config), raise_server_exceptions=False) as c:
        r = c.post("/v1/jobs/train", json={"book": "pgshop.xlsx", "tables": workbook_tables(), "rounds": 5},
                   headers=headers)
        assert r.status_code == 202, r.text
        job = wait_for(c, r.json()["id"], TOKEN, timeout=180)
        assert job["state"] == "succeeded", job
        assert any(e["kind"] == "progress" for e in job["events"])
        pub = c.post("/v1/plans/pgshop/publish", json={"note": "monthly"}, headers=headers)
        assert pub.status_code == 201, pub.text
        plan = c.get("/v1/plans/pgshop/1", headers=headers).json()
        assert plan["n_rows"] == len(plan["rows"]) > 0
        assert plan["checksum"] == plan_checksum(plan["rows"], plan["policy"])
    with sa.create_engine(pg_url).connect() as conn:   # it really is in PostgreSQL
        assert conn.exec_driver_sql("SELECT count(*) FROM published_plans WHERE model = 'pgshop'").scalar() == 1

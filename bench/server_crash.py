"""Crash safety of publishing on the calculation server: SIGKILL during publish, N trials.

``python -m bench.server_crash [--trials 100] [--skus 300] [--postgres]``

Starts ``plancell serve`` (a subprocess on a free loopback port, its own PLANCELL_HOME),
trains a plan once, then for every trial: start the server, publish the plan again and
again (POST /v1/plans/{model}/publish, back to back), SIGKILL the server at a random moment,
and check what the database shows afterwards, read directly with SQLAlchemy:

* every visible version is complete: its stored row count and sha256 checksum match the
  rows actually stored, and its rows equal the plan (no partial or mixed version);
* versions are 1..N without gaps, and N is the number of publishes the client saw
  acknowledged, or one more (the one in flight committed just before the kill).

A trial passes when all of that holds. Writes ``bench/results/server_crash.md``.
With ``--postgres`` the server uses a throwaway PostgreSQL cluster (tests/_postgres.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .server_load import REPO, RESULTS, TOKEN, _free_port, _start_server, _tables, _train, _wait

__all__ = ["run_trials", "main"]

_WORKSPACE = "default"   # the workspace of PLANCELL_TOKEN


def _verify(db_url: str, model: str, expected_rows: list[dict[str, Any]], acked: int,
            checked: int = 0) -> tuple[bool, str, int]:
    """(passed, why, versions visible) for the database after a kill. Versions up to
    ``checked`` were verified after an earlier kill (they are immutable): only the newer
    ones, and the last one before them, are read again."""
    from addin.server_db import Database, plan_checksum

    db = Database(db_url)
    try:
        versions = sorted(p["version"] for p in db.plans(_WORKSPACE, model))
        if versions != list(range(1, len(versions) + 1)):
            return False, f"versions not contiguous: {versions}", len(versions)
        if not acked <= len(versions) <= acked + 1:
            return False, f"{len(versions)} versions visible, {acked} acknowledged", len(versions)
        for v in versions[max(0, checked - 1):]:
            p = db.plan(_WORKSPACE, model, v)
            if p is None or p["n_rows"] != len(p["rows"]) or p["checksum"] != plan_checksum(p["rows"], p["policy"]):
                return False, f"version {v} is incomplete or does not match its checksum", len(versions)
            if p["rows"] != expected_rows:
                return False, f"version {v} holds other rows than the plan", len(versions)
        return True, "", len(versions)
    finally:
        db.close()


def run_trials(trials: int, *, skus: int = 300, db_url: str | None = None, seed: int = 0,
               log: Any = None) -> dict[str, Any]:
    """Run the trials; returns counts and the failures (see the module docstring)."""
    rng = random.Random(seed)
    home = tempfile.mkdtemp(prefix="plancell-crash-")
    db = db_url or f"sqlite:///{Path(home) / 'server' / 'plancell.db'}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    proc = _start_server(home, port, db_url)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        job = _wait(http, _train(http, _tables(skus, seed), 5, "crash.xlsx"))
        if job["state"] != "succeeded":
            raise RuntimeError(f"training failed: {job.get('error')}")
        first = http.post("/v1/plans/crash/publish", json={"note": "reference"})
        first.raise_for_status()
        expected = http.get("/v1/plans/crash/1").json()["rows"]
        t0 = time.perf_counter()
        http.post("/v1/plans/crash/publish", json={"note": "timing"}).raise_for_status()
        publish_s = time.perf_counter() - t0
    acked = 2
    passed, failures, kill_times = 0, [], []
    for trial in range(trials):
        if trial:
            proc = _start_server(home, port, db_url)
            # load the plan first, so the kill lands in publishing rather than in the first load
            httpx.get(f"{url}/v1/models/crash", headers=headers, timeout=120).raise_for_status()
        stop = threading.Event()
        count = [0]

        def publisher() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/v1/plans/crash/publish", json={"note": f"trial {trial}"})
                    except httpx.TransportError:
                        return
                    if r.status_code == 201:
                        count[0] += 1

        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        delay = rng.uniform(0.0, 3.0 * publish_s)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        t.join(timeout=60)
        kill_times.append(delay)
        ok, why, visible = _verify(db, "crash", expected, acked + count[0], checked=acked)
        if ok:
            passed += 1
        else:
            failures.append(f"trial {trial}: {why}")
        acked = visible
        if log is not None:
            log(f"trial {trial + 1}/{trials}: kill after {delay * 1000:.0f} ms, {count[0]} publish(es) acknowledged, "
                f"{visible} versions visible: {'ok' if ok else why}")
    return {"trials": trials, "passed": passed, "failures": failures, "versions": acked,
            "rows_per_version": len(expected), "publish_seconds": publish_s,
            "kill_ms": (1000 * min(kill_times, default=0), 1000 * max(kill_times, default=0)),
            "database": "postgresql" if db_url else "sqlite"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--skus", type=int, default=300)
    ap.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL cluster")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    stop_pg = None
    db_url = None
    if args.postgres:
        sys.path.insert(0, str(REPO))
        from tests._postgres import start_postgres

        db_url, stop_pg = start_postgres()
    try:
        out = run_trials(args.trials, skus=args.skus, db_url=db_url, seed=args.seed,
                         log=lambda m: print(m, flush=True))
    finally:
        if stop_pg is not None:
            stop_pg()
    lines = [
        "# SIGKILL during publish (`python -m bench.server_crash"
        + (f" --trials {args.trials}" if args.trials != 100 else "") + (" --postgres" if args.postgres else "") + "`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"database {out['database']}; plan of {out['rows_per_version']} rows per version; one publish took "
        f"{out['publish_seconds'] * 1000:.0f} ms; kills at {out['kill_ms'][0]:.0f}-{out['kill_ms'][1]:.0f} ms after "
        "publishing started.",
        "",
        "| trials | complete previous or new version | failures | versions published |",
        "|---|---|---|---|",
        f"| {out['trials']} | {out['passed']} | {len(out['failures'])} | {out['versions']} |",
    ]
    if out["failures"]:
        lines += ["", "Failures:", *[f"- {f}" for f in out["failures"]]]
    RESULTS.mkdir(exist_ok=True)
    name = "server_crash" + ("-postgres" if args.postgres else "") + ".md"
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if out["passed"] == out["trials"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Calculation server under load: N concurrent clients doing batch lookups on loopback.

``python -m bench.server_load [--clients 32] [--seconds 60] [--batch 50] [--skus 200]``

Starts ``plancell serve`` as a subprocess on a free loopback port (its own PLANCELL_HOME),
trains a plan through the API, then runs two phases of ``--seconds`` each with ``--clients``
concurrent clients (asyncio tasks in this process, one keep-alive HTTP/1.1 connection each),
every client POSTing /v1/lookup with ``--batch`` random SKU-locations, back to back:

1. lookups alone (target p99 < 100 ms, 0 errors);
2. the same while training jobs run (one is restarted whenever one finishes; target p99 < 250 ms).

An error is any non-200 answer, a transport failure or an item answered with an error.
Writes ``bench/results/server_load.md``. The clients share the machine (and the GIL of
this process) with the server: latencies include the clients' own scheduling delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-" + "0" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tables(skus: int, seed: int) -> dict[str, Any]:
    import pandas as pd

    from engine.synthetic import generate_panel

    p = generate_panel("W", n_skus=skus, n_locations=2, periods=104, horizon=12, seed=seed)
    sales = pd.concat([p.sales, p.future.drop(columns=["Qty"])], ignore_index=True)

    def rows(df: Any) -> Any:
        return json.loads(df.to_json(orient="records", date_format="iso"))

    return {"Sales": rows(sales), "Drivers": rows(p.drivers), "Items": rows(p.items),
            "Settings": [{"Key": "Horizon", "Value": 12}, {"Key": "Windows", "Value": 2}]}


def _start_server(home: str, port: int, db_url: str | None = None) -> subprocess.Popen[bytes]:
    """``plancell serve`` on loopback (its own PLANCELL_HOME, ``--db`` if given), once /healthz answers."""
    env = {**os.environ, "PLANCELL_TOKEN": TOKEN, "PLANCELL_HOME": home}
    cmd = [sys.executable, "-m", "addin.cli", "serve", "--port", str(port)] + (["--db", db_url] if db_url else [])
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not start in 120 s")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), to separate server cost from client cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _train(http: httpx.Client, tables: dict[str, Any], rounds: int, book: str) -> str:
    r = http.post("/v1/jobs/train", json={"book": book, "tables": tables, "rounds": rounds})
    r.raise_for_status()
    return str(r.json()["id"])


def _wait(http: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job = http.get(f"/v1/jobs/{job_id}", params={"since": 10**9}).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)


async def _client(url: str, pairs: list[tuple[str, str]], batch: int, until: float, seed: int,
                  lat: list[float], errors: list[str]) -> None:
    """One client: a keep-alive HTTP/1.1 connection and minimal request code, so the time
    measured is the server's and not a heavy client library's (they share two cores)."""
    rng = random.Random(seed)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /v1/lookup HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n")
    try:
        while time.perf_counter() < until:
            items = [{"sku": s, "location": lo} for s, lo in rng.sample(pairs, min(batch, len(pairs)))]
            body = json.dumps({"model": "bench", "items": items}).encode()
            t0 = time.perf_counter()
            try:
                writer.write(head.format(n=len(body)).encode() + body)
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                length = int(next(h.split(b":", 1)[1] for h in headers.split(b"\r\n")
                                  if h.lower().startswith(b"content-length:")))
                payload = await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                lat.append(time.perf_counter() - t0)
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            lat.append(time.perf_counter() - t0)
            if b" 200 " not in status_line or b'"error":' in payload:
                errors.append(f"{status_line.decode().strip()}: {payload[:200].decode(errors='replace')}")
    finally:
        writer.close()


async def _phase(url: str, pairs: list[tuple[str, str]], clients: int, batch: int,
                 seconds: float) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(_client(url, pairs, batch, until, i, lat, errors) for i in range(clients)))
    return lat, errors, time.perf_counter() - t0


def _row(name: str, lat: list[float], errors: list[str], wall: float, target_ms: float,
         cpu: tuple[float | None, float | None]) -> str:
    a = np.array(lat) * 1000
    per_req = (f"{1000 * (cpu[1] - cpu[0]) / len(a):.2f}" if None not in cpu and len(a) else "n/a")  # type: ignore
    p50, p90, p99 = np.percentile(a, [50, 90, 99]) if len(a) else (float("nan"),) * 3
    verdict = "met" if p99 < target_ms and not errors else "NOT met"
    return (f"| {name} | {len(a):,} | {len(a) / wall:,.0f} | {per_req} | {p50:.1f} | {p90:.1f} | {p99:.1f} | "
            f"{a.max() if len(a) else float('nan'):.1f} | {len(errors)} | p99 < {target_ms:.0f} ms, 0 errors: "
            f"{verdict} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of each phase")
    ap.add_argument("--batch", type=int, default=50, help="SKU-locations per lookup")
    ap.add_argument("--skus", type=int, default=200, help="SKUs of the plan (x 2 locations)")
    ap.add_argument("--rounds", type=int, default=30, help="boosting rounds of the served plan")
    ap.add_argument("--train-rounds", type=int, default=300, help="boosting rounds of the background training")
    ap.add_argument("--note", default="", help="a line for the results file (e.g. what else ran)")
    ap.add_argument("--out", default=str(RESULTS / "server_load.md"))
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="plancell-server-bench-")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    tables = _tables(args.skus, seed=1)
    pairs = [(str(r["SKU"]), str(r["Location"])) for r in tables["Items"]]
    proc = _start_server(home, port)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
            t0 = time.perf_counter()
            job = _wait(http, _train(http, tables, args.rounds, "bench.xlsx"))
            train_s = time.perf_counter() - t0
            if job["state"] != "succeeded":
                raise SystemExit(f"training failed: {job['error']}")
            http.post("/v1/lookup", json={"model": "bench", "items": [{"sku": s, "location": lo}
                                                                      for s, lo in pairs[:5]]}).raise_for_status()
            print(f"plan trained in {train_s:.1f} s; phase 1: lookups only", file=sys.stderr)
            cpu0 = _cpu_seconds(proc.pid)
            lat1, err1, wall1 = asyncio.run(_phase(url, pairs, args.clients, args.batch, args.seconds))
            cpu1 = _cpu_seconds(proc.pid)

            print("phase 2: lookups while training", file=sys.stderr)
            # A different model name: the served plan stays the same while the other trains.
            other = _tables(args.skus, seed=2)
            state: dict[str, Any] = {"stop": False, "jobs": 0, "spans": []}

            def keep_training() -> None:
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as h:
                    while not state["stop"]:
                        jid = _train(h, other, args.train_rounds, "background.xlsx")
                        state["jobs"] += 1
                        t = time.perf_counter()
                        while h.get(f"/v1/jobs/{jid}", params={"since": 10**9}).json()["state"] in ("queued",
                                                                                                   "running"):
                            if state["stop"]:
                                h.delete(f"/v1/jobs/{jid}")
                                break
                            time.sleep(0.2)
                        state["spans"].append((t, time.perf_counter()))

            import threading

            trainer = threading.Thread(target=keep_training, daemon=True)
            trainer.start()
            time.sleep(3.0)   # let the first training process start and get busy
            cpu2 = _cpu_seconds(proc.pid)
            p0 = time.perf_counter()
            lat2, err2, wall2 = asyncio.run(_phase(url, pairs, args.clients, args.batch, args.seconds))
            p1 = time.perf_counter()
            cpu3 = _cpu_seconds(proc.pid)
            state["stop"] = True
            trainer.join(timeout=60)
            overlap = sum(max(0.0, min(b, p1) - max(a, p0)) for a, b in state["spans"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    lines = [
        "# Calculation server under load (loopback)",
        "",
        f"Command: `python -m bench.server_load --clients {args.clients} --seconds {args.seconds:g} "
        f"--batch {args.batch} --skus {args.skus}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"before the run {load_before[0]:.2f} (shared machine: other jobs ran at the same time)."
        + (f" {args.note}" if args.note else ""),
        f"Plan served: {len(pairs)} SKU-locations, weekly, horizon 12 (trained through the API in {train_s:.1f} s). "
        f"Each request looks up {args.batch} random SKU-locations (P10/P50/P90 x 12 periods, safety stock, reorder "
        "point, order quantity, class).",
        "",
        "| phase | requests | req/s | server CPU ms/req | p50 ms | p90 ms | p99 ms | max ms | errors | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _row("lookups only", lat1, err1, wall1, 100, (cpu0, cpu1)),
        _row(f"while training ({state['jobs']} job(s), {args.train_rounds} rounds)", lat2, err2, wall2, 250,
             (cpu2, cpu3)),
        "",
        "Clients: asyncio tasks in one process, one keep-alive HTTP/1.1 connection each, minimal request code; "
        "latency is measured in the client and includes its own event-loop delay. The server is one uvicorn "
        "process; training runs in a separate spawned process at nice 10 (its CPU is not in 'server CPU ms/req').",
        f"A training job was queued or running for {overlap:.0f} s of the {p1 - p0:.0f} s of phase 2.",
    ]
    if err1 or err2:
        lines += ["", "First errors:", *(f"- {e}" for e in (err1 + err2)[:5])]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

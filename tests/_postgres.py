"""A throwaway PostgreSQL server for the database tests: a real server (Debian's postgresql
package, which .ci/run installs), its own cluster in a temp folder, loopback TCP only,
stopped when the tests end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["postgres_bin", "start_postgres"]


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl (None: PostgreSQL is not installed)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    return None


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres() -> tuple[str, Callable[[], None]]:
    """Start a cluster in a new temp folder; returns its SQLAlchemy URL and a stop function
    (which also removes the folder). PostgreSQL refuses to run as root, so as root the
    cluster belongs to the postgres user (and lives outside pytest's private temp dirs)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="plancell-pg-"))
    data, sock = root / "pgdata", root / "pgsock"
    sock.mkdir(parents=True, exist_ok=True)
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
    port = _free_port()
    _run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
          "--no-sync"])
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "-t", "60",
          "start"])

    def stop() -> None:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while True:   # -w waits for the socket; make sure TCP answers too
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return url, stop
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise
            time.sleep(0.2)

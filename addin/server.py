"""The calculation server (``plancell serve``): one shared source of truth for models and plans.

A FastAPI app (OpenAPI docs at ``/docs``) run by uvicorn:

* ``GET /healthz`` is open; every ``/v1`` route needs ``Authorization: Bearer <token>``.
  A token maps to a *workspace* (a team); each workspace has its own verified model store
  (``<data>/workspaces/<name>/models``) and its own rows in the database, and no route can
  reach another workspace's models, plans or jobs.
* Training runs in a separate ``spawn``-ed process per job (at most ``train_workers`` at a
  time, at a lower CPU priority), so lookups keep answering; progress events and log lines
  are relayed to the job record; cancel terminates the process. The model store's atomic
  save means a cancelled or killed training never leaves a partial model: the previous
  version keeps serving.
* Lookups answer from the same warm plan cache as the Excel functions (:mod:`addin.cache`).
* Nothing uploaded is ever unpickled: workbooks are parsed with openpyxl, tables arrive as JSON.

Errors are JSON ``{"code": "PLANCELL-E...", "message": ..., "problems": [...]}``: 400 for
input the user can fix, 401, 404, 409, 413, 503 for transient faults, 500 for bugs (logged
with their traceback here, never sent to the client).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple

import pandas as pd
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import __version__
from engine.errors import InputError, PlancellBug, PlancellError, Problem, TransientError
from engine.schema import PLAN_TABLES

from .server_db import FINISHED_STATES, Database

__all__ = ["ServerConfig", "create_app", "server_config", "load_tokens", "token_digest", "token_from_env",
           "default_data_dir", "is_loopback", "serve", "DEFAULT_PORT", "DEFAULT_MAX_BODY", "CONTRACT_TABLES"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 50 * 1024 * 1024
#: Tables a training request may carry (the data contract's input tables).
CONTRACT_TABLES = PLAN_TABLES
#: An uploaded .xlsx may expand to at most this many times the body limit (zip bombs).
_MAX_EXPANSION = 20
_MIN_TOKEN_CHARS = 16
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
_MAX_LOOKUP_ITEMS = 20_000
_NEW_TOKEN_HINT = "python -c \"import secrets; print(secrets.token_urlsafe(32))\""


# --------------------------------------------------------------------------- configuration


def token_digest(token: str) -> str:
    """SHA-256 hex of a token: what the server keeps and compares, never the token itself."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ServerConfig:
    """``tokens`` maps token digests (:func:`token_digest`) to workspace names."""

    tokens: dict[str, str]
    data_dir: Path
    db_url: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    cors_origins: tuple[str, ...] = ()
    train_workers: int = 1
    dev: bool = False
    job_retention_days: float = 30.0   # finished jobs (records, uploads, result sheets) older than this go
    dask: str | None = None            # train on this Dask cluster (plancell serve --dask ADDRESS)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'plancell.db').as_posix()}"


def _token_problem(where: str, message: str, fix: str, column: str | None = None, value: Any = None) -> Problem:
    return Problem(where, message, fix, column=column, value=value, code="E110")


def load_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a tokens file (JSON, or TOML when it ends in ``.toml``) into digest -> workspace.

    Format: ``{"workspaces": {"north": ["sha256:<hex>", ...], "south": [...]}}``. An entry is
    ``sha256:`` plus the hex SHA-256 of the token (recommended: the file then holds no secret)
    or the token itself (at least 16 characters). Every problem is reported at once.
    """
    p = Path(path)
    where = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"Cannot read the tokens file {p}: {exc.strerror or exc}.",
                         [_token_problem(where, "cannot read the file", "check the path given to --tokens")],
                         code="E110") from exc
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"The tokens file {p} cannot be read: {exc}.",
                         [_token_problem(where, f"not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'}",
                                         "fix the syntax (see docs/server.md for the format)")],
                         code="E110") from exc
    spaces = doc.get("workspaces") if isinstance(doc, dict) else None
    problems: list[Problem] = []
    out: dict[str, str] = {}
    if not isinstance(spaces, dict) or not spaces:
        problems.append(_token_problem(where, "no 'workspaces' mapping", 'write {"workspaces": {"team": '
                                       '["sha256:<hex of the token>"]}}'))
    for ws, entries in (spaces or {}).items() if isinstance(spaces, dict) else ():
        if not _WORKSPACE_RE.match(str(ws)):
            problems.append(_token_problem(where, "workspace name not allowed", "use 1-64 letters, digits, - or _, "
                                           "starting with a letter or digit", column="workspaces", value=str(ws)))
            continue
        if not isinstance(entries, list) or not entries:
            problems.append(_token_problem(where, "needs a list of one or more tokens", "write "
                                           f'"{ws}": ["sha256:<hex>"]', column=str(ws)))
            continue
        for i, entry in enumerate(entries, start=1):
            if not isinstance(entry, str):
                problems.append(_token_problem(where, f"token {i} is not text", "quote it", column=str(ws)))
                continue
            m = _DIGEST_RE.match(entry.strip().lower())
            if m:
                digest = m.group(1)
            elif entry.strip().lower().startswith("sha256:"):
                problems.append(_token_problem(where, f"token {i} is not 'sha256:' plus 64 hex digits",
                                               "write the hex SHA-256 of the token", column=str(ws)))
                continue
            elif len(entry.strip()) < _MIN_TOKEN_CHARS:
                problems.append(_token_problem(where, f"token {i} is shorter than {_MIN_TOKEN_CHARS} characters",
                                               f"make a long random token: {_NEW_TOKEN_HINT}", column=str(ws)))
                continue
            else:
                digest = token_digest(entry)
            if digest in out and out[digest] != ws:
                problems.append(_token_problem(where, f"token {i} is also a token of workspace {out[digest]!r}",
                                               "give every workspace its own tokens", column=str(ws)))
                continue
            out[digest] = str(ws)
    if problems:
        raise InputError(f"The tokens file {p} has {len(problems)} problem(s); first: {problems[0].message}.",
                         problems, code="E110")
    return out


def token_from_env(value: str | None) -> dict[str, str]:
    """``PLANCELL_TOKEN`` as the single workspace ``default``; refuses a weak token."""
    if not value or not value.strip():
        return {}
    if len(value.strip()) < _MIN_TOKEN_CHARS:
        raise InputError(f"PLANCELL_TOKEN is shorter than {_MIN_TOKEN_CHARS} characters. Fix: set a long random "
                         f"token, e.g. {_NEW_TOKEN_HINT}", code="E110")
    return {token_digest(value): "default"}


def default_data_dir() -> Path:
    """``<PLANCELL_HOME or ~/.plancell>/server``: the server's key, database and workspaces."""
    home = os.environ.get("PLANCELL_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".plancell") / "server"


def server_config(*, tokens_file: str | None = None, dev: bool = False, host: str = "127.0.0.1",
                  db_url: str | None = None, max_body_mb: int = 50, cors_origins: list[str] | tuple[str, ...] = (),
                  env: dict[str, str] | None = None, dask: str | None = None) -> tuple[ServerConfig, str | None]:
    """The configuration ``plancell serve`` runs with, and the token made up for ``--dev``
    (None otherwise). Refuses to run without a token unless ``dev``, and ``dev`` off loopback."""
    env = dict(os.environ) if env is None else env
    if dev and not is_loopback(host):
        raise InputError(f"--dev serves this machine only, but --host {host} is not a loopback address. Fix: drop "
                         "--host (or use 127.0.0.1), or set PLANCELL_TOKEN and drop --dev.", code="E110")
    if tokens_file:
        tokens = load_tokens(tokens_file)
        if env.get("PLANCELL_TOKEN"):
            _log.warning("--tokens given: PLANCELL_TOKEN is ignored")
    else:
        tokens = token_from_env(env.get("PLANCELL_TOKEN"))
    made_up = None
    if not tokens:
        if not dev:
            raise InputError("The server needs a token. Fix: set PLANCELL_TOKEN to a long random secret (e.g. "
                             f"{_NEW_TOKEN_HINT}), or give --tokens FILE, or use --dev on this machine only.",
                             code="E110")
        import secrets

        made_up = secrets.token_urlsafe(32)
        tokens = {token_digest(made_up): "default"}
    if dask:
        from engine.distributed import check_address

        dask = check_address(dask, source="--dask")   # a typo fails now, not at the first training
    return ServerConfig(tokens=tokens, data_dir=default_data_dir(), db_url=db_url, max_body=max_body_mb * 2**20,
                        cors_origins=tuple(cors_origins), dev=dev, dask=dask), made_up


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- errors


class _ApiError(Exception):
    """An HTTP-level refusal (auth, conflict, size) in the product's error shape."""

    def __init__(self, status: int, message: str, code: str = "E110", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def _body(code: str, message: str, problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    code = code if code.startswith("PLANCELL-") else f"PLANCELL-{code}"
    return {"code": code, "message": " ".join(str(message).split()), "problems": problems or []}


def _error_response(exc: BaseException) -> JSONResponse:
    if isinstance(exc, _ApiError):
        return JSONResponse(_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)
    if isinstance(exc, InputError):
        status = 404 if exc.code == "E201" else 400
        return JSONResponse(_body(exc.code, exc.message, [p.to_dict() for p in exc.problems]), status_code=status)
    if isinstance(exc, TransientError):
        return JSONResponse(_body(exc.code, exc.message), status_code=503, headers={"Retry-After": "5"})
    if isinstance(exc, PlancellError) and not isinstance(exc, PlancellBug):
        return JSONResponse(_body(exc.code, exc.message), status_code=400)
    ref = os.urandom(4).hex()
    _log.error("internal error (ref %s)", ref, exc_info=(type(exc), exc, exc.__traceback__))
    return JSONResponse(_body("E900", f"internal error in the Plancell server (ref {ref}); the server log has "
                                      "the details, please report it"), status_code=500)


def _validation_problems(exc: RequestValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        out.append(Problem("request", str(err.get("msg", "invalid value")), "send the field as the API docs "
                           "(/docs) describe", column=".".join(loc) or None,
                           value=None if isinstance(err.get("input"), (dict, list)) else err.get("input"),
                           code="E110"))
    return out


# --------------------------------------------------------------------------- request size


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with a 413 before the app
    parses them (also for chunked uploads without a Content-Length)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        mb = self.limit / (1024 * 1024)
        resp = JSONResponse(_body("E110", f"the request is larger than the server's limit of {mb:g} MB; send less "
                                          "data per request, or ask the administrator to raise --max-body-mb"),
                            status_code=413, headers={"Connection": "close"})
        await resp(scope, receive, send)


# --------------------------------------------------------------------------- workspaces


@dataclass
class _Workspace:
    name: str
    store: Any   # engine.store.ModelStore


class _Workspaces:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stores: dict[str, _Workspace] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> _Workspace:
        from engine.store import ModelStore

        with self._lock:
            ws = self._stores.get(name)
            if ws is None:
                # One installation key for the server (home = data_dir), one store root per workspace.
                ws = _Workspace(name, ModelStore(self.data_dir / "workspaces" / name / "models", home=self.data_dir))
                self._stores[name] = ws
            return ws


# --------------------------------------------------------------------------- training


class _MemoryBook:
    """A workbook port over tables that came with a request: the ribbon actions run unchanged
    and the sheets they write are kept (``written``) for the add-in to put in its workbook.
    ``layout`` is the workbook's sheets and the tables on each, as the add-in saw them."""

    def __init__(self, name: str, tables: dict[str, tuple[pd.DataFrame, int]],
                 status: Callable[[str], None] | None = None, layout: dict[str, list[str]] | None = None) -> None:
        self.name = name
        self._tables = tables
        self._status = status
        self._layout = dict(layout or {})
        self.written: list[tuple[Any, str | None]] = []

    def tables(self) -> dict[str, tuple[pd.DataFrame, int]]:
        return self._tables

    def sheet_names(self) -> list[str]:
        names = list(self._layout)
        return names + [s.name for s, _ in self.written if s.name not in names]

    def tables_on(self, sheet: str) -> list[str]:
        return list(self._layout.get(sheet, []))

    def read_pairs(self, sheet: str, max_rows: int = 40) -> dict[str, Any]:
        return {}

    def write_sheet(self, sheet: Any, *, after: str | None = None) -> None:
        self.written = [(s, a) for s, a in self.written if s.name != sheet.name] + [(sheet, after)]

    def status(self, message: str | None) -> None:
        if message and self._status is not None:
            self._status(message)

    def save(self) -> None:
        """Nothing to save: the model store has the plan; the sheets go back to the add-in."""


def _save_sheets(book: _MemoryBook, path: str | None) -> int:
    """Write the sheets an action produced as JSON, atomically (a killed job leaves none)."""
    if not path:
        return 0
    from .wire import sheet_to_wire

    body = json.dumps({"sheets": [{"sheet": sheet_to_wire(s), "after": a} for s, a in book.written]},
                      ensure_ascii=False, separators=(",", ":"))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(book.written)


class _QueueLog(logging.Handler):
    """Relays the training process's INFO+ log lines to the job record."""

    def __init__(self, q: Any) -> None:
        super().__init__(logging.INFO)
        self.q = q

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.q.put(("log", f"{record.levelname} {record.name}: {record.getMessage()}"[:2000]))
        except Exception:  # a log line must never break training
            pass


def _job_child(q: Any, *job_args: Any) -> None:
    """Entry point of a job process (spawned: a clean interpreter, no server state)."""
    job = _Job(*job_args)
    if hasattr(os, "nice"):
        try:
            os.nice(10)  # lookups in the server process come first on a busy machine
        except OSError:
            pass
    parent = os.getppid()

    def orphan_watch() -> None:
        # A server killed with -9 cannot terminate its training: the process ends itself, and
        # the store's atomic save means no partial model whenever that happens.
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=orphan_watch, name="plancell-orphan-watch", daemon=True).start()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_QueueLog(q))
    try:
        summary = _train(q, job) if job.kind == "train" else _workbook_action(q, job)
        q.put(("done", json.loads(json.dumps(summary, default=_json_default))))
    except PlancellError as exc:
        problems = [p.to_dict() for p in getattr(exc, "problems", [])]
        q.put(("error", _body(exc.code, exc.message, problems)))
    except BaseException as exc:  # the job gets one short line; the traceback goes to the server's log only
        ref = os.urandom(4).hex()
        sys.stderr.write(f"plancell training job failed (ref {ref}):\n{''.join(traceback.format_exception(exc))}")
        sys.stderr.flush()
        q.put(("error", _body("E900", f"internal error while training (ref {ref}); the server log has the "
                                      "details, please report it")))
    finally:
        q.close()
        q.join_thread()


def _train(q: Any, job: _Job) -> dict[str, Any]:
    from engine.store import ModelStore

    from .actions import refresh

    def progress(event: Any) -> None:
        q.put(("progress", event.stage, int(event.done), int(event.total), str(event.message)))

    assert job.tables is not None
    book = _MemoryBook(job.book, job.tables, layout=job.layout)
    out = refresh(book, progress=progress,
                  model_params={"n_estimators": job.rounds} if job.rounds else None,
                  store=ModelStore(job.store_root, home=Path(job.home)), client=False, cluster=job.cluster)
    res = out["result"]
    return {"model": out["model"], "version": out["version"], "n_series": res.metadata.get("n_series"),
            "freq": res.metadata.get("freq"), "horizon": res.metadata.get("horizon"),
            "trained_at": res.metadata.get("trained_at"), "data_fingerprint": res.metadata.get("data_fingerprint"),
            "backtest": res.backtest.overall, "elapsed_seconds": res.metadata.get("elapsed_seconds"),
            "warnings": [str(w) for w in out["warnings"]][:200], "sheets": _save_sheets(book, job.sheets_out)}


def _workbook_action(q: Any, job: _Job) -> dict[str, Any]:
    """Check Execution, Run Scenario or Publish Snapshot exactly as the ribbon runs them: on
    the uploaded copy (saved in place for GET /v1/jobs/{id}/workbook), or on the tables the
    add-in sent (the sheets written go back through GET /v1/jobs/{id}/sheets)."""
    from engine.store import ModelStore

    from . import actions
    from .port import FileBook

    store = ModelStore(job.store_root, home=Path(job.home))
    if job.workbook is not None:
        port: Any = FileBook(job.workbook, progress=lambda m: q.put(("log", str(m))))
    else:
        assert job.tables is not None
        port = _MemoryBook(job.book, job.tables, status=lambda m: q.put(("log", str(m))), layout=job.layout)
    q.put(("progress", job.kind, 0, 1, "start"))
    if job.kind == "check":
        out = actions.check(port, store=store, client=False)
        summary = {"compared_with": out["compared_with"], "alerts": _records(out["alerts"]),
                   "purchases": _records(out["purchases"]), "kpis": _records(out["kpis"])}
    elif job.kind == "scenario":
        out = actions.scenario(port, store=store, paths=job.paths, seed=job.seed, client=False)
        summary = {"summary": _records(out["summary"]), "mitigations": _records(out["mitigations"])}
    else:
        summary = {"sheet": actions.publish(port, client=False)}
    if isinstance(port, _MemoryBook):
        summary["sheets"] = _save_sheets(port, job.sheets_out)
    q.put(("progress", job.kind, 1, 1, "done"))
    return {"book": job.book, **summary}


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return str(v)


class _Job(NamedTuple):
    """What a job process gets (pickled by spawn: our own frames and paths, never an upload's bytes)."""

    kind: str                                             # "train" or a workbook action of ACTION_KINDS
    book: str
    tables: dict[str, tuple[pd.DataFrame, int]] | None    # train: the tables sent
    workbook: str | None                                  # actions: the uploaded copy, updated in place
    store_root: str
    home: str
    rounds: int | None = None
    paths: int = 1000
    seed: int = 0
    layout: dict[str, list[str]] | None = None           # JSON actions: the workbook's sheets and their tables
    sheets_out: str | None = None                         # JSON actions: where the written sheets go
    cluster: str | None = None                            # train on this Dask cluster


@dataclass
class _Running:
    process: Any
    queue: Any
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class _JobRunner:
    """Runs training jobs one (or ``workers``) at a time in spawned processes."""

    def __init__(self, db: Database, workers: int = 1, on_finish: Callable[[], None] | None = None) -> None:
        self.db = db
        self._on_finish = on_finish
        self.workers = max(1, int(workers))
        self._ctx = mp.get_context("spawn")
        self._pending: queue.Queue[tuple[str, _Job] | None] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def start(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._loop, name=f"plancell-train-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def submit(self, job_id: str, args: _Job) -> None:
        self.start()
        self._pending.put((job_id, args))

    def cancel(self, job_id: str, timeout: float = 30.0) -> str | None:
        """Cancel a queued or running job; returns its final state (None: not known here)."""
        with self._lock:
            run = self._running.get(job_id)
            if run is None:
                # Not started: the dispatcher skips it once it is no longer 'queued'.
                self.db.finish_job(job_id, "cancelled")
                return self.db.state(job_id)
            run.cancelled.set()
        run.process.terminate()
        run.finished.wait(timeout)
        return self.db.state(job_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running = list(self._running.items())
        for _ in self._threads:
            self._pending.put(None)
        for job_id, run in running:
            run.cancelled.set()
            run.process.terminate()
        for t in self._threads:
            t.join(timeout=10)

    def _loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            job_id, args = item
            try:
                self._run(job_id, args)
            except Exception:  # the runner thread must survive one job's failure
                _log.exception("training job %s: runner failed", job_id)
                self.db.finish_job(job_id, "failed", error=_body("E900", "internal error in the job runner; "
                                                                        "see the server log"))
            if self._on_finish is not None:
                try:
                    self._on_finish()
                except Exception:  # housekeeping must never stop the runner
                    _log.exception("job clean-up failed")

    def _run(self, job_id: str, args: _Job) -> None:
        with self._lock:
            if self._closed or not self.db.start_job(job_id):
                return  # cancelled while queued
            q = self._ctx.Queue()
            proc = self._ctx.Process(target=_job_child, args=(q, *args), name=f"plancell-job-{job_id[:8]}",
                                     daemon=False)  # the engine may start processes of its own
            proc.start()
            run = _Running(proc, q)
            self._running[job_id] = run
        _log.info("training job %s started (pid %s)", job_id, proc.pid)
        before = self._versions(job_id, args)
        outcome: tuple[str, Any] | None = None
        try:
            while True:
                batch, outcome = self._drain(q, outcome, wait=0.2)
                self.db.add_events(job_id, batch)
                if not proc.is_alive():
                    break
            proc.join()
            if not run.cancelled.is_set():
                # The process may have exited right after its last message: collect the rest.
                batch, outcome = self._drain(q, outcome, wait=0.0, until_empty=True)
                self.db.add_events(job_id, batch)
            elif outcome is None:
                # A terminated process may have died mid-message, so its queue is not read again;
                # the store says whether the model was saved before the cancel landed.
                new = sorted(set(self._versions(job_id, args)) - set(before))
                if new:
                    job = self.db.job_record(job_id)
                    outcome = ("done", {"model": job and job["model"], "version": new[-1],
                                        "note": "the model was saved before the cancel arrived"})
            self._finish(job_id, run, outcome, proc.exitcode)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
            q.close()
            q.cancel_join_thread()
            run.finished.set()

    def _versions(self, job_id: str, args: _Job) -> list[int]:
        from engine.store import ModelStore

        job = self.db.job_record(job_id)
        if not job or not job["model"]:
            return []
        try:
            return ModelStore(args.store_root, home=Path(args.home)).versions(job["model"])
        except PlancellError:
            return []

    @staticmethod
    def _drain(q: Any, outcome: tuple[str, Any] | None, *, wait: float,
               until_empty: bool = False) -> tuple[list[dict[str, Any]], tuple[str, Any] | None]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                msg = q.get(timeout=max(0.0, deadline - time.monotonic())) if not until_empty else q.get(timeout=0.5)
            except (queue.Empty, EOFError, OSError, ValueError):
                break
            kind = msg[0]
            if kind == "progress":
                _, stage, done, total, message = msg
                batch.append({"kind": "progress", "stage": stage, "done": done, "total": total, "message": message})
            elif kind == "log":
                batch.append({"kind": "log", "message": msg[1]})
            else:
                outcome = (kind, msg[1])
            if len(batch) >= 500 or (not until_empty and time.monotonic() >= deadline):
                break
        return batch, outcome

    def _finish(self, job_id: str, run: _Running, outcome: tuple[str, Any] | None, exitcode: int | None) -> None:
        if outcome is not None and outcome[0] == "done":
            # The model was saved before the cancel landed: say so rather than pretend.
            s = outcome[1]
            self.db.finish_job(job_id, "succeeded", summary=s, model=s.get("model"), model_version=s.get("version"))
            _log.info("training job %s succeeded: %s v%s", job_id, s.get("model"), s.get("version"))
        elif run.cancelled.is_set():
            self.db.finish_job(job_id, "cancelled")
            _log.info("training job %s cancelled", job_id)
        elif outcome is not None and outcome[0] == "error":
            self.db.finish_job(job_id, "failed", error=outcome[1])
        else:
            self.db.finish_job(job_id, "failed", error=_body(
                "E900", f"the training process ended unexpectedly (exit code {exitcode}); the previous model "
                        "version keeps serving. Try again; if it repeats, report it with the server log"))


_LAST_PRUNE: dict[str, float] = {}


def _prune_jobs(db: Database, config: ServerConfig, *, every: float = 0.0) -> int:
    """Remove finished jobs older than the retention (records, events, uploaded copies and
    result sheets), at most once per ``every`` seconds. Models and published plans stay."""
    key = str(config.data_dir)
    now = time.monotonic()
    if every and now - _LAST_PRUNE.get(key, -1e18) < every:
        return 0
    _LAST_PRUNE[key] = now
    cutoff = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=config.job_retention_days)
    gone = db.prune_jobs(cutoff)
    for ws, job_id in gone:
        shutil.rmtree(config.data_dir / "workspaces" / ws / "jobs" / job_id, ignore_errors=True)
    if gone:
        _log.info("removed %d finished job(s) older than %g days", len(gone), config.job_retention_days)
    return len(gone)


# --------------------------------------------------------------------------- request bodies


def _frames(tables: dict[str, Any]) -> dict[str, tuple[pd.DataFrame, int]]:
    """JSON tables (lists of row objects) as frames; the first data row is row 2 (header = row 1)."""
    problems: list[Problem] = []
    canon = {t.lower(): t for t in CONTRACT_TABLES}
    out: dict[str, tuple[pd.DataFrame, int]] = {}
    for name, rows in tables.items():
        key = canon.get(str(name).strip().lower())
        if key is None:
            problems.append(Problem(str(name), "not a table Plancell reads",
                                    f"send only the tables {', '.join(CONTRACT_TABLES)}", code="E101"))
            continue
        if not isinstance(rows, list):
            problems.append(Problem(key, "must be a list of rows (one JSON object per row)",
                                    'send [{"Date": "2024-01-01", "SKU": "A", "Qty": 3}, ...]', code="E100"))
            continue
        bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
        for i in bad[:20]:
            problems.append(Problem(key, "row is not a JSON object of column: value", "send one object per row",
                                    row=i + 2, value=str(rows[i])[:80], code="E100"))
        if bad:
            continue
        out[key] = (pd.DataFrame.from_records(rows), 2)
    if "Sales" not in out and not any(p.table == "Sales" for p in problems):
        problems.append(Problem("Sales", "no table named Sales", "send the Sales table (Date, SKU, Qty, ...)",
                                code="E101"))
    if problems:
        raise InputError(f"The request's tables have {len(problems)} problem(s); first: {problems[0]}.", problems)
    return out


def _check(tables: dict[str, tuple[pd.DataFrame, int]], book: str) -> str:
    """Validate like Refresh Plan does, so bad data is a 400 now rather than a failed job
    later; returns the model name the plan will be saved under."""
    from engine.contract import validate

    from .actions import model_name_for, read_plan_settings

    settings = read_plan_settings(tables)
    validate(tables["Sales"][0], tables.get("Drivers", (None, 2))[0], tables.get("Items", (None, 2))[0],
             freq=settings.freq, column_map=settings.column_map or None, gaps="zero",
             row_offsets={k: tables[k][1] for k in ("Sales", "Drivers", "Items") if k in tables})
    from engine.store import safe_model_name

    name = model_name_for(book, settings)
    safe_model_name(name)  # refuses an unusable name now, with its problem record
    return name


def _book_name(name: str | None, default: str = "workbook.xlsx") -> str:
    base = Path(str(name or "")).name.strip()  # never a path: the name only labels the job and the model
    return base[:200] or default


def _read_upload(data: bytes, filename: str, max_body: int) -> dict[str, tuple[pd.DataFrame, int]]:
    from .guard import check_workbook
    from .workbook import read_tables

    check_workbook(data, name=filename)  # size, cells, zip and entity bombs: before anything unpacks the file

    if not data.startswith(b"PK"):
        raise InputError(f"{filename} is not an .xlsx workbook.",
                         [Problem(filename, "not an .xlsx file (an .xlsx is a zip archive)",
                                  "save it from Excel as Excel Workbook (.xlsx) and upload that", code="E110")],
                         code="E110")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            expanded = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise InputError(f"{filename} is damaged.", [Problem(filename, "the file is not a readable workbook",
                                                             "open it in Excel, save it again, upload it",
                                                             code="E110")], code="E110") from exc
    if expanded > _MAX_EXPANSION * max_body:
        raise InputError(f"{filename} expands to {expanded / 2**20:.0f} MB, more than the server reads.",
                         [Problem(filename, "workbook too large once unpacked", "upload only the Sales, Drivers, "
                                  "Items and Settings tables", code="E110")], code="E110")
    suffix = ".xlsm" if filename.lower().endswith(".xlsm") else ".xlsx"
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="plancell-upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tables = read_tables(tmp)
    finally:
        os.unlink(tmp)
    return {k: v for k, v in tables.items() if k in CONTRACT_TABLES}


# --------------------------------------------------------------------------- API models


class TrainRequest(BaseModel):
    """A workbook's tables as JSON rows (header names as in Excel; dates as ISO text)."""

    book: str = Field("workbook.xlsx", max_length=200, description="the workbook's file name; names the model "
                      "unless Settings has Model")
    tables: dict[str, list[Any]] = Field(description="Sales (required), Drivers, Items, Settings: lists of rows")
    rounds: int | None = Field(None, ge=1, le=5000, description="LightGBM boosting rounds (default: the model's)")


class JobCreated(BaseModel):
    id: str
    state: str
    model: str | None
    url: str


class LookupItem(BaseModel):
    sku: str | int | float
    location: str | int | float | None = None


class LookupRequest(BaseModel):
    model: str | None = Field(None, description="model name (default: the workspace's most recently trained)")
    items: list[LookupItem] = Field(max_length=_MAX_LOOKUP_ITEMS)
    periods: int | None = Field(None, ge=1, description="periods ahead (default: the whole horizon)")


class LookupResult(BaseModel):
    sku: str
    location: str | None
    forecast: dict[str, list[float | None]] | None = None
    safety_stock: float | None = None
    reorder_point: float | None = None
    order_qty: float | None = None
    sku_class: str | None = Field(None, alias="class")
    error: str | None = None


class LookupResponse(BaseModel):
    model: str
    version: int
    trained_at: str | None
    data_fingerprint: str | None
    periods: list[str]
    results: list[LookupResult]


class ActionRequest(BaseModel):
    """A ribbon action on a workbook the add-in has open: its tables exactly as read (typed,
    with the Excel row of each table's first data row) and its sheets with the tables on each."""

    book: str = Field("workbook.xlsx", max_length=200, description="the workbook's file name; names the model "
                      "unless Settings has Model")
    tables: dict[str, Any] = Field(description="table name -> {frame, first_row} (addin.wire.tables_to_wire)")
    sheets: dict[str, list[str]] = Field(default_factory=dict, description="sheet name -> tables on it")
    rounds: int | None = Field(None, ge=1, le=5000, description="refresh: LightGBM boosting rounds")
    paths: int = Field(1000, ge=10, le=20_000, description="scenario: Monte Carlo paths")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="scenario: random seed")


class FVARequest(BaseModel):
    """Actuals to score the workspace's published versions of a model against."""

    model: str = Field(max_length=255)
    actuals: list[dict[str, Any]] = Field(description="Sales rows: SKU, Location, Date, Qty (more columns ignored)")
    items: list[dict[str, Any]] | None = Field(None, description="Items rows with SKU and Category (optional)")


class CellCall(BaseModel):
    function: str = Field(max_length=40, description="an Excel function name, e.g. FORECAST_SKU")
    args: list[Any] = Field(default_factory=list, max_length=10, description="its arguments as Excel passes them")


class CellsRequest(BaseModel):
    model: str | None = Field(None, description="model name (default: the workspace's most recently trained)")
    calls: list[CellCall] = Field(max_length=5000)


class PublishRequest(BaseModel):
    note: str | None = Field(None, max_length=2000)


# --------------------------------------------------------------------------- lookups


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _order_now(row: dict[str, Any]) -> float:
    """ORDER_QTY with the plan's on-hand and on-order (the same rule as the Excel function)."""
    from engine.policy import order_now

    return order_now(row, float(row["OnHand"]) + float(row["OnOrder"]))


def _latest_model(store: Any) -> str:
    from .cache import latest_model

    name = latest_model(store)
    if name is None:
        raise InputError("No trained model in this workspace yet. Fix: start a training job "
                         "(POST /v1/jobs/train) first.", code="E201")
    return name


def _encoded(entry: Any, key: tuple[str, str], n: int) -> bytes:
    """One SKU-location's answer for ``n`` periods as JSON, encoded once per loaded plan version
    (the cache entry is replaced when a newer version loads, and this memo with it)."""
    memo = entry.extra.setdefault("server_answers", {})
    out = memo.get((key, n))
    if out is None:
        forecast = {q: [_num(v) for v in vals[:n]] for q, vals in entry.forecast[key].items()}
        answer: dict[str, Any] = {"sku": key[0], "location": key[1], "forecast": forecast}
        row = entry.policy.get(key)
        if row is not None:
            answer.update(safety_stock=_num(row["SafetyStock"]), reorder_point=_num(row["ReorderPoint"]),
                          order_qty=_num(_order_now(row)), **{"class": str(row["Class"])})
        out = memo[(key, n)] = _dumps(answer)
    return out


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class _WarmPlans:
    """The plan cache as the event loop sees it: a plan checked less than
    :data:`addin.cache.CHECK_EVERY_S` ago is used inline; anything that may touch the disk
    (finding the latest model, loading a new version) runs in a worker thread, so a plan
    loading never stalls the lookups of the other clients."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str | None], tuple[Any, float]] = {}

    async def get(self, store: Any, model: str | None) -> Any:
        from starlette.concurrency import run_in_threadpool

        from .cache import CHECK_EVERY_S, plan_for

        key = (str(store.root), model)
        hit = self._seen.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[1] < CHECK_EVERY_S:
            return hit[0]
        try:
            entry = await run_in_threadpool(lambda: plan_for(model or _latest_model(store), store=store))
        except InputError as exc:
            if exc.code != "E201":
                raise
            # the store's own message names its folder on this server: not the client's business
            raise InputError(f"No model {model!r} in this workspace. Fix: press Refresh Plan (or start a training "
                             "job) first; GET /v1/models lists the models there are.", code="E201") from None
        self._seen[key] = (entry, now)
        return entry


def _lookup(entry: Any, req: LookupRequest) -> bytes:
    """The lookup response body (JSON). Answers are pre-encoded per SKU-location, so a batch
    costs little more than joining them: lookups stay fast under many concurrent clients."""
    horizon = len(entry.periods)
    n = horizon if req.periods is None else req.periods
    if n > horizon:
        raise InputError(f"periods {n} is beyond the plan's horizon of {horizon}.",
                         [Problem("request", f"beyond the horizon of {horizon}", f"ask for at most {horizon}",
                                  column="periods", value=n, code="E110")], code="E110")
    parts: list[bytes] = []
    for item in req.items:
        try:
            parts.append(_encoded(entry, entry.key(item.sku, item.location, what="the lookup"), n))
        except PlancellError as exc:
            parts.append(_dumps({"sku": str(item.sku), "error": exc.one_line(),
                                 "location": None if item.location is None else str(item.location)}))
    m = entry.metadata
    dates = entry.extra.get("server_periods")
    if dates is None:
        dates = entry.extra["server_periods"] = [pd.Timestamp(p).date().isoformat() for p in entry.periods]
    head = _dumps({"model": entry.name, "version": entry.version, "trained_at": m.get("trained_at"),
                   "data_fingerprint": m.get("data_fingerprint"), "periods": dates[:n]})
    return head[:-1] + b',"results":[' + b",".join(parts) + b"]}"


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None:
        return []
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _cells(entry: Any, calls: list[CellCall]) -> bytes:
    """Excel function calls evaluated here, by the very functions the add-in runs, on this
    server's copy of the plan: a cell reads the same number either way."""
    from . import udfs
    from .wire import value_from_wire, value_to_wire

    values = []
    with udfs.serving(entry):
        for call in calls:
            fn = getattr(udfs, call.function, None) if call.function in udfs.__all__ else None
            if fn is None:
                values.append(f"PLANCELL-E110: {call.function[:40]!r} is not a Plancell function.")
                continue
            values.append(value_to_wire(fn(*[value_from_wire(a) for a in call.args])))
    return _dumps({"model": entry.name, "version": entry.version, "values": values})


def _plan_body(entry: Any) -> bytes:
    """A loaded plan's published numbers (plan, policy, accuracy, purchases) for the add-in's
    cache, encoded once per plan version."""
    from .wire import frame_to_wire, value_to_wire

    body = entry.extra.get("server_plan_body")
    if body is None:
        b = entry.bundle
        frames = {k: frame_to_wire(getattr(b, k)) for k in ("plan", "policy", "accuracy", "purchases")
                  if getattr(b, k, None) is not None}
        body = entry.extra["server_plan_body"] = _dumps({
            "name": entry.name, "version": entry.version, "metadata": value_to_wire(entry.metadata), **frames})
    return body


# --------------------------------------------------------------------------- the app


def create_app(config: ServerConfig) -> FastAPI:
    """The server's FastAPI app for ``config``; a TestClient or uvicorn runs it."""
    if not config.tokens:
        raise InputError("The server has no token. Fix: set PLANCELL_TOKEN, or give --tokens FILE, or use --dev "
                         "on this machine only.", code="E110")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url)
    abandoned = db.abandon_unfinished()
    if abandoned:
        _log.warning("%d job(s) of a previous server run did not finish; marked failed", abandoned)
    _prune_jobs(db, config)
    runner = _JobRunner(db, config.train_workers, on_finish=lambda: _prune_jobs(db, config, every=3600.0))
    spaces = _Workspaces(config.data_dir)
    digests = dict(config.tokens)
    warm = _WarmPlans()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            runner.close()
            db.close()

    app = FastAPI(title="Plancell calculation server", version=__version__, lifespan=lifespan,
                  description="Shared models and plans for the Plancell Excel add-in: training jobs, batch lookups, "
                              "published plan snapshots. Every /v1 route needs `Authorization: Bearer <token>`.")
    app.state.db, app.state.runner, app.state.workspaces, app.state.config = db, runner, spaces, config
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST",
                           "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_BodyLimit, limit=config.max_body)

    for exc_type in (_ApiError, PlancellError, Exception):
        app.add_exception_handler(exc_type, lambda _r, e: _error_response(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _validation_problems(exc)
        first = problems[0] if problems else None
        msg = f"the request is not valid: {first.column or 'body'}: {first.message}" if first else "invalid request"
        return JSONResponse(_body("E110", msg, [p.to_dict() for p in problems]), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body("E110", str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def workspace(request: Request) -> _Workspace:   # async: no thread hop on every request
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found: str | None = None
        if scheme.lower() == "bearer" and token.strip():
            presented = token_digest(token)
            for digest, ws in digests.items():  # every digest is compared: no early exit to time
                if hmac.compare_digest(digest, presented):
                    found = ws
        if found is None:
            raise _ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                                 "the administrator gave you", headers={"WWW-Authenticate": "Bearer"})
        return spaces.get(found)

    Auth = Depends(workspace)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: no token needed, tells nothing about any workspace."""
        return {"status": "ok", "version": __version__}

    def _submit(ws: _Workspace, book: str, tables: dict[str, tuple[pd.DataFrame, int]],
                rounds: int | None) -> JSONResponse:
        model = _check(tables, book)
        job_id = db.create_job(ws.name, kind="train", book=book, model=model, params={"rounds": rounds})
        runner.submit(job_id, _Job("train", book, tables, None, str(ws.store.root), str(config.data_dir), rounds,
                                   cluster=config.dask))
        body = {"id": job_id, "state": "queued", "model": model, "url": f"/v1/jobs/{job_id}"}
        return JSONResponse(body, status_code=202, headers={"Location": body["url"]})

    @app.post("/v1/jobs/train", status_code=202, response_model=JobCreated, tags=["jobs"])
    def train(body: TrainRequest, ws: _Workspace = Auth) -> JSONResponse:
        """Start training on a workbook's tables sent as JSON rows. Returns the job id at once;
        poll GET /v1/jobs/{id} for progress."""
        return _submit(ws, _book_name(body.book), _frames(body.tables), body.rounds)

    @app.post("/v1/jobs/train/xlsx", status_code=202, response_model=JobCreated, tags=["jobs"])
    def train_xlsx(file: UploadFile = File(description="the workbook (.xlsx/.xlsm)"),
                   rounds: int | None = Query(None, ge=1, le=5000), ws: _Workspace = Auth) -> JSONResponse:
        """Start training on an uploaded workbook; its Sales, Drivers, Items and Settings tables
        are read with openpyxl (values only; macros are never run, nothing is unpickled)."""
        book = _book_name(file.filename)
        tables = _read_upload(file.file.read(), book, config.max_body)
        if "Sales" not in tables:
            raise InputError(f"{book} has no table named Sales.",
                             [Problem("Sales", "no Excel table named Sales in the workbook", "select your sales data, "
                                      "Insert > Table, then name it Sales", code="E101")], code="E101")
        return _submit(ws, book, tables, rounds)

    def _submit_workbook(ws: _Workspace, kind: str, file: UploadFile, paths: int = 1000) -> JSONResponse:
        from .actions import model_name_for, read_plan_settings

        book = _book_name(file.filename)
        if not book.lower().endswith((".xlsx", ".xlsm")):
            book += ".xlsx"
        data = file.file.read()
        tables = _read_upload(data, book, config.max_body)
        model = model_name_for(book, read_plan_settings(tables))
        if kind != "publish":
            if "Sales" not in tables:
                raise InputError(f"{book} has no table named Sales.", code="E101")
            if ws.store.latest(model) is None:
                raise InputError(f"No model {model!r} in this workspace yet. Fix: train it first "
                                 "(POST /v1/jobs/train with this workbook).", code="E201")
        job_id = db.create_job(ws.name, kind=kind, book=book, model=model, params={"paths": paths})
        folder = config.data_dir / "workspaces" / ws.name / "jobs" / job_id
        folder.mkdir(parents=True)
        (folder / book).write_bytes(data)
        runner.submit(job_id, _Job(kind, book, None, str(folder / book), str(ws.store.root), str(config.data_dir),
                                   None, paths))
        body = {"id": job_id, "state": "queued", "model": model, "url": f"/v1/jobs/{job_id}"}
        return JSONResponse(body, status_code=202, headers={"Location": body["url"]})

    @app.post("/v1/jobs/check", status_code=202, response_model=JobCreated, tags=["workbook actions"])
    def check(file: UploadFile = File(description="the workbook (.xlsx/.xlsm)"), ws: _Workspace = Auth) -> JSONResponse:
        """Check Execution (S&OE) on an uploaded workbook against its model in this workspace.
        The job's summary has the alerts, purchases and KPIs; GET /v1/jobs/{id}/workbook the
        workbook with its Alerts and Purchases sheets."""
        return _submit_workbook(ws, "check", file)

    @app.post("/v1/jobs/scenario", status_code=202, response_model=JobCreated, tags=["workbook actions"])
    def scenario(file: UploadFile = File(description="the workbook (.xlsx/.xlsm)"),
                 paths: int = Query(1000, ge=10, le=20_000), ws: _Workspace = Auth) -> JSONResponse:
        """Run Scenario on an uploaded workbook (its Scenario table); the job's summary has the
        scenario summary and mitigations, GET /v1/jobs/{id}/workbook the updated workbook."""
        return _submit_workbook(ws, "scenario", file, paths)

    @app.post("/v1/jobs/publish", status_code=202, response_model=JobCreated, tags=["workbook actions"])
    def publish_book(file: UploadFile = File(description="the workbook (.xlsx/.xlsm)"),
                     ws: _Workspace = Auth) -> JSONResponse:
        """Publish Snapshot on an uploaded workbook: its Plan sheet copied to 'Plan YYYY-MM vN'."""
        return _submit_workbook(ws, "publish", file)

    @app.get("/v1/jobs/{job_id}/workbook", tags=["workbook actions"])
    def job_workbook(job_id: str, ws: _Workspace = Auth) -> Any:
        """The workbook a finished check, scenario or publish job wrote."""
        from fastapi.responses import FileResponse

        found = db.job(ws.name, job_id, max_events=0)
        if found is None or found["kind"] == "train":
            raise _ApiError(404, f"no workbook job {job_id!r} in this workspace", code="E110")
        if found["state"] != "succeeded":
            raise _ApiError(409, f"job {job_id} is {found['state']}: no workbook to fetch", code="E110")
        path = config.data_dir / "workspaces" / ws.name / "jobs" / job_id / found["book"]
        return FileResponse(path, filename=found["book"],
                            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    @app.get("/v1/jobs", tags=["jobs"])
    def jobs(limit: int = Query(50, ge=1, le=500), ws: _Workspace = Auth) -> list[dict[str, Any]]:
        """The workspace's most recent jobs, newest first."""
        return db.jobs(ws.name, limit)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job(job_id: str, since: int = Query(0, ge=0, description="only events after this sequence number"),
            ws: _Workspace = Auth) -> dict[str, Any]:
        """State, progress events and log lines, and the result summary (or the error) of a job."""
        found = db.job(ws.name, job_id, events_since=since)
        if found is None:
            raise _ApiError(404, f"no job {job_id!r} in this workspace", code="E110")
        progress = [e for e in found["events"] if e["kind"] == "progress"]
        found["progress"] = progress[-1] if progress else None
        return found

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"])
    def cancel(job_id: str, ws: _Workspace = Auth) -> dict[str, Any]:
        """Cancel a queued or running job. The training process is terminated; no partial model
        is ever saved, so the previous version keeps serving."""
        found = db.job(ws.name, job_id, max_events=0)
        if found is None:
            raise _ApiError(404, f"no job {job_id!r} in this workspace", code="E110")
        if found["state"] in FINISHED_STATES:
            raise _ApiError(409, f"job {job_id} already {found['state']}; nothing to cancel", code="E110")
        state = runner.cancel(job_id)
        if state != "cancelled":
            raise _ApiError(409, f"job {job_id} {state} before it could be cancelled", code="E110")
        return db.job(ws.name, job_id, max_events=0) or {}

    @app.post("/v1/actions/{kind}", status_code=202, response_model=JobCreated, tags=["workbook actions"])
    def action(kind: str, body: ActionRequest, ws: _Workspace = Auth) -> JSONResponse:
        """Refresh Plan (``refresh``), Check Execution (``check``) or Run Scenario (``scenario``)
        on the tables of a workbook open in Excel. Returns a job; when it succeeds, GET
        /v1/jobs/{id}/sheets has the output sheets for the add-in to write."""
        from .actions import model_name_for, read_plan_settings
        from .wire import tables_from_wire

        if kind not in ("refresh", "check", "scenario"):
            raise _ApiError(404, f"no workbook action {kind!r}: use refresh, check or scenario", code="E110")
        book = _book_name(body.book)
        tables = tables_from_wire(body.tables)
        if "Sales" not in tables:
            raise InputError(f"{book} has no table named Sales.",
                             [Problem("Sales", "no Excel table named Sales in the workbook", "select your sales data, "
                                      "Insert > Table, then name it Sales", code="E101")], code="E101")
        if kind == "refresh":
            model = _check({k: v for k, v in tables.items() if k in CONTRACT_TABLES}, book)
        else:
            model = model_name_for(book, read_plan_settings(tables))
            if ws.store.latest(model) is None:
                raise InputError(f"No model {model!r} in this workspace yet. Fix: press Refresh Plan first.",
                                 code="E201")
        job_kind = "train" if kind == "refresh" else kind
        job_id = db.create_job(ws.name, kind=job_kind, book=book, model=model,
                               params={"rounds": body.rounds, "paths": body.paths, "seed": body.seed})
        folder = config.data_dir / "workspaces" / ws.name / "jobs" / job_id
        folder.mkdir(parents=True)
        runner.submit(job_id, _Job(job_kind, book, tables, None, str(ws.store.root), str(config.data_dir),
                                   body.rounds, body.paths, body.seed, dict(body.sheets),
                                   str(folder / "sheets.json"), config.dask))
        out = {"id": job_id, "state": "queued", "model": model, "url": f"/v1/jobs/{job_id}"}
        return JSONResponse(out, status_code=202, headers={"Location": out["url"]})

    @app.get("/v1/jobs/{job_id}/sheets", tags=["workbook actions"])
    def job_sheets(job_id: str, ws: _Workspace = Auth) -> Any:
        """The output sheets a finished /v1/actions job wrote (addin.wire JSON)."""
        from fastapi.responses import FileResponse

        found = db.job(ws.name, job_id, max_events=0)
        if found is None:
            raise _ApiError(404, f"no job {job_id!r} in this workspace", code="E110")
        if found["state"] != "succeeded":
            raise _ApiError(409, f"job {job_id} is {found['state']}: no sheets to fetch", code="E110")
        path = config.data_dir / "workspaces" / ws.name / "jobs" / job_id / "sheets.json"
        if not path.is_file():
            raise _ApiError(404, f"job {job_id} was not started from the add-in: it has no sheets", code="E110")
        return FileResponse(path, media_type="application/json")

    @app.get("/v1/models/{model}", tags=["models"])
    async def model_info(model: str, ws: _Workspace = Auth) -> dict[str, Any]:
        """The plan version the cells of a workbook read: name, version, provenance."""
        entry = await warm.get(ws.store, model)
        m = entry.metadata
        return {"name": entry.name, "version": entry.version, "trained_at": m.get("trained_at"),
                "data_fingerprint": m.get("data_fingerprint"), "n_series": m.get("n_series"),
                "freq": m.get("freq"), "horizon": m.get("horizon")}

    @app.get("/v1/models/{model}/plan", tags=["models"])
    async def model_plan(model: str, ws: _Workspace = Auth) -> Response:
        """The model's current plan, policy, accuracy and purchases (exact values, addin.wire
        frames): the add-in's cell cache, so cells read the server's numbers at local speed."""
        entry = await warm.get(ws.store, model)
        return Response(_plan_body(entry), media_type="application/json")

    @app.post("/v1/cells", tags=["lookups"])
    async def cells(body: CellsRequest, ws: _Workspace = Auth) -> Response:
        """Excel functions evaluated on the server (what needs the model itself: other quantiles,
        safety stock for another service level or lead time, driver contributions). Each value
        is what the cell shows, errors included as one line."""
        from starlette.concurrency import run_in_threadpool

        entry = await warm.get(ws.store, body.model)
        return Response(await run_in_threadpool(_cells, entry, body.calls), media_type="application/json")

    @app.get("/v1/models", tags=["models"])
    def models(ws: _Workspace = Auth) -> list[dict[str, Any]]:
        """The workspace's models, their versions and the latest version's provenance."""
        out = []
        for folder in ws.store.names():
            versions = ws.store.versions(folder)
            latest = ws.store.latest(folder)
            try:
                meta = ws.store.metadata(folder, latest)
            except InputError as exc:  # a refused (tampered) version is listed, not hidden
                out.append({"name": folder, "versions": versions, "latest": latest, "error": exc.one_line()})
                continue
            out.append({"name": meta.get("name", folder), "versions": versions, "latest": latest,
                        "trained_at": meta.get("trained_at"), "data_fingerprint": meta.get("data_fingerprint"),
                        "n_series": meta.get("n_series"), "freq": meta.get("freq"), "horizon": meta.get("horizon")})
        return out

    @app.post("/v1/lookup", response_model=LookupResponse, tags=["lookups"])
    async def lookup(body: LookupRequest, ws: _Workspace = Auth) -> Response:
        """Forecasts (P10/P50/P90 per period), safety stock, reorder point, order quantity and
        class for many SKU-locations in one call, from the warm plan cache. A SKU that cannot be
        answered gets its own one-line error; the others are still answered."""
        return Response(_lookup(await warm.get(ws.store, body.model), body), media_type="application/json")

    @app.post("/v1/plans/{model}/publish", status_code=201, tags=["plans"])
    def publish(model: str, body: PublishRequest | None = None, ws: _Workspace = Auth) -> dict[str, Any]:
        """Publish the model's current plan as the next immutable version (append-only)."""
        from .cache import plan_for

        entry = plan_for(model, store=ws.store)
        b, m = entry.bundle, entry.metadata
        rows = _records(b.plan)
        provenance = {"model": entry.name, "model_version": entry.version, "trained_at": m.get("trained_at"),
                      "data_fingerprint": m.get("data_fingerprint"), "plancell_version": m.get("plancell_version"),
                      "freq": m.get("freq"), "horizon": m.get("horizon"), "n_series": m.get("n_series"),
                      "note": body.note if body else None}
        version = db.publish_plan(ws.name, entry.name, model_version=entry.version,
                                  data_fingerprint=m.get("data_fingerprint"), provenance=provenance, rows=rows,
                                  policy=_records(getattr(b, "policy", None)))
        return {"model": entry.name, "version": version, "model_version": entry.version,
                "url": f"/v1/plans/{model}/{version}"}

    @app.post("/v1/fva", tags=["plans"])
    def fva(body: FVARequest, ws: _Workspace = Auth) -> dict[str, Any]:
        """Forecast value added: every published version of ``model`` whose periods now have
        actuals, scored step by step (seasonal naive, statistical, each override layer, the
        final plan) by category and layer; the sentences the S&OP meeting reads."""
        from engine.fva import PlanVersion, forecast_value_added, published_plan

        listed = db.plans(ws.name, body.model)
        if not listed:
            raise InputError(f"No published version of {body.model!r} in this workspace. Fix: publish the plan "
                             "(POST /v1/plans/{model}/publish) first.", code="E201")
        versions, freq = [], None
        for p in sorted(listed, key=lambda p: p["version"]):
            got = db.plan(ws.name, body.model, p["version"])
            freq = freq or (got["provenance"] or {}).get("freq")
            versions.append(PlanVersion(f"{body.model} v{p['version']}", published_plan(pd.DataFrame(got["rows"]))))
        actuals = pd.DataFrame(body.actuals)
        missing = [c for c in ("SKU", "Date", "Qty") if c not in actuals.columns]
        if missing:
            raise InputError(f"actuals lack the columns {', '.join(missing)}.",
                             [Problem("actuals", f"column {c} missing", "send SKU, Location, Date, Qty per row",
                                      column=c, code="E101") for c in missing], code="E101")
        actuals["Date"] = pd.to_datetime(actuals["Date"], errors="coerce")
        if "Location" not in actuals.columns:
            actuals["Location"] = ""
        items = pd.DataFrame(body.items) if body.items else None
        res = forecast_value_added(versions, actuals, freq=str(freq or "W"), items=items)
        return {"model": body.model, "versions": _records(res.versions), "waterfall": _records(res.waterfall),
                "by_category": _records(res.by_category), "by_layer": _records(res.by_layer),
                "by_reason": _records(res.by_reason), "verdicts": list(res.verdicts),
                "assumptions": list(res.assumptions)}

    @app.get("/v1/plans", tags=["plans"])
    def plans(model: str | None = None, ws: _Workspace = Auth) -> list[dict[str, Any]]:
        """Published plan versions of the workspace (without their rows), newest first per model."""
        return db.plans(ws.name, model)

    @app.get("/v1/plans/{model}/{version}", tags=["plans"])
    def plan(model: str, version: int, ws: _Workspace = Auth) -> dict[str, Any]:
        """One published version with its provenance and rows (SKU, Location, Period, P10, P50, P90 ...)."""
        found = db.plan(ws.name, model, version)
        if found is None:
            raise _ApiError(404, f"no published version {version} of {model!r} in this workspace", code="E201")
        return found

    return app


# --------------------------------------------------------------------------- running it


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted. ``--dev`` binds loopback only."""
    import uvicorn

    if config.dev and not is_loopback(host):
        raise InputError(f"--dev serves on this machine only; --host {host} is not a loopback address. Fix: drop "
                         "--host, or set PLANCELL_TOKEN and drop --dev.", code="E110")
    app = create_app(config)
    # Access lines only when asked (-v): at a thousand lookups a second they would cost more than the lookups.
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False,
                access_log=log_level in ("info", "debug"))

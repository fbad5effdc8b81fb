"""The add-in's HTTP client for the calculation server (Settings ``Server``).

Server errors come back as the same :mod:`engine.errors` exceptions the local engine raises
(with their codes and problem records), so a cell or the status bar shows the same one-line
``PLANCELL-E<nnn>: ...`` whether the work ran locally or on the server.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import fields
from urllib.parse import quote
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import httpx
import pandas as pd

from engine.errors import InputError, PlancellBug, PlancellError, Problem, TransientError
from engine.progress import ProgressEvent

__all__ = ["PlancellClient", "client_for"]

_log = logging.getLogger(__name__)
_FINISHED = ("succeeded", "failed", "cancelled")
_PROBLEM_FIELDS = {f.name for f in fields(Problem)}


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON rows: dates as ISO text, blanks (NaN/NaT) as null, categories as text."""
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _error(resp: httpx.Response) -> PlancellError:
    """The engine exception a server error response stands for."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    code = str(body.get("code") or "").removeprefix("PLANCELL-") or ("E300" if resp.status_code >= 500 else "E110")
    message = str(body.get("message") or f"the server answered HTTP {resp.status_code}")
    if resp.status_code == 401:
        return InputError(f"the Plancell server refused the token ({message}). Fix: set PLANCELL_TOKEN to the token "
                          "your administrator gave you.", code="E110")
    if resp.status_code in (502, 503, 504):
        return TransientError(message, code=code if code != "E110" else "E300")
    if resp.status_code >= 500:
        return PlancellBug(message, code=code)
    problems = [Problem(**{k: v for k, v in p.items() if k in _PROBLEM_FIELDS})
                for p in body.get("problems") or [] if isinstance(p, dict) and {"table", "message", "fix"} <= set(p)]
    return InputError(message, problems, code=code)


class PlancellClient:
    """A small client for ``plancell serve``. ``http`` may be any ``httpx.Client`` (tests pass
    FastAPI's TestClient); otherwise one is opened for ``url`` and reused (keep-alive)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        token = token if token is not None else os.environ.get("PLANCELL_TOKEN")
        if not token:
            raise InputError("No token for the Plancell server. Fix: set PLANCELL_TOKEN to the token your "
                             "administrator gave you.", code="E110")
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._own = http is None
        self._http = http if http is not None else httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> "PlancellClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, headers=self._headers, **kw)
        except httpx.TimeoutException as exc:
            raise TransientError(f"the Plancell server at {self.url} did not answer in time; try again") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach the Plancell server at {self.url} ({type(exc).__name__}). Fix: "
                                 "check the Server URL in Settings and that the server is running") from exc
        if resp.status_code >= 400:
            raise _error(resp)
        return resp.json()

    # -- the API -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def train(self, tables: Mapping[str, pd.DataFrame], *, book: str = "workbook.xlsx",
              rounds: int | None = None) -> str:
        """Start training on the workbook's tables (Sales, Drivers, Items, Settings); returns the job id."""
        body = {"book": book, "tables": {k: _records(v) for k, v in tables.items() if v is not None},
                "rounds": rounds}
        return str(self._call("POST", "/v1/jobs/train", json=body)["id"])

    def train_file(self, path: str | os.PathLike[str], *, rounds: int | None = None) -> str:
        """Start training on a workbook file (uploaded, read by the server with openpyxl)."""
        p = Path(path)
        with open(p, "rb") as fh:
            params = {"rounds": rounds} if rounds else None
            return str(self._call("POST", "/v1/jobs/train/xlsx", files={"file": (p.name, fh)}, params=params)["id"])

    def start_action(self, kind: str, path: str | os.PathLike[str], *, paths: int | None = None) -> str:
        """Start Check Execution (``"check"``), Run Scenario (``"scenario"``) or Publish Snapshot
        (``"publish"``) on a workbook file; returns the job id (see :meth:`workbook`)."""
        if kind not in ("check", "scenario", "publish"):
            raise InputError(f"{kind!r} is not a workbook action. Fix: use check, scenario or publish.", code="E110")
        p = Path(path)
        params = {"paths": paths} if paths and kind == "scenario" else None
        with open(p, "rb") as fh:
            return str(self._call("POST", f"/v1/jobs/{kind}", files={"file": (p.name, fh)}, params=params)["id"])

    def workbook(self, job_id: str) -> bytes:
        """The workbook a finished check / scenario / publish job wrote."""
        try:
            resp = self._http.get(f"/v1/jobs/{job_id}/workbook", headers=self._headers)
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach the Plancell server at {self.url} ({type(exc).__name__})") from exc
        if resp.status_code >= 400:
            raise _error(resp)
        return resp.content

    def job(self, job_id: str, *, since: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}", params={"since": since})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, *, progress: Callable[[ProgressEvent], None] | None = None,
             poll: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the job finishes, relaying its progress events (for Excel's status bar).
        Returns the job; a failed job raises its error as the engine would have."""
        seen = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id, since=seen)
            for ev in job.get("events", []):
                seen = max(seen, int(ev["seq"]))
                if progress is not None and ev["kind"] == "progress":
                    progress(ProgressEvent(ev["stage"] or "", int(ev["done"] or 0), int(ev["total"] or 0),
                                           ev["message"] or ""))
            if job["state"] in _FINISHED:
                if job["state"] == "failed" and job.get("error"):
                    err = job["error"]
                    raise _error(httpx.Response(400 if not str(err.get("code", "")).endswith("E900") else 500,
                                                json=err))
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TransientError(f"training job {job_id} is still running; check it again later")
            time.sleep(poll)

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")

    def lookup(self, items: Iterable[tuple[Any, Any] | Mapping[str, Any]], *, model: str | None = None,
               periods: int | None = None) -> dict[str, Any]:
        """Forecasts and inventory figures for many (sku, location) pairs in one call."""
        rows = [dict(i) if isinstance(i, Mapping) else {"sku": i[0], "location": i[1]} for i in items]
        return self._call("POST", "/v1/lookup", json={"model": model, "items": rows, "periods": periods})

    def model_info(self, model: str) -> dict[str, Any]:
        """Name, version and provenance of the plan the server serves for ``model``."""
        return self._call("GET", f"/v1/models/{quote(model, safe='')}")

    def model_plan(self, model: str) -> dict[str, Any]:
        """The model's plan, policy, accuracy and purchases as exact wire frames (addin.wire)."""
        return self._call("GET", f"/v1/models/{quote(model, safe='')}/plan")

    def cells(self, model: str | None, calls: Iterable[tuple[str, list[Any]]]) -> dict[str, Any]:
        """Excel functions evaluated on the server: ``[(name, args), ...]`` -> ``{"values": [...]}``."""
        from .wire import value_to_wire

        body = {"model": model, "calls": [{"function": f, "args": [value_to_wire(a) for a in args]}
                                          for f, args in calls]}
        out = self._call("POST", "/v1/cells", json=body)
        from .wire import value_from_wire

        out["values"] = [value_from_wire(v) for v in out["values"]]
        return out

    def start_workbook_action(self, kind: str, tables: Mapping[str, tuple[pd.DataFrame, int]], *, book: str,
                              sheets: Mapping[str, list[str]] | None = None, rounds: int | None = None,
                              paths: int = 1000, seed: int = 0) -> str:
        """Start Refresh Plan / Check Execution / Run Scenario (``kind``) on an open workbook's
        tables; returns the job id. Its output sheets come from :meth:`sheets`."""
        from .wire import tables_to_wire

        body = {"book": book, "tables": tables_to_wire(dict(tables)), "sheets": dict(sheets or {}),
                "rounds": rounds, "paths": paths, "seed": seed}
        return str(self._call("POST", f"/v1/actions/{kind}", json=body)["id"])

    def sheets(self, job_id: str) -> list[tuple[Any, str | None]]:
        """The output sheets (:class:`addin.sheets.Sheet`, after which sheet) a finished action wrote."""
        from .wire import sheet_from_wire

        out = self._call("GET", f"/v1/jobs/{job_id}/sheets")
        return [(sheet_from_wire(s["sheet"]), s.get("after")) for s in out["sheets"]]

    def publish(self, model: str, *, note: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/plans/{quote(model, safe='')}/publish", json={"note": note})

    def plans(self, model: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/plans", params={"model": model} if model else None)

    def plan(self, model: str, version: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/plans/{quote(model, safe='')}/{int(version)}")


def client_for(settings: Any, *, token: str | None = None) -> PlancellClient | None:
    """The client for the workbook's Settings ``Server`` URL; None when it has none (run locally)."""
    url = getattr(settings, "server", None)
    if not url:
        return None
    if not str(url).lower().startswith(("http://", "https://")):
        raise InputError(f"Settings Server {url!r} is not a URL.",
                         [Problem("Settings", "not an http(s) URL", "write e.g. http://planning-server:8765",
                                  column="Value", value=str(url), code="E110")], code="E110")
    return PlancellClient(str(url), token)

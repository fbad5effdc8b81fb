"""The warm plan cache behind the Excel functions.

The xlwings UDF server re-imports the UDF module (``addin.udfs``) when it changes; this
module is not listed in "UDF Modules", so the loaded plans survive those reloads. A plan
is loaded once from the verified model store and indexed for lookups that take
microseconds, and replaced when the store's ``LATEST`` pointer of that model changes
(checked at most once a second, so 10,000 cells do not stat 10,000 times).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from engine.errors import InputError, Problem

__all__ = ["PlanEntry", "plan_for", "remote_plan_for", "latest_model", "clear", "CHECK_EVERY_S"]

_log = logging.getLogger(__name__)

#: How often a cached plan checks the store for a newer version (seconds).
CHECK_EVERY_S = 1.0
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], "PlanEntry"] = {}


@dataclass
class PlanEntry:
    """One model's published plan, indexed for cell lookups."""

    name: str
    version: int
    metadata: dict[str, Any]
    bundle: Any
    stamp: float                                   # mtime of the store's LATEST file when loaded
    checked: float                                 # last time the stamp was compared
    forecast: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    locations: dict[str, list[str]] = field(default_factory=dict)
    periods: list[Any] = field(default_factory=list)
    policy: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    accuracy: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    extra: dict[Any, Any] = field(default_factory=dict)  # lazily computed: other quantiles, drivers ...
    remote: Any = None     # a plan served by the calculation server: what needs the model is asked there

    def key(self, sku: Any, location: Any, *, what: str) -> tuple[str, str]:
        """Resolve (SKU, Location); a blank location is fine when the SKU has only one."""
        s = _text(sku, "sku")
        if not s:
            raise InputError("sku is blank. Fix: give a SKU code, e.g. \"SKU-001\".", code="E110")
        locs = self.locations.get(s)
        if locs is None:
            near = [k for k in self.locations if k.casefold() == s.casefold()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InputError(f"SKU {s!r} is not in the plan of model {self.name}{hint}. Fix: check the code, "
                             "or refresh the plan if it is new.", code="E106")
        loc = _text(location, "location")
        if not loc:
            if len(locs) == 1:
                return s, locs[0]
            raise InputError(f"SKU {s} is planned at {len(locs)} locations ({', '.join(locs[:4])}"
                             f"{'...' if len(locs) > 4 else ''}). Fix: give the location for {what}.",
                             code="E110")
        if loc not in locs:
            raise InputError(f"SKU {s} has no plan at location {loc!r} (it has {', '.join(locs[:4])}). "
                             "Fix: check the location.", code="E106")
        return s, loc


def _text(v: Any, name: str = "value") -> str:
    """One cell's value as a key ("" when blank); a range or any non-cell value is refused."""
    import datetime as _dt

    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        if float(v).is_integer():
            v = int(v)  # Excel passes 1001 as 1001.0: SKU "1001"
    elif not isinstance(v, (str, int, np.integer, _dt.date)):
        kind = "a range of cells" if isinstance(v, (list, tuple, np.ndarray)) else f"a {type(v).__name__} value"
        raise InputError(f"{name} must be one cell's text or number, not {kind}. Fix: point to a single cell.",
                         code="E110")
    return str(v).strip()


def _index(entry: PlanEntry) -> None:
    b = entry.bundle
    plan = b.plan.sort_values(["SKU", "Location", "Period"], kind="stable")
    qcols = [c for c in plan.columns if c.startswith("P") and c[1:].replace(".", "").isdigit()]
    entry.periods = sorted(plan["Period"].unique())
    for (sku, loc), g in plan.groupby(["SKU", "Location"], sort=False):
        entry.forecast[(str(sku), str(loc))] = {q: g[q].to_numpy(dtype=float) for q in qcols}
        entry.locations.setdefault(str(sku), []).append(str(loc))
    if getattr(b, "policy", None) is not None:
        for rec in b.policy.to_dict("records"):
            entry.policy[(str(rec["SKU"]), str(rec["Location"]))] = rec
    if getattr(b, "accuracy", None) is not None:
        for rec in b.accuracy.to_dict("records"):
            entry.accuracy[(str(rec["SKU"]), str(rec["Location"]))] = rec


def default_model(store: Any) -> str:
    """The model cells use when the workbook names none: $PLANCELL_MODEL, else the most
    recently saved model in the store."""
    env = os.environ.get("PLANCELL_MODEL")
    if env:
        return env
    latest = latest_model(store)
    if latest is None:
        raise InputError("No trained plan yet. Fix: press Refresh Plan (or run plancell refresh) first.",
                         [Problem("Settings", "no model in the store", "refresh the plan", code="E201")],
                         code="E201")
    return latest


def latest_model(store: Any) -> str | None:
    """The store's most recently saved model (by its ``LATEST`` pointer), None if it has none."""
    names = store.names()
    return max(names, key=lambda n: _stamp(store, n)) if names else None


def _stamp(store: Any, safe_name: str) -> float:
    try:
        return (Path(store.root) / safe_name / "LATEST").stat().st_mtime
    except OSError:
        return 0.0


def plan_for(name: str | None = None, *, store: Any = None) -> PlanEntry:
    """The cached plan of model ``name`` (default: :func:`default_model`), reloaded when
    the store has a newer version."""
    from engine.store import safe_model_name

    store = store or _default_store()
    name = name or default_model(store)
    key = (str(store.root), name)
    now = time.monotonic()
    entry = _CACHE.get(key)
    if entry is not None and now - entry.checked < CHECK_EVERY_S:
        return entry
    safe = safe_model_name(name)
    stamp = _stamp(store, safe)
    if entry is not None and stamp == entry.stamp:
        entry.checked = now
        return entry
    with _LOCK:
        bundle, meta = store.load(name)   # verified: refuses files this installation did not write
        if not hasattr(bundle, "plan"):
            raise InputError(f"Model {name!r} was saved by an older Plancell without its plan. Fix: press "
                             "Refresh Plan once.", code="E201")
        entry = PlanEntry(name=name, version=int(meta.get("version", 0)), metadata=meta, bundle=bundle,
                          stamp=stamp, checked=now)
        _index(entry)
        _CACHE[key] = entry
        _log.info("plan cache: loaded %s v%s (%d series)", name, entry.version, len(entry.forecast))
    return entry


_STORE: Any = None


def _default_store() -> Any:
    global _STORE
    from engine.store import ModelStore

    home = os.environ.get("PLANCELL_HOME")
    if _STORE is None or getattr(_STORE, "_home_env", None) != home:
        _STORE = ModelStore()
        _STORE._home_env = home
    return _STORE


def clear() -> None:
    """Forget every cached plan (tests; a planner never needs it)."""
    with _LOCK:
        _CACHE.clear()
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


# --------------------------------------------------------------------------- server-backed plans

_CLIENTS: dict[tuple[str, str], Any] = {}


class _Remote:
    """The calculation server's side of a remote plan: function calls that need the model
    itself, evaluated there by the same code, remembered for this plan version."""

    def __init__(self, client: Any, model: str, version: int) -> None:
        self.client, self.model, self.version = client, model, version
        self._memo: dict[str, Any] = {}

    def cell(self, function: str, *args: Any) -> Any:
        return self.cells([(function, *args)])[0]

    def cells(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        from .wire import value_to_wire

        keys = [repr(value_to_wire(list(c))) for c in calls]
        todo = [(k, c) for k, c in zip(keys, calls) if k not in self._memo]
        if todo:
            out = self.client.cells(self.model, [(c[0], list(c[1:])) for _, c in todo])
            for (k, _), v in zip(todo, out["values"]):
                self._memo[k] = v
        values = [self._memo[k] for k in keys]
        for v in values:
            if isinstance(v, str) and v.startswith("PLANCELL-E"):
                raise _from_line(v)
        return values


def _from_line(line: str) -> Exception:
    """A cell's one-line error from the server as the exception that prints the same line."""
    from engine.errors import PlancellError

    code, _, message = line.removeprefix("PLANCELL-").partition(": ")
    return PlancellError(message, code=code)


def _client(url: str) -> Any:
    from .client import PlancellClient

    token = os.environ.get("PLANCELL_TOKEN") or ""
    key = (url.rstrip("/"), token)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = PlancellClient(url, token or None)
    return client


def remote_plan_for(url: str, name: str | None = None) -> PlanEntry:
    """The plan of model ``name`` as the calculation server at ``url`` has it (Settings
    ``Server``): its numbers are fetched once per version, exactly, and indexed like a local
    plan, so cells answer at local speed with the server's numbers. The server is asked for
    its current version at most once per :data:`CHECK_EVERY_S`."""
    from types import SimpleNamespace

    from .wire import frame_from_wire, value_from_wire

    client = _client(url)
    if not name:
        models = client.models()
        if not models:
            raise InputError("The Plancell server has no trained plan for this team yet. Fix: press Refresh Plan.",
                             code="E201")
        name = str(max(models, key=lambda m: str(m.get("trained_at") or ""))["name"])
    key = ("remote:" + client.url, name)
    now = time.monotonic()
    entry = _CACHE.get(key)
    if entry is not None and now - entry.checked < CHECK_EVERY_S:
        return entry
    info = client.model_info(name)
    if entry is not None and int(info["version"]) == entry.version:
        entry.checked = now
        return entry
    with _LOCK:
        body = client.model_plan(name)
        frames = {k: frame_from_wire(body[k]) if k in body else None for k in ("plan", "policy", "accuracy",
                                                                                  "purchases")}
        version = int(body["version"])
        bundle = SimpleNamespace(model=None, cube=None, **frames)
        entry = PlanEntry(name=str(body["name"]), version=version, metadata=value_from_wire(body["metadata"]),
                          bundle=bundle, stamp=0.0, checked=now, remote=_Remote(client, name, version))
        _index(entry)
        _CACHE[key] = entry
        _log.info("plan cache: loaded %s v%s from %s (%d series)", name, version, client.url, len(entry.forecast))
    return entry

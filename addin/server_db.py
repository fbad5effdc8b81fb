"""The calculation server's database: jobs, their progress, and published plan snapshots.

Models themselves stay in the HMAC-verified :class:`engine.store.ModelStore` (one per
workspace); this database holds what a team shares around them:

* ``jobs`` and ``job_events`` -- every training job, its state, progress events and log lines;
* ``published_plans`` -- immutable, append-only plan snapshots with their provenance, so
  actuals can later be compared with any published version.

SQLite (a file, zero setup) by default; any SQLAlchemy URL works, e.g.
``postgresql+psycopg://user@host/plancell``. Every query filters by workspace: the caller
(the HTTP layer) passes the workspace its token maps to, and no method crosses it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import random
import time
import uuid
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from engine.errors import InputError, TransientError

__all__ = ["Database", "JOB_STATES", "FINISHED_STATES", "plan_checksum"]

_log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled"})
#: Events kept per job: a runaway log must not fill the database.
MAX_EVENTS_PER_JOB = 5000

_meta = sa.MetaData()

_jobs = sa.Table(
    "jobs", _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("book", sa.String(255), nullable=False),
    sa.Column("model", sa.String(255)),
    sa.Column("model_version", sa.Integer),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("n_events", sa.Integer, nullable=False, default=0),
)

_events = sa.Table(
    "job_events", _meta,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),     # "progress" or "log"
    sa.Column("stage", sa.String(64)),
    sa.Column("done", sa.Integer),
    sa.Column("total", sa.Integer),
    sa.Column("message", sa.Text, nullable=False, default=""),
)

_plans = sa.Table(
    "published_plans", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("data_fingerprint", sa.String(64)),
    sa.Column("provenance", sa.JSON, nullable=False),
    sa.Column("rows", sa.JSON, nullable=False),          # the plan: SKU, Location, Period, P10, P50, P90 ...
    sa.Column("policy", sa.JSON, nullable=False),        # safety stock, reorder point ... per SKU-location
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),  # sha256 of rows + policy: a reader can verify
    sa.UniqueConstraint("workspace", "model", "version", name="uq_published_plan_version"),
)

# Published plans are immutable at the database level too, not just by our API: an UPDATE or
# DELETE from any client (a script, a psql session) is refused.
_SQLITE_IMMUTABLE = [
    "CREATE TRIGGER IF NOT EXISTS published_plans_no_update BEFORE UPDATE ON published_plans "
    "BEGIN SELECT RAISE(ABORT, 'published plans are immutable'); END",
    "CREATE TRIGGER IF NOT EXISTS published_plans_no_delete BEFORE DELETE ON published_plans "
    "BEGIN SELECT RAISE(ABORT, 'published plans are immutable'); END",
]
_POSTGRES_IMMUTABLE = [
    "CREATE OR REPLACE FUNCTION plancell_immutable() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'published plans are immutable'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS published_plans_immutable ON published_plans",
    "CREATE TRIGGER published_plans_immutable BEFORE UPDATE OR DELETE ON published_plans "
    "FOR EACH ROW EXECUTE FUNCTION plancell_immutable()",
]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(value: _dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value.isoformat(timespec="seconds")


def plan_checksum(rows: Any, policy: Any) -> str:
    """sha256 of a published plan's content (canonical JSON), stored with it and checkable by
    anyone who reads it back."""
    text = json.dumps({"rows": rows, "policy": policy}, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain_json(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null (neither SQLite's nor PostgreSQL's JSON takes them)."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Database:
    """Jobs and published plans, scoped by workspace. Thread safe (one engine, short transactions)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = self._connect(url)
        try:
            _meta.create_all(self.engine)
            self._immutable_plans()
        except sa.exc.OperationalError as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            raise TransientError(f"cannot open the database {where} ({type(exc.orig).__name__}); check that it "
                                 "is running and reachable, then start the server again") from exc

    @staticmethod
    def _connect(url: str) -> Engine:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise InputError(f"--db {url!r} is not a database URL. Fix: use sqlite:///path/plancell.db or "
                             "postgresql+psycopg://user@host/dbname.", code="E110") from exc
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                # WAL lets the lookups read while a job's progress is written.
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        try:
            return sa.create_engine(url, pool_pre_ping=True)
        except sa.exc.NoSuchModuleError as exc:
            raise InputError(f"--db {parsed.render_as_string(hide_password=True)}: SQLAlchemy has no database "
                             f"driver {parsed.drivername!r}. Fix: use sqlite:///path/plancell.db or "
                             "postgresql+psycopg://user@host/dbname.", code="E110") from exc
        except ImportError as exc:   # e.g. postgresql+psycopg without the psycopg package
            raise InputError(f"--db {parsed.render_as_string(hide_password=True)} needs the database driver "
                             f"{exc.name or parsed.get_driver_name()!r}, which is not installed. Fix: pip install "
                             "'psycopg[binary]' for PostgreSQL.", code="E110") from exc

    def _immutable_plans(self) -> None:
        dialect = self.engine.dialect.name
        statements = {"sqlite": _SQLITE_IMMUTABLE, "postgresql": _POSTGRES_IMMUTABLE}.get(dialect)
        if statements is None:
            _log.warning("database %s: published plans are immutable through the API only", dialect)
            return
        with self.engine.begin() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt)

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ----------------------------------------------------------------------

    def create_job(self, workspace: str, *, kind: str, book: str, model: str | None,
                   params: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(_jobs.insert().values(
                id=job_id, workspace=workspace, kind=kind, state="queued", book=book, model=model,
                params=_plain_json(params), created_at=_now(), n_events=0))
        return job_id

    def job(self, workspace: str, job_id: str, *, events_since: int = 0, max_events: int = 1000) -> dict | None:
        """The job as a plain dict with its events after ``events_since``; None if it is not in
        this workspace (another workspace's job is indistinguishable from a missing one)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.id == job_id, _jobs.c.workspace == workspace)
                               ).mappings().first()
            if row is None:
                return None
            evs = conn.execute(sa.select(_events).where(_events.c.job_id == job_id, _events.c.seq > events_since)
                               .order_by(_events.c.seq).limit(max_events)).mappings().all()
        out = self._job_dict(row)
        out["events"] = [{"seq": e["seq"], "at": _iso(e["at"]), "kind": e["kind"], "stage": e["stage"],
                          "done": e["done"], "total": e["total"], "message": e["message"]} for e in evs]
        return out

    def job_record(self, job_id: str) -> dict[str, Any] | None:
        """A job by id alone, for the job runner (never for a request: no workspace check)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.id == job_id)).mappings().first()
        return None if row is None else self._job_dict(row)

    @staticmethod
    def _job_dict(row: Any) -> dict[str, Any]:
        return {"id": row["id"], "workspace": row["workspace"], "kind": row["kind"], "state": row["state"],
                "book": row["book"], "model": row["model"], "model_version": row["model_version"],
                "params": row["params"], "created_at": _iso(row["created_at"]),
                "started_at": _iso(row["started_at"]), "finished_at": _iso(row["finished_at"]),
                "summary": row["summary"], "error": row["error"], "n_events": row["n_events"]}

    def jobs(self, workspace: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_jobs).where(_jobs.c.workspace == workspace)
                                .order_by(_jobs.c.created_at.desc()).limit(limit)).mappings().all()
        return [self._job_dict(r) for r in rows]

    def state(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_jobs.c.state).where(_jobs.c.id == job_id)).scalar_one_or_none()

    def start_job(self, job_id: str) -> bool:
        """queued -> running; False if the job was cancelled (or started) meanwhile."""
        with self.engine.begin() as conn:
            res = conn.execute(_jobs.update().where(_jobs.c.id == job_id, _jobs.c.state == "queued")
                               .values(state="running", started_at=_now()))
            return res.rowcount == 1

    def finish_job(self, job_id: str, state: str, *, summary: dict | None = None, error: dict | None = None,
                   model: str | None = None, model_version: int | None = None) -> bool:
        """Move an unfinished job to a final state; False if it had already finished (a cancel
        racing the end of training keeps whichever came first)."""
        assert state in FINISHED_STATES
        values: dict[str, Any] = {"state": state, "finished_at": _now(), "summary": _plain_json(summary),
                                  "error": _plain_json(error)}
        if model is not None:
            values["model"] = model
        if model_version is not None:
            values["model_version"] = model_version
        with self.engine.begin() as conn:
            res = conn.execute(_jobs.update().where(_jobs.c.id == job_id, _jobs.c.state.in_(("queued", "running")))
                               .values(**values))
            return res.rowcount == 1

    def add_events(self, job_id: str, events: Iterable[dict[str, Any]]) -> None:
        events = list(events)
        if not events:
            return
        with self.engine.begin() as conn:
            n = conn.execute(sa.select(_jobs.c.n_events).where(_jobs.c.id == job_id)).scalar_one()
            room = max(0, MAX_EVENTS_PER_JOB - n)
            rows = [{"job_id": job_id, "seq": n + i + 1, "at": _now(), "kind": e.get("kind", "log"),
                     "stage": e.get("stage"), "done": e.get("done"), "total": e.get("total"),
                     "message": str(e.get("message") or "")[:2000]} for i, e in enumerate(events[:room])]
            if rows:
                conn.execute(_events.insert(), rows)
                conn.execute(_jobs.update().where(_jobs.c.id == job_id).values(n_events=n + len(rows)))

    def prune_jobs(self, before: _dt.datetime) -> list[tuple[str, str]]:
        """Forget finished jobs created before ``before`` (their events too); returns their
        (workspace, id) so the caller removes their folders. Published plans are never pruned."""
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(_jobs.c.workspace, _jobs.c.id).where(
                _jobs.c.created_at < before, _jobs.c.state.in_(tuple(FINISHED_STATES)))).all()
            ids = [r[1] for r in old]
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                conn.execute(_events.delete().where(_events.c.job_id.in_(chunk)))
                conn.execute(_jobs.delete().where(_jobs.c.id.in_(chunk)))
        return [(str(w), str(i)) for w, i in old]

    def abandon_unfinished(self) -> int:
        """Mark jobs a previous server process left queued or running as failed (their
        worker died with it); returns how many."""
        with self.engine.begin() as conn:
            res = conn.execute(_jobs.update().where(_jobs.c.state.in_(("queued", "running"))).values(
                state="failed", finished_at=_now(),
                error={"code": "PLANCELL-E300", "message": "the server stopped before this job finished; "
                       "start the training again", "problems": []}))
            return int(res.rowcount or 0)

    # -- published plans -------------------------------------------------------------

    def publish_plan(self, workspace: str, model: str, *, model_version: int, data_fingerprint: str | None,
                     provenance: dict[str, Any], rows: list[dict[str, Any]],
                     policy: list[dict[str, Any]] | None = None) -> int:
        """Append a new immutable version of ``model``'s published plan; returns its number."""
        rows, policy = _plain_json(rows), _plain_json(policy or [])
        record = dict(workspace=workspace, model=model, model_version=model_version,
                      data_fingerprint=data_fingerprint, provenance=_plain_json(provenance), rows=rows,
                      policy=policy, n_rows=len(rows), checksum=plan_checksum(rows, policy))
        for attempt in range(50):
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        # publishers of one model queue here instead of racing for the next number
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                                     {"k": f"{workspace}/{model}"})
                    last = conn.execute(sa.select(sa.func.max(_plans.c.version)).where(
                        _plans.c.workspace == workspace, _plans.c.model == model)).scalar()
                    version = int(last or 0) + 1
                    conn.execute(_plans.insert().values(version=version, published_at=_now(), **record))
                return version
            except IntegrityError:
                # SQLite: another publisher took this number between our read and write
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
        raise TransientError(f"could not publish {model!r}: too many concurrent publications; try again")

    def plans(self, workspace: str, model: str | None = None) -> list[dict[str, Any]]:
        """Published versions (without their rows), newest first."""
        cols = [c for c in _plans.c if c.name not in ("rows", "policy", "id", "workspace")]
        q = sa.select(*cols).where(_plans.c.workspace == workspace)
        if model is not None:
            q = q.where(_plans.c.model == model)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(_plans.c.model, _plans.c.version.desc())).mappings().all()
        return [{**dict(r), "published_at": _iso(r["published_at"])} for r in rows]

    def plan(self, workspace: str, model: str, version: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_plans).where(
                _plans.c.workspace == workspace, _plans.c.model == model, _plans.c.version == version)
            ).mappings().first()
        if row is None:
            return None
        out = {k: v for k, v in dict(row).items() if k not in ("id", "workspace")}
        out["published_at"] = _iso(row["published_at"])
        return out


"""Crash consistency: SIGKILL ``plancell refresh BOOK`` and model saving at random moments.

    python -m bench.crash [--trials 100] [--skus 3] [--seed 0] [--only refresh|save] [--keep DIR]

Refresh trials restore the planner's workbook, start ``python -m addin.cli refresh BOOK``
in a child process and kill it (SIGKILL: no cleanup code runs) at a random moment: half
of the trials at a uniform time over a whole refresh, half while the new file is being
written (a random delay after its temp file appears). After each kill the workbook must
be byte for byte the old file, or a complete new one (every zip member's CRC checks,
openpyxl opens it, and it has the sheets and Plan table of a refresh that ran to the
end), and the model store must load a complete, verified model.

Save trials start a child that loads a trained plan bundle from the store and saves it
again and again (``ModelStore.save``); it is killed at a random moment of its saves.
Every fourth trial saves into a fresh home, so the first-save paths (installation key,
model folder, no ``LATEST`` yet) are hit too. After each kill ``LATEST`` must name a
version that verifies, ``load`` must return a complete bundle, and the next save must
succeed (no stale lock, leftovers cleaned).

Prints a summary and writes ``bench/results/crash.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Outcome", "Workspace", "prepare", "refresh_trials", "save_trials", "main"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "crash.md"
BOOK_NAME = "plancell-demo.xlsx"
MODEL = "plancell-demo"          # the demo workbook's Settings name this model
SAVED = "crash-save"             # what the save trials write
_POLL = 0.002


@dataclass
class Outcome:
    """Tally of one kind of trial."""

    kind: str
    trials: int = 0
    killed: int = 0               # killed before finishing (the rest ran to the end first)
    old: int = 0                  # workbook left as the old file / store left at the previous version
    new: int = 0                  # workbook or store at the complete new state
    leftovers: int = 0            # temp files a killed process left behind (invisible to readers)
    failures: list[str] = field(default_factory=list)

    @property
    def survived(self) -> int:
        return self.trials - len(self.failures)


@dataclass
class Workspace:
    root: Path
    home: Path
    book: Path
    old_bytes: bytes
    new_sheets: list[str]
    new_plan_ref: str
    refresh_seconds: float
    save_seconds: float = 0.5

    @property
    def old_sha(self) -> str:
        return hashlib.sha256(self.old_bytes).hexdigest()


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PLANCELL_HOME": str(home), "PYTHONPATH": str(REPO)}


def _refresh_cmd(book: Path, rounds: int) -> list[str]:
    return [sys.executable, "-m", "addin.cli", "refresh", str(book), "--rounds", str(rounds), "--quiet"]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".restore-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _temp_files(folder: Path) -> list[Path]:
    # FileBook.save writes ".~<stem>.<pid>.<hex><suffix>" next to the workbook.
    return [p for p in folder.iterdir() if p.name.startswith(".~")]


def _plan_table_ref(path: Path) -> str:
    import openpyxl

    wb = openpyxl.load_workbook(path)
    try:
        return wb["Plan"].tables["Plan"].ref
    finally:
        wb.close()


def prepare(root: Path, *, skus: int = 3, rounds: int = 10, windows: int | None = None) -> Workspace:
    """Make the demo workbook (the "old" file) and time one refresh that runs to the end.
    ``windows``: backtest windows in the workbook's Settings (default: the demo's)."""
    import openpyxl

    home = root / "home"
    src = root / "src"
    extra = ["--windows", str(windows)] if windows else []
    subprocess.run([sys.executable, "-m", "addin.cli", "demo", "--out", str(src), "--skus", str(skus),
                    "--locations", "1", "--rounds", str(rounds), "--quiet", *extra],
                   env=_env(home), cwd=REPO, check=True, capture_output=True)
    book_dir = root / "book"
    book_dir.mkdir()
    book = book_dir / BOOK_NAME
    old = (src / BOOK_NAME).read_bytes()
    book.write_bytes(old)
    tic = time.perf_counter()
    subprocess.run(_refresh_cmd(book, rounds), env=_env(home), cwd=REPO, check=True, capture_output=True)
    seconds = time.perf_counter() - tic
    wb = openpyxl.load_workbook(book)
    try:
        sheets = list(wb.sheetnames)
    finally:
        wb.close()
    ws = Workspace(root=root, home=home, book=book, old_bytes=old, new_sheets=sheets,
                   new_plan_ref=_plan_table_ref(book), refresh_seconds=seconds)
    _write_atomic(book, old)
    return ws


def _check_book(ws: Workspace) -> tuple[str, str | None]:
    """("old" | "new" | "bad", reason)."""
    import openpyxl

    data = ws.book.read_bytes()
    if hashlib.sha256(data).hexdigest() == ws.old_sha:
        return "old", None
    try:
        with zipfile.ZipFile(ws.book) as z:
            broken = z.testzip()
        if broken is not None:
            return "bad", f"zip member {broken} fails its CRC"
        wb = openpyxl.load_workbook(ws.book)
        try:
            sheets = list(wb.sheetnames)
            ref = wb["Plan"].tables["Plan"].ref if "Plan" in sheets and "Plan" in wb["Plan"].tables else None
        finally:
            wb.close()
    except Exception as exc:  # any failure to read it back is exactly what we hunt
        return "bad", f"{len(data)} bytes, unreadable: {type(exc).__name__}: {exc}"[:300]
    if sheets != ws.new_sheets:
        return "bad", f"sheets {sheets} != {ws.new_sheets}"
    if ref != ws.new_plan_ref:
        return "bad", f"Plan table {ref} != {ws.new_plan_ref}"
    return "new", None


def _check_store(home: Path, name: str, *, must_exist: bool = True) -> str | None:
    """None if the store serves a complete, verified model of ``name`` (or, when
    ``must_exist`` is False, holds no version of it yet); else the problem."""
    from engine.errors import PlancellError
    from engine.store import ModelStore

    store = ModelStore(home=home)
    if not store.versions(name):
        return None if not must_exist else f"no version of {name} in the store"
    pointer = store.root / name / "LATEST"
    try:
        if pointer.exists():
            text = pointer.read_bytes()
            m = re.fullmatch(rb"v(\d{4,})\n", text)
            if m is None:
                return f"LATEST is damaged: {text[:40]!r}"
            store.metadata(name, int(m.group(1)))   # the version it names verifies
        bundle, meta = store.load(name)
    except PlancellError as exc:
        return f"store refuses to load {name}: {exc.one_line()}"[:300]
    complete = len(bundle["w"]) == _ARRAY_LEN if isinstance(bundle, dict) else len(getattr(bundle, "plan", ()))
    if not complete:
        return f"{name} v{meta.get('version')} loaded incomplete"
    return None


def _kill(proc: subprocess.Popen[Any]) -> bool:
    """SIGKILL ``proc`` if it still runs; True if it was killed."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def refresh_trials(ws: Workspace, trials: int, rng: random.Random, *, rounds: int = 10,
                   log: Any = None) -> Outcome:
    out = Outcome("refresh")
    folder = ws.book.parent
    for i in range(trials):
        _write_atomic(ws.book, ws.old_bytes)
        for p in _temp_files(folder):
            p.unlink()
        proc = subprocess.Popen(_refresh_cmd(ws.book, rounds), env=_env(ws.home), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 2 == 0:       # anywhere in the run
            deadline = time.monotonic() + rng.uniform(0.0, 1.1 * ws.refresh_seconds)
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(_POLL)
        else:                # while the new file is written: shortly after its temp file appears
            limit = time.monotonic() + 3 * ws.refresh_seconds + 10
            while proc.poll() is None and not _temp_files(folder) and time.monotonic() < limit:
                time.sleep(_POLL)
            time.sleep(rng.uniform(0.0, 0.25))
        killed = _kill(proc)
        if not killed and proc.returncode != 0:
            out.failures.append(f"trial {i + 1}: refresh exited with {proc.returncode} without being killed")
        out.trials += 1
        out.killed += killed
        state, why = _check_book(ws)
        if state == "bad":
            out.failures.append(f"trial {i + 1} (killed={killed}): workbook {why}")
        else:
            setattr(out, state, getattr(out, state) + 1)
        problem = _check_store(ws.home, MODEL)
        if problem:
            out.failures.append(f"trial {i + 1} (killed={killed}): {problem}")
        out.leftovers += len(_temp_files(folder))
        if log:
            log(f"refresh {i + 1}/{trials}: {'killed' if killed else 'finished'}, workbook {state}"
                + (f" FAIL {why or problem}" if (why or problem) else ""))
    for p in _temp_files(folder):
        p.unlink()
    _write_atomic(ws.book, ws.old_bytes)
    return out


_ARRAY_LEN = 200_000
_CHILD = r"""
import sys, time
from engine.store import ModelStore
if sys.argv[5] == "bundle":
    bundle, meta = ModelStore(home=sys.argv[1]).load(sys.argv[2])
    meta = {k: v for k, v in meta.items() if k not in ("name", "version", "saved_at", "plancell_version")}
else:  # arrays: no plan to unpickle, so the child starts in a second (tests)
    import numpy as np
    bundle, meta = {"w": np.random.default_rng(0).random(int(sys.argv[5]))}, {}
target = ModelStore(home=sys.argv[3])
print("ready", flush=True)
while True:
    t = time.perf_counter()
    v = target.save(sys.argv[4], bundle, meta)
    print(f"saved {v.version} {time.perf_counter() - t:.4f}", flush=True)
"""


def _start_saver(src_home: Path, dst_home: Path, payload: str = "bundle") -> subprocess.Popen[str]:
    arg = "bundle" if payload == "bundle" else str(_ARRAY_LEN)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(src_home), MODEL, str(dst_home), SAVED, arg],
                            env=_env(src_home), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"save child did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def calibrate_save(ws: Workspace) -> float:
    """Seconds per ``ModelStore.save`` of the demo's plan bundle."""
    home = ws.root / "save-calibration"
    proc = _start_saver(ws.home, home)
    assert proc.stdout is not None
    times = [float(proc.stdout.readline().split()[2]) for _ in range(3)]
    _kill(proc)
    shutil.rmtree(home, ignore_errors=True)
    ws.save_seconds = sorted(times)[1]
    return ws.save_seconds


def save_trials(ws: Workspace, trials: int, rng: random.Random, *, payload: str = "bundle",
                log: Any = None) -> Outcome:
    """``payload``: "bundle" saves the demo's trained plan bundle; "arrays" a 1.6 MB array
    (a child that starts faster, for the short test)."""
    import numpy as np

    from engine.store import ModelStore

    out = Outcome("save")
    shared = ws.root / "save-home"
    if payload == "bundle":
        bundle, meta = ModelStore(home=ws.home).load(MODEL)
        meta = {k: v for k, v in meta.items() if k not in ("name", "version", "saved_at", "plancell_version")}
    else:
        bundle, meta = {"w": np.random.default_rng(0).random(_ARRAY_LEN)}, {}
    ModelStore(home=shared).save(SAVED, bundle, meta)   # a complete version exists before the first kill
    for i in range(trials):
        fresh = i % 4 == 3
        home = ws.root / f"save-fresh-{i}" if fresh else shared
        before = ModelStore(home=home).latest(SAVED) or 0
        proc = _start_saver(ws.home, home, payload)
        time.sleep(rng.uniform(0.0, 2.5 * ws.save_seconds))
        killed = _kill(proc)
        out.trials += 1
        out.killed += killed
        problem = _check_store(home, SAVED, must_exist=not fresh)
        after = ModelStore(home=home).latest(SAVED) or 0
        if after > before:
            out.new += 1
        else:
            out.old += 1
        mdir = home / "models" / SAVED
        out.leftovers += sum(1 for _ in mdir.glob(".tmp-*")) if mdir.is_dir() else 0
        if problem is None:
            try:   # the next save works: no stale lock, leftovers cleaned, key intact
                v = ModelStore(home=home, lock_timeout=5).save(SAVED, bundle, meta)
                problem = _check_store(home, SAVED)
                if problem is None and any((home / "models" / SAVED).glob(".tmp-*")):
                    problem = "leftovers of the killed save survived the next save"
                if problem is None and ModelStore(home=home).latest(SAVED) != v.version:
                    problem = "LATEST does not follow the next save"
            except Exception as exc:
                problem = f"the next save failed: {type(exc).__name__}: {exc}"[:300]
        if problem:
            out.failures.append(f"trial {i + 1} (killed={killed}, fresh home={fresh}): {problem}")
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
        elif i % 10 == 9:
            _prune(shared)
        if log:
            state = "new version" if after > before else "previous version"
            log(f"save {i + 1}/{trials}: {'killed' if killed else 'finished'}, {state}"
                + (f" FAIL {problem}" if problem else ""))
    return out


def _prune(home: Path, keep: int = 3) -> None:
    # Keep the shared store small so verifying and saving stay fast over 100 trials.
    mdir = home / "models" / SAVED
    versions = sorted(p for p in mdir.iterdir() if re.fullmatch(r"v\d{4,}", p.name))
    for p in versions[:-keep]:
        shutil.rmtree(p)


def _report(outcomes: list[Outcome], ws: Workspace, command: str, seconds: float) -> str:
    lines = [
        "# Crash consistency (SIGKILL at random moments)",
        "",
        f"Command: `{command}` ({seconds:.0f} s on this machine).",
        "",
        f"Workbook: the demo workbook ({len(ws.old_bytes):,} bytes); one refresh takes {ws.refresh_seconds:.1f} s, "
        f"one save of its plan bundle {ws.save_seconds * 1000:.0f} ms.",
        "",
        "| trials of | trials | killed mid-way | old state | complete new state | temp leftovers | survived "
        "| failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        lines.append(f"| {o.kind} | {o.trials} | {o.killed} | {o.old} | {o.new} | {o.leftovers} | {o.survived} | "
                     f"{len(o.failures)} |")
    lines += ["", "Survived: the workbook was the old file byte for byte or a complete new one, and the model "
              "store loaded a complete, verified model (save trials: the next save also succeeded). "
              "Temp leftovers are the hidden files a killed writer left next to the workbook "
              "(`.~<name>.<pid>.<hex>.xlsx`) or in the model folder (`.tmp-*`, removed by the next save); "
              "no reader ever sees them as the workbook or a model."]
    fails = [f for o in outcomes for f in o.failures]
    if fails:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in fails]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100, help="trials of each kind (default 100)")
    ap.add_argument("--skus", type=int, default=3, help="SKUs in the demo workbook (default 3)")
    ap.add_argument("--rounds", type=int, default=10, help="boosting rounds per refresh (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("refresh", "save"))
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp folder)")
    ap.add_argument("--out", default=str(RESULTS), help="results file (default bench/results/crash.md)")
    args = ap.parse_args(argv)
    command = "python -m bench.crash " + " ".join(argv if argv is not None else sys.argv[1:])
    rng = random.Random(args.seed)
    tic = time.perf_counter()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="plancell-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        ws = prepare(root, skus=args.skus, rounds=args.rounds)
        print(f"one refresh: {ws.refresh_seconds:.1f} s", flush=True)
        outcomes = []
        if args.only != "save":
            outcomes.append(refresh_trials(ws, args.trials, rng, rounds=args.rounds, log=print))
        if args.only != "refresh":
            print(f"one save: {calibrate_save(ws) * 1000:.0f} ms", flush=True)
            outcomes.append(save_trials(ws, args.trials, rng, log=print))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = _report(outcomes, ws, command.strip(), time.perf_counter() - tic)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 1 if any(o.failures for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

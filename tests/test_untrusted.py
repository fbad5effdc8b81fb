"""Nothing untrusted runs: no unpickling outside the verified store loader, and a stored
plan with one changed byte anywhere is refused before anything is unpickled."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import joblib
import pytest

from addin import cache
from addin.udfs import FORECAST_SKU
from engine.contract import validate
from engine.errors import InputError
from engine.plan import PlanBundle, build_plan
from engine.store import ModelStore
from engine.synthetic import generate_panel

from .conftest import with_plan_rows

ROOT = Path(__file__).resolve().parents[1]

# Dotted names that deserialise (run) code from bytes, and the keyword that makes
# numpy.load do so.
UNSAFE = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "_pickle.Unpickler",
    "cPickle.load", "cPickle.loads", "joblib.load", "joblib.numpy_pickle.load", "cloudpickle.load",
    "cloudpickle.loads", "dill.load", "dill.loads", "dill.Unpickler", "marshal.load", "marshal.loads",
    "shelve.open", "shelve.Shelf", "shelve.DbfilenameShelf", "pandas.read_pickle", "pandas.io.pickle.read_pickle",
    "torch.load", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "jsonpickle.decode",
}
# The one place allowed to unpickle: it verifies every file's HMAC first.
ALLOWED = {("engine/store.py", "ModelStore.load", "joblib.load")}


class _Finder(ast.NodeVisitor):
    """Every reference to an unsafe loader, resolved through import aliases, with the
    qualified name of the function it sits in."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.aliases: dict[str, str] = {}
        self.scope: list[str] = []
        self.found: list[tuple[str, int, str, str]] = []   # (file, line, where, what)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            for a in node.names:
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def _scoped(self, node: ast.AST) -> None:
        self.scope.append(node.name)  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _dotted(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _report(self, node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        self.found.append((self.rel, line, ".".join(self.scope) or "<module>", what))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self._dotted(node)
        if name and _canonical(name) in UNSAFE:
            self._report(node, _canonical(name))
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        name = self.aliases.get(node.id)
        if name and _canonical(name) in UNSAFE:
            self._report(node, _canonical(name))

    def visit_Call(self, node: ast.Call) -> None:
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                self._report(node, "allow_pickle")
        name = self._dotted(node.func) or ""
        # getattr(pickle, "loads") hides the attribute from the visitor above.
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            base = self._dotted(node.args[0])
            if base and _canonical(f"{base}.{node.args[1].value}") in UNSAFE:
                self._report(node, _canonical(f"{base}.{node.args[1].value}"))
        self.generic_visit(node)


def _canonical(name: str) -> str:
    for short, full in (("pd.", "pandas."), ("np.", "numpy.")):
        if name.startswith(short):
            name = full + name[len(short):]
    return name


def scan(source: str, rel: str = "<snippet>") -> list[tuple[str, int, str, str]]:
    finder = _Finder(rel)
    finder.visit(ast.parse(source))
    return finder.found


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.loads(b'')",
    "import pickle as p\np.load(open('f', 'rb'))",
    "from pickle import loads\nloads(b'')",
    "from pickle import Unpickler as U\nU(fh).load()",
    "import joblib\njoblib.load('m.joblib')",
    "from joblib import load\nload('m')",
    "import cloudpickle\ncloudpickle.loads(b'')",
    "import dill\ndill.load(fh)",
    "import marshal\nmarshal.loads(b'')",
    "import shelve\nshelve.open('db')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('a.npz', allow_pickle=flag)",
    "import pandas as pd\npd.read_pickle('f.pkl')",
    "from pandas import read_pickle\nread_pickle('f')",
    "import pickle\nf = getattr(pickle, 'loads')",
    "import pickle\nhooks = [pickle.loads]",
])
def test_scanner_finds_each_kind_of_unsafe_load(snippet: str) -> None:
    assert scan(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import numpy as np\nnp.load('a.npy')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=False)",
    "import joblib\njoblib.dump(obj, fh)",
    "import pickle\npickle.dumps(obj)",
    "import json\njson.loads('{}')",
])
def test_scanner_leaves_safe_calls_alone(snippet: str) -> None:
    assert scan(snippet) == []


def test_no_unpickling_outside_the_verified_store_loader() -> None:
    found = []
    for package in ("engine", "addin"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found.extend(scan(path.read_text(encoding="utf-8"), rel))
    outside = [f"{f}:{line} in {where}: {what}" for f, line, where, what in found if (f, where, what) not in ALLOWED]
    assert not outside, "unpickling outside engine/store.py ModelStore.load:\n" + "\n".join(outside)
    # The allowed loader is still there (the scan is looking at the right tree).
    assert {(f, where, what) for f, _, where, what in found} == ALLOWED


# ----------------------------------------------------------------------------- flipped bytes


@pytest.fixture(scope="module")
def saved_plan(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A real plan bundle saved the way ``build_plan`` saves it, in its own store."""
    store = ModelStore(home=tmp_path_factory.mktemp("untrusted-home"))
    p = generate_panel("W", n_skus=3, n_locations=1, seed=11)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    build_plan(data, horizon=4, windows=1, model_params={"n_estimators": 10}, store=store, model_name="tamper")
    return store


def _artefacts(store: ModelStore) -> list[Path]:
    files = sorted(p for p in (store.root / "tamper").rglob("*") if p.is_file() and p.stat().st_size)
    return [p for p in files if p.name != ".lock"]  # the lock file is empty and holds nothing


def test_saved_plan_loads_when_untouched(saved_plan: ModelStore) -> None:
    bundle, meta = saved_plan.load("tamper")
    assert isinstance(bundle, PlanBundle) and meta["version"] == 1
    assert {p.name for p in _artefacts(saved_plan)} == {"LATEST", "MANIFEST.json", "metadata.json", "model.joblib"}


def test_one_changed_byte_in_any_stored_file_is_refused_naming_it(
    saved_plan: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load reached a tampered file"))
    rng = random.Random(8)
    tried = 0
    for path in _artefacts(saved_plan):
        original = path.read_bytes()
        size = len(original)
        positions = sorted({0, size - 1, size // 2, *(rng.randrange(size) for _ in range(4))})
        try:
            for pos in positions:
                for mask in (0x01, 0x80, rng.randrange(1, 256)):
                    data = bytearray(original)
                    data[pos] ^= mask
                    path.write_bytes(bytes(data))
                    with pytest.raises(InputError) as info:
                        saved_plan.load("tamper")
                    err = info.value
                    assert err.code == "E200", (path.name, pos, mask)
                    assert str(path) in str(err), (path.name, pos, mask, str(err))
                    assert "plancell refresh" in err.one_line()
                    tried += 1
        finally:
            path.write_bytes(original)
    assert tried >= 4 * 3 * 3
    monkeypatch.undo()
    assert isinstance(saved_plan.load("tamper")[0], PlanBundle)  # restored: trusted again


def test_a_cell_reading_a_tampered_plan_shows_one_refusal_line(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.getbasetemp() / "plancell-home"
    store = ModelStore(home=home)
    p = generate_panel("W", n_skus=2, n_locations=1, seed=12)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    build_plan(data, horizon=3, windows=1, model_params={"n_estimators": 10}, store=store, model_name="cells")
    monkeypatch.setenv("PLANCELL_MODEL", "cells")
    cache.clear()
    model = store.root / "cells" / "v0001" / "model.joblib"
    data_bytes = bytearray(model.read_bytes())
    data_bytes[len(data_bytes) // 3] ^= 0x10
    model.write_bytes(bytes(data_bytes))
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load reached a tampered file"))

    out = FORECAST_SKU("SKU-0001", 1)
    assert isinstance(out, str) and out.startswith("PLANCELL-E200: ") and "\n" not in out
    assert "model.joblib" in out
    cache.clear()

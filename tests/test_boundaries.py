"""Architecture rules: the engine never imports xlwings; nothing unpickles outside the verified store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNSAFE_LOADS = {("joblib", "load"), ("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"),
                ("cloudpickle", "loads"), ("pd", "read_pickle"), ("pandas", "read_pickle"), ("dill", "load")}


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_engine_source_never_imports_xlwings():
    offenders = []
    for path, tree in _modules("engine"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "xlwings" for a in node.names):
                offenders.append(path.name)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "xlwings":
                offenders.append(path.name)
    assert offenders == []


def test_importing_the_whole_engine_does_not_load_xlwings():
    mods = [f"engine.{p.stem}" for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + "print('xlwings' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_unpickling_outside_the_verified_store():
    offenders = []
    for package in ("engine", "addin"):
        for path, tree in _modules(package):
            if path.relative_to(ROOT).as_posix() == "engine/store.py":
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if (node.value.id, node.attr) in UNSAFE_LOADS:
                        offenders.append(f"{path.name}:{node.lineno}")
                if isinstance(node, ast.ImportFrom) and node.module in {"joblib", "pickle", "cloudpickle"}:
                    if any(a.name in {"load", "loads"} for a in node.names):
                        offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []

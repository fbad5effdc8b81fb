"""Same inputs, settings and seed: bit-identical plans, in one process and across processes
(different hash seeds, different model stores)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from addin.cli import main as cli_main
from engine.contract import validate
from engine.plan import build_plan
from engine.synthetic import generate_panel

from .conftest import with_plan_rows

ROOT = Path(__file__).resolve().parents[1]
# Provenance that is a clock reading, not a result.
TIME_LABELS = {"Trained at", "Written at", "Elapsed", "Elapsed (s)", "elapsed_seconds"}


def _plan_once(seed: int = 5) -> Any:
    p = generate_panel("W", n_skus=4, n_locations=2, seed=seed)
    data = validate(with_plan_rows(p), p.drivers, p.items)
    return build_plan(data, horizon=4, windows=2, model_params={"n_estimators": 25})


def test_build_plan_twice_gives_identical_frames() -> None:
    a, b = _plan_once(), _plan_once()
    for name in ("plan", "accuracy", "policy", "purchases"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)
    pd.testing.assert_frame_equal(a.backtest.per_series, b.backtest.per_series, check_exact=True)
    pd.testing.assert_frame_equal(a.backtest.forecasts, b.backtest.forecasts, check_exact=True)
    assert _untimed(a.metadata) == _untimed(b.metadata)
    assert _untimed(a.metadata) != _untimed(_plan_once(seed=6).metadata)  # the comparison can fail


def _untimed(meta: Any) -> Any:
    """Metadata without clock readings (trained_at, *_seconds), at any depth."""
    if isinstance(meta, dict):
        return {k: _untimed(v) for k, v in meta.items() if k != "trained_at" and not str(k).endswith("_seconds")}
    if isinstance(meta, list):
        return [_untimed(v) for v in meta]
    return meta


def _sheet_values(path: Path, sheet: str) -> list[tuple[Any, ...]]:
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = [tuple(r) for r in wb[sheet].iter_rows(values_only=True)]
    finally:
        wb.close()
    return [r for r in rows if not (r and r[0] in TIME_LABELS)]


@pytest.fixture(scope="module")
def demo_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det-demo")
    home = tmp_path_factory.mktemp("det-demo-home")
    old = os.environ.get("PLANCELL_HOME")
    os.environ["PLANCELL_HOME"] = str(home)
    try:
        assert cli_main(["demo", "--out", str(out), "--skus", "3", "--locations", "2", "--rounds", "15",
                         "--quiet"]) == 0
    finally:
        if old is None:
            os.environ.pop("PLANCELL_HOME", None)
        else:
            os.environ["PLANCELL_HOME"] = old
    return out / "plancell-demo.xlsx"


def _refresh_in_new_process(book: Path, home: Path, hash_seed: str) -> None:
    env = {**os.environ, "PLANCELL_HOME": str(home), "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "addin.cli", "refresh", str(book), "--rounds", "15", "--quiet"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_refresh_twice_in_fresh_processes_writes_identical_sheets(
    demo_book: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    books = []
    for run, seed in (("a", "1"), ("b", "2")):
        folder = tmp_path_factory.mktemp(f"det-{run}")
        book = folder / demo_book.name      # same file name: the model name comes from it
        shutil.copyfile(demo_book, book)
        _refresh_in_new_process(book, folder / "home", seed)
        books.append(book)
    for sheet in ("Plan", "Accuracy", "Purchases"):
        a, b = (_sheet_values(p, sheet) for p in books)
        assert len(a) == len(b) and len(a) > 5, sheet
        diffs = [(i + 1, x, y) for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert not diffs, f"{sheet}: first differing rows {diffs[:3]}"

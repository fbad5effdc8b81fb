"""The published workbook, opened by LibreOffice headless (no add-in, no Excel): it renders to
PDF and PNG, the plan's numbers show, and no cell shows #NAME? or another error value."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest

from addin.actions import publish
from addin.cli import main
from addin.port import FileBook

_TOOLS = ("soffice", "pdftotext", "pdftoppm")
_MISSING = [t for t in _TOOLS if shutil.which(t) is None]
# .ci/run installs LibreOffice and poppler and sets this: in CI the test can never be skipped.
if _MISSING and os.environ.get("PLANCELL_REQUIRE_LIBREOFFICE"):
    raise RuntimeError(f"LibreOffice rendering tools missing: {', '.join(_MISSING)} "
                       "(apt-get install libreoffice-calc-nogui poppler-utils)")
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)} (.ci/run installs them)")

ERRORS = ("#NAME?", "#VALUE!", "#REF!", "#DIV/0!", "#N/A", "#NUM!", "#NULL!", "Err:")


def _render(book: Path, out: Path) -> tuple[str, Path]:
    """PDF of every sheet (its text) and a PNG of the first page, by LibreOffice headless."""
    out.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(out)}  # a private LibreOffice profile per run
    subprocess.run(["soffice", "--headless", "--norestore", "--convert-to", "pdf", "--outdir", str(out), str(book)],
                   check=True, capture_output=True, timeout=240, env=env)
    pdf = out / (book.stem + ".pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(out / "page")], check=True)
    return text, next(out.glob("page*.png"))


def _only(book: Path, keep: str, out: Path) -> Path:
    wb = openpyxl.load_workbook(book)
    for name in list(wb.sheetnames):
        if name != keep:
            del wb[name]
    wb.save(out)
    return out


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("render")
    assert main(["demo", "--out", str(tmp), "--skus", "3", "--horizon", "4", "--windows", "2", "--rounds", "20",
                 "-q"]) == 0
    book = tmp / "plancell-demo.xlsx"
    name = publish(FileBook(book), now=dt.datetime(2026, 11, 22, 9, 0))
    return book, name


def test_published_snapshot_renders_with_its_numbers_and_no_error_values(published, tmp_path) -> None:
    book, name = published
    snap = _only(book, name, tmp_path / "snapshot.xlsx")
    text, png = _render(snap, tmp_path / "out")
    assert "Plancell plan snapshot" in text and "Data fingerprint" in text
    wb = openpyxl.load_workbook(book)
    ws = wb[name]
    plan = [[c.value for c in r] for r in ws[ws.tables[[t for t in ws.tables if t.startswith("Plan_")][0]].ref]]
    p50 = plan[1][plan[0].index("P50")]
    assert f"{p50:,.1f}" in text                     # the number shows as formatted in the sheet
    assert plan[1][0] in text                          # and the SKU next to it
    assert not [e for e in ERRORS if e in text]
    assert png.stat().st_size > 5_000                  # a real picture, not an empty page


def test_the_whole_demo_workbook_renders_without_error_values(published, tmp_path) -> None:
    """As `plancell publish` saved it: the snapshot's table rows streamed as XML, the demo's
    other sheets carried over as raw XML with their shared strings made inline (addin.sheetxml)."""
    book, name = published
    text, _ = _render(book, tmp_path / "all")
    assert "Inventory policy" in text and "Purchase priority" in text
    assert not [e for e in ERRORS if e in text]
    ws = openpyxl.load_workbook(book)[name]
    rows = [[c.value for c in r] for r in ws[ws.tables[[t for t in ws.tables if t.startswith("Plan_")][0]].ref]]
    last = rows[-1]
    assert f"{last[rows[0].index('P90')]:,.1f}" in text and last[0] in text


def test_the_check_would_catch_an_add_in_formula(tmp_path) -> None:
    # Negative control: a cell that needs the add-in shows #NAME? without it, and the text check sees it.
    wb = openpyxl.Workbook()
    wb.active["A1"] = '=FORECAST_SKU("SKU-001", 3)'
    path = tmp_path / "needs-addin.xlsx"
    wb.save(path)
    text, _ = _render(path, tmp_path / "neg")
    assert any(e in text for e in ERRORS)

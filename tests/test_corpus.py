"""Planners' messy workbooks never crash Plancell (bench.corpus).

Every case of the malformed-workbook corpus is read and validated as ``plancell refresh``
reads it; one case per hazard class runs the full refresh (tiny model). Each must end as its
case declares: a plan (read exactly like its clean twin where the hazard changes nothing,
with the changes listed on the Data quality sheet) or a clear error whose every problem
names the sheet, row, column letter and header, value and fix of a real cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import corpus as C
from engine.store import ModelStore


def _first_per_class() -> set[str]:
    seen: dict[str, str] = {}
    for c in C.cases():
        seen.setdefault(c.hazard, c.name)
    return set(seen.values())


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, C.Outcome]:
    """Every case: the full refresh for the first variant of each class, reading + validation for the rest."""
    root = tmp_path_factory.mktemp("corpus")
    full = _first_per_class()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))
        store = ModelStore(root / "models")
        return {c.name: C.run_case(c, root / c.hazard, refresh=c.name in full, store=store) for c in C.cases()}


def test_the_corpus_is_large_and_varied() -> None:
    cases = C.cases()
    assert len(cases) >= 300
    assert len(C.hazard_classes()) >= 30
    assert len({c.name for c in cases}) == len(cases)
    assert {"plan", "error"} == {c.expect for c in cases}


def test_the_corpus_is_deterministic(tmp_path: Path) -> None:
    for name in ("text_dates-03", "merged_cells-01", "corrupt-02", "size_limits-00"):
        case = next(c for c in C.cases() if c.name == name)
        a, _ = C.build(case, tmp_path / "a")
        b, _ = C.build(case, tmp_path / "b")
        assert a.stat().st_size > 0 and _content(a) == _content(b)


def _content(path: Path) -> object:
    """A built case's bytes, or for a workbook each part's name, CRC and sizes from the zip
    directory (never unpacked: some cases are zip bombs), except the save time openpyxl
    stamps into docProps/core.xml (its compressed size can differ by a byte between saves)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, i.CRC, i.file_size, i.compress_size) for i in zf.infolist()
                if i.filename != "docProps/core.xml"]


def test_no_case_crashes(outcomes: dict[str, C.Outcome]) -> None:
    crashed = {n: o.message for n, o in outcomes.items() if o.status == "unhandled"}
    assert crashed == {}


def test_every_case_ends_as_declared(outcomes: dict[str, C.Outcome]) -> None:
    wrong = {n: o.mismatch for n, o in outcomes.items() if o.mismatch}
    assert wrong == {}


def test_every_error_is_clear_and_points_at_a_real_cell(outcomes: dict[str, C.Outcome]) -> None:
    errors = [o for o in outcomes.values() if o.status == "error"]
    assert len(errors) > 100
    unclear = {o.case.name: o.gaps or ["no problems listed"] for o in errors if not o.clear}
    assert unclear == {}
    cell_problems = [p for o in errors for p in o.problems if p.letter is not None and p.row is not None]
    assert len(cell_problems) > 100
    for p in cell_problems:
        assert p.sheet and p.row and p.column and p.fix
        assert p.value is not None or "blank" in p.message
        assert f"column {p.letter} '{p.column}'" in str(p)


def test_full_refresh_on_one_case_per_class(outcomes: dict[str, C.Outcome]) -> None:
    full = [outcomes[n] for n in _first_per_class()]
    assert len(full) == len(C.hazard_classes())
    plans = [o for o in full if o.status == "plan"]
    assert plans and all(o.actions for o in plans)   # each wrote a Data quality sheet
    clean = outcomes["clean-00"]
    assert any("Nothing was changed" in a for a in clean.actions)


def test_what_the_reader_changed_is_listed(outcomes: dict[str, C.Outcome]) -> None:
    actions = {a for o in outcomes.values() for a in o.actions}
    for what in ("text to number (spaces trimmed)", "Excel date serial number to date", "time of day dropped",
                 "blank row skipped (every cell empty)", "spaces trimmed", "text read as blank",
                 "month-end date read as its month (first day)"):
        assert what in actions
    assert any(a.startswith("text to date") for a in actions)


def test_a_workbook_file_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    """The CLI, as a planner runs it, on a few of the worst files."""
    for name in ("encrypted-00", "size_limits-02", "excel_errors_numbers-00"):
        case = next(c for c in C.cases() if c.name == name)
        assert C.run_cli(case, tmp_path, tmp_path / "home") == "ok", name

"""The workbook guard: oversized, bomb-shaped and not-really-xlsx files are refused fast,
with bounded memory and a message that says what was found, the limit and the fix."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import openpyxl
import pytest

from addin.guard import Limits, check_workbook, limits_from_env
from addin.port import FileBook
from addin.workbook import read_tables
from engine.errors import InputError


def _book(path: Path, rows: int = 20) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    ws.append(["Date", "SKU", "Qty"])
    for i in range(rows):
        ws.append([f"2024-01-{i % 28 + 1:02d}", "A", i])
    wb.save(path)
    return path


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _zip_by_hand(members: list[tuple[str, bytes, int | None]]) -> bytes:
    """A zip whose entries are (name, raw deflate bytes, declared size): sizes can lie."""
    out = io.BytesIO()
    central = []
    for name, payload, size in members:
        off = out.tell()
        n = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(payload), size, len(n), 0))
        out.write(n + payload)
        central.append((off, n, len(payload), size))
    start = out.tell()
    for off, n, csize, size in central:
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, csize, size, len(n), 0, 0, 0,
                              0, 0, off))
        out.write(n)
    end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), end - start, start, 0))
    return out.getvalue()


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zeros(megabytes: int) -> bytes:
    """Raw deflate of ``megabytes`` MB of zeros, built from one repeated full-flush block (about 1 KB per MB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * megabytes + c.flush(zlib.Z_FINISH)


def _bomb(tmp_path: Path, *, declared_mb: int, actual_mb: int) -> Path:
    parts = [(n, _deflate(b), len(b), ) for n, b in _members(_book(tmp_path / "seed.xlsx"))]
    members: list[tuple[str, bytes, int | None]] = []
    for name, payload, size in parts:
        if name == "xl/worksheets/sheet1.xml":
            payload, size = _zeros(actual_mb), declared_mb << 20
        members.append((name, payload, size))
    path = tmp_path / "bomb.xlsx"
    path.write_bytes(_zip_by_hand(members))
    return path


_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
           + "]>")


def _entity_bomb(tmp_path: Path, *, part: str = "xl/worksheets/sheet1.xml", encoding: str = "utf-8") -> Path:
    src = _book(tmp_path / "seed.xlsx")
    path = tmp_path / "laughs.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in _members(src):
            if name == part:
                text = body.decode().split("?>", 1)[-1]
                body = (_LAUGHS + text.replace("<v>", "<v>&lol9;", 1)).encode(encoding)
            z.writestr(name, body)
    return path


def _refused_fast(fn: Callable[[], object]) -> tuple[InputError, float, int]:
    """Run ``fn``, which must refuse: (the error, seconds, peak traced bytes)."""
    tracemalloc.start()
    tic = time.perf_counter()
    try:
        with pytest.raises(InputError) as exc:
            fn()
        seconds = time.perf_counter() - tic
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return exc.value, seconds, peak


@pytest.mark.parametrize(("declared", "actual"), [(1024, 1024), (4000, 1024), (1, 1024)])
def test_a_zip_bomb_is_refused_in_a_second_without_unpacking_it(tmp_path: Path, declared: int, actual: int) -> None:
    bomb = _bomb(tmp_path, declared_mb=declared, actual_mb=actual)
    assert bomb.stat().st_size < 2 << 20   # small on disk, a gigabyte unpacked
    err, seconds, peak = _refused_fast(lambda: check_workbook(bomb))
    assert seconds < 1.0
    assert peak < 32 << 20
    assert err.code in ("E111", "E100")
    assert "bomb" in err.message or "damaged" in err.message or "limit" in err.message


def test_a_part_that_unpacks_beyond_the_limit_is_stopped_while_streaming(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path, declared_mb=8, actual_mb=8)   # honest sizes, under the ratio floor
    err, seconds, peak = _refused_fast(lambda: check_workbook(bomb, limits=Limits(max_expanded_bytes=4 << 20)))
    assert err.code == "E111" and "limit of 4.0 MB" in err.message and "PLANCELL_MAX_EXPANDED_MB" in err.message
    assert seconds < 1.0 and peak < 32 << 20


@pytest.mark.parametrize(("part", "encoding"), [("xl/worksheets/sheet1.xml", "utf-8"), ("xl/styles.xml", "utf-8"),
                                                ("[Content_Types].xml", "utf-8"),
                                                ("xl/worksheets/sheet1.xml", "utf-16")])
def test_an_xml_entity_bomb_is_refused_before_any_parser(tmp_path: Path, part: str, encoding: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _entity_bomb(tmp_path, part=part, encoding=encoding)

    def no_parsing(*a: object, **k: object) -> None:
        raise AssertionError("openpyxl must not open a refused file")
    monkeypatch.setattr(openpyxl, "load_workbook", no_parsing)
    for fn in (lambda: check_workbook(bomb), lambda: read_tables(bomb), lambda: FileBook(bomb).tables()):
        err, seconds, peak = _refused_fast(fn)
        assert err.code == "E111" and "entit" in err.message and part in err.message
        assert seconds < 1.0 and peak < 32 << 20


def test_the_calculation_server_refuses_an_uploaded_bomb(tmp_path: Path) -> None:
    from addin.server import _read_upload

    data = _entity_bomb(tmp_path).read_bytes()
    err, seconds, _ = _refused_fast(lambda: _read_upload(data, "upload.xlsx", 10 << 20))
    assert err.code == "E111" and "upload.xlsx" in err.message and seconds < 1.0


def test_a_file_over_the_size_limit_says_its_size_the_limit_and_the_fix(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    book = _book(tmp_path / "big.xlsx", rows=2000)
    monkeypatch.setenv("PLANCELL_MAX_FILE_MB", "0.01")
    err, seconds, _ = _refused_fast(lambda: read_tables(book))
    assert err.code == "E111" and seconds < 1.0
    assert f"the file is {book.stat().st_size / 1024:,.0f} KB, more than the limit of 10 KB" in err.message
    assert "PLANCELL_MAX_FILE_MB" in err.message
    assert "delete sheets" in err.problems[0].fix
    monkeypatch.setenv("PLANCELL_MAX_FILE_MB", "50")
    assert "Sales" not in read_tables(book)  # a plain range, no table: read, not refused


def test_cells_are_counted_and_a_workbook_over_the_limit_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    book = _book(tmp_path / "cells.xlsx", rows=300)          # 301 rows x 3 cells
    report = check_workbook(book)
    assert report.cells == 301 * 3
    err, seconds, _ = _refused_fast(lambda: check_workbook(book, limits=Limits(max_cells=500)))
    assert seconds < 1.0 and "500" in err.message and "PLANCELL_MAX_CELLS" in err.problems[0].fix
    monkeypatch.setenv("PLANCELL_MAX_CELLS", "500")
    assert limits_from_env().max_cells == 500
    with pytest.raises(InputError, match="cells"):
        FileBook(book).tables()


def test_a_planners_template_passes(tmp_path: Path) -> None:
    from addin.templates import write_template

    path = write_template(tmp_path / "Plancell Planner.xlsx")
    report = check_workbook(path)
    assert report.members > 5 and report.cells > 0
    assert {"Sales", "Items", "Drivers", "Settings"} <= set(read_tables(path))


@pytest.mark.parametrize(("content", "says"), [
    (b"", "empty"),
    (b"Date,SKU,Qty\n2024-01-01,A,3\n", "CSV"),
    ("Date\tSKU\tQty\n2024-01-01\tA\t3\n".encode("utf-16"), "CSV"),
    (b"<html><body><table><tr><td>1</td></tr></table></body></html>", "web page"),
    (b"%PDF-1.4\n", "PDF"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600) + "EncryptedPackage".encode("utf-16-le"), "password"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600) + "Workbook".encode("utf-16-le"), "97-2003"),
    (b"PK\x03\x04" + bytes(300), "damaged"),
])
def test_files_that_are_not_workbooks_are_named_for_what_they_are(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "book.xlsx"
    path.write_bytes(content)
    err, _, _ = _refused_fast(lambda: read_tables(path))
    assert says in err.message and "Traceback" not in err.message
    assert err.problems and err.problems[0].fix and err.problems[0].table == "book.xlsx"

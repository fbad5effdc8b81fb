"""Refuse workbook files that are not workbooks, too large, or built to exhaust memory.

:func:`check_workbook` runs before openpyxl (or anything else) parses a file the planner
gives us. It only reads the zip directory and streams the XML parts in small chunks, so a
hostile or simply enormous file is refused in well under a second with constant memory:

* the file size and the number of cells (counted while streaming the sheets) against
  :class:`Limits` (defaults below, raised with the environment variables
  ``PLANCELL_MAX_FILE_MB``, ``PLANCELL_MAX_CELLS`` and ``PLANCELL_MAX_EXPANDED_MB``);
* zip bombs: members whose declared or actual unpacked size, or compression ratio, is absurd;
* XML entity bombs: a ``<!DOCTYPE`` or ``<!ENTITY`` declaration in any part. OOXML never
  needs one, so the raw bytes are scanned (in UTF-8 and UTF-16) instead of trusting a parser;
* files that are not .xlsx at all: password-protected (encrypted OOXML is an OLE compound
  file, not a zip), old .xls, CSV or HTML saved with an .xlsx name, empty or damaged files.

Every refusal is an :class:`~engine.errors.InputError` (code E111 for limits and unsafe
files, E100 for files that are not workbooks) saying what was found, the limit, and the fix.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from engine.errors import InputError, Problem

__all__ = ["Limits", "GuardReport", "check_workbook", "limits_from_env"]

_log = logging.getLogger(__name__)

_MB = 2**20
_CHUNK = _MB
#: Parts that are images or binary blobs: never parsed as XML by openpyxl.
_BINARY = re.compile(r"\.(png|jpe?g|gif|bmp|tiff?|emf|wmf|ico|svg|bin|wdp|jfif)$", re.IGNORECASE)
_SHEET_PART = re.compile(r"(^|/)worksheets/[^/]+\.xml$", re.IGNORECASE)
_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_DTD_MARKERS = tuple(m.encode(enc) for m in ("<!doctype", "<!entity") for enc in ("utf-8", "utf-16-le", "utf-16-be"))
_DTD_OVERLAP = max(len(m) for m in _DTD_MARKERS) - 1
_CELL_TAGS = (b"<c ", b"<c>", b"<c/")  # all 3 bytes long: see _scan_part


@dataclass(frozen=True)
class Limits:
    """What Plancell agrees to open. Defaults fit a planner's workbook with a few million cells."""

    max_file_bytes: int = 100 * _MB
    max_cells: int = 5_000_000
    max_expanded_bytes: int = 1024 * _MB   # all parts unpacked
    max_ratio: float = 500.0               # unpacked / packed size of one part (deflate tops out near 1032) ...
    ratio_floor: int = 16 * _MB            # ... checked for parts larger than this
    max_members: int = 10_000


@dataclass(frozen=True)
class GuardReport:
    """What the guard saw in a file it accepted."""

    file_bytes: int
    expanded_bytes: int
    cells: int
    members: int


def limits_from_env(base: Limits | None = None) -> Limits:
    """``base`` (default :class:`Limits`) with the PLANCELL_MAX_* environment variables applied."""
    base = base or Limits()
    values = {"max_file_bytes": base.max_file_bytes, "max_cells": base.max_cells,
              "max_expanded_bytes": base.max_expanded_bytes}
    for var, key, scale in (("PLANCELL_MAX_FILE_MB", "max_file_bytes", _MB), ("PLANCELL_MAX_CELLS", "max_cells", 1),
                            ("PLANCELL_MAX_EXPANDED_MB", "max_expanded_bytes", _MB)):
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        try:
            x = float(raw)
        except ValueError:
            _log.warning("ignoring %s=%r: not a number", var, raw)
            continue
        if x > 0:
            values[key] = int(x * scale)
    return Limits(max_file_bytes=values["max_file_bytes"], max_cells=values["max_cells"],
                  max_expanded_bytes=values["max_expanded_bytes"], max_ratio=base.max_ratio,
                  ratio_floor=base.ratio_floor, max_members=base.max_members)


def _mb(n: float) -> str:
    if n < _MB:
        return f"{n / 1024:,.0f} KB"
    return f"{n / _MB:,.1f} MB" if n < 10 * _MB else f"{n / _MB:,.0f} MB"


def _refuse(name: str, why: str, fix: str, *, code: str = "E111", value: object = None) -> InputError:
    return InputError(f"Cannot open {name}: {why}. Fix: {fix}.",
                      [Problem(name, why, fix, value=value, code=code)], code=code)


def _not_a_workbook(name: str, what: str, fix: str) -> InputError:
    return _refuse(name, f"it is {what}, not an Excel workbook (.xlsx)", fix, code="E100")


_SAVE_AS = "open it in Excel and save it as Excel Workbook (.xlsx), then run again"


def check_workbook(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
                   limits: Limits | None = None) -> GuardReport:
    """Refuse ``source`` (a path or the file's bytes) unless it is a plain .xlsx/.xlsm within limits.

    ``limits`` defaults to :func:`limits_from_env`. Reads at most one chunk of each part at
    a time; never hands the file to an XML parser.
    """
    lim = limits or limits_from_env()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "the workbook"
        size = len(data)
        opener = lambda: io.BytesIO(data)  # noqa: E731 - one-line factory
    else:
        path = Path(source)
        name = name or path.name
        try:
            size = path.stat().st_size
        except OSError:
            return GuardReport(0, 0, 0, 0)  # missing/unreadable: the reader says so with its own message
        if not path.is_file():
            return GuardReport(0, 0, 0, 0)
        opener = lambda: open(path, "rb")  # noqa: E731
    if size > lim.max_file_bytes:
        raise _refuse(
            name, f"the file is {_mb(size)}, more than the limit of {_mb(lim.max_file_bytes)}",
            "delete sheets or old history you no longer need (or keep them in another workbook), or raise the "
            f"limit with the environment variable PLANCELL_MAX_FILE_MB (e.g. PLANCELL_MAX_FILE_MB="
            f"{max(2 * lim.max_file_bytes // _MB, size // _MB + 1)})", value=size)
    if size == 0:
        raise _refuse(name, "the file is empty (0 bytes)", "save the workbook again from Excel", code="E100")
    with opener() as fh:
        head = fh.read(4096)
        if head.startswith(_CFB_MAGIC):
            _refuse_compound_file(fh, name, size)
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise _what_else(name, head)
        fh.seek(0)
        return _check_zip(fh, name, size, lim)


def _refuse_compound_file(fh: IO[bytes], name: str, size: int) -> None:
    """An OLE compound file: an encrypted (password-protected) OOXML workbook or an old .xls."""
    fh.seek(0)
    tail = b""
    while chunk := fh.read(_CHUNK):
        if _ENCRYPTED_STREAM in tail + chunk:
            raise _refuse(name, "the workbook is password-protected (encrypted), so it cannot be read",
                          "open it in Excel, remove the password (File > Info > Protect Workbook > Encrypt with "
                          "Password: clear it), save, and run again", code="E100")
        tail = chunk[-len(_ENCRYPTED_STREAM):]
    raise _not_a_workbook(name, "an old Excel 97-2003 workbook (.xls) or another Office file", _SAVE_AS)


def _what_else(name: str, head: bytes) -> InputError:
    text = head.lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n").lower()
    if head.startswith(b"%PDF"):
        return _not_a_workbook(name, "a PDF document", "export the data from its source as .xlsx")
    if text.startswith((b"<html", b"<!doctype html", b"<table", b"<?xml", b"<meta")) or b"<html" in text[:512]:
        return _not_a_workbook(name, "a web page (HTML) or XML file saved with an Excel name", _SAVE_AS)
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            sample = head.decode("utf-16") if head[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        except UnicodeDecodeError:
            sample = ""
    if sample and sum(ch.isprintable() or ch in "\r\n\t" for ch in sample) >= 0.95 * len(sample):
        if any(sep in sample for sep in (",", ";", "\t")):
            return _not_a_workbook(name, "a CSV (text) file", "open it in Excel and save it as Excel Workbook "
                                   "(.xlsx), or give it its .csv name and use plancell backtest")
        return _not_a_workbook(name, "a text file", _SAVE_AS)
    return _not_a_workbook(name, "not a file Excel saved as .xlsx (unknown format)", _SAVE_AS)


def _eocd_entries(fh: IO[bytes], size: int) -> int | None:
    """Number of entries in the zip's end-of-central-directory record (None if not found)."""
    back = min(size, 65536 + 22)
    fh.seek(size - back)
    tail = fh.read(back)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    return int(struct.unpack("<H", tail[at + 10:at + 12])[0])


def _check_zip(fh: IO[bytes], name: str, size: int, lim: Limits) -> GuardReport:
    damaged = ("the file is damaged (an incomplete or broken .xlsx)",
               "open it in Excel (it may offer to repair it), save it as .xlsx and run again")
    entries = _eocd_entries(fh, size)
    if entries is not None and entries != 0xFFFF and entries > lim.max_members:
        raise _refuse(name, f"the file holds {entries:,} parts, more than the {lim.max_members:,} a workbook has",
                      "save the workbook again from Excel", value=entries)
    fh.seek(0)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise _refuse(name, *damaged, code="E100") from exc
    with zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
        if len(infos) > lim.max_members:
            raise _refuse(name, f"the file holds {len(infos):,} parts, more than a workbook has",
                          "save the workbook again from Excel", value=len(infos))
        if "[Content_Types].xml" not in names:
            if "mimetype" in names and "content.xml" in names:
                raise _not_a_workbook(name, "an OpenDocument spreadsheet (.ods)", _SAVE_AS)
            if "word/document.xml" in names:
                raise _not_a_workbook(name, "a Word document", "put the tables in an Excel workbook")
            raise _not_a_workbook(name, "a zip archive", "unzip it, or give the .xlsx file itself")
        if "word/document.xml" in names or "ppt/presentation.xml" in names:
            raise _not_a_workbook(name, "a Word or PowerPoint file", "put the tables in an Excel workbook")
        declared = 0
        for info in infos:
            if info.flag_bits & 0x1:
                raise _refuse(name, f"part {info.filename} is encrypted", "remove the password in Excel and save "
                              "the workbook again", code="E100")
            declared += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > lim.ratio_floor and ratio > lim.max_ratio:
                raise _bomb(name, f"part {info.filename} unpacks {ratio:,.0f} times larger "
                                  f"({_mb(info.file_size)} from {_mb(info.compress_size)})", value=info.filename)
        if declared > lim.max_expanded_bytes:
            raise _too_big_unpacked(name, declared, lim)
        expanded = 0
        cells = 0
        for info in infos:
            if info.is_dir() or _BINARY.search(info.filename):
                continue
            is_sheet = bool(_SHEET_PART.search(info.filename))
            try:
                for chunk_cells, n in _scan_part(zf, info, name, lim.max_expanded_bytes - expanded, is_sheet):
                    expanded += n
                    cells += chunk_cells
                    if cells > lim.max_cells:
                        raise _too_many_cells(name, cells, lim)
            except InputError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
                raise _refuse(name, *damaged, code="E100") from exc
            except Exception as exc:  # zlib.error and friends: a broken stream is a damaged file
                raise _refuse(name, *damaged, code="E100") from exc
    _log.debug("guard: %s ok (%d bytes, %d unpacked, %d cells)", name, size, expanded, cells)
    return GuardReport(size, expanded, cells, len(infos))


def _scan_part(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, budget: int,
               is_sheet: bool) -> Iterator[tuple[int, int]]:
    """Stream one part: refuse DTD/ENTITY declarations and runaway sizes; yield (cells, bytes) per chunk."""
    tail = b""
    seen = 0
    with zf.open(info) as part:
        while chunk := part.read(_CHUNK):
            seen += len(chunk)
            if seen > budget:
                raise _bomb(name, f"part {info.filename} unpacks to more than the limit of all parts together",
                            value=info.filename)
            buf = (tail + chunk).lower()
            if any(m in buf for m in _DTD_MARKERS):
                raise _refuse(name, f"part {info.filename} declares a DTD or XML entities, which Excel never "
                                    "writes (an XML entity bomb?)",
                              "save the workbook again from Excel; do not open files of unknown origin",
                              value=info.filename)
            n_cells = 0
            if is_sheet:
                # A 3-byte tag cut by the chunk edge starts in the last 2 bytes of the previous chunk.
                cbuf = tail[-2:] + chunk
                n_cells = sum(cbuf.count(t) for t in _CELL_TAGS)
            tail = chunk[-_DTD_OVERLAP:]
            yield n_cells, len(chunk)


def _bomb(name: str, why: str, value: object = None) -> InputError:
    return _refuse(name, f"{why}: this looks like a zip bomb, not a workbook",
                   "save the workbook again from Excel; do not open files of unknown origin", value=value)


def _too_big_unpacked(name: str, n: int, lim: Limits) -> InputError:
    return _refuse(
        name, f"the workbook unpacks to {_mb(n)}, more than the limit of {_mb(lim.max_expanded_bytes)}",
        "delete sheets or old history you no longer need (or keep them in another workbook), or raise the limit "
        f"with the environment variable PLANCELL_MAX_EXPANDED_MB (e.g. {2 * lim.max_expanded_bytes // _MB})",
        value=n)


def _too_many_cells(name: str, n: int, lim: Limits) -> InputError:
    return _refuse(
        name, f"the workbook has more cells than the limit of {lim.max_cells:,} (counted {n:,} before stopping)",
        "delete sheets or old history you no longer need (or keep them in another workbook), or raise the limit "
        f"with the environment variable PLANCELL_MAX_CELLS (e.g. PLANCELL_MAX_CELLS={2 * lim.max_cells})",
        value=n)

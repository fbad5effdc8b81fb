"""Big output tables written into a planner's workbook at stream speed.

openpyxl keeps a Python object per cell and serialises each through lxml: about 15 µs a
cell, so a 120,000-row plan of a dozen columns takes 20-30 s to write into an existing
workbook. Output tables hold plain values in a few known number formats, so their rows need
none of that machinery. :func:`defer_rows` registers a table's columns on the worksheet
instead of creating cells; :func:`save_workbook` saves through openpyxl's own writer (so
every other sheet, the styles, tables, charts, defined names and a VBA project are written
exactly as before) with a placeholder where the deferred rows go, and streams the rows'
XML into that sheet's zip part.

The XML is the XML openpyxl writes for the same cells: ``<c r= s= t=>`` with the same style
ids, numbers as ``%.16g``, dates as serials, booleans as 1/0, text as inline strings with
``xml:space="preserve"`` when it has outer spaces. tests/test_sheetxml.py checks both writers
give the same cells.

Loading is the other half: openpyxl parses every cell of every sheet, including the previous
refresh's 120,000-row Plan that is about to be replaced and the published snapshots that are
only carried along. :func:`load_workbook` parses everything but the cell data of the sheets it
can (no merged cells, comments or hyperlinks, which openpyxl ties to cell objects) and keeps
their ``<sheetData>`` as raw XML; :func:`save_workbook` writes it back verbatim, with style
ids mapped to the saved stylesheet and shared strings made inline (openpyxl writes no
shared-string table). A sheet that is replaced is never parsed at all.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from zipfile import ZIP_DEFLATED, ZipFile

__all__ = ["defer_rows", "save_workbook", "deferred_rows", "load_workbook", "raw_sheets", "head_rows",
           "shared_strings"]

_ATTR = "_plancell_deferred"
_MARK = "plancell-rows-{}"
_CHUNK = 4096   # rows per string join: bounded memory, few writes
_LEVEL = 1   # deflate's fastest level: a third of the time of the default (6) for files ~10% larger

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


@dataclass
class _Block:
    first: int                      # 1-based Excel row of the first deferred row
    first_col: int                  # 1-based column of the first column
    columns: list[list[Any]]        # cell values, one list per column (None: no cell)
    styles: list[int | None]        # style id per column (its number format), None: unstyled
    date_style: int                 # style id for a date in a column without a number format

    @property
    def last(self) -> int:
        return self.first + (len(self.columns[0]) if self.columns else 0) - 1


_RAW_ATTR = "_plancell_raw"
_RAW_MARK = "plancell-raw"


@dataclass
class _Raw:
    """A sheet's cell data kept as the file had it."""

    data: bytes                 # what was between <sheetData> and </sheetData>
    dimension: str | None       # the sheet's <dimension ref>
    shared: list[Any]           # the file's shared strings (cells with t="s" index them)


def raw_sheets(wb: Any) -> list[str]:
    """Titles of the sheets whose cells were kept as raw XML by :func:`load_workbook`."""
    return [ws.title for ws in wb.worksheets if getattr(ws, _RAW_ATTR, None) is not None]


def _style_id(ws: Any, number_format: str) -> int:
    """The workbook's style id for ``number_format`` (registered as a cell would register it)."""
    from openpyxl.cell.cell import Cell

    scratch = Cell(ws, row=1, column=1)   # never attached to the sheet
    scratch.number_format = number_format
    return int(scratch.style_id)


def defer_rows(ws: Any, first_row: int, columns: Sequence[list[Any]], number_formats: Sequence[str | None],
               *, date_format: str, first_col: int = 1) -> None:
    """Register table rows to be streamed when the workbook is saved with :func:`save_workbook`.

    ``first_row`` and ``first_col`` are 1-based; ``columns`` hold cell values as
    :func:`addin.sheets.cell_value` gives them (None, bool, float, datetime or text already
    neutralised); ``number_formats`` one per column (None: General, except dates, which get
    ``date_format``). The rows must not overlap cells written through openpyxl.
    """
    if not columns or not len(columns[0]):
        return
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError("deferred columns must have the same length")
    memo: dict[str, int] = {}

    def style(fmt: str | None) -> int | None:
        if fmt is None:
            return None
        if fmt not in memo:
            memo[fmt] = _style_id(ws, fmt)
        return memo[fmt]

    block = _Block(first_row, first_col, [list(c) for c in columns], [style(f) for f in number_formats],
                   style(date_format) or 0)
    getattr(ws, _ATTR, None) or setattr(ws, _ATTR, [])
    getattr(ws, _ATTR).append(block)


def deferred_rows(ws: Any) -> int:
    """How many rows of ``ws`` wait for :func:`save_workbook` (0: none)."""
    return sum(len(b.columns[0]) for b in getattr(ws, _ATTR, None) or ())


# --------------------------------------------------------------------------- cell XML


def _text_cell(ref: str, s: str, value: str, memo: dict[str, str]) -> str:
    try:
        body = memo[value]
    except KeyError:
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, IllegalCharacterError

        text = value[:32767]   # Excel's limit; openpyxl truncates the same way
        if ILLEGAL_CHARACTERS_RE.search(text):
            raise IllegalCharacterError(f"{text} cannot be used in worksheets.")
        space = ' xml:space="preserve"' if text != text.strip() else ""
        body = f'<is><t{space}>{text.translate(_ESCAPES)}</t></is>'
        memo[value] = body
    return f'<c r="{ref}"{s} t="inlineStr">{body}</c>'


def _column_xml(values: list[Any], letter: str, rows: range, style: int | None, date_style: int,
                epoch: _dt.datetime, texts: dict[str, str]) -> list[str]:
    """Each value's ``<c>`` element ('' where there is no cell), as openpyxl writes it."""
    from openpyxl.utils.datetime import to_excel

    s = f' s="{style}"' if style is not None else ""
    ds = s or f' s="{date_style}"'
    serials: dict[_dt.datetime, str] = {}   # a plan has a dozen distinct periods in 100,000 rows
    out: list[str] = []
    append = out.append
    for r, v in zip(rows, values):
        t = type(v)
        if t is float:
            append(f'<c r="{letter}{r}"{s} t="n"><v>{"%.16g" % v}</v></c>')
        elif v is None:
            append("")
        elif t is str:
            append(_text_cell(f"{letter}{r}", s, v, texts))
        elif t is bool:
            append(f'<c r="{letter}{r}"{s} t="b"><v>{int(v)}</v></c>')
        elif isinstance(v, _dt.datetime):
            serial = serials.get(v)
            if serial is None:
                serial = serials[v] = "%.16g" % to_excel(v, epoch)
            append(f'<c r="{letter}{r}"{ds} t="n"><v>{serial}</v></c>')
        elif isinstance(v, (int, float)):
            append(f'<c r="{letter}{r}"{s} t="n"><v>{"%.16g" % v}</v></c>')
        elif isinstance(v, str):
            append(_text_cell(f"{letter}{r}", s, str(v), texts))
        else:
            raise TypeError(f"cannot write a {t.__name__} cell ({v!r}); convert it with addin.sheets.cell_value")
    return out


def _rows_xml(block: _Block, epoch: _dt.datetime) -> Iterator[str]:
    from openpyxl.utils import get_column_letter

    n = len(block.columns[0])
    letters = [get_column_letter(block.first_col + j) for j in range(len(block.columns))]
    texts: dict[str, str] = {}
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = range(block.first + start, block.first + stop)
        cols = [_column_xml(col[start:stop], letter, rows, style, block.date_style, epoch, texts)
                for col, letter, style in zip(block.columns, letters, block.styles)]
        parts = []
        for r, cells in zip(rows, zip(*cols)):
            body = "".join(cells)
            if body:   # a row without a value gets no row element, as with openpyxl
                parts.append(f'<row r="{r}">{body}</row>')
        yield "".join(parts)


# --------------------------------------------------------------------------- the writers


def _writers() -> tuple[type, type]:
    """openpyxl's workbook and worksheet writers, extended for deferred rows (built lazily:
    importing this module must not import openpyxl)."""
    from lxml.etree import Comment
    from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
    from openpyxl.utils.cell import get_column_letter, range_boundaries
    from openpyxl.worksheet._writer import WorksheetWriter
    from openpyxl.worksheet.dimensions import SheetDimension
    from openpyxl.writer.excel import ExcelWriter

    from engine.errors import PlancellBug

    class SheetWriter(WorksheetWriter):  # type: ignore[misc]
        def __init__(self, ws: Any, blocks: list[_Block], raw: _Raw | None = None) -> None:
            super().__init__(ws)
            self.blocks = sorted(blocks, key=lambda b: b.first)
            self.raw = raw

        def write_dimensions(self) -> None:
            if self.raw is not None:
                if self.raw.dimension:
                    self.xf.send(SheetDimension(self.raw.dimension).to_tree())
                return
            min_col, min_row, max_col, max_row = range_boundaries(self.ws.calculate_dimension())
            for b in self.blocks:
                min_row, max_row = min(min_row, b.first), max(max_row, b.last)
                min_col, max_col = min(min_col, b.first_col), max(max_col, b.first_col + len(b.columns) - 1)
            ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{max_row}"
            self.xf.send(SheetDimension(ref).to_tree())

        def write_rows(self) -> None:
            xf = self.xf.send(True)
            if self.raw is not None:
                if self.ws._cells or self.blocks:
                    raise PlancellBug(f"sheet {self.ws.title!r} was loaded as raw rows and then written to; "
                                      "replace the whole sheet instead")
                with xf.element("sheetData"):
                    xf.write(Comment(_RAW_MARK))
                self.xf.send(None)
                return
            pending = list(enumerate(self.blocks))
            with xf.element("sheetData"):
                for row_idx, row in self.rows():
                    while pending and pending[0][1].first < row_idx:
                        k, b = pending.pop(0)
                        if row_idx <= b.last:
                            raise PlancellBug(f"row {row_idx} of {self.ws.title!r} holds cells and deferred rows")
                        xf.write(Comment(_MARK.format(k)))
                    self.write_row(xf, row, row_idx)
                for k, _ in pending:
                    xf.write(Comment(_MARK.format(k)))
            self.xf.send(None)

    class BookWriter(ExcelWriter):  # type: ignore[misc]
        def write_worksheet(self, ws: Any) -> None:
            blocks = getattr(ws, _ATTR, None) or []
            raw = getattr(ws, _RAW_ATTR, None)
            if (not blocks and raw is None) or self.workbook.write_only:
                return super().write_worksheet(ws)
            # as ExcelWriter.write_worksheet (openpyxl 3.1), with the rows spliced in
            ws._drawing = SpreadsheetDrawing()
            ws._drawing.charts = ws._charts
            ws._drawing.images = ws._images
            writer = SheetWriter(ws, blocks, raw)
            writer.write()
            ws._rels = writer._rels
            if raw is not None:
                self._splice_raw(writer.out, raw, ws.path[1:])
            else:
                self._splice(writer.out, writer.blocks, ws.path[1:])
            self.manifest.append(ws)
            writer.cleanup()

        def _splice_raw(self, source: str, raw: _Raw, arcname: str) -> None:
            with open(source, "rb") as fh:
                xml = fh.read()
            head, sep, tail = xml.partition(f"<!--{_RAW_MARK}-->".encode())
            if not sep:
                raise PlancellBug(f"raw rows of {arcname}: no placeholder")
            with self._archive.open(arcname, "w", force_zip64=True) as out:
                out.write(head)
                out.write(_raw_xml(raw, self.workbook))
                out.write(tail)

        def _splice(self, source: str, blocks: list[_Block], arcname: str) -> None:
            with open(source, "rb") as fh:
                xml = fh.read()
            pieces = re.split(rb"<!--plancell-rows-(\d+)-->", xml)
            if len(pieces) != 2 * len(blocks) + 1:
                raise PlancellBug(f"deferred rows of {arcname}: {len(pieces) // 2} placeholders for {len(blocks)} tables")
            epoch = self.workbook.epoch
            with self._archive.open(arcname, "w", force_zip64=True) as out:
                out.write(pieces[0])
                for i in range(1, len(pieces), 2):
                    for chunk in _rows_xml(blocks[int(pieces[i])], epoch):
                        out.write(chunk.encode("utf-8"))
                    out.write(pieces[i + 1])

    return BookWriter, SheetWriter


def save_workbook(wb: Any, path: Any) -> None:
    """``wb.save(path)``, streaming the rows registered with :func:`defer_rows`."""
    if getattr(wb, "read_only", False):
        raise TypeError("cannot save a read-only workbook")
    book_writer, _ = _writers()
    archive = ZipFile(path, "w", ZIP_DEFLATED, allowZip64=True, compresslevel=_LEVEL)
    wb.properties.modified = _dt.datetime.now(tz=_dt.timezone.utc).replace(tzinfo=None)
    book_writer(wb, archive).save()


# --------------------------------------------------------------------------- raw sheets

_SHARED_CELL = re.compile(rb'<c\b([^>]*?)\s+t="s"([^>]*)><v>(\d+)</v></c>')
_STYLE_ATTR = re.compile(rb'(<(?:c|row)\b[^>]*?\ss=")(\d+)"')


def _raw_xml(raw: _Raw, wb: Any) -> bytes:
    """The kept cell data, consistent with the workbook as it is saved now."""
    data = raw.data
    if b't="s"' in data:
        shared = raw.shared

        def inline(m: re.Match[bytes]) -> bytes:
            i = int(m.group(3))
            text = str(shared[i]) if i < len(shared) else ""
            space = ' xml:space="preserve"' if text != text.strip() else ""
            body = f'<is><t{space}>{text.translate(_ESCAPES)}</t></is>'.encode()
            return b"<c" + m.group(1) + m.group(2) + b' t="inlineStr">' + body + b"</c>"

        data = _SHARED_CELL.sub(inline, data)
    styles = wb._cell_styles
    mapping = {}
    for n in {int(x) for _, x in _STYLE_ATTR.findall(data)}:
        mapping[n] = styles.add(styles[n]) if n < len(styles) else 0
    if any(k != v for k, v in mapping.items()):
        data = _STYLE_ATTR.sub(lambda m: m.group(1) + str(mapping[int(m.group(2))]).encode() + b'"', data)
    return data


_INLINE_TEXT = re.compile(rb'(<c\b[^>]*?)t="inlineStr"([^>]*)><is><t(?: xml:space="preserve")?>([^<]+)</t></is></c>')
_DIMENSION = re.compile(rb'<dimension ref="([^"]+)"')
# Sheet features openpyxl attaches to cell objects (so the cells must be parsed), cell
# metadata (rich values, dynamic arrays: cm=, vm=) it cannot carry either way,
_NEEDS_CELLS = (b"<mergeCell", b"<hyperlink", b"<legacyDrawing")
# and a shared-string cell that also holds a formula, which the inlining above does not rewrite
_SHARED_FORMULA_CELL = re.compile(rb't="s"[^>]*><f')


class _Archive:
    """A zip archive that hands openpyxl worksheets without their cell data (kept aside)."""

    def __init__(self, archive: Any, keep: Any) -> None:
        self._archive = archive
        self._keep = keep
        self.kept: dict[str, tuple[bytes, str | None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._archive, name)

    @staticmethod
    def _plain(xml: bytes, start: int, end: int) -> bool:
        """No sheet feature tied to cell objects, no cell metadata (substring searches: a
        regex over 70 MB of rows costs half a second)."""
        if any(xml.find(k, 0, start) >= 0 or xml.find(k, end) >= 0 for k in _NEEDS_CELLS):
            return False
        if xml.find(b' cm="', start, end) >= 0 or xml.find(b' vm="', start, end) >= 0:
            return False
        if xml.find(b't="s"', start, end) >= 0 and xml.find(b"<f", start, end) >= 0:
            return _SHARED_FORMULA_CELL.search(xml, start, end) is None
        return True

    def open(self, name: Any, *args: Any, **kwargs: Any) -> Any:
        from io import BytesIO

        if isinstance(name, str) and re.fullmatch(r"xl/worksheets/[^/]+\.xml", name) and not args:
            xml = self._archive.read(name)
            start, end = xml.find(b"<sheetData>"), xml.rfind(b"</sheetData>")
            if start >= 0 and end > start and self._plain(xml, start, end) and self._keep(self._archive, name):
                head, tail = xml[:start], xml[end + len(b"</sheetData>"):]
                dim = _DIMENSION.search(head)
                self.kept[name] = (xml[start + len(b"<sheetData>"):end], dim.group(1).decode() if dim else None)
                return BytesIO(head + b"<sheetData/>" + tail)
            if b'"inlineStr"' in xml:
                # openpyxl reads an inline string through its rich-text model (~15 µs a cell);
                # a plain one is the same text as a formula-string cell, read in ~1 µs
                xml = _INLINE_TEXT.sub(rb'\1t="str"\2><v>\3</v></c>', xml)
            return BytesIO(xml)
        return self._archive.open(name, *args, **kwargs)


def _sheet_rels(archive: Any, part: str) -> bytes:
    """A worksheet part's relationships file (b"" when it has none)."""
    rels = part.replace("xl/worksheets/", "xl/worksheets/_rels/") + ".rels"
    return archive.read(rels) if rels in archive.namelist() else b""


def _table_names(archive: Any, rels: bytes) -> list[str]:
    """Names of the Excel tables a worksheet's relationships point to."""
    import posixpath

    out = []
    for target in re.findall(rb'Type="[^"]*/table"[^>]*Target="([^"]+)"|Target="([^"]+)"[^>]*Type="[^"]*/table"',
                             rels):
        t = (target[0] or target[1]).decode()
        path = t.lstrip("/") if t.startswith("/") else posixpath.normpath(posixpath.join("xl/worksheets", t))
        if path in archive.namelist():
            m = re.search(rb'displayName="([^"]*)"', archive.read(path))
            out.append(m.group(1).decode() if m else "")
    return out


def shared_strings(src: Any) -> list[str]:
    """The shared-string table as openpyxl's ``read_string_table`` reads it (plain text of
    each item: its text and its runs' text, phonetic runs left out), through lxml: about
    5x faster, which matters for a sheet saved by Excel with 100,000 distinct texts."""
    from lxml import etree

    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    t_tag, r_tag = ns + "t", ns + "r"
    out: list[str] = []
    for _, si in etree.iterparse(src, tag=ns + "si", resolve_entities=False, no_network=True, huge_tree=True):
        parts = []
        for child in si:
            if child.tag == t_tag:
                parts.append(child.text or "")
            elif child.tag == r_tag:
                for t in child.iterchildren(t_tag):
                    parts.append(t.text or "")
        out.append("".join(parts).replace("x005F_", ""))
        si.clear()
    return out


def load_workbook(path: Any, *, data_only: bool = False, keep_vba: bool = False, keep_links: bool = True,
                  parse: Any = None) -> Any:
    """``openpyxl.load_workbook`` that keeps the cell data of every sheet it can as raw XML.

    ``parse(table_names) -> bool`` says, from the names of the Excel tables on a sheet, that
    its cells must be parsed anyway (e.g. the planner's input tables, read cell by cell);
    sheets with merged cells, comments or hyperlinks are always parsed.
    """
    from openpyxl.reader.excel import ExcelReader

    class Reader(ExcelReader):  # type: ignore[misc]
        def read_strings(self) -> None:
            from openpyxl.xml.constants import SHARED_STRINGS

            ct = self.package.find(SHARED_STRINGS)
            if ct is not None:
                with self.archive.open(ct.PartName[1:]) as src:
                    self.shared_strings = shared_strings(src)

        def read_worksheets(self) -> None:
            def keep(archive: Any, part: str) -> bool:
                rels = _sheet_rels(archive, part)
                return b"/comments" not in rels and not (parse and parse(_table_names(archive, rels)))

            real = self.archive
            self.archive = proxy = _Archive(real, keep)
            try:
                super().read_worksheets()
            finally:
                self.archive = real
            for sheet, rel in self.parser.find_sheets():
                kept = proxy.kept.get(rel.target)
                if kept is not None and sheet.name in self.wb.sheetnames:
                    data, dim = kept
                    setattr(self.wb[sheet.name], _RAW_ATTR, _Raw(data, dim, self.shared_strings))

    reader = Reader(path, False, keep_vba, data_only, keep_links, False)
    reader.read()
    return reader.wb


def head_rows(ws: Any, max_rows: int) -> list[tuple[Any, ...]]:
    """Cell values of the first ``max_rows`` rows of ``ws`` (raw or parsed), as
    ``ws.iter_rows(values_only=True)`` gives them, from column A."""
    raw = getattr(ws, _RAW_ATTR, None)
    if raw is None:
        return [tuple(r) for r in ws.iter_rows(min_row=1, max_row=max_rows, values_only=True)]
    from io import BytesIO

    from openpyxl.worksheet._reader import WorkSheetParser

    data = raw.data
    for m in re.finditer(rb'<row r="(\d+)"', data):
        if int(m.group(1)) > max_rows:
            data = data[:m.start()]
            break
    src = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
           + data + b"</sheetData></worksheet>")
    grid: dict[int, dict[int, Any]] = {}
    wb = ws.parent
    parser = WorkSheetParser(BytesIO(src), raw.shared, False, wb.epoch, wb._date_formats, wb._timedelta_formats)
    for _, row in parser.parse():
        for c in row:
            if c["row"] <= max_rows:
                grid.setdefault(c["row"], {})[c["column"]] = c["value"]
    if not grid:
        return []
    width = max(max(r) for r in grid.values())
    return [tuple(grid.get(r, {}).get(c) for c in range(1, width + 1)) for r in range(1, max(grid) + 1)]

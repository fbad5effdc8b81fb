"""Build and install ``plancell.xlam``, the Plancell Excel add-in.

The add-in starts from xlwings' own ribbon add-in template (``quickstart_addin_ribbon.xlam`` in
the xlwings package, so its VBA always matches the installed xlwings and its DLL). What ends up
where:

In ``plancell.xlam`` (written by :func:`build_addin`, on any OS):
  * ``customUI/customUI14.xml``: the Plancell tab (:mod:`addin.ribbon`), linked from
    ``_rels/.rels`` with the Office 2010 relationship type; the template's Office 2007
    ``customUI/customUI.xml`` is removed.
  * the ``plancell.conf`` sheet (the template's inactive ``_myaddin.conf``, renamed and filled):
    UDF Modules, Use UDF Server, Interpreter_Win, PYTHONPATH, ... read by xlwings' VBA.
  * ``xl/vbaProject.bin`` exactly as in the template: xlwings' module (with the template's
    ``PROJECT_NAME = "myaddin"``), its Dictionary class, and the template's ``RibbonMyAddin``.

Beside it, in ``plancell-vba/`` (a binary VBA project cannot be rewritten reliably without
Excel, so the build writes the modules as text):
  * ``xlwings.bas``: xlwings' custom add-in module with ``PROJECT_NAME = "plancell"``, so it
    reads the ``plancell.conf`` sheet; replaces the template's ``xlwings`` module.
  * ``PlancellRibbon.bas``: the one ribbon callback (from ``addin/vba/PlancellRibbon.bas``).
  * ``xlwings_udfs.bas``: the worksheet function wrappers from xlwings' own VBA generator.

:func:`install_addin` (Windows with Excel only) builds afresh, opens the .xlam in a hidden
Excel, removes ``RibbonMyAddin``, imports the three modules through Excel itself, registers
the functions' descriptions, saves, copies the add-in to the user's AddIns folder and ticks it
in File > Options > Add-ins. Until then the ribbon buttons and functions of a Linux-built
.xlam have no VBA behind them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import importlib.util
import io
import logging
import os
import shutil
import sys
import tempfile
import types
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterator, Sequence
from xml.sax.saxutils import escape

from engine.errors import InputError, PlancellBug, PlancellError, Problem

from . import ribbon

__all__ = [
    "XLAM_NAME",
    "PROJECT_NAME",
    "CONF_SHEET",
    "UDF_MODULES",
    "TEMPLATE_NAME",
    "CUSTOMUI14_PART",
    "CUSTOMUI14_REL_TYPE",
    "UdfInfo",
    "AddinBuild",
    "template_path",
    "default_interpreter",
    "conf_values",
    "xlwings_vba",
    "udf_wrappers_vba",
    "udf_infos",
    "build_addin",
    "install_addin",
]

_log = logging.getLogger(__name__)

XLAM_NAME = "plancell.xlam"
#: xlwings' VBA reads its settings from the sheet ``<PROJECT_NAME>.conf``.
PROJECT_NAME = "plancell"
CONF_SHEET = f"{PROJECT_NAME}.conf"
UDF_MODULES = "addin.udfs"
TEMPLATE_NAME = "quickstart_addin_ribbon.xlam"
CUSTOMUI14_PART = "customUI/customUI14.xml"
CUSTOMUI14_REL_TYPE = "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility"

# What the template brings and the build changes; checked so an xlwings upgrade that moves
# them fails the build loudly instead of shipping a half-configured add-in.
_TEMPLATE_CONF_SHEET = "_myaddin.conf"
_TEMPLATE_PROJECT_LINE = 'Public Const PROJECT_NAME As String = "myaddin"'
_TEMPLATE_RIBBON_MODULE = "RibbonMyAddin"
_OLD_CUSTOMUI_PART = "customUI/customUI.xml"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_VBA_DIR_SUFFIX = "-vba"
_UDF_MODULE_NAME = "xlwings_udfs"
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # entries carry no build time; docProps/core.xml records it


@dataclass(frozen=True)
class UdfInfo:
    """A worksheet function as Excel's Insert Function dialog describes it."""

    name: str
    description: str
    category: str
    args: tuple[tuple[str, str], ...]  # (name, description) in Excel's argument order


@dataclass(frozen=True)
class AddinBuild:
    """What :func:`build_addin` wrote."""

    xlam: Path
    vba_dir: Path
    modules: tuple[Path, ...]  # .bas files, in the order install imports them
    remove: tuple[str, ...]  # template VBA modules install removes first
    interpreter: str
    functions: tuple[UdfInfo, ...]


# --------------------------------------------------------------------------- settings


def template_path() -> Path:
    """xlwings' ribbon add-in template, shipped inside the xlwings package."""
    spec = importlib.util.find_spec("xlwings")
    if spec is None or spec.origin is None:
        raise PlancellBug("xlwings is not installed: reinstall plancell (pip install plancell)")
    path = Path(spec.origin).parent / TEMPLATE_NAME
    if not path.is_file():
        raise PlancellBug(f"xlwings ships no {TEMPLATE_NAME} at {path}; plancell expects xlwings 0.37")
    return path


def default_interpreter(executable: str | None = None, platform: str | None = None) -> str:
    """The Python that Excel should start: this one. On Windows ``pythonw.exe`` next to
    ``python.exe``, so no console window flashes up when Excel starts the UDF server."""
    executable = executable or sys.executable
    platform = platform or sys.platform
    if platform.startswith("win"):
        path = PureWindowsPath(executable)
        if path.name.lower() == "python.exe":
            return str(path.with_name("pythonw.exe"))
    return executable


def _conda(prefix: Path) -> tuple[str, str] | None:
    """(Conda Path, Conda Env) when ``prefix`` is a conda environment in the standard layout.
    xlwings then activates the environment before starting Python, which conda's DLLs need."""
    if not (prefix / "conda-meta").is_dir():
        return None
    if prefix.parent.name == "envs" and (prefix.parent.parent / "conda-meta").is_dir():
        return str(prefix.parent.parent), prefix.name
    if (prefix / "condabin").is_dir():
        return str(prefix), "base"
    return None


def conf_values(interpreter: str, pythonpath: str = "",
                conda: tuple[str, str] | None = None) -> list[tuple[str, str | bool]]:
    """Rows of the ``plancell.conf`` sheet (key in column A, value in column B), with the
    template's key spelling. In a conda environment xlwings wants the bare ``pythonw`` plus
    Conda Path/Env: it only activates the environment for that form."""
    return [
        ("Interpreter_Win", "pythonw" if conda else interpreter),
        ("Interpreter_Mac", ""),
        ("PYTHONPATH", pythonpath),
        ("Conda Path", conda[0] if conda else ""),
        ("Conda Env", conda[1] if conda else ""),
        ("UDF Modules", UDF_MODULES),
        ("Debug UDFs", False),
        ("Use UDF Server", True),
        ("Show Console", False),
        # A planner's folder holding e.g. an "engine.py" must not shadow Plancell's packages.
        ("ADD_WORKBOOK_TO_PYTHONPATH", False),
    ]


# --------------------------------------------------------------------------- VBA sources


def _crlf(text: str) -> str:
    # The VBA editor imports a module with bare LF line ends as one broken line.
    return "\r\n".join(text.splitlines()) + "\r\n"


def xlwings_vba() -> str:
    """xlwings' own custom add-in module, pointed at the ``plancell.conf`` sheet."""
    text = (template_path().parent / "xlwings_custom_addin.bas").read_text(encoding="ascii")
    if text.count(_TEMPLATE_PROJECT_LINE) != 1:
        raise PlancellBug("xlwings_custom_addin.bas no longer sets PROJECT_NAME as expected; "
                          "update addin/xlam.py for this xlwings version")
    text = text.replace(_TEMPLATE_PROJECT_LINE, f'Public Const PROJECT_NAME As String = "{PROJECT_NAME}"')
    return _crlf(text)


def _standin(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, "plancell build-time stand-in for a pywin32 module")
    module.__dict__.update(attrs)
    return module


class _ComError(Exception):
    """Stand-in for ``pywintypes.com_error``."""


@contextlib.contextmanager
def _xlwings_generator() -> Iterator[types.ModuleType]:
    """``xlwings.udfs`` importable on any OS, its decorators active on ``xlwings``.

    ``xlwings.udfs`` imports pywin32 at module level although the VBA generator never calls
    it; off Windows, minimal stand-ins fill ``sys.modules`` for the duration of the block
    only, and everything (modules, xlwings attributes) is put back afterwards, so nothing
    else in the process ever sees them."""
    import xlwings

    names = ("pythoncom", "pywintypes", "win32com", "win32com.client", "xlwings.udfs")
    saved_modules = {n: sys.modules[n] for n in names if n in sys.modules}
    decorators = ("func", "arg", "ret", "script", "sub")
    saved_attrs = {n: getattr(xlwings, n) for n in (*decorators, "udfs") if hasattr(xlwings, n)}
    try:
        if importlib.util.find_spec("pythoncom") is None:
            client = _standin("win32com.client", Dispatch=None)
            sys.modules.update({
                "pythoncom": _standin("pythoncom", CoInitialize=lambda: None),
                "pywintypes": _standin("pywintypes", com_error=_ComError),
                "win32com": _standin("win32com", client=client),
                "win32com.client": client,
            })
        udfs = importlib.import_module("xlwings.udfs")
        xlwings.func, xlwings.arg, xlwings.ret = udfs.xlfunc, udfs.xlarg, udfs.xlret
        xlwings.script = xlwings.sub = udfs.xlsub
        yield udfs
    finally:
        for n in names:
            if n in saved_modules:
                sys.modules[n] = saved_modules[n]
            else:
                sys.modules.pop(n, None)
        for n in (*decorators, "udfs"):
            if n in saved_attrs:
                setattr(xlwings, n, saved_attrs[n])
            elif hasattr(xlwings, n):
                delattr(xlwings, n)


@contextlib.contextmanager
def _fresh_udf_module(module_name: str) -> Iterator[types.ModuleType]:
    """A private copy of the UDF module, executed with xlwings' real decorators so its
    functions carry the ``__xlfunc__`` metadata the generator reads (off Windows ``xw.func``
    is a no-op). The imported module in ``sys.modules`` is left alone."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or spec.loader is None:
        raise PlancellBug(f"UDF module {module_name} not found")
    fresh_spec = importlib.util.spec_from_file_location(module_name, spec.origin)
    assert fresh_spec is not None and fresh_spec.loader is not None
    module = importlib.util.module_from_spec(fresh_spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # typing.get_type_hints looks the module up here
    try:
        fresh_spec.loader.exec_module(module)
        yield module
    finally:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous


class _WorkbookName:
    """The one workbook attribute xlwings' generator reads: an ``.xlam`` name makes the
    wrappers pass ``ActiveWorkbook`` (the planner's book) instead of ``ThisWorkbook``."""

    def __init__(self, name: str) -> None:
        self.Name = name


def _udf_functions(module: types.ModuleType) -> list[Any]:
    return [getattr(module, n) for n in dir(module) if hasattr(getattr(module, n), "__xlfunc__")]


def _info(fn: Any) -> UdfInfo:
    meta = fn.__xlfunc__
    doc = " ".join(str(meta["ret"]["doc"]).split())
    # Arguments that VBA fills in (xlwings' "caller", vba=...) are not typed by the planner.
    args = tuple((a["name"], " ".join(str(a["doc"]).split())) for a in meta["args"]
                 if not a["vba"] and a["name"] != "caller")
    # xlwings files every function under "xlwings" unless told otherwise; planners look for Plancell.
    category = "Plancell" if meta["category"] == "xlwings" else str(meta["category"])
    return UdfInfo(meta["name"], doc, category, args)


def _generate(module_name: str, workbook_name: str) -> tuple[str, tuple[UdfInfo, ...]]:
    with _xlwings_generator() as udfs, _fresh_udf_module(module_name) as module:
        functions = _udf_functions(module)
        if not functions:
            raise PlancellBug(f"{module_name} defines no @xw.func functions")
        buf = io.StringIO()
        # The header is the one xlwings' import_udfs writes before calling the generator.
        buf.write(f'Attribute VB_Name = "{_UDF_MODULE_NAME}"\n')
        buf.write("'Autogenerated code by xlwings - changes will be lost with next import!\n")
        buf.write("#Const App = \"Microsoft Excel\" 'Adjust when using outside of Excel\n")
        udfs.generate_vba_wrapper(module_name, module, buf, _WorkbookName(workbook_name))
        return _crlf(buf.getvalue()), tuple(_info(f) for f in functions)


def udf_wrappers_vba(module_name: str = UDF_MODULES, workbook_name: str = XLAM_NAME) -> str:
    """The ``xlwings_udfs`` VBA module for ``module_name``, from xlwings' own generator."""
    return _generate(module_name, workbook_name)[0]


def udf_infos(module_name: str = UDF_MODULES) -> tuple[UdfInfo, ...]:
    """Name, description and argument descriptions of every worksheet function."""
    return _generate(module_name, XLAM_NAME)[1]


# --------------------------------------------------------------------------- the package


def _shared_strings_and_sheet(rows: Sequence[tuple[str, str | bool]]) -> tuple[bytes, bytes]:
    strings: list[str] = []
    refs = 0

    def sst(text: str) -> int:
        nonlocal refs
        refs += 1
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    cells: list[str] = []
    for r, (key, value) in enumerate(rows, start=1):
        row = [f'<c r="A{r}" s="1" t="s"><v>{sst(key)}</v></c>']
        if isinstance(value, bool):
            row.append(f'<c r="B{r}" s="1" t="b"><v>{int(value)}</v></c>')
        elif value != "":
            row.append(f'<c r="B{r}" s="1" t="s"><v>{sst(value)}</v></c>')
        cells.append(f'<row r="{r}" spans="1:2">{"".join(row)}</row>')
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<worksheet xmlns="{main}" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        # codeName ties the sheet to the template's Sheet2 document module in the VBA project.
        '<sheetPr codeName="Sheet2"/>'
        f'<dimension ref="A1:B{len(rows)}"/>'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0"/></sheetViews>'
        '<sheetFormatPr defaultRowHeight="15.75"/>'
        '<cols><col min="1" max="1" width="30" customWidth="1"/>'
        '<col min="2" max="2" width="70" customWidth="1"/></cols>'
        f'<sheetData>{"".join(cells)}</sheetData>'
        '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
        '</worksheet>'
    )
    sst_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="{main}" count="{refs}" '
        f'uniqueCount="{len(strings)}">'
        + "".join(f'<si><t xml:space="preserve">{escape(s)}</t></si>' for s in strings)
        + "</sst>"
    )
    return sst_xml.encode("utf-8"), sheet.encode("utf-8")


def _core_properties(now: _dt.datetime) -> bytes:
    from engine import __version__

    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<dc:title>Plancell</dc:title>"
        "<dc:subject>Demand planning in Excel</dc:subject>"
        "<dc:creator>Plancell</dc:creator>"
        f"<dc:description>Plancell {escape(__version__)} Excel add-in, built from xlwings' ribbon "
        "add-in template by plancell addin build.</dc:description>"
        "<cp:lastModifiedBy>plancell addin build</cp:lastModifiedBy>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
        "</cp:coreProperties>"
    ).encode("utf-8")


def _package_rels(data: bytes) -> bytes:
    """Point the ribbon relationship at customUI14.xml with the Office 2010 type."""
    ET.register_namespace("", _PKG_REL_NS)
    root = ET.fromstring(data)
    ui = [r for r in root if r.get("Type", "").endswith("/ui/extensibility")]
    if len(ui) != 1:
        raise PlancellBug(f"{TEMPLATE_NAME}: expected one ribbon relationship in _rels/.rels, found {len(ui)}")
    ui[0].set("Type", CUSTOMUI14_REL_TYPE)
    ui[0].set("Target", CUSTOMUI14_PART)
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")


def _workbook_xml(data: bytes) -> bytes:
    # A byte-level rename: re-serialising through ElementTree would rename the namespace
    # prefixes that the part's mc:Ignorable attribute refers to, and Excel would reject it.
    old = f'name="{_TEMPLATE_CONF_SHEET}"'.encode()
    if data.count(old) != 1:
        raise PlancellBug(f"{TEMPLATE_NAME}: no sheet {_TEMPLATE_CONF_SHEET} in xl/workbook.xml")
    return data.replace(old, f'name="{CONF_SHEET}"'.encode())


def _write_xlam(target: Path, parts: dict[str, bytes]) -> None:
    """Write atomically: a failed build never leaves half an add-in where Excel looks for it."""
    tmp = target.with_name(f".{target.name}.tmp")
    order = ["[Content_Types].xml"] + [n for n in parts if n != "[Content_Types].xml"]
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in order:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, parts[name])
    try:
        os.replace(tmp, target)
    except PermissionError:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot overwrite {target}: it is open (probably in Excel). "
                         "Fix: close Excel, then build again.", code="E110") from None


def _resolve_out(out: str | os.PathLike[str] | None) -> Path:
    path = Path(out) if out is not None else Path("plancell-addin")
    if path.suffix.lower() == ".xlam":
        return path
    if path.suffix and not path.is_dir():
        raise InputError(
            f"--out {path}: an Excel add-in file must end in .xlam. Fix: give a folder or a name like plancell.xlam.",
            [Problem("arguments", "an add-in file must end in .xlam", "give a folder or a name ending in .xlam",
                     column="--out", value=str(path), code="E110")], code="E110")
    return path / XLAM_NAME


def _check_dispatcher() -> None:
    """Every ribbon button must reach an allow-listed action, or clicking it does nothing."""
    try:
        actions = importlib.import_module(ribbon.DISPATCH_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != ribbon.DISPATCH_MODULE:
            raise
        _log.warning("%s does not exist yet: the ribbon buttons will have nothing to run",
                     ribbon.DISPATCH_MODULE)
        return
    allowed = getattr(actions, "ACTIONS", {})
    missing = [i for i in ribbon.ACTION_IDS if i not in allowed]
    if missing:
        raise PlancellBug(f"ribbon buttons {missing} are not in {ribbon.DISPATCH_MODULE}.ACTIONS")


_VBA_README = """\
VBA modules of {xlam}, generated by "plancell addin build" (plancell {version}).

The .xlam already has xlwings' template VBA project inside. "plancell addin install" (Windows,
Excel installed) completes it through Excel: it removes the template module RibbonMyAddin,
imports these modules (replacing the template's xlwings module), saves the add-in and installs it.

  xlwings.bas         xlwings' add-in module; reads its settings from the {conf} sheet
  PlancellRibbon.bas  the callback behind every button on the Plancell tab
  xlwings_udfs.bas    the worksheet functions (FORECAST_SKU, ...), generated by xlwings

By hand instead: in Excel, Alt+F11, select the {xlam} project, File > Import File... for each
module (remove RibbonMyAddin and the old xlwings module first), then save.
"""


def build_addin(out: str | os.PathLike[str] | None = None, *, interpreter: str | None = None,
                udf_module: str = UDF_MODULES) -> AddinBuild:
    """Write ``plancell.xlam`` and its VBA modules (see the module docstring for which is where).

    ``out`` is a folder (default ``./plancell-addin``) or a path ending in ``.xlam``; the
    modules go to ``<name>-vba/`` beside the add-in. ``interpreter`` defaults to the Python
    running this build (``pythonw.exe`` on Windows)."""
    from engine import __version__

    xlam = _resolve_out(out)
    if xlam.name.lower() != XLAM_NAME:
        _log.info("building %s: Excel will know the add-in by that file name", xlam.name)
    _check_dispatcher()
    interpreter = interpreter or default_interpreter()
    udf_vba, functions = _generate(udf_module, xlam.name)
    modules_text = {
        "xlwings.bas": xlwings_vba(),
        f"{ribbon.CALLBACK_MODULE}.bas": ribbon.ribbon_vba(),
        f"{_UDF_MODULE_NAME}.bas": udf_vba,
    }

    with zipfile.ZipFile(template_path()) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    for required in (_OLD_CUSTOMUI_PART, "_rels/.rels", "xl/workbook.xml", "xl/worksheets/sheet1.xml",
                     "xl/sharedStrings.xml", "xl/vbaProject.bin"):
        if required not in parts:
            raise PlancellBug(f"{TEMPLATE_NAME} has no {required}; plancell expects xlwings 0.37")
    del parts[_OLD_CUSTOMUI_PART]  # Office 2010+ reads customUI14.xml; one ribbon definition only
    parts[CUSTOMUI14_PART] = ribbon.customui14_xml()
    parts["_rels/.rels"] = _package_rels(parts["_rels/.rels"])
    parts["xl/workbook.xml"] = _workbook_xml(parts["xl/workbook.xml"])
    addin_root = Path(__file__).resolve().parent.parent  # where `import addin` finds this package
    rows = conf_values(interpreter, str(addin_root), _conda(Path(sys.prefix)))
    parts["xl/sharedStrings.xml"], parts["xl/worksheets/sheet1.xml"] = _shared_strings_and_sheet(rows)
    parts["docProps/core.xml"] = _core_properties(_dt.datetime.now(_dt.timezone.utc))

    xlam.parent.mkdir(parents=True, exist_ok=True)
    _write_xlam(xlam, parts)
    vba_dir = xlam.with_name(xlam.stem + _VBA_DIR_SUFFIX)
    vba_dir.mkdir(exist_ok=True)
    paths = []
    for name, text in modules_text.items():
        path = vba_dir / name
        # newline="" keeps the CRLF line ends; VBA source is ANSI, and ours is plain ASCII.
        path.write_text(text, encoding="ascii", newline="")
        paths.append(path)
    (vba_dir / "README.txt").write_text(
        _VBA_README.format(xlam=xlam.name, version=__version__, conf=CONF_SHEET), encoding="utf-8")
    _log.info("wrote %s and %d VBA modules in %s", xlam, len(paths), vba_dir)
    return AddinBuild(xlam=xlam, vba_dir=vba_dir, modules=tuple(paths), remove=(_TEMPLATE_RIBBON_MODULE,),
                      interpreter=interpreter, functions=functions)


# --------------------------------------------------------------------------- install (Windows)

_TRUST_FIX = ("in Excel: File > Options > Trust Center > Trust Center Settings... > Macro Settings, "
              'tick "Trust access to the VBA project object model", click OK, close Excel, '
              "then run plancell addin install again (you can untick it afterwards)")


# Errors about the machine, not about data: one line with its fix, no Problem table.
def _needs_windows() -> InputError:
    return InputError(
        "plancell addin install needs Windows with desktop Excel installed: it completes the "
        "add-in's VBA through Excel itself. Fix: run it on the planner's Windows PC, or use "
        "plancell addin build here and the plancell commands (refresh, check, publish) on workbook files.",
        code="E110")


def _trust_error() -> InputError:
    return InputError(
        'Excel refuses access to the add-in\'s VBA project: "Trust access to the VBA project '
        f'object model" is switched off. Fix: {_TRUST_FIX}.', code="E110")


def _vb_components(book_api: Any, com_error: type[BaseException]) -> Any:
    try:
        components = book_api.VBProject.VBComponents
        components.Count  # the refusal only shows on first use
        return components
    except com_error as exc:
        _log.debug("VBProject access refused: %r", exc)
        raise _trust_error() from None


def _complete_vba(book_api: Any, build: AddinBuild, com_error: type[BaseException]) -> None:
    components = _vb_components(book_api, com_error)
    names = {c.Name for c in components}
    for path in build.modules:
        if path.stem in names:
            components.Remove(components(path.stem))
    for name in build.remove:
        if name in names:
            components.Remove(components(name))
    for path in build.modules:
        components.Import(str(path.resolve()))
    have = {c.Name for c in components}
    missing = [p.stem for p in build.modules if p.stem not in have]
    if missing:  # Excel renames an import (xlwings1) when the old module was not gone yet
        raise PlancellError(f"Excel did not take the VBA modules {missing}; close Excel and run "
                            "plancell addin install again", code="E300")


def _describe_functions(app_api: Any, book_name: str, functions: Sequence[UdfInfo],
                        com_error: type[BaseException]) -> None:
    """Descriptions for Excel's Insert Function dialog; the functions work without them."""
    for f in functions:
        try:
            app_api.MacroOptions(Macro=f"'{book_name}'!{f.name}", Description=f.description[:255],
                                 Category=f.category[:255],
                                 ArgumentDescriptions=[d[:255] for _, d in f.args] or None)
        except com_error as exc:
            _log.warning("could not register the description of %s: %s", f.name, exc)


def install_addin(out: str | os.PathLike[str] | None = None,
                  echo: Callable[[str], None] | None = None) -> Path:
    """Build the add-in for this Python, complete its VBA through Excel, and install it for
    the current user (Windows with desktop Excel only). Returns the installed .xlam path."""
    say = echo or (lambda _msg: None)
    if not sys.platform.startswith("win"):
        raise _needs_windows()
    try:
        import pywintypes
        import xlwings as xw
    except ImportError:
        raise _needs_windows() from None
    if xw.apps.count:
        raise InputError("Excel is running. Fix: save your work, close every Excel window, "
                         "then run plancell addin install again.", code="E110")

    staging = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="plancell-addin-"))
    build = build_addin(staging)
    say(f"Built {build.xlam} for {build.interpreter}")
    app = xw.App(visible=False, add_book=False)
    try:
        app.display_alerts = False
        book = app.books.open(str(build.xlam.resolve()))
        _complete_vba(book.api, build, pywintypes.com_error)
        say(f"Imported {', '.join(p.name for p in build.modules)}")
        _describe_functions(app.api, book.name, build.functions, pywintypes.com_error)
        book.save()
        book.close()
        addins_dir = Path(app.api.UserLibraryPath)
        addins_dir.mkdir(parents=True, exist_ok=True)
        target = addins_dir / build.xlam.name
        try:
            shutil.copyfile(build.xlam, target)
        except PermissionError:
            raise InputError(
                f"cannot replace {target}: Excel still has it open. Fix: close every Excel window "
                "(check the Task Manager for a hidden EXCEL.EXE), then run plancell addin install again.",
                code="E110") from None
        # AddIns.Add fails while no workbook is open.
        scratch = app.books.add()
        registered = app.api.AddIns.Add(str(target), False)
        registered.Installed = True
        scratch.close()
        say(f"Installed {target} (File > Options > Add-ins lists it as Plancell)")
        return target
    finally:
        app.quit()

"""plancell.xlam as Excel will open it: package parts, relationships, the settings sheet
xlwings reads, the VBA project, and the worksheet-function wrappers (golden files).

Regenerate the golden files after an intended change (a new UDF, an xlwings upgrade):
``PLANCELL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_xlam.py -k golden``,
then review the diff: it is exactly what changes in planners' Excel.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest
import xlwings

from addin import ribbon, xlam
from addin.cli import main
from engine.errors import InputError

from .test_ribbon import procedures, template_vba_modules

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("PLANCELL_UPDATE_GOLDEN") == "1"
INTERPRETER = r"C:\Users\planner\plancell\.venv\Scripts\pythonw.exe"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"

# DESIGN.md "Excel functions": names and argument order are product surface.
DESIGN_SIGNATURES = {
    "FORECAST_SKU": "sku, [periods], [location], [quantile]",
    "FORECAST_TABLE": "[skus], [periods]",
    "SAFETY_STOCK": "sku, [location], [service_level], [lead_time_days]",
    "REORDER_POINT": "sku, [location], [service_level], [lead_time_days]",
    "ORDER_QTY": "sku, [location], [on_hand], [on_order]",
    "FORECAST_ACCURACY": "sku, [location], [metric]",
    "FORECAST_DRIVERS": "sku, [location], [period]",
    "SKU_CLASS": "sku, [location]",
    "PLAN_INFO": "",
    "SAFETY_STOCK_CALC": "mean_demand, sd_demand, lead_time, [sd_lead_time], [service_level], [target], [order_qty]",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> xlam.AddinBuild:
    return xlam.build_addin(tmp_path_factory.mktemp("xlam"), interpreter=INTERPRETER)


@pytest.fixture(scope="module")
def parts(built) -> dict[str, bytes]:
    with zipfile.ZipFile(built.xlam) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


def _rels_path(part: str) -> str:
    folder, _, name = part.rpartition("/")
    return f"{folder + '/' if folder else ''}_rels/{name}.rels"


def _relationships(parts: dict[str, bytes], part: str) -> list[tuple[str, str, str]]:
    """(Id, Type, target part name) of a part ('' = the package)."""
    folder = part.rpartition("/")[0]
    root = ET.fromstring(parts[_rels_path(part)])
    out = []
    for rel in root.iter(f"{{{REL_NS}}}Relationship"):
        target = rel.get("Target", "")
        name = target.lstrip("/") if target.startswith("/") else os.path.normpath(
            os.path.join(folder, target)).replace(os.sep, "/")
        out.append((rel.get("Id"), rel.get("Type"), name))
    return out


def read_conf_sheet(parts: dict[str, bytes], sheet_name: str) -> list[tuple[Any, Any]]:
    """Column A and B of a worksheet found the way Excel finds it: by name in workbook.xml,
    through its relationship, with shared strings resolved. Stops at the first blank A cell,
    as xlwings' GetConfigFromSheet does."""
    wb = ET.fromstring(parts["xl/workbook.xml"])
    sheets = {s.get("name"): s.get(f"{{{R_NS}}}id") for s in wb.iter(f"{{{MAIN_NS}}}sheet")}
    assert sheet_name in sheets, f"no sheet {sheet_name!r}, only {list(sheets)}"
    target = {rid: name for rid, _, name in _relationships(parts, "xl/workbook.xml")}[sheets[sheet_name]]
    sst = [si.findtext(f"{{{MAIN_NS}}}t") for si in ET.fromstring(parts["xl/sharedStrings.xml"])]
    cells: dict[str, Any] = {}
    for c in ET.fromstring(parts[target]).iter(f"{{{MAIN_NS}}}c"):
        v = c.findtext(f"{{{MAIN_NS}}}v")
        kind = c.get("t")
        cells[c.get("r")] = sst[int(v)] if kind == "s" else (v == "1") if kind == "b" else v
    rows, r = [], 1
    while cells.get(f"A{r}"):
        rows.append((cells[f"A{r}"], cells.get(f"B{r}")))
        r += 1
    return rows


# --------------------------------------------------------------------------- package


def test_every_part_has_a_content_type_and_the_workbook_is_a_macro_addin(parts):
    types = ET.fromstring(parts["[Content_Types].xml"])
    defaults = {d.get("Extension"): d.get("ContentType") for d in types.iter(f"{{{CT_NS}}}Default")}
    overrides = {o.get("PartName").lstrip("/"): o.get("ContentType") for o in types.iter(f"{{{CT_NS}}}Override")}
    for name in parts:
        if name == "[Content_Types].xml":
            continue
        assert name in overrides or name.rsplit(".", 1)[-1] in defaults, f"{name} has no content type"
    assert set(overrides) <= set(parts), "content types name parts that are not in the file"
    assert overrides["xl/workbook.xml"] == "application/vnd.ms-excel.addin.macroEnabled.main+xml"
    assert overrides["xl/vbaProject.bin"] == "application/vnd.ms-office.vbaProject"
    assert defaults["xml"] == "application/xml"  # customUI14.xml needs no override


def test_ribbon_is_linked_with_the_office_2010_relationship(parts):
    package_rels = _relationships(parts, "")
    ui = [r for r in package_rels if r[1].endswith("/ui/extensibility")]
    assert [(t, n) for _, t, n in ui] == [
        ("http://schemas.microsoft.com/office/2007/relationships/ui/extensibility", "customUI/customUI14.xml")]
    assert parts["customUI/customUI14.xml"] == ribbon.customui14_xml()
    assert "customUI/customUI.xml" not in parts  # one ribbon definition, not two that can disagree


def test_every_relationship_points_at_a_part_that_exists(parts):
    for rels in [n for n in parts if n.endswith(".rels")]:
        source = rels.replace("_rels/", "").removesuffix(".rels")
        for rid, _, target in _relationships(parts, source):
            assert target in parts, f"{rels} {rid} -> {target} is missing"
    wb_types = {t.rsplit("/", 1)[-1] for _, t, _ in _relationships(parts, "xl/workbook.xml")}
    assert {"vbaProject", "worksheet", "sharedStrings", "styles"} <= wb_types


def test_conf_sheet_tells_xlwings_how_to_run_plancell(parts, built):
    conf = dict(read_conf_sheet(parts, "plancell.conf"))
    assert conf["UDF Modules"] == "addin.udfs"
    assert conf["Use UDF Server"] is True
    assert conf["Interpreter_Win"] == INTERPRETER == built.interpreter
    assert conf["Debug UDFs"] is False and conf["Show Console"] is False
    assert conf["ADD_WORKBOOK_TO_PYTHONPATH"] is False
    # PYTHONPATH lets `import addin` work from a source checkout too
    assert (Path(conf["PYTHONPATH"]) / "addin" / "udfs.py").is_file()
    keys = [k.upper() for k, _ in read_conf_sheet(parts, "plancell.conf")]
    assert len(keys) == len(set(keys)), "xlwings adds keys to a dictionary: a duplicate breaks every call"
    wb = parts["xl/workbook.xml"].decode("utf-8")
    assert "_myaddin.conf" not in wb  # the template's inactive sheet is the one renamed


def test_conf_sheet_is_the_one_the_xlwings_module_reads(parts, built):
    xlwings_bas = (built.vba_dir / "xlwings.bas").read_text(encoding="ascii")
    project = re.search(r'Public Const PROJECT_NAME As String = "([^"]+)"', xlwings_bas).group(1)
    assert 'Set sht = wb.Sheets(PROJECT_NAME & ".conf")' in xlwings_bas
    read_conf_sheet(parts, f"{project}.conf")
    # the sheet stays bound to the template's Sheet2 document module
    sheet = parts["xl/worksheets/sheet1.xml"].decode("utf-8")
    assert 'codeName="Sheet2"' in sheet


def test_template_vba_project_is_kept_and_matches_this_xlwings(parts, built):
    modules = template_vba_modules(parts["xl/vbaProject.bin"])
    assert {"ThisWorkbook", "Sheet2", "Dictionary", "xlwings", "RibbonMyAddin"} <= set(modules)
    # the VBA module must load the DLL of the installed xlwings version
    assert f"'Version: {xlwings.__version__}" in modules["xlwings"]
    assert f"xlwings64-{xlwings.__version__}.dll" in modules["xlwings"]
    # install replaces the template's xlwings module (PROJECT_NAME "myaddin") and drops its ribbon module
    assert 'PROJECT_NAME As String = "myaddin"' in modules["xlwings"]
    assert built.remove == ("RibbonMyAddin",)
    assert [p.stem for p in built.modules] == ["xlwings", "PlancellRibbon", "xlwings_udfs"]
    ours = (built.vba_dir / "xlwings.bas").read_text(encoding="ascii")
    assert 'PROJECT_NAME As String = "plancell"' in ours
    assert ours.replace("\r\n", "\n").replace('"plancell"', '"myaddin"').strip() == \
        modules["xlwings"].replace("\r\n", "\n").strip()  # otherwise xlwings' module, unchanged


def test_vba_modules_beside_the_addin_import_cleanly(built):
    assert built.vba_dir == built.xlam.parent / "plancell-vba"
    for path in built.modules:
        raw = path.read_bytes()
        raw.decode("ascii")  # VBA source is ANSI
        assert raw.count(b"\n") == raw.count(b"\r\n"), f"{path.name}: bare LF breaks VBComponents.Import"
        assert raw.startswith(f'Attribute VB_Name = "{path.stem}"\r\n'.encode()), path.name
    assert "plancell addin install" in (built.vba_dir / "README.txt").read_text(encoding="utf-8")


def test_rebuilding_replaces_the_addin_and_leaves_no_temporary_file(built):
    again = xlam.build_addin(built.xlam, interpreter=INTERPRETER)
    assert again.xlam == built.xlam
    assert sorted(p.name for p in built.xlam.parent.iterdir()) == ["plancell-vba", "plancell.xlam"]


# --------------------------------------------------------------------------- UDF wrappers


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    text = text.replace("\r\n", "\n")
    if UPDATE_GOLDEN:
        path.write_text(text, encoding="ascii", newline="\n")
    assert path.is_file(), f"{path} missing: run with PLANCELL_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="ascii"), (
        f"{name} changed: if intended, regenerate with PLANCELL_UPDATE_GOLDEN=1 and review the diff")


def test_golden_udf_wrappers_of_the_addin(built):
    text = (built.vba_dir / "xlwings_udfs.bas").read_bytes().decode("ascii")
    assert text == xlam.udf_wrappers_vba()
    _golden("xlwings_udfs.bas", text)


_FIXTURE = '''
import xlwings as xw


@xw.func
@xw.arg("x", doc="a number")
def PLAIN(x, y=1, z=None):
    """Adds."""
    return x


@xw.func(volatile=True, call_in_wizard=False, category="Test")
def NOW_ISH():
    return 0


@xw.func
def MANY(first, *rest):
    return first


@xw.func
@xw.arg("book", vba="ActiveWorkbook")
def WITH_BOOK(book, name):
    return name


@xw.func
def WHERE(x, caller):
    return caller.address


@xw.sub
def A_MACRO():
    pass
'''


def test_golden_xlwings_generator_on_this_os(tmp_path, monkeypatch):
    """Pins what xlwings' generator writes (optional, variable and VBA-supplied arguments,
    the calling cell, volatile functions, subs) when run through the build's pywin32 stand-ins."""
    (tmp_path / "plancell_fixture_udfs.py").write_text(textwrap.dedent(_FIXTURE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = xlam.udf_wrappers_vba("plancell_fixture_udfs")
    _golden("fixture_udfs.bas", text)
    infos = {f.name: f for f in xlam.udf_infos("plancell_fixture_udfs")}
    assert infos["PLAIN"].description == "Adds."
    assert infos["PLAIN"].args[0] == ("x", "a number")
    assert infos["PLAIN"].category == "Plancell" and infos["NOW_ISH"].category == "Test"
    assert [a for a, _ in infos["WITH_BOOK"].args] == ["name"]  # VBA supplies the book
    assert [a for a, _ in infos["WHERE"].args] == ["x"]  # and the calling cell


def test_generator_leaves_no_trace_in_the_process(built):
    import addin.udfs

    before = sys.modules["addin.udfs"]
    xlam.udf_wrappers_vba()
    assert sys.modules["addin.udfs"] is before is addin.udfs
    for name in ("pythoncom", "pywintypes", "win32com", "win32com.client"):
        if not sys.platform.startswith("win"):
            assert name not in sys.modules, f"stand-in {name} leaked"
    assert "xlwings.udfs" not in sys.modules or sys.platform.startswith("win")
    assert not hasattr(addin.udfs.SAFETY_STOCK_CALC, "__xlfunc__") or sys.platform.startswith("win")


def test_udf_wrappers_keep_the_design_names_and_argument_order(built):
    text = (built.vba_dir / "xlwings_udfs.bas").read_text(encoding="ascii")
    procs = procedures(text)
    assert "SAFETY_STOCK_CALC" in procs
    for name, (_, kind, params) in procs.items():
        assert name in DESIGN_SIGNATURES, f"{name} is not a documented Excel function (DESIGN.md)"
        assert kind == "Function"
        optional = re.findall(r"(Optional\s+)?(\w+)", re.search(rf"Function {name}\(([^)]*)\)", text).group(1))
        shown = ", ".join(f"[{n}]" if opt else n for opt, n in optional)
        assert shown == DESIGN_SIGNATURES[name], f"{name}({shown}) differs from DESIGN.md"
        # an .xlam's functions must read the planner's workbook, not the add-in itself
        assert f'XLPy.CallUDF("addin.udfs", "{name}", ' in text
    assert "ActiveWorkbook, Application.Caller" in text and "ThisWorkbook" not in text


# --------------------------------------------------------------------------- settings


def test_interpreter_is_this_python_windowless_on_windows():
    assert xlam.default_interpreter(r"C:\Py\venv\Scripts\python.exe", "win32") == r"C:\Py\venv\Scripts\pythonw.exe"
    assert xlam.default_interpreter(r"C:\Py\pythonw.exe", "win32") == r"C:\Py\pythonw.exe"
    assert xlam.default_interpreter("/usr/bin/python3", "linux") == "/usr/bin/python3"


def test_conda_environment_is_activated_by_xlwings(tmp_path):
    root = tmp_path / "miniconda3"
    env = root / "envs" / "planning"
    for d in (root / "conda-meta", root / "condabin", env / "conda-meta"):
        d.mkdir(parents=True)
    assert xlam._conda(env) == (str(root), "planning")
    assert xlam._conda(root) == (str(root), "base")
    assert xlam._conda(tmp_path) is None
    conf = dict(xlam.conf_values(INTERPRETER, "", xlam._conda(env)))
    # xlwings only activates a conda env for the bare interpreter name
    assert (conf["Interpreter_Win"], conf["Conda Path"], conf["Conda Env"]) == ("pythonw", str(root), "planning")


# --------------------------------------------------------------------------- command line


def test_cli_build_writes_the_addin_where_asked(tmp_path, capsys):
    assert main(["addin", "build", "--out", str(tmp_path / "dist")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "dist" / "plancell.xlam").is_file()
    assert (tmp_path / "dist" / "plancell-vba" / "xlwings_udfs.bas").is_file()
    assert "plancell.xlam" in out and "SAFETY_STOCK_CALC" in out and "plancell addin install" in out


def test_cli_build_refuses_a_name_excel_would_not_load_as_addin(tmp_path, capsys):
    assert main(["addin", "build", "--out", str(tmp_path / "plancell.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "PLANCELL-E110" in err and ".xlam" in err and "Traceback" not in err
    assert not (tmp_path / "plancell.xlsx").exists()


def test_cli_install_off_windows_says_what_it_needs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["addin", "install"]) == 2
    err = capsys.readouterr().err
    assert "needs Windows with desktop Excel" in err and "Traceback" not in err


def test_cli_addin_without_a_subcommand_shows_usage(capsys):
    assert main(["addin"]) == 2
    assert "build|install" in capsys.readouterr().err


# --------------------------------------------------------------------------- install steps


class _ComError(Exception):
    pass


class _Component:
    def __init__(self, name: str) -> None:
        self.Name = name


class _Components:
    """What install needs of Excel's VBProject.VBComponents."""

    def __init__(self, names: list[str]) -> None:
        self.items = [_Component(n) for n in names]
        self.calls: list[tuple[str, str]] = []

    @property
    def Count(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(list(self.items))

    def __call__(self, name: str) -> _Component:
        return next(c for c in self.items if c.Name == name)

    def Remove(self, component: _Component) -> None:
        self.calls.append(("remove", component.Name))
        self.items.remove(component)

    def Import(self, path: str) -> None:
        name = re.search(r'VB_Name = "([^"]+)"', Path(path).read_text(encoding="ascii")).group(1)
        self.calls.append(("import", name))
        self.items.append(_Component(name))


class _Book:
    def __init__(self, components: _Components | None) -> None:
        self._components = components

    @property
    def VBProject(self) -> Any:
        if self._components is None:  # what Excel does with the trust setting off
            raise _ComError(-2146827284, "Programmatic access to Visual Basic Project is not trusted")
        return type("VBProject", (), {"VBComponents": self._components})()


def test_install_explains_the_trust_center_setting_when_vba_access_is_off(built):
    with pytest.raises(InputError) as info:
        xlam._complete_vba(_Book(None), built, _ComError)
    line = info.value.one_line()
    assert line.startswith("PLANCELL-E110:")
    assert "Trust access to the VBA project object model" in line
    assert "File > Options > Trust Center > Trust Center Settings" in line and "Macro Settings" in line


def test_install_replaces_template_modules_with_the_built_ones(built):
    components = _Components(["ThisWorkbook", "Sheet2", "Dictionary", "xlwings", "RibbonMyAddin"])
    xlam._complete_vba(_Book(components), built, _ComError)
    assert components.calls == [("remove", "xlwings"), ("remove", "RibbonMyAddin"),
                                ("import", "xlwings"), ("import", "PlancellRibbon"), ("import", "xlwings_udfs")]
    assert sorted(c.Name for c in components) == sorted(
        ["ThisWorkbook", "Sheet2", "Dictionary", "xlwings", "PlancellRibbon", "xlwings_udfs"])

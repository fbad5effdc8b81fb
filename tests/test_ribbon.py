"""The Plancell ribbon: schema-valid customUI14 XML, and a VBA procedure with the right
signature behind every callback the XML names (Excel shows neither mistake until a click)."""

from __future__ import annotations

import inspect
import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import xmlschema

from addin import ribbon
from addin.xlam import build_addin
from engine.errors import PlancellBug

SCHEMA = Path(__file__).parent / "data" / "schemas" / "customui14.xsd"
NS = {"ui": ribbon.CUSTOMUI14_NS}

# Parameter types Office passes to each callback (MS-CUSTOMUI "callback signatures");
# None is the ByRef return value. A callback attribute missing here fails the test on purpose.
CALLBACK_SIGNATURES: dict[str, list[str | None]] = {
    "onAction": ["IRibbonControl"],
    "onLoad": ["IRibbonUI"],
    "getLabel": ["IRibbonControl", None],
    "getScreentip": ["IRibbonControl", None],
    "getSupertip": ["IRibbonControl", None],
    "getEnabled": ["IRibbonControl", None],
    "getVisible": ["IRibbonControl", None],
    "getImage": ["IRibbonControl", None],
}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(SCHEMA))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_addin(tmp_path_factory.mktemp("ribbon") / "plancell.xlam",
                       interpreter=r"C:\Plancell\.venv\Scripts\pythonw.exe")


@pytest.fixture(scope="module")
def installed_vba(built) -> dict[str, str]:
    """The add-in's VBA modules after ``plancell addin install``: the template's project
    (read from vbaProject.bin with olevba), minus what install removes, with the built .bas
    files imported over it."""
    modules = template_vba_modules(zipfile.ZipFile(built.xlam).read("xl/vbaProject.bin"))
    for name in built.remove:
        modules.pop(name)
    for path in built.modules:
        code = path.read_text(encoding="ascii")
        modules[_vb_name(code)] = code
    return modules


def template_vba_modules(vba_project_bin: bytes) -> dict[str, str]:
    """VB_Name -> source of every module in a vbaProject.bin, read with oletools' olevba."""
    with warnings.catch_warnings():  # oletools 0.60 uses pyparsing names that 3.x deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        from oletools.olevba import VBA_Parser
    parser = VBA_Parser("vbaProject.bin", data=vba_project_bin)
    try:
        return {_vb_name(code): code for _, _, _, code in parser.extract_macros()}
    finally:
        parser.close()


def _vb_name(code: str) -> str:
    match = re.search(r'^Attribute VB_Name = "([^"]+)"', code, re.M)
    assert match, "a VBA module without Attribute VB_Name cannot be imported"
    return match.group(1)


_PROC = re.compile(r"^[ \t]*(?:(Public|Private|Friend)[ \t]+)?(?:Static[ \t]+)?(Sub|Function)[ \t]+(\w+)"
                   r"[ \t]*\(([^)]*)\)", re.I | re.M)


def procedures(code: str) -> dict[str, tuple[str, str, list[tuple[str, str | None]]]]:
    """name -> (scope, Sub/Function, [(param name, type or None)]) of one VBA module."""
    code = re.sub(r" _\r?\n\s*", " ", code)  # join continued lines
    out = {}
    for scope, kind, name, params in _PROC.findall(code):
        parsed = []
        for p in filter(None, (x.strip() for x in params.split(","))):
            words = [w for w in p.split() if w.lower() not in ("byval", "byref", "optional")]
            parsed.append((words[0], words[2] if len(words) >= 3 and words[1].lower() == "as" else None))
        out[name] = (scope or "Public", kind, parsed)
    return out


def callback_problems(xml: bytes, modules: dict[str, str]) -> list[str]:
    """Every callback named in the ribbon XML that Excel could not call, and why."""
    problems = []
    procs = {m: procedures(code) for m, code in modules.items()}
    for el in ET.fromstring(xml).iter():
        for attr, value in el.attrib.items():
            if not (attr.startswith("on") or attr.startswith("get") or attr == "loadImage"):
                continue
            where = f"{el.get('id', el.tag)} {attr}={value}"
            if attr not in CALLBACK_SIGNATURES:
                problems.append(f"{where}: no known signature for {attr}; add it to CALLBACK_SIGNATURES")
                continue
            module, _, proc = value.rpartition(".")
            found = [(m, procs[m][proc]) for m in procs if proc in procs[m] and (not module or m == module)]
            if len(found) != 1:
                problems.append(f"{where}: {len(found)} procedures named {proc} in module {module or 'any'}")
                continue
            (scope, kind, params) = found[0][1]
            expected = CALLBACK_SIGNATURES[attr]
            if scope.lower() != "public" or kind.lower() != "sub":
                problems.append(f"{where}: must be a Public Sub, is {scope} {kind}")
            types = [t for _, t in params]
            if len(types) != len(expected) or any(e is not None and (t or "").lower() != e.lower()
                                                  for t, e in zip(types, expected)):
                problems.append(f"{where}: parameters {params}, Office passes {expected}")
    return problems


def test_ribbon_xml_is_valid_customui14(schema, built):
    xml = zipfile.ZipFile(built.xlam).read("customUI/customUI14.xml")
    assert xml == ribbon.customui14_xml()
    schema.validate(xml.decode("utf-8"))  # raises with the offending element


def test_schema_check_would_catch_a_broken_ribbon(schema):
    broken = ribbon.customui14_xml().decode("utf-8").replace('size="large"', 'size="huge"', 1)
    assert not schema.is_valid(broken)
    same_id = ribbon.customui14_xml().decode("utf-8").replace('id="check"', 'id="refresh"')
    assert not schema.is_valid(same_id)  # Excel drops the whole tab for a duplicate id


def test_plancell_tab_shows_one_button_per_action():
    root = ET.fromstring(ribbon.customui14_xml())
    tabs = root.findall("ui:ribbon/ui:tabs/ui:tab", NS)
    assert [(t.get("id"), t.get("label")) for t in tabs] == [("plancellTab", "Plancell")]
    buttons = tabs[0].findall("ui:group/ui:button", NS)
    assert sorted(b.get("label") for b in buttons) == sorted(
        ["Refresh Plan", "Check Execution", "Run Scenario", "Publish Snapshot", "Status"])
    assert {b.get("id") for b in buttons} == {"refresh", "check", "scenario", "publish", "status"}
    for b in buttons:
        assert b.get("imageMso"), f"{b.get('label')} has no built-in icon"
        assert b.get("image") is None  # built-in icons only: the add-in ships no pictures
        assert b.get("supertip"), f"{b.get('label')} has no tooltip"
    # one generic callback, module-qualified so a planner's own macro cannot shadow it
    assert {b.get("onAction") for b in buttons} == {"PlancellRibbon.PlancellAction"}


def test_every_callback_exists_with_the_right_signature(built, installed_vba):
    xml = zipfile.ZipFile(built.xlam).read("customUI/customUI14.xml")
    assert callback_problems(xml, installed_vba) == []
    # ...and the template's own ribbon module, whose callback this ribbon no longer names, is gone
    assert "RibbonMyAddin" not in installed_vba


def test_callback_check_catches_missing_and_wrong_callbacks(installed_vba):
    xml = ribbon.customui14_xml()
    wrong = dict(installed_vba)
    wrong["PlancellRibbon"] = wrong["PlancellRibbon"].replace(
        "PlancellAction(control As IRibbonControl)", "PlancellAction(control As IRibbonControl, x)")
    assert any("parameters" in p for p in callback_problems(xml, wrong))
    private = dict(installed_vba)
    private["PlancellRibbon"] = private["PlancellRibbon"].replace("Public Sub PlancellAction", "Private Sub PlancellAction")
    assert any("Public Sub" in p for p in callback_problems(xml, private))
    gone = {m: c for m, c in installed_vba.items() if m != "PlancellRibbon"}
    assert any("0 procedures" in p for p in callback_problems(xml, gone))
    unknown = xml.replace(b'onAction="', b'getPressed="x" onAction="', 1)
    assert any("no known signature" in p for p in callback_problems(unknown, installed_vba))


def test_vba_callback_passes_only_ribbon_ids_to_the_python_dispatcher():
    vba = ribbon.ribbon_vba()
    cases = re.search(r"^\s*Case (\"[^\n]+)$", vba, re.M)
    assert cases, "the VBA has no allow-list of button ids"
    assert re.findall(r'"([^"]+)"', cases.group(1)) == list(ribbon.ACTION_IDS)
    assert ("RunPython \"import addin.actions; addin.actions.dispatch('\" & actionId & \"')\"" in vba)
    # the id is checked before it reaches RunPython
    assert vba.index("IsPlancellAction(actionId)") < vba.index("RunPython")
    assert "{{" not in vba


def test_ribbon_vba_imports_cleanly_into_the_vba_editor():
    raw = ribbon.ribbon_vba().encode("ascii")  # VBA source is ANSI: ASCII is safe in every code page
    assert raw.count(b"\n") == raw.count(b"\r\n")  # bare LF breaks VBComponents.Import
    assert raw.startswith(b'Attribute VB_Name = "PlancellRibbon"\r\n')


def test_a_button_id_that_could_inject_code_is_refused():
    evil = ribbon.RibbonButton("x'); import os; ('", "Evil", "Info", "plancellAbout", "Evil", "Evil")
    with pytest.raises(PlancellBug, match="lower-case"):
        ribbon.customui14_xml(buttons=ribbon.BUTTONS + (evil,))
    with pytest.raises(PlancellBug, match="lower-case"):
        ribbon.ribbon_vba(buttons=ribbon.BUTTONS + (evil,))
    twice = ribbon.BUTTONS + (ribbon.BUTTONS[0],)
    with pytest.raises(PlancellBug, match="duplicate"):
        ribbon.customui14_xml(buttons=twice)


def test_every_button_reaches_an_allow_listed_action():
    from addin import actions

    # one button per action: an action without a button is unreachable, a button without one does nothing
    assert set(ribbon.ACTION_IDS) == set(actions.ACTIONS)
    params = list(inspect.signature(actions.dispatch).parameters)
    assert params[:2] == ["button_id", "book"]  # what the VBA's RunPython command calls

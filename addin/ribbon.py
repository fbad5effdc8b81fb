"""The Plancell ribbon tab: its customUI14 XML and the one VBA callback behind every button.

Every button's ``onAction`` is the same VBA procedure, ``PlancellRibbon.PlancellAction``. It
passes the button's id to :func:`addin.actions.dispatch` through xlwings ``RunPython``, so a
button id is an action id: adding a button means adding an entry to ``BUTTONS`` here and to
``addin.actions.ACTIONS``, and rebuilding the add-in. The VBA refuses ids that are not on the
ribbon, and the Python dispatcher refuses ids that are not on its own allow-list.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PlancellBug

__all__ = [
    "RibbonButton",
    "RibbonGroup",
    "GROUPS",
    "BUTTONS",
    "ACTION_IDS",
    "TAB_ID",
    "TAB_LABEL",
    "CUSTOMUI14_NS",
    "CALLBACK_MODULE",
    "CALLBACK_PROC",
    "CALLBACK",
    "DISPATCH_MODULE",
    "DISPATCH_FUNCTION",
    "customui14_xml",
    "ribbon_vba",
]


#: Namespace of Office 2010+ ribbon XML (customUI/customUI14.xml).
CUSTOMUI14_NS = "http://schemas.microsoft.com/office/2009/07/customui"
TAB_ID = "plancellTab"
TAB_LABEL = "Plancell"
CALLBACK_MODULE = "PlancellRibbon"
CALLBACK_PROC = "PlancellAction"
#: Module-qualified, so a macro of the same name in a planner's workbook cannot capture the buttons.
CALLBACK = f"{CALLBACK_MODULE}.{CALLBACK_PROC}"
DISPATCH_MODULE = "addin.actions"
DISPATCH_FUNCTION = "dispatch"

_TEMPLATE = Path(__file__).with_name("vba") / f"{CALLBACK_MODULE}.bas"
# Ids end up inside a VBA string literal and a Python command: keep them plain.
_SAFE_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class RibbonGroup:
    """A group of buttons on the tab (the labelled box on the ribbon)."""

    id: str
    label: str


@dataclass(frozen=True)
class RibbonButton:
    """One ribbon button. ``id`` is the action id passed to ``addin.actions.dispatch``;
    ``image_mso`` is a built-in Office icon, so the add-in ships no images."""

    id: str
    label: str
    image_mso: str
    group: str
    screentip: str
    supertip: str


GROUPS: tuple[RibbonGroup, ...] = (
    RibbonGroup("plancellPlan", "Plan"),
    RibbonGroup("plancellExecute", "Execution"),
    RibbonGroup("plancellAbout", "Add-in"),
)

BUTTONS: tuple[RibbonButton, ...] = (
    RibbonButton("refresh", "Refresh Plan", "RefreshAll", "plancellPlan", "Refresh Plan",
                 "Train the forecast model if the data changed, then write the Plan and Accuracy "
                 "sheets. Progress shows in the status bar."),
    RibbonButton("scenario", "Run Scenario", "WhatIfAnalysisMenu", "plancellPlan", "Run Scenario",
                 "Run a what-if (a late supplier, a bigger promotion) and write the Scenario sheet. "
                 "The published plan is not changed."),
    RibbonButton("publish", "Publish Snapshot", "PasteValues", "plancellPlan", "Publish Snapshot",
                 "Copy the current plan into a values-only sheet 'Plan YYYY-MM vN' with its provenance, "
                 "so anyone can open the file without the add-in."),
    RibbonButton("check", "Check Execution", "AcceptInvitation", "plancellExecute", "Check Execution",
                 "Compare actuals with the published plan and write the Alerts and Purchases sheets "
                 "(stock-out risks, excess, what to buy first)."),
    RibbonButton("status", "Status", "Info", "plancellAbout", "Plancell Status",
                 "Show the model behind this workbook's numbers, when it was trained, and whether the "
                 "calculation server is running."),
)

#: The ids the ribbon can send, in ribbon order.
ACTION_IDS: tuple[str, ...] = tuple(b.id for b in BUTTONS)


def _check(groups: tuple[RibbonGroup, ...], buttons: tuple[RibbonButton, ...]) -> None:
    """A malformed button table is our bug, found at build time instead of in Excel."""
    problems: list[str] = []
    group_ids = [g.id for g in groups]
    ids = [b.id for b in buttons] + group_ids + [TAB_ID]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"duplicate ribbon ids {dupes}")
    for b in buttons:
        if not _SAFE_ID.fullmatch(b.id):
            problems.append(f"button id {b.id!r} must be lower-case letters, digits or _ (max 32)")
        if b.group not in group_ids:
            problems.append(f"button {b.id!r} names unknown group {b.group!r}")
        if not (b.label and b.image_mso and b.image_mso.isidentifier()):
            problems.append(f"button {b.id!r} needs a label and a built-in imageMso name")
    if problems:
        raise PlancellBug("ribbon definition is invalid: " + "; ".join(problems))


def customui14_xml(groups: tuple[RibbonGroup, ...] = GROUPS,
                   buttons: tuple[RibbonButton, ...] = BUTTONS) -> bytes:
    """The ``customUI/customUI14.xml`` part: tab "Plancell", one large button per action."""
    _check(groups, buttons)
    ns = f"{{{CUSTOMUI14_NS}}}"
    ET.register_namespace("", CUSTOMUI14_NS)
    root = ET.Element(f"{ns}customUI")
    tabs = ET.SubElement(ET.SubElement(root, f"{ns}ribbon"), f"{ns}tabs")
    tab = ET.SubElement(tabs, f"{ns}tab", id=TAB_ID, label=TAB_LABEL)
    for g in groups:
        members = [b for b in buttons if b.group == g.id]
        if not members:
            continue  # the schema allows an empty group, but Excel would show an empty box
        group = ET.SubElement(tab, f"{ns}group", id=g.id, label=g.label)
        for b in members:
            ET.SubElement(group, f"{ns}button", id=b.id, label=b.label, size="large",
                          imageMso=b.image_mso, screentip=b.screentip, supertip=b.supertip,
                          onAction=CALLBACK)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + body + "\n").encode("utf-8")


def ribbon_vba(buttons: tuple[RibbonButton, ...] = BUTTONS) -> str:
    """The ``PlancellRibbon`` VBA module (text with CRLF line ends, ready for VBComponents.Import)."""
    _check(GROUPS, buttons)
    text = _TEMPLATE.read_text(encoding="ascii")
    values = {
        "CALLBACK_PROC": CALLBACK_PROC,
        "DISPATCH_MODULE": DISPATCH_MODULE,
        "DISPATCH_FUNCTION": DISPATCH_FUNCTION,
        "ACTION_CASES": ", ".join(f'"{b.id}"' for b in buttons),
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{\w+\}\}", text)
    if left:
        raise PlancellBug(f"{_TEMPLATE.name}: unfilled placeholders {sorted(set(left))}")
    # The VBA editor imports a module with bare LF line ends as one broken line: always CRLF.
    return "\r\n".join(text.splitlines()) + "\r\n"

"""Shared fixtures: small synthetic panels (never ../shared) and one trained model per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.contract import validate
from engine.model import DemandForecaster
from engine.synthetic import generate_panel


def with_plan_rows(panel) -> pd.DataFrame:
    """Sales history plus the future plan rows (planned Price/Promo, blank Qty)."""
    return pd.concat([panel.sales, panel.future.drop(columns=["Qty"])], ignore_index=True)


@pytest.fixture(autouse=True)
def _isolated_plancell_home(tmp_path_factory, monkeypatch):
    """Never touch the developer's real ~/.plancell (model store, installation key)."""
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path_factory.getbasetemp() / "plancell-home"))


@pytest.fixture(scope="session")
def weekly_panel():
    return generate_panel("W", n_skus=30, n_locations=2, seed=7)


@pytest.fixture(scope="session")
def weekly_data(weekly_panel):
    return validate(with_plan_rows(weekly_panel), weekly_panel.drivers, weekly_panel.items)


@pytest.fixture(scope="session")
def weekly_model(weekly_data):
    return DemandForecaster(horizon=12, random_state=0).fit(weekly_data)


def with_setting(src: Path, dst: Path, key: str, value: Any) -> Path:
    """A copy of workbook ``src`` at ``dst`` whose Settings table gains the row ``key`` = ``value``."""
    import openpyxl

    wb = openpyxl.load_workbook(src)
    for ws in wb.worksheets:
        if "Settings" in ws.tables:
            table = ws.tables["Settings"]
            top, bottom = table.ref.split(":")
            last = ws[bottom].row
            ws.cell(last + 1, ws[top].column, key)
            ws.cell(last + 1, ws[top].column + 1, value)
            table.ref = f"{top}:{ws.cell(last + 1, ws[bottom].column).coordinate}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return dst

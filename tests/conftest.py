"""Shared fixtures: small synthetic panels (never ../shared) and one trained model per session."""

from __future__ import annotations

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

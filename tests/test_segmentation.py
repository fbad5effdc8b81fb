"""Segmentation: ABC/XYZ classes, demand patterns, class service levels and their Settings keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.segmentation import (
    DEFAULT_SERVICE_LEVELS,
    abc_classes,
    demand_pattern,
    pattern_stats,
    segment,
    segmentation_settings,
    service_levels_from_settings,
    xyz_classes,
)


def _history(series: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Weekly Sales rows, one per period, for {(sku, location): quantities}."""
    frames = [
        pd.DataFrame({"SKU": sku, "Location": loc, "Qty": np.asarray(q, dtype=float),
                      "Date": pd.date_range("2024-01-07", periods=len(q), freq="W")})
        for (sku, loc), q in series.items()
    ]
    return pd.concat(frames, ignore_index=True)


def _row(frame: pd.DataFrame, sku: str, loc: str = "") -> pd.Series:
    return frame.set_index(["SKU", "Location"]).loc[(sku, loc)]


# --- ABC ----------------------------------------------------------------------------------

def test_abc_item_straddling_a_cutoff_goes_to_the_upper_class() -> None:
    # 50 + 40 = 90 % crosses 80 %: the 40 is still A; 10 starts at 90 % (< 95 %) so B.
    assert list(abc_classes([40, 10, 50])) == ["A", "B", "A"]


def test_abc_item_starting_exactly_at_the_cutoff_is_in_the_lower_class() -> None:
    assert list(abc_classes([80, 15, 5])) == ["A", "B", "C"]
    # Float sums (0.1 + 0.7) reaching 80 % count as reaching it.
    assert list(abc_classes([0.7, 0.1, 0.1, 0.05, 0.05])) == ["A", "A", "B", "B", "C"]


def test_abc_zero_and_missing_values_are_c_even_when_b_covers_everything() -> None:
    assert list(abc_classes([10, 0, np.nan, -3], cutoffs=(0.8, 1.0))) == ["A", "C", "C", "C"]
    assert list(abc_classes([0, 0])) == ["C", "C"]


def test_abc_ties_keep_input_order() -> None:
    assert list(abc_classes([10, 10, 10, 10], cutoffs=(0.5, 0.75))) == ["A", "A", "B", "C"]


@pytest.mark.parametrize("cutoffs", [(0.95, 0.8), (0.0, 0.5), (0.8, 1.2), (0.8, 0.8), ("x", 0.9)])
def test_abc_refuses_bad_cutoffs(cutoffs) -> None:
    with pytest.raises(InputError) as exc:
        abc_classes([1, 2, 3], cutoffs=cutoffs)
    assert exc.value.problems and exc.value.problems[0].table == "Settings"
    assert "ABC" in exc.value.one_line()


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=40),
    a=st.floats(0.05, 0.9),
    gap=st.floats(0.01, 0.5),
)
def test_abc_shares_match_the_cutoffs(values: list[float], a: float, gap: float) -> None:
    b = min(a + gap, 1.0)
    v = np.asarray(values)
    cls = abc_classes(v, cutoffs=(a, b))
    total = v.sum()
    share = {c: v[cls == c].sum() / total if total > 0 else 0.0 for c in "ABC"}
    if total > 0:
        # A reaches the A cut-off, and would not without its smallest item.
        assert share["A"] >= a - 1e-9
        assert share["A"] - v[cls == "A"].min() / total < a + 1e-9
        assert share["A"] + share["B"] >= b - 1e-9
    # Classes follow value: every A is worth at least every B, every B at least every C.
    for hi, lo in (("A", "B"), ("B", "C"), ("A", "C")):
        if (cls == hi).any() and (cls == lo).any():
            assert v[cls == hi].min() >= v[cls == lo].max()
    assert set(cls[v == 0]) <= {"C"}


# --- XYZ and demand pattern ---------------------------------------------------------------

def test_xyz_boundaries_and_unknown_items() -> None:
    cv = [0.2, 0.5, 0.51, 1.0, 1.5, np.inf, np.nan]
    assert list(xyz_classes(cv)) == ["X", "X", "Y", "Y", "Z", "Z", "?"]
    assert list(xyz_classes([0.3, 0.7], cutoffs=(0.25, 0.6))) == ["Y", "Z"]
    with pytest.raises(InputError):
        xyz_classes([0.3], cutoffs=(1.0, 0.5))


def test_demand_pattern_quadrants_and_boundaries() -> None:
    adi = [1.0, 1.0, 2.0, 2.0, 1.32, 1.31, np.nan]
    cv2 = [0.2, 0.49, 0.2, 0.8, 0.48, np.nan, np.nan]
    assert list(demand_pattern(adi, cv2)) == [
        "smooth", "erratic", "intermittent", "lumpy", "intermittent", "smooth", "no demand",
    ]


def test_pattern_stats_match_hand_computed_adi_and_cv2() -> None:
    series = {
        ("smooth", "S1"): [5, 6, 5, 4, 5, 6],
        ("erratic", "S1"): [1, 20, 1, 30, 2, 25],
        ("intermittent", "S1"): [0, 5, 0, 0, 5, 0, 6, 0],
        ("lumpy", "S1"): [0, 0, 1, 0, 0, 40, 0, 2, 0, 0],
    }
    stats = pattern_stats(_history(series))
    # intermittent: first sale in period 2 of 8 -> 7 periods / 3 sales; sizes 5, 5, 6.
    sizes = np.array([5.0, 5.0, 6.0])
    row = _row(stats, "intermittent", "S1")
    assert row["ADI"] == pytest.approx(7 / 3)
    assert row["CV2"] == pytest.approx(sizes.var() / sizes.mean() ** 2)
    # lumpy: first sale in period 3 of 10 -> 8 periods / 3 sales; sizes 1, 40, 2.
    sizes = np.array([1.0, 40.0, 2.0])
    row = _row(stats, "lumpy", "S1")
    assert row["ADI"] == pytest.approx(8 / 3)
    assert row["CV2"] == pytest.approx(sizes.var() / sizes.mean() ** 2)
    assert row["n_periods"] == 10 and row["n_nonzero"] == 3
    assert row["mean_demand"] == pytest.approx(4.3)
    assert row["sd_demand"] == pytest.approx(np.std([0, 0, 1, 0, 0, 40, 0, 2, 0, 0], ddof=1))
    assert _row(stats, "smooth", "S1")["ADI"] == 1.0
    patterns = dict(zip(stats["SKU"], demand_pattern(stats["ADI"], stats["CV2"])))
    assert patterns == {name: name for name in ("smooth", "erratic", "intermittent", "lumpy")}


def test_pattern_stats_launches_discontinuations_single_and_no_sales() -> None:
    stats = pattern_stats(_history({
        ("launch", ""): [0, 0, 0, 0, 3, 3, 3, 3],   # zeros before the first sale are not intermittency
        ("stopped", ""): [3, 3, 0, 0, 0, 0],        # silence after the last sale is
        ("once", ""): [0, 0, 7, 0, 0],
        ("never", ""): [0, 0, 0],
    }))
    assert _row(stats, "launch")["ADI"] == 1.0
    assert _row(stats, "stopped")["ADI"] == 3.0
    once = _row(stats, "once")
    assert (once["ADI"], once["CV2"]) == (3.0, 0.0)
    never = _row(stats, "never")
    assert np.isnan(never["ADI"]) and np.isnan(never["CV2"]) and never["n_nonzero"] == 0
    assert list(demand_pattern([never["ADI"], once["ADI"]], [never["CV2"], once["CV2"]])) == [
        "no demand", "intermittent",
    ]


def test_pattern_stats_ignore_row_order_plan_rows_and_missing_location() -> None:
    hist = _history({("A", ""): [0, 4, 0, 6], ("B", ""): [1, 1, 1, 1]})
    plan = pd.DataFrame({"SKU": "A", "Location": "", "Qty": np.nan,
                         "Date": pd.date_range("2024-02-04", periods=3, freq="W")})
    shuffled = pd.concat([hist, plan]).sample(frac=1.0, random_state=3).drop(columns="Location")
    stats = pattern_stats(shuffled)
    assert list(stats["Location"]) == ["", ""]
    a = _row(stats, "A")
    assert a["n_periods"] == 4 and a["ADI"] == pytest.approx(1.5)


def _reference_stats(q: np.ndarray) -> tuple[float, float]:
    """ADI and CV2 by the documented definitions, one series at a time."""
    nz = np.flatnonzero(q > 0)
    if nz.size == 0:
        return np.nan, np.nan
    sizes = q[nz]
    return (len(q) - nz[0]) / nz.size, sizes.var() / sizes.mean() ** 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30).map(lambda x: 0 if x < 12 else x - 11), min_size=1, max_size=15),
                min_size=1, max_size=6))
def test_vectorised_pattern_stats_equal_the_per_series_definition(panel: list[list[int]]) -> None:
    hist = _history({(f"S{i}", "L"): q for i, q in enumerate(panel)})
    stats = pattern_stats(hist.iloc[::-1])
    for i, q in enumerate(panel):
        adi, cv2 = _reference_stats(np.asarray(q, dtype=float))
        row = _row(stats, f"S{i}", "L")
        np.testing.assert_allclose([row["ADI"], row["CV2"]], [adi, cv2], rtol=1e-9, atol=1e-12)
        assert row["mean_demand"] == pytest.approx(np.mean(q))


# --- segment ------------------------------------------------------------------------------

def _panel() -> pd.DataFrame:
    return _history({
        ("CHEAP", "L1"): [100] * 8,   # many units, low cost
        ("DEAR", "L1"): [10] * 8,     # few units, high cost
        ("MID", "L1"): [5, 0, 5, 0, 5, 0, 5, 0],
        ("NEW", "L1"): [0, 0, 0, 0, 0, 0, 2, 3],
    })


def test_segment_ranks_by_value_when_costs_are_known_and_by_units_otherwise() -> None:
    items = pd.DataFrame({"SKU": ["CHEAP", "DEAR", "MID", "NEW"], "Location": "",
                          "UnitCost": [0.1, 100.0, 2.0, 1.0]})
    by_value = segment(_panel(), items=items)
    assert _row(by_value, "DEAR", "L1")["ABC"] == "A"
    assert _row(by_value, "CHEAP", "L1")["ABC"] == "C"
    assert _row(by_value, "DEAR", "L1")["AnnualValue"] == pytest.approx(10 * 52 * 100.0)
    assert _row(by_value, "MID", "L1")[["mean_demand", "sd_demand"]].tolist() == pytest.approx(
        [2.5, np.std([5, 0] * 4, ddof=1)])
    assert set(by_value["ValueBasis"]) == {"cost"} and by_value.attrs["value_basis"] == "cost"

    by_units = segment(_panel())
    assert _row(by_units, "CHEAP", "L1")["ABC"] == "A"
    assert _row(by_units, "CHEAP", "L1")["AnnualValue"] == pytest.approx(100 * 52)
    assert by_units.attrs["value_basis"] == "units"


def test_segment_values_a_row_without_cost_at_the_median_cost() -> None:
    items = pd.DataFrame({"SKU": ["CHEAP", "DEAR", "MID"], "UnitCost": [0.1, 100.0, 2.0]})
    seg = segment(_panel(), items=items)
    new = _row(seg, "NEW", "L1")
    assert new["ValueBasis"] == "median cost"
    assert new["AnnualValue"] == pytest.approx(0.625 * 52 * 2.0)
    assert seg.attrs["value_basis"] == "mixed"


def test_segment_xyz_from_backtest_errors_and_unknown_for_new_items() -> None:
    errors = pd.DataFrame({
        "SKU": ["CHEAP", "CHEAP", "DEAR", "DEAR", "MID", "MID"], "Location": "L1",
        "y": [100, 100, 10, 10, 5, 0], "P50": [110, 90, 2, 18, 0, 5],
    })
    seg = segment(_panel(), errors=errors)
    cheap, dear, mid, new = (_row(seg, s, "L1") for s in ("CHEAP", "DEAR", "MID", "NEW"))
    assert cheap["ErrorCV"] == pytest.approx(0.1) and cheap["XYZ"] == "X"  # RMSE 10 / mean 100
    assert dear["ErrorCV"] == pytest.approx(0.8) and dear["XYZ"] == "Y"    # RMSE 8 / mean 10
    assert mid["ErrorCV"] == pytest.approx(2.0) and mid["XYZ"] == "Z"      # RMSE 5 / mean 2.5
    assert new["XYZ"] == "?" and np.isnan(new["ErrorCV"])
    assert cheap["Class"] == "AX" and new["Class"].endswith("?")
    assert mid["Pattern"] == "intermittent" and cheap["Pattern"] == "smooth"


def test_service_level_items_beat_settings_which_beat_defaults() -> None:
    hist = _history({("P", "L1"): [10] * 6, ("P", "L2"): [10] * 6, ("Q", "L1"): [10] * 6,
                     ("R", "L1"): [1] * 6})
    items = pd.DataFrame({"SKU": ["P", "P", "Q"], "Location": ["", "L2", "L1"],
                          "ServiceLevel": [0.97, 0.99, np.nan]})
    errors = pd.DataFrame({"SKU": ["Q", "R"], "Location": "L1", "y": [10, 1], "P50": [10, 1]})
    seg = segment(hist, items=items, errors=errors, service_levels={"AX": 0.995, "C": 0.85})
    assert tuple(_row(seg, "P", "L1")[["ServiceLevel", "ServiceLevelSource"]]) == (0.97, "Items")
    assert tuple(_row(seg, "P", "L2")[["ServiceLevel", "ServiceLevelSource"]]) == (0.99, "Items")
    q = _row(seg, "Q", "L1")
    assert (q["Class"], q["ServiceLevel"], q["ServiceLevelSource"]) == ("AX", 0.995, "Settings ServiceLevel.AX")
    r = _row(seg, "R", "L1")
    assert (r["Class"], r["ServiceLevel"], r["ServiceLevelSource"]) == ("CX", 0.85, "Settings ServiceLevel.C")

    default = segment(hist)
    row = _row(default, "R", "L1")
    assert row["ServiceLevel"] == DEFAULT_SERVICE_LEVELS["C"]
    assert row["ServiceLevelSource"] == "default for class C"


@pytest.mark.parametrize("levels", [{"A": 1.0}, {"Q": 0.9}, {"B": "high"}])
def test_segment_refuses_bad_class_service_levels(levels) -> None:
    with pytest.raises(InputError):
        segment(_panel(), service_levels=levels)


def test_segment_refuses_items_service_level_outside_0_1_and_missing_columns() -> None:
    with pytest.raises(InputError) as exc:
        segment(_panel(), items=pd.DataFrame({"SKU": ["DEAR"], "ServiceLevel": [95.0]}))
    assert exc.value.problems[0].column == "ServiceLevel" and "DEAR" in exc.value.problems[0].message
    with pytest.raises(InputError) as exc:
        segment(_panel().drop(columns="Qty"))
    assert exc.value.code == "E101"


# --- Settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.95, "95%", 95, " 95 % ", "0.95", "95"])
def test_service_level_settings_accept_fractions_and_percentages(value) -> None:
    levels = service_levels_from_settings([("Frequency", "W"), ("servicelevel.a", value)])
    assert levels == {"A": pytest.approx(0.95)}


def test_service_level_settings_report_every_problem_with_its_excel_row() -> None:
    rows = [
        ("Horizon", 12),
        ("ServiceLevel.A", "100%"),
        ("ServiceLevel.Q", 0.9),
        ("ServiceLevel.B", "high"),
        ("ServiceLevel.C", 0),
        ("ServiceLevel.a", 0.97),
        ("ServiceLevel.BX", "0,95"),
        ("ServiceLevel.AZ", 0.99),
    ]
    with pytest.raises(InputError) as exc:
        service_levels_from_settings(rows, first_row=5)
    problems = {(p.row, p.column): p for p in exc.value.problems}
    assert set(problems) == {(6, "Value"), (7, "Key"), (8, "Value"), (9, "Value"), (10, "Key"), (11, "Value")}
    assert all(p.table == "Settings" and p.fix for p in problems.values())
    assert problems[(6, "Value")].value == "100%"
    assert "infinite safety stock" in problems[(6, "Value")].message
    assert "comma" in problems[(11, "Value")].message
    assert "twice" in problems[(10, "Key")].message


def test_segmentation_settings_read_cutoffs_and_feed_segment() -> None:
    cfg = segmentation_settings([
        ("ABC.A", "70%"), ("abc.b", 90), ("XYZ.X", 0.4), ("XYZ.Y", "150%"), ("ServiceLevel.A", "99%"),
        ("Model", "demo"),
    ])
    assert cfg.abc_cutoffs == pytest.approx((0.7, 0.9))
    assert cfg.xyz_cutoffs == pytest.approx((0.4, 1.5))
    assert dict(cfg.service_levels) == {"A": pytest.approx(0.99)}
    seg = segment(_panel(), abc_cutoffs=cfg.abc_cutoffs, xyz_cutoffs=cfg.xyz_cutoffs,
                  service_levels=cfg.service_levels)
    top = _row(seg, "CHEAP", "L1")
    assert (top["ServiceLevel"], top["ServiceLevelSource"]) == (pytest.approx(0.99), "Settings ServiceLevel.A")

    defaults = segmentation_settings([])
    assert (defaults.abc_cutoffs, defaults.xyz_cutoffs, dict(defaults.service_levels)) == (
        (0.8, 0.95), (0.5, 1.0), {},
    )


def test_segmentation_settings_refuse_cutoffs_out_of_order_naming_the_row() -> None:
    with pytest.raises(InputError) as exc:
        segmentation_settings([("ABC.A", 0.9), ("ABC.B", 0.85), ("XYZ.Z", 2), ("XYZ.X", 80)])
    rows = sorted((p.row, p.column) for p in exc.value.problems)
    # ABC.B (row 3) below ABC.A; XYZ.Z unknown (row 4); XYZ.X 80 is not a plausible CV (row 5).
    assert rows == [(3, "Value"), (4, "Key"), (5, "Value")]
    with pytest.raises(InputError) as exc:
        segmentation_settings([("ABC.A", "96%")])  # above the default B of 95 %
    assert exc.value.problems[0].row == 2

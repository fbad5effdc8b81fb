"""The data contract: what a planner sees when their Sales / Drivers / Items tables are read."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from engine.contract import MAX_PROBLEMS_PER_COLUMN, PlanningData, read_csv_table, read_long_csv, validate
from engine.errors import InputError, Problem


def _sales(n_days: int = 6, skus: tuple[str, ...] = ("A", "B"), start: str = "2024-01-01", freq: str = "D",
           **extra: list) -> pd.DataFrame:
    dates = pd.date_range(start, periods=n_days, freq=freq)
    df = pd.DataFrame({
        "Date": np.tile(dates, len(skus)),
        "SKU": np.repeat(list(skus), n_days),
        "Qty": np.arange(n_days * len(skus), dtype=float),
    })
    for k, v in extra.items():
        df[k] = v
    return df


def _refused(*args, **kw) -> InputError:
    with pytest.raises(InputError) as exc:
        validate(*args, **kw)
    return exc.value


def _errors(err: InputError) -> list[Problem]:
    return [p for p in err.problems if p.severity == "error"]


def _one(problems: list[Problem], **match) -> Problem:
    hits = [p for p in problems if all(getattr(p, k) == v for k, v in match.items())]
    assert len(hits) == 1, f"expected one problem matching {match}, got {hits or problems}"
    return hits[0]


# ---------------------------------------------------------------- clean data


def test_clean_frame_round_trips_to_canonical_columns():
    raw = _sales().sample(frac=1.0, random_state=1)  # order must not matter
    pdata = validate(raw)
    assert isinstance(pdata, PlanningData)
    s = pdata.sales
    assert list(s.columns) == ["Date", "SKU", "Location", "Qty"]
    assert s["Date"].dtype == "datetime64[ns]" and s["Qty"].dtype == "float64"
    assert s["SKU"].tolist() == ["A"] * 6 + ["B"] * 6
    assert (s["Location"] == "").all()
    assert s["Date"].tolist() == list(pd.date_range("2024-01-01", periods=6)) * 2
    assert s["Qty"].tolist() == list(map(float, range(12)))
    assert pdata.freq == "D" and pdata.week_anchor is None
    assert pdata.warnings == [] and pdata.sales_regressors == [] and pdata.drivers is None
    assert pdata.last_date == pd.Timestamp("2024-01-06")


def test_headers_match_case_insensitively_and_ignore_spaces():
    raw = _sales().rename(columns={"Date": " date ", "SKU": "sku", "Qty": "QTY "})
    pdata = validate(raw)
    assert list(pdata.sales.columns[:4]) == ["Date", "SKU", "Location", "Qty"]
    assert pdata.sales["Qty"].sum() == sum(range(12))


def test_column_map_reads_the_planners_own_header():
    raw = _sales().rename(columns={"Qty": "Units sold"})
    pdata = validate(raw, column_map={"Qty": "Units sold"})
    assert pdata.sales["Qty"].sum() == sum(range(12))


def test_missing_required_column_lists_columns_and_suggests_the_close_one():
    raw = _sales().rename(columns={"Qty": "Quantity"})
    p = _one(_errors(_refused(raw)), column="Qty")
    assert p.table == "Sales" and p.code == "E101"
    assert "Quantity" in p.message and "SKU" in p.message  # the columns found
    assert "'Quantity'" in p.fix and "column.Qty = Quantity" in p.fix


def test_column_map_to_a_missing_header_says_so():
    raw = _sales().rename(columns={"Qty": "Units"})
    p = _one(_errors(_refused(raw, column_map={"Qty": "Units sold"})), column="Qty")
    assert "Settings maps Qty to 'Units sold'" in p.message and "Units" in p.fix


def test_duplicate_headers_are_refused():
    raw = _sales()
    raw["qty "] = raw["Qty"]
    p = _one(_errors(_refused(raw)), code="E101")
    assert "duplicate column" in p.message and "rename or delete" in p.fix


def test_sku_numbers_become_clean_strings_and_text_is_stripped():
    raw = _sales(skus=("x", "y"))
    raw["SKU"] = [1001.0] * 6 + [" 1002 "] * 6
    raw["Location"] = ["  North "] * 12
    s = validate(raw).sales
    assert sorted(s["SKU"].unique()) == ["1001", "1002"]
    assert (s["Location"] == "North").all()


# ---------------------------------------------------------------- numbers


def test_decimal_comma_is_reported_not_converted():
    raw = _sales().astype({"Qty": object})
    raw.loc[2, "Qty"] = "1,5"
    p = _one(_errors(_refused(raw)), column="Qty")
    assert (p.table, p.row, p.value, p.code) == ("Sales", 4, "1,5", "E102")
    assert "decimal point (1.5)" in p.fix and "format the cells as numbers" in p.fix


def test_every_bad_number_cell_is_reported_and_clean_text_is_accepted():
    raw = _sales().astype({"Qty": object})
    raw.loc[0, "Qty"] = " 12 "  # clean text, as in any CSV
    raw.loc[3, "Qty"] = "12 units"
    raw.loc[7, "Qty"] = "abc"
    errs = _errors(_refused(raw))
    assert {(p.row, p.value) for p in errs} == {(5, "12 units"), (9, "abc")}
    units = _one(errs, row=5)
    assert "12" in units.fix and "only the number" in units.fix


def test_bad_cells_are_capped_per_column_with_a_summary():
    n = MAX_PROBLEMS_PER_COLUMN + 50
    raw = _sales(n_days=n, skus=("A",)).astype({"Qty": object})
    raw["Qty"] = "n/a!"
    errs = _errors(_refused(raw))
    cells = [p for p in errs if p.row is not None]
    summary = [p for p in errs if p.row is None]
    assert len(cells) == MAX_PROBLEMS_PER_COLUMN
    assert len(summary) == 1 and "50 more rows" in summary[0].message


def test_true_false_read_as_one_and_zero_in_promo():
    raw = _sales(Promo=[True, False, "TRUE", "false", "yes", "no"] * 2, Price=[1.5] * 12)
    pdata = validate(raw)
    assert pdata.sales["Promo"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] * 2
    assert pdata.sales_regressors == ["Price", "Promo"]


def test_numeric_extra_columns_become_regressors_and_text_ones_are_ignored_with_a_warning():
    raw = _sales(Temperature=[str(t) for t in range(12)], Comment=["late truck"] * 12, OnHand=[5.0] * 12)
    pdata = validate(raw)
    assert pdata.sales["Temperature"].dtype == "float64"
    assert pdata.sales_regressors == ["Temperature"]  # OnHand is stock, not a driver
    assert "Comment" not in pdata.sales
    w = _one(pdata.warnings, column="Comment")
    assert "ignored" in w.message


# ---------------------------------------------------------------- dates and frequency


def test_excel_serial_dates_are_refused_showing_the_date_they_would_be():
    raw = _sales(n_days=3, skus=("A",))
    raw["Date"] = [45292, 45293, 45294]  # 2024-01-01..03 as Excel serials
    errs = _errors(_refused(raw))
    assert len(errs) == 3
    p = _one(errs, row=2)
    assert p.column == "Date" and p.value == 45292 and p.code == "E105"
    assert "2024-01-01" in p.message
    assert "format the Date column as dates" in p.fix


def test_unreadable_dates_are_reported_per_cell():
    raw = _sales(n_days=10, skus=("A",)).astype({"Date": object})
    raw.loc[1, "Date"] = "2024-13-45"
    raw.loc[3, "Date"] = "soon"
    errs = _errors(_refused(raw))
    # only the two cells: no gap reported for the rows that could not be read
    assert {(p.row, p.value) for p in errs} == {(3, "2024-13-45"), (5, "soon")}
    assert all("2024-01-31" in p.fix for p in errs)


def test_text_dates_in_several_formats_and_dayfirst():
    raw = pd.DataFrame({"Date": ["01/02/2024", "01/03/2024", "01/04/2024"], "SKU": "A", "Qty": [1, 2, 3]})
    monthly = validate(raw, dayfirst=True)
    assert monthly.freq == "MS" and monthly.sales["Date"].iloc[0] == pd.Timestamp("2024-02-01")
    daily = validate(raw)
    assert daily.freq == "D" and daily.sales["Date"].iloc[0] == pd.Timestamp("2024-01-02")
    # Excel-style mix: datetime objects and ISO text in one object column
    mixed = pd.DataFrame({"Date": [dt.datetime(2024, 1, 1), "2024-01-02", "Jan 3, 2024"], "SKU": "A",
                          "Qty": [1, 2, 3]})
    assert validate(mixed).sales["Date"].dt.day.tolist() == [1, 2, 3]


def test_day_first_dates_are_detected_when_only_that_order_fits():
    raw = pd.DataFrame({"Date": ["11/01/2024", "12/01/2024", "13/01/2024"], "SKU": "A", "Qty": [1, 2, 3]})
    pdata = validate(raw)  # dayfirst not set, but 13/01 can only be 13 January
    assert pdata.sales["Date"].tolist() == list(pd.date_range("2024-01-11", periods=3))
    assert any("day/month/year" in w.message for w in pdata.warnings)


@pytest.mark.parametrize(("start", "freq", "expected", "anchor"), [
    ("2024-01-01", "D", "D", None),
    ("2024-01-05", "W-FRI", "W", 4),
    ("2024-01-01", "MS", "MS", None),
])
def test_frequency_is_inferred(start, freq, expected, anchor):
    pdata = validate(_sales(start=start, freq=freq))
    assert pdata.freq == expected and pdata.week_anchor == anchor


def test_monthly_dates_on_month_ends_are_normalised_to_month_start():
    pdata = validate(_sales(start="2024-01-31", freq="ME"))
    assert pdata.freq == "MS"
    assert pdata.sales["Date"].iloc[:3].tolist() == list(pd.date_range("2024-01-01", periods=3, freq="MS"))


def test_monthly_dates_in_mid_month_are_refused():
    raw = _sales(start="2024-01-01", freq="MS")
    raw.loc[2, "Date"] = pd.Timestamp("2024-03-15")
    p = _one(_errors(_refused(raw)), row=4)
    assert p.column == "Date" and "first" in p.message and "2024-03-01" in p.fix


def test_weekly_dates_on_another_weekday_are_refused():
    raw = _sales(start="2024-01-07", freq="W-SUN", n_days=8)
    raw.loc[3, "Date"] = pd.Timestamp("2024-01-30")  # a Tuesday among Sundays
    p = _one(_errors(_refused(raw)), row=5)
    assert p.code == "E105" and "Tuesday" in p.message and "Sunday" in p.fix


def test_given_frequency_is_used_instead_of_inference():
    assert validate(_sales(start="2024-01-05", freq="W-FRI"), freq="weekly").freq == "W"
    p = _one(_errors(_refused(_sales(), freq="W-MON")), row=3)  # 2024-01-02 is no Monday
    assert "Monday" in p.fix


# ---------------------------------------------------------------- rows


def test_duplicate_rows_name_both_row_numbers():
    raw = pd.concat([_sales(), _sales().iloc[[3]]], ignore_index=True)  # row 5 repeated as row 14
    p = _one(_errors(_refused(raw)), code="E103")
    assert p.row == 14 and "row 5" in p.message and "SKU A" in p.message


def test_gaps_are_refused_with_series_first_missing_date_and_count():
    raw = _sales().drop(index=[2, 3]).reset_index(drop=True)  # A misses Jan 3 and Jan 4
    p = _one(_errors(_refused(raw)), code="E104")
    assert "SKU A" in p.message and "2 missing periods" in p.message
    assert p.value == "2024-01-03"
    assert "Qty 0" in p.fix


def test_gaps_filled_with_zero_when_allowed():
    raw = _sales().drop(index=[2, 3]).reset_index(drop=True)
    pdata = validate(raw, gaps="zero")
    a = pdata.sales[pdata.sales["SKU"] == "A"]
    assert a["Date"].tolist() == list(pd.date_range("2024-01-01", periods=6))
    assert a["Qty"].tolist() == [0.0, 1.0, 0.0, 0.0, 4.0, 5.0]
    w = _one(pdata.warnings, code="E104")
    assert "2 missing periods" in w.message


def test_negative_quantities_are_accepted_with_a_warning_per_row():
    raw = _sales()
    raw.loc[[1, 8], "Qty"] = [-2.0, -1.0]
    pdata = validate(raw)
    negs = [w for w in pdata.warnings if "negative" in w.message]
    assert [(w.row, w.value) for w in negs] == [(3, -2.0), (10, -1.0)]
    assert all("returns" in w.fix for w in negs)
    assert pdata.sales["Qty"].min() == -2.0


def test_blank_qty_is_allowed_in_future_plan_rows_with_planned_price():
    raw = _sales(n_days=8, Price=[2.0] * 16)
    raw.loc[[6, 7, 14, 15], "Qty"] = np.nan  # last two days of each series: the plan
    raw.loc[[7, 15], "Price"] = 1.5  # planned price cut
    pdata = validate(raw)
    assert pdata.sales["Qty"].isna().sum() == 4
    assert pdata.last_date == pd.Timestamp("2024-01-06")
    assert pdata.sales_regressors == ["Price"]


def test_plan_rows_starting_before_other_series_end_are_flagged():
    raw = _sales()
    raw.loc[[10, 11], "Qty"] = np.nan  # B stops two days before A
    pdata = validate(raw)
    w = _one(pdata.warnings, code="E102")
    assert w.row == 12 and "SKU B" in w.message and "2024-01-06" in w.message and "enter 0" in w.fix


def test_blank_qty_in_history_is_refused():
    raw = _sales()
    raw.loc[2, "Qty"] = np.nan
    p = _one(_errors(_refused(raw)), row=4)
    assert p.column == "Qty" and "enter 0 if nothing sold" in p.fix


def test_blank_sku_is_refused():
    raw = _sales().astype({"SKU": object})
    raw.loc[4, "SKU"] = "  "
    p = _one(_errors(_refused(raw)), row=6)
    assert p.column == "SKU" and "blank" in p.message


def test_row_offsets_follow_where_the_excel_table_starts():
    raw = _sales().astype({"Qty": object})
    raw.loc[0, "Qty"] = "abc"
    p = _one(_errors(_refused(raw, row_offsets={"Sales": 6})), column="Qty")  # header on Excel row 5
    assert p.row == 6


def test_fully_blank_rows_are_skipped():
    raw = _sales().astype(object)
    raw.loc[12] = [None, "  ", np.nan]  # an empty last row of an Excel table
    assert len(validate(raw).sales) == 12



def test_narrow_and_nullable_number_columns_come_out_as_float64_with_their_values():
    raw = _sales(Price=np.full(12, 2.5, dtype=np.float32), Promo=np.tile([0, 1], 6).astype(np.int8),
                 OnHand=pd.array([5, None] * 6, dtype="Int64"))
    raw["Qty"] = raw["Qty"].astype(np.float32)
    raw.loc[1, "Qty"] = -1.1  # float32: shown as the float the engine uses
    raw = raw.sample(frac=1.0, random_state=2).reset_index(drop=True)
    pdata = validate(raw)
    s = pdata.sales
    assert list(s.columns) == ["Date", "SKU", "Location", "Qty", "Price", "Promo", "OnHand"]
    assert all(s[c].dtype == "float64" for c in ["Qty", "Price", "Promo", "OnHand"])
    assert s["Price"].eq(2.5).all() and s["Promo"].tolist() == [0.0, 1.0] * 6
    assert s["OnHand"].isna().tolist() == [False, True] * 6
    neg = _one(pdata.warnings, code="E102")
    assert neg.row == 2 + int(np.flatnonzero(raw["Qty"] < 0)[0]) and neg.value == float(np.float32(-1.1))


def test_gaps_filled_in_shuffled_input_stay_in_series_and_date_order():
    raw = _sales(n_days=8, skus=("A", "B"), Price=[2.0] * 16)
    raw["Location"] = "L1"
    raw = pd.concat([raw, raw.assign(Location="L2", Qty=raw["Qty"] + 100)], ignore_index=True)
    raw = raw.drop(index=[2, 3, 12, 21]).sample(frac=1.0, random_state=3)  # A@L1, B@L1, A@L2
    s = validate(raw, gaps="zero").sales
    assert len(s) == 32
    assert s[["SKU", "Location", "Date"]].equals(s.sort_values(["SKU", "Location", "Date"])[["SKU", "Location", "Date"]])
    filled = s[s["Price"].isna()]
    assert filled["Qty"].eq(0.0).all() and len(filled) == 4
    assert filled[["SKU", "Location"]].apply(tuple, axis=1).tolist() == [("A", "L1")] * 2 + [("A", "L2"), ("B", "L1")]


def test_problems_in_shuffled_input_name_the_planners_rows():
    raw = _sales(n_days=8).sample(frac=1.0, random_state=4).reset_index(drop=True)
    pos_neg = int(np.flatnonzero((raw["SKU"] == "B") & (raw["Date"] == "2024-01-03"))[0])
    raw.loc[pos_neg, "Qty"] = -5.0
    raw = pd.concat([raw, raw.iloc[[pos_neg]]], ignore_index=True)  # the same row again, at the end
    err = _refused(raw, row_offsets={"Sales": 10})
    dup = _one(_errors(err), code="E103")
    assert dup.row == 10 + len(raw) - 1 and f"row {10 + pos_neg}" in dup.message and "2024-01-03" in dup.message
    negs = [p for p in err.problems if "negative" in p.message]
    assert sorted(p.row for p in negs) == [10 + pos_neg, 10 + len(raw) - 1]


def test_validating_a_large_sales_table_needs_little_more_memory_than_its_result():
    n_series, n_days = 200, 1000  # 200 000 rows, in reverse order so they must be sorted
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({
        "Date": np.tile(pd.date_range("2020-01-01", periods=n_days).values, n_series),
        "SKU": pd.Categorical(np.repeat([f"S{i % 50:03d}" for i in range(n_series)], n_days)),
        "Location": pd.Categorical(np.repeat([f"L{i // 50}" for i in range(n_series)], n_days)),
        "Qty": rng.poisson(3.0, n_series * n_days).astype(float),
        "Price": np.full(n_series * n_days, 2.5, dtype=np.float32),
        "Promo": (rng.random(n_series * n_days) < 0.1).astype(np.int8),
    }).iloc[::-1].reset_index(drop=True)
    tracemalloc.start()
    try:
        pdata = validate(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = pdata.sales.memory_usage(index=False).sum()
    assert len(pdata.sales) == len(raw) and pdata.n_series == n_series
    # The result itself counts once; per-row copies of the input (object keys, float64
    # copies, a sorted copy of the frame) would each add most of it again.
    assert peak < 2.5 * result, f"validate peaked at {peak / result:.2f} times the size of its result"


# ---------------------------------------------------------------- items


def test_sales_sku_missing_from_items_is_reported_with_its_first_row():
    items = pd.DataFrame({"SKU": ["A"]})
    p = _one(_errors(_refused(_sales(), items=items)), code="E106")
    assert (p.table, p.row, p.column, p.value) == ("Sales", 8, "SKU", "B")
    assert "add B to the Items table" in p.fix


def test_location_checked_against_items_when_items_has_locations():
    raw = _sales(Location=["North"] * 6 + ["South"] * 6)
    items = pd.DataFrame({"SKU": ["A", "B"], "Location": ["North", "North"]})
    p = _one(_errors(_refused(raw, items=items)), code="E106")
    assert "B at South" in p.message and p.row == 8
    # a blank Items Location covers every location of the SKU
    items_all = pd.DataFrame({"SKU": ["A", "B"], "Location": ["North", ""]})
    assert validate(raw, items=items_all).items["Location"].tolist() == ["North", ""]


def test_numeric_items_sku_matches_text_sales_sku():
    raw = _sales(skus=("1001", "1002"))
    items = pd.DataFrame({"SKU": [1001.0, 1002.0], "LeadTimeDays": ["7", 14]})
    pdata = validate(raw, items=items)
    assert pdata.items["SKU"].tolist() == ["1001", "1002"]
    assert pdata.items["LeadTimeDays"].tolist() == [7.0, 14.0]


def test_duplicate_items_are_refused():
    items = pd.DataFrame({"SKU": ["A", "B", "A"]})
    p = _one(_errors(_refused(_sales(), items=items)), table="Items")
    assert p.row == 4 and "row 2" in p.message and p.code == "E103"


@pytest.mark.parametrize(("value", "fix"), [(95, "write 0.95"), ("95%", "write 0.95"), (1.0, "0.95")])
def test_service_level_must_be_a_fraction(value, fix):
    items = pd.DataFrame({"SKU": ["A", "B"], "ServiceLevel": [0.9, value]})
    p = _one(_errors(_refused(_sales(), items=items)), table="Items")
    assert (p.row, p.column, p.value) == (3, "ServiceLevel", value)
    assert fix in p.fix


def test_lead_times_must_not_be_negative():
    items = pd.DataFrame({"SKU": ["A", "B"], "LeadTimeDays": [3, -2], "FillRateTarget": [0.98, 0.95]})
    p = _one(_errors(_refused(_sales(), items=items)), table="Items")
    assert (p.row, p.column, p.value) == (3, "LeadTimeDays", -2)


# ---------------------------------------------------------------- drivers


def _drivers(n_days: int = 6, **cols: list) -> pd.DataFrame:
    df = pd.DataFrame({"Date": pd.date_range("2024-01-01", periods=n_days)})
    for k, v in cols.items():
        df[k] = v
    return df


def test_drivers_with_future_values_are_accepted():
    d = _drivers(9, Temperature=[float(i) for i in range(9)], CPI=["1.5"] * 9)
    pdata = validate(_sales(), drivers=d)
    assert pdata.driver_columns == ["Temperature", "CPI"]
    assert pdata.drivers["CPI"].dtype == "float64" and len(pdata.drivers) == 9
    assert pdata.warnings == []


def test_drivers_without_future_rows_warn_per_column_that_values_will_be_assumed():
    d = _drivers(6, Temperature=[1.0] * 6, CPI=[2.0] * 6)
    warns = validate(_sales(), drivers=d).warnings
    assert {w.column for w in warns} == {"Temperature", "CPI"}
    assert all("forecast" in w.message and "assumed" in w.message and w.code == "E107" for w in warns)


def test_blank_driver_values_warn_in_history_and_in_future():
    temp = [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan]
    warns = validate(_sales(), drivers=_drivers(8, Temperature=temp)).warnings
    hist = _one(warns, row=3)
    assert "history" in hist.message
    fut = _one(warns, row=9)
    assert "future" in fut.message and "assumed" in fut.message


def test_duplicate_driver_rows_are_refused_and_bad_cells_reported():
    d = _drivers(8, Temperature=["1"] * 7 + ["1,5"])
    d = pd.concat([d, d.iloc[[0]]], ignore_index=True)
    errs = _errors(_refused(_sales(), drivers=d))
    dup = _one(errs, code="E103")
    assert dup.table == "Drivers" and dup.row == 10 and "row 2" in dup.message
    comma = _one(errs, code="E102")
    assert comma.row == 9 and comma.value == "1,5"


def test_driver_locations_not_in_sales_warn():
    raw = _sales(Location=["North"] * 12)
    d = pd.concat([_drivers(8, Location=["North"] * 8, Temp=[1.0] * 8),
                   _drivers(8, Location=["Nroth"] * 8, Temp=[1.0] * 8)], ignore_index=True)
    pdata = validate(raw, drivers=d)
    w = _one(pdata.warnings, column="Location")
    assert w.value == "Nroth" and w.row == 10 and w.table == "Drivers"


# ---------------------------------------------------------------- everything at once


def test_all_problems_are_collected_in_one_error():
    raw = _sales().astype({"Qty": object})
    raw.loc[2, "Qty"] = "1,5"
    raw = pd.concat([raw, raw.iloc[[5]]], ignore_index=True)
    items = pd.DataFrame({"SKU": ["A"]})
    err = _refused(raw, items=items)
    codes = sorted(p.code for p in _errors(err))
    assert codes == ["E102", "E103", "E106"]
    assert err.code == "E100" and err.one_line().startswith("PLANCELL-E100: ")
    assert "3 problems" in err.message


def test_problems_in_several_tables_are_reported_together():
    items = pd.DataFrame({"Item": ["A", "B"]})
    drivers = pd.DataFrame({"Day": ["2024-01-01"], "Temp": [1.0]})
    err = _refused(_sales().rename(columns={"SKU": "Product"}), drivers=drivers, items=items)
    assert {(p.table, p.column) for p in _errors(err)} == {("Sales", "SKU"), ("Items", "SKU"),
                                                           ("Drivers", "Date")}


# ---------------------------------------------------------------- CSV


def test_read_csv_table_keeps_text_so_line_numbers_and_values_are_reported(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text('Date,SKU,Qty\n2024-01-01,001,3\n2024-01-02,001,"1,5"\n\n2024-01-03,001, 4 \n')
    raw = read_csv_table(path, "Sales")
    assert raw.loc[0, "SKU"] == "001" and raw.loc[1, "Qty"] == "1,5"
    p = _one(_errors(_refused(raw)), column="Qty")
    assert (p.row, p.value) == (3, "1,5")  # line 3 of the file


def test_read_csv_table_sniffs_semicolons_and_still_refuses_decimal_commas(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("Date;SKU;Qty\n2024-01-01;A;2\n2024-01-02;A;1,5\n", encoding="cp1252")
    raw = read_csv_table(path, "Sales")
    assert list(raw.columns) == ["Date", "SKU", "Qty"]
    p = _one(_errors(_refused(raw)), column="Qty")
    assert (p.row, p.value) == (3, "1,5") and "decimal point (1.5)" in p.fix


def test_read_csv_table_missing_file_names_it(tmp_path):
    with pytest.raises(InputError) as exc:
        read_csv_table(tmp_path / "nope.csv", "Sales")
    assert "nope.csv" in str(exc.value) and exc.value.code == "E101"


def test_read_long_csv_with_custom_columns_and_boolean_regressor(tmp_path):
    path = tmp_path / "export.csv"
    lines = ["Store,Dept,Week,Weekly_Sales,IsHoliday,Fuel"]
    for store, dept in (("1", "12"), ("2", "7")):
        for i, day in enumerate(pd.date_range("2024-01-05", periods=5, freq="W-FRI")):
            sales = "" if (store, i) == ("2", 4) else str(10 + i)
            lines.append(f"{store},{dept},{day:%Y-%m-%d},{sales},{'TRUE' if i == 2 else 'FALSE'},3.{i}")
    path.write_text("\n".join(lines) + "\n")
    pdata = read_long_csv(path, date="week", ids=["Store", "Dept"], target="weekly_sales",
                          regressors=["IsHoliday", "Fuel"])
    s = pdata.sales
    assert sorted(s["SKU"].unique()) == ["1/12", "2/7"] and (s["Location"] == "").all()
    assert pdata.freq == "W" and pdata.week_anchor == 4
    assert s.loc[s["SKU"] == "1/12", "IsHoliday"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert pdata.sales_regressors == ["IsHoliday", "Fuel"]
    assert len(s) == 9  # the blank target row was dropped ...
    w = _one(pdata.warnings, column="Weekly_Sales")
    assert w.row == 11 and "skipped" in w.message  # ... with its line number


def test_read_long_csv_unknown_column_lists_columns_and_close_match(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Store,Date,Sales\n1,2024-01-01,3\n1,2024-01-02,4\n")
    with pytest.raises(InputError) as exc:
        read_long_csv(path, date="Date", ids=["Stor"], target="Sale")
    probs = exc.value.problems
    assert [p.value for p in probs] == ["Stor", "Sale"]
    assert "Store, Date, Sales" in probs[0].message and "'Store'" in probs[0].fix
    assert "'Sales'" in probs[1].fix

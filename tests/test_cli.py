"""The ``plancell`` command, run in-process through ``main([...])`` (plus one real subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

import engine.backtest
from addin.cli import _ProgressBars, main
from engine.errors import PlancellError
from engine.progress import ProgressEvent
from engine.synthetic import generate_panel

# Few boosting rounds keep every model fit here well under a second.
FAST = ["--rounds", "20"]
CSV_ARGS = ["--date", "week", "--id", "store,item", "--target", "units", "--horizon", "4", *FAST]


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weekly export as a planner's system would write it: its own column names."""
    panel = generate_panel("W", n_skus=4, n_locations=2, periods=80, horizon=4, seed=1)
    df = panel.sales.rename(columns={"Date": "week", "Location": "store", "SKU": "item", "Qty": "units"})
    path = tmp_path_factory.mktemp("csv") / "sales.csv"
    df.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- demo


def test_demo_writes_the_workbook_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, "demo", "--out", str(out_dir), "--skus", "3", "--horizon", "4",
                          "--windows", "2", *FAST)
    assert code == 0, err
    book = out_dir / "plancell-demo.xlsx"
    assert book.is_file()
    assert str(book.resolve()) in out
    assert "WAPE" in out and "seasonal naive" in out and "coverage" in out

    wb = openpyxl.load_workbook(book)
    tables = {name: ws for ws in wb.worksheets for name in ws.tables}
    assert {"Sales", "Drivers", "Items", "Plan", "Accuracy"} <= set(tables)
    plan_ws = tables["Plan"]
    rows = list(plan_ws[plan_ws.tables["Plan"].ref])
    header = [c.value for c in rows[0]]
    body = [[c.value for c in r] for r in rows[1:]]
    assert header[:6] == ["SKU", "Location", "Period", "P10", "P50", "P90"]
    assert len(body) == 3 * 2 * 4  # 3 SKUs x 2 locations x 4 periods
    assert all(r[3] <= r[4] <= r[5] for r in body)  # P10 <= P50 <= P90
    # The plan rows (planned price/promo, no Qty yet) are in the Sales table for the planner to edit.
    sales_ws = tables["Sales"]
    qty = [r[3].value for r in sales_ws[sales_ws.tables["Sales"].ref]][1:]
    assert qty.count(None) == 3 * 2 * 4
    # The WAPE printed is the one the workbook shows the meeting.
    printed = re.search(r"model (\d+\.\d)% vs seasonal naive (\d+\.\d)%", out)
    assert printed, out
    acc = tables["Accuracy"]
    assert acc["A3"].value == "Plancell model" and acc["A4"].value == "Seasonal naive"
    assert printed.groups() == (f"{100 * acc['B3'].value:.1f}", f"{100 * acc['B4'].value:.1f}")
    # The inventory policy sits on the Plan sheet; what to buy is on Purchases.
    assert "Policy" in plan_ws.tables and "Purchases" in tables
    pol = [[c.value for c in r] for r in plan_ws[plan_ws.tables["Policy"].ref]]
    assert {"Safety stock", "Reorder point", "Order now", "Service level"} <= set(pol[0])
    assert len(pol) - 1 == 3 * 2
    assert "inventory" in out and "to order now" in out


def test_progress_events_become_a_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    bars = _ProgressBars(enabled=True)
    for done in range(4):
        bars(ProgressEvent("backtest", done, 3, f"window {done}"))
    bars(ProgressEvent("train", 1, 1, "model trained"))
    bars.close()
    err = capsys.readouterr().err
    assert "backtest" in err and "3/3" in err and "train" in err and "model trained" in err


def test_demo_refuses_a_negative_budget(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "demo", "--budget", "-5")
    assert code == 2 and "--budget" in err and "0 or more" in err


def test_demo_refuses_a_bad_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "demo", "--skus", "0")
    assert code == 2
    assert "--skus" in err and "at least 1" in err


# --------------------------------------------------------------------------- backtest


REQUIRED = {"n_series", "horizon", "windows", "model", "seasonal_naive", "coverage_p10_p90"}


def test_backtest_json_is_one_object_with_the_contract_keys(
    sales_csv: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS, "--json")
    assert code == 0, err
    report = json.loads(out)  # the whole of stdout is one JSON document
    assert REQUIRED <= set(report)
    assert report["n_series"] == 8 and report["horizon"] == 4 and report["windows"] == 3
    for method in ("model", "seasonal_naive", "moving_average"):
        assert set(report[method]) == {"wape", "mase", "bias"}
        assert 0 <= report[method]["wape"] < 5
    assert 0 <= report["coverage_p10_p90"] <= 1
    assert report["freq"] == "W"
    assert 0 <= report["n_series_baseline"] <= 8


def test_backtest_json_stays_clean_when_a_library_prints(
    sales_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = engine.backtest.backtest

    def chatty(*args, **kwargs):
        print("[LightGBM] [Warning] some log line")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.backtest, "backtest", chatty)
    code, out, err = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS, "--json")
    assert code == 0
    assert json.loads(out)["n_series"] == 8
    assert "[LightGBM]" in err


def test_backtest_table_compares_with_baselines(sales_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS, "--windows", "2")
    assert code == 0
    for text in ("8 series", "2 windows", "WAPE", "MASE", "seasonal naive", "moving average", "P10-P90 coverage"):
        assert text in out


def test_backtest_bad_number_names_row_and_column(tmp_path: Path, sales_csv: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lines = sales_csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[5].split(",")  # line 6 of the file (header is line 1)
    cells[header.index("units")] = '"1,5"'  # a decimal comma where a number should be
    lines[5] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")

    code, out, err = _run(capsys, "backtest", str(bad), *CSV_ARGS, "--json")
    assert code == 2
    assert out == ""
    assert "row 6" in err and "units" in err and "1,5" in err
    assert "Traceback" not in err


def test_backtest_missing_target_column_is_explained(sales_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "backtest", str(sales_csv), "--date", "week", "--id", "store,item",
                        "--target", "sold")
    assert code == 2
    assert "sold" in err and "PLANCELL-E" in err
    assert "Traceback" not in err


def test_backtest_without_target_option_is_a_usage_error(sales_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "backtest", str(sales_csv), "--date", "week", "--id", "item")
    assert code == 2
    assert "--target" in err


def test_backtest_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "backtest", str(tmp_path / "nope.csv"), *CSV_ARGS)
    assert code == 2
    assert "nope.csv" in err and "Traceback" not in err


# --------------------------------------------------------------------------- errors at the edge


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


def test_internal_error_is_one_line_unless_traceback_asked(
    sales_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine.backtest, "backtest", _raise(ZeroDivisionError("boom")))
    code, _, err = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS)
    assert code == 1
    assert err.strip().splitlines() == [
        "PLANCELL-E900: internal error (ZeroDivisionError: boom); run with --traceback for details"]

    code, _, err = _run(capsys, "--traceback", "backtest", str(sales_csv), *CSV_ARGS)
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError" in err
    code, _, err = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS, "--traceback")  # after the command too
    assert "Traceback" in err


def test_plancell_error_is_one_line_exit_1(
    sales_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine.backtest, "backtest", _raise(PlancellError("server busy", code="E300")))
    code, _, err = _run(capsys, "backtest", str(sales_csv), *CSV_ARGS)
    assert code == 1
    assert err.strip() == "PLANCELL-E300: server busy"


def test_no_command_shows_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys)
    assert code == 2
    assert "demo" in err and "backtest" in err


def test_installed_console_script_help() -> None:
    script = Path(sys.executable).parent / ("plancell.exe" if sys.platform == "win32" else "plancell")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "backtest", "refresh", "serve"):
        assert command in proc.stdout


# --------------------------------------------------------------------------- refresh / publish on files


def test_refresh_and_publish_a_workbook_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--skus", "3", "--horizon", "4", "--windows", "2",
                        *FAST)
    assert code == 0, err
    book = tmp_path / "plancell-demo.xlsx"
    out = tmp_path / "refreshed.xlsx"
    code, text, err = _run(capsys, "refresh", str(book), "--out", str(out), *FAST)
    assert code == 0, err
    assert "Refreshed" in text and "WAPE" in text and "to order now" in text
    code, text, err = _run(capsys, "publish", str(out))
    assert code == 0, err
    assert re.search(r"Published 'Plan \d{4}-\d{2} v1'", text)
    wb = openpyxl.load_workbook(out)
    assert any(n.startswith("Plan 20") for n in wb.sheetnames)


def test_refresh_of_a_missing_book_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "refresh", str(tmp_path / "nope.xlsx"))
    assert code == 1 or code == 2
    assert err.startswith("PLANCELL-E110") and "does not exist" in err

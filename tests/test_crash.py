"""Crash consistency, short version of ``python -m bench.crash``: SIGKILL a refresh of a
workbook file and a model save at random moments; the workbook is always the complete old
or new file and the store always serves a complete, verified model."""

from __future__ import annotations

import os
import random

import pytest

from bench.crash import _check_book, _check_store, prepare, refresh_trials, save_trials

# A new moment every run (the seed is in the failure message, to replay it with bench.crash).
SEED = int.from_bytes(os.urandom(4), "little")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    return prepare(tmp_path_factory.mktemp("crash"), skus=2, rounds=5, windows=1)


def test_checks_catch_a_truncated_workbook_and_a_damaged_pointer(workspace) -> None:
    # The harness must be able to fail: half a workbook and a garbled LATEST are caught.
    workspace.book.write_bytes(workspace.old_bytes[: len(workspace.old_bytes) // 2])
    try:
        state, why = _check_book(workspace)
        assert state == "bad" and why
    finally:
        workspace.book.write_bytes(workspace.old_bytes)
    pointer = workspace.home / "models" / "plancell-demo" / "LATEST"
    good = pointer.read_bytes()
    pointer.write_bytes(b"v00")
    try:
        assert "LATEST" in (_check_store(workspace.home, "plancell-demo") or "")
    finally:
        pointer.write_bytes(good)
    assert _check_store(workspace.home, "plancell-demo") is None


def test_killed_refreshes_leave_the_old_or_the_complete_new_workbook(workspace) -> None:
    out = refresh_trials(workspace, 5, random.Random(SEED), rounds=5)
    assert out.trials == 5 and out.killed >= 3, (SEED, out)
    assert not out.failures, (SEED, out.failures)


def test_killed_saves_leave_a_loadable_model_and_the_next_save_works(workspace) -> None:
    workspace.save_seconds = 0.08   # a save of the 1.6 MB payload takes 50-100 ms here
    out = save_trials(workspace, 5, random.Random(SEED), payload="arrays")
    assert out.trials == 5 and out.killed == 5, (SEED, out)
    assert not out.failures, (SEED, out.failures)

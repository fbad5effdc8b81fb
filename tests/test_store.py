"""Model store: round trips, versions, tamper refusal, crash safety, names, fingerprints, key."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.store as store_mod
from engine.errors import InputError, TransientError
from engine.store import (
    ModelStore,
    ModelVersion,
    data_fingerprint,
    installation_key,
    safe_model_name,
)

REFUSAL = "was not written by this Plancell installation or was changed since"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in these tests may fall back to the real ~/.plancell.
    monkeypatch.setenv("PLANCELL_HOME", str(tmp_path / "env-home"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> ModelStore:
    return ModelStore(home=home)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        pytest.fail("joblib.load was called on a file that failed verification")

    monkeypatch.setattr(joblib, "load", boom)


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- round trips


def test_round_trip_of_dict_with_numpy_and_converted_metadata(store: ModelStore, home: Path) -> None:
    model = {"weights": np.arange(6, dtype=float).reshape(2, 3), "label": "demand"}
    meta_in = {
        "rows": np.int64(50),
        "wape": np.float32(0.25),
        "quantiles": np.array([0.1, 0.5, 0.9]),
        "trained_until": pd.Timestamp("2024-03-31"),
        "source": Path("/data/Plan.xlsx"),
        "missing": float("nan"),
    }
    saved = store.save("Plan 2024", model, meta_in)

    assert isinstance(saved, ModelVersion)
    assert saved.version == 1
    assert saved.path == home / "models" / "Plan 2024" / "v0001"
    assert sorted(p.name for p in saved.path.iterdir()) == ["MANIFEST.json", "metadata.json", "model.joblib"]

    loaded, meta = store.load("Plan 2024")
    assert loaded["label"] == "demand"
    np.testing.assert_array_equal(loaded["weights"], model["weights"])
    assert meta["rows"] == 50 and meta["wape"] == pytest.approx(0.25)
    assert meta["quantiles"] == [0.1, 0.5, 0.9]
    assert meta["trained_until"] == "2024-03-31T00:00:00"
    assert meta["source"] == str(Path("/data/Plan.xlsx"))
    assert meta["missing"] is None
    assert meta["name"] == "Plan 2024" and meta["version"] == 1
    assert meta["plancell_version"] == "0.1.0"
    assert pd.Timestamp(meta["saved_at"]).tzinfo is not None
    assert store.metadata("Plan 2024") == meta == saved.metadata


def test_round_trip_of_trained_lightgbm_model_predicts_the_same(store: ModelStore) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"temp": rng.normal(20, 5, 50), "promo": rng.integers(0, 2, 50)})
    y = 10 + 0.5 * X["temp"] + 3 * X["promo"] + rng.normal(0, 1, 50)
    model = lightgbm.LGBMRegressor(n_estimators=5, min_child_samples=5, n_jobs=1, verbose=-1).fit(X, y)

    store.save("walmart", model, {"features": list(X.columns)})
    loaded, meta = store.load("walmart")

    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert meta["features"] == ["temp", "promo"]


def test_metadata_that_is_not_json_is_refused_before_anything_is_written(store: ModelStore) -> None:
    with pytest.raises(TypeError, match="object"):
        store.save("m", {"a": 1}, {"bad": object()})
    assert store.names() == []
    assert not (store.root / "m").exists()


# ----------------------------------------------------------------------------- versions


def test_versions_increase_and_latest_follows(store: ModelStore) -> None:
    assert store.latest("m") is None and store.versions("m") == []
    for i in range(1, 4):
        assert store.save("m", {"i": i}, {}).version == i
        assert store.latest("m") == i
    store.save("other", {"i": 0}, {})

    assert store.versions("m") == [1, 2, 3]
    assert store.names() == ["m", "other"]
    assert store.load("m")[0] == {"i": 3}
    assert store.load("m", version=1)[0] == {"i": 1}
    assert store.metadata("m", 2)["version"] == 2
    assert (store.root / "m" / "LATEST").read_text().strip() == "v0003"


def test_concurrent_saves_of_one_model_get_distinct_versions(store: ModelStore) -> None:
    errors: list[BaseException] = []

    def worker(tag: str) -> None:
        try:
            for i in range(3):
                store.save("shared", {"by": tag, "i": i}, {})
        except BaseException as exc:  # surfaced below; a thread would swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert store.versions("shared") == [1, 2, 3, 4, 5, 6]
    assert store.latest("shared") == 6
    seen = {(m["by"], m["i"]) for m in (store.load("shared", v)[0] for v in range(1, 7))}
    assert len(seen) == 6


def test_save_gives_up_with_a_retry_message_when_another_save_holds_the_lock(home: Path) -> None:
    quick = ModelStore(home=home, lock_timeout=0.2)
    quick.save("m", {"v": 1}, {})
    with store_mod._exclusive(quick.root / "m" / ".lock", timeout=1.0):
        with pytest.raises(TransientError) as info:
            quick.save("m", {"v": 2}, {})
    assert info.value.code == "E300" and "try again" in info.value.one_line()
    assert quick.versions("m") == [1]


def test_unknown_model_or_version_names_the_store_and_what_exists(store: ModelStore, home: Path) -> None:
    with pytest.raises(InputError) as empty:
        store.load("Plan")
    assert empty.value.code == "E201"
    assert "'Plan'" in str(empty.value) and str(store.root) in str(empty.value)
    assert "none yet" in str(empty.value)
    assert not (home / "secret.key").exists()  # looking must not create a key

    store.save("Alpha", {}, {})
    store.save("Beta", {}, {})
    with pytest.raises(InputError) as missing:
        store.metadata("Gamma")
    assert missing.value.code == "E201" and "Alpha, Beta" in str(missing.value)

    with pytest.raises(InputError) as no_version:
        store.load("Alpha", version=9)
    assert no_version.value.code == "E201" and "available versions: 1" in str(no_version.value)


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("fname", ["model.joblib", "metadata.json", "MANIFEST.json"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_flipped_byte_is_refused_naming_the_file(
    store: ModelStore, fname: str, where: str, no_unpickling: None
) -> None:
    saved = store.save("m", {"w": np.arange(100)}, {"note": "x" * 40})
    target = saved.path / fname
    size = target.stat().st_size
    _flip(target, {"first": 0, "middle": size // 2, "last": size - 1}[where])

    with pytest.raises(InputError) as info:
        store.load("m")
    err = info.value
    assert err.code == "E200"
    assert str(target) in str(err) and REFUSAL in str(err)
    assert "plancell refresh" in err.one_line()

    if fname != "model.joblib":  # metadata() checks the manifest and metadata.json, not the model's bytes
        with pytest.raises(InputError, match=REFUSAL):
            store.metadata("m")


def test_store_copied_to_another_installation_is_refused(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = store.save("m", {"w": 1}, {})
    other_root = tmp_path / "elsewhere" / "models"
    shutil.copytree(store.root, other_root)
    other = ModelStore(other_root, home=tmp_path / "other-home")
    assert installation_key(tmp_path / "other-home") != installation_key(store.home)

    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load reached"))
    with pytest.raises(InputError) as info:
        other.load("m")
    assert info.value.code == "E200"
    assert str(other_root / "m" / "v0001" / "MANIFEST.json") in str(info.value)
    monkeypatch.undo()
    assert store.load("m")[0] == {"w": 1}  # the original installation still trusts its files
    assert saved.path.is_dir()


def test_extra_file_in_version_dir_is_refused(store: ModelStore, no_unpickling: None) -> None:
    saved = store.save("m", {"w": 1}, {})
    dropped = saved.path / "helper.pkl"
    dropped.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")

    for call in (store.load, store.metadata):
        with pytest.raises(InputError) as info:
            call("m")
        assert info.value.code == "E200" and str(dropped) in str(info.value)


def test_missing_manifest_is_refused(store: ModelStore, no_unpickling: None) -> None:
    saved = store.save("m", {"w": 1}, {})
    (saved.path / "MANIFEST.json").unlink()
    with pytest.raises(InputError, match="MANIFEST.json") as info:
        store.load("m")
    assert info.value.code == "E200"


def test_version_folder_copied_under_another_number_is_refused(store: ModelStore, no_unpickling: None) -> None:
    saved = store.save("m", {"w": 1}, {})
    shutil.copytree(saved.path, saved.path.with_name("v0007"))
    with pytest.raises(InputError, match="version 1") as info:
        store.load("m", version=7)
    assert info.value.code == "E200"


def test_replaced_model_file_with_valid_pickle_is_refused(store: ModelStore, no_unpickling: None) -> None:
    # A well-formed joblib file of the same kind, just not the one we wrote.
    saved = store.save("m", {"w": 1}, {})
    with open(saved.path / "model.joblib", "wb") as fh:
        joblib.dump({"w": 2}, fh, compress=3)
    with pytest.raises(InputError, match="model.joblib"):
        store.load("m")


# ----------------------------------------------------------------------------- crash safety


def test_leftover_temp_dir_is_invisible_and_cleaned_by_next_save(store: ModelStore) -> None:
    store.save("m", {"v": 1}, {})
    leftover = store.root / "m" / ".tmp-0123456789abcdef"
    leftover.mkdir()
    (leftover / "model.joblib").write_bytes(b"half a pickle")
    stray_pointer = store.root / "m" / ".tmp-LATEST-abc"
    stray_pointer.write_text("v0009\n")

    assert store.versions("m") == [1]
    assert store.latest("m") == 1
    assert store.names() == ["m"]
    assert store.load("m")[0] == {"v": 1}

    store.save("m", {"v": 2}, {})
    assert not leftover.exists() and not stray_pointer.exists()
    assert store.versions("m") == [1, 2] and store.load("m")[0] == {"v": 2}


def test_crash_while_writing_model_leaves_previous_version(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save("m", {"v": 1}, {})

    def dies_halfway(obj: object, fh, **kw: object) -> None:
        fh.write(b"\x80\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        store.save("m", {"v": 2}, {})
    monkeypatch.undo()

    assert store.versions("m") == [1] and store.load("m")[0] == {"v": 1}
    assert [p.name for p in (store.root / "m").iterdir() if p.name.startswith(".tmp-")] == []


def test_crash_before_latest_pointer_update_keeps_previous_as_latest(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save("m", {"v": 1}, {})

    def crash(path: Path, data: bytes) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(store_mod, "_atomic_write", crash)
    with pytest.raises(OSError):
        store.save("m", {"v": 2}, {})
    monkeypatch.undo()

    # v2 is complete and verifiable, but the pointer still names v1.
    assert store.versions("m") == [1, 2]
    assert store.latest("m") == 1 and store.load("m")[0] == {"v": 1}
    assert store.load("m", 2)[0] == {"v": 2}

    assert store.save("m", {"v": 3}, {}).version == 3
    assert store.latest("m") == 3 and store.load("m")[0] == {"v": 3}


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["../evil", "../../etc/passwd", "/abs/path/model", "C:\\Users\\x\\Plan.xlsx", "a\x00b", "sub/../../up", ".hidden"],
)
def test_path_traversal_names_stay_inside_the_store(store: ModelStore, name: str) -> None:
    saved = store.save(name, {"n": name}, {})
    assert saved.path.parent.parent == store.root
    assert saved.path.resolve().is_relative_to(store.root.resolve())
    assert not saved.path.parent.name.startswith(".")
    assert store.load(name)[0] == {"n": name}
    assert store.metadata(name)["name"] == name  # the name as given is kept in metadata
    assert store.names() == [saved.path.parent.name]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Plan 2024 (Nord).xlsx", "Plan 2024 (Nord).xlsx"),
        ("Prévisions été", "Prévisions été"),
        ("../x", "x"),
        ("a/b\\c:d*e?", "a_b_c_d_e"),
        ("CON", "CON_"),
        ("nul.xlsx", "nul_.xlsx"),
    ],
)
def test_safe_names_stay_readable(given: str, expected: str) -> None:
    assert safe_model_name(given) == expected


@pytest.mark.parametrize("name", ["", "   ", "..", "///", "\x00"])
def test_empty_names_are_rejected(store: ModelStore, name: str) -> None:
    with pytest.raises(InputError) as info:
        store.save(name, {}, {})
    assert info.value.code == "E110"
    assert store.names() == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_safe_model_name_is_a_single_idempotent_path_component(name: str) -> None:
    try:
        safe = safe_model_name(name)
    except InputError:
        return
    assert safe == safe_model_name(safe)
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in (".", "..") and not safe.startswith(".")
    assert Path(safe).name == safe and not Path(safe).is_absolute()
    assert len(safe.encode("utf-8")) <= 121


# ----------------------------------------------------------------------------- fingerprint


def _sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-15"]),
            "SKU": ["A", "A", "B"],
            "Qty": [3.0, 4.0, 5.0],
        }
    )


def test_data_fingerprint_is_stable_for_equal_frames() -> None:
    a, b = _sales(), _sales()
    b.index = [10, 11, 12]  # the index is not data
    assert data_fingerprint(a) == data_fingerprint(b)
    assert data_fingerprint(a, None, a) == data_fingerprint(b, b)
    # Pinned value: a changed digest across runs/processes would silently invalidate every snapshot.
    assert data_fingerprint(a) == "5a6fff0a19bf608618c352998ad77f6e02b18638594f6d3036d236139f6dc0ec"


def test_data_fingerprint_changes_with_one_value_a_column_name_or_a_dtype() -> None:
    base = data_fingerprint(_sales())
    one_value = _sales()
    one_value.loc[1, "Qty"] = 4.5
    renamed = _sales().rename(columns={"Qty": "Units"})
    retyped = _sales().astype({"Qty": "int64"})
    reordered = _sales().iloc[::-1]
    digests = [data_fingerprint(f) for f in (one_value, renamed, retyped, reordered)]
    assert base not in digests and len(set(digests)) == 4
    assert data_fingerprint(_sales(), _sales()) != base


# ----------------------------------------------------------------------------- key


def test_installation_key_is_private_persistent_and_per_home(tmp_path: Path) -> None:
    key = installation_key(tmp_path / "h1")
    path = tmp_path / "h1" / "secret.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert installation_key(tmp_path / "h1") == key
    assert installation_key(tmp_path / "h2") != key


def test_installation_key_default_home_comes_from_environment(tmp_path: Path) -> None:
    key = installation_key()
    assert (tmp_path / "env-home" / "secret.key").read_bytes() == key
    assert ModelStore().root == tmp_path / "env-home" / "models"


def test_racing_first_use_yields_one_key(tmp_path: Path) -> None:
    home = tmp_path / "race"
    barrier = threading.Barrier(6)
    keys: list[bytes] = []

    def grab() -> None:
        barrier.wait()
        keys.append(installation_key(home))

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 6 and len(set(keys)) == 1
    assert (home / "secret.key").read_bytes() == keys[0]
    assert os.listdir(home) == ["secret.key"]

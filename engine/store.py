"""Versioned, tamper-evident model store.

Layout (``root`` defaults to ``<home>/models``, home is ``$PLANCELL_HOME`` or ``~/.plancell``)::

    <root>/<safe name>/v0001/model.joblib      the trained object (joblib)
                            /metadata.json     name, version, saved_at, plancell_version, ...
                            /MANIFEST.json     keyed HMAC of every file, itself signed
    <root>/<safe name>/LATEST                  "v0001": the version that ``load`` uses
    <root>/<safe name>/.lock                   serialises concurrent saves of one model

Loading joblib runs code, so nothing is unpickled unless every file of the version
directory carries a valid HMAC-SHA256 under this installation's secret key
(``<home>/secret.key``). A file another installation wrote, or any change since it
was written, is refused with ``PLANCELL-E200`` before ``joblib.load`` is called. A
``LATEST`` that is damaged or names a missing version is refused too (it is only ever
replaced whole); a missing ``LATEST`` means the newest complete version.

Saves are crash safe: files are written and fsynced in a hidden temp directory,
renamed into place in one step, then ``LATEST`` is replaced atomically. A crash at
any moment leaves the previous version or the complete new one; temp leftovers are
invisible to readers and removed by the next save of that model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import shutil
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any, Iterator, NoReturn

import joblib
import numpy as np
import pandas as pd

from . import __version__
from .errors import InputError, Problem, TransientError

__all__ = [
    "ModelStore",
    "ModelVersion",
    "installation_key",
    "data_fingerprint",
    "safe_model_name",
]

_log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "MANIFEST.json"
LATEST_FILE = "LATEST"
_LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_KEY_FILE = "secret.key"
_KEY_BYTES = 32
_MANIFEST_FORMAT = 1
_CHUNK = 1 << 20
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_POINTER_RE = re.compile(rb"v(\d{4,})\n")  # exactly what save writes
# Domain separation: a file MAC can never be replayed as a manifest signature.
_FILE_DOMAIN = b"plancell-file-v1\0"
_MANIFEST_DOMAIN = b"plancell-manifest-v1\0"

_REFUSED = (
    "this model file was not written by this Plancell installation or was changed since; "
    "retrain with `plancell refresh` (or delete the folder)"
)
_RESERVED_CHARS = set('<>:"/\\|?*')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(10)}
_MAX_NAME_BYTES = 120  # well under the 255 limit of NTFS/ext4, leaves room for the root path


# ----------------------------------------------------------------------------- key


def _home(home: Path | str | None) -> Path:
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("PLANCELL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".plancell"


def installation_key(home: Path | None = None) -> bytes:
    """This installation's 32-byte secret, created at ``<home>/secret.key`` (mode 0o600) on first use.

    Creation uses ``O_EXCL``, so when two processes race exactly one key is written
    and both end up using it.
    """
    base = _home(home)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = base / _KEY_FILE
    if path.exists():
        return _read_key(path)
    # Written in full under a temp name, then hard-linked into place: link never replaces
    # an existing file, so racing processes agree on one key, and a process killed while
    # writing leaves only a temp file, never an empty or short secret.key.
    key = secrets.token_bytes(_KEY_BYTES)
    tmp = base / f"{_TMP_PREFIX}{_KEY_FILE}-{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key(path)
        except OSError:
            # No hard links on this file system (FAT, some network shares): exclusive
            # create of the final name still gives one winner.
            return _create_key_in_place(path, key)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(base)
    _log.info("created installation key %s", path)
    return key


def _create_key_in_place(path: Path, key: bytes) -> bytes:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read_key(path)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return key


def _read_key(path: Path, wait: float = 2.0) -> bytes:
    # The winner of a creation race may not have written its bytes yet: wait briefly.
    deadline = time.monotonic() + wait
    while True:
        key = path.read_bytes()
        if len(key) == _KEY_BYTES:
            break
        if time.monotonic() >= deadline:
            raise InputError(
                f"the installation key {path} is damaged ({len(key)} bytes, expected {_KEY_BYTES}); "
                "delete it and retrain with `plancell refresh` (models saved under the old key "
                "can no longer be loaded)",
                code="E200",
            )
        time.sleep(0.05)
    if os.name != "nt" and path.stat().st_mode & 0o077:
        _log.warning("installation key %s is readable by other users; run: chmod 600 %s", path, path)
    return key


# ----------------------------------------------------------------------------- names


def safe_model_name(name: str) -> str:
    """A readable directory name for a user-given model name (idempotent).

    Path separators, reserved and control characters become ``_``; leading/trailing
    dots, spaces and underscores go (no ``..``, no hidden folders, nothing Windows
    rejects); Windows device names get a ``_``; length is capped.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(
        "_" if ch in _RESERVED_CHARS or unicodedata.category(ch).startswith("C") else ch for ch in text
    )
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"_+", "_", text).strip(" ._")
    stem, dot, rest = text.partition(".")
    if stem.rstrip(" ").upper() in _WINDOWS_DEVICES:
        text = f"{stem}_{dot}{rest}"
    raw = text.encode("utf-8")
    if len(raw) > _MAX_NAME_BYTES:
        text = raw[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip(" ._")
    if not text:
        raise InputError(
            f"model name {name!r} is empty once characters not allowed in folder names are removed",
            [
                Problem(
                    table="Settings",
                    column="Model",
                    value=str(name),
                    message="model name has no usable characters",
                    fix="choose a model name with letters or digits",
                    code="E110",
                )
            ],
            code="E110",
        )
    return text


# ----------------------------------------------------------------------------- fingerprint


def data_fingerprint(*frames: pd.DataFrame | None) -> str:
    """SHA-256 hex of the frames' contents, column names and dtypes (row order matters, index not).

    ``None`` frames are skipped. Stable across runs and processes: pandas hashes with a
    fixed key.
    """
    digest = hashlib.sha256()
    for frame in frames:
        if frame is None:
            continue
        header = json.dumps(
            {"shape": list(frame.shape), "columns": [[repr(c), str(t)] for c, t in frame.dtypes.items()]}
        ).encode("utf-8")
        digest.update(len(header).to_bytes(8, "little") + header)
        if frame.shape[1] and len(frame):
            rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="<u8")
            digest.update(rows.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- metadata


def _jsonable(value: Any, where: str = "metadata") -> Any:
    """Plain JSON types from numpy/pandas/datetime/Path values; NaN and NaT become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        return _jsonable(pd.Timestamp(value), where)
    if isinstance(value, np.timedelta64):
        return _jsonable(pd.Timedelta(value), where)
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, where)
    if isinstance(value, (np.ndarray, pd.Series, pd.Index)):
        return [_jsonable(v, where) for v in value.tolist()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = _jsonable(k, where)
            out[key if isinstance(key, str) else json.dumps(key)] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v, where) for v in value), key=repr)
    # Metadata comes from our own code, so an unknown type is a programming error.
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in model metadata as JSON")


# ----------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes a rename durable on POSIX; Windows cannot open directories.
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{secrets.token_hex(6)}")
    try:
        _write_bytes_synced(tmp, data)
        for attempt in range(20):
            try:
                os.replace(tmp, path)
                break
            except PermissionError:
                # Windows refuses to replace a file a reader has open for a moment.
                if attempt == 19:
                    raise
                time.sleep(0.05)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _file_mac(key: bytes, fh: IO[bytes]) -> str:
    mac = hmac.new(key, _FILE_DOMAIN, hashlib.sha256)
    while chunk := fh.read(_CHUNK):
        mac.update(chunk)
    return mac.hexdigest()


def _manifest_mac(key: bytes, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, _MANIFEST_DOMAIN + canonical.encode("ascii"), hashlib.sha256).hexdigest()


def _try_lock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def _exclusive(path: Path, timeout: float) -> Iterator[None]:
    """Hold an OS lock on ``path``; the OS drops it if the process dies, so no stale locks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _try_lock(fd)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise TransientError(
                        f"another Plancell process is saving this model ({path.parent}); try again",
                        code="E300",
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- store


@dataclass(frozen=True)
class ModelVersion:
    """One saved version. ``name`` is the store's (sanitised) folder name, usable with ``load``;
    the name as given is ``metadata["name"]``."""

    name: str
    version: int
    path: Path
    metadata: dict


class _Refusal(Exception):
    """One verification failure, collected into a single E200 InputError."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(detail)
        self.path, self.detail = path, detail


class ModelStore:
    """Saves and loads trained models as numbered versions under ``root``.

    ``lock_timeout`` bounds how long ``save`` waits for another process saving the
    same model before raising ``TransientError`` (E300).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        home: Path | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.home = _home(home)
        self.root = Path(root).expanduser() if root is not None else self.home / "models"
        self.lock_timeout = lock_timeout
        self._key_cache: bytes | None = None

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    @property
    def _key(self) -> bytes:
        # Lazy: listing a store must not create ~/.plancell/secret.key as a side effect.
        if self._key_cache is None:
            self._key_cache = installation_key(self.home)
        return self._key_cache

    # -- listing ---------------------------------------------------------------

    def names(self) -> list[str]:
        """Directory names of the models that have at least one complete version."""
        if not self.root.is_dir():
            return []
        found = [
            e.name
            for e in os.scandir(self.root)
            if e.is_dir() and not e.name.startswith(".") and self._version_dirs(Path(e.path))
        ]
        return sorted(found, key=str.casefold)

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending; temp leftovers of crashed saves are ignored."""
        return sorted(self._version_dirs(self.root / safe_model_name(name)))

    def latest(self, name: str) -> int | None:
        """The version ``LATEST`` points to (the newest if the pointer is missing), or None."""
        mdir = self.root / safe_model_name(name)
        available = self._version_dirs(mdir)
        if not available:
            return None
        try:
            match = _VERSION_RE.match((mdir / LATEST_FILE).read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError):
            match = None
        if match and int(match.group(1)) in available:
            return int(match.group(1))
        return max(available)

    @staticmethod
    def _version_dirs(mdir: Path) -> set[int]:
        if not mdir.is_dir():
            return set()
        out = set()
        for e in os.scandir(mdir):
            m = _VERSION_RE.match(e.name)
            if m and e.is_dir():
                out.add(int(m.group(1)))
        return out

    # -- save ------------------------------------------------------------------

    def save(self, name: str, model: object, metadata: dict) -> ModelVersion:
        """Write ``model`` as the next version of ``name`` and make it the latest.

        ``metadata`` is stored as JSON (numpy, pandas, datetime and Path values are
        converted); the keys ``name``, ``version``, ``saved_at`` and ``plancell_version``
        are set by the store.
        """
        safe = safe_model_name(name)
        meta = _jsonable(dict(metadata))  # fail on bad metadata before touching the disk
        key = self._key
        mdir = self.root / safe
        mdir.mkdir(parents=True, exist_ok=True)
        with _exclusive(mdir / _LOCK_FILE, self.lock_timeout):
            self._clean_leftovers(mdir)
            version = max(self._version_dirs(mdir), default=0) + 1
            meta.update(
                name=str(name),
                version=version,
                saved_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                plancell_version=__version__,
            )
            tmp = mdir / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
            tmp.mkdir()
            final = mdir / f"v{version:04d}"
            try:
                self._write_version(tmp, key, safe, version, model, meta)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _fsync_dir(mdir)
            _atomic_write(mdir / LATEST_FILE, f"{final.name}\n".encode("ascii"))
        _log.info("saved model %r as version %d in %s", name, version, final)
        return ModelVersion(name=safe, version=version, path=final, metadata=meta)

    @staticmethod
    def _write_version(
        vdir: Path, key: bytes, safe: str, version: int, model: object, meta: dict[str, Any]
    ) -> None:
        with open(vdir / MODEL_FILE, "xb") as fh:
            joblib.dump(model, fh, compress=3)
            fh.flush()
            os.fsync(fh.fileno())
        text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        _write_bytes_synced(vdir / METADATA_FILE, text.encode("utf-8"))
        files: dict[str, dict[str, Any]] = {}
        for fname in (MODEL_FILE, METADATA_FILE):
            # Hash what is on disk, not what we meant to write.
            with open(vdir / fname, "rb") as fh:
                files[fname] = {"size": os.fstat(fh.fileno()).st_size, "hmac": _file_mac(key, fh)}
        body = {"format": _MANIFEST_FORMAT, "name": safe, "version": version, "files": files}
        manifest = {**body, "signature": _manifest_mac(key, body)}
        _write_bytes_synced(vdir / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode("ascii"))
        _fsync_dir(vdir)

    @staticmethod
    def _clean_leftovers(mdir: Path) -> None:
        # Called under the save lock: any temp entry now belongs to a save that died.
        for e in os.scandir(mdir):
            if not e.name.startswith(_TMP_PREFIX):
                continue
            _log.debug("removing leftover of an interrupted save: %s", e.path)
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    _log.warning("could not remove leftover %s", e.path)

    # -- load ------------------------------------------------------------------

    def load(self, name: str, version: int | None = None) -> tuple[object, dict]:
        """Verify every file of the version, then unpickle the model: ``(model, metadata)``."""
        vdir, safe, number = self._resolve(name, version)
        with self._verified(vdir, safe, number, whole=True) as (meta, model_fh):
            assert model_fh is not None
            # Load from the handle we just hashed so the file cannot be swapped in between.
            model = joblib.load(model_fh)
        _log.info("loaded model %r version %d from %s", name, number, vdir)
        return model, meta

    def metadata(self, name: str, version: int | None = None) -> dict:
        """``metadata.json`` of a version, after checking the manifest, the file list and its HMAC.

        The model file's content is not hashed here (only its size is checked): that is
        ``load``'s job, and models can be large.
        """
        vdir, safe, number = self._resolve(name, version)
        with self._verified(vdir, safe, number, whole=False) as (meta, _):
            return meta

    def _resolve(self, name: str, version: int | None) -> tuple[Path, str, int]:
        safe = safe_model_name(name)
        available = sorted(self._version_dirs(self.root / safe))
        if not available:
            names = self.names()
            listing = ", ".join(names) if names else "none yet; train one with `plancell refresh`"
            raise InputError(
                f"model {name!r} not found in the model store {self.root}; available models: {listing}",
                code="E201",
            )
        number = self._pointer(self.root / safe, available) if version is None else int(version)
        if number not in available:
            raise InputError(
                f"model {name!r} has no version {version} in the model store {self.root / safe}; "
                f"available versions: {', '.join(str(v) for v in available)}",
                code="E201",
            )
        return self.root / safe / f"v{number:04d}", safe, number

    def _pointer(self, mdir: Path, available: list[int]) -> int:
        """The version ``LATEST`` names. Missing: the newest (a first save died before its
        pointer). Damaged, or naming a version that is not there: refused, because
        ``LATEST`` is only ever replaced whole, so that is a change made since."""
        path = mdir / LATEST_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return max(available)
        except OSError as exc:
            self._refuse([_Refusal(path, f"LATEST cannot be read ({exc.strerror or exc})")])
        match = _POINTER_RE.fullmatch(raw)
        if match is None:
            self._refuse([_Refusal(path, "LATEST is damaged; delete it to load the newest version")])
        number = int(match.group(1))
        if number not in available:
            self._refuse([_Refusal(path, f"LATEST names version {number}, which is not in the store; "
                                         "delete LATEST to load the newest version")])
        return number

    @contextmanager
    def _verified(
        self, vdir: Path, safe: str, version: int, *, whole: bool
    ) -> Iterator[tuple[dict, IO[bytes] | None]]:
        """Yield (metadata, open verified model handle or None); raise E200 on any mismatch."""
        key = self._key
        try:
            files = self._check_manifest(vdir, key, safe, version, self.home / _KEY_FILE)
        except _Refusal as r:
            self._refuse([r])
        refusals: list[_Refusal] = []
        on_disk = {e.name: e for e in os.scandir(vdir)}
        for extra in sorted(set(on_disk) - set(files) - {MANIFEST_FILE}):
            refusals.append(_Refusal(vdir / extra, "extra file not listed in MANIFEST.json"))
        meta_bytes: bytes | None = None
        model_fh: IO[bytes] | None = None
        try:
            for fname, entry in sorted(files.items()):
                path = vdir / fname
                if fname not in on_disk or not on_disk[fname].is_file(follow_symlinks=False):
                    refusals.append(_Refusal(path, "file listed in MANIFEST.json is missing"))
                    continue
                fh = open(path, "rb")
                keep = False
                try:
                    if os.fstat(fh.fileno()).st_size != entry["size"]:
                        refusals.append(_Refusal(path, "size differs from MANIFEST.json"))
                        continue
                    if fname == METADATA_FILE:
                        meta_bytes = fh.read()
                        mac = hmac.new(key, _FILE_DOMAIN + meta_bytes, hashlib.sha256).hexdigest()
                    elif whole:
                        mac = _file_mac(key, fh)
                    else:
                        continue
                    if not hmac.compare_digest(mac, entry["hmac"]):
                        refusals.append(_Refusal(path, "content does not match MANIFEST.json"))
                        continue
                    if fname == MODEL_FILE:
                        fh.seek(0)
                        model_fh, keep = fh, True
                finally:
                    if not keep:
                        fh.close()
            if refusals:
                self._refuse(refusals)
            assert meta_bytes is not None  # the manifest guarantees metadata.json is listed
            try:
                meta = json.loads(meta_bytes.decode("utf-8"))
            except ValueError:
                # Signed by us yet unreadable: treat like tampering rather than crash.
                self._refuse([_Refusal(vdir / METADATA_FILE, "not valid JSON")])
            yield meta, model_fh
        finally:
            if model_fh is not None:
                model_fh.close()

    @staticmethod
    def _check_manifest(
        vdir: Path, key: bytes, safe: str, version: int, key_path: Path
    ) -> dict[str, dict[str, Any]]:
        path = vdir / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_bytes().decode("ascii"))
        except FileNotFoundError:
            raise _Refusal(path, "MANIFEST.json is missing") from None
        except (OSError, ValueError):
            raise _Refusal(path, "MANIFEST.json cannot be read") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("signature"), str):
            raise _Refusal(path, "MANIFEST.json has no signature")
        body = {k: v for k, v in manifest.items() if k != "signature"}
        if not hmac.compare_digest(_manifest_mac(key, body), manifest["signature"]):
            raise _Refusal(path, f"MANIFEST.json signature does not match this installation's key {key_path}")
        # Signed by us: the structure below is ours, but a signed manifest may still sit
        # in the wrong folder (a version directory copied or renamed by hand).
        if body.get("name") != safe or body.get("version") != version:
            raise _Refusal(
                path, f"MANIFEST.json was written for {body.get('name')!r} version {body.get('version')}"
            )
        files = body.get("files")
        if body.get("format") != _MANIFEST_FORMAT or not isinstance(files, dict):
            raise _Refusal(path, "MANIFEST.json has an unknown format")
        if not {MODEL_FILE, METADATA_FILE} <= set(files):
            raise _Refusal(path, "MANIFEST.json does not list model.joblib and metadata.json")
        return files

    @staticmethod
    def _refuse(refusals: list[_Refusal]) -> NoReturn:
        first = refusals[0]
        problems = [
            Problem(
                table="model store",
                value=str(r.path),
                message=f"file refused ({r.detail})",
                fix="retrain with `plancell refresh` (or delete the folder)",
                code="E200",
            )
            for r in refusals
        ]
        n_more = len(refusals) - 1
        more = f" ({n_more} more file{'s' if n_more > 1 else ''} refused)" if n_more else ""
        _log.warning("refused model files: %s", "; ".join(f"{r.path}: {r.detail}" for r in refusals))
        raise InputError(f"{first.path}: {_REFUSED}. Detail: {first.detail}.{more}", problems, code="E200")

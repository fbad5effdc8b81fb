"""Frames and output sheets as JSON between the add-in and the calculation server.

The add-in must show the same numbers whether a plan was computed locally or on the
server, so nothing may be rounded on the way: floats travel as Python's shortest
round-trip repr (``json`` does that; ``DataFrame.to_json`` would keep 10 digits), NaN and
infinities as tagged values, timestamps as ISO text with their column's dtype. Only plain
data is decoded: a block is rebuilt only if its type is on an allow-list, so nothing in a
response can name a class to instantiate.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError, Problem

__all__ = ["frame_to_wire", "frame_from_wire", "value_to_wire", "value_from_wire", "sheet_to_wire",
           "sheet_from_wire", "tables_to_wire", "tables_from_wire", "register_block"]

_BLOCKS: dict[str, type] = {}


def register_block(cls: type) -> type:
    """Allow a sheet block dataclass to cross the wire (the sheets module's blocks are)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    _BLOCKS[cls.__name__] = cls
    return cls


def _register_defaults() -> None:
    from . import sheets

    for cls in (sheets.Title, sheets.Note, sheets.Pairs, sheets.Grid, sheets.TableBlock, sheets.ChartData,
                sheets.BandChart, sheets.Sheet):
        register_block(cls)
    for name in getattr(sheets, "__all__", ()):   # blocks added to the sheets module later
        obj = getattr(sheets, name, None)
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            register_block(obj)


# --------------------------------------------------------------------------- scalars


def value_to_wire(v: Any) -> Any:
    """A cell-like value as JSON: exact floats, tagged NaN/inf and timestamps."""
    if v is None or v is pd.NaT or v is pd.NA:
        return None if v is None else {"$na": True}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"$f": repr(f)}
    if isinstance(v, (pd.Timestamp, _dt.datetime, np.datetime64)):
        return {"$dt": pd.Timestamp(v).isoformat()}
    if isinstance(v, _dt.date):
        return {"$d": v.isoformat()}
    if isinstance(v, str):
        return v
    if isinstance(v, pd.DataFrame):
        return {"$frame": frame_to_wire(v)}
    if isinstance(v, (list, tuple)):
        return [value_to_wire(x) for x in v]
    if isinstance(v, dict):
        return {"$map": [[value_to_wire(k), value_to_wire(x)] for k, x in v.items()]}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        name = type(v).__name__
        if not _BLOCKS:
            _register_defaults()
        if _BLOCKS.get(name) is not type(v):
            raise TypeError(f"{name} is not a sheet block that may cross the wire")
        return {"$block": name,
                "fields": {f.name: value_to_wire(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    return str(v)


def value_from_wire(v: Any) -> Any:
    if isinstance(v, list):
        return [value_from_wire(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "$f" in v:
        return float(v["$f"])
    if "$na" in v:
        return pd.NaT
    if "$dt" in v:
        return pd.Timestamp(v["$dt"])
    if "$d" in v:
        return _dt.date.fromisoformat(v["$d"])
    if "$frame" in v:
        return frame_from_wire(v["$frame"])
    if "$map" in v:
        return {_hashable(value_from_wire(k)): value_from_wire(x) for k, x in v["$map"]}
    if "$block" in v:
        if not _BLOCKS:
            _register_defaults()
        cls = _BLOCKS.get(str(v["$block"]))
        if cls is None:
            raise _bad(f"unknown sheet block {v['$block']!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: value_from_wire(x) for k, x in dict(v.get("fields") or {}).items() if k in names}
        return cls(**kw)
    raise _bad("an object without a known tag")


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def _bad(what: str) -> InputError:
    return InputError(f"Plancell received data it cannot read ({what}). Fix: use the same Plancell version on the "
                      "server and in Excel.", code="E110")


# --------------------------------------------------------------------------- frames


def frame_to_wire(df: pd.DataFrame) -> dict[str, Any]:
    """A frame column by column with its dtypes; values exact (see the module docstring)."""
    cols: list[list[Any]] = []
    dtypes: list[str] = []
    for c in df.columns:
        s = df[c]
        kind = s.dtype.kind
        if isinstance(s.dtype, pd.CategoricalDtype):
            dtypes.append("category")
            cols.append([value_to_wire(x) for x in s.astype(object)])
        elif kind == "M":
            dtypes.append("datetime64[ns]")
            cols.append([None if pd.isna(x) else pd.Timestamp(x).isoformat() for x in s])
        elif kind == "f":
            dtypes.append(str(s.dtype))
            cols.append([value_to_wire(x) for x in s.to_numpy()])
        elif kind in "iub":
            dtypes.append(str(s.dtype))
            cols.append(s.to_numpy().tolist())
        else:
            dtypes.append("object")
            cols.append([value_to_wire(x) for x in s])
    # attrs carry where a table sits in the workbook (sheet, first column, hidden rows, what the
    # reader found): problems and the Data quality sheet name the planner's real cells
    attrs = {str(k): _attr_to_wire(v) for k, v in df.attrs.items()}
    return {"columns": [value_to_wire(c) for c in df.columns], "dtypes": dtypes, "data": cols, "rows": len(df),
            "attrs": attrs}


def frame_from_wire(w: Any) -> pd.DataFrame:
    if not isinstance(w, dict) or not {"columns", "dtypes", "data"} <= set(w):
        raise _bad("a table without columns, dtypes and data")
    names = [value_from_wire(c) for c in w["columns"]]
    out: dict[Any, Any] = {}
    for name, dtype, values in zip(names, w["dtypes"], w["data"]):
        if dtype == "datetime64[ns]":
            out[name] = pd.to_datetime(pd.Series(values, dtype=object))
        elif dtype == "category":
            out[name] = pd.Series([value_from_wire(x) for x in values], dtype=object).astype("category")
        elif dtype == "object":
            out[name] = pd.Series([value_from_wire(x) for x in values], dtype=object)
        else:
            try:
                np_dtype = np.dtype(dtype)
            except TypeError as exc:
                raise _bad(f"dtype {dtype!r}") from exc
            vals = [value_from_wire(x) for x in values] if np_dtype.kind == "f" else values
            out[name] = pd.Series(np.asarray(vals, dtype=np_dtype))
    df = pd.DataFrame(out, columns=names) if out else pd.DataFrame(columns=names)
    if not out:
        df = df.reindex(range(int(w.get("rows", 0))))
    attrs = w.get("attrs")
    if isinstance(attrs, dict):
        df.attrs.update({str(k): _attr_from_wire(v) for k, v in attrs.items()})
    return df


def _attr_to_wire(v: Any) -> Any:
    from engine.errors import Problem

    if isinstance(v, Problem):
        return {"$problem": v.to_dict()}
    if isinstance(v, (list, tuple)):
        return [_attr_to_wire(x) for x in v]
    return value_to_wire(v) if not isinstance(v, dict) else str(v)


def _attr_from_wire(v: Any) -> Any:
    if isinstance(v, dict) and "$problem" in v:
        d = v["$problem"]
        names = {f.name for f in dataclasses.fields(Problem)}
        return Problem(**{k: x for k, x in d.items() if k in names})
    if isinstance(v, list):
        return [_attr_from_wire(x) for x in v]
    return value_from_wire(v)


# --------------------------------------------------------------------------- sheets and tables


def sheet_to_wire(sheet: Any) -> dict[str, Any]:
    """An output sheet (:class:`addin.sheets.Sheet`) as JSON."""
    return value_to_wire(sheet)


def sheet_from_wire(w: Any) -> Any:
    from .sheets import Sheet

    sheet = value_from_wire(w)
    if not isinstance(sheet, Sheet):
        raise _bad("a sheet that is not a Sheet")
    sheet.widths = {int(k): float(v) for k, v in (sheet.widths or {}).items()}
    return sheet


def tables_to_wire(tables: dict[str, tuple[pd.DataFrame, int]]) -> dict[str, Any]:
    """A workbook's tables with the Excel row of their first data row (problems name real rows)."""
    return {name: {"frame": frame_to_wire(df), "first_row": int(first)} for name, (df, first) in tables.items()}


def tables_from_wire(w: Any) -> dict[str, tuple[pd.DataFrame, int]]:
    if not isinstance(w, dict):
        raise InputError("tables must be an object of table name: {frame, first_row}.",
                         [Problem("request", "tables is not an object", "send {\"Sales\": {...}, ...}",
                                  column="tables", code="E110")], code="E110")
    out: dict[str, tuple[pd.DataFrame, int]] = {}
    for name, t in w.items():
        if not isinstance(t, dict) or "frame" not in t:
            raise InputError(f"table {name!r} has no frame.", [Problem(str(name), "no frame in the request",
                                                                       "send {\"frame\": ..., \"first_row\": 2}",
                                                                       code="E110")], code="E110")
        first = t.get("first_row", 2)
        out[str(name)] = (frame_from_wire(t["frame"]), int(first) if isinstance(first, int) else 2)
    return out

"""Tables as CSV and JSON, written atomically (Markdown tables: `report.document`)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from exfiqa_jax.fileio import write_text

Row = dict[str, Any]


def _plain(v: Any) -> Any:
  """numpy scalars and arrays -> Python values JSON can hold."""
  if isinstance(v, np.ndarray):
    return v.tolist()
  if isinstance(v, np.generic):
    return v.item()
  return v


def cell(v: Any, digits: int = 4) -> str:
  """A table cell: floats with `digits` decimals (nan as nan), lists space-separated."""
  v = _plain(v)
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.{digits}f}"
  if isinstance(v, (list, tuple)):
    return " ".join(map(str, v))
  return str(v)


def write_csv(path: str, rows: Sequence[Row], columns: Sequence[str] | None = None) -> None:
  columns = list(columns or (rows[0].keys() if rows else []))
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow({c: cell(r.get(c, ""), 10) for c in columns})
  write_text(path, buf.getvalue())


def write_json(path: str, obj: Any) -> None:
  def default(v):
    out = _plain(v)
    if out is v:
      raise TypeError(f"cannot write {type(v).__name__} to JSON")
    return out

  write_text(path, json.dumps(obj, indent=1, default=default, allow_nan=True) + "\n")

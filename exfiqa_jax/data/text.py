"""Bounded reading of the text lists of a dataset (image lists, pair lists).

Lines are read at most `MAX_LINE` characters at a time, so one huge line costs
no more memory than a normal one; paths listed must stay inside the folder they
are relative to (no absolute paths, no `..` out of it).
"""

from __future__ import annotations

import os

import numpy as np

MAX_LINE = 1024  # bytes a line; the longest file name a file system allows is 255
MAX_NAME_BYTES = 1 << 30  # bytes of the fixed-width id array [N] <U(longest name)


def read_lines(path: str, what: str = "list file") -> list[str]:
  """The stripped non-blank lines of a UTF-8 text file; errors name the file and line."""
  if os.path.isdir(path):
    raise IsADirectoryError(f"{path} is a folder, not a {what}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such {what}")
  lines = []
  with open(path, "rb") as f:
    for n, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 2), b""), 1):
      if len(raw) > MAX_LINE and not raw.endswith(b"\n") or len(raw) > MAX_LINE + 1:
        raise ValueError(f"{path}:{n}: line longer than {MAX_LINE} bytes; not a {what}")
      try:
        line = raw.decode("utf-8").strip()
      except UnicodeDecodeError:
        raise ValueError(f"{path}:{n}: not UTF-8 text; not a {what}") from None
      if "\x00" in line:
        raise ValueError(f"{path}:{n}: holds a NUL byte; not a {what}")
      if line:
        lines.append(line)
  return lines


def inside(root: str, name: str, where: str) -> str:
  """`root/name` for a relative `name` that stays inside `root`; else a ValueError."""
  norm = os.path.normpath(name)
  if os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep):
    raise ValueError(
      f"{where}: {name!r} points outside {root or '.'}; paths in a list are relative "
      "to its folder and stay inside it"
    )
  return os.path.join(root, name)


def name_array(names: list[str], where: str) -> np.ndarray:
  """str array [N] of `names`, refused before allocation when its fixed width makes it huge."""
  longest = max((len(n) for n in names), default=1)
  if len(names) * longest * 4 > MAX_NAME_BYTES:
    raise ValueError(
      f"{where}: {len(names)} names of up to {longest} characters would need "
      f"{len(names) * longest * 4 / 2**30:.1f} GiB as an array (limit {MAX_NAME_BYTES >> 30} GiB)"
    )
  return np.asarray(names, dtype=f"<U{longest}")

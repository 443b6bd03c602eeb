"""Atomic file output: write to a temporary sibling, rename when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool = True, directory: bool = False) -> Iterator[str]:
  """Yields a temporary sibling of `path` to write; renames it to `path` on success.

  On any exception the temporary file or folder is removed and `path` is left
  as it was. With `force=False` an existing `path` is a FileExistsError.
  """
  path = os.path.abspath(path)
  if not force and os.path.exists(path):
    raise FileExistsError(f"{path} exists; pass --force to overwrite it")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  prefix = f".{os.path.basename(path)}.tmp-"
  if directory:
    tmp = tempfile.mkdtemp(dir=parent, prefix=prefix)
  else:
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=prefix)
    os.close(fd)
  try:
    yield tmp
    if directory and os.path.isdir(path):
      shutil.rmtree(path)
    os.replace(tmp, path)
  except BaseException:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)
    elif os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)

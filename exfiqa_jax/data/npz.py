"""Bounded reading of `.npz` and `.npy` files that come from outside.

`read_npz(path, keys)` reads only the members asked for. Before a member is
allocated its header is checked: no object (pickled) arrays, and the size the
header declares must fit in what the member holds (its uncompressed size in the
zip directory) and, over all members read, in `MAX_EXPANSION` times the file's
size on disk plus `SLACK` bytes: a small file cannot make a large allocation
(a 4 MB file with a 4 GiB zero-filled member is refused, or skipped when that
member is not asked for). `.npy` files (`read_npy`) must hold exactly the bytes
their header declares. `write_npz` writes the files the package reads back.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

MAX_EXPANSION = 64  # members read may declare at most 64x the file's size ...
SLACK = 64 << 20  # ... plus 64 MiB (np.savez files declare about 1x)

_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError)


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes `arrays` as an uncompressed `.npz` (what `np.savez` writes).

  Unlike `np.savez`, a failed write (a full disk, a file-size limit) closes the
  zip archive at once: `np.savez` leaves it open, and its finaliser later fails
  on the closed file with an "Exception ignored" traceback on stderr.
  """
  with open(path, "wb") as f, zipfile.ZipFile(f, mode="w", allowZip64=True) as zf:
    for name, value in arrays.items():
      with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _header(f, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
  """-> (shape, dtype, nbytes) of the .npy stream `f`, positioned after the header."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
  elif version in ((2, 0), (3, 0)):
    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  else:
    raise ValueError(f"{where}: unsupported .npy version {version}")
  if dtype.hasobject:
    raise ValueError(f"{where}: holds Python objects (a pickle), which are refused")
  return tuple(shape), dtype, math.prod(shape) * dtype.itemsize


def describe(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """{member: (shape, dtype)} of an .npz from the headers only, nothing allocated."""
  try:
    with zipfile.ZipFile(path) as zf:
      out = {}
      for info in zf.infolist():
        if info.filename.endswith(".npy"):
          with zf.open(info) as f:
            shape, dtype, _ = _header(f, f"{path}: {info.filename}")
          out[info.filename[:-4]] = (shape, dtype)
      return out
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise IsADirectoryError(f"{path} is a folder, not an .npz file") from None
  except _DAMAGED as e:
    _damaged(path, e)


def _damaged(path: str, e: Exception):
  if isinstance(e, ValueError) and str(e).startswith(path):
    raise e
  raise ValueError(f"{path}: not a readable .npz file, truncated or damaged ({e})") from None


def read_npz(
  path: str, keys: Sequence[str] | None = None, optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
  """Members `keys` (default all) and those of `optional` present -> arrays.

  A missing key is a KeyError naming the file; a damaged file or a member
  over the bounds above is a ValueError naming the file and member.
  """
  try:
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
      infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
      wanted = list(infos) if keys is None else list(keys)
      missing = [k for k in wanted if k not in infos]
      if missing:
        raise LookupError(f"{path}: has no {missing} (holds {sorted(infos)})")
      wanted += [k for k in optional if k in infos and k not in wanted]
      budget = MAX_EXPANSION * size + SLACK
      for k in wanted:
        with zf.open(infos[k]) as f:
          _, _, nbytes = _header(f, f"{path}: member {k!r}")
          if nbytes > infos[k].file_size:
            raise ValueError(f"{path}: member {k!r} declares more data than it holds")
        budget -= nbytes
        if budget < 0:
          raise ValueError(
            f"{path}: member {k!r} declares {nbytes:,} bytes, more than a "
            f"{size:,}-byte file may expand to ({MAX_EXPANSION}x its size + {SLACK >> 20} MiB)"
          )
      out = {}
      for k in wanted:
        with zf.open(infos[k]) as f:
          out[k] = np.lib.format.read_array(f, allow_pickle=False)
      return out
  except LookupError as e:
    raise KeyError(str(e.args[0])) from None
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise IsADirectoryError(f"{path} is a folder, not an .npz file") from None
  except _DAMAGED as e:
    _damaged(path, e)


def read_npy(path: str) -> np.ndarray:
  """One `.npy` array whose header matches the file's size exactly."""
  try:
    with open(path, "rb") as f:
      shape, dtype, nbytes = _header(f, path)
      if f.tell() + nbytes != os.fstat(f.fileno()).st_size:
        raise ValueError(f"{path}: header declares {nbytes:,} bytes of data, the file differs")
      f.seek(0)
      return np.lib.format.read_array(f, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such file") from None
  except (EOFError, ValueError, OSError) as e:
    if str(e).startswith(path):
      raise
    raise ValueError(f"{path}: not a readable .npy file ({e})") from None

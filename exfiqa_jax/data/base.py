"""Shared parts of the face-data builders: the builder interface and id checks.

A builder reads a dataset's local files (`read()`): the image ids in input
order, the encoded images in that order, and the dataset's arrays and settings
(pairs, templates, channel order). `manifest()` names the files whose change
means the dataset must be built again (lists, pair files, the .bin).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from exfiqa_jax.data.text import name_array


def file_bytes(path: str) -> bytes:
  """An image file's encoded bytes; a missing file is an error naming it."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: listed image does not exist")
  with open(path, "rb") as f:
    return f.read()


def unique_ids(ids: Sequence[str], where: str) -> np.ndarray:
  """ids as a str array [N]; a repeated id is a ValueError naming it."""
  arr = name_array(list(ids), where)
  values, counts = np.unique(arr, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f"{where}: duplicate image ids {values[counts > 1][:5].tolist()}")
  return arr


def id_index(ids: np.ndarray, wanted: Sequence[str], where: str) -> np.ndarray:
  """Positions [M] of `wanted` in `ids`; an unknown id is a KeyError naming it."""
  lookup = {v: i for i, v in enumerate(ids.tolist())}
  missing = [w for w in wanted if w not in lookup]
  if missing:
    raise KeyError(f"{where}: pairs name unknown ids {sorted(set(missing))[:5]}")
  return np.asarray([lookup[w] for w in wanted], dtype=np.int64)


class FaceBuilder:
  """A dataset over local files; subclasses set `name` and implement `_read`, `manifest`.

  manual_dir: the folder holding the files; config: the dataset's name;
  options: the builder's settings (recorded with the build).
  """

  name = ""
  OPTIONS: tuple[str, ...] = ()

  def __init__(self, config: str, manual_dir: str, **options: str):
    unknown = sorted(set(options) - set(self.OPTIONS))
    if unknown:
      raise ValueError(f"{self.name} takes no option {unknown}")
    self.config, self.manual_dir, self.options = config, os.path.abspath(manual_dir), options

  def manifest(self) -> list[str]:
    """Files whose size or time of change is recorded with the build."""
    raise NotImplementedError

  def _read(self) -> tuple[np.ndarray, Iterable[bytes], dict]:
    """-> (ids [N], encoded images in id order, metadata); raises on bad files."""
    raise NotImplementedError

  def read(self) -> tuple[np.ndarray, Iterable[bytes], dict]:
    ids, images, metadata = self._read()
    if len(ids) == 0:
      raise ValueError(f"{self.manual_dir}: dataset {self.config!r} holds no images")
    return ids, images, metadata

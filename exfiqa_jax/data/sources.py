"""Image sources: ids, a channel order, and `read(indices) -> uint8 [n, S, S, 3]`.

Scoring reads through this small interface only, so a built dataset, a list
of files and an in-memory array are scored the same way. `read` is called
from background threads; every source here is safe for that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from exfiqa_jax.data.images import decode, read_image, stack


class ImageSource(Protocol):
  ids: np.ndarray  # [N] str, unique
  channel_order: str  # "rgb" or "bgr": the order of the stored pixels

  def __len__(self) -> int: ...

  def read(self, indices: Sequence[int]) -> np.ndarray:
    """uint8 [len(indices), S, S, 3] in stored channel order."""


@dataclasses.dataclass(frozen=True)
class RecordSource:
  """A built dataset's `images` split, read with `tfds.data_source` (encoded records)."""

  records: Any
  ids: np.ndarray
  channel_order: str

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    indices = [int(i) for i in indices]
    records = self.records.__getitems__(indices)
    wrong = [i for i, r in zip(indices, records, strict=True) if int(r["index"]) != i]
    if wrong:
      raise ValueError(f"record order is broken: position {wrong[0]} holds another image")
    names = [str(self.ids[i]) for i in indices]
    return stack([decode(r["image"], n) for r, n in zip(records, names, strict=True)], names)


@dataclasses.dataclass(frozen=True)
class FileSource:
  """Image files read on demand; ids are the names as listed."""

  paths: Sequence[str]
  ids: np.ndarray
  channel_order: str = "rgb"

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    images = [read_image(self.paths[i]) for i in indices]
    return stack(images, [self.paths[i] for i in indices])


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """Decoded images in memory: images uint8 [N, S, S, 3]."""

  images: np.ndarray
  ids: np.ndarray
  channel_order: str = "rgb"

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    return self.images[np.asarray(indices, dtype=np.int64)]

"""Image sources: ids, a channel order, and `read(indices) -> uint8 [n, S, S, 3]`.

Scoring reads through this small interface only, so a built dataset, a list
of files and an in-memory array are scored the same way. `read` is called
from background threads; every source here is safe for that. `content_id`
(or None) changes when the stored images may have changed: a resumed scoring
run compares it (`exfiqa_jax.scoring.run_folder`). For image files it is the hash
of their bytes (`files_content_id`), not of their sizes and mtimes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from exfiqa_jax.data.images import decode, read_image, stack

IMAGE_SIZE = 112  # the aligned crop size every source reads


def content_id(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


def files_content_id(paths: Sequence[str], threads: int = 8) -> str:
  """sha256 over every file's bytes, in order (each file's own sha256, length-prefixed):
  what a resumed scoring run compares, so an image replaced by another of the same size
  and mtime (`cp -p`, `rsync -a`, `tar -x` keep mtimes; uncompressed crops share one
  size) is never taken for the old one. Aligned crops are small (a 112x112 PNG is about
  30 KB), so this reads them once more; FileNotFoundError names a missing file."""
  from concurrent.futures import ThreadPoolExecutor

  def one(path: str) -> bytes:
    h = hashlib.sha256()
    try:
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
    except FileNotFoundError:
      raise FileNotFoundError(f"{path}: listed image does not exist") from None
    return h.digest()

  total = hashlib.sha256()
  with ThreadPoolExecutor(threads) as pool:
    for digest in pool.map(one, paths):
      total.update(digest)
  return total.hexdigest()


class ImageSource(Protocol):
  ids: np.ndarray  # [N] str, unique
  channel_order: str  # "rgb" or "bgr": the order of the stored pixels
  content_id: str | None

  def __len__(self) -> int: ...

  def read(self, indices: Sequence[int]) -> np.ndarray:
    """uint8 [len(indices), S, S, 3] in stored channel order."""


@dataclasses.dataclass(frozen=True)
class RecordSource:
  """A built dataset's images (`exfiqa_jax.data.records.Records`: TFDS records of encoded
  images, their ids and indices); each record's index and id are checked on reading."""

  records: Any
  ids: np.ndarray
  channel_order: str
  content_id: str | None = None

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    indices = [int(i) for i in indices]
    records = self.records.__getitems__(indices)
    names = [str(self.ids[i]) for i in indices]
    for i, name, (stored, stored_id, _) in zip(indices, names, records, strict=True):
      if stored != i or stored_id != name:
        raise ValueError(
          f"record order is broken: position {i} holds image {stored} ({stored_id!r}), not {name!r}"
        )
    return stack(
      [decode(data, n, IMAGE_SIZE) for (_, _, data), n in zip(records, names, strict=True)], names
    )


@dataclasses.dataclass(frozen=True)
class FileSource:
  """Image files read on demand; ids are the names as listed."""

  paths: Sequence[str]
  ids: np.ndarray
  channel_order: str = "rgb"
  content_id: str | None = None

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    images = [read_image(self.paths[i], IMAGE_SIZE) for i in indices]
    return stack(images, [self.paths[i] for i in indices])


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """Decoded images in memory: images uint8 [N, S, S, 3]."""

  images: np.ndarray
  ids: np.ndarray
  channel_order: str = "rgb"
  content_id: str | None = None

  def __len__(self) -> int:
    return len(self.ids)

  def read(self, indices: Sequence[int]) -> np.ndarray:
    return self.images[np.asarray(indices, dtype=np.int64)]

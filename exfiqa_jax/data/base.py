"""Shared parts of the face-data builders: records, array metadata, id checks.

Every builder writes one split, `images`, of records `{index, id, image}` in
input order (`image` holds the file's encoded PNG/JPEG bytes, decoded only when
read), and beside them the `ArraysMetadata` files. Reading needs no TensorFlow.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from exfiqa_jax.data.images import decode, stack
from exfiqa_jax.data.metadata import ArraysMetadata

SPLIT = "images"


def file_bytes(path: str) -> bytes:
  """An image file's encoded bytes; a missing file is an error naming it."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: listed image does not exist")
  with open(path, "rb") as f:
    return f.read()


def unique_ids(ids: Sequence[str], where: str) -> np.ndarray:
  """ids as a str array [N]; a repeated id is a ValueError naming it."""
  arr = np.asarray(list(ids), dtype=str)
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


class FaceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder over local files; subclasses implement `_read(manual_dir)`."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder holding the dataset's files as manual_dir."

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """The builder's source file (the default lookup wants a package not installed)."""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict(
      {
        "index": np.int64,
        "id": tfds.features.Text(),
        "image": tfds.features.Image(shape=(None, None, 3)),
      }
    )
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=features,
      metadata=ArraysMetadata(),
      disable_shuffling=True,
    )

  def _read(self, manual_dir: epath.Path) -> tuple[np.ndarray, Iterable[bytes], dict]:
    """-> (ids [N], encoded images in id order, metadata); raises on bad files."""
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    ids, images, metadata = self._read(epath.Path(dl_manager.manual_dir))
    self.info.metadata.update(metadata, ids=ids)
    return {SPLIT: self._generate_examples(ids, images)}

  def _generate_examples(self, ids, images):
    for i, (name, data) in enumerate(zip(ids.tolist(), images, strict=True)):
      stack([decode(data, name)], [name])  # unreadable or not 112x112: fail the build
      yield i, {"index": i, "id": name, "image": data}

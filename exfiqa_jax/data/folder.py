"""A plain folder of images, or a text file listing them: images only, for scoring."""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from exfiqa_jax.data.base import FaceBuilder, file_bytes, unique_ids
from exfiqa_jax.images import list_images
from exfiqa_jax.preprocess import CHANNEL_ORDERS


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  channel_order: str = "rgb"


class FaceImages(FaceBuilder):
  """`manual_dir` is a folder (sorted) or a list file; ids are the names as listed."""
  name = "face_images"

  def _read(self, manual_dir: epath.Path):
    order = getattr(self.builder_config, "channel_order", "rgb")
    if order not in CHANNEL_ORDERS:
      raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}; got {order!r}")
    names, paths = list_images(str(manual_dir))
    ids = unique_ids(names, str(manual_dir))
    return ids, (file_bytes(p) for p in paths), dict(channel_order=order)

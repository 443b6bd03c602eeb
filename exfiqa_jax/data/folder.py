"""A plain folder of images, or a text file listing them: images only, for scoring."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from exfiqa_jax.data.base import FaceBuilder, file_bytes, unique_ids
from exfiqa_jax.data.images import list_images
from exfiqa_jax.data.preprocess import check_channel_order


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  channel_order: str = "rgb"
  list_file: str = ""  # a list file inside manual_dir; empty: the folder itself


class FaceImages(FaceBuilder):
  """The images of `manual_dir` (sorted), or of a list file in it; ids: names as listed."""

  name = "face_images"

  def _read(self, manual_dir: epath.Path):
    order = getattr(self.builder_config, "channel_order", "rgb")
    check_channel_order(order)
    source = str(manual_dir / self.builder_config.list_file)
    names, paths = list_images(source)
    ids = unique_ids(names, source)
    return ids, (file_bytes(p) for p in paths), dict(channel_order=order)

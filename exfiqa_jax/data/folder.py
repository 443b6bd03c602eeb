"""A plain folder of images, or a text file listing them: images only, for scoring."""

from __future__ import annotations

import os

from exfiqa_jax.data.base import FaceBuilder, file_bytes, unique_ids
from exfiqa_jax.data.images import list_images
from exfiqa_jax.data.preprocess import check_channel_order


class FaceImages(FaceBuilder):
  """The images of `manual_dir` (sorted), or of the list file `list_file` in it;
  ids: names as listed."""

  name = "face_images"
  OPTIONS = ("channel_order", "list_file")

  def _source(self) -> str:
    return os.path.join(self.manual_dir, self.options.get("list_file", ""))

  def manifest(self) -> list[str]:
    if self.options.get("list_file"):
      return [self._source()]
    return [os.path.join(self.manual_dir, n) for n in list_images(self.manual_dir)[0]]

  def _read(self):
    order = self.options.get("channel_order", "rgb")
    check_channel_order(order)
    source = self._source()
    names, paths = list_images(source)
    ids = unique_ids(names, source)
    return ids, (file_bytes(p) for p in paths), dict(channel_order=order)

"""The CR-FIQA folder layout (docs/protocol.md §8), used for XQLFW and Adience.

`<manual_dir>/image_path_list.txt` lists one image path a line;
`<manual_dir>/pair_list.txt` holds `idA idB label` lines whose ids are image
file stems (label 1 genuine). Relative image paths are read from the
`image_root` option, by default `manual_dir` itself; lists written relative to
a data root above the dataset folder (e.g. `quality_data/XQLFW/images/x.jpg`)
need that root as `image_root`. Listed paths must stay inside that root.

Channel order: images extracted from .bin files by the CR-FIQA tools hold
swapped (BGR) channels. There is no default: the options name the order of
the stored files, `bgr` for such extracted files, `rgb` for ordinary ones, and
scoring swaps `bgr` back to RGB.
"""

from __future__ import annotations

import os

import numpy as np

from exfiqa_jax.data.base import FaceBuilder, file_bytes, id_index, unique_ids
from exfiqa_jax.data.preprocess import check_channel_order
from exfiqa_jax.data.text import inside, read_lines

IMAGES, PAIRS = "image_path_list.txt", "pair_list.txt"


def _lines(path: str) -> list[str]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: missing (CR-FIQA layout)")
  return read_lines(path, "CR-FIQA list")


class CrFiqaFolder(FaceBuilder):
  """A CR-FIQA dataset folder: images by stem and labelled pairs."""

  name = "cr_fiqa_folder"
  OPTIONS = ("channel_order", "image_root")

  def manifest(self) -> list[str]:
    return [os.path.join(self.manual_dir, IMAGES), os.path.join(self.manual_dir, PAIRS)]

  def _read(self):
    order = self.options.get("channel_order", "")
    check_channel_order(
      order, "cr_fiqa_folder", " (bgr for files extracted from .bin by the CR-FIQA tools)"
    )
    image_list, pair_file = self.manifest()
    listed = _lines(image_list)
    root = self.options.get("image_root") or self.manual_dir
    paths = [inside(root, p, image_list) for p in listed]
    ids = unique_ids([os.path.splitext(os.path.basename(p))[0] for p in listed], image_list)
    rows = [line.split() for line in _lines(pair_file)]
    bad = [r for r in rows if len(r) != 3 or r[2] not in ("0", "1")]
    if bad:
      raise ValueError(
        f"{pair_file}: lines must be 'idA idB label' with label 0 or 1; got {bad[0]}"
      )
    pairs = dict(
      pair_a=id_index(ids, [r[0] for r in rows], pair_file),
      pair_b=id_index(ids, [r[1] for r in rows], pair_file),
      pair_label=np.asarray([r[2] == "1" for r in rows], dtype=bool),
    )
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(
        f"{missing[0]}: listed image does not exist ({len(missing)} missing in all)"
      )
    return ids, (file_bytes(p) for p in paths), dict(channel_order=order, **pairs)

"""IJB-C 1:1 verification (docs/protocol.md §8): images, template and media ids, template pairs.

`manual_dir` holds `ijbc_face_tid_mid.txt` (`image template media` a line)
and `ijbc_template_pair_label.txt` (`templateA templateB label`), either at
its top or under `meta/`, and the aligned 112x112 crops under `images/`,
named as in the first column. Pairs index the sorted template ids.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from exfiqa_jax.data.base import FaceBuilder, file_bytes, unique_ids
from exfiqa_jax.data.text import inside, read_lines

FACES, PAIRS = "ijbc_face_tid_mid.txt", "ijbc_template_pair_label.txt"


def _find(manual_dir: str, name: str) -> str:
  for path in (os.path.join(manual_dir, name), os.path.join(manual_dir, "meta", name)):
    if os.path.exists(path):
      return path
  raise FileNotFoundError(f"{manual_dir}: neither {name} nor meta/{name} exists")


def _int_table(path: str) -> np.ndarray:
  """`a b label` integer lines -> int64 [P, 3] (fast for the 15.7M pairs)."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", DeprecationWarning)  # raised on a non-integer token
      with open(path, encoding="utf-8", errors="replace") as f:
        values = np.fromstring(f.read(), dtype=np.int64, sep=" ")
  except (ValueError, DeprecationWarning):
    values = np.zeros(1)
  if values.size % 3:
    raise ValueError(f"{path}: every line must hold three integers 'templateA templateB label'")
  return values.reshape(-1, 3)


class Ijbc1to1(FaceBuilder):
  """IJB-C 1:1: aligned crops, their template and media ids, labelled template pairs."""

  name = "ijbc_1to1"

  def manifest(self) -> list[str]:
    return [_find(self.manual_dir, FACES), _find(self.manual_dir, PAIRS)]

  def _read(self):
    manual_dir = self.manual_dir
    faces = _find(manual_dir, FACES)
    rows = [line.split() for line in read_lines(faces, "IJB-C face list")]
    if any(len(r) != 3 or not (r[1].isdigit() and r[2].isdigit()) for r in rows):
      raise ValueError(f"{faces}: every line must be 'image template media' (integer ids)")
    ids = unique_ids([r[0] for r in rows], faces)
    template = np.asarray([int(r[1]) for r in rows], dtype=np.int64)
    template_ids, of_image = np.unique(template, return_inverse=True)
    pair_file = _find(manual_dir, PAIRS)
    table = _int_table(pair_file)
    pos = np.searchsorted(template_ids, table[:, :2]).clip(0, len(template_ids) - 1)
    unknown = table[:, :2][template_ids[pos] != table[:, :2]]
    if unknown.size:
      raise KeyError(
        f"{pair_file}: pairs name unknown template ids {np.unique(unknown)[:5].tolist()}"
      )
    images = os.path.join(manual_dir, "images")
    paths = [inside(images, i, faces) for i in ids.tolist()]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"{missing[0]}: image does not exist ({len(missing)} missing in all)")
    arrays = dict(
      template_ids=template_ids,
      template_of_image=of_image.astype(np.int64),
      media=np.asarray([int(r[2]) for r in rows], dtype=np.int64),
      pair_a=pos[:, 0].astype(np.int64),
      pair_b=pos[:, 1].astype(np.int64),
      pair_label=table[:, 2] == 1,
    )
    return ids, (file_bytes(p) for p in paths), dict(channel_order="rgb", **arrays)

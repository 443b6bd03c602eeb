"""The CR-FIQA folder layout (docs/protocol.md §8), read as CR-FIQA's extractors write it.

`<manual_dir>/image_path_list.txt` lists one image path a line;
`<manual_dir>/pair_list.txt` holds `idA idB label` lines (label 1 genuine). As
the extractors write them (CR-FIQA `feature_extraction/extract_bin.py`,
`extract_xqlfw.py`, `extract_adience.py`):

- labels may be zero-padded: `extract_bin.py` writes every field with `%05d`
  (`00000 00001 00001`); any integer token of value 0 or 1 is a label;
- a pair id names an image by its file stem (`00000`) or its file name
  (`Aaron_0001.jpg`, as `extract_xqlfw.py` writes); image ids are the stems;
- listed paths are relative to the data folder above `quality_data/`
  (`quality_data/lfw/images/00000.jpg`): when `manual_dir` is
  `<data>/quality_data/<name>` and every listed path starts with
  `quality_data/<name>/`, they are read from `<data>`; otherwise from
  `manual_dir`, or from the `image_root` option when given. The root used is
  stored with the build. Listed paths must stay inside it;
- a path listed again (`extract_xqlfw.py` lists an image once per pair it
  is in) is the same image; two different paths of one stem are refused.

Channel order: every CR-FIQA extractor writes its JPEGs with swapped channels
(a true-RGB array handed to `cv2.imwrite`), so a standard decoder reads them
as BGR. There is no default: the options name the order of the stored files,
`bgr` for the extractors' folders, `rgb` for ordinary ones; scoring swaps
`bgr` back, so the images are true RGB in memory (docs/protocol.md §8).
"""

from __future__ import annotations

import os

import numpy as np

from exfiqa_jax.data.base import FaceBuilder, file_bytes, id_index, unique_ids
from exfiqa_jax.data.preprocess import check_channel_order
from exfiqa_jax.data.text import inside, read_lines

IMAGES, PAIRS = "image_path_list.txt", "pair_list.txt"
QUALITY_DATA = "quality_data"  # the extractors' output folder under the data root


def _lines(path: str) -> list[str]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: missing (CR-FIQA layout)")
  return read_lines(path, "CR-FIQA list")


def _label(token: str) -> int | None:
  """0 or 1 for a (possibly zero-padded) integer token of that value, else None."""
  return int(token) if token.isdigit() and int(token) in (0, 1) else None


def image_root(manual_dir: str, listed: list[str], image_list: str) -> str:
  """Where the listed paths start: `<data>` for the extractors' `quality_data/<name>`
  layout (every path under `quality_data/<name>/`), else `manual_dir`. Refused when
  both readings name existing files."""
  parent, name = os.path.split(manual_dir)
  prefix = f"{QUALITY_DATA}/{name}/"
  norm = [os.path.normpath(p).replace(os.sep, "/") for p in listed]
  if os.path.basename(parent) != QUALITY_DATA or not all(p.startswith(prefix) for p in norm):
    return manual_dir
  data_root = os.path.dirname(parent)
  here = os.path.isfile(os.path.join(manual_dir, listed[0]))
  if here and os.path.isfile(os.path.join(data_root, listed[0])):
    raise ValueError(
      f"{image_list}: {listed[0]!r} exists both under {data_root} (the CR-FIQA data root) "
      f"and under {manual_dir}; name the folder the paths start from with image_root"
    )
  return manual_dir if here else data_root


def _pair_index(ids: np.ndarray, names: list[str], tokens: list[str], where: str) -> np.ndarray:
  """Positions [M] of pair ids, each an image's stem or its file name; a token that is
  one image's file name and another's stem is refused."""
  by_name = {n: i for i, n in enumerate(names)}
  by_stem = {s: i for i, s in enumerate(ids.tolist())}
  both = [t for t in set(tokens) if t in by_name and t in by_stem and by_name[t] != by_stem[t]]
  if both:
    raise ValueError(
      f"{where}: pair id {sorted(both)[0]!r} is one image's file name and another's stem"
    )
  return id_index(ids, [str(ids[by_name[t]]) if t in by_name else t for t in tokens], where)


class CrFiqaFolder(FaceBuilder):
  """A CR-FIQA dataset folder: images by stem and labelled pairs."""

  name = "cr_fiqa_folder"
  OPTIONS = ("channel_order", "image_root")

  def manifest(self) -> list[str]:
    return [os.path.join(self.manual_dir, IMAGES), os.path.join(self.manual_dir, PAIRS)]

  def _read(self):
    order = self.options.get("channel_order", "")
    check_channel_order(
      order, "cr_fiqa_folder", " (bgr for the folders CR-FIQA's extraction scripts write)"
    )
    image_list, pair_file = self.manifest()
    listed = list(dict.fromkeys(os.path.normpath(p) for p in _lines(image_list)))  # dedupe
    root = self.options.get("image_root") or image_root(self.manual_dir, listed, image_list)
    paths = [inside(root, p, image_list) for p in listed]
    names = [os.path.basename(p) for p in listed]
    ids = unique_ids([os.path.splitext(n)[0] for n in names], image_list)
    rows = [line.split() for line in _lines(pair_file)]
    bad = [r for r in rows if len(r) != 3 or _label(r[2]) is None]
    if bad:
      raise ValueError(
        f"{pair_file}: lines must be 'idA idB label' with label 0 or 1 (zero-padded allowed); "
        f"got {bad[0]}"
      )
    pairs = dict(
      pair_a=_pair_index(ids, names, [r[0] for r in rows], pair_file),
      pair_b=_pair_index(ids, names, [r[1] for r in rows], pair_file),
      pair_label=np.asarray([_label(r[2]) == 1 for r in rows], dtype=bool),
    )
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      hint = (
        "" if "image_root" in self.options else " (set image_root to the folder they start from)"
      )
      raise FileNotFoundError(
        f"{missing[0]}: listed image does not exist ({len(missing)} missing in all){hint}"
      )
    meta = dict(channel_order=order, image_root=root, **pairs)
    return ids, (file_bytes(p) for p in paths), meta

"""A built dataset loaded as images, ids, pairs and templates.

ds = load("verification_bin/lfw", data_dir="datasets/")
ds.images.ids, ds.images.read([0, 1])       # uint8 [2, 112, 112, 3]
ds.pairs.a, ds.pairs.b, ds.pairs.labels      # pair k: images a[k], b[k]
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from exfiqa_jax.data.build import (
  ARRAYS_FILE,
  BUILDERS,
  FORMAT,
  OLD_VERSIONS,
  dataset_dir,
  read_build,
)
from exfiqa_jax.data.images import list_images
from exfiqa_jax.data.npz import read_npz
from exfiqa_jax.data.records import Records
from exfiqa_jax.data.sources import (
  FileSource,
  ImageSource,
  RecordSource,
  content_id,
  files_content_id,
)
from exfiqa_jax.data.text import name_array


@dataclasses.dataclass(frozen=True)
class Pairs:
  a: np.ndarray  # [P] int64: index into the images, or into Templates.ids
  b: np.ndarray  # [P] int64
  labels: np.ndarray  # [P] bool, True for a genuine pair


@dataclasses.dataclass(frozen=True)
class Templates:
  ids: np.ndarray  # [T] int64, sorted template ids
  of_image: np.ndarray  # [N] int64: each image's template, index into ids
  media: np.ndarray  # [N] int64: each image's media id
  detector_score: np.ndarray | None = None  # [N] float64: from the raw release, else None


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  images: ImageSource
  pairs: Pairs | None = None  # over templates when `templates` is set
  templates: Templates | None = None


def load(name: str, data_dir: str) -> Dataset:
  """A built dataset (`exfiqa_jax.data.build`): its images read through TFDS's data source
  (`tfds.builder_from_directory(...).as_data_source`, no TensorFlow), its ids, pairs and
  templates from `arrays.npz`."""
  builder, _, config = name.partition("/")
  path = dataset_dir(data_dir, builder, config) if builder in BUILDERS and config else ""
  info = read_build(path) if path else None
  if info is None:
    parent = os.path.dirname(path)
    old = [v for v in OLD_VERSIONS if path and os.path.isdir(os.path.join(parent, v))]
    was = f" ({os.path.join(parent, old[0])} is an earlier layout, not read)" if old else ""
    raise FileNotFoundError(f"dataset {name!r} is not built under {data_dir}{was}; build it")
  if info.get("params", {}).get("format") != FORMAT:
    raise ValueError(f"{path}: not a dataset of this version; build it again")
  meta = read_npz(os.path.join(path, ARRAYS_FILE))
  records = Records(path)
  if len(records) != len(meta["ids"]) or len(records) != info.get("num_images"):
    raise ValueError(f"{path}: {len(records)} records for {len(meta['ids'])} ids; build it again")
  images = RecordSource(
    records, meta["ids"], info["channel_order"], content_id(repr(info["params"]))
  )
  pairs = Pairs(meta["pair_a"], meta["pair_b"], meta["pair_label"]) if "pair_a" in meta else None
  templates = (
    Templates(
      meta["template_ids"], meta["template_of_image"], meta["media"], meta.get("detector_score")
    )
    if "template_ids" in meta
    else None
  )
  return Dataset(name, images, pairs, templates)


def from_files(source: str, channel_order: str = "rgb") -> Dataset:
  """A folder or list file read directly (no build step): images only."""
  names, paths = list_images(source)
  ids = name_array(names, source)
  return Dataset(source, FileSource(paths, ids, channel_order, files_content_id(paths)))

"""A built dataset loaded as images, ids, pairs and templates.

ds = load("verification_bin/lfw", data_dir="tfds/")
ds.images.ids, ds.images.read([0, 1])       # uint8 [2, 112, 112, 3]
ds.pairs.a, ds.pairs.b, ds.pairs.labels      # pair k: images a[k], b[k]
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from exfiqa_jax.data.base import SPLIT
from exfiqa_jax.data.build import BUILDERS
from exfiqa_jax.data.images import list_images
from exfiqa_jax.data.metadata import ArraysMetadata
from exfiqa_jax.data.sources import FileSource, ImageSource, RecordSource


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


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  images: ImageSource
  pairs: Pairs | None = None  # over templates when `templates` is set
  templates: Templates | None = None


def load(name: str, data_dir: str) -> Dataset:
  """A built dataset, read through `tfds.data_source` (no TensorFlow)."""
  builder, _, config = name.partition("/")
  if builder not in BUILDERS or not glob.glob(
    os.path.join(glob.escape(data_dir), builder, glob.escape(config), "*", "dataset_info.json")
  ):
    raise FileNotFoundError(f"dataset {name!r} is not built under {data_dir}")
  records = tfds.data_source(
    name, data_dir=data_dir, split=SPLIT, decoders={"image": tfds.decode.SkipDecoding()}
  )
  meta = ArraysMetadata()
  meta.load_metadata(records.dataset_info.data_dir)
  images = RecordSource(records, meta["ids"], meta["channel_order"])
  pairs = Pairs(meta["pair_a"], meta["pair_b"], meta["pair_label"]) if "pair_a" in meta else None
  templates = (
    Templates(meta["template_ids"], meta["template_of_image"], meta["media"])
    if "template_ids" in meta
    else None
  )
  return Dataset(name, images, pairs, templates)


def from_files(source: str, channel_order: str = "rgb") -> Dataset:
  """A folder or list file read directly (no build step): images only."""
  names, paths = list_images(source)
  return Dataset(source, FileSource(paths, np.asarray(names), channel_order))

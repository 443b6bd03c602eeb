"""Build a dataset from its local files once (`<data_dir>/<builder>/<name>/1.0.0/`).

build("verification_bin", "lfw", manual_dir="bins/", data_dir="tfds/")
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from exfiqa_jax.data.cr_fiqa import CrFiqaConfig, CrFiqaFolder
from exfiqa_jax.data.folder import FaceImages, FolderConfig
from exfiqa_jax.data.ijbc import Ijbc1to1
from exfiqa_jax.data.verification_bin import VerificationBin

BUILDERS = {c.name: c for c in (VerificationBin, CrFiqaFolder, Ijbc1to1, FaceImages)}
_ORDERED = {CrFiqaFolder: CrFiqaConfig, FaceImages: FolderConfig}


def build(
  builder: str,
  name: str,
  manual_dir: str,
  data_dir: str,
  channel_order: str | None = None,
  image_root: str | None = None,
) -> str:
  """Prepares `<data_dir>/<builder>/<name>/` from local files; returns `builder/name`.

  channel_order: of the stored files (`cr_fiqa_folder`, required; `face_images`).
  image_root: where relative paths of a `cr_fiqa_folder` list start (default manual_dir).
  """
  if builder not in BUILDERS:
    raise KeyError(f"unknown dataset builder {builder!r}; known: {sorted(BUILDERS)}")
  cls = BUILDERS[builder]
  if not os.path.exists(manual_dir):
    raise FileNotFoundError(f"{manual_dir}: no such folder or file")
  if image_root is not None and cls is not CrFiqaFolder:
    raise ValueError(f"image_root applies only to cr_fiqa_folder, not {builder}")
  if cls in _ORDERED:
    options = {} if channel_order is None else {"channel_order": channel_order}
    if image_root is not None:
      options["image_root"] = os.path.abspath(image_root)
    if cls is FaceImages and os.path.isfile(manual_dir):  # a list file: TFDS wants a folder
      manual_dir, options["list_file"] = os.path.split(os.path.abspath(manual_dir))
    config = _ORDERED[cls](name=name, **options)
  elif channel_order is not None:
    raise ValueError(
      f"{builder} stores RGB images; channel_order applies only to "
      f"{sorted(c.name for c in _ORDERED)}"
    )
  else:
    config = tfds.core.BuilderConfig(name=name)
  cls(config=config, data_dir=data_dir).download_and_prepare(
    file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  return f"{builder}/{name}"

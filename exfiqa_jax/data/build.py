"""Build a dataset from its local files once: `<data_dir>/<builder>/<name>/3.0.0/`.

build("verification_bin", "lfw", manual_dir="bins/", data_dir="datasets/")

A built dataset is a TFDS dataset (`data.records`): split `images` in
`<builder>-images.array_record-00000-of-00001` (record i: image i's encoded bytes
as stored, its id, i), TFDS's `dataset_info.json` and `features.json`, and
`metadata.json`, the build's description: the build parameters (builder, name,
source folder, options, the size and time of change of every file of the
dataset's manifest: the .bin, the lists; every image of a plain folder), the
channel order, and the file holding the pairs and templates, `arrays.npz` (ids,
pairs, templates). `build` returns at once when the parameters still match, and
builds again when any changed (e.g. a .bin rewritten with another number of
pairs). A folder of an earlier layout (`2.0.0`, `1.0.0`) is never read: its
dataset is built again beside it, once.

The folder is written under a temporary name and renamed into place complete
(`fileio.atomic_path`), so a kill at any point leaves either the previous build
or the new one, never a part that loads; a lock on `<data_dir>/<builder>/<name>`
makes a second build of the same dataset wait for the first. No TensorFlow is
used: the images stream from the files to the array_record writer one by one,
so memory does not grow with the dataset's size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from exfiqa_jax.data.base import FaceBuilder
from exfiqa_jax.data.cr_fiqa import CrFiqaFolder
from exfiqa_jax.data.folder import FaceImages
from exfiqa_jax.data.ijbc import Ijbc1to1
from exfiqa_jax.data.images import decode, stack
from exfiqa_jax.data.npz import write_npz
from exfiqa_jax.data.records import SPLIT, write_dataset
from exfiqa_jax.data.verification_bin import VerificationBin
from exfiqa_jax.fileio import FolderLock, atomic_path, read_json

BUILDERS: dict[str, type[FaceBuilder]] = {
  c.name: c for c in (VerificationBin, CrFiqaFolder, Ijbc1to1, FaceImages)
}
VERSION = "3.0.0"  # 1.0.0 and 2.0.0 were layouts of earlier writers; left alone, never read
FORMAT = "exfiqa-dataset-3"
OLD_VERSIONS = ("2.0.0", "1.0.0")
BUILD_FILE, ARRAYS_FILE = "metadata.json", "arrays.npz"  # TFDS reads BUILD_FILE as its metadata


def dataset_dir(data_dir: str, builder: str, name: str) -> str:
  return os.path.join(data_dir, builder, name, VERSION)


def read_build(path: str) -> dict | None:
  """The build description (`metadata.json`) of a built dataset folder, or None."""
  try:
    return read_json(os.path.join(path, BUILD_FILE), "dataset build description")
  except (OSError, ValueError):
    return None


def _params(b: FaceBuilder) -> dict:
  source = []
  for path in b.manifest():
    try:
      st = os.stat(path)
    except FileNotFoundError:
      raise FileNotFoundError(f"{path}: missing (needed by {b.name})") from None
    source.append([os.path.relpath(path, b.manual_dir), st.st_size, st.st_mtime_ns])
  return dict(
    format=FORMAT,
    builder=b.name,
    name=b.config,
    manual_dir=b.manual_dir,
    options=dict(sorted(b.options.items())),
    source=source,
  )


def _examples(
  ids: np.ndarray, images: Iterable[bytes], extra: dict[str, np.ndarray], progress: bool | str
) -> Iterator[dict]:
  """The records, each image decoded once first: unreadable or not 112x112 fails the build."""
  for i, (name, data) in enumerate(
    tqdm(
      zip(ids.tolist(), images, strict=True),
      total=len(ids),
      unit="img",
      disable=not progress,
      desc=progress if isinstance(progress, str) else "building",  # a str: the bar's label
    )
  ):
    stack([decode(data, name, 112)], [name])
    yield dict(image=bytes(data), id=name, index=i, **{k: int(v[i]) for k, v in extra.items()})


def _per_image(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The per-image ids stored in each record beside the image (IJB-C: template, media)."""
  if "template_ids" not in arrays:
    return {}
  return dict(template=arrays["template_ids"][arrays["template_of_image"]], media=arrays["media"])


def _description(b: FaceBuilder, arrays: dict[str, np.ndarray]) -> str:
  text = (
    f"{b.name}/{b.config}, built by exfiqa_jax.data.build from {b.manual_dir}. Split "
    f"'{SPLIT}': record i holds image i's encoded bytes as stored in the source files, "
    "its id and i. metadata.json: the build parameters and channel_order (of the stored "
    "pixels)."
  )
  if "pair_a" in arrays:
    over = "template ids (template_ids)" if "template_ids" in arrays else "image indices"
    text += f" {ARRAYS_FILE}: pair k = (pair_a[k], pair_b[k], pair_label[k]) over {over}."
  return text


def make_builder(
  builder: str,
  name: str,
  manual_dir: str,
  channel_order: str | None = None,
  image_root: str | None = None,
) -> FaceBuilder:
  """The builder of a dataset, its options checked (see `build`)."""
  if builder not in BUILDERS:
    raise KeyError(f"unknown dataset builder {builder!r}; known: {sorted(BUILDERS)}")
  cls = BUILDERS[builder]
  if not os.path.exists(manual_dir):
    raise FileNotFoundError(f"{manual_dir}: no such folder or file")
  if image_root is not None and cls is not CrFiqaFolder:
    raise ValueError(f"image_root applies only to cr_fiqa_folder, not {builder}")
  ordered = sorted(c.name for c in BUILDERS.values() if "channel_order" in c.OPTIONS)
  if channel_order is not None and "channel_order" not in cls.OPTIONS:
    raise ValueError(f"{builder} stores RGB images; channel_order applies only to {ordered}")
  options = {} if channel_order is None else {"channel_order": channel_order}
  if image_root is not None:
    options["image_root"] = os.path.abspath(image_root)
  if cls is FaceImages and os.path.isfile(manual_dir):  # a list file in its folder
    manual_dir, options["list_file"] = os.path.split(os.path.abspath(manual_dir))
  return cls(name, manual_dir, **options)


def build(
  builder: str,
  name: str,
  manual_dir: str,
  data_dir: str,
  channel_order: str | None = None,
  image_root: str | None = None,
  *,
  force: bool = False,
  progress: bool | str = False,
) -> str:
  """Prepares `<data_dir>/<builder>/<name>/` from local files; returns `builder/name`.

  channel_order: of the stored files (`cr_fiqa_folder`, required; `face_images`).
  image_root: where relative paths of a `cr_fiqa_folder` list start (default manual_dir).
  force: build again even when the recorded parameters still match.
  """
  b = make_builder(builder, name, manual_dir, channel_order, image_root)
  target = dataset_dir(data_dir, builder, name)
  made = [p for p in (data_dir, os.path.dirname(os.path.dirname(target))) if not os.path.isdir(p)]
  lock = FolderLock(os.path.dirname(target), f"building dataset {builder}/{name}")
  lock.acquire(wait=True)
  try:
    params = _params(b)
    old = read_build(target)
    if not force and old is not None and old.get("params") == params:
      return f"{builder}/{name}"
    ids, images, metadata = b.read()
    arrays = {"ids": ids, **{k: v for k, v in metadata.items() if isinstance(v, np.ndarray)}}
    plain = {k: v for k, v in metadata.items() if k not in arrays}
    extra = _per_image(arrays)
    with atomic_path(target, directory=True, force=True, kind="dataset") as tmp:
      write_npz(os.path.join(tmp, ARRAYS_FILE), arrays)
      write_dataset(
        tmp,
        builder,
        VERSION,
        _examples(ids, images, extra, progress),
        sorted(extra),
        dict(params=params, num_images=len(ids), arrays=ARRAYS_FILE, **plain),
        _description(b, arrays),
      )
  except BaseException:
    for p in (os.path.dirname(target), *reversed(made)):  # the folders this build made, if empty
      with contextlib.suppress(OSError):
        os.rmdir(p)
    raise
  finally:
    lock.release()
  return f"{builder}/{name}"

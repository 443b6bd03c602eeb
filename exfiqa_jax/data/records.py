"""The records of a built dataset: a TFDS dataset of one split, `images`.

Record i of split `images` is the `tfds.features.FeaturesDict` example
{"image": image i's encoded PNG/JPEG bytes as stored in the source files,
"id": its id, "index": i} (IJB-C adds "template" and "media", its template and
media ids). The examples are serialised by `FeaturesDict.serialize_example` and
written one at a time by array_record's `ArrayRecordWriter`: no shuffle buffer,
no TensorFlow, memory bounded by one record whatever the dataset's size. Then
`tfds.folder_dataset.write_metadata` writes `dataset_info.json`,
`features.json` (the image feature names the encoding and the channel count
found in the files) and `metadata.json` (the build's own description), so that
`tfds.builder_from_directory(folder).as_data_source(split="images")` opens it.

tensorflow_datasets is imported here only when a dataset is written or read
(it is not needed to import the package or to parse a command line).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

SPLIT = "images"


def _tfds():
  import tensorflow_datasets as tfds  # lazy: about 0.3 s, only where datasets are built/read

  return tfds


def features(image_shape=(112, 112, 3), encoding: str | None = None, extra: Sequence[str] = ()):
  """The dataset's `FeaturesDict`: image bytes, id, index, and int64 `extra` fields."""
  tfds = _tfds()
  f = tfds.features
  spec = {
    "image": f.Image(shape=image_shape, encoding_format=encoding),
    "id": f.Text(),
    "index": f.Scalar(np.int64),
  }
  spec.update({k: f.Scalar(np.int64) for k in extra})
  return f.FeaturesDict(spec)


_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}  # IHDR colour type, 8-bit
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}  # components of the frame header
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def _header(data: bytes) -> tuple[str, str] | None:
  """(format, mode) from a PNG's IHDR or a JPEG's frame header, as PIL names them;
  None when the header is not the plain case (PIL then reads it)."""
  if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[24] == 8:
    mode = _PNG_MODES.get(data[25])
    return ("PNG", mode) if mode else None
  if data[:2] != b"\xff\xd8":
    return None
  i = 2
  while i + 9 < len(data) and data[i] == 0xFF:
    marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
    if marker in _SOF:
      mode = _JPEG_MODES.get(data[i + 9]) if data[i + 4] == 8 else None
      return ("JPEG", mode) if mode else None
    i += 2 + length
  return None


class _Seen:
  """The encodings and channel counts of the written images (from their headers)."""

  def __init__(self):
    self.formats: set[str] = set()
    self.modes: set[str] = set()

  def add(self, data: bytes) -> None:
    found = _header(data)
    if found is None:
      with Image.open(io.BytesIO(data)) as im:  # header only
        found = str(im.format), str(im.mode)
    self.formats.add(found[0])
    self.modes.add(found[1])

  def encoding(self) -> str | None:
    names = {"PNG": "png", "JPEG": "jpeg"}
    return names.get(next(iter(self.formats))) if len(self.formats) == 1 else None

  def channels(self) -> int | None:
    """3 when TFDS's decoder gives the pixels `exfiqa_jax.data.images.decode` gives (RGB,
    and grey repeated to 3 channels); else the channel count of the files, None if mixed."""
    if self.modes <= {"RGB", "L"}:
      return 3
    return {"RGBA": 4, "LA": 2}.get(next(iter(self.modes))) if len(self.modes) == 1 else None


def write_dataset(
  folder: str,
  name: str,
  version: str,
  examples: Iterable[Mapping],
  extra: Sequence[str],
  metadata: dict,
  description: str,
) -> int:
  """Writes the TFDS dataset `name` (split `images`) into `folder`; returns its size.

  examples: dicts {"image": bytes, "id": str, "index": int, **extra ints}, in index
  order. metadata: JSON values, stored as the dataset's `metadata.json`.
  """
  from array_record.python.array_record_module import ArrayRecordWriter

  tfds = _tfds()
  feats = features(extra=extra)  # serialising bytes does not depend on shape or encoding
  # TFDS's file name template: {DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}
  path = os.path.join(folder, f"{name}-{SPLIT}.array_record-00000-of-00001")
  writer = ArrayRecordWriter(path, "group_size:1,uncompressed")  # images are compressed
  seen, n, num_bytes = _Seen(), 0, 0
  try:
    for n, ex in enumerate(examples, 1):
      seen.add(ex["image"])
      record = feats.serialize_example(ex)
      num_bytes += len(record)
      writer.write(record)
  finally:
    writer.close()
  tfds.folder_dataset.write_metadata(
    data_dir=folder,
    features=features((112, 112, seen.channels()), seen.encoding(), extra),
    split_infos=[tfds.core.SplitInfo(name=SPLIT, shard_lengths=[n], num_bytes=num_bytes)],
    version=version,
    check_data=False,  # the check reads through tf.data; `Records` reads it back instead
    description=description,
    metadata=tfds.core.MetadataDict(metadata),
  )
  return n


class Records:
  """A built dataset's split `images`, opened with `tfds.builder_from_directory`.

  `records[[i, j]] -> [(index, id, encoded image bytes), ...]`; the image stays
  encoded (TFDS's `SkipDecoding`), decoded by `exfiqa_jax.data.images` so that
  pixels are those of the source files. Thread-safe.
  """

  def __init__(self, path: str):
    tfds = _tfds()
    self.path = path
    self.builder = tfds.builder_from_directory(path)
    self._source = self.builder.as_data_source(
      split=SPLIT, decoders={"image": tfds.decode.SkipDecoding()}
    )

  def __len__(self) -> int:
    return len(self._source)

  def __getitems__(self, indices: Sequence[int]) -> list[tuple[int, str, bytes]]:
    out = []
    for ex in self._source.__getitems__(list(indices)):
      out.append((int(ex["index"]), ex["id"].decode("utf-8"), bytes(ex["image"])))
    return out

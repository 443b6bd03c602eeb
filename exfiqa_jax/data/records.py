"""The records of a built dataset: one array_record file, record i = image i.

Record i holds `index` as 8 little-endian bytes, then image i's encoded
PNG/JPEG bytes as stored in the source files. Written and read by the
array_record library directly: no TensorFlow, no shuffle buffer, memory bounded
by one record whatever the dataset's size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from array_record.python.array_record_data_source import ArrayRecordDataSource
from array_record.python.array_record_module import ArrayRecordWriter

_INDEX = struct.Struct("<q")


def write_records(path: str, images: Iterable[bytes]) -> int:
  """Writes the encoded images in order; returns how many."""
  writer = ArrayRecordWriter(path, "group_size:1,uncompressed")  # images are compressed
  n = 0
  try:
    for n, data in enumerate(images, 1):
      writer.write(_INDEX.pack(n - 1) + bytes(data))
  finally:
    writer.close()
  return n


class Records:
  """Random access to a records file: `records[[i, j]] -> [bytes, bytes]` (thread-safe)."""

  def __init__(self, path: str):
    self.path = path
    self._source = ArrayRecordDataSource(path)

  def __len__(self) -> int:
    return len(self._source)

  def __getitems__(self, indices: Sequence[int]) -> list[tuple[int, bytes]]:
    """(stored index, encoded image) of each record."""
    out = []
    for raw in self._source.__getitems__(list(indices)):
      out.append((_INDEX.unpack_from(raw)[0], raw[_INDEX.size :]))
    return out

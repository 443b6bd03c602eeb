"""Dataset-level arrays stored beside the records of a built dataset.

`arrays.npz` holds the image ids and, where the dataset has them, pairs
(`pair_a`, `pair_b`, `pair_label`), templates and media; `metadata.json`
holds plain settings such as the channel order.
"""

from __future__ import annotations

import json

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

ARRAYS_FILE = "arrays.npz"


class ArraysMetadata(tfds.core.Metadata):
  """numpy arrays -> `arrays.npz`, everything else -> `metadata.json` (JSON)."""

  def save_metadata(self, data_dir):
    data_dir = epath.Path(data_dir)
    arrays = {k: v for k, v in self.items() if isinstance(v, np.ndarray)}
    plain = {k: v for k, v in self.items() if k not in arrays}
    (data_dir / "metadata.json").write_text(json.dumps(plain, sort_keys=True))
    with (data_dir / ARRAYS_FILE).open("wb") as f:
      np.savez(f, **arrays)

  def load_metadata(self, data_dir):
    data_dir = epath.Path(data_dir)
    self.clear()
    self.update(json.loads((data_dir / "metadata.json").read_text()))
    with (data_dir / ARRAYS_FILE).open("rb") as f, np.load(f, allow_pickle=False) as z:
      self.update({k: z[k] for k in z.files})

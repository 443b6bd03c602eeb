"""Verification `.bin` files (docs/protocol.md §8): a pickle of (encoded images, issame).

Images 2k and 2k+1 form pair k. The pickle is read by an unpickler that admits
only the plain values these files hold (bytes, str, bool, int, lists, tuples,
and `_codecs.encode`, which protocol-2 pickles use to spell bytes); a pickle
asking for any other global is refused before anything of it runs.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np
from etils import epath

from exfiqa_jax.data.base import FaceBuilder

_ALLOWED = {("_codecs", "encode"): codecs.encode}


class _RestrictedUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise pickle.UnpicklingError(f"the pickle asks for {module}.{name}")
    return _ALLOWED[module, name]


def read_bin(path: str) -> tuple[list[bytes], np.ndarray]:
  """-> (encoded images [2P], issame bool [P]); refuses anything but plain data."""
  try:
    with open(path, "rb") as f:
      obj = _RestrictedUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such verification .bin file") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise ValueError(
      f"{path}: refused or unreadable as a verification .bin pickle ({e}); "
      "only bytes, booleans, lists and tuples are admitted"
    ) from None
  ok = isinstance(obj, (tuple, list)) and len(obj) == 2
  images, issame = obj if ok else (None, None)
  if not (
    ok
    and isinstance(images, list)
    and all(isinstance(b, bytes) for b in images)
    and isinstance(issame, list)
    and all(isinstance(s, (bool, int)) for s in issame)
  ):
    raise ValueError(
      f"{path}: not a verification .bin (expected a pair of a list of encoded "
      "images and a list of booleans)"
    )
  if len(images) != 2 * len(issame):
    raise ValueError(f"{path}: {len(images)} images for {len(issame)} pairs (need 2 per pair)")
  return images, np.asarray(issame, dtype=bool)


class VerificationBin(FaceBuilder):
  """A verification .bin file, `<manual_dir>/<config name>.bin` (lfw, agedb_30, cfp_fp,
  calfw, cplfw, or any other of the format): images and pairs."""

  name = "verification_bin"

  def _read(self, manual_dir: epath.Path):
    images, issame = read_bin(str(manual_dir / f"{self.builder_config.name}.bin"))
    n = len(images)
    ids = np.asarray([f"{i:06d}" for i in range(n)])
    pairs = dict(
      pair_a=np.arange(0, n, 2, dtype=np.int64),
      pair_b=np.arange(1, n, 2, dtype=np.int64),
      pair_label=issame,
    )
    return ids, images, dict(channel_order="rgb", **pairs)

"""A small deterministic verification benchmark, generated: the demo's data.

Each identity is a smooth random colour pattern; each image is its identity's
pattern with its own variation, then blurred and noised by a per-image
degradation level. The result is written in the InsightFace verification .bin
format of docs/protocol.md §8: a pickle of (list of JPEG bytes, list of bool), images
2k and 2k+1 forming pair k.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
from PIL import Image, ImageFilter

from exfiqa_jax.fileio import write_bytes


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
  """A smooth random float pattern [size, size, 3] in [0, 255]."""
  coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)


def _image(rng: np.random.Generator, base: np.ndarray, degradation: float) -> bytes:
  """One JPEG: base + own variation, blurred and noised by degradation in [0, 1]."""
  x = 0.75 * base + 0.25 * _pattern(rng, base.shape[0])
  img = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
  img = img.filter(ImageFilter.GaussianBlur(radius=4.0 * float(degradation)))
  x = np.asarray(img, np.float32) + rng.normal(0, 60.0 * degradation, x.shape)
  buf = io.BytesIO()
  Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def make_pairs(num_pairs: int, num_ids: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Identity of each image [2P] and genuine flags [P]; pairs alternate genuine/impostor."""
  rng = np.random.default_rng(seed)
  issame = np.arange(num_pairs) % 2 == 0
  first = rng.integers(0, num_ids, num_pairs)
  other = (first + rng.integers(1, num_ids, num_pairs)) % num_ids  # never the same id
  ids = np.stack([first, np.where(issame, first, other)], axis=1).reshape(-1)
  return ids, issame


def make_verification_bin(
  path: str, num_pairs: int = 300, num_ids: int = 40, image_size: int = 112, seed: int = 0
) -> None:
  """Writes a generated benchmark of `num_pairs` pairs to `path` (.bin), atomically."""
  ids, issame = make_pairs(num_pairs, num_ids, seed)
  rng = np.random.default_rng(seed + 1)
  bases = [_pattern(rng, image_size) for _ in range(num_ids)]
  degradation = rng.beta(1.2, 2.5, ids.size)
  images = [_image(rng, bases[i], d) for i, d in zip(ids, degradation, strict=True)]
  write_bytes(path, pickle.dumps((images, issame.tolist()), protocol=4))

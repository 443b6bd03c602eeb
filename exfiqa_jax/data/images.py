"""Face image files: decode PNG/JPEG to uint8 RGB, list a folder or a list file.

names, paths = list_images("crops/")   # a folder: image files in sorted order
batch = read_images(paths)             # uint8 [N, 112, 112, 3], RGB as stored
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from exfiqa_jax.data.preprocess import check_images

SUFFIXES = (".png", ".jpg", ".jpeg")


def decode(data: bytes, name: str) -> np.ndarray:
  """PNG/JPEG bytes -> uint8 [H, W, 3] (grey and RGBA become RGB); `name` is for errors."""
  try:
    with Image.open(io.BytesIO(data)) as im:
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"{name}: cannot decode image ({e})") from None


def read_image(path: str) -> np.ndarray:
  """One image file -> uint8 [H, W, 3]."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such image file")
  with open(path, "rb") as f:
    return decode(f.read(), path)


def stack(images: Sequence[np.ndarray], names: Sequence[str], image_size: int = 112) -> np.ndarray:
  """Decoded images -> uint8 [N, S, S, 3]; a wrong size is an error naming the image."""
  for im, name in zip(images, names, strict=True):
    try:
      check_images(im[None], image_size)
    except ValueError as e:
      raise ValueError(f"{name}: {e}") from None
  return np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)


def read_images(paths: Sequence[str], image_size: int = 112) -> np.ndarray:
  """Image files -> uint8 [N, S, S, 3]."""
  return stack([read_image(p) for p in paths], paths, image_size)


def list_images(source: str) -> tuple[list[str], list[str]]:
  """(names as listed, paths to read) of a folder or of a text file with one path a line.

  A folder gives its image files (.png, .jpg, .jpeg) in sorted order, named
  relative to it; relative paths in a list file are read relative to the list
  file's folder. Blank lines are skipped; an empty listing is an error.
  """
  if os.path.isdir(source):
    names = sorted(
      f
      for f in os.listdir(source)
      if f.lower().endswith(SUFFIXES) and os.path.isfile(os.path.join(source, f))
    )
    root = source
  elif os.path.isfile(source):
    with open(source, encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip()]
    root = os.path.dirname(source)
  else:
    raise FileNotFoundError(f"{source}: no such folder or list file")
  if not names:
    raise ValueError(f"{source}: lists no images")
  return names, [os.path.join(root, n) for n in names]

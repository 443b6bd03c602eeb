"""Face image files: decode PNG/JPEG to uint8 RGB, list a folder or a list file.

names, paths = list_images("crops/")   # a folder: image files in sorted order
batch = read_images(paths)             # uint8 [N, 112, 112, 3], RGB as stored

Decoding is bounded: only PNG and JPEG are opened, and the size in the file's
header is checked before any pixel is decoded (exactly `image_size` when the
caller needs a size, else at most `MAX_PIXELS`); 16-bit and other non-8-bit
images are refused, not clipped to 8 bits.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image

from exfiqa_jax.data.preprocess import check_images
from exfiqa_jax.data.text import inside, read_lines

SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_PIXELS = 4096 * 4096  # without a required size
_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")  # 8 bits a channel
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def decode(data: bytes, name: str, image_size: int | None = None) -> np.ndarray:
  """PNG/JPEG bytes -> uint8 [H, W, 3] (grey and RGBA become RGB); `name` is for errors.

  image_size: the required size (checked from the header, before decoding).
  """
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
      im = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
    with im:
      w, h = im.size
      if image_size is not None and (w, h) != (image_size, image_size):
        raise ValueError(
          f"images must be {image_size}x{image_size} aligned crops; the file is {w}x{h}"
        )
      if w * h > MAX_PIXELS:
        raise ValueError(f"{w}x{h} pixels is over the limit of {MAX_PIXELS:,}")
      depth = data[24] if im.format == "PNG" and len(data) > 24 else 8
      if depth > 8 or im.mode not in _MODES:
        raise ValueError(
          f"{depth}-bit {im.mode} image; only 8-bit images are read (16-bit would be clipped)"
        )
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None
  except (OSError, Image.DecompressionBombError) as e:
    raise ValueError(f"{name}: cannot decode image ({e})") from None


def read_image(path: str, image_size: int | None = None) -> np.ndarray:
  """One image file -> uint8 [H, W, 3]."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such image file")
  with open(path, "rb") as f:
    return decode(f.read(), path, image_size)


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
  return stack([read_image(p, image_size) for p in paths], paths, image_size)


def _is_image_file(path: str) -> bool:
  if path.lower().endswith(SUFFIXES):
    return True
  with open(path, "rb") as f:
    head = f.read(8)
  return any(head.startswith(m) for m in _MAGIC)


def list_images(source: str) -> tuple[list[str], list[str]]:
  """(names as listed, paths to read) of a folder or of a text file with one path a line.

  A folder gives its image files (.png, .jpg, .jpeg) in sorted order, named
  relative to it; a broken link among them is an error. Paths in a list file
  are relative to the list file's folder and stay inside it. Blank lines are
  skipped; an empty listing or a repeated name is an error.
  """
  if os.path.isdir(source):
    names = []
    for f in sorted(os.listdir(source)):
      path = os.path.join(source, f)
      if not f.lower().endswith(SUFFIXES) or os.path.isdir(path):
        continue
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: broken link (its target does not exist)")
      names.append(f)
    root = source
  elif os.path.isfile(source):
    if _is_image_file(source):
      raise ValueError(
        f"{source} is an image file; give a folder of images or a text file listing them"
      )
    names = read_lines(source, "list of image paths")
    root = os.path.dirname(source)
  else:
    raise FileNotFoundError(f"{source}: no such folder or list file")
  if not names:
    raise ValueError(f"{source}: lists no images")
  paths = [inside(root, n, source) for n in names]
  seen: set[str] = set()
  for n in names:
    if n in seen:
      raise ValueError(f"{source}: lists {n!r} twice (ids must be unique)")
    seen.add(n)
  return names, paths

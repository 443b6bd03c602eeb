"""`exfiqa attention`'s output: the quality token's attention over the patches at every
block, one figure (PNG and SVG) per image and `attention.npz`, in one folder."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
from tqdm.auto import tqdm

from exfiqa_jax.data.images import list_images, read_images
from exfiqa_jax.data.npz import write_npz
from exfiqa_jax.data.preprocess import preprocess
from exfiqa_jax.fileio import atomic_path
from exfiqa_jax.models.attention_maps import attention_and_exits
from exfiqa_jax.report import plots


def png_names(names: list[str]) -> list[str]:
  """One PNG file name per image name, all different: `<stem>.png` (path separators
  as `_`) when the stems are all different, else the whole names with `%` and the
  separator escaped, then `.png` (`a.jpg` and `a.png` -> `a.jpg.png`, `a.png.png`)."""
  stems = [os.path.splitext(n)[0].replace(os.sep, "_") + ".png" for n in names]
  if len(set(stems)) == len(stems):
    return stems
  return [n.replace("%", "%25").replace(os.sep, "%2F") + ".png" for n in names]


def write_attention(
  ckpt,
  images: str,
  out: str,
  channel_order: str,
  max_images: int,
  force: bool = False,
  batch_size: int = 16,
  dtype: str = "float32",
  progress: bool = False,
) -> int:
  """The first `max_images` images of a folder or list file through checkpoint `ckpt`
  (a loaded ViT-FIQA checkpoint), `batch_size` at a time (the last batch padded, so one
  program serves every batch) at matmul dtype `dtype`: writes the folder `out`
  atomically (figures, and attention.npz with names [B], attention [B, depth, heads,
  patches], exits [B, depth]); returns the number of images."""
  import jax.numpy as jnp

  names, paths = list_images(images)
  names, paths = names[:max_images], paths[:max_images]
  pixels = read_images(paths, ckpt.config.image_size)
  x = preprocess(pixels, ckpt.config.image_size, channel_order)
  run = partial(attention_and_exits, dtype=jnp.dtype(dtype))  # one program per shape
  rows, exits = [], []
  for i in tqdm(
    range(0, len(names), batch_size), desc="attention", unit="batch", disable=not progress
  ):
    xb = np.asarray(x[i : i + batch_size])
    n = len(xb)
    xb = np.concatenate([xb, np.repeat(xb[-1:], batch_size - n, axis=0)]) if n < batch_size else xb
    r, e = run(ckpt.graphdef, ckpt.params, ckpt.batch_stats, xb)
    rows.append(np.asarray(r, np.float32)[:n])
    exits.append(np.asarray(e, np.float32)[:n])
  rows, exits = np.concatenate(rows), np.concatenate(exits)
  g = ckpt.config.grid
  maps = rows.mean(axis=2).reshape(len(names), ckpt.config.depth, g, g)  # mean over heads
  shown = pixels[..., ::-1] if channel_order == "bgr" else pixels
  with atomic_path(out, directory=True, force=force, kind="attention", option="--out") as tmp:
    for i, (name, png) in enumerate(zip(names, png_names(names), strict=True)):
      fig = plots.attention_figure(
        shown[i],
        maps[i],
        exits[i],
        title=f"{name}: quality-token attention (mean over heads) and exit scores",
      )
      plots.save(fig, os.path.join(tmp, png))
    arrays = {"names": np.array(names), "attention": rows, "exits": exits}
    write_npz(os.path.join(tmp, "attention.npz"), arrays)
  return len(names)

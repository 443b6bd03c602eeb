"""`exfiqa attention`: the quality token's attention over the patches at every block."""

from __future__ import annotations

import argparse
import os

from exfiqa_jax.cli import add_force, positive_int

NAME = "attention"
HELP = "save the quality token's attention over the patches at every block (PNG and SVG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="a checkpoint written by `exfiqa convert`")
  p.add_argument("--images", required=True, help="a folder of images or a list file")
  p.add_argument(
    "--out", required=True, help="folder for one PNG and SVG per image and attention.npz"
  )
  add_force(p, "the --out folder")
  p.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb")
  p.add_argument("--max-images", type=positive_int, default=16)


def png_names(names: list[str]) -> list[str]:
  """One PNG file name per image name, all different: `<stem>.png` (path separators
  as `_`) when the stems are all different, else the whole names with `%` and the
  separator escaped, then `.png` (`a.jpg` and `a.png` -> `a.jpg.png`, `a.png.png`)."""
  stems = [os.path.splitext(n)[0].replace(os.sep, "_") + ".png" for n in names]
  if len(set(stems)) == len(stems):
    return stems
  return [n.replace("%", "%25").replace(os.sep, "%2F") + ".png" for n in names]


def run(args: argparse.Namespace) -> int:
  import numpy as np

  from exfiqa_jax import load, preprocess
  from exfiqa_jax.data.images import list_images, read_images
  from exfiqa_jax.data.npz import write_npz
  from exfiqa_jax.fileio import atomic_path, check_output
  from exfiqa_jax.models.attention_maps import attention_and_exits
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.report import plots

  check_output(args.out, force=args.force, directory=True, kind="attention", option="--out")
  ckpt = load(args.checkpoint, expect=ViTConfig)
  names, paths = list_images(args.images)
  names, paths = names[: args.max_images], paths[: args.max_images]
  images = read_images(paths, ckpt.config.image_size)
  x = preprocess(images, ckpt.config.image_size, args.channel_order)
  rows, exits = attention_and_exits(ckpt.graphdef, ckpt.params, ckpt.batch_stats, x)
  rows, exits = np.asarray(rows), np.asarray(exits)
  g = ckpt.config.grid
  maps = rows.mean(axis=2).reshape(len(names), ckpt.config.depth, g, g)  # mean over heads
  shown = images[..., ::-1] if args.channel_order == "bgr" else images
  with atomic_path(
    args.out, directory=True, force=args.force, kind="attention", option="--out"
  ) as tmp:
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
  print(f"wrote {len(names)} attention maps ({ckpt.config.depth} blocks each) to {args.out}")
  return 0

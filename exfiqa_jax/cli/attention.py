"""`exfiqa attention`: the quality token's attention over the patches at every block."""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_channel_order, add_dtype, add_force, add_quiet, positive_int

NAME = "attention"
HELP = "save the quality token's attention over the patches at every block (PNG and SVG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="a checkpoint written by `exfiqa convert`")
  p.add_argument("--images", required=True, help="a folder of images or a list file")
  p.add_argument(
    "--out",
    required=True,
    metavar="FOLDER",
    help="output folder (not a file): one PNG and SVG per image and attention.npz",
  )
  add_force(p, "the --out folder")
  add_channel_order(p)
  p.add_argument(
    "--max-images",
    type=positive_int,
    default=16,
    help="draw the first this many images in listing order (each is a figure of every "
    "block's map, PNG and SVG, a few seconds each); raise it to draw more",
  )
  p.add_argument("--batch-size", type=positive_int, default=16, help="images per model call")
  add_dtype(p)
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  from exfiqa_jax.data.images import list_images
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.report.attention import write_attention

  check_output(args.out, force=args.force, directory=True, kind="attention", option="--out")
  ckpt = load(args.checkpoint, expect=ViTConfig)
  total = len(list_images(args.images)[0])
  n = min(total, args.max_images)
  capped = f" (the first {n} of {total}: --max-images {args.max_images})" if n < total else ""
  print(
    f"attention: the quality token's attention over the patches at each of the "
    f"{ckpt.config.depth} blocks, for {n} images{capped}, into {args.out}/",
    flush=True,
  )
  n = write_attention(
    ckpt,
    args.images,
    args.out,
    args.channel_order,
    args.max_images,
    force=args.force,
    batch_size=args.batch_size,
    dtype=args.dtype,
    progress=not args.quiet,
  )
  print(f"wrote {n} attention maps ({ckpt.config.depth} blocks each) to {args.out}")
  return 0

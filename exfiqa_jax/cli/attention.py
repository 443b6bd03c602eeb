"""`exfiqa attention`: the quality token's attention over the patches at every block."""

from __future__ import annotations

import argparse

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


def run(args: argparse.Namespace) -> int:
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.report.attention import write_attention

  check_output(args.out, force=args.force, directory=True, kind="attention", option="--out")
  ckpt = load(args.checkpoint, expect=ViTConfig)
  n = write_attention(
    ckpt, args.images, args.out, args.channel_order, args.max_images, force=args.force
  )
  print(f"wrote {n} attention maps ({ckpt.config.depth} blocks each) to {args.out}")
  return 0

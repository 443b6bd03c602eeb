"""`exfiqa export`: an orbax checkpoint back to a PyTorch state_dict file."""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_force, add_quiet, require_torch

NAME = "export"
HELP = (
  "write an orbax checkpoint folder as a PyTorch file in its release's layout (ViT-FIQA "
  "state_dict, or the face-recognition release's), and DST.pt.json with the settings the "
  "shapes cannot tell (heads, image size)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("src", metavar="SRC_CKPT", help="checkpoint folder written by convert or save")
  p.add_argument("dst", metavar="DST.pt", help="output file, for torch.load(weights_only=True)")
  add_force(p, "DST.pt and DST.pt.json")
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  require_torch("export")
  from exfiqa_jax.convert import export_file

  config = export_file(args.src, args.dst, force=args.force)
  print(f"wrote {args.dst} and {args.dst}.json: {config.to_dict()}")
  return 0

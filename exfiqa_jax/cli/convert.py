"""`exfiqa convert`: a checkpoint of a model family (default a PyTorch ViT-FIQA one; with
--family a face-recognition backbone) to an orbax checkpoint, exactly."""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_force, add_quiet, positive_int, require_torch
from exfiqa_jax.models.fr_config import RELEASES

# `exfiqa_jax.convert.FAMILIES` (which imports torch, so not at --help); a test holds them equal.
FAMILY_NAMES = ("vit_fiqa", *RELEASES)

NAME = "convert"
HELP = (
  "convert a PyTorch ViT-FIQA checkpoint (.pt), or with --family a face-recognition "
  "backbone, to an orbax checkpoint folder"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "src",
    metavar="SRC",
    help="PyTorch checkpoint, loaded weights-only; with --family arcface-mxnet the MXNet "
    "PREFIX-EPOCH.params (or its PREFIX) beside PREFIX-symbol.json",
  )
  p.add_argument("dst", metavar="DST", help="output checkpoint folder (see exfiqa_jax.load)")
  p.add_argument(
    "--num-heads",
    type=positive_int,
    default=None,
    help="ViT-FIQA's attention heads (8 for the released model); the weights cannot tell "
    "them: required unless SRC.json (written by `exfiqa export` or `exfiqa demo`) holds them",
  )
  p.add_argument(
    "--image-size",
    type=positive_int,
    default=None,
    help="input size; default: from SRC.json, else the smallest multiple of 8 giving "
    "the checkpoint's patch grid (112 for the released model)",
  )
  p.add_argument(
    "--family",
    choices=FAMILY_NAMES,
    default=None,
    help="the source's model family: a face-recognition release's backbone (its wrapper, "
    "BatchNorm eps, input channel order and scaling); default: the family in SRC.json when "
    "`exfiqa export` wrote one (another one is refused), else a ViT-FIQA checkpoint",
  )
  add_force(p, "DST")
  p.add_argument(
    "--verify",
    action="store_true",
    help="compare with the PyTorch reference model on test images first",
  )
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  require_torch("convert")
  from exfiqa_jax.convert import convert_file

  config = convert_file(
    args.src,
    args.dst,
    num_heads=args.num_heads,
    image_size=args.image_size,
    force=args.force,
    check=args.verify,
    family=args.family,
  )
  print(f"wrote {args.dst}: {config.to_dict()}")
  return 0

"""`exfiqa score`: every exit score and the embedding of face image files, to one .npz.

Output (`np.load`): `paths` [N] as listed (a folder: its images in sorted
order), `exit_scores` float32 [N, depth] (exit 1..depth), `quality` float32
[N] (the last exit), `embeddings` float32 [N, D] (before L2 normalisation).
"""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_force, add_quiet, positive_int

NAME = "score"
HELP = "score aligned 112x112 face images (a folder or a list file) with a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", required=True, help="checkpoint folder (exfiqa convert)")
  p.add_argument(
    "--images",
    required=True,
    metavar="DIR_OR_LIST",
    help="a folder of PNG/JPEG files, or a text file with one path a line "
    "(relative to the list file's folder)",
  )
  p.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
  add_force(p, "--out (and a --work-dir holding another run)")
  p.add_argument(
    "--batch-size",
    type=positive_int,
    default=32,
    help="global batch per host; a multiple of the local device count",
  )
  p.add_argument(
    "--channel-order",
    choices=("rgb", "bgr"),
    default="rgb",
    help="channel order of the stored files (bgr: swapped on reading)",
  )
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="matmul dtype (bfloat16 accumulates in float32)",
  )
  p.add_argument(
    "--work-dir",
    default=None,
    help="keep completed chunks here so that a restarted run resumes; "
    "required on several hosts (a shared folder)",
  )
  p.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() first (multi-host pods)",
  )
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  import jax

  if args.distributed:
    jax.distributed.initialize()
  import jax.numpy as jnp

  from exfiqa_jax.data import from_files
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.scoring.run_folder import save_npz
  from exfiqa_jax.scoring.score import score

  check_output(args.out, force=args.force, option="--out")
  loaded = load(args.checkpoint, expect=ViTConfig)
  images = from_files(args.images, args.channel_order).images
  s = score(
    loaded[1:],
    images,
    args.work_dir,
    batch_size=args.batch_size,
    dtype=jnp.dtype(args.dtype),
    progress=not args.quiet,
    replace=args.force,
  )
  if jax.process_index() == 0:
    check_output(args.out, force=args.force, option="--out")
    save_npz(
      args.out,
      dict(
        paths=s.ids,
        exit_scores=s.exit_scores,
        quality=s.exit_scores[:, -1],
        embeddings=s.embeddings,
      ),
    )
    print(f"wrote {args.out}: {len(s.ids)} images, {s.exit_scores.shape[1]} exits")
  return 0

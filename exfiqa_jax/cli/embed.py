"""`exfiqa embed`: face-recognition embeddings of face image files, to one .npz.

Output (`np.load`): `paths` [N] as listed (a folder: its images in sorted
order), `embeddings` float32 [N, D], the network's raw output before L2
normalisation, and with --flip `embeddings_flip` [N, D] of the mirrored
images. The checkpoint is one written by `exfiqa convert --family ...`; its
config holds the channel order and scaling of the release's evaluation.
Sharded, resumable (--work-dir) and multi-host exactly as `exfiqa score`, and
like it an existing --out is kept unless --force.
"""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_image_arguments, initialize_distributed

NAME = "embed"
HELP = "embed aligned 112x112 face images with a converted face-recognition backbone"


def add_arguments(p: argparse.ArgumentParser) -> None:
  add_image_arguments(
    p, "a face-recognition checkpoint folder (exfiqa convert --family ...)", "output file"
  )
  p.add_argument("--flip", action="store_true", help="also embed the mirrored images")
  p.add_argument(
    "--model-channel-order",
    choices=("rgb", "bgr"),
    default=None,
    help="the channel order fed to the network; default: its release's (in the checkpoint)",
  )


def run(args: argparse.Namespace) -> int:
  import jax

  if args.distributed:
    initialize_distributed()
  import jax.numpy as jnp

  from exfiqa_jax.data import from_files
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.fr_config import FRConfig
  from exfiqa_jax.scoring.run_folder import embed_file_arrays, save_npz
  from exfiqa_jax.scoring.score import FRModel, check_input_size, score

  check_output(args.out, force=args.force, option="--out")
  loaded = load(args.checkpoint, expect=FRConfig)
  model = FRModel("model", loaded.config, loaded[1:], args.flip, args.model_channel_order)
  check_input_size([model], label=args.checkpoint)  # before any image is read
  images = from_files(args.images, args.channel_order).images
  s = score(
    None,
    images,
    args.work_dir,
    fr_models=[model],
    batch_size=args.batch_size,
    dtype=jnp.dtype(args.dtype),
    progress=not args.quiet,
    replace=args.force,
  )
  if jax.process_index() == 0:
    check_output(args.out, force=args.force, option="--out")
    save_npz(args.out, embed_file_arrays(s, "model"))
    emb = s.fr["model"]["embeddings"]
    name = loaded.config.name
    print(f"wrote {args.out}: {emb.shape[0]} images, {emb.shape[1]}-d {name} embeddings")
  return 0

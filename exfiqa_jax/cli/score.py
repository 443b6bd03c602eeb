"""`exfiqa score`: every exit score and the embedding of face image files, to one .npz.

Output (`np.load`): `paths` [N] as listed (a folder: its images in sorted
order), `exit_scores` float32 [N, depth] (exit 1..depth), `quality` float32
[N] (the last exit), `embeddings` float32 [N, D] (before L2 normalisation).

With `--policy NAME --budget GFLOPS` (adaptive early exit): the knob of policy
NAME whose calibrated mean GFLOPs per image is the largest within the budget is
taken from `<checkpoint>/policies.json` (written by `exfiqa adaptive`) or
`--policy-file`; blocks run in stages and each image stops where the policy
says its quality is settled. Then `exit_scores` holds NaN after the exit where
an image stopped, `blocks_run` int32 [N] is that exit, `quality` is the
policy's fused quality (the depth-weighted fusion of the exits run), there are
no `embeddings`, and `policy` (a JSON string) names the policy, its knob, its
calibrated GFLOPs, the mean GFLOPs these images ran and the policy file.
"""

from __future__ import annotations

import argparse

from exfiqa_jax.adaptive.policy import POLICY_FILE
from exfiqa_jax.cli import add_image_arguments, initialize_distributed, positive_float

NAME = "score"
HELP = "score aligned 112x112 face images (a folder or a list file) with a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
  add_image_arguments(p, "checkpoint folder (exfiqa convert)", "output file")
  p.add_argument(
    "--policy",
    default=None,
    metavar="NAME",
    help="adaptive early exit: stop each image where policy NAME (delta, band or gate) "
    "says its quality is settled; needs --budget",
  )
  p.add_argument(
    "--budget",
    type=positive_float,
    default=None,
    metavar="GFLOPS",
    help="mean GFLOPs per image for --policy: the knob with the largest calibrated cost within it",
  )
  p.add_argument(
    "--policy-file",
    default=None,
    metavar="FILE.json",
    help=f"the policies (exfiqa adaptive); default: {POLICY_FILE} in the checkpoint folder",
  )


def run(args: argparse.Namespace) -> int:
  import jax

  if args.distributed:
    initialize_distributed()
  import jax.numpy as jnp

  from exfiqa_jax.adaptive.policy import choose, run_arrays
  from exfiqa_jax.data import from_files
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.models.flops import exit_gflops
  from exfiqa_jax.scoring.run_folder import save_npz, score_file_arrays
  from exfiqa_jax.scoring.score import score

  check_output(args.out, force=args.force, option="--out")
  loaded = load(args.checkpoint, expect=ViTConfig)
  chosen = choose(args.policy, args.budget, args.policy_file, args.checkpoint, loaded.config.depth)
  policy, policy_path = chosen or (None, None)
  s = score(
    loaded[1:],
    from_files(args.images, args.channel_order).images,
    args.work_dir,
    batch_size=args.batch_size,
    dtype=jnp.dtype(args.dtype),
    progress=not args.quiet,
    replace=args.force,
    policy=policy,
  )
  if jax.process_index() == 0:
    check_output(args.out, force=args.force, option="--out")
    arrays, note = (
      (score_file_arrays(s), "")
      if policy is None
      else run_arrays(s, policy, policy_path, exit_gflops(loaded.config))
    )
    save_npz(args.out, arrays)
    print(f"wrote {args.out}: {len(s.ids)} images, {s.exit_scores.shape[1]} exits{note}")
  return 0

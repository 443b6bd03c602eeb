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
from exfiqa_jax.cli import add_force, add_quiet, positive_float, positive_int

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
  add_quiet(p)


def choose_policy(args: argparse.Namespace, depth: int):
  """The policy --policy/--budget/--policy-file ask for, or None; one-line ValueError."""
  import os

  if args.policy is None:
    if args.budget is not None or args.policy_file is not None:
      raise ValueError("--budget and --policy-file go with --policy NAME")
    return None
  from exfiqa_jax.adaptive.policy import POLICIES, for_budget

  if args.policy not in POLICIES:
    raise ValueError(f"unknown policy {args.policy!r}; policies are {', '.join(POLICIES)}")
  if args.budget is None:
    raise ValueError("--policy needs --budget GFLOPS (mean GFLOPs per image)")
  path = args.policy_file or os.path.join(args.checkpoint, POLICY_FILE)
  policy = for_budget(path, args.budget, args.policy)
  if policy.depth != depth:
    raise ValueError(f"{path}: policy {policy.name} is for depth {policy.depth}, the model {depth}")
  return policy, path


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
  chosen = choose_policy(args, loaded.config.depth)
  policy, policy_path = chosen or (None, None)
  images = from_files(args.images, args.channel_order).images
  s = score(
    loaded[1:],
    images,
    args.work_dir,
    batch_size=args.batch_size,
    dtype=jnp.dtype(args.dtype),
    progress=not args.quiet,
    replace=args.force,
    policy=policy,
  )
  if jax.process_index() == 0:
    check_output(args.out, force=args.force, option="--out")
    if policy is None:
      exits = s.exit_scores
      arrays = dict(paths=s.ids, exit_scores=exits, quality=exits[:, -1], embeddings=s.embeddings)
      note = ""
    else:
      arrays, note = policy_arrays(s, policy, policy_path, loaded.config)
    save_npz(args.out, arrays)
    print(f"wrote {args.out}: {len(s.ids)} images, {s.exit_scores.shape[1]} exits{note}")
  return 0


def policy_arrays(s, policy, path: str, config) -> tuple[dict, str]:
  """The output arrays of a policy run and a note for the summary line."""
  import json

  import numpy as np

  from exfiqa_jax.adaptive.policy import mean_gflops
  from exfiqa_jax.models.flops import exit_gflops

  cost = exit_gflops(config)
  ran = mean_gflops(s.blocks_run, cost)
  meta = dict(
    name=policy.name,
    knob=policy.knob,
    stages=list(policy.stages),
    calibrated_gflops=policy.gflops,
    mean_gflops=ran,
    full_gflops=cost[-1],
    policy_file=path,
  )
  arrays = dict(
    paths=s.ids,
    exit_scores=s.exit_scores,
    quality=s.quality,
    blocks_run=s.blocks_run,
    policy=np.array(json.dumps(meta, sort_keys=True)),
  )
  return arrays, f"; policy {policy.name} knob {policy.knob:g}, {ran:.4f} GFLOPs per image"

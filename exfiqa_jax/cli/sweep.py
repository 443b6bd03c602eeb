"""`exfiqa sweep`: every exit subset x rule x normalisation, weight sweeps, learned
weights and the Pareto front, on saved scores."""

from __future__ import annotations

import argparse
import os

from exfiqa_jax.cli import add_force, add_quiet

NAME = "sweep"
HELP = "fusion sweep on saved scores: subsets, weights, learned weights, Pareto front"


def add_arguments(p: argparse.ArgumentParser) -> None:
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--config", help="a job config: sweep the inputs `exfiqa evaluate` saved")
  src.add_argument("--inputs", nargs="+", help="saved inputs files (<out_dir>/inputs/*.npz)")
  src.add_argument("--scores", help="an `exfiqa score` .npz; needs --pairs")
  p.add_argument("--pairs", help="pair list `idA idB label score` for --scores")
  p.add_argument(
    "--depth-cost",
    action="store_true",
    help="with --scores: cost = exit number instead of the vit_s GFLOPs",
  )
  p.add_argument("--out", help="output folder (default <out_dir>/sweep or out/sweep)")
  add_force(p, "sweep files of the same name in --out")
  add_quiet(p)
  p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def run(args: argparse.Namespace) -> int:
  import numpy as np

  from exfiqa_jax.data.npz import describe
  from exfiqa_jax.evaluation.job_config import load_job
  from exfiqa_jax.evaluation.run import inputs_path, read_inputs
  from exfiqa_jax.evaluation.saved_sweep import sweep_inputs
  from exfiqa_jax.fileio import check_output

  cfg = load_job(args.config, args.overrides) if args.config else {}
  if args.scores:
    from exfiqa_jax.evaluation.pairs_file import inputs_from_files
    from exfiqa_jax.models.config import ViTConfig
    from exfiqa_jax.models.flops import exit_gflops

    if not args.pairs:
      raise ValueError("--scores needs --pairs (a list of `idA idB label score`)")
    shapes = describe(args.scores) if os.path.isfile(args.scores) else {}
    depth = shapes["exit_scores"][0][-1] if len(shapes.get("exit_scores", ((),))[0]) == 2 else 0
    cost = np.arange(1, depth + 1.0) if args.depth_cost else exit_gflops(ViTConfig(depth=depth))
    work = {
      os.path.splitext(os.path.basename(args.scores))[0]: inputs_from_files(
        args.scores, args.pairs, cost
      )
    }
  else:
    paths = args.inputs or [
      inputs_path(cfg["out_dir"], d, f) for d in cfg["datasets"] for f in cfg["fr_models"]
    ]
    work = {os.path.splitext(os.path.basename(p))[0]: read_inputs(p) for p in paths}
  out = args.out or os.path.join(cfg.get("out_dir", "out"), "sweep")
  for key in work:
    check_output(os.path.join(out, f"{key}.md"), force=args.force, option="--out")
  for key, z in work.items():
    print(f"wrote {sweep_inputs(z, cfg, out, key, progress=not args.quiet)}")
  return 0

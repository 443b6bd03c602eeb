"""`exfiqa sweep`: every exit subset x rule x normalisation, weight sweeps, learned
weights and the Pareto front, on saved scores.

KEY=VALUE overrides set the metric and sweep options (`SWEEP_DEFAULTS`), with
--config on top of the job config, with --scores / --inputs on top of the
defaults; an unknown key or a bad value is an error, never ignored.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile

from exfiqa_jax.cli import add_force, add_quiet

NAME = "sweep"
HELP = "fusion sweep on saved scores: subsets, weights, learned weights, Pareto front"

# The options a sweep of saved inputs reads, with their defaults (a job config's
# sections of the same names).
SWEEP_DEFAULTS = {
  "metrics": {"fmrs": (1e-3, 1e-4), "edc_fmr": 1e-3, "edc_limits": (0.2, 0.3)},
  "sweep": {
    "rules": ("mean", "weighted", "median", "min", "max"),
    "norms": ("none",),
    "select": None,
    "top_k": 3,
    "memory_mb": 1024,
  },
  "weights": {"powers": (0.0, 0.5, 1.0, 2.0, 4.0), "simplex": 64, "learn_steps": 200, "seed": 0},
}


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
  p.add_argument(
    "--distributed",
    action="store_true",
    help="join the other hosts of a multi-host job (jax.distributed, configured from the "
    "environment): each host sweeps its share of the variants, host 0 writes the files",
  )
  p.add_argument(
    "overrides",
    nargs="*",
    metavar="KEY=VALUE",
    help="options, e.g. metrics.fmrs=(1e-3,1e-2) metrics.edc_limits=(0.1,) "
    "sweep.rules=('mean','median') sweep.norms=('none','rank') weights.simplex=16",
  )


def check_options(cfg: dict) -> None:
  """Raises ValueError naming the key: rules, normalisations, FMRs and limits."""
  from exfiqa_jax.fusion.rules import NORMS, RULES

  s, m = cfg.get("sweep", {}), cfg.get("metrics", {})
  for key, allowed in (("rules", RULES), ("norms", NORMS)):
    values = s.get(key, ())
    if isinstance(values, str) or not all(v in allowed for v in values) or not values:
      raise ValueError(f"sweep.{key}={values!r}: give a tuple of {list(allowed)}")
  for key in ("fmrs", "edc_limits"):
    values = m.get(key, (0.5,))
    ok = isinstance(values, (tuple, list)) and values
    if not ok or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in values):
      raise ValueError(f"metrics.{key}={values!r}: give a tuple of numbers in (0, 1]")
  fmr = m.get("edc_fmr", 0.5)
  if not isinstance(fmr, (int, float)) or not 0 < fmr <= 1:
    raise ValueError(f"metrics.edc_fmr={fmr!r}: give a number in (0, 1]")


def sweep_config(overrides: list[str]) -> dict:
  """SWEEP_DEFAULTS with `section.key=value` overrides applied and checked."""
  from exfiqa_jax.configs import apply_overrides

  cfg = apply_overrides(copy.deepcopy(SWEEP_DEFAULTS), list(overrides))
  check_options(cfg)
  if not any(o.startswith("metrics.") for o in overrides):
    del cfg["metrics"]  # saved inputs carry their job's metric settings; else the defaults
  return cfg


def run(args: argparse.Namespace) -> int:
  import numpy as np

  from exfiqa_jax.data.npz import describe
  from exfiqa_jax.evaluation.job_config import load_job
  from exfiqa_jax.evaluation.run import inputs_path, read_inputs
  from exfiqa_jax.evaluation.saved_sweep import sweep_inputs
  from exfiqa_jax.fileio import check_output

  if args.config:
    cfg = load_job(args.config, args.overrides)
    check_options(cfg)
  else:
    cfg = sweep_config(args.overrides)
  if args.distributed:
    import jax

    jax.distributed.initialize()
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
  import jax

  if jax.process_index() == 0:
    for key in work:
      check_output(os.path.join(out, f"{key}.md"), force=args.force, option="--out")
  with tempfile.TemporaryDirectory() as scratch:
    where = out if jax.process_index() == 0 else scratch  # every host computes, host 0 writes
    for key, z in work.items():
      path = sweep_inputs(z, cfg, where, key, progress=not args.quiet)
      if jax.process_index() == 0:
        print(f"wrote {path}")
  return 0

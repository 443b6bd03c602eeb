"""`exfiqa adaptive`: calibrate and evaluate adaptive early-exit policies on saved scores.

Reads saved inputs (`exfiqa evaluate`'s `<out_dir>/inputs/*.npz`, or an `exfiqa
score` file with a pair list), splits the pairs into calibration and evaluation
pairs, sweeps each policy's knob and writes `policies.json` (into the checkpoint
folder with --checkpoint, else into --out), the trade-off table (Markdown, CSV,
JSON) and the Pareto figure with the adaptive points beside the static subsets.
"""

from __future__ import annotations

import argparse
import os

from exfiqa_jax.adaptive.policy import FRACTION, POLICIES, SEED
from exfiqa_jax.cli import add_cost, add_force, add_quiet, fraction, int_list, name_list

NAME = "adaptive"
HELP = "calibrate and evaluate adaptive early-exit policies (delta, band, gate) on saved scores"


def _knobs(text: str) -> tuple[str, tuple[float, ...]]:
  name, _, values = text.partition("=")
  if name not in POLICIES:
    raise argparse.ArgumentTypeError(
      f"--knobs {text!r}: give NAME=v1,v2,... with NAME one of {', '.join(POLICIES)}"
    )
  try:
    knobs = tuple(float(v) for v in values.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"--knobs {text!r}: values must be numbers") from None
  if not knobs:
    raise argparse.ArgumentTypeError(f"--knobs {text!r}: give at least one value after '='")
  return name, knobs


def add_arguments(p: argparse.ArgumentParser) -> None:
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--inputs", help="saved inputs of one pair set (<out_dir>/inputs/*.npz)")
  src.add_argument("--scores", help="an `exfiqa score` .npz; needs --pairs")
  p.add_argument("--pairs", help="pair list `idA idB label score` for --scores")
  p.add_argument(
    "--checkpoint",
    help="the model's checkpoint folder: policies.json is written into it (and with --scores "
    "the exit costs are the GFLOPs of its config; else give --cost)",
  )
  add_cost(p)
  p.add_argument("--out", default="out/adaptive", help="folder of the table and figure")
  p.add_argument(
    "--policies",
    type=name_list(POLICIES, "policy", "policies"),
    default=",".join(POLICIES),
    help="comma-separated policies",
  )
  p.add_argument(
    "--stages",
    type=int_list,
    help="exits after which an image may stop, ending at the depth, e.g. 3,6,9,12 "
    "(none: every 3rd exit)",
  )
  p.add_argument(
    "--knobs",
    type=_knobs,
    action="append",
    default=[],
    help="a policy's knob values, e.g. delta=0,0.01,0.1 (repeat per policy; none: a "
    "sweep per policy from the full pass to the most aggressive)",
  )
  p.add_argument(
    "--fraction", type=fraction, default=FRACTION, help="fraction of the pairs used to calibrate"
  )
  p.add_argument("--seed", type=int, default=SEED, help="seed of the calibration split")
  add_force(p, "policies.json and the table and figure files")
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  from exfiqa_jax.adaptive.policy import POLICY_FILE, check_stages, default_stages
  from exfiqa_jax.adaptive.study import run_study
  from exfiqa_jax.cli import NEEDS_COST
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.report.adaptive import write_study

  if args.scores and not args.pairs:
    raise ValueError("--scores needs --pairs (a list of `idA idB label score`)")
  if args.pairs and not args.scores:
    raise ValueError("--pairs goes with --scores")
  if args.cost is not None and not args.scores:
    raise ValueError("--cost goes with --scores")
  if args.scores and args.checkpoint is None and args.cost is None:
    raise ValueError(NEEDS_COST)
  if args.checkpoint and not os.path.isdir(args.checkpoint):
    raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such checkpoint folder")
  source = args.inputs or args.scores
  key = os.path.splitext(os.path.basename(source))[0]
  policy_path = os.path.join(args.checkpoint or args.out, POLICY_FILE)
  base = os.path.join(args.out, f"{key}_adaptive")
  for end in ("", ".md", ".csv", ".json", "_pareto.png", "_pareto.svg"):
    path = f"{base}{end}" if end else policy_path
    check_output(path, force=args.force, option="--out" if end else "--checkpoint")
  config, z = _inputs(args)
  if config is not None and config.depth != z.depth:
    raise ValueError(
      f"--checkpoint {args.checkpoint} has depth {config.depth}, the scores have {z.depth} exits"
    )
  stages = check_stages(args.stages, z.depth) if args.stages else default_stages(z.depth)
  print(
    f"adaptive: {len(z.a)} pairs of {source}: {args.fraction:g} of them (seed {args.seed}) "
    f"calibrate the policies {', '.join(args.policies)} at stages "
    f"{','.join(map(str, stages))}, the others evaluate every knob (mean GFLOPs of the "
    f"exits run, ERC and EDC areas) against the static depth-weighted fusion",
    flush=True,
  )
  study = run_study(
    z, names=args.policies, stages=stages, fraction=args.fraction, seed=args.seed,
    knobs=dict(args.knobs),
  )  # fmt: skip
  for path in write_study(study, args.out, key, policy_path, os.path.abspath(source)):
    if path.endswith((".md", ".json")) and not path.endswith("_adaptive.json"):
      print(f"wrote {path}")
  return 0


def _inputs(args: argparse.Namespace):
  """(the checkpoint's ViTConfig or None, the PairInputs): saved inputs, or a score file
  and a pair list with the cost of the checkpoint's exits or of --cost (said on stdout)."""
  from exfiqa_jax.cli import score_file_costs
  from exfiqa_jax.metrics.inputs import PairInputs
  from exfiqa_jax.models.checkpoint import load
  from exfiqa_jax.models.config import ViTConfig

  config = load(args.checkpoint, expect=ViTConfig).config if args.checkpoint else None
  if not args.scores:
    return config, PairInputs.load(args.inputs)
  cost, said = score_file_costs(args.scores, None if args.cost else args.checkpoint, args.cost)
  print(said)
  return config, PairInputs.from_score_file(args.scores, args.pairs, cost)

"""`exfiqa evaluate`: score benchmarks, evaluate exits and fusions, write the report."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "run an evaluation job config: scores, ERC/EDC of every exit and fusion, report"


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "--config",
    required=True,
    help="a shipped job config by name (demo, lfw, paper) or a path to a .py file",
  )
  p.add_argument(
    "overrides",
    nargs="*",
    metavar="KEY=VALUE",
    help="config overrides, e.g. out_dir=out/x sweep.top_k=5",
  )
  p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
  from exfiqa_jax.evaluation.job_config import load_job
  from exfiqa_jax.evaluation.run import evaluate_job

  summary, _ = evaluate_job(load_job(args.config, args.overrides), progress=not args.quiet)
  print(f"wrote {summary}")
  return 0

"""`exfiqa evaluate`: score benchmarks, evaluate exits and fusions, write the report."""

from __future__ import annotations

import argparse

from exfiqa_jax.cli import add_force, add_quiet

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
  add_force(p, "the report in out_dir (and score caches there holding another run)")
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  import os

  from exfiqa_jax.evaluation.job_config import load_job
  from exfiqa_jax.evaluation.run import evaluate_job
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.report.summary import write_job_report

  cfg = load_job(args.config, args.overrides)
  check_output(os.path.join(cfg["out_dir"], "summary.md"), force=args.force, option="out_dir")
  job = evaluate_job(cfg, progress=not args.quiet, force=args.force)
  print_warnings(job)
  print(f"wrote {write_job_report(job, cfg)}")
  return 0


def print_warnings(job) -> None:
  """Every warning that the report states (summary.md), on stderr as well, naming the
  benchmark and FR model: `warning: <dataset>/<fr>: <line>`."""
  import sys

  for name, fr, an in job.results:
    for line in an.warnings:
      print(f"warning: {name}/{fr}: {line}", file=sys.stderr)

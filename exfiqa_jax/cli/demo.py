"""`exfiqa demo`: the whole chain on a generated benchmark, no files or network needed."""

from __future__ import annotations

import argparse
import os

from exfiqa_jax.cli import add_force, add_quiet, positive_int

NAME = "demo"
HELP = (
  "generate a benchmark and a checkpoint in the released PyTorch layout, convert, "
  "score, evaluate, sweep and write the report (configs/demo.py)"
)

HEADER = """# EX-FIQA demo report

**What this ran on:** a *generated* verification benchmark ({pairs} pairs of synthetic
112x112 images whose identities are random colour patterns, degraded by random blur
and noise) and an *untrained* model (random weights, width {width}, {depth} blocks),
written in the released PyTorch layout and converted (when torch is installed). The
numbers show that the pipeline runs end to end; they say nothing about the method. Run
`exfiqa evaluate --config paper` on real weights and benchmark files for that.
"""


# The learned weights are fitted on a seeded half of the pairs and tested on the other;
# each half needs genuine and impostor pairs (at 5 pairs one half has no impostor).
MIN_PAIRS = 20


def demo_pairs(text: str) -> int:
  """argparse type: a pair count of at least MIN_PAIRS."""
  value = positive_int(text)
  if value < MIN_PAIRS:
    raise argparse.ArgumentTypeError(
      f"the demo needs at least {MIN_PAIRS} pairs (its learned weights are fitted on half "
      f"of them and tested on the other half, each with genuine and impostor pairs), got {value}"
    )
  return value


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--out", default="out/demo", help="output folder")
  add_force(p, "an earlier demo in --out")
  p.add_argument(
    "--pairs",
    type=demo_pairs,
    default=300,
    help=f"pairs in the generated benchmark (at least {MIN_PAIRS}: half of them alternate "
    "genuine/impostor for fitting the learned weights, the other half for testing them)",
  )
  add_quiet(p)


def run(args: argparse.Namespace) -> int:
  from exfiqa_jax import ViTConfig
  from exfiqa_jax.configs import config_path, load_config_file
  from exfiqa_jax.convert.demo import write_demo_assessors, write_demo_checkpoint
  from exfiqa_jax.data.synthetic import make_verification_bin
  from exfiqa_jax.evaluation.job_config import check_job
  from exfiqa_jax.evaluation.run import evaluate_job, inputs_path
  from exfiqa_jax.evaluation.saved_sweep import weight_study
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.metrics.inputs import PairInputs
  from exfiqa_jax.report.summary import write_job_report
  from exfiqa_jax.report.sweep import write_sweep

  check_output(os.path.join(args.out, "summary.md"), force=args.force, option="--out")
  demo = config_path("demo")
  cfg = load_config_file(demo)
  files = os.path.join(args.out, "files")
  cfg.update(
    checkpoint=os.path.join(args.out, "checkpoint"),
    out_dir=args.out,
    data_dir=os.path.join(args.out, "tfds"),
  )
  cfg["datasets"]["demo"]["files"] = files
  print(f"1/4 generating {args.pairs} pairs in {files}/demo.bin")
  make_verification_bin(os.path.join(files, "demo.bin"), num_pairs=args.pairs)
  model_cfg = ViTConfig.from_dict(cfg["model"])
  print("2/4 " + write_demo_checkpoint(model_cfg, files, cfg["checkpoint"]))
  print("    " + write_demo_assessors(cfg, args.out))
  print("3/4 scoring and evaluating")
  check_job(cfg, demo)
  job = evaluate_job(cfg, progress=not args.quiet, force=args.force)
  header = HEADER.format(pairs=args.pairs, width=model_cfg.width, depth=model_cfg.depth)
  summary = write_job_report(job, cfg, header)
  print("4/4 sweeping weights")
  z = PairInputs.load(inputs_path(args.out, "demo", "self"))
  study = weight_study(z, cfg, job.results[0][2], progress=not args.quiet)
  sweep = write_sweep(study, os.path.join(args.out, "sweep"), "demo_self", fr="self")
  report = os.path.join(os.path.dirname(summary), "report.html")
  print(f"wrote {summary}\nwrote {report} (the whole report: open it in a browser)\nwrote {sweep}")
  return 0

"""`exfiqa sweep`: every exit subset x rule x normalisation, weight sweeps, learned
weights and the Pareto front, on saved scores.

KEY=VALUE overrides set the metric, sweep and weight options
(`exfiqa_jax.evaluation.options`: the same defaults and checks as a job's), with
--config on top of the job config, with --scores / --inputs on top of the
defaults; an unknown key or a bad value is an error, never ignored.
"""

from __future__ import annotations

import argparse
import os
import re

from exfiqa_jax.cli import (
  add_cost,
  add_force,
  add_quiet,
  initialize_distributed,
  keep_freed_memory,
)

NAME = "sweep"
QUICK_EXIT = True  # after a success, no interpreter teardown (cli.entry): nothing is left
HELP = "fusion sweep on saved scores: subsets, weights, learned weights, Pareto front"
SECTIONS = ("metrics", "sweep", "weights")  # the options a sweep of saved inputs reads
OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.\w+)+=")  # section.key=value


def split_overrides(args: argparse.Namespace) -> None:
  """Moves the KEY=VALUE overrides that `--inputs F ...` took in (argparse cannot tell
  them from files) to the overrides: an item of the form `section.key=value` that is
  not an existing file is an override."""
  if args.inputs:
    moved = [x for x in args.inputs if OVERRIDE.match(x) and not os.path.exists(x)]
    args.inputs = [x for x in args.inputs if x not in moved]
    args.overrides = [*moved, *args.overrides]
    if not args.inputs:
      raise ValueError("--inputs needs at least one saved inputs file before KEY=VALUE options")


def add_arguments(p: argparse.ArgumentParser) -> None:
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--config", help="a job config: sweep the inputs `exfiqa evaluate` saved")
  src.add_argument("--inputs", nargs="+", help="saved inputs files (<out_dir>/inputs/*.npz)")
  src.add_argument("--scores", help="an `exfiqa score` .npz; needs --pairs")
  p.add_argument("--pairs", help="pair list `idA idB label score` for --scores")
  p.add_argument(
    "--depth-cost",
    action="store_true",
    help="with --scores: cost = exit number (else --checkpoint or --cost)",
  )
  p.add_argument(
    "--checkpoint",
    help="with --scores: the checkpoint folder of the model that scored them; the exit "
    "costs are the GFLOPs of its config",
  )
  add_cost(p)
  p.add_argument("--out", help="output folder (default <out_dir>/sweep or out/sweep)")
  add_force(p, "sweep files of the same name in --out")
  add_quiet(p)
  p.add_argument(
    "--workers",
    type=int,
    metavar="N",
    help="worker processes beside this one on the CPU backend (the subset sweep's areas "
    "and the figures; default one per core but one, at most 7; 0: threads only)",
  )
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


def sweep_config(overrides: list[str]) -> dict:
  """The defaults of SECTIONS with `section.key=value` overrides applied and checked;
  `metrics` holds only the metric keys overridden: each other metric setting is the one
  saved with the inputs (else the default; `PairInputs.metric_options`)."""
  from exfiqa_jax.configs import apply_overrides
  from exfiqa_jax.evaluation.options import check_options, defaults

  cfg = apply_overrides(defaults(*SECTIONS), list(overrides))
  check_options(cfg, "KEY=VALUE", SECTIONS)
  given = {o.partition("=")[0].removeprefix("metrics.") for o in overrides}
  cfg["metrics"] = {k: v for k, v in cfg["metrics"].items() if k in given}
  return cfg


def before_jax(args: argparse.Namespace) -> None:
  """Forks the CPU sweep's worker processes (`exfiqa_jax.fusion.workers`: the subset
  areas and the figures), before this process imports JAX; not for --distributed (each
  host's own devices), nor where an accelerator is the backend."""
  if args.workers is not None and args.workers < 0:
    raise ValueError(f"--workers {args.workers}: give 0 or more")
  if args.workers and args.distributed:
    raise ValueError("--workers goes without --distributed (each host sweeps on its devices)")
  keep_freed_memory()  # the workers' many-variant temporaries stay mapped too
  if not args.distributed and args.workers != 0:
    from exfiqa_jax.fusion import workers

    workers.start(args.workers, preload=("exfiqa_jax.report.plots:pyplot",))


def run(args: argparse.Namespace) -> int:
  import jax

  from exfiqa_jax.cli import NEEDS_COST, score_file_costs
  from exfiqa_jax.evaluation.job_config import load_job
  from exfiqa_jax.evaluation.saved_sweep import analyse_inputs, weight_study
  from exfiqa_jax.fileio import check_output
  from exfiqa_jax.metrics.inputs import PairInputs
  from exfiqa_jax.report.sweep import overview_figures, write_sweep
  from exfiqa_jax.report.unit import write_unit

  split_overrides(args)
  cfg = (
    load_job(args.config, args.overrides, saved_inputs=True)
    if args.config
    else sweep_config(args.overrides)
  )
  costs = (args.checkpoint, args.cost, args.depth_cost)
  if not args.scores and any(c not in (None, False) for c in costs):
    raise ValueError("--checkpoint, --cost and --depth-cost go with --scores")
  if args.scores and not args.pairs:
    raise ValueError("--scores needs --pairs (a list of `idA idB label score`)")
  if args.scores and not any(c not in (None, False) for c in costs):
    raise ValueError(NEEDS_COST + " or --depth-cost (the exit number)")
  if args.distributed:
    initialize_distributed()
  if args.scores:
    cost, said = score_file_costs(args.scores, *costs)
    print(said)
    work = {_stem(args.scores): PairInputs.from_score_file(args.scores, args.pairs, cost)}
  else:
    from exfiqa_jax.evaluation.run import inputs_path  # the scoring stack: only here

    paths = args.inputs or [
      inputs_path(cfg["out_dir"], d, f) for d in cfg["datasets"] for f in cfg["fr_models"]
    ]
    check_names(paths)
    work = {_stem(p): PairInputs.load(p) for p in paths}
  # the FR model of each pair set where the config tells it (figures name it)
  frs = {
    _stem(inputs_path("", d, f)): f
    for d in (cfg.get("datasets") or {})
    for f in (cfg.get("fr_models") or ())
  }
  out = args.out or os.path.join(cfg.get("out_dir", "out"), "sweep")
  writer = jax.process_index() == 0  # every host computes its share, host 0 writes
  for key in work if writer else ():
    check_output(os.path.join(out, f"{key}.md"), force=args.force, option="--out")
  for key, z in work.items():
    # the figures need only the subset sweep: drawn on the workers (if any) from there on
    started = []

    def draw(view, key=key):
      started[:] = overview_figures(view, key, frs.get(key))

    bar = not args.quiet and f"sweep {key}"  # names the bar
    an = analyse_inputs(z, cfg, progress=bar, overview=draw if writer else None)
    figures = started or None
    study = weight_study(z, cfg, an)
    if writer:  # the page and its files as one unit (report/unit.py), the page last
      page = write_unit(
        out,
        f"sweep-{key}",
        lambda f, s=study, k=key, g=figures: write_sweep(s, f, k, frs.get(k), g),
        sweep_head(key),
      )
      print(f"wrote {os.path.splitext(page)[0]}.md")
  return 0


def sweep_head(key: str) -> tuple[str, str]:
  """A sweep page's head files, moved in last (the .md the very last)."""
  return (f"{key}.html", f"{key}.md")


def check_names(paths: list[str]) -> None:
  """Refuses (one line) two inputs files of one base name: their pages and tables would
  be the same files, so one sweep would be lost; the same file twice is refused too."""
  seen: dict[str, str] = {}
  for p in paths:
    if _stem(p) in seen:
      raise ValueError(
        f"--inputs {seen[_stem(p)]} and {p} share the name {_stem(p)!r} (the name of their "
        "sweep files): give each its own name, or sweep them with separate --out folders"
      )
    seen[_stem(p)] = p


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]

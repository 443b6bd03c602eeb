"""Runs an evaluation job: build or load each dataset, score it (cached; ViT-FIQA and
every FR checkpoint in one pass over the images), evaluate every FR model's pairs.

`evaluate_job` computes and returns the results (`JobResults`); it writes the score
caches and each pair set's inputs (`<out_dir>/inputs/<dataset>_<fr>.npz`, a
`PairInputs` file, what `exfiqa sweep` and `exfiqa adaptive` read back), never the
report: `exfiqa_jax.report.summary.write_job_report` writes that.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from exfiqa_jax import data
from exfiqa_jax.evaluation.analysis import Analysis
from exfiqa_jax.evaluation.comparison import load_embeddings
from exfiqa_jax.evaluation.inputs import assessor_qualities, fr_embeddings, pair_inputs
from exfiqa_jax.evaluation.job_config import (
  embeddings_path,
  fr_checkpoints,
  fr_specs,
  quality_specs,
)
from exfiqa_jax.evaluation.options import check_select, check_sweep_size, options
from exfiqa_jax.evaluation.saved_sweep import analyse_inputs
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.models.checkpoint import load, load_config
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.registry import KINDS
from exfiqa_jax.scoring.assessors import METHODS, QualityModel, method_of, resolve
from exfiqa_jax.scoring.score import FRModel, check_input_size, score

__all__ = ["JobResults", "analyse_inputs", "evaluate_job", "inputs_path"]


@dataclasses.dataclass
class JobResults:
  """What a job computed: one Analysis per (dataset, FR model), and the facts the
  report's header states about the model."""

  checkpoint: str
  depth: int
  width: int
  results: list[tuple[str, str, Analysis]]  # (dataset, FR model, its analysis)


def open_dataset(name: str, ds: dict, data_dir: str, progress: bool | str = False) -> data.Dataset:
  """The built dataset, built from its files on first use and again when they changed."""
  full = data.build(
    ds["builder"],
    name,
    ds["files"],
    data_dir,
    ds.get("channel_order"),
    ds.get("image_root"),
    progress=progress,
  )
  return data.load(full, data_dir)


def fed_orders(images, fr_models: list, quality_order: str = "rgb") -> tuple[Any, list]:
  """(images, fr_models) to score so that ViT-FIQA is fed `quality_order` ("rgb": the
  true-RGB image, as its evaluation code feeds the extracted files by default; "bgr":
  swapped, as its `--color_channel RGB` would) and every FR network what its entry says.
  ViT-FIQA takes the images' stored order to RGB, so "bgr" hands scoring the other
  stored order and swaps each FR model's order with it: the FR inputs are unchanged."""
  if quality_order == "rgb":
    return images, fr_models
  swap = {"rgb": "bgr", "bgr": "rgb"}
  images = dataclasses.replace(images, channel_order=swap[images.channel_order])
  return images, [dataclasses.replace(m, channel_order=swap[m.model_order]) for m in fr_models]


def inputs_path(out_dir: str, dataset: str, fr: str) -> str:
  return os.path.join(out_dir, "inputs", f"{dataset}_{fr}.npz")


def quality_models(cfg: dict[str, Any]) -> tuple[list[QualityModel], dict[str, str]]:
  """The job's assessors (`quality_methods`, checked): those run on a network in the
  scoring pass, and {name: FR model} of those computed from a job FR model's embeddings
  (MagFace on an fr_model). A network's channel order: the spec's, else its release evaluation's
  (`METHODS`), else, on a job FR model, that model's entry's, else its family's."""
  models, from_embeddings, fr = [], {}, fr_specs(cfg)
  for name, spec in quality_specs(cfg).items():
    method = METHODS[method_of(name, spec)]
    entry = fr.get(spec.get("fr_model"), {})
    folder = spec.get("checkpoint") or entry["checkpoint"]
    check_network(name, method, load_config(folder), folder)
    if method.from_embeddings is not None and "fr_model" in spec:
      from_embeddings[name] = spec["fr_model"]  # no second pass: the pass's embeddings
      continue
    c = load(folder, expect=KINDS[method.kind].config_type)
    order = spec.get("channel_order") or (
      entry.get("channel_order") if method.channel_order is None else None
    )
    settings = tuple(sorted(resolve(method, spec).items()))
    models.append(QualityModel(name, method.name, c.config, c[1:], settings, order))
  return models, from_embeddings


def check_network(name: str, method, config, folder: str) -> None:
  """An assessor's network against what its method needs (its kind; MagFace: a MagFace
  backbone): a one-line ValueError naming the job key and the checkpoint."""
  got = (getattr(config, "kind", None), getattr(config, "family", None))
  if got[0] != method.kind or method.family not in (None, got[1]):
    family = f" of family {method.family!r}" if method.family else ""
    want = KINDS[method.kind].what + family
    raise ValueError(
      f"quality_methods.{name} ({method.name}) needs {want}; {folder} holds "
      f"{KINDS[got[0]].what} of family {got[1]!r}"
    )


def adaptive_study(
  z: PairInputs, cfg: dict[str, Any], select: str | None = None, warnings: list | None = None
):
  """The adaptive early-exit study of inputs `z` when the job has an `adaptive`
  section (exfiqa_jax.adaptive.study.run_study), else None; `select`: the metric
  that ranks (a job passes its analysis's, so both sections rank alike).

  warnings: the pair set's warnings (its summary.md section): a study the pairs
  cannot support (e.g. pairs sharing images leave no disjoint evaluation split) is
  skipped with a warning there, naming why, instead of failing the whole job; without
  `warnings` it raises."""
  if not cfg.get("adaptive"):
    return None
  try:
    return _adaptive_study(z, cfg, select)
  except ValueError as e:
    if warnings is None:
      raise
    warnings.append(f"adaptive early exit skipped (job option `adaptive`): {e}")
    return None


def _adaptive_study(z: PairInputs, cfg: dict[str, Any], select: str | None):
  from exfiqa_jax.adaptive.policy import check_stages, default_stages
  from exfiqa_jax.adaptive.study import run_study

  opts, stages = options(cfg, "adaptive"), cfg["adaptive"].get("stages")
  return run_study(
    z,
    names=tuple(opts["policies"]),
    stages=check_stages(stages, z.depth) if stages else default_stages(z.depth),
    fraction=float(opts["fraction"]),
    seed=int(opts["seed"]),
    knobs=opts["knobs"],
    metrics=z.metric_options(cfg.get("metrics")),
    rules=options(cfg, "sweep")["rules"],
    select=select,
    fraction_option="the job option adaptive.fraction",
  )


def check_adaptive(cfg: dict[str, Any], depth: int) -> None:
  """The job's `adaptive` stages and knobs against the model's depth and each
  policy's range, before any scoring (one-line ValueError)."""
  opts = cfg.get("adaptive")
  if not opts:
    return
  from exfiqa_jax.adaptive.calibrate import check_knob
  from exfiqa_jax.adaptive.policy import check_stages

  if opts.get("stages"):
    check_stages(opts["stages"], depth)
  for name, values in (opts.get("knobs") or {}).items():
    for knob in values:
      check_knob(name, knob)


def evaluate_job(cfg: dict[str, Any], progress: bool = True, force: bool = False) -> JobResults:
  """Runs the whole job of a checked config -> its results (the report is not written).

  force: a score cache in out_dir holding another run is replaced, not refused.
  """
  ckpt = load(cfg["checkpoint"], expect=ViTConfig)
  check_adaptive(cfg, ckpt.config.depth)
  check_sweep_size(cfg, ckpt.config.depth, "the job")  # before any scoring
  check_select(cfg, "the job")
  cost = np.asarray(exit_gflops(ckpt.config))
  out, scoring = cfg["out_dir"], options(cfg, "scoring")
  fr_models = []
  for fr, spec in fr_checkpoints(cfg).items():
    c = load(spec["checkpoint"], expect=FRConfig)
    flip = spec["flip"] != "none"
    fr_models.append(FRModel(fr, c.config, c[1:], flip, spec["channel_order"]))
  assessors, from_embeddings = quality_models(cfg)
  check_input_size([*fr_models, *assessors])  # before any dataset is built or scored
  results = []
  for name, ds in cfg["datasets"].items():
    dataset = open_dataset(name, ds, cfg["data_dir"], progress and f"building {name}")
    if dataset.pairs is None:
      raise ValueError(f"dataset {dataset.name!r} has no pairs to evaluate")
    images, fed = fed_orders(dataset.images, fr_models + assessors, scoring["channel_order"])
    scores = score(  # one pass over the images for every model and assessor
      ckpt[1:],
      images,
      os.path.join(out, "scores", name),
      fr_models=fed[: len(fr_models)],
      quality_models=fed[len(fr_models) :],
      batch_size=scoring["batch_size"],
      dtype=jnp.dtype(scoring["dtype"]),
      progress=progress and f"scoring {name} (ViT-FIQA" + "".join(f", {m.name}" for m in fed) + ")",
      replace=force,
    )
    for fr, spec in fr_specs(cfg).items():
      if spec["kind"] == "checkpoint":
        emb = fr_embeddings(scores, fr, spec["flip"])
      elif spec["kind"] == "embeddings":
        emb = load_embeddings(embeddings_path(cfg, fr, name), scores.ids)
      else:
        emb = scores.embeddings
      metrics = options(cfg, "metrics")
      x = pair_inputs(
        dataset, scores, emb, metrics["template_quality"], bool(ds.get("detector_weights", False))
      )
      z = x.pair_inputs(cost, metrics)
      z.save(inputs_path(out, name, fr))
      qualities = assessor_qualities(
        dataset, scores, from_embeddings, metrics["template_quality"], list(quality_specs(cfg))
      )
      an = analyse_inputs(z, cfg, progress and f"sweep {name}/{fr}", qualities)
      an.adaptive = adaptive_study(z, cfg, an.select, an.warnings)
      results.append((name, fr, an))
  return JobResults(cfg["checkpoint"], ckpt.config.depth, ckpt.config.width, results)

"""Runs an evaluation job: build or load each dataset, score it (cached; ViT-FIQA and
every FR checkpoint in one pass over the images), evaluate every FR model's pairs,
write the report. Also what `exfiqa sweep` reads back."""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from exfiqa_jax import data
from exfiqa_jax.evaluation.analysis import Analysis, analyse, resolve_metrics
from exfiqa_jax.evaluation.comparison import load_embeddings
from exfiqa_jax.evaluation.inputs import fr_embeddings, pair_inputs
from exfiqa_jax.evaluation.job_config import embeddings_path, fr_checkpoints, fr_specs
from exfiqa_jax.evaluation.pairs_file import INPUT_KEYS, METRIC_KEYS, read_inputs
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.report.summary import write_report
from exfiqa_jax.scoring.run_folder import save_npz
from exfiqa_jax.scoring.score import FRModel, score

__all__ = ["INPUT_KEYS", "analyse_inputs", "evaluate_job", "inputs_path", "read_inputs"]


def open_dataset(name: str, ds: dict, data_dir: str, progress: bool = False) -> data.Dataset:
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


def metrics_arrays(metrics: dict[str, Any]) -> dict[str, np.ndarray]:
  """A job's metric settings as arrays to save beside the inputs."""
  m = resolve_metrics(metrics)
  return {name: np.asarray(m[k], np.float64) for k, name in METRIC_KEYS.items()}


def saved_metrics(z: dict[str, np.ndarray]) -> dict[str, Any] | None:
  """The metric settings saved with inputs `z` (None for inputs saved without them)."""
  if not all(name in z for name in METRIC_KEYS.values()):
    return None
  out = {k: tuple(float(x) for x in np.ravel(z[name])) for k, name in METRIC_KEYS.items()}
  out["edc_fmr"] = out["edc_fmr"][0]
  return out


def input_metrics(z: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
  """The metric settings for inputs `z`: the config's, else those saved with z."""
  return resolve_metrics(cfg.get("metrics"), saved_metrics(z))


def analyse_inputs(
  z: dict[str, np.ndarray], cfg: dict[str, Any], progress: bool = False
) -> Analysis:
  return analyse(
    *(z[k] for k in INPUT_KEYS),
    cost=z["cost"],
    progress=progress,
    exits=cfg.get("report", {}).get("exits", ()),
    **input_metrics(z, cfg),
    **cfg.get("sweep", {}),
  )


def adaptive_study(z: dict[str, np.ndarray], cfg: dict[str, Any], select: str | None = None):
  """The adaptive early-exit study of inputs `z` when the job has an `adaptive`
  section (exfiqa_jax.adaptive.study.run_study), else None; `select`: the metric
  that ranks (a job passes its analysis's, so both sections rank alike)."""
  opts = cfg.get("adaptive")
  if not opts:
    return None
  from exfiqa_jax.adaptive.policy import POLICIES, check_stages, default_stages
  from exfiqa_jax.adaptive.study import run_study

  depth = z["exit_scores"].shape[1]
  stages = opts.get("stages")
  return run_study(
    z,
    names=tuple(opts.get("policies", POLICIES)),
    stages=check_stages(stages, depth) if stages else default_stages(depth),
    fraction=float(opts.get("fraction", 0.5)),
    seed=int(opts.get("seed", 0)),
    knobs=opts.get("knobs"),
    metrics=input_metrics(z, cfg),
    rules=cfg.get("sweep", {}).get("rules", ("mean", "weighted", "median", "min", "max")),
    select=select,
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


def evaluate_job(
  cfg: dict[str, Any], header: str = "", progress: bool = True, force: bool = False
) -> tuple[str, list[tuple[str, str, Analysis]]]:
  """Runs the whole job of a checked config -> (path of summary.md, the analyses).

  force: a score cache in out_dir holding another run is replaced, not refused.
  """
  ckpt = load(cfg["checkpoint"], expect=ViTConfig)
  check_adaptive(cfg, ckpt.config.depth)
  cost = np.asarray(exit_gflops(ckpt.config))
  out, scoring = cfg["out_dir"], cfg.get("scoring", {})
  fr_models = []
  for fr, spec in fr_checkpoints(cfg).items():
    c = load(spec["checkpoint"], expect=FRConfig)
    flip = spec["flip"] != "none"
    fr_models.append(FRModel(fr, c.config, c[1:], flip, spec["channel_order"]))
  results = []
  for name, ds in cfg["datasets"].items():
    dataset = open_dataset(name, ds, cfg["data_dir"], progress)
    if dataset.pairs is None:
      raise ValueError(f"dataset {dataset.name!r} has no pairs to evaluate")
    images, fed = fed_orders(dataset.images, fr_models, scoring.get("channel_order", "rgb"))
    scores = score(  # one pass over the images for every model
      ckpt[1:],
      images,
      os.path.join(out, "scores", name),
      fr_models=fed,
      batch_size=scoring.get("batch_size", 32),
      dtype=jnp.dtype(scoring.get("dtype", "float32")),
      progress=progress,
      replace=force,
    )
    for fr, spec in fr_specs(cfg).items():
      if spec["kind"] == "checkpoint":
        emb = fr_embeddings(scores, fr, spec["flip"])
      elif spec["kind"] == "embeddings":
        emb = load_embeddings(embeddings_path(cfg, fr, name), scores.ids)
      else:
        emb = scores.embeddings
      x = pair_inputs(
        dataset,
        scores,
        emb,
        cfg.get("metrics", {}).get("template_quality", "min"),
        bool(ds.get("detector_weights", False)),
      )
      z = dict(
        ids=x.ids,
        exit_scores=x.exit_scores,
        a=x.a,
        b=x.b,
        labels=x.labels,
        comparison=x.comparison,
        cost=cost,
        **metrics_arrays(cfg.get("metrics", {})),
      )
      save_npz(inputs_path(out, name, fr), z)
      an = analyse_inputs(z, cfg, progress)
      an.adaptive = adaptive_study(z, cfg, an.select)
      results.append((name, fr, an))
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  head = header or "# EX-FIQA evaluation"
  head += (
    f"\n\nCheckpoint `{cfg['checkpoint']}` ({ckpt.config.depth} blocks, width "
    f"{ckpt.config.width}); {len(cfg['datasets'])} dataset(s) x "
    f"{len(cfg['fr_models'])} FR model(s); written {when}. Areas: lower is better.\n"
  )
  return write_report(out, head, results, cfg), results

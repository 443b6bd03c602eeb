"""Runs an evaluation job: build or load each dataset, score it (cached), evaluate
every FR model's pairs, write the report. Also what `exfiqa sweep` reads back."""

from __future__ import annotations

import datetime
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from exfiqa_jax import data
from exfiqa_jax.evaluation.analysis import Analysis, analyse
from exfiqa_jax.evaluation.inputs import benchmark_inputs
from exfiqa_jax.evaluation.job_config import embeddings_path
from exfiqa_jax.evaluation.pairs_file import INPUT_KEYS, read_inputs
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.flops import exit_gflops
from exfiqa_jax.report.summary import write_report
from exfiqa_jax.scoring.run_folder import save_npz

__all__ = ["INPUT_KEYS", "analyse_inputs", "evaluate_job", "inputs_path", "read_inputs"]


def open_dataset(name: str, ds: dict, data_dir: str, progress: bool = False) -> data.Dataset:
  """The built dataset, built from its files on first use and again when they changed."""
  full = data.build(
    ds["builder"], name, ds["files"], data_dir, ds.get("channel_order"), progress=progress
  )
  return data.load(full, data_dir)


def inputs_path(out_dir: str, dataset: str, fr: str) -> str:
  return os.path.join(out_dir, "inputs", f"{dataset}_{fr}.npz")


def analyse_inputs(
  z: dict[str, np.ndarray], cfg: dict[str, Any], progress: bool = False
) -> Analysis:
  return analyse(
    *(z[k] for k in INPUT_KEYS),
    cost=z["cost"],
    progress=progress,
    **cfg.get("metrics", {}),
    **cfg.get("sweep", {}),
  )


def evaluate_job(
  cfg: dict[str, Any], header: str = "", progress: bool = True, force: bool = False
) -> tuple[str, list[tuple[str, str, Analysis]]]:
  """Runs the whole job of a checked config -> (path of summary.md, the analyses).

  force: a score cache in out_dir holding another run is replaced, not refused.
  """
  ckpt = load(cfg["checkpoint"])
  cost = np.asarray(exit_gflops(ckpt.config))
  out, scoring = cfg["out_dir"], cfg.get("scoring", {})
  results = []
  for name, ds in cfg["datasets"].items():
    dataset = open_dataset(name, ds, cfg["data_dir"], progress)
    for fr in cfg["fr_models"]:
      x = benchmark_inputs(
        dataset,
        ckpt[1:],
        os.path.join(out, "scores", name),
        fr_embeddings=embeddings_path(cfg, fr, name),
        batch_size=scoring.get("batch_size", 32),
        dtype=jnp.dtype(scoring.get("dtype", "float32")),
        progress=progress,
        replace=force,
      )
      z = dict(
        ids=x.ids,
        exit_scores=x.exit_scores,
        a=x.a,
        b=x.b,
        labels=x.labels,
        comparison=x.comparison,
        cost=cost,
      )
      save_npz(inputs_path(out, name, fr), z)
      results.append((name, fr, analyse_inputs(z, cfg, progress)))
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  head = header or "# EX-FIQA evaluation"
  head += (
    f"\n\nCheckpoint `{cfg['checkpoint']}` ({ckpt.config.depth} blocks, width "
    f"{ckpt.config.width}); {len(cfg['datasets'])} dataset(s) x "
    f"{len(cfg['fr_models'])} FR model(s); written {when}. Areas: lower is better.\n"
  )
  return write_report(out, head, results, cfg), results

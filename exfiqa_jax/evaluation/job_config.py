"""Evaluation job configs: `get_config()` files, checked before any work.

A job config is a dict (see exfiqa_jax/configs/paper.py for every key):
  checkpoint   a checkpoint folder written by `exfiqa convert`
  out_dir, data_dir   where reports/caches and the built datasets go
  datasets     {name: {builder, files[, channel_order]}} (builders: exfiqa_jax.data.BUILDERS)
  fr_models    names whose comparison scores to evaluate; "self" is the model's own
               embedding head, any other name needs an entry in `embeddings`
  embeddings   {FR model: root} holding `<root>/<dataset>_<FRModel>/<stem>.npy`, or a
               path with "{dataset}" naming one aligned .npy matrix per dataset
  scoring, metrics, sweep   options of scoring, ERC/EDC and the fusion sweep
  report       exits: exits to plot besides the last one and the fusions
"""

from __future__ import annotations

import os
from typing import Any

from exfiqa_jax.configs import apply_overrides, load_config_file

SELF = "self"
_FILES = {
  "verification_bin": lambda name, files: os.path.join(files, f"{name}.bin"),
  "cr_fiqa_folder": lambda name, files: os.path.join(files, "pair_list.txt"),
  "ijbc_1to1": lambda name, files: files,
}


def load_job(path: str, overrides: list[str] = ()) -> dict[str, Any]:
  """Runs the config file, applies `key.sub=value` overrides, checks it."""
  cfg = apply_overrides(load_config_file(path), list(overrides))
  check_job(cfg, path)
  return cfg


def embeddings_path(cfg: dict, fr_model: str, dataset: str) -> str | None:
  """Where FR model embeddings of `dataset` live; None for the model's own head."""
  if fr_model == SELF:
    return None
  root = cfg["embeddings"][fr_model]
  return (
    root.format(dataset=dataset)
    if "{dataset}" in root
    else os.path.join(root, f"{dataset}_{fr_model}")
  )


def check_job(cfg: dict, path: str) -> None:
  """Raises naming the config key or file: missing keys or files, unknown names."""
  for key in ("checkpoint", "out_dir", "data_dir", "datasets", "fr_models"):
    if key not in cfg:
      raise KeyError(f"{path}: config has no {key!r}")
  if not os.path.isdir(cfg["checkpoint"]):
    raise FileNotFoundError(
      f"{path}: checkpoint {cfg['checkpoint']} does not exist (write one with `exfiqa convert`)"
    )
  for name, ds in cfg["datasets"].items():
    builder = ds.get("builder")
    if builder not in _FILES:
      raise KeyError(
        f"{path}: datasets.{name}.builder {builder!r} is not one of "
        f"{sorted(_FILES)} (a plain image folder has no pairs to evaluate)"
      )
    needed = _FILES[builder](name, ds.get("files", ""))
    if not os.path.exists(needed):
      raise FileNotFoundError(f"{path}: datasets.{name} needs {needed}, which does not exist")
  known = {SELF, *cfg.get("embeddings", {})}
  for fr in cfg["fr_models"]:
    if fr not in known:
      raise KeyError(
        f"{path}: unknown FR model {fr!r} in fr_models; known: {sorted(known)} "
        "(add its embedding folder under `embeddings`)"
      )
    for name in cfg["datasets"]:
      emb = embeddings_path(cfg, fr, name)
      if emb is not None and not os.path.exists(emb):
        raise FileNotFoundError(f"{path}: embeddings of {fr} for {name}: {emb} does not exist")

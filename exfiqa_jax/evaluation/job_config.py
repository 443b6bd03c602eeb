"""Evaluation job configs: `get_config()` files, checked before any work.

A job config is a dict (see configs/paper.py for every key):
  checkpoint   a checkpoint folder written by `exfiqa convert`
  out_dir, data_dir   where reports/caches and the built datasets go
  datasets     {name: {builder, files[, channel_order][, image_root][, detector_weights]}}
               (builders: exfiqa_jax.data.BUILDERS); image_root: where a cr_fiqa_folder's
               listed paths start; detector_weights: IJB-C template embeddings weight each
               image by its detector score (raw release only; default False, as CR-FIQA)
  fr_models    the FR models whose comparison scores to evaluate: a list of names, where
               "self" is the model's own embedding head and any other name needs an
               entry in `embeddings`; or a dict {name: spec}, a spec being "self",
               {"embeddings": root} (as in `embeddings`), or {"checkpoint": folder
               written by `exfiqa convert --family ...`, "flip": "none" | "concat" |
               "sum", "channel_order": "rgb" | "bgr" (the order fed to the network;
               default: its release's)}. Checkpoints run in the scoring pass itself.
  embeddings   {FR model: root} holding `<root>/<dataset>_<FRModel>/<stem>.npy`, or a
               path with "{dataset}" naming one aligned .npy matrix per dataset
  scoring, metrics, sweep, weights   options of scoring (scoring.channel_order: what
               ViT-FIQA is fed, default "rgb"), ERC/EDC (metrics.template_quality: "min"
               or "mean"), the fusion sweep and the weight study
               (exfiqa_jax.evaluation.options: defaults, checks)
  quality_methods  optional: the field's assessors evaluated beside the exits, {name:
               {"checkpoint": folder} or {"fr_model": an FR checkpoint of fr_models},
               "method" (default: the name up to a "(", e.g. "CR-FIQA(L)"), "channel_order",
               and the method's options (exfiqa_jax.scoring.assessors.METHODS): CR-FIQA
               (a `convert --family cr-fiqa` checkpoint), MagFace (its embedding norm:
               free on an fr_model), SER-FIQ (passes, p, seed), GraFIQs (variant)
  adaptive     optional: policies, stages, fraction, seed, knobs of the adaptive
               early-exit study run on every pair set (docs/protocol.md §10)
  report       exits: exits to plot besides the last one and the fusions
  model        the demo's generated model (configs/demo.py)
Any other top-level key is refused (a typo such as `adaptiv`), naming the closest one.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from exfiqa_jax.configs import apply_overrides, load_config_file
from exfiqa_jax.evaluation.options import check_options

SELF = "self"
# Flip rules for FR checkpoints: the embedding alone; the two L2-normalised embeddings of
# the image and its mirror side by side (CR-FIQA's extraction); their raw sum
# (CurricularFace's evaluation).
FLIP_RULES = ("none", "concat", "sum")
SPEC_KEYS = {"checkpoint": ("checkpoint", "flip", "channel_order"), "embeddings": ("embeddings",)}
# Every top-level key a job config may have ("model": the demo's generated model).
JOB_KEYS = (
  "checkpoint",
  "out_dir",
  "data_dir",
  "datasets",
  "fr_models",
  "embeddings",
  "scoring",
  "metrics",
  "sweep",
  "weights",
  "adaptive",
  "report",
  "model",
  "quality_methods",
)
_FILES = {
  "verification_bin": lambda name, files: os.path.join(files, f"{name}.bin"),
  "cr_fiqa_folder": lambda name, files: os.path.join(files, "pair_list.txt"),
  "ijbc_1to1": lambda name, files: files,
}


def load_job(path: str, overrides: list[str] = (), saved_inputs: bool = False) -> dict[str, Any]:
  """Runs the config file, applies `key.sub=value` overrides, checks it; with
  `saved_inputs` (a sweep of what `exfiqa evaluate` saved) the checkpoints and raw files
  are not needed, only `<out_dir>/inputs/<dataset>_<FR model>.npz` (all missing named)."""
  cfg = apply_overrides(load_config_file(path), list(overrides))
  if not saved_inputs:
    check_job(cfg, path)
    return cfg
  check_job_keys(cfg, path)
  check_options(cfg, path)
  missing = [
    p
    for d in cfg.get("datasets", {})
    for f in cfg.get("fr_models", ())
    if not os.path.isfile(p := os.path.join(cfg.get("out_dir", ""), "inputs", f"{d}_{f}.npz"))
  ]
  if missing:
    raise FileNotFoundError(
      f"{path}: saved inputs missing (run `exfiqa evaluate --config {path}` first): "
      + ", ".join(missing)
    )
  return cfg


def fr_specs(cfg: dict) -> dict[str, dict]:
  """The job's FR models as {name: {"kind": "self" | "embeddings" | "checkpoint", ...}}:
  checkpoints with "checkpoint", "flip" (default "none"), "channel_order" (default None)."""
  fr = cfg["fr_models"]
  items = fr.items() if isinstance(fr, dict) else [(name, None) for name in fr]
  out = {}
  for name, spec in items:
    if spec == SELF or (spec is None and name == SELF):
      out[name] = {"kind": SELF}
    elif spec is None:
      out[name] = {"kind": "embeddings", "embeddings": cfg.get("embeddings", {}).get(name)}
    elif isinstance(spec, dict) and "checkpoint" in spec:
      out[name] = {"kind": "checkpoint", "flip": "none", "channel_order": None, **spec}
    elif isinstance(spec, dict) and "embeddings" in spec:
      out[name] = {"kind": "embeddings", **spec}
    else:
      out[name] = {"kind": None, "spec": spec}
  return out


def fr_checkpoints(cfg: dict) -> dict[str, dict]:
  """The FR models of the job that run from a converted checkpoint."""
  return {k: v for k, v in fr_specs(cfg).items() if v["kind"] == "checkpoint"}


def embeddings_path(cfg: dict, fr_model: str, dataset: str) -> str | None:
  """Where precomputed FR model embeddings of `dataset` live; None for the model's own
  head and for FR checkpoints (their embeddings come from the scoring pass)."""
  spec = fr_specs(cfg)[fr_model]
  if spec["kind"] != "embeddings":
    return None
  root = spec["embeddings"]
  return (
    root.format(dataset=dataset)
    if "{dataset}" in root
    else os.path.join(root, f"{dataset}_{fr_model}")
  )


def check_job_keys(cfg: Any, path: str) -> None:
  """Raises KeyError naming an unknown top-level key (a typo such as `adaptiv`), the
  closest known key and all known ones; TypeError when the config is not a dict."""
  if not isinstance(cfg, dict):
    raise TypeError(f"{path}: get_config() must return a dict; got {type(cfg).__name__}")
  for key in cfg:
    if key not in JOB_KEYS:
      close = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise KeyError(f"{path}: unknown key {key!r} in the config{hint}; known: {list(JOB_KEYS)}")


def check_job(cfg: dict, path: str) -> None:
  """Raises naming the config key or file: unknown or missing keys, missing files,
  unknown names, options of a wrong type (`check_options`)."""
  check_job_keys(cfg, path)
  for key in ("checkpoint", "out_dir", "data_dir", "datasets", "fr_models"):
    if key not in cfg:
      raise KeyError(f"{path}: config has no {key!r}")
  for key in ("checkpoint", "out_dir", "data_dir"):
    if not isinstance(cfg[key], str) or not cfg[key]:
      raise TypeError(f"{path}: {key} must be a path; got {cfg[key]!r}")
  if not isinstance(cfg["datasets"], dict) or not all(
    isinstance(d, dict) for d in cfg["datasets"].values()
  ):
    raise TypeError(f"{path}: datasets must be a dict of {{name: {{builder, files}}}}")
  fr = cfg["fr_models"]
  names_ok = isinstance(fr, (list, tuple)) and all(isinstance(f, str) for f in fr)
  if not (names_ok or isinstance(fr, dict)):  # a dict of specs is checked by fr_specs
    raise TypeError(f"{path}: fr_models must be a list of names or a dict of specs; got {fr!r}")
  check_options(cfg, path)
  missing = []  # every missing input, named at once
  if not os.path.isdir(cfg["checkpoint"]):
    missing.append(
      f"checkpoint {cfg['checkpoint']} does not exist (write one with `exfiqa convert`)"
    )
  else:
    _check_depth(cfg, path)
  for name, ds in cfg["datasets"].items():
    builder = ds.get("builder")
    if builder not in _FILES:
      raise KeyError(
        f"{path}: datasets.{name}.builder {builder!r} is not one of "
        f"{sorted(_FILES)} (a plain image folder has no pairs to evaluate)"
      )
    _check_dataset_keys(path, name, ds)
    needed = _FILES[builder](name, ds.get("files", ""))
    if not os.path.exists(needed):
      missing.append(f"datasets.{name} needs {needed}, which does not exist")
  known = {SELF, *cfg.get("embeddings", {})}
  for fr, spec in fr_specs(cfg).items():
    try:
      _check_spec(path, fr, spec, known)
    except FileNotFoundError as e:
      missing.append(str(e).removeprefix(f"{path}: "))
    for name in cfg["datasets"]:
      emb = embeddings_path(cfg, fr, name)
      if emb is not None and not os.path.exists(emb):
        missing.append(f"embeddings of {fr} for {name}: {emb} does not exist")
  missing += check_quality_methods(cfg, path)
  if len(missing) == 1:
    raise FileNotFoundError(f"{path}: {missing[0]}")
  if missing:
    raise FileNotFoundError(f"{path}: {len(missing)} inputs are missing: " + "; ".join(missing))


def quality_specs(cfg: dict) -> dict[str, dict]:
  """The job's assessors {name: spec} (empty without a `quality_methods` section)."""
  return dict(cfg.get("quality_methods") or {})


def check_quality_methods(cfg: dict, path: str) -> list[str]:
  """Checks the `quality_methods` section before any scoring: each spec's keys, method,
  source and options (one line naming the key); returns the missing checkpoints, for
  `check_job` to name with the other missing inputs. The kind and family of each network
  are checked when the job loads it (`evaluation.run.quality_models`), before scoring."""
  from exfiqa_jax.scoring.assessors import check_spec

  specs = cfg.get("quality_methods")
  if specs is None:
    return []
  if not isinstance(specs, dict):
    raise TypeError(f"{path}: quality_methods must be a dict {{name: spec}}; got {specs!r}")
  fr = {name: spec["kind"] for name, spec in fr_specs(cfg).items()}
  clash = sorted(set(specs) & {f"exit {i}" for i in range(1, 100)})
  if clash:
    raise ValueError(f"{path}: quality_methods names {clash} are the names of exits")
  fr_folders = {s.get("checkpoint") for s in fr_specs(cfg).values() if s["kind"] == "checkpoint"}
  missing = []
  for name, spec in specs.items():
    check_spec(name, spec, fr, path)
    if spec.get("checkpoint") in fr_folders:
      continue  # an FR model's checkpoint too: named missing once, under fr_models
    if "checkpoint" in spec and not os.path.isdir(spec["checkpoint"]):
      missing.append(f"quality_methods.{name}.checkpoint {spec['checkpoint']} does not exist")
  return missing


def _check_depth(cfg: dict, path: str) -> None:
  """report.exits and adaptive.stages against the depth of the checkpoint's model (its
  stored config alone is read), before any scoring."""
  from exfiqa_jax.adaptive.policy import check_stages
  from exfiqa_jax.models.checkpoint import load_config

  exits = (cfg.get("report") or {}).get("exits", ())
  stages = (cfg.get("adaptive") or {}).get("stages")
  if not exits and stages is None:
    return  # nothing depends on the depth
  depth = getattr(load_config(cfg["checkpoint"]), "depth", None)
  if depth is None:
    return
  bad = [e for e in exits if not 1 <= e <= depth]
  if bad:
    raise ValueError(
      f"{path}: report.exits {bad} are not exits of the depth-{depth} model in the "
      f"checkpoint (1..{depth})"
    )
  if stages is not None:
    try:
      check_stages(stages, depth)
    except ValueError as e:
      raise ValueError(f"{path}: adaptive.{e}") from None


def _check_spec(path: str, fr: str, spec: dict, known: set[str]) -> None:
  kind = spec["kind"]
  if kind is None:
    raise ValueError(
      f"{path}: fr_models.{fr} is {spec['spec']!r}; expected 'self', {{'embeddings': root}} "
      "or {'checkpoint': folder, 'flip': ..., 'channel_order': ...}"
    )
  if kind == "embeddings" and spec["embeddings"] is None:
    raise KeyError(
      f"{path}: unknown FR model {fr!r} in fr_models; known: {sorted(known)} "
      "(add its embedding folder under `embeddings`, or name its checkpoint)"
    )
  if kind in SPEC_KEYS:
    unknown = sorted(set(spec) - {"kind", *SPEC_KEYS[kind]})
    if unknown:
      raise KeyError(f"{path}: fr_models.{fr} has unknown keys {unknown}")
  if kind != "checkpoint":
    return
  if spec["flip"] not in FLIP_RULES:
    raise ValueError(f"{path}: fr_models.{fr}.flip {spec['flip']!r} is not one of {FLIP_RULES}")
  if spec["channel_order"] not in (None, "rgb", "bgr"):
    raise ValueError(
      f"{path}: fr_models.{fr}.channel_order {spec['channel_order']!r} is not 'rgb' or 'bgr'"
    )
  if not os.path.isdir(spec["checkpoint"]):
    raise FileNotFoundError(
      f"{path}: fr_models.{fr}.checkpoint {spec['checkpoint']} does not exist (write one with "
      "`exfiqa convert SRC DST --family ...`)"
    )


DATASET_KEYS = ("builder", "files", "channel_order", "image_root", "detector_weights")


def _check_dataset_keys(path: str, name: str, ds: dict) -> None:
  """A dataset entry's keys: known ones, image_root only for a cr_fiqa_folder (an existing
  folder), detector_weights a bool for ijbc_1to1 only."""
  unknown = sorted(set(ds) - set(DATASET_KEYS))
  if unknown:
    raise KeyError(f"{path}: datasets.{name} has unknown keys {unknown}; known: {DATASET_KEYS}")
  root = ds.get("image_root")
  if root is not None:
    if ds["builder"] != "cr_fiqa_folder":
      raise ValueError(f"{path}: datasets.{name}.image_root applies only to cr_fiqa_folder")
    if not isinstance(root, str) or not os.path.isdir(root):
      raise FileNotFoundError(f"{path}: datasets.{name}.image_root {root!r} is not a folder")
  if "detector_weights" in ds:
    if ds["builder"] != "ijbc_1to1":
      raise ValueError(f"{path}: datasets.{name}.detector_weights applies only to ijbc_1to1")
    if not isinstance(ds["detector_weights"], bool):
      raise TypeError(f"{path}: datasets.{name}.detector_weights must be True or False")

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
  scoring, metrics, sweep   options of scoring (scoring.channel_order: what ViT-FIQA is
               fed, default "rgb"), ERC/EDC (metrics.template_quality: "min" or "mean") and
               the fusion sweep
  adaptive     optional: policies, stages, fraction, seed, knobs of the adaptive
               early-exit study run on every pair set (docs/protocol.md §10)
  report       exits: exits to plot besides the last one and the fusions
"""

from __future__ import annotations

import os
from typing import Any

from exfiqa_jax.configs import apply_overrides, load_config_file

SELF = "self"
# Flip rules for FR checkpoints: the embedding alone; the two L2-normalised embeddings of
# the image and its mirror side by side (CR-FIQA's extraction); their raw sum
# (CurricularFace's evaluation).
FLIP_RULES = ("none", "concat", "sum")
SPEC_KEYS = {"checkpoint": ("checkpoint", "flip", "channel_order"), "embeddings": ("embeddings",)}
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


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rate(v) -> bool:
  return _number(v) and 0 < v < 1


def _names(known):
  def ok(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(x in known for x in v)

  ok.__doc__ = f"a non-empty list of names from {tuple(known)}"
  return ok


def _seq(item, what: str):
  def ok(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(item(x) for x in v)

  ok.__doc__ = what
  return ok


def _doc(fn, text: str):
  fn.__doc__ = text
  return fn


def option_checks() -> dict[str, dict]:
  """{section: {key: check}} of the options a job may set; each check's docstring says
  what it wants."""
  from exfiqa_jax.adaptive.policy import POLICIES
  from exfiqa_jax.fusion.rules import NORMS, RULES

  return {
    "scoring": {
      "batch_size": _doc(_positive_int, "a positive integer"),
      "dtype": _doc(lambda v: v in ("float32", "bfloat16"), "'float32' or 'bfloat16'"),
      "channel_order": _doc(
        lambda v: v in ("rgb", "bgr"), "'rgb' (the true-RGB image) or 'bgr': what ViT-FIQA is fed"
      ),
    },
    "metrics": {
      "fmrs": _seq(_rate, "a non-empty list of FMRs in (0, 1), e.g. (1e-3, 1e-4)"),
      "edc_fmr": _doc(_rate, "an FMR in (0, 1)"),
      "edc_limits": _seq(
        lambda v: _number(v) and 0 < v <= 1, "a non-empty list of discard limits in (0, 1]"
      ),
      "template_quality": _doc(
        lambda v: v in ("min", "mean"), "'min' (upstream IJB-C) or 'mean' over a template"
      ),
    },
    "sweep": {
      "rules": _names(RULES),
      "norms": _names(NORMS),
      "top_k": _doc(_positive_int, "a positive integer"),
      "memory_mb": _doc(lambda v: _number(v) and v > 0, "a positive number of MiB"),
      "select": _doc(lambda v: isinstance(v, str), "a metric column name such as 'edc_area@0.2'"),
    },
    "adaptive": {
      "policies": _names(POLICIES),
      "stages": _seq(
        _positive_int, "a non-empty list of exits ending at the depth, e.g. (3, 6, 9, 12)"
      ),
      "fraction": _doc(_rate, "the fraction of pairs to calibrate on, in (0, 1)"),
      "seed": _doc(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
      "knobs": _doc(
        lambda v: (
          isinstance(v, dict) and all(k in POLICIES and _seq(_number, "")(x) for k, x in v.items())
        ),
        f"a dict {{policy: (knob, ...)}} with policies from {POLICIES}",
      ),
    },
    "weights": {
      "powers": _seq(_number, "a non-empty list of numbers"),
      "simplex": _doc(_positive_int, "a positive integer"),
      "learn_steps": _doc(_positive_int, "a positive integer"),
      "seed": _doc(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    },
  }


def check_options(cfg: dict, path: str) -> None:
  """Raises naming the key: an option of scoring/metrics/sweep/adaptive/weights of a wrong type
  or value (e.g. `sweep.rules=mean`, a bare string, or `scoring.batch_size=abc`)."""
  for section, checks in option_checks().items():
    values = cfg.get(section, {})
    if not isinstance(values, dict):
      raise TypeError(f"{path}: {section} must be a dict of options; got {values!r}")
    for key, value in values.items():
      if key not in checks:
        raise KeyError(f"{path}: unknown option {section}.{key}; known: {sorted(checks)}")
      if not checks[key](value):
        raise TypeError(f"{path}: {section}.{key} must be {checks[key].__doc__}; got {value!r}")


def check_job(cfg: dict, path: str) -> None:
  """Raises naming the config key or file: missing keys or files, unknown names,
  options of a wrong type (`check_options`)."""
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
    _check_dataset_keys(path, name, ds)
    needed = _FILES[builder](name, ds.get("files", ""))
    if not os.path.exists(needed):
      raise FileNotFoundError(f"{path}: datasets.{name} needs {needed}, which does not exist")
  known = {SELF, *cfg.get("embeddings", {})}
  for fr, spec in fr_specs(cfg).items():
    _check_spec(path, fr, spec, known)
    for name in cfg["datasets"]:
      emb = embeddings_path(cfg, fr, name)
      if emb is not None and not os.path.exists(emb):
        raise FileNotFoundError(f"{path}: embeddings of {fr} for {name}: {emb} does not exist")


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

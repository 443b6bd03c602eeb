"""File to file: a checkpoint of any family to an orbax checkpoint (`convert`), and back
(`export`).

Nothing is written until the conversion (and `verify`) succeeded; the output
appears atomically, and an existing one is replaced only with `force`, and only
when exfiqa wrote it (`exfiqa_jax.fileio.check_output`). The family (default
ViT-FIQA; `convert.families`) reads, unwraps, sizes and checks the source.

`export` writes `DST.json` beside `DST` (`settings_path`): the model config,
whose settings the state_dict's shapes cannot tell (ViT-FIQA: head count and
image size, `Family.settings`); `convert` reads `SRC.json` when present, so that
export then convert round-trips.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from exfiqa_jax.convert.core import to_torch, variables
from exfiqa_jax.convert.families import family_named
from exfiqa_jax.convert.verify import report, verify
from exfiqa_jax.fileio import atomic_path, check_output, write_text
from exfiqa_jax.models.checkpoint import load, save

SETTINGS_FORMAT = "exfiqa-export-1"


def settings_path(pt: str) -> str:
  """The settings file beside an exported `.pt`: `model.pt` -> `model.pt.json`."""
  return pt + ".json"


def read_settings(src: str, keys: tuple[str, ...] = ("num_heads", "image_size")) -> dict:
  """{key: int} of `keys` from `SRC.json`, or {} when there is none (or no keys)."""
  path = settings_path(src)
  if not keys or not os.path.isfile(path):
    return {}
  try:
    if os.path.getsize(path) > 1 << 20:
      raise ValueError("over 1 MiB")
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    config = info["config"]
    out = {k: config[k] for k in keys}
    if info.get("format") != SETTINGS_FORMAT or not all(
      isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out.values()
    ):
      raise ValueError(f"not of format {SETTINGS_FORMAT}")
    return out
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: unreadable export settings ({e}); remove or fix it") from None


def _non_finite(sd) -> list[str]:
  """Keys of the floating arrays holding a NaN or an infinity."""
  return [
    k for k, a in sd.items() if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()
  ]


def convert_file(
  src: str,
  dst: str,
  *,
  num_heads: int | None = None,
  image_size: int | None = None,
  force: bool = False,
  check: bool = False,
  family: str = "vit_fiqa",
) -> Any:
  """Converts the checkpoint `src` of `family`; with `check`, prints the `verify` table
  and fails on it.

  num_heads / image_size (ViT-FIQA): default from `SRC.json` (written by `export`),
  else 8 heads and the smallest image size of the patch grid; given ones must agree
  with it. The face-recognition families read every size from the shapes.
  """
  f = family_named(family)
  check_output(dst, force=force, directory=True, kind="checkpoint")
  obj = f.read(src)
  settings = read_settings(src, f.settings)
  given = {"num_heads": num_heads, "image_size": image_size}
  for key, value in given.items():
    if value is not None and key in settings and settings[key] != value:
      raise ValueError(
        f"{src}: --{key.replace('_', '-')} {value} disagrees with {settings_path(src)} "
        f"({key} {settings[key]})"
      )
  options = {k: settings.get(k) if v is None else v for k, v in given.items()}
  try:
    sd = f.unwrap(obj)
    bad = _non_finite(sd)
    if bad:
      raise ValueError(
        f"NaN or infinite weights in {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
        "nothing written (the scores would be NaN)"
      )
    config = f.infer(sd, **options)
    params, batch_stats = variables(f, sd, config)
  except ValueError as e:
    raise ValueError(f"{src}: {e}") from None
  if check:
    table, ok = report(verify(f, sd, config, params, batch_stats))
    print(table)
    if not ok:
      raise ValueError(
        f"{src}: the converted model differs from the PyTorch reference "
        "beyond float32 rounding; nothing written"
      )
  save(dst, config, params, batch_stats, force=force)
  return config


def export_file(src: str, dst: str, *, force: bool = False) -> Any:
  """Writes the orbax checkpoint `src` as a PyTorch file in its release's layout
  (`Family.wrap`; ViT-FIQA: docs/protocol.md §9) and its settings as `DST.json`."""
  check_output(dst, force=force)
  check_output(settings_path(dst), force=force)
  config, _, params, batch_stats = load(src)
  state_dict = to_torch(config, params, batch_stats)
  with atomic_path(dst, force=force) as tmp:
    torch.save(state_dict, tmp)
  info = {"format": SETTINGS_FORMAT, "config": config.to_dict()}
  write_text(settings_path(dst), json.dumps(info, indent=1, sort_keys=True) + "\n")
  return config

"""File to file: a checkpoint of any family to an orbax checkpoint (`convert`), and back
(`export`).

Nothing is written until the conversion (and `verify`) succeeded; the output
appears atomically, and an existing one is replaced only with `force`, and only
when exfiqa wrote it (`exfiqa_jax.fileio.check_output`). The family (default
ViT-FIQA; `convert.families`) reads, unwraps, sizes and checks the source.

`export` writes `DST.json` beside `DST` (`settings_path`): the model config, with
what the state_dict's shapes cannot tell (ViT-FIQA: head count and image size; a
face-recognition release: eps, channel order, input scale); `convert` reads `SRC.json`
for every family when present and converts to that config, so that export then
convert round-trips exactly (a `--family` disagreeing with it is refused).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from exfiqa_jax.convert.core import to_torch, variables
from exfiqa_jax.convert.families import family_named
from exfiqa_jax.convert.infer import RELEASED_HEADS
from exfiqa_jax.convert.verify import report, verify
from exfiqa_jax.fileio import JSONFileError, atomic_path, check_output, read_json, write_text
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.registry import config_from_dict, config_to_dict

SETTINGS_FORMAT = "exfiqa-export-1"


def settings_path(pt: str) -> str:
  """The settings file beside an exported `.pt`: `model.pt` -> `model.pt.json`."""
  return pt + ".json"


def read_export(src: str) -> Any:
  """The model config `exfiqa export` stored in `SRC.json` (`settings_path`), or None when
  there is none. Bounded (1 MiB) and checked: a malformed file is a one-line ValueError
  naming it. Files of before the stored kind hold the config's fields only."""
  path = settings_path(src)
  if not os.path.lexists(path):  # a FIFO, a device or a dangling link is refused, not skipped
    return None
  try:
    try:
      info = read_json(path, "export settings file", 1 << 20)
    except JSONFileError as e:
      raise ValueError(e.problem) from None
    if not isinstance(info, dict) or info.get("format") != SETTINGS_FORMAT:
      raise ValueError(f"not of format {SETTINGS_FORMAT}")
    if not isinstance(info.get("config"), dict):
      raise ValueError("no 'config' object")
    return config_from_dict(info["config"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    what = str(e.args[0] if isinstance(e, KeyError) and e.args else e)  # KeyError quotes
    what = what.splitlines()[0] if what else type(e).__name__
    raise ValueError(f"{path}: unreadable export settings ({what}); remove or fix it") from None


MAX_ABS_WEIGHT = 1e6  # no trained network's weight or BatchNorm statistic comes near it


def check_weights(sd) -> None:
  """Refuses, naming the keys (ValueError, one line), weights that would make NaN or
  infinite outputs: a NaN or infinity, a magnitude over MAX_ABS_WEIGHT (3e38 is finite in
  float32 but overflows in the first product), a negative BatchNorm `running_var` (the
  square root of variance + eps is NaN)."""

  def keys(bad: list[str]) -> str:
    return f"{bad[:5]}{' ...' if len(bad) > 5 else ''}"

  floats = {k: a for k, a in sd.items() if np.issubdtype(a.dtype, np.floating)}
  bad = [k for k, a in floats.items() if not np.isfinite(a).all()]
  if bad:
    raise ValueError(
      f"NaN or infinite weights in {keys(bad)}; nothing written (the scores would be NaN)"
    )
  big = [k for k, a in floats.items() if a.size and np.abs(a).max() > MAX_ABS_WEIGHT]
  if big:
    top = max(float(np.abs(floats[k]).max()) for k in big)
    raise ValueError(
      f"weights of magnitude up to {top:.3g} in {keys(big)}, over {MAX_ABS_WEIGHT:g}; nothing "
      "written (the outputs would overflow)"
    )
  neg = [k for k, a in floats.items() if k.endswith("running_var") and (a < 0).any()]
  if neg:
    raise ValueError(
      f"negative BatchNorm running variance in {keys(neg)}; nothing written (the outputs "
      "would be NaN)"
    )


def convert_file(
  src: str,
  dst: str,
  *,
  num_heads: int | None = None,
  image_size: int | None = None,
  force: bool = False,
  check: bool = False,
  family: str | None = None,
) -> Any:
  """Converts the checkpoint `src` of `family`; with `check`, prints the `verify` table
  and fails on it.

  `SRC.json` (written by `exfiqa export`), when present, holds the model config: it is
  the one converted to (its family, and what the shapes cannot tell: ViT-FIQA's head
  count and image size, a face-recognition release's eps, channel order and input
  scale); a `family`, `num_heads` or `image_size` that disagrees with it is refused.
  Without it: `family` default ViT-FIQA, whose head count must then be given (the
  weights cannot tell it: refused, never guessed) and whose image size is the smallest
  of the patch grid; the face-recognition families read every size from the shapes and
  the rest from their release (or from what their files state: `Family.stated`).
  """
  stored = read_export(src)
  if stored is not None:
    if family is not None and family != stored.family:
      raise ValueError(
        f"{src}: --family {family} disagrees with {settings_path(src)} "
        f"(family {stored.family}, written by exfiqa export)"
      )
    family = stored.family
  f = family_named(family or "vit_fiqa")
  check_output(dst, force=force, directory=True, kind="checkpoint")
  settings = {k: getattr(stored, k) for k in f.settings} if stored is not None else {}
  given = {"num_heads": num_heads, "image_size": image_size}
  for key, value in given.items():
    if value is not None and key in settings and settings[key] != value:
      raise ValueError(
        f"{src}: --{key.replace('_', '-')} {value} disagrees with {settings_path(src)} "
        f"({key} {settings[key]})"
      )
  options = {k: settings.get(k) if v is None else v for k, v in given.items()}
  obj = f.read(src)
  try:
    sd = f.unwrap(obj)
    if "num_heads" in f.settings and options["num_heads"] is None:
      raise ValueError(
        "the attention head count cannot be read from the weights; pass --num-heads N "
        f"({RELEASED_HEADS} for the released ViT-FIQA model), or keep the settings file "
        f"{settings_path(src)} beside it (`exfiqa export` writes one)"
      )
    check_weights(sd)
    config = f.infer(sd, **options)  # checks the architecture and the sizes
    config = stored or f.stated(obj) or config  # stated values win; shapes checked below
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
  write_settings(dst, config)
  return config


def write_settings(pt: str, config: Any) -> None:
  """Writes `config` as the settings file beside the PyTorch file `pt` (`settings_path`),
  what `convert` reads back for what the shapes cannot tell."""
  info = {"format": SETTINGS_FORMAT, "config": config_to_dict(config)}
  write_text(settings_path(pt), json.dumps(info, indent=1, sort_keys=True) + "\n")

"""File to file: a PyTorch checkpoint to an orbax checkpoint (`convert`), and back (`export`).

Nothing is written until the conversion (and `verify`) succeeded; the output
appears atomically, and an existing one is replaced only with `force`, and only
when exfiqa wrote it (`exfiqa_jax.fileio.check_output`). With `family`, the
source is a face-recognition backbone of that release
(`exfiqa_jax.convert.fr_core`); without it, a ViT-FIQA checkpoint.

`export` writes `DST.json` beside `DST` (`settings_path`): the model config,
whose head count and image size the state_dict's shapes cannot tell; `convert`
reads `SRC.json` when present, so that export then convert round-trips.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from exfiqa_jax.convert.core import from_torch
from exfiqa_jax.convert.export import to_torch_state_dict
from exfiqa_jax.convert.fr_core import fr_state_dict, fr_to_torch, fr_variables
from exfiqa_jax.convert.fr_infer import refuse_unflagged
from exfiqa_jax.convert.fr_verify import verify_fr
from exfiqa_jax.convert.mxnet_params import FAMILY as MXNET_FAMILY
from exfiqa_jax.convert.mxnet_params import read_mxnet
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.convert.verify import report, verify
from exfiqa_jax.convert.wrappers import unwrap
from exfiqa_jax.fileio import atomic_path, check_output, write_text
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.fr_config import FRConfig

SETTINGS_FORMAT = "exfiqa-export-1"
DEFAULT_HEADS = 8  # the released model's


def settings_path(pt: str) -> str:
  """The settings file beside an exported `.pt`: `model.pt` -> `model.pt.json`."""
  return pt + ".json"


def read_settings(src: str) -> dict:
  """{num_heads, image_size} from `SRC.json`, or {} when there is none."""
  path = settings_path(src)
  if not os.path.isfile(path):
    return {}
  try:
    if os.path.getsize(path) > 1 << 20:
      raise ValueError("over 1 MiB")
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    config = info["config"]
    out = {k: config[k] for k in ("num_heads", "image_size")}
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
  family: str | None = None,
) -> ViTConfig | FRConfig:
  """Converts the checkpoint `src`; with `check`, prints the `verify` table and fails on it.

  num_heads / image_size: default from `SRC.json` (written by `export`), else 8 heads
  and the smallest image size of the patch grid; given ones must agree with it.
  """
  check_output(dst, force=force, directory=True, kind="checkpoint")
  # insightface's MXNet release: its own reader (graph + weights, no PyTorch file).
  mxnet = read_mxnet(src) if family == MXNET_FAMILY else None
  sd = mxnet[1] if mxnet else load_torch(src)
  settings = read_settings(src) if family is None else {}  # FR configs: from the shapes
  for key, given in (("num_heads", num_heads), ("image_size", image_size)):
    if given is not None and key in settings and settings[key] != given:
      raise ValueError(
        f"{src}: --{key.replace('_', '-')} {given} disagrees with {settings_path(src)} "
        f"({key} {settings[key]})"
      )
  num_heads = num_heads or settings.get("num_heads", DEFAULT_HEADS)
  image_size = image_size or settings.get("image_size")
  try:
    if family is None:
      refuse_unflagged(sd)
      sd = unwrap(sd)
    else:
      config, sd = mxnet or fr_state_dict(sd, family)
    bad = _non_finite(sd)
    if bad:
      raise ValueError(
        f"NaN or infinite weights in {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
        "nothing written (the scores would be NaN)"
      )
    if family is None:
      config, params, batch_stats = from_torch(sd, num_heads, image_size)
    else:
      params, batch_stats = fr_variables(sd, config)
  except ValueError as e:
    raise ValueError(f"{src}: {e}") from None
  if check:
    check_fn = verify if family is None else verify_fr
    table, ok = report(check_fn(sd, config, params, batch_stats))
    print(table)
    if not ok:
      raise ValueError(
        f"{src}: the converted model differs from the PyTorch reference "
        "beyond float32 rounding; nothing written"
      )
  save(dst, config, params, batch_stats, force=force)
  return config


def export_file(src: str, dst: str, *, force: bool = False) -> ViTConfig | FRConfig:
  """Writes the orbax checkpoint `src` as a PyTorch file in its release's layout
  (ViT-FIQA: docs/protocol.md §9; face recognition: `fr_wrappers.wrap_fr`) and its
  settings as `DST.json`."""
  check_output(dst, force=force)
  check_output(settings_path(dst), force=force)
  config, _, params, batch_stats = load(src)
  export = fr_to_torch if isinstance(config, FRConfig) else to_torch_state_dict
  state_dict = export(config, params, batch_stats)
  with atomic_path(dst, force=force) as tmp:
    torch.save(state_dict, tmp)
  info = {"format": SETTINGS_FORMAT, "config": config.to_dict()}
  write_text(settings_path(dst), json.dumps(info, indent=1, sort_keys=True) + "\n")
  return config

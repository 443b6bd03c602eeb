"""File to file: a PyTorch checkpoint to an orbax checkpoint (`convert`), and back (`export`).

Nothing is written until the conversion (and `verify`) succeeded; the output
appears atomically, and an existing one is replaced only with `force`. With
`family`, the source is a face-recognition backbone of that release
(`exfiqa_jax.convert.fr_core`); without it, a ViT-FIQA checkpoint.
"""

from __future__ import annotations

import os

import torch

from exfiqa_jax.convert.core import from_torch
from exfiqa_jax.convert.export import to_torch_state_dict
from exfiqa_jax.convert.fr_core import fr_state_dict, fr_to_torch, fr_variables
from exfiqa_jax.convert.fr_infer import refuse_unflagged
from exfiqa_jax.convert.fr_verify import verify_fr
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.convert.verify import report, verify
from exfiqa_jax.convert.wrappers import unwrap
from exfiqa_jax.fileio import atomic_path
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.fr_config import FRConfig


def _refuse_existing(dst: str, force: bool) -> None:
  if os.path.lexists(dst) and not force:
    raise FileExistsError(f"{dst} exists; pass --force to overwrite it")


def convert_file(
  src: str,
  dst: str,
  *,
  num_heads: int = 8,
  image_size: int | None = None,
  force: bool = False,
  check: bool = False,
  family: str | None = None,
) -> ViTConfig | FRConfig:
  """Converts the checkpoint `src`; with `check`, prints the `verify` table and fails on it."""
  _refuse_existing(dst, force)
  sd = load_torch(src)
  try:
    if family is None:
      refuse_unflagged(sd)
      sd = unwrap(sd)
      config, params, batch_stats = from_torch(sd, num_heads, image_size)
    else:
      config, sd = fr_state_dict(sd, family)
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
  (ViT-FIQA: docs/protocol.md §9; face recognition: `fr_wrappers.wrap_fr`)."""
  _refuse_existing(dst, force)
  config, _, params, batch_stats = load(src)
  export = fr_to_torch if isinstance(config, FRConfig) else to_torch_state_dict
  state_dict = export(config, params, batch_stats)
  with atomic_path(dst, force=force) as tmp:
    torch.save(state_dict, tmp)
  return config

"""File to file: a PyTorch checkpoint to an orbax checkpoint (`convert`), and back (`export`).

Nothing is written until the conversion (and `verify`) succeeded; the output
appears atomically, and an existing one is replaced only with `force`.
"""

from __future__ import annotations

import os

import torch

from exfiqa_jax.convert.core import from_torch
from exfiqa_jax.convert.export import to_torch_state_dict
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.convert.verify import report, verify
from exfiqa_jax.convert.wrappers import unwrap
from exfiqa_jax.fileio import atomic_path
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.config import ViTConfig


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
) -> ViTConfig:
  """Converts the checkpoint `src`; with `check`, prints the `verify` table and fails on it."""
  _refuse_existing(dst, force)
  sd = load_torch(src)
  try:
    sd = unwrap(sd)
    config, params, batch_stats = from_torch(sd, num_heads, image_size)
  except ValueError as e:
    raise ValueError(f"{src}: {e}") from None
  if check:
    table, ok = report(verify(sd, config, params, batch_stats))
    print(table)
    if not ok:
      raise ValueError(
        f"{src}: the converted model differs from the PyTorch reference "
        "beyond float32 rounding; nothing written"
      )
  save(dst, config, params, batch_stats, force=force)
  return config


def export_file(src: str, dst: str, *, force: bool = False) -> ViTConfig:
  """Writes the orbax checkpoint `src` as a PyTorch state_dict file (docs/protocol.md §9)."""
  _refuse_existing(dst, force)
  config, _, params, batch_stats = load(src)
  state_dict = to_torch_state_dict(config, params, batch_stats)
  with atomic_path(dst, force=force) as tmp:
    torch.save(state_dict, tmp)
  return config

"""The demo's checkpoint: random weights through the released PyTorch layout and back.

`exfiqa demo` has no weights to download; it writes an untrained model's weights as
the released `.pt` file would hold them and converts that file, so the demo runs the
converter too (when torch is installed, the `convert` extra).
"""

from __future__ import annotations

import importlib.util
import os

from exfiqa_jax.models.checkpoint import save
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.inference import create, split


def write_demo_checkpoint(config: ViTConfig, files: str, checkpoint: str, seed: int = 0) -> str:
  """Random weights of `config` (seed) as `<files>/vit_fiqa_demo.pt` (with its settings,
  the head count, in `vit_fiqa_demo.pt.json`) converted to the
  checkpoint folder `checkpoint` (replaced), or saved straight to it without torch;
  returns a line saying which."""
  _, params, batch_stats = split(create(config, seed=seed))
  if importlib.util.find_spec("torch") is None:
    save(checkpoint, config, params, batch_stats, force=True)
    return "saving random weights (torch not installed: no PyTorch round trip)"
  import torch

  from exfiqa_jax.convert import to_torch
  from exfiqa_jax.convert.files import convert_file, write_settings
  from exfiqa_jax.fileio import atomic_path

  pt = os.path.join(files, "vit_fiqa_demo.pt")
  with atomic_path(pt) as tmp:
    torch.save(to_torch(config, params, batch_stats), tmp)
  # What the weights cannot tell (the head count) beside them, as `exfiqa export` writes it:
  # `exfiqa convert <files>/vit_fiqa_demo.pt DST` then gives this very model.
  write_settings(pt, config)
  convert_file(pt, checkpoint, force=True)
  return "wrote random weights in the released PyTorch layout (and its settings) and converted them"

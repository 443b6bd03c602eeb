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


# The demo's assessor networks: small iResNets (random weights) of each method's family.
ASSESSOR_SIZES = dict(
  layers=(1, 1, 1, 1), widths=(16, 32, 48, 64), stem_width=16, embedding_size=64
)
ASSESSOR_FAMILIES = {"CR-FIQA": "cr-fiqa", "MagFace": "magface", "SER-FIQ": "arcface"}


def write_demo_assessors(cfg: dict, out: str, seed: int = 0) -> str:
  """Random-weight checkpoints for the `quality_methods` of the demo config `cfg`, under
  `<out>/assessors/` (each spec's checkpoint re-rooted there, in place in `cfg`): CR-FIQA's
  in its released PyTorch layout (`<id>backbone.pth`, converted with `--family cr-fiqa`
  when torch is installed), the others (an iResNet of the method's family; GraFIQs and
  SER-FIQ on an ArcFace one) saved straight. Returns a line saying what it wrote."""
  from exfiqa_jax.models.fr_config import FRConfig

  written = {}
  for name, spec in cfg.get("quality_methods", {}).items():
    if "checkpoint" not in spec:
      continue
    method = spec.get("method") or name.split("(")[0].strip()  # scoring.assessors.method_of
    dst = os.path.join(out, "assessors", os.path.basename(os.path.normpath(spec["checkpoint"])))
    spec["checkpoint"] = dst
    if dst in written:
      continue
    config = FRConfig.for_family(ASSESSOR_FAMILIES.get(method, "arcface"), **ASSESSOR_SIZES)
    _, params, batch_stats = split(create(config, seed=seed + len(written)))
    if method == "CR-FIQA" and importlib.util.find_spec("torch") is not None:
      import torch

      from exfiqa_jax.convert import to_torch
      from exfiqa_jax.convert.files import convert_file
      from exfiqa_jax.fileio import atomic_path

      pth = os.path.join(out, "files", "0backbone.pth")
      with atomic_path(pth) as tmp:
        torch.save(to_torch(config, params, batch_stats), tmp)
      convert_file(pth, dst, family="cr-fiqa", force=True)
    else:
      save(dst, config, params, batch_stats, force=True)
    written[dst] = method
  return f"wrote random-weight assessor checkpoints: {', '.join(sorted(set(written.values())))}"

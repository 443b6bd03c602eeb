"""Tiny face-recognition backbones with random weights, for the model, converter and
scoring tests: four stages of tiny widths at the real 112x112 input."""

from __future__ import annotations

import numpy as np

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.convert.references.face_recognition import embedding, randomize_fr_, reference_for
from exfiqa_jax.models.fr_config import FRConfig

# Depths other than the released ones; the IR stem keeps the first stage's width
# (its first shortcut is MaxPool2d(1, 2), as in IR-101).
SIZES = dict(layers=(1, 2, 1, 1), widths=(8, 16, 24, 32), stem_width=8, embedding_size=32)


def tiny(family: str, **sizes) -> FRConfig:
  return FRConfig.for_family(family, **{**SIZES, **sizes})


def reference_state_dict(config: FRConfig, seed: int = 0) -> tuple[torch.nn.Module, dict]:
  ref = randomize_fr_(reference_for(config), seed)
  return ref, ref.state_dict()


def reference_embedding(ref: torch.nn.Module, x: np.ndarray) -> np.ndarray:
  """x: float32 [B, S, S, 3] network input -> [B, D] of the PyTorch reference."""
  with torch.no_grad():
    return embedding(ref, torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()

"""Shared by the data, scoring and comparison tests: a tiny model with random weights."""

from __future__ import annotations

import jax
import numpy as np

from exfiqa_jax import ViTConfig, abstract_variables

# 112x112 input (the crop size every source checks) with 16 patches and width 16.
TINY = ViTConfig(image_size=112, patch_size=28, width=16, depth=3, num_heads=2, mlp_dim=32)


def random_variables(config: ViTConfig = TINY, seed: int = 0):
  """(graphdef, params, batch_stats) with random numpy weights, built without running
  the initialisers (fast in a fresh process); running variances are in [0.5, 1.5]."""
  graphdef, params, stats = abstract_variables(config)
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.3).astype(s.dtype), params)
  stats = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), stats)
  return graphdef, params, stats


def faces(n: int, seed: int = 0) -> np.ndarray:
  """uint8 [n, 112, 112, 3] random faces."""
  return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)

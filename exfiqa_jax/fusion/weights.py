"""Fusion weight sweeps (power-law, random simplex) as tables of exfiqa_jax.fusion.sweep."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from exfiqa_jax.fusion.chunks import score_variants
from exfiqa_jax.fusion.sweep import table
from exfiqa_jax.metrics import PairSet
from exfiqa_jax.models.config import ViTConfig


def power_law(depth: int, powers: Sequence[float]) -> np.ndarray:
  """w_i proportional to i^p for exits i = 1..depth, one row per p -> [len(powers), depth]."""
  w = np.arange(1, depth + 1, dtype=float)[None, :] ** np.asarray(powers, float)[:, None]
  return (w / w.sum(1, keepdims=True)).astype(np.float32)


def simplex(depth: int, count: int, seed: int = 0) -> np.ndarray:
  """Uniform samples of the probability simplex -> [count, depth]."""
  return np.random.default_rng(seed).dirichlet(np.ones(depth), count).astype(np.float32)


def sweep_weights(
  ps: PairSet,
  weights,
  mask=None,
  norm: str = "none",
  cost: ViTConfig | Sequence[float] | None = None,
  memory_mb: float = 256,
  devices=None,
) -> dict:
  """The weighted rule for each weight row [W, L] over one subset (default all
  exits) -> a table (see exfiqa_jax.fusion.sweep) with a `weights` column [W, L].
  Float weights fuse in float64 on the host (exfiqa_jax.fusion.exact.float_fused)."""
  weights = np.asarray(weights, np.float32)
  mask = np.ones(ps.exits.shape[1], bool) if mask is None else np.asarray(mask, bool)
  masks = np.broadcast_to(mask, weights.shape)
  res = score_variants(ps, masks, weights, "weighted", norm, memory_mb, devices)
  return table(
    ps,
    masks,
    *res,
    cost,
    rule=np.full(len(weights), "weighted"),
    norm=np.full(len(weights), norm),
    weights=weights,
  )

"""Exit subsets as bit codes: bit i-1 of a code is set when exit i is fused.

subset_masks(3)[:3]    # [[T, F, F], [F, T, F], [T, T, F]]: codes 1, 2, 3
code_of(masks)         # bool [..., L] -> int codes [...]
mask_of(5, 3)          # [True, False, True]
exits_of(5, 3)         # [1, 3]
"""

from __future__ import annotations

import numpy as np


def code_of(masks, xp=np):
  """bool masks [..., L] -> int codes [...] (xp: numpy, or jax.numpy inside a trace)."""
  masks = xp.asarray(masks)
  return xp.sum(masks.astype(xp.int32) << xp.arange(masks.shape[-1], dtype=xp.int32), axis=-1)


def subset_masks(depth: int) -> np.ndarray:
  """All 2^depth - 1 non-empty subsets -> [S, depth] bool; row k is subset k + 1."""
  codes = np.arange(1, 2**depth)
  return (codes[:, None] >> np.arange(depth)) & 1 == 1


def mask_of(code: int, depth: int) -> list[bool]:
  """The subset mask [depth] of one code."""
  return [bool(code >> i & 1) for i in range(depth)]


def exits_of(code: int, depth: int) -> list[int]:
  """The exits (1-based) of one code, shallowest first."""
  return [i + 1 for i in range(depth) if code >> i & 1]

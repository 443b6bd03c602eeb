"""Exit subsets as bit codes: bit i-1 of a code is set when exit i is fused.

subset_masks(3)[:3]    # [[T, F, F], [F, T, F], [T, T, F]]: codes 1, 2, 3
code_of(masks)         # bool [..., L] -> int codes [...]
mask_of(5, 3)          # [True, False, True]
exits_of(5, 3)         # [1, 3]

A sweep holds every variant (exit subset x rule x normalisation) in memory, about
100 bytes each in its table and as much again while it is assembled: `check_variants`
refuses, in one line before any work, more than MAX_VARIANTS of them (4,194,304:
22 exits with one rule and no normalisation; 24 exits, 16,777,215 subsets a rule,
died with MemoryError at 8 to 12 GB).
"""

from __future__ import annotations

import numpy as np


def code_of(masks, xp=np):
  """bool masks [..., L] -> int codes [...] (xp: numpy, or jax.numpy inside a trace)."""
  masks = xp.asarray(masks)
  return xp.sum(masks.astype(xp.int32) << xp.arange(masks.shape[-1], dtype=xp.int32), axis=-1)


MAX_VARIANTS = 1 << 22


def check_variants(depth: int, rules: int, norms: int, what: str = "the sweep") -> int:
  """The variant count of a sweep of all subsets of `depth` exits x `rules` x `norms`;
  ValueError (one line) above MAX_VARIANTS, naming what to reduce."""
  n = ((1 << int(depth)) - 1) * int(rules) * int(norms)
  if n > MAX_VARIANTS:
    raise ValueError(
      f"{what}: {depth} exits give {(1 << int(depth)) - 1:,} exit subsets x {rules} rule(s) "
      f"x {norms} normalisation(s) = {n:,} variants, over the {MAX_VARIANTS:,} a sweep holds "
      "in memory; use fewer sweep.rules / sweep.norms, or inputs of at most "
      f"{MAX_VARIANTS.bit_length() - 1} exits"
    )
  return n


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

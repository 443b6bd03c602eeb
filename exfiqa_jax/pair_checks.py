"""Checks of the engine's inputs, in numpy before anything is compiled."""
from __future__ import annotations

import numpy as np


def check_pairs(exits: np.ndarray, a: np.ndarray, b: np.ndarray, genuine: np.ndarray,
                scores: np.ndarray) -> None:
  """Raises ValueError naming the problem: shapes, lengths, NaN/inf, unknown images, empty classes."""
  if exits.ndim != 2 or exits.shape[0] == 0 or exits.shape[1] == 0:
    raise ValueError(f"exit scores must be [N, L] with N, L > 0, got shape {exits.shape}")
  lengths = {"a": len(a), "b": len(b), "labels": len(genuine), "comparison scores": len(scores)}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"pair arrays have mismatched lengths {lengths}")
  for name, x in (("exit scores", exits), ("comparison scores", scores)):
    bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(1))
    if bad.size:
      raise ValueError(f"{name} hold {bad.size} rows with NaN or inf, first at index {bad[0]}")
  for name, idx in (("a", a), ("b", b)):
    bad = np.flatnonzero((idx < 0) | (idx >= len(exits)))
    if bad.size:
      raise ValueError(f"pair {bad[0]} names unknown image {idx[bad[0]]} in {name} "
                       f"(images are 0..{len(exits) - 1}; {bad.size} such pairs)")
  if not np.isin(genuine, (0, 1)).all():
    raise ValueError("labels must be 0 (impostor) or 1 (genuine)")
  n_gen = int(np.sum(genuine))
  if n_gen == 0 or n_gen == len(genuine):
    raise ValueError(f"need genuine and impostor pairs, got {n_gen} genuine and "
                     f"{len(genuine) - n_gen} impostor")

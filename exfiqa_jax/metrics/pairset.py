"""A verification pair list checked and padded for the evaluation engine.

Arrays are padded to bucketed lengths (see `bucket`) with a validity mask, so
one compiled function serves every dataset whose sizes fall in the same bucket.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.metrics.erc import ErcData


def check_pairs(
  exits: np.ndarray, a: np.ndarray, b: np.ndarray, genuine: np.ndarray, scores: np.ndarray
) -> None:
  """Raises ValueError naming the problem: shapes, lengths, NaN/inf, unknown images,
  empty classes."""
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
      raise ValueError(
        f"pair {bad[0]} names unknown image {idx[bad[0]]} in {name} "
        f"(images are 0..{len(exits) - 1}; {bad.size} such pairs)"
      )
  if not np.isin(genuine, (0, 1)).all():
    raise ValueError("labels must be 0 (impostor) or 1 (genuine)")
  n_gen = int(np.sum(genuine))
  if n_gen == 0 or n_gen == len(genuine):
    raise ValueError(
      f"need genuine and impostor pairs, got {n_gen} genuine and {len(genuine) - n_gen} impostor"
    )


class PairSet(NamedTuple):
  """exits: [N, L] per-image exit scores (padding rows 0); image_valid: [N];
  a, b: [P] image indices; valid: [P]; erc: pairs in score order; erc_genuine,
  edc_error: [P] genuine / genuine below the fixed EDC threshold; count: [] valid
  pairs; fmr_num, fmr_den: [F] ERC target FMRs as fractions; limits: [K]."""

  exits: jax.Array
  image_valid: jax.Array
  a: jax.Array
  b: jax.Array
  valid: jax.Array
  erc: ErcData
  erc_genuine: jax.Array
  edc_error: jax.Array
  count: jax.Array
  fmr_num: jax.Array
  fmr_den: jax.Array
  limits: jax.Array


def bucket(n: int, minimum: int = 64) -> int:
  """The padded length of n: the next m * 2^k with m in 4..7 (at most 1/4 padding), >= minimum."""
  n = max(int(n), minimum)
  k = max(0, n.bit_length() - 3)
  return -(-n // (1 << k)) << k


def _score_order(scores: np.ndarray, genuine: np.ndarray, p: int) -> ErcData:
  """Pairs by descending score with their tie groups; padding last, one group each."""
  n = len(scores)
  perm = np.argsort(-scores, kind="stable")
  s = scores[perm]
  new = np.r_[True, s[1:] != s[:-1]]
  start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
  end = np.minimum.accumulate(np.where(np.r_[new[1:], True], np.arange(n), n)[::-1])[::-1]
  pad = np.arange(n, p)
  g = np.r_[genuine[perm], np.zeros(p - n, bool)]
  return ErcData(
    np.argsort(np.r_[perm, pad]).astype(np.int32),
    g,
    np.r_[~genuine[perm], g[n:]],
    np.r_[start, pad].astype(np.int32),
    np.r_[end, pad].astype(np.int32),
  )


def make_pairset(
  exits,
  a,
  b,
  labels,
  scores,
  *,
  fmrs: Sequence[float] = (1e-3, 1e-4),
  edc_fmr: float | None = 1e-3,
  edc_fnmr: float | None = None,
  limits: Sequence[float] = (0.2, 0.3),
  pad: bool = True,
) -> PairSet:
  """exits: [N, L]; a, b: [P] image indices; labels: [P] (1 genuine); scores: [P]
  cosine similarity. ERC at each of `fmrs`; the EDC threshold is
  np.quantile(impostor scores, 1 - edc_fmr), or np.quantile(genuine scores,
  edc_fnmr) for a starting FNMR, fixed on all comparisons."""
  exits, scores = np.asarray(exits, np.float32), np.asarray(scores, np.float32)
  a, b, labels = np.asarray(a), np.asarray(b), np.asarray(labels)
  check_pairs(exits, a, b, labels, scores)
  genuine = labels.astype(bool)
  if (edc_fmr is None) == (edc_fnmr is None):
    raise ValueError("give exactly one of edc_fmr and edc_fnmr")
  fractions = [Fraction(str(f)) for f in fmrs]
  if any(not 0 < f <= 1 or f.numerator * len(a) >= 2**31 for f in fractions):
    raise ValueError(f"ERC FMRs must lie in (0, 1] with small numerators, got {list(fmrs)}")
  thr = (
    np.quantile(scores[~genuine].astype(np.float64), 1 - edc_fmr)
    if edc_fnmr is None
    else np.quantile(scores[genuine].astype(np.float64), edc_fnmr)
  )
  n, p = (bucket(len(exits)), bucket(len(a))) if pad else (len(exits), len(a))

  def padp(x):
    return np.r_[x, np.zeros(p - len(x), x.dtype)]

  return jax.tree.map(
    jnp.asarray,
    PairSet(
      np.r_[exits, np.zeros((n - len(exits), exits.shape[1]), np.float32)],
      np.arange(n) < len(exits),
      padp(a.astype(np.int32)),
      padp(b.astype(np.int32)),
      np.arange(p) < len(a),
      _score_order(scores, genuine, p),
      padp(genuine),
      padp(genuine & (scores < thr)),
      np.int32(len(a)),
      np.array([f.numerator for f in fractions], np.int32),
      np.array([f.denominator for f in fractions], np.int32),
      np.asarray(limits, np.float32),
    ),
  )

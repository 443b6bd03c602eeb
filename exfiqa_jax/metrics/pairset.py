"""A verification pair list checked, ordered by comparison score and padded for the engine.

Everything that depends only on the comparison scores is computed here once, on
the host in float64 numpy (docs/protocol.md §3-5): the descending score order
with its tie groups, each class's score positions, the fixed EDC threshold and
the EDC's discard widths. Scores that differ as given (as float64) never merge.
Arrays are padded to bucketed lengths (see `bucket`) with validity masks, so one
compiled function serves every dataset whose sizes fall in the same buckets.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple, Sequence

import jax
import numpy as np

# The default metric settings: ERC FMRs, the EDC's FMR and its discard limits (a job's
# `metrics` options; exfiqa_jax.evaluation.options holds the rest of a job's defaults).
METRIC_DEFAULTS = {"fmrs": (1e-3, 1e-4), "edc_fmr": 1e-3, "edc_limits": (0.2, 0.3)}


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
  """A pair list for the engine. P, N: padded pair and image counts; "score order"
  is descending comparison score, ties in pair-list order, padding last.

  exits: [N, L] float32 exit scores (padding rows 0); image_valid: [N].
  a, b, valid, erc_genuine, edc_error: [P] in pair-list order (edc_error: genuine
    with a score below the fixed EDC threshold).
  sa, sb: [P] the images of the pair at each score position; sid: [P] its pair-list
    index (padding positions: their own index >= count).
  gen_pos, imp_pos: [G], [I] the score positions of each class, ascending
    (padding entries point at the last position); n_gen, n_imp, count: [] real counts.
  Of the m-th impostor in score order: imp_upto [I] #impostors up to the end of its
    score-tie group, imp_before [I] #impostors before the group, imp_gen [I]
    #genuines before the group. gen_group: [G] of the i-th genuine, #genuines
    before its score-tie group. (Padding entries: the class counts.)
  fmr_num, fmr_den: [F] ERC target FMRs as fractions; limits: [K] EDC discard limits.
  edc_width: [K, Q] the discard width clip(l - k / n_gen, 0, 1 / n_gen) of the k-th
    genuine pair in quality order, for the Q (bucketed) first ones that any limit reaches.
  """

  exits: jax.Array
  image_valid: jax.Array
  a: jax.Array
  b: jax.Array
  valid: jax.Array
  erc_genuine: jax.Array
  edc_error: jax.Array
  sa: jax.Array
  sb: jax.Array
  sid: jax.Array
  gen_pos: jax.Array
  imp_pos: jax.Array
  imp_upto: jax.Array
  imp_before: jax.Array
  imp_gen: jax.Array
  gen_group: jax.Array
  n_gen: jax.Array
  n_imp: jax.Array
  count: jax.Array
  fmr_num: jax.Array
  fmr_den: jax.Array
  limits: jax.Array
  edc_width: jax.Array


def bucket(n: int, minimum: int = 64) -> int:
  """The padded length of n: the next m * 2^k with m in 4..7 (at most 1/4 padding), >= minimum."""
  n = max(int(n), minimum)
  k = max(0, n.bit_length() - 3)
  return -(-n // (1 << k)) << k


def score_order(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """scores: [P] float64 -> (perm [P]: pair-list index at each descending-score
  position, ties in pair-list order; start, end [P]: each position's tie group)."""
  n = len(scores)
  perm = np.argsort(-scores, kind="stable")
  s = scores[perm]
  new = np.r_[True, s[1:] != s[:-1]]
  start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
  end = np.minimum.accumulate(np.where(np.r_[new[1:], True], np.arange(n), n)[::-1])[::-1]
  return perm, start, end


def _class_counts(genuine_s: np.ndarray, start: np.ndarray, end: np.ndarray, gp: int, ip: int):
  """Per-class tie-group counts of the ERC (see PairSet), padded to gp, ip."""
  n = len(genuine_s)
  gen_upto = np.r_[0, np.cumsum(genuine_s)]  # genuines at positions < x, x = 0..n
  imp_upto = np.r_[0, np.cumsum(~genuine_s)]
  gpos, ipos = np.flatnonzero(genuine_s), np.flatnonzero(~genuine_s)
  n_gen, n_imp = len(gpos), len(ipos)

  def padded(x, size, fill):
    return np.r_[x, np.full(size - len(x), fill)].astype(np.int32)

  return (
    (
      padded(imp_upto[end[ipos] + 1], ip, n_imp),
      padded(imp_upto[start[ipos]], ip, n_imp),
      padded(gen_upto[start[ipos]], ip, n_gen),
      padded(gen_upto[start[gpos]], gp, n_gen),
    )
    if n
    else None
  )


def make_pairset(
  exits,
  a,
  b,
  labels,
  scores,
  *,
  fmrs: Sequence[float] = METRIC_DEFAULTS["fmrs"],
  edc_fmr: float | None = METRIC_DEFAULTS["edc_fmr"],
  edc_fnmr: float | None = None,
  limits: Sequence[float] = METRIC_DEFAULTS["edc_limits"],
  pad: bool = True,
  like: PairSet | None = None,
) -> PairSet:
  """exits: [N, L]; a, b: [P] image indices; labels: [P] (1 genuine); scores: [P]
  comparison scores (cosine similarity), ordered as given in float64. ERC at each
  of `fmrs`; the EDC threshold is np.quantile(impostor scores, 1 - edc_fmr), or
  np.quantile(genuine scores, edc_fnmr) for a starting FNMR, fixed on all comparisons.
  like: a padded PairSet with as many FMRs and limits whose array shapes this one
  takes where they are at least its own (more padding changes no number): the
  programs traced for `like` in this process serve this one without tracing again
  (e.g. `exfiqa sweep`'s learned-weight evaluations on halves of the pairs)."""
  exits, scores = np.asarray(exits, np.float32), np.asarray(scores, np.float64)
  a, b, labels = np.asarray(a), np.asarray(b), np.asarray(labels)
  check_pairs(exits, a, b, labels, scores)
  genuine = labels.astype(bool)
  if (edc_fmr is None) == (edc_fnmr is None):
    raise ValueError("give exactly one of edc_fmr and edc_fnmr")
  fractions = [Fraction(str(f)) for f in fmrs]
  if any(not 0 < f <= 1 or f.numerator * len(a) >= 2**31 for f in fractions):
    raise ValueError(f"ERC FMRs must lie in (0, 1] with small numerators, got {list(fmrs)}")
  limits = np.asarray(limits, np.float32)
  if limits.ndim != 1 or not len(limits) or not ((limits > 0) & (limits <= 1)).all():
    raise ValueError(f"EDC limits must lie in (0, 1], got {limits.tolist()}")
  thr = (
    np.quantile(scores[~genuine], 1 - edc_fmr)
    if edc_fnmr is None
    else np.quantile(scores[genuine], edc_fnmr)
  )
  n_pairs = len(a)
  n, p = (bucket(len(exits)), bucket(n_pairs)) if pad else (len(exits), n_pairs)
  if like is not None and (len(like.fmr_num), len(like.limits)) != (len(fractions), len(limits)):
    raise ValueError(
      f"like= has {len(like.fmr_num)} FMRs and {len(like.limits)} limits, this pair set "
      f"{len(fractions)} and {len(limits)}: their programs differ"
    )
  if like is not None:
    n, p = max(n, like.exits.shape[0]), max(p, like.sa.shape[0])

  def padp(x, size=p):
    return np.r_[x, np.zeros(size - len(x), x.dtype)]

  perm, start, end = score_order(scores)
  sid = np.r_[perm, np.arange(n_pairs, p)]
  g_s = padp(genuine[perm])
  i_s = padp(~genuine[perm])
  n_gen, n_imp = int(genuine.sum()), n_pairs - int(genuine.sum())
  gp, ip = (bucket(n_gen, 32), bucket(n_imp, 32)) if pad else (n_gen, n_imp)
  if like is not None:
    gp, ip = max(gp, like.gen_pos.shape[0]), max(ip, like.imp_pos.shape[0])
  # padding entries point at the last (padding or, unpadded, any) position: masked by count
  gen_pos = np.r_[np.flatnonzero(g_s), np.full(gp - n_gen, p - 1)]
  imp_pos = np.r_[np.flatnonzero(i_s), np.full(ip - n_imp, p - 1)]
  counts = _class_counts(genuine[perm], start, end, gp, ip)
  reach = min(n_gen, math.ceil(float(limits.max()) * n_gen))
  q = min(gp, bucket(reach, 32)) if pad else reach
  if like is not None:
    q = min(gp, max(q, like.edc_width.shape[1]))
  k = np.arange(q)
  width = np.clip(limits[:, None].astype(np.float64) - k / n_gen, 0.0, 1.0 / n_gen)
  return jax.tree.map(
    jax.device_put,  # jnp.asarray would trace and load a program per shape (lax.stage)
    PairSet(
      np.r_[exits, np.zeros((n - len(exits), exits.shape[1]), np.float32)],
      np.arange(n) < len(exits),
      padp(a.astype(np.int32)),
      padp(b.astype(np.int32)),
      np.arange(p) < n_pairs,
      padp(genuine),
      padp(genuine & (scores < thr)),
      padp(a[perm].astype(np.int32)),
      padp(b[perm].astype(np.int32)),
      sid.astype(np.int32),
      gen_pos.astype(np.int32),
      imp_pos.astype(np.int32),
      *counts,
      np.int32(n_gen),
      np.int32(n_imp),
      np.int32(n_pairs),
      np.array([f.numerator for f in fractions], np.int32),
      np.array([f.denominator for f in fractions], np.int32),
      limits,
      width.astype(np.float32),
    ),
  )

"""FNMR after rejecting a fraction of the comparisons, on a fine grid (docs/protocol.md §4).

The ERC of `exfiqa_jax.metrics` reads the FNMR at 20 discard rates (steps of 5%).
Quality reports in the field also quote the FNMR after rejecting the lowest 1%
and 5%, and the fraction that must be rejected to halve the FNMR. This module
computes the same §4 FNMR at every grid rate k / `steps` (default 1% steps, 0..95%):
rate k/steps drops the floor(k P / steps) lowest-quality pairs (stable order,
§3), so at k = 5 i / 100 it is exactly the engine's rate i / 20.

Cost: one sort of the pairs by score and by quality, then each step removes its
newly rejected pairs from per-score-group counts and re-reads the threshold from
one cumulative sum over the G distinct scores: O(P log P + steps * G). The FMR
comparison |count / n_imp - num / den| is done as |count * den - num * n_imp| in
int64, exact. The pair qualities of a fused variant come from the engine
(`exfiqa_jax.fusion.engine.evaluate_variant(..., pair_quality=True)` or
`variant_pair_quality`), which plans the variant once for its curves and these.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

STEPS = 100  # grid rates k / 100
LAST = 95  # up to 95% rejected, as the ERC


def _score_groups(scores, genuine: np.ndarray):
  """scores [P] (compared as float32), genuine [P] bool -> (gid [P]: each pair's group of
  equal scores, numbered by descending score; imp, gen [groups] int64: impostors and
  genuines of each group)."""
  scores = np.asarray(scores, np.float32)
  by_score = np.argsort(-scores, kind="stable")
  s = scores[by_score]
  group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # [P] score group, descending
  gid = np.empty(len(scores), np.int64)
  gid[by_score] = group
  n_groups = int(group[-1]) + 1 if len(scores) else 0
  imp = np.bincount(gid[~genuine], minlength=n_groups).astype(np.int64)
  gen = np.bincount(gid[genuine], minlength=n_groups).astype(np.int64)
  return gid, imp, gen


def fnmr_rejected(
  pq: np.ndarray,
  scores: np.ndarray,
  genuine: np.ndarray,
  fmrs: Sequence[float],
  steps: int = STEPS,
  last: int = LAST,
) -> np.ndarray:
  """pq, scores, genuine: [P] -> FNMR [last + 1, F] at rejection k / steps, k = 0..last.

  scores are compared as float32 (as the engine holds them). NaN where no
  genuine or no impostor pair remains.
  """
  pq = np.asarray(pq)  # keys or qualities: only their order and ties are used
  genuine = np.asarray(genuine, bool)
  p = len(pq)
  gid, imp, gen = _score_groups(scores, genuine)
  fr = [Fraction(str(f)) for f in fmrs]
  by_quality = np.argsort(pq, kind="stable")
  out = np.full((last + 1, len(fr)), np.nan)
  dropped = 0
  for k in range(last + 1):
    upto = k * p // steps
    gone = by_quality[dropped:upto]
    np.subtract.at(imp, gid[gone[~genuine[gone]]], 1)
    np.subtract.at(gen, gid[gone[genuine[gone]]], 1)
    dropped = upto
    n_imp, n_gen = int(imp.sum()), int(gen.sum())
    if n_imp == 0 or n_gen == 0:
      continue
    present = np.flatnonzero((imp + gen) > 0)  # distinct remaining scores, descending
    imp_at = np.cumsum(imp)[present]  # kept impostors >= each candidate score
    gen_above = (np.cumsum(gen) - gen)[present]  # kept genuines > each candidate score
    for j, f in enumerate(fr):
      err = np.abs(imp_at * f.denominator - f.numerator * n_imp)
      t = len(err) - 1 - int(np.argmin(err[::-1]))  # the smallest score among minimisers
      out[k, j] = (n_gen - gen_above[t]) / n_gen  # genuine <= threshold: non-match
  return out


def fnmr_rejected_many(
  pqs,
  scores: np.ndarray,
  genuine: np.ndarray,
  fmrs: Sequence[float],
  steps: int = STEPS,
  last: int = LAST,
) -> np.ndarray:
  """`fnmr_rejected` of V variants of one pair list at once: pqs [V, P] -> [V, last + 1,
  F], the same numbers (the same integer counts, the same float64 division), each step
  one pass over all variants instead of V passes."""
  pqs = np.asarray(pqs)
  genuine = np.asarray(genuine, bool)
  v, p = pqs.shape
  gid, imp, gen = _score_groups(scores, genuine)
  n_groups = len(imp)
  imp, gen = np.tile(imp, (v, 1)), np.tile(gen, (v, 1))
  fr = [Fraction(str(f)) for f in fmrs]
  by_quality = np.argsort(pqs, axis=1, kind="stable")
  row = np.arange(v, dtype=np.int64)[:, None] * n_groups
  out = np.full((v, last + 1, len(fr)), np.nan)
  big = np.iinfo(np.int64).max
  dropped = 0
  for k in range(last + 1):
    upto = k * p // steps
    gone = by_quality[:, dropped:upto]
    cell = (row + gid[gone]).ravel()
    is_gen = genuine[gone].ravel()
    imp -= np.bincount(cell[~is_gen], minlength=v * n_groups).reshape(v, n_groups)
    gen -= np.bincount(cell[is_gen], minlength=v * n_groups).reshape(v, n_groups)
    dropped = upto
    n_imp, n_gen = imp.sum(1), gen.sum(1)
    ok = (n_imp > 0) & (n_gen > 0)
    present = (imp + gen) > 0  # the distinct remaining scores, descending
    imp_at = np.cumsum(imp, axis=1)  # kept impostors >= each candidate score
    gen_above = np.cumsum(gen, axis=1) - gen  # kept genuines > each candidate score
    for j, f in enumerate(fr):
      err = np.abs(imp_at * f.denominator - f.numerator * n_imp[:, None])
      err[~present] = big
      t = n_groups - 1 - np.argmin(err[:, ::-1], axis=1)  # the smallest score among minimisers
      got = (n_gen - gen_above[np.arange(v), t]) / np.where(ok, n_gen, 1)
      out[:, k, j] = np.where(ok, got, np.nan)  # genuine <= threshold: non-match
  return out


def summarize(fnmr: np.ndarray, steps: int = STEPS) -> dict[str, np.ndarray]:
  """fnmr: [K, F] from `fnmr_rejected` -> per FMR [F]: `fnmr` (none rejected),
  `fnmr_1pct`, `fnmr_5pct` (after rejecting the lowest 1% / 5%), `halve` (the
  smallest grid fraction whose FNMR is at most half the starting FNMR; NaN when
  not reached by the last grid rate or the start is NaN)."""
  start = fnmr[0]
  reached = fnmr <= start / 2
  first = np.argmax(reached, axis=0)
  halve = np.where(reached.any(axis=0), first / steps, np.nan)
  return {
    "fnmr": start,
    "fnmr_1pct": fnmr[steps // 100],
    "fnmr_5pct": fnmr[5 * steps // 100],
    "halve": halve,
  }


def erc_best(fnmr0: float, n_genuine: int, n_pairs: int, steps: int = STEPS, last: int = LAST):
  """The theoretical best ERC [last + 1]: each rejected pair a false non-match.

  Rejecting only genuine pairs leaves the impostors, and so the threshold, as
  they were: FNMR(k) = max(0, FN0 - D) / (G - D) with D = floor(k P / steps).
  A quality reaches it by ranking the false non-matches first, lowest comparison
  score first (the threshold, the lowest remaining score above the next impostor
  group, then stays where it was).
  """
  fn0 = round(fnmr0 * n_genuine)
  d = np.arange(last + 1) * n_pairs // steps
  left = np.maximum(n_genuine - d, 1)
  return np.maximum(fn0 - d, 0) / left

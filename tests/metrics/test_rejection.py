"""FNMR after rejection on the 1% grid against the engine's ERC and a literal loop."""

from fractions import Fraction

import numpy as np

from exfiqa_jax.evaluation.analysis import pairset
from exfiqa_jax.fusion.engine import evaluate_variant, variant_pair_quality
from exfiqa_jax.metrics.rejection import erc_best, fnmr_rejected, summarize


def _literal(pq, scores, genuine, fmr, drop):
  """docs/protocol.md §4 at one drop count, written out."""
  keep = np.argsort(pq, kind="stable")[drop:]
  imp = [scores[j] for j in keep if not genuine[j]]
  gen = [scores[j] for j in keep if genuine[j]]
  best_t, best_d = None, None
  for t in sorted(set(scores[keep].tolist())):
    d = abs(Fraction(sum(s >= t for s in imp), len(imp)) - Fraction(str(fmr)))
    if best_d is None or d < best_d:
      best_t, best_d = t, d
  return sum(s <= best_t for s in gen) / len(gen)


def _inputs(n=120, p=400, depth=4, seed=0):
  rng = np.random.default_rng(seed)
  exits = rng.normal(size=(n, depth)).astype(np.float32)
  a, b = rng.integers(0, n, p), rng.integers(0, n, p)
  labels = rng.random(p) < 0.5
  scores = np.round(rng.normal(labels * 0.8, 0.5), 2)  # rounded: many score ties
  return exits, a, b, labels, scores


def test_grid_fnmr_equals_engine_erc_and_literal_protocol():
  exits, a, b, labels, scores = _inputs()
  fmrs = (0.05, 1e-2)
  ps = pairset(exits, a, b, labels, scores, fmrs=fmrs, edc_fmr=0.05)
  mask = [True, False, True, True]
  pq = variant_pair_quality(ps, mask, "median", "zscore")
  fine = fnmr_rejected(pq, scores, labels, fmrs)
  assert fine.shape == (96, 2)
  want = evaluate_variant(ps, mask, "median", "zscore")["erc_fnmr"]
  np.testing.assert_allclose(fine[::5], want, atol=1e-7)
  for rule, norm, w in (("median", "zscore", None), ("weighted", "none", [0.5, 0.1, 0.3, 0.2])):
    once = evaluate_variant(ps, mask, rule, norm, w, pair_quality=True)  # one plan for both
    np.testing.assert_array_equal(
      once["pair_quality"], variant_pair_quality(ps, mask, rule, norm, w)
    )
    np.testing.assert_array_equal(
      once["erc_fnmr"], evaluate_variant(ps, mask, rule, norm, w)["erc_fnmr"]
    )
  s32 = scores.astype(np.float32)
  for k in (1, 3, 5, 17, 60):
    for j, f in enumerate(fmrs):
      assert fine[k, j] == _literal(pq, s32, labels, f, k * len(a) // 100)


def test_summary_reads_the_grid_and_the_best_curve_is_reached():
  fnmr = np.array([[0.2], [0.18], [0.15], [0.11], [0.1], [0.09]] + [[0.05]] * 90)
  s = summarize(fnmr)
  assert s["fnmr"][0] == 0.2 and s["fnmr_1pct"][0] == 0.18 and s["fnmr_5pct"][0] == 0.09
  assert s["halve"][0] == 0.04
  assert np.isnan(summarize(np.full((96, 1), 0.2))["halve"][0])
  # A quality that puts exactly the false non-matches first, lowest score first (so
  # the threshold, the lowest remaining score above the next impostor, stays), follows
  # the best curve.
  exits, a, b, labels, scores = _inputs(seed=1)
  fine0 = fnmr_rejected(np.zeros(len(a)), scores, labels, (0.05,))
  thr_fnmr = fine0[0, 0]
  s32 = scores.astype(np.float32)
  imp = np.sort(s32[~labels])[::-1]
  # the threshold of §4 at rate 0: the FNMR tells which genuines are non-matches
  order = np.argsort(s32[labels])
  n_fn = round(thr_fnmr * labels.sum())
  fn = np.zeros(len(a), bool)
  fn[np.flatnonzero(labels)[order[:n_fn]]] = True
  pq = np.where(fn, s32 - 10.0, 1.0)
  fine = fnmr_rejected(pq, scores, labels, (0.05,))
  best = erc_best(thr_fnmr, int(labels.sum()), len(a))
  upto = max(k for k in range(96) if k * len(a) // 100 <= n_fn)
  assert imp.size and upto > 3
  np.testing.assert_allclose(fine[: upto + 1, 0], best[: upto + 1], atol=1e-12)
  assert best[upto + 1 :].max() == 0

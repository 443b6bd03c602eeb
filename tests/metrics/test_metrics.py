"""ERC and EDC against the loop references of tests/reference_metrics.py."""

import jax
import numpy as np
import pytest

from exfiqa_jax.metrics import evaluate_quality, make_pairset
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference

FMRS = (0.1, 0.05, 1e-2, 1e-3)  # 0.05 and 1e-2 hit exact half-way ties at 150 impostors


def tied_data(seed, n=160, p=300, levels=7):
  """Integer-valued qualities and scores: many ties in both."""
  rng = np.random.default_rng(seed)
  quality = rng.integers(0, levels, n).astype(np.float32)
  a, b = rng.integers(0, n, p), rng.integers(0, n, p)
  genuine = np.zeros(p, int)
  genuine[rng.permutation(p)[: p // 2]] = 1
  scores = (rng.integers(-4, 6, p) + 3 * genuine) / 10
  return quality, a, b, genuine, scores.astype(np.float32)


_eval = jax.jit(evaluate_quality, static_argnames="curve")


@pytest.mark.parametrize("seed,pad", [(0, True), (1, False), (2, True)])
def test_erc_and_edc_match_references(seed, pad):
  quality, a, b, genuine, scores = tied_data(seed)
  ds = make_pairset(
    quality[:, None], a, b, genuine, scores, fmrs=FMRS, limits=(0.2, 0.3, 1.0), pad=pad
  )
  m = _eval(ds, ds.exits[:, 0], curve=True)
  pq = np.minimum(quality[a], quality[b])
  for f, fmr in enumerate(FMRS):
    fnmr, area = erc_reference(pq, scores, genuine, fmr)
    np.testing.assert_allclose(m.erc_fnmr[:, f], fnmr, atol=1e-6)
    np.testing.assert_allclose(m.erc_area[f], area, atol=1e-6)
  points, areas, best = edc_reference(
    pq, scores, genuine, edc_threshold(scores, genuine, 1e-3), (0.2, 0.3, 1.0)
  )
  np.testing.assert_allclose(m.edc.area, areas, atol=1e-6)
  np.testing.assert_allclose(m.edc.best, best, atol=1e-6)
  got = np.stack([m.edc.discard, m.edc.error], 1)[np.asarray(m.edc.point)]
  np.testing.assert_allclose(got, np.array(points[:-1]), atol=1e-6)


def test_continuous_data_and_starting_fnmr_threshold():
  rng = np.random.default_rng(5)
  n, p = 150, 300  # the buckets of tied_data: no new compilation
  q = rng.normal(size=n).astype(np.float32)
  a, b, genuine = rng.integers(0, n, p), rng.integers(0, n, p), rng.integers(0, 2, p)
  scores = (rng.normal(size=p) + genuine).astype(np.float32)
  ds = make_pairset(
    q[:, None], a, b, genuine, scores, fmrs=(1e-2, 1e-3), edc_fmr=None, edc_fnmr=0.3
  )
  m = _eval(ds, ds.exits[:, 0], curve=True)
  pq = np.minimum(q[a], q[b])
  thr = np.quantile(scores[genuine == 1].astype(np.float64), 0.3)
  _, areas, _ = edc_reference(pq, scores, genuine, thr, (0.2, 0.3))
  np.testing.assert_allclose(m.edc.area, areas, atol=1e-6)
  for f, fmr in enumerate((1e-2, 1e-3)):
    np.testing.assert_allclose(m.erc_area[f], erc_reference(pq, scores, genuine, fmr)[1], atol=1e-6)


def test_hand_computed_erc_threshold_rules():
  # 4 impostors, FMR 0.25 -> c* = 1: threshold is the top impostor score 0.9;
  # the genuine at exactly 0.9 is a non-match, the one at 0.95 a match.
  scores = np.array([0.9, 0.95, 0.9, 0.5, 0.4, 0.1], np.float32)
  genuine = np.array([1, 1, 0, 0, 0, 0])
  quality = np.arange(12, dtype=np.float32)[:, None]
  a, b = np.arange(6), np.arange(6, 12)
  m = _eval(make_pairset(quality, a, b, genuine, scores, fmrs=(0.25,), pad=False), quality[:, 0])
  assert float(m.erc_fnmr[0, 0]) == 0.5


@pytest.mark.parametrize(
  "change,message",
  [
    (
      lambda d: d.update(scores=np.r_[np.nan, d["scores"][1:]]),
      "comparison scores hold 1 rows with NaN",
    ),
    (
      lambda d: d.update(exits=np.where(np.arange(160)[:, None] == 7, np.inf, d["exits"])),
      "first at index 7",
    ),
    (lambda d: d.update(labels=np.ones_like(d["labels"])), "0 impostor"),
    (lambda d: d.update(labels=np.zeros_like(d["labels"])), "0 genuine"),
    (lambda d: d.update(b=np.r_[d["b"][:-1], 160]), "pair 299 names unknown image 160 in b"),
    (lambda d: d.update(a=d["a"][:-1]), "mismatched lengths"),
  ],
)
def test_bad_input_is_a_clear_error(change, message):
  quality, a, b, genuine, scores = tied_data(0)
  d = dict(exits=quality[:, None], a=a, b=b, labels=genuine, scores=scores)
  change(d)
  with pytest.raises(ValueError, match=message):
    make_pairset(d["exits"], d["a"], d["b"], d["labels"], d["scores"])

"""Exactness: every row of a full sweep equals the protocol computed from exact
rational fused scores, alone or in a sweep; the float32-rounding trap on purpose."""

from fractions import Fraction

import jax
import numpy as np
import pytest

from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.fusion.rules import RULES, fuse
from exfiqa_jax.fusion.subsets import subset_masks
from exfiqa_jax.fusion.sweep import sweep
from exfiqa_jax.metrics import evaluate_quality, make_pairset
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference

L, N, P = 12, 64, 240
U = 2.0**-23  # one float32 ulp at 1.0
FMRS, LIMITS = (0.05, 0.02), (0.2, 0.3)


def trap_data(seed=0):
  """Exit scores 1 + k ulp (k in 0..5): subset means that differ exactly round to
  equal float32 values (e.g. mean(1, 1 + ulp) = 1 + ulp / 2 -> 1); comparison
  scores with ties."""
  rng = np.random.default_rng(seed)
  exits = (1.0 + rng.integers(0, 6, (N, L)) * U).astype(np.float32)
  a, b = rng.integers(0, N, (2, P))
  genuine = np.arange(P) % 2
  scores = (rng.integers(0, 12, P) + 4 * genuine).astype(np.float32) / 16
  return exits, a, b, genuine, scores


def exact_fused(exits, mask, rule):
  """Fused scores of one variant as Fractions, straight from the protocol (§2)."""
  x = [[Fraction(float(v)) for v in row[mask]] for row in exits]
  w = [Fraction(int(i) + 1) for i in np.flatnonzero(mask)]
  if rule == "mean":
    return [sum(r) / len(r) for r in x]
  if rule == "weighted":
    return [sum(wi * v for wi, v in zip(w, r, strict=True)) / sum(w) for r in x]
  if rule == "median":
    s = [sorted(r) for r in x]
    k = len(s[0])
    return [(r[(k - 1) // 2] + r[k // 2]) / 2 for r in s]
  return [(min if rule == "min" else max)(r) for r in x]


def exact_ranks(exits, masks, rule):
  """Dense ranks [V, N] of the exact fused scores: integer numerators over a shared
  power-of-two denominator (every score is m 2^-23 here), in Python integers."""
  num = np.round(exits.astype(np.float64) / U).astype(object)  # exact: 2^23 + k
  w = np.arange(1, L + 1)
  out = np.empty((len(masks), len(exits)), np.float32)
  for j, m in enumerate(masks):
    sub = num[:, m]
    if rule == "mean":
      v = sub.sum(1)  # / k, shared
    elif rule == "weighted":
      v = (sub * w[m]).sum(1)  # / sum(w), shared
    elif rule == "median":
      s = np.sort(sub.astype(np.int64), 1)
      v = s[:, (m.sum() - 1) // 2] + s[:, m.sum() // 2]  # / 2, shared
    else:
      v = sub.min(1) if rule == "min" else sub.max(1)
    v = np.asarray(v, np.int64)
    out[j] = np.searchsorted(np.unique(v), v)
  return out


@pytest.fixture(scope="module")
def case():
  data = trap_data()
  ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
  return data, ps, sweep(ps)


def test_every_row_of_a_full_sweep_equals_the_exact_fusion(case):
  data, ps, t = case
  masks = subset_masks(L)
  assert len(t["subset"]) == 4095 * 5
  metrics = jax.jit(jax.vmap(lambda q: evaluate_quality(ps, q)))
  pad = np.zeros((0, ps.exits.shape[0] - N), np.float32)
  worst = 0.0
  for r, rule in enumerate(RULES):
    ranks = exact_ranks(data[0], masks, rule)
    m = metrics(np.c_[ranks, np.zeros((len(ranks), pad.shape[1]), np.float32)])
    rows = slice(r * 4095, (r + 1) * 4095)
    assert (t["rule"][rows] == rule).all()
    for col, want in [
      ("erc_area@0.05", m.erc_area[:, 0]),
      ("erc_area@0.02", m.erc_area[:, 1]),
      ("edc_area@0.2", m.edc.area[:, 0]),
      ("edc_area@0.3", m.edc.area[:, 1]),
    ]:
      np.testing.assert_array_equal(np.isnan(t[col][rows]), np.isnan(want))
      worst = max(worst, float(np.nanmax(np.abs(t[col][rows] - np.asarray(want)))))
  assert worst == 0.0  # 20,475 rows x 4 areas: bit for bit


def test_sampled_rows_equal_the_loop_reference_and_single_evaluation(case):
  (exits, a, b, genuine, scores), ps, t = case
  rng = np.random.default_rng(1)
  thr = edc_threshold(scores, genuine, 1e-3)
  for row in rng.choice(len(t["subset"]), 6, replace=False):
    mask = (int(t["subset"][row]) >> np.arange(L)) & 1 == 1
    rule = str(t["rule"][row])
    q = exact_fused(exits, mask, rule)
    pq = [min(q[i], q[j]) for i, j in zip(a, b, strict=True)]
    level = {v: i for i, v in enumerate(sorted(set(pq)))}
    rank = [level[v] for v in pq]  # exact order and ties as small integers
    for f, fmr in enumerate(FMRS):
      _, area = erc_reference(rank, scores, genuine, fmr)
      assert t[f"erc_area@{fmr:g}"][row] == pytest.approx(area, abs=1e-6, nan_ok=True)
    _, areas, _ = edc_reference(rank, scores, genuine, thr, LIMITS)
    np.testing.assert_allclose([t["edc_area@0.2"][row], t["edc_area@0.3"][row]], areas, atol=1e-6)
    one = evaluate_variant(ps, mask, rule)
    np.testing.assert_array_equal(
      one["erc_area"], [t["erc_area@0.05"][row], t["erc_area@0.02"][row]]
    )
    np.testing.assert_array_equal(one["edc_area"], [t["edc_area@0.2"][row], t["edc_area@0.3"][row]])


def test_float32_fusion_rounds_distinct_means_together_the_engine_does_not():
  exits = np.ones((4, 2), np.float32)
  exits[1, 1] = 1 + U  # mean 1 + ulp/2: not a float32, rounds to 1.0 (ties to even)
  exits[2] = [1 + U, 1 + U]  # mean 1 + ulp
  exits[3] = [1 + 2 * U, 1 + 2 * U]
  f32 = np.asarray(fuse(exits, np.ones(2, bool), "mean"))
  assert f32[0] == f32[1]  # the trap: distinct exactly, equal after float32 fusion
  # pair 0 (images 1, 3: quality 1 + ulp/2) and pair 1 (images 0, 3: quality 1) tie
  # in float32, where the stable order discards pair 0 first; exactly, pair 1 goes
  # first. Pair 0 is a genuine non-match, pair 1 a genuine match: at the discard
  # rates 0.25-0.45 the FNMR is 1 exactly, 0 after float32 fusion.
  a, b = np.array([1, 0, 2, 3]), np.array([3, 3, 3, 2])
  labels, scores = np.array([1, 1, 0, 0]), np.array([0.1, 0.9, 0.5, 0.4], np.float32)
  ps = make_pairset(exits, a, b, labels, scores, fmrs=(0.5,), limits=(0.5,), pad=False)
  exact = evaluate_variant(ps, [True, True], "mean")
  q = [Fraction(1), Fraction(2**24 + 1, 2**24), Fraction(1) + Fraction(U), None]
  pq = [q[1], q[0], q[2], q[2]]
  level = {v: i for i, v in enumerate(sorted(set(pq)))}
  want, _ = erc_reference([level[v] for v in pq], scores, labels, 0.5)
  f32_rank = np.minimum(f32[a], f32[b])  # what float32 fusion would rank by
  wrong, _ = erc_reference(f32_rank, scores, labels, 0.5)
  np.testing.assert_allclose(
    exact["erc_fnmr"][:, 0], want, atol=1e-7
  )  # NaN where one class is gone
  np.testing.assert_array_equal(want[5:10], 1.0)
  np.testing.assert_array_equal(wrong[5:10], 0.0)  # float32 fusion changes the answer

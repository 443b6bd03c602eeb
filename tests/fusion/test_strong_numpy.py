"""The strong numpy baseline of benchmarks/ (benchmarks/strong_numpy.py) against the
plain references on the exact rational fusion: tie-heavy data, every rule, windows
so short that the fallback (a wider impostor window) runs."""

import numpy as np
import pytest

from benchmarks.strong_numpy import StrongNumpySweep
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference
from tests.fusion.test_exact import exact_fused

L = 12
FMRS, LIMITS = (0.05, 1e-3), (0.2, 0.3)


def tie_heavy(seed, n=48, p=200, levels=6, distinct=14):
  """Exit scores on a coarse grid (many equal fused values), comparison scores with
  few distinct values (many score ties), genuine scores higher on average."""
  rng = np.random.default_rng(seed)
  exits = (rng.integers(0, levels, (n, L)) / 8 + rng.integers(0, 3, (n, 1)) / 4).astype(np.float32)
  a, b = rng.integers(0, n, (2, p))
  genuine = rng.random(p) < 0.5
  scores = (rng.integers(0, distinct, p) + 5 * genuine).astype(np.float32) / 16
  return exits, a, b, genuine.astype(int), scores


def reference_row(data, mask, rule):
  """(ERC areas [F], EDC areas [K]) of one variant by the loop references."""
  exits, a, b, genuine, scores = data
  q = exact_fused(exits, mask, rule)
  pq = [min(q[i], q[j]) for i, j in zip(a, b, strict=True)]
  level = {v: i for i, v in enumerate(sorted(set(pq)))}
  rank = [level[v] for v in pq]  # exact order and ties as small integers
  erc = [erc_reference(rank, scores, genuine, f)[1] for f in FMRS]
  thr = edc_threshold(scores, genuine, 1e-3)
  return np.array(erc), np.array(edc_reference(rank, scores, genuine, thr, LIMITS)[1])


@pytest.mark.parametrize("seed, window, side", [(0, 1, True), (1, 3, False), (2, 64, True)])
def test_strong_numpy_rows_equal_the_plain_references(seed, window, side):
  data = tie_heavy(seed)
  rng = np.random.default_rng(seed)
  masks = ((rng.choice(np.arange(1, 1 << L), 12, replace=False)[:, None] >> np.arange(L)) & 1) == 1
  eng = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, window=window, batch=5, side_tables=side)
  for rule in RULES:
    erc, edc = eng.run(masks, rule)
    for j, mask in enumerate(masks):
      want_erc, want_edc = reference_row(data, mask, rule)
      np.testing.assert_allclose(erc[j], want_erc, atol=1e-12, equal_nan=True)
      np.testing.assert_allclose(edc[j], want_edc, atol=1e-12)


def test_strong_numpy_window_batch_and_tables_do_not_change_a_row():
  data = tie_heavy(3, n=200, p=1500, levels=12, distinct=40)
  masks = ((np.arange(1, 1 << L)[::23, None] >> np.arange(L)) & 1) == 1
  wide = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, window=10**6, batch=64)
  short = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, window=2, batch=5, side_tables=False)
  # the EDC's q lowest genuine keys: from the candidates below a rate cut, or all of them
  whole = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, batch=7, buckets=64)
  whole.edc_by_level = False
  for rule in RULES:
    for x, y, z in zip(
      wide.run(masks, rule), short.run(masks, rule), whole.run(masks, rule), strict=True
    ):
      np.testing.assert_array_equal(x, y)
      np.testing.assert_array_equal(x, z)


def test_strong_numpy_qualities_too_wide_for_one_int64_key():
  # exit scores spanning about 50 bits of fixed point: weighted sums no longer pack
  # beside the pair index, so the rate cuts and the EDC order (quality, index) pairs
  data = list(tie_heavy(4, n=40, p=160))
  rng = np.random.default_rng(4)
  scale = np.float32(2.0) ** rng.integers(-31, 20, (40, 1)).astype(np.float32)
  data[0] = (data[0] + np.float32(0.125)) * scale
  masks = ((np.array([1, 7, 2048, 4095, 1365])[:, None] >> np.arange(L)) & 1) == 1
  eng = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, window=2, batch=2)
  wide = eng.qualities(np.array([4095]), "weighted")
  assert int(wide.max()) >= 1 << (62 - eng.bits)  # the wide paths run
  for rule in ("weighted", "max"):
    erc, edc = eng.run(masks, rule)
    for j, mask in enumerate(masks):
      want_erc, want_edc = reference_row(data, mask, rule)
      np.testing.assert_allclose(erc[j], want_erc, atol=1e-12, equal_nan=True)
      np.testing.assert_allclose(edc[j], want_edc, atol=1e-12)


def test_strong_numpy_sums_above_two_to_the_61():
  # exit scores over 55 bits of fixed point with most images near the top: weighted
  # sums of all 12 exits pass 2^61, so the rate levels order (quality, pair index) of
  # the pairs at the cuts directly (no composite int64 key), the bucket offsets are
  # built in three steps, and the EDC's all-genuine path orders (quality, pair index)
  data = list(tie_heavy(5, n=40, p=160))
  rng = np.random.default_rng(5)
  top = np.float32(2.0**18) * (1 + rng.integers(6, 8, (40, L)).astype(np.float32) / 8)
  top[:3] = np.float32(2.0**-36) * rng.integers(1, 4, (3, L)).astype(np.float32)
  data[0] = top
  masks = ((np.array([4095, 4094, 2730, 1, 3072])[:, None] >> np.arange(L)) & 1) == 1
  eng = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, window=2, batch=5)
  whole = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS, batch=3)
  whole.edc_by_level = False  # every genuine key: too wide for quality << 1 | error
  wide = eng.qualities(np.array([4095]), "weighted")
  assert int(np.median(wide)) >= 1 << 61
  for rule in ("weighted", "mean", "max"):
    for e in (eng, whole):
      erc, edc = e.run(masks, rule)
      for j, mask in enumerate(masks):
        want_erc, want_edc = reference_row(data, mask, rule)
        np.testing.assert_allclose(erc[j], want_erc, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(edc[j], want_edc, atol=1e-12)

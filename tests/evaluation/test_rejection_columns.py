"""The FNMR-after-rejection figures of an analysis: rejection.fnmr_rejected_many (all
variants in one pass) equals fnmr_rejected variant by variant, NaN cases included, and
analyse's row columns and curves (exits, paper fusions, best subsets, assessors, the
plotted variants) are those of each variant's own pair qualities."""

import numpy as np
import pytest

from exfiqa_jax.evaluation.analysis import analyse
from exfiqa_jax.fusion.engine import variant_pair_quality
from exfiqa_jax.fusion.subsets import mask_of
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.rejection import fnmr_rejected, fnmr_rejected_many, summarize


@pytest.mark.parametrize(
  "p, genuine_fraction, fmrs",
  [(600, 0.5, (1e-3, 1e-2)), (300, 0.4, (0.5, 0.3, 1.0)), (40, 0.97, (0.1,)), (50, 0.03, (0.2,))],
)
def test_many_variants_at_once_equal_one_at_a_time(p, genuine_fraction, fmrs):
  rng = np.random.default_rng(p)
  pqs = rng.integers(0, 25, (7, p))  # many quality ties
  scores = (rng.integers(0, 40, p) / 40).astype(np.float32)  # many score ties
  genuine = rng.random(p) < genuine_fraction
  want = np.stack([fnmr_rejected(q, scores, genuine, fmrs) for q in pqs])
  got = fnmr_rejected_many(pqs, scores, genuine, fmrs)
  np.testing.assert_array_equal(got, want)  # NaN where NaN
  if genuine_fraction > 0.9 or genuine_fraction < 0.1:
    assert np.isnan(want).any()  # a class runs out at some rejection rate
  assert not np.isnan(want[:, 0]).any()


def test_analysis_rows_and_curves_are_each_variants_own():
  rng = np.random.default_rng(3)
  n, p, depth = 120, 700, 4
  exits = rng.integers(0, 6, (n, depth)).astype(np.float32) / 5
  a, b = rng.integers(0, n, (2, p))
  labels = (rng.random(p) < 0.5).astype(int)
  comparison = (rng.integers(0, 30, p) + 8 * labels).astype(np.float32) / 40
  fmrs = (0.01, 0.05)
  metrics = dict(fmrs=fmrs, edc_fmr=1e-2, edc_limits=(0.2,))
  assessors = {"other": rng.random(n).astype(np.float32), "coarse": np.round(exits[:, 0], 1)}
  an = analyse(
    exits, a, b, labels, comparison, cost=np.arange(1, depth + 1), assessors=assessors,
    exits=(2,), **metrics,
  )  # fmt: skip
  ps = make_pairset(exits, a, b, labels, comparison, fmrs=fmrs, limits=(0.2,), edc_fmr=1e-2)
  checked = 0
  for r in an.rows:
    if r["kind"] == "assessor":
      q = np.asarray(assessors[r["variant"]], np.float32)[:, None]
      ps1 = make_pairset(q, a, b, labels, comparison, fmrs=fmrs, limits=(0.2,), edc_fmr=1e-2)
      pq = variant_pair_quality(ps1, [True], "mean", "none")
    else:
      mask = [i + 1 in r["exits"] for i in range(depth)]
      pq = variant_pair_quality(ps, mask, r["rule"], r["norm"])
    s = summarize(fnmr_rejected(pq, comparison, labels, fmrs))
    for j, f in enumerate(fmrs):
      for name in s:
        np.testing.assert_equal(r[f"{name}@{f:g}"], float(s[name][j]))
    checked += 1
  assert checked == len(an.rows) >= depth + 2 + 2  # exits, paper fusions, the assessors
  for c in an.curves.values():
    t = an.table
    mask = mask_of(int(t["subset"][c["row"]]), depth)
    pq = variant_pair_quality(ps, mask, str(t["rule"][c["row"]]), str(t["norm"][c["row"]]))
    np.testing.assert_array_equal(c["fine_fnmr"], fnmr_rejected(pq, comparison, labels, fmrs))
  assert len(an.curves) >= 3 and len(an.assessor_curves) == 2
  for name, c in an.assessor_curves.items():
    q = np.asarray(assessors[name], np.float32)[:, None]
    ps1 = make_pairset(q, a, b, labels, comparison, fmrs=fmrs, limits=(0.2,), edc_fmr=1e-2)
    pq = variant_pair_quality(ps1, [True], "mean", "none")
    np.testing.assert_array_equal(c["fine_fnmr"], fnmr_rejected(pq, comparison, labels, fmrs))

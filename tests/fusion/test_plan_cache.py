"""The one-variant plan cache of fusion/engine.py: a cached plan gives the numbers of a
fresh one, a plan of another pair set or rule is never reused, and the cache keeps no
pair set alive; the sweep's analysis (saved_sweep.analyse_inputs, without the scoring
stack) equals the job's, the second reading the first's plans."""

import gc
import weakref

import numpy as np

from exfiqa_jax.fusion import engine
from exfiqa_jax.metrics import make_pairset
from tests.fusion.test_strong_numpy import tie_heavy


def _fresh(ps, mask, rule):
  engine._PLANS.clear()
  return engine.evaluate_variant(ps, mask, rule)


def test_cached_plans_give_the_numbers_of_fresh_ones():
  data = tie_heavy(5, n=60, p=300)
  ps = make_pairset(*data, fmrs=(0.05,), limits=(0.2,))
  other = make_pairset(*tie_heavy(6, n=60, p=300), fmrs=(0.05,), limits=(0.2,))
  masks = [np.arange(12) == 3, np.arange(12) % 3 == 0, np.ones(12, bool)]
  want = {(j, r): _fresh(ps, m, r) for j, m in enumerate(masks) for r in ("mean", "median")}
  want_other = _fresh(other, masks[1], "mean")
  engine._PLANS.clear()
  for _ in range(2):  # the second pass reads every plan from the cache
    for (j, r), w in want.items():
      got = engine.evaluate_variant(ps, masks[j], r)
      for k in w:
        np.testing.assert_array_equal(got[k], w[k])
    got = engine.evaluate_variant(other, masks[1], "mean")
    np.testing.assert_array_equal(got["erc_area"], want_other["erc_area"])
    np.testing.assert_array_equal(got["edc_area"], want_other["edc_area"])
  assert 1 <= len(engine._PLANS) <= 4


def test_the_plan_cache_keeps_no_pair_set_alive():
  ps = make_pairset(*tie_heavy(7, n=60, p=300), fmrs=(0.05,), limits=(0.2,))
  engine._PLANS.clear()
  engine.variant_pair_quality(ps, np.ones(12, bool), "mean")
  assert len(engine._PLANS) == 1
  gone = weakref.ref(ps.exits)
  del ps
  gc.collect()
  assert gone() is None


def test_the_sweeps_analyse_inputs_equals_the_jobs():
  # exfiqa sweep analyses without importing the scoring stack (saved_sweep.analyse_inputs);
  # the job's evaluation.run.analyse_inputs must give the same Analysis
  from exfiqa_jax.evaluation import run, saved_sweep
  from exfiqa_jax.metrics.inputs import PairInputs

  exits, a, b, genuine, scores = tie_heavy(8, n=60, p=400)
  z = PairInputs(exits, a, b, genuine.astype(bool), scores, np.arange(1, 13.0))
  cfg = {
    "metrics": {"fmrs": (0.05, 0.01), "edc_limits": (0.25,)},
    "sweep": {"rules": ("mean", "min")},
    "report": {"exits": (3,)},
  }
  want, got = run.analyse_inputs(z, cfg), saved_sweep.analyse_inputs(z, cfg)
  assert want.table.keys() == got.table.keys() and want.select == got.select
  for k in want.table:
    np.testing.assert_array_equal(got.table[k], want.table[k])
  assert want.curves.keys() == got.curves.keys()
  for label, c in want.curves.items():
    for k in ("erc_area", "edc_area", "edc_discard", "edc_error", "fine_fnmr"):
      np.testing.assert_array_equal(got.curves[label][k], c[k])

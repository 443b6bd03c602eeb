"""The one-variant plan cache of fusion/engine.py: a cached plan gives the numbers of a
fresh one, a plan of another pair set or rule is never reused, and the cache keeps no
pair set alive; the sweep's analysis (saved_sweep.analyse_inputs, without the scoring
stack) equals the job's, the second reading the first's plans."""

import gc
import subprocess
import sys
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


def test_a_sweep_of_saved_inputs_imports_no_scoring_stack():
  # exfiqa sweep --inputs/--scores analyses through saved_sweep.analyse_inputs, the one the
  # job calls too; importing it must not pull in flax or orbax (about 1.5 s of start-up)
  code = (
    "import sys; import exfiqa_jax.evaluation.saved_sweep as s; import exfiqa_jax.cli.sweep;"
    "from exfiqa_jax.evaluation import run;"
    "assert run.analyse_inputs is s.analyse_inputs;"
    "print(sorted(m for m in ('flax', 'orbax', 'orbax.checkpoint') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "['flax', 'orbax', 'orbax.checkpoint']"  # run imports them
  code = (
    "import sys; import exfiqa_jax.evaluation.saved_sweep, exfiqa_jax.cli.sweep;"
    "print(sorted(m for m in ('flax', 'orbax', 'orbax.checkpoint') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"

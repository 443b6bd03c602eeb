"""The best subsets of a job are distinct results (issue 26: the demo's three best were
near-duplicates, two of them equal on every metric): a subset whose every metric equals
a better one's is left out of the best list."""

from __future__ import annotations

import numpy as np

from exfiqa_jax.evaluation.analysis import analyse, ranked
from exfiqa_jax.fusion.sweep import metric_columns, sweep
from exfiqa_jax.metrics import make_pairset


def _data():
  rng = np.random.default_rng(3)
  n, p = 120, 400
  exits = rng.normal(size=(n, 4)).astype(np.float32)
  exits[:, 1] = exits[:, 0]  # exits 1 and 2 equal: {1,k} and {2,k} fuse alike
  a, b = rng.integers(0, n, p), rng.integers(0, n, p)
  labels = rng.random(p) < 0.5
  scores = rng.normal(labels * (1.0 + 0.4 * (exits[a, 0] + exits[b, 0])), 0.6)
  return exits, a, b, labels, scores


def test_best_subsets_skip_results_equal_on_every_metric():
  exits, a, b, labels, scores = _data()
  ps = make_pairset(exits, a, b, labels, scores, fmrs=(0.1,), edc_fmr=0.1, limits=(0.2,))
  t = sweep(ps, ("mean", "median"), ("none",), [1.0, 2.0, 3.0, 4.0])
  cols = metric_columns(t)

  def numbers(rows):
    return [tuple(float(t[k][i]) for k in cols) for i in rows]

  plain = ranked(t, "edc_area@0.2", 6)
  assert len(set(numbers(plain))) < len(plain)  # the duplicates are real here
  best = ranked(t, "edc_area@0.2", 6, distinct_values=True)
  assert len(best) == 6 and len(set(numbers(best))) == 6
  assert best[0] == plain[0]  # the best row is still the best
  an = analyse(exits, a, b, labels, scores, cost=np.arange(1.0, 5.0), rules=("mean", "median"),
               fmrs=(0.1,), edc_fmr=0.1, edc_limits=(0.2,), top_k=4)  # fmt: skip
  rows = [r for r in an.rows if str(r["kind"]).startswith("best")]
  assert len(rows) == 4
  assert len({tuple(float(r[k]) for k in cols) for r in rows}) == 4


def test_the_overview_comes_before_the_curves_with_the_analysis_figures():
  """`analyse(overview=...)` hands over the sweep's Overview once, before any curve is
  evaluated; it holds the finished Analysis' table, front, grid and marked variants, so
  the figures started from it (`exfiqa sweep`) are those of the Analysis, byte for byte."""
  from exfiqa_jax.evaluation import analysis
  from exfiqa_jax.report.sweep import overview_figures, sweep_figures

  exits, a, b, labels, scores = _data()
  seen, curves = [], []
  evaluate = analysis.evaluate_variant

  def counted(*args, **kw):
    curves.append(len(seen))  # overviews seen before this curve
    return evaluate(*args, **kw)

  analysis.evaluate_variant = counted
  try:
    an = analyse(exits, a, b, labels, scores, cost=np.arange(1.0, 5.0), fmrs=(0.1,),
                 edc_fmr=0.1, edc_limits=(0.2,), exits=(2,), overview=seen.append)  # fmt: skip
  finally:
    analysis.evaluate_variant = evaluate
  assert len(seen) == 1 and curves == [1] * len(an.curves) and len(an.curves) == 4
  view = seen[0]
  assert view.table is an.table and view.select == an.select
  np.testing.assert_array_equal(view.front, an.front)
  np.testing.assert_array_equal(view.grid, an.pairs_grid)
  assert view.marks == {k: (c["variant"], c["row"]) for k, c in an.curves.items()}
  early = [f.result() for f in overview_figures(view, "x")]
  late = [f.result() for f in sweep_figures(an, "x")]
  assert [list(f) for f in early] == [
    ["x_pareto.png", "x_pareto.svg"],
    ["x_pairs.png", "x_pairs.svg"],
  ]
  assert early[0]["x_pareto.png"] == late[0]["x_pareto.png"]
  assert early[1]["x_pairs.png"] == late[1]["x_pairs.png"]

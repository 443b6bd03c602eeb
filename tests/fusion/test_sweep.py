"""Sweep tables, weight sweeps, learned weights, Pareto front, no recompilation."""

import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax.fusion.engine import evaluate_variant, score_chunk
from exfiqa_jax.fusion.learn import learn_weights, soft_edc_area
from exfiqa_jax.fusion.sweep import pareto_front, subset_masks, sweep
from exfiqa_jax.fusion.weights import power_law, simplex, sweep_weights
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops

L = 4


def pairs(seed, n=80, p=150):
  """Exit 1 tracks the latent utility that drives genuine scores; deeper exits are noisier."""
  rng = np.random.default_rng(seed)
  u = rng.normal(size=n)
  exits = (u[:, None] + rng.normal(size=(n, L)) * np.array([0.05, 1, 2, 3])).astype(np.float32)
  exits[:, 3] = np.round(exits[:, 3])  # ties
  a, b = rng.integers(0, n, p), rng.integers(0, n, p)
  genuine = (np.arange(p) % 2).astype(int)
  scores = np.where(genuine, 0.4 + 0.2 * np.minimum(u[a], u[b]), 0.0) + rng.normal(size=p) * 0.1
  return exits, a, b, genuine, np.round(scores, 2).astype(np.float32)


@pytest.fixture(scope="module")
def ps():
  return make_pairset(*pairs(0), fmrs=(1e-2, 1e-3))


def test_sweep_rows_equal_single_variant_evaluation(ps):
  cfg = ViTConfig(depth=L)
  t = sweep(ps, norms=("none", "rank"), cost=cfg)
  assert len(t["subset"]) == (2**L - 1) * 5 * 2
  for row in (0, 7, 30, 61, 99, 149):
    mask = (t["subset"][row] >> np.arange(L)) & 1 == 1
    one = evaluate_variant(ps, mask, t["rule"][row], t["norm"][row])
    np.testing.assert_allclose(
      [t["erc_area@0.01"][row], t["erc_area@0.001"][row]], one["erc_area"], atol=1e-6
    )
    np.testing.assert_allclose(
      [t["edc_area@0.2"][row], t["edc_area@0.3"][row]], one["edc_area"], atol=1e-6
    )
    assert t["deepest"][row] == np.flatnonzero(mask).max() + 1
    assert t["gflops"][row] == exit_gflops(cfg)[t["deepest"][row] - 1]


def test_second_dataset_in_the_same_bucket_does_not_recompile(ps):
  sweep(ps, rules=("median",))
  before = score_chunk._cache_size()
  other = make_pairset(*pairs(1, n=75, p=140), fmrs=(1e-2, 1e-3))  # still 80 images, 160 pairs
  assert other.exits.shape == ps.exits.shape and other.a.shape == ps.a.shape
  t = sweep(other, rules=("median", "max"))
  assert score_chunk._cache_size() == before
  assert np.isfinite(t["edc_area@0.2"]).all()


def test_weight_sweeps(ps):
  w = power_law(L, [0.0, 1.0, 2.0])
  np.testing.assert_allclose(w.sum(1), 1, rtol=1e-6)
  np.testing.assert_allclose(w[2] / w[2, 0], np.arange(1, L + 1) ** 2, rtol=1e-5)
  s = simplex(L, 13, seed=1)  # 16 rows in all: the chunk shape of the subset sweeps
  assert s.shape == (13, L) and np.allclose(s.sum(1), 1) and (s >= 0).all()
  t = sweep_weights(ps, np.r_[w, s], mask=[True, False, True, True])
  one = evaluate_variant(ps, [True, False, True, True], "weighted", weights=s[3])
  np.testing.assert_allclose(t["edc_area@0.2"][6], one["edc_area"][0], atol=1e-6)
  np.testing.assert_array_equal(t["weights"][6], s[3])


def test_soft_edc_area_tends_to_the_true_area():
  rng = np.random.default_rng(3)
  gq = rng.normal(size=300).astype(np.float32)
  err = rng.random(300) < 0.2
  order = np.argsort(gq)
  n, e = 300, err[order]
  true = sum(min(max(0.2 - k / n, 0), 1 / n) * e[k:].sum() / (n - k) for k in range(n))
  np.testing.assert_allclose(
    soft_edc_area(jnp.asarray(gq), jnp.asarray(err), 0.2, 1e-4), true, atol=1e-6
  )


def test_learned_weights_beat_depth_weights_on_held_out_pairs():
  exits, a, b, genuine, scores = pairs(5, n=400, p=800)
  r = learn_weights(exits, a, b, genuine, scores, steps=150, edc_fnmr=0.2, edc_fmr=None)
  assert r["weights"].argmax() == 0 and np.isclose(r["weights"].sum(), 1)
  assert r["test"]["edc_area"][0] < r["test_depth"]["edc_area"][0]


def test_pareto_front_is_the_lower_envelope():
  cost = np.array([3, 1, 2, 2, 1, 4, 3])
  metric = np.array([0.5, 0.9, 0.6, 0.4, 0.8, 0.45, 0.3])
  front = pareto_front(cost, metric)
  np.testing.assert_array_equal(front, [4, 3, 6])
  for i in range(len(cost)):  # every other row is dominated by a front row
    if i not in front:
      assert any(cost[j] <= cost[i] and metric[j] <= metric[i] for j in front)
  assert subset_masks(3).tolist()[:3] == [
    [True, False, False],
    [False, True, False],
    [True, True, False],
  ]


def test_accelerator_path_equals_the_cpu_path(ps, monkeypatch):
  """One program with lax.sort (what GPUs and TPUs run) gives the CPU path's table."""
  from exfiqa_jax.fusion import chunks, engine

  w = simplex(L, 5, seed=2)
  cpu = sweep(ps, norms=("none", "zscore")), sweep_weights(ps, w)
  one = evaluate_variant(ps, [True, True, False, True], "median")
  monkeypatch.setattr(chunks, "host_sort", lambda: False)
  monkeypatch.setattr(engine, "host_sort", lambda: False)
  xla = sweep(ps, norms=("none", "zscore")), sweep_weights(ps, w)
  for a, b in zip(cpu, xla, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  again = evaluate_variant(ps, [True, True, False, True], "median")
  for k in one:
    np.testing.assert_array_equal(one[k], again[k], err_msg=k)


@pytest.mark.parametrize("compiled", [True, False])
def test_pair_set_padded_like_a_larger_one_gives_the_same_numbers_without_tracing(
  compiled, monkeypatch
):
  """make_pairset(like=big): big's padded shapes, every number of evaluate_variant (areas
  bit for bit, curves) as the pair set's own, and the programs traced for big serve it;
  learn_weights(like=) gives the same weights and held-out areas at its limit (to float32
  rounding of the area sum). compiled: one variant through the compiled programs (what
  accelerators run), else the CPU backend's numpy route (engine.host_route)."""
  from exfiqa_jax.fusion import engine

  if compiled:
    monkeypatch.setattr(engine, "host_route", lambda ps: False)

  exits, a, b, genuine, scores = pairs(6, n=120, p=600)
  big = make_pairset(exits, a, b, genuine, scores, fmrs=(1e-2, 1e-3))
  half = slice(0, 230)
  own = make_pairset(exits, a[half], b[half], genuine[half], scores[half], fmrs=(1e-2, 1e-3))
  padded = make_pairset(
    exits, a[half], b[half], genuine[half], scores[half], fmrs=(1e-2, 1e-3), like=big
  )
  assert own.a.shape < big.a.shape and own.edc_width.shape[1] < big.edc_width.shape[1]
  for x, y in zip(padded, big, strict=True):
    assert np.shape(x) == np.shape(y)
  mask = np.array([True, False, True, True])
  for rule, w in (("weighted", None), ("median", None), ("weighted", [0.1, 0.2, 0.3, 0.4])):
    evaluate_variant(big, mask, rule, "none", w)  # traced for big's shapes

    def sizes():
      return [f._cache_size() for f in (engine._prepare_one, engine._prepare_one_keys)] + [
        engine._finish_one._cache_size()
      ]

    before = sizes()
    got = evaluate_variant(padded, mask, rule, "none", w)
    assert sizes() == before  # no new program for the padded pair set
    want = evaluate_variant(own, mask, rule, "none", w)
    for k in ("erc_fnmr", "erc_area", "edc_area", "edc_best", "edc_discard", "edc_error"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"{rule} {k}")
  with pytest.raises(ValueError, match="like= has 2 FMRs and 2 limits"):
    make_pairset(exits, a, b, genuine, scores, fmrs=(1e-2,), like=big)
  r0 = learn_weights(exits, a, b, genuine, scores, steps=20, fmrs=(1e-2, 1e-3))
  r1 = learn_weights(exits, a, b, genuine, scores, steps=20, fmrs=(1e-2, 1e-3), like=big)
  np.testing.assert_array_equal(r0["weights"], r1["weights"])
  for split in ("train", "test", "train_depth", "test_depth"):
    # the same exact counts; the float32 area of the limit is summed in a program of two
    # limits instead of one (XLA may contract its products and sums differently)
    np.testing.assert_allclose(r1[split]["edc_area"][0], r0[split]["edc_area"][0], rtol=1e-6)
    np.testing.assert_array_equal(r1[split]["erc_area"], r0[split]["erc_area"])


def test_soft_edc_area_over_the_error_rows_equals_the_whole_and_its_gradient():
  """rows= (the errors' indices): the same surrogate and gradient as the [n, n] form."""
  import jax

  rng = np.random.default_rng(4)
  gq = jnp.asarray(rng.normal(size=257).astype(np.float32))
  err = rng.random(257) < 0.3
  rows = jnp.asarray(np.flatnonzero(err))

  def whole(q):
    return soft_edc_area(q, jnp.asarray(err), 0.2, 0.05)

  def part(q):
    return soft_edc_area(q, None, 0.2, 0.05, rows)

  np.testing.assert_allclose(part(gq), whole(gq), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(part)(gq), jax.grad(whole)(gq), rtol=1e-4, atol=1e-7)
  assert float(jnp.abs(jax.grad(whole)(gq)).max()) > 1e-3  # a gradient that can differ

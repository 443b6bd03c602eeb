"""The curves of one variant on the CPU backend (engine.evaluate_variant's numpy route:
engine.host_fused, metrics.host_curves) against the compiled programs (_prepare_one,
the numpy class sort, _finish_one with curve=True), bit for bit: every rule and
normalisation, integer and float weights, rank-compressed keys, tie-heavy data, FMRs
that need many impostors, limits up to 1 and NaN rates; and the pair qualities."""

import jax
import numpy as np
import pytest

from exfiqa_jax.fusion import engine
from exfiqa_jax.fusion.rules import NORMS, RULES
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference

L = 6
KEYS = ("erc_fnmr", "erc_area", "edc_area", "edc_best", "edc_discard", "edc_error", "pair_quality")


def tie_data(seed, n=80, p=400, genuine_fraction=0.4):
  """Exit scores on a grid of 5 values (fused qualities tie often); comparison scores
  on a grid of 10 (long score-tie groups in both classes)."""
  rng = np.random.default_rng(seed)
  exits = rng.integers(0, 5, (n, L)).astype(np.float32) / 4
  a, b = rng.integers(0, n, (2, p))
  genuine = rng.random(p) < genuine_fraction
  scores = (rng.integers(0, 10, p) + 3 * genuine).astype(np.float32) / 10
  return exits, a, b, genuine.astype(int), scores


def both_routes(ps, mask, rule, norm="none", weights=None):
  """(the compiled route's dict, the numpy route's dict) of one variant, from fresh plans
  (either route on any backend)."""
  route = engine.host_route
  out = []
  try:
    for host in (False, True):
      engine._PLANS.clear()
      engine.host_route = lambda ps, host=host: host
      out.append(engine.evaluate_variant(ps, mask, rule, norm, weights, pair_quality=True))
  finally:
    engine.host_route = route
  return tuple(out)


def assert_same(want, got):
  assert set(got) == set(want) == set(KEYS)
  for k in KEYS:
    assert got[k].dtype == want[k].dtype, k
    assert got[k].shape == want[k].shape, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # NaN where NaN, every bit


MASKS = [
  np.eye(L, dtype=bool)[2],
  np.array([1, 1, 0, 0, 0, 0], bool),
  np.array([1, 0, 1, 1, 0, 1], bool),
  np.array([0, 1, 1, 1, 1, 1], bool),
  np.ones(L, bool),
]


def test_the_cpu_backend_takes_the_numpy_route():
  ps = make_pairset(*tie_data(0), fmrs=(0.05,), limits=(0.2,))
  assert engine.host_route(ps) == (jax.default_backend() == "cpu")  # accelerators: compiled
  cpu = jax.devices("cpu")[0]
  assert engine.host_route(jax.device_put(ps, cpu)) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize(
  "fmrs, limits",
  [((0.05, 0.01), (0.2, 0.3)), ((0.5, 0.3), (0.3, 0.99)), ((0.2, 0.001), (0.5, 1.0))],
)
def test_numpy_curves_equal_the_compiled_curves_bit_for_bit(fmrs, limits):
  # FMRs 0.5 and 0.3 need about half the impostors: far beyond any first window
  ps = make_pairset(*tie_data(1), fmrs=fmrs, limits=limits)
  for rule in RULES:
    for mask in MASKS:
      assert_same(*both_routes(ps, mask, rule))


@pytest.mark.parametrize("norm", NORMS)
def test_every_normalisation_and_float_weights(norm):
  ps = make_pairset(*tie_data(2), fmrs=(0.1, 0.02), limits=(0.25, 0.4))
  for rule in ("mean", "weighted", "median"):
    assert_same(*both_routes(ps, MASKS[2], rule, norm))
  w = np.array([0.3, 0.05, 0.2, 0.1, 0.25, 0.1], np.float32)  # float weights: float64 fusion
  assert engine._variant_plan(ps, MASKS[3], "weighted", norm, w)[1].integer is False
  assert_same(*both_routes(ps, MASKS[3], "weighted", norm, w))
  assert_same(*both_routes(ps, MASKS[4], "weighted", norm, np.arange(L, 0, -1)))


@pytest.mark.filterwarnings("ignore:exit scores span more than")
def test_rank_compressed_keys():
  # exit scores 60 binary orders of magnitude apart: their fixed-point sums do not pack
  # beside the pair index, so the fused keys are dense-ranked first (Plan.compress)
  exits, a, b, genuine, scores = tie_data(3)
  exits = exits * np.float32(2.0**30) + np.float32(2.0**-30)
  exits[:5] = np.float32(2.0**-30)
  ps = make_pairset(exits, a, b, genuine, scores, fmrs=(0.05, 0.2), limits=(0.2, 0.6))
  for rule in RULES:
    assert engine._variant_plan(ps, MASKS[2], rule, "none", None)[1].compress
    assert_same(*both_routes(ps, MASKS[2], rule))


def test_nan_rates_and_a_single_impostor():
  # one impostor among 40 pairs: at high discard rates no impostor (or no genuine)
  # remains, and those rates are NaN in both routes
  rng = np.random.default_rng(4)
  exits = rng.integers(0, 4, (30, L)).astype(np.float32)
  a, b = rng.integers(0, 30, (2, 40))
  genuine = np.ones(40, int)
  genuine[7] = 0
  scores = rng.integers(0, 5, 40).astype(np.float32) / 5
  ps = make_pairset(exits, a, b, genuine, scores, fmrs=(0.5, 1.0), limits=(0.3, 1.0))
  seen_nan = False
  for rule in RULES:
    for mask in MASKS:
      want, got = both_routes(ps, mask, rule)
      assert_same(want, got)
      seen_nan |= bool(np.isnan(got["erc_fnmr"]).any())
  assert seen_nan


def test_numpy_curves_equal_the_loop_references():
  # independent of both routes: the protocol's areas from the exact pair qualities
  data = tie_data(5)
  exits, a, b, genuine, scores = data
  fmrs, limits = (0.05, 0.02), (0.2, 0.3)
  ps = make_pairset(*data, fmrs=fmrs, limits=limits)
  thr = edc_threshold(scores, genuine, 1e-3)
  for rule in ("mean", "min", "median"):
    got = engine.evaluate_variant(ps, MASKS[2], rule, pair_quality=True)
    pq = got["pair_quality"]
    for f, fmr in enumerate(fmrs):
      fnmr, area = erc_reference(pq, scores, genuine, fmr)
      np.testing.assert_allclose(got["erc_area"][f], area, rtol=1e-6, atol=1e-7)
      np.testing.assert_allclose(got["erc_fnmr"][:, f], fnmr, rtol=1e-6, atol=1e-7)
    points, areas, best = edc_reference(pq, scores, genuine, thr, limits)
    np.testing.assert_allclose(got["edc_discard"], [d for d, _ in points], rtol=1e-6)
    np.testing.assert_allclose(got["edc_error"], [e for _, e in points], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["edc_area"], areas, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["edc_best"], best, rtol=1e-6, atol=1e-7)

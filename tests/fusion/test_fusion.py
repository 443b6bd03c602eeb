"""Fusion rules and normalisations against numpy, and their invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax.fusion.rules import NORMS, RULES, depth_weights
from exfiqa_jax.fusion.rules import fuse as _fuse
from exfiqa_jax.fusion.rules import normalize_exits as _normalize

L = 6
fuse = jax.jit(_fuse, static_argnames="rule")
normalize = jax.jit(_normalize, static_argnames="norm")


def _data(seed=0, n=50):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(n, L)).astype(np.float32)
  scores[:, 2] = np.round(scores[:, 2])  # ties inside an exit
  masks = rng.integers(0, 2, (12, L)).astype(bool)
  masks[:, 0] |= ~masks.any(1)
  return scores, masks


def _numpy_fuse(x, mask, rule, w):
  sub = x[:, mask]
  if rule == "weighted":
    return sub @ (w[mask] / w[mask].sum())
  return {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max}[rule](sub, axis=1)


@pytest.mark.parametrize("rule", RULES)
def test_rules_match_numpy_and_vmap_over_masks(rule):
  scores, masks = _data()
  w = np.arange(1, L + 1, dtype=np.float32)
  got = jax.vmap(lambda m: fuse(scores, m, rule))(masks)
  want = np.stack([_numpy_fuse(scores, m, rule, w) for m in masks])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_one_exit_subset_returns_that_exit(rule):
  scores, _ = _data(1)
  for i in range(L):
    np.testing.assert_allclose(
      fuse(scores, np.eye(L, dtype=bool)[i], rule), scores[:, i], rtol=1e-6, atol=1e-6
    )


def test_weights_are_normalised_over_the_subset():
  scores, masks = _data(2)
  weights = np.random.default_rng(3).uniform(0.1, 5, (len(masks), L)).astype(np.float32)
  f = jax.vmap(lambda x, m, w: fuse(x, m, "weighted", w), in_axes=(None, 0, 0))
  base = f(scores, masks, weights)
  np.testing.assert_allclose(f(scores, masks, weights * 7), base, rtol=1e-5, atol=1e-6)
  # weights summing to one over the subset commute with a shift of every score
  np.testing.assert_allclose(f(scores + 3.0, masks, weights), base + 3.0, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(depth_weights(4), [1, 2, 3, 4])


def test_normalisations():
  scores, _ = _data(4)
  scores[:, 4] = 2.5  # a constant exit
  valid = np.arange(len(scores)) < 40
  x = scores[valid]
  z = normalize(jnp.asarray(scores), "zscore", valid)[valid]
  np.testing.assert_allclose(z[:, :4], (x - x.mean(0))[:, :4] / x.std(0)[:4], rtol=1e-5, atol=1e-5)
  mm = normalize(scores, "minmax", valid)[valid]
  np.testing.assert_allclose(
    mm[:, :4], (x - x.min(0))[:, :4] / np.ptp(x, 0)[:4], rtol=1e-6, atol=1e-6
  )
  assert np.all(z[:, 4] == 0) and np.all(mm[:, 4] == 0)
  r = np.asarray(normalize(scores, "rank", valid))[valid]
  for j in range(L):  # order-preserving, ties kept, range [0, 1]
    lt, eq = x[:, j][:, None] < x[:, j][None, :], x[:, j][:, None] == x[:, j][None, :]
    assert np.all((r[:, j][:, None] < r[:, j][None, :]) == lt)
    assert np.all((r[:, j][:, None] == r[:, j][None, :]) == eq)
  assert r.min() == 0 and r.max() <= 1
  np.testing.assert_array_equal(normalize(scores, "none"), scores)
  assert NORMS == ("none", "zscore", "minmax", "rank")

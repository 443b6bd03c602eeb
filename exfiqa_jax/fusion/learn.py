"""Learned fusion weights: optax on a smooth surrogate of the EDC partial area.

Without ties the EDC partial area up to limit l over n genuine pairs with E
errors is  sum_k w_k E / (n - k)  -  sum_{errors e} T(rank_e),  with
w_k = clip(l - k/n, 0, 1/n) and T(r) = sum_{k > r} w_k / (n - k). The surrogate
replaces each error's rank among the genuine pairs by a sigmoid soft rank.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.fusion.rules import normalize_exits
from exfiqa_jax.metrics import make_pairset


def soft_edc_area(gq: jax.Array, error, limit: float, tau: float, rows=None) -> jax.Array:
  """gq: [n] pair qualities of the genuine pairs; error: [n] bool -> surrogate area.
  rows: [E] the indices where error is set, if known: only their soft ranks are
  computed (an [E, n] sigmoid instead of [n, n]; the other rows carry no weight)."""
  n = gq.shape[0]
  k = jnp.arange(n, dtype=jnp.float32)
  step = jnp.clip(limit - k / n, 0.0, 1.0 / n) / (n - k)
  tail = jnp.concatenate([jnp.cumsum(step[::-1])[::-1][1:], jnp.zeros(1)])  # T(r), r = 0..n-1
  scale = tau * jax.lax.stop_gradient(jnp.std(gq)) + 1e-12
  if rows is not None:
    rank = jnp.sum(jax.nn.sigmoid((gq[rows][:, None] - gq[None, :]) / scale), 1) - 0.5
    return rows.shape[0] * jnp.sum(step) - jnp.sum(jnp.interp(rank, k, tail))
  rank = jnp.sum(jax.nn.sigmoid((gq[:, None] - gq[None, :]) / scale), 1) - 0.5
  return jnp.sum(error) * jnp.sum(step) - jnp.sum(jnp.where(error, jnp.interp(rank, k, tail), 0.0))


@partial(jax.jit, static_argnames=("limit", "tau", "lr", "steps"))
def _fit(theta, values, ga, gb, rows, mask, limit, tau, lr, steps):
  """`steps` Adam steps on the surrogate from theta [L]: values [N, L] float32, ga, gb
  [G] the genuine pairs' images, rows [E] those of them that are errors, mask [L]
  bool. The data are arguments, not constants of the program: it is traced once per
  process and shape, and its compiled form is found in the persistent cache by shape."""
  opt = optax.adam(lr)

  def loss(theta):
    w = jax.nn.softmax(jnp.where(mask, theta, -jnp.inf))
    f = jnp.matmul(values, w, precision=jax.lax.Precision.HIGHEST)
    return soft_edc_area(jnp.minimum(f[ga], f[gb]), None, limit, tau, rows)

  def step(carry, _):
    theta, state = carry
    updates, state = opt.update(jax.grad(loss)(theta), state)
    return (optax.apply_updates(theta, updates), state), None

  return jax.lax.scan(step, (theta, opt.init(theta)), None, steps)[0][0]


def learn_weights(
  exits,
  a,
  b,
  labels,
  scores,
  mask=None,
  norm: str = "none",
  limit: float = 0.2,
  steps: int = 200,
  lr: float = 0.05,
  tau: float = 0.05,
  train_fraction: float = 0.5,
  seed: int = 0,
  like=None,
  **pairset_kw,
) -> dict:
  """Fits weights over the exits in mask (default all) on a random training split
  of the pairs; returns weights [L], the true metrics (`evaluate` dicts) of the
  learned and of the depth-weighted default on the held-out split, and on training.
  like: the PairSet of all the pairs, already evaluated in this process: the two
  splits take its padded shapes and its discard limits after `limit` (their areas
  follow at index 1..; at `limit` the same exact counts, the float32 area sum within
  rounding), so the programs traced for it evaluate them without tracing again."""
  a, b, labels, scores = map(np.asarray, (a, b, labels, scores))
  depth = np.shape(exits)[1]
  mask = np.ones(depth, bool) if mask is None else np.asarray(mask, bool)
  perm = np.random.default_rng(seed).permutation(len(a))
  cut = int(train_fraction * len(a))
  limits = (limit,) if like is None else (limit, *np.asarray(like.limits)[1:].tolist())
  parts = {
    name: make_pairset(
      exits, a[i], b[i], labels[i], scores[i], limits=limits, like=like, **pairset_kw
    )
    for name, i in (("train", perm[:cut]), ("test", perm[cut:]))
  }
  train = parts["train"]
  values = normalize_exits(train.exits, norm, train.image_valid)  # float32: training only
  g = np.flatnonzero(np.asarray(train.erc_genuine))
  ga, gb, err = train.a[g], train.b[g], train.edc_error[g]

  theta0 = jnp.log(jnp.arange(1, depth + 1, dtype=jnp.float32))
  rows = np.flatnonzero(np.asarray(err))  # the errors' soft ranks only
  theta = _fit(theta0, values, ga, gb, rows, mask, limit, tau, lr, steps)
  w = np.asarray(jax.nn.softmax(jnp.where(mask, theta, -jnp.inf)))

  def run(ps, weights):
    return evaluate_variant(ps, mask, "weighted", norm, weights)

  return {
    "weights": w,
    "test": run(parts["test"], w),
    "test_depth": run(parts["test"], None),
    "train": run(train, w),
    "train_depth": run(train, None),
  }

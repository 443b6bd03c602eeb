"""Learned fusion weights: Adam on a smooth surrogate of the EDC partial area.

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

from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.fusion.rules import normalize_exits
from exfiqa_jax.metrics import make_pairset


def interp_grid(x: jax.Array, fp: jax.Array) -> jax.Array:
  """`jnp.interp(x, arange(n), fp)` for finite x, operation for operation (the same
  values, and gradients in x) without its search: on the grid 0..n-1 the segment of x
  is floor(x), its width 1. (The search is a fifth of the learned weights' tracing.)"""
  n = fp.shape[0]
  i = jnp.clip(jnp.floor(x).astype(jnp.int32) + 1, 1, n - 1)
  lo = fp[i - 1]
  f = lo + (x - (i - 1).astype(x.dtype)) * (fp[i] - lo)
  f = jnp.where(x < 0, fp[0], f)
  return jnp.where(x > n - 1, fp[-1], f)


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
    return rows.shape[0] * jnp.sum(step) - jnp.sum(interp_grid(rank, tail))
  rank = jnp.sum(jax.nn.sigmoid((gq[:, None] - gq[None, :]) / scale), 1) - 0.5
  return jnp.sum(error) * jnp.sum(step) - jnp.sum(jnp.where(error, interp_grid(rank, tail), 0.0))


def adam_update(g, mu, nu, count, lr: float, b1=0.9, b2=0.999, eps=1e-8):
  """One step of Adam (Kingma and Ba), the arithmetic of the reference optimiser
  library's `adam` (its default b1, b2, eps; eps_root 0) operation for operation:
  -> (update to add to the parameters, mu, nu, count)."""
  mu = (1 - b1) * g + b1 * mu
  nu = (1 - b2) * (g**2) + b2 * nu
  count = jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count)
  mu_hat = mu / (1 - b1**count).astype(mu.dtype)
  nu_hat = nu / (1 - b2**count).astype(nu.dtype)
  update = mu_hat / (jnp.sqrt(nu_hat + 0.0) + eps)
  return (-1 * lr) * update, mu, nu, count


@partial(jax.jit, static_argnames=("norm", "limit", "tau", "lr", "steps"))
def _fit(exits, valid, ga, gb, rows, mask, depths, norm, limit, tau, lr, steps):
  """The learned weights [L]: `steps` Adam steps on the surrogate from the log depth
  weights (depths [L]: 1..L float32), softmax over the exits of mask [L] bool. exits
  [N, L] float32 and valid [N] (normalised by `norm` in the program), ga, gb [G] the
  genuine pairs' images, rows [E] those of them that are errors. One program for all
  of it (no eager operation, each of which would be traced and dispatched on its own);
  the data are arguments, not constants: it is traced once per process and shape, and
  its compiled form is found in the persistent cache by shape."""
  values = normalize_exits(exits, norm, valid)
  theta = jnp.log(depths)  # of an argument: a constant would be folded by another log

  def loss(theta):
    w = jax.nn.softmax(jnp.where(mask, theta, -jnp.inf))
    f = jnp.matmul(values, w, precision=jax.lax.Precision.HIGHEST)
    return soft_edc_area(jnp.minimum(f[ga], f[gb]), None, limit, tau, rows)

  def step(carry, _):
    theta, mu, nu, count = carry
    g = jax.grad(loss)(theta)
    update, mu, nu, count = adam_update(g, mu, nu, count, lr)
    return (theta + update, mu, nu, count), None

  zero = jnp.zeros_like(theta)
  theta = jax.lax.scan(step, (theta, zero, zero, jnp.zeros([], jnp.int32)), None, steps)[0][0]
  return jax.nn.softmax(jnp.where(mask, theta, -jnp.inf))


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
  g = np.flatnonzero(np.asarray(train.erc_genuine))  # host gathers: no eager programs
  ga, gb = np.asarray(train.a)[g], np.asarray(train.b)[g]
  rows = np.flatnonzero(np.asarray(train.edc_error)[g])  # the errors' soft ranks only
  depths = np.arange(1, depth + 1, dtype=np.float32)
  w = np.asarray(
    _fit(train.exits, train.image_valid, ga, gb, rows, mask, depths, norm, limit, tau, lr, steps)
  )

  def run(ps, weights):
    return evaluate_variant(ps, mask, "weighted", norm, weights)

  return {
    "weights": w,
    "test": run(parts["test"], w),
    "test_depth": run(parts["test"], None),
    "train": run(train, w),
    "train_depth": run(train, None),
  }

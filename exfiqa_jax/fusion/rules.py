"""Fusion of per-exit quality scores over an exit subset (docs/protocol.md §2), pure JAX.

Every function works on one subset mask and one weight vector; vmap over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from exfiqa_jax.fusion.subsets import code_of

RULES = ("mean", "weighted", "median", "min", "max")
NORMS = ("none", "zscore", "minmax", "rank")


def depth_weights(depth: int) -> jax.Array:
  """w_i = i for exits i = 1..depth: weight growing with block index -> [L]."""
  return jnp.arange(1, depth + 1, dtype=jnp.float32)


def normalize_exits(
  scores: jax.Array, norm: int | str, valid: jax.Array | None = None
) -> jax.Array:
  """Per-exit normalisation of scores [N, L] over the valid images [N] -> [N, L].

  zscore: (x - mean) / std; minmax: (x - min) / (max - min); a constant exit
  becomes 0 under both. rank: #{valid scores below x} / (n - 1) in [0, 1], equal
  scores equal values, order-preserving. `norm` is a name or an index into NORMS
  (a Python value: only that normalisation is traced and compiled).
  """
  norm = NORMS.index(norm) if isinstance(norm, str) else norm
  valid = jnp.ones(scores.shape[0], bool) if valid is None else valid
  v = valid[:, None]
  n = jnp.sum(valid).astype(jnp.float32)

  def zscore(x):
    mean = jnp.sum(jnp.where(v, x, 0), 0) / n
    std = jnp.sqrt(jnp.sum(jnp.where(v, (x - mean) ** 2, 0), 0) / n)
    return (x - mean) / jnp.where(std > 0, std, 1)

  def minmax(x):
    lo, hi = jnp.min(jnp.where(v, x, jnp.inf), 0), jnp.max(jnp.where(v, x, -jnp.inf), 0)
    return (x - lo) / jnp.where(hi > lo, hi - lo, 1)

  def rank(x):
    s = jnp.sort(jnp.where(v, x, jnp.inf), axis=0)
    below = jax.vmap(lambda col, q: jnp.searchsorted(col, q), in_axes=1, out_axes=1)(s, x)
    return below / jnp.maximum(n - 1, 1)

  return [lambda x: x, zscore, minmax, rank][norm](scores)


def fuse(
  scores: jax.Array,
  mask: jax.Array,
  rule: int | str,
  weights: jax.Array | None = None,
  order: jax.Array | None = None,
) -> jax.Array:
  """Fused quality [N] of scores [N, L] over the exits where mask [L] is True.

  rule: a name or index into RULES. weighted: weights [L] (default depth_weights)
  renormalised over the subset; median: mean of the two middle values for an even
  count. order: [N, L] argsort of each row, computed when not given (pass it to
  reuse it across masks).
  """
  rule = RULES.index(rule) if isinstance(rule, str) else rule
  scores, mask = jnp.asarray(scores), jnp.asarray(mask, bool)
  weights = depth_weights(scores.shape[1]) if weights is None else weights

  def mean(w):
    w = jnp.where(mask, w, 0)
    return scores @ (w / jnp.sum(w))

  # a loop over the L exits of elementwise [N] accumulators: no [L, N] masked copy
  # per variant, and vmapped over masks it fuses into one pass over the images
  cols = scores.T  # [L, N]

  def extreme(op, fill):
    acc = jnp.full(cols.shape[1:], fill, cols.dtype)
    for i in range(cols.shape[0]):
      acc = op(acc, jnp.where(mask[i], cols[i], fill))
    return acc

  def median():
    o = (jnp.argsort(scores, axis=1) if order is None else order).T
    vals = jnp.take_along_axis(cols, o, 0)  # [L, N] each image's scores ascending
    k = jnp.sum(mask, dtype=jnp.int32)
    bits = code_of(mask, jnp)
    count = picked = jnp.zeros(cols.shape[1:], jnp.int32)
    total = jnp.zeros(cols.shape[1:], cols.dtype)
    for j in range(o.shape[0]):
      m = (bits >> o[j]) & 1  # is the j-th smallest score of each image selected
      count = count + m
      pick = (m > 0) & ((count == (k + 1) // 2) | (count == k // 2 + 1))
      total, picked = total + jnp.where(pick, vals[j], 0), picked + pick
    return total / picked

  return jax.lax.switch(
    rule,
    [
      lambda: mean(jnp.ones_like(weights)),
      lambda: mean(weights),
      median,
      lambda: extreme(jnp.minimum, jnp.inf),
      lambda: extreme(jnp.maximum, -jnp.inf),
    ],
  )

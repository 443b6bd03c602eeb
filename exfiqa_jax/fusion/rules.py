"""Fusion of per-exit quality scores over an exit subset (docs/protocol.md §2), pure JAX.

`fuse_integers` is what the engine evaluates: exact keys of the fused scores
from exact integer exit values. `fuse` and `normalize_exits` are the plain
float32 definitions (learned weights train through them; tests compare with
them). Every function works on one subset mask and one weight vector; vmap over them.
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
    return jnp.matmul(scores, w / jnp.sum(w), precision=jax.lax.Precision.HIGHEST)

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


def fuse_integers(fusion, mask: jax.Array, rule: int | jax.Array, weights: jax.Array) -> jax.Array:
  """Exact fused keys [N] int64 from exact non-negative integer exit values
  (docs/protocol.md §2; see exfiqa_jax.fusion.exact): one subset mask [L], integer
  weights [L]. fusion: `exfiqa_jax.fusion.engine.Fusion` (columns, ascending,
  order [L, N]; optional half-subset tables).

  mean: sum over the subset; weighted: sum of w_i x_i; median: the middle value
  (odd count) or the sum of the two middle values (even); min, max. A divisor
  shared by all images of a variant is left out: the order and ties are those of
  the fused scores. With tables (lo [2^h, N], hi [2^(L-h), N]: the rule's
  aggregate of every subset of the first h exits and of the others, built once),
  mean, weighted, min and max cost one operation per image: combine row
  (code mod 2^h) of lo with row (code >> h) of hi. `rule` may be traced (one
  program serves all five). Call inside `jax.enable_x64(True)`.
  """
  cols = fusion.columns  # [L, N]
  depth = cols.shape[0]
  big = jnp.iinfo(jnp.int64).max
  w = jnp.where(mask, weights.astype(jnp.int64), 0)
  code = code_of(mask, jnp)

  def loop(op, init, term):
    acc = jnp.full(cols.shape[1:], init, jnp.int64)
    for i in range(depth):
      acc = op(acc, term(i))
    return acc

  def direct(r):
    return [
      lambda: loop(jnp.add, 0, lambda i: jnp.where(mask[i], cols[i], 0)),
      lambda: loop(jnp.add, 0, lambda i: w[i] * cols[i]),
      median,
      lambda: loop(jnp.minimum, big, lambda i: jnp.where(mask[i], cols[i], big)),
      lambda: loop(jnp.maximum, -1, lambda i: jnp.where(mask[i], cols[i], -1)),
    ][r]

  def tabled(op):
    h = (fusion.lo.shape[0] - 1).bit_length()
    return lambda: op(fusion.lo[code & ((1 << h) - 1)], fusion.hi[code >> h])

  def median():
    k = jnp.sum(mask, dtype=jnp.int32)
    count = jnp.zeros(cols.shape[1:], jnp.int32)
    acc = jnp.zeros(cols.shape[1:], jnp.int64)
    for j in range(depth):
      sel = (code >> fusion.order[j]) & 1  # is the j-th smallest score of each image selected
      count = count + sel
      pick = (sel > 0) & ((count == (k + 1) // 2) | (count == k // 2 + 1))
      acc = acc + jnp.where(pick, fusion.ascending[j], 0)
    return acc

  if fusion.lo is not None:
    branches = [tabled(jnp.add), tabled(jnp.add), median, tabled(jnp.minimum), tabled(jnp.maximum)]
  else:
    branches = [direct(r) for r in range(5)]
  return jax.lax.switch(rule, branches)

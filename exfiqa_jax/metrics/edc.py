"""EDC of ISO/IEC 29794-1 (docs/protocol.md §5) over genuine comparisons, pure JAX."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Edc(NamedTuple):
  """EDC of one quality ranking. Curve arrays are per position of the quality order.

  area, best: [K] partial area up to each discard limit, and the area under the
    theoretical best curve (starting error e0: e0^2/2 - max(0, e0 - limit)^2/2).
  discard, error: [P] discard fraction and error fraction of a curve point.
  point: [P] bool, a curve point (the first genuine pair of a quality-tie group);
    the curve ends with a further point (1, 0).
  """

  area: jax.Array
  best: jax.Array
  discard: jax.Array
  error: jax.Array
  point: jax.Array


def prefix_sum(x: jax.Array, block: int = 128) -> jax.Array:
  """Inclusive prefix sum of int32 x [P]: block sums by matmul, exact in int32."""
  n = x.shape[0]
  s = min(block, n)
  nb = -(-n // s)
  y = jnp.pad(x, (0, nb * s - n)).reshape(nb, s)
  inner = (y.astype(jnp.float32) @ jnp.triu(jnp.ones((s, s), jnp.float32))).astype(jnp.int32)
  offset = jnp.cumsum(inner[:, -1]) - inner[:, -1]
  return (inner + offset[:, None]).reshape(-1)[:n]


def edc(
  order: jax.Array, pq: jax.Array, genuine: jax.Array, error: jax.Array, limits: jax.Array
) -> Edc:
  """order: [P] pairs by ascending pair quality pq [P]; genuine, error: [P] bool in
  pair-list order (error: genuine below the fixed threshold); limits: [K].

  Genuine comparisons of equal pair quality are discarded together; the error
  fraction counts errors over the remaining genuine comparisons; the partial
  area is the step-wise area of the curve up to each limit.
  """
  g, e, q = genuine[order], error[order], pq[order]
  new = jnp.concatenate([jnp.ones(1, bool), q[1:] != q[:-1]])
  g, e = g.astype(jnp.int32), e.astype(jnp.int32)
  g_before, e_before = prefix_sum(g) - g, prefix_sum(e) - e
  # counts before each position's tie group, read at the group's first position
  first = jax.lax.associative_scan(jnp.maximum, jnp.where(new, jnp.arange(q.shape[0]), 0))
  g_start, e_start = g_before[first], e_before[first]
  n, n_err = jnp.sum(genuine).astype(jnp.float32), jnp.sum(error).astype(jnp.float32)
  frac = (n_err - e_start) / (n - g_start)
  k = g_before.astype(jnp.float32)  # a genuine pair spans discard fractions [k, k + 1) / n
  width = jnp.clip(limits[:, None] - k / n, 0.0, 1.0 / n)
  area = jnp.sum(jnp.where(g > 0, width * frac, 0.0), axis=1)
  e0 = n_err / n
  best = e0**2 / 2 - jnp.maximum(e0 - limits, 0.0) ** 2 / 2
  return Edc(area, best, g_start / n, frac, (g > 0) & (g_before == g_start))

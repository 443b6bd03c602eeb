"""EDC of ISO/IEC 29794-1 (docs/protocol.md §5) over genuine comparisons, pure JAX."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Edc(NamedTuple):
  """EDC of one quality ranking. Curve arrays are per genuine pair in quality order
  (None where only the areas were asked for).

  area, best: [K] partial area up to each discard limit, and the area under the
    theoretical best curve (starting error e0: e0^2/2 - max(0, e0 - limit)^2/2).
  discard, error: [G] discard fraction and error fraction of a curve point.
  point: [G] bool, a curve point (the first genuine pair of a quality-tie group);
    the curve ends with a further point (1, 0).
  """

  area: jax.Array
  best: jax.Array
  discard: jax.Array | None = None
  error: jax.Array | None = None
  point: jax.Array | None = None


def prefix_sum(x: jax.Array, block: int = 128) -> jax.Array:
  """Inclusive prefix sum of int32 0/1 x [P]: block sums by a float32 matmul at
  HIGHEST precision, exact (block sums <= 128), then a short cumsum of blocks."""
  n = x.shape[0]
  s = min(block, n)
  nb = -(-n // s)
  y = jnp.pad(x, (0, nb * s - n)).reshape(nb, s)
  tri = jnp.triu(jnp.ones((s, s), jnp.float32))
  inner = jnp.matmul(y.astype(jnp.float32), tri, precision=jax.lax.Precision.HIGHEST).astype(
    jnp.int32
  )
  offset = jnp.cumsum(inner[:, -1]) - inner[:, -1]
  return (inner + offset[:, None]).reshape(-1)[:n]


def tree_sum(x: jax.Array) -> jax.Array:
  """Sum over the last axis as a fixed pairwise tree of elementwise adds: the same
  float32 rounding in every program (a reduction's order depends on the batch
  shape XLA compiles it for)."""
  n = 1 << max(0, (x.shape[-1] - 1).bit_length())
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
  while x.shape[-1] > 1:
    half = x.shape[-1] // 2
    x = x[..., :half] + x[..., half:]
  return x[..., 0]


def _groups(gen_keys: jax.Array, error: jax.Array, shift: int, n_err):
  """gen_keys: [Q] the genuine pairs' keys ascending -> (first [Q] index of each
  one's quality-tie group, frac [Q] error fraction remaining at it, new [Q])."""
  q = gen_keys >> shift
  e = error[(gen_keys & ((1 << shift) - 1)).astype(jnp.int32)].astype(jnp.int32)
  new = jnp.concatenate([jnp.ones(1, bool), q[1:] != q[:-1]])
  e_before = prefix_sum(e) - e
  first = jax.lax.associative_scan(jnp.maximum, jnp.where(new, jnp.arange(q.shape[0]), 0))
  return first, e_before[first], new


def edc(gen_keys: jax.Array, error: jax.Array, n_gen, width: jax.Array, limits, shift: int) -> Edc:
  """Partial areas from the Q lowest genuine keys: gen_keys [>= Q] ascending;
  error: [P] genuine below the fixed threshold, by pair index; n_gen: [];
  width: [K, Q] discard width of the k-th genuine pair up to each limit [K];
  shift: the index bits of the keys.

  Genuine comparisons of equal pair quality are discarded together; the error
  fraction counts errors over the remaining genuine comparisons; the partial
  area is the step-wise area of the curve up to each limit.
  """
  n_err = jnp.sum(error).astype(jnp.float32)
  first, e_start, _ = _groups(gen_keys[: width.shape[1]], error, shift, n_err)
  n = n_gen.astype(jnp.float32)
  real = jnp.arange(first.shape[0]) < n_gen  # padding keys: no width, no 0 / 0
  frac = jnp.where(real, (n_err - e_start) / jnp.where(real, n - first, 1.0), 0.0)
  # products of two float32 exact in float64 and summed there: no fused multiply-add
  # can change a bit, so the host areas (metrics.host) give the same float32 numbers
  area = tree_sum(width.astype(jnp.float64) * frac.astype(jnp.float64)).astype(jnp.float32)
  e0 = n_err / n
  best = e0**2 / 2 - jnp.maximum(e0 - limits, 0.0) ** 2 / 2
  return Edc(area, best)


def edc_curve(gen_keys: jax.Array, error: jax.Array, n_gen, shift: int):
  """The whole curve -> (discard [G], error [G], point [G]) (see `Edc`)."""
  n_err = jnp.sum(error).astype(jnp.float32)
  first, e_start, new = _groups(gen_keys, error, shift, n_err)
  n = n_gen.astype(jnp.float32)
  point = new & (jnp.arange(gen_keys.shape[0]) < n_gen)
  return first / n, (n_err - e_start) / jnp.where(point, n - first, 1.0), point

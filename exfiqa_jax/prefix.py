"""Exact integer prefix sums without a scan (XLA's CPU scans are slow to run and
to compile), for the metrics' per-variant counts."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def prefix_sum(x: jax.Array, block: int = 128) -> jax.Array:
  """Inclusive prefix sums of int32 x [..., P] along the last axis -> [..., P].

  Sums inside blocks of `block` by a float32 matmul with a triangular matrix, block
  offsets by the same function on the block totals: exact while totals stay below
  2^24 (every count here is at most the number of pairs).
  """
  n = x.shape[-1]
  if n <= 1:
    return x
  s = min(block, n)
  nb = -(-n // s)
  y = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, nb * s - n)]).reshape(*x.shape[:-1], nb, s)
  inner = (y.astype(jnp.float32) @ jnp.triu(jnp.ones((s, s), jnp.float32))).astype(jnp.int32)
  offset = prefix_sum(inner[..., -1], block) - inner[..., -1]
  return (inner + offset[..., None]).reshape(*x.shape[:-1], -1)[..., :n]

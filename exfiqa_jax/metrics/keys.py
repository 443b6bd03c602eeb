"""Unique int64 quality keys of pairs, and their sort (docs/protocol.md §2-3).

A pair's key is `quality << b | pair index` (qualities >= 0) with b = the bits of the
padded pair count: the order of keys is the order of pair qualities, ties in
pair-list order (the stable sort of §3), and no two pairs share a key, so one
plain sort of int64 gives the stable order. Qualities are exact integers
(fixed-point fused scores, ranks, or order-preserving float keys); where their
range would not fit beside the index bits they are first replaced by their
dense rank among the images, which keeps order and ties.

The sort runs where it is fastest: on the CPU backend numpy's int64 sort
(7x faster than the compiled sort there; the engine calls it between two
programs, `sort_keys(method="host")` inside one through a callback), elsewhere
`lax.sort`. All give the same sorted keys: keys are unique.

All 64-bit values live inside `jax.enable_x64(True)` (the engine's entry points).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.metrics.bits import index_bits

KEY_MAX = np.iinfo(np.int64).max  # padding: sorts after every real key


def fits(span: int, pairs: int) -> bool:
  """Whether qualities spanning `span` (max - min) pack beside the index below KEY_MAX."""
  return span < (1 << (63 - index_bits(pairs))) - 1


def float_keys(q: jax.Array) -> jax.Array:
  """Order-preserving keys in [0, 2^32) of float32 qualities [N] as int64 (-0.0 ties
  with 0.0; no NaN)."""
  q = jnp.where(q == 0, jnp.float32(0), q.astype(jnp.float32))
  i = jax.lax.bitcast_convert_type(q, jnp.int32)
  return (i ^ ((i >> 31) & 0x7FFFFFFF)).astype(jnp.int64) + (1 << 31)


def dense_rank(f: jax.Array, valid: jax.Array, sort: str) -> jax.Array:
  """f: [N] int64 -> #{valid images with a lower value} [N] int64: same order and
  ties among the valid images, values below N (one sort of N, a binary search)."""
  s = sort_keys(jnp.where(valid, f, KEY_MAX), method=sort)
  return jnp.searchsorted(s, f, side="left").astype(jnp.int64)


def pair_keys(f: jax.Array, a: jax.Array, b: jax.Array, sid: jax.Array, valid):
  """f: [N] int64 image qualities >= 0 whose range `fits`; a, b, sid, valid: [P]
  -> unique int64 keys [P] of min(f[a], f[b]) (padding: KEY_MAX)."""
  shift = index_bits(a.shape[0])
  pq = jnp.minimum(f[a], f[b])
  return jnp.where(valid, (pq << shift) | sid.astype(jnp.int64), KEY_MAX)


def _numpy_sort(*words):
  # int64 crosses the callback as uint32 word pairs [..., n, 2]: a callback's int64
  # values are narrowed to int32 when the caller runs without x64
  out = []
  for w in words:
    x = np.ascontiguousarray(w).view(np.int64)[..., 0]
    out.append(np.sort(x, axis=-1)[..., None].view(np.uint32))
  return tuple(out)


def sort_keys(*xs: jax.Array, method: str = "auto"):
  """Each int64 array sorted along its last axis (one array in, one out).

  method: "host" numpy through a callback, "xla" lax.sort, "auto" host on the
  CPU backend. Inside vmap the callback takes the whole batch at once."""
  if method == "auto":
    method = "host" if jax.default_backend() == "cpu" else "xla"
  if method == "host":
    words = jax.pure_callback(
      _numpy_sort,
      tuple(jax.ShapeDtypeStruct((*x.shape, 2), jnp.uint32) for x in xs),
      *(jax.lax.bitcast_convert_type(x, jnp.uint32) for x in xs),
      vmap_method="expand_dims",
    )
    out = tuple(jax.lax.bitcast_convert_type(w, jnp.int64) for w in words)
  else:
    out = tuple(jnp.sort(x, axis=-1) for x in xs)
  return out[0] if len(xs) == 1 else out

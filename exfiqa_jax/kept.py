"""Kept-pair counts of one variant at every ERC discard rate, from block histograms.

Positions are score-order positions; a pair is kept at rates 0..R (R = -1:
padding, never kept). Each query reads one block of S positions plus per-block
counts, so a variant costs O(P) and not O(20 P).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RATES = 20  # discard rates i / 20, i = 0..19; the last is 0.95, no point at 1


class Kept(NamedTuple):
  """Blocked view of one variant: keep [nb, S] rate index R (-1: padding),
  cls [2, nb, S] impostor / genuine, before [2, nb + 1, 20] kept counts before each
  block, top [nb] largest R in each block."""
  keep: jax.Array
  cls: jax.Array
  before: jax.Array
  top: jax.Array


def blocked(impostor: jax.Array, genuine: jax.Array, keep: jax.Array) -> Kept:
  """impostor, genuine: [P] bool; keep: [P] int32 rate index R per position."""
  n = keep.shape[0]
  s = min(1 << max(3, (n.bit_length() - 2) // 2), n)  # about sqrt(P / 4): 32 at 6,144 pairs
  nb = -(-n // s)
  p = nb * s  # whole blocks; the extra positions are never kept and of neither class
  keep = jnp.pad(keep, (0, p - n), constant_values=-1)
  cls = jnp.pad(jnp.stack([impostor, genuine]).astype(jnp.int32), ((0, 0), (0, p - n)))
  hist = jnp.zeros((2, nb, RATES + 1), jnp.int32).at[:, jnp.arange(p) // s, keep + 1].add(cls)
  per_block = jnp.cumsum(hist[..., ::-1], -1)[..., ::-1][..., 1:]  # kept at rate r: R >= r
  before = jnp.concatenate([jnp.zeros((2, 1, RATES), jnp.int32), jnp.cumsum(per_block, 1)], 1)
  k = keep.reshape(nb, s)
  return Kept(k, cls.astype(bool).reshape(2, nb, s), before, jnp.max(k, 1))


def count(kb: Kept, c: int, r, x):
  """#{kept class-c pairs at positions < x} at rate r."""
  s = kb.keep.shape[1]
  blk = x // s
  row = jnp.minimum(blk, kb.keep.shape[0] - 1)
  inside = (jnp.arange(s) < x - blk * s) & kb.cls[c, row] & (kb.keep[row] >= r)
  return kb.before[c, blk, r] + jnp.sum(inside, dtype=jnp.int32)


def nth(kb: Kept, c: int, r, n):
  """Position of the n-th (1-based) kept class-c pair at rate r (n <= their count)."""
  s = kb.keep.shape[1]
  blk = jnp.sum(kb.before[c, 1:, r] < n)
  row = jnp.minimum(blk, kb.keep.shape[0] - 1)
  run = kb.before[c, row, r] + jnp.cumsum(kb.cls[c, row] & (kb.keep[row] >= r))
  return row * s + jnp.sum(run < n)


def last(kb: Kept, r, x):
  """Largest kept position < x at rate r (-1: none)."""
  s, nb = kb.keep.shape[1], kb.keep.shape[0]
  idx = jnp.arange(s)
  blk = x // s
  row = jnp.minimum(blk, nb - 1)
  here = jnp.max(jnp.where((idx < x - blk * s) & (kb.keep[row] >= r), row * s + idx, -1))
  prev = jnp.max(jnp.where((jnp.arange(nb) < blk) & (kb.top >= r), jnp.arange(nb), -1))
  there = jnp.max(jnp.where(kb.keep[jnp.maximum(prev, 0)] >= r, prev * s + idx, -1))
  return jnp.where(here >= 0, here, jnp.where(prev >= 0, there, -1))

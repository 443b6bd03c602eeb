"""Kept-pair counts of one variant at every ERC discard rate, from block bit masks.

Positions are score-order positions; a pair is kept at rates 0..R (R = -1:
padding, never kept). Positions form blocks of 32, one uint32 word per block,
class and rate whose bit j is set when position j of the block is kept: a query
reads one word plus per-block counts, so a variant costs O(P) and not O(20 P).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RATES = 20  # discard rates i / 20, i = 0..19; the last is 0.95, no point at 1
S = 32  # positions per block: the bits of a uint32 word


class Kept(NamedTuple):
  """Blocked view of one variant: bits [2, nb, 20] uint32 kept impostors / genuines
  of each block at each rate; before [2, nb + 1, 20] kept counts before each block."""
  bits: jax.Array
  before: jax.Array


def blocked(impostor: jax.Array, genuine: jax.Array, pos: jax.Array, rate: jax.Array) -> Kept:
  """impostor, genuine: [P] bool by score position; pos: [P] a permutation of the
  score positions; rate: [P] int32 rate index R of the pair at pos (-1: never kept)."""
  n = pos.shape[0]
  nb = -(-n // S)
  cls = jnp.stack([impostor[pos], genuine[pos]])
  bit = jnp.where(cls, jnp.uint32(1) << (pos.astype(jnp.uint32) % S), jnp.uint32(0))
  exact = jnp.zeros((2, nb, RATES + 1), jnp.uint32).at[:, pos // S, rate + 1].add(bit)
  bits = jnp.cumsum(exact[..., ::-1], -1)[..., ::-1][..., 1:]  # kept at rate r: R >= r
  per_block = jax.lax.population_count(bits).astype(jnp.int32)
  before = jnp.concatenate([jnp.zeros((2, 1, RATES), jnp.int32), jnp.cumsum(per_block, 1)], 1)
  return Kept(bits, before)


def _below(off):
  """uint32 word with the bits below off (0..31) set."""
  return (jnp.uint32(1) << off.astype(jnp.uint32)) - 1


def count(kb: Kept, c: int, r, x):
  """#{kept class-c pairs at positions < x} at rate r."""
  blk = x // S
  row = jnp.minimum(blk, kb.bits.shape[1] - 1)
  inside = jax.lax.population_count(kb.bits[c, row, r] & _below(x - blk * S))
  return kb.before[c, blk, r] + inside.astype(jnp.int32)


def nth(kb: Kept, c: int, r, n):
  """Position of the n-th (1-based) kept class-c pair at rate r (n <= their count)."""
  blk = jnp.sum(kb.before[c, 1:, r] < n)
  row = jnp.minimum(blk, kb.bits.shape[1] - 1)
  upto = jnp.uint32(0xFFFFFFFF) >> (S - 1 - jnp.arange(S, dtype=jnp.uint32))  # bits 0..j
  run = kb.before[c, row, r] + jax.lax.population_count(kb.bits[c, row, r] & upto).astype(jnp.int32)
  return row * S + jnp.sum(run < n)


def last(kb: Kept, r, x):
  """Largest kept position < x at rate r (-1: none)."""
  nb = kb.bits.shape[1]
  any_kept = kb.bits[0, :, r] | kb.bits[1, :, r]  # [nb]
  top = lambda blk, w: blk * S + S - 1 - jax.lax.clz(w).astype(jnp.int32)
  blk = x // S
  row = jnp.minimum(blk, nb - 1)
  w = any_kept[row] & _below(x - blk * S)
  prev = jnp.max(jnp.where((jnp.arange(nb) < blk) & (any_kept > 0), jnp.arange(nb), -1))
  there = jnp.where(prev >= 0, top(prev, any_kept[jnp.maximum(prev, 0)]), -1)
  return jnp.where(w > 0, top(row, w), there)

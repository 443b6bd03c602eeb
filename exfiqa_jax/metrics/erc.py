"""ERC protocol of docs/protocol.md §4 in exact integer arithmetic, pure JAX.

Pairs are held in descending comparison-score order (built once per dataset by
`exfiqa_jax.metrics.pairset.make_pairset`). Pair i is kept at discard rates 0..R_i. The
counts the protocol needs ("kept impostors above position x at rate r") come
from per-block kept counts and bit masks (`Kept` below), so a variant costs
O(P) and not O(20 P).
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


def kept_blocked(impostor: jax.Array, genuine: jax.Array, pos: jax.Array, rate: jax.Array) -> Kept:
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


def kept_count(kb: Kept, c: int, r, x):
  """#{kept class-c pairs at positions < x} at rate r."""
  blk = x // S
  row = jnp.minimum(blk, kb.bits.shape[1] - 1)
  inside = jax.lax.population_count(kb.bits[c, row, r] & _below(x - blk * S))
  return kb.before[c, blk, r] + inside.astype(jnp.int32)


def kept_nth(kb: Kept, c: int, r, n):
  """Position of the n-th (1-based) kept class-c pair at rate r (n <= their count)."""
  blk = jnp.sum(kb.before[c, 1:, r] < n)
  row = jnp.minimum(blk, kb.bits.shape[1] - 1)
  upto = jnp.uint32(0xFFFFFFFF) >> (S - 1 - jnp.arange(S, dtype=jnp.uint32))  # bits 0..j
  run = kb.before[c, row, r] + jax.lax.population_count(kb.bits[c, row, r] & upto).astype(jnp.int32)
  return row * S + jnp.sum(run < n)


def kept_last(kb: Kept, r, x):
  """Largest kept position < x at rate r (-1: none)."""
  nb = kb.bits.shape[1]
  any_kept = kb.bits[0, :, r] | kb.bits[1, :, r]  # [nb]

  def top(blk, w):
    return blk * S + S - 1 - jax.lax.clz(w).astype(jnp.int32)

  blk = x // S
  row = jnp.minimum(blk, nb - 1)
  w = any_kept[row] & _below(x - blk * S)
  prev = jnp.max(jnp.where((jnp.arange(nb) < blk) & (any_kept > 0), jnp.arange(nb), -1))
  there = jnp.where(prev >= 0, top(prev, any_kept[jnp.maximum(prev, 0)]), -1)
  return jnp.where(w > 0, top(row, w), there)


class ErcData(NamedTuple):
  """Pairs in descending score order; padding sorts last and is neither class.

  position: [P] score-order position of each pair (pair-list order).
  genuine, impostor: [P] bool.
  start, end: [P] int32 first and last position of each position's score-tie group.
  """

  position: jax.Array
  genuine: jax.Array
  impostor: jax.Array
  start: jax.Array
  end: jax.Array


def _fnmr(data: ErcData, kb: Kept, r, num, den):
  """FNMR at rate r for FMR num/den: the threshold is the smallest remaining score t
  minimising |FMR(t) - num/den| (FMR(t) = #{impostor >= t} / #impostors), chosen
  among the achievable impostor counts bracketing c* = num * n_imp / den, the
  larger on an exact tie; a genuine score equal to t is a non-match."""
  p = data.position.shape[0]
  n_imp, n_gen = kb.before[0, -1, r], kb.before[1, -1, r]
  q, rem = (num * n_imp) // den, (num * n_imp) % den
  # independent queries share one vmapped call each (fewer ops to compile)
  nth = jax.vmap(lambda n: kept_nth(kb, 0, r, n))
  first, at_hi, at_q = nth(jnp.stack([1, q + (rem > 0), jnp.maximum(q, 1)]))
  zero_ok = kept_count(kb, 1, r, data.start[first]) > 0  # a kept genuine above every kept impostor
  # kept impostors >= the scores at at_hi and at_q, and > the score at at_q
  hi, q_end, q_start = jax.vmap(lambda x: kept_count(kb, 0, r, x))(
    jnp.stack([data.end[at_hi] + 1, data.end[at_q] + 1, data.start[at_q]])
  )
  lo_group = jnp.where(q_end == q, q, q_start)
  lo = jnp.where(q >= 1, lo_group, 0)
  lo = jnp.where((lo > 0) | zero_ok, lo, -1)
  delta = jnp.clip((q - lo) - (hi - q), -2, 1)  # sign of |lo - c*| - |hi - c*| is exact here
  sel = jnp.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  below = jnp.where(sel < n_imp, data.start[kept_nth(kb, 0, r, jnp.minimum(sel + 1, n_imp))], p)
  t = kept_last(kb, r, below)  # the lowest remaining score above the next impostor group
  non_match = n_gen - kept_count(kb, 1, r, data.start[jnp.maximum(t, 0)])
  fnmr = non_match.astype(jnp.float32) / n_gen.astype(jnp.float32)
  return jnp.where((n_imp > 0) & (n_gen > 0), fnmr, jnp.nan)


def erc(
  data: ErcData, order: jax.Array, n_valid: jax.Array, num: jax.Array, den: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """ERC curves and areas -> (fnmr [20, F], area [F]).

  order: [P] pair-list indices by ascending pair quality, valid pairs first (a
  stable sort: equal qualities keep pair-list order, so results never depend on
  the machine). n_valid: [] valid pairs. Rate i/20 discards floor(i * n_valid / 20)
  pairs: the pair at quality position j is kept at rates 0..R_j.
  """
  j = jnp.arange(order.shape[0])
  rate = jnp.where(j < n_valid, jnp.minimum((RATES * (j + 1) - 1) // n_valid, RATES - 1), -1)
  kb = kept_blocked(data.impostor, data.genuine, data.position[order], rate)
  per_rate = jax.vmap(lambda r: jax.vmap(lambda n, d: _fnmr(data, kb, r, n, d))(num, den))
  fnmr = per_rate(jnp.arange(RATES))
  area = (jnp.sum(fnmr, 0) - (fnmr[0] + fnmr[-1]) / 2) / RATES  # trapezoid, step 0.05
  return fnmr, area

"""ERC protocol of SPEC section 3 in exact integer arithmetic, pure JAX.

Pairs are held in descending comparison-score order (built once per dataset by
`exfiqa_jax.pairset.make_pairset`). Pair i is kept at discard rates 0..R_i. The
counts the protocol needs ("kept impostors above position x at rate r") come
from per-block histograms plus one block scan, so a variant costs O(P) and not
O(20 P).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RATES = 20  # discard rates i / 20, i = 0..19; the last is 0.95, no point at 1


class ErcData(NamedTuple):
  """Pairs in descending score order; padding sorts last and is neither class.

  perm: [P] pair-list index at each score-order position.
  genuine, impostor: [P] bool.
  start, end: [P] int32 first and last position of each position's score-tie group.
  """
  perm: jax.Array
  genuine: jax.Array
  impostor: jax.Array
  start: jax.Array
  end: jax.Array


class _Kept(NamedTuple):
  """Blocked view of one variant: keep [nb, S] rate index R (-1: padding),
  cls [2, nb, S] impostor / genuine, before [2, nb + 1, 20] kept counts before each
  block, top [nb] largest R in each block."""
  keep: jax.Array
  cls: jax.Array
  before: jax.Array
  top: jax.Array


def _blocked(data: ErcData, keep: jax.Array) -> _Kept:
  n = keep.shape[0]
  s = min(128, n)
  nb = -(-n // s)
  p = nb * s  # whole blocks; the extra positions are never kept and of neither class
  keep = jnp.pad(keep, (0, p - n), constant_values=-1)
  cls = jnp.pad(jnp.stack([data.impostor, data.genuine]).astype(jnp.int32), ((0, 0), (0, p - n)))
  hist = jnp.zeros((2, nb, RATES + 1), jnp.int32).at[:, jnp.arange(p) // s, keep + 1].add(cls)
  per_block = jnp.cumsum(hist[..., ::-1], -1)[..., ::-1][..., 1:]  # kept at rate r: R >= r
  before = jnp.concatenate([jnp.zeros((2, 1, RATES), jnp.int32), jnp.cumsum(per_block, 1)], 1)
  k = keep.reshape(nb, s)
  return _Kept(k, cls.astype(bool).reshape(2, nb, s), before, jnp.max(k, 1))


def _count(kb: _Kept, c: int, r, x):
  """#{kept class-c pairs at positions < x} at rate r."""
  s = kb.keep.shape[1]
  blk = x // s
  row = jnp.minimum(blk, kb.keep.shape[0] - 1)
  inside = (jnp.arange(s) < x - blk * s) & kb.cls[c, row] & (kb.keep[row] >= r)
  return kb.before[c, blk, r] + jnp.sum(inside, dtype=jnp.int32)


def _nth(kb: _Kept, c: int, r, n):
  """Position of the n-th (1-based) kept class-c pair at rate r (n <= their count)."""
  s = kb.keep.shape[1]
  blk = jnp.sum(kb.before[c, 1:, r] < n)
  row = jnp.minimum(blk, kb.keep.shape[0] - 1)
  run = kb.before[c, row, r] + jnp.cumsum(kb.cls[c, row] & (kb.keep[row] >= r))
  return row * s + jnp.sum(run < n)


def _last(kb: _Kept, r, x):
  """Largest kept position < x at rate r (-1: none)."""
  s, nb = kb.keep.shape[1], kb.keep.shape[0]
  idx = jnp.arange(s)
  blk = x // s
  row = jnp.minimum(blk, nb - 1)
  here = jnp.max(jnp.where((idx < x - blk * s) & (kb.keep[row] >= r), row * s + idx, -1))
  prev = jnp.max(jnp.where((jnp.arange(nb) < blk) & (kb.top >= r), jnp.arange(nb), -1))
  there = jnp.max(jnp.where(kb.keep[jnp.maximum(prev, 0)] >= r, prev * s + idx, -1))
  return jnp.where(here >= 0, here, jnp.where(prev >= 0, there, -1))


def _fnmr(data: ErcData, kb: _Kept, r, num, den):
  """FNMR at rate r for FMR num/den: the threshold is the smallest remaining score t
  minimising |FMR(t) - num/den| (FMR(t) = #{impostor >= t} / #impostors), chosen
  among the achievable impostor counts bracketing c* = num * n_imp / den, the
  larger on an exact tie; a genuine score equal to t is a non-match."""
  p = data.perm.shape[0]
  n_imp, n_gen = kb.before[0, -1, r], kb.before[1, -1, r]
  q, rem = (num * n_imp) // den, (num * n_imp) % den
  ends_at = lambda pos: _count(kb, 0, r, data.end[pos] + 1)  # kept impostors >= score at pos
  first = _nth(kb, 0, r, 1)
  zero_ok = _count(kb, 1, r, data.start[first]) > 0  # a kept genuine above every kept impostor
  hi = ends_at(_nth(kb, 0, r, q + (rem > 0)))
  pq_ = _nth(kb, 0, r, jnp.maximum(q, 1))
  lo_group = jnp.where(ends_at(pq_) == q, q, _count(kb, 0, r, data.start[pq_]))
  lo = jnp.where(q >= 1, lo_group, 0)
  lo = jnp.where((lo > 0) | zero_ok, lo, -1)
  delta = jnp.clip((q - lo) - (hi - q), -2, 1)  # sign of |lo - c*| - |hi - c*| is exact here
  sel = jnp.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  below = jnp.where(sel < n_imp, data.start[_nth(kb, 0, r, jnp.minimum(sel + 1, n_imp))], p)
  t = _last(kb, r, below)  # the lowest remaining score above the next impostor group
  non_match = n_gen - _count(kb, 1, r, data.start[jnp.maximum(t, 0)])
  fnmr = non_match.astype(jnp.float32) / n_gen.astype(jnp.float32)
  return jnp.where((n_imp > 0) & (n_gen > 0), fnmr, jnp.nan)


def erc(data: ErcData, rank_pl: jax.Array, count: jax.Array, num: jax.Array,
        den: jax.Array) -> tuple[jax.Array, jax.Array]:
  """ERC curves and areas -> (fnmr [20, F], area [F]).

  rank_pl: [P] quality position of each pair in pair-list order (a stable sort:
  equal qualities keep pair-list order, so results never depend on the machine).
  count: [] valid pairs. Rate i/20 discards floor(i * count / 20) pairs.
  """
  rank = rank_pl[data.perm]
  valid = jnp.arange(rank.shape[0]) < count
  keep = jnp.where(valid, jnp.minimum((RATES * (rank + 1) - 1) // count, RATES - 1), -1)
  kb = _blocked(data, keep)
  per_rate = jax.vmap(lambda r: jax.vmap(lambda n, d: _fnmr(data, kb, r, n, d))(num, den))
  fnmr = per_rate(jnp.arange(RATES))
  area = (jnp.sum(fnmr, 0) - (fnmr[0] + fnmr[-1]) / 2) / RATES  # trapezoid, step 0.05
  return fnmr, area

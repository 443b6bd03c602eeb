"""ERC protocol of docs/protocol.md §4 in exact integer arithmetic, pure JAX.

Input: every pair's unique int64 quality key (`exfiqa_jax.metrics.keys`) by
descending comparison-score position, and each class's keys sorted. A pair is
kept at discard rate r exactly when its key is at least B_r, the key at quality
position floor(r P / 20) (`boundaries`: a bisection over the two sorted classes),
so no rank scatter and no sort of all pairs is needed.

At FMR f the threshold at rate r depends on the first ~f * #impostors + 2 kept
impostors in score order only, so only the `top` highest-scoring impostors are
looked at (a cumulative count of kept ones over [top] per rate); where a variant
would need more, `erc` says so (overflow) and the caller reruns it with every
impostor. Genuine pairs become uint32 bit words over blocks of 32 (genuine index
in score order) per rate; every genuine count the protocol needs is a popcount
sum over [G / 32] words. Per variant: O(20 (top + G)) work, not O(20 P).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from exfiqa_jax.metrics.bits import RATES
from exfiqa_jax.metrics.keys import KEY_MAX

W = 32  # genuine pairs per bit word


def boundaries(gen: jax.Array, imp: jax.Array, n_gen, n_imp, count) -> jax.Array:
  """The quality key at position floor(r count / 20) of the merged order, r = 0..19 -> [20].

  gen, imp: [G], [I] each class's keys ascending (padding KEY_MAX at the end).
  For position k, the number i of genuine keys among the k smallest is the
  smallest i with gen[i] > imp[k - i - 1] (monotone in i: a bisection of
  log2(P) steps, all 20 rates at once); the key is min(gen[i], imp[k - i]).
  """
  k = (jnp.arange(RATES, dtype=jnp.int32) * count) // RATES

  def g(i):
    return jnp.where(i < n_gen, jnp.take(gen, jnp.clip(i, 0, gen.shape[0] - 1)), KEY_MAX)

  def h(j):
    x = jnp.where(j < n_imp, jnp.take(imp, jnp.clip(j, 0, imp.shape[0] - 1)), KEY_MAX)
    return jnp.where(j < 0, -KEY_MAX, x)

  def step(_, lohi):
    lo, hi = lohi
    mid = (lo + hi) // 2
    ok = g(mid) > h(k - mid - 1)
    return jnp.where(lo < hi, jnp.where(ok, lo, mid + 1), lo), jnp.where((lo < hi) & ok, mid, hi)

  lo, hi = jnp.maximum(0, k - n_imp), jnp.minimum(k, n_gen)
  steps = (gen.shape[0] + imp.shape[0]).bit_length() + 1
  i, _ = jax.lax.fori_loop(0, steps, step, (lo, hi))
  return jnp.minimum(g(i), h(k - i))


def prefix(x: jax.Array) -> jax.Array:
  """Inclusive prefix sums along the last axis by log2(n) shifted adds (XLA's CPU
  cumsum costs 30-60x more on these small int arrays)."""
  n, s = x.shape[-1], 1
  while s < n:
    x = x + jnp.pad(x[..., :-s], [(0, 0)] * (x.ndim - 1) + [(s, 0)])
    s *= 2
  return x


class Bits(NamedTuple):
  """The kept pairs of one class at one rate, by index in score order: words [nb]
  uint32 (bit j of word b: pair 32 b + j kept), before [nb + 1] kept before each word."""

  words: jax.Array
  before: jax.Array


def kept_bits(keys: jax.Array, bounds: jax.Array, real: jax.Array) -> Bits:
  """keys: [n] of one class in score order; bounds: [20]; real: [n] -> Bits with a
  leading rate axis [20, ...] (kept at rate r: key >= B_r; one compare each,
  straight into the bit words: XLA fuses the whole thing into one pass)."""
  n = keys.shape[0]
  nb = -(-n // W)
  k = jnp.pad(jnp.where(real, keys, -1), (0, nb * W - n), constant_values=-1).reshape(nb, W)
  kept = k[None] >= bounds[:, None, None]  # [20, nb, 32]
  shifts = jnp.uint32(1) << jnp.arange(W, dtype=jnp.uint32)
  words = jnp.sum(jnp.where(kept, shifts, jnp.uint32(0)), axis=2, dtype=jnp.uint32)  # disjoint bits
  counts = jax.lax.population_count(words).astype(jnp.int32)
  return Bits(words, jnp.pad(prefix(counts), [(0, 0), (1, 0)]))


def _below(off):
  """uint32 word with the bits below off (0..31) set."""
  return (jnp.uint32(1) << off.astype(jnp.uint32)) - 1


def count_below(b: Bits, j):
  """#{kept with index < j} (j may exceed the indices: all kept)."""
  nb = b.words.shape[0]
  blk = jnp.minimum(j // W, nb)
  part = jax.lax.population_count(b.words[jnp.minimum(blk, nb - 1)] & _below(j - blk * W))
  return b.before[blk] + jnp.where(blk < nb, part.astype(jnp.int32), 0)


def nth(b: Bits, n):
  """Index of the n-th (1-based) kept pair; nb * 32 or more when fewer are kept."""
  nb = b.words.shape[0]
  blk = jnp.sum(b.before[1:] < n)
  row = jnp.minimum(blk, nb - 1)
  upto = jnp.uint32(0xFFFFFFFF) >> (W - 1 - jnp.arange(W, dtype=jnp.uint32))  # bits 0..j
  run = b.before[row] + jax.lax.population_count(b.words[row] & upto).astype(jnp.int32)
  return jnp.where(blk < nb, row * W + jnp.sum(run < n), nb * W)


def last_below(b: Bits, j):
  """The largest kept index < j (-1: none)."""
  c = count_below(b, j)
  return jnp.where(c > 0, nth(b, jnp.maximum(c, 1)), -1)


def _fnmr(ps, imp: Bits, gen: Bits, top, n_imp, n_gen, num, den):
  """FNMR at one rate for FMR num/den -> (fnmr, overflow).

  imp, gen: the kept impostors (the first `top` in score order) and genuines;
  n_imp, n_gen: kept counts. The threshold is the smallest remaining score t
  minimising |FMR(t) - num/den| (FMR(t) = #{impostor >= t} / #impostors), chosen
  among the achievable impostor counts bracketing c* = num * n_imp / den, the
  larger on an exact tie; a genuine score equal to t is a non-match. Counts at a
  score include its whole tie group.
  """
  q, rem = (num * n_imp) // den, (num * n_imp) % den
  last = top - 1

  def upto(i):  # kept impostors up to the end of impostor i's score-tie group
    e = ps.imp_upto[jnp.minimum(i, last)]
    return count_below(imp, e), e > top

  first, at_hi, at_q = jax.vmap(lambda n: nth(imp, n))(
    jnp.stack([1, q + (rem > 0), jnp.maximum(q, 1)])
  )
  zero_ok = count_below(gen, ps.imp_gen[jnp.minimum(first, last)]) > 0
  (hi, over_hi), (q_end, over_q) = upto(at_hi), upto(at_q)
  q_start = count_below(imp, ps.imp_before[jnp.minimum(at_q, last)])
  lo_group = jnp.where(q_end == q, q, q_start)
  lo = jnp.where(q >= 1, lo_group, 0)
  lo = jnp.where((lo > 0) | zero_ok, lo, -1)
  delta = jnp.clip((q - lo) - (hi - q), -2, 1)  # sign of |lo - c*| - |hi - c*| is exact here
  sel = jnp.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  nxt, at_sel = jax.vmap(lambda n: nth(imp, n))(
    jnp.stack([jnp.minimum(sel + 1, n_imp), jnp.maximum(sel, 1)])
  )
  # genuines above x (the start of the next kept impostor's group), or all of them
  jx = jnp.where(sel < n_imp, ps.imp_gen[jnp.minimum(nxt, last)], ps.n_gen)
  # t: the lowest kept score above x, an impostor (the sel-th kept) or a genuine
  t_imp = jnp.where(sel >= 1, ps.imp_pos[jnp.minimum(at_sel, last)], -1)
  i_gen = last_below(gen, jx)
  t_gen = jnp.where(i_gen >= 0, ps.gen_pos[jnp.maximum(i_gen, 0)], -1)
  j = jnp.where(
    t_gen > t_imp, ps.gen_group[jnp.maximum(i_gen, 0)], ps.imp_gen[jnp.minimum(at_sel, last)]
  )
  non_match = n_gen - count_below(gen, j)
  # times the reciprocal, spelt out: the compiler turns a division by a value broadcast
  # over the FMRs into this anyway, and the host areas (metrics.host) must round alike
  fnmr = non_match.astype(jnp.float32) * (1 / n_gen.astype(jnp.float32))
  ok = (n_imp > 0) & (n_gen > 0)
  used = jnp.stack(
    [first, at_hi, at_q, jnp.where(sel < n_imp, nxt, 0), jnp.where(sel >= 1, at_sel, 0)]
  )
  overflow = ok & (jnp.any(used >= top) | over_hi | over_q)
  return jnp.where(ok, fnmr, jnp.nan), overflow


def erc(ps, keys: jax.Array, gen: jax.Array, imp: jax.Array, top: int):
  """ERC curves and areas -> (fnmr [20, F], area [F], overflow []).

  keys: [P] int64 unique quality keys by score position (padding KEY_MAX);
  gen, imp: each class's keys ascending; top: impostors looked at (static; every
  impostor when it is the padded impostor count). Rate i/20 discards the
  floor(i P / 20) pairs of lowest key (P the real pair count). overflow: the
  result needs more than `top` impostors (the numbers are then invalid).
  """
  bounds = boundaries(gen, imp, ps.n_gen, ps.n_imp, ps.count)
  n_gen_r = ps.n_gen - jnp.searchsorted(gen, bounds, side="left").astype(jnp.int32)
  n_imp_r = ps.n_imp - jnp.searchsorted(imp, bounds, side="left").astype(jnp.int32)
  g_real = jnp.arange(ps.gen_pos.shape[0]) < ps.n_gen
  gen_bits = kept_bits(keys[ps.gen_pos], bounds, g_real)
  imp_bits = kept_bits(keys[ps.imp_pos[:top]], bounds, jnp.arange(top) < ps.n_imp)
  return rate_curves(ps, imp_bits, gen_bits, n_imp_r, n_gen_r, top)


def rate_curves(ps, imp: Bits, gen: Bits, n_imp_r, n_gen_r, top: int):
  """The FNMR at each of the 20 rates and FMRs and the areas, from the kept bits of
  each class per rate (imp: of the first `top` impostors in score order) and the kept
  counts n_imp_r, n_gen_r [20] -> (fnmr [20, F], area [F], overflow []); shared by `erc`
  and the large-pair-set path (`fusion.large`)."""
  per_rate = jax.vmap(
    lambda ib, gb, ni, ng: jax.vmap(lambda n, d: _fnmr(ps, ib, gb, top, ni, ng, n, d))(
      ps.fmr_num, ps.fmr_den
    )
  )
  fnmr, overflow = per_rate(imp, gen, n_imp_r, n_gen_r)
  # trapezoid, step 0.05, summed in rate order by elementwise adds: a reduction's
  # order (and float32 rounding) would depend on the batch shape of the program
  inner = fnmr[1]
  for r in range(2, RATES - 1):
    inner = inner + fnmr[r]
  area = (inner + (fnmr[0] + fnmr[-1]) / 2) * jnp.float32(1 / RATES)  # as the compiler would
  return fnmr, area, jnp.any(overflow)

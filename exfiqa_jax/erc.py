"""ERC protocol of SPEC section 3 in exact integer arithmetic, pure JAX.

Pairs are held in descending comparison-score order (built once per dataset by
`exfiqa_jax.pairset.make_pairset`). Pair i is kept at discard rates 0..R_i. The
counts the protocol needs ("kept impostors above position x at rate r") come
from per-block kept counts and bit masks (exfiqa_jax.kept), so a variant costs
O(P) and not O(20 P).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from exfiqa_jax import kept
from exfiqa_jax.kept import RATES


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


def _fnmr(data: ErcData, kb: kept.Kept, r, num, den):
  """FNMR at rate r for FMR num/den: the threshold is the smallest remaining score t
  minimising |FMR(t) - num/den| (FMR(t) = #{impostor >= t} / #impostors), chosen
  among the achievable impostor counts bracketing c* = num * n_imp / den, the
  larger on an exact tie; a genuine score equal to t is a non-match."""
  p = data.position.shape[0]
  n_imp, n_gen = kb.before[0, -1, r], kb.before[1, -1, r]
  q, rem = (num * n_imp) // den, (num * n_imp) % den
  # independent queries share one vmapped call each (fewer ops to compile)
  nth = jax.vmap(lambda n: kept.nth(kb, 0, r, n))
  first, at_hi, at_q = nth(jnp.stack([1, q + (rem > 0), jnp.maximum(q, 1)]))
  zero_ok = kept.count(kb, 1, r, data.start[first]) > 0  # a kept genuine above every kept impostor
  # kept impostors >= the scores at at_hi and at_q, and > the score at at_q
  hi, q_end, q_start = jax.vmap(lambda x: kept.count(kb, 0, r, x))(
      jnp.stack([data.end[at_hi] + 1, data.end[at_q] + 1, data.start[at_q]]))
  lo_group = jnp.where(q_end == q, q, q_start)
  lo = jnp.where(q >= 1, lo_group, 0)
  lo = jnp.where((lo > 0) | zero_ok, lo, -1)
  delta = jnp.clip((q - lo) - (hi - q), -2, 1)  # sign of |lo - c*| - |hi - c*| is exact here
  sel = jnp.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  below = jnp.where(sel < n_imp, data.start[kept.nth(kb, 0, r, jnp.minimum(sel + 1, n_imp))], p)
  t = kept.last(kb, r, below)  # the lowest remaining score above the next impostor group
  non_match = n_gen - kept.count(kb, 1, r, data.start[jnp.maximum(t, 0)])
  fnmr = non_match.astype(jnp.float32) / n_gen.astype(jnp.float32)
  return jnp.where((n_imp > 0) & (n_gen > 0), fnmr, jnp.nan)


def erc(data: ErcData, order: jax.Array, n_valid: jax.Array, num: jax.Array,
        den: jax.Array) -> tuple[jax.Array, jax.Array]:
  """ERC curves and areas -> (fnmr [20, F], area [F]).

  order: [P] pair-list indices by ascending pair quality, valid pairs first (a
  stable sort: equal qualities keep pair-list order, so results never depend on
  the machine). n_valid: [] valid pairs. Rate i/20 discards floor(i * n_valid / 20)
  pairs: the pair at quality position j is kept at rates 0..R_j.
  """
  j = jnp.arange(order.shape[0])
  rate = jnp.where(j < n_valid, jnp.minimum((RATES * (j + 1) - 1) // n_valid, RATES - 1), -1)
  kb = kept.blocked(data.impostor, data.genuine, data.position[order], rate)
  per_rate = jax.vmap(lambda r: jax.vmap(lambda n, d: _fnmr(data, kb, r, n, d))(num, den))
  fnmr = per_rate(jnp.arange(RATES))
  area = (jnp.sum(fnmr, 0) - (fnmr[0] + fnmr[-1]) / 2) / RATES  # trapezoid, step 0.05
  return fnmr, area

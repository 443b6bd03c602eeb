"""ERC protocol of SPEC section 3 in exact integer arithmetic, pure JAX.

Pairs are held in descending comparison-score order (built once per dataset by
`exfiqa_jax.metrics.make_dataset`), so every count below is a prefix sum.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RATES = 20  # discard rates i / 20, i = 0..19; the last is 0.95, no point at 1
_BIG = jnp.iinfo(jnp.int32).max


class ErcData(NamedTuple):
  """Pairs in descending score order; padding sorts last and is neither class.

  perm: [P] pair-list index at each score-order position.
  genuine, impostor: [P] bool.
  prev: [P] int32 position just before the score-tie group of each position (-1: none).
  end: [P] bool, the last position of its score-tie group.
  """
  perm: jax.Array
  genuine: jax.Array
  impostor: jax.Array
  prev: jax.Array
  end: jax.Array


def _at(x: jax.Array, i: jax.Array) -> jax.Array:
  """x[i], 0 where i = -1 (an empty prefix)."""
  return jnp.where(i >= 0, x[jnp.maximum(i, 0)], 0)


def erc_point(data: ErcData, rank: jax.Array, discard: jax.Array, num: jax.Array,
              den: jax.Array) -> jax.Array:
  """FNMR after discarding the `discard` lowest-quality pairs -> [F], one per FMR num/den.

  rank: [P] quality position of each score-order pair (0 = lowest quality).
  The threshold is the smallest remaining score t minimising |FMR(t) - num/den|,
  with FMR(t) = #{impostor >= t} / #impostors; a genuine score equal to t is a
  non-match. Chosen in integers: the achievable impostor counts c bracketing
  c* = num * n_imp / den, the nearer one, the larger on an exact tie. NaN where no
  genuine or no impostor pair remains.
  """
  keep = rank >= discard
  ci = jnp.cumsum(data.impostor & keep, dtype=jnp.int32)
  cg = jnp.cumsum(data.genuine & keep, dtype=jnp.int32)
  n_imp, n_gen = ci[-1], cg[-1]
  total = ci + cg
  cand = data.end & (total > _at(total, data.prev))  # tie groups holding a remaining pair
  q, rem = (num * n_imp) // den, (num * n_imp) % den  # c* = q + rem / den
  c = ci[None, :]
  lo = jnp.max(jnp.where(cand & (c <= q[:, None]), c, -1), axis=1)
  hi = jnp.min(jnp.where(cand & (c >= (q + (rem > 0))[:, None]), c, _BIG), axis=1)
  delta = jnp.clip((q - lo) - (hi - q), -2, 1)  # sign of |lo - c*| - |hi - c*| is exact here
  sel = jnp.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  pos = jnp.max(jnp.where(cand & (c == sel[:, None]), jnp.arange(c.shape[1]), -1), axis=1)
  non_match = n_gen - _at(cg, data.prev[pos])  # genuine at or below the threshold
  fnmr = non_match.astype(jnp.float32) / n_gen.astype(jnp.float32)
  return jnp.where((n_imp > 0) & (n_gen > 0), fnmr, jnp.nan)


def discard_counts(count: jax.Array) -> jax.Array:
  """floor(r * count) for r = i / 20 in exact integers -> [20]."""
  return jnp.arange(RATES, dtype=jnp.int32) * count // RATES


def erc(data: ErcData, rank_pl: jax.Array, count: jax.Array, num: jax.Array, den: jax.Array,
        rate_batch: int | None = None) -> tuple[jax.Array, jax.Array]:
  """ERC curves and areas -> (fnmr [20, F], area [F]).

  rank_pl: [P] quality position of each pair in pair-list order (a stable sort:
  equal qualities keep pair-list order). count: [] valid pairs. rate_batch: rates
  evaluated at once (None: all; 1 keeps memory at a few [P] arrays).
  """
  rank = rank_pl[data.perm]
  fnmr = jax.lax.map(lambda k: erc_point(data, rank, k, num, den), discard_counts(count),
                     batch_size=rate_batch or RATES)
  area = (jnp.sum(fnmr, 0) - (fnmr[0] + fnmr[-1]) / 2) / RATES  # trapezoid, step 0.05
  return fnmr, area

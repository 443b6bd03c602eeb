"""Exit scores as exact integers, built once per dataset on the host (docs/protocol.md §2).

ERC and EDC depend on fused qualities only through their order and ties, so the
engine fuses integers that have exactly the order of the fused values:

- none: each float32 score is m * 2^e (m a 24-bit integer), so shifting every
  score of the dataset to the smallest exponent in use gives exact int64
  fixed-point values X (ViT-FIQA scores need about 35-45 bits). A mean is then
  the integer sum of X over the subset (its divisor, the subset size, is the same
  for every image of a variant and cannot change the order); the weighted mean
  with integer weights (the depth weights 1..L) is the integer sum of w_i X_i;
  the median of an even count is the sum of the two middle values; min and max
  pick a value. No rounding anywhere.
- rank: the integer count of valid scores below each score (the protocol's rank
  times the shared n - 1): exact.
- zscore, minmax: normalised in float64 on the host, then rounded to a grid of
  2^-40 of the largest normalised magnitude (`GRID_BITS`); the fusion on that
  grid is exact. Values closer than the grid step can tie; the same everywhere,
  as the rounding happens here, once, in numpy.

If `none` scores would need more bits than the fusion can sum without overflow
(`fixed_point`), they are rounded to the finest grid that fits and a warning
says so. Float (non-integer) weights are handled by `float_fused` in float64.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

GRID_BITS = 40  # significant bits of zscore / minmax values on their grid


class ExitIntegers(NamedTuple):
  """values: [N, L] int64; ascending: [N, L] each row sorted; order: [N, L] int32
  its argsort (for the median); span: max - min of the valid values; exact: no
  rounding happened (False for zscore / minmax, or an over-wide `none` dataset)."""

  values: np.ndarray
  ascending: np.ndarray
  order: np.ndarray
  span: int
  exact: bool


def fixed_point(x: np.ndarray, bits: int) -> tuple[np.ndarray, bool]:
  """float32 values [...] -> (int64 values x * 2^-e0, exact) with every |value| < 2^bits.

  e0 is the exponent of the lowest set bit over all values: exact when the
  largest value then needs at most `bits` bits; otherwise e0 is raised until it
  fits and values are rounded to nearest (exact False).
  """
  x = np.asarray(x, np.float32).astype(np.float64)
  nz = x[x != 0]
  if not nz.size:
    return np.zeros(x.shape, np.int64), True
  m, e = np.frexp(nz)  # |nz| = m 2^e, m in [0.5, 1): a float32 has a 24-bit mantissa
  mant = np.abs(np.ldexp(m, 24)).astype(np.int64)
  low = e - 24 + np.log2(mant & -mant).astype(np.int64)  # exponent of the lowest set bit
  e0 = int(low.min())
  if int(e.max()) - e0 <= bits:
    return np.ldexp(x, -e0).astype(np.int64), True
  e0 = int(e.max()) - bits
  return np.rint(np.ldexp(x, -e0)).astype(np.int64), False


def normalised_float(exits: np.ndarray, valid: np.ndarray, norm: str) -> np.ndarray:
  """float64 normalised scores [N, L] (docs/protocol.md §2) over the valid images."""
  x = np.asarray(exits, np.float32).astype(np.float64)
  v = x[valid]
  if norm == "none":
    return x
  if norm == "rank":
    return np.stack(
      [np.searchsorted(np.sort(v[:, i]), x[:, i], "left") for i in range(x.shape[1])], 1
    ).astype(np.float64)
  if norm == "zscore":
    mean = v.mean(0)
    std = np.sqrt(((v - mean) ** 2).mean(0))
    return (x - mean) / np.where(std > 0, std, 1.0)
  if norm == "minmax":
    lo, hi = v.min(0), v.max(0)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)
  raise ValueError(f"unknown normalisation {norm!r}")


def exit_integers(exits: np.ndarray, valid: np.ndarray, norm: str, multiplier: int) -> ExitIntegers:
  """The exact integers of a dataset's exit scores [N, L] under `norm`, with room for
  sums of `multiplier` times the largest value (the largest weight sum in use)."""
  bits = 62 - int(multiplier).bit_length()
  valid = np.asarray(valid, bool)
  if norm == "none":
    values, exact = fixed_point(exits, bits)
    if not exact:
      warnings.warn(
        f"exit scores span more than {bits} bits of fixed point: fused on a grid of "
        f"2^-{bits} of the largest score (values closer than that can tie)",
        stacklevel=2,
      )
  elif norm == "rank":
    values, exact = normalised_float(exits, valid, norm).astype(np.int64), True
  else:
    z = normalised_float(exits, valid, norm)
    top = float(np.abs(z[valid]).max())
    e0 = (int(np.frexp(top)[1]) if top > 0 else 0) - GRID_BITS
    values, exact = np.rint(np.ldexp(z, -e0)).astype(np.int64), False
  values = np.where(valid[:, None], values, 0)
  real = values[valid]
  order = np.argsort(values, axis=1, kind="stable").astype(np.int32)
  return ExitIntegers(
    values,
    np.take_along_axis(values, order, 1),
    order,
    int(real.max()) - int(real.min()),
    exact,
  )


def float_fused(values: np.ndarray, masks: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """The weighted rule with float weights, in float64 on the host -> [B, N].

  values: [N, L] float64 (`normalised_float`); masks, weights: [B, L]. The sum
  of w_i x_i over the subset, exits in order, without the shared division by the
  weight sum: each product of a float32 weight and a float32 score is exact in
  float64, each addition rounds to float64 (relative 2^-53). Identical on every
  machine: numpy, fixed order.
  """
  w = np.where(masks, np.asarray(weights, np.float32).astype(np.float64), 0.0)
  acc = np.zeros((len(w), values.shape[0]))
  for i in range(values.shape[1]):
    acc += w[:, i : i + 1] * values[None, :, i]
  return acc


def dense_ranks(f: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
  """f: [B, N] finite -> int64 [B, N] the rank of each value among the row's distinct
  valid values (valid [N], default all): the same order and ties, and small integers.
  One sort a row: a valid value's rank is the number of value changes before it in
  sorted order; an invalid one's, the number of distinct valid values below it."""
  f = np.asarray(f)
  valid = np.ones(f.shape[1], bool) if valid is None else np.asarray(valid, bool)
  v = f[:, valid]
  order = np.argsort(v, axis=1)
  s = np.take_along_axis(v, order, 1)
  step = np.zeros(v.shape, np.int64)
  np.not_equal(s[:, 1:], s[:, :-1], out=step[:, 1:], casting="unsafe")  # -0.0 == 0.0
  ranks = np.empty(v.shape, np.int64)
  np.put_along_axis(ranks, order, np.cumsum(step, axis=1), 1)
  out = np.zeros(f.shape, np.int64)
  out[:, valid] = ranks
  if v.shape[1] and not valid.all():  # padding images: rare, row by row
    for j in range(len(f)):
      distinct = s[j][np.r_[True, step[j, 1:] > 0]]
      out[j, ~valid] = np.searchsorted(distinct, f[j, ~valid])
  return out


def integer_weights(weights: np.ndarray) -> np.ndarray | None:
  """int64 weights [..., L] when every weight is a non-negative integer, else None."""
  w = np.asarray(weights, np.float64)
  if (w >= 0).all() and (w == np.round(w)).all() and w.sum(-1).max() < 2**20:
    return w.astype(np.int64)
  return None

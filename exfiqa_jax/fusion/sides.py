"""The CPU sweep's pair keys in numpy, without JAX: per-side tables of the half-subset
aggregates of every real pair (`pair_sides`), from which a variant's pair keys are one
aggregate and one minimum per pair (`side_keys`).

A plan's integers (`engine.plan(..., host=True)`) go in; the keys are
`metrics.prepare_keys`' numbers bit for bit. This module and `metrics.host` are all
that the CPU sweep's worker processes import (`exfiqa_jax.fusion.workers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from exfiqa_jax.fusion.subsets import code_of
from exfiqa_jax.metrics.bits import index_bits

if TYPE_CHECKING:  # annotations only: importing them would import JAX
  from exfiqa_jax.fusion.engine import Plan
  from exfiqa_jax.metrics.pairset import PairSet

TABLE_BYTES = 1 << 30  # the largest half-subset tables built (IJB-C-sized: 2 x 64 x 470k x 8 B)


def half_tables(values: np.ndarray, rule: str, weights: np.ndarray | None):
  """The rule's aggregate over every subset of the first h = L // 2 exits and of the
  last L - h: values [N, L] int64 >= 0 -> (lo [2^h, N], hi [2^(L-h), N]), or None
  (median, too large). Row c aggregates the exits whose bits are set in c (empty
  rows: the identity of the rule). Each row is one step from a row already built."""
  n, depth = values.shape
  h = depth // 2
  if rule == "median" or ((1 << h) + (1 << (depth - h))) * n * 8 > TABLE_BYTES or depth < 2:
    return None
  cols = values.T * (weights[:, None] if rule == "weighted" else 1)
  op, empty = {
    "mean": (np.add, 0),
    "weighted": (np.add, 0),
    "min": (np.minimum, np.iinfo(np.int64).max),
    "max": (np.maximum, -1),
  }[rule]

  def table(part):
    t = np.empty((1 << len(part), n), np.int64)
    t[0] = empty
    for c in range(1, len(t)):
      low = (c & -c).bit_length() - 1
      t[c] = op(t[c & (c - 1)], part[low])
    return t

  return table(cols[:h]), table(cols[h:])


SIDE_BYTES = 1 << 28  # the largest per-pair-side tables `pair_sides` builds
SIDE_ROWS = 8  # variants per step of `side_keys` (LFW-sized: 0.73-0.85x the time of whole chunks)
RUN_ROWS = 16  # variants per run of `side_keys` (LFW-sized, mean and min: 0.70-0.75x steps of 8)


class PairSides(NamedTuple):
  """A tabled Plan's half-subset tables gathered to each side of every real pair in
  score order, as keys: lo_a, lo_b [2^h, P'], hi_a, hi_b [2^(L-h), P'] int64 (P' = the
  real pair count) the aggregates << shift (the key's index bits), the pair-list index
  sid [P'] or'ed into the low tables (mean, weighted) or into both (min, max), the
  rule's empty rows its identity; op the rule's aggregate: a pair side's key is then
  op(lo[c], hi[d]) with no shift or or per variant."""

  op: np.ufunc
  lo_a: np.ndarray
  lo_b: np.ndarray
  hi_a: np.ndarray
  hi_b: np.ndarray
  sid: np.ndarray
  shift: int


class MedianSides(NamedTuple):
  """The median's pair sides: lo_a, lo_b [2^h, P'], hi_a, hi_b [2^(L-h), P'] uint16 the
  sorted positions (in the image's ascending exit order) of every half-subset's exits
  as a bit mask; pick [2^L] uint8 the pair of middle positions of every position mask
  (`_middles`); sums_a, sums_b [P' C] int64 each side's sum of the values at every
  pair of positions as a key (C = `_middles`' pair count, row by row: sum << shift |
  sid); sid, shift as PairSides."""

  lo_a: np.ndarray
  lo_b: np.ndarray
  hi_a: np.ndarray
  hi_b: np.ndarray
  pick: np.ndarray
  sums_a: np.ndarray
  sums_b: np.ndarray
  sid: np.ndarray
  shift: int


def _middles(depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The middle picks of `fuse_integers`' median by mask of sorted positions: (pick
  [2^depth] uint8, i, j [C] int64): a mask with k bits set picks its ((k + 1) // 2)-th
  and (k // 2 + 1)-th set bits, the sum of the values at positions i[pick] and
  j[pick], where position `depth` stands for a 0 (one pick: k odd; none: k = 0). The
  C pairs: every i < j <= depth, then (depth, depth)."""
  codes = np.arange(1 << depth)
  bits = (codes[:, None] >> np.arange(depth)) & 1
  run = np.cumsum(bits, 1)
  k = run[:, -1]

  def nth(m):  # position of the m-th set bit (m >= 1), depth where there is none
    hit = (run == m[:, None]) & (bits == 1)
    return np.where(hit.any(1), np.argmax(hit, 1), depth)

  first = nth((k + 1) // 2)
  second = np.where(k % 2 == 0, nth(k // 2 + 1), depth)
  i, j = np.triu_indices(depth + 1, 1)
  i, j = np.r_[i, depth], np.r_[j, depth]
  number = np.zeros((depth + 1, depth + 1), np.int64)
  number[i, j] = np.arange(len(i))
  return number[first, second].astype(np.uint8), i, j


def _median_sides(ps: PairSet, p: Plan, n: int) -> MedianSides | None:
  order = np.asarray(p.fusion.order).T  # [N, L]: exit of each ascending position
  asc = np.asarray(p.fusion.ascending).T  # [N, L]
  size, depth = order.shape
  h = depth // 2
  pairs = (depth + 1) * depth // 2 + 1
  if depth > 16 or pairs > 256:
    return None
  if 4 * ((1 << h) + (1 << (depth - h))) * n + 2 * n * pairs * 8 > SIDE_BYTES:
    return None
  pos = np.empty_like(order)
  np.put_along_axis(pos, order, np.arange(depth, dtype=order.dtype)[None, :], 1)
  bit = (np.ones((), np.uint16) << pos.astype(np.uint16)).T  # [L, N]

  def table(part):
    t = np.zeros((1 << len(part), size), np.uint16)
    for c in range(1, len(t)):
      t[c] = t[c & (c - 1)] | part[(c & -c).bit_length() - 1]
    return t

  lo, hi = table(bit[:h]), table(bit[h:])
  pick, i, j = _middles(depth)
  sa, sb = np.asarray(ps.sa)[:n], np.asarray(ps.sb)[:n]
  vals = np.concatenate([asc, np.zeros((size, 1), asc.dtype)], 1).astype(np.int64)

  def side(t, idx):  # C-contiguous rows (a fancy index on axis 1 would be column-major)
    return np.ascontiguousarray(np.take(t, idx, axis=1))

  sid = np.asarray(ps.sid)[:n].astype(np.int64)
  shift = index_bits(ps.sa.shape[0])

  def sums(idx):  # [n C]: pair by pair, the sums of its side's values at i and j, as keys
    v = vals[idx]
    return (((v[:, i] + v[:, j]) << shift) | sid[:, None]).ravel()

  return MedianSides(
    side(lo, sa), side(lo, sb), side(hi, sa), side(hi, sb), pick, sums(sa), sums(sb), sid, shift
  )


def pair_sides(ps: PairSet, p: Plan, rule: str) -> PairSides | MedianSides | None:
  """The host's pair keys of an integer Plan whose keys need no rank compression:
  mean, weighted, min, max with every variant's weights the same (their half-subset
  tables built on each side of every real pair, from the Fusion's columns), and the
  median; or None."""
  if not p.integer or p.compress:
    return None
  n = int(ps.count)
  if rule == "median":
    return _median_sides(ps, p, n)
  w = np.asarray(p.weights)
  values = np.asarray(p.fusion.columns).T  # [N, L]
  depth = values.shape[1]
  h = depth // 2
  if not len(w) or not (w == w[:1]).all() or depth < 2:
    return None
  if 2 * ((1 << h) + (1 << (depth - h))) * n * 8 > SIDE_BYTES:
    return None
  sa, sb = np.asarray(ps.sa)[:n], np.asarray(ps.sb)[:n]
  side_a, side_b = half_tables(values[sa], rule, w[0]), half_tables(values[sb], rule, w[0])
  if side_a is None or side_b is None:
    return None
  op = {"mean": np.add, "weighted": np.add, "min": np.minimum, "max": np.maximum}[rule]
  sid = np.asarray(ps.sid)[:n].astype(np.int64)
  shift = index_bits(ps.sa.shape[0])

  def keyed(t, low):  # t << shift | sid (a sum: sid in one table only)
    out = t << shift
    if low or op is not np.add:
      out |= sid
    if op is not np.add:
      out[0] = t[0]  # the empty row: the identity, int64 max or -1
    return out

  tables = (keyed(side_a[0], True), keyed(side_b[0], True))
  tables += (keyed(side_a[1], False), keyed(side_b[1], False))
  return PairSides(op, *tables, sid, shift)


def _median_side(lo, hi, sums, pick, cl, ch, base, out=None) -> np.ndarray:
  """One side's fused median keys [B, P'] (into out if given): the position mask of the
  subset's exits, its pair of middle positions, the side's sum there as a key."""
  at = np.take(pick, lo[cl] | hi[ch])  # uint8 [B, P']
  return np.take(sums, base + at, out=out)


def _runs(cl: np.ndarray, ch: np.ndarray, most: int) -> list[tuple[int, int]]:
  """[start, stop) of the runs of at most `most` variants with one high half-subset code
  ch and consecutive low codes cl: their table rows are one slice and one row."""
  out, start = [], 0
  lo, hi = cl.tolist(), ch.tolist()
  for i in range(1, len(lo) + 1):
    if i == len(lo) or i - start == most or hi[i] != hi[start] or lo[i] != lo[i - 1] + 1:
      out.append((start, i))
      start = i
  return out


def side_keys(sides: PairSides | MedianSides, masks: np.ndarray) -> np.ndarray:
  """masks [B, L] -> pair keys [B, P'] of the real pairs by score position, those of
  `prepare_keys` (min of the two images' fused integers << shift | pair index: the
  side tables hold keys, so min of the two sides' keys). A few variants at a time
  (the temporaries stay in cache); variants in subset-code order (runs of one high
  half-subset and consecutive low ones) read a slice of the low tables and one row of
  the high ones, broadcast, instead of gathered copies."""
  h = (len(sides.lo_a) - 1).bit_length()
  codes = code_of(masks)
  cl, ch = codes & ((1 << h) - 1), codes >> h
  n = len(sides.sid)
  out = np.empty((len(codes), n), np.int64)
  if isinstance(sides, MedianSides):
    base = np.arange(0, len(sides.sums_a), len(sides.sums_a) // n, dtype=np.int64)  # pair rows
    for s in range(0, len(codes), SIDE_ROWS):
      c, d, o = cl[s : s + SIDE_ROWS], ch[s : s + SIDE_ROWS], out[s : s + SIDE_ROWS]
      _median_side(sides.lo_a, sides.hi_a, sides.sums_a, sides.pick, c, d, base, o)
      fb = _median_side(sides.lo_b, sides.hi_b, sides.sums_b, sides.pick, c, d, base)
      np.minimum(o, fb, out=o)
    return out
  runs = _runs(cl, ch, RUN_ROWS)
  if len(runs) > 2 * -(-len(codes) // RUN_ROWS):  # codes out of order: gathered rows
    for s in range(0, len(codes), SIDE_ROWS):
      c, d, o = cl[s : s + SIDE_ROWS], ch[s : s + SIDE_ROWS], out[s : s + SIDE_ROWS]
      sides.op(sides.lo_a[c], sides.hi_a[d], out=o)
      np.minimum(o, sides.op(sides.lo_b[c], sides.hi_b[d]), out=o)
    return out
  for s, e in runs:
    lo, hi, o = slice(int(cl[s]), int(cl[e - 1]) + 1), int(ch[s]), out[s:e]
    sides.op(sides.lo_a[lo], sides.hi_a[hi], out=o)
    np.minimum(o, sides.op(sides.lo_b[lo], sides.hi_b[hi]), out=o)
  return out

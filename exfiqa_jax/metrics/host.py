"""The ERC and EDC areas of many variants in plain numpy, without a sort of the classes.

The CPU backend's route for `exfiqa_jax.metrics.metrics_of_sorted`'s areas: the same
numbers, bit for bit (float32 arithmetic in the same order), from `prepare_keys`'
unique pair keys [B, P] by score position, unsorted. What it does instead of
sorting each class of each variant:

- the 20 rate cuts B_r (the key at quality position floor(r P / 20)) by selection:
  a histogram of key buckets per variant finds the bucket holding each cut, and only
  the pairs of those buckets (a few per cut) are sorted;
- the kept genuines at each rate as bit words over genuine score order, so a count
  of kept genuines above a score is a prefix popcount (`erc.Bits` in numpy);
- the FMR threshold from a window of the first w impostors in score order; a
  variant whose window cannot decide is redone with 2 w (up to all impostors), so
  no variant ever overflows;
- the EDC from the Q lowest genuine keys only (np.partition, then a sort of Q).

numpy kernels release the GIL: threads over chunks of variants use every core.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from exfiqa_jax.metrics.erc import RATES
from exfiqa_jax.metrics.keys import index_bits

ALL = np.uint64(2**64 - 1)


class HostPairs(NamedTuple):
  """The real (unpadded) parts of a PairSet the host areas read, as numpy arrays.
  gen_pos, imp_pos: [G], [I]; imp_upto, imp_before, imp_gen: [I]; gen_group: [G];
  error: [P] (edc_error, by pair index); num, den: [F]; width: [K, Q] float32 (the
  PairSet's edc_width); reach: the columns of width any limit reaches; best: [K]."""

  count: int
  shift: int
  gen_pos: np.ndarray
  imp_pos: np.ndarray
  imp_upto: np.ndarray
  imp_before: np.ndarray
  imp_gen: np.ndarray
  gen_group: np.ndarray
  error: np.ndarray
  n_err: np.float32
  num: np.ndarray
  den: np.ndarray
  width: np.ndarray
  reach: int
  best: np.ndarray


def host_pairs(ps) -> HostPairs:
  """A PairSet -> its HostPairs (host copies, once per pair set)."""
  n_gen, n_imp, count = int(ps.n_gen), int(ps.n_imp), int(ps.count)

  def a(x, n=None):
    x = np.asarray(x)
    return (x if n is None else x[:n]).astype(np.int64)

  error = np.asarray(ps.edc_error).astype(bool)
  n_err = np.float32(int(error.sum()))
  width = np.asarray(ps.edc_width, np.float32)
  nonzero = np.flatnonzero((width != 0).any(0))
  reach = min(n_gen, int(nonzero[-1]) + 1 if len(nonzero) else 1)
  e0 = n_err / np.float32(n_gen)
  limits = np.asarray(ps.limits, np.float32)
  best = e0 * e0 / np.float32(2) - np.square(np.maximum(e0 - limits, np.float32(0))) / np.float32(
    2
  )
  return HostPairs(
    count,
    index_bits(ps.sa.shape[0]),
    a(ps.gen_pos, n_gen),
    a(ps.imp_pos, n_imp),
    a(ps.imp_upto, n_imp),
    a(ps.imp_before, n_imp),
    a(ps.imp_gen, n_imp),
    a(ps.gen_group, n_gen),
    error,
    n_err,
    a(ps.fmr_num),
    a(ps.fmr_den),
    width,
    max(1, reach),
    best.astype(np.float32),
  )


def cuts(keys: np.ndarray, count: int, nb: int | None = None) -> np.ndarray:
  """keys: [B, >= count] unique int64 >= 0 (the first `count` real) -> [B, 20] the key
  at sorted position floor(r count / 20) of each row, by bucket selection."""
  x = keys[:, :count]
  bsz = len(x)
  nb = nb or 1 << max(8, min(20, (count // 2).bit_length()))
  low = x.min(1)
  span = x.max(1) - low
  shift = np.array([max(0, int(s).bit_length() - (nb.bit_length() - 1)) for s in span], np.int64)
  row = np.arange(bsz, dtype=np.int64)[:, None]
  off = x - low[:, None]
  off >>= shift[:, None]
  off += row * nb  # row nb + bucket: monotone in the key within a row
  cnt = np.bincount(off.ravel(), minlength=bsz * nb)
  cum = np.cumsum(cnt)
  k = (np.arange(RATES, dtype=np.int64) * count) // RATES
  at = np.searchsorted(cum, (k + row * count).ravel(), "right")  # the bucket of each cut
  rank = (k + row * count).ravel() - (cum[at] - cnt[at])  # its rank within the bucket
  flag = np.zeros(bsz * nb, bool)
  flag[at] = True
  hold = np.flatnonzero(flag[off.ravel()])  # the pairs of buckets holding a cut
  group = off.ravel()[hold]
  vals = x.ravel()[hold]
  srt = np.lexsort((vals, group))
  group, vals = group[srt], vals[srt]
  first = np.searchsorted(group, at, "left")
  return vals[first + rank].reshape(bsz, RATES)


def _words(kept: np.ndarray, nw: int):
  """kept: [B, 20, n] bool -> (words [B, 20, nw] uint64, bit j of word w: index 64 w + j;
  pref [B, 20, nw + 1] int64 kept before each word)."""
  packed = np.packbits(kept, axis=2, bitorder="little")
  buf = np.zeros((*kept.shape[:2], nw * 8), np.uint8)
  buf[:, :, : packed.shape[2]] = packed
  words = buf.view(np.uint64)
  pref = np.zeros((*kept.shape[:2], nw + 1), np.int64)
  np.cumsum(np.bitwise_count(words), axis=2, out=pref[:, :, 1:])
  return words, pref


def rate_fnmr(hp: HostPairs, kg, ki, bounds, window: int = 64) -> np.ndarray:
  """FNMR [B, 20, F] float32 (`erc._fnmr`'s numbers) from the genuine keys kg [B, G] and
  impostor keys ki [B, I] in score order and the cuts [B, 20]: kept at rate r iff
  key >= B_r. The impostors are read through a window of the first w in score order,
  doubled for the variants it cannot decide."""
  bsz, g = kg.shape
  nw = g // 64 + 1  # a spare word: queries up to j = G
  kept = kg[:, None, :] >= bounds[:, :, None]
  words, pref = _words(kept, nw)
  n_gen_r = pref[:, :, -1]
  n_imp_r = (hp.count - (np.arange(RATES) * hp.count) // RATES)[None, :] - n_gen_r
  out = np.empty((bsz, RATES, len(hp.num)), np.float32)
  todo = np.arange(bsz)
  w = min(window, len(hp.imp_pos))
  while len(todo):
    f, short = _fnmr(hp, ki[todo], bounds[todo], words[todo], pref[todo], n_gen_r[todo],
                     n_imp_r[todo], w)  # fmt: skip
    done = ~short if w < len(hp.imp_pos) else np.ones(len(todo), bool)
    out[todo[done]] = f[done]
    todo = todo[~done]
    w = min(2 * w, len(hp.imp_pos))
  return out


def _fnmr(hp: HostPairs, ki, bounds, words, pref, n_gen_r, n_imp_r, w):
  """One window of w impostors -> (fnmr [B, 20, F] float32, short [B]: the window
  cannot decide some rate/FMR of the row)."""
  bsz, nf = len(ki), len(hp.num)
  g, nw = len(hp.gen_pos), words.shape[2]
  c0 = np.zeros((bsz, RATES, w + 1), np.int64)  # kept among the first m impostors
  np.cumsum(ki[:, None, :w] >= bounds[:, :, None], axis=2, out=c0[:, :, 1:])
  shape = (bsz, RATES, nf)
  br = np.broadcast_to(np.arange(bsz * RATES).reshape(bsz, RATES, 1), shape)  # (row, rate)
  nimp = np.broadcast_to(n_imp_r[:, :, None], shape)
  ngen = np.broadcast_to(n_gen_r[:, :, None], shape)
  num, den = hp.num, hp.den
  q, rem = (num * nimp) // den, (num * nimp) % den
  c_flat = c0.ravel()
  c_base = br * (w + 1)
  c_sorted = (c0.reshape(-1, w + 1) + (np.arange(bsz * RATES) * (w + 2))[:, None]).ravel()
  have = c_flat[c_base + w]
  w_flat, p_flat, p_base = words.ravel(), pref.ravel(), br * (nw + 1)
  p_sorted = (pref.reshape(-1, nw + 1) + (np.arange(bsz * RATES) * (g + 1))[:, None]).ravel()
  last = w - 1

  def nth(n):  # index of the n-th kept impostor (clipped to the window)
    n = np.clip(n, 0, w + 1)
    m = np.searchsorted(c_sorted, br * (w + 2) + n, "left") - c_base - 1
    return np.clip(m, 0, last)

  def imp_below(i):
    return c_flat[c_base + np.clip(i, 0, w)]

  def gen_below(j):  # kept genuines with index < j, 0 <= j <= G
    blk = j >> 6
    word = w_flat[br * nw + np.minimum(blk, nw - 1)]
    mask = (np.uint64(1) << (j & 63).astype(np.uint64)) - np.uint64(1)
    return p_flat[p_base + blk] + np.bitwise_count(word & mask).astype(np.int64)

  def gen_last(j):  # the largest kept genuine index < j, -1 if none
    c = gen_below(j)
    blk = np.searchsorted(p_sorted, br * (g + 1) + c, "left") - p_base - 1
    blk = np.clip(blk, 0, nw - 1)
    word = w_flat[br * nw + blk]
    within = c - p_flat[p_base + blk]
    bit = np.zeros(word.shape, np.int64)
    for step in (32, 16, 8, 4, 2, 1):  # the within-th set bit: fewer set below it
      low = bit + step
      few = np.bitwise_count(word & (ALL >> (64 - low).astype(np.uint64))) < within
      bit = np.where(few, low, bit)
    return np.where(c > 0, blk * 64 + bit, -1)

  need_hi = q + (rem > 0)
  first = nth(np.ones_like(q))
  zero_ok = gen_below(hp.imp_gen[first]) > 0
  at_hi, at_q = nth(need_hi), nth(np.maximum(q, 1))
  hi, q_end = imp_below(hp.imp_upto[at_hi]), imp_below(hp.imp_upto[at_q])
  q_start = imp_below(hp.imp_before[at_q])
  lo = np.where(q >= 1, np.where(q_end == q, q, q_start), 0)
  lo = np.where((lo > 0) | zero_ok, lo, -1)
  delta = np.clip((q - lo) - (hi - q), -2, 1)
  sel = np.where((lo >= 0) & (den * delta < -2 * rem), lo, hi)
  nxt_n = np.minimum(sel + 1, nimp)
  nxt = nth(nxt_n)
  jx = np.where(sel < nimp, hp.imp_gen[nxt], g)
  sel_n = np.maximum(sel, 1)
  at_sel = nth(sel_n)
  t_imp = np.where(sel >= 1, hp.imp_pos[at_sel], -1)
  i_gen = gen_last(jx)
  t_gen = np.where(i_gen >= 0, hp.gen_pos[np.maximum(i_gen, 0)], -1)
  j = np.where(t_gen > t_imp, hp.gen_group[np.maximum(i_gen, 0)], hp.imp_gen[at_sel])
  non_match = ngen - gen_below(j)
  ok = (nimp > 0) & (ngen > 0)
  with np.errstate(invalid="ignore", divide="ignore"):
    fnmr = non_match.astype(np.float32) * (np.float32(1) / ngen.astype(np.float32))
  fnmr = np.where(ok, fnmr, np.float32(np.nan))
  # the window decides when every impostor used lies in it, with its tie group
  short = (
    (have < 1)
    | (have < need_hi)
    | (have < np.maximum(q, 1))
    | ((sel < nimp) & (have < nxt_n))
    | (have < sel_n)
    | (hp.imp_upto[at_hi] > w)
    | (hp.imp_upto[at_q] > w)
  ) & ok
  return fnmr, short.reshape(bsz, -1).any(1)


def erc_area(fnmr: np.ndarray) -> np.ndarray:
  """fnmr [B, 20, F] float32 -> trapezoid areas [B, F], summed as `erc.rate_curves`."""
  inner = fnmr[:, 1].copy()
  for r in range(2, RATES - 1):
    inner += fnmr[:, r]
  return (inner + (fnmr[:, 0] + fnmr[:, -1]) / np.float32(2)) * np.float32(1 / RATES)


def edc_area(hp: HostPairs, kg: np.ndarray) -> np.ndarray:
  """kg: [B, G] genuine keys (any order) -> partial areas [B, K] float32, `edc.edc`'s
  numbers: only the `reach` lowest keys sorted (np.partition first)."""
  q, g = hp.reach, kg.shape[1]
  low = np.partition(kg, q - 1, axis=1)[:, :q] if q < g else kg
  low = np.sort(low, axis=1)
  quality = low >> hp.shift
  e = hp.error[low & ((1 << hp.shift) - 1)].astype(np.int64)
  bsz = len(kg)
  pos = np.broadcast_to(np.arange(q), (bsz, q))
  new = np.ones((bsz, q), bool)
  np.not_equal(quality[:, 1:], quality[:, :-1], out=new[:, 1:])
  first = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
  e_before = np.cumsum(e, axis=1) - e
  e_start = np.take_along_axis(e_before, first, 1)
  frac = (hp.n_err - e_start.astype(np.float32)) / (np.float32(g) - first.astype(np.float32))
  width = hp.width  # [K, Qp]
  qp = width.shape[1]
  n = 1 << max(0, (qp - 1).bit_length())
  x = np.zeros((bsz, len(width), n), np.float64)  # exact products, summed in float64
  x[:, :, :q] = width[None, :, :q].astype(np.float64) * frac[:, None, :].astype(np.float64)
  while x.shape[-1] > 1:  # edc.tree_sum's pairwise order
    half = x.shape[-1] // 2
    x = x[..., :half] + x[..., half:]
  return x[..., 0].astype(np.float32)


def host_areas(hp: HostPairs, keys: np.ndarray, window: int = 64):
  """keys: [B, P] `prepare_keys`' pair keys by score position -> (erc_area [B, F],
  edc_area [B, K], edc_best [B, K], overflow [B] (all False)), `metrics_of_sorted`'s."""
  keys = np.asarray(keys)
  bounds = cuts(keys, hp.count)
  kg = keys[:, hp.gen_pos]
  ki = keys[:, hp.imp_pos]
  fnmr = rate_fnmr(hp, kg, ki, bounds, window)
  bsz = len(keys)
  return (
    erc_area(fnmr),
    edc_area(hp, kg),
    np.broadcast_to(hp.best, (bsz, len(hp.best))).copy(),
    np.zeros(bsz, bool),
  )

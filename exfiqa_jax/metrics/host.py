"""The ERC and EDC areas of many variants in plain numpy, without a sort of the classes.

The CPU backend's route for `exfiqa_jax.metrics.metrics_of_sorted`'s areas: the same
numbers, bit for bit (float32 arithmetic in the same order), from `prepare_keys`'
unique pair keys [B, P] by score position, unsorted. What it does instead of
sorting each class of each variant:

- the 20 rate cuts B_r (the key at quality position floor(r P / 20)) by selection:
  a histogram of key buckets per variant finds the bucket holding each cut, and only
  the pairs of those buckets (a few per cut) are sorted;
- each pair's rate level (the highest rate it is kept at) from the same histogram;
  the kept genuines of each rate as bit words over genuine score order (packbits) with
  their prefix popcounts, so a count of kept genuines above a score is a prefix count
  plus a popcount of one word, and the last kept genuine below one a binary search of
  popcounts in one word;
- the FMR threshold from a window of the first w impostors in score order; a
  variant whose window cannot decide is redone with 2 w (up to all impostors), so
  no variant ever overflows;
- the EDC from the Q lowest genuine keys only: those not kept at the first rate cut
  that discards at least Q genuines are sorted (about Q + G / 20), else np.partition.

numpy kernels release the GIL: threads over chunks of variants use every core.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from exfiqa_jax.metrics.bits import RATES, index_bits

POW2 = np.int64(1) << np.arange(63, dtype=np.int64)  # bit_length(k) = #{2^i <= k}


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
  gen_error: np.ndarray
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
  best = e0 * e0 / np.float32(2) - np.square(np.maximum(e0 - limits, np.float32(0))) / np.float32(2)
  return HostPairs(
    count,
    index_bits(ps.sa.shape[0]),
    a(ps.gen_pos, n_gen),
    a(ps.imp_pos, n_imp),
    a(ps.imp_upto, n_imp),
    a(ps.imp_before, n_imp),
    a(ps.imp_gen, n_imp),
    a(ps.gen_group, n_gen),
    error[np.asarray(ps.sid)[np.asarray(ps.gen_pos)[:n_gen]]].astype(np.int64),
    n_err,
    a(ps.fmr_num),
    a(ps.fmr_den),
    width,
    max(1, reach),
    best.astype(np.float32),
  )


def levels(keys: np.ndarray, count: int, nb: int | None = None):
  """keys: [B, >= count] unique int64 >= 0 (the first `count` real) -> (cuts [B, 20]: the
  key at sorted position floor(r count / 20) of each row; level [B, count] int8: the
  highest r with key >= cut r, the rate up to which the pair is kept), by selection:
  a histogram of nb key buckets per row finds the bucket of each cut; a pair outside
  those buckets takes its level from a per-bucket table, the few inside are compared
  with the row's cuts, and only they are sorted (to find the cuts)."""
  # row-major: the levels below are updated in place through ravel(), a view only then
  x = np.ascontiguousarray(keys)[:, :count]
  bsz = len(x)
  nb = nb or 1 << max(8, min(20, (count // 2).bit_length()))
  span = np.searchsorted(POW2, x.max(1), "right")  # each row's largest key's bit length
  shift = np.maximum(span - (nb.bit_length() - 1), 0)
  row = np.arange(bsz, dtype=np.int64)[:, None]
  # bucket < nb, monotone in the key (a logical shift of keys >= 0: numpy's unsigned
  # shift is vectorised, its signed one is not: a third of the time)
  off = (x.view(np.uint64) >> shift[:, None].astype(np.uint64)).view(np.int64)
  off += row * nb  # row nb + bucket
  flat = off.ravel()
  cnt = np.bincount(flat, minlength=bsz * nb)
  cum = np.cumsum(cnt)
  k = (np.arange(RATES, dtype=np.int64) * count) // RATES
  want = (k + row * count).ravel()
  at = np.searchsorted(cum, want, "right")  # row nb + bucket of each cut, nondecreasing
  rank = want - (cum[at] - cnt[at])  # the cut's rank within its bucket
  # per bucket: #{cuts in lower buckets of the row} - 1 (runs of equal values between
  # the cuts' buckets), + 64 where it holds a cut
  runs = np.empty((bsz, RATES + 1), np.int64)
  vr = at.reshape(bsz, RATES) - row * nb
  runs[:, 0] = vr[:, 0] + 1
  runs[:, 1:RATES] = np.diff(vr, axis=1)
  runs[:, RATES] = nb - 1 - vr[:, -1]
  tab = np.repeat(np.tile(np.arange(-1, RATES, dtype=np.int8), bsz), runs.ravel())
  tab[at] += 64
  level = tab[off]
  hold = np.flatnonzero(level.ravel() >= 63)  # the pairs of buckets holding a cut
  vals = x.ravel()[hold]
  group = flat[hold]
  # order the holders by (bucket, key): buckets numbered densely (at most 20 a row) above
  # the key's bits within its bucket, one int64 sort; else a lexsort
  held = np.unique(at)
  size = cnt[held]  # the holders of each held bucket
  start = np.cumsum(size) - size  # its first place among the sorted holders
  number = cnt  # reused (counts read): bucket -> its number among the held buckets
  number[held] = np.arange(len(held))
  width = int(shift.max())
  if len(held).bit_length() + width <= 62:
    comp = (number[group] << width) | (vals & ((1 << shift[group // nb]) - 1))
    srt = np.argsort(comp)
  else:
    srt = np.lexsort((vals, group))
  order = hold[srt]
  cpos = start[number[at]] + rank  # each cut's place among the sorted holders (below 20
  # pairs, several rates share one)
  bounds = vals[srt][cpos].reshape(bsz, RATES)
  # a holder's level: the table's, plus the cuts of its own bucket at or below it
  mark = np.bincount(cpos, minlength=len(order)).astype(np.int32)  # cuts at each place
  mine = np.cumsum(mark, dtype=np.int32)  # cuts at or before each sorted place
  below = (mine - mark)[start[number[group[srt]]]]  # cuts before its bucket's first place
  level.ravel()[order] += (mine - below - 64).astype(np.int8)
  return bounds, level


WORD = np.dtype("<u8")  # little-endian words of packbits' little bit order: bit j = item j
ALL = np.uint64(2**64 - 1)


def _words(glvl: np.ndarray, nw: int):
  """glvl: [B, G] the genuines' rate levels -> (words [B, 20, nw] uint64: bit j of word
  w of rate r set iff genuine 64 w + j is kept at rate r (level >= r; none past G),
  pref [B, 20, nw + 1] int64: genuines kept at each rate before each word), so a count
  of kept genuines below j is pref at j's word plus a popcount of that word's low bits."""
  bsz, g = glvl.shape
  padded = np.full((bsz, nw * 64), -1, np.int8)
  padded[:, :g] = glvl
  kept = padded[:, None, :] >= np.arange(RATES, dtype=np.int8)[None, :, None]
  words = np.packbits(kept, axis=2, bitorder="little").view(WORD)
  pref = np.zeros((bsz, RATES, nw + 1), np.int64)
  np.cumsum(np.bitwise_count(words), axis=2, out=pref[:, :, 1:])
  return words, pref


def rate_fnmr(hp: HostPairs, glvl, level, window: int = 64):
  """FNMR [B, 20, F] float32 (`erc._fnmr`'s numbers) from the rate levels of the
  genuines glvl [B, G] in score order and of every pair level [B, >= count] by score
  position (`levels`: kept at rate r iff level >= r). The impostors are read through a
  window of the first w in score order, doubled for the variants it cannot decide.
  Also the kept genuines per rate [B, 20]."""
  bsz, g = glvl.shape
  nw = g // 64 + 1  # a spare word: queries up to j = G
  words, pref = _words(glvl, nw)
  n_gen_r = pref[:, :, -1]
  n_imp_r = (hp.count - (np.arange(RATES) * hp.count) // RATES)[None, :] - n_gen_r
  out = np.empty((bsz, RATES, len(hp.num)), np.float32)
  todo = np.arange(bsz)
  w = min(window, len(hp.imp_pos))
  while len(todo):
    part = slice(None) if len(todo) == bsz else todo  # no copies on the first pass
    ilvl = level[part][:, hp.imp_pos[:w]]
    f, short = _fnmr(hp, ilvl, words[part], pref[part], n_gen_r[part], n_imp_r[part], w)
    done = ~short if w < len(hp.imp_pos) else np.ones(len(todo), bool)
    out[todo[done]] = f[done]
    todo = todo[~done]
    w = min(2 * w, len(hp.imp_pos))
  return out, n_gen_r


def _fnmr(hp: HostPairs, ilvl, words, pref, n_gen_r, n_imp_r, w):
  """One window of w impostors -> (fnmr [B, 20, F] float32, short [B]: the window
  cannot decide some rate/FMR of the row)."""
  bsz, nf = len(ilvl), len(hp.num)
  g, nw = len(hp.gen_pos), words.shape[2]
  c0 = np.zeros((bsz, RATES, w + 1), np.int64)  # kept among the first m impostors
  kept = ilvl[:, None, :w] >= np.arange(RATES, dtype=np.int8)[None, :, None]
  np.cumsum(kept, axis=2, out=c0[:, :, 1:])
  # the kept impostors' window indices, (row, rate) by (row, rate), and a spare last
  have_br = c0[:, :, w].ravel()
  start = np.cumsum(have_br) - have_br  # each (row, rate)'s first place among them
  kept_at = np.flatnonzero(kept)
  kept_at -= np.repeat(np.arange(0, bsz * RATES * w, w), have_br)
  kept_at = np.append(kept_at, w - 1)
  shape = (bsz, RATES, nf)
  br = np.repeat(np.arange(bsz * RATES), nf).reshape(shape)  # (row, rate)
  nimp = np.broadcast_to(n_imp_r[:, :, None], shape)
  ngen = np.broadcast_to(n_gen_r[:, :, None], shape)
  num, den = hp.num, hp.den
  q, rem = (num * nimp) // den, (num * nimp) % den
  c_flat = c0.ravel()
  c_base = br * (w + 1)
  have = c_flat[c_base + w]
  at_br = start[br]
  p_flat, p_base = pref.ravel(), br * (nw + 1)
  p_sorted = (pref.reshape(-1, nw + 1) + (np.arange(bsz * RATES) * (g + 1))[:, None]).ravel()
  w_flat, w_base = words.ravel(), br * nw
  last = w - 1

  def nth(n):  # index of the n-th kept impostor (0 for n < 1, the window's last past it)
    m = kept_at[at_br + np.clip(n, 1, have) - 1]  # n > have = 0: the spare (or another)
    return np.where(n > have, last, np.where(n < 1, 0, m))

  def imp_below(i):
    return c_flat[c_base + np.clip(i, 0, w)]

  def gen_below(j):  # kept genuines with index < j, 0 <= j <= G
    blk = j >> 6
    low = (np.uint64(1) << (j & 63).astype(np.uint64)) - np.uint64(1)
    return p_flat[p_base + blk] + np.bitwise_count(w_flat[w_base + blk] & low)

  def gen_last(j):  # the largest kept genuine index < j, -1 if none
    c = gen_below(j)
    # the word of the c-th kept genuine (the last below j): its highest set bit below j
    blk = np.searchsorted(p_sorted, br * (g + 1) + c, "left") - p_base - 1
    blk = np.clip(blk, 0, nw - 1)
    low = (np.uint64(1) << (j & 63).astype(np.uint64)) - np.uint64(1)
    word = w_flat[w_base + blk] & np.where(blk == j >> 6, low, ALL)
    for step in (1, 2, 4, 8, 16, 32):  # every bit below the highest set: a popcount
      word |= word >> np.uint64(step)
    bit = np.bitwise_count(word).astype(np.int64) - 1
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


_FLAT: list = []  # [(gen_pos, bsz, P, flat index, error)]: the last batch shape's


def _genuine_flat(hp: HostPairs, bsz: int, p: int) -> tuple[np.ndarray, np.ndarray]:
  """(index [B G] of each genuine of a [B, P] batch in the flat batch, its error bit
  [B G]), built once per pair set and batch shape."""
  hit = _FLAT[0] if _FLAT else None  # one read: threads may replace it meanwhile
  if hit is None or hit[0] is not hp.gen_pos or hit[1:3] != (bsz, p):
    at = (np.arange(bsz, dtype=np.int64)[:, None] * p + hp.gen_pos[None, :]).ravel()
    hit = (hp.gen_pos, bsz, p, at, np.tile(hp.gen_error, bsz))
    _FLAT[:] = [hit]
  return hit[3], hit[4]


def edc_area(hp: HostPairs, keys: np.ndarray, glvl: np.ndarray, n_gen_r: np.ndarray):
  """keys: [B, P] pair keys by score position, glvl [B, G] the genuines' rate levels,
  n_gen_r [B, 20] kept genuines per rate -> partial areas [B, K] float32, `edc.edc`'s
  numbers. Only the `reach` lowest genuine keys matter: they lie among the genuines
  not kept at the first rate that discards at least `reach` of them (about reach +
  G / 20), and only those are sorted (np.partition of all of them where no rate does)."""
  q, g = hp.reach, glvl.shape[1]
  bsz = len(keys)
  disc = g - n_gen_r  # genuines discarded at each rate, nondecreasing
  r = (disc < q).sum(1)  # the first rate discarding >= q (20: none)
  # keys quality << 1 | error: an area depends on the order of the qualities, their
  # ties and which genuines are errors, not on the order within a tie
  if (r < RATES).all() and q < g:
    cnt = disc[np.arange(bsz), r]  # genuines of each row below rate r's cut
    idx = np.flatnonzero(glvl < r[:, None].astype(np.int8))  # row-major
    at, error = _genuine_flat(hp, bsz, keys.shape[1])
    got = keys.ravel()[at[idx]]
    unsigned = got.view(np.uint64)  # keys >= 0: numpy's vectorised (unsigned) shift
    unsigned >>= np.uint64(hp.shift)
    got <<= 1
    got |= error[idx]
    wide = int(cnt.max())
    buf = np.full((bsz, wide), np.iinfo(np.int64).max)
    buf[np.arange(wide) < cnt[:, None]] = got  # each row's from its start, row-major
    low = np.sort(buf, axis=1)[:, :q]
  else:
    kg = ((keys[:, hp.gen_pos] >> hp.shift) << 1) | hp.gen_error
    low = np.sort(np.partition(kg, q - 1, axis=1)[:, :q] if q < g else kg, axis=1)
  # per position: the start of its tie group (`first`) and the errors before it; every
  # row starts a group, and both are nondecreasing along a row: a running maximum of
  # (position << 32 | errors before it) at the group starts fills each group with both
  new = np.ones((bsz, q), bool)
  np.greater(low[:, 1:] ^ low[:, :-1], 1, out=new[:, 1:])  # the quality changes
  e = low & 1
  both = np.cumsum(e, axis=1)
  both -= e  # the errors before each position
  both |= np.arange(q, dtype=np.int64) << 32  # (position, errors before it): one running max
  np.multiply(both, new, out=both)
  np.maximum.accumulate(both, axis=1, out=both)
  e_start, first = both & 0xFFFFFFFF, (both.view(np.uint64) >> np.uint64(32)).view(np.int64)
  frac = (hp.n_err - e_start.astype(np.float32)) / (np.float32(g) - first.astype(np.float32))
  width = hp.width  # [K, Qp]
  n = 1 << max(0, (width.shape[1] - 1).bit_length())
  x = np.empty((bsz, len(width), n), np.float64)  # exact products, summed in float64
  np.multiply(width[None, :, :q].astype(np.float64), frac[:, None, :], out=x[:, :, :q])
  x[:, :, q:] = 0
  while n > 1:  # edc.tree_sum's pairwise order
    n //= 2
    np.add(x[..., :n], x[..., n : 2 * n], out=x[..., :n])
  return x[..., 0].astype(np.float32)


def host_areas(hp: HostPairs, keys: np.ndarray, window: int = 64):
  """keys: [B, P] `prepare_keys`' pair keys by score position -> (erc_area [B, F],
  edc_area [B, K], edc_best [B, K], overflow [B] (all False)), `metrics_of_sorted`'s."""
  keys = np.ascontiguousarray(keys)  # a column-major batch (e.g. gathered columns) too
  _, level = levels(keys, hp.count)
  glvl = level[:, hp.gen_pos]
  fnmr, n_gen_r = rate_fnmr(hp, glvl, level, window)
  bsz = len(keys)
  return (
    erc_area(fnmr),
    edc_area(hp, keys, glvl, n_gen_r),
    np.broadcast_to(hp.best, (bsz, len(hp.best))).copy(),
    np.zeros(bsz, bool),
  )

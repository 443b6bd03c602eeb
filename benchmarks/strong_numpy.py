"""A strong, exact, plain-numpy fusion sweep: the baseline of sweep_bench.py.

Written from docs/protocol.md §2-5 and /work/shared/SPEC.md §3 without the
package's engine (only numpy); every number equals the plain references of
exfiqa_jax/metrics/reference.py on the exact rational fusion (tests/fusion/
test_strong_numpy.py). What makes it fast, all exact:

- exit scores as exact fixed-point integers (a float32 is m 2^e: every score
  shifted to the smallest exponent in use), so a mean is an integer sum, the
  depth-weighted mean the integer sum of i x_i (the shared divisor cannot change
  the order), an even median the sum of the two middle values (an odd one twice
  the middle value);
- half-subset tables (every subset of exits 1-6 and of 7-12) gathered once to
  each pair side in comparison-score order: a variant's pair qualities are
  min(op(lo_a[c & 63], hi_a[c >> 6]), op(lo_b[..], hi_b[..])), four row reads and
  three operations per pair (every table C-contiguous: a column-major table makes
  every per-variant array strided); the median: the sorted positions of the
  selected exits as a 12-bit mask (an OR of two half tables), one 4,096-entry table
  of the pair of middle positions of each mask and a per-side table of the sum of
  every pair of sorted values i <= j (twice the middle value when k is odd): two
  gathers per pair side;
- pairs sorted by comparison score once per pair set; a pair's key is
  quality << b | pair index (unique; ties in pair-list order, the stable sort);
  per variant only the 20 rate cuts are found, by selection, not a sort (a
  histogram of quality buckets, the level of every bucket from 21 runs, np.repeat;
  only the pairs in the buckets holding a cut are ordered exactly, by one int64
  sort of (cut bucket, key) composites); a pair is kept at rate r iff its key >=
  the r-th cut;
- the kept genuines at each rate as bit words over genuine score order
  (packbits), so a count of kept genuines above a score is a prefix popcount;
- at FMR <= 1e-2 a threshold depends only on the first few kept impostors in
  score order: a window of the first W impostors (W doubled for a variant whose
  window cannot decide, up to all of them);
- the EDC sorts only the genuine keys the largest discard limit can reach: those
  not kept at the first rate cut that discards enough genuines (their rate level
  says so; about q + G / 20 keys), else np.partition of all of them; its keys are
  quality << 1 | error (an area depends on the order, the ties and the errors, not
  on the order within a tie), and the area is a sum over tie-group starts (the
  group's value step times the width left from there), not a per-position fill;
- variants of one rule in batches of 64 codes sharing their high half-subset: the
  low-half table rows are one slice (no gathered copy), numpy's per-call cost is paid
  once per batch, scratch arrays are reused.

    eng = StrongNumpySweep(exits, a, b, labels, scores, fmrs=(1e-3, 1e-4), limits=(0.2, 0.3))
    erc, edc = eng.run(masks, "mean")          # [V, F] areas, [V, K] partial areas
    table = eng.sweep(masks, rules)            # {"erc": [V R, F], "edc": [V R, K]}

Also `python benchmarks/strong_numpy.py [--images 12000 --pairs 6000]`: the
LFW-sized sweep in this process, its time per variant; `--against OTHER.py
[--rounds 3]`: this copy and another copy of this file (e.g. main's), both sweeps
in one process, interleaved, their CPU and wall times per variant and the largest
difference of their tables (pin it: `taskset -c 0`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

RATES = 20
SIDE_BYTES = 1 << 30  # the largest per-pair-side tables built (all rules)
RULES = ("mean", "weighted", "median", "min", "max")
ALL = np.uint64(2**64 - 1)


def fixed_point(x: np.ndarray) -> np.ndarray:
  """float32 [...] -> exact int64 x * 2^-e0 (e0: the lowest set bit over all values)."""
  x = np.asarray(x, np.float32).astype(np.float64)
  nz = x[x != 0]
  if not nz.size:
    return np.zeros(x.shape, np.int64)
  m, e = np.frexp(nz)
  mant = np.abs(np.ldexp(m, 24)).astype(np.int64)
  e0 = int((e - 24 + np.log2(mant & -mant).astype(np.int64)).min())
  if int(e.max()) - e0 > 55:
    raise ValueError("exit scores span more than 55 bits of fixed point")
  return np.ldexp(x, -e0).astype(np.int64)


def _nth_bit_table(depth: int) -> np.ndarray:
  """[depth + 1, 2^depth] int64: index of the m-th (1-based) set bit of each code."""
  codes = np.arange(1 << depth)
  bits = (codes[:, None] >> np.arange(depth)) & 1
  run = np.cumsum(bits, 1)
  out = np.zeros((depth + 1, 1 << depth), np.int64)
  for m in range(1, depth + 1):
    out[m] = np.argmax((run == m) & (bits == 1), 1)
  return out


def _rows(table: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """table [T, N] gathered to columns cols [P] -> [T, P], C-contiguous (a fancy index
  along axis 1 returns a column-major array, and every later per-variant array
  would inherit its strides)."""
  return np.ascontiguousarray(np.take(table, cols, axis=1))


class StrongNumpySweep:
  def __init__(
    self,
    exits,
    a,
    b,
    labels,
    scores,
    fmrs=(1e-3, 1e-4),
    edc_fmr=1e-3,
    limits=(0.2, 0.3),
    window=64,
    batch=64,
    buckets=None,
    side_tables=None,
  ):
    x = fixed_point(exits)
    self.x = x - x.min()  # >= 0
    self.n, self.depth = x.shape
    scores = np.asarray(scores, np.float64)
    genuine = np.asarray(labels).astype(bool)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    p = len(scores)
    self.p, self.bits = p, max(1, (p - 1).bit_length())
    perm = np.argsort(-scores, kind="stable")  # descending score, ties in list order
    s = scores[perm]
    new = np.r_[True, s[1:] != s[:-1]]
    start = np.maximum.accumulate(np.where(new, np.arange(p), 0))
    end = np.minimum.accumulate(np.where(np.r_[new[1:], True], np.arange(p), p)[::-1])[::-1]
    g_s = genuine[perm]
    self.sa, self.sb, self.sid = a[perm], b[perm], perm.astype(np.int64)
    self.gpos, self.ipos = np.flatnonzero(g_s), np.flatnonzero(~g_s)
    # class-major layout of the per-variant arrays: genuines, then impostors, each in
    # score order (a class is a contiguous slice; keys keep the pair-list index)
    cm = np.r_[perm[g_s], perm[~g_s]]
    self.ca, self.cb, self.csid = a[cm], b[cm], cm.astype(np.int64)
    g_upto, i_upto = np.r_[0, np.cumsum(g_s)], np.r_[0, np.cumsum(~g_s)]
    self.imp_end = i_upto[end[self.ipos] + 1]  # impostors up to the end of its tie group
    self.imp_start = i_upto[start[self.ipos]]  # impostors before its tie group
    self.imp_gen = g_upto[start[self.ipos]]  # genuines before its tie group
    self.gen_group = g_upto[start[self.gpos]]  # genuines before a genuine's tie group
    self.n_gen, self.n_imp = len(self.gpos), len(self.ipos)
    if not self.n_gen or not self.n_imp:
      raise ValueError("need genuine and impostor pairs")
    thr = np.quantile(scores[~genuine], 1 - edc_fmr)
    self.error = genuine & (scores < thr)  # by pair-list index
    self.n_err = int(self.error.sum())
    self.gen_error = self.error[self.csid[: self.n_gen]].astype(np.int64)  # genuine score order
    fr = [Fraction(str(f)) for f in fmrs]
    self.f = len(fr)
    self.num = np.repeat([f.numerator for f in fr], RATES).astype(np.int64)  # [F * 20]
    self.den = np.repeat([f.denominator for f in fr], RATES).astype(np.int64)
    self.rows = np.tile(np.arange(RATES), self.f)  # the rate of each of the F * 20 entries
    self.limits = np.asarray(limits, np.float64)
    self.q = min(self.n_gen, math.ceil(self.limits.max() * self.n_gen) + 1)
    self.width = np.clip(self.limits[:, None] - np.arange(self.q) / self.n_gen, 0, 1 / self.n_gen)
    self.cum_width = np.c_[np.zeros(len(self.limits)), np.cumsum(self.width, 1)]  # [K, q + 1]
    self.cuts = (np.arange(RATES) * p) // RATES
    self.window = min(window, self.n_imp)
    # per-pair-side tables where they fit (LFW: 4 x 64 x P x 8 B), else per-image tables
    # and two gathers per variant (IJB-C); batches sized to about 256 MB of pair arrays
    fits = (4 << (self.depth - self.depth // 2)) * p * 8 <= SIDE_BYTES
    self.side = fits if side_tables is None else side_tables
    self.batch = max(1, min(batch, (256 << 20) // (p * 8 * 8)))
    self.nw = -(-self.n_gen // 64) + 1  # genuine bit words, one spare (queries up to n_gen)
    self.gen_pos_i = self.gpos.astype(np.int64)
    self.buckets = buckets
    self.edc_by_level = True  # False: partition all genuine keys (the check of the other)
    self.tables: dict = {}

  # ---------------------------------------------------------------- fusion
  def _side_tables(self, rule):
    """Per rule: (op, [lo_a, lo_b], [hi_a, hi_b]) [2^h, P] in score order, h = L // 2."""
    if rule in self.tables:
      return self.tables[rule]
    h, depth = self.depth // 2, self.depth
    if rule == "median":
      order = np.argsort(self.x, axis=1, kind="stable")
      pos = np.argsort(order, axis=1)  # sorted position of each exit, per image
      asc = np.take_along_axis(self.x, order, 1)

      def table(exits):
        t = np.zeros((1 << len(exits), self.n), np.int64)
        for c in range(1, len(t)):
          t[c] = t[c & (c - 1)] | (1 << pos[:, exits[(c & -c).bit_length() - 1]])
        return t

      lo, hi = table(list(range(h))), table(list(range(h, depth)))
      sides = (self.ca, self.cb)
      # the median of k values is the sum of the two middle ones (k even) or twice the
      # middle one (odd): one table entry per pair of sorted positions i <= j, and the
      # pair of the middle set bits of each sorted-position mask (k = its popcount)
      i, j = np.triu_indices(depth)
      pair = np.zeros((depth, depth), np.int64)
      pair[i, j] = np.arange(len(i))
      nth, mask = _nth_bit_table(depth), np.arange(1 << depth)
      k = np.bitwise_count(mask)
      mid = pair[nth[(k + 1) // 2, mask], nth[np.minimum(k // 2 + 1, depth), mask]]
      sums = asc[:, i].T + asc[:, j].T  # [depth (depth + 1) / 2, N]: entry-major
      if not self.side:
        fused = (mid * self.n, np.arange(self.n)[None, :], [sums.ravel()])
        return self.tables.setdefault(rule, (None, [lo], [hi], fused))
      fused = (mid * self.p, np.arange(self.p)[None, :], [_rows(sums, c).ravel() for c in sides])
      out = (None, [_rows(lo, c) for c in sides], [_rows(hi, c) for c in sides], fused)
    else:
      cols = self.x.T * (np.arange(1, depth + 1)[:, None] if rule == "weighted" else 1)
      op, empty = {
        "mean": (np.add, 0),
        "weighted": (np.add, 0),
        "min": (np.minimum, 2**62),
        "max": (np.maximum, -1),
      }[rule]

      def table(part):
        t = np.empty((1 << len(part), self.n), np.int64)
        t[0] = empty
        for c in range(1, len(t)):
          t[c] = op(t[c & (c - 1)], part[(c & -c).bit_length() - 1])
        return t

      lo, hi = table(cols[:h]), table(cols[h:])
      if not self.side:
        return self.tables.setdefault(rule, (op, [lo], [hi], None))
      out = (
        op,
        [_rows(lo, self.ca), _rows(lo, self.cb)],
        [_rows(hi, self.ca), _rows(hi, self.cb)],
        None,
      )
    self.tables[rule] = out
    return out

  def pair_quality(self, codes: np.ndarray, rule: str) -> np.ndarray:
    """codes: [B] subset codes (bit i: exit i + 1) -> exact fused pair qualities [B, P]
    in class-major score order (integers with the order and ties of the rule's fused
    scores). A batch whose codes share their high half reads that row once."""
    op, lo, hi, med = self._side_tables(rule)
    h = self.depth // 2
    cl, ch = codes & ((1 << h) - 1), codes >> h
    if (ch == ch[0]).all():
      ch = ch[:1]  # broadcast one row
    if med is None and not self.side:  # per image, then the pairs' two gathers
      f = op(lo[0][cl], hi[0][ch])
      return np.minimum(np.take(f, self.ca, 1), np.take(f, self.cb, 1))
    if med is None:
      if len(cl) > 1 and (np.diff(cl) == 1).all():  # consecutive low halves: row slices
        la, lb = lo[0][cl[0] : cl[-1] + 1], lo[1][cl[0] : cl[-1] + 1]
      else:
        la, lb = lo[0][cl], lo[1][cl]
      out = op(la, hi[0][ch])
      tmp = self._buffer(out.shape)
      op(lb, hi[1][ch], out=tmp)
      return np.minimum(out, tmp, out=out)
    mid, base, sums = med
    sides = []
    run = len(cl) > 1 and (np.diff(cl) == 1).all()  # consecutive low halves: row slices
    for s in range(len(lo)):
      rows_lo = lo[s][cl[0] : cl[-1] + 1] if run else lo[s][cl]
      sc = rows_lo | hi[s][ch]  # sorted positions of the selected exits, per pair
      sides.append(sums[s][np.add(mid[sc], base, out=sc)])
    if not self.side:
      return np.minimum(np.take(sides[0], self.ca, 1), np.take(sides[0], self.cb, 1))
    return np.minimum(*sides)

  def _buffer(self, shape):
    """A reused int64 scratch array of `shape` (no fresh pages per batch)."""
    size = math.prod(shape)
    if getattr(self, "_scratch", np.empty(0, np.int64)).size < size:
      self._scratch = np.empty(size, np.int64)
    return self._scratch[:size].reshape(shape)

  # ---------------------------------------------------------------- metrics
  def run(self, masks, rule):
    """masks: [V, L] bool -> (ERC areas [V, F], EDC partial areas [V, K])."""
    masks = np.asarray(masks, bool)
    codes = (masks.astype(np.int64) << np.arange(self.depth)).sum(1)
    # batches of codes sharing the high half (one table row each), results unsorted
    order = np.argsort(codes, kind="stable")
    high = codes[order] >> (self.depth // 2)
    erc = np.empty((len(codes), self.f))
    edc = np.empty((len(codes), len(self.limits)))
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]])
    for s0, s1 in zip(starts, np.r_[starts[1:], len(codes)], strict=True):
      for i in range(s0, s1, self.batch):
        idx = order[i : min(s1, i + self.batch)]
        erc[idx], edc[idx] = self._batch(codes[idx], rule)
    return erc, edc

  def sweep(self, masks, rules=RULES):
    out = [self.run(masks, r) for r in rules]
    return {"erc": np.concatenate([o[0] for o in out]), "edc": np.concatenate([o[1] for o in out])}

  def qualities(self, codes, rule):
    """Pair qualities [B, P] (class-major); a pair's place in the stable quality
    order is that of (quality, pair index)."""
    return self.pair_quality(codes, rule)

  def levels(self, pq, nb=None):
    """The highest rate each pair is kept at [B, P] int8 (kept at rate r iff its key
    >= the key at sorted position floor(r P / 20)), by selection, not a sort: a
    histogram of nb quality buckets per variant finds the bucket of each cut; pairs
    outside those buckets take their level from a per-bucket table, the few inside
    are ordered exactly."""
    bsz, p = pq.shape
    nb = nb or 1 << max(12, min(20, (p // 4).bit_length()))  # about 1-3 pairs a bucket
    row = np.arange(bsz)[:, None]
    low = pq.min(1)
    span = pq.max(1) - low
    # bucket (key - low) >> s <= span >> s < nb: monotone in the key, so a cut's bucket
    # and a key's low s bits (its place within its bucket) give the exact order
    shift = np.array([max(0, int(x).bit_length() - (nb.bit_length() - 1)) for x in span])
    off = self._buffer((bsz, p))  # in place: row nb + (key - low) >> s
    if (bsz * nb << int(shift.max())) + int(span.max()) < 1 << 62:  # the row offset folded in
      np.subtract(pq, (low - (row[:, 0] * nb << shift))[:, None], out=off)
      off >>= shift[:, None]
    else:
      np.subtract(pq, low[:, None], out=off)
      off >>= shift[:, None]
      off += row * nb
    cnt = np.bincount(off.ravel(), minlength=bsz * nb).reshape(bsz, nb)
    cum = np.cumsum(cnt.ravel())  # pairs in the batch's buckets up to (row, bucket)
    at = np.searchsorted(cum, (self.cuts + row * p).ravel(), "right")  # row nb + bucket
    # the bucket holding each cut (nondecreasing), and the cut's rank within it
    vr = at.reshape(bsz, RATES) - row * nb
    rank = self.cuts + row * p - (cum[at] - cnt.ravel()[at]).reshape(bsz, RATES)
    # one table per bucket: #{r: vr_r < v} - 1 as runs (np.repeat), + 64 where it holds a cut
    runs = np.empty((bsz, RATES + 1), np.int64)
    runs[:, 0] = vr[:, 0] + 1
    runs[:, 1:RATES] = np.diff(vr, axis=1)
    runs[:, RATES] = nb - 1 - vr[:, -1]
    tab = np.repeat(np.tile(np.arange(-1, RATES, dtype=np.int8), bsz), runs.ravel())
    tab[(row * nb + vr).ravel()] += 64  # once per bucket, however many cuts it holds
    lvl = tab[off]
    flat = np.flatnonzero(lvl >= 63)  # pairs in a bucket holding a cut
    lvl.ravel()[flat] -= 64
    rows, cols = flat // p, flat % p
    group = off.ravel()[flat]  # (row, bucket)
    ebk = group - rows * nb  # bucket
    width = int(shift.max()) + self.bits
    # the buckets holding a cut, numbered densely (at most 20 a row): the composite
    # (cut bucket, key within it, pair index) then fits one int64 for wide sums too
    gid = at  # row nb + bucket of each cut, nondecreasing
    dense = np.cumsum(np.r_[False, gid[1:] != gid[:-1]])  # of each cut
    if len(gid) << width < 1 << 62:
      rel = ((pq.ravel()[flat] - low[rows]) & ((1 << shift[rows]) - 1)) << self.bits
      rel |= self.csid[cols]
      number = np.zeros(bsz * nb, np.int64)  # a table lookup (a searchsorted is slower)
      number[gid] = dense
      head = number[group] << width
      comp = head | rel
      srt = np.sort(comp)
      start = np.searchsorted(srt, dense << width, "left")
      bnd = srt[start + rank.ravel()]  # [B 20] the cuts, as composites (nondecreasing)
      # kept at the rates whose cut lies in the pair's bucket at or below it
      lvl.ravel()[flat] += (
        np.searchsorted(bnd, comp, "right") - np.searchsorted(bnd, head, "left")
      ).astype(np.int8)
    else:
      eq, es = pq.ravel()[flat], self.csid[cols]  # (quality, pair index): the order
      srt = np.lexsort((es, eq, rows))
      comb = rows[srt] * nb + ebk[srt]  # nondecreasing
      start = np.searchsorted(comb, (row * nb + vr).ravel(), "left").reshape(bsz, RATES)
      bq, bs = eq[srt][start + rank], es[srt][start + rank]  # [B, 20] the pairs at the cuts
      at_or_above = (eq[:, None] > bq[rows]) | (eq[:, None] == bq[rows]) & (es[:, None] >= bs[rows])
      kept = (vr[rows] == ebk[:, None]) & at_or_above
      lvl.ravel()[flat] += kept.sum(1, np.int8)
    return lvl

  def _batch(self, codes, rule):
    pq = self.qualities(codes, rule)
    lvl = self.levels(pq, self.buckets)
    kept = lvl[:, None, : self.n_gen] >= np.arange(RATES, dtype=np.int8)[None, :, None]
    packed = np.packbits(kept, axis=2, bitorder="little")
    words = np.zeros((len(codes), RATES, self.nw * 8), np.uint8)
    words[:, :, : packed.shape[2]] = packed
    words = words.view(np.uint64)  # [B, 20, nw]: bit j of word w = genuine 64 w + j
    pref = np.zeros((len(codes), RATES, self.nw + 1), np.int64)
    np.cumsum(np.bitwise_count(words), axis=2, out=pref[:, :, 1:])
    n_gen_r = pref[:, :, -1]
    n_imp_r = (self.p - self.cuts)[None, :] - n_gen_r
    fnmr = self._erc(lvl[:, self.n_gen :], words, pref, n_gen_r, n_imp_r, self.window)
    f = fnmr.reshape(len(codes), self.f, RATES)
    inner = f[:, :, 1].copy()
    for r in range(2, RATES - 1):  # rate by rate: the same rounding in any batch
      inner += f[:, :, r]
    area = (inner + (f[:, :, 0] + f[:, :, -1]) / 2) / RATES
    return area, self._edc(pq, lvl[:, : self.n_gen], n_gen_r)

  def _erc(self, ilvl, words, pref, n_gen_r, n_imp_r, w):
    """FNMR [B, F * 20] from the levels of the first w impostors in score order
    (ilvl [B, >= w]); variants whose window cannot decide are redone with 2 w (at
    most all impostors)."""
    bsz = len(ilvl)
    rows = self.rows
    c0 = np.zeros((bsz, RATES, w + 1), np.int32)
    steps = np.arange(RATES, dtype=np.int8)[None, :, None]
    np.cumsum(ilvl[:, None, :w] >= steps, axis=2, out=c0[:, :, 1:])  # kept among the first m
    br = np.arange(bsz)[:, None] * RATES + rows  # [B, F20] the (variant, rate) row of each entry
    nimp, ngen = n_imp_r[:, rows], n_gen_r[:, rows]
    q, rem = (self.num * nimp) // self.den, (self.num * nimp) % self.den
    # rows made one nondecreasing array (each row offset past the last): one searchsorted
    c_flat, c_base = c0.ravel(), br * (w + 1)
    c_step = (np.arange(bsz * RATES) * (w + 2))[:, None]
    c_sorted = (c0.reshape(-1, w + 1) + c_step).ravel()
    have = c_flat[c_base + w]
    nw = self.nw
    w_flat, p_flat, p_base = words.ravel(), pref.ravel(), br * (nw + 1)
    p_sorted = (
      pref.reshape(-1, nw + 1) + (np.arange(bsz * RATES) * (self.n_gen + 1))[:, None]
    ).ravel()

    def nth(n):  # impostor index of the n-th kept one (w - 1 when not in the window)
      m = np.searchsorted(c_sorted, br * (w + 2) + n, "left") - c_base - 1
      return np.clip(m, 0, w - 1)

    def imp_below(i):
      return c_flat[c_base + np.minimum(i, w)]

    def gen_below(j):  # kept genuines with index < j (0 <= j <= n_gen)
      blk = j >> 6
      word = w_flat[br * nw + np.minimum(blk, nw - 1)]
      mask = (np.uint64(1) << (j & 63).astype(np.uint64)) - np.uint64(1)
      return p_flat[p_base + blk] + np.bitwise_count(word & mask)

    def gen_last(j):  # the largest kept genuine index < j, -1 if none
      c = gen_below(j)
      blk = np.searchsorted(p_sorted, br * (self.n_gen + 1) + c, "left") - p_base - 1
      blk = np.clip(blk, 0, nw - 1)
      word = w_flat[br * nw + blk]
      within = c - p_flat[p_base + blk]
      bit = np.zeros(word.shape, np.int64)  # the within-th set bit, by binary search:
      for step in (32, 16, 8, 4, 2, 1):  # bits below it hold fewer than `within`
        low = bit + step
        few = np.bitwise_count(word & (ALL >> (64 - low).astype(np.uint64))) < within
        bit = np.where(few, low, bit)
      return np.where(c > 0, blk * 64 + bit, -1)

    need_hi = q + (rem > 0)
    first = nth(np.ones_like(q))
    zero_ok = gen_below(self.imp_gen[first]) > 0
    at_hi, at_q = nth(need_hi), nth(np.maximum(q, 1))
    hi, q_end = imp_below(self.imp_end[at_hi]), imp_below(self.imp_end[at_q])
    q_start = imp_below(self.imp_start[at_q])
    lo = np.where(q >= 1, np.where(q_end == q, q, q_start), 0)
    lo = np.where((lo > 0) | zero_ok, lo, -1)
    # |lo - c*| < |hi - c*|, c* = q + rem / den, in integers; an exact tie takes hi
    sel = np.where((lo >= 0) & (self.den * ((q - lo) - (hi - q)) < -2 * rem), lo, hi)
    nxt_n = np.minimum(sel + 1, np.maximum(nimp, 1))
    nxt = nth(nxt_n)
    jx = np.where(sel < nimp, self.imp_gen[nxt], self.n_gen)
    sel_n = np.maximum(sel, 1)
    at_sel = nth(sel_n)
    t_imp = np.where(sel >= 1, self.ipos[at_sel], -1)
    i_gen = gen_last(jx)
    t_gen = np.where(i_gen >= 0, self.gpos[np.maximum(i_gen, 0)], -1)
    j = np.where(t_gen > t_imp, self.gen_group[np.maximum(i_gen, 0)], self.imp_gen[at_sel])
    with np.errstate(invalid="ignore", divide="ignore"):
      fnmr = (ngen - gen_below(j)) / ngen
    ok = (nimp > 0) & (ngen > 0)
    fnmr = np.where(ok, fnmr, np.nan)
    if w >= self.n_imp:
      return fnmr
    # the window decides when every kept impostor used lies in it, with its tie group
    short = (
      (have < 1)
      | (have < need_hi)
      | (have < np.maximum(q, 1))
      | ((sel < nimp) & (have < nxt_n))
      | (have < sel_n)
      | (self.imp_end[at_hi] > w)
      | (self.imp_end[at_q] > w)
    ) & ok
    redo = np.flatnonzero(short.any(1))
    if len(redo):
      fnmr[redo] = self._erc(
        ilvl[redo], words[redo], pref[redo], n_gen_r[redo], n_imp_r[redo], min(2 * w, self.n_imp)
      )
    return fnmr

  def _edc(self, pq, glvl, n_gen_r):
    """Partial areas [B, K] from the pair qualities [B, P] (genuines first), the
    genuines' rate levels [B, G] and kept genuines per rate [B, 20]: only the q lowest
    genuines sorted. They lie among the genuines not kept at the first rate that
    discards at least q of them (level below it): only those are sorted (about
    q + G / 20). An area depends on the order of the qualities, their ties and which
    genuines are errors, not on the order within a tie: keys quality << 1 | error."""
    q, sid, g = self.q, self.csid[: self.n_gen], self.n_gen
    bsz, p = pq.shape
    disc = self.n_gen - n_gen_r  # genuines discarded at each rate [B, 20], nondecreasing
    r = (disc < q).sum(1)  # the first rate discarding >= q (20: none does)
    low = None
    if (r < RATES).all() and q < g and self.edc_by_level:
      cnt = disc[np.arange(bsz), r]  # candidates per variant (>= q)
      idx = np.flatnonzero(glvl < r[:, None].astype(np.int8))  # row-major: rows in order
      row = np.repeat(np.arange(bsz), cnt)
      quality = pq.ravel()[idx + row * (p - g)]
      if int(quality.max()) < 1 << 61:
        wide = int(cnt.max())
        # candidate n of row b goes to b wide + n - (candidates of the rows before b)
        dest = np.arange(len(idx)) + (np.arange(bsz) * wide - (np.cumsum(cnt) - cnt))[row]
        buf = np.full(bsz * wide, np.iinfo(np.int64).max)
        quality <<= 1
        quality |= self.gen_error[idx - row * g]
        buf[dest] = quality
        low = np.sort(buf.reshape(bsz, wide), axis=1)[:, :q]
    gq = pq[:, :g]
    if low is None and int(gq.max()) < 1 << 61:
      gk = (gq << 1) | self.gen_error
      low = np.partition(gk, q - 1, axis=1)[:, :q] if q < gk.shape[1] else gk
      low = np.sort(low, axis=1)
    if low is not None:
      quality, e = low >> 1, low & 1
    else:  # too wide for one int64: the stable order of (quality, pair index)
      order = np.lexsort((np.broadcast_to(sid, gq.shape), gq), axis=1)[:, :q]
      quality, e = np.take_along_axis(gq, order, 1), self.gen_error[order]
    # the value at a position is that at the start of its tie group, f_s = (n_err -
    # errors before s) / (G - s); a group [s, t) weighs the widths it spans, W(s) - W(t)
    # with W(i) the width from i to q: the area is the sum over group starts s of
    # W(s) (f_s - f at the row's previous group start)
    f = (self.n_err - (np.cumsum(e, 1) - e)) / (self.n_gen - np.arange(q))
    start = np.ones(quality.shape, bool)
    np.not_equal(quality[:, 1:], quality[:, :-1], out=start[:, 1:])
    at = np.flatnonzero(start)  # group starts, row-major (every row starts with one)
    fs = f.ravel()[at]
    step = fs.copy()
    step[1:] -= fs[:-1]
    first = np.r_[0, np.cumsum(start.sum(1))[:-1]]  # each row's first group
    step[first] = fs[first]
    # group by group per row, one sequential sum a row: the same in any batch
    out = np.empty((bsz, len(self.limits)))
    for k, rest in enumerate(self._rest_width(bsz)):  # 1-D per limit (a 2-D gather is slow)
      out[:, k] = np.add.reduceat(rest[at] * step, first)
    return out

  def _rest_width(self, bsz):
    """K arrays [bsz q]: the widths from each position to q, tiled over bsz rows."""
    if getattr(self, "_rest", [np.empty(0)])[0].size < bsz * self.q:
      rest = self.cum_width[:, -1:] - self.cum_width[:, :-1]
      self._rest = [np.tile(r, bsz) for r in rest]
    return self._rest


def sweep_files(folder: str) -> None:
  """The subset table of a score file and a pair list (see `--files`), read in plain numpy:
  what a user's own script would do, imports included."""
  import os

  os.sched_setaffinity(0, [min(os.sched_getaffinity(0))])  # one core
  with np.load(os.path.join(folder, "lfw.npz"), allow_pickle=False) as z:
    paths, exits = z["paths"], np.asarray(z["exit_scores"], np.float64)
  index = {str(k): i for i, k in enumerate(paths)}
  a, b, labels, scores = [], [], [], []
  with open(os.path.join(folder, "pairs.txt")) as f:
    for line in f:
      x, y, g, c = line.split()
      a.append(index[x])
      b.append(index[y])
      labels.append(int(g))
      scores.append(float(c))
  masks = ((np.arange(1, 1 << exits.shape[1])[:, None] >> np.arange(exits.shape[1])) & 1) > 0
  t = StrongNumpySweep(exits, a, b, labels, scores).sweep(masks)
  np.savez(os.path.join(folder, "strong.npz"), **t)


def main():
  import argparse
  import os
  import sys
  import time

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  ap = argparse.ArgumentParser()
  ap.add_argument("--images", type=int, default=12_000)
  ap.add_argument("--pairs", type=int, default=6_000)
  ap.add_argument(
    "--against",
    metavar="PY",
    help="another copy of this file: both sweeps in this process, interleaved "
    "(--rounds of each), their per-variant CPU and wall times and largest difference",
  )
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument(
    "--files",
    metavar="FOLDER",
    help="sweep FOLDER/lfw.npz (paths, exit_scores) and FOLDER/pairs.txt ('a b label score' "
    "lines) as `exfiqa sweep --scores --pairs` reads them, exits weighted 1..L; writes "
    "FOLDER/strong.npz (erc [V, 2], edc [V, 2]); plain numpy, nothing of the package imported",
  )
  args = ap.parse_args()
  if args.against and not os.path.isfile(args.against):
    raise SystemExit(f"error: {args.against}: no such file")
  if args.files:
    sweep_files(args.files)
    return
  from sweep_bench import synthetic

  data = synthetic(args.images, args.pairs)
  masks = ((np.arange(1, 1 << 12)[:, None] >> np.arange(12)) & 1).astype(bool)
  if not args.against:
    t0, c0 = time.perf_counter(), time.process_time()
    t = StrongNumpySweep(*data).sweep(masks)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    v = len(t["erc"])
    print(f"{v} variants: {dt:.2f} s wall, {dc:.2f} s CPU; {dt / v * 1e6:.0f} us per variant wall")
    return
  import importlib.util

  spec = importlib.util.spec_from_file_location("strong_other", args.against)
  other = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(other)
  engines = {"this": StrongNumpySweep, "other": other.StrongNumpySweep}
  for eng in engines.values():  # first-call costs of numpy's paths, outside the rounds
    eng(*data).sweep(masks[:64])
  runs = {k: [] for k in engines}
  out = {}
  for r in range(args.rounds):
    for k in list(engines)[:: 1 if r % 2 == 0 else -1]:
      load = os.getloadavg()[0]
      t0, c0 = time.perf_counter(), time.process_time()
      out[k] = engines[k](*data).sweep(masks)
      runs[k].append((time.process_time() - c0, time.perf_counter() - t0, load))
  v = len(out["this"]["erc"])
  print(
    f"| {v:,} variants, {args.rounds} interleaved rounds, one process | CPU us per variant, "
    "median (range) | wall us per variant, median (range) | load (1 min) at the starts |"
  )
  print("| --- | --- | --- | --- |")
  for k, name in (("other", args.against), ("this", __file__)):
    c, w, load = (np.array(x) for x in zip(*runs[k], strict=True))
    c, w = c / v * 1e6, w / v * 1e6
    print(
      f"| {name} | {np.median(c):.0f} ({c.min():.0f}-{c.max():.0f}) | {np.median(w):.0f} "
      f"({w.min():.0f}-{w.max():.0f}) | {', '.join(f'{x:.2f}' for x in load)} |"
    )
  d = max(float(np.nanmax(np.abs(out["this"][x] - out["other"][x]))) for x in ("erc", "edc"))
  same_nan = all(
    np.array_equal(np.isnan(out["this"][x]), np.isnan(out["other"][x])) for x in out["this"]
  )
  print(
    f"\n{v:,} rows x 4 areas, largest |difference| {d:.2e}, NaN where the other has NaN: {same_nan}"
  )


if __name__ == "__main__":
  main()

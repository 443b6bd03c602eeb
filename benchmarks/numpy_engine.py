"""A strong, exact, plain-numpy sweep: the baseline of sweep_bench.py.

Written independently of the package from docs/protocol.md §2-5, with the
ideas that make numpy fast here:
- exit scores as exact fixed-point integers (a float32 is m 2^e: every score of
  the dataset shifted to the smallest exponent in use), so a mean is an integer
  sum, the depth-weighted mean the integer sum of i x_i (a shared divisor cannot
  change the order), an even median the sum of the two middle values;
- per-half-subset aggregates (all 2^6 subsets of exits 1-6 and of 7-12) built
  once per rule, so a variant costs one elementwise operation per image
  (the median: a pass over each image's sorted scores);
- one sort of unique int64 keys (pair quality << b | pair index) per variant
  gives the stable quality order;
- at a discard rate r a pair is kept iff its key >= the key at position
  floor(r P / 20); at FMR f the ERC threshold depends only on the first
  ~f #impostors kept impostors in score order, so each rate needs a handful of
  look-ups in the first M impostors (M doubled until enough);
- the EDC only needs the genuine pairs up to the largest discard limit.

    engine = NumpySweep(exits, a, b, labels, scores, fmrs=(1e-3, 1e-4), limits=(0.2, 0.3))
    erc, edc = engine.variant(mask, "mean")          # [F], [K]
    table = engine.sweep(masks, rules)               # {"erc": [V, F], "edc": [V, K]}
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

RATES = 20


def fixed_point(x: np.ndarray) -> np.ndarray:
  """float32 [...] -> exact int64 x * 2^-e0 (e0: the lowest set bit over all values)."""
  x = x.astype(np.float64)
  nz = x[x != 0]
  if not nz.size:
    return np.zeros(x.shape, np.int64)
  m, e = np.frexp(nz)
  mant = np.abs(np.ldexp(m, 24)).astype(np.int64)
  e0 = int((e - 24 + np.log2(mant & -mant).astype(np.int64)).min())
  if int(e.max()) - e0 > 55:
    raise ValueError("scores span more than 55 bits of fixed point")
  return np.ldexp(x, -e0).astype(np.int64)


class NumpySweep:
  def __init__(
    self, exits, a, b, labels, scores, fmrs=(1e-3, 1e-4), edc_fmr=1e-3, limits=(0.2, 0.3)
  ):
    x = fixed_point(np.asarray(exits, np.float32))
    self.x = x - x.min()  # >= 0
    self.n, self.depth = x.shape
    scores = np.asarray(scores, np.float64)
    genuine = np.asarray(labels).astype(bool)
    p = len(scores)
    self.p, self.bits = p, max(1, (p - 1).bit_length())
    perm = np.argsort(-scores, kind="stable")  # score order, ties in list order
    s = scores[perm]
    new = np.r_[True, s[1:] != s[:-1]]
    start = np.maximum.accumulate(np.where(new, np.arange(p), 0))
    end = np.minimum.accumulate(np.where(np.r_[new[1:], True], np.arange(p), p)[::-1])[::-1]
    g_s = genuine[perm]
    self.sa, self.sb, self.sid = a[perm], b[perm], perm.astype(np.int64)
    self.gpos, self.ipos = np.flatnonzero(g_s), np.flatnonzero(~g_s)
    g_upto, i_upto = np.r_[0, np.cumsum(g_s)], np.r_[0, np.cumsum(~g_s)]
    self.imp_end = i_upto[end[self.ipos] + 1]  # impostors up to the end of its tie group
    self.imp_start = i_upto[start[self.ipos]]  # impostors before its tie group
    self.imp_gen = g_upto[start[self.ipos]]  # genuines before its tie group
    self.gen_group = g_upto[start[self.gpos]]
    self.n_gen, self.n_imp = len(self.gpos), len(self.ipos)
    self.is_gen = genuine
    thr = np.quantile(scores[~genuine], 1 - edc_fmr)
    self.error = genuine & (scores < thr)
    self.n_err = int(self.error.sum())
    self.fmrs = [Fraction(str(f)) for f in fmrs]
    self.limits = np.asarray(limits, np.float64)
    self.q = min(self.n_gen, math.ceil(self.limits.max() * self.n_gen) + 1)
    k = np.arange(self.q)
    self.width = np.clip(self.limits[:, None] - k / self.n_gen, 0, 1 / self.n_gen)
    self.cuts = (np.arange(RATES) * p) // RATES
    self.top = min(self.n_imp, 256)
    self.tables: dict = {}
    self.order = np.argsort(self.x, axis=1, kind="stable")
    self.ascending = np.take_along_axis(self.x, self.order, 1)

  def _tables(self, rule):
    if rule not in self.tables:
      h = self.depth // 2
      cols = self.x.T * (np.arange(1, self.depth + 1)[:, None] if rule == "weighted" else 1)
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

      self.tables[rule] = (op, table(cols[:h]), table(cols[h:]), h)
    return self.tables[rule]

  def fuse(self, mask, rule) -> np.ndarray:
    """Exact integer keys [N] of the fused scores (order and ties of the rule)."""
    code = int(np.sum(np.asarray(mask, np.int64) << np.arange(self.depth)))
    if rule != "median":
      op, lo, hi, h = self._tables(rule)
      return op(lo[code & ((1 << h) - 1)], hi[code >> h])
    k = int(np.sum(mask))
    sel = (code >> self.order) & 1
    count = np.cumsum(sel, axis=1)
    pick = (sel > 0) & ((count == (k + 1) // 2) | (count == k // 2 + 1))
    return np.where(pick, self.ascending, 0).sum(1)

  def variant(self, mask, rule):
    f = self.fuse(mask, rule)
    keys = (np.minimum(f[self.sa], f[self.sb]) << self.bits) | self.sid  # by score position
    srt = np.sort(keys)
    bounds = srt[self.cuts]
    gen_in_order = self.is_gen[srt & ((1 << self.bits) - 1)]
    cum_gen = np.r_[0, np.cumsum(gen_in_order)]
    n_gen_r = self.n_gen - cum_gen[self.cuts]
    n_imp_r = self.n_imp - (self.cuts - cum_gen[self.cuts])
    gk, ik = keys[self.gpos], keys[self.ipos]
    # Kept genuines before genuine index j, per rate, only for j >= j0 (the
    # genuines from the first impostor's tie group on: every threshold lies
    # there; above it, only the totals matter): [G - j0 + 1, 20], rows of 20.
    j0 = int(self.imp_gen[0])
    tail = np.zeros((self.n_gen - j0 + 1, RATES), np.int32)
    np.cumsum(gk[j0:, None] >= bounds[None, :], axis=0, dtype=np.int32, out=tail[1:])
    g_cum = (tail + (n_gen_r - tail[-1])[None, :], j0, gk, bounds, {})
    q = [((f.numerator * n_imp_r) // f.denominator) for f in self.fmrs]
    need = np.minimum(np.max(q, axis=0) + 2, n_imp_r)
    while True:  # the first m impostors in score order, enough for every rate and FMR
      m = self.top
      c = np.zeros((m + 1, RATES), np.int32)
      np.cumsum(ik[:m, None] >= bounds[None, :], axis=0, dtype=np.int32, out=c[1:])
      if (
        m == self.n_imp
        or (c[-1] >= need).all()
        and (self.imp_end[(c[1:] < need).sum(0)] <= m).all()
      ):
        break
      self.top = min(self.n_imp, 2 * m)
    erc = np.array([self._erc(f, c, g_cum, n_imp_r, n_gen_r) for f in self.fmrs])
    return erc, self._edc(srt[gen_in_order][: self.q])

  def _erc(self, fmr, c0, genuines, n_imp_r, n_gen_r):
    """Area at one FMR: c0 [m + 1, 20] kept impostors before each of the first m
    in score order; genuines: (kept genuines before index j0 + i [G - j0 + 1, 20],
    j0, genuine keys by score position, rate boundaries)."""
    cum, j0, gk, bounds, cache = genuines
    num, den = fmr.numerator, fmr.denominator
    q, rem = (num * n_imp_r) // den, (num * n_imp_r) % den
    m = c0.shape[0] - 1
    c = c0[1:].T  # [20, m] kept among the first i + 1
    c0 = c0.T
    rows = np.arange(RATES)

    def kept_gen_below(j):  # j >= j0
      return cum[j - j0, rows]

    def nth(n):  # index of the n-th kept impostor at each rate
      return np.minimum((c < n[:, None]).sum(1), m - 1)

    def kept_imp_below(i):  # kept impostors with index < i
      return c0[rows, np.minimum(i, m)]

    first = nth(np.ones(RATES, np.int64))
    zero_ok = kept_gen_below(self.imp_gen[first]) > 0
    at_hi, at_q = nth(q + (rem > 0)), nth(np.maximum(q, 1))
    hi, q_end = kept_imp_below(self.imp_end[at_hi]), kept_imp_below(self.imp_end[at_q])
    q_start = kept_imp_below(self.imp_start[at_q])
    lo = np.where(q >= 1, np.where(q_end == q, q, q_start), 0)
    lo = np.where((lo > 0) | zero_ok, lo, -1)
    # |lo - c*| < |hi - c*| in integers: (q - lo) - (hi - q) compared with -2 rem / den
    sel = np.where((lo >= 0) & (den * ((q - lo) - (hi - q)) < -2 * rem), lo, hi)
    nxt = nth(np.minimum(sel + 1, np.maximum(n_imp_r, 1)))
    jx = np.where(sel < n_imp_r, self.imp_gen[nxt], self.n_gen)
    at_sel = nth(np.maximum(sel, 1))
    t_imp = np.where(sel >= 1, self.ipos[at_sel], -1)
    cnt = kept_gen_below(jx)  # kept genuines above x; the last of them:
    i_gen = j0 + (cum < cnt[None, :]).sum(0) - 1  # in the tail (the usual case)
    fall = cnt <= cum[0]  # none in the tail: the last kept genuine above the first impostor
    if fall.any():
      if "last" not in cache:  # per rate, via the suffix maximum of each genuine's level
        top = np.maximum.accumulate((np.searchsorted(bounds, gk[:j0], "right") - 1)[::-1])[::-1]
        cache["last"] = np.searchsorted(-top, -rows, "right") - 1
      i_gen = np.where(fall, cache["last"], i_gen)
    t_gen = np.where(cnt > 0, self.gpos[np.maximum(i_gen, 0)], -1)
    j = np.where(t_gen > t_imp, self.gen_group[np.maximum(i_gen, 0)], self.imp_gen[at_sel])
    below = np.where(j >= j0, cum[np.maximum(j - j0, 0), rows], 0)
    for r in np.flatnonzero(j < j0):  # a threshold above the first impostor: count there
      below[r] = np.count_nonzero(gk[: j[r]] >= bounds[r])
    with np.errstate(invalid="ignore", divide="ignore"):
      fnmr = (n_gen_r - below) / n_gen_r
    fnmr = np.where((n_imp_r > 0) & (n_gen_r > 0), fnmr, np.nan)
    return (fnmr[1:-1].sum() + (fnmr[0] + fnmr[-1]) / 2) / RATES

  def _edc(self, gen_keys):
    quality = gen_keys >> self.bits
    e = self.error[gen_keys & ((1 << self.bits) - 1)].astype(np.int64)
    new = np.r_[True, quality[1:] != quality[:-1]]
    first = np.maximum.accumulate(np.where(new, np.arange(len(quality)), 0))
    e_start = (np.cumsum(e) - e)[first]
    frac = (self.n_err - e_start) / (self.n_gen - first)
    return (self.width[:, : len(frac)] * frac).sum(1)

  def sweep(self, masks, rules):
    out = [self.variant(m, r) for r in rules for m in masks]
    return {"erc": np.array([o[0] for o in out]), "edc": np.array([o[1] for o in out])}

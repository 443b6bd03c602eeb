"""Fused variants of a large pair set (IJB-C: 15.7 M template pairs, 23 k templates)
without a sort of the pairs per variant.

A variant's pair quality is min(f[a], f[b]) of its exact fused template keys f
(docs/protocol.md §2-3), and the ERC and EDC need of the pair order only
(`exfiqa_jax.metrics.erc`): the 20 rate cuts B_r (the key quality << b | pair
index at quality position floor(r P / 20)), which pairs of the 19.5 k genuine
ones and of the first impostors in score order are kept at each rate, and the
genuine keys in order (EDC). Per variant, all exact:

1. fused template keys f [N] (the engine's integer fusion, or float64 dense ranks
   for float weights); their order (ties in any order) and, per template, the
   count of templates of lower f (its rank: the same order and ties as f).
2. per template position in that order, the pairs whose lower end it is (ties
   between the two ends by position): a popcount over the template adjacency bits
   [N, N / 32] masked by the templates further up (one mask per block of
   positions: 16 in numpy, 64 compiled; the block's own pairs by bit lookups),
   plus a scatter of the pairs the bits cannot hold (a template pair listed
   again, a template with itself; every pair where the bits would cost more).
   Its prefix sum counts the pairs below each quality, so each cut lies in one
   tie group of templates (numpy: slices of positions from the bottom, stopped
   once the count passes the last cut).
3. on the host, each cut's pair: the group's pairs (a table of every template's
   pairs, built once) kept where the other end ranks as high, the m-th by pair index.
4. the genuine keys and a window of the first impostors in score order against
   the cuts -> the ERC (`metrics.erc.kept_bits`, `rate_curves`: the same threshold
   rule, the window widened where it cannot decide); the genuine keys sorted ->
   the EDC (`metrics.edc.edc`).

The pair set is prepared once (`prepare`: the adjacency bits, the per-template
pair table; kept for the last pair set used). `score_variants` is the large-set
counterpart of `exfiqa_jax.fusion.chunks.score_variants` (which routes pair sets
of at least `LARGE_PAIRS` pairs here): the same table, the variants spread over
this host's devices (threads on one CPU device) and over hosts.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.fusion.engine import host_keys, jit_engine, plan
from exfiqa_jax.fusion.rules import RULES, fuse_integers
from exfiqa_jax.metrics import PairSet, bucket
from exfiqa_jax.metrics.edc import edc
from exfiqa_jax.metrics.erc import RATES, kept_bits, rate_curves
from exfiqa_jax.metrics.keys import KEY_MAX, index_bits

LARGE_PAIRS = 1 << 21  # pair sets at least this large go this way (chunks.score_variants)
BLOCK = 64  # template positions per mask row of step 2
BIT_BYTES = 1 << 30  # the largest dense [N, N] bool matrix built to make the bits


class Large(NamedTuple):
  """A pair set prepared for this path. adj: [N, W] uint32 template adjacency bits
  (bit u of row t: a pair of t and u, each unordered pair of distinct templates met
  once; W even, all zero when the pairs are counted one by one), adj64 the same
  bits as uint64 [N, W / 2] on the host; rem_a, rem_b: [R] the pairs not in the
  bits (and int64 host copies); offsets [N + 1], pair, partner [<= 2 P] (host): each
  template's pairs by pair index (a pair under both of its ends, once where they
  are one template); cuts [20] floor(r P / 20);
  gen_ord [G]: of the genuine at each genuine score position, its ordinal among
  the genuines in pair-list order; gen_err [G]: by ordinal, an EDC error (padding
  entries 0, False)."""

  adj: jax.Array
  adj64: np.ndarray
  rem_a: jax.Array
  rem_b: jax.Array
  rem_a_host: np.ndarray
  rem_b_host: np.ndarray
  offsets: np.ndarray
  pair: np.ndarray
  partner: np.ndarray
  cuts: np.ndarray
  gen_ord: jax.Array
  gen_err: jax.Array


def routed(ps: PairSet) -> bool:
  """Whether `chunks.score_variants` sends this pair set here."""
  return int(ps.count) >= LARGE_PAIRS


def use_bits(n: int, pairs: int) -> bool:
  """Adjacency bits where their popcounts (N^2 / 32 words) cost less than the pairs'
  scatter and the [N, N] matrix they are made from fits BIT_BYTES."""
  return n * n <= BIT_BYTES and n * n // 32 <= 4 * pairs


def prepare(ps: PairSet, bits: bool | None = None) -> Large:
  """The per-pair-set tables (host work, once). bits: force the adjacency bits on or off."""
  n, cnt = ps.exits.shape[0], int(ps.count)
  a, b = np.asarray(ps.a)[:cnt].astype(np.int64), np.asarray(ps.b)[:cnt].astype(np.int64)
  bits = use_bits(n, cnt) if bits is None else bits
  w = -(-n // 64) * 2
  if bits:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    code = lo * (w * 32) + hi
    s = np.sort(code)
    m = np.zeros((n, w * 32), bool)
    m.ravel()[s[1:][s[1:] == s[:-1]]] = True  # template pairs listed more than once
    again = np.flatnonzero(m.ravel()[code])
    first = again[np.unique(code[again], return_index=True)[1]]  # each one's first listing
    rem = np.union1d(np.setdiff1d(again, first), np.flatnonzero(lo == hi))
    m[:] = False
    one = np.ones(cnt, bool)
    one[rem] = False
    m[lo[one], hi[one]] = True
    m[hi[one], lo[one]] = True
    adj = np.packbits(m, axis=1, bitorder="little").view("<u4")
    del m, s, code
  else:
    adj, rem = np.zeros((n, 2), np.uint32), np.arange(cnt)
  # each template's pairs by pair index (a stable sort of the ends listed pair by
  # pair), a pair of a template with itself listed once
  listed = np.ones(2 * cnt, bool)
  listed[1::2] = a != b
  owner = np.c_[a, b].ravel()[listed]
  small = n <= 1 << 16  # 16-bit keys: numpy's stable sort is a radix sort
  idx = np.argsort(owner.astype(np.uint16) if small else owner, kind="stable")
  offsets = np.r_[0, np.cumsum(np.bincount(owner, minlength=n))]
  del owner
  pair = np.repeat(np.arange(cnt, dtype=np.int32), 2)[listed][idx]
  partner = np.c_[b, a].ravel()[listed][idx].astype(np.int32)
  del idx, listed
  # genuines by pair-list order: their ordinal keys the EDC (its errors indexed by it)
  gid = np.sort(np.asarray(ps.sid)[np.asarray(ps.gen_pos)[: int(ps.n_gen)]])
  g = ps.gen_pos.shape[0]
  ordinal = np.zeros(cnt, np.int32)
  ordinal[gid] = np.arange(len(gid))
  gen_ord = np.r_[ordinal[np.asarray(ps.sid)[np.asarray(ps.gen_pos)[: len(gid)]]],
                  np.zeros(g - len(gid), np.int32)]  # fmt: skip
  gen_err = np.r_[np.asarray(ps.edc_error)[gid], np.zeros(g - len(gid), bool)]
  return Large(
    jnp.asarray(adj),
    adj.view(np.uint64),
    jnp.asarray(a[rem].astype(np.int32)),
    jnp.asarray(b[rem].astype(np.int32)),
    a[rem],  # int64: numpy gathers by them without a cast
    b[rem],
    offsets,
    pair,
    partner,
    (np.arange(RATES) * cnt) // RATES,
    jnp.asarray(gen_ord),
    jnp.asarray(gen_err),
  )


_LAST: list = []  # (pair set, bits, Large) of the last call


def prepared(ps: PairSet, bits: bool | None = None) -> Large:
  """`prepare`, kept for the last pair set (a sweep calls once per rule)."""
  if _LAST and _LAST[0] is ps and _LAST[1] == bits:
    return _LAST[2]
  _LAST[:] = [ps, bits, prepare(ps, bits)]
  return _LAST[2]


def fused_fn(fusion, masks, weights, rule):
  """Exact fused template keys [B, N] of B variants (masks, weights [B, L])."""
  with jax.enable_x64(True):
    return jax.vmap(lambda m, w: fuse_integers(fusion, m, rule, w))(masks, weights)


def counts_fn(valid, adj, rem_a, rem_b, f):
  """Step 2 for B variants: f [B, N] int64 -> (order [B, N] template at each
  position, upto [B, N] pairs whose lower end lies at positions <= i, rank [B, N]
  templates of lower f, per template; all int32)."""
  with jax.enable_x64(True):
    return jax.vmap(lambda x: _counts(valid, adj, rem_a, rem_b, x))(f)


def _counts(valid, adj, rem_a, rem_b, f):
  n, w = adj.shape
  g = -(-n // BLOCK)
  f = jnp.where(valid, f, KEY_MAX)
  order = jnp.argsort(f, stable=True).astype(jnp.int32)
  fs = f[order]
  i = jnp.arange(n, dtype=jnp.int32)
  pos = jnp.zeros(n, jnp.int32).at[order].set(i)
  new = jnp.concatenate([jnp.ones(1, bool), fs[1:] != fs[:-1]])
  start = jax.lax.cummax(jnp.where(new, i, 0))
  # templates at blocks of positions >= k, as bits [g + 1, w] (disjoint bits: a sum is an or)
  bit = jnp.uint32(1) << (i & 31).astype(jnp.uint32)
  members = jnp.zeros((g + 1, w), jnp.uint32).at[pos // BLOCK, i >> 5].add(bit)
  above = jnp.cumsum(members[::-1], axis=0, dtype=jnp.uint32)[::-1]
  cross = jnp.sum(jax.lax.population_count(adj & above[pos // BLOCK + 1]).astype(jnp.int32), axis=1)
  # pairs within a block: lower end j before k in the block
  blk = jnp.pad(order, (0, g * BLOCK - n), constant_values=0).reshape(g, BLOCK)
  real = jnp.pad(jnp.ones(n, bool), (0, g * BLOCK - n)).reshape(g, BLOCK)
  words = adj[blk[:, :, None], blk[:, None, :] >> 5]  # [g, BLOCK, BLOCK]
  linked = (words >> (blk[:, None, :] & 31).astype(jnp.uint32)) & 1
  later = jnp.arange(BLOCK)[None, :] > jnp.arange(BLOCK)[:, None]
  within = jnp.sum(jnp.where(later & real[:, None, :], linked, 0).astype(jnp.int32), axis=2)
  per_pos = cross[order] + within.reshape(-1)[:n]
  lower = jnp.minimum(pos[rem_a], pos[rem_b])
  per_pos = per_pos.at[lower].add(1)
  return order, jnp.cumsum(per_pos, dtype=jnp.int32), start[pos]


HOST_BLOCK = 16  # positions per mask row of the host count
HOST_ROWS = 256  # positions per slice of the host popcount pass (its words stay in cache)
_J, _K = np.triu_indices(HOST_BLOCK, 1)  # position pairs j < k inside a block, by j
_FIRST = np.r_[0, np.cumsum(np.arange(HOST_BLOCK - 1, 1, -1))]  # each j's first pair


def _slice_counts(adj64, above, blk, n, p0, out, rows, ones, sums):
  """The pairs of the templates at positions [p0, p0 + len(out)) (a multiple of
  HOST_BLOCK) whose other end lies further up (ties between the two ends by
  position; remainder pairs not included) into out (int64): the rows gathered by
  position; pairs inside a block by bit lookups in those rows (the upper triangle);
  pairs with later blocks by the popcount of the rows ANDed with their block's mask
  (broadcast, no gathered mask array). rows, ones, sums: [HOST_ROWS, W] uint64,
  uint8 and [HOST_ROWS] scratch (uint16 where 64 W < 2^16: the row sums need no
  wider type; the slice stays in cache)."""
  c, w = len(out), adj64.shape[1]
  nb = c // HOST_BLOCK
  r = rows[:c]
  np.take(adj64, blk[p0 : p0 + c], axis=0, out=r, mode="clip")
  tk = blk[p0 : p0 + c].reshape(nb, HOST_BLOCK)[:, _K]
  at = (np.arange(nb)[:, None] * HOST_BLOCK + _J) * w + (tk >> 6)
  linked = (np.take(r.reshape(-1), at) >> (tk & 63).astype(np.uint64)) & np.uint64(1)
  if p0 + c > n:  # the padding of the last block
    linked[p0 + np.arange(nb)[:, None] * HOST_BLOCK + _K >= n] = 0
  within = np.add.reduceat(linked.view(np.int64), _FIRST, axis=1)  # [nb, HOST_BLOCK - 1]
  b0 = p0 // HOST_BLOCK
  r3 = r.reshape(nb, HOST_BLOCK, w)
  np.bitwise_and(r3, above[b0 + 1 : b0 + 1 + nb, None, :], out=r3)
  np.bitwise_count(r, out=ones[:c])
  np.add.reduce(ones[:c], axis=1, dtype=sums.dtype, out=sums[:c])
  out[:] = sums[:c]
  out.reshape(nb, HOST_BLOCK)[:, :-1] += within


def _bit_counts(adj64, above, blk, n, base, last, split):
  """`_slice_counts` of every position [len(blk)] int64, slices of HOST_ROWS
  positions taken in order by `split` threads. last: stop once the count of the
  slices done in a row from the bottom (these and base [len(blk)], the remainder
  pairs of each position) passes it: later positions keep 0 or their counts."""
  m, w = len(blk), adj64.shape[1]
  counts = np.zeros(m, np.int64)
  slices = -(-m // HOST_ROWS)
  lock = threading.Lock()
  state = {"next": 0, "ready": 0, "total": 0, "stop": False}
  done = np.zeros(slices + 1, bool)

  def work():
    scratch = (np.empty((HOST_ROWS, w), np.uint64), np.empty((HOST_ROWS, w), np.uint8),
               np.empty(HOST_ROWS, np.uint16 if 64 * w < 1 << 16 else np.uint32))  # fmt: skip
    while True:
      with lock:
        j = state["next"]
        if state["stop"] or j == slices:
          return
        state["next"] = j + 1
      p0 = j * HOST_ROWS
      _slice_counts(adj64, above, blk, n, p0, counts[p0 : p0 + HOST_ROWS], *scratch)
      if last is None:
        continue
      with lock:
        done[j] = True
        while done[state["ready"]]:  # the slices done in a row from the bottom
          q = state["ready"] * HOST_ROWS
          state["total"] += int(counts[q : q + HOST_ROWS].sum() + base[q : q + HOST_ROWS].sum())
          state["ready"] += 1
        state["stop"] = state["total"] > last

  if split > 1:
    with ThreadPoolExecutor(split) as pool:
      for x in [pool.submit(work) for _ in range(split)]:
        x.result()
  else:
    work()
  return counts


def host_counts(lg: Large, valid: np.ndarray, f: np.ndarray, split: int = 1, last=None):
  """Step 2 of one variant in numpy (the CPU backend: XLA's CPU popcount runs 5-10x
  slower than numpy's there): f [N] int64 -> (order, upto, rank) [N] as `counts_fn`.
  split: threads sharing the popcount pass (numpy releases the GIL there); last: the
  largest count needed (the last cut): upto is exact up to the first position whose
  count passes it, nondecreasing after (the popcount pass stops about there)."""
  n = len(f)
  f = np.where(valid, f, KEY_MAX)
  order = np.argsort(f)  # ties in any order: a tie group shares its rank
  fs = f[order]
  i = np.arange(n)
  start = np.maximum.accumulate(np.where(np.r_[True, fs[1:] != fs[:-1]], i, 0))
  pos = np.empty(n, np.int64)
  pos[order] = i
  p32 = pos.astype(np.int32)  # the remainder's gathers from a table half as large
  per_pos = np.bincount(np.minimum(p32[lg.rem_a_host], p32[lg.rem_b_host]), minlength=n)
  w = lg.adj64.shape[1]
  if w * 64 >= n:  # adjacency bits (else every pair is in the remainder)
    g = -(-n // HOST_BLOCK)
    members = np.zeros((g + 1) * w, np.uint64)
    bit = np.uint64(1) << (i & 63).astype(np.uint64)
    np.add.at(members, pos // HOST_BLOCK * w + (i >> 6), bit)  # disjoint bits: a sum is an or
    above = np.cumsum(members.reshape(g + 1, w)[::-1], axis=0, dtype=np.uint64)[::-1]
    blk = np.r_[order, np.zeros(g * HOST_BLOCK - n, np.int64)]  # padded: whole blocks
    base = np.r_[per_pos, np.zeros(g * HOST_BLOCK - n, np.int64)]
    per_pos = (base + _bit_counts(lg.adj64, above, blk, n, base, last, split))[:n]
  return order, np.cumsum(per_pos), start[pos]


def resolve(lg: Large, order, upto, rank, shift: int) -> np.ndarray:
  """Step 3, one variant (host): the cut keys B_r [20] int64 (rank << shift | pair).
  A cut lies at the first position whose count passes it; its pair is, among the
  pairs of that position's tie group whose other end ranks as high, the m-th by
  pair index (m: the cut less the pairs below the group)."""
  starts = rank[order]  # nondecreasing: the first position of each position's tie group
  at = np.searchsorted(upto, lg.cuts, "right")  # the position each cut's pair is below
  i0 = rank[order[at]]
  i1 = np.searchsorted(starts, i0, "right")
  before = np.where(i0 > 0, upto[np.maximum(i0 - 1, 0)], 0)
  out = np.empty(RATES, np.int64)
  groups: dict = {}  # the kept pairs of a group, by its first position
  for r in range(RATES):
    g0 = int(i0[r])
    pairs = groups.get(g0)
    if pairs is None:
      ts = order[g0 : i1[r]]
      if len(ts) == 1:  # one template: its pairs by pair index, each once
        sl = slice(lg.offsets[ts[0]], lg.offsets[ts[0] + 1])
        pairs = lg.pair[sl][rank[lg.partner[sl]] >= g0]
      else:  # a pair of two of the group's templates is listed under both
        sl = np.concatenate([np.arange(lg.offsets[x], lg.offsets[x + 1]) for x in ts])
        pairs = np.unique(lg.pair[sl][rank[lg.partner[sl]] >= g0])
      groups[g0] = pairs
    out[r] = (g0 << shift) | int(pairs[lg.cuts[r] - before[r]])
  return out


def metrics_fn(ps, gen_ord, gen_err, rank, bounds, *, top: int):
  """Step 4 for B variants: template ranks [B, N], cut keys [B, 20] -> (erc_area
  [B, F], edc_area [B, K], edc_best [B, K], overflow [B]: more than `top`
  impostors needed)."""
  with jax.enable_x64(True):
    return jax.vmap(lambda r, b: _metrics(ps, gen_ord, gen_err, r, b, top))(rank, bounds)


def _metrics(ps, gen_ord, gen_err, rank, bounds, top):
  shift = index_bits(ps.sa.shape[0])
  rank = rank.astype(jnp.int64)

  def quality(at):  # pair qualities (as template ranks) at score positions `at`
    return jnp.minimum(rank[ps.sa[at]], rank[ps.sb[at]])

  def keys(at):  # exact keys of the pairs at score positions `at`
    return (quality(at) << shift) | ps.sid[at].astype(jnp.int64)

  g_real = jnp.arange(ps.gen_pos.shape[0]) < ps.n_gen
  gq = quality(ps.gen_pos)
  gk = (gq << shift) | ps.sid[ps.gen_pos].astype(jnp.int64)
  gen = kept_bits(gk, bounds, g_real)
  imp = kept_bits(keys(ps.imp_pos[:top]), bounds, jnp.arange(top) < ps.n_imp)
  n_gen_r = gen.before[:, -1]
  cuts = (jnp.arange(RATES, dtype=jnp.int32) * ps.count) // RATES
  n_imp_r = ps.count - cuts - n_gen_r
  _, area, overflow = rate_curves(ps, imp, gen, n_imp_r, n_gen_r, top)
  # EDC keys over the genuines alone (quality << b_g | ordinal: the same order), so
  # its error count reads [G], not [P]
  sg = index_bits(gen_ord.shape[0])
  ek = jnp.where(g_real, (gq << sg) | gen_ord.astype(jnp.int64), KEY_MAX)
  e = edc(jnp.sort(ek), gen_err, ps.n_gen, ps.edc_width, ps.limits, sg)
  return area, e.area, e.best, overflow


score_fused = jit_engine(fused_fn)
score_counts = jit_engine(counts_fn)
score_metrics = jit_engine(metrics_fn, static_argnames=("top",))


def first_top(ps: PairSet) -> int:
  """The impostor window tried first: twice the kept impostors the largest FMR needs
  when none is discarded, and a margin (kept impostors spread as the discarded
  ones: a rate that keeps a fraction keeps that fraction of the window); widened
  8x per try where it cannot decide, up to every impostor."""
  n_imp, cap = int(ps.n_imp), ps.imp_pos.shape[0]
  f = max(int(n) / int(d) for n, d in zip(ps.fmr_num, ps.fmr_den, strict=True))
  return min(cap, bucket(2 * int(np.ceil(f * n_imp)) + 256, 32))


def score_variants(
  ps: PairSet,
  masks,
  weights,
  rule: str,
  norm: str = "none",
  memory_mb: float = 256,
  devices=None,
  bits: bool | None = None,
  chunk: int = 4,
  host: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Areas of every variant: masks, weights [V, L] -> ([V, F], [V, K], [V, K]), as
  `exfiqa_jax.fusion.chunks.score_variants` (memory_mb: unused, a chunk's memory is
  O(chunk N) beside the pair set's). bits: force the adjacency bits on or off;
  chunk: variants per device per call; host: step 2 in numpy (default: on the CPU
  backend) or compiled."""
  from exfiqa_jax.fusion.chunks import _gather_hosts, host_share

  masks, weights = np.asarray(masks, bool), np.asarray(weights)
  v = len(masks)
  lo, hi = host_share(v)
  run = runner(ps, masks[lo:hi], weights[lo:hi], rule, norm, devices, bits, chunk, host)
  return _gather_hosts(run(0, hi - lo), v)


def runner(
  ps: PairSet,
  masks,
  weights,
  rule: str,
  norm: str = "none",
  devices=None,
  bits: bool | None = None,
  chunk: int = 4,
  host: bool | None = None,
):
  """The set-up of one rule's variants on this host (fusion plan, device copies,
  compiled programs): masks, weights [n, L] -> run(start, stop), the three area
  arrays of variants [start, stop) (see `score_variants` for the options)."""
  from exfiqa_jax.fusion.chunks import parallelism, sharded

  masks, weights = np.asarray(masks, bool), np.asarray(weights)
  devices = tuple(devices or jax.local_devices())
  lg = prepared(ps, bits)
  host = jax.default_backend() == "cpu" if host is None else host
  valid_h = np.asarray(ps.image_valid)
  f_dim, k_dim = ps.fmr_num.shape[0], ps.limits.shape[0]
  if not len(masks):
    empty = np.zeros((0, k_dim), np.float32)
    return lambda start, stop: (np.zeros((0, f_dim), np.float32), empty, empty)
  p = plan(ps, norm, rule, weights)
  w = p.weights if p.integer else weights
  threads, _ = parallelism(len(devices))
  step = chunk * len(devices)
  shift = index_bits(ps.sa.shape[0])
  tops = [first_top(ps)]
  while tops[-1] < ps.imp_pos.shape[0]:
    tops.append(min(ps.imp_pos.shape[0], tops[-1] * 8))
  with jax.enable_x64(True):
    if len(devices) > 1:
      rep = jax.NamedSharding(_mesh(devices), jax.P())

      def on(fn, specs, **static):
        return sharded(fn, devices, specs, **static)
    else:
      rep = devices[0]
      jitted = {fused_fn: score_fused, counts_fn: score_counts, metrics_fn: score_metrics}

      def on(fn, specs, **static):
        return functools.partial(jitted[fn], **static)

    ps_d = jax.device_put(ps, rep)
    valid = jax.device_put(ps.image_valid, rep)
    adj, ra, rb = (jax.device_put(x, rep) for x in (lg.adj, lg.rem_a, lg.rem_b))
    fusion = jax.device_put(p.fusion, rep) if p.integer else None
    fused = on(fused_fn, (False, True, True, False)) if p.integer else None
    counts = on(counts_fn, (False, False, False, False, True))
    metrics = {t: on(metrics_fn, (False, False, False, True, True), top=t) for t in tops}
    gen_ord, gen_err = (jax.device_put(x, rep) for x in (lg.gen_ord, lg.gen_err))

  def one_chunk(rows, single=False):
    mk, wk = masks[rows], w[rows]
    with jax.enable_x64(True):
      if p.integer:
        f = fused(fusion, jnp.asarray(mk), jnp.asarray(wk), RULES.index(rule))
      else:
        f = jnp.asarray(host_keys(ps, p, mk, wk))
      if host:
        split = threads if single else 1  # one chunk: its threads share the popcounts
        last = int(lg.cuts[-1])  # the counts are needed up to the last cut
        parts = [host_counts(lg, valid_h, x, split, last) for x in np.asarray(jax.device_get(f))]
        order, upto, rank = (np.stack(x) for x in zip(*parts, strict=True))
      else:
        order, upto, rank = (np.asarray(x) for x in jax.device_get(counts(valid, adj, ra, rb, f)))
      bounds = np.stack([resolve(lg, *x, shift) for x in zip(order, upto, rank, strict=True)])
      rank_d, bounds_d = jnp.asarray(rank), jnp.asarray(bounds)
      out = [
        np.array(x)
        for x in jax.device_get(metrics[tops[0]](ps_d, gen_ord, gen_err, rank_d, bounds_d))
      ]
      for t in tops[1:]:
        again = np.flatnonzero(out[3])
        if not len(again):
          break
        redo = jax.device_get(metrics[t](ps_d, gen_ord, gen_err, rank_d, bounds_d))
        for x, y in zip(out, redo, strict=True):
          x[again] = np.asarray(y)[again]
      return out[:3]

  def run(start: int, stop: int):
    n = stop - start
    rows = np.r_[np.arange(start, stop), np.full((-n) % step, start)]  # padded: whole chunks
    chunks_ = [rows[i : i + step] for i in range(0, len(rows), step)]
    if threads > 1 and len(chunks_) > 1:
      with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(one_chunk, chunks_))
    else:
      parts = [one_chunk(c, len(chunks_) == 1) for c in chunks_]
    return tuple(np.concatenate([q[j] for q in parts])[:n] for j in range(3))

  return run


def _mesh(devices):
  from exfiqa_jax.backend import mesh

  return mesh(list(devices))

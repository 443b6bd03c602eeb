"""One compiled engine for fused variants: one evaluated with curves, or a chunk of many.

A variant is (exit subset mask [L], rule, normalisation, weights [L]). Its fused
qualities are exact (docs/protocol.md §2): integer fusion of the dataset's exact
exit integers (`exfiqa_jax.fusion.exact`) on the device, or, for float weights,
float64 fusion on the host handed over as dense ranks. Either way the metrics
see exact integer keys (`exfiqa_jax.metrics.evaluate_keys`), so a variant gives
the same numbers alone and in any chunk, on every backend. The jitted functions
take the padded PairSet as data, so datasets whose sizes fall in the same bucket
(see `pairset.bucket`) reuse the same compiled code. Many variants go through
`exfiqa_jax.fusion.chunks.score_variants`.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.backend import LazyJit
from exfiqa_jax.fusion.exact import (
  dense_ranks,
  exit_integers,
  float_fused,
  integer_weights,
  normalised_float,
)
from exfiqa_jax.fusion.rules import RULES, fuse_integers
from exfiqa_jax.fusion.subsets import code_of
from exfiqa_jax.metrics import PairSet, metrics_of_sorted, prepare_keys
from exfiqa_jax.metrics.keys import fits, index_bits, sort_keys

# XLA's older CPU loop emitters, not its fusion emitters: compiles faster and ran
# faster on jaxlib 0.10 (same numbers); accelerators ignore it, and a jaxlib that no
# longer knows the option compiles without it.
ENGINE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def jit_engine(fn=None, **kwargs):
  """`jax.jit` with the engine's compiler options, those this jaxlib accepts (probed at
  the first call: importing the engine starts no backend, `backend.LazyJit`)."""
  if fn is None:
    return partial(jit_engine, **kwargs)
  return LazyJit(fn, ENGINE_OPTIONS, **kwargs)


class Fusion(NamedTuple):
  """Exact non-negative exit integers on the device (see ExitIntegers), exits major:
  columns, ascending, order [L, N]; lo [2^h, N], hi [2^(L-h), N] the rule's
  half-subset tables (`half_tables`) or None."""

  columns: jax.Array
  ascending: jax.Array
  order: jax.Array
  lo: jax.Array | None = None
  hi: jax.Array | None = None


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


class Plan(NamedTuple):
  """How a group of variants of one rule and normalisation is evaluated.

  integer: fusion on the device from `fusion` with int64 `weights` [B, L], the
  fused keys rank-compressed first when `compress`; otherwise (float weights)
  `floats` [N, L] float64 for `exact.float_fused` on the host."""

  integer: bool
  fusion: Fusion | None
  weights: np.ndarray
  compress: bool
  floats: np.ndarray | None


def plan(
  ps: PairSet, norm: str, rule: str, weights, tables_ok: bool = True, host: bool = False
) -> Plan:
  """weights: [B, L] (ignored unless rule is weighted) -> the Plan (host work, once).
  tables_ok: build half-subset tables (when every row has the same weights); host: keep
  the Fusion's arrays in numpy and build no image tables (for `pair_sides`, which builds
  its own per pair side; a compiled path puts the arrays on its devices itself, see
  `exfiqa_jax.fusion.chunks`)."""
  exits, valid = np.asarray(ps.exits), np.asarray(ps.image_valid)
  depth = exits.shape[1]
  weights = np.asarray(weights)
  w = integer_weights(weights) if rule == "weighted" else np.ones(weights.shape, np.int64)
  if w is None:
    return Plan(
      False, None, weights.astype(np.float32), False, normalised_float(exits, valid, norm)
    )
  multiplier = {"mean": depth, "weighted": int(w.sum(-1).max()), "median": 2}.get(rule, 1)
  ints = exit_integers(exits, valid, norm, max(multiplier, 1))
  low = int(ints.values[valid].min())
  values = np.where(valid[:, None], ints.values - low, 0)  # >= 0: keys need no lower bound
  asc = np.where(valid[:, None], ints.ascending - low, 0)
  shared = len(w) and (w == w[:1]).all()
  tables = half_tables(values, rule, w[0]) if tables_ok and shared and not host else None
  with jax.enable_x64(True):
    put = np.asarray if host else jnp.asarray
    fusion = Fusion(put(values.T), put(asc.T), put(ints.order.T.astype(np.int32)))
    if tables is not None:
      fusion = fusion._replace(lo=put(tables[0]), hi=put(tables[1]))
  compress = not fits(ints.span * max(multiplier, 1), ps.sa.shape[0])
  return Plan(True, fusion, w, compress, None)


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


def host_keys(ps: PairSet, p: Plan, masks, weights) -> np.ndarray:
  """Keys [B, N] int64 of float-weighted variants: float64 fusion, dense ranks."""
  return dense_ranks(float_fused(p.floats, masks, weights), np.asarray(ps.image_valid))


def _areas(m):
  return m.erc_area, m.edc.area, m.edc.best, m.overflow


def host_sort() -> bool:
  """Whether the metrics run in numpy after the compiled fusion (the CPU backend:
  numpy's int64 sort is 10-15x faster than the compiled one there, the many-variant
  areas need no class sort at all (`exfiqa_jax.metrics.host`), and callback-free
  programs stay in the persistent compilation cache)."""
  return jax.default_backend() == "cpu"


def numpy_sort(gen, imp):
  """Each class's keys [..., n] sorted on the host (int64 numpy arrays)."""
  return np.sort(np.asarray(gen), axis=-1), np.sort(np.asarray(imp), axis=-1)


def prepare_fn(ps, fusion, masks, weights, rule, *, compress: bool):
  """B variants sharing a rule: masks [B, L], weights [B, L] int64 -> the pair keys
  [B, P] and the unsorted class keys [B, G], [B, I] (metrics.prepare_keys)."""
  with jax.enable_x64(True):

    def one(mask, w):
      return prepare_keys(ps, fuse_integers(fusion, mask, rule, w), compress)

    return jax.vmap(one)(masks, weights)


def pairs_fn(ps, fusion, masks, weights, rule, *, compress: bool):
  """prepare_fn's pair keys [B, P] alone (the CPU backend's host areas need no class
  keys; the class keys prepare_fn also builds are dead code to the compiler)."""
  return prepare_fn(ps, fusion, masks, weights, rule, compress=compress)[0]


def pairs_keys_fn(ps, image_keys):
  """The same for B variants given as exact image keys [B, N] int64 (host_keys)."""
  return prepare_keys_fn(ps, image_keys)[0]


def prepare_keys_fn(ps, image_keys):
  """The same for B variants given as exact image keys [B, N] int64 (host_keys)."""
  with jax.enable_x64(True):
    return jax.vmap(lambda f: prepare_keys(ps, f))(image_keys)


def finish_fn(ps, keys, gen, imp, *, top: int):
  """Areas of B variants from their keys, each class sorted -> (erc_area [B, F],
  edc_area [B, K], edc_best [B, K], overflow [B]) (metrics.metrics_of_sorted)."""
  with jax.enable_x64(True):
    return jax.vmap(lambda k, g, i: _areas(metrics_of_sorted(ps, k, g, i, top)))(keys, gen, imp)


def chunk_fn(ps, fusion, masks, weights, rule, *, compress: bool, top: int):
  """prepare_fn, the sort in the program (lax.sort), finish_fn: for accelerators."""
  with jax.enable_x64(True):
    keys, g, i = prepare_fn(ps, fusion, masks, weights, rule, compress=compress)
    return finish_fn(ps, keys, *sort_keys(g, i, method="xla"), top=top)


def keys_fn(ps, image_keys, *, top: int):
  """prepare_keys_fn, lax.sort, finish_fn: for accelerators."""
  with jax.enable_x64(True):
    keys, g, i = prepare_keys_fn(ps, image_keys)
    return finish_fn(ps, keys, *sort_keys(g, i, method="xla"), top=top)


score_prepare = jit_engine(prepare_fn, static_argnames=("compress",))
score_pairs = jit_engine(pairs_fn, static_argnames=("compress",))
score_pairs_keys = jit_engine(pairs_keys_fn)
score_finish = jit_engine(finish_fn, static_argnames=("top",))
score_chunk = jit_engine(chunk_fn, static_argnames=("compress", "top"))
score_keys = jit_engine(keys_fn, static_argnames=("top",))


@partial(jit_engine, static_argnames=("compress",))
def _prepare_one(ps, fusion, mask, weights, rule, compress):
  with jax.enable_x64(True):
    return prepare_keys(ps, fuse_integers(fusion, mask, rule, weights), compress)


@jit_engine
def _prepare_one_keys(ps, image_keys):
  with jax.enable_x64(True):
    return prepare_keys(ps, image_keys)


@jit_engine
def _image_keys(fusion, mask, weights, rule):
  with jax.enable_x64(True):
    return fuse_integers(fusion, mask, rule, weights)


_PLANS: dict = {}  # one-variant plans: (field ids of ps, norm, rule, weights) -> (refs, Plan)


def _refs(ps: PairSet) -> tuple:
  """Weak references to the pair set's arrays (a plan cache must not keep an IJB-C-sized
  pair set alive), the value of any field that takes none."""
  out = []
  for x in ps:
    try:
      out.append(weakref.ref(x))
    except TypeError:
      out.append(x)
  return tuple(out)


def _alive(refs: tuple) -> bool:
  return all(r() is not None for r in refs if isinstance(r, weakref.ref))


def _same(refs: tuple, ps: PairSet) -> bool:
  return all(
    (r() is x) if isinstance(r, weakref.ref) else (r is x) for r, x in zip(refs, ps, strict=True)
  )


def _variant_plan(ps: PairSet, mask, rule: str, norm: str, weights):
  """(mask [L] bool, the Plan of one variant). A plan depends on the pair set, rule,
  normalisation and weights, not on the mask: the analysis's single exits (one rule,
  one plan) and repeated evaluations reuse it (the last 4 plans of live pair sets
  are kept)."""
  depth = ps.exits.shape[1]
  mask = np.asarray(mask, bool)
  w = np.arange(1, depth + 1) if weights is None else np.asarray(weights)
  key = (tuple(map(id, ps)), norm, rule, w.dtype.str, w.shape, w.tobytes())
  hit = _PLANS.get(key)
  if hit is None or not _same(hit[0], ps):
    for k in [k for k, (refs, _) in _PLANS.items() if not _alive(refs)]:
      del _PLANS[k]  # a pair set gone: its plans (device arrays [L, N]) go too
    if len(_PLANS) >= 4:
      _PLANS.pop(next(iter(_PLANS)))
    hit = _PLANS[key] = (_refs(ps), plan(ps, norm, rule, w[None], tables_ok=False))
  return mask, hit[1]


def host_route(ps: PairSet) -> bool:
  """Whether one variant is evaluated in numpy (`host_fused`, `metrics.host_curves`):
  on the CPU backend with the pair set there (its numbers are the compiled ones bit for
  bit, and no program is traced, lowered or loaded); else the compiled programs."""
  if not host_sort():
    return False
  devices = getattr(ps.sa, "devices", None)
  return devices is None or all(d.platform == "cpu" for d in devices())


def host_fused(p: Plan, mask: np.ndarray, rule: str) -> np.ndarray:
  """`rules.fuse_integers` of an integer Plan without half-subset tables, in numpy ->
  the exact fused keys [N] int64 (integer arithmetic: the same numbers in any order)."""
  cols = np.asarray(p.fusion.columns)  # [L, N]
  depth = len(cols)
  picked = [i for i in range(depth) if mask[i]]
  if rule in ("mean", "weighted"):
    w = p.weights[0] if rule == "weighted" else np.ones(depth, np.int64)
    acc = np.zeros(cols.shape[1], np.int64)
    for i in picked:
      acc += int(w[i]) * cols[i] if rule == "weighted" else cols[i]
    return acc
  if rule in ("min", "max"):
    return (np.min if rule == "min" else np.max)(cols[picked], axis=0)
  order, ascending = np.asarray(p.fusion.order), np.asarray(p.fusion.ascending)
  code, k = int(code_of(mask)), len(picked)
  count = np.zeros(cols.shape[1], np.int32)
  acc = np.zeros(cols.shape[1], np.int64)
  for j in range(depth):  # the j-th smallest score of each image: picked when selected
    sel = (code >> order[j]) & 1
    count += sel
    pick = (sel > 0) & ((count == (k + 1) // 2) | (count == k // 2 + 1))
    acc += np.where(pick, ascending[j], 0)
  return acc


def _image_keys_of(ps: PairSet, p: Plan, mask: np.ndarray, rule: str, host: bool) -> np.ndarray:
  """The variant's exact fused image keys [N] int64 (before any rank compression)."""
  if not p.integer:
    return host_keys(ps, p, mask[None], p.weights)[0]
  if host:
    return host_fused(p, mask, rule)
  with jax.enable_x64(True):
    keys = _image_keys(p.fusion, jnp.asarray(mask), jnp.asarray(p.weights[0]), RULES.index(rule))
    return np.asarray(jax.device_get(keys))


def _pair_quality(ps: PairSet, p: Plan, mask: np.ndarray, rule: str, keys=None) -> np.ndarray:
  if keys is None:
    keys = _image_keys_of(ps, p, mask, rule, host_route(ps))
  n = int(ps.count)
  a, b = np.asarray(ps.a)[:n], np.asarray(ps.b)[:n]
  return np.minimum(keys[a], keys[b])


def variant_pair_quality(
  ps: PairSet, mask, rule: str = "weighted", norm: str = "none", weights=None
) -> np.ndarray:
  """Pair quality keys [P] (valid pairs only) of one fused variant: the engine's exact
  fused image keys (docs/protocol.md §2), the lower of each pair's two. Only their
  order and ties carry meaning, as for the ERC and EDC (and for
  `exfiqa_jax.metrics.rejection`)."""
  mask, p = _variant_plan(ps, mask, rule, norm, weights)
  return _pair_quality(ps, p, mask, rule)


@jit_engine
def _finish_one(ps, keys, gen, imp):
  with jax.enable_x64(True):
    return metrics_of_sorted(ps, keys, gen, imp, curve=True)


def evaluate_variant(
  ps: PairSet,
  mask,
  rule: str = "weighted",
  norm: str = "none",
  weights=None,
  pair_quality: bool = False,
) -> dict[str, np.ndarray]:
  """ERC and EDC of one fused variant, with curves for plots.

  Returns erc_fnmr [20, F] (rates i/20), erc_area [F], edc_area, edc_best [K]
  (the limits of `ps`), and the EDC curve points edc_discard, edc_error (ending
  at (1, 0)). weights: [L] for the weighted rule, default the depth weights 1..L.
  pair_quality: also `pair_quality` [P], the variant's pair quality keys
  (`variant_pair_quality`) from the same plan. Memory is O(P + N L): an IJB-C-sized
  list fits in a few GB. On the CPU backend (`host_route`) all of it runs in numpy
  (`host_fused`, `exfiqa_jax.metrics.host_curves`), the compiled numbers bit for bit
  without a program traced; elsewhere in the compiled programs.
  """
  mask, p = _variant_plan(ps, mask, rule, norm, weights)
  if host_route(ps):  # numpy, the compiled numbers bit for bit: nothing traced
    from exfiqa_jax.metrics.host_curves import pair_keys, variant_curves
    from exfiqa_jax.metrics.keys import KEY_MAX

    f = _image_keys_of(ps, p, mask, rule, True)
    if p.integer and p.compress:  # keys.dense_rank: #{valid images of a lower value}
      valid = np.asarray(ps.image_valid)
      f_c = np.searchsorted(np.sort(np.where(valid, f, KEY_MAX)), f, "left").astype(np.int64)
    else:
      f_c = f
    out = variant_curves(ps, pair_keys(f_c, ps))
    if pair_quality:
      out["pair_quality"] = _pair_quality(ps, p, mask, rule, f)
    return out
  with jax.enable_x64(True):
    if p.integer:
      args = (ps, p.fusion, jnp.asarray(mask), jnp.asarray(p.weights[0]), RULES.index(rule))
      keys, g, i = _prepare_one(*args, p.compress)
    else:
      keys, g, i = _prepare_one_keys(ps, jnp.asarray(host_keys(ps, p, mask[None], p.weights)[0]))
    g, i = numpy_sort(g, i) if host_sort() else sort_keys(g, i, method="xla")
    m = _finish_one(ps, keys, jnp.asarray(g), jnp.asarray(i))
    point = np.asarray(m.edc.point)
    out = {
      "erc_fnmr": np.asarray(m.erc_fnmr),
      "erc_area": np.asarray(m.erc_area),
      "edc_area": np.asarray(m.edc.area),
      "edc_best": np.asarray(m.edc.best),
      "edc_discard": np.r_[np.asarray(m.edc.discard)[point], 1.0],
      "edc_error": np.r_[np.asarray(m.edc.error)[point], 0.0],
    }
  if pair_quality:
    out["pair_quality"] = _pair_quality(ps, p, mask, rule)
  return out

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
from exfiqa_jax.fusion.sides import half_tables
from exfiqa_jax.fusion.subsets import code_of
from exfiqa_jax.metrics import PairSet, metrics_of_sorted, prepare_keys
from exfiqa_jax.metrics.keys import fits, sort_keys

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

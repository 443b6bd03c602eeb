"""Many fused variants through the engine: the variant axis spread over every device
of every host, in chunks sized to a memory budget.

Each host (`jax.process_index()` of `jax.process_count()`) takes an equal,
contiguous share of the variants; on its local devices one call evaluates a chunk
of `per_device` variants on each device (`jax.shard_map` over the mesh of
`exfiqa_jax.backend.mesh`, dataset replicated); on a single CPU device, chunks run
on one thread per core instead (a chunk keeps about one core busy). The hosts'
results are all-gathered, so every host (host 0 among them) holds the whole
table in variant order. Variants are independent, and each variant's numbers
come from exact integer keys, so any split gives the same table as one device.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.backend import AXIS, mesh
from exfiqa_jax.fusion import workers
from exfiqa_jax.fusion.engine import (
  chunk_fn,
  host_keys,
  host_sort,
  keys_fn,
  pairs_fn,
  pairs_keys_fn,
  plan,
  score_chunk,
  score_keys,
  score_pairs,
  score_pairs_keys,
)
from exfiqa_jax.fusion.exact import dense_ranks, float_fused
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.fusion.sides import pair_sides, side_keys
from exfiqa_jax.metrics import PairSet, bucket, default_top
from exfiqa_jax.metrics.host import host_areas
from exfiqa_jax.metrics.host_curves import cached_pairs, keyed, pair_minima


def chunk_size(ps: PairSet, memory_mb: float) -> int:
  """Variants per device per call: a power of two whose working set fits memory_mb."""
  n, depth = ps.exits.shape
  per_variant = 8 * (3 * n + 30 * ps.sa.shape[0])  # int64 fused keys, pair keys, ERC words
  return 1 << max(0, int(memory_mb * 2**20 // per_variant).bit_length() - 1)


def parallelism(devices: int) -> tuple[int, int]:
  """(threads, most variants per device per call). One CPU device: one thread per
  core and at most 64 variants a chunk (LFW-sized, 2 threads on 2 cores: 64 ran
  about 10-15% faster per variant than 32, with half the numpy calls per variant;
  128 was no faster); otherwise one thread and chunks as large as memory allows."""
  if devices == 1 and jax.default_backend() == "cpu":
    return os.cpu_count() or 1, 64
  return 1, 2**31


@functools.lru_cache(maxsize=16)
def sharded(fn, devices: tuple, specs: tuple, **static):
  """jit(shard_map(fn)) over a mesh of `devices`: the variant axis split (specs:
  True for a split argument, False for a replicated one), outputs split."""
  m = mesh(list(devices))
  in_specs = tuple(jax.P(AXIS) if split else jax.P() for split in specs)
  body = functools.partial(fn, **static)
  return jax.jit(
    jax.shard_map(body, mesh=m, in_specs=in_specs, out_specs=jax.P(AXIS), check_vma=False)
  )


def host_share(v: int) -> tuple[int, int]:
  """[start, stop) of the variants this host evaluates (equal shares, the last short)."""
  share = -(-v // jax.process_count())
  start = min(v, jax.process_index() * share)
  return start, min(v, start + share)


def _gather_hosts(parts: tuple[np.ndarray, ...], v: int) -> tuple[np.ndarray, ...]:
  """Every host's share -> the whole [V, ...] arrays on every host, in variant order."""
  if jax.process_count() == 1:
    return parts
  from jax.experimental import multihost_utils

  share = -(-v // jax.process_count())
  out = []
  for x in parts:
    padded = np.zeros((share, *x.shape[1:]), x.dtype)
    padded[: len(x)] = x
    out.append(np.asarray(multihost_utils.process_allgather(padded)).reshape(-1, *x.shape[1:])[:v])
  return tuple(out)


def score_variants(
  ps: PairSet,
  masks,
  weights,
  rule: str,
  norm: str = "none",
  memory_mb: float = 256,
  devices=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Areas of every variant: masks, weights [V, L] -> ([V, F], [V, K], [V, K]).

  devices: this host's devices to use (default all local ones). Variants whose
  ERC needs more than the default share of impostors (`metrics.default_top`) are
  rerun with all of them.
  """
  return score_variants_later(ps, masks, weights, rule, norm, memory_mb, devices)()


def score_variants_later(
  ps: PairSet,
  masks,
  weights,
  rule: str,
  norm: str = "none",
  memory_mb: float = 256,
  devices=None,
) -> Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """`score_variants` in two steps: returns finish(), which returns its result. With
  sweep workers (`fusion.workers`, a tabled rule on the CPU) the plan and the pair sides
  are made and the workers start on the variants now, and this process joins them when
  finish() is called, so that a caller prepares its next group meanwhile; otherwise all
  now."""
  from exfiqa_jax.fusion import large  # pair sets of IJB-C size: no sort of the pairs

  if large.routed(ps):
    out = large.score_variants(ps, masks, weights, rule, norm, memory_mb, devices)
    return lambda: out
  masks, weights = np.asarray(masks, bool), np.asarray(weights)
  v = len(masks)
  lo, hi = host_share(v)
  devices = tuple(devices or jax.local_devices())
  split = host_sort()  # CPU: the areas in numpy (metrics.host)
  p = plan(ps, norm, rule, weights, host=split)
  sides = pair_sides(ps, p, rule) if split else None  # the pair keys in numpy too
  if sides is not None and workers.running() and hi > lo:  # processes: no GIL shared
    finish = workers.areas_later(cached_pairs(ps)[0], sides, masks[lo:hi])
    return lambda: _gather_hosts(finish()[:3], v)  # host areas never overflow
  if split and sides is None and p.integer:
    p = plan(ps, norm, rule, weights)  # compiled pair keys: the image tables on the device
  w = p.weights if p.integer else weights
  top, full = default_top(ps), ps.imp_pos.shape[0]
  mine = _run(ps, p, sides, masks[lo:hi], w[lo:hi], rule, memory_mb, devices, top)
  again = np.flatnonzero(mine[3])
  if len(again):
    args = (masks[lo:hi][again], w[lo:hi][again], rule, memory_mb, devices, full)
    redo = _run(ps, p, sides, *args)
    for x, y in zip(mine, redo, strict=True):
      x[again] = y
  out = _gather_hosts(mine[:3], v)
  return lambda: out


def _run(ps, p, sides, masks, weights, rule, memory_mb, devices, top):
  """This host's variants [n, L] on its devices -> the four chunk outputs [n, ...].
  sides: the CPU's numpy pair keys (`sides.pair_sides`) or None."""
  n = len(masks)
  if not n:
    f, k = ps.fmr_num.shape[0], ps.limits.shape[0]
    return np.zeros((0, f), np.float32), *(np.zeros((0, k), np.float32),) * 2, np.zeros(0, bool)
  threads, cap = parallelism(len(devices))
  b = min(chunk_size(ps, memory_mb / threads), bucket(n, 1), cap)
  step = b * len(devices)
  pad = (-n) % step
  masks, weights = (
    np.r_[masks, masks[:1].repeat(pad, 0)],
    np.r_[weights, weights[:1].repeat(pad, 0)],
  )
  split = host_sort()  # CPU: the areas in numpy (metrics.host)
  hp = cached_pairs(ps)[0] if split else None  # once per pair set, not per group
  numpy_keys = split and not p.integer  # float weights on the CPU: pair keys in numpy too
  if sides is None and not numpy_keys:  # a compiled program: the data on the devices
    with jax.enable_x64(True):
      if len(devices) > 1:
        rep = jax.NamedSharding(mesh(list(devices)), jax.P())

        def on(fn, specs, **static):
          return sharded(fn, devices, specs, **static)
      else:
        rep = devices[0]
        jitted = {
          pairs_fn: score_pairs, pairs_keys_fn: score_pairs_keys, chunk_fn: score_chunk,
          keys_fn: score_keys,
        }  # fmt: skip

        def on(fn, specs, **static):
          return functools.partial(jitted[fn], **static)

      ps_d = jax.device_put(ps, rep)
      fusion = jax.device_put(p.fusion, rep) if p.integer else None
      if p.integer:
        specs = (False, False, True, True, False)
        first = (pairs_fn, {"compress": p.compress})
        whole = (chunk_fn, {"compress": p.compress})
      else:
        specs = (False, True)
        first, whole = (pairs_keys_fn, {}), (keys_fn, {})
      if split:
        prepare = on(first[0], specs, **first[1])
      else:
        chunk = on(whole[0], specs, **whole[1], top=top)

  def run(i):
    mk, wk = masks[i : i + step], weights[i : i + step]
    if sides is not None:
      return host_areas(hp, side_keys(sides, mk))
    if numpy_keys:  # the order and ties of the compiled pair keys (host_curves.pair_keys)
      return host_areas(hp, keyed(dense_ranks(pair_minima(float_fused(p.floats, mk, wk), ps)), ps))
    with jax.enable_x64(True):
      if p.integer:
        args = (ps_d, fusion, jnp.asarray(mk), jnp.asarray(wk), RULES.index(rule))
      else:
        args = (ps_d, jnp.asarray(host_keys(ps, p, mk, wk)))
      if split:  # every impostor within reach: no overflow, no rerun
        return host_areas(hp, np.asarray(prepare(*args)))
      else:
        out = chunk(*args)
      return jax.device_get(out)

  starts = range(0, len(masks), step)
  if threads > 1:
    with ThreadPoolExecutor(threads) as pool:
      parts = list(pool.map(run, starts))
  else:
    parts = [run(i) for i in starts]
  return tuple(np.concatenate([q[j] for q in parts])[:n] for j in range(4))

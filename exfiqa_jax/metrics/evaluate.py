"""ERC and EDC of per-image quality keys in one program (docs/protocol.md §3-5).

Pair quality is the minimum of the two images' quality scores. Pairs of equal
quality are ordered by their position in the pair list (a stable sort), so
results never depend on the machine. Qualities enter as exact integers
(`evaluate_keys`) or as float32 scores (`evaluate_quality`, order-preserving keys).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.metrics.edc import Edc, edc, edc_curve
from exfiqa_jax.metrics.erc import erc
from exfiqa_jax.metrics.keys import (
  KEY_MAX,
  dense_rank,
  float_keys,
  index_bits,
  pair_keys,
  sort_keys,
)
from exfiqa_jax.metrics.pairset import PairSet, bucket


class Metrics(NamedTuple):
  """erc_fnmr: [20, F] FNMR at discard rates i/20 per FMR; erc_area: [F];
  edc: the EDC (areas [K] at the discard limits, theoretical best, curve if asked);
  overflow: [] bool, the ERC needed more than `top` impostors (numbers invalid)."""

  erc_fnmr: jax.Array
  erc_area: jax.Array
  edc: Edc
  overflow: jax.Array


def default_top(ds: PairSet) -> int:
  """How many of the highest-scoring impostors the ERC looks at: enough, with a wide
  margin, for the kept ones an FMR needs when 95% of pairs are discarded at
  random (20 x (f n_imp + 2), doubled); a variant that needs more is rerun with
  all of them (`Metrics.overflow`)."""
  n_imp, cap = int(ds.n_imp), ds.imp_pos.shape[0]
  f = max(int(n) / int(d) for n, d in zip(ds.fmr_num, ds.fmr_den, strict=True))
  want = 40 * (int(np.ceil(f * n_imp)) + 2) + 64
  return cap if want >= cap // 2 else min(cap, bucket(want, 32))


def class_keys(ds: PairSet, keys: jax.Array, sort: str = "auto") -> tuple[jax.Array, jax.Array]:
  """keys: [P] by score position -> (genuine keys [G], impostor keys [I]) ascending."""
  g = jnp.where(jnp.arange(ds.gen_pos.shape[0]) < ds.n_gen, keys[ds.gen_pos], KEY_MAX)
  i = jnp.where(jnp.arange(ds.imp_pos.shape[0]) < ds.n_imp, keys[ds.imp_pos], KEY_MAX)
  return sort_keys(g, i, method=sort)


def prepare_keys(ds: PairSet, f: jax.Array, compress: bool = False):
  """Exact integer image qualities f [N] >= 0 -> (keys [P] by score position, the
  genuine [G] and impostor [I] keys unsorted). compress: dense-rank f first (where
  its range would not pack beside the pair index, see `exfiqa_jax.metrics.keys`).
  Call inside `jax.enable_x64(True)`."""
  f = f.astype(jnp.int64)
  if compress:
    f = dense_rank(f, ds.image_valid, "xla")
  # stage outputs materialised (optimization_barrier): fused into their gathers,
  # XLA would recompute a whole fusion per element read
  f = jax.lax.optimization_barrier(f)
  keys = jax.lax.optimization_barrier(pair_keys(f, ds.sa, ds.sb, ds.sid, ds.valid))
  g = jnp.where(jnp.arange(ds.gen_pos.shape[0]) < ds.n_gen, keys[ds.gen_pos], KEY_MAX)
  i = jnp.where(jnp.arange(ds.imp_pos.shape[0]) < ds.n_imp, keys[ds.imp_pos], KEY_MAX)
  return keys, g, i


def metrics_of_sorted(
  ds: PairSet, keys, gen, imp, top: int | None = None, curve: bool = False
) -> Metrics:
  """ERC and EDC from `prepare_keys`' keys with each class sorted ascending. top:
  impostors the ERC looks at (static, default all: never an overflow); curve:
  also the whole EDC curve. Call inside `jax.enable_x64(True)`."""
  top = ds.imp_pos.shape[0] if top is None else top
  fnmr, area, overflow = erc(ds, keys, gen, imp, top)
  shift = index_bits(ds.sa.shape[0])
  e = edc(gen, ds.edc_error, ds.n_gen, ds.edc_width, ds.limits, shift)
  if curve:
    parts = edc_curve(gen, ds.edc_error, ds.n_gen, shift)
    e = e._replace(**dict(zip(("discard", "error", "point"), parts, strict=True)))
  return Metrics(fnmr, area, e, overflow)


def evaluate_keys(
  ds: PairSet,
  f: jax.Array,
  *,
  compress: bool = False,
  sort: str = "auto",
  curve: bool = False,
  top: int | None = None,
) -> Metrics:
  """ERC and EDC of exact integer image qualities f [N] >= 0 in one program
  (jit-able): `prepare_keys`, the sort of each class (`sort_keys`: numpy through a
  callback, or XLA), `metrics_of_sorted`. (A program with a callback is not kept
  in the persistent compilation cache: the engine runs the numpy sort between
  two programs instead, see exfiqa_jax.fusion.engine.)"""
  with jax.enable_x64(True):
    keys, g, i = prepare_keys(ds, f, compress)
    gen, imp = sort_keys(g, i, method=sort)
    return metrics_of_sorted(ds, keys, gen, imp, top, curve)


def evaluate_quality(ds: PairSet, quality: jax.Array, curve: bool = False) -> Metrics:
  """ERC and EDC of float32 quality scores [N] per image (jit-able): their order and
  ties exactly, through order-preserving integer keys."""
  with jax.enable_x64(True):
    return evaluate_keys(ds, float_keys(quality), curve=curve)

"""ERC and EDC of one pair-quality vector (docs/protocol.md §3-5); re-exports erc and edc.

Pair quality is the minimum of the two images' quality scores. Pairs of equal
quality are ordered by their position in the pair list (a stable sort), so
results never depend on the machine.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from exfiqa_jax.metrics.edc import Edc, edc
from exfiqa_jax.metrics.erc import RATES, ErcData, erc
from exfiqa_jax.metrics.pairset import PairSet, make_pairset

__all__ = [
  "PairSet",
  "make_pairset",
  "Metrics",
  "pair_quality",
  "evaluate_quality",
  "erc",
  "edc",
  "Edc",
  "ErcData",
  "RATES",
]


class Metrics(NamedTuple):
  """erc_fnmr: [20, F] FNMR at discard rates i/20 per FMR; erc_area: [F];
  edc: the EDC (areas [K] at the discard limits, theoretical best, curve)."""

  erc_fnmr: jax.Array
  erc_area: jax.Array
  edc: Edc


def pair_quality(ds: PairSet, quality: jax.Array) -> jax.Array:
  """quality: [N] per image -> [P] min of the pair; padding pairs sort last (+inf)."""
  pq = jnp.minimum(quality[ds.a], quality[ds.b])
  pq = jnp.where(pq == 0, 0.0, pq)  # -0.0 ties with 0.0, as a comparison sort sees it
  return jnp.where(ds.valid, pq, jnp.inf)


def stable_order(pq: jax.Array) -> jax.Array:
  """argsort of pq [P] (no NaN, no -0.0), ties in index order -> [P].

  One single-key sort of int64 (order-preserving int32 key << 32 | index): on CPU
  far cheaper than a sort with a payload or a float comparator. The 64-bit
  integers live only inside this function.
  """
  with jax.enable_x64(True):
    i = jax.lax.bitcast_convert_type(pq, jnp.int32)
    key = (i ^ ((i >> 31) & 0x7FFFFFFF)).astype(jnp.int64)
    packed = jnp.sort((key << 32) | jnp.arange(pq.shape[0], dtype=jnp.int64))
    return (packed & 0xFFFFFFFF).astype(jnp.int32)


def evaluate_quality(ds: PairSet, quality: jax.Array) -> Metrics:
  """ERC and EDC of per-image quality scores [N] on the dataset's pairs (jit-able)."""
  pq = pair_quality(ds, quality)
  order = stable_order(pq)
  fnmr, area = erc(ds.erc, order, ds.count, ds.fmr_num, ds.fmr_den)
  return Metrics(fnmr, area, edc(order, pq, ds.erc_genuine, ds.edc_error, ds.limits))

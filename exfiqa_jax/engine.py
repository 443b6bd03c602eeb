"""One compiled engine for fused variants: evaluate one, or score many in chunks.

A variant is (exit subset mask [L], rule, normalisation, weights [L]). The
jitted functions take the padded PairSet as data, so datasets whose sizes fall in
the same bucket (see `pairset.bucket`) reuse the same compiled code.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.fusion import NORMS, RULES, depth_weights, fuse, normalize
from exfiqa_jax.metrics import PairSet, evaluate_quality
from exfiqa_jax.pairset import bucket

# XLA's older CPU loop emitters, not its fusion emitters: a sweep chunk compiled in
# 3.3 s instead of 5.3 s and ran 17% faster (same numbers); accelerators ignore it
jit_engine = partial(jax.jit, compiler_options={"xla_cpu_use_fusion_emitters": False})


@jit_engine
def prepare(ps: PairSet, norm: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Normalised exit scores [N, L] and their row-wise argsort [N, L] (for the median)."""
  values = normalize(ps.exits, norm, ps.image_valid)
  return values, jnp.argsort(values, axis=1)


@jit_engine
def _evaluate(ps, values, order, mask, weights, rule):
  return evaluate_quality(ps, fuse(values, mask, rule, weights, order))


@jit_engine
def score_chunk(ps: PairSet, values, order, masks, weights, rule):
  """Areas of B variants sharing a rule: masks, weights [B, L] ->
  (erc_area [B, F], edc_area [B, K], edc_best [B, K])."""
  def one(mask, w):
    m = evaluate_quality(ps, fuse(values, mask, rule, w, order))
    return m.erc_area, m.edc.area, m.edc.best
  return jax.vmap(one)(masks, weights)


def evaluate(ps: PairSet, mask, rule: str = "weighted", norm: str = "none",
             weights=None) -> dict[str, np.ndarray]:
  """ERC and EDC of one fused variant, with curves for plots.

  Returns erc_fnmr [20, F] (rates i/20), erc_area [F], edc_area, edc_best [K]
  (the limits of `ps`), and the EDC curve points edc_discard, edc_error (ending
  at (1, 0)). Memory is O(P + N L): an IJB-C-sized list fits in a few GB.
  """
  depth = ps.exits.shape[1]
  w = depth_weights(depth) if weights is None else jnp.asarray(weights, jnp.float32)
  values, order = prepare(ps, NORMS.index(norm))
  m = _evaluate(ps, values, order, jnp.asarray(mask, bool), w, RULES.index(rule))
  point = np.asarray(m.edc.point)
  return {"erc_fnmr": np.asarray(m.erc_fnmr), "erc_area": np.asarray(m.erc_area),
          "edc_area": np.asarray(m.edc.area), "edc_best": np.asarray(m.edc.best),
          "edc_discard": np.r_[np.asarray(m.edc.discard)[point], 1.0],
          "edc_error": np.r_[np.asarray(m.edc.error)[point], 0.0]}


def chunk_size(ps: PairSet, memory_mb: float) -> int:
  """Variants per compiled call: a power of two whose working set fits memory_mb."""
  n, depth = ps.exits.shape
  per_variant = 4 * (4 * n * depth + 24 * ps.a.shape[0])  # fusion temporaries, pair arrays
  return 1 << max(0, int(memory_mb * 2 ** 20 // per_variant).bit_length() - 1)


def workers() -> int:
  """Chunks scored at once: one per CPU core on the host (one compiled chunk keeps
  about one core busy there: its sort runs on a single thread), one on accelerators."""
  return (os.cpu_count() or 1) if jax.default_backend() == "cpu" else 1


def score_variants(ps: PairSet, masks, weights, rule: str, norm: str = "none",
                   memory_mb: float = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Areas of every variant: masks, weights [V, L] -> ([V, F], [V, K], [V, K]).

  Chunks run on `workers()` threads at once, memory_mb shared between them.
  """
  masks, weights = np.asarray(masks, bool), np.asarray(weights, np.float32)
  values, order = prepare(ps, NORMS.index(norm))
  v, n = len(masks), workers()
  b = min(chunk_size(ps, memory_mb / n), bucket(v, 1))
  pad = (-v) % b
  masks, weights = np.r_[masks, masks[:1].repeat(pad, 0)], np.r_[weights, weights[:1].repeat(pad, 0)]
  run = lambda i: jax.device_get(score_chunk(ps, values, order, masks[i:i + b], weights[i:i + b],
                                             RULES.index(rule)))
  with ThreadPoolExecutor(n) as pool:
    parts = list(pool.map(run, range(0, len(masks), b)))
  return tuple(np.concatenate([p[j] for p in parts])[:v] for j in range(3))

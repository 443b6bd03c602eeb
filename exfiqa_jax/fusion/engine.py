"""One compiled engine for fused variants: one evaluated with curves, or a chunk of many.

A variant is (exit subset mask [L], rule, normalisation, weights [L]). The
jitted functions take the padded PairSet as data, so datasets whose sizes fall in
the same bucket (see `pairset.bucket`) reuse the same compiled code. Many variants
go through `exfiqa_jax.fusion.chunks.score_variants`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.backend import jit_options
from exfiqa_jax.fusion.rules import NORMS, RULES, depth_weights, fuse, normalize_exits
from exfiqa_jax.metrics import PairSet, evaluate_quality

# XLA's older CPU loop emitters, not its fusion emitters: a sweep chunk compiled in
# 3.3 s instead of 5.3 s and ran 17% faster on jaxlib 0.10 (same numbers); accelerators
# ignore it, and a jaxlib that no longer knows the option compiles without it.
ENGINE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def jit_engine(fn=None, **kwargs):
  """`jax.jit` with the engine's compiler options, those this jaxlib accepts."""
  if fn is None:
    return partial(jit_engine, **kwargs)
  return jax.jit(fn, compiler_options=jit_options(ENGINE_OPTIONS), **kwargs)


@partial(jit_engine, static_argnums=1)
def prepare(ps: PairSet, norm: int) -> tuple[jax.Array, jax.Array]:
  """Normalised exit scores [N, L] and their row-wise argsort [N, L] (for the median).
  norm: an index into NORMS, static: each compiles only its own branch (0.45 s for
  all four at once, cold)."""
  values = normalize_exits(ps.exits, norm, ps.image_valid)
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


def evaluate_variant(
  ps: PairSet, mask, rule: str = "weighted", norm: str = "none", weights=None
) -> dict[str, np.ndarray]:
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
  return {
    "erc_fnmr": np.asarray(m.erc_fnmr),
    "erc_area": np.asarray(m.erc_area),
    "edc_area": np.asarray(m.edc.area),
    "edc_best": np.asarray(m.edc.best),
    "edc_discard": np.r_[np.asarray(m.edc.discard)[point], 1.0],
    "edc_error": np.r_[np.asarray(m.edc.error)[point], 0.0],
  }

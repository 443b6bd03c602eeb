"""The curves of one variant in plain numpy: `metrics_of_sorted(..., curve=True)`'s
numbers, bit for bit, without a compiled program.

The CPU backend's route for the curves a report plots (`exfiqa_jax.fusion.engine.
evaluate_variant`): the full FNMR curve [20, F] and the ERC and EDC areas come from
`exfiqa_jax.metrics.host` (rate levels by selection, the impostor window, the EDC
over the reached genuines: float32 arithmetic in the compiled order), the EDC curve
points from one sort of the genuine keys, as `edc.edc_curve` computes them. No
program is traced, lowered or loaded, which for one variant costs far more than the
numbers themselves (about 1 s a process against a few milliseconds).
"""

from __future__ import annotations

import weakref

import numpy as np

from exfiqa_jax.metrics.bits import index_bits
from exfiqa_jax.metrics.host import HostPairs, edc_area, erc_area, host_pairs, levels, rate_fnmr

_PAIRS: dict = {}  # id(ps.sid) -> (weak reference to ps.sid, HostPairs, error by pair index)


def cached_pairs(ps) -> tuple[HostPairs, np.ndarray]:
  """(HostPairs of ps, edc_error [P] bool by pair index), built once per live pair set
  (a pair set's arrays are immutable; its `sid` array stands for it)."""
  key = id(ps.sid)
  hit = _PAIRS.get(key)
  if hit is None or hit[0]() is not ps.sid:
    for k in [k for k, v in _PAIRS.items() if v[0]() is None]:
      del _PAIRS[k]
    hit = _PAIRS[key] = (weakref.ref(ps.sid), host_pairs(ps), np.asarray(ps.edc_error, bool))
  return hit[1], hit[2]


def pair_minima(f: np.ndarray, ps) -> np.ndarray:
  """Image qualities f [..., N] -> the real pairs' lower sides [..., P'] by score position
  (C-contiguous: a gather of columns would be column-major)."""
  n = int(ps.count)
  sa, sb = np.asarray(ps.sa)[:n], np.asarray(ps.sb)[:n]
  return np.ascontiguousarray(np.minimum(f[..., sa], f[..., sb]))


def keyed(q: np.ndarray, ps) -> np.ndarray:
  """Pair qualities q [..., P'] int >= 0 by score position -> their unique keys: q << the
  index bits | pair index (`metrics.keys.pair_keys`' layout)."""
  keys = np.array(q, np.int64)  # a copy; dense ranks may come as int32
  keys <<= index_bits(ps.sa.shape[0])
  keys |= np.asarray(ps.sid)[: int(ps.count)].astype(np.int64)
  return keys


def pair_keys(f: np.ndarray, ps) -> np.ndarray:
  """Exact integer image qualities f [..., N] int >= 0 -> the real pairs' unique keys
  [..., P'] by score position (`metrics.keys.pair_keys`' numbers: min of the two images'
  qualities << the index bits | pair index). For float qualities, `keyed` of the pairs'
  dense ranks (`fusion.exact.dense_ranks` of `pair_minima`) has the same order and ties
  (ranked among the pairs, not the images: one sort of P' values a variant)."""
  return keyed(pair_minima(np.asarray(f), ps), ps)


def variant_curves(ps, keys: np.ndarray) -> dict[str, np.ndarray]:
  """keys: [P'] the real pairs' unique keys by score position (`pair_keys`) ->
  erc_fnmr [20, F], erc_area [F], edc_area [K], edc_best [K] float32 and the EDC curve
  points edc_discard, edc_error ending at (1, 0): `engine.evaluate_variant`'s dict."""
  hp, error = cached_pairs(ps)
  keys = np.asarray(keys, np.int64)[None]
  _, level = levels(keys, hp.count)
  glvl = level[:, hp.gen_pos]
  fnmr, n_gen_r = rate_fnmr(hp, glvl, level)
  discard, err = edc_points(np.sort(keys[0, hp.gen_pos]), error, hp.shift)
  return {
    "erc_fnmr": fnmr[0],
    "erc_area": erc_area(fnmr)[0],
    "edc_area": edc_area(hp, keys, glvl, n_gen_r)[0],
    "edc_best": hp.best.copy(),
    "edc_discard": np.r_[discard, 1.0],
    "edc_error": np.r_[err, 0.0],
  }


def edc_points(gen: np.ndarray, error: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
  """gen: [G] the genuine keys ascending; error: [P] by pair index -> the EDC curve
  points (discard [M], error [M] float32, one per quality-tie group), `edc.edc_curve`'s
  numbers at its points."""
  g = len(gen)
  q = gen >> shift
  e = error[gen & ((1 << shift) - 1)].astype(np.int64)
  new = np.ones(g, bool)
  np.not_equal(q[1:], q[:-1], out=new[1:])
  first = np.flatnonzero(new)  # each group's first genuine: the curve's points
  e_start = (np.cumsum(e) - e)[first]
  n = np.float32(g)
  n_err = np.float32(int(error.sum()))
  f32 = first.astype(np.float32)
  return f32 / n, (n_err - e_start.astype(np.float32)) / (n - f32)

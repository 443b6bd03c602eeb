"""Evaluation of adaptive policies on the pairs left out of calibration (docs/protocol.md §10).

`split_pairs` divides a benchmark's pairs, seeded, into calibration and
evaluation pairs; calibration sees only the images of calibration pairs, and an
evaluation pair that shares an image with a calibration pair is left out, so
the two sides share no pair and no image. On the evaluation pairs each policy
and knob gives, per image, the exit it stops at (simulated from the saved exit
scores exactly as staged inference decides, `policy.stop_exits`) and its
quality, the depth-weighted fusion of exits 1..k. The metrics are those of the
static sweep on the same pair set (`exfiqa_jax.metrics.evaluate_keys`): ERC and
EDC of the order of those qualities, computed exactly (`adaptive_keys`), so a
knob that stops no image early gives bit for bit the static sweep's row of the
depth-weighted fusion of all exits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.adaptive.policy import Policy, mean_gflops, stop_exits
from exfiqa_jax.fusion.exact import exit_integers
from exfiqa_jax.metrics import PairSet, evaluate_keys

_evaluate = jax.jit(evaluate_keys, static_argnames=("compress", "sort", "curve", "top"))


def split_pairs(
  a: np.ndarray, b: np.ndarray, n_images: int, fraction: float = 0.5, seed: int = 0
) -> dict[str, np.ndarray]:
  """Pair indices -> {"calibration": [Pc], "evaluation": [Pe], "calibration_images":
  [Nc], "dropped": [Pd]}, sorted. A seeded permutation puts round(fraction * P)
  pairs into calibration; the other pairs are evaluation pairs unless they share an
  image with a calibration pair (then "dropped"). For benchmarks whose pairs own
  their images (the verification .bin files) nothing is dropped."""
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  p = len(a)
  if not 0.0 < float(fraction) < 1.0:
    raise ValueError(f"calibration fraction must lie in (0, 1), got {fraction}")
  n_cal = int(round(float(fraction) * p))
  if n_cal < 1 or n_cal >= p:
    raise ValueError(f"{p} pairs cannot be split {fraction:g} / {1 - fraction:g}")
  perm = np.random.default_rng(seed).permutation(p)
  cal = np.sort(perm[:n_cal])
  rest = np.sort(perm[n_cal:])
  seen = np.zeros(n_images, bool)
  seen[a[cal]] = True
  seen[b[cal]] = True
  shared = seen[a[rest]] | seen[b[rest]]
  return {
    "calibration": cal,
    "evaluation": rest[~shared],
    "calibration_images": np.flatnonzero(seen),
    "dropped": rest[shared],
  }


def pair_images(a: np.ndarray, b: np.ndarray, pairs: np.ndarray, n_images: int) -> np.ndarray:
  """The sorted indices of the images of `pairs`."""
  m = np.zeros(n_images, bool)
  m[np.asarray(a)[pairs]] = True
  m[np.asarray(b)[pairs]] = True
  return np.flatnonzero(m)


def prefix_fusions(ps: PairSet) -> np.ndarray:
  """Python-integer array [N, L]: entry (n, k-1) is S_k (M / W_k) of image n (see
  `adaptive_keys`), the exact depth-weighted fusion of its exits 1..k on one scale.
  It does not depend on the policy: a study computes it once for all knobs."""
  exits, valid = np.asarray(ps.exits), np.asarray(ps.image_valid)
  depth = exits.shape[1]
  w = np.arange(1, depth + 1)
  ints = exit_integers(exits, valid, "none", int(w.sum())).values
  tri = [k * (k + 1) // 2 for k in range(1, depth + 1)]
  m = math.lcm(*tri)
  partial = np.cumsum(ints.astype(object) * w.astype(object), axis=1)
  return partial * np.array([m // t for t in tri], dtype=object)


def adaptive_keys(ps: PairSet, stop: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
  """Exact integer image keys [N] (padded to ps) with the order and ties of the
  depth-weighted fusion over exits 1..stop[n] of each image.

  The fused quality of an image that stopped at k is S_k / W_k with S_k the
  integer sum of i X_i over i <= k (X the dataset's exact fixed-point exit
  integers, `exfiqa_jax.fusion.exact`, as the static sweep uses for the weighted
  rule) and W_k = k (k + 1) / 2. Multiplying by the common multiple M of all W_k
  gives the integer S_k (M / W_k), compared exactly in Python integers and
  returned as dense ranks. Where every image stops at the same k the keys have
  the order of S_k: the static sweep's order for that subset 1..k.
  prefix: `prefix_fusions(ps)`, when the caller already has it.
  """
  prefix = prefix_fusions(ps) if prefix is None else prefix
  valid = np.asarray(ps.image_valid)
  n, depth = prefix.shape
  stop_full = np.full(n, depth, np.int64)
  stop_full[: len(stop)] = stop
  fused = prefix[np.arange(n), stop_full - 1]
  fused = np.where(valid, fused, fused[valid].min() if valid.any() else 0)
  order = sorted(set(fused.tolist()))
  rank = {v: i for i, v in enumerate(order)}
  return np.array([rank[v] for v in fused.tolist()], np.int64)


def metrics_row(ps: PairSet, keys: np.ndarray, curve: bool = False) -> dict[str, Any]:
  """ERC areas per FMR and EDC areas per limit of exact image keys [N], named like
  the sweep's columns (erc_area@<fmr>, edc_area@<limit>, edc_best@<limit>)."""
  with jax.enable_x64(True):
    m = _evaluate(ps, jnp.asarray(keys, jnp.int64), curve=curve)
    erc, edc, best = (np.asarray(v) for v in (m.erc_area, m.edc.area, m.edc.best))
    out: dict[str, Any] = {}
    fmrs = [float(Fraction(int(n), int(d))) for n, d in zip(ps.fmr_num, ps.fmr_den, strict=True)]
    for j, f in enumerate(fmrs):
      out[f"erc_area@{f:g}"] = erc[j]
    for j, limit in enumerate(np.asarray(ps.limits)):
      out[f"edc_area@{limit:g}"], out[f"edc_best@{limit:g}"] = edc[j], best[j]
    if curve:
      point = np.asarray(m.edc.point)
      out["edc_discard"] = np.r_[np.asarray(m.edc.discard)[point], 1.0]
      out["edc_error"] = np.r_[np.asarray(m.edc.error)[point], 0.0]
  return out


def evaluate_policy(
  ps: PairSet,
  images: np.ndarray,
  policy: Policy,
  cost: Sequence[float],
  prefix: np.ndarray | None = None,
) -> dict[str, Any]:
  """One policy at one knob on the evaluation pair set `ps` (all exits of every
  image, pairs = the evaluation pairs): images [Ne] are the evaluation images.
  Returns the row: policy, knob, calibrated and evaluated mean GFLOPs per image,
  the fraction stopping at each stage, the metrics. prefix: `prefix_fusions(ps)`,
  shared by every policy and knob of a study."""
  n = int(np.sum(np.asarray(ps.image_valid)))
  exits = np.asarray(ps.exits)[:n]
  stop = stop_exits(policy, exits)
  keys = adaptive_keys(ps, stop, prefix)
  run = stop[np.asarray(images)]
  row = {
    "policy": policy.name,
    "knob": policy.knob,
    "gflops_calibration": policy.gflops,
    "gflops": mean_gflops(run, cost),
    "mean_blocks": float(run.mean()),
    "stopped_early": float((run < policy.depth).mean()),
  }
  row.update(metrics_row(ps, keys))
  return row

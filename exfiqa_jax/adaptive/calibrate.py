"""Calibration of the adaptive policies on exit scores only (docs/protocol.md §10).

Everything here sees the exit scores of calibration images only (the images of
the calibration pairs, `exfiqa_jax.adaptive.evaluate.split_pairs`); no model is
retrained. Per policy, `calibrate` fits the numbers of the rule once (or per
knob, for the band) and returns one `Policy` per knob value with its mean
GFLOPs per image on the calibration images (what `policy.for_budget` selects by).

- delta: scale = the population standard deviation of the full depth-weighted
  fusion over the calibration images.
- band: per stage k, lo_k and hi_k = the linear-interpolation quantiles knob and
  1 - knob of the running fusion at exit k.
- gate: per stage k < depth, a logistic regression (optax Adam on the mean
  log-loss plus a small L2 term, full batch, from zero weights: deterministic)
  on the standardised `policy.gate_features`, label 1 when the image's rank
  bucket (the decile of the full fusion, edges from the calibration images)
  is the same at exit k and at every later exit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from exfiqa_jax.adaptive.policy import (
  POLICIES,
  Policy,
  check_stages,
  gate_features,
  mean_gflops,
  running_fusion,
  stop_exits,
)

# Default knob sweeps, from the full pass (first) to the most aggressive.
KNOBS = {
  "delta": (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
  "band": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
  "gate": (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1),
}
BUCKETS = 10  # rank buckets of the gate's label: deciles
GATE_STEPS, GATE_LR, GATE_L2 = 300, 0.05, 1e-3


def check_knob(name: str, knob: float) -> float:
  """The knob as a float; ValueError (one line) outside the policy's range."""
  k = float(knob)
  ranges = {"delta": (0.0, np.inf), "band": (0.0, 0.5), "gate": (0.0, 1.0)}
  lo, hi = ranges[name]
  if not (lo <= k <= hi) or not np.isfinite(k):
    raise ValueError(f"policy {name}: knob {knob} outside [{lo}, {hi}]")
  return k


def rank_buckets(q: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Bucket index 0..len(edges) of each value: the number of inner edges <= q."""
  return np.searchsorted(np.asarray(edges, np.float64), np.asarray(q, np.float64), "right")


def bucket_edges(q_full: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
  """The inner edges [buckets - 1] of the quantile buckets of the full fusion."""
  return np.quantile(np.asarray(q_full, np.float64), np.arange(1, buckets) / buckets)


def gate_labels(exits: np.ndarray, k: int, edges: np.ndarray) -> np.ndarray:
  """bool [N]: the rank bucket of the running fusion is the same at exit k and at
  every later exit (so stopping at k keeps the image's bucket)."""
  q = running_fusion(exits)
  b = rank_buckets(q, edges)
  return (b[:, k - 1 :] == b[:, k - 1 : k]).all(axis=1)


@functools.cache
def _logistic_program(steps: int):
  """The compiled full-batch Adam fit of `fit_logistic` (one per step count)."""
  import jax
  import jax.numpy as jnp
  import optax

  def loss(p, x, y, l2):
    z = x @ p["w"] + p["b"]
    return jnp.mean(optax.sigmoid_binary_cross_entropy(z, y)) + l2 * jnp.sum(p["w"] ** 2)

  @jax.jit
  def run(x, y, lr, l2):
    opt = optax.adam(lr)
    params = {"w": jnp.zeros(x.shape[1], jnp.float32), "b": jnp.zeros((), jnp.float32)}

    def step(carry, _):
      p, s = carry
      u, s = opt.update(jax.grad(loss)(p, x, y, l2), s, p)
      return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return p

  return run


def fit_logistic(
  x: np.ndarray, y: np.ndarray, steps: int = GATE_STEPS, lr: float = GATE_LR, l2: float = GATE_L2
) -> tuple[np.ndarray, float]:
  """Logistic regression with optax Adam, full batch from zeros: x [N, F] float64
  (standardised), y [N] bool -> (weights [F], bias) as float64."""
  p = _logistic_program(int(steps))(
    np.asarray(x, np.float32), np.asarray(y, np.float32), np.float32(lr), np.float32(l2)
  )
  return np.asarray(p["w"], np.float64), float(p["b"])


def fit(name: str, exits: np.ndarray, stages: Sequence[int], knob: float = 0.0) -> dict:
  """The calibration numbers of policy `name` from calibration exits [N, L]
  (JSON-able). The band's depend on the knob; delta's and gate's do not."""
  x = np.asarray(exits, np.float32)
  depth = x.shape[1]
  stages = check_stages(stages, depth)
  q = running_fusion(x)
  if name == "delta":
    return {"scale": float(q[:, -1].std())}
  if name == "band":
    knob = check_knob(name, knob)
    if knob == 0.0:
      return {"lo": [None] * len(stages), "hi": [None] * len(stages)}
    lo = [float(np.quantile(q[:, k - 1], knob)) for k in stages]
    hi = [float(np.quantile(q[:, k - 1], 1.0 - knob)) for k in stages]
    return {"lo": lo, "hi": hi}
  if name == "gate":
    edges = bucket_edges(q[:, -1])
    out = {"edges": edges.tolist(), "mean": [], "std": [], "w": [], "b": [], "positive": []}
    for k in stages:
      f = gate_features(x, k)
      mean, std = f.mean(0), f.std(0)
      std = np.where(std > 0, std, 1.0)
      y = gate_labels(x, k, edges)
      if k == depth or y.all() or not y.any():
        w, b = np.zeros(f.shape[1]), (30.0 if y.all() else -30.0)
      else:
        w, b = fit_logistic((f - mean) / std, y)
      out["mean"].append(mean.tolist())
      out["std"].append(std.tolist())
      out["w"].append(w.tolist())
      out["b"].append(float(b))
      out["positive"].append(float(y.mean()))
    return out
  raise ValueError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")


def calibrate(
  name: str,
  exits: np.ndarray,
  stages: Sequence[int],
  cost: Sequence[float],
  knobs: Sequence[float] | None = None,
) -> list[Policy]:
  """One Policy per knob (default `KNOBS[name]`), fitted on calibration exits
  [N, L], each with its mean GFLOPs per image on those images (cost [L]: GFLOPs
  of running to exit k)."""
  if name not in POLICIES:
    raise ValueError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")
  x = np.asarray(exits, np.float32)
  if x.ndim != 2 or not len(x) or not np.isfinite(x).all():
    raise ValueError(f"calibration exits must be finite [N, L] with N > 0, got {x.shape}")
  depth = x.shape[1]
  stages = check_stages(stages, depth)
  if len(cost) != depth:
    raise ValueError(f"cost has {len(cost)} entries for {depth} exits")
  knobs = KNOBS[name] if knobs is None else knobs
  shared = None if name == "band" else fit(name, x, stages)
  out = []
  for knob in knobs:
    knob = check_knob(name, knob)
    c = shared if shared is not None else fit(name, x, stages, knob)
    p = Policy(name, knob, stages, depth, c)
    g = mean_gflops(stop_exits(p, x), cost)
    out.append(Policy(name, knob, stages, depth, c, g))
  return out

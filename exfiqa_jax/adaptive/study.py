"""The adaptive early-exit study of one pair set (`exfiqa adaptive`, a job's `adaptive`).

Split the pairs (calibration / evaluation, `evaluate.split_pairs`), calibrate
every policy's knob sweep on the calibration images, and evaluate each knob on
the evaluation pairs beside the static sweep of every exit subset on the same
pairs. `exfiqa_jax.report.adaptive` writes what a study found: the policy file
(`policies.json`, what `exfiqa score --policy NAME --budget G` reads), the
trade-off table and the Pareto figure with the adaptive points.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from exfiqa_jax.adaptive import calibrate as cal
from exfiqa_jax.adaptive import evaluate as ev
from exfiqa_jax.adaptive.policy import FRACTION, POLICIES, SEED, Policy
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.fusion.sweep import metric_columns, sweep
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.inputs import PairInputs


@dataclasses.dataclass
class Study:
  rows: list[dict[str, Any]]  # one per policy x knob, on the evaluation pairs
  static: dict[str, np.ndarray]  # the static sweep table on the evaluation pairs
  full: dict[str, Any]  # the static sweep's row of the depth-weighted fusion of all exits
  policies: list[Policy]
  split: dict[str, Any]  # counts and settings of the calibration / evaluation split
  metrics: dict[str, Any]
  select: str  # the ERC area column the knob choice uses (the first FMR)


def run_study(
  z: PairInputs,
  *,
  names: Sequence[str] = POLICIES,
  stages: Sequence[int],
  fraction: float = FRACTION,
  seed: int = SEED,
  knobs: Mapping[str, Sequence[float]] | None = None,
  metrics: dict | None = None,
  rules: Sequence[str] = RULES,
  select: str | None = None,
) -> Study:
  """z: one pair set's inputs (exit_scores [N, L], a, b, labels, comparison [P], cost
  [L]); metrics: fmrs, edc_fmr, edc_limits (default: those saved with z, else the
  defaults); rules: of the static sweep beside the policies (the weighted rule always)."""
  exits = np.asarray(z.exit_scores, np.float32)
  n, depth = exits.shape
  bad = np.flatnonzero(~np.isfinite(exits).all(axis=1))
  if bad.size:
    raise ValueError(
      f"exit scores of {bad.size} images hold NaN or inf (first: image {bad[0]}); calibrate on "
      "the full pass's scores, not on those of a policy run"
    )
  a, b = np.asarray(z.a, np.int64), np.asarray(z.b, np.int64)
  labels = np.asarray(z.labels).astype(bool)
  cost = np.asarray(z.cost, np.float64)
  m = z.metric_options(metrics)
  sp = ev.split_pairs(a, b, n, fraction, seed)
  e = sp["evaluation"]
  if not len(e) or labels[e].all() or not labels[e].any():
    raise ValueError(
      f"the evaluation split ({len(e)} pairs) needs genuine and impostor pairs; "
      "give more pairs or another --fraction"
    )
  ps = make_pairset(
    exits, a[e], b[e], labels[e], np.asarray(z.comparison)[e],
    fmrs=m["fmrs"], edc_fmr=m["edc_fmr"], limits=m["edc_limits"],
  )  # fmt: skip
  static = sweep(ps, tuple(dict.fromkeys(("weighted", *rules))), ("none",), cost)
  full_i = int(
    np.flatnonzero((static["subset"] == (1 << depth) - 1) & (static["rule"] == "weighted"))[0]
  )
  full = {k: v[full_i] for k, v in static.items()}
  images = ev.pair_images(a, b, e, n)
  calib = exits[sp["calibration_images"]]
  policies, rows = [], []
  prefix = ev.prefix_fusions(ps)  # the same for every policy and knob
  for name in names:
    for p in cal.calibrate(name, calib, stages, cost, (knobs or {}).get(name)):
      policies.append(p)
      rows.append(ev.evaluate_policy(ps, images, p, cost, prefix))
  select = select or metric_columns(full)[0]  # a job passes its sweep.select
  if select not in full:
    raise ValueError(f"select {select!r} is not a metric; one of {metric_columns(full)}")
  split = {
    "fraction": float(fraction),
    "seed": int(seed),
    "calibration_pairs": len(sp["calibration"]),
    "calibration_images": len(sp["calibration_images"]),
    "evaluation_pairs": len(e),
    "evaluation_images": len(images),
    "dropped_pairs": len(sp["dropped"]),
  }
  return Study(rows, static, full, policies, split, m, select)


def cheapest_within(rows: Sequence[dict], full: dict, metric: str, tolerance: float = 0.01):
  """Per policy, the row of least mean GFLOPs (on the evaluation images) whose
  `metric` is at most (1 + tolerance) times the full fusion's: name -> row. A row
  with any NaN area (`erc_area@*`, `edc_area@*`: at some rejection no genuine or no
  impostor comparison remained) is never chosen, whichever area selects."""
  limit = float(full[metric]) * (1 + tolerance)
  out = {}
  for r in rows:
    areas = [float(v) for k, v in r.items() if k.startswith(("erc_area@", "edc_area@"))]
    ok = all(map(math.isfinite, areas)) and float(r[metric]) <= limit
    if ok and (r["policy"] not in out or r["gflops"] < out[r["policy"]]["gflops"]):
      out[r["policy"]] = r
  return out

"""The adaptive early-exit study of one set of saved inputs: `exfiqa adaptive`.

Split the pairs (calibration / evaluation, `evaluate.split_pairs`), calibrate
every policy's knob sweep on the calibration images, evaluate each knob on the
evaluation pairs beside the static sweep of every exit subset on the same
pairs, and write: the policy file (`policies.json`: every policy x knob with
its calibration numbers and calibrated mean GFLOPs, what `exfiqa score
--policy NAME --budget G` reads), the trade-off table (Markdown, CSV, JSON) and
the compute/quality Pareto figure with the adaptive points as their own series.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from exfiqa_jax.adaptive import calibrate as cal
from exfiqa_jax.adaptive import evaluate as ev
from exfiqa_jax.adaptive.policy import POLICIES, Policy, save
from exfiqa_jax.evaluation.analysis import pairset, resolve_metrics
from exfiqa_jax.fusion.sweep import metric_columns, pareto_front, sweep

POLICY_FILE = "policies.json"


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
  z: Mapping[str, np.ndarray],
  *,
  names: Sequence[str] = POLICIES,
  stages: Sequence[int],
  fraction: float = 0.5,
  seed: int = 0,
  knobs: Mapping[str, Sequence[float]] | None = None,
  metrics: dict | None = None,
  rules: Sequence[str] = ("mean", "weighted", "median", "min", "max"),
) -> Study:
  """z: saved inputs (exit_scores [N, L], a, b, labels, comparison [P], cost [L])."""
  exits = np.asarray(z["exit_scores"], np.float32)
  n, depth = exits.shape
  a, b = np.asarray(z["a"], np.int64), np.asarray(z["b"], np.int64)
  labels = np.asarray(z["labels"]).astype(bool)
  cost = np.asarray(z["cost"], np.float64)
  m = resolve_metrics(metrics)
  sp = ev.split_pairs(a, b, n, fraction, seed)
  e = sp["evaluation"]
  if not len(e) or labels[e].all() or not labels[e].any():
    raise ValueError(
      f"the evaluation split ({len(e)} pairs) needs genuine and impostor pairs; "
      "give more pairs or another --fraction"
    )
  ps = pairset(
    exits, a[e], b[e], labels[e], np.asarray(z["comparison"])[e],
    fmrs=m["fmrs"], edc_fmr=m["edc_fmr"], edc_limits=m["edc_limits"],
  )  # fmt: skip
  static = sweep(ps, tuple(dict.fromkeys(("weighted", *rules))), ("none",), cost)
  full_i = int(
    np.flatnonzero((static["subset"] == (1 << depth) - 1) & (static["rule"] == "weighted"))[0]
  )
  full = {k: v[full_i] for k, v in static.items()}
  images = ev.pair_images(a, b, e, n)
  calib = exits[sp["calibration_images"]]
  policies, rows = [], []
  for name in names:
    for p in cal.calibrate(name, calib, stages, cost, (knobs or {}).get(name)):
      policies.append(p)
      rows.append(ev.evaluate_policy(ps, images, p, cost))
  select = metric_columns(full)[0]
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


def _plain(v: Any) -> Any:
  """A JSON value: numpy scalars as Python numbers, NaN as null."""
  if isinstance(v, (float, np.floating)):
    return None if math.isnan(float(v)) else float(v)
  return v.item() if isinstance(v, np.generic) else v


def cheapest_within(rows: Sequence[dict], full: dict, metric: str, tolerance: float = 0.01):
  """Per policy, the row of least mean GFLOPs (on the evaluation images) whose
  `metric` is at most (1 + tolerance) times the full fusion's: name -> row."""
  limit = float(full[metric]) * (1 + tolerance)
  out = {}
  for r in rows:
    ok = math.isfinite(float(r[metric])) and float(r[metric]) <= limit
    if ok and (r["policy"] not in out or r["gflops"] < out[r["policy"]]["gflops"]):
      out[r["policy"]] = r
  return out


def write_study(study: Study, out_dir: str, key: str, policy_path: str, source: str) -> list[str]:
  """Writes policy_path and `<out_dir>/<key>_adaptive.{md,csv,json}`,
  `<key>_adaptive_pareto.{png,svg}`; returns the paths."""
  from exfiqa_jax.fileio import write_text
  from exfiqa_jax.report import plots
  from exfiqa_jax.report.document import Figures, Heading, Text, table, to_markdown
  from exfiqa_jax.report.labels import metric_label
  from exfiqa_jax.report.tables import write_csv, write_json

  s, sel = study, study.select
  cols = metric_columns(s.full)
  save(
    s.policies,
    policy_path,
    source=source,
    depth=s.policies[0].depth,
    split=s.split,
    metrics={k: list(np.ravel(v).astype(float)) for k, v in s.metrics.items()},
    full_gflops=float(s.full["gflops"]),
    evaluation=[{k: _plain(v) for k, v in r.items()} for r in s.rows],
  )
  base = os.path.join(out_dir, f"{key}_adaptive")
  static_row = {
    "policy": "static", "knob": "all exits (depth-weighted)",
    "gflops": float(s.full["gflops"]), "mean_blocks": float(s.policies[0].depth),
    "stopped_early": 0.0, **{c: float(s.full[c]) for c in cols},
  }  # fmt: skip
  table_cols = ["policy", "knob", "gflops", "mean_blocks", "stopped_early", *cols]
  heads = ["policy", "knob", "mean GFLOPs", "mean blocks", "stopped early"]
  heads += [metric_label(c, short=True) for c in cols]
  write_csv(f"{base}.csv", [static_row, *s.rows], table_cols)
  best = cheapest_within(s.rows, s.full, sel)
  write_json(
    f"{base}.json",
    {"split": s.split, "metrics": s.metrics, "full": static_row, "rows": s.rows,
     "cheapest_within_1pct": best, "policy_file": policy_path, "source": source},
  )  # fmt: skip
  marks = {"depth-weighted (all exits)": (float(s.full["gflops"]), float(s.full[sel]))}
  adaptive = {}
  for name in dict.fromkeys(r["policy"] for r in s.rows):
    rs = sorted((r for r in s.rows if r["policy"] == name), key=lambda r: r["gflops"])
    adaptive[name] = ([r["gflops"] for r in rs], [float(r[sel]) for r in rs])
  front = pareto_front(s.static["gflops"], s.static[sel])
  paths = plots.save(
    plots.pareto_figure(
      [plots.ParetoPanel(key, s.static["gflops"], s.static[sel], front, marks, adaptive)],
      title=f"{key}: static exit subsets and adaptive early exit (evaluation pairs)",
      metric=sel,
    ),
    f"{base}_pareto.png",
  )
  sp = s.split
  blocks = [
    Heading(f"Adaptive early exit: {key}", 1),
    Text(
      f"Calibrated on {sp['calibration_pairs']} pairs ({sp['calibration_images']} images), "
      f"evaluated on the disjoint {sp['evaluation_pairs']} pairs ({sp['evaluation_images']} "
      f"images; {sp['dropped_pairs']} pairs sharing an image with calibration left out), "
      f"split seed {sp['seed']}. Stages: exits {list(s.policies[0].stages)}. Each image's "
      "quality is the depth-weighted fusion of the exits it ran; mean GFLOPs per image from "
      "the exits actually run. Lower metrics are better. Policies written to "
      f"`{policy_path}`; scores made with one of them name it (policy, knob) in their file."
    ),
    table([static_row, *s.rows], table_cols, heads),
    Text(
      f"Cheapest knob per policy within 1% of the full fusion's {metric_label(sel)}:"
      if best
      else f"No knob is within 1% of the full fusion's {metric_label(sel)}."
    ),
  ]
  if best:
    blocks.append(table(list(best.values()), table_cols, heads))
  blocks.append(Figures([os.path.basename(paths[0])]))
  write_text(f"{base}.md", to_markdown(blocks))
  return [policy_path, f"{base}.md", f"{base}.csv", f"{base}.json", *paths]

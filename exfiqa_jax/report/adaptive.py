"""Writes an adaptive early-exit study (`exfiqa_jax.adaptive.study`): the policy file,
the trade-off table (Markdown, CSV, JSON) and the Pareto figure with the adaptive
points as their own series beside the static exit subsets."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from exfiqa_jax.adaptive.policy import save
from exfiqa_jax.adaptive.study import Study, cheapest_within
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.sweep import metric_columns, pareto_front
from exfiqa_jax.report import plots
from exfiqa_jax.report.document import Block, Figures, Heading, Text, table, to_markdown
from exfiqa_jax.report.labels import metric_label
from exfiqa_jax.report.tables import write_csv, write_json

COLUMNS = ["policy", "knob", "gflops", "mean_blocks", "stopped_early"]
HEADS = ["policy", "knob", "mean GFLOPs", "mean blocks", "stopped early"]


def _plain(v: Any) -> Any:
  """A JSON value: numpy scalars as Python numbers, NaN as null."""
  if isinstance(v, (float, np.floating)):
    return None if math.isnan(float(v)) else float(v)
  return v.item() if isinstance(v, np.generic) else v


def static_row(s: Study) -> dict[str, Any]:
  """The static depth-weighted fusion of all exits on the evaluation pairs, as a row."""
  return {
    "policy": "static", "knob": "all exits (depth-weighted)", "gflops": float(s.full["gflops"]),
    "mean_blocks": float(s.policies[0].depth), "stopped_early": 0.0,
    **{c: float(s.full[c]) for c in metric_columns(s.full)},
  }  # fmt: skip


def adaptive_series(s: Study, metric: str | None = None) -> dict:
  """Policy -> (mean GFLOPs [K], metric [K]) of its knobs by cost; metric: a metric
  column (default the study's select)."""
  metric = metric or s.select
  out = {}
  for name in dict.fromkeys(r["policy"] for r in s.rows):
    rs = sorted((r for r in s.rows if r["policy"] == name), key=lambda r: r["gflops"])
    out[name] = ([r["gflops"] for r in rs], [float(r[metric]) for r in rs])
  return out


def study_blocks(s: Study, key: str, policy_path: str, figure: str | None, level: int = 1):
  """The report blocks of a study: what was split, the table, the cheapest knobs."""
  cols = metric_columns(s.full)
  table_cols, heads = COLUMNS + cols, HEADS + [metric_label(c, short=True) for c in cols]
  sp, best = s.split, cheapest_within(s.rows, s.full, s.select)
  blocks: list[Block] = [
    Heading(f"Adaptive early exit: {key}", level),
    Text(
      f"Calibrated on {sp['calibration_pairs']} pairs ({sp['calibration_images']} images), "
      f"evaluated on the disjoint {sp['evaluation_pairs']} pairs ({sp['evaluation_images']} "
      f"images; {sp['dropped_pairs']} pairs sharing an image with calibration left out), "
      f"split seed {sp['seed']}. Stages: exits {list(s.policies[0].stages)}. Each image's "
      "quality is the depth-weighted fusion of the exits it ran, simulated from the full "
      "pass's saved exits exactly as `exfiqa score --policy` decides; mean GFLOPs per image "
      "from the exits actually run. Lower metrics are better. Policies (name, knob, "
      f"calibrated GFLOPs) in `{policy_path}`; scores made with one of them name it in their "
      "file's `policy`."
    ),
    table([static_row(s), *s.rows], table_cols, heads),
    Text(
      f"Cheapest knob per policy whose {metric_label(s.select)} is at most 1% above the full "
      "fusion's:"
      if best
      else f"No knob is within 1% of the full fusion's {metric_label(s.select)}."
    ),
  ]
  if best:
    blocks.append(table(list(best.values()), table_cols, heads))
  if figure:
    blocks.append(Figures([figure]))
  return blocks


def pareto(s: Study, key: str, fr: str | None = None):
  """The Pareto figure of the evaluation pairs: every static subset, its front, the
  depth-weighted fusion marked, each policy's knobs as a series; its panel names the
  FR model `fr` (else `pair set: <key>`)."""
  sel = s.select
  marks = {"depth-weighted (all exits)": (float(s.full["gflops"]), float(s.full[sel]))}
  front = pareto_front(s.static["gflops"], s.static[sel])
  return plots.pareto_figure(
    [
      plots.ParetoPanel(
        fr or f"pair set: {key}",
        s.static["gflops"],
        s.static[sel],
        front,
        marks,
        adaptive_series(s),
      )
    ],
    title=f"{key}: static exit subsets and adaptive early exit (evaluation pairs)",
    metric=sel,
  )


def save_policies(s: Study, path: str, source: str) -> None:
  """The policy file: every policy x knob, the split, the metrics, the evaluation rows."""
  save(
    s.policies,
    path,
    source=source,
    depth=s.policies[0].depth,
    split=s.split,
    metrics={k: list(np.ravel(v).astype(float)) for k, v in s.metrics.items()},
    full_gflops=float(s.full["gflops"]),
    evaluation=[{k: _plain(v) for k, v in r.items()} for r in s.rows],
  )


def write_study(s: Study, out_dir: str, key: str, policy_path: str, source: str) -> list[str]:
  """Writes policy_path and `<out_dir>/<key>_adaptive.{md,csv,json}`,
  `<key>_adaptive_pareto.{png,svg}`; returns the paths."""
  save_policies(s, policy_path, source)
  base = os.path.join(out_dir, f"{key}_adaptive")
  cols = metric_columns(s.full)
  write_csv(f"{base}.csv", [static_row(s), *s.rows], COLUMNS + cols)
  write_json(
    f"{base}.json",
    {"split": s.split, "metrics": s.metrics, "full": static_row(s), "rows": s.rows,
     "cheapest_within_1pct": cheapest_within(s.rows, s.full, s.select),
     "policy_file": policy_path, "source": source},
  )  # fmt: skip
  paths = plots.save(pareto(s, key), f"{base}_pareto.png")
  blocks = study_blocks(s, key, policy_path, os.path.basename(paths[0]))
  write_text(f"{base}.md", to_markdown(blocks))
  return [policy_path, f"{base}.md", f"{base}.csv", f"{base}.json", *paths]

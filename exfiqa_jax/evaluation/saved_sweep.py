"""`exfiqa sweep` on saved inputs: the subset sweep, weight sweeps, learned weights."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, variant_name
from exfiqa_jax.evaluation.run import INPUT_KEYS, analyse_inputs
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.learn import learn_weights
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.fusion.weights import power_law, simplex, sweep_weights
from exfiqa_jax.report import plots
from exfiqa_jax.report.tables import markdown, write_csv, write_json


def _rows(table: dict, index, depth: int) -> list[dict[str, Any]]:
  """Table rows as dicts, the subset also by name (e.g. `median({1,8,11})`)."""
  rows = [{k: v[i] for k, v in table.items()} for i in index]
  for r in rows:
    r["variant"] = variant_name(int(r["subset"]), str(r["rule"]), str(r["norm"]), depth)
    if "weights" in r:
      r["weights"] = [round(float(x), 3) for x in r["weights"]]
  return rows


def sweep_inputs(
  z: dict[str, np.ndarray],
  cfg: dict[str, Any],
  out_dir: str,
  key: str,
  analysis: Analysis | None = None,
  progress: bool = True,
) -> str:
  """Writes `<out_dir>/<key>.md` and its CSV/JSON/PNG files; returns the .md path.

  `analysis`: the subset sweep of the same inputs and config, if already run.
  """
  an = analysis or analyse_inputs(z, cfg, progress)
  m, w = cfg.get("metrics", {}), cfg.get("weights", {})
  ps = an.pairs
  depth, sel = z["exit_scores"].shape[1], an.select
  powers = np.asarray(w.get("powers", (0.0, 0.5, 1.0, 2.0, 4.0)), float)
  pw = sweep_weights(ps, power_law(depth, powers), cost=z["cost"])
  pw["power"] = powers
  sx = sweep_weights(
    ps, simplex(depth, int(w.get("simplex", 64)), w.get("seed", 0)), cost=z["cost"]
  )
  learned = learn_weights(
    *(z[k] for k in INPUT_KEYS),
    limit=float(ps.limits[0]),
    steps=int(w.get("learn_steps", 200)),
    seed=w.get("seed", 0),
    **{k: v for k, v in m.items() if k != "edc_limits"},
  )
  metric_cols = metric_columns(an.table)
  best = np.argsort(an.table[sel], kind="stable")[:10]
  held = [
    {
      "weights": name,
      **{
        f"edc_area@{ps.limits[0]:g} ({split})": float(learned[f"{split}{suffix}"]["edc_area"][0])
        for split in ("train", "test")
      },
    }
    for name, suffix in (("learned", ""), ("depth-weighted", "_depth"))
  ]
  tables = {
    "top": _rows(an.table, best, depth),
    "power_law": _rows(pw, range(len(powers)), depth),
    "simplex_best": _rows(sx, np.argsort(sx[sel], kind="stable")[:5], depth),
    "learned": held,
    "front": _rows(an.table, an.front, depth),
  }
  base = os.path.join(out_dir, key)
  write_csv(f"{base}_subsets.csv", _rows(an.table, range(len(an.table["subset"])), depth))
  write_csv(f"{base}_power_law.csv", tables["power_law"])
  write_csv(f"{base}_simplex.csv", _rows(sx, range(len(sx["subset"])), depth))
  write_json(f"{base}.json", {**tables, "learned_weights": learned["weights"]})
  t = an.table
  plots.pareto(
    f"{base}_pareto.png",
    t["gflops"],
    t[sel],
    (t["gflops"][an.front], t[sel][an.front]),
    title=f"{key}: quality against compute",
    ylabel=sel,
  )
  plots.heatmap(f"{base}_pairs.png", an.pairs_grid, title=f"{key}: two-exit fusion", label=sel)
  cols = ["variant", "gflops", *metric_cols]
  text = [
    f"# Fusion sweep: {key}\n",
    f"\nTop 10 of {len(t['subset'])} variants by {sel}:\n",
    markdown(tables["top"], cols),
    "\nPower-law weights (w_i ~ i^p over all exits):\n",
    markdown(tables["power_law"], ["power", *metric_cols]),
    "\nBest random simplex weights:\n",
    markdown(tables["simplex_best"], ["weights", sel]),
    f"\nLearned weights (soft EDC surrogate, trained on half the pairs): "
    f"{[round(float(x), 3) for x in learned['weights']]}\n",
    markdown(held),
    "\nPareto front:\n",
    markdown(tables["front"], cols),
    f"\n![pareto]({key}_pareto.png) ![pairs]({key}_pairs.png)\n",
  ]
  write_text(f"{base}.md", "".join(text))
  return f"{base}.md"

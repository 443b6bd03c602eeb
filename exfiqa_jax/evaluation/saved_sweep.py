"""`exfiqa sweep` on saved inputs: the subset sweep, weight sweeps, learned weights.

The metric settings are the config's when one is given, else those saved with
the inputs by `exfiqa evaluate` (so the numbers match the job's summary.md).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, ranked, variant_name
from exfiqa_jax.evaluation.run import INPUT_KEYS, analyse_inputs, input_metrics
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.learn import learn_weights
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.fusion.weights import power_law, simplex, sweep_weights
from exfiqa_jax.report import plots
from exfiqa_jax.report.document import Block, Figures, Heading, Text, table, to_markdown
from exfiqa_jax.report.html import write_html
from exfiqa_jax.report.labels import metric_label
from exfiqa_jax.report.tables import write_csv, write_json


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
  """Writes `<out_dir>/<key>.md`, `<key>.html` and its CSV/JSON/PNG/SVG files;
  returns the .md path. Warnings (an FMR the impostors cannot resolve) go to
  stderr and into the report.

  `analysis`: the subset sweep of the same inputs and config, if already run.
  """
  an = analysis or analyse_inputs(z, cfg, progress)
  m, w = input_metrics(z, cfg), cfg.get("weights", {})
  for line in an.warnings:
    print(f"warning: {key}: {line}", file=sys.stderr)
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
    fmrs=m["fmrs"],
    edc_fmr=m["edc_fmr"],
  )
  metric_cols = metric_columns(an.table)
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
  power_rows = _rows(pw, range(len(powers)), depth)
  for r, p in zip(power_rows, powers, strict=True):
    r["variant"] = f"weighted(all) w_i ~ i^{p:g}"
  tables = {
    "top": _rows(an.table, ranked(an.table, sel, 10), depth),
    "power_law": power_rows,
    "simplex_best": _rows(sx, ranked(sx, sel)[:5], depth),
    "learned": held,
    "front": _rows(an.table, an.front, depth),
  }
  base = os.path.join(out_dir, key)
  write_csv(f"{base}_subsets.csv", _rows(an.table, range(len(an.table["subset"])), depth))
  write_csv(f"{base}_power_law.csv", tables["power_law"])
  write_csv(f"{base}_simplex.csv", _rows(sx, range(len(sx["subset"])), depth))
  write_json(
    f"{base}.json",
    {**tables, "learned_weights": learned["weights"], "metrics": m, "warnings": an.warnings},
  )
  t = an.table
  marks = {
    (n if n.startswith("best") else f"{n}: {c['variant']}"): (
      float(t["gflops"][c["row"]]),
      float(t[sel][c["row"]]),
    )
    for n, c in an.curves.items()
  }
  plots.save(
    plots.pareto_figure(
      [plots.ParetoPanel(key, t["gflops"], t[sel], an.front, marks)],
      title=f"{key}: quality against compute, every fused variant (lower is better)",
      metric=sel,
    ),
    f"{base}_pareto.png",
  )
  plots.save(
    plots.heatmap_figure(
      [plots.HeatPanel(key, an.pairs_grid)],
      title=f"{key}: fusion of two exits i, j by the weighted mean (depth weights w_i = i); "
      "diagonal: exit i alone",
      metric=sel,
    ),
    f"{base}_pairs.png",
  )
  cols = ["variant", "gflops", *metric_cols]
  heads = ["variant", "GFLOPs", *(metric_label(c, short=True) for c in metric_cols)]
  distinct = len({r["variant"] for r in _rows(t, range(len(t["subset"])), depth)})
  blocks: list[Block] = [
    Heading(f"Fusion sweep: {key}", 1),
    Text(
      f"ERC at FMR {', '.join(f'{float(f):g}' for f in m['fmrs'])}; EDC threshold at FMR "
      f"{float(m['edc_fmr']):g}, pAUC to discard "
      f"{', '.join(f'{float(x):g}' for x in m['edc_limits'])}. Lower is better."
    ),
  ]
  if an.warnings:
    blocks.append(Text("\n".join(f"- **Warning:** {x}" for x in an.warnings)))
  blocks += [
    Text(
      f"Top 10 of {len(t['subset'])} variants ({distinct} distinct: a single exit is the "
      f"same under every rule) by {metric_label(sel)}, NaN left out:"
    ),
    table(tables["top"], cols, heads),
    Text("Power-law weights (w_i ~ i^p over all exits):"),
    table(tables["power_law"], ["variant", "power", *metric_cols], ["variant", "p", *heads[2:]]),
    Text("Best random simplex weights:"),
    table(tables["simplex_best"], ["weights", sel], ["weights", metric_label(sel, True)]),
    Text(
      "Learned weights (soft EDC surrogate, trained on half the pairs): "
      f"{[round(float(x), 3) for x in learned['weights']]}"
    ),
    table(held, list(held[0])),
    Text("Pareto front:"),
    table(tables["front"], cols, heads),
    Figures([f"{key}_pareto.png", f"{key}_pairs.png"]),
  ]
  write_text(f"{base}.md", to_markdown(blocks))
  write_html(f"{base}.html", blocks, f"Fusion sweep: {key}")
  return f"{base}.md"

"""Writes an evaluation report: summary.md, results.csv/json, sweep tables and plots."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, variant_name
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.metrics.erc import RATES
from exfiqa_jax.report import plots
from exfiqa_jax.report.tables import markdown, write_csv, write_json

Result = tuple[str, str, Analysis]  # (dataset, FR model, analysis)


def _metric_columns(rows: list[dict]) -> list[str]:
  return metric_columns(rows[0])


def _plots(out_dir: str, key: str, an: Analysis) -> list[str]:
  """The five plots of one pair set; returns their paths relative to out_dir."""
  rel = {
    n: os.path.join("plots", f"{key}_{n}.png")
    for n in ("edc", "erc", "per_exit", "pareto", "pairs")
  }

  def path(n):
    return os.path.join(out_dir, rel[n])

  plots.curves(
    path("edc"),
    {n: (c["edc_discard"], c["edc_error"]) for n, c in an.curves.items()},
    title=f"{key}: EDC",
    step=True,
  )
  rates = np.arange(RATES) / 20
  plots.curves(
    path("erc"),
    {n: (rates, c["erc_fnmr"][:, 0]) for n, c in an.curves.items()},
    title=f"{key}: ERC, FNMR at the first FMR",
  )
  exits = [r for r in an.rows if r["kind"] == "exit"]
  plots.per_exit(
    path("per_exit"),
    {m: [r[m] for r in exits] for m in _metric_columns(exits)},
    title=f"{key}: each exit alone",
    ylabel="area (lower is better)",
  )
  t = an.table
  plots.pareto(
    path("pareto"),
    t["gflops"],
    t[an.select],
    (t["gflops"][an.front], t[an.select][an.front]),
    title=f"{key}: quality against compute",
    ylabel=an.select,
  )
  plots.heatmap(
    path("pairs"), an.pairs_grid, title=f"{key}: two-exit weighted fusion", label=an.select
  )
  return list(rel.values())


def write_report(out_dir: str, header: str, results: list[Result], config: dict[str, Any]) -> str:
  """Writes every file of the report under out_dir; returns the summary's path."""
  lines, all_rows, js = [header.rstrip() + "\n"], [], {"config": config, "results": []}
  for dataset, fr, an in results:
    key = f"{dataset}_{fr}"
    depth = len(an.pairs_grid)
    cols = ["variant", "kind", "gflops", *_metric_columns(an.rows)]
    front = [
      {
        "variant": variant_name(
          int(an.table["subset"][i]), str(an.table["rule"][i]), str(an.table["norm"][i]), depth
        ),
        "gflops": float(an.table["gflops"][i]),
        an.select: float(an.table[an.select][i]),
      }
      for i in an.front
    ]
    pics = _plots(out_dir, key, an)
    lines += [
      f"\n## {dataset} / {fr}\n",
      markdown(an.rows, cols),
      f"\nPareto front (best {an.select} for each cost):\n",
      markdown(front),
      "\n" + " ".join(f"![{os.path.basename(p)}]({p})" for p in pics) + "\n",
    ]
    all_rows += [{"dataset": dataset, "fr_model": fr, **r} for r in an.rows]
    write_csv(
      os.path.join(out_dir, "tables", f"{key}_sweep.csv"),
      [dict(zip(an.table, v, strict=True)) for v in zip(*an.table.values(), strict=True)],
    )
    js["results"].append(
      {
        "dataset": dataset,
        "fr_model": fr,
        "rows": an.rows,
        "front": front,
        "select": an.select,
        "pairs_grid": an.pairs_grid,
        "curves": an.curves,
      }
    )
  write_csv(os.path.join(out_dir, "results.csv"), all_rows)
  write_json(os.path.join(out_dir, "results.json"), js)
  summary = os.path.join(out_dir, "summary.md")
  write_text(summary, "".join(lines))
  return summary

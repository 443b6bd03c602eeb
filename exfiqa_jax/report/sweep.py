"""Writes a weight study (`exfiqa_jax.evaluation.saved_sweep.WeightStudy`): CSV, JSON,
the Pareto and two-exit figures, Markdown and HTML."""

from __future__ import annotations

import csv
import io
import os
import sys
from concurrent.futures import Future

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, Overview, variant_names
from exfiqa_jax.evaluation.saved_sweep import WeightStudy
from exfiqa_jax.fileio import write_bytes, write_text
from exfiqa_jax.fusion import workers
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.report import plots
from exfiqa_jax.report.document import Block, Figures, Heading, Text, table, to_markdown
from exfiqa_jax.report.html import write_html
from exfiqa_jax.report.labels import mark_label, metric_label
from exfiqa_jax.report.tables import cell, write_csv, write_json


def _column(values: list) -> list[str]:
  """A column's cells as `report.tables.write_csv` writes them (`tables.cell`), a column
  at a time: a subset table has 20,475 rows, and formatting cell by cell took about a
  second of a sweep. Python float columns in one pass, int and str columns by str()
  (what cell writes of them), any other column cell by cell."""
  kinds = set(map(type, values))
  if kinds <= {float}:
    return ["nan" if x != x else f"{x:.10f}" for x in values]
  if kinds <= {int, str}:
    return list(map(str, values))
  return [cell(x, 10) for x in values]


def write_table_csv(path: str, table: dict, depth: int) -> list[str]:
  """`tables.write_csv(path, saved_sweep.rows_of(table, all rows, depth))`, byte for
  byte, from the table's columns (no row dicts: a subset table has 20,475 rows). Returns the
  variant names."""
  if not len(table["subset"]):
    write_csv(path, [])
    return []
  out = {}
  for k, v in table.items():
    v = np.asarray(v)
    if v.ndim == 2:  # weights: rounded lists, as rows_of makes them
      out[k] = [" ".join(str(round(float(x), 3)) for x in row) for row in v.tolist()]
      continue
    out[k] = _column(v.tolist())
  out["variant"] = names = variant_names(table["subset"], table["rule"], table["norm"], depth)
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(list(out))
  w.writerows(zip(*out.values(), strict=True))
  write_text(path, buf.getvalue())
  return names


def sweep_figures(an: Analysis, key: str, fr: str | None = None) -> list[Future]:
  """`overview_figures` of a finished Analysis."""
  marks = {n: (c["variant"], c["row"]) for n, c in an.curves.items()}
  return overview_figures(Overview(an.table, an.select, an.front, an.pairs_grid, marks), key, fr)


def overview_figures(view: Overview, key: str, fr: str | None = None) -> list[Future]:
  """The Pareto and two-exit figures of a sweep, started: Futures of their files ({file
  name: bytes}, `plots.render`). Drawn on the sweep's workers where it has any
  (`fusion.workers`: `exfiqa sweep` starts them from `analysis.analyse`'s overview, so
  they are drawn while this process evaluates the curves and runs the weight studies),
  else here and now."""
  sel, t = view.select, view.table
  marks = {
    mark_label(n, variant): (float(t["gflops"][row]), float(t[sel][row]))
    for n, (variant, row) in view.marks.items()
  }
  name = fr or f"pair set: {key}"
  return [
    workers.call(
      plots.render,
      plots.pareto_figure,
      [plots.ParetoPanel(name, t["gflops"], t[sel], view.front, marks)],
      f"{key}_pareto",
      title=f"{key}: quality against compute, every fused variant (lower is better)",
      metric=sel,
    ),
    workers.call(
      plots.render,
      plots.heatmap_figure,
      [plots.HeatPanel(name, view.grid)],
      f"{key}_pairs",
      title=f"{key}: fusion of two exits i, j by the weighted mean (depth weights w_i = i); "
      "diagonal: exit i alone",
      metric=sel,
    ),
  ]


def write_sweep(
  study: WeightStudy,
  out_dir: str,
  key: str,
  fr: str | None = None,
  figures: list[Future] | None = None,
) -> str:
  """Writes `<out_dir>/<key>.md`, `<key>.html` and its CSV/JSON/PNG/SVG files;
  returns the .md path. fr: the FR model of the comparison scores, named in the figures
  (else they say `pair set: <key>`); figures: `sweep_figures` of the study's analysis,
  if started already. Warnings (an FMR the impostors cannot resolve) go to stderr and
  into the report."""
  an, m, tables, learned = study.analysis, study.metrics, study.tables, study.learned
  for line in an.warnings:
    print(f"warning: {key}: {line}", file=sys.stderr)
  sel, t = an.select, an.table
  metric_cols = metric_columns(t)
  base = os.path.join(out_dir, key)
  if figures is None:
    figures = sweep_figures(an, key, fr)
  names = write_table_csv(f"{base}_subsets.csv", t, study.depth)
  write_csv(f"{base}_power_law.csv", tables["power_law"])
  write_table_csv(f"{base}_simplex.csv", study.simplex_table, study.depth)
  write_json(
    f"{base}.json",
    {**tables, "learned_weights": learned["weights"], "metrics": m, "warnings": an.warnings},
  )
  cols = ["variant", "gflops", *metric_cols]
  heads = ["variant", "GFLOPs", *(metric_label(c, short=True) for c in metric_cols)]
  distinct = len(set(names))
  held = tables["learned"]
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
  for f in figures:  # their files (or their error, raised here) before the pages
    for name, data in f.result().items():
      write_bytes(os.path.join(out_dir, name), data)
  write_text(f"{base}.md", to_markdown(blocks))
  write_html(f"{base}.html", blocks, f"Fusion sweep: {key}")
  return f"{base}.md"

"""Writes an evaluation report: summary.md, report.html, results.csv/json, the
cross-benchmark table, sweep tables and figures (PNG and SVG)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, fate_columns, variant_name
from exfiqa_jax.evaluation.run import JobResults
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.metrics.rejection import LAST, STEPS
from exfiqa_jax.report import cross, plots
from exfiqa_jax.report.document import (
  Block,
  Figures,
  Heading,
  Text,
  from_markdown,
  table,
  to_markdown,
)
from exfiqa_jax.report.html import write_html
from exfiqa_jax.report.labels import mark_label, metric_label
from exfiqa_jax.report.tables import write_csv, write_json

Result = tuple[str, str, Analysis]  # (dataset, FR model, analysis)
ROLE_COLORS = {"best subset": "C3", "depth-weighted": "C0", "last exit": "C1"}
REJECTED = np.arange(LAST + 1) / STEPS  # the fine ERC grid: 0, 0.01, ..., 0.95


def colors(labels: Sequence[str]) -> dict[str, str]:
  """Label prefix -> colour: the three standard assessors fixed, named exits after."""
  out = dict(ROLE_COLORS)
  spare = iter(["C2", "C4", "C5", "C6", "C8", "C9"] * 4)
  for label in labels:
    if not label.startswith(tuple(ROLE_COLORS)) and label not in out:
      out[label] = next(spare)
  return out


def _short(columns: Sequence[str]) -> list[str]:
  return [metric_label(c, short=True) for c in columns]


def figures(dataset: str, group: Sequence[tuple[str, Analysis]]) -> dict[str, Any]:
  """The figures of one benchmark, one panel per FR model: name -> Figure."""
  an0 = group[0][1]
  fmrs = [float(f) for f in an0.metrics["fmrs"]]
  palette = colors([label for _, an in group for label in an.plotted()])
  figs = {
    "edc": plots.edc_figure(
      [
        plots.EdcPanel(
          fr,
          {n: (c["edc_discard"], c["edc_error"]) for n, c in an.plotted().items()},
          an.edc_start,
          [float(x) for x in an.metrics["edc_limits"]],
        )
        for fr, an in group
      ],
      title=f"{dataset}: EDC (ISO/IEC 29794-1), threshold fixed at FMR = "
      f"{float(an0.metrics['edc_fmr']):g}",
      fmr=float(an0.metrics["edc_fmr"]),
      colors=palette,
    )
  }
  for j, f in enumerate(fmrs):
    figs[f"erc_fmr{f:g}"] = plots.erc_figure(
      [
        plots.ErcPanel(
          fr,
          {n: (REJECTED, c["fine_fnmr"][:, j]) for n, c in an.plotted().items()},
          (REJECTED, an.erc_best[:, j]),
          next((w.split(":")[0] for w in an.warnings if f"FMR {f:g} is not" in w), ""),
        )
        for fr, an in group
      ],
      title=f"{dataset}: FNMR at FMR = {f:g} against the fraction rejected\n(curves at "
      "1% rejection steps; the ERC areas in the tables use the protocol's 5% steps)",
      fmr=f,
      colors=palette,
    )
  panels = []
  for fr, an in group:
    exits = [r for r in an.rows if r["kind"] == "exit"]
    cols = metric_columns(exits[0])
    pick = {
      p: {m: [r[m] for r in exits] for m in cols if m.startswith(p)}
      for p in ("erc_area@", "edc_area@", "edc_best@")
    }
    panels.append(plots.PerExitPanel(fr, pick["erc_area@"], pick["edc_area@"], pick["edc_best@"]))
  figs["per_exit"] = plots.per_exit_figure(panels, title=f"{dataset}: each exit alone")
  sel = an0.select
  figs["pareto"] = plots.pareto_figure(
    [
      plots.ParetoPanel(
        fr,
        an.table["gflops"],
        an.table[sel],
        an.front,
        {
          mark_label(n, c["variant"]): (
            float(an.table["gflops"][c["row"]]),
            float(an.table[sel][c["row"]]),
          )
          for n, c in an.curves.items()
        },
      )
      for fr, an in group
    ],
    title=f"{dataset}: quality against compute, every fused variant (lower is better)",
    metric=sel,
  )
  figs["pairs"] = plots.heatmap_figure(
    [plots.HeatPanel(fr, an.pairs_grid) for fr, an in group],
    title=f"{dataset}: fusion of two exits i, j by the weighted mean (depth weights "
    "w_i = i); diagonal: exit i alone",
    metric=sel,
  )
  return figs


def headline(results: Sequence[Result]) -> list[Block]:
  """The report's first lines: per benchmark and FR model, the best fused subset
  against the last exit on the selecting metric, with their GFLOPs."""
  lines = []
  for dataset, fr, an in results:
    sel = an.select
    exits = [r for r in an.rows if r["kind"] == "exit"]
    best = [r for r in an.rows if str(r["kind"]).startswith("best")]
    if not exits or not best:
      continue
    b, last = best[0], exits[-1]
    v, w = float(b[sel]), float(last[sel])
    change = f" ({(v - w) / w:+.0%})" if np.isfinite(v) and np.isfinite(w) and w else ""
    lines.append(
      f"- **{dataset} / {fr}**: best subset {b['variant']}: {v:.4g}; last exit "
      f"({last['variant']}): {w:.4g}{change}; {float(b['gflops']):.3g} against "
      f"{float(last['gflops']):.3g} GFLOPs per image"
    )
  if not lines:
    return []
  return [
    Heading("Headline", 2),
    Text(
      f"{metric_label(results[0][2].select)}, lower is better; the best subset is chosen "
      "on the pairs it is scored on."
    ),
    Text("\n".join(lines)),
  ]


def adaptive_policy_path(out_dir: str, dataset: str, fr: str) -> str:
  return os.path.join(out_dir, "adaptive", f"{dataset}_{fr}_policies.json")


def _pair_set_blocks(dataset: str, fr: str, an: Analysis) -> list[Block]:
  depth = an.pairs_grid.shape[0]
  m, n = an.metrics, an.counts
  metric_cols = metric_columns(an.rows[0])
  fate = fate_columns(an.rows[0])
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
  out: list[Block] = [
    Heading(f"{dataset} / {fr}", 2),
    Text(
      f"{n['pairs']} comparisons ({n['genuine']} genuine, {n['impostor']} impostor). ERC at "
      f"FMR {', '.join(f'{float(f):g}' for f in m['fmrs'])} (threshold re-set on the kept "
      f"comparisons; area over rejection 0..0.95); EDC with the threshold fixed at FMR "
      f"{float(m['edc_fmr']):g}, partial areas (pAUC) to discard "
      f"{', '.join(f'{float(x):g}' for x in m['edc_limits'])}. Lower is better."
    ),
  ]
  if an.warnings:
    out.append(Text("\n".join(f"- **Warning:** {w}" for w in an.warnings)))
  # The theoretical best EDC areas depend on the comparison scores alone: the same in
  # every row, so said once here (results.csv keeps them per row).
  best = [c for c in metric_cols if c.startswith("edc_best@")]
  shown = [c for c in metric_cols if c not in best]
  cols = ["variant", "kind", "gflops", *shown]
  out.append(table(an.rows, cols, ["variant", "kind", "GFLOPs", *_short(shown)]))
  said = [
    "The best subsets are chosen on the very pairs they are scored on here (an "
    "optimistic figure: `exfiqa sweep` fits learned weights on half of the pairs and "
    "reports them on the other half). A subset whose every number equals a better "
    "one's (it orders the comparisons alike) is not listed again."
  ]
  if best:
    said.append(
      "Theoretical best EDC pAUC (every row: it depends on the comparison scores alone): "
      + ", ".join(f"{metric_label(c, True)} {float(an.rows[0][c]):.4g}" for c in best)
      + "."
    )
  out.append(Text(" ".join(said)))
  out.append(
    Text(
      "FNMR after rejecting the lowest-quality comparisons (as quality reports quote it): "
      "none, the lowest 1% and 5% rejected, and the smallest fraction rejected (1% steps) "
      "that halves the FNMR (nan: not reached by 95%)."
    )
  )
  out.append(table(an.rows, ["variant", *fate], ["variant", *_short(fate)]))
  out.append(Text(f"Pareto front (the lowest {metric_label(an.select)} for each cost):"))
  out.append(
    table(
      front, ["variant", "gflops", an.select], ["variant", "GFLOPs", metric_label(an.select, True)]
    )
  )
  if an.adaptive is not None:
    from exfiqa_jax.report.adaptive import study_blocks

    path = os.path.relpath(adaptive_policy_path(".", dataset, fr))
    figure = os.path.join("plots", f"{dataset}_{fr}_adaptive_pareto.png")
    out += study_blocks(an.adaptive, f"{dataset} / {fr}", path, figure, level=3)
  return out


def _by_dataset(results: Sequence[Result]) -> dict[str, list[tuple[str, Analysis]]]:
  groups: dict[str, list[tuple[str, Analysis]]] = {}
  for dataset, fr, an in results:
    groups.setdefault(dataset, []).append((fr, an))
  return groups


def _write_adaptive(out_dir: str, dataset: str, fr: str, an: Analysis) -> None:
  """The adaptive study's policy file, table and Pareto figure (its static subsets and
  adaptive points both on the evaluation pairs) beside the report."""
  from exfiqa_jax.report.adaptive import COLUMNS, pareto, save_policies, static_row

  path = adaptive_policy_path(out_dir, dataset, fr)
  save_policies(an.adaptive, path, f"{dataset} / {fr}")
  cols = COLUMNS + metric_columns(an.adaptive.full)
  rows = [static_row(an.adaptive), *an.adaptive.rows]
  write_csv(os.path.join(out_dir, "adaptive", f"{dataset}_{fr}_adaptive.csv"), rows, cols)
  figure = os.path.join(out_dir, "plots", f"{dataset}_{fr}_adaptive_pareto.png")
  plots.save(pareto(an.adaptive, f"{dataset} / {fr}", fr), figure)


def write_report(out_dir: str, header: str, results: list[Result], config: dict[str, Any]) -> str:
  """Writes every file of the report under out_dir; returns the summary's path."""
  blocks: list[Block] = from_markdown(header)
  blocks += headline(results)
  all_rows, js = [], {"config": config, "results": []}
  for dataset, group in _by_dataset(results).items():
    for fr, an in group:
      key = f"{dataset}_{fr}"
      blocks += _pair_set_blocks(dataset, fr, an)
      all_rows += [{"dataset": dataset, "fr_model": fr, **r} for r in an.rows]
      write_csv(
        os.path.join(out_dir, "tables", f"{key}_sweep.csv"),
        [dict(zip(an.table, v, strict=True)) for v in zip(*an.table.values(), strict=True)],
      )
      if an.adaptive is not None:
        _write_adaptive(out_dir, dataset, fr, an)
      js["results"].append(
        {
          "dataset": dataset,
          "fr_model": fr,
          "metrics": an.metrics,
          "counts": an.counts,
          "warnings": an.warnings,
          "rows": an.rows,
          "select": an.select,
          "pairs_grid": an.pairs_grid,
          "curves": an.curves,
          **({"adaptive": an.adaptive.rows} if an.adaptive is not None else {}),
        }
      )
    pics = []
    for name, fig in figures(dataset, group).items():
      pics.append(os.path.join("plots", f"{dataset}_{name}.png"))
      plots.save(fig, os.path.join(out_dir, pics[-1]))
    blocks += [Heading(f"Figures: {dataset}", 3), Figures(pics)]
  crosses = cross.cross_tables(results)
  blocks += cross.blocks(crosses)
  pages = [f"sweep/{d}_{fr}.html" for d, fr, _ in results]
  blocks.append(
    Text(
      "Fusion sweeps (power-law, random and learned weights, the Pareto front) of each "
      "pair set, written by `exfiqa sweep --config` into `sweep/` (the demo writes its "
      "own): " + ", ".join(f"[{p}]({p})" for p in pages) + "."
    )
  )
  files = cross.write(out_dir, crosses)
  blocks.append(
    Text(
      "Files: `results.csv` / `results.json` (these rows), `tables/*_sweep.csv` (every "
      "variant), "
      + ", ".join(f"`{os.path.relpath(f, out_dir)}`" for f in files)
      + "; every figure also as SVG beside its PNG."
    )
  )
  write_csv(os.path.join(out_dir, "results.csv"), all_rows)
  write_json(os.path.join(out_dir, "results.json"), js)
  summary = os.path.join(out_dir, "summary.md")
  write_text(summary, to_markdown(blocks))
  title = next((b.text for b in blocks if isinstance(b, Heading)), "EX-FIQA evaluation")
  write_html(os.path.join(out_dir, "report.html"), blocks, title)
  return summary


def write_job_report(job: JobResults, config: dict[str, Any], header: str = "") -> str:
  """The report of a job's results (exfiqa_jax.evaluation.run.evaluate_job) under the
  config's out_dir, headed by `header` (default "# EX-FIQA evaluation") and a line on
  the checkpoint, the job's size and the time written; returns the summary's path."""
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  head = header or "# EX-FIQA evaluation"
  head += (
    f"\n\nCheckpoint `{job.checkpoint}` ({job.depth} blocks, width "
    f"{job.width}); {len(config['datasets'])} dataset(s) x "
    f"{len(config['fr_models'])} FR model(s); written {when}. Areas: lower is better.\n"
  )
  from exfiqa_jax.report.unit import write_unit

  inputs = [os.path.join("inputs", f"{d}_{fr}.npz") for d, fr, _ in job.results]
  return write_unit(  # one unit: staged, swapped in, summary.md last (report/unit.py)
    config["out_dir"],
    "report",
    lambda folder: write_report(folder, head, job.results, config),
    kept=inputs,
  )

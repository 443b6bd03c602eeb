"""The cross-benchmark table: quality assessors against every benchmark x FR model.

Rows: each single exit, the depth-weighted fusion of all exits, each other quality
assessor of the job (`quality_methods`: CR-FIQA, MagFace, SER-FIQ, GraFIQs; NaN in a
column it was not evaluated on), the best subset of each column (chosen there by the
job's `select` metric, so its cell in the `select` table is that column's optimum on the
same pairs: an optimistic bound), and the one variant with the lowest mean `select`
metric over all columns.
Columns: (benchmark, FR model). One table per metric: the ERC area at each ERC
FMR and the EDC pAUC at each discard limit. The lowest value of each column is
bold (every one on a tie; NaN never). Written as Markdown, CSV and LaTeX.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, variant_name
from exfiqa_jax.fileio import write_text
from exfiqa_jax.fusion.sweep import metric_columns
from exfiqa_jax.report.document import Block, Heading, Table, Text, to_markdown
from exfiqa_jax.report.labels import metric_label

Result = tuple[str, str, Analysis]  # (dataset, FR model, analysis)
PER_COLUMN, OVERALL = "best subset per benchmark", "best subset over all benchmarks"


@dataclasses.dataclass
class Cross:
  metric: str
  columns: list[tuple[str, str]]  # (dataset, FR model)
  assessors: list[str]  # row names
  values: np.ndarray  # [rows, columns]
  per_column: list[str]  # the variant chosen in each column (row PER_COLUMN)
  overall: str  # the variant of row OVERALL

  def best(self) -> np.ndarray:
    """[rows, columns] bool: the lowest non-NaN value of each column (ties all)."""
    v = np.where(np.isnan(self.values), np.inf, self.values)
    low = v.min(axis=0, keepdims=True)
    return (v == low) & np.isfinite(v)


def _keys(an: Analysis) -> list[tuple[int, str, str]]:
  t = an.table
  return list(zip(t["subset"].tolist(), t["rule"].tolist(), t["norm"].tolist(), strict=True))


def _index(an: Analysis) -> dict[tuple[int, str, str], int]:
  return {k: i for i, k in enumerate(_keys(an))}


def cross_tables(results: Sequence[Result]) -> list[Cross]:
  """One Cross per metric (ERC FMRs, then EDC limits) over all results."""
  if not results:
    return []
  first = results[0][2]
  depth = first.pairs_grid.shape[0]
  select = first.select
  metrics = [m for m in metric_columns(first.table) if not m.startswith("edc_best@")]
  index = [_index(an) for _, _, an in results]
  shared = [k for k in _keys(first) if all(k in ix for ix in index)]
  if not shared:
    raise ValueError("the pair sets share no variant: their sweeps differ")
  mean = np.mean(
    [
      [an.table[select][ix[k]] for k in shared]
      for (_, _, an), ix in zip(results, index, strict=True)
    ],
    axis=0,
  )
  finite = np.flatnonzero(~np.isnan(mean))
  overall = shared[int(finite[np.argmin(mean[finite])])] if finite.size else None
  per_col = []
  for _, _, an in results:
    v = np.asarray(an.table[select], float)
    per_col.append(int(np.nanargmin(v)) if not np.isnan(v).all() else None)
  full = (1 << depth) - 1
  named = [(f"exit {e}", (1 << (e - 1), "mean", "none")) for e in range(1, depth + 1)]
  named.append(("depth-weighted (all exits)", (full, "weighted", "none")))
  assessors = _assessor_rows(results)
  out = []
  for m in metrics:
    rows = [
      [an.table[m][ix[k]] for (_, _, an), ix in zip(results, index, strict=True)] for _, k in named
    ]
    rows += [[r[m] if r else np.nan for r in by_result] for by_result in assessors.values()]
    rows.append(
      [
        np.nan if i is None else an.table[m][i]
        for i, (_, _, an) in zip(per_col, results, strict=True)
      ]
    )
    nan_row = [np.nan] * len(results)
    rows.append(
      nan_row
      if overall is None
      else [an.table[m][ix[overall]] for (_, _, an), ix in zip(results, index, strict=True)]
    )
    out.append(
      Cross(
        m,
        [(d, f) for d, f, _ in results],
        [n for n, _ in named] + list(assessors) + [PER_COLUMN, OVERALL],
        np.asarray(rows, float),
        [
          "-"
          if i is None
          else variant_name(
            int(an.table["subset"][i]), str(an.table["rule"][i]), str(an.table["norm"][i]), depth
          )
          for i, (_, _, an) in zip(per_col, results, strict=True)
        ],
        "-" if overall is None else variant_name(*overall, depth),
      )
    )
  return out


def _assessor_rows(results: Sequence[Result]) -> dict[str, list[dict | None]]:
  """{assessor: its row in each result (None where absent)}, in order of appearance."""
  names = dict.fromkeys(
    r["variant"] for _, _, an in results for r in an.rows if r["kind"] == "assessor"
  )
  rows = [{r["variant"]: r for r in an.rows if r["kind"] == "assessor"} for _, _, an in results]
  return {n: [by.get(n) for by in rows] for n in names}


def _fmt(v: float, digits: int = 4) -> str:
  return "nan" if math.isnan(v) else f"{v:.{digits}f}"


def _column_names(c: Cross) -> list[str]:
  return [f"{d} / {f}" for d, f in c.columns]


def _row_names(c: Cross) -> list[str]:
  return [a if a != OVERALL else f"{OVERALL}: {c.overall}" for a in c.assessors]


def blocks(crosses: Sequence[Cross]) -> list[Block]:
  """The tables as report blocks (a heading, a note, one table per metric)."""
  if not crosses:
    return []
  c0 = crosses[0]
  out: list[Block] = [
    Heading("Cross-benchmark comparison", 2),
    Text(
      "Rows: each exit alone, the depth-weighted fusion of all exits, each other quality "
      "assessor of the job (if any), the best subset of each benchmark x FR model (chosen "
      "there by the job's selection metric, on the same "
      "pairs: an optimistic bound) and the one subset with the lowest mean selection "
      f"metric over all of them ({c0.overall}). Lower is better; the best of each column "
      "is in bold."
    ),
    Text(
      "Best subset per benchmark: "
      + "; ".join(f"{n}: {v}" for n, v in zip(_column_names(c0), c0.per_column, strict=True))
    ),
  ]
  for c in crosses:
    out.append(Heading(metric_label(c.metric), 3))
    best = c.best()
    out.append(
      Table(
        ["assessor", *_column_names(c)],
        [[name, *map(_fmt, row)] for name, row in zip(_row_names(c), c.values, strict=True)],
        [[False, *b] for b in best.tolist()],
      )
    )
  return out


def to_csv(crosses: Sequence[Cross]) -> str:
  """Wide CSV: metric, assessor, variant, one column per `dataset/FR model`."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  if crosses:
    w.writerow(["metric", "assessor", "variant", *(f"{d}/{f}" for d, f in crosses[0].columns)])
  for c in crosses:
    for name, row in zip(c.assessors, c.values, strict=True):
      variant = {"depth-weighted (all exits)": "weighted(all)", OVERALL: c.overall}.get(name, name)
      variant = "per column" if name == PER_COLUMN else variant
      w.writerow([c.metric, name, variant, *(_fmt(v, 10) for v in row)])
    w.writerow([c.metric, PER_COLUMN, "variant", *c.per_column])
  return buf.getvalue()


_LATEX = {c: "\\" + c for c in "&%$#_{}"} | {
  "~": r"\textasciitilde{}",
  "^": r"\^{}",
  "\\": r"\textbackslash{}",
}


def latex_escape(s: str) -> str:
  return "".join(_LATEX.get(ch, ch) for ch in s)


def to_latex(crosses: Sequence[Cross]) -> str:
  """One `tabular` per metric: a row per assessor; benchmarks as multicolumn groups
  over their FR models; best of each column in \\textbf."""
  out = []
  for c in crosses:
    datasets = list(dict.fromkeys(d for d, _ in c.columns))
    groups = [[f for d2, f in c.columns if d2 == d] for d in datasets]
    spec = "l" + "".join("|" + "c" * len(g) for g in groups)
    best = c.best()
    lines = [
      f"% {latex_escape(metric_label(c.metric))}; lower is better, best of each column in bold",
      f"\\begin{{tabular}}{{{spec}}}",
      "\\hline",
      " & "
      + " & ".join(
        f"\\multicolumn{{{len(g)}}}{{c{'|' if i < len(groups) - 1 else ''}}}{{{latex_escape(d)}}}"
        for i, (d, g) in enumerate(zip(datasets, groups, strict=True))
      )
      + " \\\\",
      "Assessor & " + " & ".join(latex_escape(f) for _, f in c.columns) + " \\\\",
      "\\hline",
    ]
    for name, row, b in zip(_row_names(c), c.values, best, strict=True):
      cells = [f"\\textbf{{{_fmt(v)}}}" if bb else _fmt(v) for v, bb in zip(row, b, strict=True)]
      lines.append(latex_escape(name) + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\hline", "\\end{tabular}", ""]
    out.append("\n".join(lines))
  return "\n".join(out)


def write(out_dir: str, crosses: Sequence[Cross]) -> list[str]:
  """Writes cross_benchmark.{md,csv,tex} under out_dir; returns their paths."""
  base = f"{out_dir}/cross_benchmark"
  write_text(f"{base}.md", to_markdown(blocks(crosses)))
  write_text(f"{base}.csv", to_csv(crosses))
  write_text(f"{base}.tex", to_latex(crosses))
  return [f"{base}.md", f"{base}.csv", f"{base}.tex"]

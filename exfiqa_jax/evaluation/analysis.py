"""The evaluation of one pair set: every single exit, the paper's fusions, the sweep.

`analyse` returns the rows a report prints (named variants with their ERC and
EDC areas and GFLOPs), the full sweep table, the Pareto front, the two-exit
heat map and the curves of the last exit, the depth-weighted fusion and the
best subset. Every number comes from `exfiqa_jax.fusion.sweep` / `exfiqa_jax.fusion.engine`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.fusion.subsets import exits_of, mask_of
from exfiqa_jax.fusion.sweep import metric_columns, pareto_front, sweep
from exfiqa_jax.metrics import PairSet, make_pairset


@dataclasses.dataclass
class Analysis:
  pairs: PairSet  # the engine's pair set the numbers were computed on
  rows: list[dict[str, Any]]  # named variants: exits, paper fusions, best subsets
  table: dict[str, np.ndarray]  # the whole sweep (exfiqa_jax.fusion.sweep table)
  select: str  # the metric that ranks variants (lower is better)
  front: np.ndarray  # row indices of the Pareto front in `table`
  pairs_grid: np.ndarray  # [L, L] select metric of the weighted fusion of exits i, j
  curves: dict[str, dict[str, np.ndarray]]  # variant name -> engine.evaluate_variant output


def variant_name(subset: int, rule: str, norm: str, depth: int) -> str:
  exits = exits_of(subset, depth)
  if len(exits) == 1:
    return f"exit {exits[0]}"
  where = "all" if len(exits) == depth else "{" + ",".join(map(str, exits)) + "}"
  return f"{rule}({where})" + ("" if norm == "none" else f" [{norm}]")


def _row(table: dict, i: int, depth: int, kind: str) -> dict[str, Any]:
  row = {
    "kind": kind,
    "variant": variant_name(
      int(table["subset"][i]), str(table["rule"][i]), str(table["norm"][i]), depth
    ),
    "exits": exits_of(int(table["subset"][i]), depth),
    "rule": str(table["rule"][i]),
    "norm": str(table["norm"][i]),
    "gflops": float(table["gflops"][i]),
  }
  row.update({k: float(table[k][i]) for k in metric_columns(table)})
  return row


def pairset(
  exit_scores,
  a,
  b,
  labels,
  comparison,
  *,
  fmrs=(1e-3, 1e-4),
  edc_fmr: float = 1e-3,
  edc_limits=(0.2, 0.3),
) -> PairSet:
  """The engine's PairSet with a job's `metrics` options (ERC FMRs, EDC FMR, limits)."""
  return make_pairset(
    exit_scores, a, b, labels, comparison, fmrs=fmrs, edc_fmr=edc_fmr, limits=edc_limits
  )


def analyse(
  exit_scores,
  a,
  b,
  labels,
  comparison,
  *,
  cost: Sequence[float],
  rules=("mean", "weighted", "median", "min", "max"),
  norms=("none",),
  select: str | None = None,
  top_k: int = 3,
  memory_mb: float = 1024,
  progress: bool = False,
  **metrics,
) -> Analysis:
  """exit_scores: [N, L]; a, b, labels, comparison: [P] -> Analysis.

  metrics: the options of `pairset`.
  """
  ps = pairset(exit_scores, a, b, labels, comparison, **metrics)
  depth = np.shape(exit_scores)[1]
  rules = tuple(dict.fromkeys(("mean", "weighted", *rules)))  # the paper's two always
  norms = tuple(dict.fromkeys(("none", *norms)))
  table = sweep(ps, rules, norms, cost, memory_mb=memory_mb, progress=progress)
  select = select or f"edc_area@{float(ps.limits[0]):g}"
  if select not in table:
    raise KeyError(
      f"sweep.select {select!r} is not a metric; one of {sorted(metric_columns(table))}"
    )
  plain = table["norm"] == "none"

  def find(subset: int, rule: str) -> int:
    return int(np.flatnonzero(plain & (table["rule"] == rule) & (table["subset"] == subset))[0])

  full = (1 << depth) - 1
  rows = [_row(table, find(1 << i, "mean"), depth, "exit") for i in range(depth)]
  rows += [_row(table, find(full, r), depth, "paper fusion") for r in ("mean", "weighted")]
  best = np.argsort(table[select], kind="stable")[:top_k]
  rows += [_row(table, int(i), depth, f"best by {select}") for i in best]
  grid = np.array(
    [
      [table[select][find((1 << i) | (1 << j), "weighted")] for j in range(depth)]
      for i in range(depth)
    ]
  )  # i == j: exit i alone
  curves = {
    "last exit": evaluate_variant(ps, mask_of(1 << (depth - 1), depth), "mean"),
    "weighted(all)": evaluate_variant(ps, mask_of(full, depth), "weighted"),
  }
  top = rows[depth + 2]
  curves[f"best: {top['variant']}"] = evaluate_variant(
    ps, mask_of(int(table["subset"][best[0]]), depth), top["rule"], top["norm"]
  )
  front = pareto_front(table["gflops"], table[select])
  return Analysis(ps, rows, table, select, front, grid, curves)

"""The weight study of one pair set (`exfiqa sweep`, the demo): the subset sweep, the
power-law and random simplex weight sweeps and the learned weights, as tables.

`weight_study` computes (`WeightStudy`); `exfiqa_jax.report.sweep.write_sweep`
writes it (CSV, JSON, figures, Markdown, HTML). The metric settings are the
config's when it has them, else those saved with the inputs by `exfiqa evaluate`
(so the numbers match the job's summary.md).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from exfiqa_jax.evaluation.analysis import Analysis, analyse, ranked, variant_names
from exfiqa_jax.evaluation.options import options
from exfiqa_jax.fusion.learn import learn_weights
from exfiqa_jax.fusion.weights import power_law, simplex, sweep_weights
from exfiqa_jax.metrics.inputs import PairInputs


@dataclasses.dataclass
class WeightStudy:
  analysis: Analysis  # the subset sweep of the inputs
  metrics: dict[str, Any]  # fmrs, edc_fmr, edc_limits used
  learned: dict[str, Any]  # fusion.learn.learn_weights output (weights, train/test areas)
  # named row lists: top (10 best distinct variants), power_law, simplex_best (5),
  # learned (held-out areas of the learned and the depth weights), front (Pareto)
  tables: dict[str, list[dict[str, Any]]]
  simplex_table: dict[str, np.ndarray]  # every random simplex weighting (a sweep table)
  depth: int  # the exits of the inputs

  @functools.cached_property
  def subsets(self) -> list[dict[str, Any]]:
    """Every row of the subset sweep (`rows_of`; made when first read: the files are
    written from the table's columns, `report.sweep.write_table_csv`)."""
    t = self.analysis.table
    return rows_of(t, range(len(t["subset"])), self.depth)

  @functools.cached_property
  def simplex(self) -> list[dict[str, Any]]:
    """Every random simplex weighting, as rows (`rows_of`)."""
    return rows_of(self.simplex_table, range(len(self.simplex_table["subset"])), self.depth)


def rows_of(table: dict, index, depth: int) -> list[dict[str, Any]]:
  """Table rows as dicts, the subset also by name (e.g. `median({1,8,11})`). Values of
  1-D columns are Python scalars (a column's `tolist()`: every file writes them as it
  writes the numpy scalars), rows of 2-D columns numpy rows; weights rounded lists."""
  index = np.asarray(index, np.int64)
  cols = {}
  for k, v in table.items():
    v = np.asarray(v)[index]
    cols[k] = v.tolist() if v.ndim == 1 else list(v)
  rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
  names = variant_names(cols["subset"], cols["rule"], cols["norm"], depth) if rows else []
  for r, name in zip(rows, names, strict=True):
    r["variant"] = name
    if "weights" in r:
      r["weights"] = [round(float(x), 3) for x in r["weights"]]
  return rows


def analyse_inputs(
  z: PairInputs, cfg: dict[str, Any], progress: bool | str = False, assessors=None, overview=None
) -> Analysis:
  """The Analysis of one pair set with the job's options (metrics: the config's, else
  those saved with z); assessors: {name: quality [N] of z's items}, rows and curves
  beside the exits; overview: `analysis.analyse`'s. The job (`evaluation.run`) and
  `exfiqa sweep` both call this one; it lives here so that a sweep of saved inputs
  imports no scoring stack (flax, orbax: about 1.5 s of its start-up)."""
  return analyse(
    *z.columns,
    cost=z.cost,
    progress=progress,
    assessors=assessors,
    overview=overview,
    exits=cfg.get("report", {}).get("exits", ()),
    **z.metric_options(cfg.get("metrics")),
    **options(cfg, "sweep"),
  )


def weight_study(
  z: PairInputs,
  cfg: dict[str, Any],
  analysis: Analysis | None = None,
  progress: bool | str = True,
) -> WeightStudy:
  """The weight study of inputs z with the config's options (`metrics`, `sweep`,
  `weights`). analysis: the subset sweep of the same inputs and config, if already
  run; progress: a str names the subset sweep's bar."""
  an = analysis or analyse_inputs(z, cfg, progress)
  m, w = z.metric_options(cfg.get("metrics")), options(cfg, "weights")
  ps, depth, sel = an.pairs, z.depth, an.select
  powers = np.asarray(w["powers"], float)
  # the power-law and simplex rows in one call: one set of chunk programs (each variant's
  # numbers do not depend on its chunk), not a second set for the few power-law rows
  both = sweep_weights(
    ps, np.r_[power_law(depth, powers), simplex(depth, int(w["simplex"]), w["seed"])], cost=z.cost
  )
  pw = {k: v[: len(powers)] for k, v in both.items()}
  sx = {k: v[len(powers) :] for k, v in both.items()}
  pw["power"] = powers
  learned = learn_weights(
    *z.columns,
    limit=float(ps.limits[0]),
    steps=int(w["learn_steps"]),
    seed=w["seed"],
    fmrs=m["fmrs"],
    edc_fmr=m["edc_fmr"],
    like=ps,  # the splits evaluated by the programs traced for ps: no tracing again
  )
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
  power_rows = rows_of(pw, range(len(powers)), depth)
  for r, p in zip(power_rows, powers, strict=True):
    r["variant"] = f"weighted(all) w_i ~ i^{p:g}"
  tables = {
    "top": rows_of(an.table, ranked(an.table, sel, 10), depth),
    "power_law": power_rows,
    "simplex_best": rows_of(sx, ranked(sx, sel)[:5], depth),
    "learned": held,
    "front": rows_of(an.table, an.front, depth),
  }
  return WeightStudy(an, m, learned, tables, sx, depth)

"""Sweeps over exit subsets x rules x normalisations, as a table of numpy columns.

A table is a dict of equal-length numpy columns, one row per variant:
  subset   int, bit i-1 set when exit i is fused (exits numbered 1..L)
  deepest  int, the deepest exit of the subset
  rule, norm   str
  erc_area@<fmr>   ERC area (trapezoid, discard rates 0..0.95) at each ERC FMR
  edc_area@<limit>, edc_best@<limit>   EDC partial area and theoretical-best area
  gflops   cost of the subset: GFLOPs to its deepest exit (or the given costs)
Weight sweeps (exfiqa_jax.fusion.weights) add a `weights` column [rows, L].
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np
from tqdm import tqdm

from exfiqa_jax.fusion.chunks import score_variants_later
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.fusion.subsets import check_variants, code_of, subset_masks
from exfiqa_jax.metrics import PairSet
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops

__all__ = ["METRIC_PREFIXES", "metric_columns", "pareto_front", "subset_masks", "sweep", "table"]

# Table columns of the metrics: <prefix><value:g>, e.g. erc_area@0.001, edc_area@0.2.
METRIC_PREFIXES = ("erc_area@", "edc_area@", "edc_best@")


def metric_columns(names) -> list[str]:
  """The metric columns among `names` (a table's or a row's keys), in their order."""
  return [k for k in names if k.startswith(METRIC_PREFIXES)]


def exit_costs(depth: int, cost: ViTConfig | Sequence[float] | None) -> np.ndarray:
  """GFLOPs per exit [L]: from a model config, given costs, or the exit number."""
  if isinstance(cost, ViTConfig):
    cost = exit_gflops(cost)
  cost = np.arange(1, depth + 1, dtype=float) if cost is None else np.asarray(cost, float)
  if cost.shape != (depth,):
    raise ValueError(f"cost has {cost.size} entries for {depth} exits")
  return cost


def table(ps: PairSet, masks, erc_area, edc_area, edc_best, cost, **columns) -> dict:
  """Assembles a table (see the module docstring) from per-variant results."""
  masks = np.asarray(masks, bool)
  depth = masks.shape[1]
  deepest = depth - np.argmax(masks[:, ::-1], axis=1)
  out = {"subset": code_of(masks), "deepest": deepest, **columns}
  fmrs = [float(Fraction(int(n), int(d))) for n, d in zip(ps.fmr_num, ps.fmr_den, strict=True)]
  for j, f in enumerate(fmrs):
    out[f"erc_area@{f:g}"] = erc_area[:, j]
  for j, limit in enumerate(np.asarray(ps.limits)):
    out[f"edc_area@{limit:g}"], out[f"edc_best@{limit:g}"] = edc_area[:, j], edc_best[:, j]
  out["gflops"] = exit_costs(depth, cost)[deepest - 1]
  return out


def sweep(
  ps: PairSet,
  rules: Sequence[str] = RULES,
  norms: Sequence[str] = ("none",),
  cost: ViTConfig | Sequence[float] | None = None,
  masks=None,
  weights=None,
  memory_mb: float = 256,
  progress: bool | str = False,
  devices=None,
) -> dict:
  """Every subset (default all 2^L - 1) x rule x normalisation -> a table.

  weights: [L] for the weighted rule (default depth weights 1..L); progress: a
  progress bar counting variants; devices: this host's devices (default all; the
  variants are spread over every host, see exfiqa_jax.fusion.chunks).
  """
  depth = ps.exits.shape[1]
  if masks is None:  # all subsets: bounded before they are made (fusion/subsets.py)
    check_variants(depth, len(rules), len(norms))
  masks = subset_masks(depth) if masks is None else np.asarray(masks, bool)
  w = np.broadcast_to(np.arange(1, depth + 1) if weights is None else weights, masks.shape)
  parts = []
  groups = [(norm, rule) for norm in norms for rule in rules]
  with tqdm(
    total=len(groups) * len(masks),
    unit="variant",
    desc=progress if isinstance(progress, str) else "sweep",  # a str names the bar
    disable=not progress,
  ) as bar:
    # one group ahead: its plan and pair sides are made and the workers (fusion.workers)
    # started on it before this process takes its chunks of the one before
    ahead = None
    for group in [*groups, None]:
      started = None
      if group is not None:
        norm, rule = group
        started = group, score_variants_later(ps, masks, w, rule, norm, memory_mb, devices)
      if ahead is not None:
        (norm, rule), finish = ahead
        res = finish()
        rows = {"rule": np.full(len(masks), rule), "norm": np.full(len(masks), norm)}
        parts.append(table(ps, masks, *res, cost, **rows))
        bar.update(len(masks))
      ahead = started
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def pareto_front(cost, metric) -> np.ndarray:
  """Row indices of the compute/quality front, by increasing cost: the best
  (lowest) metric at each cost, kept when lower than every cheaper row's."""
  cost, metric = np.asarray(cost), np.asarray(metric)
  order = np.lexsort((metric, cost))
  front, best = [], np.inf
  for i in order:
    if metric[i] < best:
      front.append(i)
      best = metric[i]
  return np.array(front, int)

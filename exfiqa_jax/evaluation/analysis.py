"""The evaluation of one pair set: every single exit, the paper's fusions, the sweep.

`analyse` returns the rows a report prints (named variants with their ERC and
EDC areas, GFLOPs and the FNMR-after-rejection figures of
`exfiqa_jax.metrics.rejection`), the full sweep table, the Pareto front, the
two-exit heat map, the curves of the quality assessors a report plots (the best
subset, the last exit, the depth-weighted fusion of all exits, any exit the
config names) and warnings about what the pairs cannot resolve. Every area comes
from `exfiqa_jax.fusion.sweep` / `exfiqa_jax.fusion.engine`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Sequence

import numpy as np

from exfiqa_jax.fusion.engine import evaluate_variant, variant_pair_quality
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.fusion.subsets import exits_of, mask_of
from exfiqa_jax.fusion.sweep import metric_columns, pareto_front, sweep
from exfiqa_jax.metrics import PairSet, make_pairset
from exfiqa_jax.metrics.inputs import resolve_metrics
from exfiqa_jax.metrics.pairset import METRIC_DEFAULTS
from exfiqa_jax.metrics.rejection import erc_best, fnmr_rejected_many, summarize

# Row columns of the FNMR after rejection, per ERC FMR: <prefix><fmr:g>.
FATE_PREFIXES = ("fnmr@", "fnmr_1pct@", "fnmr_5pct@", "halve@")
LAST_EXIT, DEPTH_WEIGHTED = "last exit", "depth-weighted (all exits)"


def fate_columns(names) -> list[str]:
  """The FNMR-after-rejection columns among `names`, in their order."""
  return [k for k in names if k.startswith(FATE_PREFIXES)]


class Overview(NamedTuple):
  """What a sweep's figures show, known as soon as its table is: the table, the
  ranking metric, the Pareto front's rows, the two-exit grid, and the named variants to
  mark (label -> (variant name, row of the table), the curves' order)."""

  table: dict[str, np.ndarray]
  select: str
  front: np.ndarray
  grid: np.ndarray
  marks: dict[str, tuple[str, int]]


@dataclasses.dataclass
class Analysis:
  pairs: PairSet  # the engine's pair set the numbers were computed on
  rows: list[dict[str, Any]]  # named variants: exits, paper fusions, best subsets
  table: dict[str, np.ndarray]  # the whole sweep (exfiqa_jax.fusion.sweep table)
  select: str  # the metric that ranks variants (lower is better)
  front: np.ndarray  # row indices of the Pareto front in `table`
  pairs_grid: np.ndarray  # [L, L] select metric of the weighted fusion of exits i, j
  # assessor label -> engine.evaluate_variant output plus `variant` (its name) and
  # `fine_fnmr` [96, F] (FNMR after rejecting 0, 1, ..., 95% of the pairs) and `row`
  # (its row in `table`)
  curves: dict[str, dict[str, Any]]
  metrics: dict[str, Any]  # the settings used: fmrs, edc_fmr, edc_limits
  counts: dict[str, int]  # pairs, genuine, impostor
  erc_best: np.ndarray  # [96, F] theoretical best FNMR after rejection (rejection.erc_best)
  edc_start: float  # EDC error fraction before any discard (e0)
  warnings: list[str]
  # the adaptive early-exit study of these pairs (exfiqa_jax.adaptive.study.Study), when
  # the job asks for one
  adaptive: Any = None
  # other assessors (a job's quality_methods): name -> the curves of `curves` (no `row`:
  # they are not variants of the sweep table)
  assessor_curves: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

  def plotted(self) -> dict[str, dict[str, Any]]:
    """The curves the ERC/EDC plots draw: the exits' and fusions', then the assessors'."""
    return {**self.curves, **self.assessor_curves}


def variant_name(subset: int, rule: str, norm: str, depth: int) -> str:
  """A variant's name: `exit 3`, `median({1,8,11})`, `mean(all) [rank]`."""
  return variant_names([subset], [rule], [norm], depth)[0]


def variant_names(subsets, rules, norms, depth: int) -> list[str]:
  """`variant_name` of each row: subsets [V] int codes, rules, norms [V] str (the exit
  part built once per subset code, not once per row)."""
  parts: dict[int, tuple[bool, str]] = {}
  out = []
  for s, r, n in zip(np.asarray(subsets).tolist(), np.asarray(rules).tolist(),
                     np.asarray(norms).tolist(), strict=True):  # fmt: skip
    part = parts.get(s)
    if part is None:
      exits = exits_of(s, depth)
      where = "all" if len(exits) == depth else "{" + ",".join(map(str, exits)) + "}"
      part = parts[s] = (len(exits) == 1, f"exit {exits[0]}" if len(exits) == 1 else where)
    if part[0]:
      out.append(part[1])
    else:
      out.append(f"{r}({part[1]})" + ("" if n == "none" else f" [{n}]"))
  return out


def _variant_of(table: dict, i: int) -> tuple[int, str, str]:
  """(subset code, rule, norm) of row i of a sweep table."""
  return int(table["subset"][i]), str(table["rule"][i]), str(table["norm"][i])


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


def ranked(
  table: dict, metric: str, variants: int | None = None, distinct_values: bool = False
) -> list[int]:
  """Row indices of `table` by ascending `metric`; rows whose `metric` is NaN left
  out, rows with a NaN in another metric column after all complete rows, ties in
  table order. With `variants`: the first row of each of the best that many
  distinct variant names (a single exit is one variant under every rule and norm);
  with distinct_values too, a row whose every metric equals a chosen row's is left out
  (e.g. two medians that order the comparisons alike: the same result twice)."""
  depth = int(np.max(table["deepest"]))
  values = np.asarray(table[metric], float)
  incomplete = np.zeros(len(values), bool)
  for k in metric_columns(table):
    incomplete |= np.isnan(np.asarray(table[k], float))
  order = np.lexsort((values, incomplete))  # stable: ties keep table order
  order = order[~np.isnan(values[order])].tolist()
  if variants is None:
    return order
  seen, out, values_seen = set(), [], set()
  cols = metric_columns(table)
  for i in order:
    name = variant_name(
      int(table["subset"][i]), str(table["rule"][i]), str(table["norm"][i]), depth
    )
    numbers = tuple(float(table[k][i]) for k in cols)  # NaN != NaN: such rows stay
    if name not in seen and not (distinct_values and numbers in values_seen):
      seen.add(name)
      values_seen.add(numbers)
      out.append(i)
      if len(out) == variants:
        break
  return out


def nan_warnings(table: dict) -> list[str]:
  """A line per metric column that is NaN for some variants."""
  out = []
  for k in metric_columns(table):
    bad = int(np.isnan(np.asarray(table[k], float)).sum())
    if bad:
      out.append(
        f"{k} is NaN for {bad} of {len(table[k])} variants: at some discard rate no genuine "
        "or no impostor comparison remains (too few pairs); such rows rank last"
      )
  return out


FEW_IMPOSTORS = 10  # an FMR threshold set by fewer impostors above it is a small sample


def resolution_warnings(fmrs: Sequence[float], n_impostor: int) -> list[str]:
  """A line per ERC FMR that `n_impostor` impostor comparisons cannot resolve, or
  resolve with fewer than FEW_IMPOSTORS impostors above the threshold (there, rejecting
  a few images moves the threshold by a whole impostor and FNMR jumps: small-sample
  steps, not a property of the quality)."""
  small = [float(f) for f in fmrs if 1 <= n_impostor * float(f) < FEW_IMPOSTORS]
  out = [
    f"ERC at FMR {f:g} rests on {n_impostor * f:.3g} impostor comparisons above its "
    f"threshold ({n_impostor} impostors; fewer than {FEW_IMPOSTORS}): its FNMR moves in "
    "small-sample steps when a few comparisons are rejected"
    for f in small
  ]
  coarse = [float(f) for f in fmrs if n_impostor * float(f) < 1]
  for f in coarse:
    out.append(
      f"ERC at FMR {f:g} is not resolvable: {n_impostor} impostor comparisons give FMR "
      f"steps of {1 / n_impostor:.3g} (at least {int(np.ceil(1 / f))} needed); its threshold "
      "is the top impostor score"
    )
  if len(coarse) > 1:
    out.append(
      "ERC at FMRs " + ", ".join(f"{f:g}" for f in coarse) + " use the same threshold "
      "(the top impostor score) and give the same curve"
    )
  return out


def pairset(
  exit_scores,
  a,
  b,
  labels,
  comparison,
  *,
  fmrs=METRIC_DEFAULTS["fmrs"],
  edc_fmr: float = METRIC_DEFAULTS["edc_fmr"],
  edc_limits=METRIC_DEFAULTS["edc_limits"],
) -> PairSet:
  """The engine's PairSet with a job's `metrics` options (ERC FMRs, EDC FMR, limits)."""
  return make_pairset(
    exit_scores, a, b, labels, comparison, fmrs=fmrs, edc_fmr=edc_fmr, limits=edc_limits
  )


def _with_rejection(pqs, comparison, labels, fmrs) -> list[tuple[dict, np.ndarray]]:
  """The FNMR-after-rejection columns of each variant of pair qualities pqs [V][P], and
  its fine curve [96, F] (all V in one pass: `rejection.fnmr_rejected_many`)."""
  if not len(pqs):
    return []
  out = []
  for fine in fnmr_rejected_many(np.stack(pqs), comparison, labels, fmrs):
    s = summarize(fine)
    cols = {f"{name}@{f:g}": float(s[name][j]) for j, f in enumerate(fmrs) for name in s}
    out.append((cols, fine))
  return out


def _assessors(assessors, a, b, labels, comparison, metrics, fmrs) -> tuple[list, dict]:
  """The rows and curves of other assessors: each quality [N] as the one exit of its own
  pair set (the same pairs and metric settings), so its areas are computed exactly as an
  exit's. Rows: variant = the assessor's name, kind "assessor", no exits, GFLOPs NaN."""
  rows, curves = [], {}
  for name, q in assessors.items():
    q = np.asarray(q, np.float32)[:, None]
    ps1 = pairset(q, a, b, labels, comparison, **metrics)
    t = sweep(ps1, ("mean",), ("none",), [np.nan])
    r = _row(t, 0, 1, "assessor")
    r.update(variant=name, exits=(), rule="-", norm="-", gflops=float("nan"))
    c = evaluate_variant(ps1, [True], "mean", "none", pair_quality=True)
    c["variant"] = name
    rows.append(r)
    curves[name] = c
  pqs = [c.pop("pair_quality") for c in curves.values()]
  for r, c, (cols, fine) in zip(
    rows, curves.values(), _with_rejection(pqs, comparison, labels, fmrs), strict=True
  ):
    r.update(cols)
    c["fine_fnmr"] = fine
  return rows, curves


def analyse(
  exit_scores,
  a,
  b,
  labels,
  comparison,
  *,
  cost: Sequence[float],
  rules=RULES,
  norms=("none",),
  select: str | None = None,
  top_k: int = 3,
  memory_mb: float = 1024,
  progress: bool | str = False,
  exits: Sequence[int] = (),
  assessors: dict[str, np.ndarray] | None = None,
  overview: Callable[[Overview], Any] | None = None,
  **metrics,
) -> Analysis:
  """exit_scores: [N, L]; a, b, labels, comparison: [P] -> Analysis.

  metrics: the options of `pairset`; exits: exits (1-based) to plot besides the
  last one and the fusions; assessors: {name: quality [N], higher = better} of other
  quality assessors (CR-FIQA, MagFace, ...): each gets a row (kind "assessor", after the
  paper fusions) and a curve, computed as a single exit of its own pair set;
  overview: called with the sweep's `Overview` as soon as it is known, before the
  curves and the FNMR after rejection (`exfiqa sweep` starts its figures there).
  """
  metrics = resolve_metrics(metrics)
  ps = pairset(exit_scores, a, b, labels, comparison, **metrics)
  depth = np.shape(exit_scores)[1]
  bad = [e for e in exits if not 1 <= int(e) <= depth]
  if bad:
    raise ValueError(f"report.exits {bad} are not exits of a depth-{depth} model (1..{depth})")
  fmrs = [float(f) for f in metrics["fmrs"]]
  labels = np.asarray(labels).astype(bool)
  rules = tuple(dict.fromkeys(("mean", "weighted", *rules)))  # the paper's two always
  norms = tuple(dict.fromkeys(("none", *norms)))
  table = sweep(ps, rules, norms, cost, memory_mb=memory_mb, progress=progress)
  select = select or f"edc_area@{float(ps.limits[0]):g}"
  if select not in table:
    raise KeyError(
      f"sweep.select {select!r} is not a metric; one of {sorted(metric_columns(table))}"
    )
  plain = np.flatnonzero(table["norm"] == "none")
  first: dict[tuple[int, str], int] = {}  # (subset, rule) -> its first plain row
  keys = zip(table["subset"][plain].tolist(), table["rule"][plain].tolist(), strict=True)
  for i, key in zip(plain.tolist(), keys, strict=True):
    first.setdefault(key, i)

  def find(subset: int, rule: str) -> int:
    return first[(subset, rule)]

  full = (1 << depth) - 1
  rows = [_row(table, find(1 << i, "mean"), depth, "exit") for i in range(depth)]
  rows += [_row(table, find(full, r), depth, "paper fusion") for r in ("mean", "weighted")]
  best = ranked(table, select, top_k, distinct_values=True)
  rows += [_row(table, i, depth, f"best by {select}") for i in best]
  pqs = []
  for r in rows:
    mask = [i + 1 in r["exits"] for i in range(depth)]
    pqs.append(variant_pair_quality(ps, mask, r["rule"], r["norm"]))
  own, assessor_curves = _assessors(assessors or {}, a, b, labels, comparison, metrics, fmrs)
  rows_of_variants = list(rows)  # the rows of `pqs`, in order
  rows[depth + 2 : depth + 2] = own  # after the exits and the paper fusions
  grid = np.array(
    [
      [table[select][find((1 << i) | (1 << j), "weighted")] for j in range(depth)]
      for i in range(depth)
    ]
  )  # i == j: exit i alone
  chosen = {}  # label -> row of `table`
  if best:
    chosen[f"best subset: {_row(table, best[0], depth, '')['variant']}"] = best[0]
  chosen[DEPTH_WEIGHTED] = find(full, "weighted")
  chosen[f"{LAST_EXIT} (exit {depth})"] = find(1 << (depth - 1), "mean")
  for e in dict.fromkeys(int(e) for e in exits):
    if e != depth:
      chosen[f"exit {e}"] = find(1 << (e - 1), "mean")
  front = pareto_front(table["gflops"], table[select])
  marks = {label: (variant_name(*_variant_of(table, i), depth), i) for label, i in chosen.items()}
  if overview is not None:
    overview(Overview(table, select, front, grid, marks))
  curves = {}
  for label, (name, i) in marks.items():
    subset, rule, norm = _variant_of(table, i)
    c = evaluate_variant(ps, mask_of(subset, depth), rule, norm, pair_quality=True)  # planned once
    pqs.append(c.pop("pair_quality"))
    c["variant"], c["row"] = name, i
    curves[label] = c
  fates = _with_rejection(pqs, comparison, labels, fmrs)  # the rows' and the curves', at once
  n_rows = len(rows_of_variants)
  for r, (cols, _) in zip(rows_of_variants, fates[:n_rows], strict=True):
    r.update(cols)
  for c, (_, fine) in zip(curves.values(), fates[n_rows:], strict=True):
    c["fine_fnmr"] = fine
  n_gen = int(labels.sum())
  counts = {"pairs": len(labels), "genuine": n_gen, "impostor": len(labels) - n_gen}
  any_curve = next(iter(curves.values()))
  e0 = float(any_curve["edc_error"][0])
  best_erc = np.stack(
    [erc_best(any_curve["fine_fnmr"][0, j], n_gen, len(labels)) for j in range(len(fmrs))], 1
  )
  warnings = resolution_warnings(fmrs, counts["impostor"]) + nan_warnings(table)
  if not best:
    warnings.append(f"every variant's {select} is NaN: nothing to rank")
  return Analysis(
    ps,
    rows,
    table,
    select,
    front,
    grid,
    curves,
    metrics,
    counts,
    best_erc,
    e0,
    warnings,
    assessor_curves=assessor_curves,
  )

"""`PairInputs`: everything the metrics, the sweep and the studies need of one pair set.

The exit scores of the images (or IJB-C templates), the pairs with their labels and
comparison scores, the cost of each exit, the item ids, and the metric settings
they were evaluated with. Files:

    PairInputs.load("out/inputs/lfw_self.npz")   # what `exfiqa evaluate` saves
    PairInputs.from_score_file("s.npz", "pairs.txt", cost)  # `exfiqa score` + a pair list
    inputs.save("x.npz")

The pair list has one comparison a line, `idA idB label score`: ids as in the scores
file's `paths`, label 1 genuine / 0 impostor, score the comparison score (cosine
similarity, higher = more similar). Files are read bounded, only the members needed
(`exfiqa_jax.data.npz`), and checked before any work with one-line errors naming the
file; the number of exits is at most `MAX_EXITS`: the sweep evaluates all 2^L - 1 exit
subsets, so a file with more exits is refused here rather than by an out-of-memory
error. The metric settings are saved as `metrics_<key>` arrays beside the data, so
that `exfiqa sweep` on saved inputs computes what the job's summary.md reports; a
file saved without them loads with `metrics=None`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from exfiqa_jax.data.npz import describe, read_npz
from exfiqa_jax.data.text import read_lines
from exfiqa_jax.metrics.pairset import METRIC_DEFAULTS, PairSet, make_pairset
from exfiqa_jax.scoring.run_folder import save_npz

F32_MAX = float(np.finfo(np.float32).max)  # comparison scores are float32 in the metrics
COLUMNS = ("exit_scores", "a", "b", "labels", "comparison")  # the arrays of a pair set
METRIC_KEYS = {k: f"metrics_{k}" for k in METRIC_DEFAULTS}  # saved metric settings
MAX_METRIC_VALUES = 64  # saved FMRs / EDC limits (evaluation.options states the same bound)
MAX_EXITS = 24  # 2^24 subsets: the deepest shipped model (vit_s_depth24)


def resolve_metrics(given: dict | None, saved: dict | None = None) -> dict[str, Any]:
  """The metric settings, key by key: the one given (a config's `metrics`, or the keys
  overridden on `exfiqa sweep`), else the one saved with the inputs, else the default
  (METRIC_DEFAULTS). Keys of a config's `metrics` that are not ERC/EDC settings
  (`template_quality`, which forms the pair qualities before any metric) are not metric
  settings here."""
  given = {k: v for k, v in (given or {}).items() if k in METRIC_DEFAULTS}
  return {**METRIC_DEFAULTS, **(saved or {}), **given}


@dataclasses.dataclass(frozen=True)
class PairInputs:
  """One pair set's inputs; items are images, or templates (IJB-C)."""

  exit_scores: np.ndarray  # [N, L] float quality at exits 1..L
  a: np.ndarray  # [P] int64 index into the items
  b: np.ndarray  # [P] int64 index into the items
  labels: np.ndarray  # [P] bool, True genuine
  comparison: np.ndarray  # [P] float comparison score (cosine similarity)
  cost: np.ndarray  # [L] float64 GFLOPs to reach each exit
  ids: np.ndarray | None = None  # [N] image ids (str) or template ids (int64)
  metrics: dict[str, Any] | None = None  # fmrs, edc_fmr, edc_limits saved with them

  @property
  def depth(self) -> int:
    return self.exit_scores.shape[1]

  @property
  def columns(self) -> tuple[np.ndarray, ...]:
    """(exit_scores, a, b, labels, comparison): the arguments of make_pairset."""
    return tuple(getattr(self, k) for k in COLUMNS)

  def metric_options(self, given: dict | None = None) -> dict[str, Any]:
    """The metric settings, key by key: `given` (a config's `metrics`), else those
    saved with these inputs, else the defaults (`resolve_metrics`)."""
    return resolve_metrics(given, self.metrics)

  def pairset(self, metrics: dict | None = None) -> PairSet:
    """The engine's PairSet with the metric settings `metric_options(metrics)`."""
    m = self.metric_options(metrics)
    return make_pairset(*self.columns, fmrs=m["fmrs"], edc_fmr=m["edc_fmr"], limits=m["edc_limits"])

  def with_metrics(self, metrics: dict | None) -> PairInputs:
    """These inputs with the metric settings `metrics` (resolved) saved beside them."""
    return dataclasses.replace(self, metrics=resolve_metrics(metrics))

  def arrays(self) -> dict[str, np.ndarray]:
    """The arrays `save` writes: ids (when known), the columns, cost, metrics_*."""
    out = {} if self.ids is None else {"ids": self.ids}
    out.update({k: getattr(self, k) for k in COLUMNS}, cost=self.cost)
    if self.metrics is not None:
      m = resolve_metrics(self.metrics)
      out.update({name: np.asarray(m[k], np.float64) for k, name in METRIC_KEYS.items()})
    return out

  def save(self, path: str) -> None:
    """Writes the inputs file atomically (`load` reads it back)."""
    save_npz(path, self.arrays())

  @classmethod
  def load(cls, path: str) -> PairInputs:
    """Saved inputs: exit_scores [N, L], a, b, labels, comparison [P], cost [L] (and
    ids [N] and the metric settings when saved), each checked: integer pair indices
    inside [0, N), labels 0/1, finite comparison scores, one cost per exit."""
    try:
      z = read_npz(path, [*COLUMNS, "cost"], optional=["ids", *METRIC_KEYS.values()])
    except KeyError as e:
      raise KeyError(f"{path}: not an evaluation inputs file ({e.args[0]})") from None
    check_exit_scores(z["exit_scores"], path)
    n, depth = z["exit_scores"].shape
    p = len(z["a"])
    for k in ("a", "b"):
      if z[k].ndim != 1 or not np.issubdtype(z[k].dtype, np.integer):
        raise ValueError(f"{path}: pair indices {k!r} must be integers [P]; got {z[k].dtype}")
      if len(z[k]) != p or (p and (z[k].min() < 0 or z[k].max() >= n)):
        raise ValueError(f"{path}: pair indices {k!r} must lie in [0, {n}) for {p} pairs")
    if p == 0:
      raise ValueError(f"{path}: holds no pairs")
    labels = z["labels"]
    integer01 = np.issubdtype(labels.dtype, np.integer) and np.isin(labels, (0, 1)).all()
    if labels.shape != (p,) or not (labels.dtype == bool or integer01):
      raise ValueError(f"{path}: labels must be [P] booleans or 0/1")
    c = z["comparison"]
    if c.shape != (p,) or not np.issubdtype(c.dtype, np.floating) or not np.isfinite(c).all():
      raise ValueError(f"{path}: comparison must be [P] finite floats")
    if np.abs(c).max() > F32_MAX:
      raise ValueError(f"{path}: comparison scores beyond float32 ({np.abs(c).max():.3g})")
    if z["cost"].shape != (depth,):
      raise ValueError(f"{path}: cost has {z['cost'].size} entries for {depth} exits")
    if "ids" in z:
      unique_index(z["ids"], path)
    return cls(
      z["exit_scores"],
      z["a"],
      z["b"],
      labels.astype(bool),
      c,
      z["cost"],
      z.get("ids"),
      _saved_metrics(z, path),
    )

  @classmethod
  def from_score_file(cls, scores_path: str, pairs_path: str, cost) -> PairInputs:
    """The inputs of an `exfiqa score` output and a pair list; cost [L] per exit."""
    try:
      z = read_npz(scores_path, ["paths", "exit_scores"])
    except KeyError:
      raise KeyError(
        f"{scores_path}: not an `exfiqa score` output (needs paths, exit_scores)"
      ) from None
    check_exit_scores(z["exit_scores"], scores_path)
    if len(z["paths"]) != len(z["exit_scores"]):
      raise ValueError(f"{scores_path}: {len(z['paths'])} paths for {len(z['exit_scores'])} rows")
    if len(cost) != z["exit_scores"].shape[1]:
      raise ValueError(
        f"{scores_path}: {z['exit_scores'].shape[1]} exits, but the cost has {len(cost)} entries"
      )
    p = read_pairs(pairs_path, z["paths"], scores_path)
    return cls(
      z["exit_scores"],
      p["a"],
      p["b"],
      p["labels"],
      p["comparison"],
      np.asarray(cost, float),
      z["paths"],
    )


def score_file_cost(path: str, config=None, by_exit: bool = False) -> np.ndarray:
  """The cost per exit [L] for an `exfiqa score` file's L exits: the GFLOPs of the
  exits of `config` (a ViTConfig: the model that scored the file; no default, a model's
  cost is never assumed), or the exit numbers 1..L with by_exit. A missing file or one
  without [N, L] exit_scores gives L = 0, and `from_score_file` then says why."""
  import os

  from exfiqa_jax.models.flops import exit_gflops

  if config is None and not by_exit:
    raise ValueError(f"{path}: the cost of its exits needs the model's config (or by_exit)")

  shapes = describe(path) if os.path.isfile(path) else {}
  shape = shapes.get("exit_scores", ((),))[0]
  depth = shape[-1] if len(shape) == 2 else 0
  if by_exit:
    return np.arange(1, depth + 1.0)
  return np.asarray(exit_gflops(config), float)


def _saved_metrics(z: dict[str, np.ndarray], path: str = "inputs") -> dict[str, Any] | None:
  """The metric settings saved with inputs `z` (None for inputs saved without them)."""
  if not all(name in z for name in METRIC_KEYS.values()):
    return None
  big = [name for name in METRIC_KEYS.values() if np.size(z[name]) > MAX_METRIC_VALUES]
  if big:
    raise ValueError(
      f"{path}: {big[0]} holds {np.size(z[big[0]])} values, over {MAX_METRIC_VALUES}"
    )
  out = {k: tuple(float(x) for x in np.ravel(z[name])) for k, name in METRIC_KEYS.items()}
  out["edc_fmr"] = out["edc_fmr"][0]
  return out


def check_exit_scores(exit_scores: np.ndarray, path: str) -> None:
  """Raises unless exit_scores is a finite float [N, L] with 1 <= L <= MAX_EXITS."""
  if exit_scores.ndim != 2 or not np.issubdtype(exit_scores.dtype, np.floating):
    raise ValueError(
      f"{path}: exit_scores must be floats [N, L]; got {exit_scores.dtype} {exit_scores.shape}"
    )
  if not 1 <= exit_scores.shape[1] <= MAX_EXITS:
    raise ValueError(
      f"{path}: {exit_scores.shape[1]} exits; the sweep takes 1 to {MAX_EXITS} "
      f"(it evaluates all 2^L - 1 exit subsets)"
    )
  if not np.isfinite(exit_scores).all():
    raise ValueError(f"{path}: exit_scores hold NaN or infinite values")


def unique_index(ids: np.ndarray, path: str) -> dict[str, int]:
  """{id: row} of ids [N]; raises naming `path` when an id appears twice."""
  index: dict[str, int] = {}
  for k, i in enumerate(ids.tolist()):
    if str(i) in index:
      raise ValueError(f"{path}: id {str(i)!r} appears twice (ids must be unique)")
    index[str(i)] = k
  return index


def read_pairs(path: str, ids: np.ndarray, ids_file: str = "the scores") -> dict[str, np.ndarray]:
  """-> a, b (indices into ids), labels, comparison; errors name the file and line."""
  index = unique_index(ids, ids_file)
  a, b, labels, comparison = [], [], [], []
  lines = read_lines(path, "pair list")
  for n, line in enumerate(lines, 1):
    parts = line.split()
    if len(parts) != 4 or parts[2] not in ("0", "1"):
      raise ValueError(f"{path}:{n}: expected `idA idB label(0/1) score`, got {line!r}")
    for name in parts[:2]:
      if name not in index:
        raise KeyError(f"{path}:{n}: pair names image {name!r}, which is not in the scores")
    try:
      score = float(parts[3])
    except ValueError:
      raise ValueError(f"{path}:{n}: comparison score {parts[3]!r} is not a number") from None
    if not np.isfinite(score):
      raise ValueError(f"{path}:{n}: comparison score {parts[3]!r} is not finite")
    if abs(score) > F32_MAX:  # scores are compared in float32: it would become inf
      raise ValueError(f"{path}:{n}: comparison score {parts[3]!r} is beyond float32")
    a.append(index[parts[0]])
    b.append(index[parts[1]])
    labels.append(parts[2] == "1")
    comparison.append(score)
  if not a:
    raise ValueError(f"{path}: lists no pairs")
  return dict(
    a=np.array(a, np.int64),
    b=np.array(b, np.int64),
    labels=np.array(labels),
    comparison=np.array(comparison),
  )

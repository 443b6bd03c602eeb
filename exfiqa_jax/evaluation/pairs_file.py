"""Evaluation inputs read from files, bounded and checked before any work.

`read_inputs`: the inputs `exfiqa evaluate` saves (`<out_dir>/inputs/*.npz`).
`inputs_from_files`: an `exfiqa score` output and a text pair list with one
comparison a line, `idA idB label score`: ids as in the scores file's `paths`,
label 1 genuine / 0 impostor, score the comparison score (cosine similarity,
higher = more similar).

Only the members needed are read (`exfiqa_jax.data.npz`), and the number of
exits is at most `MAX_EXITS`: the sweep evaluates all 2^L - 1 exit subsets, so
a file with more exits is refused here rather than by an out-of-memory error.
"""

from __future__ import annotations

import numpy as np

from exfiqa_jax.data.npz import read_npz
from exfiqa_jax.data.text import read_lines

INPUT_KEYS = ("exit_scores", "a", "b", "labels", "comparison")
# The job's metric settings, saved with the inputs so that `exfiqa sweep` on them
# computes what the job's summary.md reports.
METRIC_KEYS = {
  "fmrs": "metrics_fmrs",
  "edc_fmr": "metrics_edc_fmr",
  "edc_limits": "metrics_edc_limits",
}
MAX_EXITS = 24  # 2^24 subsets: the deepest shipped model (vit_s_depth24)


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


def _unique_index(ids: np.ndarray, path: str) -> dict[str, int]:
  index: dict[str, int] = {}
  for k, i in enumerate(ids.tolist()):
    if str(i) in index:
      raise ValueError(f"{path}: id {str(i)!r} appears twice (ids must be unique)")
    index[str(i)] = k
  return index


def read_pairs(path: str, ids: np.ndarray, ids_file: str = "the scores") -> dict[str, np.ndarray]:
  """-> a, b (indices into ids), labels, comparison; errors name the file and line."""
  index = _unique_index(ids, ids_file)
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


def inputs_from_files(scores_path: str, pairs_path: str, cost: np.ndarray) -> dict:
  """The saved inputs dict of `exfiqa_jax.evaluation.run` from a scores .npz and a pair list."""
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
  return dict(
    ids=z["paths"],
    exit_scores=z["exit_scores"],
    cost=np.asarray(cost, float),
    **read_pairs(pairs_path, z["paths"], scores_path),
  )


def read_inputs(path: str) -> dict[str, np.ndarray]:
  """Saved evaluation inputs: exit_scores [N, L], a, b, labels, comparison [P], cost [L]
  (and ids [N] when saved), each checked: integer pair indices inside [0, N), labels
  0/1, finite comparison scores, one cost per exit."""
  try:
    z = read_npz(path, [*INPUT_KEYS, "cost"], optional=["ids", *METRIC_KEYS.values()])
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
  z["labels"] = labels.astype(bool)
  c = z["comparison"]
  if c.shape != (p,) or not np.issubdtype(c.dtype, np.floating) or not np.isfinite(c).all():
    raise ValueError(f"{path}: comparison must be [P] finite floats")
  if z["cost"].shape != (depth,):
    raise ValueError(f"{path}: cost has {z['cost'].size} entries for {depth} exits")
  if "ids" in z:
    _unique_index(z["ids"], path)
  return z

"""Evaluation inputs from an `exfiqa score` output and a text pair list.

The pair list has one comparison a line: `idA idB label score`, ids as in the
scores file's `paths`, label 1 genuine / 0 impostor, score the comparison
score (cosine similarity, higher = more similar).
"""

from __future__ import annotations

import numpy as np

from exfiqa_jax.scoring.run_folder import read_npz


def read_pairs(path: str, ids: np.ndarray) -> dict[str, np.ndarray]:
  """-> a, b (indices into ids), labels, comparison; errors name the file and line."""
  index = {str(i): k for k, i in enumerate(ids.tolist())}
  a, b, labels, comparison = [], [], [], []
  try:
    lines = open(path, encoding="utf-8").read().splitlines()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such pair list") from None
  for n, line in enumerate(lines, 1):
    if not line.strip():
      continue
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
    a.append(index[parts[0]])
    b.append(index[parts[1]])
    labels.append(parts[2] == "1")
    comparison.append(score)
  if not a:
    raise ValueError(f"{path}: lists no pairs")
  return dict(
    a=np.array(a), b=np.array(b), labels=np.array(labels), comparison=np.array(comparison)
  )


def inputs_from_files(scores_path: str, pairs_path: str, cost: np.ndarray) -> dict:
  """The saved inputs dict of `exfiqa_jax.evaluation.run` from a scores .npz and a pair list."""
  z = read_npz(scores_path)
  if "exit_scores" not in z or "paths" not in z:
    raise KeyError(f"{scores_path}: not an `exfiqa score` output (needs paths, exit_scores)")
  if len(cost) != z["exit_scores"].shape[1]:
    raise ValueError(
      f"{scores_path}: {z['exit_scores'].shape[1]} exits, but the cost has {len(cost)} entries"
    )
  return dict(
    ids=z["paths"],
    exit_scores=z["exit_scores"],
    cost=np.asarray(cost, float),
    **read_pairs(pairs_path, z["paths"]),
  )

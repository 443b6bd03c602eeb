"""Comparison scores (docs/protocol.md §3) and IJB-C template aggregation (§6).

A comparison score is the cosine similarity of two embeddings: the model's
own embedding head, or any face recognition model's embeddings stored as the
CR-FIQA layout `<emb_root>/<dataset>_<FRModel>/<stem>.npy` (one vector per
image, found by its id's file stem) or as one `.npy` matrix [N, D] whose rows
follow the dataset's image ids.

IJB-C: an image embedding set becomes a template embedding by a media-wise
mean, then the mean over the template's media (optionally each image weighted
by its detector score first); a template's quality at each exit is, by
default, the worst of its images' qualities at that exit: the minimum for a
higher-is-better score, the maximum for a higher-is-worse one (an
uncertainty), as CR-FIQA `IJB-C Evaluation/ijb_qs_pair_file.py`
(`get_min_score`) takes it; the plain mean is an option.
"""

from __future__ import annotations

import os

import numpy as np

from exfiqa_jax.data.npz import read_npy


def cosine(
  embeddings: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 1 << 20
) -> np.ndarray:
  """embeddings: [N, D]; a, b: [P] row indices -> float64 [P] cosine similarities."""
  x = np.asarray(embeddings, dtype=np.float64)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  if not np.isfinite(x).all() or (norms == 0).any():
    raise ValueError("embeddings hold a NaN/inf or an all-zero row; cosine is undefined")
  x = x / norms
  return np.concatenate(
    [
      np.einsum("pd,pd->p", x[a[i : i + block]], x[b[i : i + block]])
      for i in range(0, len(a), block)
    ]
    or [np.zeros(0)]
  )


def load_embeddings(path: str, ids: np.ndarray) -> np.ndarray:
  """External embeddings aligned to `ids` -> float32 [N, D].

  `path` is a `<dataset>_<FRModel>` folder of `<stem>.npy` files, or one
  `.npy` matrix with a row per id. Two ids of one stem (`a.jpg`, `a.png`) would
  share a file and are refused; every file is read bounded (`data.npz.read_npy`).
  """
  if os.path.isdir(path):
    rows, owner = [], {}
    for i in ids.tolist():
      stem = os.path.splitext(os.path.basename(i))[0]
      if stem in owner:
        raise ValueError(
          f"{path}: images {owner[stem]!r} and {i!r} share the stem {stem!r}, so one "
          f"embedding file {stem}.npy cannot tell them apart"
        )
      owner[stem] = i
      f = os.path.join(path, stem + ".npy")
      if not os.path.isfile(f):
        raise FileNotFoundError(f"{f}: no embedding for image {i!r}")
      rows.append(read_npy(f).reshape(-1))
    if len({r.shape for r in rows}) > 1:
      raise ValueError(f"{path}: embeddings of different sizes {sorted({r.size for r in rows})}")
    matrix = np.stack(rows)
  elif os.path.isfile(path):
    matrix = read_npy(path)
    if matrix.ndim != 2 or len(matrix) != len(ids):
      raise ValueError(
        f"{path}: expected an embedding matrix [{len(ids)}, D] aligned to the "
        f"image ids; got shape {matrix.shape}"
      )
  else:
    raise FileNotFoundError(f"{path}: no such embedding folder or .npy file")
  if not np.issubdtype(matrix.dtype, np.number):
    raise ValueError(f"{path}: embeddings must be numbers; got {matrix.dtype}")
  return matrix.astype(np.float32)


def segment_mean(x: np.ndarray, segment: np.ndarray, num: int) -> np.ndarray:
  """x: [N, ...], segment: [N] in [0, num) -> float64 [num, ...] means; empty is an error."""
  counts = np.bincount(segment, minlength=num)
  if (counts == 0).any():
    raise ValueError(f"segment {int(np.argmin(counts))} of {num} has no members")
  order = np.argsort(segment, kind="stable")
  sums = np.add.reduceat(np.asarray(x, np.float64)[order], np.cumsum(counts) - counts, axis=0)
  return sums / counts.reshape(-1, *([1] * (np.ndim(x) - 1)))


def template_embeddings(
  embeddings: np.ndarray,
  of_image: np.ndarray,
  media: np.ndarray,
  num_templates: int,
  weights: np.ndarray | None = None,
) -> np.ndarray:
  """[N, D] image embeddings -> [T, D]: mean within each (template, media), then over media.

  weights: [N] or None; each image's embedding is multiplied by its weight first (the
  detector score, as insightface `eval_ijbc.py` with `use_detector_score`)."""
  if weights is not None:
    embeddings = np.asarray(embeddings, np.float64) * np.asarray(weights, np.float64)[:, None]
  keys, media_of_image = np.unique(np.stack([of_image, media], 1), axis=0, return_inverse=True)
  per_media = segment_mean(embeddings, media_of_image.reshape(-1), len(keys))
  return segment_mean(per_media, keys[:, 0], num_templates)


TEMPLATE_QUALITY = ("min", "mean")


def template_scores(
  scores: np.ndarray,
  of_image: np.ndarray,
  num_templates: int,
  rule: str = "min",
  higher_is_better: bool = True,
) -> np.ndarray:
  """[N, L] image quality per exit -> float64 [T, L], per exit over each template's images.

  rule "min": the worst image's quality, the minimum (the maximum when
  `higher_is_better` is False); "mean": the plain mean. Every exit is aggregated on
  its own, so fusions of the template qualities follow the same rule."""
  if rule not in TEMPLATE_QUALITY:
    raise ValueError(f"template quality rule {rule!r} is not one of {TEMPLATE_QUALITY}")
  if rule == "mean":
    return segment_mean(scores, of_image, num_templates)
  x = np.asarray(scores, np.float64)
  counts = np.bincount(of_image, minlength=num_templates)
  if (counts == 0).any():
    raise ValueError(f"segment {int(np.argmin(counts))} of {num_templates} has no members")
  order = np.argsort(of_image, kind="stable")
  reduce = np.minimum if higher_is_better else np.maximum
  return reduce.reduceat(x[order], np.cumsum(counts) - counts, axis=0)

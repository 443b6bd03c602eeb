"""Comparison scores (docs/protocol.md §3) and IJB-C template aggregation (§6).

A comparison score is the cosine similarity of two embeddings: the model's
own embedding head, or any face recognition model's embeddings stored as the
CR-FIQA layout `<emb_root>/<dataset>_<FRModel>/<stem>.npy` (one vector per
image, found by its id's file stem) or as one `.npy` matrix [N, D] whose rows
follow the dataset's image ids.

IJB-C: an image embedding set becomes a template embedding by a media-wise
mean, then the mean over the template's media; a template's quality at each
exit is the plain mean of its images' qualities at that exit.
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
  embeddings: np.ndarray, of_image: np.ndarray, media: np.ndarray, num_templates: int
) -> np.ndarray:
  """[N, D] image embeddings -> [T, D]: mean within each (template, media), then over media."""
  keys, media_of_image = np.unique(np.stack([of_image, media], 1), axis=0, return_inverse=True)
  per_media = segment_mean(embeddings, media_of_image.reshape(-1), len(keys))
  return segment_mean(per_media, keys[:, 0], num_templates)


def template_scores(scores: np.ndarray, of_image: np.ndarray, num_templates: int) -> np.ndarray:
  """[N, L] image quality per exit -> [T, L], the mean over each template's images."""
  return segment_mean(scores, of_image, num_templates)

"""Everything an evaluation needs from one benchmark dataset, in one call.

    ds = exfiqa_jax.data.load("verification_bin/lfw", "tfds/")
    inputs = benchmark_inputs(ds, exfiqa_jax.load("ckpt")[1:], "runs/lfw")
    inputs.exit_scores[inputs.a], inputs.comparison, inputs.labels  # per pair

Scoring is cached and resumable in `out_dir` (`exfiqa_jax.scoring.run_folder`): a second
call, or one after a crash, only scores what is missing. Comparison scores are
recomputed on each call (one pass over the pairs).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from exfiqa_jax.data import Dataset
from exfiqa_jax.evaluation.comparison import (
  cosine,
  load_embeddings,
  template_embeddings,
  template_scores,
)
from exfiqa_jax.scoring.score import score


@dataclasses.dataclass(frozen=True)
class BenchmarkInputs:
  """Items are images, or templates (IJB-C) when the dataset has them."""

  name: str
  ids: np.ndarray  # [N] image ids (str) or template ids (int64)
  exit_scores: np.ndarray  # [N, L] quality at exits 1..L (templates: mean of their images')
  embeddings: np.ndarray  # [N, D] comparison embeddings (the model's or the FR model's)
  a: np.ndarray  # [P] int64 index into ids
  b: np.ndarray  # [P] int64 index into ids
  labels: np.ndarray  # [P] bool, True genuine
  comparison: np.ndarray  # [P] float64 cosine similarity of embeddings[a], embeddings[b]


def benchmark_inputs(
  dataset: Dataset,
  variables,
  out_dir: str,
  *,
  fr_embeddings: str | None = None,
  batch_size: int = 32,
  dtype=jnp.float32,
  progress: bool = True,
  replace: bool = False,
) -> BenchmarkInputs:
  """Scores `dataset` (cached in `out_dir`) and pairs it up for evaluation.

  variables: (graphdef, params, batch_stats). fr_embeddings: a
  `<dataset>_<FRModel>` folder or an aligned `.npy` matrix; by default the
  model's own embedding head gives the comparison scores. replace: an `out_dir`
  holding another run is cleared of it (`exfiqa_jax.scoring.score`).
  """
  if dataset.pairs is None:
    raise ValueError(f"dataset {dataset.name!r} has no pairs to evaluate")
  scores = score(
    variables,
    dataset.images,
    out_dir,
    batch_size=batch_size,
    dtype=dtype,
    progress=progress,
    replace=replace,
  )
  emb = scores.embeddings if fr_embeddings is None else load_embeddings(fr_embeddings, scores.ids)
  ids, exits, t = scores.ids, scores.exit_scores, dataset.templates
  if t is not None:
    ids = t.ids
    exits = template_scores(exits, t.of_image, len(t.ids)).astype(np.float32)
    emb = template_embeddings(emb, t.of_image, t.media, len(t.ids)).astype(np.float32)
  p = dataset.pairs
  return BenchmarkInputs(dataset.name, ids, exits, emb, p.a, p.b, p.labels, cosine(emb, p.a, p.b))

"""Everything an evaluation needs from one benchmark dataset, in one call.

    ds = exfiqa_jax.data.load("verification_bin/lfw", "tfds/")
    inputs = benchmark_inputs(ds, exfiqa_jax.load("ckpt")[1:], "runs/lfw")
    inputs.exit_scores[inputs.a], inputs.comparison, inputs.labels  # per pair

Scoring is cached and resumable in `out_dir` (`exfiqa_jax.scoring.run_folder`): a second
call, or one after a crash, only scores what is missing. Comparison scores are
recomputed on each call (one pass over the pairs).

Face-recognition checkpoints (`fr_models`) run in the same scoring pass as
the ViT-FIQA model; `pair_inputs` then pairs up one dataset's scores with any
of the embeddings: the model's own, an FR model's (`fr_embeddings`, with its
flip rule), or precomputed ones.
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
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.scoring.assessors import magface_quality
from exfiqa_jax.scoring.score import FRModel, Scores, score


@dataclasses.dataclass(frozen=True)
class BenchmarkInputs:
  """Items are images, or templates (IJB-C) when the dataset has them."""

  name: str
  ids: np.ndarray  # [N] image ids (str) or template ids (int64)
  exit_scores: np.ndarray  # [N, L] quality at exits 1..L (templates: min of their images')
  embeddings: np.ndarray  # [N, D] comparison embeddings (the model's or the FR model's)
  a: np.ndarray  # [P] int64 index into ids
  b: np.ndarray  # [P] int64 index into ids
  labels: np.ndarray  # [P] bool, True genuine
  comparison: np.ndarray  # [P] float64 cosine similarity of embeddings[a], embeddings[b]

  def pair_inputs(self, cost, metrics: dict | None = None) -> PairInputs:
    """The PairInputs of these items and pairs: cost [L] GFLOPs per exit; metrics:
    the metric settings to save with them (None: the defaults)."""
    x = PairInputs(self.exit_scores, self.a, self.b, self.labels, self.comparison, cost, self.ids)
    return x.with_metrics(metrics)


def fr_embeddings(scores: Scores, name: str, flip: str = "none") -> np.ndarray:
  """The comparison embeddings of FR model `name` from a scoring pass: [N, D], or [N, 2D]
  for "concat" (the L2-normalised embeddings of the image and of its mirror side by
  side); "sum" adds the raw two; "none" is the embedding alone."""
  z = scores.fr[name]
  if flip == "none":
    return z["embeddings"]
  if "embeddings_flip" not in z:
    raise ValueError(f"FR model {name!r} ran without flip; flip rule {flip!r} needs it")
  e, f = (np.asarray(z[k], np.float64) for k in ("embeddings", "embeddings_flip"))
  if flip == "sum":
    return (e + f).astype(np.float32)
  if flip == "concat":
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (e, f)]
    return np.concatenate(unit, axis=1).astype(np.float32)
  raise ValueError(f"flip rule {flip!r} is not one of none, concat, sum")


def pair_inputs(
  dataset: Dataset,
  scores: Scores,
  emb: np.ndarray,
  template_quality: str = "min",
  detector_weights: bool = False,
) -> BenchmarkInputs:
  """One dataset's scores and comparison embeddings [N, D] (aligned to its images) ->
  BenchmarkInputs; IJB-C images are first aggregated into templates: quality by
  `template_quality` ("min" or "mean", per exit), embeddings media-wise, each weighted
  by its detector score when `detector_weights` (docs/protocol.md §6)."""
  if dataset.pairs is None:
    raise ValueError(f"dataset {dataset.name!r} has no pairs to evaluate")
  ids, exits, t = scores.ids, scores.exit_scores, dataset.templates
  if t is not None:
    weights = None
    if detector_weights:
      weights = getattr(t, "detector_score", None)
      if weights is None:
        raise ValueError(
          f"dataset {dataset.name!r} holds no detector scores (built from aligned crops); "
          "detector_weights needs the raw release's ijbc_name_5pts_score.txt"
        )
    ids = t.ids
    exits = template_scores(exits, t.of_image, len(t.ids), template_quality).astype(np.float32)
    emb = template_embeddings(emb, t.of_image, t.media, len(t.ids), weights).astype(np.float32)
  p = dataset.pairs
  return BenchmarkInputs(dataset.name, ids, exits, emb, p.a, p.b, p.labels, cosine(emb, p.a, p.b))


def assessor_qualities(
  dataset: Dataset,
  scores: Scores,
  from_embeddings: dict[str, str],
  template_quality: str = "min",
  order: list[str] | None = None,
) -> dict[str, np.ndarray]:
  """{assessor: quality [N] of the dataset's items} (higher = better), in `order`: those
  the scoring pass computed (`scores.assessors`) and MagFace's from its FR model's raw
  embeddings (`from_embeddings`: {assessor: FR model}); IJB-C images aggregated into
  templates by `template_quality`, as the exits are."""
  q = dict(scores.assessors)
  q.update({a: magface_quality(scores.fr[fr]["embeddings"]) for a, fr in from_embeddings.items()})
  t = dataset.templates
  if t is not None:
    q = {
      a: template_scores(v[:, None], t.of_image, len(t.ids), template_quality)[:, 0].astype(
        np.float32
      )
      for a, v in q.items()
    }
  return {a: q[a] for a in (order or q)}


def benchmark_inputs(
  dataset: Dataset,
  variables,
  out_dir: str,
  *,
  fr_embeddings: str | None = None,
  fr_models: tuple[FRModel, ...] = (),
  batch_size: int = 32,
  dtype=jnp.float32,
  progress: bool = True,
  replace: bool = False,
  template_quality: str = "min",
) -> BenchmarkInputs:
  """Scores `dataset` (cached in `out_dir`) and pairs it up for evaluation.

  variables: (graphdef, params, batch_stats). fr_embeddings: a
  `<dataset>_<FRModel>` folder or an aligned `.npy` matrix; by default the
  model's own embedding head gives the comparison scores. `fr_models` run in
  the same pass (see `pair_inputs` and `fr_embeddings` for using them). replace:
  an `out_dir` holding another run is cleared of it (`exfiqa_jax.scoring.score`).
  template_quality: IJB-C templates' quality rule ("min", upstream's, or "mean").
  """
  if dataset.pairs is None:
    raise ValueError(f"dataset {dataset.name!r} has no pairs to evaluate")
  scores = score(
    variables,
    dataset.images,
    out_dir,
    fr_models=fr_models,
    batch_size=batch_size,
    dtype=dtype,
    progress=progress,
    replace=replace,
  )
  emb = scores.embeddings if fr_embeddings is None else load_embeddings(fr_embeddings, scores.ids)
  return pair_inputs(dataset, scores, emb, template_quality)

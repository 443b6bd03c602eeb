"""Score every image of a source: all exit scores and, if asked, the embedding.

    scores = score(exfiqa_jax.load("ckpt")[1:], dataset.images, "runs/lfw")
    scores.exit_scores  # float32 [N, L]; scores.ids [N]; scores.embeddings [N, D]

Batches are split over this host's devices (`sharding.make_step`); the last
partial batch is padded and trimmed. Reading and decoding run on background
threads, ahead of the devices. With `out_dir`, results go to disk chunk by
chunk (format in `exfiqa_jax.resume`) and a restarted run continues where it
stopped; on several hosts each scores its own chunks and host 0 merges them.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from exfiqa_jax import resume
from exfiqa_jax.pipeline import run_chunks
from exfiqa_jax.sharding import (chunk_bounds, gather_in_order, host_chunks, local_mesh, make_step,
                                 replicate)

if TYPE_CHECKING:
  from exfiqa_jax.data.sources import ImageSource


@dataclasses.dataclass(frozen=True)
class Scores:
  ids: np.ndarray  # [N] str
  exit_scores: np.ndarray  # [N, L] float32: exit 1..L
  embeddings: np.ndarray | None  # [N, D] float32, before L2 normalisation

  @classmethod
  def read(cls, path: str) -> "Scores":
    z = resume.read_npz(path)
    return cls(z["ids"], z["exit_scores"], z.get("embeddings"))


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def score(variables, images: ImageSource, out_dir: str | None = None, *, batch_size: int = 32,
          chunk_size: int | None = None, num_layers: int | None = None, embedding: bool = True,
          dtype=jnp.float32, progress: bool = True, devices=None) -> Scores:
  """variables: (graphdef, params, batch_stats), e.g. `exfiqa_jax.load(path)[1:]`.

  `chunk_size` (default 32 batches) must be a multiple of `batch_size`, and
  `batch_size` a multiple of the number of local devices.
  """
  graphdef, params, batch_stats = variables
  mesh = local_mesh(devices)
  chunk_size = chunk_size or 32 * batch_size
  if batch_size % mesh.size or chunk_size % batch_size:
    raise ValueError(f"batch_size {batch_size} must be a multiple of the {mesh.size} local "
                     f"devices, and chunk_size {chunk_size} a multiple of batch_size")
  if len(images) == 0:
    raise ValueError("no images to score")
  if out_dir is None and jax.process_count() > 1:
    raise ValueError("scoring on several hosts needs out_dir on a shared file system")
  step = make_step(graphdef, mesh, num_layers=num_layers, embedding=embedding, dtype=dtype,
                   channel_order=images.channel_order)
  params, batch_stats = replicate((params, batch_stats), mesh)
  bounds = chunk_bounds(len(images), chunk_size)
  done = set()
  if out_dir is not None:
    run = dict(num_images=len(images), chunk_size=chunk_size, batch_size=batch_size,
               num_layers=num_layers, embedding=embedding, dtype=jnp.dtype(dtype).name,
               channel_order=images.channel_order,
               **resume.fingerprint(images.ids, (params, batch_stats)))
    done = resume.start(out_dir, run)
  todo = [k for k in host_chunks(len(bounds), jax.process_index(), jax.process_count())
          if k not in done]
  parts = run_chunks(step, (params, batch_stats), images, bounds, todo, batch_size, mesh,
                     out_dir, progress)
  if out_dir is None:
    return Scores(images.ids, parts["exit_scores"], parts.get("embeddings"))
  _sync("exfiqa-score-chunks")
  if jax.process_index() == 0:
    chunks = {k: resume.read_npz(resume.chunk_path(out_dir, k)) for k in range(len(bounds))}
    resume.write_scores(out_dir, images.ids, gather_in_order(chunks, len(bounds)))
  _sync("exfiqa-score-merged")
  return Scores.read(os.path.join(out_dir, resume.SCORES_FILE))

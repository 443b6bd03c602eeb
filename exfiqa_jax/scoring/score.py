"""Score every image of a source: all exit scores and, if asked, the embedding.

    scores = score(exfiqa_jax.load("ckpt")[1:], dataset.images, "runs/lfw")
    scores.exit_scores  # float32 [N, L]; scores.ids [N]; scores.embeddings [N, D]

Batches are split over this host's devices (`sharding.make_step`); the last
partial batch is padded and trimmed. Reading and decoding run on background
threads, ahead of the devices. With `out_dir`, results go to disk chunk by
chunk (format in `exfiqa_jax.scoring.run_folder`) and a restarted run continues where it
stopped; on several hosts each scores its own chunks and host 0 merges them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from exfiqa_jax.scoring import run_folder as resume
from exfiqa_jax.scoring.sharding import (
  AXIS,
  chunk_bounds,
  gather_in_order,
  host_chunks,
  local_mesh,
  make_step,
  pad_rows,
  replicate,
)

T = TypeVar("T")
R = TypeVar("R")


def prefetch(
  fn: Callable[[T], R], items: Iterable[T], depth: int = 4, workers: int = 2
) -> Iterator[tuple[T, R]]:
  """Yields (item, fn(item)) in order, computing up to `depth` ahead on `workers` threads.

  An exception raised by `fn` surfaces at its item, in order.
  """
  with ThreadPoolExecutor(max_workers=workers) as pool:
    queue: collections.deque = collections.deque()
    for item in items:
      queue.append((item, pool.submit(fn, item)))
      if len(queue) > depth:
        head, future = queue.popleft()
        yield head, future.result()
    while queue:
      head, future = queue.popleft()
      yield head, future.result()


def run_chunks(
  step,
  variables,
  images,
  bounds: list[tuple[int, int]],
  todo: list[int],
  batch_size: int,
  mesh,
  out_dir: str | None,
  progress: bool,
):
  """Scores chunks `todo` of `images` with `step(*variables, uint8 batch)`.

  Writes each finished chunk to `out_dir` (`resume.write_chunk`), or, with no
  `out_dir`, returns {"exit_scores", "embeddings"} of all chunks in order.
  """
  sharding = jax.NamedSharding(mesh, jax.P(AXIS))
  items = [
    (k, s, min(s + batch_size, bounds[k][1]), s + batch_size >= bounds[k][1])
    for k in todo
    for s in range(bounds[k][0], bounds[k][1], batch_size)
  ]

  def load(it):
    return jax.device_put(pad_rows(images.read(range(it[1], it[2])), batch_size), sharding)

  parts, rows = {}, []

  def finish(item, out, bar):
    k, s, e, last = item
    rows.append([np.asarray(o)[: e - s] for o in out if o is not None])
    bar.update(e - s)
    if last:
      names = ("exit_scores", "embeddings")[: len(rows[0])]
      arrays = {n: np.concatenate([r[i] for r in rows]) for i, n in enumerate(names)}
      rows.clear()
      if out_dir is None:
        parts[k] = arrays
      else:
        resume.write_chunk(out_dir, k, arrays)

  total = sum(b - a for a, b in (bounds[k] for k in todo))
  with tqdm(total=total, unit="img", disable=not progress, desc="scoring") as bar:
    pending = None
    for item, x in prefetch(load, items):
      out = step(*variables, x)  # dispatched; the previous batch is collected meanwhile
      if pending:
        finish(*pending, bar)
      pending = (item, out)
    if pending:
      finish(*pending, bar)
  return gather_in_order(parts, len(bounds)) if out_dir is None else None


if TYPE_CHECKING:
  from exfiqa_jax.data.sources import ImageSource


@dataclasses.dataclass(frozen=True)
class Scores:
  ids: np.ndarray  # [N] str
  exit_scores: np.ndarray  # [N, L] float32: exit 1..L
  embeddings: np.ndarray | None  # [N, D] float32, before L2 normalisation

  @classmethod
  def read(cls, path: str) -> "Scores":
    z = resume.read_npz(path, ["ids", "exit_scores"], optional=["embeddings"])
    return cls(z["ids"], z["exit_scores"], z.get("embeddings"))


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def score(
  variables,
  images: ImageSource,
  out_dir: str | None = None,
  *,
  batch_size: int = 32,
  chunk_size: int | None = None,
  num_layers: int | None = None,
  embedding: bool = True,
  dtype=jnp.float32,
  progress: bool = True,
  devices=None,
  replace: bool = False,
) -> Scores:
  """variables: (graphdef, params, batch_stats), e.g. `exfiqa_jax.load(path)[1:]`.

  `chunk_size` (default 32 batches) must be a multiple of `batch_size`, and
  `batch_size` a multiple of the number of local devices. replace: an `out_dir`
  holding another run is cleared of it instead of refused (`run_folder.start`).
  """
  graphdef, params, batch_stats = variables
  mesh = local_mesh(devices)
  chunk_size = chunk_size or 32 * batch_size
  if batch_size % mesh.size or chunk_size % batch_size:
    raise ValueError(
      f"batch_size {batch_size} must be a multiple of the {mesh.size} local "
      f"devices, and chunk_size {chunk_size} a multiple of batch_size"
    )
  if len(images) == 0:
    raise ValueError("no images to score")
  if out_dir is None and jax.process_count() > 1:
    raise ValueError("scoring on several hosts needs out_dir on a shared file system")
  step = make_step(
    graphdef,
    mesh,
    num_layers=num_layers,
    embedding=embedding,
    dtype=dtype,
    channel_order=images.channel_order,
  )
  params, batch_stats = replicate((params, batch_stats), mesh)
  bounds = chunk_bounds(len(images), chunk_size)
  done = set()
  if out_dir is not None:
    run = dict(
      num_images=len(images),
      chunk_size=chunk_size,
      batch_size=batch_size,
      num_layers=num_layers,
      embedding=embedding,
      dtype=jnp.dtype(dtype).name,
      channel_order=images.channel_order,
      content_id=getattr(images, "content_id", None),
      **resume.fingerprint(images.ids, (params, batch_stats)),
    )
    done = resume.start(out_dir, run, replace=replace)
  todo = [
    k for k in host_chunks(len(bounds), jax.process_index(), jax.process_count()) if k not in done
  ]
  parts = run_chunks(
    step, (params, batch_stats), images, bounds, todo, batch_size, mesh, out_dir, progress
  )
  if out_dir is None:
    return Scores(images.ids, parts["exit_scores"], parts.get("embeddings"))
  _sync("exfiqa-score-chunks")
  if jax.process_index() == 0:
    chunks = {k: resume.read_chunk(out_dir, k) for k in range(len(bounds))}
    resume.write_scores(out_dir, images.ids, gather_in_order(chunks, len(bounds)))
  _sync("exfiqa-score-merged")
  return Scores.read(os.path.join(out_dir, resume.SCORES_FILE))

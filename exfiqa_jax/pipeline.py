"""The batch loop: decode and transfer upcoming batches while the devices work."""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import jax
import numpy as np
from tqdm import tqdm

from exfiqa_jax import resume
from exfiqa_jax.sharding import AXIS, gather_in_order, pad_rows

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int = 4,
             workers: int = 2) -> Iterator[tuple[T, R]]:
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


def run_chunks(step, variables, images, bounds: list[tuple[int, int]], todo: list[int],
               batch_size: int, mesh, out_dir: str | None, progress: bool):
  """Scores chunks `todo` of `images` with `step(*variables, uint8 batch)`.

  Writes each finished chunk to `out_dir` (`resume.write_chunk`), or, with no
  `out_dir`, returns {"exit_scores", "embeddings"} of all chunks in order.
  """
  sharding = jax.NamedSharding(mesh, jax.P(AXIS))
  items = [(k, s, min(s + batch_size, bounds[k][1]), s + batch_size >= bounds[k][1])
           for k in todo for s in range(bounds[k][0], bounds[k][1], batch_size)]
  load = lambda it: jax.device_put(pad_rows(images.read(range(it[1], it[2])), batch_size),
                                   sharding)
  parts, rows = {}, []

  def finish(item, out, bar):
    k, s, e, last = item
    rows.append([np.asarray(o)[:e - s] for o in out if o is not None])
    bar.update(e - s)
    if last:
      names = ("exit_scores", "embeddings")[:len(rows[0])]
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

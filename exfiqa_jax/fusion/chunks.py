"""Many fused variants through the engine's compiled chunk function, in chunks
sized to a memory budget and scored on several threads at once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from exfiqa_jax.fusion.engine import prepare, score_chunk
from exfiqa_jax.fusion.rules import NORMS, RULES
from exfiqa_jax.metrics import PairSet
from exfiqa_jax.metrics.pairset import bucket


def chunk_size(ps: PairSet, memory_mb: float) -> int:
  """Variants per compiled call: a power of two whose working set fits memory_mb."""
  n, depth = ps.exits.shape
  per_variant = 4 * (4 * n * depth + 24 * ps.a.shape[0])  # fusion temporaries, pair arrays
  return 1 << max(0, int(memory_mb * 2**20 // per_variant).bit_length() - 1)


def parallelism() -> tuple[int, int]:
  """(threads, most variants per chunk). On the host: one thread per core (a
  compiled chunk keeps about one core busy: its sort runs on a single thread) and
  at most 32 variants (16-32 ran faster per variant than 128-256). On
  accelerators: one thread, chunks as large as memory allows."""
  if jax.default_backend() == "cpu":
    return os.cpu_count() or 1, 32
  return 1, 2**31


def score_variants(
  ps: PairSet, masks, weights, rule: str, norm: str = "none", memory_mb: float = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Areas of every variant: masks, weights [V, L] -> ([V, F], [V, K], [V, K]).

  Chunks run on `parallelism()` threads at once, memory_mb shared between them.
  """
  masks, weights = np.asarray(masks, bool), np.asarray(weights, np.float32)
  values, order = prepare(ps, NORMS.index(norm))
  (n, cap), v = parallelism(), len(masks)
  b = min(chunk_size(ps, memory_mb / n), bucket(v, 1), cap)
  pad = (-v) % b
  masks, weights = (
    np.r_[masks, masks[:1].repeat(pad, 0)],
    np.r_[weights, weights[:1].repeat(pad, 0)],
  )

  def run(i):
    return jax.device_get(
      score_chunk(ps, values, order, masks[i : i + b], weights[i : i + b], RULES.index(rule))
    )

  with ThreadPoolExecutor(n) as pool:
    parts = list(pool.map(run, range(0, len(masks), b)))
  return tuple(np.concatenate([p[j] for p in parts])[:v] for j in range(3))

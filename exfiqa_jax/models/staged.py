"""Staged (adaptive early-exit) inference: each image runs only the blocks its policy asks for.

    out = staged_apply(graphdef, params, batch_stats, images, policy)
    out.exits       # float32 [B, depth], NaN after the exit where the image stopped
    out.blocks_run  # int32 [B]: the exit after which each image stopped (a policy stage)
    out.quality     # float32 [B]: policy.quality of the exits each image ran

The blocks are cut at the policy's stages (exits 1..depth after which an image
may stop, e.g. 3, 6, 9, 12). A host loop runs, per stage [a, b), one compiled
program over the rows still running: tokens (first stage only), then blocks
a+1..b read in place from the one stacked tree of blocks (as `models.vit` does:
no slice of the stack is copied), with the quality head after every block. The
policy decides on the host which rows stop after exit b; their quality is
fixed, and the hidden states of the others are gathered into the smallest
bucket that holds them (a static size from `stage_buckets`, padding rows
copied from a real one and tagged -1), so under jit each stage compiles once
per bucket size, on any device.

Exact: on CPU every stage runs its rows in micro-batches of `CPU_MICRO_BATCH`
rows, the same shape `models.inference.apply` uses, with the same block body
(`ViTFIQA.tokens`, `Block`, `ViTFIQA.score`); rows never interact, so each
image's exits are bit for bit those of `apply` on any batch whose size is a
multiple of the micro-batch (at batches below it `apply` itself rounds
differently from one batch size to another: XLA's matmul blocking follows the
shape). Stage buckets on CPU are therefore multiples of the micro-batch.
Elsewhere the stage takes its bucket whole, as `apply` takes the batch.

Cost: a stage of s blocks over a bucket of r rows costs r * s blocks plus one
quality head per block and row; the gather between stages copies r hidden
states [N+1, D] (0.3 MB each at ViT-S, far below one block); each stage
waits for its exits on the host before the next is dispatched (on the 2-core
CPU, four stages in which no image stops ran 6% fewer images/s than the one
program of `apply`). Padding to a bucket: under a quarter of the rows still
running plus at most m - 1 rows on CPU, under 2x elsewhere. Compiled programs:
one per (stage, bucket) pair actually met, cached.

Work is counted inside the compiled programs: every row carries its image's
index (a tag, gathered with the hidden states), and each block iteration adds
one to a per-row counter, so `visits` [B] is how many blocks each image went
through as counted by the programs that ran, and `rows` the bucket of each stage.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from exfiqa_jax.models.inference import micro_batch_rows


class StopPolicy(Protocol):
  """What staged inference needs of a policy (`exfiqa_jax.adaptive.policy.Policy`)."""

  stages: tuple[int, ...]
  depth: int

  def stop(self, exits: np.ndarray, k: int) -> np.ndarray: ...

  def quality(self, exits: np.ndarray, k) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class StagedOutputs:
  """Per image of a batch of B, and per stage of the policy (S stages)."""

  exits: np.ndarray  # float32 [B, depth]: exits 1..blocks_run, NaN after
  blocks_run: np.ndarray  # int32 [B]: blocks (= the last exit) each image ran
  quality: np.ndarray  # float32 [B]: policy.quality(exits, blocks_run)
  visits: np.ndarray  # int32 [B]: blocks each image went through, counted by the programs
  rows: tuple[int, ...]  # [<= S]: the bucket (rows, padding included) each stage ran
  live: tuple[int, ...]  # [<= S]: the images among them (the rest is padding)
  block_calls: np.ndarray  # int64 [depth]: image rows block j ran, counted by the programs


def stage_buckets(batch: int, micro: int | None, buckets: Sequence[int] | None = None) -> list[int]:
  """The static row counts a stage may run at, for batches of `batch` images.

  `buckets` given: those below the batch, then the batch. Default: with
  micro-batches of m rows (CPU), multiples of m growing by at most 25% (16, 32,
  48, 64, 80, 112, ... : padding under a quarter plus m - 1 rows, and every
  bucket a whole number of micro-batches), then the batch rounded up to m;
  without (accelerators), powers of two below the batch, then the batch
  (padding under 2x, few programs to compile).
  """
  if batch < 1:
    raise ValueError(f"staged inference needs at least one image, got {batch}")
  unit, growth = (micro, 1.25) if micro else (1, 2.0)
  top = -(-batch // unit) * unit
  if buckets is not None:
    if any(int(s) % unit for s in buckets):
      raise ValueError(f"buckets {list(buckets)} must be multiples of the {unit}-row micro-batch")
    return sorted({int(s) for s in buckets if s < top} | {top})
  sizes = [unit]
  while sizes[-1] < top:
    grown = -(-int(sizes[-1] * growth) // unit) * unit
    sizes.append(min(max(sizes[-1] + unit, grown), top))
  return sizes


def _bucket(n: int, sizes: list[int]) -> int:
  return next(s for s in sizes if s >= n)


@functools.partial(
  jax.jit, static_argnames=("graphdef", "start", "stop", "dtype", "micro", "channel_order")
)
def run_stage(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  x: jax.Array,
  tags: jax.Array,
  *,
  start: int,
  stop: int,
  dtype=jnp.float32,
  micro: int | None = None,
  channel_order: str | None = None,
):
  """Blocks start+1..stop over r rows: one compiled program per (start, stop, r).

  x: the images [r, H, W, 3] when start == 0 (float in [-1, 1]; uint8 with
  `channel_order`, normalised here as `scoring.sharding.make_step` does), else
  hidden states [r, N+1, D] after block `start`; tags: int32 [r], the image
  index of each row (-1: padding). Returns (hidden states [r, N+1, D] after
  block `stop`, exits [r, stop - start] (exits start+1..stop), visits int32 [r]:
  blocks the row went through here, counted in the loop).
  """
  model = nnx.merge(graphdef, params, batch_stats)
  block_def, stacked = nnx.split(model.blocks)

  def run(args):
    h, tag = args
    if start == 0:
      if channel_order is not None:
        from exfiqa_jax.data.preprocess import normalize

        h = normalize(h, channel_order)
      h = model.tokens(h, dtype)

    def body(carry, i):  # block i read in place from the stack, as in ViTFIQA.__call__
      h, seen = carry
      h = nnx.merge(block_def, jax.tree.map(lambda a: a[i], stacked))(h, dtype)
      return (h, seen + 1), model.score(h, dtype)

    seen = jnp.zeros(tag.shape, jnp.int32)
    (h, seen), exits = jax.lax.scan(body, (h, seen), jnp.arange(start, stop))
    return h, exits.T, seen

  r = x.shape[0]
  if micro is None or r <= micro:
    return run((x, tags))
  if r % micro:
    raise ValueError(f"a stage of {r} rows is not a whole number of {micro}-row micro-batches")
  split = jax.tree.map(lambda a: a.reshape(r // micro, micro, *a.shape[1:]), (x, tags))
  out = jax.lax.map(run, split)
  return jax.tree.map(lambda a: a.reshape(r, *a.shape[2:]), out)


@jax.jit
def compact(h: jax.Array, tags: jax.Array, index: jax.Array, live: jax.Array):
  """Rows `index` [r'] of h [r, N+1, D] and tags [r]; rows where `live` is False get tag -1."""
  return jnp.take(h, index, axis=0), jnp.where(live, jnp.take(tags, index), -1)


def check_policy(policy: StopPolicy, depth: int) -> tuple[int, ...]:
  """The policy's stages, checked against the model's depth (one-line ValueError)."""
  stages = tuple(int(k) for k in policy.stages)
  if (
    int(policy.depth) != depth
    or not stages
    or stages[-1] != depth
    or stages[0] < 1
    or any(a >= b for a, b in zip(stages[:-1], stages[1:], strict=False))
  ):
    raise ValueError(
      f"policy stages {list(stages)} (depth {policy.depth}) do not fit a model of depth {depth}: "
      "they must increase within 1..depth and end at it"
    )
  return stages


def staged_apply(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images,
  policy: StopPolicy,
  *,
  dtype=jnp.float32,
  micro_batch: int | str | None = "auto",
  channel_order: str | None = None,
  buckets: Sequence[int] | None = None,
) -> StagedOutputs:
  """images: [B, H, W, 3] (float in [-1, 1], or uint8 with `channel_order`) -> StagedOutputs.

  Runs the policy's stages in order over the images still running (see the
  module docstring); an image stops after the first stage k where
  `policy.stop(its exits 1..k, k)` is True (always at the depth).
  """
  depth = graphdef_depth(graphdef, params)
  stages = check_policy(policy, depth)
  images = np.asarray(images) if not isinstance(images, jax.Array) else images
  b = images.shape[0]
  micro = micro_batch_rows(micro_batch)
  sizes = stage_buckets(b, micro, buckets)
  first = _bucket(b, sizes)
  x = images
  if first > b:
    pad = jnp.zeros((first - b, *images.shape[1:]), images.dtype)
    x = jnp.concatenate([jnp.asarray(images), pad])
  tags = jnp.asarray(np.r_[np.arange(b), np.full(first - b, -1)].astype(np.int32))
  exits = np.full((b, depth), np.nan, np.float32)
  blocks_run = np.zeros(b, np.int32)
  quality = np.zeros(b, np.float32)
  visits = np.zeros(b, np.int32)
  block_calls = np.zeros(depth, np.int64)
  alive = np.arange(b)  # the image of each live row, in row order
  rows, live, start = [], [], 0
  for k in stages:
    x, ex, seen = run_stage(
      graphdef,
      params,
      batch_stats,
      x,
      tags,
      start=start,
      stop=k,
      dtype=dtype,
      micro=micro,
      channel_order=channel_order if start == 0 else None,
    )
    ex, seen, tag_now = jax.device_get((ex, seen, tags))
    rows.append(int(ex.shape[0]))
    live.append(len(alive))
    real = tag_now >= 0
    np.add.at(visits, tag_now[real], seen[real])
    block_calls[start:k] += int(real.sum())
    n = len(alive)
    exits[alive, start:k] = ex[:n]
    done = np.ones(n, bool) if k == depth else np.asarray(policy.stop(exits[alive, :k], k), bool)
    if done.shape != (n,):
      raise ValueError(f"policy.stop returned shape {done.shape} for {n} images")
    if done.any():
      ended = alive[done]
      blocks_run[ended] = k
      quality[ended] = policy.quality(exits[ended], k)
    keep = np.flatnonzero(~done)
    if keep.size == 0:
      break
    r = _bucket(keep.size, sizes)
    if keep.size < n:  # else every row goes on, in place: nothing to gather
      index = np.r_[keep, np.full(r - keep.size, keep[0])].astype(np.int32)
      mask = np.arange(r) < keep.size
      x, tags = compact(x, tags, jnp.asarray(index), jnp.asarray(mask))
    alive, start = alive[keep], k
  return StagedOutputs(
    exits=exits,
    blocks_run=blocks_run,
    quality=quality,
    visits=visits,
    rows=tuple(rows),
    live=tuple(live),
    block_calls=block_calls,
  )


def graphdef_depth(graphdef: nnx.GraphDef, params: nnx.State) -> int:
  """The number of blocks: the leading axis of the stacked block parameters."""
  leaves = jax.tree.leaves(params["blocks"])
  return int(leaves[0].shape[0])

"""The pure evaluation path of every model kind: functions of `(params, batch_stats, images)`.

    model = create(get_model_config("vit_s"))          # or an FRConfig: the same path
    graphdef, params, batch_stats = split(model)
    out = apply(graphdef, params, batch_stats, images, num_layers=6, embedding=False)

`apply` is jit-compiled with `graphdef`, `num_layers`, `embedding`, `all_exits`,
`dtype` and `micro_batch` static, so it composes with `jax.vmap`, sharded inputs and `jax.jit`
callers; on concrete arrays the weights' own work (folding, casts, kernel transforms) is
computed once per weights and kept (`hoist.Prepared`). Each new batch size compiles a new
program (seconds for ViT-S); `apply_bucketed` pads batches to a few fixed sizes so a
stream of ragged batches compiles at most `len(buckets)` programs. The kind of a model
(`exfiqa_jax.models.registry`) gives its module, its input rule and its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from exfiqa_jax.backend import jit_options
from exfiqa_jax.models.hoist import Prepared, map_hoisted
from exfiqa_jax.models.registry import CPU_MICRO_BATCH, kind_of, kind_of_graph

Variables = tuple[nnx.GraphDef, nnx.State, nnx.State]
BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # at most 2x padding, at most 7 programs
# The ViT-FIQA options of `apply`, passed on to a model only when not at these defaults
# (a face-recognition backbone takes none of them).
OPTIONS = {"num_layers": None, "embedding": True, "all_exits": True}


def build(config: Any, seed: int = 0) -> nnx.Module:
  """The module of `config`'s kind, initialised eagerly (`create` compiles it instead)."""
  return kind_of(config).build(config, nnx.Rngs(seed))


def create(config: Any, seed: int = 0) -> nnx.Module:
  """A randomly initialised model of any kind (float32 parameters).

  Initialisation runs as one compiled program, unoptimised: it runs once, and
  XLA spends seconds optimising the random-number code of every initializer
  (eagerly, each initializer call compiles on its own).
  """

  def make():
    return nnx.split(build(config, seed))

  def params():
    return make()[1]

  graphdef, _ = nnx.eval_shape(make)
  init = (
    jax.jit(params)
    .lower()
    .compile(compiler_options=jit_options({"xla_backend_optimization_level": 0}))
  )
  return nnx.merge(graphdef, init())


def split(model: nnx.Module) -> Variables:
  """(graphdef, params, batch_stats) of a model."""
  return nnx.split(model, nnx.Param, nnx.BatchStat)


def abstract_variables(config: Any) -> Variables:
  """The same as `split(create(config))` as shapes only, allocating nothing."""
  return split(nnx.eval_shape(lambda: build(config)))


def micro_batch_rows(
  micro_batch: int | str | None = "auto", cpu_rows: int | None = CPU_MICRO_BATCH
) -> int | None:
  """Rows per pass through the model: "auto" means `cpu_rows` (the kind's; ViT-FIQA's is
  `CPU_MICRO_BATCH`) on CPU, else the whole batch (None); an int or None as given."""
  if micro_batch == "auto":
    return cpu_rows if jax.default_backend() == "cpu" else None
  return micro_batch


def forward(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images: jax.Array,
  *,
  num_layers: int | None = None,
  embedding: bool = True,
  all_exits: bool = True,
  dtype=jnp.float32,
  micro_batch: int | str | None = "auto",
  hoist: bool = True,
) -> Any:
  """`apply`'s computation, traceable (not itself jitted): see `apply`.

  `hoist=False` runs each micro-batch's whole call inside the `lax.map`, weight work
  included (the program before `hoist.map_hoisted`; for measurement)."""
  m = micro_batch_rows(micro_batch, kind_of_graph(graphdef).cpu_micro_batch)
  given = dict(num_layers=num_layers, embedding=embedding, all_exits=all_exits)
  options = {k: v for k, v in given.items() if v != OPTIONS[k]}

  def run(weights, x):
    return nnx.merge(graphdef, *weights)(x, dtype=dtype, **options)

  weights, b = (params, batch_stats), images.shape[0]
  if m is None or b <= m:
    return run(weights, images)
  n = b - b % m
  chunks = images[:n].reshape(n // m, m, *images.shape[1:])
  if hoist:
    head = map_hoisted(run, weights, chunks)
  else:
    head = jax.lax.map(lambda x: run(weights, x), chunks)
  head = jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), head)
  if n == b:
    return head
  return jax.tree.map(lambda h, t: jnp.concatenate([h, t]), head, run(weights, images[n:]))


STATIC = ("graphdef", "num_layers", "embedding", "all_exits", "dtype", "micro_batch", "hoist")
# `forward` as one jitted program: the path inside a caller's trace, and `apply(...,
# prepare=False)`.
apply_program = jax.jit(forward, static_argnames=STATIC)
_PREPARED: dict[tuple, Prepared] = {}


def apply(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images: jax.Array,
  *,
  num_layers: int | None = None,
  embedding: bool = True,
  all_exits: bool = True,
  dtype=jnp.float32,
  micro_batch: int | str | None = "auto",
  prepare: bool = True,
) -> Any:
  """images: float [B, H, W, 3], the kind's input (`Kind.prepare`) -> the model's output.

  ViT-FIQA: images in [-1, 1] -> Outputs (exits [B, k], quality [B], embedding [B, D]);
  `all_exits=False` computes the quality head once, after block k: exits [B, 1].
  Face recognition: -> embeddings float32 [B, D], before L2 normalisation (the
  ViT-FIQA options are refused). `micro_batch` rows go through the model at a
  time, in one program (`lax.map`); "auto" means the kind's CPU rows on CPU and
  the whole batch elsewhere; None, the whole batch. Rows never interact, so
  results agree to rounding.

  Compiled with `graphdef`, `num_layers`, `embedding`, `all_exits`, `dtype` and
  `micro_batch` static. What the network derives from its weights alone (BatchNorm
  folded into kernels, casts, Winograd kernel transforms) runs once before the
  micro-batches (`hoist.map_hoisted`), and on concrete arrays once per weights: two
  programs, the weights' part kept while the same weights are used again
  (`hoist.Prepared`), the same operations bit for bit. Inside a caller's jit or vmap,
  or with `prepare=False`, it is one program (traced into the caller's, or
  `apply_program`).
  """
  static = dict(
    num_layers=num_layers,
    embedding=embedding,
    all_exits=all_exits,
    dtype=dtype,
    micro_batch=micro_batch,
  )
  if not prepare:
    return apply_program(graphdef, params, batch_stats, images, **static)
  key = (graphdef, *static.items())
  if key not in _PREPARED:
    _PREPARED[key] = Prepared(
      lambda weights, x: forward(graphdef, *weights, x, **static)  # noqa: B023 (one per key)
    )
  return _PREPARED[key]((params, batch_stats), images)


def program_count() -> int:
  """Programs `apply` has compiled so far: one per call shape on either path (a prepared
  call's two programs count as one)."""
  return apply_program._cache_size() + sum(len(p.compiled) for p in _PREPARED.values())


def apply_bucketed(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images: np.ndarray,
  *,
  buckets: Sequence[int] = BUCKETS,
  **kwargs,
) -> Any:
  """`apply` on any batch size B, run in chunks padded to sizes taken from `buckets`.

  images: [B, H, W, 3] -> the outputs of B rows as host numpy arrays. Chunks are the
  largest bucket; the last is zero-padded to the smallest bucket that holds it,
  and the padded rows are dropped (rows never interact in inference mode).
  """
  images, top, outs = np.asarray(images), max(buckets), []
  if not len(images):
    raise ValueError("apply_bucketed: empty batch of images")
  for start in range(0, len(images), top):
    chunk = images[start : start + top]
    size = min(s for s in buckets if s >= len(chunk))
    padded = np.pad(chunk, [(0, size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
    out = jax.device_get(apply(graphdef, params, batch_stats, padded, **kwargs))
    outs.append(jax.tree.map(lambda a, n=len(chunk): a[:n], out))
  return jax.tree.map(lambda *a: np.concatenate(a), *outs)

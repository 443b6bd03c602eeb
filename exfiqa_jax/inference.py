"""The pure evaluation path: functions of `(params, batch_stats, images)`.

    model = create(get_model_config("vit_s"))
    graphdef, params, batch_stats = split(model)
    out = apply(graphdef, params, batch_stats, images, num_layers=6, embedding=False)

`apply` is jit-compiled with `graphdef`, `num_layers`, `embedding` and `dtype`
static, so it composes with `jax.vmap`, sharded inputs and `jax.jit` callers.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.config import ViTConfig
from exfiqa_jax.model import Outputs, ViTFIQA

Variables = tuple[nnx.GraphDef, nnx.State, nnx.State]


def create(config: ViTConfig, seed: int = 0) -> ViTFIQA:
  """A randomly initialised model (float32 parameters)."""
  return ViTFIQA(config, rngs=nnx.Rngs(seed))


def split(model: ViTFIQA) -> Variables:
  """(graphdef, params, batch_stats) of a model."""
  return nnx.split(model, nnx.Param, nnx.BatchStat)


def abstract_variables(config: ViTConfig) -> Variables:
  """The same as `split(create(config))` as shapes only, allocating nothing."""
  return split(nnx.eval_shape(lambda: create(config)))


@functools.partial(jax.jit, static_argnames=("graphdef", "num_layers", "embedding", "dtype"))
def apply(graphdef: nnx.GraphDef, params: nnx.State, batch_stats: nnx.State,
          images: jax.Array, *, num_layers: int | None = None, embedding: bool = True,
          dtype=jnp.float32) -> Outputs:
  """images: float [B, H, W, 3] in [-1, 1] -> Outputs (exits [B, k], quality [B], embedding)."""
  model = nnx.merge(graphdef, params, batch_stats)
  return model(images, num_layers=num_layers, embedding=embedding, dtype=dtype)

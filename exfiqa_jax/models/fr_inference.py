"""The pure evaluation path of the face-recognition backbones.

    config = FRConfig.for_family("arcface")
    graphdef, params, batch_stats = abstract_fr_variables(config)   # shapes; or create_fr
    emb = apply_fr(graphdef, params, batch_stats, fr_input(images_uint8, "rgb", config))

`apply_fr` is jit-compiled with `graphdef` and `dtype` static; every row is
independent (BatchNorm uses running statistics), so padding or sharding the
batch changes no row. The embedding is the network's raw output, before L2
normalisation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.backend import jit_options
from exfiqa_jax.data.preprocess import check_channel_order
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.iresnet import IResNet
from exfiqa_jax.models.irse import IRBackbone

Variables = tuple[nnx.GraphDef, nnx.State, nnx.State]


def build(config: FRConfig, rngs: nnx.Rngs) -> IResNet | IRBackbone:
  return (IResNet if config.arch == "iresnet" else IRBackbone)(config, rngs=rngs)


def abstract_fr_variables(config: FRConfig) -> Variables:
  """(graphdef, params, batch_stats) as shapes only, allocating nothing."""
  model = nnx.eval_shape(lambda: build(config, nnx.Rngs(0)))
  return nnx.split(model, nnx.Param, nnx.BatchStat)


def create_fr(config: FRConfig, seed: int = 0) -> Variables:
  """Randomly initialised variables (float32), initialised in one unoptimised program."""

  def params():
    return nnx.split(build(config, nnx.Rngs(seed)), nnx.Param, nnx.BatchStat)[1:]

  graphdef = abstract_fr_variables(config)[0]
  init = (
    jax.jit(params)
    .lower()
    .compile(compiler_options=jit_options({"xla_backend_optimization_level": 0}))
  )
  return (graphdef, *init())


def fr_input(
  images: jax.Array, stored_order: str, config: FRConfig, model_order: str | None = None
):
  """uint8 [B, S, S, 3] stored in `stored_order` -> the network's float32 input.

  Channels are swapped when the stored order differs from the one the network
  takes (`model_order`, default the family's); then scaled as the release's
  evaluation did: (x / 255 - 0.5) / 0.5 ("half"), x / 255 ("unit"), or (x - 127.5) * 0.0078125
  ("mxnet", inside the graph of insightface's MXNet models). Traceable.
  """
  model_order = model_order or config.channel_order
  check_channel_order(stored_order)
  check_channel_order(model_order)
  x = images.astype(jnp.float32)
  if stored_order != model_order:
    x = x[..., ::-1]
  if config.input_scale == "mxnet":
    return (x - 127.5) * 0.0078125
  return (x / 255.0 - 0.5) / 0.5 if config.input_scale == "half" else x / 255.0


@functools.partial(jax.jit, static_argnames=("graphdef", "dtype"))
def apply_fr(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images: jax.Array,
  *,
  dtype=jnp.float32,
) -> jax.Array:
  """images: float32 [B, S, S, 3] (see `fr_input`) -> embeddings float32 [B, D]."""
  return nnx.merge(graphdef, params, batch_stats)(images, dtype)

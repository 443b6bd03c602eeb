"""Where the quality token looks: its attention over the patches at every block."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnames=("graphdef", "dtype"))
def attention_and_exits(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  batch_stats: nnx.State,
  images: jax.Array,
  dtype=jnp.float32,
) -> tuple[jax.Array, jax.Array]:
  """images: [B, H, W, 3] in [-1, 1] -> (attention of token 0 over the patches
  [B, L, heads, N], the quality score at each exit [B, L]), in one pass; dtype: the
  matmul dtype (bfloat16 accumulates in float32, as `apply`).

  Each attention row is the softmax over all N+1 keys restricted to the N patch
  keys, so a row sums to one minus the token's attention to itself.
  """
  model = nnx.merge(graphdef, params, batch_stats)
  block_def, stacked = nnx.split(model.blocks)

  def body(x, block_state):
    block = nnx.merge(block_def, block_state)
    attn, _ = block.attn.weights(block.norm1(x), dtype)  # [B, heads, N+1, N+1]
    x = block(x, dtype)
    return x, (attn[:, :, 0, 1:], model.score(x, dtype))

  _, (rows, exits) = jax.lax.scan(body, model.tokens(images, dtype), stacked)  # [L, B, ...]
  return jnp.swapaxes(rows, 0, 1), exits.T


def quality_token_attention(
  graphdef: nnx.GraphDef, params: nnx.State, batch_stats: nnx.State, images: jax.Array
) -> jax.Array:
  """images: [B, H, W, 3] in [-1, 1] -> attention of token 0 over patches [B, L, heads, N]."""
  return attention_and_exits(graphdef, params, batch_stats, images)[0]

"""ViT-FIQA ("token" mode) with scanned blocks and every early exit in one pass.

Parameter paths keep PyTorch's names (`patch_embed/proj`, `qs_token`,
`pos_embed`, `blocks/attn/qkv`, `norm`, `feature/0`, `head_qs/1`, ...), so the
converter only renames and transposes. `blocks` is one stacked tree with the
layer axis first; exit k (SPEC section 2) is the quality token after block k
through the shared final `norm` and `head_qs`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.block import Block
from exfiqa_jax.config import ViTConfig
from exfiqa_jax.layers import F32, Dense, batch_norm, layer_norm, matmul


class Outputs(NamedTuple):
  exits: jax.Array  # [B, k]: quality score after each of blocks 1..k ([B, 1]: k only)
  quality: jax.Array  # [B]: the last exit, exits[:, -1]
  embedding: jax.Array | None  # [B, D] before L2 normalisation, or None


class PatchEmbed(nnx.Module):
  """Conv2d(3, D, kernel=stride=p, no padding) as a matmul over patches."""

  def __init__(self, patch: int, width: int, *, rngs: nnx.Rngs):
    self.patch = patch
    init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3)
    self.proj = nnx.Dict(kernel=nnx.Param(init(rngs.params(), (patch, patch, 3, width), F32)),
                         bias=nnx.Param(jnp.zeros((width,), F32)))

  def __call__(self, images: jax.Array, dtype=F32) -> jax.Array:
    """images: [B, H, W, 3] -> tokens [B, N, D], row-major over the patch grid."""
    b, h, w, c = images.shape
    p, gh, gw = self.patch, h // self.patch, w // self.patch
    x = images[:, :gh * p, :gw * p].reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
    kernel = self.proj["kernel"][...].reshape(p * p * c, -1)  # (kh, kw, c) flattened like x
    x = matmul(x.reshape(b, gh * gw, p * p * c), kernel, dtype)
    return x + self.proj["bias"][...]


class ViTFIQA(nnx.Module):
  """images: [B, H, W, 3] normalised to [-1, 1] -> `Outputs`."""

  def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
    self.config = config
    d, n = config.width, config.num_patches
    init = nnx.initializers.truncated_normal(0.02)
    self.patch_embed = PatchEmbed(config.patch_size, d, rngs=rngs)
    self.qs_token = nnx.Param(init(rngs.params(), (1, 1, d), F32))
    self.pos_embed = nnx.Param(init(rngs.params(), (1, n + 1, d), F32))
    make = lambda key: Block(d, config.num_heads, config.mlp_dim, rngs=nnx.Rngs(key))
    self.blocks = nnx.vmap(make)(jax.random.split(rngs.params(), config.depth))
    self.norm = layer_norm(d, rngs)
    self.feature = nnx.List([Dense(n * d, d, use_bias=False, rngs=rngs), batch_norm(d, rngs),
                             Dense(d, d, use_bias=False, rngs=rngs), batch_norm(d, rngs)])
    self.head_qs = nnx.List([batch_norm(d, rngs), Dense(d, 1, use_bias=False, rngs=rngs)])

  def tokens(self, images: jax.Array, dtype=F32) -> jax.Array:
    """images: [B, H, W, 3] -> [B, N+1, D], quality token first."""
    x = self.patch_embed(images, dtype)
    qs = jnp.broadcast_to(self.qs_token[...], (x.shape[0], 1, x.shape[2]))
    return jnp.concatenate([qs, x], axis=1) + self.pos_embed[...]

  def score(self, x: jax.Array, dtype=F32) -> jax.Array:
    """Quality head on token 0 after the final norm; x: [B, N+1, D] -> [B]."""
    bn, fc = self.head_qs
    return fc(bn(self.norm(x[:, 0])), dtype)[:, 0]

  def embed(self, x: jax.Array, dtype=F32) -> jax.Array:
    """Embedding head on the patch tokens, flattened token-major; -> [B, D]."""
    fc1, bn1, fc2, bn2 = self.feature
    y = self.norm(x[:, 1:]).reshape(x.shape[0], -1)
    return bn2(fc2(bn1(fc1(y, dtype)), dtype))

  def __call__(self, images: jax.Array, *, num_layers: int | None = None,
               embedding: bool = True, all_exits: bool = True, dtype=F32) -> Outputs:
    k = self.config.depth if num_layers is None else num_layers
    if not 1 <= k <= self.config.depth:
      raise ValueError(f"num_layers={k} is outside 1..{self.config.depth}")
    graphdef, stacked = nnx.split(self.blocks)

    def body(x, i):  # block i read in place: early exit copies no slice of the stack
      x = nnx.merge(graphdef, jax.tree.map(lambda a: a[i], stacked))(x, dtype)
      return x, self.score(x, dtype) if all_exits else None

    x, exits = jax.lax.scan(body, self.tokens(images, dtype), jnp.arange(k))  # exits: [k, B]
    exits = exits if all_exits else self.score(x, dtype)[None]  # or [1, B]: exit k only
    emb = self.embed(x, dtype) if embedding else None
    return Outputs(exits=exits.T, quality=exits[-1], embedding=emb)

"""Analytic cost of ViT-FIQA per image (one multiply-add = 2 FLOP)."""

from __future__ import annotations

from exfiqa_jax.models.config import ViTConfig


def block_flops(c: ViTConfig) -> int:
  """One transformer block: qkv, attention scores and sum, proj, MLP."""
  t, d = c.num_patches + 1, c.width
  return 2 * (t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * c.mlp_dim)


def patch_embed_flops(c: ViTConfig) -> int:
  return 2 * c.num_patches * c.patch_size**2 * 3 * c.width


def head_qs_flops(c: ViTConfig) -> int:
  return 2 * c.width


def embedding_head_flops(c: ViTConfig) -> int:
  return 2 * (c.num_patches * c.width * c.width + c.width * c.width)


def exit_gflops(c: ViTConfig) -> list[float]:
  """GFLOPs to produce exit k alone (quality only), k = 1..depth."""
  return [
    (patch_embed_flops(c) + k * block_flops(c) + head_qs_flops(c)) / 1e9
    for k in range(1, c.depth + 1)
  ]

"""Analytic cost per image (one multiply-add = 2 FLOP): ViT-FIQA per exit and for a
full pass, and the face-recognition backbones."""

from __future__ import annotations

from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.fr_config import FRConfig


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


def full_pass_gflops(config: ViTConfig) -> float:
  """GFLOP per image of one full pass: every block, every exit, the embedding head."""
  extra = embedding_head_flops(config) + (config.depth - 1) * head_qs_flops(config)
  return exit_gflops(config)[-1] + extra / 1e9


def fr_gflops(config: FRConfig) -> float:
  """GFLOP per image (2 per multiply-add) of a face-recognition backbone's convolutions
  and fc; BatchNorm, PReLU and the residual adds (under 1%) are not counted."""
  macs, size, din = (
    3 * config.stem_width * 9 * config.image_size**2,
    config.image_size,
    config.stem_width,
  )
  for n, width in zip(config.layers, config.widths, strict=True):
    for i in range(n):
      cin, out = (din, size // 2) if i == 0 else (width, size // 2)
      macs += cin * width * 9 * (size if i == 0 else out) ** 2  # conv1, stride 1
      macs += width * width * 9 * out**2  # conv2, the block's stride
      if i == 0 and (config.arch == "iresnet" or din != width):
        macs += din * width * out**2  # 1x1 shortcut
    size, din = size // 2, width
  macs += config.fc_inputs * config.embedding_size
  return 2 * macs / 1e9

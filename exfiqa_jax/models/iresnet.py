"""The insightface iResNet (ArcFace `arcface_torch`, ElasticFace, MagFace) in Flax NNX.

Names are PyTorch's (`conv1`, `bn1`, `prelu`, `layer{s}/{i}/bn1|conv1|bn2|prelu|
conv2|bn3|downsample/0|1`, `bn2`, `fc`, `features`), so the converter only
renames leaves and transposes. Two things differ from the PyTorch layout:
convolutions run NHWC, and the fc kernel reads the final map flattened NHWC
(h, w, c); PyTorch flattens NCHW (c, h, w), so the converter permutes its rows.
Dropout (before the fc) is the identity at inference and has no parameters.
"""

from __future__ import annotations

import jax
from einops import rearrange
from flax import nnx

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.layers import F32, Dense, PReLU, batch_norm, conv1x1, conv3x3, conv_bn


class IBasicBlock(nnx.Module):
  """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the shortcut.

  x: [B, H, W, din] -> [B, H/stride, W/stride, dout]; the shortcut is
  conv1x1(stride) + BN when the block has a `downsample`, else x itself.
  """

  def __init__(self, din: int, dout: int, stride: int, eps: float, *, rngs: nnx.Rngs):
    self.bn1 = batch_norm(din, rngs, eps)
    self.conv1 = conv3x3(din, dout, 1, rngs)
    self.bn2 = batch_norm(dout, rngs, eps)
    self.prelu = PReLU(dout)
    self.conv2 = conv3x3(dout, dout, stride, rngs)
    self.bn3 = batch_norm(dout, rngs, eps)
    # PyTorch adds the downsample when stride != 1 or the width changes.
    self.downsample = (
      nnx.List([conv1x1(din, dout, stride, rngs), batch_norm(dout, rngs, eps)])
      if stride != 1 or din != dout
      else None
    )

  def __call__(self, x: jax.Array, dtype=F32, fold_bn: bool = True) -> jax.Array:
    """`fold_bn`: bn2, bn3 and the downsample's BN folded into the convolutions before
    them (`layers.Conv`); bn1 precedes its convolution and stays (its shift would
    also move the zero padding)."""
    out = conv_bn(self.conv1, self.bn2, self.bn1(x), dtype, fold_bn)
    out = conv_bn(self.conv2, self.bn3, self.prelu(out), dtype, fold_bn)
    if self.downsample is None:
      return out + x
    conv, bn = self.downsample
    return out + conv_bn(conv, bn, x, dtype, fold_bn)


class IResNet(nnx.Module):
  """images: float32 [B, S, S, 3], normalised as the family's release did -> [B, D].

  stem conv3x3 + BN + PReLU; stages of IBasicBlocks (first block stride 2);
  BN2d -> flatten -> Linear (with bias) -> BatchNorm1d (its trained weight kept).
  """

  def __init__(self, config: FRConfig, *, rngs: nnx.Rngs):
    eps = config.bn_eps
    self.conv1 = conv3x3(3, config.stem_width, 1, rngs)
    self.bn1 = batch_norm(config.stem_width, rngs, eps)
    self.prelu = PReLU(config.stem_width)
    din = config.stem_width
    for s, (n, width) in enumerate(zip(config.layers, config.widths, strict=True)):
      blocks = [IBasicBlock(din, width, 2, eps, rngs=rngs)]
      blocks += [IBasicBlock(width, width, 1, eps, rngs=rngs) for _ in range(n - 1)]
      setattr(self, f"layer{s + 1}", nnx.List(blocks))
      din = width
    self.num_stages = len(config.layers)
    self.bn2 = batch_norm(din, rngs, eps)
    self.fc = Dense(config.fc_inputs, config.embedding_size, rngs=rngs)
    self.features = batch_norm(config.embedding_size, rngs, eps)

  def __call__(self, images: jax.Array, dtype=F32, fold_bn: bool = True) -> jax.Array:
    """`fold_bn=False` applies every BatchNorm on its own (the PyTorch order of operations)."""
    x = self.prelu(conv_bn(self.conv1, self.bn1, images, dtype, fold_bn))
    for s in range(self.num_stages):
      for block in getattr(self, f"layer{s + 1}"):
        x = block(x, dtype, fold_bn)
    x = rearrange(self.bn2(x), "b h w c -> b (h w c)")  # NHWC order; PyTorch's is (c h w)
    return self.features(self.fc(x, dtype))

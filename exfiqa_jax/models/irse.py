"""CurricularFace's IR backbone (`backbone/model_irse.py`, mode "ir": IR-50/101/152) in Flax NNX.

Names are PyTorch's: `input_layer/0|1|2` (conv, BN, PReLU), `body/{n}/
shortcut_layer/0|1` and `body/{n}/res_layer/0..4` (BN, conv, PReLU, conv, BN),
`output_layer/0|3|4` (BN2d, Linear, BatchNorm1d without affine parameters;
entries 1 and 2 are Dropout and Flatten, without parameters). Blocks are
numbered through all stages, as in PyTorch's flat `body` Sequential.

Differences from the iResNet block: no BatchNorm between the first conv and
the PReLU, and a block whose width does not change takes `MaxPool2d(1,
stride)` as its shortcut: a 1x1 max pool is a plain subsampling, x[::s, ::s].
The release's forward returns (embedding, flattened conv features); only the
embedding is computed here. BatchNorm eps: PyTorch's default 1e-5 throughout.
"""

from __future__ import annotations

import jax
from einops import rearrange
from flax import nnx

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.layers import F32, Dense, PReLU, batch_norm, conv1x1, conv3x3, conv_bn


class BottleneckIR(nnx.Module):
  """x: [B, H, W, din] -> [B, H/stride, W/stride, dout]."""

  def __init__(self, din: int, dout: int, stride: int, eps: float, *, rngs: nnx.Rngs):
    self.stride = stride
    self.shortcut_layer = (
      None
      if din == dout
      else nnx.List([conv1x1(din, dout, stride, rngs), batch_norm(dout, rngs, eps)])
    )
    self.res_layer = nnx.List(
      [
        batch_norm(din, rngs, eps),
        conv3x3(din, dout, 1, rngs),
        PReLU(dout),
        conv3x3(dout, dout, stride, rngs),
        batch_norm(dout, rngs, eps),
      ]
    )

  def __call__(self, x: jax.Array, dtype=F32, fold_bn: bool = True) -> jax.Array:
    """`fold_bn`: the BN after conv2 and the shortcut's BN folded into their
    convolutions (`layers.Conv`); the first BN precedes its convolution and stays."""
    if self.shortcut_layer is None:
      shortcut = x[:, :: self.stride, :: self.stride]  # MaxPool2d(kernel 1, stride)
    else:
      conv, bn = self.shortcut_layer
      shortcut = conv_bn(conv, bn, x, dtype, fold_bn)
    bn1, conv1, prelu, conv2, bn2 = self.res_layer
    out = prelu(conv1(bn1(x), dtype))
    return conv_bn(conv2, bn2, out, dtype, fold_bn) + shortcut


class IRBackbone(nnx.Module):
  """images: float32 [B, S, S, 3] in [-1, 1] (RGB in the release) -> [B, D]."""

  def __init__(self, config: FRConfig, *, rngs: nnx.Rngs):
    eps, stem = config.bn_eps, config.stem_width
    self.input_layer = nnx.List(
      [conv3x3(3, stem, 1, rngs), batch_norm(stem, rngs, eps), PReLU(stem)]
    )
    blocks, din = [], stem
    for n, width in zip(config.layers, config.widths, strict=True):
      blocks.append(BottleneckIR(din, width, 2, eps, rngs=rngs))
      blocks += [BottleneckIR(width, width, 1, eps, rngs=rngs) for _ in range(n - 1)]
      din = width
    self.body = nnx.List(blocks)
    self.output_layer = nnx.List(
      [
        batch_norm(din, rngs, eps),
        None,  # Dropout(0.4): the identity at inference
        None,  # Flatten
        Dense(config.fc_inputs, config.embedding_size, rngs=rngs),
        batch_norm(config.embedding_size, rngs, eps, affine=False),
      ]
    )

  def __call__(self, images: jax.Array, dtype=F32, fold_bn: bool = True) -> jax.Array:
    """`fold_bn=False` applies every BatchNorm on its own (the PyTorch order of operations)."""
    conv, bn, prelu = self.input_layer
    x = prelu(conv_bn(conv, bn, images, dtype, fold_bn))
    for block in self.body:
      x = block(x, dtype, fold_bn)
    bn2d, _, _, fc, bn1d = self.output_layer
    x = rearrange(bn2d(x), "b h w c -> b (h w c)")  # NHWC order; PyTorch's is (c h w)
    return bn1d(fc(x, dtype))

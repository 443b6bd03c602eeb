"""Convolutional building blocks of the face-recognition backbones, in Flax NNX, NHWC.

PyTorch defaults, stated where they differ from Flax's:
- `nn.Conv2d(k=3, padding=1)` pads one pixel on every side, whatever the
  stride; Flax's "SAME" pads stride-2 convolutions asymmetrically (0 before,
  1 after on even sizes) and would shift every stride-2 output by a pixel.
  Padding here is always explicit and symmetric.
- `nn.PReLU(C)` has one slope per channel (initialised 0.25); `nnx.PReLU` one
  scalar. The slope is kept under PyTorch's name, `weight`.
- `nn.BatchNorm2d/1d` eps defaults to 1e-5 (Flax: 1e-5 too), momentum 0.1
  (Flax's 0.9 means the same; unused at inference); each family sets its eps.
Convolutions take their inputs in the compute `dtype` and accumulate in
float32 (`preferred_element_type`); BatchNorm and PReLU run in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.models.layers import F32


class Conv(nnx.Module):
  """`nn.Conv2d(din, dout, k, stride, padding, bias=False)`; kernel [k, k, din, dout] (HWIO)."""

  def __init__(self, din: int, dout: int, k: int, stride: int, padding: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3)
    self.kernel = nnx.Param(init(rngs.params(), (k, k, din, dout), F32))
    self.stride, self.padding = stride, padding

  def __call__(self, x: jax.Array, dtype=F32) -> jax.Array:
    """x: [B, H, W, din] -> float32 [B, H', W', dout]."""
    p = self.padding
    return jax.lax.conv_general_dilated(
      x.astype(dtype),
      self.kernel[...].astype(dtype),
      window_strides=(self.stride, self.stride),
      padding=((p, p), (p, p)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      preferred_element_type=F32,
    )


def conv3x3(din: int, dout: int, stride: int, rngs: nnx.Rngs) -> Conv:
  return Conv(din, dout, 3, stride, 1, rngs=rngs)  # PyTorch padding=1, not "SAME"


def conv1x1(din: int, dout: int, stride: int, rngs: nnx.Rngs) -> Conv:
  return Conv(din, dout, 1, stride, 0, rngs=rngs)


class PReLU(nnx.Module):
  """`nn.PReLU(C)`: x if x >= 0 else weight[c] * x, one slope per channel (last axis)."""

  def __init__(self, channels: int):
    self.weight = nnx.Param(jnp.full((channels,), 0.25, F32))  # PyTorch's initial slope

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, self.weight[...] * x)


def batch_norm(channels: int, eps: float, rngs: nnx.Rngs, affine: bool = True) -> nnx.BatchNorm:
  """BatchNorm2d (over the last, channel axis of NHWC) or BatchNorm1d in inference mode.

  `affine=False` is `nn.BatchNorm1d(C, affine=False)`: running statistics only.
  """
  return nnx.BatchNorm(
    channels,
    epsilon=eps,
    momentum=0.9,
    use_running_average=True,
    use_fast_variance=False,
    use_scale=affine,
    use_bias=affine,
    rngs=rngs,
  )

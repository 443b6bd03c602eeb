"""Building blocks of every network here (ViT-FIQA and the face-recognition backbones),
in Flax NNX, named as in the PyTorch code.

Matmuls and convolutions take their inputs in the compute `dtype` and accumulate
in float32 (`preferred_element_type`), so bfloat16 is fast on CPU and GPU alike;
every activation between them, the norms, PReLU and the softmax stay float32.

PyTorch defaults, stated where they differ from Flax's:
- `nn.LayerNorm` eps 1e-5 (Flax: 1e-6); variance two-pass, as PyTorch computes it.
- `nn.Conv2d(k=3, padding=1)` pads one pixel on every side, whatever the
  stride; Flax's "SAME" pads stride-2 convolutions asymmetrically (0 before,
  1 after on even sizes) and would shift every stride-2 output by a pixel.
  Padding here is always explicit and symmetric.
- `nn.PReLU(C)` has one slope per channel (initialised 0.25); `nnx.PReLU` one
  scalar. The slope is kept under PyTorch's name, `weight`.
- `nn.BatchNorm2d/1d` eps defaults to 1e-5 (Flax: 1e-5 too), momentum 0.1
  (Flax's 0.9 means the same; unused at inference); ViT-FIQA sets 2e-5, each
  face-recognition family its own.

Inference-time BatchNorm folding: a BatchNorm that directly follows a
convolution is applied as that convolution's per-channel kernel scale and bias
(`Conv.__call__(x, dtype, bn=...)`), computed in float32 from the stored
parameters at trace time (the stored tree is unchanged). It saves one pass over
the activation per folded BatchNorm; the outputs differ from the unfolded
order of operations by float32 rounding only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

F32 = jnp.float32
LN_EPS = 1e-5  # PyTorch nn.LayerNorm default; Flax's default is 1e-6.
BN_EPS = 2e-5  # ViT-FIQA's BatchNorm1d eps; both frameworks default to 1e-5.


def matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  """x: [..., I] @ w: [I, O] -> float32 [..., O], inputs cast to `dtype`."""
  return jnp.einsum("...i,io->...o", x.astype(dtype), w.astype(dtype), preferred_element_type=F32)


class Dense(nnx.Module):
  """PyTorch `nn.Linear` with the kernel stored transposed, [in, out]."""

  def __init__(self, din: int, dout: int, *, use_bias: bool = True, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (din, dout), F32))
    self.bias = nnx.Param(jnp.zeros((dout,), F32)) if use_bias else None

  def __call__(self, x: jax.Array, dtype=F32) -> jax.Array:
    y = matmul(x, self.kernel[...], dtype)
    return y if self.bias is None else y + self.bias[...]


def layer_norm(din: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Two-pass variance, as PyTorch computes it.
  return nnx.LayerNorm(din, epsilon=LN_EPS, use_fast_variance=False, rngs=rngs)


def batch_norm(din: int, rngs: nnx.Rngs, eps: float = BN_EPS, affine: bool = True):
  """BatchNorm1d/2d (over the last, channel axis) in inference mode: running statistics.

  `eps` defaults to ViT-FIQA's 2e-5 (not PyTorch's 1e-5); `affine=False` is
  `nn.BatchNorm1d(C, affine=False)`: running statistics only. Momentum is unused
  at inference; Flax's momentum is 1 - PyTorch's (0.1).
  """
  return nnx.BatchNorm(
    din,
    epsilon=eps,
    momentum=0.9,
    use_running_average=True,
    use_fast_variance=False,
    use_scale=affine,
    use_bias=affine,
    rngs=rngs,
  )


def bn_affine(bn: nnx.BatchNorm) -> tuple[jax.Array, jax.Array]:
  """An inference-mode BatchNorm as y = x * scale + shift; float32 [C] each."""
  scale = jax.lax.rsqrt(bn.var[...] + bn.epsilon)
  if bn.scale is not None:
    scale = scale * bn.scale[...]
  shift = -bn.mean[...] * scale
  if bn.bias is not None:
    shift = shift + bn.bias[...]
  return scale, shift


class Conv(nnx.Module):
  """`nn.Conv2d(din, dout, k, stride, padding, bias=False)`; kernel [k, k, din, dout] (HWIO)."""

  def __init__(self, din: int, dout: int, k: int, stride: int, padding: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3)
    self.kernel = nnx.Param(init(rngs.params(), (k, k, din, dout), F32))
    self.stride, self.padding = stride, padding

  def __call__(self, x: jax.Array, dtype=F32, bn: nnx.BatchNorm | None = None) -> jax.Array:
    """x: [B, H, W, din] -> float32 [B, H', W', dout]; then `bn` (folded) if given."""
    p, kernel = self.padding, self.kernel[...]
    if bn is not None:
      scale, shift = bn_affine(bn)
      kernel = kernel * scale  # per output channel, the last kernel axis
    y = jax.lax.conv_general_dilated(
      x.astype(dtype),
      kernel.astype(dtype),
      window_strides=(self.stride, self.stride),
      padding=((p, p), (p, p)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      preferred_element_type=F32,
    )
    return y if bn is None else y + shift


def conv_bn(conv: Conv, bn: nnx.BatchNorm, x: jax.Array, dtype=F32, fold: bool = True):
  """`bn(conv(x))`, the BatchNorm folded into the convolution when `fold`."""
  return conv(x, dtype, bn=bn) if fold else bn(conv(x, dtype))


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

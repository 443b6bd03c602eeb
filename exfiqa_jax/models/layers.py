"""Building blocks of ViT-FIQA in Flax NNX, named as in the PyTorch code.

Matmuls take their inputs in the compute `dtype` and accumulate in float32
(`preferred_element_type`), so bfloat16 is fast on CPU and GPU alike; every
activation between matmuls, the norms and the softmax stay float32.
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


def batch_norm(din: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """BatchNorm1d in inference mode: running statistics, eps 2e-5 (not 1e-5)."""
  # momentum is unused at inference; Flax's momentum is 1 - PyTorch's (0.1).
  return nnx.BatchNorm(
    din, epsilon=BN_EPS, momentum=0.9, use_running_average=True, use_fast_variance=False, rngs=rngs
  )

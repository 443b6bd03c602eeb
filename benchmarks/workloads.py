"""What the benchmarks run: the reference model with its weights in Flax, and matmul peaks."""

from __future__ import annotations

import time

import common  # noqa: F401  (puts the repository root on sys.path)
import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax import ViTConfig, abstract_variables
from exfiqa_jax.models.flops import embedding_head_flops, exit_gflops, head_qs_flops


def reference_pair(config: ViTConfig, seed: int = 0):
  """(PyTorch reference in eval mode, (graphdef, params, batch_stats)): identical weights."""
  from exfiqa_jax.convert import from_torch  # PyTorch only where a benchmark compares with it
  from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_

  ref = randomize_(ViTFIQAReference(**config.to_dict()), seed)
  _, params, batch_stats = from_torch(ref.state_dict(), config.num_heads, config.image_size)
  return ref, (abstract_variables(config)[0], params, batch_stats)


def images(config: ViTConfig, batch: int, seed: int = 0) -> np.ndarray:
  """Random float32 images [B, H, W, 3] in [-1, 1]."""
  size = (batch, config.image_size, config.image_size, 3)
  return np.random.default_rng(seed).uniform(-1, 1, size).astype(np.float32)


def full_pass_gflops(config: ViTConfig) -> float:
  """GFLOP per image of one full pass: every block, every exit, the embedding head."""
  extra = embedding_head_flops(config) + (config.depth - 1) * head_qs_flops(config)
  return exit_gflops(config)[-1] + extra / 1e9


def _best_rate(fn, flop: float, reps: int) -> float:
  fn()
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return flop / best / 1e9


def matmul_gflops(n: int = 2048, reps: int = 5, torch_too: bool = True) -> dict[str, float]:
  """Best GFLOP/s of an [n, n] @ [n, n] product: XLA and PyTorch, float32 and bfloat16.

  XLA's bfloat16 product accumulates in float32 (`preferred_element_type`), as
  the model's matmuls do; PyTorch's bfloat16 product is the one autocast runs.
  """
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f32 = jax.jit(lambda x: x @ x)
  bf16 = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
  a16, flop = a.astype(jnp.bfloat16), 2.0 * n**3
  rates = {
    "XLA float32": _best_rate(lambda: f32(a).block_until_ready(), flop, reps),
    "XLA bfloat16": _best_rate(lambda: bf16(a16).block_until_ready(), flop, reps),
  }
  if torch_too:
    import torch

    t = torch.from_numpy(np.array(a))
    t16 = t.bfloat16()
    rates["torch float32"] = _best_rate(lambda: t @ t, flop, reps)
    rates["torch bfloat16"] = _best_rate(lambda: t16 @ t16, flop, reps)
  return rates

"""`convert --verify`: the PyTorch reference and the converted Flax model on the same images."""

from __future__ import annotations

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.torch_reference import ViTFIQAReference
from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.inference import abstract_variables, apply

TOLERANCE = 1e-3  # relative to the output's scale; float32 rounding stays far below


def verify_images(config: ViTConfig, count: int = 4) -> np.ndarray:
  """Deterministic test images: float32 [count, H, W, 3] in [-1, 1]."""
  size = config.image_size
  return np.random.default_rng(0).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


def verify(
  sd: StateDict, config: ViTConfig, params: nnx.State, batch_stats: nnx.State
) -> dict[str, tuple[float, float]]:
  """{"embedding" | "exit i": (largest |difference|, largest |reference value|)}."""
  ref = ViTFIQAReference(**config.to_dict(), with_mask_token="mask_token" in sd).eval()
  # Strict; keys the source lacks (num_batches_tracked) keep the fresh model's values.
  ref.load_state_dict({**ref.state_dict(), **{k: torch.from_numpy(v) for k, v in sd.items()}})
  images = verify_images(config)
  with torch.no_grad():
    emb, exits = (t.numpy() for t in ref(torch.from_numpy(images).permute(0, 3, 1, 2)))
  with jax.default_matmul_precision("highest"):
    out = apply(abstract_variables(config)[0], params, batch_stats, images)
  pairs = {"embedding": (out.embedding, emb)}
  pairs.update({f"exit {i + 1}": (out.exits[:, i], exits[:, i]) for i in range(config.depth)})
  return {
    name: (float(np.abs(np.asarray(a) - b).max()), float(np.abs(b).max()))
    for name, (a, b) in pairs.items()
  }


def report(diffs: dict[str, tuple[float, float]]) -> tuple[str, bool]:
  """A Markdown table of the differences, and whether all are within `TOLERANCE`."""
  lines = ["| output | max abs difference | max abs reference |", "| --- | ---: | ---: |"]
  lines += [f"| {k} | {d:.3g} | {s:.3g} |" for k, (d, s) in diffs.items()]
  return "\n".join(lines), all(d <= TOLERANCE * max(1.0, s) for d, s in diffs.values())

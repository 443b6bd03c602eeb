"""`convert --family F --verify`: the PyTorch reference and the converted Flax backbone
on the same test images (`exfiqa_jax.convert.verify` holds the table and the tolerance)."""

from __future__ import annotations

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.fr_torch_reference import embedding, reference_for
from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.fr_inference import abstract_fr_variables, apply_fr, fr_input


def verify_fr(
  sd: StateDict, config: FRConfig, params: nnx.State, batch_stats: nnx.State, count: int = 4
) -> dict[str, tuple[float, float]]:
  """{"embedding": (largest |difference|, largest |reference value|)} on random faces."""
  ref = reference_for(config)
  # Strict; the counters the source may lack keep the fresh model's values.
  ref.load_state_dict({**ref.state_dict(), **{k: torch.from_numpy(v) for k, v in sd.items()}})
  s = config.image_size
  faces = np.random.default_rng(0).integers(0, 256, (count, s, s, 3), dtype=np.uint8)
  x = np.asarray(fr_input(faces, config.channel_order, config))
  with torch.no_grad():
    want = embedding(ref, torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  with jax.default_matmul_precision("highest"):
    got = np.asarray(apply_fr(abstract_fr_variables(config)[0], params, batch_stats, x))
  return {"embedding": (float(np.abs(got - want).max()), float(np.abs(want).max()))}

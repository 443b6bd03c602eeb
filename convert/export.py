"""(ViTConfig, params, batch_stats) -> a PyTorch state_dict in the released layout."""

from __future__ import annotations

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.mapping import BATCH_NORMS, entries
from exfiqa_jax.convert.trees import abstract_trees, node, pure
from exfiqa_jax.models.config import ViTConfig


def to_torch_state_dict(
  config: ViTConfig, params: nnx.State, batch_stats: nnx.State
) -> dict[str, torch.Tensor]:
  """The released PyTorch layout (docs/protocol.md §9), float32 on the CPU.

  Written beside the model's variables: `mask_token` as zeros (training only;
  no output depends on it) and every `num_batches_tracked` as 0, as a freshly
  built BatchNorm1d holds; the result loads into the PyTorch model strictly.
  """
  _, _, shapes = abstract_trees(config)
  trees = jax.tree.map(np.asarray, pure(params, batch_stats))  # one host copy
  out = {}
  for key, e, block in entries(config.depth):
    value, want = node(trees[e.collection], e.path), node(shapes[e.collection], e.path).shape
    if value.shape != want:
      raise ValueError(
        f"{e.collection}/{'/'.join(map(str, e.path))} has shape {value.shape}, "
        f"expected {want} for {config}"
      )
    value = e.hook.to_torch(value if block is None else value[block])
    out[key] = torch.from_numpy(np.array(value, np.float32))  # a contiguous copy
  out["mask_token"] = torch.zeros(1, 1, config.width)
  out.update({f"{bn}.num_batches_tracked": torch.tensor(0) for bn in BATCH_NORMS})
  return out

"""PyTorch ViT-FIQA state_dict <-> (ViTConfig, params, batch_stats), strictly and exactly.

    config, params, batch_stats = from_torch(torch.load(path, weights_only=True))
    state_dict = to_torch_state_dict(config, params, batch_stats)

Every Flax variable is filled, every source key is used or in `IGNORED`, every
shape is checked; the arrays are only transposed and stacked, so the round
trip torch -> Flax -> torch is bit-exact for float32 sources.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flax import nnx

from convert.infer import StateDict, check_architecture, infer_config, unwrap
from convert.mapping import BATCH_NORMS, BLOCK, IGNORED, TOP, entries
from exfiqa_jax.config import ViTConfig
from exfiqa_jax.inference import abstract_variables


def _abstract_trees(config: ViTConfig) -> tuple[nnx.State, nnx.State, dict[str, dict]]:
  _, params, batch_stats = abstract_variables(config)
  return params, batch_stats, {"params": nnx.to_pure_dict(params),
                               "batch_stats": nnx.to_pure_dict(batch_stats)}


def _node(tree: dict, path: tuple) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _torch_shape(entry, flax_shape: tuple, block: int | None) -> tuple[int, ...]:
  """The PyTorch shape of an entry, from the Flax shape (layer axis dropped for blocks)."""
  shape = flax_shape[1:] if block is not None else flax_shape
  return entry.hook.to_torch(np.broadcast_to(np.float32(0), shape)).shape


def _check_keys(sd: StateDict, expected: dict[str, tuple]) -> None:
  problems = [f"missing key '{k}' (expected shape {s})" for k, s in expected.items() if k not in sd]
  problems += [f"unexpected key '{k}' of shape {tuple(a.shape)}" for k, a in sd.items()
               if k not in expected and k not in IGNORED]
  problems += [f"key '{k}' has shape {tuple(sd[k].shape)}, expected {s}"
               for k, s in expected.items() if k in sd and tuple(sd[k].shape) != s]
  problems += [f"key '{k}' has dtype {sd[k].dtype}, expected a floating type"
               for k in expected if k in sd and not np.issubdtype(sd[k].dtype, np.floating)]
  if problems:
    more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
    raise ValueError("; ".join(problems[:8]) + more)


def from_torch(state_dict: Any, num_heads: int = 8,
               image_size: int | None = None) -> tuple[ViTConfig, nnx.State, nnx.State]:
  """A ViT-FIQA state_dict (any wrapper of `unwrap`) -> (config, params, batch_stats).

  Leaves are float32 numpy arrays. Raises ValueError naming the offending keys.
  """
  sd = unwrap(state_dict)
  check_architecture(sd)
  config = infer_config(sd, num_heads, image_size)
  params, batch_stats, trees = _abstract_trees(config)
  table = entries(config.depth)
  _check_keys(sd, {k: _torch_shape(e, _node(trees[e.collection], e.path).shape, i)
                   for k, e, i in table})
  for entry in TOP + BLOCK:
    *parent, leaf = entry.path
    value = (entry.hook.to_flax(sd[entry.torch]) if entry in TOP else np.stack(
        [entry.hook.to_flax(sd[f"blocks.{i}.{entry.torch}"]) for i in range(config.depth)]))
    _node(trees[entry.collection], parent)[leaf] = value
  nnx.replace_by_pure_dict(params, trees["params"])
  nnx.replace_by_pure_dict(batch_stats, trees["batch_stats"])
  return config, params, batch_stats


def to_torch_state_dict(config: ViTConfig, params: nnx.State,
                        batch_stats: nnx.State) -> dict[str, torch.Tensor]:
  """The released PyTorch layout (SPEC section 5), float32 on the CPU.

  Written beside the model's variables: `mask_token` as zeros (training only;
  no output depends on it) and every `num_batches_tracked` as 0, as a freshly
  built BatchNorm1d holds; the result loads into the PyTorch model strictly.
  """
  _, _, shapes = _abstract_trees(config)
  trees = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
  out = {}
  for key, entry, block in entries(config.depth):
    value = np.asarray(_node(trees[entry.collection], entry.path))
    want = _node(shapes[entry.collection], entry.path).shape
    if value.shape != want:
      raise ValueError(f"{entry.collection}/{'/'.join(map(str, entry.path))} has shape "
                       f"{value.shape}, expected {want} for {config}")
    value = entry.hook.to_torch(value if block is None else value[block])
    out[key] = torch.from_numpy(np.array(value, np.float32))  # a contiguous copy
  out["mask_token"] = torch.zeros(1, 1, config.width)
  out.update({f"{bn}.num_batches_tracked": torch.tensor(0) for bn in BATCH_NORMS})
  return out

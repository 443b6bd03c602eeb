"""A PyTorch ViT-FIQA state_dict -> (ViTConfig, params, batch_stats), strictly and exactly.

    config, params, batch_stats = from_torch(torch.load(path, weights_only=True))

Every Flax variable is filled, every source key is used or in `IGNORED`, every
shape is checked; the arrays are only transposed and stacked, so the round
trip through `to_torch_state_dict` is bit-exact for float32 sources.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from exfiqa_jax.convert.infer import check_architecture, infer_config
from exfiqa_jax.convert.mapping import BLOCK, IGNORED, TOP, entries
from exfiqa_jax.convert.trees import Trees, abstract_trees, node, put
from exfiqa_jax.convert.wrappers import StateDict, unwrap
from exfiqa_jax.models.config import ViTConfig


def _torch_shapes(trees: Trees, depth: int) -> dict[str, tuple]:
  """The PyTorch shape of every mapped key, from the Flax shapes (a block's, for blocks)."""
  out = {}
  for key, e, block in entries(depth):
    shape = node(trees[e.collection], e.path).shape[0 if block is None else 1 :]
    out[key] = e.hook.to_torch(np.broadcast_to(np.float32(0), shape)).shape  # a free view
  return out


def _check_keys(
  sd: StateDict, expected: dict[str, tuple], ignored: tuple[str, ...] = IGNORED
) -> None:
  """Every expected key present with its shape and a float dtype; no key outside
  `expected` and `ignored`. One ValueError lists the first 8 problems."""
  problems = [f"missing key '{k}' (expected shape {s})" for k, s in expected.items() if k not in sd]
  problems += [
    f"unexpected key '{k}' of shape {tuple(a.shape)}"
    for k, a in sd.items()
    if k not in expected and k not in ignored
  ]
  problems += [
    f"key '{k}' has shape {tuple(sd[k].shape)}, expected {s}"
    for k, s in expected.items()
    if k in sd and tuple(sd[k].shape) != s
  ]
  problems += [
    f"key '{k}' has dtype {sd[k].dtype}, expected a floating type"
    for k in expected
    if k in sd and not np.issubdtype(sd[k].dtype, np.floating)
  ]
  if problems:
    more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
    raise ValueError("; ".join(problems[:8]) + more)


def _check_filled(trees: Trees, table: str = "convert/mapping.py") -> None:
  """Every Flax variable got an array: the table covers the whole model."""
  leaves = jax.tree_util.tree_leaves_with_path(trees)
  unfilled = [
    jax.tree_util.keystr(p, simple=True, separator="/")
    for p, a in leaves
    if isinstance(a, jax.ShapeDtypeStruct)
  ]
  if unfilled:
    raise ValueError(f"Flax variables {unfilled} have no entry in {table}")


def from_torch(
  state_dict: Any, num_heads: int = 8, image_size: int | None = None
) -> tuple[ViTConfig, nnx.State, nnx.State]:
  """A ViT-FIQA state_dict (any wrapper of `unwrap`) -> (config, params, batch_stats).

  Leaves are float32 numpy arrays. Raises ValueError naming the offending keys.
  """
  sd = unwrap(state_dict)
  check_architecture(sd)
  config = infer_config(sd, num_heads, image_size)
  params, batch_stats, trees = abstract_trees(config)
  _check_keys(sd, _torch_shapes(trees, config.depth))
  for e in TOP:
    put(trees[e.collection], e.path, e.hook.to_flax(sd[e.torch]))
  for e in BLOCK:
    put(
      trees[e.collection],
      e.path,
      np.stack([e.hook.to_flax(sd[f"blocks.{i}.{e.torch}"]) for i in range(config.depth)]),
    )
  _check_filled(trees)
  nnx.replace_by_pure_dict(params, trees["params"])
  nnx.replace_by_pure_dict(batch_stats, trees["batch_stats"])
  return config, params, batch_stats

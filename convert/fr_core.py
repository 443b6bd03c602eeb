"""A face-recognition checkpoint <-> (FRConfig, params, batch_stats), strictly and exactly.

    config, params, batch_stats = fr_from_torch(torch.load(path, weights_only=True), "magface")

The same rules as the ViT-FIQA import (`exfiqa_jax.convert.core`, whose checks
these reuse): every Flax variable is filled, every source key is used or
ignored by name, every shape is checked, and arrays are only transposed or
permuted, so the round trip through `fr_to_torch` is bit-exact for float32.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.core import _check_filled, _check_keys
from exfiqa_jax.convert.fr_infer import infer_fr_config
from exfiqa_jax.convert.fr_mapping import fr_entries, fr_ignored
from exfiqa_jax.convert.fr_wrappers import unwrap_fr, wrap_fr
from exfiqa_jax.convert.trees import node, pure, put
from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.fr_inference import abstract_fr_variables

TABLE = "convert/fr_mapping.py"


def _abstract(config: FRConfig):
  _, params, batch_stats = abstract_fr_variables(config)
  return params, batch_stats, pure(params, batch_stats)


def _torch_shapes(config: FRConfig, trees: dict) -> dict[str, tuple]:
  return {
    e.torch: e.hook.to_torch(
      np.broadcast_to(np.float32(0), node(trees[e.collection], e.path).shape)
    ).shape
    for e in fr_entries(config)
  }


def fr_state_dict(obj: Any, family: str) -> tuple[FRConfig, StateDict]:
  """(config, backbone state_dict) of a loaded checkpoint; ValueError naming the problem."""
  sd = unwrap_fr(obj, family)
  return infer_fr_config(sd, family), sd


def fr_from_torch(obj: Any, family: str) -> tuple[FRConfig, nnx.State, nnx.State]:
  """A loaded checkpoint of `family` (any wrapper of its release) -> (config, params, stats)."""
  config, sd = fr_state_dict(obj, family)
  return (config, *fr_variables(sd, config))


def fr_variables(sd: StateDict, config: FRConfig) -> tuple[nnx.State, nnx.State]:
  params, batch_stats, trees = _abstract(config)
  _check_keys(sd, _torch_shapes(config, trees), fr_ignored(config))
  for e in fr_entries(config):
    put(trees[e.collection], e.path, np.ascontiguousarray(e.hook.to_flax(sd[e.torch])))
  _check_filled(trees, TABLE)
  nnx.replace_by_pure_dict(params, trees["params"])
  nnx.replace_by_pure_dict(batch_stats, trees["batch_stats"])
  return params, batch_stats


def fr_to_torch(config: FRConfig, params: nnx.State, batch_stats: nnx.State) -> Any:
  """The release's layout (`fr_wrappers.wrap_fr`) of float32 CPU tensors.

  Every `num_batches_tracked` is written as 0, as a freshly built BatchNorm
  holds; the state_dict loads into the reference model strictly.
  """
  _, _, shapes = _abstract(config)
  trees = jax.tree.map(np.asarray, pure(params, batch_stats))
  out = {}
  for e in fr_entries(config):
    value, want = node(trees[e.collection], e.path), node(shapes[e.collection], e.path).shape
    if value.shape != want:
      raise ValueError(
        f"{e.collection}/{'/'.join(map(str, e.path))} has shape {value.shape}, "
        f"expected {want} for {config.name}"
      )
    out[e.torch] = torch.from_numpy(np.array(e.hook.to_torch(value), np.float32))
  out.update({k: torch.tensor(0) for k in fr_ignored(config)})
  return wrap_fr(config, out)

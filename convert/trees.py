"""The Flax model's variables as nested pure dicts, addressed by `Entry.path`."""

from __future__ import annotations

from typing import Any

from flax import nnx

from exfiqa_jax.models.inference import abstract_variables

Trees = dict[str, dict]  # {"params": ..., "batch_stats": ...}


def pure(params: nnx.State, batch_stats: nnx.State) -> Trees:
  return {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}


def abstract_trees(config: Any) -> tuple[nnx.State, nnx.State, Trees]:
  """(params, batch_stats) as shapes only, and their pure dicts (leaves ShapeDtypeStruct)."""
  _, params, batch_stats = abstract_variables(config)
  return params, batch_stats, pure(params, batch_stats)


def node(tree: dict, path: tuple) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def put(tree: dict, path: tuple, value: Any) -> None:
  node(tree, path[:-1])[path[-1]] = value

"""The one conversion driver: a loaded checkpoint of any family <-> (config, params,
batch_stats), strictly and exactly.

    config, params, batch_stats = from_torch(torch.load(path, weights_only=True), num_heads=8)
    config, params, batch_stats = from_torch(load_torch(path), family="magface")
    state_dict = to_torch(config, params, batch_stats)   # the release's layout

Everything family-specific comes from its `Family` record (`convert.families`).
Every Flax variable is filled, every source key is used or ignored by name, every
shape is checked; the arrays are only transposed, permuted and stacked (the
block axis, from the table), so the round trip through `to_torch` is bit-exact
for float32 sources.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.families import Family, family_named
from exfiqa_jax.convert.trees import Trees, abstract_trees, node, pure, put
from exfiqa_jax.convert.wrappers import StateDict

Table = list  # [(PyTorch key, Entry, block index or None)], `Family.entries(config)`


def _torch_shapes(trees: Trees, table: Table) -> dict[str, tuple]:
  """The PyTorch shape of every mapped key, from the Flax shapes (a block's, for blocks)."""
  out = {}
  for key, e, block in table:
    shape = node(trees[e.collection], e.path).shape[0 if block is None else 1 :]
    out[key] = e.hook.to_torch(np.broadcast_to(np.float32(0), shape)).shape  # a free view
  return out


def _check_keys(sd: StateDict, expected: dict[str, tuple], ignored: tuple[str, ...]) -> None:
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


def _check_filled(trees: Trees, table: str) -> None:
  """Every Flax variable got an array: the table covers the whole model."""
  leaves = jax.tree_util.tree_leaves_with_path(trees)
  unfilled = [
    jax.tree_util.keystr(p, simple=True, separator="/")
    for p, a in leaves
    if isinstance(a, jax.ShapeDtypeStruct)
  ]
  if unfilled:
    raise ValueError(f"Flax variables {unfilled} have no entry in {table}")


def unwrap(obj: Any, name: str = "vit_fiqa") -> StateDict:
  """A loaded checkpoint of family `name` (any wrapper of its release) -> the backbone's
  {key: ndarray}, floating arrays as float32; ValueError saying what it holds instead."""
  return family_named(name).unwrap(obj)


def infer_config(sd: StateDict, name: str = "vit_fiqa", **options) -> Any:
  """The config a backbone state_dict's keys and shapes give (options: what they cannot,
  e.g. ViT-FIQA's `num_heads`, `image_size`); ValueError naming the problem."""
  return family_named(name).infer(sd, **options)


def variables(f: Family, sd: StateDict, config: Any) -> tuple[nnx.State, nnx.State]:
  """(params, batch_stats) of `config` filled from `sd` through the family's table."""
  params, batch_stats, trees = abstract_trees(config)
  table = f.entries(config)
  _check_keys(sd, _torch_shapes(trees, table), f.ignored(config))
  blocks: dict[tuple, list] = {}
  for key, e, block in table:
    value = np.ascontiguousarray(e.hook.to_flax(sd[key]))
    if block is None:
      put(trees[e.collection], e.path, value)
    else:  # in block order: the table lists blocks 0, 1, ... of each entry
      blocks.setdefault((e.collection, e.path), []).append(value)
  for (collection, path), values in blocks.items():
    put(trees[collection], path, np.stack(values))
  _check_filled(trees, f.table)
  nnx.replace_by_pure_dict(params, trees["params"])
  nnx.replace_by_pure_dict(batch_stats, trees["batch_stats"])
  return params, batch_stats


def from_torch(
  obj: Any,
  num_heads: int | None = None,
  image_size: int | None = None,
  *,
  family: str = "vit_fiqa",
) -> tuple[Any, nnx.State, nnx.State]:
  """A loaded checkpoint of `family` (any wrapper of its release) -> (config, params,
  batch_stats). Leaves are float32 numpy arrays; ValueError naming the offending keys.

  num_heads, image_size: ViT-FIQA's options (the head count must be given, 8 for the
  released model; default image size: the smallest of the patch grid); the
  face-recognition families read every size from the shapes, the rest from their release
  or from what the loaded object states (`Family.stated`).
  """
  f = family_named(family)
  sd = f.unwrap(obj)
  config = f.infer(sd, num_heads=num_heads, image_size=image_size)
  config = f.stated(obj) or config  # what the file states (an MXNet graph's eps) wins
  return (config, *variables(f, sd, config))


def to_torch(config: Any, params: nnx.State, batch_stats: nnx.State) -> Any:
  """The release's file layout (`Family.wrap`) of float32 CPU tensors, with the keys
  no Flax variable holds written back (`Family.written_back`); the result loads
  into the PyTorch reference model strictly."""
  f = family_named(config.family)
  _, _, shapes = abstract_trees(config)
  trees = jax.tree.map(np.asarray, pure(params, batch_stats))  # one host copy
  out = {}
  for key, e, block in f.entries(config):
    value, want = node(trees[e.collection], e.path), node(shapes[e.collection], e.path).shape
    if value.shape != want:
      raise ValueError(
        f"{e.collection}/{'/'.join(map(str, e.path))} has shape {value.shape}, "
        f"expected {want} for {config}"
      )
    value = e.hook.to_torch(value if block is None else value[block])
    out[key] = torch.from_numpy(np.array(value, np.float32))  # a contiguous copy
  return f.wrap(config, {**out, **f.written_back(config)})

"""Checkpoint I/O: one orbax checkpoint holding params, batch statistics and the config.

    save("vit_s_ckpt", config, params, batch_stats)
    config, graphdef, params, batch_stats = load("vit_s_ckpt")
    out = apply(graphdef, params, batch_stats, images)

Layout: an orbax composite checkpoint with items `variables` (`{"params": ...,
"batch_stats": ...}`; the int keys of `nnx.List` entries such as `feature/0`
are stored as the strings "0", "1", ...) and `config` (the `ViTConfig`, or the
`FRConfig` of a face-recognition backbone, as JSON; an FR config has an "arch").
Writing is atomic: into a hidden sibling folder, renamed into place when done.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from flax import nnx

from exfiqa_jax import backend
from exfiqa_jax.fileio import atomic_path
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.fr_inference import abstract_fr_variables
from exfiqa_jax.models.inference import abstract_variables

KINDS = {ViTConfig: "a ViT-FIQA model", FRConfig: "a face-recognition backbone"}


class Loaded(NamedTuple):
  config: ViTConfig | FRConfig
  graphdef: nnx.GraphDef
  params: nnx.State
  batch_stats: nnx.State


def _keys(tree: Any, fn) -> Any:
  """Applies `fn` to every dict key of a nested dict."""
  if isinstance(tree, dict):
    return {fn(k): _keys(v, fn) for k, v in tree.items()}
  return tree


def _to_int(key: str):
  return int(key) if key.isdigit() else key  # list indices; no parameter name is all digits


def save(
  path: str,
  config: ViTConfig | FRConfig,
  params: nnx.State,
  batch_stats: nnx.State,
  *,
  force: bool = False,
) -> None:
  """Writes `path` atomically; an existing `path` is replaced only with `force`."""
  variables = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
  args = ocp.args.Composite(
    variables=ocp.args.StandardSave(_keys(variables, str)),
    config=ocp.args.JsonSave(config.to_dict()),
  )
  with atomic_path(path, force=force, directory=True, kind="checkpoint") as tmp:
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
      ckptr.save(tmp, args=args, force=True)  # replaces the empty temporary folder


def _target(state: nnx.State, sharding: jax.sharding.Sharding) -> dict:
  """Shape/dtype/sharding leaves with string keys, the restore target of orbax."""

  def sds(a):
    return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

  return _keys(jax.tree.map(sds, nnx.to_pure_dict(state)), str)


def config_from_dict(d: dict) -> ViTConfig | FRConfig:
  return FRConfig.from_dict(d) if "arch" in d else ViTConfig.from_dict(d)


def load(path: str, expect: type | None = None) -> Loaded:
  """Restores config and variables, replicated over every available device.

  `expect` (ViTConfig or FRConfig): refuse a checkpoint of the other kind, saying what it holds.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such checkpoint folder (one written by exfiqa convert)")
  path = os.path.abspath(path)  # orbax takes absolute paths only
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    try:
      meta = ckptr.restore(path, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except (FileNotFoundError, ValueError, KeyError) as e:
      raise ValueError(f"{path}: not an exfiqa checkpoint ({e})") from e
    config = config_from_dict(meta["config"])
    if expect is not None and not isinstance(config, expect):
      hint = "exfiqa embed" if isinstance(config, FRConfig) else "exfiqa score"
      raise ValueError(
        f"{path} holds {KINDS[type(config)]}, not {KINDS[expect]} (use it with {hint})"
      )
    abstract = abstract_fr_variables if isinstance(config, FRConfig) else abstract_variables
    graphdef, params, batch_stats = abstract(config)
    replicated = jax.NamedSharding(backend.mesh(), jax.P())  # every device of every host
    target = {
      "params": _target(params, replicated),
      "batch_stats": _target(batch_stats, replicated),
    }
    try:
      restored = ckptr.restore(
        path, args=ocp.args.Composite(variables=ocp.args.StandardRestore(target))
      )["variables"]
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ValueError(
        f"{path}: damaged or incomplete checkpoint, its variables cannot be read "
        f"({type(e).__name__}: {first[:300]})"
      ) from None
  restored = _keys(restored, _to_int)
  nnx.replace_by_pure_dict(params, restored["params"])
  nnx.replace_by_pure_dict(batch_stats, restored["batch_stats"])
  return Loaded(config, graphdef, params, batch_stats)

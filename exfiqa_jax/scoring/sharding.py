"""Batch-axis sharding over this host's devices, and the pure split/gather rules.

Inference needs no communication between hosts, so each host runs the model
on a mesh of its own local devices (every one busy) over its own chunks of
the data: chunk k belongs to host `k % process_count`. Results are put back
in input order by chunk index. Splitting and gathering are pure functions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax import backend
from exfiqa_jax.backend import AXIS
from exfiqa_jax.data.preprocess import check_channel_order
from exfiqa_jax.models.hoist import Prepared
from exfiqa_jax.models.inference import apply
from exfiqa_jax.models.registry import kind_of_graph


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
  """[start, stop) of each chunk of `chunk_size` images (the last may be short)."""
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be positive; got {chunk_size}")
  return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def host_chunks(num_chunks: int, process_index: int, process_count: int) -> list[int]:
  """The chunks host `process_index` of `process_count` scores (round robin)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return list(range(process_index, num_chunks, process_count))


def gather_in_order(
  parts: Mapping[int, Mapping[str, np.ndarray]], num_chunks: int
) -> dict[str, np.ndarray]:
  """Per-chunk arrays {k: {name: [n_k, ...]}} -> {name: [sum n_k, ...]} in chunk order."""
  missing = sorted(set(range(num_chunks)) - set(parts))
  if missing:
    raise ValueError(f"chunks {missing[:5]} of {num_chunks} are missing")
  names = parts[0].keys() if num_chunks else ()
  return {k: np.concatenate([parts[i][k] for i in range(num_chunks)]) for k in names}


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """x: [n, ...] -> [rows, ...], zero rows appended (n <= rows)."""
  return (
    np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)]) if len(x) < rows else x
  )


def local_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over this host's devices (default: all of them), axis `batch`."""
  return backend.mesh(devices or jax.local_devices())


def replicate(tree, mesh: jax.sharding.Mesh):
  """Copies every leaf onto each device of `mesh` (from one local copy of a replicated array)."""
  sharding = jax.NamedSharding(mesh, jax.P())
  return jax.device_put(jax.tree.map(_local_copy, tree), sharding)


def _local_copy(a):
  return a.addressable_data(0) if isinstance(a, jax.Array) else a


@functools.lru_cache(maxsize=16)
def make_step(
  graphdef,
  mesh: jax.sharding.Mesh,
  config=None,
  *,
  flip: bool = False,
  dtype=jnp.float32,
  channel_order: str = "rgb",
  model_order: str | None = None,
  **options,
):
  """jit of (params, batch_stats, uint8 [B, S, S, 3] stored in `channel_order`) -> the
  named outputs of the model's kind (`models.registry.Kind.outputs`), each [B, ...]:
  ViT-FIQA {"exit_scores": [B, k], "embeddings": [B, D] (only with `embedding`)};
  face recognition {"embeddings": [B, D]}, raw (not L2-normalised).

  The kind's input rule (`Kind.prepare`: `config`'s, which ViT-FIQA needs none of;
  `model_order` overrides the channel order the network takes) runs inside the
  compiled step; `options` (num_layers, embedding) go to `apply`. With `flip`, the
  mirrored images (left-right) go through the network as a second call of the same
  shape, adding "<name>_flip" of every output; the others are bit for bit the same.
  Images cross to the devices as uint8, split on the batch axis; B must be a
  multiple of the mesh size. Cached, so repeated scoring with the same model and mesh
  compiles once, and prepares the weights once (`models.hoist.Prepared`).
  """
  check_channel_order(channel_order)
  kind = kind_of_graph(graphdef)
  data, rep = jax.NamedSharding(mesh, jax.P(AXIS)), jax.NamedSharding(mesh, jax.P())

  def outputs(params, batch_stats, images):
    x = kind.prepare(images, channel_order, config, model_order)
    return kind.outputs(apply(graphdef, params, batch_stats, x, dtype=dtype, **options))

  def step(params, batch_stats, images):
    out = outputs(params, batch_stats, images)
    if flip:
      mirrored = outputs(params, batch_stats, images[:, :, ::-1])
      out.update({f"{name}_flip": o for name, o in mirrored.items()})
    return out

  # The weights' own work (folding, casts, kernel transforms) once per weights, then the
  # images' program (`hoist.Prepared`), placed as jit(step, in_shardings=(rep, rep, data),
  # out_shardings=data) would place them.
  prepared = Prepared(
    lambda weights, images: step(*weights, images),
    weights_sharding=rep,
    args_sharding=data,
    out_sharding=data,
  )
  return lambda params, batch_stats, images: prepared((params, batch_stats), images)


def make_staged_step(graphdef, policy, *, dtype=jnp.float32, channel_order: str = "rgb"):
  """(params, batch_stats, uint8 [B, S, S, 3]) -> {"exit_scores": [B, depth] (NaN after
  the exit where each image stopped), "blocks_run": int32 [B], "quality": float32 [B]}.

  Adaptive early exit under `policy` (`exfiqa_jax.models.staged`): a host loop
  over compiled stages, not one program; normalisation runs inside the first
  stage. Each image's exits are bit for bit those of `make_step` on CPU at batch
  sizes that are a multiple of 16.
  """
  from exfiqa_jax.models.staged import staged_apply

  check_channel_order(channel_order)

  def step(params, batch_stats, images):
    out = staged_apply(
      graphdef, params, batch_stats, images, policy, dtype=dtype, channel_order=channel_order
    )
    return {"exit_scores": out.exits, "blocks_run": out.blocks_run, "quality": out.quality}

  return step

"""The table between PyTorch `state_dict` keys and Flax paths: its pieces, and ViT-FIQA's.

Each `Entry` maps a PyTorch key to a (collection, path) of the Flax model's
pure dicts (`params` or `batch_stats`), with a `Hook` converting the array
both ways. A family's table (`Family.entries`) lists (key, entry, block):
entries with a block index exist once per block, `blocks.{i}.<key>`, and are
stacked along a leading layer axis in Flax. Import, export and the expected
shapes are all derived from the table (`exfiqa_jax.convert.core`), so they
cannot disagree. ViT-FIQA's keys: docs/protocol.md §9; the face-recognition
table is `exfiqa_jax.convert.fr_mapping`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from einops import rearrange


class Hook(NamedTuple):
  to_flax: Callable[[np.ndarray], np.ndarray]
  to_torch: Callable[[np.ndarray], np.ndarray]


COPY = Hook(lambda a: a, lambda a: a)
# nn.Linear weight [out, in] <-> Dense kernel [in, out].
LINEAR = Hook(lambda w: w.T, lambda k: k.T)
# nn.Conv2d weight [out, in, kh, kw] <-> kernel [kh, kw, in, out].
CONV = Hook(
  lambda w: rearrange(w, "o i h w -> h w i o"), lambda k: rearrange(k, "h w i o -> o i h w")
)


class Entry(NamedTuple):
  torch: str
  collection: str  # "params" or "batch_stats"
  path: tuple
  hook: Hook


def _dense(t: str, path: tuple, bias: bool) -> list[Entry]:
  out = [Entry(f"{t}.weight", "params", (*path, "kernel"), LINEAR)]
  return out + [Entry(f"{t}.bias", "params", (*path, "bias"), COPY)] if bias else out


def _norm(t: str, path: tuple) -> list[Entry]:
  return [
    Entry(f"{t}.weight", "params", (*path, "scale"), COPY),
    Entry(f"{t}.bias", "params", (*path, "bias"), COPY),
  ]


def _batch_norm(t: str, path: tuple) -> list[Entry]:
  return _norm(t, path) + [
    Entry(f"{t}.running_mean", "batch_stats", (*path, "mean"), COPY),
    Entry(f"{t}.running_var", "batch_stats", (*path, "var"), COPY),
  ]


BATCH_NORMS = ("feature.1", "feature.3", "head_qs.0")

TOP = [
  Entry("qs_token", "params", ("qs_token",), COPY),
  Entry("pos_embed", "params", ("pos_embed",), COPY),
  Entry("patch_embed.proj.weight", "params", ("patch_embed", "proj", "kernel"), CONV),
  Entry("patch_embed.proj.bias", "params", ("patch_embed", "proj", "bias"), COPY),
  *_norm("norm", ("norm",)),
  *_dense("feature.0", ("feature", 0), bias=False),
  *_batch_norm("feature.1", ("feature", 1)),
  *_dense("feature.2", ("feature", 2), bias=False),
  *_batch_norm("feature.3", ("feature", 3)),
  *_batch_norm("head_qs.0", ("head_qs", 0)),
  *_dense("head_qs.1", ("head_qs", 1), bias=False),
]

BLOCK = [
  *_norm("norm1", ("blocks", "norm1")),
  *_dense("attn.qkv", ("blocks", "attn", "qkv"), bias=False),
  *_dense("attn.proj", ("blocks", "attn", "proj"), bias=True),
  *_norm("norm2", ("blocks", "norm2")),
  *_dense("mlp.fc1", ("blocks", "mlp", "fc1"), bias=True),
  *_dense("mlp.fc2", ("blocks", "mlp", "fc2"), bias=True),
]

# Source keys read by no Flax variable: dropped on import, written back on export.
IGNORED = ("mask_token", *(f"{bn}.num_batches_tracked" for bn in BATCH_NORMS))


def entries(config) -> list[tuple[str, Entry, int | None]]:
  """(PyTorch key, entry, block index or None) for every mapped key of a ViT-FIQA model."""
  out = [(e.torch, e, None) for e in TOP]
  return out + [(f"blocks.{i}.{e.torch}", e, i) for e in BLOCK for i in range(config.depth)]


def ignored(config) -> tuple[str, ...]:
  return IGNORED


def written_back(config) -> dict[str, torch.Tensor]:
  """Written beside the model's variables on export: `mask_token` as zeros (training
  only; no output depends on it) and every `num_batches_tracked` as 0, as a freshly
  built BatchNorm1d holds; the result loads into the PyTorch model strictly."""
  out = {"mask_token": torch.zeros(1, 1, config.width)}
  return out | {f"{bn}.num_batches_tracked": torch.tensor(0) for bn in BATCH_NORMS}

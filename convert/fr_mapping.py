"""The one table between face-recognition state_dict keys and Flax paths.

Built per `FRConfig` (the number of blocks and the fc's flatten order depend
on it) from the same `Entry`/`Hook` pieces as the ViT-FIQA table
(`exfiqa_jax.convert.mapping`); import, export and the expected shapes are
all derived from it. Keys are the released ones: insightface iResNet
(`conv1`, `layer{s}.{i}.bn1`, ..., `fc`, `features`) and CurricularFace's
IR (`input_layer.0`, `body.{n}.res_layer.1`, ..., `output_layer.4`).
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from exfiqa_jax.convert.mapping import CONV, COPY, Entry, Hook, _batch_norm, _dense
from exfiqa_jax.models.fr_config import FRConfig


def fc_hook(channels: int, grid: int) -> Hook:
  """nn.Linear weight [D, C*g*g] over the NCHW-flattened map <-> kernel [g*g*C, D] over NHWC.

  PyTorch's flatten index is c*g*g + h*g + w, the Flax model's (h*g + w)*C + c:
  the rows are permuted, not only transposed.
  """

  def to_flax(w: np.ndarray) -> np.ndarray:
    return rearrange(w, "d (c h w) -> (h w c) d", c=channels, h=grid, w=grid)

  def to_torch(k: np.ndarray) -> np.ndarray:
    return rearrange(k, "(h w c) d -> d (c h w)", c=channels, h=grid, w=grid)

  return Hook(to_flax, to_torch)


def _conv(t: str, path: tuple) -> list[Entry]:
  return [Entry(f"{t}.weight", "params", (*path, "kernel"), CONV)]


def _prelu(t: str, path: tuple) -> list[Entry]:
  return [Entry(f"{t}.weight", "params", (*path, "weight"), COPY)]


def _stats(t: str, path: tuple) -> list[Entry]:
  """BatchNorm1d(affine=False): running statistics only."""
  return [
    Entry(f"{t}.running_mean", "batch_stats", (*path, "mean"), COPY),
    Entry(f"{t}.running_var", "batch_stats", (*path, "var"), COPY),
  ]


def _fc(t: str, path: tuple, config: FRConfig) -> list[Entry]:
  weight, bias = _dense(t, path, bias=True)
  return [weight._replace(hook=fc_hook(config.widths[-1], config.grid)), bias]


def _iresnet(config: FRConfig) -> tuple[list[Entry], list[str]]:
  out = _conv("conv1", ("conv1",)) + _batch_norm("bn1", ("bn1",)) + _prelu("prelu", ("prelu",))
  norms = ["bn1", "bn2", "features"]
  for s, n in enumerate(config.layers):
    for i in range(n):
      t, p = f"layer{s + 1}.{i}", (f"layer{s + 1}", i)
      out += _batch_norm(f"{t}.bn1", (*p, "bn1")) + _conv(f"{t}.conv1", (*p, "conv1"))
      out += _batch_norm(f"{t}.bn2", (*p, "bn2")) + _prelu(f"{t}.prelu", (*p, "prelu"))
      out += _conv(f"{t}.conv2", (*p, "conv2")) + _batch_norm(f"{t}.bn3", (*p, "bn3"))
      norms += [f"{t}.bn1", f"{t}.bn2", f"{t}.bn3"]
      if i == 0:  # stride 2: every stage's first block has the downsample
        out += _conv(f"{t}.downsample.0", (*p, "downsample", 0))
        out += _batch_norm(f"{t}.downsample.1", (*p, "downsample", 1))
        norms.append(f"{t}.downsample.1")
  out += _batch_norm("bn2", ("bn2",)) + _fc("fc", ("fc",), config)
  out += _batch_norm("features", ("features",))
  return out, norms


def _irse(config: FRConfig) -> tuple[list[Entry], list[str]]:
  out = _conv("input_layer.0", ("input_layer", 0))
  out += _batch_norm("input_layer.1", ("input_layer", 1)) + _prelu(
    "input_layer.2", ("input_layer", 2)
  )
  norms, n, din = ["input_layer.1", "output_layer.0", "output_layer.4"], 0, config.stem_width
  for count, width in zip(config.layers, config.widths, strict=True):
    for i in range(count):
      t, p = f"body.{n}", ("body", n)
      if (din if i == 0 else width) != width:  # else MaxPool2d(1, stride): no parameters
        out += _conv(f"{t}.shortcut_layer.0", (*p, "shortcut_layer", 0))
        out += _batch_norm(f"{t}.shortcut_layer.1", (*p, "shortcut_layer", 1))
        norms.append(f"{t}.shortcut_layer.1")
      r = (*p, "res_layer")
      out += _batch_norm(f"{t}.res_layer.0", (*r, 0)) + _conv(f"{t}.res_layer.1", (*r, 1))
      out += _prelu(f"{t}.res_layer.2", (*r, 2)) + _conv(f"{t}.res_layer.3", (*r, 3))
      out += _batch_norm(f"{t}.res_layer.4", (*r, 4))
      norms += [f"{t}.res_layer.0", f"{t}.res_layer.4"]
      n += 1
    din = width
  out += _batch_norm("output_layer.0", ("output_layer", 0))
  out += _fc("output_layer.3", ("output_layer", 3), config)
  out += _stats("output_layer.4", ("output_layer", 4))
  return out, norms


ARCHS = {"iresnet": _iresnet, "irse": _irse}


def entries(config: FRConfig) -> list[tuple[str, Entry, None]]:
  """(PyTorch key, entry, None) for every mapped key, in the release's state_dict order."""
  return [(e.torch, e, None) for e in ARCHS[config.arch](config)[0]]


def ignored(config: FRConfig) -> tuple[str, ...]:
  """Keys read by no Flax variable: each BatchNorm's num_batches_tracked (a training
  counter; written back as 0 on export)."""
  return tuple(f"{bn}.num_batches_tracked" for bn in ARCHS[config.arch](config)[1])


def written_back(config: FRConfig) -> dict[str, torch.Tensor]:
  """Every `num_batches_tracked` as 0, as a freshly built BatchNorm holds; the
  state_dict loads into the reference model strictly."""
  return {k: torch.tensor(0) for k in ignored(config)}

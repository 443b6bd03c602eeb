"""The face-recognition backbones the benchmarks run: identical weights in PyTorch and Flax,
and the FLOPs of a pass."""

from __future__ import annotations

import common  # noqa: F401  (puts the repository root on sys.path)

from exfiqa_jax.models.fr_config import FRConfig


def fr_gflops(config: FRConfig) -> float:
  """GFLOP per image (2 per multiply-add) of the convolutions and the fc; BatchNorm,
  PReLU and the residual adds (under 1%) are not counted."""
  macs, size, din = (
    3 * config.stem_width * 9 * config.image_size**2,
    config.image_size,
    config.stem_width,
  )
  for n, width in zip(config.layers, config.widths, strict=True):
    for i in range(n):
      cin, out = (din, size // 2) if i == 0 else (width, size // 2)
      macs += cin * width * 9 * (size if i == 0 else out) ** 2  # conv1, stride 1
      macs += width * width * 9 * out**2  # conv2, the block's stride
      if i == 0 and (config.arch == "iresnet" or din != width):
        macs += din * width * out**2  # 1x1 shortcut
    size, din = size // 2, width
  macs += config.fc_inputs * config.embedding_size
  return 2 * macs / 1e9


def reference_pair(config: FRConfig, seed: int = 0):
  """(PyTorch reference in eval mode, (graphdef, params, batch_stats)): identical weights."""
  from exfiqa_jax.convert import from_torch
  from exfiqa_jax.convert.references.face_recognition import randomize_fr_, reference_for
  from exfiqa_jax.models.inference import abstract_variables

  ref = randomize_fr_(reference_for(config), seed)
  _, params, stats = from_torch(ref.state_dict(), family=config.family)
  return ref, (abstract_variables(config)[0], params, stats)

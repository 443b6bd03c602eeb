"""The face-recognition backbones the benchmarks run: identical weights in PyTorch and Flax,
and the FLOPs of a pass."""

from __future__ import annotations

import common  # noqa: F401  (puts the repository root on sys.path)

from exfiqa_jax.models.flops import fr_gflops  # noqa: F401  (the benchmarks' name)
from exfiqa_jax.models.fr_config import FRConfig


def reference_pair(config: FRConfig, seed: int = 0):
  """(PyTorch reference in eval mode, (graphdef, params, batch_stats)): identical weights."""
  from exfiqa_jax.convert import from_torch
  from exfiqa_jax.convert.references.face_recognition import randomize_fr_, reference_for
  from exfiqa_jax.models.inference import abstract_variables

  ref = randomize_fr_(reference_for(config), seed)
  _, params, stats = from_torch(ref.state_dict(), family=config.family)
  return ref, (abstract_variables(config)[0], params, stats)

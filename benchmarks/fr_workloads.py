"""The face-recognition backbones the benchmarks run: identical weights in PyTorch and Flax,
and the FLOPs of a pass."""

from __future__ import annotations

import common  # noqa: F401  (puts the repository root on sys.path)

from exfiqa_jax.models.flops import fr_gflops  # noqa: F401  (the benchmarks' name)
from exfiqa_jax.models.fr_config import FRConfig


def reference_pair(config: FRConfig, seed: int = 0):
  """(PyTorch reference in eval mode, (graphdef, params, batch_stats)): identical weights."""
  from exfiqa_jax.convert.fr_core import fr_variables
  from exfiqa_jax.convert.fr_torch_reference import randomize_fr_, reference_for
  from exfiqa_jax.models.fr_inference import abstract_fr_variables

  ref = randomize_fr_(reference_for(config), seed)
  params, stats = fr_variables({k: v.numpy() for k, v in ref.state_dict().items()}, config)
  return ref, (abstract_fr_variables(config)[0], params, stats)

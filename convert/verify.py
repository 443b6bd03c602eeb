"""`convert --verify`: a family's PyTorch reference and the converted Flax model on the
same test inputs (`Family.test_inputs`), output by output."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.convert.families import Family
from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.inference import abstract_variables, apply

TOLERANCE = 1e-3  # relative to the output's scale; float32 rounding stays far below


def verify(
  f: Family, sd: StateDict, config: Any, params: nnx.State, batch_stats: nnx.State
) -> dict[str, tuple[float, float]]:
  """{output name: (largest |difference|, largest |reference value|)}: ViT-FIQA's
  "embedding" and "exit i", a face-recognition backbone's "embedding"."""
  ref = f.reference(config, sd)
  # Strict; keys the source lacks (num_batches_tracked) keep the fresh model's values.
  ref.load_state_dict({**ref.state_dict(), **{k: torch.from_numpy(v) for k, v in sd.items()}})
  x = f.test_inputs(config)
  with torch.no_grad():
    want = f.reference_outputs(ref, torch.from_numpy(x).permute(0, 3, 1, 2))
  with jax.default_matmul_precision("highest"):
    got = f.outputs(apply(abstract_variables(config)[0], params, batch_stats, x))
  return {
    name: (float(np.abs(np.asarray(got[name]) - b).max()), float(np.abs(b).max()))
    for name, b in want.items()
  }


def report(diffs: dict[str, tuple[float, float]]) -> tuple[str, bool]:
  """A Markdown table of the differences, and whether all are within `TOLERANCE`."""
  lines = ["| output | max abs difference | max abs reference |", "| --- | ---: | ---: |"]
  lines += [f"| {k} | {d:.3g} | {s:.3g} |" for k, (d, s) in diffs.items()]
  return "\n".join(lines), all(d <= TOLERANCE * max(1.0, s) for d, s in diffs.values())

"""Test helpers: random-weight PyTorch reference models and their outputs, and the
converter's (graphdef, params, batch_stats) for a reference state_dict."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from exfiqa_jax import ViTConfig, abstract_variables

# torch's CPU build is at hand for Python 3.11 only; on the newest stack (Python 3.12)
# the tests that need it skip with this reason.
HAS_TORCH = importlib.util.find_spec("torch") is not None
TORCH_REASON = (
  "needs torch (pip install 'exfiqa-jax[convert]'); "
  "its CPU build is only installed for Python 3.11 here"
)
requires_torch = pytest.mark.skipif(not HAS_TORCH, reason=TORCH_REASON)


def import_torch():
  """torch, or a skip of the calling test module with TORCH_REASON."""
  return pytest.importorskip("torch", reason=TORCH_REASON)


def reference(cfg: ViTConfig, seed: int, batch: int = 5):
  """(reference model, images [B, H, W, 3] in [-1, 1], embedding [B, D], exits [B, L])."""
  import torch

  from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_

  ref = randomize_(ViTFIQAReference(**cfg.to_dict()), seed)
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (batch, cfg.image_size, cfg.image_size, 3)).astype(np.float32)
  with torch.no_grad():
    emb, exits = ref(torch.from_numpy(x).permute(0, 3, 1, 2))
  return ref, x, emb.numpy(), exits.numpy()


def torch_to_flax(state_dict, config: ViTConfig):
  """(graphdef, params, batch_stats) of a reference state_dict, through the converter."""
  from exfiqa_jax.convert import from_torch

  got, params, batch_stats = from_torch(state_dict, config.num_heads, config.image_size)
  assert got == config, (got, config)
  return abstract_variables(config)[0], params, batch_stats

"""Tiny random-weight FR backbones as a Flax module and its PyTorch reference on the same
weights (through the family's converter), for the SER-FIQ and GraFIQs tests."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from exfiqa_jax.models.registry import fr_input
from tests.score_helpers import faces

ARCHS = {"iresnet": "arcface", "irse": "curricularface"}


def pair(family: str, seed: int = 3):
  """(PyTorch reference, Flax module, config) of a tiny `family` model; needs torch."""
  from exfiqa_jax.convert import FAMILIES
  from exfiqa_jax.convert.core import variables
  from exfiqa_jax.models.inference import abstract_variables
  from tests.fr_helpers import reference_state_dict, tiny

  config = tiny(family)
  ref, sd = reference_state_dict(config, seed=seed)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  return ref, nnx.merge(abstract_variables(config)[0], params, stats), config


def inputs(config, n: int, seed: int = 1) -> np.ndarray:
  """float32 [n, S, S, 3] network inputs of random faces."""
  s = config.image_size
  return np.asarray(fr_input(faces(n, seed)[:, :s, :s], "rgb", config))


def random_model(config, seed: int = 0) -> nnx.Module:
  """A Flax FR module of `config` with random weights and BatchNorm statistics, filled
  from numpy (no compiled initialiser): weights ~ N(0, 1/fan_in), statistics and
  scales near PyTorch's ranges (see `face_recognition.randomize_fr_`)."""
  from exfiqa_jax.models.inference import abstract_variables

  graphdef, params, stats = abstract_variables(config)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name, shape = jax.tree_util.keystr(path), leaf.shape
    if "['var']" in name:
      v = 0.5 + 1.5 * rng.random(shape)
    elif "['mean']" in name:
      v = 0.2 * rng.standard_normal(shape)
    elif "['scale']" in name:
      v = 1.0 + 0.2 * rng.standard_normal(shape)
    elif "['weight']" in name:  # PReLU slope
      v = rng.random(shape) - 0.25
    elif len(shape) >= 2:
      v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    else:
      v = 0.1 * rng.standard_normal(shape)
    return jax.numpy.asarray(v, np.float32)

  params = jax.tree_util.tree_map_with_path(fill, params)
  stats = jax.tree_util.tree_map_with_path(fill, stats)
  return nnx.merge(graphdef, params, stats)

"""BatchNorm folding (`layers.Conv(..., bn=)`) against the unfolded order, and against the
PyTorch reference with folding off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.convert.core import variables
from exfiqa_jax.convert.families import FAMILIES
from exfiqa_jax.models import layers
from exfiqa_jax.models.inference import abstract_variables
from exfiqa_jax.models.registry import fr_input
from tests.fr_helpers import reference_embedding, reference_state_dict, tiny
from tests.score_helpers import faces


def _random_bn(c: int, eps: float, affine: bool, rng: np.random.Generator) -> nnx.BatchNorm:
  bn = layers.batch_norm(c, nnx.Rngs(0), eps, affine=affine)
  bn.mean[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
  bn.var[...] = jnp.asarray(rng.uniform(0.1, 3.0, c), jnp.float32)
  if affine:
    bn.scale[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
    bn.bias[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
  return bn


@pytest.mark.parametrize("affine", [True, False])
def test_bn_affine_is_the_batch_norm(affine):
  rng = np.random.default_rng(0)
  bn = _random_bn(6, 2e-5, affine, rng)
  x = jnp.asarray(rng.normal(size=(3, 5, 6)), jnp.float32)
  scale, shift = layers.bn_affine(bn)
  np.testing.assert_allclose(np.asarray(x * scale + shift), np.asarray(bn(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0)])
def test_folded_convolution_equals_convolution_then_batch_norm(k, stride, padding):
  rng = np.random.default_rng(1)
  conv = layers.Conv(4, 7, k, stride, padding, rngs=nnx.Rngs(2))
  bn = _random_bn(7, 1e-5, True, rng)
  x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)), jnp.float32)
  want = np.asarray(bn(conv(x)))
  got = np.asarray(conv(x, bn=bn))
  assert got.shape == want.shape == (2, *[(9 + 2 * padding - k) // stride + 1] * 2, 7)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  bf16 = np.asarray(conv(x, jnp.bfloat16, bn=bn))
  assert np.abs(bf16 - want).max() <= 2e-2 * np.abs(want).max()


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
def test_unfolded_model_matches_the_reference_and_the_folded_one(family):
  config = tiny(family)
  ref, sd = reference_state_dict(config, seed=5)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  x = np.asarray(fr_input(faces(3, 2), "rgb", config))
  want = reference_embedding(ref, x)
  model = nnx.merge(abstract_variables(config)[0], params, stats)
  folded = np.asarray(jax.jit(lambda m, x: m(x))(model, x))
  unfolded = np.asarray(jax.jit(lambda m, x: m(x, fold_bn=False))(model, x))
  np.testing.assert_allclose(unfolded, want, atol=2e-4, rtol=2e-4)
  np.testing.assert_allclose(folded, want, atol=2e-4, rtol=2e-4)
  assert np.abs(want).max() > 1.0
  # Folding reorders float32 roundings only.
  assert np.abs(folded - unfolded).max() <= 1e-4 * np.abs(want).max()

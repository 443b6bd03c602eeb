"""Winograd F(2x2, 3x3) convolutions (`layers.winograd_conv3x3`, the bfloat16 CPU path of
`layers.Conv`) against XLA's convolution at float32 "highest" precision and against the
PyTorch face-recognition references."""

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

DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, k):
  """The independent reference: XLA's convolution, padding 1, at full float32 precision."""
  return np.asarray(
    jax.lax.conv_general_dilated(
      x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN, precision="highest"
    )
  )


# (algorithm, shapes, seed, float32 bound, bfloat16 bound), bounds relative to max |ref|.
# F(2x2): measured 2-4e-7 in float32 (the transforms' rounding), 4-6e-3 in bfloat16 (its
# operands). F(4x4), an option: 0.5-8e-6 (C up to 128: the transforms' larger coefficients,
# 1/6 and 1/24 inexact) and 2-7e-2, about 10x F(2x2)'s, why it is not the bfloat16 default.
WINOGRAD = {
  "F(2x2)": (
    layers.winograd_conv3x3,
    [(2, 14, 14, 16, 16), (2, 7, 7, 8, 5), (1, 6, 9, 4, 3)],
    0,
    2e-6,
    2e-2,
  ),
  "F(4x4)": (
    layers.winograd_conv3x3_f4,
    [(2, 16, 16, 8, 8), (2, 7, 7, 8, 5), (1, 6, 9, 4, 3)],
    2,
    2e-5,
    1.5e-1,
  ),
}


@pytest.mark.parametrize(
  "algorithm, shape", [(a, shape) for a, spec in WINOGRAD.items() for shape in spec[1]]
)
def test_winograd_equals_the_convolution(algorithm, shape):
  """Even maps, odd ones (7x7: one extra padded row and column) and non-square ones;
  F(4x4) also on maps that are not multiples of 4 (padded and cropped)."""
  fn, _, seed, bound32, bound16 = WINOGRAD[algorithm]
  b, h, w, c, o = shape
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((b, h, w, c)).astype(np.float32)
  k = rng.standard_normal((3, 3, c, o)).astype(np.float32)
  want = _conv(x, k)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(fn(jnp.asarray(x), jnp.asarray(k), jnp.float32))
  assert got.shape == want.shape == (b, h, w, o) and got.dtype == np.float32
  assert np.abs(got - want).max() <= bound32 * np.abs(want).max()
  half = np.asarray(fn(jnp.asarray(x), jnp.asarray(k), jnp.bfloat16))
  assert 0 < np.abs(half - want).max() <= bound16 * np.abs(want).max()


def test_conv_takes_winograd_by_the_rule_and_can_be_turned_off():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 6, 6, 256)), jnp.float32)
  wide = layers.Conv(256, 8, 3, 1, 1, rngs=nnx.Rngs(0))
  kernel = wide.kernel[...]
  assert jax.default_backend() == "cpu"
  assert layers.use_winograd(3, 1, 256, jnp.bfloat16)
  assert not layers.use_winograd(3, 2, 256, jnp.bfloat16)  # stride 2: the library's
  assert layers.use_winograd(3, 1, 128, jnp.bfloat16)  # faster at 16 rows a pass, measured
  assert layers.use_winograd(3, 1, 64, jnp.bfloat16)  # bfloat16: faster whole networks
  assert not layers.use_winograd(3, 1, 32, jnp.bfloat16)
  assert layers.use_winograd(3, 1, 128, jnp.float32)
  assert not layers.use_winograd(3, 1, 64, jnp.float32)  # float32: slower measured at 64
  assert layers.use_winograd(3, 1, 256, jnp.float32)
  assert not layers.use_winograd(3, 1, 256, jnp.float16)
  assert not layers.use_winograd(1, 1, 256, jnp.bfloat16)
  # bfloat16 on maps up to WINOGRAD_MAX_MAP_BF16 (the 112x112 maps: the library's)
  assert layers.use_winograd(3, 1, 64, jnp.bfloat16, (56, 56))
  assert not layers.use_winograd(3, 1, 64, jnp.bfloat16, (112, 112))
  assert layers.use_winograd(3, 1, 128, jnp.float32, (112, 112))  # float32: no map rule
  with layers.conv_algorithm(winograd=True, max_map_bf16=112):
    assert layers.use_winograd(3, 1, 64, jnp.bfloat16, (112, 112))
  library = np.asarray(
    jax.lax.conv_general_dilated(
      x.astype(jnp.bfloat16),
      kernel.astype(jnp.bfloat16),
      (1, 1),
      ((1, 1), (1, 1)),
      dimension_numbers=DN,
      preferred_element_type=jnp.float32,
    )
  )
  for dtype in (jnp.bfloat16, jnp.float32):
    np.testing.assert_array_equal(
      np.asarray(wide(x, dtype)), np.asarray(layers.winograd_conv3x3(x, kernel, dtype))
    )
  with layers.conv_algorithm(winograd=False):
    assert not layers.use_winograd(3, 1, 256, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(wide(x, jnp.bfloat16)), library)
    np.testing.assert_array_equal(
      np.asarray(wide(x)),
      np.asarray(
        jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)
      ),
    )
  assert layers.use_winograd(3, 1, 256, jnp.bfloat16)  # restored on leaving
  want = _conv(np.asarray(x), np.asarray(kernel))
  assert np.abs(np.asarray(wide(x, jnp.bfloat16)) - want).max() <= 2e-2 * np.abs(want).max()


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
def test_model_with_winograd_everywhere_matches_the_reference(family, monkeypatch):
  """Every 3x3 stride-1 convolution of a tiny model through Winograd (the channel
  threshold lowered to 1): float32 within the parity tolerance of
  tests/models/test_fr_models.py (2e-4 + 2e-4 relative), bfloat16 within its bfloat16
  tolerance (5e-2 of max |ref|) of the PyTorch float32 reference, and neither the
  library convolution's output (the path ran)."""
  config = tiny(family)
  ref, sd = reference_state_dict(config, seed=7)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  x = np.asarray(fr_input(faces(2, 3), "rgb", config))
  want = reference_embedding(ref, x)
  model = nnx.merge(abstract_variables(config)[0], params, stats)
  monkeypatch.setattr(layers, "WINOGRAD_MIN_CHANNELS", 1)
  monkeypatch.setattr(layers, "WINOGRAD_MIN_CHANNELS_BF16", 1)
  got = np.asarray(model(jnp.asarray(x), jnp.bfloat16))  # eager: no earlier trace reused
  full = np.asarray(model(jnp.asarray(x)))
  with layers.conv_algorithm(winograd=True, taps_s2=False):
    no_taps = np.asarray(model(jnp.asarray(x), jnp.bfloat16))
  with layers.conv_algorithm(winograd=False):
    library = np.asarray(model(jnp.asarray(x), jnp.bfloat16))
    library_full = np.asarray(model(jnp.asarray(x)))
  np.testing.assert_allclose(full, want, atol=2e-4, rtol=2e-4)
  assert np.abs(full - library_full).max() > 0
  assert np.abs(want).max() > 1.0
  # the threshold lowered to 1 channel also sends the stride-2 convolutions of the 56, 28
  # and 14 maps through the tap matmuls in bfloat16 (`use_taps_s2`)
  for other in (got, no_taps, library):
    assert np.abs(other - want).max() <= 5e-2 * np.abs(want).max()
  assert np.abs(got - library).max() > 0 and np.abs(got - no_taps).max() > 0


def test_conv_algorithm_tuning_switches():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((1, 8, 8, 16)), jnp.float32)
  conv = layers.Conv(16, 8, 3, 1, 1, rngs=nnx.Rngs(0))
  kernel = conv.kernel[...]
  assert not layers.use_winograd(3, 1, 16, jnp.float32)  # below the default threshold
  with layers.conv_algorithm(winograd=True, min_channels=16):
    assert layers.use_winograd(3, 1, 16, jnp.float32)
    np.testing.assert_array_equal(
      np.asarray(conv(x)), np.asarray(layers.winograd_conv3x3(x, kernel, jnp.float32))
    )
  with layers.conv_algorithm(winograd=True, min_channels=16, tile=4):
    np.testing.assert_array_equal(
      np.asarray(conv(x)), np.asarray(layers.winograd_conv3x3_f4(x, kernel, jnp.float32))
    )
  assert not layers.use_winograd(3, 1, 16, jnp.float32)  # restored on leaving
  with pytest.raises(ValueError, match="tile must be 2 or 4, got 3"):
    with layers.conv_algorithm(winograd=True, tile=3):
      pass


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_conv_is_a_dot_on_cpu(stride):
  """A 1x1 convolution (the downsample shortcuts) runs as subsampling + matmul on the CPU:
  float32 within rounding of XLA's convolution at "highest" precision, bfloat16 within
  bfloat16 rounding of the operands; with the switch off, the library's convolution."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((2, 7, 7, 24)), jnp.float32)
  conv = layers.Conv(24, 16, 1, stride, 0, rngs=nnx.Rngs(0))
  kernel = conv.kernel[...]
  want = np.asarray(
    jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((0, 0), (0, 0)), dimension_numbers=DN, precision="highest"
    )
  )
  assert layers.use_pointwise_dot(jnp.bfloat16) and layers.use_pointwise_dot(jnp.float32)
  assert not layers.use_pointwise_dot(jnp.float16)
  got = np.asarray(conv(x))
  size = 4 if stride == 2 else 7
  assert got.shape == want.shape == (2, size, size, 16)
  np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=0)
  dot = np.asarray(layers.matmul(x[:, ::stride, ::stride], kernel[0, 0], jnp.bfloat16))
  np.testing.assert_array_equal(np.asarray(conv(x, jnp.bfloat16)), dot)
  assert np.abs(dot - want).max() <= 2e-2 * np.abs(want).max()
  with layers.conv_algorithm(winograd=False):
    assert not layers.use_pointwise_dot(jnp.bfloat16)
    library = jax.lax.conv_general_dilated(
      x.astype(jnp.bfloat16),
      kernel.astype(jnp.bfloat16),
      (stride, stride),
      ((0, 0), (0, 0)),
      dimension_numbers=DN,
      preferred_element_type=jnp.float32,
    )
    np.testing.assert_array_equal(np.asarray(conv(x, jnp.bfloat16)), np.asarray(library))


def test_model_with_winograd_f4_everywhere_matches_the_reference_in_float32():
  """The F(4x4, 3x3) option on every 3x3 stride-1 convolution of a tiny iResNet: float32
  within the parity tolerance of the PyTorch reference."""
  config = tiny("arcface")
  ref, sd = reference_state_dict(config, seed=8)
  params, stats = variables(FAMILIES["arcface"], {k: v.numpy() for k, v in sd.items()}, config)
  x = np.asarray(fr_input(faces(2, 3), "rgb", config))
  want = reference_embedding(ref, x)
  model = nnx.merge(abstract_variables(config)[0], params, stats)
  with layers.conv_algorithm(winograd=True, min_channels=1, tile=4):
    got = np.asarray(model(jnp.asarray(x)))
  with layers.conv_algorithm(winograd=True, min_channels=1):
    f2 = np.asarray(model(jnp.asarray(x)))
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
  assert np.abs(got - f2).max() > 0


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
def test_fr_apply_runs_micro_batches_on_cpu(family):
  """`apply` on a face-recognition backbone runs FR_CPU_MICRO_BATCH rows at a time on the
  CPU by default (lax.map, then the remainder), equal to one pass up to rounding, and
  both match the PyTorch reference within the parity tolerance."""
  from exfiqa_jax.models.inference import apply
  from exfiqa_jax.models.registry import FR_CPU_MICRO_BATCH

  config = tiny(family)
  ref, sd = reference_state_dict(config, seed=9)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  graphdef = abstract_variables(config)[0]
  n = FR_CPU_MICRO_BATCH * 2 + 3
  x = np.asarray(fr_input(faces(n, 4), "rgb", config))
  want = reference_embedding(ref, x)
  auto = np.asarray(apply(graphdef, params, stats, jnp.asarray(x)))
  whole = np.asarray(apply(graphdef, params, stats, jnp.asarray(x), micro_batch=None))
  np.testing.assert_allclose(auto, whole, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(auto, want, atol=2e-4, rtol=2e-4)
  jaxpr = str(jax.make_jaxpr(lambda x: apply(graphdef, params, stats, x))(jnp.asarray(x)))
  assert "scan" in jaxpr and "length=2" in jaxpr  # two full micro-batches, then 3 rows


@pytest.mark.parametrize("size, stride", [(8, 2), (7, 2), (8, 1), (7, 1)])
def test_patches_equals_the_convolution(size, stride):
  """The patches form (the stem's CPU path at stride 1, a measured option at stride 2):
  even and odd maps, float32 within rounding, bfloat16 within bfloat16 rounding."""
  rng = np.random.default_rng(5)
  x = rng.standard_normal((2, size, size, 6)).astype(np.float32)
  k = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
  want = np.asarray(
    jax.lax.conv_general_dilated(
      x, k, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=DN, precision="highest"
    )
  )
  xj, kj = jnp.asarray(x), jnp.asarray(k)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(layers.patches_conv3x3(xj, kj, jnp.float32, stride))
  out = -(-size // stride)
  assert got.shape == want.shape == (2, out, out, 5)
  assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()
  half = np.asarray(layers.patches_conv3x3(xj, kj, jnp.bfloat16, stride))
  assert 0 < np.abs(half - want).max() <= 2e-2 * np.abs(want).max()


def test_conv_takes_patches_for_a_stem_by_the_rule():
  """An RGB stem (3 input channels, 3x3, stride 1) runs as patches + one matmul on the
  CPU in float32 and bfloat16, bit for bit; more channels or the rules off: not."""
  assert layers.use_patches(3, 1, 3, jnp.float32) and layers.use_patches(3, 1, 3, jnp.bfloat16)
  assert not layers.use_patches(3, 1, 8, jnp.float32)
  assert not layers.use_patches(3, 2, 3, jnp.float32)
  assert not layers.use_patches(3, 1, 3, jnp.float16)
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.float32)
  conv = layers.Conv(3, 8, 3, 1, 1, rngs=nnx.Rngs(0))
  kernel = conv.kernel[...]
  for dtype in (jnp.float32, jnp.bfloat16):
    np.testing.assert_array_equal(
      np.asarray(conv(x, dtype)), np.asarray(layers.patches_conv3x3(x, kernel, dtype))
    )
  with layers.conv_algorithm(winograd=True, patches=False):
    assert not layers.use_patches(3, 1, 3, jnp.float32)
  with layers.conv_algorithm(winograd=False):
    assert not layers.use_patches(3, 1, 3, jnp.float32)
    library = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN
    )
    np.testing.assert_array_equal(np.asarray(conv(x)), np.asarray(library))


@pytest.mark.parametrize("shape", [(2, 8, 8, 6, 5), (1, 6, 10, 4, 3), (2, 14, 14, 16, 8)])
def test_taps_stride2_equals_the_convolution(shape):
  """The nine tap matmuls of a 3x3 stride-2 convolution (the bfloat16 CPU path of `Conv`
  on maps up to 56x56): even maps, square or not; float32 within rounding of XLA's
  convolution at "highest" precision, bfloat16 within bfloat16 rounding of the operands;
  an odd map is refused."""
  b, h, w, c, o = shape
  rng = np.random.default_rng(6)
  x = rng.standard_normal((b, h, w, c)).astype(np.float32)
  k = rng.standard_normal((3, 3, c, o)).astype(np.float32)
  want = np.asarray(
    jax.lax.conv_general_dilated(
      x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN, precision="highest"
    )
  )
  with jax.default_matmul_precision("highest"):
    got = np.asarray(layers.taps_conv3x3_s2(jnp.asarray(x), jnp.asarray(k), jnp.float32))
  assert got.shape == want.shape == (b, h // 2, w // 2, o) and got.dtype == np.float32
  assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()
  half = np.asarray(layers.taps_conv3x3_s2(jnp.asarray(x), jnp.asarray(k), jnp.bfloat16))
  assert 0 < np.abs(half - want).max() <= 2e-2 * np.abs(want).max()
  with pytest.raises(ValueError, match="the map must be even, got 7x8"):
    layers.taps_conv3x3_s2(jnp.zeros((1, 7, 8, c)), jnp.asarray(k), jnp.bfloat16)


def test_conv_takes_stride2_taps_by_the_rule():
  """bfloat16, stride 2, >= 64 input channels, an even map of at most 56: the tap
  matmuls, bit for bit; float32, a 112 map, an odd map, fewer channels or the switch
  off: the library's convolution."""
  assert layers.use_taps_s2(3, 2, 64, (56, 56), jnp.bfloat16)
  assert layers.use_taps_s2(3, 2, 512, (14, 14), jnp.bfloat16)
  assert not layers.use_taps_s2(3, 2, 64, (112, 112), jnp.bfloat16)  # slower, measured
  assert not layers.use_taps_s2(3, 2, 64, (56, 56), jnp.float32)  # no faster, measured
  assert not layers.use_taps_s2(3, 2, 32, (56, 56), jnp.bfloat16)
  assert not layers.use_taps_s2(3, 2, 64, (7, 7), jnp.bfloat16)
  assert not layers.use_taps_s2(3, 1, 64, (56, 56), jnp.bfloat16)
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.standard_normal((1, 8, 8, 64)), jnp.float32)
  conv = layers.Conv(64, 8, 3, 2, 1, rngs=nnx.Rngs(0))
  kernel = conv.kernel[...]
  np.testing.assert_array_equal(
    np.asarray(conv(x, jnp.bfloat16)),
    np.asarray(layers.taps_conv3x3_s2(x, kernel, jnp.bfloat16)),
  )

  def library(dtype):
    return np.asarray(
      jax.lax.conv_general_dilated(
        x.astype(dtype),
        kernel.astype(dtype),
        (2, 2),
        ((1, 1), (1, 1)),
        dimension_numbers=DN,
        preferred_element_type=jnp.float32,
      )
    )

  np.testing.assert_array_equal(np.asarray(conv(x)), library(jnp.float32))
  with layers.conv_algorithm(winograd=True, taps_s2=False):
    assert not layers.use_taps_s2(3, 2, 64, (56, 56), jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(conv(x, jnp.bfloat16)), library(jnp.bfloat16))
  assert layers.use_taps_s2(3, 2, 64, (56, 56), jnp.bfloat16)  # restored on leaving

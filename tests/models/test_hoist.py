"""The weights' own work computed once (`models.hoist`): the split of a traced function,
the micro-batch loop with it hoisted, and `apply`'s kept preparation, each bit for bit
the plain computation."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax.models import hoist
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.inference import apply, apply_program, create, program_count, split
from exfiqa_jax.models.layers import conv_algorithm
from exfiqa_jax.models.registry import FR_CPU_MICRO_BATCH

SIZES = dict(layers=(1, 2, 1, 1), widths=(8, 16, 24, 32), stem_width=8, embedding_size=32)


def _f(w, x):
  """Weight-only work (a fold and a cast), a use of x, and an effect on the weights."""
  k = (w["a"] * 2.0 + w["b"]).astype(jnp.bfloat16)
  jax.debug.callback(lambda v: None, w["a"])
  return jnp.tanh(x.astype(jnp.bfloat16) @ k).astype(jnp.float32) + w["b"]


def test_split_puts_weight_work_in_prep_and_the_rest_in_run():
  rng = np.random.default_rng(0)
  w = {"a": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)}
  w["b"] = jnp.asarray(rng.standard_normal((3,)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
  closed, n, _ = hoist._trace(_f, w, (x,))
  prep, run = hoist.split_jaxpr(closed, n)
  prep_ops = {e.primitive.name for e in prep.jaxpr.eqns}
  run_ops = {e.primitive.name for e in run.jaxpr.eqns}
  assert {"mul", "add", "convert_element_type"} <= prep_ops
  assert "debug_callback" in run_ops and "debug_callback" not in prep_ops  # effects stay
  assert "dot_general" in run_ops and "tanh" in run_ops and "dot_general" not in prep_ops
  residuals = jax.extend.core.jaxpr_as_fun(prep)(*jax.tree.leaves(w))
  (got,) = jax.extend.core.jaxpr_as_fun(run)(*residuals, x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(_f(w, x)))


def test_map_hoisted_equals_the_plain_loop():
  rng = np.random.default_rng(1)
  w = {"a": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)}
  w["b"] = jnp.asarray(rng.standard_normal((3,)), jnp.float32)
  xs = jnp.asarray(rng.standard_normal((3, 4, 5)), jnp.float32)
  got = jax.jit(lambda w, xs: hoist.map_hoisted(_f, w, xs))(w, xs)
  want = jax.jit(lambda w, xs: jax.lax.map(lambda x: _f(w, x), xs))(w, xs)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # The weight work sits outside the loop: the scan body holds no convert of the kernel.
  jaxpr = jax.make_jaxpr(lambda w, xs: hoist.map_hoisted(_f, w, xs))(w, xs)
  top = [e.primitive.name for e in jaxpr.jaxpr.eqns]
  assert top.index("convert_element_type") < top.index("scan")


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_apply_prepared_equals_the_plain_program(family, dtype):
  """Winograd, folding and casts on every convolution (rules down to 1 channel), two full
  micro-batches and a remainder: the kept preparation, the hoisted program and the
  program without hoisting give the same bits, again on a second call and with new
  weights."""
  # Its own sizes: programs traced under other rules (other tests) are never reused.
  config = FRConfig.for_family(family, **{**SIZES, "embedding_size": 24})
  graphdef, params, stats = split(create(config, seed=3))
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.uniform(-1, 1, (2 * FR_CPU_MICRO_BATCH + 3, 112, 112, 3)), jnp.float32)
  with conv_algorithm(winograd=True, min_channels=1):
    plain = apply_program(graphdef, params, stats, x, dtype=dtype, hoist=False)
    one = apply(graphdef, params, stats, x, dtype=dtype, prepare=False)
    kept = apply(graphdef, params, stats, x, dtype=dtype)
    again = apply(graphdef, params, stats, x, dtype=dtype)
    other = jax.tree.map(lambda a: a * 0.5, params)
    other_kept = apply(graphdef, other, stats, x, dtype=dtype)
    other_plain = apply_program(graphdef, other, stats, x, dtype=dtype, hoist=False)
  for got in (one, kept, again):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(plain))
  np.testing.assert_array_equal(np.asarray(other_kept), np.asarray(other_plain))
  assert not np.array_equal(np.asarray(other_kept), np.asarray(kept))


def test_apply_inside_a_callers_jit_and_vmap():
  """Traced weights take the one-program path: the same numbers under jit and vmap."""
  config = FRConfig.for_family("arcface", **SIZES)
  graphdef, params, stats = split(create(config, seed=5))
  x = jnp.asarray(np.random.default_rng(6).uniform(-1, 1, (10, 112, 112, 3)), jnp.float32)
  want = np.asarray(apply(graphdef, params, stats, x))
  got = jax.jit(lambda p, x: apply(graphdef, p, stats, x))(params, x)
  np.testing.assert_array_equal(np.asarray(got), want)
  halves = jax.vmap(lambda x: apply(graphdef, params, stats, x))(x.reshape(2, 5, 112, 112, 3))
  np.testing.assert_allclose(np.asarray(halves).reshape(10, -1), want, atol=1e-5, rtol=1e-5)


def _g(w, x):
  return x.astype(jnp.bfloat16) @ (w * 2.0).astype(jnp.bfloat16)


def test_prepared_keeps_the_weights_work_while_the_weights_live():
  """Same weights: prep's arrays reused; other weights: replaced; `keep` shapes at most;
  collected weights take their entry with them; traced calls run fn itself."""
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
  call = hoist.Prepared(_g, keep=2)
  np.testing.assert_array_equal(np.asarray(call(w, x)), np.asarray(_g(w, x)))
  (entry,) = call._kept.values()
  np.testing.assert_array_equal(np.asarray(call(w, x + 1)), np.asarray(_g(w, x + 1)))
  assert next(iter(call._kept.values()))[1] is entry[1]  # not recomputed
  w2 = w + 1
  np.testing.assert_array_equal(np.asarray(call(w2, x)), np.asarray(_g(w2, x)))
  assert call.kept() == 1 and next(iter(call._kept.values()))[1] is not entry[1]
  for rows in (2, 3, 6):
    call(w2, x[:1].repeat(rows, 0))
  assert call.kept() == 2 and len(call.compiled) == 4
  del w2
  gc.collect()
  assert call.kept() == 0
  got = jax.jit(lambda w, x: call(w, x))(w, x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(_g(w, x)))


def test_apply_counts_one_program_per_call_shape():
  config = FRConfig.for_family("arcface", **SIZES)
  graphdef, params, stats = split(create(config, seed=7))
  x = jnp.zeros((2, 112, 112, 3), jnp.float32)
  before = program_count()
  for i in range(3):
    apply(graphdef, jax.tree.map(lambda a, i=i: a + i, params), stats, x)
  assert program_count() - before == 1

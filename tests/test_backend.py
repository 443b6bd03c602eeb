"""Compiler options only where the jaxlib accepts them; the mesh helper."""

import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax import backend
from exfiqa_jax.fusion import engine


def test_unknown_compile_option_is_dropped():
  # a name no jaxlib knows, as `xla_cpu_use_fusion_emitters` is unknown to jaxlib 0.12
  assert backend.jit_options({"xla_cpu_exfiqa_no_such_option": True}) == {}
  assert not backend.accepts("xla_cpu_exfiqa_no_such_option", True)


def test_known_compile_option_is_kept():
  opts = {"xla_backend_optimization_level": 0}
  assert backend.jit_options(opts) == opts


def test_engine_compiles_without_refused_options(monkeypatch):
  """The fallback: with an option this jaxlib refuses, an engine program still compiles and
  gives the numbers of a plain jit."""
  monkeypatch.setattr(engine, "ENGINE_OPTIONS", {"xla_cpu_exfiqa_no_such_option": False})

  def f(x):
    return jnp.cumsum(x) * 2

  x = jnp.arange(10, dtype=jnp.float32)
  np.testing.assert_array_equal(engine.jit_engine(f)(x), jax.jit(f)(x))
  with_static = engine.jit_engine(static_argnums=1)(lambda x, k: x[:k])
  np.testing.assert_array_equal(with_static(x, 3), x[:3])


def test_mesh_covers_the_given_devices():
  m = backend.mesh()
  assert m.axis_names == (backend.AXIS,) and m.devices.size == jax.device_count()
  assert backend.mesh(jax.local_devices()[:1]).devices.size == 1

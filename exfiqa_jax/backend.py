"""What the scoring and fusion code needs from JAX's backend: device meshes and
compiler options this jaxlib accepts.

    mesh()                        # 1-D mesh over every device of every host, axis "batch"
    mesh(jax.local_devices())     # this host's devices only (scoring: no traffic between hosts)
    jit_options({"xla_cpu_use_fusion_emitters": False})  # {} where this jaxlib refuses it
    LazyJit(fn, {"xla_cpu_use_fusion_emitters": False})  # jax.jit with them, at first use

Compiler options are named per XLA release: jaxlib 0.10 accepts
`xla_cpu_use_fusion_emitters`, 0.12 refuses it ("No such compile option") and
would fail every program compiled with it. Each option is tried once on a
trivial program; refused ones are dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

AXIS = "batch"


def mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh, axis `batch`, over `devices` (default: all devices of all hosts)."""
  devices = list(devices or jax.devices())
  return jax.make_mesh((len(devices),), (AXIS,), (jax.sharding.AxisType.Auto,), devices=devices)


def _probe(x):
  return x + 1


@functools.cache
def accepts(name: str, value: Any) -> bool:
  """Whether the default backend's compiler takes compile option `name=value`."""
  try:
    jax.jit(_probe).lower(jnp.zeros((), jnp.float32)).compile(compiler_options={name: value})
  except Exception as e:  # jaxlib raises its own runtime error type, named per release
    if "compile option" in str(e).lower() or "no such" in str(e).lower():
      return False
    raise
  return True


def jit_options(options: dict[str, Any]) -> dict[str, Any]:
  """The subset of `options` that this jaxlib accepts (see the module docstring)."""
  return {k: v for k, v in options.items() if accepts(k, v)}


class LazyJit:
  """`jax.jit(fn, compiler_options=jit_options(options), **kwargs)`, built at its first
  use (a call or any jit attribute: `lower`, `trace`, ...). Probing the options starts a
  backend, which importing a module must not do: a command forks its sweep workers
  before any backend starts (`exfiqa_jax.fusion.workers`)."""

  def __init__(self, fn, options: dict[str, Any], **kwargs):
    self._fn, self._options, self._kwargs = fn, options, kwargs
    functools.update_wrapper(self, fn)

  @functools.cached_property
  def jitted(self):
    return jax.jit(self._fn, compiler_options=jit_options(self._options), **self._kwargs)

  def __call__(self, *args, **kwargs):
    return self.jitted(*args, **kwargs)

  def __getattr__(self, name: str):  # what this object lacks: the jit's (`_cache_size` too)
    if name.startswith("__") or name in ("_fn", "_options", "_kwargs", "jitted"):
      raise AttributeError(name)  # not yet set (a copy being made): never recurse
    return getattr(self.jitted, name)

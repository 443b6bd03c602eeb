"""What a network computes from its weights alone, computed once instead of per pass.

Before it touches the images, a call derives arrays from its parameters only: BatchNorm
folded into kernels, casts to the compute dtype, Winograd kernel transforms (16/9 of
the kernel's size). Inside `lax.map` over micro-batches XLA recomputes the ones that
grow (its loop-invariant code motion keeps size-inflating work in the loop), and a
jitted call recomputes all of them on every call. Here a traced function's equations
are split into those computable from the weights alone ("prep") and the rest ("run"):

    outs = map_hoisted(fn, weights, xs)     # prep once, then lax.map of run over xs [n, ...]
    call = Prepared(fn)                     # two compiled programs, prep cached per weights
    outs = call(weights, x)                 # fn(weights, x), bit for bit

The split is of equations, so it is exact: the same operations on the same values,
in two programs (or two parts of one) instead of one. An equation with effects, or
reading anything the weights do not determine, stays in "run".
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jcore


def split_jaxpr(closed: jcore.ClosedJaxpr, n_known: int):
  """(prep, run) of a closed jaxpr whose first `n_known` inputs are the weights.

  prep: (weights...) -> residuals, the equations computable from the weights and
  constants alone; run: (residuals..., other inputs...) -> the outputs, every other
  equation. `run(*prep(*w), *x) == closed(*w, *x)` equation for equation.
  """
  jaxpr = closed.jaxpr
  known = set(jaxpr.constvars) | set(jaxpr.invars[:n_known])
  prep_eqns, run_eqns = [], []
  for eqn in jaxpr.eqns:
    reads_known = all(isinstance(v, jcore.Literal) or v in known for v in eqn.invars)
    if reads_known and not eqn.effects:
      prep_eqns.append(eqn)
      known.update(eqn.outvars)
    else:
      run_eqns.append(eqn)
  residuals: list = []
  for v in [v for eqn in run_eqns for v in eqn.invars] + list(jaxpr.outvars):
    if not isinstance(v, jcore.Literal) and v in known and v not in residuals:
      residuals.append(v)
  effects = set().union(*(eqn.effects for eqn in run_eqns))
  info = jcore.DebugInfo("split_jaxpr", "exfiqa_jax.models.hoist", None, None)  # no names
  prep = jcore.Jaxpr(jaxpr.constvars, jaxpr.invars[:n_known], residuals, prep_eqns, debug_info=info)
  run = jcore.Jaxpr(
    [], residuals + list(jaxpr.invars[n_known:]), jaxpr.outvars, run_eqns, effects, info
  )
  return jcore.ClosedJaxpr(prep, closed.consts), jcore.ClosedJaxpr(run, [])


def _abstract(a) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(a.shape, a.dtype)


def _trace(fn: Callable, weights: Any, args: tuple):
  """(closed jaxpr of fn over (weight leaves..., arg leaves...), number of weight leaves,
  output treedef)."""
  leaves, tree = jax.tree.flatten(weights)
  arg_leaves, arg_tree = jax.tree.flatten(args)

  def flat(*xs):
    w = jax.tree.unflatten(tree, xs[: len(leaves)])
    return fn(w, *jax.tree.unflatten(arg_tree, xs[len(leaves) :]))

  closed, shape = jax.make_jaxpr(flat, return_shape=True)(
    *map(_abstract, leaves), *map(_abstract, arg_leaves)
  )
  return closed, len(leaves), jax.tree.structure(shape)


def map_hoisted(fn: Callable, weights: Any, xs: jax.Array) -> Any:
  """`lax.map(lambda x: fn(weights, x), xs)` with fn's weight-only work done once, before
  the loop. xs: [n, ...] -> fn's outputs stacked on a leading axis n. Traceable."""
  closed, n, out_tree = _trace(fn, weights, (xs[0],))
  prep, run = split_jaxpr(closed, n)
  residuals = jcore.jaxpr_as_fun(prep)(*jax.tree.leaves(weights))
  body = jcore.jaxpr_as_fun(run)
  return jax.tree.unflatten(out_tree, jax.lax.map(lambda x: body(*residuals, x), xs))


class Prepared:
  """`fn(weights, *args)` on concrete arrays as two compiled programs: prep (the work of
  the weights alone) and run. Prep's outputs are kept for the last `keep` argument
  shapes, each while its weights are the same objects (weak references, checked by
  identity: arrays are immutable) and dropped when they are collected, so repeated calls
  with the same weights run only `run`. Traced arguments (a caller's jit or vmap) call
  `fn` itself. `weights_sharding` places prep's outputs as the weights are placed,
  `args_sharding` the other arguments (as `jax.jit`'s `in_shardings` would), and
  `out_sharding` run's outputs.

  Memory: each kept entry holds the weights' derived arrays (for iresnet100 about 200 MB
  in bfloat16, 400 MB in float32) beside the weights themselves.
  """

  def __init__(
    self,
    fn: Callable,
    keep: int = 2,
    weights_sharding=None,
    args_sharding=None,
    out_sharding=None,
  ):
    self.fn, self.keep = fn, keep
    self.shardings = weights_sharding, args_sharding, out_sharding
    self.compiled: dict = {}  # (structure, shapes) -> (prep, run, output treedef)
    self._kept: OrderedDict = OrderedDict()  # (structure, shapes) -> (weakrefs, residuals)
    self._lock = threading.Lock()

  def programs(self, weights: Any, args: tuple):
    """(key, (prep, run, output treedef)), compiled at first use per weight and argument
    shapes."""
    leaves, arg_leaves = jax.tree.leaves(weights), jax.tree.leaves(args)
    key = (
      jax.tree.structure((weights, args)),
      tuple((a.shape, a.dtype) for a in leaves + arg_leaves),
    )
    if key not in self.compiled:
      closed, n, out_tree = _trace(self.fn, weights, args)
      prep, run = split_jaxpr(closed, n)
      weights_sharding, args_sharding, out_sharding = self.shardings
      prep_kw = {} if weights_sharding is None else {"out_shardings": weights_sharding}
      run_kw = {} if out_sharding is None else {"out_shardings": out_sharding}
      if weights_sharding is not None and args_sharding is not None:
        run_kw["in_shardings"] = (weights_sharding, args_sharding)
      self.compiled[key] = (
        jax.jit(jcore.jaxpr_as_fun(prep), **prep_kw),
        jax.jit(lambda res, xs: jcore.jaxpr_as_fun(run)(*res, *xs), **run_kw),
        out_tree,
      )
    return key, self.compiled[key]

  def residuals(self, key, prep: Callable, leaves: list) -> tuple:
    """prep(*leaves), kept for `key` while every leaf is the same living object."""
    with self._lock:
      entry = self._kept.get(key)
      if entry is not None and all(r() is a for r, a in zip(entry[0], leaves, strict=True)):
        self._kept.move_to_end(key)
        return entry[1]
      self._kept.pop(key, None)  # other weights: drop the old arrays before making new ones
    residuals = tuple(prep(*leaves))
    refs = [weakref.ref(a) for a in leaves]
    with self._lock:
      self._kept[key] = (refs, residuals)
      while len(self._kept) > self.keep:
        self._kept.popitem(last=False)
    if leaves:  # the entry goes with its weights
      weakref.finalize(leaves[0], self._forget, key, refs)
    return residuals

  def _forget(self, key, refs) -> None:
    with self._lock:
      if key in self._kept and self._kept[key][0] is refs:
        del self._kept[key]

  def kept(self) -> int:
    """Entries kept now."""
    return len(self._kept)

  def __call__(self, weights: Any, *args):
    leaves, arg_leaves = jax.tree.leaves(weights), jax.tree.leaves(args)
    if any(isinstance(a, jax.core.Tracer) for a in leaves + arg_leaves):
      return self.fn(weights, *args)
    leaves = [a if isinstance(a, jax.Array) else jax.numpy.asarray(a) for a in leaves]
    key, (prep, run, out_tree) = self.programs(weights, args)
    residuals = self.residuals(key, prep, leaves)
    return jax.tree.unflatten(out_tree, run(residuals, arg_leaves))

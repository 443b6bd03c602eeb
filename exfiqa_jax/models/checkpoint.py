"""Checkpoint I/O: one orbax checkpoint holding params, batch statistics and the config.

    save("vit_s_ckpt", config, params, batch_stats)
    config, graphdef, params, batch_stats = load("vit_s_ckpt")
    out = apply(graphdef, params, batch_stats, images)

Layout: an orbax composite checkpoint with items `variables` (`{"params": ...,
"batch_stats": ...}`; the int keys of `nnx.List` entries such as `feature/0`
are stored as the strings "0", "1", ...) and `config` (the model's config as JSON,
with its `kind`, an entry of `models.registry.KINDS`; a config without one, as
written before kinds were stored, is read by its fields).
Writing is atomic: into a hidden sibling folder, renamed into place when done.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from flax import nnx

from exfiqa_jax import backend
from exfiqa_jax.fileio import JSONFileError, atomic_path, read_json, remove_late
from exfiqa_jax.models.inference import abstract_variables
from exfiqa_jax.models.registry import KINDS, config_from_dict, config_to_dict, kind_of

_LIBRARIES = ("orbax", "tensorstore", "asyncio", "concurrent/futures")


def _from_library(tb, obj: Any = None) -> bool:
  """Was this exception raised in orbax or the asyncio machinery under it (a traceback
  through their files, or an orbax coroutine `obj`)?"""
  code = getattr(obj, "cr_code", None)
  if code is not None and "orbax" in code.co_filename:
    return True
  while tb is not None:
    if any(name in tb.tb_frame.f_code.co_filename for name in _LIBRARIES):
      return True
    tb = tb.tb_next
  return False


class _OrbaxErrorLogs(logging.Filter):
  """Drops orbax's own error logs (a failed background write logs its traceback, e.g.
  `_SignalingThread.run() raised an exception: RESOURCE_EXHAUSTED`, before the save
  raises): every orbax failure reaches the caller as an exception, which the commands
  state in one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    tb = record.exc_info[2] if record.exc_info else None  # the path is absl's at times
    if record.name == "asyncio" and record.exc_info and tb is None:
      # a future's exception set by native code (tensorstore fails its other reads of a
      # damaged file so, newer releases included), never raised in Python: no traceback
      return "never retrieved" not in record.getMessage()
    return not ("orbax" in record.pathname or _from_library(tb))


logging.getLogger("absl").addFilter(_OrbaxErrorLogs())  # orbax logs through absl
# asyncio logs a failed read's tasks and futures that nobody awaited any more ("Task/Future
# exception was never retrieved", when collected: at exit included) with the exception's
# traceback: dropped where that traceback is orbax's or tensorstore's, as above, or where
# there is none (set by tensorstore's native code)
logging.getLogger("asyncio").addFilter(_OrbaxErrorLogs())


def quiet_orbax_aftermath() -> None:
  """Around an orbax read or write (called before each, idempotent): when it fails, its
  other reads and writes still in flight fail later, on their own threads, in callbacks
  from tensorstore's threads, or when their coroutines are collected (at exit included),
  and Python prints each as a traceback (`RuntimeError: Event loop is closed`, `Exception
  ignored in <coroutine ...>`, `_SignalingThread ... RESOURCE_EXHAUSTED`), up to
  hundreds of lines beside the one-line error; installed only after the failure, one of
  them could still come first. Such leftovers of orbax are dropped for the rest of the
  process (sys.unraisablehook, threading.excepthook, and sys.excepthook off the main
  thread, where a library callback's error is printed: each filtered to orbax's,
  tensorstore's and asyncio's frames; anything else is still printed by the hook before
  it, and the main thread's own exceptions always are)."""
  import sys
  import threading

  if getattr(sys.unraisablehook, "_exfiqa_quiet", False):
    return
  unraisable, thread_hook, except_hook = sys.unraisablehook, threading.excepthook, sys.excepthook

  def on_unraisable(u):
    if not _from_library(u.exc_traceback, u.object):
      unraisable(u)

  def on_thread(args):
    if not _from_library(args.exc_traceback) and "orbax" not in str(args.thread):
      thread_hook(args)

  def on_except(kind, value, tb):
    if threading.current_thread() is threading.main_thread() or not _from_library(tb):
      except_hook(kind, value, tb)

  on_unraisable._exfiqa_quiet = True  # type: ignore[attr-defined]
  sys.unraisablehook, threading.excepthook = on_unraisable, on_thread
  sys.excepthook = on_except


class Loaded(NamedTuple):
  config: Any  # a ViTConfig, FRConfig, ...: the config type of its kind
  graphdef: nnx.GraphDef
  params: nnx.State
  batch_stats: nnx.State


def _keys(tree: Any, fn) -> Any:
  """Applies `fn` to every dict key of a nested dict."""
  if isinstance(tree, dict):
    return {fn(k): _keys(v, fn) for k, v in tree.items()}
  return tree


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else type(e).__name__


def _to_int(key: str):
  return int(key) if key.isdigit() else key  # list indices; no parameter name is all digits


def save(
  path: str,
  config: Any,
  params: nnx.State,
  batch_stats: nnx.State,
  *,
  force: bool = False,
) -> None:
  """Writes `path` atomically; an existing `path` is replaced only with `force`."""
  variables = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
  args = ocp.args.Composite(
    variables=ocp.args.StandardSave(_keys(variables, str)),
    config=ocp.args.JsonSave(config_to_dict(config)),
  )
  staged = []
  try:
    with atomic_path(path, force=force, directory=True, kind="checkpoint") as tmp:
      staged.append(tmp)
      try:
        quiet_orbax_aftermath()  # before the operation: see its docstring
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
          ckptr.save(tmp, args=args, force=True)  # replaces the empty temporary folder
      except Exception as e:  # a full disk, a read-only folder: one line, no aftermath
        raise OSError(f"{path}: the checkpoint could not be written ({_first_line(e)})") from None
  except BaseException:
    if staged:  # the writes orbax started and did not wait for: nothing left behind
      remove_late(staged[0])
    raise


def _target(state: nnx.State, sharding: jax.sharding.Sharding) -> dict:
  """Shape/dtype/sharding leaves with string keys, the restore target of orbax."""

  def sds(a):
    return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

  return _keys(jax.tree.map(sds, nnx.to_pure_dict(state)), str)


def load_config(path: str) -> Any:
  """The config stored in the checkpoint folder `path`, without reading its variables."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such checkpoint folder (one written by exfiqa convert)")
  quiet_orbax_aftermath()  # before the operation: see its docstring
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    try:
      meta = ckptr.restore(
        os.path.abspath(path), args=ocp.args.Composite(config=ocp.args.JsonRestore())
      )
    except (FileNotFoundError, ValueError, KeyError) as e:
      raise ValueError(f"{path}: not an exfiqa checkpoint ({_first_line(e)})") from None
  return config_from_dict(meta["config"])


def load(path: str, expect: type | None = None) -> Loaded:
  """Restores config and variables, replicated over every available device.

  `expect` (a config type, e.g. ViTConfig or FRConfig): refuse a checkpoint of another
  kind, saying what it holds.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such checkpoint folder (one written by exfiqa convert)")
  path = os.path.abspath(path)  # orbax takes absolute paths only
  try:  # the config item (orbax JsonSave) read by the one bounded JSON reader
    meta = read_json(os.path.join(path, "config", "metadata"), "checkpoint config", 1 << 20)
  except FileNotFoundError:
    raise ValueError(f"{path}: not an exfiqa checkpoint (no config/metadata)") from None
  except JSONFileError as e:
    raise ValueError(f"{path}: not an exfiqa checkpoint (config/metadata: {e.problem})") from None
  try:
    if not isinstance(meta, dict):
      raise TypeError("not a JSON object")
    config = config_from_dict(meta)
  except (TypeError, ValueError) as e:  # an unknown kind stays a KeyError naming the kinds
    what = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ValueError(f"{path}: not an exfiqa checkpoint (config/metadata: {what})") from None
  quiet_orbax_aftermath()  # before the operation: see its docstring
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    kind = kind_of(config)
    if expect is not None and kind.config_type is not expect:
      want = next(k for k in KINDS.values() if k.config_type is expect)
      raise ValueError(f"{path} holds {kind.what}, not {want.what} (use it with {kind.command})")
    graphdef, params, batch_stats = abstract_variables(config)
    replicated = jax.NamedSharding(backend.mesh(), jax.P())  # every device of every host
    target = {
      "params": _target(params, replicated),
      "batch_stats": _target(batch_stats, replicated),
    }
    try:
      restored = ckptr.restore(
        path, args=ocp.args.Composite(variables=ocp.args.StandardRestore(target))
      )["variables"]
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
      raise ValueError(
        f"{path}: damaged or incomplete checkpoint, its variables cannot be read "
        f"({type(e).__name__}: {_first_line(e)})"
      ) from None
  restored = _keys(restored, _to_int)
  nnx.replace_by_pure_dict(params, restored["params"])
  nnx.replace_by_pure_dict(batch_stats, restored["batch_stats"])
  return Loaded(config, graphdef, params, batch_stats)

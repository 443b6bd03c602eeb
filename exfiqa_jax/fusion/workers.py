"""Worker processes beside a CPU-backend command: the many-variant areas of
`exfiqa_jax.fusion.chunks` and any other picklable call (`call`: a report's figures).

On the CPU backend the areas of many variants run in numpy (`sides.side_keys`,
`metrics.host`): thousands of small calls a chunk, many of them holding the GIL,
so threads over chunks gain little (LFW-sized, 2 cores: 115 us wall per variant
on two threads against 160 us on one). Processes share no GIL: `areas_later` hands
every worker a rule's variants with its pair sides, and its `finish` works on them in
this process too; each process takes the next chunk of ROWS variants from a counter
they share (made before the fork) until none is left, so all end a rule together
(equal fixed shares left a core idle for 0.3 s at the end of an LFW-sized sweep: this
process also prepares the next rule and collects the results).
The numbers are those of the threads bit for bit (the same functions on the same
arrays; each variant's areas do not depend on its chunk).

`start` forks the workers before the process imports JAX (a forked child of a
running backend can deadlock; the workers then import what they need, `preload`,
while this process imports its own modules on another core), only where the CPU is
the backend (no accelerator plugin installed, or `JAX_PLATFORMS=cpu`) and there is a
core to spare. Where none were started the chunks run on threads and calls inline.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import importlib.metadata
import importlib.util
import multiprocessing
import os
import signal
import sys
import warnings
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

ROWS = 64  # variants per side_keys + host_areas call (as a thread's chunk, fusion.chunks)
MOST = 7  # workers by default at most: each holds its own imports (about 220 MB resident)
PRELOAD = ("exfiqa_jax.fusion.sides", "exfiqa_jax.metrics.host")  # `_claim`: numpy, no JAX
SLOTS = 64  # claim counters, one per rule in flight (at most two: `areas_later`), cycled

_pool: ProcessPoolExecutor | None = None
_count = 0  # the workers of _pool
_next = 0  # claim counters handed out
_claims = None  # SLOTS shared counters (made before the fork): the next chunk of a rule


def _backend_started() -> bool:
  """Whether this process has started a JAX backend (True when it cannot tell)."""
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return True


def cpu_backend() -> bool:
  """Whether JAX will run on the CPU: `JAX_PLATFORMS=cpu`, or no accelerator plugin or
  TPU runtime installed (a `jax_plugins` entry point or module, `libtpu`)."""
  platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms == "cpu"
  if importlib.metadata.entry_points(group="jax_plugins"):
    return False
  if importlib.util.find_spec("libtpu") is not None:
    return False
  spec = importlib.util.find_spec("jax_plugins")  # a namespace package of PJRT plugins
  return spec is None or not list(spec.submodule_search_locations or [])


def _initialize(names: tuple[str, ...]) -> None:
  """A worker's first work: it dies with this process (Linux PR_SET_PDEATHSIG: no
  worker outlives a killed command) and leaves Ctrl-C to it (the command reports an
  interrupt in one line; `stop` ends the workers); then imports each `module` and
  calls each `module:function`."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
  except (OSError, AttributeError):
    pass
  for name in names:
    module, _, function = name.partition(":")
    m = importlib.import_module(module)
    if function:
      getattr(m, function)()


def default_count() -> int:
  """One worker per core this process may run on, but one (this process takes chunks
  too), at most MOST."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(0, min(MOST, (cores or 1) - 1))


def start(count: int | None = None, preload: tuple[str, ...] = ()) -> int:
  """Forks `count` workers (default `default_count`) that import PRELOAD and `preload`
  (`module` or `module:function`, called) first, if this process may: Linux, the CPU as
  JAX's backend, no backend started yet. Returns the number started (0: threads and
  inline calls). Once per process; `stop` ends them (at exit at the latest)."""
  global _pool, _count
  if _pool is not None:
    return _count
  count = default_count() if count is None else count
  if count < 1 or not sys.platform.startswith("linux") or _backend_started():
    return 0
  if not cpu_backend():
    return 0
  global _claims
  context = multiprocessing.get_context("fork")
  _claims = context.Array("q", SLOTS)  # shared with the workers: made before they fork
  pool = ProcessPoolExecutor(
    count,
    mp_context=context,
    initializer=_initialize,
    initargs=(PRELOAD + tuple(preload),),
  )
  with warnings.catch_warnings():
    # Python 3.12 warns of any thread at a fork; here they are numpy's BLAS threads
    # (which quiesce at a fork), no JAX backend is running
    warnings.simplefilter("ignore", DeprecationWarning)
    pool.submit(int)  # a fork context forks every worker at the first submit: now
  _pool, _count = pool, count
  atexit.register(stop)
  return count


def stop() -> None:
  """Ends the workers."""
  global _pool, _count
  if _pool is not None:
    _pool.shutdown(wait=True, cancel_futures=True)
    _pool, _count = None, 0


def running() -> int:
  """The number of workers started (0: none)."""
  return _count


def call(fn, *args, **kwargs) -> Future:
  """fn(*args, **kwargs) on a worker when any runs (fn and its arguments picklable),
  else here and now; the Future holds its result or its exception."""
  if _pool is not None:
    return _pool.submit(fn, *args, **kwargs)
  done: Future = Future()
  try:
    done.set_result(fn(*args, **kwargs))
  except Exception as e:  # raised again by done.result(), where the caller waits
    done.set_exception(e)
  return done


def _claim(slot: int | None, hp, sides, masks: np.ndarray) -> dict[int, tuple]:
  """Chunks of ROWS variants of one rule, claimed one at a time from the shared counter
  `slot` until none is left (by this process and every worker alike; slot None: every
  chunk, here): {chunk: the four host-area outputs of masks[chunk ROWS:(chunk + 1) ROWS]}."""
  from exfiqa_jax.fusion.sides import side_keys
  from exfiqa_jax.metrics.host import host_areas

  out = {}
  i = -1
  while True:
    if slot is None:
      i += 1
    else:
      with _claims.get_lock():
        i = _claims[slot]
        _claims[slot] = i + 1
    if i * ROWS >= len(masks):
      return out
    part = masks[i * ROWS : (i + 1) * ROWS]
    out[i] = host_areas(hp, side_keys(sides, part))


def areas_later(hp, sides, masks: np.ndarray):
  """The host areas (`metrics.host.host_areas`) of variants masks [n, L] of one tabled
  rule (sides: `sides.pair_sides`; hp: `metrics.host.host_pairs`), in two steps: every
  worker starts on the rule now (after the rule before it); the returned finish() works
  on it in this process too and returns (erc_area [n, F], edc_area [n, K], edc_best
  [n, K], overflow [n]) in variant order. All take chunks of ROWS variants from one
  shared counter, so the processes end a rule together, however their speeds differ
  (this one also prepares the next rule: `fusion.sweep.sweep` calls between the two)."""
  global _next
  slot, jobs = None, []  # no workers: every chunk here
  if running() and len(masks):
    slot = _next % SLOTS
    _next += 1
    _claims[slot] = 0  # its last rule ended (finish() waited for it) SLOTS rules ago
    jobs = [call(_claim, slot, hp, sides, masks) for _ in range(running())]

  def finish():
    parts = _claim(slot, hp, sides, masks)
    for j in jobs:
      parts.update(j.result())
    if not parts:  # no variant
      f, k = len(hp.num), len(hp.best)
      return np.zeros((0, f), np.float32), *(np.zeros((0, k), np.float32),) * 2, np.zeros(0, bool)
    got = [parts[i] for i in range(len(parts))]
    return tuple(np.concatenate([p[j] for p in got]) for j in range(4))

  return finish


def areas(hp, sides, masks: np.ndarray):
  """`areas_later`'s two steps at once."""
  return areas_later(hp, sides, masks)()

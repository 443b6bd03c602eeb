"""The `exfiqa` command line: one sub-command per module of this package.

Each module there defines `NAME`, `HELP`, `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, and
nothing imports JAX before the arguments are parsed, so `--help` is quick.
Errors are one line on stderr (`exfiqa COMMAND: error: ...`, exit 2); Ctrl-C
exits 130 with one line; a closed output pipe (`exfiqa info | head`) ends quietly.
"""

from __future__ import annotations

import _thread
import argparse
import atexit
import ctypes
import importlib
import math
import os
import pkgutil
import signal
import sys
import threading

EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PIPE = 2, 130, 141
_quick_exit = False  # set by a QUICK_EXIT command's success (see `entry`)


def _command_names() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def positive_float(text: str) -> float:
  """argparse type: a finite number > 0."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
  return value


def fraction(text: str) -> float:
  """argparse type: a number strictly between 0 and 1."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not 0 < value < 1:
    raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
  return value


def int_list(text: str) -> tuple[int, ...]:
  """argparse type: comma-separated integers, e.g. 3,6,9,12."""
  try:
    return tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of exits") from None


def cost_list(text: str) -> tuple[float, ...]:
  """argparse type: comma-separated positive GFLOPs, one per exit, e.g. 0.99,1.95,2.9."""
  try:
    values = tuple(float(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of GFLOPs") from None
  if not values or not all(math.isfinite(v) and v > 0 for v in values):
    raise argparse.ArgumentTypeError(f"{text!r}: give one positive GFLOPs value per exit")
  return values


NEEDS_COST = (
  "--scores needs the cost of each exit: --checkpoint FOLDER (GFLOPs from the model's "
  "config) or --cost G1,...,GL (GFLOPs per exit)"
)


def add_cost(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "--cost",
    type=cost_list,
    metavar="G1,...,GL",
    help="with --scores: the GFLOPs of each exit, one per exit (else --checkpoint)",
  )


def score_file_costs(scores: str, checkpoint: str | None, cost, by_exit: bool = False):
  """(cost per exit [L], the line saying where it came from) for an `exfiqa score` file:
  the exit numbers (by_exit), the GFLOPs of the exits of the ViT-FIQA model in
  `checkpoint` (models/flops.py), or `cost` as given; ValueError when none is given, or
  when the depth or the number of costs differs from the file's exits."""
  import numpy as np

  from exfiqa_jax.metrics.inputs import score_file_cost

  depth = len(score_file_cost(scores, by_exit=True))  # 0: from_score_file says why
  if by_exit:
    return score_file_cost(scores, by_exit=True), "exit costs: the exit numbers (--depth-cost)"
  if checkpoint is None and cost is None:
    raise ValueError(NEEDS_COST)
  if cost is not None:
    if depth and len(cost) != depth:
      raise ValueError(f"--cost gives {len(cost)} exit costs; {scores} has {depth} exits")
    values, source = np.asarray(cost, float), "as given by --cost"
  else:
    from exfiqa_jax.models.checkpoint import load
    from exfiqa_jax.models.config import ViTConfig

    config = load(checkpoint, expect=ViTConfig).config
    if depth and config.depth != depth:
      raise ValueError(
        f"--checkpoint {checkpoint} has depth {config.depth}, the scores have {depth} exits"
      )
    values = score_file_cost(scores, config)
    source = f"from the model in --checkpoint {checkpoint}"
  return values, f"exit costs (GFLOPs) {source}: " + ", ".join(f"{g:.4g}" for g in values)


def name_list(known: tuple[str, ...], what: str, plural: str):
  """argparse type: comma-separated names from `known` (at least one, repeats dropped);
  what, plural: what a name is, for the error ("policy", "policies")."""

  def parse(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in known]
    if bad or not names:
      raise argparse.ArgumentTypeError(
        f"unknown {what} {', '.join(bad) or text!r}; {plural} are {', '.join(known)}"
      )
    return tuple(dict.fromkeys(names))

  return parse


def require_torch(command: str) -> None:
  """A one-line refusal where PyTorch (the `convert` extra) is not installed, before any
  work: `exfiqa convert` and `exfiqa export` read or write PyTorch files."""
  import importlib.util

  if importlib.util.find_spec("torch") is None:
    raise RuntimeError(
      f"{command} needs PyTorch, which is not installed: install the `convert` "
      'extra (pip install ".[convert]" in a checkout) or a torch build of your choice'
    )


def add_force(p: argparse.ArgumentParser, what: str = "the output") -> None:
  p.add_argument(
    "--force",
    action="store_true",
    help=f"replace {what} if it exists (only a file or folder exfiqa wrote; "
    "an unrelated folder is never replaced)",
  )


def add_quiet(p: argparse.ArgumentParser) -> None:
  p.add_argument("--quiet", action="store_true", help="no progress bars or library messages")


def add_channel_order(p: argparse.ArgumentParser) -> None:
  """--channel-order of the stored image files."""
  p.add_argument(
    "--channel-order",
    choices=("rgb", "bgr"),
    default="rgb",
    help="channel order of the stored files (bgr: swapped on reading)",
  )


def add_dtype(p: argparse.ArgumentParser) -> None:
  """--dtype of the model's matmuls."""
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="matmul dtype (bfloat16 accumulates in float32)",
  )


def add_image_arguments(p: argparse.ArgumentParser, checkpoint: str, out: str) -> None:
  """The arguments of a command that runs a model over image files (score, embed):
  checkpoint, images, out, force, batch size, channel order, dtype, work dir,
  distributed, quiet."""
  p.add_argument("--checkpoint", required=True, help=checkpoint)
  p.add_argument(
    "--images",
    required=True,
    metavar="DIR_OR_LIST",
    help="a folder of PNG/JPEG files, or a text file with one path a line "
    "(relative to the list file's folder)",
  )
  p.add_argument("--out", required=True, metavar="FILE.npz", help=out)
  add_force(p, "--out (and a --work-dir holding another run)")
  p.add_argument(
    "--batch-size",
    type=positive_int,
    default=32,
    help="global batch per host; a multiple of the local device count",
  )
  add_channel_order(p)
  add_dtype(p)
  p.add_argument(
    "--work-dir",
    default=None,
    help="keep completed chunks here so that a restarted run resumes; "
    "required on several hosts (a shared folder)",
  )
  p.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() first (multi-host pods)",
  )
  add_quiet(p)


def initialize_distributed() -> None:
  """`--distributed`: jax.distributed.initialize(), or one line saying that no cluster
  was found (on one machine jax only says that a coordinator address is missing)."""
  import jax

  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ValueError(
      "--distributed found no multi-host cluster to join (jax.distributed.initialize: "
      f"{first}); on one machine run without --distributed"
    ) from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Defaults in the help, except where there is none to show: a required flag, a
  default of None, an on/off flag."""

  def _get_help_string(self, action: argparse.Action) -> str:
    if action.required or action.default is None or action.default is False:
      return action.help or ""
    return super()._get_help_string(action)


def quiet_libraries() -> None:
  """Silences the info and warning messages of the libraries (absl, orbax, TF-style C++ logs)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import logging

  logging.getLogger().setLevel(logging.ERROR)
  for name in ("absl", "jax", "orbax", "jax._src.xla_bridge"):
    logging.getLogger(name).setLevel(logging.ERROR)
  try:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
  except ImportError:  # absl comes with orbax; nothing to silence without it
    pass


def compilation_cache() -> None:
  """Keep compiled programs between runs (a sweep compiles in about 3 s and loads
  from the cache in about 1 s): in $JAX_COMPILATION_CACHE_DIR when set (empty: no
  cache), else in $XDG_CACHE_HOME/exfiqa-jax/xla (default ~/.cache/exfiqa-jax/xla)."""
  import jax

  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(home, "exfiqa-jax", "xla"))
  # JAX keeps only programs that took over 1 s to compile; a sweep's programs take
  # 0.3-1 s each on a fast machine, so below that threshold nothing would be kept.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def keep_freed_memory() -> bool:
  """glibc: serve allocations below 32 MB from the heap and keep up to 256 MB of freed
  heap mapped, so the CPU sweep's temporaries (a few MB a chunk of variants,
  `fusion.chunks`) are not mapped and unmapped, with fresh zeroed pages, chunk after
  chunk. LFW-sized, 2
  threads: 9.5-11 page faults and 22-33 us of system time per variant without, about 1
  and 3-5 with. The setting is process-wide (each heap may keep up to 256 MB of freed
  memory mapped), so the commands that sweep set it for their own process and the
  library never does; on other C libraries nothing is set. True if set."""
  libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
  if not (libc or "").startswith("glibc"):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):
    return False
  m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
  return all(
    mallopt(k, v) == 1
    for k, v in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 256 << 20), (m_top_pad, 64 << 20))
  )


def _version() -> str:
  from importlib.metadata import PackageNotFoundError, version

  try:
    return version("exfiqa-jax")
  except PackageNotFoundError:
    return "unknown (not installed)"


def _message(e: BaseException) -> str:
  if isinstance(e, KeyError) and e.args:
    return str(e.args[0])
  if isinstance(e, OSError) and e.strerror and e.filename:
    return f"{e.filename}: {e.strerror}"
  return str(e) or type(e).__name__


def _redeliver_swallowed_interrupts() -> None:
  """Make every Ctrl-C stop the command.

  Python runs a signal handler at the next bytecode of the main thread; when that
  bytecode belongs to a finaliser or a garbage-collector callback (JAX registers
  one), the KeyboardInterrupt is printed as "Exception ignored" with a traceback
  and dropped, and the command runs on. This hook delivers such an interrupt
  again, from another thread a moment later, to whatever the main thread runs then
  (raising it inside the hook would be dropped the same way).
  """
  default = sys.unraisablehook

  def hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
      threading.Timer(0.01, _thread.interrupt_main).start()
    else:
      default(unraisable)

  sys.unraisablehook = hook


def main(argv: list[str] | None = None) -> int:
  """Runs `exfiqa ARGV` -> exit status (argparse's own errors exit 2 from inside)."""
  global _quick_exit
  _quick_exit = False
  _redeliver_swallowed_interrupts()
  try:
    return _main(argv)
  except KeyboardInterrupt:  # before a command started (while parsing or importing)
    print("exfiqa: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
  global _quick_exit
  parser = argparse.ArgumentParser(prog="exfiqa", description=__doc__.splitlines()[0])
  parser.add_argument("--version", action="version", version=f"exfiqa {_version()}")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  argv = sys.argv[1:] if argv is None else argv
  names = _command_names()
  # Import only the chosen command's module (and all of them for --help).
  chosen = [a for a in argv if a in names][:1] or names
  parsers = {}
  for name in names:
    if name in chosen:
      mod = importlib.import_module(f"{__name__}.{name}")
      p = sub.add_parser(
        mod.NAME,
        help=mod.HELP,
        description=getattr(mod, "DESCRIPTION", mod.HELP),
        formatter_class=HelpFormatter,
      )
      mod.add_arguments(p)
      p.set_defaults(
        _run=mod.run,
        _early=getattr(mod, "before_jax", None),
        _quick=getattr(mod, "QUICK_EXIT", False),
      )
      parsers[mod.NAME] = p
    else:
      sub.add_parser(name)
  args, extra = parser.parse_known_args(argv)
  if extra:  # the command's own usage, not the top-level one
    parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
  if getattr(args, "quiet", False):
    quiet_libraries()
  prefix = f"exfiqa {args.command}: error:"
  try:
    if args._early:  # a command's work before JAX is imported (e.g. forking workers)
      args._early(args)
    compilation_cache()
    code = int(args._run(args) or 0)
    sys.stdout.flush()  # a closed pipe shows here, not at exit
    _quick_exit = args._quick and code == 0
    return code
  except KeyboardInterrupt:
    print(f"exfiqa {args.command}: interrupted; completed outputs are kept", file=sys.stderr)
    return EXIT_INTERRUPTED
  except BrokenPipeError:
    _quiet_stdout()
    return EXIT_PIPE
  except (ValueError, KeyError, OSError, RuntimeError, TypeError) as e:
    print(f"{prefix} {_message(e)}", file=sys.stderr)
    return EXIT_ERROR
  except Exception as e:  # a bug: still one line, the traceback on request
    if os.environ.get("EXFIQA_TRACEBACK"):
      raise
    print(
      f"{prefix} unexpected {type(e).__name__}: {_message(e)} "
      "(set EXFIQA_TRACEBACK=1 to see where)",
      file=sys.stderr,
    )
    return EXIT_ERROR


def _quiet_stdout() -> None:
  """After a closed pipe: point stdout at /dev/null so that the exit flush is silent."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  except (OSError, ValueError):
    pass


def entry() -> None:
  """The `exfiqa` program: `main`, then exit with its status.

  After Ctrl-C an XLA compile or computation may still be running on native
  threads, and the interpreter's teardown can then crash (seen: SIGSEGV after
  the "interrupted" line). By the time `main` returns, everything the command
  cleans up has run (its `finally` blocks, the removal of its temporary files),
  so an interrupted program leaves without the teardown. A Ctrl-C after `main`
  has returned finds the work done and is ignored.

  A command whose module sets QUICK_EXIT = True (`exfiqa sweep`) leaves the same way
  after a success, once the exit handlers have run (its workers ended, its files
  already closed and moved into place): the teardown of the interpreter and of the
  native libraries' state took 0.15-0.25 s after importing JAX, a twentieth of a
  warm LFW-sized sweep.
  """
  code = main()
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  if code == EXIT_INTERRUPTED or _quick_exit:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except (OSError, ValueError):
        pass
    if _quick_exit:  # the exit handlers, not the interpreter's teardown (QUICK_EXIT)
      atexit._run_exitfuncs()
    os._exit(code)
  sys.exit(code)


if __name__ == "__main__":
  entry()

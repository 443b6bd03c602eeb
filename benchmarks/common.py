"""Shared helpers of the speed benchmarks: machine facts, interleaved timing, tables.

Importing this module puts the repository root on `sys.path`, so every script
runs as `python benchmarks/<name>.py` from a plain checkout.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARIES = ("jax", "jaxlib", "flax", "numpy", "torch")


def cpu_model() -> str:
  with open("/proc/cpuinfo") as f:
    names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  return names[0] if names else platform.processor()


def load() -> str:
  """The 1-minute load average (runnable processes; above the core count means contention)."""
  return f"{os.getloadavg()[0]:.2f}"


def machine_info(threads: int | None = None) -> str:
  """Markdown lines: date, command, CPU, cores, threads, library versions, load now."""
  versions = ", ".join(f"{name} {metadata.version(name)}" for name in LIBRARIES if _installed(name))
  used = f", {threads} threads used by each library" if threads else ""
  return "\n".join(
    [
      f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
      f"- command: `python {' '.join(sys.argv)}`",
      f"- CPU: {cpu_model()}, {os.cpu_count()} cores{used}",
      f"- Python {platform.python_version()}, {versions}",
      f"- load average (1 min) at start: {load()}",
    ]
  )


def _installed(name: str) -> bool:
  try:
    return bool(metadata.version(name))
  except metadata.PackageNotFoundError:
    return False


def use_threads(threads: int) -> None:
  """Both libraries on the same `threads` cores (XLA sizes its pool from the affinity)."""
  os.sched_setaffinity(0, range(threads))
  if _installed("torch"):
    import torch

    torch.set_num_threads(threads)


def interleaved(
  fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, dict[str, list[float]]]:
  """Per function, seconds per call: {"wall": [...], "cpu": [...]} (process CPU time).

  Calls go round-robin after `warmup` calls each; each function must block until
  its result is ready. Alternating spreads a shared machine's load over all
  candidates alike; CPU time counts the work done whatever the contention, so
  for one library's programs it is the steadier measure of their cost.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: {"wall": [], "cpu": []} for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      cpu, wall = time.process_time(), time.perf_counter()
      fn()
      times[name]["wall"].append(time.perf_counter() - wall)
      times[name]["cpu"].append(time.process_time() - cpu)
  return times


def measure(cmd: list[str]) -> tuple[float, float]:
  """(wall seconds, peak RSS in MiB) of one fresh-process run of `cmd` (stdout dropped)."""
  import subprocess

  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
  _, status, usage = os.wait4(proc.pid, 0)
  if os.waitstatus_to_exitcode(status):
    raise RuntimeError(f"{cmd} failed")
  return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux: KiB


def median(xs: list[float]) -> float:
  return statistics.median(xs)


def table(header: list[str], rows: list[list]) -> str:
  """A Markdown table; floats to 3 significant digits (whole numbers from 100)."""

  def cell(v):
    return (f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}") if isinstance(v, float) else str(v)

  lines = [header, ["---"] * len(header)] + [[cell(v) for v in row] for row in rows]
  return "\n".join("| " + " | ".join(line) + " |" for line in lines)

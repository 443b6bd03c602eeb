"""Time and peak memory of converting a full-size ViT-S checkpoint (width 512, depth 12).

    python benchmarks/convert_vit_s.py [--repeats 3]

Writes a random-weight checkpoint from the PyTorch reference model, then runs
each command `--repeats` times in a fresh process, reading its wall time and
peak resident memory (the process's own, from `os.wait4`). Prints a Markdown
table of medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_


def measure(cmd: list[str]) -> tuple[float, float]:
  """(wall seconds, peak RSS in MiB) of one run of `cmd`."""
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
  _, status, usage = os.wait4(proc.pid, 0)
  if os.waitstatus_to_exitcode(status):
    raise RuntimeError(f"{cmd} failed")
  return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="convert_bench_")
  src, dst, back = (os.path.join(tmp, n) for n in ("vit_s.pt", "vit_s_ckpt", "back.pt"))
  torch.save(randomize_(ViTFIQAReference(), seed=0).state_dict(), src)
  py = [sys.executable, "-m"]
  runs = {
    "exfiqa convert": py + ["convert", src, dst, "--force"],
    "exfiqa convert --verify": py + ["convert", src, dst, "--force", "--verify"],
    "exfiqa export": py + ["exfiqa_jax.cli", "export", dst, back, "--force"],
  }
  print(
    f"checkpoint: {os.path.getsize(src) / 2**20:.0f} MiB, {args.repeats} runs each, "
    f"{os.cpu_count()} CPUs"
  )
  print("| command | median wall (s) | median peak RSS (MiB) |")
  print("| --- | ---: | ---: |")
  for name, cmd in runs.items():
    times, rss = zip(*(measure(cmd) for _ in range(args.repeats)), strict=True)
    print(f"| {name} | {statistics.median(times):.1f} | {statistics.median(rss):.0f} |")
  shutil.rmtree(tmp)


if __name__ == "__main__":
  main()

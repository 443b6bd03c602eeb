"""Time of quality-only scoring against exit depth k, and the cost of returning every exit.

    python benchmarks/exit_bench.py [--batch 64] [--dtype float32] [--rounds 5] [--quick]

Runs `apply(..., num_layers=k, embedding=False)` of the released ViT-S shape
(random weights) for k = 1..12, and at k = 12 once more with `all_exits=False`
(the quality head after the last block only). All calls alternate round-robin
(the machine may be shared); medians after warm-up. Targets: t(k)/t(12) within
5% of k/12, and all 12 exits at most 2% dearer than the last one only.
"""
from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp

import common
import workloads
from exfiqa_jax import ViTConfig, apply, create, split
from exfiqa_jax.flops import exit_gflops


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--quick", action="store_true", help="batch 8, 2 rounds")
  args = p.parse_args()
  batch, rounds = (8, 2) if args.quick else (args.batch, args.rounds)
  common.use_threads(args.threads)
  config, dtype = ViTConfig(), jnp.dtype(args.dtype)
  print(common.machine_info(args.threads), "\n")
  variables = split(create(config))
  x = jnp.asarray(workloads.images(config, batch))
  run = lambda k, every: lambda: jax.block_until_ready(
      apply(*variables, x, num_layers=k, embedding=False, all_exits=every, dtype=dtype))
  fns = {k: run(k, True) for k in range(1, config.depth + 1)}
  fns["last"] = run(config.depth, False)
  times = {k: common.median(t) for k, t in common.interleaved(fns, rounds).items()}
  full, gflops = times[config.depth], exit_gflops(config)
  rows = [[k, gflops[k - 1], 1e3 * t, 1e3 * t / batch, t / full, k / config.depth,
           f"{100 * (t / full * config.depth / k - 1):+.1f}%", gflops[k - 1] / gflops[-1]]
          for k, t in times.items() if k != "last"]
  print(f"Quality only, batch {batch}, {args.dtype}; medians of {rounds} rounds; "
        f"load {common.load()} at the end.\n")
  print(common.table(["k", "GFLOP/image", "ms/batch", "ms/image", "t(k)/t(12)", "k/12",
                      "vs k/12", "FLOP ratio"], rows))
  last = times["last"]
  print("\n" + common.table(
      ["exits returned", "ms/batch", "overhead"],
      [["last only (all_exits=False)", 1e3 * last, ""],
       ["all 12", 1e3 * full, f"{100 * (full / last - 1):+.1f}%"]]))


if __name__ == "__main__":
  main()

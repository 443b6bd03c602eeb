"""Time of quality-only scoring against exit depth k, and the cost of returning every exit.

    python benchmarks/exit_bench.py [--batch 64] [--dtype float32] [--rounds 5] [--quick]

Runs `apply(..., num_layers=k, embedding=False)` of the released ViT-S shape
(random weights) for k = 1..12, and at k = 12 once more with `all_exits=False`
(the quality head after the last block only), and that last-only program a
second time in each round: the spread between its two series is the timing
noise floor. All calls alternate round-robin (the machine may be shared);
medians after warm-up. Targets: t(k)/t(12) within 5% of k/12, and all 12 exits
at most 2% dearer than the last one only.
"""

from __future__ import annotations

import argparse
import os

import common
import jax
import jax.numpy as jnp
import workloads

from exfiqa_jax import ViTConfig, apply, create, split
from exfiqa_jax.models.flops import exit_gflops


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

  def run(k, every):
    return lambda: jax.block_until_ready(
      apply(*variables, x, num_layers=k, embedding=False, all_exits=every, dtype=dtype)
    )

  last = run(config.depth, False)
  fns = {"last again": last, **{k: run(k, True) for k in range(1, config.depth + 1)}, "last": last}
  times = common.interleaved(fns, rounds)
  wall = {k: common.median(t["wall"]) for k, t in times.items()}
  cpu = {k: common.median(t["cpu"]) for k, t in times.items()}
  depth, gflops = config.depth, exit_gflops(config)

  def vs(t, k):
    return f"{100 * (t[k] / t[depth] * depth / k - 1):+.1f}%"

  rows = [
    [
      k,
      gflops[k - 1],
      1e3 * wall[k],
      wall[k] / wall[depth],
      vs(wall, k),
      1e3 * cpu[k],
      cpu[k] / cpu[depth],
      vs(cpu, k),
      k / depth,
      gflops[k - 1] / gflops[-1],
    ]
    for k in range(1, depth + 1)
  ]
  print(
    f"Quality only, batch {batch}, {args.dtype}; medians of {rounds} rounds; "
    f"load {common.load()} at the end. CPU = process CPU time per call.\n"
  )
  print(
    common.table(
      [
        "k",
        "GFLOP/image",
        "wall ms",
        "wall t(k)/t(12)",
        "vs k/12",
        "CPU ms",
        "CPU t(k)/t(12)",
        "vs k/12",
        "k/12",
        "FLOP ratio",
      ],
      rows,
    )
  )

  def over(t, k=depth):
    return f"{100 * (t[k] / t['last'] - 1):+.1f}%"

  print(
    "\n"
    + common.table(
      ["exits returned", "wall ms", "CPU ms", "overhead (wall)", "overhead (CPU)"],
      [
        ["last only (all_exits=False)", 1e3 * wall["last"], 1e3 * cpu["last"], "", ""],
        ["all 12", 1e3 * wall[depth], 1e3 * cpu[depth], over(wall), over(cpu)],
        [
          "last only, second series (noise floor)",
          1e3 * wall["last again"],
          1e3 * cpu["last again"],
          over(wall, "last again"),
          over(cpu, "last again"),
        ],
      ],
    )
  )


if __name__ == "__main__":
  main()

"""Where the CPU path of the fusion engine spends its time, per LFW-sized variant.

  python benchmarks/host_steps.py [--chunk 64] [--variants 1024] [--rounds 2]

LFW-sized synthetic data (benchmarks/sweep_bench.py `synthetic(12_000, 6_000)`, ERC at
FMR 1e-3 and 1e-4, EDC limits 0.2 and 0.3). For each rule, in one thread, the CPU
microseconds per variant of each step of the CPU path (`fusion.chunks._run` with
`host_sort()`): the numpy pair keys (`sides.side_keys`), the rate levels
(`metrics.host.levels`), the genuines' levels, the ERC (`rate_fnmr`, `erc_area`) and
the EDC (`edc_area`), chunks of `--chunk` variants; then the whole
`chunks.score_variants` of all 4,095 subsets on every core, wall and CPU per variant.
Rules are interleaved round by round; the 1-minute load is printed beside each row
(the machine is shared: compare steps within a row, not rows of different loads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402
from benchmarks.sweep_bench import FMRS, LIMITS, RULES, synthetic  # noqa: E402

STEPS = ("keys", "levels", "genuine levels", "ERC", "ERC area", "EDC")


def steps(hp, sides, masks, chunk) -> dict[str, float]:
  """CPU us per variant of each step, one thread, chunks of `chunk` variants."""
  from exfiqa_jax.fusion.sides import side_keys
  from exfiqa_jax.metrics import host

  spent = dict.fromkeys(STEPS, 0.0)

  def timed(name, fn, *args):
    t0 = time.process_time()
    out = fn(*args)
    spent[name] += time.process_time() - t0
    return out

  for i in range(0, len(masks), chunk):
    keys = timed("keys", side_keys, sides, masks[i : i + chunk])
    _, level = timed("levels", host.levels, keys, hp.count)
    glvl = timed("genuine levels", lambda: level[:, hp.gen_pos])
    fnmr, n_gen_r = timed("ERC", host.rate_fnmr, hp, glvl, level)
    timed("ERC area", host.erc_area, fnmr)
    timed("EDC", host.edc_area, hp, keys, glvl, n_gen_r)
  return {k: v / len(masks) * 1e6 for k, v in spent.items()}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--chunk", type=int, default=64)
  ap.add_argument("--variants", type=int, default=1024, help="subsets timed step by step")
  ap.add_argument("--rounds", type=int, default=2)
  args = ap.parse_args()

  from exfiqa_jax.fusion.chunks import score_variants
  from exfiqa_jax.fusion.engine import plan
  from exfiqa_jax.fusion.sides import pair_sides
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.metrics import make_pairset
  from exfiqa_jax.metrics.host import host_pairs

  ps = make_pairset(*synthetic(12_000, 6_000), fmrs=FMRS, limits=LIMITS)
  masks = subset_masks(12)
  weights = np.broadcast_to(np.arange(1, 13), masks.shape)
  hp = host_pairs(ps)
  sides = {}
  for rule in RULES:
    sides[rule] = pair_sides(ps, plan(ps, "none", rule, weights, host=True), rule)
    score_variants(ps, masks[:128], weights[:128], rule)  # first-call costs
  print(common.machine_info())
  head = ["rule", *STEPS, "sum (one thread)", "score_variants wall", "its CPU", "load"]
  rows = []
  for _ in range(args.rounds):
    for rule in RULES:
      load = common.load()
      if sides[rule] is None:
        t = dict.fromkeys(STEPS, float("nan"))
      else:
        t = steps(hp, sides[rule], masks[: args.variants], args.chunk)
      t0, c0 = time.perf_counter(), time.process_time()
      score_variants(ps, masks, weights, rule)
      wall, cpu = (time.perf_counter() - t0) / len(masks), (time.process_time() - c0) / len(masks)
      rows.append(
        [rule, *(f"{t[k]:.1f}" for k in STEPS), f"{sum(t.values()):.1f}"]
        + [f"{wall * 1e6:.0f}", f"{cpu * 1e6:.0f}", load]
      )
  print(f"\nCPU us per LFW-sized variant (steps: one thread, chunks of {args.chunk}; ", end="")
  print("score_variants: all 4,095 subsets, every core)\n")
  print(common.table(head, rows))


if __name__ == "__main__":
  main()

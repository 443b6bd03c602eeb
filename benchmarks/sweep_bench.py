"""Speed and memory of the fusion sweep (issue: fusion and evaluation engine).

  python benchmarks/sweep_bench.py [--loop-sample 100] [--skip-ijbc]
  python benchmarks/sweep_bench.py --profile-only

LFW-sized synthetic data (12,000 images x 12 exits, 6,000 pairs), the full sweep
of 4,095 subsets x 5 rules with ERC at FMR 1e-3 and 1e-4 and EDC partial areas
at 0.2 and 0.3, against a Python loop over variants calling numpy per variant
(timed on a sample, extrapolated) and a vectorised numpy version (timed on a
sample of whole chunks, extrapolated), side by side in one run; the JAX sweep also
in a fresh process with a warm persistent compilation cache. Then one fused
variant on an IJB-C-sized pair list (15.7 M pairs) in a subprocess, peak RSS.
Prints Markdown tables; --profile-only times each stage of one chunk.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import numpy_engine  # noqa: E402
from exfiqa_jax.fusion.rules import RULES  # noqa: E402
from exfiqa_jax.fusion.sweep import subset_masks, sweep  # noqa: E402
from exfiqa_jax.metrics import make_pairset  # noqa: E402

FMRS, LIMITS = (1e-3, 1e-4), (0.2, 0.3)


def synthetic(n_images, n_pairs, depth=12, seed=0):
  """Exit scores that track a latent utility more closely with depth; genuine
  comparison scores fall with the pair's utility. Rounded so that ties occur."""
  rng = np.random.default_rng(seed)
  u = rng.normal(size=n_images).astype(np.float32)
  noise = np.linspace(1.0, 0.3, depth, dtype=np.float32)
  exits = u[:, None] + rng.normal(size=(n_images, depth)).astype(np.float32) * noise
  a, b = rng.integers(0, n_images, (2, n_pairs), dtype=np.int32)
  genuine = rng.random(n_pairs) < 0.5
  s = np.where(genuine, 0.55 + 0.1 * np.minimum(u[a], u[b]), 0.05)
  s = (s + rng.normal(size=n_pairs).astype(np.float32) * 0.12).astype(np.float32)
  return np.round(exits, 3), a, b, genuine, np.round(s, 4)


def median_time(fn, repeats=3):
  """Median wall and CPU (all threads) seconds of fn() -> [wall, cpu]."""
  times = []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    times.append((time.perf_counter() - t0, time.process_time() - c0))
  return np.median(np.array(times), axis=0)


def run_child(*flags) -> list[str]:
  """This script in a fresh process with `flags` -> the words it prints."""
  out = subprocess.run([sys.executable, __file__, *flags], capture_output=True, text=True)
  if out.returncode:
    raise SystemExit(out.stderr)
  return out.stdout.split()


def ijbc_child():
  """One fused variant on an IJB-C-sized list -> 'seconds peak_rss_gib'."""
  from exfiqa_jax.fusion.engine import evaluate_variant

  exits, a, b, genuine, scores = synthetic(470_000, 15_700_000, seed=1)
  t0 = time.perf_counter()
  ps = make_pairset(exits, a, b, genuine, scores, fmrs=FMRS, limits=LIMITS)
  del a, b, genuine, scores
  evaluate_variant(ps, np.ones(12, bool), "weighted")
  print(
    f"{time.perf_counter() - t0:.1f}", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  )


def timed_sweep(data):
  """The full sweep of synthetic `data`, pair set included -> (ps, table, [wall, cpu])."""
  t0, c0 = time.perf_counter(), time.process_time()
  ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
  table = sweep(ps)
  return ps, table, np.array([time.perf_counter() - t0, time.process_time() - c0])


def sweep_child(cache_dir):
  """The full sweep in a fresh process with a persistent compilation cache -> 'wall cpu'."""
  import jax

  jax.config.update("jax_compilation_cache_dir", cache_dir)
  print(*timed_sweep(synthetic(12_000, 6_000))[2])


def warm_cache_sweep():
  """[wall, cpu] of a fresh process's full sweep once a first one filled the cache."""
  with tempfile.TemporaryDirectory() as cache:
    run_child("--sweep-child", cache)
    return np.array(run_child("--sweep-child", cache), float)


def profile(ps, masks, chunk=64):
  """Per-variant wall time of each stage on one chunk of the sweep (median of 3)."""
  import jax
  import jax.numpy as jnp

  from exfiqa_jax.fusion.engine import jit_engine, prepare
  from exfiqa_jax.fusion.rules import fuse
  from exfiqa_jax.metrics import pair_quality, stable_order
  from exfiqa_jax.metrics.edc import edc
  from exfiqa_jax.metrics.erc import erc

  values, order = prepare(ps, 0)
  m, w = jnp.asarray(masks[:chunk]), jnp.ones((chunk, masks.shape[1]))
  stages = {
    f"fusion, {r}": (jax.vmap(lambda m, w, r=r: fuse(values, m, r, w, order)), (m, w))
    for r in RULES
  }
  f = stages["fusion, mean"][0](m, w)
  pq = jax.vmap(lambda f: pair_quality(ps, f))(f)
  o = jax.vmap(stable_order)(pq)
  stages.update(
    {
      "pair quality": (jax.vmap(lambda f: pair_quality(ps, f)), (f,)),
      "stable quality order (one int64 sort)": (jax.vmap(stable_order), (pq,)),
      "ERC, 20 rates x 2 FMRs": (
        jax.vmap(lambda o: erc(ps.erc, o, ps.count, ps.fmr_num, ps.fmr_den)[1]),
        (o,),
      ),
      "EDC, 2 limits": (
        jax.vmap(lambda o, q: edc(o, q, ps.erc_genuine, ps.edc_error, ps.limits).area),
        (o, pq),
      ),
    }
  )
  print(
    f"\n| stage (chunk of {chunk} variants) | ms per variant, wall | CPU |\n| --- | --- | --- |"
  )
  for name, (fn, xs) in stages.items():
    fn = jit_engine(fn)
    jax.block_until_ready(fn(*xs))
    wall, cpu = median_time(lambda: jax.block_until_ready(fn(*xs)), 5) / chunk * 1e3
    print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--loop-sample", type=int, default=100, help="variants timed in the Python loop")
  ap.add_argument(
    "--vector-sample", type=int, default=256, help="variants timed in numpy, vectorised"
  )
  ap.add_argument("--skip-ijbc", action="store_true")
  ap.add_argument("--profile-only", action="store_true", help="only the per-stage profile")
  ap.add_argument("--ijbc-child", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--sweep-child", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.ijbc_child:
    return ijbc_child()
  if args.sweep_child:
    return sweep_child(args.sweep_child)
  exits, a, b, genuine, scores = synthetic(12_000, 6_000)
  masks, total = subset_masks(12), 4095 * len(RULES)
  if args.profile_only:
    return profile(make_pairset(exits, a, b, genuine, scores, fmrs=FMRS, limits=LIMITS), masks)
  weights = np.broadcast_to(np.arange(1, 13, dtype=np.float32), masks.shape)

  ps, table, t_full = timed_sweep((exits, a, b, genuine, scores))
  t_steady = median_time(lambda: sweep(ps, masks=masks[:512]), 3) / (512 * len(RULES)) * total
  t_warm = warm_cache_sweep()

  error = np.asarray(ps.edc_error)[: len(a)]
  rng = np.random.default_rng(0)
  pick = rng.choice(4095, size=args.loop_sample // len(RULES) or 1, replace=False)
  args_np = (exits, a, b, genuine, scores)

  def loop():
    for rule in RULES:
      for i in pick:
        numpy_engine.loop_variant(*args_np, masks[i], weights[i], rule, FMRS, error, LIMITS)

  n_loop = len(pick) * len(RULES)
  t_loop = median_time(loop, 1) / n_loop * total
  chunk = args.vector_sample // len(RULES)

  def vectorised():
    for rule in RULES:
      numpy_engine.vectorised_chunk(
        *args_np, masks[:chunk], weights[:chunk], rule, FMRS, error, LIMITS
      )

  t_vec = median_time(vectorised, 3) / (chunk * len(RULES)) * total
  # the numpy code computes the same numbers
  erc_np, edc_np = numpy_engine.vectorised_chunk(
    *args_np, masks[:chunk], weights[:chunk], "median", FMRS, error, LIMITS
  )
  rows = slice(2 * 4095, 2 * 4095 + chunk)  # the median rows of the table
  diff = max(
    np.nanmax(
      np.abs(erc_np - np.c_[table["erc_area@0.001"][rows], table["erc_area@0.0001"][rows]])
    ),
    np.nanmax(np.abs(edc_np - np.c_[table["edc_area@0.2"][rows], table["edc_area@0.3"][rows]])),
  )

  rows_out = [
    ("JAX sweep, first call in the process (incl. compilation)", t_full),
    ("JAX sweep, a fresh process with a warm compilation cache", t_warm),
    ("JAX sweep, compiled (median of 3 x 2,560 variants, extrapolated)", t_steady),
    (f"numpy, Python loop over variants ({n_loop} sampled, extrapolated)", t_loop),
    (f"numpy, vectorised over variants (median of 3 x {chunk * len(RULES)}, extrapolated)", t_vec),
  ]
  print(
    f"| LFW-sized full sweep, {total} variants (4,095 subsets x 5 rules) | wall s | CPU s "
    "| wall time / JAX first call |"
  )
  print("| --- | --- | --- | --- |")
  for name, (wall, cpu) in rows_out:
    print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / t_full[0]:.2f}x |")
  print(f"\nnumpy and JAX areas agree to {diff:.1e} on {chunk} median-rule variants.")
  if not args.skip_ijbc:
    t0 = time.perf_counter()
    secs, rss = run_child("--ijbc-child")
    wall = time.perf_counter() - t0
    print(
      f"\n| IJB-C-sized: 15.7 M pairs, 470 k images, one fused variant | value |\n| --- | --- |\n"
      f"| peak RSS of the process (GiB) | {float(rss):.2f} |\n"
      f"| pair set + evaluation (s) | {secs} |\n"
      f"| process wall time incl. data generation (s) | {wall:.1f} |"
    )


if __name__ == "__main__":
  main()

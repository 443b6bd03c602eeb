"""Speed and memory of the fusion sweep, against a strong exact numpy sweep.

  python benchmarks/sweep_bench.py [--rounds 2] [--ijbc-variants 1000] [--skip-ijbc]
  python benchmarks/sweep_bench.py --profile-only

LFW-sized synthetic data (12,000 images x 12 exits, 6,000 pairs), the full sweep
of 4,095 subsets x 5 rules (ERC at FMR 1e-3 and 1e-4, EDC partial areas at 0.2
and 0.3), each as a whole fresh process, interleaved round by round:
- `exfiqa sweep --scores --pairs` (the CLI: imports, subset sweep, weight sweeps,
  learned weights, plots, CSV/JSON), cold (empty compilation cache) and warm;
- the same command with the extras cut down (`weights.simplex=1 weights.learn_steps=1`);
- benchmarks/numpy_engine.py (exact, plain numpy, one core) over the same 20,475 variants.
Both tables are compared row by row. Then an IJB-C-sized list (15.7 M pairs,
19,557 genuine, 470 k images): one variant and a sweep of `--ijbc-variants`
variants, each in a fresh process with its peak RSS, and the projection to the
full grid. Prints Markdown tables; --profile-only times each stage of one chunk.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

FMRS, LIMITS = (1e-3, 1e-4), (0.2, 0.3)
RULES = ("mean", "weighted", "median", "min", "max")


def synthetic(n_images, n_pairs, depth=12, seed=0, genuine_fraction=0.5):
  """Exit scores that track a latent utility more closely with depth; genuine
  comparison scores fall with the pair's utility. Rounded so that ties occur."""
  rng = np.random.default_rng(seed)
  u = rng.normal(size=n_images).astype(np.float32)
  noise = np.linspace(1.0, 0.3, depth, dtype=np.float32)
  exits = u[:, None] + rng.normal(size=(n_images, depth)).astype(np.float32) * noise
  a, b = rng.integers(0, n_images, (2, n_pairs), dtype=np.int32)
  genuine = rng.random(n_pairs) < genuine_fraction
  s = np.where(genuine, 0.55 + 0.1 * np.minimum(u[a], u[b]), 0.05)
  s = (s + rng.normal(size=n_pairs).astype(np.float32) * 0.12).astype(np.float32)
  return np.round(exits, 3), a, b, genuine, np.round(s, 4)


def write_files(folder, data):
  """The data as an `exfiqa score`-style .npz and a text pair list."""
  exits, a, b, genuine, scores = data
  ids = np.array([f"i{k}" for k in range(len(exits))])
  np.savez(os.path.join(folder, "lfw.npz"), paths=ids, exit_scores=exits)
  with open(os.path.join(folder, "pairs.txt"), "w") as f:
    f.writelines(
      f"{ids[i]} {ids[j]} {int(g)} {float(s)!r}\n"
      for i, j, g, s in zip(a, b, genuine, scores, strict=True)
    )


def timed_process(cmd, env=None) -> tuple[float, float, str]:
  """A fresh process -> (wall s, CPU s of it, its stdout)."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if out.returncode:
    raise SystemExit(out.stderr[-3000:])
  cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
  return wall, cpu, out.stdout


def numpy_child(folder):
  """The strong numpy sweep of the files in `folder` -> writes numpy.npz."""
  from benchmarks.numpy_engine import NumpySweep
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.metrics.inputs import PairInputs

  z = PairInputs.from_score_file(
    os.path.join(folder, "lfw.npz"), os.path.join(folder, "pairs.txt"), np.arange(1, 13.0)
  )
  eng = NumpySweep(*z.columns, FMRS, 1e-3, LIMITS)
  t = eng.sweep(subset_masks(12), RULES)
  np.savez(os.path.join(folder, "numpy.npz"), **t)


def exfiqa_cmd(folder, out, *extra):
  return [sys.executable, "-m", "exfiqa_jax.cli", "sweep", "--quiet", "--scores",
          os.path.join(folder, "lfw.npz"), "--pairs", os.path.join(folder, "pairs.txt"),
          "--depth-cost", "--out", os.path.join(folder, out), *extra]  # fmt: skip


def compare(folder) -> tuple[int, float]:
  """Rows compared and the largest |difference| of the exfiqa and numpy tables."""
  with open(os.path.join(folder, "cold", "lfw_subsets.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  ref = np.load(os.path.join(folder, "numpy.npz"))
  got = np.array([[float(r[k]) for k in ("erc_area@0.001", "erc_area@0.0001")] for r in rows])
  got_edc = np.array([[float(r[k]) for k in ("edc_area@0.2", "edc_area@0.3")] for r in rows])
  d = max(np.nanmax(np.abs(got - ref["erc"])), np.nanmax(np.abs(got_edc - ref["edc"])))
  assert (np.isnan(got) == np.isnan(ref["erc"])).all()
  return len(rows), float(d)


def lfw(rounds):
  with tempfile.TemporaryDirectory() as folder:
    write_files(folder, synthetic(12_000, 6_000))
    cache = os.path.join(folder, "xla")
    times = {k: [] for k in ("numpy", "cold", "warm", "warm, extras cut down")}
    for r in range(rounds):
      env = {"JAX_COMPILATION_CACHE_DIR": os.path.join(cache, str(r))}
      times["numpy"].append(timed_process([sys.executable, __file__, "--numpy-child", folder]))
      times["cold"].append(timed_process(exfiqa_cmd(folder, "cold"), env))
      times["warm"].append(timed_process(exfiqa_cmd(folder, "warm"), env))
      small = ("weights.simplex=1", "weights.learn_steps=1")
      times["warm, extras cut down"].append(timed_process(exfiqa_cmd(folder, "small", *small), env))
    rows_cmp, diff = compare(folder)
  ref = np.median([t[0] for t in times["numpy"]])
  print(
    f"\n| LFW-sized full sweep, 20,475 variants, whole process, {rounds} interleaved rounds "
    "| wall s, median (range) | CPU s, median | numpy wall / this wall |\n| --- | --- | --- | --- |"
  )
  names = {
    "numpy": "strong exact numpy (benchmarks/numpy_engine.py), one core",
    "cold": "`exfiqa sweep`, empty compilation cache",
    "warm": "`exfiqa sweep`, warm compilation cache",
    "warm, extras cut down": "`exfiqa sweep ... weights.simplex=1 weights.learn_steps=1`, warm",
  }
  for k, v in times.items():
    w = [t[0] for t in v]
    print(
      f"| {names[k]} | {np.median(w):.1f} ({min(w):.1f}-{max(w):.1f}) "
      f"| {np.median([t[1] for t in v]):.1f} | {ref / np.median(w):.2f}x |"
    )
  print(
    f"\nexfiqa and numpy tables: {rows_cmp} rows x 4 areas compared, max |difference| {diff:.1e}."
  )


def ijbc_child(variants):
  """IJB-C-sized: pair set, one variant, then `variants` variants -> printed numbers."""
  from exfiqa_jax.fusion.engine import evaluate_variant
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.fusion.sweep import sweep
  from exfiqa_jax.metrics import make_pairset

  exits, a, b, genuine, scores = synthetic(
    470_000, 15_658_489, seed=1, genuine_fraction=19_557 / 15_658_489
  )
  t0 = time.perf_counter()
  ps = make_pairset(exits, a, b, genuine, scores, fmrs=FMRS, limits=LIMITS)
  del a, b, genuine, scores
  t1 = time.perf_counter()
  evaluate_variant(ps, np.ones(12, bool), "weighted")
  t2 = time.perf_counter()
  rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  if variants:
    masks = subset_masks(12)[np.linspace(0, 4094, variants).astype(int)]
    sweep(ps, rules=("weighted",), masks=masks)
  t3 = time.perf_counter()
  rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(t1 - t0, t2 - t1, rss1, t3 - t2, rss2)


def ijbc(variants):
  one = timed_process([sys.executable, __file__, "--ijbc-child", "0"])[2].split()
  many = timed_process([sys.executable, __file__, "--ijbc-child", str(variants)])[2].split()
  build, single, rss_one = map(float, one[:3])
  sweep_s, rss_sweep = float(many[3]), float(many[4])
  per = sweep_s / variants
  print(
    "\n| IJB-C-sized: 15.7 M pairs (19,557 genuine), 470 k images | value |\n| --- | --- |\n"
    f"| pair set (score order, classes, threshold) (s) | {build:.1f} |\n"
    f"| one variant, `evaluate_variant` with curves (s) | {single:.1f} |\n"
    f"| peak RSS, pair set + one variant (GiB) | {rss_one:.2f} |\n"
    f"| {variants} variants, `sweep` (s) | {sweep_s:.0f} ({per:.2f} s per variant) |\n"
    f"| peak RSS, pair set + {variants}-variant sweep (GiB) | {rss_sweep:.2f} |\n"
    f"| projected full grid, 20,475 variants (h) | {per * 20475 / 3600:.1f} |"
  )


def profile(chunk=32):
  """Per-variant wall and CPU time of each stage of one chunk (median of 5)."""
  import importlib

  import jax
  import jax.numpy as jnp

  from exfiqa_jax.fusion.engine import jit_engine, plan
  from exfiqa_jax.fusion.rules import fuse_integers
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.metrics import class_keys, default_top, make_pairset
  from exfiqa_jax.metrics.edc import edc
  from exfiqa_jax.metrics.keys import index_bits, pair_keys

  erc = importlib.import_module("exfiqa_jax.metrics.erc")
  ps = make_pairset(*synthetic(12_000, 6_000), fmrs=FMRS, limits=LIMITS)
  top, masks = default_top(ps), subset_masks(12)[1000 : 1000 + chunk]
  rows = []
  with jax.enable_x64(True):
    for r, rule in enumerate(RULES):
      p = plan(ps, "none", rule, np.broadcast_to(np.arange(1, 13), (chunk, 12)))
      m, w = jnp.asarray(masks), jnp.asarray(p.weights[:chunk])
      rows.append(
        (
          f"fusion, {rule}",
          jax.vmap(lambda m, w, p=p, r=r: fuse_integers(p.fusion, m, r, w)),
          (m, w),
        )
      )
    f = rows[0][1](m, w)
    shift = index_bits(ps.sa.shape[0])

    def pk(f):
      return pair_keys(f, ps.sa, ps.sb, ps.sid, ps.valid)

    def sort_host(k):
      return class_keys(ps, k, "host")

    def sort_xla(k):
      return class_keys(ps, k, "xla")

    def erc_area(k, g, i):
      return erc.erc(ps, k, g, i, top)[1]

    def edc_area(g):
      return edc(g, ps.edc_error, ps.n_gen, ps.edc_width, ps.limits, shift).area

    keys = jax.vmap(pk)(f)
    g, i = jax.vmap(sort_host)(keys)
    rows += [
      ("pair keys (gather, min, pack)", jax.vmap(pk), (f,)),
      ("class keys + sort (numpy via callback)", jax.vmap(sort_host), (keys,)),
      ("class keys + sort (XLA)", jax.vmap(sort_xla), (keys,)),
      ("ERC, 20 rates x 2 FMRs", jax.vmap(erc_area), (keys, g, i)),
      ("EDC, 2 limits", jax.vmap(edc_area), (g,)),
    ]
    out = []
    for name, fn, xs in rows:
      fn = jit_engine(fn)
      jax.block_until_ready(fn(*xs))
      t = common.interleaved({name: lambda fn=fn, xs=xs: jax.block_until_ready(fn(*xs))}, 5, 0)[
        name
      ]
      out.append(
        [name, common.median(t["wall"]) / chunk * 1e6, common.median(t["cpu"]) / chunk * 1e6]
      )
  print(common.table([f"stage (chunk of {chunk} variants)", "us per variant, wall", "CPU"], out))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the LFW runs")
  ap.add_argument("--ijbc-variants", type=int, default=1000)
  ap.add_argument("--skip-ijbc", action="store_true")
  ap.add_argument("--skip-lfw", action="store_true")
  ap.add_argument("--profile-only", action="store_true", help="only the per-stage profile")
  ap.add_argument("--ijbc-child", type=int, help=argparse.SUPPRESS)
  ap.add_argument("--numpy-child", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.ijbc_child is not None:
    return ijbc_child(args.ijbc_child)
  if args.numpy_child:
    return numpy_child(args.numpy_child)
  print(common.machine_info())
  if args.profile_only:
    return profile()
  if not args.skip_lfw:
    lfw(args.rounds)
  if not args.skip_ijbc:
    ijbc(args.ijbc_variants)
  print(f"\n- load average (1 min) at the end: {common.load()}")


if __name__ == "__main__":
  main()

"""Speed and memory of the fusion sweep, against a strong exact numpy sweep.

  python benchmarks/sweep_bench.py [--rounds 3] [--ijbc-variants 20] [--skip-ijbc]
  python benchmarks/sweep_bench.py --skip-lfw --skip-api [--ijbc-only large strong sorted]
  python benchmarks/sweep_bench.py --profile-only
  python benchmarks/sweep_bench.py --ijbc-full [--ijbc-rules weighted] [--ijbc-subsets 200]

Everything is measured side by side in one run, as medians with ranges, with the
load average beside each row (the machine is shared):
- LFW-sized synthetic data (12,000 images x 12 exits, 6,000 pairs), the full
  sweep of 4,095 subsets x 5 rules = 20,475 variants (ERC at FMR 1e-3 and 1e-4,
  EDC partial areas at 0.2 and 0.3), each entry a whole fresh process,
  interleaved round by round: the strong numpy baseline
  (benchmarks/strong_numpy.py, exact, plain numpy, one core, imports included);
  `exfiqa sweep --scores --pairs --depth-cost` (the CLI: imports, subset sweep,
  weight sweeps, learned weights, plots, CSV/JSON) cold (empty compilation cache)
  and warm; the same command with the extras cut down. The tables of the CLI and
  of the baseline are compared row by row.
- the same subset table in one process through the API (`fusion.sweep.sweep`,
  compiled) against the baseline's, interleaved: time per variant of each.
- IJB-C-sized (15.7 M pairs, 19,557 genuine, 23,000 templates): the large-pair-set
  path (exfiqa_jax.fusion.large, where `sweep` routes this size) and the strong
  numpy baseline's IJB-C mode (and, with `--ijbc-only ... sorted`, the sort-based
  engine), each in a fresh process: preparation, the first (compiling) variant,
  single variants after preparation (median and range, wall and CPU), a batch of
  `--ijbc-variants` on all cores, the full grid projected for one and four FR
  models from the batch, peak RSS; the two tables compared. `--skip-lfw --skip-api`
  runs only this part.
- `--ijbc-full`: the IJB-C-sized grid (all 5 rules x 4,095 subsets = 20,475 variants,
  or the given rules and a spread of subsets) end to end through `fusion.sweep.sweep`
  in a fresh process: preparation, wall and CPU of the sweep and of each rule, per
  variant, peak RSS, the load at start and end, the projection for four FR models;
  12 sampled rows checked against the strong numpy baseline in another process.
- the steps of a warm `exfiqa sweep` (imports, subset sweep, weight sweeps, learned
  weights, figures, files), each timed in fresh processes.
--profile-only times each stage of one compiled chunk.
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


IJBC_PAIRS, IJBC_GENUINE, IJBC_TEMPLATES = 15_658_489, 19_557, 23_000
GRID = 4095 * 5


def cpu_flags() -> str:
  """The vector extensions numpy and XLA can use here, from /proc/cpuinfo."""
  with open("/proc/cpuinfo") as f:
    flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
  names = {"avx2": "AVX2", "avx512f": "AVX-512F", "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX"}
  return ", ".join(f"{v} {'yes' if k in flags else 'no'}" for k, v in names.items())


def ijbc_synthetic(seed=1):
  """IJB-C-sized: 23,000 templates x 12 exits (template qualities), 15.7 M template
  pairs of which 19,557 genuine."""
  return synthetic(
    IJBC_TEMPLATES, IJBC_PAIRS, seed=seed, genuine_fraction=IJBC_GENUINE / IJBC_PAIRS
  )


def timed_process(cmd, env=None) -> tuple[float, float, str, str]:
  """A fresh process -> (wall s, CPU s of it, its stdout, the 1-min load at its start)."""
  load = common.load()
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if out.returncode:
    raise SystemExit(out.stderr[-3000:])
  cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
  return wall, cpu, out.stdout, load


def strong_cmd(folder) -> list[str]:
  """The strong numpy sweep of the files in `folder` as its own process on one core, plain
  numpy from the first import (benchmarks/strong_numpy.py --files): writes strong.npz."""
  here = os.path.dirname(os.path.abspath(__file__))
  return [sys.executable, os.path.join(here, "strong_numpy.py"), "--files", folder]


def exfiqa_cmd(folder, out, *extra):
  return [sys.executable, "-m", "exfiqa_jax.cli", "sweep", "--quiet", "--scores",
          os.path.join(folder, "lfw.npz"), "--pairs", os.path.join(folder, "pairs.txt"),
          "--depth-cost", "--out", os.path.join(folder, out), *extra]  # fmt: skip


def compare(folder) -> tuple[int, float]:
  """Rows compared and the largest |difference| of the exfiqa and strong numpy tables."""
  with open(os.path.join(folder, "cold0", "lfw_subsets.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  ref = np.load(os.path.join(folder, "strong.npz"))
  got = np.array([[float(r[k]) for k in ("erc_area@0.001", "erc_area@0.0001")] for r in rows])
  got_edc = np.array([[float(r[k]) for k in ("edc_area@0.2", "edc_area@0.3")] for r in rows])
  assert (np.isnan(got) == np.isnan(ref["erc"])).all()
  d = max(np.nanmax(np.abs(got - ref["erc"])), np.nanmax(np.abs(got_edc - ref["edc"])))
  return len(rows), float(d)


def _spread(xs, fmt="{:.1f}"):
  return f"{fmt.format(np.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def lfw(rounds):
  with tempfile.TemporaryDirectory() as folder:
    write_files(folder, synthetic(12_000, 6_000))
    cache = os.path.join(folder, "xla")
    times = {k: [] for k in ("strong", "cold", "warm", "small")}
    for r in range(rounds):
      env = {"JAX_COMPILATION_CACHE_DIR": os.path.join(cache, str(r))}
      times["strong"].append(timed_process(strong_cmd(folder)))
      times["cold"].append(timed_process(exfiqa_cmd(folder, f"cold{r}"), env))
      times["warm"].append(timed_process(exfiqa_cmd(folder, f"warm{r}"), env))
      small = ("weights.simplex=1", "weights.learn_steps=1")
      # its learned-weight program (1 step) is another program: compiled once, untimed
      timed_process(exfiqa_cmd(folder, f"small{r}-warmup", *small), env)
      times["small"].append(timed_process(exfiqa_cmd(folder, f"small{r}", *small), env))
    rows_cmp, diff = compare(folder)
  ref = np.median([t[0] for t in times["strong"]])
  print(
    f"\n| LFW-sized full sweep, {GRID:,} variants, whole process, {rounds} interleaved rounds "
    "| wall s, median (range) | CPU s, median | us per variant, wall | strong / this (wall) "
    "| load at start |\n| --- | --- | --- | --- | --- | --- |"
  )
  names = {
    "strong": "strong exact numpy (benchmarks/strong_numpy.py), one core",
    "cold": "`exfiqa sweep`, empty compilation cache",
    "warm": "`exfiqa sweep`, warm compilation cache",
    "small": "`exfiqa sweep ... weights.simplex=1 weights.learn_steps=1`, warm",
  }
  for k, v in times.items():
    w = [t[0] for t in v]
    print(
      f"| {names[k]} | {_spread(w)} | {np.median([t[1] for t in v]):.1f} "
      f"| {np.median(w) / GRID * 1e6:.0f} | {ref / np.median(w):.2f}x "
      f"| {', '.join(t[3] for t in v)} |"
    )
  print(
    f"\nexfiqa and strong numpy tables: {rows_cmp} rows x 4 areas compared, "
    f"max |difference| {diff:.1e} (float32 against float64 area sums)."
  )


def stages_child(folder):
  """Where a warm `exfiqa sweep` process spends its time: the CLI's own steps, timed
  in this process (the compilation cache of `folder`, warmed by the caller)."""
  t = [time.perf_counter()]
  names = []

  def mark(name):
    t.append(time.perf_counter())
    names.append(name)

  from exfiqa_jax.cli import keep_freed_memory
  from exfiqa_jax.fusion import workers

  keep_freed_memory()  # as `exfiqa sweep` does before JAX is imported (cli.sweep.before_jax)
  workers.start(preload=("exfiqa_jax.report.plots:pyplot",))
  mark("fork the workers")
  import jax  # noqa: F401

  mark("import jax")
  from exfiqa_jax.cli import compilation_cache
  from exfiqa_jax.cli.sweep import sweep_config
  from exfiqa_jax.evaluation import saved_sweep
  from exfiqa_jax.metrics.inputs import PairInputs
  from exfiqa_jax.report import sweep as report_sweep

  compilation_cache()
  mark("import the sweep's modules")
  cfg = sweep_config([])
  z = PairInputs.from_score_file(
    os.path.join(folder, "lfw.npz"), os.path.join(folder, "pairs.txt"), np.arange(1, 13.0)
  )
  mark("read the inputs")
  from exfiqa_jax.evaluation import analysis

  subset_sweep = analysis.sweep

  def timed_sweep(*a, **k):
    mark("analyse: the pair set")
    out = subset_sweep(*a, **k)
    mark("subset sweep (fusion.sweep.sweep), this process and a worker")
    return out

  analysis.sweep = timed_sweep
  figures = []  # drawn on the worker from the overview on, as `exfiqa sweep` does

  def draw(view):
    figures[:] = report_sweep.overview_figures(view, "lfw")

  an = saved_sweep.analyse_inputs(z, cfg, overview=draw)
  mark("analyse: rows, curves, FNMR after rejection")
  wrap = {}
  for name, label in (("sweep_weights", "weight sweep"), ("learn_weights", "learned weights")):
    fn = getattr(saved_sweep, name)
    wrap[name] = fn

    def timed(*a, fn=fn, label=label, **k):
      out = fn(*a, **k)
      mark(label)
      return out

    setattr(saved_sweep, name, timed)
  study = saved_sweep.weight_study(z, cfg, an, progress=False)
  mark("tables of the study")
  table_csv = report_sweep.write_table_csv
  other = "JSON, Markdown, HTML, power-law CSV"

  def timed_csv(*a, **k):
    mark(other)
    out = table_csv(*a, **k)
    mark("CSV of the subset and simplex tables")
    return out

  def waited(f):
    def result(get=f.result):
      mark(other)
      out = get()
      mark("the figures' wait (drawn on the worker since the sweep's overview)")
      return out

    f.result = result
    return f

  report_sweep.write_table_csv = timed_csv
  report_sweep.write_sweep(
    study, os.path.join(folder, "stages"), "lfw", figures=[waited(f) for f in figures]
  )
  mark(other)
  for name, a, b in zip(names, t[:-1], t[1:], strict=True):
    print(f"{name}\t{b - a:.3f}")


def stages(rounds):
  """The steps of a warm `exfiqa sweep` (fresh processes, medians of `rounds`)."""
  with tempfile.TemporaryDirectory() as folder:
    write_files(folder, synthetic(12_000, 6_000))
    env = {"JAX_COMPILATION_CACHE_DIR": os.path.join(folder, "xla")}
    timed_process(exfiqa_cmd(folder, "warmup"), env)
    runs, loads = [], []
    for _ in range(rounds):
      _, _, out, load = timed_process([sys.executable, __file__, "--stages-child", folder], env)
      loads.append(load)
      runs.append([line.split("\t") for line in out.strip().splitlines()])
  totals: dict[str, list[float]] = {}
  for run in runs:
    seen: dict[str, float] = {}
    for name, sec in run:
      seen[name] = seen.get(name, 0.0) + float(sec)
    for name, sec in seen.items():
      totals.setdefault(name, []).append(sec)
  print(f"\n| step of a warm `exfiqa sweep` process, {rounds} runs | s, median (range) |")
  print("| --- | --- |")
  for name, xs in totals.items():
    print(f"| {name} | {_spread(xs, '{:.2f}')} |")
  whole = np.median([sum(float(s) for _, s in r) for r in runs])
  print(f"| whole (sum of the steps) | {whole:.2f} |")
  print(f"\nload (1 min) at the starts: {', '.join(loads)}")


def api(rounds):
  """The subset table in one process: compiled engine vs strong numpy, interleaved."""
  import jax

  from benchmarks.strong_numpy import StrongNumpySweep
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.fusion.sweep import sweep
  from exfiqa_jax.metrics import make_pairset

  data = synthetic(12_000, 6_000)
  ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
  masks = subset_masks(12)
  loads = []

  def engine():
    loads.append(common.load())
    jax.block_until_ready(sweep(ps))

  def strong():
    StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS).sweep(masks, RULES)

  t = common.interleaved({"engine": engine, "strong": strong}, rounds, warmup=1)
  ref = np.median(t["strong"]["wall"])
  rows = [
    ["strong exact numpy, one thread (tables built per run)", "strong"],
    ["engine, `fusion.sweep.sweep`, compiled, all cores", "engine"],
  ]
  print(
    f"\n| LFW-sized subset table, {GRID:,} variants, in one process, {rounds} rounds "
    "| us per variant, wall, median (range) | CPU us per variant | strong / this (wall) |"
    "\n| --- | --- | --- | --- |"
  )
  for name, k in rows:
    w = [x / GRID * 1e6 for x in t[k]["wall"]]
    c = np.median(t[k]["cpu"]) / GRID * 1e6
    print(f"| {name} | {_spread(w, '{:.0f}')} | {c:.0f} | {ref / np.median(t[k]['wall']):.2f}x |")
  print(f"\nload (1 min) at the engine's rounds: {', '.join(loads)}")


IJBC_SINGLE = 7  # single variants timed one by one after preparation


def ijbc_child(which, variants, out_file):
  """IJB-C-sized, one engine in this process: `large` (exfiqa_jax.fusion.large, the
  path `sweep` takes at this size), `sorted` (the sort-based engine, routing off) or
  `strong` (benchmarks/strong_numpy.py). Prints JSON: preparation, the first variant
  (compilation included), single variants after preparation (wall and CPU s), a
  batch of `variants` on all cores, peak RSS; saves the batch's areas to out_file."""
  import json

  from exfiqa_jax.fusion.subsets import subset_masks

  data = ijbc_synthetic()
  masks = subset_masks(12)[np.linspace(0, 4094, max(variants, IJBC_SINGLE + 1)).astype(int)]
  w = np.broadcast_to(np.arange(1, 13), masks.shape)
  t0 = time.perf_counter()
  if which == "strong":
    from benchmarks.strong_numpy import StrongNumpySweep

    eng = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS)
    del data
    prep = {"pair set and tables": time.perf_counter() - t0}

    def batch(lo, hi):
      return eng.run(masks[lo:hi], "weighted")
  else:
    from exfiqa_jax.fusion import chunks, large
    from exfiqa_jax.metrics import make_pairset

    ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
    del data
    t1 = time.perf_counter()
    prep = {"pair set": t1 - t0}
    if which == "large":
      large.prepared(ps)
      t2 = time.perf_counter()
      run = large.runner(ps, masks, w, "weighted", chunk=1)
      prep |= {"path tables": t2 - t1, "rule plan": time.perf_counter() - t2}

      def batch(lo, hi):
        return run(lo, hi)[:2]
    else:
      large.LARGE_PAIRS = 1 << 62  # the sort-based engine

      def batch(lo, hi):
        return chunks.score_variants(ps, masks[lo:hi], w[lo:hi], "weighted")[:2]

  t = time.perf_counter()
  batch(0, 1)
  first = time.perf_counter() - t
  single = []
  for i in range(1, IJBC_SINGLE + 1):
    t, c = time.perf_counter(), time.process_time()
    batch(i, i + 1)
    single.append((time.perf_counter() - t, time.process_time() - c))
  t, c = time.perf_counter(), time.process_time()
  erc, edc = batch(0, variants)
  many, many_cpu = time.perf_counter() - t, time.process_time() - c
  np.savez(out_file, erc=erc, edc=edc)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  out = {"prep": prep, "first": first, "single": single, "many": many, "many_cpu": many_cpu}
  print(json.dumps(out | {"rss": rss}))


def ijbc(variants, which=("large", "strong")):
  import json

  names = {
    "large": "exfiqa_jax.fusion.large (what `sweep` runs at this size), 2 threads",
    "sorted": "sort-based engine (`chunks.score_variants`, routing off), 2 threads",
    "strong": "strong exact numpy, IJB-C mode (per-image tables, two gathers), one thread",
  }
  rows = {}
  with tempfile.TemporaryDirectory() as folder:
    for key in [k for k in names if k in which]:
      n = variants if key != "sorted" else min(variants, 4)
      _, _, out, load = timed_process(
        [
          sys.executable,
          __file__,
          "--ijbc-child",
          key,
          "--ijbc-variants",
          str(n),
          "--ijbc-out",
          os.path.join(folder, key + ".npz"),
        ]  # fmt: skip
      )
      rows[key] = (json.loads(out.strip().splitlines()[-1]), n, load)
      rows[key][0]["areas"] = dict(np.load(os.path.join(folder, key + ".npz")))
  ref = rows["strong"][0]["many"] / rows["strong"][1] if "strong" in rows else np.nan
  print(
    f"\n| IJB-C-sized: {IJBC_PAIRS:,} pairs ({IJBC_GENUINE:,} genuine), {IJBC_TEMPLATES:,} "
    "templates x 12 exits, weighted rule | preparation (s) | first variant, compiling (s) "
    f"| one variant after preparation, {IJBC_SINGLE} single calls: wall ms median (range) "
    "| CPU ms median | per variant in a batch: wall ms, CPU ms | strong / this (wall) "
    f"| full grid of one FR model, {GRID:,} variants: min at this load (wall), min on 2 "
    "idle cores (CPU / threads) | 4 FR models (h, same two) | peak RSS (GiB) | load at start |"
    "\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  )
  for key, (r, n, load) in rows.items():
    wall = [x[0] * 1e3 for x in r["single"]]
    cpu = np.median([x[1] for x in r["single"]]) * 1e3
    per, per_cpu = r["many"] / n, r["many_cpu"] / n
    idle = per_cpu / (1 if key == "strong" else 2)  # the baseline is one thread
    prep = " + ".join(f"{v:.1f} {k}" for k, v in r["prep"].items())
    print(
      f"| {names[key]} | {prep} | {r['first']:.1f} | {_spread(wall, '{:.0f}')} | {cpu:.0f} "
      f"| {per * 1e3:.0f}, {per_cpu * 1e3:.0f} ({n} variants) "
      f"| {f'{ref / per:.2f}x' if 'strong' in rows else '-'} "
      f"| {per * GRID / 60:.1f}, {idle * GRID / 60:.1f} "
      f"| {4 * per * GRID / 3600:.2f}, {4 * idle * GRID / 3600:.2f} | {r['rss']:.2f} | {load} |"
    )
  if "large" in rows and "strong" in rows:
    a, b = rows["large"][0]["areas"], rows["strong"][0]["areas"]
    n = min(len(a["erc"]), len(b["erc"]))
    d = max(np.nanmax(np.abs(a[k][:n] - b[k][:n])) for k in ("erc", "edc"))
    same_nan = all((np.isnan(a[k][:n]) == np.isnan(b[k][:n])).all() for k in ("erc", "edc"))
    print(
      f"\nlarge path and strong numpy: {n} variants x 4 areas, max |difference| {d:.1e} "
      f"(float32 against float64 area sums), NaN in the same places: {same_nan}."
    )


def ijbc_grid(subsets, rules):
  """The masks of a grid of `subsets` subsets (spread over the 4,095; all of them at
  4,095) and the rules' names."""
  from exfiqa_jax.fusion.subsets import subset_masks

  masks = subset_masks(12)
  if subsets < len(masks):
    masks = masks[np.linspace(0, len(masks) - 1, subsets).astype(int)]
  return masks, tuple(rules)


def ijbc_full_child(subsets, rules, out_file):
  """The IJB-C-sized grid end to end in this process, the way `exfiqa sweep` runs it
  (`fusion.sweep.sweep` -> `chunks.score_variants`, routed to fusion/large.py):
  prints JSON (preparation, per-rule and whole wall and CPU seconds, peak RSS,
  loads); saves a sample of rows (rule, subset, areas) to out_file for the check."""
  import json

  load0 = common.load()
  t0, c0 = time.perf_counter(), time.process_time()
  from exfiqa_jax.fusion import large
  from exfiqa_jax.fusion import sweep as sweep_module
  from exfiqa_jax.metrics import make_pairset

  masks, rules = ijbc_grid(subsets, rules)
  data = ijbc_synthetic()
  t1 = time.perf_counter()
  ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
  del data
  t2 = time.perf_counter()
  assert large.routed(ps), "the IJB-C-sized pair set must take the large path"
  large.prepared(ps)
  t3, c3 = time.perf_counter(), time.process_time()
  prep = {"data": t1 - t0, "pair set": t2 - t1, "path tables": t3 - t2}
  per_rule = []
  score = sweep_module.score_variants

  def timed(*a, **k):  # each rule's call of the real path, timed
    w, c = time.perf_counter(), time.process_time()
    out = score(*a, **k)
    per_rule.append((a[3], time.perf_counter() - w, time.process_time() - c))
    return out

  sweep_module.score_variants = timed
  table = sweep_module.sweep(ps, rules=rules, masks=masks)
  wall, cpu = time.perf_counter() - t3, time.process_time() - c3
  rows = np.random.default_rng(0).choice(len(table["subset"]), min(12, len(table["subset"])), False)
  cols = [f"erc_area@{f:g}" for f in FMRS] + [f"edc_area@{x:g}" for x in LIMITS]
  np.savez(
    out_file,
    rule=table["rule"][rows],
    subset=table["subset"][rows],
    areas=np.stack([table[c][rows] for c in cols], 1),
  )
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  out = {"prep": prep, "prep_cpu": c3 - c0, "wall": wall, "cpu": cpu, "rules": per_rule}
  print(json.dumps(out | {"variants": len(table["subset"]), "rss": rss, "load0": load0,
                          "load1": common.load()}))  # fmt: skip


def ijbc_check_child(rows_file):
  """The strong numpy baseline's areas of the sampled rows -> max |difference|, NaN agreement."""
  import json

  from benchmarks.strong_numpy import StrongNumpySweep

  z = np.load(rows_file)
  eng = StrongNumpySweep(*ijbc_synthetic(), fmrs=FMRS, limits=LIMITS)
  masks = ((z["subset"][:, None] >> np.arange(12)) & 1).astype(bool)
  ref = np.zeros_like(z["areas"], np.float64)
  for i, (m, rule) in enumerate(zip(masks, z["rule"], strict=True)):
    erc, edc = eng.run(m[None], str(rule))
    ref[i] = np.r_[erc[0], edc[0]]
  same_nan = bool((np.isnan(ref) == np.isnan(z["areas"])).all())
  d = float(np.nanmax(np.abs(ref - z["areas"])))
  print(json.dumps({"rows": len(ref), "diff": d, "same_nan": same_nan}))


def ijbc_full(subsets, rules, check=True):
  """The IJB-C-sized grid end to end (a fresh process), then a sample of its rows
  against the strong numpy baseline (another process: not in the peak RSS)."""
  import json

  with tempfile.TemporaryDirectory() as folder:
    rows_file = os.path.join(folder, "rows.npz")
    cmd = [sys.executable, __file__, "--ijbc-full-child", "--ijbc-subsets", str(subsets),
           "--ijbc-rules", *rules, "--ijbc-out", rows_file]  # fmt: skip
    wall, cpu, out, _ = timed_process(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    if check:
      _, _, out, _ = timed_process([sys.executable, __file__, "--ijbc-check-child", rows_file])
      chk = json.loads(out.strip().splitlines()[-1])
  v, prep = r["variants"], sum(r["prep"].values())
  per, per_cpu = r["wall"] / v, r["cpu"] / v
  grid, grid_idle = per * GRID, per_cpu / 2 * GRID  # idle: CPU time over the 2 cores
  print(
    f"\nIJB-C-sized grid end to end (`fusion.sweep.sweep`, routed to fusion/large.py): "
    f"{IJBC_PAIRS:,} pairs ({IJBC_GENUINE:,} genuine), {IJBC_TEMPLATES:,} templates x 12 exits, "
    f"{len(rules)} rules x {v // len(rules):,} subsets = {v:,} variants\n"
  )
  print(
    "| preparation (s) | sweep wall (s) | sweep CPU (s) | per variant: wall ms, CPU ms "
    f"| full grid ({GRID:,}), min: at this load (wall), 2 idle cores (CPU / 2) "
    "| 4 FR models, h (preparation included), same two | peak RSS (GiB) "
    "| whole process wall, CPU (s) | load at start, end |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  )
  prep_txt = " + ".join(f"{x:.1f} {k}" for k, x in r["prep"].items())
  print(
    f"| {prep_txt} | {r['wall']:.1f} | {r['cpu']:.1f} | {per * 1e3:.1f}, {per_cpu * 1e3:.1f} "
    f"| {grid / 60:.1f}, {grid_idle / 60:.1f} "
    f"| {4 * (prep + grid) / 3600:.2f}, {4 * (prep + grid_idle) / 3600:.2f} | {r['rss']:.2f} "
    f"| {wall:.1f}, {cpu:.1f} | {r['load0']}, {r['load1']} |"
  )
  print(
    "\n| rule | variants | wall s | CPU s | wall ms per variant |\n| --- | --- | --- | --- | --- |"
  )
  for rule, w, c in r["rules"]:
    print(
      f"| {rule} | {v // len(rules):,} | {w:.1f} | {c:.1f} | {w / (v // len(rules)) * 1e3:.1f} |"
    )
  if check:
    print(
      f"\n{chk['rows']} rows sampled from the table against the strong numpy baseline: max "
      f"|difference| {chk['diff']:.1e} (float32 against float64 area sums), NaN in the same "
      f"places: {chk['same_nan']}."
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
  ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the LFW runs")
  ap.add_argument("--ijbc-variants", type=int, default=20)
  ap.add_argument("--skip-ijbc", action="store_true")
  ap.add_argument(
    "--ijbc-only",
    choices=("large", "sorted", "strong"),
    nargs="+",
    help="IJB-C rows to run (default large and strong; sorted: the sort-based engine)",
  )
  ap.add_argument("--skip-lfw", action="store_true")
  ap.add_argument("--skip-api", action="store_true")
  ap.add_argument("--profile-only", action="store_true", help="only the per-stage profile")
  ap.add_argument(
    "--ijbc-full",
    action="store_true",
    help="only the IJB-C-sized grid end to end through `fusion.sweep.sweep` (all 5 rules x "
    "4,095 subsets unless --ijbc-rules/--ijbc-subsets), rows checked against strong numpy",
  )
  ap.add_argument("--ijbc-rules", nargs="+", choices=RULES, default=RULES)
  ap.add_argument("--ijbc-subsets", type=int, default=4095, help="subsets of the --ijbc-full grid")
  ap.add_argument("--ijbc-no-check", action="store_true", help="no strong numpy row check")
  ap.add_argument("--ijbc-full-child", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--ijbc-check-child", help=argparse.SUPPRESS)
  ap.add_argument("--ijbc-child", choices=("large", "sorted", "strong"), help=argparse.SUPPRESS)
  ap.add_argument("--ijbc-out", help=argparse.SUPPRESS)
  ap.add_argument("--stages-child", help=argparse.SUPPRESS)
  ap.add_argument("--skip-stages", action="store_true", help="no step table of a warm sweep")
  args = ap.parse_args()
  if args.ijbc_child:
    return ijbc_child(args.ijbc_child, args.ijbc_variants, args.ijbc_out)
  if args.ijbc_full_child:
    return ijbc_full_child(args.ijbc_subsets, args.ijbc_rules, args.ijbc_out)
  if args.ijbc_check_child:
    return ijbc_check_child(args.ijbc_check_child)
  if args.stages_child:
    return stages_child(args.stages_child)
  print(common.machine_info())
  print(f"- CPU flags: {cpu_flags()}")
  if args.profile_only:
    return profile()
  if args.ijbc_full:
    ijbc_full(args.ijbc_subsets, args.ijbc_rules, not args.ijbc_no_check)
    print(f"\n- load average (1 min) at the end: {common.load()}")
    return
  if not args.skip_lfw:
    lfw(args.rounds)
  if not args.skip_stages:
    stages(args.rounds)
  if not args.skip_api:
    api(args.rounds)
  if not args.skip_ijbc:
    ijbc(args.ijbc_variants, tuple(args.ijbc_only or ("large", "strong")))
  print(f"\n- load average (1 min) at the end: {common.load()}")


if __name__ == "__main__":
  main()

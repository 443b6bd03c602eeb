"""One unattended accelerator session: model speed, utilisation, and bfloat16 exits vs float32.

    python benchmarks/gpu_check.py            # on a GPU machine, about 3-5 minutes
    python benchmarks/gpu_check.py --smoke    # tiny batches; runs anywhere, CPU included

Prints Markdown: the device, its measured matmul peak per dtype, images/s of
the full pass (every exit and the embedding) of the released ViT-S shape in
float32 and bfloat16 for batches up to 1024, model FLOP utilisation against
the measured peak and, for known devices, the nominal dense peak; then the
bfloat16 exits against float32 on the same images, and the accelerator's
float32 exits against the CPU's at full precision. Then the face-recognition
rows: images/s of the full-size iresnet100 in Flax float32 and bfloat16 and,
where PyTorch is installed, of the PyTorch reference on identical weights
(eager and `torch.compile`, float32 and bfloat16 autocast, on the GPU when
PyTorch sees one), and the bfloat16 embeddings against float32. Then the
fusion sweep, and adaptive early exit: images/s of staged inference under each
policy's cheapest knob within 1% of the full fusion's ERC area on LFW-sized
synthetic exits, against the full pass at the same batch size (as
benchmarks/adaptive_bench.py on the CPU), and the staged exits against the
full pass's. Last the quality assessors (`assessor_bench.gpu_rows`): CR-FIQA,
SER-FIQ and GraFIQs on iresnet100 at batch 64 against the plain FR forward (their
weights are made through the PyTorch references: skipped without PyTorch). Random
weights; needs JAX only (PyTorch rows are skipped without it). Stops timing new
batch sizes once `--budget` seconds have passed.
"""

from __future__ import annotations

import argparse
import time

import assessor_bench
import common
import cpu_info
import fr_workloads
import jax
import jax.numpy as jnp
import numpy as np
import workloads

from exfiqa_jax import ViTConfig, apply, create, split
from exfiqa_jax.models.fr_config import FRConfig

NOMINAL_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L4": 121, "A10": 125}  # dense


def timed(fn, min_s: float, rounds: int) -> float:
  """Median seconds per call; each sample loops enough calls to last `min_s`."""
  jax.block_until_ready(fn())
  start = time.perf_counter()
  jax.block_until_ready(fn())
  loops = max(1, int(min_s / max(time.perf_counter() - start, 1e-6)))
  samples = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(loops - 1):
      fn()
    jax.block_until_ready(fn())
    samples.append((time.perf_counter() - start) / loops)
  return common.median(samples)


def matmul_tflops(n: int, dtype, rounds: int) -> float:
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  mm = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
  return 2 * n**3 / timed(lambda: mm(a), 0.2, rounds) / 1e12


def exit_agreement(ours, ref) -> list[list]:
  """Per exit: max |difference| over max |reference|, and Spearman rank correlation."""

  def rank(v):
    return np.argsort(np.argsort(v))

  return [
    [
      k + 1,
      float(np.abs(ours[:, k] - ref[:, k]).max() / np.abs(ref[:, k]).max()),
      float(np.corrcoef(rank(ours[:, k]), rank(ref[:, k]))[0, 1]),
    ]
    for k in range(ref.shape[1])
  ]


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true", help="batches 1 and 2, small matmuls")
  p.add_argument("--budget", type=float, default=240, help="seconds for the speed table")
  p.add_argument("--ijbc-variants", type=int, default=200, help="variants of the IJB-C sweep")
  args = p.parse_args()
  begin, device = time.perf_counter(), jax.devices()[0]
  batches, n, rounds, check = (
    ([1, 2], 256, 2, 8) if args.smoke else ([1, 16, 64, 256, 1024], 8192, 5, 256)
  )
  print(common.machine_info())
  print(cpu_info.cpu_flags())
  print(f"- device: {device.device_kind} ({device.platform}), {jax.device_count()} visible\n")
  peak = {
    "float32": matmul_tflops(n, jnp.float32, rounds),
    "bfloat16": matmul_tflops(n, jnp.bfloat16, rounds),
  }
  nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in device.device_kind), None)
  print(
    common.table(
      [f"[{n}, {n}] matmul (XLA default precision)", "TFLOP/s"], [[k, v] for k, v in peak.items()]
    )
  )
  config = ViTConfig()
  variables = split(create(config))
  gflop, rows = workloads.full_pass_gflops(config), []
  for batch in batches:
    if time.perf_counter() - begin > args.budget:
      rows.append([batch, "skipped: over --budget", "", "", "", ""])
      continue
    x = jnp.asarray(workloads.images(config, batch))
    for name in peak:
      t = timed(lambda: apply(*variables, x, dtype=jnp.dtype(name)), 0.2, rounds)
      tflops = batch * gflop / t / 1e3
      mfu = f"{100 * tflops / nominal:.1f}%" if nominal and name == "bfloat16" else ""
      rows.append([batch, name, batch / t, tflops, f"{100 * tflops / peak[name]:.0f}%", mfu])
  print(f"\nFull pass, {gflop:.2f} GFLOP per image; medians of {rounds} samples.\n")
  print(
    common.table(
      [
        "batch",
        "dtype",
        "images/s",
        "TFLOP/s",
        "% measured peak",
        f"% nominal bf16 peak ({nominal or 'unknown'} TFLOP/s)",
      ],
      rows,
    )
  )
  x = workloads.images(config, check, seed=1)
  f32 = np.asarray(apply(*variables, jnp.asarray(x)).exits)
  bf16 = np.asarray(apply(*variables, jnp.asarray(x), dtype=jnp.bfloat16).exits)
  cpu = jax.devices("cpu")[0]
  with jax.default_matmul_precision("highest"):
    host = np.asarray(apply(*jax.device_put(variables, cpu), jax.device_put(x, cpu)).exits)
  for title, ours, ref in [
    ("bfloat16 vs float32", bf16, f32),
    (f"{device.platform} float32 vs CPU float32 (highest)", f32, host),
  ]:
    worst = float(np.abs(ours - ref).max() / np.abs(ref).max())  # the model tests' measure
    print(
      f"\n{title}, {check} images: max|diff| over all exits / max|ref| = {worst:.2e} "
      f"({'PASS' if worst <= 2e-2 else 'FAIL'} at 2e-2)\n"
    )
    print(
      common.table(
        ["exit", "max|diff|/max|ref| of the exit", "Spearman"], exit_agreement(ours, ref)
      )
    )
  fr_rows(args, batches, rounds, begin, peak, nominal)
  sweep_check(args.smoke, args.ijbc_variants)
  staged_check(args.smoke)
  try:
    import torch  # noqa: F401  (the assessors' weights are made through their references)
  except ImportError:
    print("\n## Quality assessors: skipped (PyTorch is not installed)")
  else:
    assessor_bench.gpu_rows(args.smoke)  # CR-FIQA, SER-FIQ, GraFIQs against the FR forward
  print(f"\nTotal {time.perf_counter() - begin:.0f} s")


def _torch_engines(ref, x: np.ndarray, smoke: bool) -> dict:
  """PyTorch reference engines on the GPU if PyTorch sees one (else the CPU); {} without torch."""
  try:
    import torch
  except ImportError:
    return {}
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model, xt = ref.to(dev), torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(dev)
  modes = {"eager": model} if smoke else {"eager": model, "compile": torch.compile(model)}

  def call(m, bf16):
    with torch.inference_mode(), torch.autocast(dev, torch.bfloat16, enabled=bf16):
      out = m(xt)
    if dev == "cuda":
      torch.cuda.synchronize()
    return out

  return {
    f"torch {mode} ({dev}) {name}": (lambda m=m, b=b: call(m, b))
    for mode, m in modes.items()
    for name, b in (("float32", False), ("bfloat16", True))
  }


def fr_rows(
  args, batches: list[int], rounds: int, begin: float, peak: dict, nominal: float | None
) -> None:
  """The face-recognition rows: Flax iresnet100 vs the PyTorch reference, bf16 vs f32.

  MFU: the row's TFLOP/s over the matmul peak measured in its dtype, and (bfloat16
  rows, known devices) over the nominal dense bfloat16 peak."""
  config = FRConfig.for_family("arcface")  # iresnet100, 24 GFLOP per image
  if args.smoke:
    config = FRConfig.for_family("arcface", layers=(1, 1, 1, 1))
  try:
    ref, variables = fr_workloads.reference_pair(config)
  except ImportError:  # no PyTorch: random Flax weights only
    ref, variables = None, split(create(config))
  gflop, rows = fr_workloads.fr_gflops(config), []
  for batch in batches:
    if time.perf_counter() - begin > 2 * args.budget:
      rows.append([batch, "skipped: over 2 x --budget", "", "", "", ""])
      continue
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 112, 112, 3)).astype(np.float32)
    xj = jnp.asarray(x)
    fns = {
      f"Flax jit {n}": (lambda d=d: jax.block_until_ready(apply(*variables, xj, dtype=d)))
      for n, d in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16))
    }
    if ref is not None:
      fns.update(_torch_engines(ref, x, args.smoke))
    for name, fn in fns.items():
      t = timed(fn, 0.2, rounds)
      tflops, dtype = batch * gflop / t / 1e3, name.split()[-1]
      mfu = f"{100 * tflops / nominal:.1f}%" if nominal and dtype == "bfloat16" else ""
      rows.append([batch, name, batch / t, tflops, f"{100 * tflops / peak[dtype]:.0f}%", mfu])
  print(f"\n{config.name}: {gflop:.1f} GFLOP per image; medians of {rounds} samples.\n")
  header = ["batch", "engine", "images/s", "TFLOP/s", "MFU (measured peak)"]
  print(common.table([*header, f"MFU (nominal bf16, {nominal or 'unknown'} TFLOP/s)"], rows))
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (8, 112, 112, 3)).astype(np.float32))
  f32 = np.asarray(apply(*variables, x))
  bf16 = np.asarray(apply(*variables, x, dtype=jnp.bfloat16))
  worst = float(np.abs(bf16 - f32).max() / np.abs(f32).max())
  print(
    f"\n{config.name} bfloat16 vs float32 embeddings, 8 images: max|diff|/max|ref| = {worst:.2e}"
  )


def sweep_check(smoke: bool, ijbc_variants: int) -> None:
  """The fusion sweep on the default device: LFW-sized (full grid, against the strong
  numpy baseline on the host) and IJB-C-sized (template pairs; per variant after the
  pair set is prepared, the projection of the grid for one and four FR models)."""
  from strong_numpy import StrongNumpySweep
  from sweep_bench import FMRS, GRID, IJBC_GENUINE, IJBC_PAIRS, IJBC_TEMPLATES, LIMITS, synthetic

  from exfiqa_jax.fusion.engine import evaluate_variant
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.fusion.sweep import sweep
  from exfiqa_jax.metrics import make_pairset

  n, p = (600, 300) if smoke else (12_000, 6_000)
  big_n, big_p = (400, 40_000) if smoke else (IJBC_TEMPLATES, IJBC_PAIRS)
  data = synthetic(n, p)
  ps = make_pairset(*data, fmrs=FMRS, limits=LIMITS)
  t0 = time.perf_counter()
  table = sweep(ps)
  cold = time.perf_counter() - t0
  t0 = time.perf_counter()
  sweep(ps)
  warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  strong = StrongNumpySweep(*data, fmrs=FMRS, limits=LIMITS).sweep(subset_masks(12))
  host = time.perf_counter() - t0
  cpu = jax.devices("cpu")[0]
  rows = np.random.default_rng(0).choice(len(table["subset"]), 8, replace=False)
  worst = 0.0
  for r in rows:
    mask = (int(table["subset"][r]) >> np.arange(12)) & 1 == 1
    with jax.default_device(cpu):
      ref = evaluate_variant(jax.device_put(ps, cpu), mask, str(table["rule"][r]))
    got = [table[f"erc_area@{f:g}"][r] for f in FMRS] + [
      table[f"edc_area@{x:g}"][r] for x in LIMITS
    ]
    worst = max(worst, float(np.nanmax(np.abs(np.r_[ref["erc_area"], ref["edc_area"]] - got))))
  cols = [f"erc_area@{f:g}" for f in FMRS], [f"edc_area@{x:g}" for x in LIMITS]
  mine = np.c_[np.stack([table[c] for c in cols[0]], 1), np.stack([table[c] for c in cols[1]], 1)]
  host_diff = float(np.nanmax(np.abs(mine - np.c_[strong["erc"], strong["edc"]])))
  v = len(table["subset"])
  print(
    f"\nFusion sweep, {n} images x 12 exits, {p} pairs, {v} variants on "
    f"{jax.devices()[0].device_kind}: {cold:.1f} s cold, {warm:.1f} s compiled "
    f"({warm / v * 1e6:.0f} us per variant); strong numpy on the host, one thread: "
    f"{host:.1f} s ({host / v * 1e6:.0f} us per variant; the compiled sweep "
    f"{host / warm:.2f}x as fast); 8 rows against the CPU engine: max |difference| {worst:.1e}, "
    f"every row against strong numpy: {host_diff:.1e} "
    f"({'PASS' if max(worst, host_diff) <= 1e-6 else 'FAIL'} at 1e-6)"
  )
  from exfiqa_jax.fusion import large

  frac = IJBC_GENUINE / IJBC_PAIRS if not smoke else 0.05
  t0 = time.perf_counter()
  big = make_pairset(
    *synthetic(big_n, big_p, seed=1, genuine_fraction=frac), fmrs=FMRS, limits=LIMITS
  )
  prep = time.perf_counter() - t0
  if smoke:
    large.LARGE_PAIRS = 1  # the smoke set is small: route it the IJB-C way all the same
  t0 = time.perf_counter()
  large.prepared(big)
  tables = time.perf_counter() - t0
  k = 4 if smoke else ijbc_variants
  masks = subset_masks(12)[np.linspace(0, 4094, max(k, 8)).astype(int)]
  w = np.broadcast_to(np.arange(1, 13), masks.shape)
  run = large.runner(big, masks, w, "weighted", chunk=1)
  t0 = time.perf_counter()
  got = run(0, 4)
  first = time.perf_counter() - t0
  singles = []
  for i in range(4, 8):
    t0 = time.perf_counter()
    run(i, i + 1)
    singles.append(time.perf_counter() - t0)
  # the compiled counts (this device) against the numpy counts (host): one table
  host, dev = (
    large.runner(big, masks[:4], w[:4], "weighted", chunk=1, host=h)(0, 4) for h in (True, False)
  )
  same = all(
    np.array_equal(x, y, equal_nan=True) and np.array_equal(x, z, equal_nan=True)
    for x, y, z in zip(host, dev, got, strict=True)
  )
  sweep(big, rules=("weighted",), masks=masks[:k][::-1])  # the same chunk shapes compiled first
  t0 = time.perf_counter()
  sweep(big, rules=("weighted",), masks=masks[:k])
  per = (time.perf_counter() - t0) / k
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use", 0) / 2**30
  print(
    f"\nIJB-C-sized sweep (exfiqa_jax.fusion.large), {big_n} templates, {big_p} pairs: pair "
    f"set {prep:.1f} s, path tables {tables:.1f} s; first 4 variants {first:.1f} s (incl. "
    f"compilation); one variant after preparation {np.median(singles) * 1e3:.0f} ms median "
    f"({min(singles) * 1e3:.0f}-{max(singles) * 1e3:.0f}); {k} variants in a sweep "
    f"{per * 1e3:.0f} ms per variant; full grid of {GRID:,} projected {per * GRID / 60:.1f} "
    f"min, 4 FR models {4 * per * GRID / 3600:.2f} h; device peak memory {peak:.2f} GiB; "
    f"compiled counts on the device equal the host's numpy counts: {'PASS' if same else 'FAIL'}"
  )


def staged_check(smoke: bool) -> None:
  """Adaptive early exit on the default device: staged vs full pass, same batch size."""
  import adaptive_bench
  from sweep_bench import FMRS, LIMITS, synthetic

  from exfiqa_jax.adaptive.policy import Policy, default_stages, mean_gflops
  from exfiqa_jax.models.flops import exit_gflops
  from exfiqa_jax.models.staged import staged_apply

  config = ViTConfig()
  if smoke:
    config = ViTConfig(image_size=112, patch_size=28, width=32, depth=12, num_heads=2, mlp_dim=64)
  cost = np.asarray(exit_gflops(config), np.float64)
  n, p = (1200, 600) if smoke else (12_000, 6_000)
  exits, a, b, genuine, scores = synthetic(n, p)
  z = dict(exit_scores=exits, a=a, b=b, labels=genuine, comparison=scores, cost=cost)
  metrics = dict(fmrs=FMRS, edc_fmr=FMRS[0], edc_limits=LIMITS)
  study, best = adaptive_bench.choose(z, metrics, config.depth)
  e = adaptive_bench.study_eval(study, z)
  pool = np.unique(np.r_[a[e], b[e]])
  variables = adaptive_bench.random_variables(config)
  rng, rows, worst = np.random.default_rng(0), [], 0.0
  never = Policy("delta", 0.0, default_stages(config.depth), config.depth, {"scale": 1.0})
  for batch in [16, 64] if smoke else [64, 256, 1024]:
    x = jnp.asarray(workloads.images(config, batch))
    full = np.asarray(apply(*variables, x, embedding=False).exits)
    t_full = timed(lambda x=x: apply(*variables, x, embedding=False), 0.2, 3)
    t = timed(lambda x=x: staged_apply(*variables, x, never), 0.2, 3)
    rows.append([batch, "no stop", "-", float(cost[-1]), "", batch / t, batch / t_full, t_full / t])
    for name, (row, policy) in best.items():
      ids = rng.choice(pool, batch, replace=batch > len(pool))
      out = staged_apply(*variables, x, adaptive_bench.Replay(policy, exits, ids))
      ran = ~np.isnan(out.exits)
      worst = max(worst, float(np.abs(out.exits[ran] - full[ran]).max() / np.abs(full).max()))
      t = timed(
        lambda x=x, p=policy, i=ids: staged_apply(
          *variables, x, adaptive_bench.Replay(p, exits, i)
        ),
        0.2,
        3,
      )
      rows.append(
        [batch, name, f"{policy.knob:g}", mean_gflops(out.blocks_run, cost)]
        + [float(row[study.select]), batch / t, batch / t_full, t_full / t]
      )
  full_erc = float(study.full[study.select])
  print(
    f"\nAdaptive early exit, {n} synthetic images x {config.depth} exits: cheapest knob per "
    f"policy within 1% of the full fusion's {study.select} ({full_erc:.4f}; "
    f'{cost[-1]:.2f} GFLOPs per image); medians of 3 samples; "no stop": the same stages '
    f"with no image stopping. Staged exits vs the full pass: max|diff|/max|ref| = {worst:.1e}.\n"
  )
  head = ["batch", "policy", "knob", "GFLOPs (batch)", "ERC area", "images/s staged"]
  print(common.table([*head, "images/s full", "ratio"], rows))


if __name__ == "__main__":
  main()

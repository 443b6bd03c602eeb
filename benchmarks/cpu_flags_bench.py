"""XLA CPU compiler options against the model: GEMM rates, images/s and numerics, per program.

    python benchmarks/cpu_flags_bench.py [--batch 64] [--rounds 3] [--only a,b] [--dtypes f32,bf16]
                                         [--no-gemm | --no-model]

Every candidate is a set of XLA debug options passed per program
(`.lower(...).compile(compiler_options=...)`; the same names, lower case, work
as `XLA_FLAGS=--name=value` before the backend starts), so all candidates run
in one process, round-robin. Tables: best GFLOP/s of the model's GEMMs at 16
images (2320 rows) in float32 and bfloat16 (float32 accumulation); the full
pass at `--batch` (images/s, medians) with its largest difference from the
default program's outputs; which library fusions the compiled model contains.
"""

from __future__ import annotations

import argparse
import os
import re

import common
import jax
import jax.numpy as jnp
import numpy as np
import workloads

from exfiqa_jax import ViTConfig, create, split
from exfiqa_jax.models.inference import apply_program

YNN, ONEDNN = "xla_cpu_experimental_ynn_fusion_type", "xla_cpu_experimental_onednn_fusion_type"


def TYPES(*t):
  return ",".join(f"LIBRARY_FUSION_TYPE_{x}" for x in t)


ONEDNN_ON = {YNN: "", "xla_cpu_use_onednn": True}
CANDIDATES = {
  "default": {},
  "ynn off (plain dot thunks)": {YNN: ""},
  "ynn individual dot": {YNN: TYPES("INDIVIDUAL_DOT")},
  "ynn dot": {YNN: TYPES("DOT")},
  "ynn dot+eltwise": {YNN: TYPES("DOT", "ELTWISE")},
  "ynn dot+eltwise+reduce": {YNN: TYPES("DOT", "ELTWISE", "REDUCE")},
  "onednn dot": {**ONEDNN_ON, ONEDNN: TYPES("DOT")},
  "onednn dot+eltwise": {**ONEDNN_ON, ONEDNN: TYPES("DOT", "ELTWISE")},
  "onednn custom call": {**ONEDNN_ON, "xla_cpu_experimental_onednn_custom_call": True},
  "xnn dot": {YNN: "", "xla_cpu_experimental_xnn_fusion_type": TYPES("DOT")},
  "xnn graph greedy": {
    "xla_cpu_experimental_xnn_graph_fusion_mode": "XNN_GRAPH_FUSION_MODE_GREEDY"
  },
  "fast math": {"xla_cpu_enable_fast_math": True},
  "vector width 512": {"xla_cpu_prefer_vector_width": 512},
  "fusion emitters off": {"xla_cpu_use_fusion_emitters": False},
}
# Not run on the full model: these fusions take the elementwise producer of a dot
# (a norm's multiply, the softmax) in with it, the library fails to compile that
# graph at the first call ("partition compile failed") and the process aborts.
ABORTS = {"onednn dot", "onednn dot+eltwise"}
DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}


def gemm_shapes(config: ViTConfig, rows: int) -> dict[str, tuple[int, int, int]]:
  """name -> (M, K, N) of the block's four GEMMs at `rows` token rows."""
  d, h = config.width, config.mlp_dim
  return {"qkv": (rows, d, 3 * d), "proj": (rows, d, d), "fc1": (rows, d, h), "fc2": (rows, h, d)}


def gemm(m: int, k: int, n: int, dtype, options: dict):
  """A blocking call of one compiled [m, k] @ [k, n] product (float32 accumulation)."""
  rng = np.random.default_rng(0)
  a, b = (jnp.asarray(rng.standard_normal(s), dtype) for s in ((m, k), (k, n)))

  def dot(x, y):
    return jnp.dot(x, y, preferred_element_type=jnp.float32)

  fn = jax.jit(dot).lower(a, b).compile(compiler_options=options)
  return lambda: fn(a, b).block_until_ready()


def fusion_kinds(compiled) -> str:
  kinds = re.findall(r'"kind":"__(\w+?)_fusion"', compiled.as_text())
  return ", ".join(f"{k} x{kinds.count(k)}" for k in sorted(set(kinds))) or "none"


def gemm_table(config: ViTConfig, names: list[str], reps: int) -> str:
  import torch

  shapes = gemm_shapes(config, 16 * (config.num_patches + 1))
  fns, cols = {}, [f"{s} {d}" for d in DTYPES for s in shapes]
  for name in names:
    for d, dtype in DTYPES.items():
      for s, mkn in shapes.items():
        fns[name, f"{s} {d}"] = gemm(*mkn, dtype, CANDIDATES[name])
  for d, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
    for s, (m, k, n) in shapes.items():
      a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
      fns["torch (same shapes)", f"{s} {d}"] = lambda a=a, b=b: a @ b
  times = common.interleaved(fns, reps)

  def flop(col):
    return 2.0 * np.prod(shapes[col.split()[0]])

  rates = {key: flop(key[1]) / min(t["wall"]) / 1e9 for key, t in times.items()}
  rows = [[name] + [rates[name, c] for c in cols] for name in names + ["torch (same shapes)"]]
  return common.table(["GFLOP/s, best of %d" % reps] + cols, rows)


def model_table(
  config: ViTConfig, names: list[str], dtypes: list[str], batch: int, rounds: int
) -> str:
  graphdef, params, batch_stats = split(create(config))
  x = jnp.asarray(workloads.images(config, batch))
  names = [n for n in names if n not in ABORTS]
  programs = {
    (name, d): apply_program.lower(graphdef, params, batch_stats, x, dtype=dtype).compile(
      compiler_options=CANDIDATES[name]
    )
    for name in names
    for d in dtypes
    for dtype in [DTYPES[d]]
  }
  fns = {
    key: lambda c=c: jax.block_until_ready(c(params, batch_stats, x)) for key, c in programs.items()
  }
  times = common.interleaved(fns, rounds)
  outs = {key: c(params, batch_stats, x) for key, c in programs.items()}
  rows = []
  for name in names:
    row = [name]
    for d in dtypes:
      out, ref = outs[name, d], outs[names[0], d]
      emb = float(jnp.abs(out.embedding - ref.embedding).max() / jnp.abs(ref.embedding).max())
      row += [
        batch / common.median(times[name, d]["wall"]),
        common.median(times[name, d]["cpu"]),
        f"{float(jnp.abs(out.exits - ref.exits).max()):.1e}",
        f"{emb:.1e}",
      ]
    rows.append(row + [fusion_kinds(programs[name, d]) for d in dtypes])
  return common.table(
    ["candidate"]
    + [
      f"{d} {c}"
      for d in dtypes
      for c in ("images/s", "CPU s/call", "max exit diff", "embedding diff (rel.)")
    ]
    + [f"{d} library fusions" for d in dtypes],
    rows,
  )


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--reps", type=int, default=5, help="GEMM repetitions (best is kept)")
  p.add_argument("--only", help="comma-separated candidate names (default: all)")
  p.add_argument("--no-model", action="store_true", help="GEMMs only")
  p.add_argument("--no-gemm", action="store_true", help="the full model only")
  p.add_argument("--dtypes", default="f32,bf16", help="of the full model")
  p.add_argument("--threads", type=int, default=os.cpu_count())
  args = p.parse_args()
  names = args.only.split(",") if args.only else list(CANDIDATES)
  names = ["default"] + [n for n in names if n != "default"]
  common.use_threads(args.threads)
  config = ViTConfig()
  print(common.machine_info(args.threads), "\n")
  if not args.no_gemm:
    print(gemm_table(config, names, args.reps), f"\n\nload {common.load()} after the GEMMs\n")
  if not args.no_model:
    print(
      f"Full pass, batch {args.batch}, medians of {args.rounds} rounds; "
      "differences against the default program in the same dtype.\n"
    )
    print(
      model_table(config, names, args.dtypes.split(","), args.batch, args.rounds),
      f"\n\nload {common.load()} at the end",
    )


if __name__ == "__main__":
  main()

"""Images/s of the JAX model against the PyTorch reference model on identical weights.

    python benchmarks/model_bench.py [--batches 1,16,64] [--rounds 5] [--quick] [--jax-only]
                                     [--before]

Full pass (all exits and the embedding) of the released ViT-S shape, random
weights copied by the converter. Engines: JAX float32 and bfloat16 (bf16
matmuls accumulating in float32), PyTorch eager and `torch.compile`, each in
float32 and in bfloat16 autocast; all on the same cores. Calls alternate
round-robin within a batch size (the machine may be shared); medians (range)
after warm-up. "% peak" is the model's GFLOP/s over the best [2048, 2048] matmul
this run measured in the same dtype; ratios compare JAX with PyTorch in that dtype.
`--before` adds JAX rows without `models.hoist` (one program a call, the weights' work
inside the micro-batch loop). `--jax-only` needs no torch (random weights from `create`):
for comparing jax releases, e.g. the lowest and the newest supported stack.
"""

from __future__ import annotations

import argparse
import os

import common
import cpu_info
import jax
import jax.numpy as jnp
import workloads

from exfiqa_jax import ViTConfig, apply, create, split
from exfiqa_jax.models.inference import apply_program

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def engines(
  config: ViTConfig, batch: int, compiled: bool, torch_too: bool = True, before: bool = False
) -> dict:
  """name -> blocking call; names are 'library mode dtype'. `before` adds JAX rows of
  one program per call with the weights' work inside the micro-batch loop (the program
  before `models.hoist`)."""
  if torch_too:
    ref, (graphdef, params, batch_stats) = workloads.reference_pair(config)
  else:
    graphdef, params, batch_stats = split(create(config))
  x = workloads.images(config, batch)
  xj = jnp.asarray(x)
  fns = {
    f"JAX jit {name}": (
      lambda d=d: jax.block_until_ready(apply(graphdef, params, batch_stats, xj, dtype=d))
    )
    for name, d in DTYPES.items()
  }
  if before:
    for name, d in DTYPES.items():
      fns[f"JAX before {name}"] = lambda d=d: jax.block_until_ready(
        apply_program(graphdef, params, batch_stats, xj, dtype=d, hoist=False)
      )
  if not torch_too:
    return fns
  import torch

  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  modes = {"eager": ref}
  if compiled:
    modes["compile"] = torch.compile(ref, dynamic=False)
  for mode, model in modes.items():
    fns[f"torch {mode} float32"] = lambda m=model: _torch_call(m, xt, False)
    fns[f"torch {mode} bfloat16"] = lambda m=model: _torch_call(m, xt, True)
  return fns


def _torch_call(model, x, bf16: bool):
  import torch

  with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
    return model(x)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batches", default="1,16,64")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--quick", action="store_true", help="batch 16 only, 2 rounds")
  p.add_argument("--jax-only", action="store_true", help="JAX rows only (no torch needed)")
  p.add_argument("--before", action="store_true", help="add JAX rows without models.hoist")
  args = p.parse_args()
  batches, rounds = (
    ([16], 2) if args.quick else ([int(b) for b in args.batches.split(",")], args.rounds)
  )
  common.use_threads(args.threads)
  config = ViTConfig()  # the released ViT-S: 112x112, patch 9, width 512, depth 12
  print(common.machine_info(args.threads))
  print(cpu_info.cpu_flags(), "\n")
  peaks = workloads.matmul_gflops(torch_too=not args.jax_only)
  print(common.table(["[2048, 2048] matmul", "GFLOP/s"], [[k, v] for k, v in peaks.items()]))
  peak = {d: max(v for k, v in peaks.items() if k.endswith(d)) for d in DTYPES}
  gflop = workloads.full_pass_gflops(config)
  rows = []
  for batch in batches:
    fns = engines(
      config, batch, not args.no_compile, torch_too=not args.jax_only, before=args.before
    )
    times = common.interleaved(fns, rounds, warmup=2)
    ips = {name: batch / common.median(t["wall"]) for name, t in times.items()}
    for name, rate in ips.items():
      walls = times[name]["wall"]
      dtype = name.split()[-1]

      def ratio(mode):
        return (
          f"{rate / ips[f'torch {mode} {dtype}']:.2f}x"
          if name.startswith("JAX") and f"torch {mode} {dtype}" in ips
          else ""
        )

      rows.append(
        [
          batch,
          name,
          rate,
          f"{batch / max(walls):.1f}-{batch / min(walls):.1f}",
          rate * gflop,
          f"{100 * rate * gflop / peak[dtype]:.0f}%",
          ratio("eager"),
          ratio("compile"),
          common.load(),
        ]
      )
  print(f"\nFull pass, {gflop:.2f} GFLOP per image; medians (range) of {rounds} rounds.\n")
  print(
    common.table(
      [
        "batch",
        "engine",
        "images/s",
        "range",
        "GFLOP/s",
        "% peak",
        "vs torch eager",
        "vs torch.compile",
        "load",
      ],
      rows,
    )
  )


if __name__ == "__main__":
  main()

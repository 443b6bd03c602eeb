"""Compile time and peak memory per configuration, each measured in a fresh process.

    python benchmarks/memory_bench.py [--quick]

JAX: `apply` of the released ViT-S shape (random weights) per dtype, batch and
output; compile = `lower(...).compile()`, XLA's own buffer sizes from
`memory_analysis()`. PyTorch: the reference model, eager and `torch.compile`
(its compile time = first call - a later call). Peak RSS is the whole process
(Python, libraries, weights); "weights RSS MiB" is the resident size once the
weights are loaded, before anything runs. A second table runs a stream of
ragged batch sizes through plain `apply` (one program per new size) and
through `apply_bucketed` (sizes padded to powers of two up to 64).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import common

MIB = 2**20
STREAM = [64, 37, 64, 5, 64, 50, 12, 64, 1, 29, 64, 23]


def rss_mib() -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def child(spec: dict) -> dict:
  """Runs one configuration in this (fresh) process; returns its measurements."""
  import workloads

  from exfiqa_jax import ViTConfig

  if spec["engine"] == "stream":
    return stream(spec["bucketed"])
  config = ViTConfig()
  x = workloads.images(config, spec["batch"])
  if spec["engine"] == "JAX":
    return jax_child(spec, config, x)
  return torch_child(spec, config, x)


def jax_child(spec: dict, config, x) -> dict:
  import jax
  import jax.numpy as jnp

  from exfiqa_jax import create, split
  from exfiqa_jax.models.inference import apply_program

  variables = split(create(config))
  out = {"weights RSS MiB": rss_mib()}
  kw = dict(embedding=spec["embedding"], dtype=jnp.dtype(spec["dtype"]))
  start = time.perf_counter()
  compiled = apply_program.lower(*variables, x, **kw).compile()
  out["compile s"] = time.perf_counter() - start
  mem = compiled.memory_analysis()
  out.update(
    {"XLA args MiB": mem.argument_size_in_bytes / MIB, "XLA temp MiB": mem.temp_size_in_bytes / MIB}
  )
  for key in ("first call s", "call s"):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*variables[1:], x))  # graphdef is static
    out[key] = time.perf_counter() - start
  return out


def torch_child(spec: dict, config, x) -> dict:
  import torch

  from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_

  model = randomize_(ViTFIQAReference(**config.to_dict()))
  out = {"weights RSS MiB": rss_mib()}
  model = torch.compile(model, dynamic=False) if spec["engine"] == "torch.compile" else model
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  for key in ("first call s", "call s"):
    start = time.perf_counter()
    with (
      torch.inference_mode(),
      torch.autocast("cpu", torch.bfloat16, enabled=spec["dtype"] == "bfloat16"),
    ):
      model(xt)
    out[key] = time.perf_counter() - start
  if spec["engine"] == "torch.compile":
    out["compile s"] = out["first call s"] - out["call s"]
  return out


def stream(bucketed: bool) -> dict:
  import jax
  import workloads

  from exfiqa_jax import ViTConfig, apply, create, split
  from exfiqa_jax.models.inference import apply_bucketed, program_count

  config = ViTConfig()
  variables = split(create(config))
  batches = [workloads.images(config, batch) for batch in STREAM]
  start = time.perf_counter()
  for x in batches:
    if bucketed:
      apply_bucketed(*variables, x, embedding=False)
    else:
      jax.block_until_ready(apply(*variables, x, embedding=False))
  return {"total s": time.perf_counter() - start, "programs": program_count()}


def measure(spec: dict) -> dict:
  """The measurements of `spec`, run in a fresh interpreter."""
  proc = subprocess.run(
    [sys.executable, __file__, "--child", json.dumps(spec)],
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="batch 16, no torch.compile, no stream")
  p.add_argument("--child", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    out = child(json.loads(args.child))
    out["peak RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    return
  print(common.machine_info(threads=len(os.sched_getaffinity(0))), "\n")
  batches = [16] if args.quick else [1, 16, 64]
  specs = [
    dict(engine="JAX", dtype=d, batch=b, embedding=e)
    for d in ("float32", "bfloat16")
    for b in batches
    for e in (True, False)
  ]
  engines = ["torch eager"] + ([] if args.quick else ["torch.compile"])
  specs += [
    dict(engine=e, dtype=d, batch=batches[-1], embedding=True)
    for e in engines
    for d in ("float32", "bfloat16")
  ]
  keys = [
    "compile s",
    "first call s",
    "call s",
    "weights RSS MiB",
    "peak RSS MiB",
    "XLA args MiB",
    "XLA temp MiB",
  ]
  rows = []
  for spec in specs:
    out = measure(spec)
    what = "full pass" if spec["embedding"] else "quality only"
    rows.append(
      [spec["engine"], spec["dtype"], spec["batch"], what]
      + [out.get(k, "") for k in keys]
      + [common.load()]
    )
  print(common.table(["engine", "dtype", "batch", "outputs"] + keys + ["load"], rows))
  if not args.quick:
    runs = {
      name: measure(dict(engine="stream", bucketed=b, batch=1))
      for name, b in [("apply", False), ("apply_bucketed", True)]
    }
    print(f"\nQuality only, float32, batch sizes {STREAM} in turn, each in a fresh process.\n")
    print(
      common.table(
        ["path", "total s", "programs compiled", "peak RSS MiB"],
        [[k, v["total s"], v["programs"], v["peak RSS MiB"]] for k, v in runs.items()],
      )
    )


if __name__ == "__main__":
  main()

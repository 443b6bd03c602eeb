"""Face-recognition backbones: images/s of Flax vs the PyTorch reference, and converting one.

    python benchmarks/fr_bench.py [--batch 64] [--rounds 2] [--families arcface,curricularface]
                                  [--no-compile] [--no-eager] [--unfolded] [--winograd-off]
                                  [--skip-convert] [--micro-batches 8,16]
                                  [--dtypes float32,bfloat16] [--variants min128+mb8,f4]
                                  [--no-gaps]

Speed: full-size iresnet100 (ArcFace/ElasticFace/MagFace shape) and IR-101
(CurricularFace), random weights copied by the converter, the same float32
input on the same cores. Engines: Flax jit float32 and bfloat16 (bf16
convolutions accumulating in float32), PyTorch eager and `torch.compile`,
each float32 and bfloat16 autocast; `--unfolded` adds Flax with every
BatchNorm applied on its own (`fold_bn=False`, the order before folding);
`--winograd-off` adds Flax float32 and bfloat16 with every convolution the
library's (`layers.conv_algorithm(winograd=False)`, the CPU path before Winograd);
`--micro-batches` adds Flax rows that run the batch through the network that many
images at a time inside the one program (`apply(..., micro_batch=m)`, `lax.map`);
`--variants` adds Flax rows traced under `layers.conv_algorithm` settings, each
'+'-joined tokens: `minN` (Winograd from N input channels), `f4` (Winograd
F(4x4, 3x3)), `mbN` (micro-batch N; without it, `apply`'s own), `nos2` (bfloat16
stride-2 convolutions on the library's, not as tap matmuls), `nopatch` (the stem on
the library's convolution, not patches), `wmaxN` (bfloat16 Winograd on maps up to N),
`noprep` (the weights' own work in every call, one program: `apply(...,
prepare=False)`), `nohoist` (and inside the micro-batch loop: the program before
`models.hoist`); `--dtypes` keeps only the engines of those
dtypes; `--no-gaps` skips the gaps to PyTorch float32 (four calls).
Calls alternate round-robin (the machine may be shared); medians and ranges
after one warm-up call each, the load average after each table.

Conversion: a random iresnet100 `backbone.pth` converted by `exfiqa convert
--family arcface` (and exported back) in a fresh process each: wall time and
peak resident memory (`os.wait4`), imports included.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile

import common
import cpu_info
import fr_workloads
import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.hoist import Prepared
from exfiqa_jax.models.inference import apply, forward
from exfiqa_jax.models.layers import conv_algorithm


def conversion(config: FRConfig, repeats: int) -> None:
  from exfiqa_jax.convert.references.face_recognition import randomize_fr_, reference_for

  tmp = tempfile.mkdtemp(prefix="fr_convert_bench_")
  src, dst, back = (os.path.join(tmp, n) for n in ("backbone.pth", "ckpt", "back.pth"))
  sd = randomize_fr_(reference_for(config)).state_dict()
  torch.save(sd, src)
  params = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
  cli = [sys.executable, "-m", "exfiqa_jax.cli"]
  runs = {
    "exfiqa convert --family arcface": cli
    + ["convert", src, dst, "--family", "arcface", "--force"],
    "exfiqa convert --family arcface --verify": cli
    + ["convert", src, dst, "--family", "arcface", "--force", "--verify"],
    "exfiqa export": cli + ["export", dst, back, "--force"],
  }
  print(
    f"\n{config.name}: {params / 1e6:.1f} M parameters, checkpoint "
    f"{os.path.getsize(src) / 2**20:.0f} MiB; {repeats} fresh process(es) each\n"
  )
  rows = []
  for name, cmd in runs.items():
    times, rss = zip(*(common.measure(cmd) for _ in range(repeats)), strict=True)
    rows.append(
      [name, common.median(times), f"{min(times):.1f}-{max(times):.1f}", common.median(rss)]
    )
  print(common.table(["command", "median wall (s)", "range (s)", "median peak RSS (MiB)"], rows))
  shutil.rmtree(tmp)


def _torch_call(model, x, bf16: bool):
  """The embedding; the IR release's forward also returns its flattened conv features."""
  with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
    out = model(x)
  return out[0] if isinstance(out, tuple) else out


@functools.partial(jax.jit, static_argnames=("graphdef", "dtype"))
def _unfolded(graphdef, params, stats, images, dtype):
  return nnx.merge(graphdef, params, stats)(images, dtype, fold_bn=False)


@functools.partial(jax.jit, static_argnames=("graphdef", "dtype"))
def _library_conv(graphdef, params, stats, images, dtype):
  return nnx.merge(graphdef, params, stats)(images, dtype)


def _no_winograd(graphdef, params, stats, images, dtype):
  with conv_algorithm(winograd=False):  # read when `_library_conv` is traced
    return _library_conv(graphdef, params, stats, images, dtype)


def _variant(spec: str):
  """`apply` traced under the settings of `spec` (see the module doc), in its own programs."""
  opts = {}  # conv_algorithm's settings that differ from its defaults (the rules')
  micro = "auto"  # as `apply`: a variant differs from the default only by its tokens
  prepare, hoisted = True, True
  for token in spec.split("+"):
    if token.startswith("min"):
      opts["min_channels"] = int(token[3:])
    elif token.startswith("wmax"):
      opts["max_map_bf16"] = int(token[4:])
    elif token == "f4":
      opts["tile"] = 4
    elif token == "nos2":
      opts["taps_s2"] = False
    elif token == "nopatch":
      opts["patches"] = False
    elif token.startswith("mb"):
      micro = int(token[2:])
    elif token == "noprep":
      prepare = False
    elif token == "nohoist":
      prepare = hoisted = False
    else:
      raise SystemExit(f"fr_bench: unknown variant token {token!r} in {spec!r}")
  programs = {}

  def call(graphdef, params, stats, images, dtype):
    key = (graphdef, dtype)
    if key not in programs:
      f = functools.partial(forward, graphdef, dtype=dtype, micro_batch=micro, hoist=hoisted)
      programs[key] = Prepared(lambda w, x: f(*w, x)) if prepare else jax.jit(f)
    with conv_algorithm(winograd=True, **opts):  # read when the programs are traced
      if prepare:
        return programs[key]((params, stats), images)
      return programs[key](params, stats, images)

  return call


def speed(
  config: FRConfig,
  batch: int,
  rounds: int,
  compiled: bool,
  unfolded: bool,
  winograd_off: bool = False,
  eager: bool = True,
  micro_batches: tuple[int, ...] = (),
  dtypes: tuple[str, ...] = ("float32", "bfloat16"),
  variants: tuple[str, ...] = (),
  with_gaps: bool = True,
) -> None:
  ref, (graphdef, params, stats) = fr_workloads.reference_pair(config)
  x = np.random.default_rng(0).uniform(-1, 1, (batch, 112, 112, 3)).astype(np.float32)
  xj, xt = jnp.asarray(x), torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  fns = {
    f"Flax jit {n}": (
      lambda d=d: jax.block_until_ready(apply(graphdef, params, stats, xj, dtype=d))
    )
    for n, d in {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.items()
  }
  if unfolded:
    for n, d in {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.items():
      fns[f"Flax jit, BN unfolded, {n}"] = lambda d=d: jax.block_until_ready(
        _unfolded(graphdef, params, stats, xj, d)
      )
  if winograd_off:
    for n, d in {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.items():
      fns[f"Flax jit, Winograd off, {n}"] = lambda d=d: jax.block_until_ready(
        _no_winograd(graphdef, params, stats, xj, d)
      )
  for m in micro_batches:
    for n, d in {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.items():
      fns[f"Flax jit, micro-batch {m}, {n}"] = lambda d=d, m=m: jax.block_until_ready(
        apply(graphdef, params, stats, xj, dtype=d, micro_batch=m)
      )
  for spec in variants:
    fn = _variant(spec)
    for n, d in {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.items():
      fns[f"Flax jit, {spec}, {n}"] = lambda d=d, fn=fn: jax.block_until_ready(
        fn(graphdef, params, stats, xj, d)
      )
  modes = {"eager": ref} if eager else {}
  if compiled:
    modes["compile"] = torch.compile(ref, dynamic=False)
  for mode, model in modes.items():
    fns[f"torch {mode} float32"] = lambda m=model: _torch_call(m, xt, False)
    fns[f"torch {mode} bfloat16"] = lambda m=model: _torch_call(m, xt, True)
  fns = {k: f for k, f in fns.items() if k.split()[-1] in dtypes}
  gaps = "gaps to torch float32 not computed (--no-gaps)"
  if with_gaps:
    want = _torch_call(ref, xt, False).numpy()
    scale = np.abs(want).max()
    got = np.asarray(apply(graphdef, params, stats, xj))
    raw = np.asarray(_unfolded(graphdef, params, stats, xj, jnp.float32))
    half = np.asarray(apply(graphdef, params, stats, xj, dtype=jnp.bfloat16))
    gaps = (
      f"Flax float32 vs torch float32: max|diff|/max|ref| = "
      f"{np.abs(got - want).max() / scale:.1e} (BN unfolded: "
      f"{np.abs(raw - want).max() / scale:.1e}); Flax bfloat16 vs torch float32: "
      f"{np.abs(half - want).max() / scale:.1e}"
    )
  times = common.interleaved(fns, rounds, warmup=1)
  gflop = fr_workloads.fr_gflops(config)
  ips = {name: batch / common.median(t["wall"]) for name, t in times.items()}
  rows = []
  for name, t in times.items():
    dtype = name.split()[-1]
    rate = ips[name]
    lo, hi = batch / max(t["wall"]), batch / min(t["wall"])
    vs = [
      f"{rate / ips[k]:.2f}x" if name.startswith("Flax") and k in ips else ""
      for k in (f"torch eager {dtype}", f"torch compile {dtype}")
    ]
    rows.append([name, rate, f"{lo:.2f}-{hi:.2f}", rate * gflop, *vs])
  print(
    f"\n{config.name}, batch {batch}, {gflop:.1f} GFLOP per image; medians (range) of "
    f"{rounds} rounds, load {common.load()} after; {gaps}\n"
  )
  print(
    common.table(
      ["engine", "images/s", "range", "GFLOP/s", "vs torch eager", "vs torch.compile"], rows
    )
  )


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--repeats", type=int, default=1, help="fresh processes per conversion command")
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--families", default="arcface,curricularface", help="iresnet100, IR-101")
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--no-eager", action="store_true", help="skip torch eager")
  p.add_argument("--unfolded", action="store_true", help="add Flax rows with BN unfolded")
  p.add_argument(
    "--winograd-off", action="store_true", help="add Flax rows without Winograd convolutions"
  )
  p.add_argument("--micro-batches", default="", help="Flax rows with these micro-batches")
  p.add_argument("--dtypes", default="float32,bfloat16", help="engines of these dtypes only")
  p.add_argument(
    "--variants",
    default="",
    help="Flax rows: minN/wmaxN/f4/mbN/nos2/nopatch/noprep/nohoist joined by +",
  )
  p.add_argument("--no-gaps", action="store_true", help="skip the gaps to torch float32")
  p.add_argument("--skip-convert", action="store_true")
  p.add_argument("--skip-speed", action="store_true")
  args = p.parse_args()
  common.use_threads(args.threads)
  print(common.machine_info(args.threads))
  print(cpu_info.cpu_flags())
  if not args.skip_convert:
    conversion(FRConfig.for_family("arcface"), args.repeats)  # iresnet100
  for family in [] if args.skip_speed else args.families.split(","):
    speed(
      FRConfig.for_family(family),
      args.batch,
      args.rounds,
      not args.no_compile,
      args.unfolded,
      args.winograd_off,
      not args.no_eager,
      tuple(int(m) for m in filter(None, args.micro_batches.split(","))),
      tuple(args.dtypes.split(",")),
      tuple(filter(None, args.variants.split(","))),
      not args.no_gaps,
    )


if __name__ == "__main__":
  main()

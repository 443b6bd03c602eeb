"""The 3x3 convolutions of iresnet100, one shape at a time: XLA's convolution, Winograd and
shifted GEMMs in Flax against PyTorch's, float32 and bfloat16.

    python benchmarks/conv_bench.py [--batch 64] [--rounds 3] [--shapes 56x64,28x128,14x256,7x512]
                                    [--engines SUBSTRING,...] [--pointwise 112x64x64s2,...]
                                    [--stride2 56x128x128,...] [--stem 112x3x64]

Each shape is a stride-1 3x3 convolution, padding 1, C -> C channels on an H x H
map (the four stages of iresnet100: 56x56x64, 28x28x128, 14x14x256 in 30 of its
49 blocks, 7x7x512), NHWC, random float32 input. Engines: XLA's convolution
(`lax.conv_general_dilated`) float32 and bfloat16 operands with float32
accumulation; Winograd F(2x2, 3x3) (`layers.winograd_conv3x3`) in both; nine
shifted 1x1 GEMMs summed, bfloat16; PyTorch `conv2d` (channels-last) float32 and
bfloat16 autocast; Winograd F(4x4, 3x3) (`layers.winograd_conv3x3_f4`) float32
and bfloat16. `--engines` keeps the engines whose name holds one of the given
substrings. `--pointwise HxCxOsS` adds 1x1 convolutions of stride S (the
downsample shortcuts): XLA's convolution against a subsampling + `dot_general`
(`layers.Conv`'s CPU path), float32 and bfloat16, and PyTorch; `--stride2 HxCxO`
adds 3x3 stride-2 convolutions: XLA's against patches + one GEMM
(`layers.patches_conv3x3`, stride 2) and the nine tap matmuls
(`layers.taps_conv3x3_s2`); `--stem HxCxO` adds stride-1 stems (C = 3): XLA's against
patches + one GEMM (`layers.patches_conv3x3`). Calls alternate round-robin; medians
(range) of GFLOP/s by wall time (2 FLOP per multiply-add of the direct convolution, also
for Winograd), the median process CPU seconds per call, and max |diff| / max |ref|
against XLA's float32 convolution at "highest" precision.
"""

from __future__ import annotations

import argparse
import functools
import os

import common
import cpu_info
import jax
import jax.numpy as jnp
import numpy as np

from exfiqa_jax.models.layers import (
  matmul,
  patches_conv3x3,
  taps_conv3x3_s2,
  winograd_conv3x3,
  winograd_conv3x3_f4,
)

F32, BF16 = jnp.float32, jnp.bfloat16
DN = ("NHWC", "HWIO", "NHWC")
PAD = ((1, 1), (1, 1))


def xla_conv(x, k, dtype, stride: int = 1):
  s = (stride, stride)
  return jax.lax.conv_general_dilated(
    x.astype(dtype), k.astype(dtype), s, PAD, dimension_numbers=DN, preferred_element_type=F32
  )


def shifted_gemms(x, k, dtype):
  """Sum over the 9 taps of x shifted by the tap [B, H, W, C] @ k[tap] [C, O]."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x.astype(dtype), ((0, 0), *PAD, (0, 0)))
  kd = k.astype(dtype)
  return sum(
    jnp.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + w], kd[i, j], preferred_element_type=F32)
    for i in range(3)
    for j in range(3)
  )


def tap_gemm(x, k, dtype, out=F32):
  """One GEMM of the padded map with all 9 taps' kernels side by side, [C, 9 O], then the
  sum of the 9 shifted slices of its output: no copy of the input, 9x the output."""
  b, h, w, c = x.shape
  o = k.shape[-1]
  xp = jnp.pad(x.astype(dtype), ((0, 0), *PAD, (0, 0)))
  kk = k.astype(dtype).transpose(2, 0, 1, 3).reshape(c, 9 * o)
  y = jnp.einsum("bhwc,cn->bhwn", xp, kk, preferred_element_type=out)
  y = y.reshape(b, h + 2, w + 2, 9, o).astype(F32)
  return sum(y[:, i : i + h, j : j + w, 3 * i + j] for i in range(3) for j in range(3))


ENGINES = {
  "XLA conv float32": (xla_conv, F32),
  "XLA conv bfloat16": (xla_conv, BF16),
  "Winograd float32": (winograd_conv3x3, F32),
  "Winograd bfloat16": (winograd_conv3x3, BF16),
  "Winograd bfloat16 out": (lambda x, k, dtype: winograd_conv3x3(x, k, dtype, BF16), BF16),
  "Winograd F4 float32": (winograd_conv3x3_f4, F32),
  "Winograd F4 bfloat16": (winograd_conv3x3_f4, BF16),
  "9 shifted GEMMs bfloat16": (shifted_gemms, BF16),
  "tap GEMM bfloat16": (tap_gemm, BF16),
  "tap GEMM bfloat16 out": (lambda x, k, dtype: tap_gemm(x, k, dtype, BF16), BF16),
}


def pointwise_conv(x, k, dtype, stride):
  return jax.lax.conv_general_dilated(
    x.astype(dtype),
    k.astype(dtype),
    (stride, stride),
    ((0, 0), (0, 0)),
    dimension_numbers=DN,
    preferred_element_type=F32,
  )


def pointwise_dot(x, k, dtype, stride):
  return matmul(x[:, ::stride, ::stride], k[0, 0], dtype)


POINTWISE = {
  "XLA conv float32": (pointwise_conv, F32),
  "XLA conv bfloat16": (pointwise_conv, BF16),
  "dot float32": (pointwise_dot, F32),
  "dot bfloat16": (pointwise_dot, BF16),
}


STRIDE2 = {
  "XLA conv float32": (functools.partial(xla_conv, stride=2), F32),
  "XLA conv bfloat16": (functools.partial(xla_conv, stride=2), BF16),
  "patches GEMM float32": (functools.partial(patches_conv3x3, stride=2), F32),
  "patches GEMM bfloat16": (functools.partial(patches_conv3x3, stride=2), BF16),
  "tap GEMMs float32": (taps_conv3x3_s2, F32),
  "tap GEMMs bfloat16": (taps_conv3x3_s2, BF16),
}


STEM = {
  "XLA conv float32": (xla_conv, F32),
  "XLA conv bfloat16": (xla_conv, BF16),
  "patches GEMM float32": (patches_conv3x3, F32),
  "patches GEMM bfloat16": (patches_conv3x3, BF16),
}


def torch_rows(torch, fns, meta, label, x, k, ref, gflop, *, stride: int, padding: int) -> None:
  """Adds the PyTorch float32 and bfloat16-autocast rows of one convolution (channels-last
  input, as oneDNN prefers): x [B, H, W, C], k [kh, kw, C, O], ref its XLA result."""
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  kt = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous()
  for name, bf16 in {"torch float32": False, "torch bfloat16 (autocast)": True}.items():

    def call(bf16=bf16):
      with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        return torch.nn.functional.conv2d(xt, kt, stride=stride, padding=padding)

    out = call().float().permute(0, 2, 3, 1).numpy()
    fns[f"{label}: {name}"] = call
    meta[f"{label}: {name}"] = (gflop, np.abs(out - ref).max() / np.abs(ref).max())


def _keep(name: str, engines: str | None) -> bool:
  return engines is None or any(e in name for e in engines.split(","))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--shapes", default="56x64,28x128,14x256,7x512", help="HxC, comma-separated")
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--engines", default=None, help="substrings of engine names to keep")
  p.add_argument("--pointwise", default="", help="1x1 convolutions HxCxOsS, comma-separated")
  p.add_argument("--stride2", default="", help="3x3 stride-2 convolutions HxCxO, comma-separated")
  p.add_argument("--stem", default="", help="3x3 stride-1 stems HxCxO (C: 3), comma-separated")
  args = p.parse_args()
  common.use_threads(args.threads)
  print(common.machine_info(args.threads))
  print(cpu_info.cpu_flags())
  torch = None if args.no_torch else __import__("torch")
  rng = np.random.default_rng(0)
  fns, meta = {}, {}
  for shape in filter(None, args.pointwise.split(",")):
    dims, stride = shape.split("s")
    h, c, o = map(int, dims.split("x"))
    x = rng.standard_normal((args.batch, h, h, c)).astype(np.float32)
    k = (rng.standard_normal((1, 1, c, o)) / np.sqrt(c)).astype(np.float32)
    xj, kj, s = jnp.asarray(x), jnp.asarray(k), int(stride)
    ref = np.asarray(
      jax.lax.conv_general_dilated(
        xj, kj, (s, s), ((0, 0), (0, 0)), dimension_numbers=DN, precision="highest"
      )
    )
    ho = ref.shape[1]
    gflop = args.batch * ho * ho * c * o * 2 / 1e9
    label = f"1x1 {h}x{h}x{c}->{o}/{s}"
    for name, (fn, dtype) in POINTWISE.items():
      if not _keep(name, args.engines):
        continue
      jf = jax.jit(lambda x, k, fn=fn, dtype=dtype, s=s: fn(x, k, dtype, s))
      err = np.abs(np.asarray(jf(xj, kj)) - ref).max() / np.abs(ref).max()
      fns[f"{label}: {name}"] = lambda jf=jf, xj=xj, kj=kj: jax.block_until_ready(jf(xj, kj))
      meta[f"{label}: {name}"] = (gflop, err)
    if torch is not None and _keep("torch", args.engines):
      torch_rows(torch, fns, meta, label, x, k, ref, gflop, stride=s, padding=0)
  specs = [(shape, 2, STRIDE2, "3x3/2") for shape in filter(None, args.stride2.split(","))]
  specs += [(shape, 1, STEM, "3x3 stem") for shape in filter(None, args.stem.split(","))]
  for shape, s, table, kind in specs:
    h, c, o = map(int, shape.split("x"))
    x = rng.standard_normal((args.batch, h, h, c)).astype(np.float32)
    k = (rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32)
    xj, kj = jnp.asarray(x), jnp.asarray(k)
    ref = np.asarray(
      jax.lax.conv_general_dilated(xj, kj, (s, s), PAD, dimension_numbers=DN, precision="highest")
    )
    ho = ref.shape[1]
    gflop = args.batch * ho * ho * c * o * 9 * 2 / 1e9
    label = f"{kind} {h}x{h}x{c}->{o}"
    for name, (fn, dtype) in table.items():
      if not _keep(name, args.engines):
        continue
      jf = jax.jit(lambda x, k, fn=fn, dtype=dtype: fn(x, k, dtype))
      err = np.abs(np.asarray(jf(xj, kj)) - ref).max() / np.abs(ref).max()
      fns[f"{label}: {name}"] = lambda jf=jf, xj=xj, kj=kj: jax.block_until_ready(jf(xj, kj))
      meta[f"{label}: {name}"] = (gflop, err)
    if torch is not None and _keep("torch", args.engines):
      torch_rows(torch, fns, meta, label, x, k, ref, gflop, stride=s, padding=1)
  for shape in filter(None, args.shapes.split(",")):
    h, c = map(int, shape.split("x"))
    x = rng.standard_normal((args.batch, h, h, c)).astype(np.float32)
    k = (rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c)).astype(np.float32)
    xj, kj = jnp.asarray(x), jnp.asarray(k)
    ref = np.asarray(
      jax.lax.conv_general_dilated(xj, kj, (1, 1), PAD, dimension_numbers=DN, precision="highest")
    )
    gflop = args.batch * h * h * c * c * 9 * 2 / 1e9
    for name, (fn, dtype) in ENGINES.items():
      if not _keep(name, args.engines):
        continue
      jf = jax.jit(lambda x, k, fn=fn, dtype=dtype: fn(x, k, dtype))
      err = np.abs(np.asarray(jf(xj, kj)) - ref).max() / np.abs(ref).max()
      key = f"{h}x{h}x{c}: {name}"
      fns[key] = lambda jf=jf, xj=xj, kj=kj: jax.block_until_ready(jf(xj, kj))
      meta[key] = (gflop, err)
    if torch is not None and _keep("torch", args.engines):
      torch_rows(torch, fns, meta, f"{h}x{h}x{c}", x, k, ref, gflop, stride=1, padding=1)
  times = common.interleaved(fns, args.rounds, warmup=1)
  rows = []
  for key, t in times.items():
    gflop, err = meta[key]
    shape, name = key.split(": ", 1)
    wall = t["wall"]
    rows.append(
      [
        shape,
        name,
        gflop / common.median(wall),
        f"{gflop / max(wall):.0f}-{gflop / min(wall):.0f}",
        common.median(t["cpu"]),
        f"{err:.1e}",
      ]
    )
  print(f"\nbatch {args.batch}, {args.rounds} rounds, load {common.load()} after\n")
  print(
    common.table(
      ["map", "engine", "GFLOP/s", "range", "CPU s per call", "max|diff|/max|ref|"], rows
    )
  )


if __name__ == "__main__":
  main()

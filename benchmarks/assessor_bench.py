"""Quality assessors: images/s of SER-FIQ and GraFIQs against the plain FR forward (Flax)
and against their PyTorch references on identical weights, side by side in one run.

    python benchmarks/assessor_bench.py [--smoke] [--sizes iresnet50,iresnet100]
                                        [--batch 64] [--rounds 2] [--passes 100]
                                        [--no-compile] [--threads N] [--engines REGEX]

Per size (random weights in the PyTorch reference, copied into Flax by the
converter): Flax jit FR embedding, Flax SER-FIQ (T = --passes, key-drawn masks),
Flax GraFIQs (all five variants from one backward pass), Flax CR-FIQA (the iResNet
with its qs head, `--family cr-fiqa`); PyTorch eager: CR-FIQA's reference, the FR
embedding, SER-FIQ (`references.serfiq.serfiq_sampled`: backbone once, T head
passes per image) and GraFIQs (`references.grafiqs`: BN_Model hooks, one image
at a time, as GraFIQs' extractor runs); torch.compile of the FR forward, of CR-FIQA,
of SER-FIQ (the backbone to the flattened feature map, and the per-image head of T
passes, each compiled; the masks drawn eagerly as the reference draws them) and of
GraFIQs on iResNets (each of the four stages compiled on its own, so that the stage
outputs stay autograd leaves of the eager graph that `autograd.grad` differentiates; the
BatchNorm hooks fire inside the compiled stages). Each compiled row is checked against
its eager reference before it is timed (printed). Calls alternate round-robin after one
warm-up each; medians and ranges; the load average before and after. `--engines REGEX`
keeps the rows whose name matches (the Flax FR embedding, the ratio's base, always
runs). `--smoke`: tiny models, batch 4, T = 8.
`gpu_rows(smoke)` is the entry point for the GPU check script.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import common
import cpu_info
import fr_workloads
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.grafiqs import grafiqs_quality
from exfiqa_jax.models.inference import apply
from exfiqa_jax.models.serfiq import serfiq_quality

SIZES = {"iresnet50": (3, 4, 14, 3), "iresnet100": (3, 13, 30, 3)}
TINY = dict(layers=(1, 1, 1, 1), widths=(8, 16, 16, 32), stem_width=8, embedding_size=32)


def config_of(size: str, smoke: bool) -> FRConfig:
  if smoke:
    return FRConfig.for_family("arcface", **TINY)
  return FRConfig.for_family("arcface", layers=SIZES[size])


def crfiqa_pair(config: FRConfig, seed: int = 0):
  """(PyTorch CR-FIQA reference, its Flax (graphdef, params, batch_stats)) of `config`'s
  sizes: the iResNet with the qs head, identical weights (through `--family cr-fiqa`)."""
  from exfiqa_jax.convert import FAMILIES, from_torch
  from exfiqa_jax.models.inference import abstract_variables

  sizes = ("layers", "widths", "stem_width", "embedding_size", "image_size")
  cr = FRConfig.for_family("cr-fiqa", **{k: getattr(config, k) for k in sizes})
  f = FAMILIES["cr-fiqa"]
  ref = f.randomize(f.reference(cr), seed)
  _, params, stats = from_torch(ref.state_dict(), family="cr-fiqa")
  return ref, (abstract_variables(cr)[0], params, stats)


def flax_engines(variables, x: np.ndarray, passes: int, crfiqa=None) -> dict:
  """{row name: blocking call} of the Flax rows; `crfiqa`: CR-FIQA's variables (its
  forward gives (embedding, qs))."""
  graphdef, params, stats = variables
  model = nnx.merge(graphdef, params, stats)
  xj, ids, key = jnp.asarray(x), np.arange(len(x), dtype=np.uint32), jax.random.key(0)
  return {
    "Flax FR embedding": lambda: jax.block_until_ready(apply(graphdef, params, stats, xj)),
    f"Flax SER-FIQ T={passes}": lambda: jax.block_until_ready(
      serfiq_quality(model, xj, passes=passes, key=key, image_ids=ids)
    ),
    "Flax GraFIQs (5 variants)": lambda: jax.block_until_ready(grafiqs_quality(model, xj)),
    **(
      {"Flax CR-FIQA (embedding + qs)": lambda: jax.block_until_ready(apply(*crfiqa, xj))}
      if crfiqa is not None
      else {}
    ),
  }


PER_IMAGE = 8  # images the per-image PyTorch GraFIQs reference is timed on
GRAFIQS_TORCH = f"torch eager GraFIQs (5 variants, per image; first {PER_IMAGE} images)"
GRAFIQS_COMPILED = f"torch.compile GraFIQs (5 variants, per image; first {PER_IMAGE} images)"


def images_of(name: str, batch: int) -> int:
  """Images one call of engine `name` scores."""
  return min(batch, PER_IMAGE) if name in (GRAFIQS_TORCH, GRAFIQS_COMPILED) else batch


def serfiq_compiled(ref, size: int, passes: int, p: float, generator):
  """SER-FIQ as `references.serfiq.serfiq_sampled` computes it (backbone once, per image
  T masks drawn from `generator`, the head, the mean pairwise distance), with the backbone
  and the head each under torch.compile: xt [B, 3, S, S] -> quality [B]."""
  import torch

  from exfiqa_jax.convert.references.serfiq import feature_map

  with torch.no_grad():
    _, fc, bn = feature_map(ref, torch.zeros(1, 3, size, size))
  backbone = torch.compile(lambda x: torch.flatten(feature_map(ref, x)[0], 1), dynamic=False)
  iu = torch.triu_indices(passes, passes, offset=1)

  def head(f, keep):
    e = torch.nn.functional.normalize(bn(fc(f * keep / (1.0 - p))), dim=1)
    d = torch.cdist(e, e)[iu[0], iu[1]]
    return 2.0 / (1.0 + torch.exp(d.mean()))

  head = torch.compile(head, dynamic=False)

  def run(xt):
    with torch.no_grad():
      feats = backbone(xt)
      out = torch.empty(len(feats))
      for i in range(len(feats)):
        keep = torch.rand(passes, feats.shape[1], generator=generator) >= p
        out[i] = head(feats[i][None], keep)
    return out

  return run


PROBE = """
import sys
sys.path.insert(0, {here!r})
import numpy as np
import assessor_bench as ab, fr_workloads
ref, _ = fr_workloads.reference_pair(ab.config_of("tiny", True))
x = np.zeros((1, 112, 112, 3), np.float32)
ab.grafiqs_compiled(ref)(x)
"""


def compiled_backward_works() -> bool:
  """Whether GraFIQs with torch.compile'd stages runs on a tiny iResNet, tried in a child
  process: on torch 2.13.0+cpu here the compiled (inductor) backward of an iResNet stage
  aborts the process (heap corruption; the `aot_eager` backend runs), which no `except`
  could catch. Prints why the row is missing when it fails."""
  import subprocess
  import sys

  here = os.path.dirname(os.path.abspath(__file__))
  code = PROBE.format(here=here)
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
  if r.returncode != 0:
    last = (r.stderr.strip().splitlines() or ["no message"])[-1][:120]
    print(
      f"- {GRAFIQS_COMPILED}: not timed: torch.compile's backward of an iResNet stage "
      f"ends the process on this torch (exit {r.returncode}: {last})"
    )
  return r.returncode == 0


def grafiqs_compiled(ref):
  """GraFIQs as `references.grafiqs.grafiqs_reference` computes it, on a copy of the
  iResNet `ref` whose four stages run under torch.compile (None for other families)."""
  import copy

  import torch

  from exfiqa_jax.convert.references.grafiqs import BNModel, grafiqs_reference

  if not hasattr(ref, "layer1"):
    return None
  model = copy.deepcopy(ref).eval()
  bnm = BNModel(model)  # hooks once, before compiling: no recompilation per call
  for s in range(model.num_stages):
    name = f"layer{s + 1}"
    setattr(model, name, torch.compile(getattr(model, name), dynamic=False))
  return lambda x: grafiqs_reference(model, x, bn_model=bnm)


def torch_engines(
  ref, x: np.ndarray, passes: int, compiled: bool, device: str = "cpu", crfiqa=None
) -> dict:
  """{row name: blocking call} of the PyTorch rows (float32); {} without torch;
  `crfiqa`: CR-FIQA's reference (eager and torch.compile rows)."""
  try:
    import torch
  except ImportError:
    return {}
  from exfiqa_jax.convert.references.grafiqs import grafiqs_reference
  from exfiqa_jax.convert.references.serfiq import serfiq_sampled

  ref = ref.to(device).eval()
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
  gen = torch.Generator(device=device).manual_seed(0)

  def sync(out):
    if device == "cuda":
      torch.cuda.synchronize()
    return out

  def fr(m):
    with torch.inference_mode():
      return sync(m(xt))

  fns = {
    "torch eager FR embedding": lambda: fr(ref),
    f"torch eager SER-FIQ T={passes}": lambda: sync(serfiq_sampled(ref, xt, passes, 0.5, gen)),
    # one image at a time, as GraFIQs' extractor runs: its rate does not depend on the
    # batch, so it is timed on the first PER_IMAGE images (COUNTS) to keep a run short
    GRAFIQS_TORCH: lambda: sync(grafiqs_reference(ref, x[:PER_IMAGE])),
  }
  cr = None if crfiqa is None else crfiqa.to(device).eval()
  if cr is not None:
    fns["torch eager CR-FIQA (embedding + qs)"] = lambda: fr(cr)
  if compiled and cr is not None:
    try:
      comp_cr = torch.compile(cr, dynamic=False)
      fr(comp_cr)
      fns["torch.compile CR-FIQA (embedding + qs)"] = lambda: fr(comp_cr)
    except Exception as e:  # noqa: BLE001 (any compiler failure: report and go on)
      print(f"- torch.compile CR-FIQA: failed ({type(e).__name__}: {str(e)[:120]})")
  if compiled:
    try:
      comp = torch.compile(ref, dynamic=False)
      fr(comp)  # compile now: a failure drops the row
      fns["torch.compile FR embedding"] = lambda: fr(comp)
    except Exception as e:  # noqa: BLE001 (any compiler failure: report and go on)
      print(f"- torch.compile FR embedding: failed ({type(e).__name__}: {str(e)[:120]})")
    name = f"torch.compile SER-FIQ T={passes}"
    try:
      g = torch.Generator(device=device).manual_seed(1)
      ser = serfiq_compiled(ref, x.shape[1], passes, 0.5, g)
      a = ser(xt[:2])  # compile now, and check against the eager reference on the same masks
      b = serfiq_sampled(ref, xt[:2], passes, 0.5, torch.Generator(device=device).manual_seed(1))
      print(f"- {name}: max |compiled - eager| {float((a - b).abs().max()):.2g} (2 images)")
      fns[name] = lambda: sync(ser(xt))
    except Exception as e:  # noqa: BLE001 (any compiler failure: report and go on)
      print(f"- {name}: failed ({type(e).__name__}: {str(e)[:120]})")
    if compiled_backward_works():
      try:
        gra = grafiqs_compiled(ref)
        if gra is not None:
          a, b = gra(x[:2]), grafiqs_reference(ref, x[:2])
          gap = max(float(np.max(np.abs(a[v] - b[v]) / np.abs(b[v]))) for v in a)
          print(f"- {GRAFIQS_COMPILED}: max relative |compiled - eager| {gap:.2g} (2 images)")
          fns[GRAFIQS_COMPILED] = lambda: sync(gra(x[:PER_IMAGE]))
      except Exception as e:  # noqa: BLE001 (any compiler failure: report and go on)
        print(f"- {GRAFIQS_COMPILED}: failed ({type(e).__name__}: {str(e)[:120]})")
  return fns


def run(
  size: str,
  batch: int,
  rounds: int,
  passes: int,
  compiled: bool,
  smoke: bool,
  engines: str | None = None,
) -> str:
  """One size's table (Markdown), every engine interleaved in one run; `engines`: a
  regular expression keeping the rows it matches (and the Flax FR embedding, the base)."""
  config = config_of(size, smoke)
  try:
    ref, variables = fr_workloads.reference_pair(config)
    cr_ref, cr_vars = crfiqa_pair(config)
  except ImportError:  # no PyTorch: random Flax weights only
    from exfiqa_jax.models.inference import create, split

    ref, variables, cr_ref, cr_vars = None, split(create(config)), None, None
  s = config.image_size
  x = np.random.default_rng(0).uniform(-1, 1, (batch, s, s, 3)).astype(np.float32)
  fns = flax_engines(variables, x, passes, cr_vars)
  if ref is not None:
    fns.update(torch_engines(ref, x, passes, compiled, crfiqa=cr_ref))
  if engines:
    keep = re.compile(engines)
    fns = {k: f for k, f in fns.items() if k == "Flax FR embedding" or keep.search(k)}
  before = common.load()
  times = common.interleaved(fns, rounds, warmup=1)
  ips = {name: images_of(name, batch) / common.median(t["wall"]) for name, t in times.items()}
  base = ips["Flax FR embedding"]
  rows = []
  for name, t in times.items():
    lo, hi = images_of(name, batch) / max(t["wall"]), images_of(name, batch) / min(t["wall"])
    rows.append([name, ips[name], f"{lo:.3g}-{hi:.3g}", f"{base / ips[name]:.2f}x"])
  gflop = fr_workloads.fr_gflops(config)
  head = (
    f"\n{config.name if not smoke else 'tiny iresnet'}, batch {batch}, {gflop:.2f} GFLOP per "
    f"FR forward, T = {passes}; medians (range) of {rounds} rounds; load {before} before, "
    f"{common.load()} after.\n"
  )
  table = common.table(["engine", "images/s", "range", "time vs Flax FR embedding"], rows)
  return head + "\n" + table


def gpu_rows(smoke: bool) -> None:
  """The assessor rows of the GPU check: Flax on the default device, PyTorch on CUDA if seen."""
  print(f"\n## Quality assessors on {jax.devices()[0].device_kind}")
  size, batch = ("iresnet100", 64) if not smoke else ("iresnet50", 4)
  print(run(size, batch, rounds=3, passes=100 if not smoke else 8, compiled=False, smoke=smoke))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true", help="tiny models, batch 4, T = 8")
  p.add_argument("--sizes", default="iresnet50,iresnet100")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--passes", type=int, default=100)
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--engines", default=None, help="regex: keep the rows it matches")
  args = p.parse_args()
  common.use_threads(args.threads)
  print(common.machine_info(args.threads))
  print(cpu_info.cpu_flags())
  begin = time.perf_counter()
  sizes = ["tiny"] if args.smoke else args.sizes.split(",")
  batch, passes = (4, 8) if args.smoke else (args.batch, args.passes)
  for size in sizes:
    if size not in SIZES and not args.smoke:
      raise SystemExit(f"assessor_bench: unknown size {size!r}; one of {', '.join(SIZES)}")
    print(run(size, batch, args.rounds, passes, not args.no_compile, args.smoke, args.engines))
  print(f"\nTotal {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
  main()

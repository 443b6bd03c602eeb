"""Scoring throughput through the data pipeline vs the bare model, same batch size.

    python benchmarks/scoring_bench.py [--images 256] [--batch-size 32] [--rounds 3]

Pipeline: a `face_images` dataset of JPEG files built with TFDS, read with
`tfds.data_source`, decoded on background threads, scored by
`exfiqa_jax.scoring.score.score` into a resumable run folder (chunks + merge).
Bare: the jitted model on batches already normalised and on the device.
Also timed: reading and decoding alone, to show the cost of keeping images
encoded (random-noise faces are a worst case for JPEG size and decode time).
Both use the full-size `vit_s` config with random weights, float32; rounds
alternate between the two (the machine is shared), and medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from exfiqa_jax import ViTConfig, apply, create, data, preprocess, split
from exfiqa_jax.configs import load_config_file
from exfiqa_jax.scoring.score import score


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--images", type=int, default=256)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--rounds", type=int, default=3)
  args = p.parse_args()
  n, b = args.images, args.batch_size
  variables = split(create(ViTConfig.from_dict(load_config_file("vit_s"))))
  faces = np.random.default_rng(0).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
  tmp = tempfile.mkdtemp()
  os.makedirs(f"{tmp}/jpg")
  for i, x in enumerate(faces):
    Image.fromarray(x).save(f"{tmp}/jpg/{i:05d}.jpg", quality=95)
  ds = data.load(data.build("face_images", "bench", f"{tmp}/jpg", f"{tmp}/tfds"), f"{tmp}/tfds")
  batches = [jax.device_put(preprocess(faces[i : i + b])) for i in range(0, n - n % b, b)]

  def bare() -> float:
    t = time.perf_counter()
    outs = [apply(*variables, x) for x in batches]
    jax.block_until_ready(outs)
    return len(batches) * b / (time.perf_counter() - t)

  def decode_only() -> float:
    t = time.perf_counter()
    for i in range(0, n, b):
      ds.images.read(range(i, min(i + b, n)))
    return n / (time.perf_counter() - t)

  def pipeline(r: int) -> float:
    t = time.perf_counter()
    score(variables, ds.images, f"{tmp}/run{r}", batch_size=b, progress=False)
    return n / (time.perf_counter() - t)

  bare(), score(variables, ds.images, batch_size=b, progress=False)  # compile both
  rates = {"bare model": [], "pipeline": [], "read + decode only, 1 thread": []}
  for r in range(args.rounds):
    rates["pipeline"].append(pipeline(r))
    rates["bare model"].append(bare())
    rates["read + decode only, 1 thread"].append(decode_only())
    print(
      f"round {r}: pipeline {rates['pipeline'][-1]:.2f} img/s, "
      f"bare {rates['bare model'][-1]:.2f} img/s",
      flush=True,
    )
  base = statistics.median(rates["bare model"])
  print(
    f"\nvit_s float32, {n} images, batch {b}, {jax.device_count()} device(s), "
    f"{args.rounds} interleaved rounds\n"
  )
  jpeg = sum(os.path.getsize(f"{tmp}/jpg/{f}") for f in os.listdir(f"{tmp}/jpg")) / n
  print(f"stored JPEG: {jpeg / 1024:.1f} KiB/image (raw uint8: {faces[0].nbytes / 1024:.1f} KiB)\n")
  print("| path | images/s (median) | vs bare |\n| --- | ---: | ---: |")
  for name, v in rates.items():
    print(f"| {name} | {statistics.median(v):.2f} | {statistics.median(v) / base:.1%} |")
  ratios = [p / q for p, q in zip(rates["pipeline"], rates["bare model"], strict=True)]
  print(
    f"\npipeline / bare within each round: median {statistics.median(ratios):.1%} "
    f"(rounds: {', '.join(f'{r:.1%}' for r in ratios)})"
  )


if __name__ == "__main__":
  main()

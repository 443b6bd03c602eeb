"""Building a dataset above the former 1,000 MiB shuffle-buffer spill, without TensorFlow.

    python benchmarks/dataset_build_bench.py [--images 75144] [--kb 15]

A `face_images` folder of `--images` hard links to one random 112x112 JPEG of
about `--kb` KB (the sizes of the issue's failing case: 75,144 JPEGs of 15 KB,
1.1 GB) is built in a fresh process (`exfiqa_jax.data.build`: a TFDS dataset
written record by record, no TensorFlow), then read back, by the project
(`data.load`) and by TFDS (`tfds.builder_from_directory(...).as_data_source`).
Side by side, in the same run: the I/O floor, a plain copy of every file's bytes
into one file (no decode check, no index). The former writer (TFDS) buffered up
to 1,000 MiB in memory and then spilled through `tf.io.gfile`, which needs
TensorFlow (tensorflow_datasets/core/shuffle.py, MAX_MEM_BUFFER_SIZE): it fails
here, so it has no row. Prints a Markdown table: wall and CPU time (the CPU time
is what a loaded shared machine disturbs least), peak RSS of the child process,
bytes written, and the rows read back correctly.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from common import machine_info  # also puts the repository on sys.path
from PIL import Image

BUILD = textwrap.dedent("""
    import json, resource, sys, time
    from exfiqa_jax import data
    t, c = time.perf_counter(), time.process_time()
    data.build("face_images", "big", sys.argv[1], sys.argv[2])
    build_s, cpu_s = time.perf_counter() - t, time.process_time() - c
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ds = data.load("face_images/big", sys.argv[2])
    n = len(ds.images)
    picked = list(range(0, n, max(1, n // 64)))
    sample = ds.images.read(picked)
    tfds_n = 0
    try:
      import numpy as np, tensorflow_datasets as tfds
      from exfiqa_jax.data.build import dataset_dir
      rows = tfds.builder_from_directory(dataset_dir(sys.argv[2], "face_images", "big"))
      rows = rows.as_data_source(split="images")
      tfds_n = sum(np.array_equal(rows[i]["image"], x) for i, x in zip(picked, sample))
    except Exception:  # a layout TFDS cannot open
      pass
    print(json.dumps(dict(build_s=build_s, cpu_s=cpu_s, n=n, sample=sample.shape[0],
        tfds=int(tfds_n),
        tf="tensorflow" in sys.modules, rss_build_mb=rss_build,
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
""")
COPY = textwrap.dedent("""
    import json, os, resource, sys, time
    t, c = time.perf_counter(), time.process_time()
    with open(sys.argv[2], "wb") as out:
      for name in sorted(os.listdir(sys.argv[1])):
        with open(os.path.join(sys.argv[1], name), "rb") as f:
          out.write(f.read())
      out.flush()
      os.fsync(out.fileno())
    print(json.dumps(dict(build_s=time.perf_counter() - t, cpu_s=time.process_time() - c,
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
""")


def jpeg(kb: int) -> bytes:
  """A 112x112 JPEG of about `kb` KB (noise, quality chosen to reach the size)."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
  for q in range(5, 100, 5):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=q)
    if buf.tell() >= kb * 1000:
      break
  return buf.getvalue()


def child(code: str, *args: str) -> dict:
  r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
  if r.returncode:
    raise SystemExit(r.stderr[-3000:])
  return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--images", type=int, default=75144)
  ap.add_argument("--kb", type=int, default=15)
  args = ap.parse_args()
  with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
    data = jpeg(args.kb)
    folder = os.path.join(tmp, "imgs")
    os.mkdir(folder)
    for i in range(args.images):
      one = os.path.join(tmp, f"one{i // 50000}.jpg")  # a file system allows ~65,000 links
      if i % 50000 == 0:
        with open(one, "wb") as f:
          f.write(data)
      os.link(one, os.path.join(folder, f"{i:07d}.jpg"))
    total = len(data) * args.images
    copy = child(COPY, folder, os.path.join(tmp, "copy.bin"))
    os.remove(os.path.join(tmp, "copy.bin"))
    built = child(BUILD, folder, os.path.join(tmp, "ds"))
    built_dir = os.path.join(tmp, "ds", "face_images", "big")
    written = sum(
      os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(built_dir) for f in fs
    )
  print(machine_info())
  print(
    f"- dataset: {args.images:,} JPEGs of {total / args.images / 1e3:.1f} KB, "
    f"{total / 2**20:,.0f} MiB encoded (the former writer spilled above 1,000 MiB)\n"
  )
  print(
    "| writer | wall s | CPU s | peak RSS MiB (build; with reading) | MiB written "
    "| images read back | of them equal through TFDS | TensorFlow imported |"
  )
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
  print(
    f"| plain copy of the bytes (I/O floor) | {copy['build_s']:.1f} | {copy['cpu_s']:.1f} "
    f"| {copy['rss_mb']:.0f} "
    f"| {total / 2**20:,.0f} | - | - | no |"
  )
  print(
    f"| exfiqa_jax.data.build | {built['build_s']:.1f} | {built['cpu_s']:.1f} "
    f"| {built['rss_build_mb']:.0f}; {built['rss_mb']:.0f} "
    f"| {written / 2**20:,.0f} | {built['n']:,} ({built['sample']} sampled) | {built['tfds']} "
    f"| {'yes' if built['tf'] else 'no'} |"
  )
  print(f"\nbuild / copy: {built['build_s'] / copy['build_s']:.1f}x the time of the I/O floor")


if __name__ == "__main__":
  main()

"""The CPU's matmul-relevant instruction sets, printed by the model benchmarks: a speed
target holds per CPU kind, and the development machines change kind between sessions."""

from __future__ import annotations

FLAGS = {
  "avx2": "AVX2",
  "avx512f": "AVX-512",
  "avx512_bf16": "AVX512-BF16",
  "amx_bf16": "AMX-BF16",
  "amx_tile": "AMX",
}


def cpu_flags() -> str:
  """One Markdown line: which of AVX2, AVX-512, AVX512-BF16 and AMX /proc/cpuinfo lists."""
  try:
    with open("/proc/cpuinfo") as f:
      have = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")))
  except (OSError, StopIteration):
    return "- CPU flags: unknown (no /proc/cpuinfo)"
  return "- CPU flags: " + ", ".join(
    f"{name} {'yes' if f in have else 'no'}" for f, name in FLAGS.items()
  )

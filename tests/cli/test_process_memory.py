"""The sweep command's process-wide malloc setting (cli.keep_freed_memory): in effect
in a process that sets it, never set by the library's own sweep."""

import os
import subprocess
import sys

import pytest

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

# Page faults of a second round of allocating, touching and freeing blocks of 1-20 MB:
# with the setting the heap keeps the first round's pages (about 0 new faults); without
# it glibc unmaps or trims them and the second round faults them in again (about 5,000
# faults of 4 KB pages).
CHILD = """
import ctypes, resource, sys
if "set" in sys.argv:
  from exfiqa_jax.cli import keep_freed_memory
  assert keep_freed_memory()
if "sweep" in sys.argv:
  import numpy as np
  from exfiqa_jax.fusion.sweep import sweep
  from exfiqa_jax.metrics import make_pairset
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 40, (2, 200))
  sweep(make_pairset(rng.random((40, 4)), a, b, rng.random(200) < 0.5, rng.random(200)))
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def touch(n):
  p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)
def rounds():
  for k in range(1, 21):
    touch(k << 20)
rounds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(*flags: str) -> int:
  out = subprocess.run(
    [sys.executable, "-c", CHILD, *flags], capture_output=True, text=True, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  return int(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="a glibc setting")
def test_keep_freed_memory_keeps_a_freed_block_mapped_and_the_library_never_sets_it():
  assert faults("set") < 200
  assert faults("sweep") > 2_000  # a library sweep ran: the process is as it was

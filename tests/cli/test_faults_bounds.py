"""Stated memory bounds, refused in one line before any work (issue 27): a sweep of all
2^24 - 1 subsets of 24 exits (sweep, adaptive: MemoryError at 8-12 GB before), and
2,000 EDC limits (3.4 GB before)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from exfiqa_jax.fusion.subsets import MAX_VARIANTS, check_variants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = [sys.executable, "-m", "exfiqa_jax.cli"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}


def _inputs(path, depth: int, pairs: int = 200):
  rng = np.random.default_rng(0)
  n = 2 * pairs
  labels = np.arange(pairs) % 2 == 0
  np.savez(
    path,
    exit_scores=rng.random((n, depth)).astype(np.float32),
    a=np.arange(0, n, 2),
    b=np.arange(1, n, 2),
    labels=labels,
    comparison=np.where(labels, 0.6, 0.0) + 0.3 * rng.normal(size=pairs),
    cost=np.arange(1, depth + 1.0),
  )
  return path


def _exfiqa(*args):
  t = time.perf_counter()
  r = subprocess.run([*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=120)
  return r, time.perf_counter() - t


def test_the_variant_bound_is_exact():
  assert check_variants(22, 1, 1) == (1 << 22) - 1 <= MAX_VARIANTS
  with pytest.raises(ValueError, match=r"22 exits give 4,194,303 exit subsets x 2 rule\(s\)"):
    check_variants(22, 2, 1)


@pytest.mark.parametrize("command", ["sweep", "adaptive"])
def test_24_exits_are_refused_in_one_line_before_work(tmp_path, command):
  z = _inputs(tmp_path / "deep.npz", 24)
  r, took = _exfiqa(command, "--inputs", z, "--out", tmp_path / "o", "--quiet")
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
  assert "24 exits give 16,777,215 exit subsets" in lines[0] and "over the 4,194,304" in lines[0]
  assert took < 60 and not (tmp_path / "o").exists()


def test_2000_edc_limits_refused_naming_the_option(tmp_path):
  z = _inputs(tmp_path / "x.npz", 4)
  limits = "(" + ",".join(f"{(i + 1) / 2001:.6f}" for i in range(2000)) + ")"
  r, _ = _exfiqa("sweep", "--inputs", z, "--out", tmp_path / "o", f"metrics.edc_limits={limits}")
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
  assert (
    "metrics.edc_limits must be a non-empty list of discard limits in (0, 1], at most 64"
    in lines[0]
  )
  assert not (tmp_path / "o").exists()
  data = dict(np.load(z))
  data |= dict(metrics_fmrs=np.array([0.1]), metrics_edc_fmr=np.array(0.1))
  np.savez(z, **data, metrics_edc_limits=np.linspace(0.001, 1, 2000))
  r, _ = _exfiqa("sweep", "--inputs", z, "--out", tmp_path / "o")
  assert r.returncode == 2 and "metrics_edc_limits holds 2000 values, over 64" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]

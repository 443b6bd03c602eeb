"""`exfiqa sweep --inputs F KEY=VALUE` (issue 26): an override after --inputs is an
override, not another input file, and overriding one metric key keeps every other
metric setting saved with the inputs."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.inputs import PairInputs

SAVED = dict(fmrs=(1e-2, 1e-3), edc_fmr=1e-2, edc_limits=(0.2, 0.3))


def test_one_metric_override_keeps_the_saved_settings(tmp_path):
  rng = np.random.default_rng(1)
  n, depth = 400, 3
  true = rng.normal(size=n)
  exits = (true[:, None] + rng.normal(size=(n, depth))).astype(np.float32)
  a, b = np.arange(0, n, 2), np.arange(1, n, 2)
  labels = np.arange(n // 2) % 2 == 0
  comp = np.round(labels * 0.8 + rng.normal(size=n // 2) * 0.5 + 0.1 * true[a], 4)
  z = PairInputs(exits, a, b, labels, comp, np.arange(1.0, depth + 1)).with_metrics(SAVED)
  z.save(str(tmp_path / "set.npz"))
  run = subprocess.run(
    [
      sys.executable, "-m", "exfiqa_jax.cli", "sweep", "--quiet", "--out", str(tmp_path / "o"),
      "--inputs", str(tmp_path / "set.npz"), "metrics.fmrs=(0.05,)", "weights.simplex=2",
      "weights.learn_steps=2",
    ],
    capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr
  with open(tmp_path / "o" / "set_subsets.csv", newline="") as f:
    rows = {r["variant"]: r for r in csv.DictReader(f)}
  row = rows["mean({1,3})"]
  assert [k for k in row if k.startswith("erc_area@")] == ["erc_area@0.05"]
  assert [k for k in row if k.startswith("edc_area@")] == ["edc_area@0.2", "edc_area@0.3"]
  cols = (exits, a, b, labels, comp)
  want = evaluate_variant(
    make_pairset(*cols, fmrs=(0.05,), edc_fmr=1e-2, limits=(0.2, 0.3)), [True, False, True], "mean"
  )
  default = evaluate_variant(
    make_pairset(*cols, fmrs=(0.05,), edc_fmr=1e-3, limits=(0.2, 0.3)), [True, False, True], "mean"
  )
  assert abs(want["edc_area"][0] - default["edc_area"][0]) > 1e-4  # the EDC FMR tells
  assert float(row["edc_area@0.2"]) == pytest.approx(want["edc_area"][0], abs=1e-9)
  assert float(row["erc_area@0.05"]) == pytest.approx(want["erc_area"][0], abs=1e-9)
